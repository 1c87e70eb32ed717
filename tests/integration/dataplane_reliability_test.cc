// Reliability of the data plane with real processes on loopback: a zmesh-directory, one
// zmesh-proxy per "node" (own ports and IPC directory), servers as `zmeshctl serve` processes
// (so that they can be SIGKILLed) and clients as libzmesh Transports in the test process.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/support/directory_process.h"
#include "tests/support/proxy_process.h"
#include "tests/support/subprocess.h"
#include "zmesh/server.h"
#include "zmesh/transport.h"

namespace zmesh {
namespace {

using testing::BinPath;
using testing::DirectoryProcess;
using testing::Eventually;
using testing::KillAndReap;
using testing::ProxyProcess;
using testing::Subprocess;
using testing::TailFile;
using testing::TempDir;

constexpr char kTopic[] = "volume";

std::string ReadFile(const std::string& path) { return testing::ReadFile(path).value_or(""); }

// How many times each "<tag N>" appears in the file, by N.
std::map<int, int> CountTagged(const std::string& path, const std::string& tag) {
  std::map<int, int> counts;
  std::ifstream in(path);
  std::string line;
  const std::string open = absl::StrCat("<", tag, " ");
  while (std::getline(in, line)) {
    size_t at = line.find(open);
    if (at == std::string::npos) continue;
    size_t end = line.find('>', at);
    int n = 0;
    if (end != std::string::npos &&
        absl::SimpleAtoi(line.substr(at + open.size(), end - at - open.size()), &n)) {
      ++counts[n];
    }
  }
  return counts;
}

class DataplaneReliabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<DirectoryProcess>> directory =
        DirectoryProcess::Start(absl::StrCat(dir_.path(), "/directory"));
    ASSERT_TRUE(directory.ok()) << directory.status();
    directory_ = *std::move(directory);
    for (int n = 1; n <= 3; ++n) {
      absl::StatusOr<std::unique_ptr<ProxyProcess>> proxy =
          ProxyProcess::Start({.directory = directory_->address(),
                               .node_name = absl::StrCat("node-", n),
                               .ipc_dir = absl::StrCat(dir_.path(), "/n", n),
                               .lease_ttl_ms = 2000});
      ASSERT_TRUE(proxy.ok()) << proxy.status();
      proxies_[n] = *std::move(proxy);
    }
  }

  void TearDown() override {
    if (HasFailure()) {
      for (auto& [n, proxy] : proxies_) {
        std::cerr << "---- proxy " << n << " log tail:\n"
                  << TailFile(proxy->log_path(), 30) << "\n";
      }
      for (const auto& [name, path] : outputs_) {
        std::cerr << "---- " << name << " output tail:\n" << TailFile(path, 10) << "\n";
      }
    }
    transports_.clear();
    servers_.clear();
    proxies_.clear();
    directory_.reset();
  }

  // `zmeshctl serve kTopic --server <name> --echo` on node n; waits for its first line.
  std::string StartServer(int n, const std::string& name) {
    const std::string out = absl::StrCat(dir_.path(), "/", name, ".out");
    absl::StatusOr<std::unique_ptr<Subprocess>> process =
        Subprocess::Start({BinPath("zmeshctl"), "serve", kTopic, "--server", name, "--echo",
                           "--ipc-dir", proxies_.at(n)->ipc_dir()},
                          out, out);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return out;
    servers_[name] = *std::move(process);
    outputs_[name] = out;
    EXPECT_TRUE(Eventually([&] { return absl::StrContains(ReadFile(out), "\n"); }, 15000))
        << name << " did not start:\n"
        << TailFile(out);
    return out;
  }

  Transport& ClientOn(int n) {
    std::unique_ptr<Transport>& transport = transports_[n];
    if (transport == nullptr) {
      absl::StatusOr<std::unique_ptr<Transport>> created =
          Transport::Create({.ipc_dir = proxies_.at(n)->ipc_dir()});
      EXPECT_TRUE(created.ok()) << created.status();
      if (created.ok()) transport = *std::move(created);
    }
    return *transport;
  }

  TempDir dir_;
  std::unique_ptr<DirectoryProcess> directory_;
  std::map<int, std::unique_ptr<ProxyProcess>> proxies_;
  std::map<std::string, std::unique_ptr<Subprocess>> servers_;
  std::map<std::string, std::string> outputs_;
  std::map<int, std::unique_ptr<Transport>> transports_;
};

TEST_F(DataplaneReliabilityTest, HundredThousandCastsToAGroupAreEachDeliveredOnce) {
  const std::string a = StartServer(2, "a");
  const std::string b = StartServer(3, "b");
  Transport& client = ClientOn(1);
  constexpr int kCasts = 100000;
  for (int i = 0; i < kCasts; ++i) {
    absl::Status st = client.Cast({.topic = kTopic}, absl::StrCat("<c ", i, ">"));
    ASSERT_TRUE(st.ok()) << "cast " << i << ": " << st;
  }
  std::map<int, int> at_a;
  std::map<int, int> at_b;
  ASSERT_TRUE(Eventually(
      [&] {
        at_a = CountTagged(a, "c");
        at_b = CountTagged(b, "c");
        return at_a.size() + at_b.size() >= kCasts;
      },
      120000))
      << "delivered " << at_a.size() + at_b.size() << " of " << kCasts;
  for (int i = 0; i < kCasts; ++i) {
    const int seen = (at_a.count(i) ? at_a[i] : 0) + (at_b.count(i) ? at_b[i] : 0);
    ASSERT_EQ(seen, 1) << "cast " << i;
  }
  // Round-robin: the two members share the group equally.
  EXPECT_EQ(at_a.size(), static_cast<size_t>(kCasts / 2));
}

TEST_F(DataplaneReliabilityTest, ASlowServerSlowsItsSendersDownInsteadOfLosingCasts) {
  // A server that needs ~20 us per message, flooded with 4 KiB casts far faster than that: the
  // queues toward it fill up to the sender, which waits (Cast blocks) instead of anything being
  // dropped on the way.
  absl::StatusOr<std::unique_ptr<Transport>> server_transport =
      Transport::Create({.ipc_dir = proxies_.at(2)->ipc_dir()});
  ASSERT_TRUE(server_transport.ok()) << server_transport.status();
  absl::Mutex mu;
  std::vector<int> seen;
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(
      **server_transport, {.topic = "slow", .server = "s"},
      [&](const Request& request, Responder&) {
        const absl::Time until = absl::Now() + absl::Microseconds(50);
        while (absl::Now() < until) {
        }
        int n = 0;
        EXPECT_TRUE(absl::SimpleAtoi(request.payload.substr(0, request.payload.find(' ')), &n));
        absl::MutexLock lock(&mu);
        seen.push_back(n);
      },
      {.threads = 1});
  ASSERT_TRUE(server.ok()) << server.status();
  Transport& client = ClientOn(1);
  constexpr int kCasts = 80000;
  const std::string filler(4096, 'x');
  for (int i = 0; i < kCasts; ++i) {
    absl::Status st = client.Cast({.topic = "slow"}, absl::StrCat(i, " ", filler));
    ASSERT_TRUE(st.ok()) << "cast " << i << ": " << st;
  }
  ASSERT_TRUE(Eventually(
      [&] {
        absl::MutexLock lock(&mu);
        return seen.size() >= static_cast<size_t>(kCasts);
      },
      120000));
  absl::MutexLock lock(&mu);
  std::vector<int> sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < kCasts; ++i) ASSERT_EQ(sorted[i], i) << "cast " << i << " lost or doubled";
  EXPECT_EQ(sorted.size(), static_cast<size_t>(kCasts));
}

TEST_F(DataplaneReliabilityTest, AcknowledgedCastsSurviveAMemberKilledMidStream) {
  std::map<std::string, std::string> outs = {
      {"a", StartServer(1, "a")}, {"b", StartServer(2, "b")}, {"c", StartServer(3, "c")}};
  Transport& client = ClientOn(1);
  constexpr int kCasts = 1500;
  std::atomic<int> sent{0};
  std::vector<absl::Status> results(kCasts);
  std::thread sender([&] {
    for (int i = 0; i < kCasts; ++i) {
      results[i] = client.Cast({.topic = kTopic}, absl::StrCat("<k ", i, ">"),
                               {.acknowledged = true, .ack_timeout_ms = 500, .timeout_ms = 20000});
      sent.store(i + 1);
    }
  });
  // Kill member b while casts flow.
  ASSERT_TRUE(Eventually([&] { return sent.load() >= kCasts / 3; }, 60000));
  KillAndReap(*servers_["b"]);
  sender.join();
  for (int i = 0; i < kCasts; ++i)
    ASSERT_TRUE(results[i].ok()) << "cast " << i << ": " << results[i];

  // Every acknowledged cast was handled; the survivors handled none twice. Only a cast that b
  // handled but could not acknowledge before dying may also have been handled by a survivor
  // after the retry.
  std::map<int, int> survivors;
  for (const char* name : {"a", "c"}) {
    for (const auto& [n, count] : CountTagged(outs[name], "k")) survivors[n] += count;
  }
  const std::map<int, int> at_b = CountTagged(outs["b"], "k");
  int duplicates = 0;
  for (int i = 0; i < kCasts; ++i) {
    const int s = survivors.count(i) ? survivors[i] : 0;
    const int k = at_b.count(i) ? at_b.at(i) : 0;
    ASSERT_LE(s, 1) << "cast " << i << " handled twice by the survivors";
    ASSERT_GE(s + k, 1) << "acknowledged cast " << i << " was never handled";
    if (s + k > 1) ++duplicates;
  }
  EXPECT_LE(duplicates, 1) << "more than the one cast in flight when b died was handled twice";
  EXPECT_GT(at_b.size(), 0u);
}

TEST_F(DataplaneReliabilityTest, GroupCallFailsOverWhenAMemberDies) {
  StartServer(1, "a");
  StartServer(2, "b");
  Transport& client = ClientOn(3);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(client.Call({.topic = kTopic}, "warm", {.timeout_ms = 5000}).ok());
  }
  KillAndReap(*servers_["b"]);
  // No call fails or waits for its deadline: b's proxy refuses for the dead instance (or b is
  // already withdrawn), and the call goes to a at once.
  for (int i = 0; i < 10; ++i) {
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<CallResult> reply =
        client.Call({.topic = kTopic}, absl::StrCat("<f ", i, ">"), {.timeout_ms = 5000});
    ASSERT_TRUE(reply.ok()) << "call " << i << ": " << reply.status();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500))
        << "call " << i;
  }
  EXPECT_EQ(CountTagged(outputs_["a"], "f").size(), 10u);
}

TEST_F(DataplaneReliabilityTest, CallToADeadServerTimesOutAtItsDeadline) {
  StartServer(2, "b");
  Transport& client = ClientOn(1);
  ASSERT_TRUE(client.Call({.topic = kTopic, .server = "b"}, "warm", {.timeout_ms = 5000}).ok());
  KillAndReap(*servers_["b"]);
  constexpr int64_t kTimeoutMs = 1500;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<CallResult> reply =
      client.Call({.topic = kTopic, .server = "b"}, "to the dead", {.timeout_ms = kTimeoutMs});
  const int64_t elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now() - start)
                                 .count();
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded) << reply.status();
  EXPECT_GE(elapsed_ms, kTimeoutMs);
  EXPECT_LT(elapsed_ms, kTimeoutMs + 1000);
}

TEST_F(DataplaneReliabilityTest, DrainedNodeGetsNoGroupTrafficButAnswersByName) {
  const std::string a = StartServer(1, "a");
  const std::string b = StartServer(2, "b");
  Transport& client = ClientOn(3);
  ASSERT_TRUE(client.Call({.topic = kTopic}, "<d 0>").ok());  // resolves the group
  absl::StatusOr<testing::CommandResult> drained = testing::RunCommand(
      {BinPath("zmeshctl"), "--directory", directory_->address(), "nodes", "drain", "node-2"},
      10000);
  ASSERT_TRUE(drained.ok() && drained->exit_code == 0)
      << (drained.ok() ? drained->err : drained.status().ToString());
  // Once the client's cache has the drain, every group call goes to node-1.
  int i = 1;
  ASSERT_TRUE(Eventually([&] {
    const int before = static_cast<int>(CountTagged(b, "d").size());
    for (int k = 0; k < 4; ++k) (void)client.Call({.topic = kTopic}, absl::StrCat("<d ", i++, ">"));
    return static_cast<int>(CountTagged(b, "d").size()) == before;
  }));
  const int b_before = static_cast<int>(CountTagged(b, "d").size());
  for (int k = 0; k < 10; ++k) {
    ASSERT_TRUE(client.Call({.topic = kTopic}, absl::StrCat("<d ", i++, ">")).ok());
  }
  EXPECT_EQ(static_cast<int>(CountTagged(b, "d").size()), b_before);
  // Still reachable by server name.
  absl::StatusOr<CallResult> direct = client.Call({.topic = kTopic, .server = "b"}, "<byname 1>");
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(CountTagged(b, "byname").size(), 1u);
}

TEST_F(DataplaneReliabilityTest, ServersComeBackByThemselvesAfterTheirProxyRestarts) {
  StartServer(2, "b");
  Transport& client = ClientOn(1);
  ASSERT_TRUE(client.Call({.topic = kTopic, .server = "b"}, "before", {.timeout_ms = 5000}).ok());
  proxies_[2]->Kill();
  ASSERT_TRUE(proxies_[2]->Restart().ok());
  // The server process re-announces to the new proxy without help; calls reach it again.
  ASSERT_TRUE(Eventually(
      [&] {
        return client.Call({.topic = kTopic, .server = "b"}, "after", {.timeout_ms = 1000}).ok();
      },
      20000));
}

}  // namespace
}  // namespace zmesh
