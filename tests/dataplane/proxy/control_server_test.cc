// The local control protocol against a ControlServer with a fake directory side.
#include "dataplane/proxy/control_server.h"

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"
#include "dataplane/proxy/directory_link.h"
#include "dataplane/wire/sockets.h"
#include "tests/dataplane/proxy/test_peers.h"
#include "tests/support/subprocess.h"

namespace zmesh::proxy {
namespace {

namespace v1 = ::zmesh::wire::v1;
namespace dv1 = ::zmesh::directory::v1;
using testing::FakeInstance;
using testing::RpcServer;
using ::zmesh::testing::Eventually;

// Records what the control thread asks for. Thread-safe.
class FakeDirectory final : public DirectoryAccess {
 public:
  void Register(const dv1::Registration& r) override {
    absl::MutexLock lock(&mu_);
    registered_.push_back(r);
  }
  void Unregister(const dv1::Registration& r) override {
    absl::MutexLock lock(&mu_);
    unregistered_.push_back(r);
  }
  void Lookup(uint64_t token, const std::string& exchange, const std::string& topic) override {
    absl::MutexLock lock(&mu_);
    lookups_.push_back(token);
  }
  bool connected() const override { return true; }

  std::vector<dv1::Registration> registered() {
    absl::MutexLock lock(&mu_);
    return registered_;
  }
  std::vector<dv1::Registration> unregistered() {
    absl::MutexLock lock(&mu_);
    return unregistered_;
  }
  std::vector<uint64_t> lookups() {
    absl::MutexLock lock(&mu_);
    return lookups_;
  }

 private:
  absl::Mutex mu_;
  std::vector<dv1::Registration> registered_ ABSL_GUARDED_BY(mu_);
  std::vector<dv1::Registration> unregistered_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> lookups_ ABSL_GUARDED_BY(mu_);
};

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ControlOptions options;
    options.ipc_endpoint = *wire::IpcEndpoint(dir_.path(), "control");
    options.node_name = "node-t";
    options.incarnation = "inc-1";
    options.max_payload_bytes = 4096;
    options.ping_interval_ms = 50;
    options.instance_timeout_ms = 400;
    options.announce_timeout_ms = 100;
    options.lookup_timeout_ms = 200;
    auto created = ControlServer::Create(context_, options, table_, mirror_, stats_);
    ASSERT_TRUE(created.ok()) << created.status();
    server_ = *std::move(created);
    server_->set_directory(&directory_);
    server_->Start();
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Stop();
  }

  std::unique_ptr<FakeInstance> Hello() {
    auto instance = std::make_unique<FakeInstance>(context_, dir_.path());
    auto welcome = instance->Hello();
    EXPECT_TRUE(welcome.ok()) << welcome.status();
    return instance;
  }

  // Instances serving (exchange, topic, server) in the published table.
  std::vector<std::string> Serving(const std::string& topic, const std::string& server) {
    std::shared_ptr<const LocalTable> table;
    uint64_t generation = 0;
    table_.Refresh(&table, &generation);
    std::string key;
    TargetKey("openstack", topic, server, &key);
    const LocalTable::Instances* instances = table->RpcServers(key);
    return instances == nullptr ? std::vector<std::string>() : *instances;
  }

  void MirrorHas(int64_t revision, const std::string& topic, const std::string& server) {
    dv1::WatchResponse response;
    response.set_revision(revision);
    if (mirror_.revision() == 0) {  // the node once: a node event touches all its topics
      dv1::Event* node = response.add_events();
      node->set_type(dv1::Event::TYPE_PUT);
      node->mutable_node()->set_name("node-x");
    }
    dv1::Event* reg = response.add_events();
    reg->set_type(dv1::Event::TYPE_PUT);
    *reg->mutable_registration() = RpcServer(topic, server);
    reg->mutable_registration()->set_node("node-x");
    std::vector<TopicKey> changed = mirror_.Apply(response, false);
    server_->PostMirrorChanged(changed);
  }

  ::zmesh::testing::TempDir dir_;
  zmq::context_t context_{1};
  ProxyStats stats_;
  LocalTableHolder table_;
  Mirror mirror_;
  FakeDirectory directory_;
  std::unique_ptr<ControlServer> server_;
};

TEST_F(ControlServerTest, HelloIsWelcomedWithTheProxysSettings) {
  FakeInstance instance(context_, dir_.path());
  auto welcome = instance.Hello();
  ASSERT_TRUE(welcome.ok()) << welcome.status();
  EXPECT_EQ(welcome->code(), 0);
  EXPECT_EQ(welcome->welcome().incarnation(), "inc-1");
  EXPECT_EQ(welcome->welcome().node_name(), "node-t");
  EXPECT_EQ(welcome->welcome().max_payload_bytes(), 4096);
  EXPECT_EQ(welcome->welcome().ping_interval_ms(), 50);
  EXPECT_EQ(welcome->welcome().instance_timeout_ms(), 400);
  auto pong = instance.Ping();
  ASSERT_TRUE(pong.ok());
  EXPECT_TRUE(pong->pong().known());
  EXPECT_EQ(pong->pong().incarnation(), "inc-1");
  EXPECT_TRUE(pong->pong().directory_connected());
}

TEST_F(ControlServerTest, UnknownInstanceIsToldSoAndMustSayHelloFirst) {
  FakeInstance instance(context_, dir_.path());
  auto pong = instance.Ping();
  ASSERT_TRUE(pong.ok());
  EXPECT_FALSE(pong->pong().known());
  auto announced = instance.Announce(RpcServer("compute", "host-1"));
  ASSERT_TRUE(announced.ok());
  EXPECT_EQ(announced->code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(directory_.registered().empty());
}

TEST_F(ControlServerTest, AnnounceIsAnsweredOnceTheDirectoryHasIt) {
  auto instance = Hello();
  v1::LocalRequest request;
  request.set_seq(77);
  *request.mutable_announce()->mutable_registration() = RpcServer("compute", "host-1");
  ASSERT_TRUE(instance->Post(request).ok());
  ASSERT_TRUE(Eventually([&] { return directory_.registered().size() == 1; }, 2000));
  const dv1::Registration r = directory_.registered()[0];
  EXPECT_EQ(r.node(), "node-t");
  EXPECT_EQ(Serving("compute", "host-1"), std::vector<std::string>{instance->id()});
  server_->PostRegistered(RegistrationKey(r), 42);
  auto answer = testing::ReceiveWithin(instance->control(), 2000);
  ASSERT_TRUE(answer.has_value());
  v1::LocalResponse response;
  ASSERT_TRUE(response.ParseFromString((*answer)[0]));
  EXPECT_EQ(response.seq(), 77u);
  EXPECT_EQ(response.code(), 0);
  EXPECT_EQ(response.announced().revision(), 42);
}

TEST_F(ControlServerTest, AnnounceWithoutDirectoryAnswerIsUnavailableButServedLocally) {
  auto instance = Hello();
  auto announced = instance->Announce(RpcServer("compute", "host-1"));
  ASSERT_TRUE(announced.ok());
  EXPECT_EQ(announced->code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_EQ(announced->announced().revision(), 0);
  EXPECT_EQ(Serving("compute", "host-1"), std::vector<std::string>{instance->id()});
}

TEST_F(ControlServerTest, InvalidAnnounceIsRefused) {
  auto instance = Hello();
  dv1::Registration bad = RpcServer("", "host-1");
  auto announced = instance->Announce(bad);
  ASSERT_TRUE(announced.ok());
  EXPECT_EQ(announced->code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(directory_.registered().empty());
}

TEST_F(ControlServerTest, InstancesShareOneRegistrationUntilTheLastWithdraws) {
  auto one = Hello();
  auto two = Hello();
  ASSERT_TRUE(one->Announce(RpcServer("compute", "host-1")).ok());
  ASSERT_TRUE(two->Announce(RpcServer("compute", "host-1")).ok());
  EXPECT_EQ(directory_.registered().size(), 1u);
  EXPECT_EQ(Serving("compute", "host-1").size(), 2u);
  auto withdrawn = one->Withdraw(RpcServer("compute", "host-1"));
  ASSERT_TRUE(withdrawn.ok());
  EXPECT_TRUE(withdrawn->has_withdrawn());
  EXPECT_TRUE(directory_.unregistered().empty());
  EXPECT_EQ(Serving("compute", "host-1"), std::vector<std::string>{two->id()});
  ASSERT_TRUE(two->Withdraw(RpcServer("compute", "host-1")).ok());
  ASSERT_EQ(directory_.unregistered().size(), 1u);
  EXPECT_EQ(directory_.unregistered()[0].node(), "node-t");
  EXPECT_TRUE(Serving("compute", "host-1").empty());
}

TEST_F(ControlServerTest, SilentInstanceIsDroppedWithItsTargets) {
  auto instance = Hello();
  ASSERT_TRUE(instance->Announce(RpcServer("compute", "host-1")).ok());
  ASSERT_TRUE(Eventually([&] { return directory_.unregistered().size() == 1; }, 2000));
  EXPECT_TRUE(Serving("compute", "host-1").empty());
  EXPECT_EQ(server_->instance_count(), 0u);
  EXPECT_EQ(stats_.instances_dropped.load(), 1);
  auto pong = instance->Ping();
  ASSERT_TRUE(pong.ok());
  EXPECT_FALSE(pong->pong().known());
}

TEST_F(ControlServerTest, GoodbyeWithdrawsAtOnce) {
  auto instance = Hello();
  ASSERT_TRUE(instance->Announce(RpcServer("compute", "host-1")).ok());
  v1::LocalRequest goodbye;
  goodbye.mutable_goodbye();
  ASSERT_TRUE(instance->Post(goodbye).ok());
  ASSERT_TRUE(Eventually([&] { return directory_.unregistered().size() == 1; }, 250));
}

TEST_F(ControlServerTest, LookupFromTheMirrorThenPushesForNewerRevisions) {
  MirrorHas(5, "compute", "host-1");
  auto instance = Hello();
  auto looked = instance->Lookup("compute", /*fresh=*/false);
  ASSERT_TRUE(looked.ok());
  EXPECT_TRUE(looked->lookup().from_cache());
  EXPECT_EQ(looked->lookup().revision(), 5);
  ASSERT_EQ(looked->lookup().endpoints_size(), 1);

  MirrorHas(6, "compute", "host-2");
  auto push = instance->NextPush(2000);
  ASSERT_TRUE(push.has_value());
  EXPECT_EQ(push->seq(), 0u);
  EXPECT_EQ(push->update().revision(), 6);
  EXPECT_EQ(push->update().endpoints_size(), 2);

  // A topic nobody subscribed to: no push. Unsubscribed: no push.
  MirrorHas(7, "network", "host-1");
  v1::LocalRequest unsubscribe;
  unsubscribe.mutable_unsubscribe()->set_exchange("openstack");
  unsubscribe.mutable_unsubscribe()->set_topic("compute");
  ASSERT_TRUE(instance->Post(unsubscribe).ok());
  ASSERT_TRUE(instance->Ping().ok());
  MirrorHas(8, "compute", "host-3");
  EXPECT_FALSE(instance->NextPush(100).has_value());
}

TEST_F(ControlServerTest, FreshLookupAsksTheDirectoryAndFallsBackToTheMirror) {
  MirrorHas(5, "compute", "host-1");
  auto instance = Hello();
  // The directory never answers: the mirror's answer after the lookup timeout.
  auto cached = instance->Lookup("compute", /*fresh=*/true);
  ASSERT_TRUE(cached.ok());
  EXPECT_TRUE(cached->lookup().from_cache());
  EXPECT_EQ(directory_.lookups().size(), 1u);

  // The directory answers.
  v1::LocalRequest request;
  request.set_seq(500);
  request.mutable_lookup()->set_exchange("openstack");
  request.mutable_lookup()->set_topic("compute");
  request.mutable_lookup()->set_fresh(true);
  ASSERT_TRUE(instance->Post(request).ok());
  ASSERT_TRUE(Eventually([&] { return directory_.lookups().size() == 2; }, 2000));
  v1::LookupResult fresh;
  fresh.set_exchange("openstack");
  fresh.set_topic("compute");
  fresh.set_revision(9);
  server_->PostLookup(directory_.lookups()[1], fresh);
  auto answer = testing::ReceiveWithin(instance->control(), 2000);
  ASSERT_TRUE(answer.has_value());
  v1::LocalResponse response;
  ASSERT_TRUE(response.ParseFromString((*answer)[0]));
  EXPECT_EQ(response.seq(), 500u);
  EXPECT_FALSE(response.lookup().from_cache());
  EXPECT_EQ(response.lookup().revision(), 9);
  // The mirror catching up to an older revision pushes nothing.
  MirrorHas(8, "compute", "host-2");
  EXPECT_FALSE(instance->NextPush(100).has_value());
}

TEST_F(ControlServerTest, LookupAnswerNeverStepsBehindAPushAlreadySent) {
  MirrorHas(5, "compute", "host-1");
  auto instance = Hello();
  ASSERT_TRUE(instance->Lookup("compute", /*fresh=*/false).ok());
  v1::LocalRequest request;
  request.set_seq(600);
  request.mutable_lookup()->set_exchange("openstack");
  request.mutable_lookup()->set_topic("compute");
  request.mutable_lookup()->set_fresh(true);
  ASSERT_TRUE(instance->Post(request).ok());
  ASSERT_TRUE(Eventually([&] { return directory_.lookups().size() == 1; }, 2000));
  MirrorHas(7, "compute", "host-2");
  auto push = instance->NextPush(2000);
  ASSERT_TRUE(push.has_value());
  EXPECT_EQ(push->update().revision(), 7);
  // The directory's answer was read before the push's change.
  v1::LookupResult stale;
  stale.set_exchange("openstack");
  stale.set_topic("compute");
  stale.set_revision(6);
  server_->PostLookup(directory_.lookups()[0], stale);
  auto answer = testing::ReceiveWithin(instance->control(), 2000);
  ASSERT_TRUE(answer.has_value());
  v1::LocalResponse response;
  ASSERT_TRUE(response.ParseFromString((*answer)[0]));
  EXPECT_EQ(response.seq(), 600u);
  EXPECT_EQ(response.lookup().revision(), 7);
  EXPECT_EQ(response.lookup().endpoints_size(), 2);
}

TEST_F(ControlServerTest, GarbageOnTheControlSocketIsCounted) {
  FakeInstance instance(context_, dir_.path());
  ASSERT_TRUE(testing::SendStrings(instance.control(), {"\xff\xff\xff"}).ok());
  ASSERT_TRUE(testing::SendStrings(instance.control(), {"a", "b"}).ok());
  ASSERT_TRUE(Eventually([&] { return stats_.control_malformed.load() == 2; }, 2000));
  EXPECT_TRUE(instance.Hello().ok());
}

}  // namespace
}  // namespace zmesh::proxy
