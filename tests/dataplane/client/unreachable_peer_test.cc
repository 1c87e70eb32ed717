// libzmesh against a group member whose node never answers: a node registered by hand (as
// `zmeshctl nodes register` / `topics register` do) at an address whose TCP SYNs are silently
// dropped, next to one real server. Nothing sent to the group may be lost or arrive twice, and
// calls must not wait for their deadline.
//
// Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN): the test process moves into a network namespace of
// its own (every child inherits it; it vanishes with them) holding a veth pair where
// kDeadHost has a permanent neighbour entry with a MAC nobody owns, so SYNs to it go out and are
// never answered (no RST, no ICMP), like a blackholed or powered-off host. Skipped otherwise.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/client/directory_client.h"
#include "tests/dataplane/client/recorder.h"
#include "tests/support/directory_process.h"
#include "tests/support/netns.h"
#include "tests/support/proxy_process.h"
#include "tests/support/subprocess.h"
#include "zmesh/notification_listener.h"
#include "zmesh/server.h"
#include "zmesh/transport.h"

namespace zmesh {
namespace {

using ::zmesh::testing::DirectoryProcess;
using ::zmesh::testing::Eventually;
using ::zmesh::testing::Ip;
using ::zmesh::testing::ProxyProcess;
using ::zmesh::testing::ProxyProcessOptions;
using ::zmesh::testing::Recorder;
using ::zmesh::testing::TempDir;

constexpr char kDeadHost[] = "10.254.0.2";
// Dead like kDeadHost until a test brings it to life (an address on lo, a proxy on it).
constexpr char kRevivedHost[] = "10.254.0.3";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Moves the process (its only thread, before any library starts threads) into a new network
// namespace with loopback up and kDeadHost silently dropping everything sent to it.
absl::Status EnterLab() {
  if (unshare(CLONE_NEWNET) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("unshare(CLONE_NEWNET): ", strerror(errno)));
  }
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"link", "set", "lo", "up"},
           {"link", "add", "zmdead0", "type", "veth", "peer", "name", "zmdead1"},
           {"addr", "add", "10.254.0.1/24", "dev", "zmdead0"},
           {"link", "set", "zmdead0", "up"},
           {"link", "set", "zmdead1", "up"},
           // Frames for kDeadHost go to a MAC nobody has: zmdead1 drops them, nobody answers.
           {"neigh", "replace", kDeadHost, "lladdr", "02:00:00:00:de:ad", "dev", "zmdead0", "nud",
            "permanent"},
           {"neigh", "replace", kRevivedHost, "lladdr", "02:00:00:00:de:ad", "dev", "zmdead0",
            "nud", "permanent"}}) {
    if (absl::Status st = Ip(args); !st.ok()) return st;
  }
  return absl::OkStatus();
}

class UnreachablePeerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) {
      lab_status_ = new absl::Status(absl::PermissionDeniedError("not root"));
      return;
    }
    lab_status_ = new absl::Status(EnterLab());
  }

  void SetUp() override {
    if (geteuid() != 0) {
      GTEST_SKIP() << "unreachable_peer_test needs root: it creates a network namespace and a "
                      "veth pair to make an address that never answers (run it as root, as CI "
                      "does)";
    }
    ASSERT_TRUE(lab_status_->ok()) << *lab_status_;
    absl::StatusOr<std::unique_ptr<DirectoryProcess>> dir =
        DirectoryProcess::Start(tmp_.path() + "/dir");
    ASSERT_TRUE(dir.ok()) << dir.status();
    directory_ = *std::move(dir);
    ProxyProcessOptions options;
    options.directory = directory_->address();
    options.node_name = "node-a";
    options.ipc_dir = tmp_.path() + "/node-a";
    absl::StatusOr<std::unique_ptr<ProxyProcess>> proxy = ProxyProcess::Start(options);
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    node_a_ = *std::move(proxy);
  }

  std::unique_ptr<Transport> Connect(int64_t peer_connect_timeout_ms = 1000) {
    TransportOptions options;
    options.ipc_dir = node_a_->ipc_dir();
    options.peer_connect_timeout_ms = peer_connect_timeout_ms;
    options.description = "unreachable_peer_test";
    absl::StatusOr<std::unique_ptr<Transport>> t = Transport::Create(options);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *std::move(t) : nullptr;
  }

  // Registers node "ghost" at `host` and server "ghost-s" of `topic` on it, by hand (as
  // `zmeshctl nodes register` and `zmeshctl topics register` do).
  void RegisterGhost(const std::string& topic, const std::string& host = kDeadHost,
                     uint32_t port = 9501,
                     directory::v1::Kind kind = directory::v1::KIND_RPC_SERVER) {
    client::DirectoryClientOptions dir_options;
    dir_options.addresses = {directory_->address()};
    auto dir = client::DirectoryClient::Create(dir_options);
    ASSERT_TRUE(dir.ok()) << dir.status();
    directory::v1::RegisterNodeRequest node;
    node.mutable_node()->set_name("ghost");
    node.mutable_node()->set_host(host);
    // One port for every pattern when `port` is a test's own listener.
    const bool one_port = port != 9501;
    node.mutable_node()->set_call_port(port);
    node.mutable_node()->set_fanout_port(one_port ? port : 9502);
    node.mutable_node()->set_notify_port(one_port ? port : 9503);
    node.mutable_node()->set_cast_port(one_port ? port : 9504);
    auto registered = (*dir)->RegisterNode(node);
    ASSERT_TRUE(registered.ok()) << registered.status();
    directory::v1::RegisterRequest reg;
    reg.mutable_registration()->set_exchange(kDefaultExchange);
    reg.mutable_registration()->set_topic(topic);
    reg.mutable_registration()->set_server("ghost-s");
    reg.mutable_registration()->set_kind(kind);
    reg.mutable_registration()->set_node("ghost");
    auto r = (*dir)->Register(reg);
    ASSERT_TRUE(r.ok()) << r.status();
  }

  // Answers "<server>:<payload>" and records the payload.
  std::unique_ptr<Server> RecordingServer(Transport& transport, const std::string& topic,
                                          Recorder* recorder, const std::string& server = "s1") {
    absl::StatusOr<std::unique_ptr<Server>> s =
        Server::Start(transport, Target{"", topic, server},
                      [recorder, server](const Request& request, Responder& r) {
                        recorder->Add(request.payload);
                        r.Reply(absl::StrCat(server, ":", request.payload));
                      });
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  static absl::Status* lab_status_;
  TempDir tmp_;
  std::unique_ptr<DirectoryProcess> directory_;
  std::unique_ptr<ProxyProcess> node_a_;
};

absl::Status* UnreachablePeerTest::lab_status_ = nullptr;

TEST_F(UnreachablePeerTest, GroupCastsAndCallsSkipANodeThatNeverAnswers) {
  auto server_transport = Connect();
  auto client = Connect();
  ASSERT_TRUE(server_transport && client);
  Recorder recorder;
  auto s1 = RecordingServer(*server_transport, "compute", &recorder);
  ASSERT_TRUE(s1);
  RegisterGhost("compute");

  // Round-robin sends every other message to the ghost first: the casts queued for it must be
  // taken back and sent to s1 once the connection to the ghost is found dead.
  constexpr int kCasts = 20;
  constexpr int kCalls = 10;
  constexpr int64_t kCallTimeoutMs = 8000;
  for (int i = 0; i < kCasts; ++i) {
    ASSERT_TRUE(client->Cast({"", "compute", ""}, absl::StrCat("cast-", i)).ok());
  }
  const int64_t start = NowMs();
  std::vector<std::future<absl::StatusOr<CallResult>>> calls;
  for (int i = 0; i < kCalls; ++i) {
    CallOptions options;
    options.timeout_ms = kCallTimeoutMs;
    calls.push_back(client->CallAsync({"", "compute", ""}, absl::StrCat("call-", i), options));
  }
  for (int i = 0; i < kCalls; ++i) {
    absl::StatusOr<CallResult> r = calls[i].get();
    ASSERT_TRUE(r.ok()) << "call " << i << ": " << r.status();
    EXPECT_EQ(r->payload, absl::StrCat("s1:call-", i));
  }
  // The default peer_connect_timeout_ms is 1 s: well before the deadline.
  EXPECT_LT(NowMs() - start, kCallTimeoutMs / 2);
  EXPECT_TRUE(Eventually([&] { return recorder.total() >= kCasts + kCalls; }, 10000))
      << recorder.total() << " of " << kCasts + kCalls << " handled";

  // Later group messages skip the ghost at once (its node is down) and arrive without delay.
  const int64_t later = NowMs();
  for (int i = 0; i < 4; ++i) {
    CallOptions options;
    options.timeout_ms = kCallTimeoutMs;
    absl::StatusOr<CallResult> r =
        client->Call({"", "compute", ""}, absl::StrCat("later-", i), options);
    ASSERT_TRUE(r.ok()) << r.status();
  }
  EXPECT_LT(NowMs() - later, 900);

  // Exactly once each: the dead socket was closed with its queue, nothing comes twice.
  std::map<std::string, int> counts = recorder.counts();
  EXPECT_EQ(counts.size(), static_cast<size_t>(kCasts + kCalls + 4));
  for (int i = 0; i < kCasts; ++i) EXPECT_EQ(counts[absl::StrCat("cast-", i)], 1) << i;
  for (int i = 0; i < kCalls; ++i) EXPECT_EQ(counts[absl::StrCat("call-", i)], 1) << i;
  EXPECT_GT(client->stats().casts_retried + client->stats().calls_retried, 0);
}

TEST_F(UnreachablePeerTest, AcknowledgedCastsAreNotHeldUpByANodeThatNeverAnswers) {
  auto server_transport = Connect();
  auto client = Connect();
  ASSERT_TRUE(server_transport && client);
  Recorder recorder;
  auto s1 = RecordingServer(*server_transport, "acked", &recorder);
  ASSERT_TRUE(s1);
  RegisterGhost("acked");
  CastOptions options;
  options.acknowledged = true;
  options.ack_timeout_ms = 20000;  // the ack timeout must not be what rescues them
  options.timeout_ms = 30000;
  const int64_t start = NowMs();
  for (int i = 0; i < 6; ++i) {
    absl::Status st = client->Cast({"", "acked", ""}, absl::StrCat("acked-", i), options);
    ASSERT_TRUE(st.ok()) << st;
  }
  EXPECT_LT(NowMs() - start, 5000);
  std::map<std::string, int> counts = recorder.counts();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(counts[absl::StrCat("acked-", i)], 1) << i;
}

TEST_F(UnreachablePeerTest, ACallToTheDeadServerByNameStillWaitsForItsDeadline) {
  auto client = Connect();
  ASSERT_TRUE(client);
  RegisterGhost("named");
  CallOptions options;
  options.timeout_ms = 2500;
  const int64_t start = NowMs();
  absl::StatusOr<CallResult> r = client->Call({"", "named", "ghost-s"}, "x", options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_GE(NowMs() - start, 2500);
}

TEST_F(UnreachablePeerTest, ANodeThatStartsAnsweringGetsGroupMessagesAgain) {
  auto server_transport = Connect();
  auto client = Connect();
  ASSERT_TRUE(server_transport && client);
  Recorder recorder;
  auto s1 = RecordingServer(*server_transport, "revive", &recorder);
  ASSERT_TRUE(s1);
  RegisterGhost("revive", kRevivedHost);
  CallOptions options;
  options.timeout_ms = 8000;
  // Round-robin tries the ghost, whose node is then found down: everything lands on s1.
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<CallResult> r = client->Call({"", "revive", ""}, absl::StrCat("a", i), options);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->payload, absl::StrCat("s1:a", i));
  }

  // The host comes to life: its address answers, a proxy and server "ghost-s" run there (the
  // proxy registers node "ghost" again, now with its lease).
  ASSERT_TRUE(Ip({"addr", "add", absl::StrCat(kRevivedHost, "/32"), "dev", "lo"}).ok());
  ProxyProcessOptions proxy_options;
  proxy_options.directory = directory_->address();
  proxy_options.node_name = "ghost";
  proxy_options.ipc_dir = tmp_.path() + "/ghost";
  proxy_options.bind = kRevivedHost;
  proxy_options.advertise_host = kRevivedHost;
  proxy_options.call_port = 9501;
  proxy_options.fanout_port = 9502;
  proxy_options.notify_port = 9503;
  proxy_options.cast_port = 9504;
  absl::StatusOr<std::unique_ptr<ProxyProcess>> ghost = ProxyProcess::Start(proxy_options);
  ASSERT_TRUE(ghost.ok()) << ghost.status();
  TransportOptions ghost_options;
  ghost_options.ipc_dir = (*ghost)->ipc_dir();
  absl::StatusOr<std::unique_ptr<Transport>> ghost_transport = Transport::Create(ghost_options);
  ASSERT_TRUE(ghost_transport.ok()) << ghost_transport.status();
  auto ghost_server = RecordingServer(**ghost_transport, "revive", &recorder, "ghost-s");
  ASSERT_TRUE(ghost_server);

  // Once the client's connection to it completes its handshake, group calls reach it again.
  int n = 0;
  EXPECT_TRUE(Eventually(
      [&] {
        absl::StatusOr<CallResult> r =
            client->Call({"", "revive", ""}, absl::StrCat("b", n++), options);
        return r.ok() && absl::StartsWith(r->payload, "ghost-s:");
      },
      15000));
  for (const auto& [payload, count] : recorder.counts()) EXPECT_EQ(count, 1) << payload;
  ghost_server.reset();
  ghost_transport->reset();
}

TEST_F(UnreachablePeerTest, GroupCastsSkipANodeThatAcceptsButNeverCompletesTheHandshake) {
  // A TCP listener that the kernel accepts connections for but that never speaks ZMTP: the
  // connect succeeds, the handshake never does.
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(listener, 64), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const uint32_t port = ntohs(addr.sin_port);

  auto server_transport = Connect();
  auto client = Connect();
  ASSERT_TRUE(server_transport && client);
  Recorder recorder;
  auto s1 = RecordingServer(*server_transport, "mute", &recorder);
  ASSERT_TRUE(s1);
  RegisterGhost("mute", "127.0.0.1", port);
  constexpr int kCasts = 10;
  for (int i = 0; i < kCasts; ++i) {
    ASSERT_TRUE(client->Cast({"", "mute", ""}, absl::StrCat("cast-", i)).ok());
  }
  EXPECT_TRUE(Eventually([&] { return recorder.total() >= kCasts; }, 10000))
      << recorder.total() << " of " << kCasts << " handled";
  CallOptions options;
  options.timeout_ms = 8000;
  absl::StatusOr<CallResult> r = client->Call({"", "mute", ""}, "call", options);
  ASSERT_TRUE(r.ok()) << r.status();
  for (const auto& [payload, count] : recorder.counts()) EXPECT_EQ(count, 1) << payload;
  EXPECT_EQ(recorder.total(), kCasts + 1);
  close(listener);
}

TEST_F(UnreachablePeerTest, PlainCastsAreKeptUntilALongerConnectTimeoutRuns) {
  // 3 s: longer than the 2 s plain casts are normally kept after sending.
  auto server_transport = Connect();
  auto client = Connect(3000);
  ASSERT_TRUE(server_transport && client);
  Recorder recorder;
  auto s1 = RecordingServer(*server_transport, "patient", &recorder);
  ASSERT_TRUE(s1);
  RegisterGhost("patient");
  constexpr int kCasts = 10;
  for (int i = 0; i < kCasts; ++i) {
    ASSERT_TRUE(client->Cast({"", "patient", ""}, absl::StrCat("cast-", i)).ok());
  }
  EXPECT_TRUE(Eventually([&] { return recorder.total() >= kCasts; }, 10000))
      << recorder.total() << " of " << kCasts << " handled";
  std::map<std::string, int> counts = recorder.counts();
  for (int i = 0; i < kCasts; ++i) EXPECT_EQ(counts[absl::StrCat("cast-", i)], 1) << i;
}

TEST_F(UnreachablePeerTest, NotificationsSkipAListenerOnANodeThatNeverAnswers) {
  auto listener_transport = Connect();
  auto client = Connect();
  ASSERT_TRUE(listener_transport && client);
  Recorder recorder;
  auto listener =
      NotificationListener::Start(*listener_transport, {NotifyTarget{"", "events", "info"}},
                                  [&recorder](const Request& r) { recorder.Add(r.payload); });
  ASSERT_TRUE(listener.ok()) << listener.status();
  // A listener of the same (default) pool on the dead node.
  RegisterGhost("events.info", kDeadHost, 9501, directory::v1::KIND_NOTIFY_LISTENER);
  constexpr int kNotifications = 20;
  for (int i = 0; i < kNotifications; ++i) {
    ASSERT_TRUE(client->Notify({"", "events", "info"}, absl::StrCat("n-", i)).ok());
  }
  EXPECT_TRUE(Eventually([&] { return recorder.total() >= kNotifications; }, 10000))
      << recorder.total() << " of " << kNotifications << " handled";
  // One more after the node is known down: it must not wait for the dead one either.
  ASSERT_TRUE(client->Notify({"", "events", "info"}, "last").ok());
  EXPECT_TRUE(Eventually([&] { return recorder.total() >= kNotifications + 1; }, 900));
  std::map<std::string, int> counts = recorder.counts();
  for (int i = 0; i < kNotifications; ++i) EXPECT_EQ(counts[absl::StrCat("n-", i)], 1) << i;
  EXPECT_EQ(counts["last"], 1);
}

TEST(PeerConnectTimeoutOptionTest, OutOfRangeIsInvalidArgument) {
  for (int64_t bad : {int64_t{0}, int64_t{-1}, int64_t{1} << 31}) {
    TransportOptions options;
    options.ipc_dir = "/nonexistent-zmesh-dir";
    options.peer_connect_timeout_ms = bad;
    absl::StatusOr<std::unique_ptr<Transport>> t = Transport::Create(options);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(absl::StrContains(t.status().message(), "peer_connect_timeout_ms")) << bad;
  }
}

}  // namespace
}  // namespace zmesh
