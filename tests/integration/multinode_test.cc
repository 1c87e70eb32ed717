// The data plane across real network boundaries. Each node is its own network namespace running
// zmesh-proxy on the real fixed ports (9501-9504) at its own address, attached by a veth pair to
// a bridge in another namespace, where the directory and the test process live. Servers and
// listeners are `zmeshctl serve` / `zmeshctl listen` processes inside the node namespaces; the
// clients are libzmesh Transports in the test process, on a node's IPC directory (Unix sockets
// are not tied to a network namespace), whose TCP traffic to the nodes crosses the bridge.
// Cutting a node's veth from the bridge partitions the node. Every address lives only inside
// namespaces this test creates (10.214.<test>.0/24).
//
// Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN): fails, with a message saying so, otherwise.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "controlplane/client/directory_client.h"
#include "gtest/gtest.h"
#include "tests/support/netns.h"
#include "tests/support/proxy_process.h"
#include "tests/support/subprocess.h"
#include "zmesh/transport.h"

namespace zmesh {
namespace {

namespace dir = ::zmesh::directory::v1;
using testing::AttachHost;
using testing::BinPath;
using testing::BridgeLab;
using testing::Eventually;
using testing::Ip;
using testing::IpPath;
using testing::KillAndReap;
using testing::Namespaces;
using testing::ProxyProcess;
using testing::ProxyProcessOptions;
using testing::Subprocess;
using testing::TailFile;
using testing::TempDir;

constexpr char kNetnsPrefix[] = "zmnode-";
constexpr int kNodes = 3;
constexpr int64_t kLeaseTtlMs = 2000;
constexpr char kTopic[] = "compute";

std::string ReadFile(const std::string& path) { return testing::ReadFile(path).value_or(""); }

// Number of lines of `path` containing `needle`.
int CountLines(const std::string& path, const std::string& needle) {
  std::ifstream in(path);
  std::string line;
  int count = 0;
  while (std::getline(in, line)) {
    if (absl::StrContains(line, needle)) ++count;
  }
  return count;
}

class MultiNodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;  // each test fails with the reason
    absl::StatusOr<std::unique_ptr<BridgeLab>> lab = BridgeLab::Create(kNetnsPrefix);
    lab_setup_ = lab.status();
    if (lab.ok()) lab_ = lab->release();
  }

  static void TearDownTestSuite() {
    delete lab_;
    lab_ = nullptr;
  }

  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u)
        << "multinode_test needs root: it creates network namespaces, veth pairs and a bridge "
           "(run it as root, as CI does)";
    ASSERT_NE(lab_, nullptr);
    ASSERT_TRUE(lab_setup_.ok()) << lab_setup_;
    subnet_ = ++tests_run_;
    ASSERT_TRUE(Ip({"-n", lab_->ns(), "addr", "add", absl::StrCat(Address(254), "/24"), "dev",
                    BridgeLab::kBridge})
                    .ok());
    for (int n = 1; n <= kNodes; ++n) {
      ASSERT_TRUE(namespaces_.Add(Netns(n)).ok());
      absl::Status st = AttachHost(lab_->ns(), BridgeLab::kBridge, Netns(n), Veth(n),
                                   absl::StrCat(Address(n), "/24"));
      ASSERT_TRUE(st.ok()) << st;
    }
    ASSERT_NO_FATAL_FAILURE(StartDirectory());
    for (int n = 1; n <= kNodes; ++n) {
      ProxyProcessOptions options;
      options.directory = directory_address_;
      options.node_name = NodeName(n);
      options.ipc_dir = absl::StrCat(dir_.path(), "/n", n);
      options.advertise_host = Address(n);
      options.bind = Address(n);
      // The real fixed ports: each node has a network of its own.
      options.call_port = 9501;
      options.fanout_port = 9502;
      options.notify_port = 9503;
      options.cast_port = 9504;
      options.lease_ttl_ms = kLeaseTtlMs;
      options.command_prefix = {IpPath(), "netns", "exec", Netns(n)};
      absl::StatusOr<std::unique_ptr<ProxyProcess>> proxy = ProxyProcess::Start(options);
      ASSERT_TRUE(proxy.ok()) << proxy.status();
      proxies_[n] = *std::move(proxy);
    }
    absl::StatusOr<std::unique_ptr<client::DirectoryClient>> directory =
        client::DirectoryClient::Create({.addresses = {directory_address_}});
    ASSERT_TRUE(directory.ok()) << directory.status();
    directory_ = *std::move(directory);
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "---- directory log tail:\n" << TailFile(directory_log_, 20) << "\n";
      for (auto& [n, proxy] : proxies_) {
        std::cerr << "---- proxy " << n << " log tail:\n"
                  << TailFile(proxy->log_path(), 30) << "\n";
      }
      for (const auto& [name, path] : output_paths_) {
        std::cerr << "---- " << name << " output tail:\n" << TailFile(path, 15) << "\n";
      }
    }
    transports_.clear();  // before the proxies they talk to
    children_.clear();    // zmeshctl serve/listen (SIGKILL)
    proxies_.clear();
    directory_.reset();
    directory_process_.reset();
    if (lab_ == nullptr || subnet_ == 0) return;
    (void)Ip({"-n", lab_->ns(), "addr", "del", absl::StrCat(Address(254), "/24"), "dev",
              BridgeLab::kBridge});
  }

  std::string Address(int host) const { return absl::StrCat("10.214.", subnet_, ".", host); }
  std::string Netns(int n) const {
    return absl::StrCat(kNetnsPrefix, getpid(), "-", subnet_, "-", n);
  }
  std::string Veth(int n) const { return absl::StrCat("zn", subnet_, "x", n); }
  static std::string NodeName(int n) { return absl::StrCat("node-", n); }
  std::string IpcDir(int n) const { return proxies_.at(n)->ipc_dir(); }

  void StartDirectory() {
    directory_address_ = absl::StrCat(Address(254), ":9500");
    directory_log_ = absl::StrCat(dir_.path(), "/directory.log");
    const std::string ready = absl::StrCat(dir_.path(), "/directory.ready");
    absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(
        {BinPath("zmesh-directory"), "--data-dir", absl::StrCat(dir_.path(), "/directory"),
         "--listen", directory_address_, "--raft-listen", absl::StrCat(Address(254), ":9510"),
         "--ready-file", ready},
        directory_log_, directory_log_);
    ASSERT_TRUE(process.ok()) << process.status();
    directory_process_ = *std::move(process);
    ASSERT_TRUE(Eventually([&] { return !ReadFile(ready).empty(); }, 20000))
        << "directory not ready:\n"
        << TailFile(directory_log_);
  }

  // Starts `zmeshctl args...` inside node n's namespace, output to a file, and waits for its
  // first line (serve and listen print one once their target is registered).
  std::string StartCtl(int n, const std::string& name, std::vector<std::string> args) {
    const std::string out = absl::StrCat(dir_.path(), "/", name, ".out");
    std::vector<std::string> argv = {IpPath(), "netns", "exec", Netns(n), BinPath("zmeshctl")};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--ipc-dir");
    argv.push_back(IpcDir(n));
    absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(argv, out, out);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return out;
    children_[name] = *std::move(process);
    output_paths_[name] = out;
    EXPECT_TRUE(Eventually([&] { return absl::StrContains(ReadFile(out), "\n"); }, 15000))
        << name << " did not start:\n"
        << TailFile(out);
    return out;
  }

  // A server "s<n>" on topic kTopic on node n.
  std::string StartServer(int n) {
    return StartCtl(n, absl::StrCat("s", n),
                    {"serve", kTopic, "--server", absl::StrCat("s", n), "--echo"});
  }

  Transport& ClientOn(int n) {
    std::unique_ptr<Transport>& transport = transports_[n];
    if (transport == nullptr) {
      absl::StatusOr<std::unique_ptr<Transport>> created =
          Transport::Create({.ipc_dir = IpcDir(n), .description = "multinode_test"});
      EXPECT_TRUE(created.ok()) << created.status();
      if (created.ok()) transport = *std::move(created);
    }
    return *transport;
  }

  // Calls the kTopic group with payload "<tag i>" and expects the echo.
  void CallGroup(Transport& client, const std::string& tag, int i, int64_t timeout_ms = 10000) {
    const std::string payload = absl::StrCat("<", tag, " ", i, ">");
    absl::StatusOr<CallResult> reply =
        client.Call({.topic = kTopic}, payload, {.timeout_ms = timeout_ms});
    ASSERT_TRUE(reply.ok()) << payload << ": " << reply.status();
    EXPECT_FALSE(reply->remote_error);
    EXPECT_EQ(reply->payload, payload);
  }

  // Which server printed the call "<tag i>" (0 when none).
  int HandledBy(const std::map<int, std::string>& outputs, const std::string& tag, int i) {
    const std::string needle = absl::StrCat("<", tag, " ", i, ">");
    for (const auto& [n, path] : outputs) {
      if (CountLines(path, needle) > 0) return n;
    }
    return 0;
  }

  bool NodeRegistered(int n) {
    absl::StatusOr<dir::ListNodesResponse> nodes = directory_->ListNodes({});
    if (!nodes.ok()) return false;
    for (const dir::Node& node : nodes->nodes()) {
      if (node.name() == NodeName(n)) return true;
    }
    return false;
  }

  static BridgeLab* lab_;
  static absl::Status lab_setup_;
  static int tests_run_;

  int subnet_ = 0;
  Namespaces namespaces_;  // destroyed last: after every process below
  TempDir dir_;
  std::string directory_address_;
  std::string directory_log_;
  std::unique_ptr<Subprocess> directory_process_;
  std::map<int, std::unique_ptr<ProxyProcess>> proxies_;
  std::map<std::string, std::unique_ptr<Subprocess>> children_;
  std::map<std::string, std::string> output_paths_;
  std::map<int, std::unique_ptr<Transport>> transports_;
  std::unique_ptr<client::DirectoryClient> directory_;
};

BridgeLab* MultiNodeTest::lab_ = nullptr;
absl::Status MultiNodeTest::lab_setup_ = absl::OkStatus();
int MultiNodeTest::tests_run_ = 0;

TEST_F(MultiNodeTest, GroupCallsRotateOverEveryNodeAndFanoutReachesEach) {
  std::map<int, std::string> outputs;
  for (int n = 1; n <= kNodes; ++n) outputs[n] = StartServer(n);
  Transport& client = ClientOn(1);

  constexpr int kCalls = 9;
  for (int i = 0; i < kCalls; ++i) ASSERT_NO_FATAL_FAILURE(CallGroup(client, "rr", i));
  // Strict round-robin: three consecutive calls reach three different nodes, and the pattern
  // repeats.
  std::set<int> first_round;
  for (int i = 0; i < kCalls; ++i) {
    const int by = HandledBy(outputs, "rr", i);
    ASSERT_NE(by, 0) << "call " << i << " printed by no server";
    if (i < kNodes) first_round.insert(by);
    if (i >= kNodes) {
      EXPECT_EQ(by, HandledBy(outputs, "rr", i - kNodes)) << "call " << i;
    }
  }
  EXPECT_EQ(first_round.size(), static_cast<size_t>(kNodes));

  // A specific server, from another node.
  Transport& other = ClientOn(2);
  absl::StatusOr<CallResult> direct = other.Call({.topic = kTopic, .server = "s3"}, "<direct 1>");
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(HandledBy(outputs, "direct", 1), 3);

  // Fanout: every server on every node, once.
  ASSERT_TRUE(other.Fanout({.topic = kTopic}, "<fan 1>").ok());
  for (int n = 1; n <= kNodes; ++n) {
    EXPECT_TRUE(Eventually([&] { return CountLines(outputs[n], "<fan 1>") == 1; }))
        << "fanout not on node " << n;
  }
}

TEST_F(MultiNodeTest, EveryPoolGetsEachNotificationOnceAcrossNodes) {
  const std::string a1 =
      StartCtl(1, "a1", {"listen", "events", "--priority", "info", "--pool", "a"});
  const std::string a2 =
      StartCtl(2, "a2", {"listen", "events", "--priority", "info", "--pool", "a"});
  const std::string b3 =
      StartCtl(3, "b3", {"listen", "events", "--priority", "info", "--pool", "b"});
  Transport& client = ClientOn(2);
  constexpr int kMessages = 6;
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(
        client.Notify({.topic = "events", .priority = "info"}, absl::StrCat("<n ", i, ">")).ok());
  }
  for (int i = 0; i < kMessages; ++i) {
    const std::string needle = absl::StrCat("<n ", i, ">");
    EXPECT_TRUE(Eventually([&] { return CountLines(b3, needle) == 1; })) << needle << " in pool b";
    EXPECT_TRUE(Eventually([&] { return CountLines(a1, needle) + CountLines(a2, needle) == 1; }))
        << needle << " in pool a";
  }
  // Shared inside pool a: round-robin gives each member half.
  EXPECT_EQ(CountLines(a1, "<n "), kMessages / 2);
  EXPECT_EQ(CountLines(a2, "<n "), kMessages / 2);
}

TEST_F(MultiNodeTest, PartitionedNodeIsLeftOutThenComesBack) {
  std::map<int, std::string> outputs;
  for (int n = 1; n <= kNodes; ++n) outputs[n] = StartServer(n);
  Transport& client = ClientOn(1);
  for (int i = 0; i < kNodes; ++i) ASSERT_NO_FATAL_FAILURE(CallGroup(client, "warm", i));

  // Cut node 3 off: its proxy can reach neither the directory nor the clients.
  ASSERT_TRUE(lab_->Detach(Veth(3)).ok());
  // Every group call still succeeds: one that went to node 3 before it was known lost is
  // resent to another member, well within its deadline.
  int i = 0;
  const auto cut_at = std::chrono::steady_clock::now();
  for (; i < 12; ++i) ASSERT_NO_FATAL_FAILURE(CallGroup(client, "cut", i, 15000));
  // Once its lease is gone, node 3 is out of the directory and of every cache: no call goes
  // there any more.
  ASSERT_TRUE(Eventually([&] { return !NodeRegistered(3); }, kLeaseTtlMs * 5));
  const int before = i;
  for (; i < before + 6; ++i) {
    ASSERT_NO_FATAL_FAILURE(CallGroup(client, "cut", i, 15000));
    EXPECT_NE(HandledBy(outputs, "cut", i), 3) << "call " << i << " went to the cut-off node";
  }
  std::cerr << "node 3 out of the directory "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - cut_at)
                   .count()
            << " ms after the cut\n";

  // Healed: node 3's proxy registers again (its old lease expired) and serves again.
  ASSERT_TRUE(lab_->Reattach(Veth(3)).ok());
  ASSERT_TRUE(Eventually([&] { return NodeRegistered(3); }, 20000));
  int j = 0;
  ASSERT_TRUE(Eventually(
      [&] {
        CallGroup(client, "healed", j);
        return HandledBy(outputs, "healed", j++) == 3;
      },
      20000))
      << "no call reached node 3 after healing";
}

TEST_F(MultiNodeTest, TrafficBetweenKnownTargetsFlowsWithTheDirectoryDown) {
  std::map<int, std::string> outputs;
  for (int n = 1; n <= kNodes; ++n) outputs[n] = StartServer(n);
  Transport& client = ClientOn(2);
  for (int i = 0; i < kNodes; ++i) ASSERT_NO_FATAL_FAILURE(CallGroup(client, "before", i));
  ASSERT_TRUE(client.Fanout({.topic = kTopic}, "<fan before>").ok());

  KillAndReap(*directory_process_);
  std::set<int> reached;
  for (int i = 0; i < 3 * kNodes; ++i) {
    ASSERT_NO_FATAL_FAILURE(CallGroup(client, "down", i));
    reached.insert(HandledBy(outputs, "down", i));
  }
  EXPECT_EQ(reached, (std::set<int>{1, 2, 3}));
  ASSERT_TRUE(client.Fanout({.topic = kTopic}, "<fan down>").ok());
  for (int n = 1; n <= kNodes; ++n) {
    EXPECT_TRUE(Eventually([&] { return CountLines(outputs[n], "<fan down>") == 1; }))
        << "fanout not on node " << n;
  }
  // A client created while the directory is down still resolves known targets (from the
  // proxy's cache).
  Transport& late = ClientOn(3);
  absl::StatusOr<CallResult> reply =
      late.Call({.topic = kTopic, .server = "s1"}, "<late 1>", {.timeout_ms = 10000});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(HandledBy(outputs, "late", 1), 1);
}

TEST_F(MultiNodeTest, KilledProxyLeavesEveryCacheAfterItsLease) {
  std::map<int, std::string> outputs;
  for (int n = 1; n <= kNodes; ++n) outputs[n] = StartServer(n);
  Transport& client = ClientOn(1);
  for (int i = 0; i < kNodes; ++i) ASSERT_NO_FATAL_FAILURE(CallGroup(client, "warm", i));

  proxies_[2]->Kill();
  ASSERT_TRUE(Eventually([&] { return !NodeRegistered(2); }, kLeaseTtlMs * 5));
  // The node is gone from node 1's proxy cache and the client's: every call succeeds, none is
  // sent to node 2 (the calls would time out there).
  for (int i = 0; i < 2 * kNodes; ++i) {
    ASSERT_NO_FATAL_FAILURE(CallGroup(client, "after", i, 5000));
    EXPECT_NE(HandledBy(outputs, "after", i), 2);
  }
}

}  // namespace
}  // namespace zmesh
