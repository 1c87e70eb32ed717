// zmesh-proxy as a real process against a real zmesh-directory, driven with raw ZeroMQ sockets
// standing in for local instances and remote callers.
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "controlplane/client/directory_client.h"
#include "dataplane/wire/envelope.h"
#include "tests/dataplane/proxy/test_peers.h"
#include "tests/support/directory_process.h"
#include "tests/support/proxy_process.h"
#include "tests/support/subprocess.h"

namespace zmesh::proxy::testing {
namespace {

namespace v1 = ::zmesh::wire::v1;
namespace dv1 = ::zmesh::directory::v1;
using ::zmesh::testing::DirectoryProcess;
using ::zmesh::testing::Eventually;
using ::zmesh::testing::ProxyProcess;
using ::zmesh::testing::ProxyProcessOptions;
using ::zmesh::testing::TempDir;

class ProxyIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<DirectoryProcess>> dir =
        DirectoryProcess::Start(tmp_.path() + "/dir");
    ASSERT_TRUE(dir.ok()) << dir.status();
    directory_ = *std::move(dir);
    client::DirectoryClientOptions options;
    options.addresses = {directory_->address()};
    options.request_timeout_ms = 2000;
    auto created = client::DirectoryClient::Create(options);
    ASSERT_TRUE(created.ok()) << created.status();
    client_ = *std::move(created);
  }

  ProxyProcessOptions Options(const std::string& node, int64_t instance_timeout_ms) {
    ProxyProcessOptions options;
    options.directory = directory_->address();
    options.node_name = node;
    options.ipc_dir = tmp_.path() + "/" + node;
    options.lease_ttl_ms = 2000;
    options.instance_timeout_ms = instance_timeout_ms;
    return options;
  }

  // Instances here ping only between requests: tests that wait long on one request use a
  // longer instance timeout.
  std::unique_ptr<ProxyProcess> StartProxy(const std::string& node,
                                           int64_t instance_timeout_ms = 600) {
    absl::StatusOr<std::unique_ptr<ProxyProcess>> proxy =
        ProxyProcess::Start(Options(node, instance_timeout_ms));
    EXPECT_TRUE(proxy.ok()) << proxy.status();
    return proxy.ok() ? *std::move(proxy) : nullptr;
  }

  // Registrations of `node` in the directory; empty on error.
  std::vector<dv1::Registration> RegistrationsOf(const std::string& node) {
    dv1::GetNodeRequest request;
    request.set_name(node);
    auto got = client_->GetNode(request);
    if (!got.ok()) return {};
    return {got->registrations().begin(), got->registrations().end()};
  }
  bool NodeExists(const std::string& node) {
    dv1::GetNodeRequest request;
    request.set_name(node);
    return client_->GetNode(request).ok();
  }

  // A local instance that said hello, attached and announced (topic, server).
  std::unique_ptr<FakeInstance> ServingInstance(const ProxyProcess& proxy, const std::string& topic,
                                                const std::string& server) {
    auto instance = std::make_unique<FakeInstance>(context_, proxy.ipc_dir());
    auto welcome = instance->Hello();
    EXPECT_TRUE(welcome.ok()) << welcome.status();
    EXPECT_TRUE(instance->Attach().ok());
    auto announced = instance->Announce(RpcServer(topic, server));
    EXPECT_TRUE(announced.ok()) << announced.status();
    if (announced.ok()) {
      EXPECT_EQ(announced->code(), 0) << announced->message();
    }
    return instance;
  }

  // Answers one CALL on the instance's call socket with `reply`; false if none came.
  static bool AnswerOneCall(FakeInstance& instance, const std::string& reply) {
    std::optional<Frames> call = ReceiveWithin(instance.data(Pattern::kCall), 5000);
    if (!call.has_value() || call->size() != 3) return false;
    v1::Header request;
    if (!request.ParseFromString((*call)[1])) return false;
    v1::Header answer;
    answer.set_kind(v1::KIND_REPLY);
    answer.set_message_id(request.message_id());
    answer.set_status(v1::STATUS_OK);
    return SendStrings(instance.data(Pattern::kCall),
                       {(*call)[0], wire::EncodeHeader(answer), reply + (*call)[2]})
        .ok();
  }

  TempDir tmp_;
  zmq::context_t context_{1};
  std::unique_ptr<DirectoryProcess> directory_;
  std::unique_ptr<client::DirectoryClient> client_;
};

TEST_F(ProxyIntegrationTest, NodeIsRegisteredWithItsActualPorts) {
  std::unique_ptr<ProxyProcess> proxy = StartProxy("node-a");
  ASSERT_NE(proxy, nullptr);
  dv1::GetNodeRequest request;
  request.set_name("node-a");
  auto node = client_->GetNode(request);
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ(node->node().host(), "127.0.0.1");
  EXPECT_EQ(static_cast<int>(node->node().call_port()), proxy->call_port());
  EXPECT_EQ(static_cast<int>(node->node().cast_port()), proxy->cast_port());
  EXPECT_NE(node->node().lease_id(), 0);
  ASSERT_TRUE(proxy->Stop().ok());
}

TEST_F(ProxyIntegrationTest, AnnouncedServerIsRegisteredAndCallsReachIt) {
  std::unique_ptr<ProxyProcess> proxy = StartProxy("node-a");
  ASSERT_NE(proxy, nullptr);
  std::unique_ptr<FakeInstance> instance = ServingInstance(*proxy, "compute", "host-1");

  std::vector<dv1::Registration> registrations = RegistrationsOf("node-a");
  ASSERT_EQ(registrations.size(), 1u);
  EXPECT_EQ(registrations[0].topic(), "compute");
  EXPECT_EQ(registrations[0].server(), "host-1");
  EXPECT_EQ(registrations[0].node(), "node-a");

  NetworkPeer caller(context_, proxy->call_port());
  ASSERT_TRUE(caller.Send(MakeHeader(v1::KIND_CALL, 7, "compute", "host-1"), "ping").ok());
  ASSERT_TRUE(AnswerOneCall(*instance, "pong:"));
  auto reply = caller.Receive(5000);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->first.kind(), v1::KIND_REPLY);
  EXPECT_EQ(reply->first.message_id(), 7u);
  EXPECT_EQ(reply->first.status(), v1::STATUS_OK);
  EXPECT_EQ(reply->second, "pong:ping");
  ASSERT_TRUE(proxy->Stop().ok());
}

TEST_F(ProxyIntegrationTest, LookupSeesRegistrationsOfOtherNodesAndPushesChanges) {
  std::unique_ptr<ProxyProcess> a = StartProxy("node-a");
  std::unique_ptr<ProxyProcess> b = StartProxy("node-b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  FakeInstance client(context_, a->ipc_dir());
  ASSERT_TRUE(client.Hello().ok());
  auto first = client.Lookup("compute", /*fresh=*/true);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->lookup().endpoints_size(), 0);

  std::unique_ptr<FakeInstance> server = ServingInstance(*b, "compute", "host-b");
  // The change reaches the subscriber as a push while it keeps pinging.
  std::optional<v1::LocalResponse> update;
  ASSERT_TRUE(Eventually(
      [&] {
        (void)client.Ping();
        (void)server->Ping();
        update = client.NextPush(50);
        return update.has_value();
      },
      5000));
  ASSERT_EQ(update->update().endpoints_size(), 1);
  EXPECT_EQ(update->update().endpoints(0).node().name(), "node-b");
  EXPECT_EQ(static_cast<int>(update->update().endpoints(0).node().call_port()), b->call_port());
  EXPECT_GT(update->update().revision(), first->lookup().revision());

  auto again = client.Lookup("compute", /*fresh=*/true);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->lookup().from_cache());
  EXPECT_EQ(again->lookup().endpoints_size(), 1);
}

TEST_F(ProxyIntegrationTest, SilentInstanceIsDroppedAndItsRegistrationWithdrawn) {
  std::unique_ptr<ProxyProcess> proxy = StartProxy("node-a");
  ASSERT_NE(proxy, nullptr);
  std::unique_ptr<FakeInstance> instance = ServingInstance(*proxy, "compute", "host-1");
  ASSERT_EQ(RegistrationsOf("node-a").size(), 1u);
  // No more pings: gone after the instance timeout (600 ms).
  EXPECT_TRUE(Eventually([&] { return RegistrationsOf("node-a").empty(); }, 5000));
  auto pong = instance->Ping();
  ASSERT_TRUE(pong.ok());
  EXPECT_FALSE(pong->pong().known());
  NetworkPeer caller(context_, proxy->call_port());
  ASSERT_TRUE(caller.Send(MakeHeader(v1::KIND_CALL, 9, "compute", "host-1"), "x").ok());
  auto reply = caller.Receive(5000);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->first.status(), v1::STATUS_NO_SUCH_TARGET);
}

TEST_F(ProxyIntegrationTest, TwoInstancesShareOneRegistration) {
  std::unique_ptr<ProxyProcess> proxy = StartProxy("node-a");
  ASSERT_NE(proxy, nullptr);
  std::unique_ptr<FakeInstance> one = ServingInstance(*proxy, "compute", "host-1");
  std::unique_ptr<FakeInstance> two = ServingInstance(*proxy, "compute", "host-1");
  ASSERT_EQ(RegistrationsOf("node-a").size(), 1u);
  auto withdrawn = one->Withdraw(RpcServer("compute", "host-1"));
  ASSERT_TRUE(withdrawn.ok());
  ASSERT_TRUE(two->Ping().ok());
  EXPECT_EQ(RegistrationsOf("node-a").size(), 1u);
  ASSERT_TRUE(two->Withdraw(RpcServer("compute", "host-1")).ok());
  EXPECT_TRUE(Eventually([&] { return RegistrationsOf("node-a").empty(); }, 3000));
}

TEST_F(ProxyIntegrationTest, StoppedProxyRevokesItsLeaseAtOnce) {
  std::unique_ptr<ProxyProcess> proxy = StartProxy("node-a");
  ASSERT_NE(proxy, nullptr);
  ASSERT_TRUE(proxy->Stop().ok());
  EXPECT_FALSE(NodeExists("node-a"));
  EXPECT_FALSE(std::filesystem::exists(proxy->ipc_dir() + "/control.sock"));
}

TEST_F(ProxyIntegrationTest, KilledProxyDisappearsAfterItsLeaseTtl) {
  std::unique_ptr<ProxyProcess> proxy = StartProxy("node-a");
  ASSERT_NE(proxy, nullptr);
  std::unique_ptr<FakeInstance> instance = ServingInstance(*proxy, "compute", "host-1");
  proxy->Kill();
  EXPECT_TRUE(NodeExists("node-a"));
  EXPECT_TRUE(Eventually([&] { return !NodeExists("node-a"); }, 8000));
  dv1::LookupRequest lookup;
  lookup.set_exchange("openstack");
  lookup.set_topic("compute");
  auto found = client_->Lookup(lookup);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->endpoints_size(), 0);
}

TEST_F(ProxyIntegrationTest, RestartedProxyDoesNotKnowOldInstancesAndDropsStaleRegistrations) {
  std::unique_ptr<ProxyProcess> proxy = StartProxy("node-a");
  ASSERT_NE(proxy, nullptr);
  std::unique_ptr<FakeInstance> instance = ServingInstance(*proxy, "compute", "host-1");
  auto before = instance->Ping();
  ASSERT_TRUE(before.ok());
  proxy->Kill();
  ASSERT_TRUE(proxy->Restart().ok());
  auto after = instance->Ping();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_FALSE(after->pong().known());
  EXPECT_NE(after->pong().incarnation(), before->pong().incarnation());
  // Nobody announces host-1 again: the restarted proxy removes it (2 x instance timeout).
  EXPECT_TRUE(Eventually([&] { return RegistrationsOf("node-a").empty(); }, 8000));
  EXPECT_TRUE(NodeExists("node-a"));
}

TEST_F(ProxyIntegrationTest, CallsKeepFlowingWithTheDirectoryDown) {
  std::unique_ptr<ProxyProcess> proxy = StartProxy("node-a", 5000);
  ASSERT_NE(proxy, nullptr);
  std::unique_ptr<FakeInstance> instance = ServingInstance(*proxy, "compute", "host-1");
  directory_->Kill();
  NetworkPeer caller(context_, proxy->call_port());
  for (uint64_t id = 1; id <= 3; ++id) {
    ASSERT_TRUE(caller.Send(MakeHeader(v1::KIND_CALL, id, "compute", "host-1"), "p").ok());
    ASSERT_TRUE(AnswerOneCall(*instance, "r"));
    auto reply = caller.Receive(5000);
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->first.message_id(), id);
    EXPECT_EQ(reply->second, "rp");
    ASSERT_TRUE(instance->Ping().ok());
  }
  // Announcing while the directory is down: UNAVAILABLE, but delivered locally at once.
  auto announced = instance->Announce(RpcServer("compute", "host-2"), 6000);
  ASSERT_TRUE(announced.ok()) << announced.status();
  EXPECT_EQ(announced->code(), static_cast<int>(absl::StatusCode::kUnavailable));
  ASSERT_TRUE(caller.Send(MakeHeader(v1::KIND_CALL, 10, "compute", "host-2"), "p").ok());
  ASSERT_TRUE(AnswerOneCall(*instance, "r"));
  EXPECT_TRUE(caller.Receive(5000).has_value());
  auto pong = instance->Ping();
  ASSERT_TRUE(pong.ok());
  EXPECT_FALSE(pong->pong().directory_connected());
  ASSERT_TRUE(proxy->Stop().ok());
}

TEST_F(ProxyIntegrationTest, PendingAnnounceIsRegisteredWhenTheDirectoryIsBack) {
  std::unique_ptr<ProxyProcess> proxy = StartProxy("node-a", 5000);
  ASSERT_NE(proxy, nullptr);
  const std::string address = directory_->address();
  const std::string data_dir = directory_->data_dir();
  FakeInstance instance(context_, proxy->ipc_dir());
  ASSERT_TRUE(instance.Hello().ok());
  ASSERT_TRUE(instance.Attach().ok());
  directory_->Kill();
  auto announced = instance.Announce(RpcServer("compute", "host-1"), 6000);
  ASSERT_TRUE(announced.ok());
  EXPECT_EQ(announced->code(), static_cast<int>(absl::StatusCode::kUnavailable));
  ASSERT_TRUE(instance.Ping().ok());
  // Back on the same address and data.
  auto back = DirectoryProcess::Start(data_dir, {"--listen", address});
  ASSERT_TRUE(back.ok()) << back.status();
  directory_ = *std::move(back);
  EXPECT_TRUE(Eventually(
      [&] {
        (void)instance.Ping();
        return RegistrationsOf("node-a").size() == 1;
      },
      10000));
  ASSERT_TRUE(proxy->Stop().ok());
}

TEST_F(ProxyIntegrationTest, LostLeaseIsReplacedAndEverythingRegisteredAgain) {
  std::unique_ptr<ProxyProcess> proxy = StartProxy("node-a", 5000);
  ASSERT_NE(proxy, nullptr);
  std::unique_ptr<FakeInstance> instance = ServingInstance(*proxy, "compute", "host-1");
  dv1::GetNodeRequest get;
  get.set_name("node-a");
  auto before = client_->GetNode(get);
  ASSERT_TRUE(before.ok());
  dv1::RevokeRequest revoke;
  revoke.set_id(before->node().lease_id());
  ASSERT_TRUE(client_->Revoke(revoke).ok());
  EXPECT_FALSE(NodeExists("node-a"));
  int64_t new_lease = 0;
  EXPECT_TRUE(Eventually(
      [&] {
        (void)instance->Ping();
        auto after = client_->GetNode(get);
        if (!after.ok() || after->registrations_size() != 1) return false;
        new_lease = after->node().lease_id();
        return true;
      },
      8000));
  EXPECT_NE(new_lease, before->node().lease_id());
  ASSERT_TRUE(proxy->Stop().ok());
}

TEST_F(ProxyIntegrationTest, GarbageOnTheNetworkIsRefusedAndTheProxyKeepsServing) {
  std::unique_ptr<ProxyProcess> proxy = StartProxy("node-a");
  ASSERT_NE(proxy, nullptr);
  std::unique_ptr<FakeInstance> instance = ServingInstance(*proxy, "compute", "host-1");
  NetworkPeer caller(context_, proxy->call_port());
  ASSERT_TRUE(caller.SendRaw({"garbage"}).ok());
  ASSERT_TRUE(caller.SendRaw({"\xff\xff\xff", "x", "y", "z", "w"}).ok());
  v1::Header wrong_version = MakeHeader(v1::KIND_CALL, 5, "compute", "host-1");
  wrong_version.set_version(static_cast<v1::Version>(7));
  ASSERT_TRUE(caller.Send(wrong_version, "x").ok());
  auto refused = caller.Receive(5000);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->first.message_id(), 5u);
  EXPECT_EQ(refused->first.status(), v1::STATUS_BAD_MESSAGE);
  EXPECT_EQ(refused->first.node(), "node-a");

  ASSERT_TRUE(caller.Send(MakeHeader(v1::KIND_CALL, 6, "compute", "nobody"), "x").ok());
  auto unknown = caller.Receive(5000);
  ASSERT_TRUE(unknown.has_value());
  EXPECT_EQ(unknown->first.status(), v1::STATUS_NO_SUCH_TARGET);

  // Raw bytes that are not ZMTP at all on another port.
  {
    NetworkPeer garbage(context_, proxy->cast_port());
    ASSERT_TRUE(garbage.SendRaw({std::string(100, '\0')}).ok());
  }
  ASSERT_TRUE(caller.Send(MakeHeader(v1::KIND_CALL, 8, "compute", "host-1"), "ok").ok());
  ASSERT_TRUE(AnswerOneCall(*instance, ""));
  auto reply = caller.Receive(5000);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->first.message_id(), 8u);
  ASSERT_TRUE(proxy->Stop().ok());
}

TEST_F(ProxyIntegrationTest, ComesUpWithoutTheDirectoryAndGetsReadyWhenItArrives) {
  const std::string address = directory_->address();
  const std::string data_dir = directory_->data_dir();
  directory_->Kill();
  const std::string ipc = tmp_.path() + "/lonely";
  std::filesystem::create_directories(ipc);
  const std::string ready = ipc + "/ready";
  auto process = ::zmesh::testing::Subprocess::Start({::zmesh::testing::BinPath("zmesh-proxy"),
                                                      "--directory",
                                                      address,
                                                      "--node-name",
                                                      "lonely",
                                                      "--advertise-host",
                                                      "127.0.0.1",
                                                      "--bind",
                                                      "127.0.0.1",
                                                      "--ipc-dir",
                                                      ipc,
                                                      "--call-port",
                                                      "0",
                                                      "--fanout-port",
                                                      "0",
                                                      "--notify-port",
                                                      "0",
                                                      "--cast-port",
                                                      "0",
                                                      "--instance-timeout-ms",
                                                      "5000",
                                                      "--ready-file",
                                                      ready},
                                                     ipc + "/log", ipc + "/log");
  ASSERT_TRUE(process.ok()) << process.status();
  FakeInstance instance(context_, ipc);
  ASSERT_TRUE(instance.Hello().ok()) << ::zmesh::testing::TailFile(ipc + "/log");
  ASSERT_TRUE(instance.Attach().ok());
  auto announced = instance.Announce(RpcServer("compute", "host-1"), 6000);
  ASSERT_TRUE(announced.ok());
  EXPECT_EQ(announced->code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(std::filesystem::exists(ready));

  auto back = DirectoryProcess::Start(data_dir, {"--listen", address});
  ASSERT_TRUE(back.ok()) << back.status();
  directory_ = *std::move(back);
  EXPECT_TRUE(Eventually(
      [&] {
        (void)instance.Ping();
        return std::filesystem::exists(ready) && RegistrationsOf("lonely").size() == 1;
      },
      10000))
      << ::zmesh::testing::TailFile(ipc + "/log");
  (*process)->Signal(SIGTERM);
  auto status = (*process)->Wait(10000);
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  EXPECT_FALSE(NodeExists("lonely"));
}

TEST_F(ProxyIntegrationTest, BadFlagsExitWithStatusTwo) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--no-such-flag"},
           {"--directory", directory_->address(), "--call-port", "70000"},
           {"--directory", directory_->address(), "--call-port", "abc"},
           {"--call-port", "0"},
           {"--directory", "not an address"}}) {
    std::vector<std::string> argv = {::zmesh::testing::BinPath("zmesh-proxy")};
    argv.insert(argv.end(), args.begin(), args.end());
    auto result = ::zmesh::testing::RunCommand(argv, 10000);
    ASSERT_TRUE(result.ok());
    EXPECT_EQ(result->exit_code, 2) << args[0] << ": " << result->err;
    EXPECT_FALSE(result->err.empty());
  }
}

}  // namespace
}  // namespace zmesh::proxy::testing
