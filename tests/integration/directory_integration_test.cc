// A real zmesh-directory process driven through its gRPC API.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <sqlite3.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/directory_process.h"
#include "tests/support/subprocess.h"
#include "zmesh/directory/v1/cluster.grpc.pb.h"
#include "zmesh/directory/v1/directory.grpc.pb.h"
#include "zmesh/directory/v1/lease.grpc.pb.h"

namespace zmesh {
namespace {

namespace dir = ::zmesh::directory::v1;
using testing::DirectoryProcess;
using testing::Eventually;
using ::testing::HasSubstr;
using testing::TempDir;

// A Watch stream read on its own thread; events are collected for the test to poll.
class WatchStream {
 public:
  WatchStream(dir::Directory::Stub& stub, const dir::WatchRequest& request) {
    reader_ = stub.Watch(&context_, request);
    thread_ = std::thread([this] {
      dir::WatchResponse response;
      while (reader_->Read(&response)) {
        absl::MutexLock lock(&mu_);
        responses_.push_back(response);
      }
      absl::MutexLock lock(&mu_);
      finished_ = true;
    });
  }
  ~WatchStream() {
    context_.TryCancel();
    thread_.join();
    (void)reader_->Finish();
  }
  std::vector<dir::WatchResponse> responses() {
    absl::MutexLock lock(&mu_);
    return responses_;
  }
  std::vector<dir::Event> events() {
    std::vector<dir::Event> all;
    for (const dir::WatchResponse& r : responses()) {
      all.insert(all.end(), r.events().begin(), r.events().end());
    }
    return all;
  }
  bool finished() {
    absl::MutexLock lock(&mu_);
    return finished_;
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<dir::WatchResponse>> reader_;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<dir::WatchResponse> responses_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class DirectoryIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override { StartDaemon({}); }

  void StartDaemon(std::vector<std::string> extra_args) {
    absl::StatusOr<std::unique_ptr<DirectoryProcess>> daemon =
        DirectoryProcess::Start(dir_.path() + "/data", std::move(extra_args));
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    Connect();
  }

  void Connect() {
    channel_ = grpc::CreateChannel(daemon_->address(), grpc::InsecureChannelCredentials());
    directory_ = dir::Directory::NewStub(channel_);
    leases_ = dir::Leases::NewStub(channel_);
    cluster_ = dir::Cluster::NewStub(channel_);
  }

  std::unique_ptr<grpc::ClientContext> Context() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return context;
  }

  grpc::Status RegisterNode(const std::string& name, int64_t lease_id = 0,
                            dir::RegisterNodeResponse* out = nullptr) {
    dir::RegisterNodeRequest request;
    dir::Node* node = request.mutable_node();
    node->set_name(name);
    node->set_host("127.0.0.1");
    node->set_call_port(9501);
    node->set_fanout_port(9502);
    node->set_notify_port(9503);
    node->set_cast_port(9504);
    request.set_lease_id(lease_id);
    dir::RegisterNodeResponse response;
    return directory_->RegisterNode(Context().get(), request, out != nullptr ? out : &response);
  }

  grpc::Status Register(const std::string& topic, const std::string& server,
                        const std::string& node, dir::RegisterResponse* out = nullptr) {
    dir::RegisterRequest request;
    dir::Registration* reg = request.mutable_registration();
    reg->set_exchange("openstack");
    reg->set_topic(topic);
    reg->set_server(server);
    reg->set_kind(dir::KIND_RPC_SERVER);
    reg->set_node(node);
    dir::RegisterResponse response;
    return directory_->Register(Context().get(), request, out != nullptr ? out : &response);
  }

  int64_t Grant(int64_t ttl_ms) {
    dir::GrantRequest request;
    request.set_ttl_ms(ttl_ms);
    dir::GrantResponse response;
    grpc::Status status = leases_->Grant(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.id();
  }

  dir::LookupResponse Lookup(const std::string& topic) {
    dir::LookupRequest request;
    request.set_exchange("openstack");
    request.set_topic(topic);
    dir::LookupResponse response;
    grpc::Status status = directory_->Lookup(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  bool NodeExists(const std::string& name) {
    dir::GetNodeRequest request;
    request.set_name(name);
    dir::GetNodeResponse response;
    return directory_->GetNode(Context().get(), request, &response).ok();
  }

  dir::StatusResponse Status() {
    dir::StatusResponse response;
    grpc::Status status = cluster_->Status(Context().get(), dir::StatusRequest(), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  // Sends raw bytes to a method, as a broken or hostile client would.
  grpc::Status RawCall(const std::string& method, const std::string& bytes,
                       std::string* reply = nullptr) {
    grpc::GenericStub stub(channel_);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    auto context = Context();
    absl::Notification done;
    grpc::Status result;
    stub.UnaryCall(context.get(), method, grpc::StubOptions(), &request, &response,
                   [&](grpc::Status status) {
                     result = std::move(status);
                     done.Notify();
                   });
    done.WaitForNotification();
    if (reply != nullptr && result.ok()) {
      std::vector<grpc::Slice> slices;
      (void)response.Dump(&slices);
      reply->clear();
      for (const grpc::Slice& s : slices) reply->append(s.begin(), s.end());
    }
    return result;
  }

  TempDir dir_;
  std::unique_ptr<DirectoryProcess> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<dir::Directory::Stub> directory_;
  std::unique_ptr<dir::Leases::Stub> leases_;
  std::unique_ptr<dir::Cluster::Stub> cluster_;
};

TEST_F(DirectoryIntegrationTest, RegisterLookupAndStatus) {
  ASSERT_TRUE(RegisterNode("node-1").ok());
  ASSERT_TRUE(RegisterNode("node-2").ok());
  dir::RegisterResponse first;
  ASSERT_TRUE(Register("compute", "compute-1", "node-1", &first).ok());
  EXPECT_TRUE(first.created());
  ASSERT_TRUE(Register("compute", "host@backend", "node-2").ok());
  dir::RegisterResponse again;
  ASSERT_TRUE(Register("compute", "compute-1", "node-1", &again).ok());
  EXPECT_FALSE(again.created());
  EXPECT_EQ(again.revision(), first.revision() + 1);  // unchanged by the duplicate

  dir::LookupResponse found = Lookup("compute");
  ASSERT_EQ(found.endpoints_size(), 2);
  EXPECT_EQ(found.endpoints(1).registration().server(), "host@backend");
  EXPECT_EQ(found.endpoints(1).node().name(), "node-2");
  EXPECT_EQ(found.endpoints(1).node().call_port(), 9501u);

  dir::StatusResponse status = Status();
  EXPECT_EQ(status.role(), dir::ROLE_LEADER);
  EXPECT_EQ(status.nodes(), 2);
  EXPECT_EQ(status.registrations(), 2);
  EXPECT_EQ(status.revision(), found.revision());
  EXPECT_GT(status.db_size_bytes(), 0);
  EXPECT_FALSE(status.version().empty());
}

TEST_F(DirectoryIntegrationTest, ServesHealthAndReflection) {
  std::string reply;
  // grpc.health.v1.HealthCheckRequest{} is empty; SERVING is status = 1 (bytes 08 01).
  grpc::Status health = RawCall("/grpc.health.v1.Health/Check", "", &reply);
  ASSERT_TRUE(health.ok()) << health.error_message();
  EXPECT_EQ(reply, std::string("\x08\x01", 2));

  // ServerReflectionRequest{list_services: ""} (field 7) on the bidi stream.
  grpc::GenericStub stub(channel_);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  auto step = [&](int expected) {
    ASSERT_TRUE(cq.Next(&tag, &ok));
    ASSERT_EQ(tag, reinterpret_cast<void*>(expected));
  };
  call->StartCall(reinterpret_cast<void*>(1));
  step(1);
  grpc::Slice slice(std::string("\x3a\x00", 2));
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, reinterpret_cast<void*>(2));
  step(2);
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(3));
  step(3);
  ASSERT_TRUE(ok);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(s.begin(), s.end());
  EXPECT_THAT(bytes, HasSubstr("zmesh.directory.v1.Directory"));
  EXPECT_THAT(bytes, HasSubstr("zmesh.directory.v1.Leases"));
  EXPECT_THAT(bytes, HasSubstr("zmesh.directory.v1.Cluster"));
  context.TryCancel();
  grpc::Status finish;
  call->Finish(&finish, reinterpret_cast<void*>(4));
  step(4);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_F(DirectoryIntegrationTest, LeaseExpiryRemovesNodeAndRegistrationsAndNotifiesWatchers) {
  const int64_t lease = Grant(300);
  ASSERT_TRUE(RegisterNode("node-1", lease).ok());
  ASSERT_TRUE(RegisterNode("node-2").ok());  // permanent
  ASSERT_TRUE(Register("compute", "c1", "node-1").ok());
  ASSERT_TRUE(Register("scheduler", "s1", "node-1").ok());
  ASSERT_TRUE(Register("compute", "c2", "node-2").ok());

  dir::WatchRequest request;
  request.set_include_nodes(true);
  WatchStream watch(*directory_, request);
  ASSERT_TRUE(Eventually([&] { return !watch.responses().empty(); }));  // watch established

  ASSERT_TRUE(Eventually([&] { return !NodeExists("node-1"); }, 5000));
  ASSERT_TRUE(Eventually([&] { return watch.events().size() >= 3; }, 5000));
  std::vector<dir::Event> events = watch.events();
  ASSERT_EQ(events.size(), 3u);
  for (const dir::Event& event : events) {
    EXPECT_EQ(event.type(), dir::Event::TYPE_DELETE);
    EXPECT_EQ(event.revision(), events[0].revision());  // one atomic step
  }
  EXPECT_EQ(events[2].node().name(), "node-1");
  EXPECT_TRUE(NodeExists("node-2"));
  ASSERT_EQ(Lookup("compute").endpoints_size(), 1);
  EXPECT_EQ(Lookup("scheduler").endpoints_size(), 0);

  // The lease is gone: renewing it gets an error on the stream, which stays usable.
  grpc::ClientContext context;
  auto stream = leases_->KeepAlive(&context);
  dir::KeepAliveRequest renew;
  renew.set_id(lease);
  dir::KeepAliveResponse reply;
  ASSERT_TRUE(stream->Write(renew));
  ASSERT_TRUE(stream->Read(&reply));
  EXPECT_EQ(reply.ttl_ms(), 0);
  EXPECT_THAT(reply.error(), HasSubstr(absl::StrCat("lease ", lease)));
  const int64_t live = Grant(5000);
  renew.set_id(live);
  ASSERT_TRUE(stream->Write(renew));
  ASSERT_TRUE(stream->Read(&reply));
  EXPECT_EQ(reply.ttl_ms(), 5000);
  EXPECT_TRUE(reply.error().empty());
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(DirectoryIntegrationTest, KeepAliveHoldsALeasePastItsTtl) {
  const int64_t lease = Grant(400);
  ASSERT_TRUE(RegisterNode("node-1", lease).ok());
  grpc::ClientContext context;
  auto stream = leases_->KeepAlive(&context);
  // Renew every 100 ms for 1.2 s (three TTLs): the renewal cadence is the workload here.
  for (int i = 0; i < 12; ++i) {
    dir::KeepAliveRequest renew;
    renew.set_id(lease);
    dir::KeepAliveResponse reply;
    ASSERT_TRUE(stream->Write(renew));
    ASSERT_TRUE(stream->Read(&reply));
    ASSERT_EQ(reply.ttl_ms(), 400) << reply.error();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(NodeExists("node-1"));
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_TRUE(Eventually([&] { return !NodeExists("node-1"); }, 5000));
}

TEST_F(DirectoryIntegrationTest, RevokeDeletesAtOnce) {
  const int64_t lease = Grant(60000);
  ASSERT_TRUE(RegisterNode("node-1", lease).ok());
  dir::RevokeRequest request;
  request.set_id(lease);
  dir::RevokeResponse response;
  ASSERT_TRUE(leases_->Revoke(Context().get(), request, &response).ok());
  EXPECT_THAT(response.nodes_deleted(), ::testing::ElementsAre("node-1"));
  EXPECT_FALSE(NodeExists("node-1"));
  grpc::Status again = leases_->Revoke(Context().get(), request, &response);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(DirectoryIntegrationTest, WatchFromOldRevisionSeesEveryEvent) {
  const int64_t base = Status().revision();  // the replica's own membership record
  ASSERT_TRUE(RegisterNode("node-1").ok());
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(Register("compute", absl::StrCat("c", i), "node-1").ok());
  }
  dir::WatchRequest request;
  request.set_start_revision(1);
  request.set_include_nodes(true);
  WatchStream watch(*directory_, request);
  ASSERT_TRUE(Eventually([&] { return watch.events().size() >= 21; }));
  ASSERT_TRUE(Register("compute", "late", "node-1").ok());
  ASSERT_TRUE(Eventually([&] { return watch.events().size() >= 22; }));
  std::vector<dir::Event> events = watch.events();
  ASSERT_EQ(events.size(), 22u);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].revision(), base + static_cast<int64_t>(i) + 1);
    EXPECT_EQ(events[i].type(), dir::Event::TYPE_PUT);
  }
  EXPECT_FALSE(watch.responses()[0].snapshot());
}

TEST_F(DirectoryIntegrationTest, WatchOlderThanHistoryStartsWithSnapshot) {
  ASSERT_TRUE(daemon_->Stop().ok());
  daemon_.reset();
  StartDaemon({"--history-revisions", "5"});
  ASSERT_TRUE(RegisterNode("node-1").ok());
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(Register("compute", absl::StrCat("c", i), "node-1").ok());
  }
  dir::UnregisterRequest unregister;
  *unregister.mutable_registration() = Lookup("compute").endpoints(0).registration();
  dir::UnregisterResponse unregistered;
  ASSERT_TRUE(directory_->Unregister(Context().get(), unregister, &unregistered).ok());

  dir::WatchRequest request;
  request.set_start_revision(1);
  WatchStream watch(*directory_, request);
  ASSERT_TRUE(Eventually([&] {
    auto r = watch.responses();
    return !r.empty() && r.back().snapshot_end();
  }));
  std::vector<dir::WatchResponse> responses = watch.responses();
  EXPECT_TRUE(responses[0].snapshot());
  EXPECT_EQ(responses[0].revision(), unregistered.revision());
  EXPECT_GE(responses[0].compact_revision(), 1);
  EXPECT_EQ(watch.events().size(), 9u);  // the registrations that exist now
  ASSERT_TRUE(Register("compute", "after", "node-1").ok());
  ASSERT_TRUE(Eventually([&] { return watch.events().size() == 10; }));
  EXPECT_FALSE(watch.responses().back().snapshot());
}

TEST_F(DirectoryIntegrationTest, RestartKeepsStateAndGivesLeasesAFreshTtl) {
  const int64_t lease = Grant(3000);
  ASSERT_TRUE(RegisterNode("node-1", lease).ok());
  ASSERT_TRUE(RegisterNode("node-2").ok());
  ASSERT_TRUE(Register("compute", "c1", "node-1").ok());
  ASSERT_TRUE(Register("compute", "c2", "node-2").ok());
  const int64_t revision = Status().revision();

  ASSERT_TRUE(daemon_->Stop().ok());  // SIGTERM: clean exit
  ASSERT_TRUE(daemon_->Restart().ok());
  Connect();
  // Only the replica's own address record may have changed (a new port).
  EXPECT_GE(Status().revision(), revision);
  EXPECT_EQ(Lookup("compute").endpoints_size(), 2);
  dir::TimeToLiveRequest ttl_request;
  ttl_request.set_id(lease);
  dir::TimeToLiveResponse ttl;
  ASSERT_TRUE(leases_->TimeToLive(Context().get(), ttl_request, &ttl).ok());
  EXPECT_GT(ttl.lease().remaining_ms(), 2000);
  EXPECT_THAT(ttl.lease().nodes(), ::testing::ElementsAre("node-1"));

  // SIGKILL right after acknowledged writes: they are durable.
  ASSERT_TRUE(Register("compute", "c3", "node-2").ok());
  daemon_->Kill();
  ASSERT_TRUE(daemon_->Restart().ok());
  Connect();
  EXPECT_EQ(Lookup("compute").endpoints_size(), 3);
  // The lease still expires after its (fresh) TTL.
  EXPECT_TRUE(Eventually([&] { return !NodeExists("node-1"); }, 10000));
}

TEST_F(DirectoryIntegrationTest, BadInputGetsClearErrorsAndHarmsNothing) {
  ASSERT_TRUE(RegisterNode("node-1").ok());

  dir::RegisterNodeRequest bad_node;
  bad_node.mutable_node()->set_name("node\x01x");
  dir::RegisterNodeResponse node_response;
  grpc::Status status = directory_->RegisterNode(Context().get(), bad_node, &node_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("node.name"));

  grpc::Status unknown_lease = RegisterNode("node-2", 424242);
  EXPECT_EQ(unknown_lease.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(unknown_lease.error_message(), HasSubstr("lease 424242"));

  grpc::Status unknown_node = Register("compute", "c1", "ghost");
  EXPECT_EQ(unknown_node.error_code(), grpc::StatusCode::NOT_FOUND);

  dir::GrantRequest bad_ttl;
  bad_ttl.set_ttl_ms(1);
  dir::GrantResponse grant;
  status = leases_->Grant(Context().get(), bad_ttl, &grant);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("ttl_ms"));

  // Bytes that are not a protobuf message.
  grpc::Status garbage =
      RawCall("/zmesh.directory.v1.Directory/Register", std::string("\xff\xff\xff\xff\x0f", 5));
  EXPECT_FALSE(garbage.ok());
  EXPECT_NE(garbage.error_code(), grpc::StatusCode::UNAVAILABLE);

  // A request over the 1 MiB limit.
  dir::RegisterRequest huge;
  huge.mutable_registration()->set_topic(std::string(2 << 20, 'x'));
  dir::RegisterResponse reg_response;
  status = directory_->Register(Context().get(), huge, &reg_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  // An unknown method.
  EXPECT_EQ(RawCall("/zmesh.directory.v1.Directory/Nope", "").error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  // Still serving, state intact.
  EXPECT_TRUE(NodeExists("node-1"));
  ASSERT_TRUE(Register("compute", "c1", "node-1").ok());
  EXPECT_EQ(Lookup("compute").endpoints_size(), 1);
  EXPECT_TRUE(daemon_->running());
}

TEST_F(DirectoryIntegrationTest, SecondDaemonOnTheSameDataDirIsRefused) {
  absl::StatusOr<testing::CommandResult> second =
      testing::RunCommand({testing::BinPath("zmesh-directory"), "--data-dir", daemon_->data_dir(),
                           "--listen", "127.0.0.1:0"},
                          10000);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->exit_code, 1);
  EXPECT_THAT(second->err, HasSubstr("in use by another zmesh-directory"));
  EXPECT_TRUE(NodeExists("node-x") == false);
  EXPECT_TRUE(daemon_->running());
}

// What an operator does with `sqlite3 directory.db ".backup FILE"` and --restore-backup.
TEST_F(DirectoryIntegrationTest, RestoreFromBackupStartsANewClusterWithTheState) {
  ASSERT_TRUE(RegisterNode("node-1").ok());
  ASSERT_TRUE(Register("compute", "c1", "node-1").ok());
  const std::string backup = dir_.path() + "/backup.db";
  {
    sqlite3* source = nullptr;
    sqlite3* target = nullptr;
    ASSERT_EQ(sqlite3_open_v2((daemon_->data_dir() + "/directory.db").c_str(), &source,
                              SQLITE_OPEN_READONLY, nullptr),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_open(backup.c_str(), &target), SQLITE_OK);
    sqlite3_backup* copy = sqlite3_backup_init(target, "main", source, "main");
    ASSERT_NE(copy, nullptr);
    EXPECT_EQ(sqlite3_backup_step(copy, -1), SQLITE_DONE);
    sqlite3_backup_finish(copy);
    sqlite3_close(source);
    sqlite3_close(target);
  }
  ASSERT_TRUE(daemon_->Stop().ok());

  const std::string restored = dir_.path() + "/restored";
  absl::StatusOr<testing::CommandResult> restore = testing::RunCommand(
      {testing::BinPath("zmesh-directory"), "--data-dir", restored, "--restore-backup", backup});
  ASSERT_TRUE(restore.ok());
  ASSERT_EQ(restore->exit_code, 0) << restore->err;
  daemon_.reset();
  absl::StatusOr<std::unique_ptr<DirectoryProcess>> daemon = DirectoryProcess::Start(restored);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  daemon_ = *std::move(daemon);
  Connect();
  EXPECT_EQ(Lookup("compute").endpoints_size(), 1);
  // New writes are applied (the restored store does not skip the new log's indexes).
  ASSERT_TRUE(Register("compute", "c2", "node-1").ok());
  EXPECT_EQ(Lookup("compute").endpoints_size(), 2);

  // Restoring into a data dir that has a Raft log is refused.
  absl::StatusOr<testing::CommandResult> again = testing::RunCommand(
      {testing::BinPath("zmesh-directory"), "--data-dir", restored, "--restore-backup", backup});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->exit_code, 1);
  EXPECT_THAT(again->err, HasSubstr("needs an empty data dir"));
}

TEST_F(DirectoryIntegrationTest, BadFlagsFailWithAClearMessage) {
  absl::StatusOr<testing::CommandResult> no_dir =
      testing::RunCommand({testing::BinPath("zmesh-directory")}, 10000);
  ASSERT_TRUE(no_dir.ok());
  EXPECT_EQ(no_dir->exit_code, 1);
  EXPECT_THAT(no_dir->err, HasSubstr("--data-dir is required"));

  absl::StatusOr<testing::CommandResult> bad_listen =
      testing::RunCommand({testing::BinPath("zmesh-directory"), "--data-dir",
                           dir_.path() + "/other", "--listen", "not-an-address"},
                          10000);
  ASSERT_TRUE(bad_listen.ok());
  EXPECT_EQ(bad_listen->exit_code, 1);
  EXPECT_THAT(bad_listen->err, HasSubstr("cannot listen on not-an-address"));
}

}  // namespace
}  // namespace zmesh
