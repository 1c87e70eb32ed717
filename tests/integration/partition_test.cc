// Network partitions of a real three-replica zmesh-directory cluster. Each replica runs in its own
// network namespace, attached by a veth pair to a bridge in another namespace; cutting a
// replica's veth from the bridge partitions it. Every address lives only inside namespaces this
// test creates (10.213.<test>.0/24), so no traffic leaves them.
//
// The test process moves itself (before gRPC starts any thread) into the bridge namespace, where
// the bridge carries an address, so it reaches every connected replica directly. A partitioned
// replica is reached by running zmeshctl inside its own namespace.
//
// Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN): fails, with a message saying so, otherwise.
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/support/netns.h"
#include "tests/support/replica_state.h"
#include "tests/support/subprocess.h"
#include "zmesh/directory/v1/cluster.grpc.pb.h"
#include "zmesh/directory/v1/directory.grpc.pb.h"
#include "zmesh/directory/v1/lease.grpc.pb.h"

namespace zmesh {
namespace {

namespace dir = ::zmesh::directory::v1;
using testing::AttachHost;
using testing::BinPath;
using testing::BridgeLab;
using testing::CommandResult;
using testing::Eventually;
using testing::Ip;
using testing::IpPath;
using testing::Namespaces;
using testing::RunCommand;
using testing::Subprocess;
using testing::TailFile;
using testing::TempDir;

constexpr char kNetnsPrefix[] = "zmtest-";
constexpr int kReplicas = 3;
constexpr int kGrpcPort = 9500;
constexpr int kRaftPort = 9510;
constexpr int64_t kLeaderWaitMs = 1000;
// zmeshctl's deadline for requests sent to a partitioned replica: well above kLeaderWaitMs, so
// that waiting for the deadline instead of giving up after kLeaderWaitMs shows.
constexpr int64_t kCtlTimeoutMs = 8000;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string ReplicaAddress(int subnet, int n, int port) {
  return absl::StrCat("10.213.", subnet, ".", n, ":", port);
}

class PartitionTest : public ::testing::Test {
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
        << "partition_test needs root: it creates network namespaces, veth pairs and a bridge "
           "(run it as root, as CI does)";
    ASSERT_NE(lab_, nullptr);
    ASSERT_TRUE(lab_setup_.ok()) << lab_setup_;
    subnet_ = ++tests_run_;
    // This test's subnet on the bridge, for the test process.
    ASSERT_TRUE(Ip({"-n", lab_->ns(), "addr", "add", absl::StrCat("10.213.", subnet_, ".254/24"),
                    "dev", BridgeLab::kBridge})
                    .ok());
    std::vector<std::string> peers;
    for (int n = 1; n <= kReplicas; ++n) {
      peers.push_back(absl::StrCat(n, "=", ReplicaAddress(subnet_, n, kRaftPort)));
    }
    for (int n = 1; n <= kReplicas; ++n) {
      const std::string ns = Netns(n);
      ASSERT_TRUE(namespaces_.Add(ns).ok());
      // eth0 inside the replica's namespace, Veth(n) on the bridge.
      absl::Status st = AttachHost(lab_->ns(), BridgeLab::kBridge, ns, Veth(n),
                                   absl::StrCat("10.213.", subnet_, ".", n, "/24"));
      ASSERT_TRUE(st.ok()) << st;
    }
    initial_cluster_ = absl::StrJoin(peers, ",");
    for (int n = 1; n <= kReplicas; ++n) ASSERT_NO_FATAL_FAILURE(StartReplica(n));
    for (int n = 1; n <= kReplicas; ++n) ASSERT_NO_FATAL_FAILURE(WaitReady(n));
  }

  void TearDown() override {
    if (HasFailure()) {
      for (int n = 1; n <= kReplicas; ++n) {
        std::cerr << "---- replica " << n << " log tail:\n" << TailFile(LogPath(n), 40) << "\n";
      }
    }
    // Replicas first (SIGKILL), then their namespaces (the member order does the rest).
    replicas_.clear();
    if (lab_ == nullptr || subnet_ == 0) return;
    (void)Ip({"-n", lab_->ns(), "addr", "del", absl::StrCat("10.213.", subnet_, ".254/24"), "dev",
              BridgeLab::kBridge});
  }

  std::string Netns(int n) const {
    return absl::StrCat(kNetnsPrefix, getpid(), "-", subnet_, "-", n);
  }
  std::string Veth(int n) const { return absl::StrCat("zv", subnet_, "x", n); }
  std::string GrpcAddress(int n) const { return ReplicaAddress(subnet_, n, kGrpcPort); }
  std::string LogPath(int n) const { return absl::StrCat(dir_.path(), "/replica-", n, ".log"); }
  std::string ReadyPath(int n) const { return absl::StrCat(dir_.path(), "/replica-", n, ".ready"); }

  void StartReplica(int n) {
    absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(
        {IpPath(), "netns", "exec", Netns(n), BinPath("zmesh-directory"), "--data-dir",
         absl::StrCat(dir_.path(), "/replica-", n), "--id", absl::StrCat(n), "--listen",
         GrpcAddress(n), "--raft-listen", ReplicaAddress(subnet_, n, kRaftPort),
         "--initial-cluster", initial_cluster_, "--leader-wait-ms", absl::StrCat(kLeaderWaitMs),
         "--ready-file", ReadyPath(n)},
        LogPath(n), LogPath(n));
    ASSERT_TRUE(process.ok()) << process.status();
    replicas_[n] = *std::move(process);
  }

  void WaitReady(int n) {
    bool exited = false;
    const bool ready = Eventually(
        [&] {
          if (replicas_[n]->Wait(0).ok()) {
            exited = true;
            return true;
          }
          std::ifstream in(ReadyPath(n));
          std::string line;
          return static_cast<bool>(std::getline(in, line)) && !line.empty();
        },
        20000);
    ASSERT_TRUE(ready && !exited) << "replica " << n << (exited ? " exited" : " not ready") << ":\n"
                                  << TailFile(LogPath(n));
  }

  // Cuts replica n off the bridge (its own interface stays up), or reattaches it.
  void Isolate(int n) { ASSERT_TRUE(lab_->Detach(Veth(n)).ok()); }
  void Heal(int n) { ASSERT_TRUE(lab_->Reattach(Veth(n)).ok()); }

  struct Stubs {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<dir::Directory::Stub> directory;
    std::unique_ptr<dir::Leases::Stub> leases;
    std::unique_ptr<dir::Cluster::Stub> cluster;
  };
  Stubs& stubs(int n) {
    std::unique_ptr<Stubs>& stubs = stubs_[n];
    if (stubs == nullptr) {
      stubs = std::make_unique<Stubs>();
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
      args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 300);
      stubs->channel =
          grpc::CreateCustomChannel(GrpcAddress(n), grpc::InsecureChannelCredentials(), args);
      stubs->directory = dir::Directory::NewStub(stubs->channel);
      stubs->leases = dir::Leases::NewStub(stubs->channel);
      stubs->cluster = dir::Cluster::NewStub(stubs->channel);
    }
    return *stubs;
  }

  static std::unique_ptr<grpc::ClientContext> Context(int64_t timeout_ms = 5000) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
    return context;
  }

  // The leader as the given replicas agree on it (0 if they do not, or none leads).
  int Leader(const std::vector<int>& among) {
    int leader = 0;
    Eventually(
        [&] {
          leader = 0;
          std::set<uint64_t> views;
          for (int n : among) {
            dir::StatusResponse status;
            if (!stubs(n).cluster->Status(Context(1000).get(), dir::StatusRequest(), &status).ok())
              return false;
            views.insert(status.leader_id());
            if (status.role() == dir::ROLE_LEADER) leader = n;
          }
          return leader != 0 && views.size() == 1 &&
                 *views.begin() == static_cast<uint64_t>(leader);
        },
        15000);
    return leader;
  }

  grpc::Status RegisterNode(int via, const std::string& name) {
    dir::RegisterNodeRequest request;
    dir::Node* node = request.mutable_node();
    node->set_name(name);
    node->set_host("10.213.0.1");
    node->set_call_port(9501);
    node->set_fanout_port(9502);
    node->set_notify_port(9503);
    node->set_cast_port(9504);
    dir::RegisterNodeResponse response;
    return stubs(via).directory->RegisterNode(Context().get(), request, &response);
  }

  grpc::Status Register(int via, const std::string& topic, const std::string& server,
                        const std::string& node) {
    dir::RegisterRequest request;
    dir::Registration* registration = request.mutable_registration();
    registration->set_exchange("openstack");
    registration->set_topic(topic);
    registration->set_server(server);
    registration->set_kind(dir::KIND_RPC_SERVER);
    registration->set_node(node);
    dir::RegisterResponse response;
    return stubs(via).directory->Register(Context().get(), request, &response);
  }

  // zmeshctl running inside replica n's namespace against replica n alone.
  struct CtlRun {
    std::unique_ptr<Subprocess> process;
    std::string out_path;
    std::string err_path;
    int64_t start_ms = 0;
  };
  CtlRun StartCtl(int n, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {IpPath(),
                                     "netns",
                                     "exec",
                                     Netns(n),
                                     BinPath("zmeshctl"),
                                     "--directory",
                                     GrpcAddress(n),
                                     "--timeout-ms",
                                     absl::StrCat(kCtlTimeoutMs)};
    argv.insert(argv.end(), args.begin(), args.end());
    CtlRun run;
    const std::string base = absl::StrCat(dir_.path(), "/ctl-", ctl_runs_++);
    run.out_path = base + ".out";
    run.err_path = base + ".err";
    run.start_ms = NowMs();
    absl::StatusOr<std::unique_ptr<Subprocess>> process =
        Subprocess::Start(argv, run.out_path, run.err_path);
    EXPECT_TRUE(process.ok()) << process.status();
    if (process.ok()) run.process = *std::move(process);
    return run;
  }
  // Waits for it; the exit code is -1 if it was killed or did not finish in time.
  CommandResult FinishCtl(CtlRun& run, int64_t* elapsed_ms = nullptr) {
    CommandResult result;
    if (run.process == nullptr) return result;
    absl::StatusOr<int> status = run.process->Wait(kCtlTimeoutMs + 10000);
    if (elapsed_ms != nullptr) *elapsed_ms = NowMs() - run.start_ms;
    if (status.ok() && WIFEXITED(*status)) result.exit_code = WEXITSTATUS(*status);
    result.timed_out = !status.ok();
    result.out = testing::ReadFile(run.out_path).value_or("");
    result.err = testing::ReadFile(run.err_path).value_or("");
    return result;
  }
  CommandResult Ctl(int n, const std::vector<std::string>& args) {
    CtlRun run = StartCtl(n, args);
    return FinishCtl(run);
  }

  // A write and a linearizable read sent to the partitioned replica n, right after it was cut
  // off, both fail UNAVAILABLE after about kLeaderWaitMs (not at zmeshctl's much later
  // deadline).
  void ExpectMinorityUnavailable(int n) {
    CtlRun write_run =
        StartCtl(n, {"topics", "register", "part", "--node", "p-node", "--server", "minority"});
    CtlRun read_run = StartCtl(n, {"topics", "show", "part"});
    int64_t write_ms = 0;
    int64_t read_ms = 0;
    CommandResult write = FinishCtl(write_run, &write_ms);
    CommandResult read = FinishCtl(read_run, &read_ms);
    EXPECT_NE(write.exit_code, 0) << "a partitioned replica acknowledged a write: " << write.out;
    EXPECT_TRUE(absl::StrContains(write.err, "UNAVAILABLE")) << write.err;
    EXPECT_LT(write_ms, kLeaderWaitMs + 3000)
        << "the write waited " << write_ms << " ms: " << write.err;
    EXPECT_NE(read.exit_code, 0) << "a partitioned replica served a linearizable read: "
                                 << read.out;
    EXPECT_TRUE(absl::StrContains(read.err, "UNAVAILABLE")) << read.err;
    EXPECT_LT(read_ms, kLeaderWaitMs + 3000)
        << "the read waited " << read_ms << " ms: " << read.err;
  }

  // Replica n's own state (stale reads).
  std::string StateDump(int n) {
    return testing::ReplicaStateDump(*stubs(n).directory, *stubs(n).leases, 2000);
  }

  // Waits until all replicas hold the same state; returns it.
  std::string WaitConverged() {
    std::map<int, std::string> dumps;
    const bool converged = Eventually(
        [&] {
          for (int n = 1; n <= kReplicas; ++n) dumps[n] = StateDump(n);
          for (const auto& [n, dump] : dumps) {
            if (dump != dumps[1]) return false;
          }
          return true;
        },
        20000);
    if (!converged) {
      std::string all;
      for (const auto& [n, dump] : dumps) absl::StrAppend(&all, "== replica ", n, ":\n", dump);
      ADD_FAILURE() << "replicas did not converge after the partition healed:\n" << all;
    }
    return dumps[1];
  }

  // The majority (every replica but `isolated`) keeps acknowledging writes, through each of its
  // members.
  void ExpectMajorityServesWrites(int isolated, const std::string& server_prefix) {
    for (int i = 0; i < 20; ++i) {
      const int via = 1 + (isolated + i % (kReplicas - 1)) % kReplicas;
      grpc::Status status = Register(via, "part", absl::StrCat(server_prefix, i), "p-node");
      EXPECT_TRUE(status.ok()) << "via " << via << ": " << status.error_message();
    }
  }

  static BridgeLab* lab_;          // the bridge namespace; created once per binary
  static absl::Status lab_setup_;  // how creating it went
  static int tests_run_;           // gives each test its own subnet and names

  TempDir dir_;
  Namespaces namespaces_;  // destroyed after the replicas below
  int subnet_ = 0;
  std::string initial_cluster_;
  std::map<int, std::unique_ptr<Subprocess>> replicas_;
  std::map<int, std::unique_ptr<Stubs>> stubs_;
  int ctl_runs_ = 0;  // names zmeshctl output files
};

BridgeLab* PartitionTest::lab_ = nullptr;
absl::Status PartitionTest::lab_setup_ = absl::OkStatus();
int PartitionTest::tests_run_ = 0;

TEST_F(PartitionTest, IsolatedFollowerCannotWriteAndCatchesUpAfterHealing) {
  const int leader = Leader({1, 2, 3});
  ASSERT_NE(leader, 0) << "no leader";
  ASSERT_TRUE(RegisterNode(leader, "p-node").ok());
  ASSERT_TRUE(Register(leader, "part", "before", "p-node").ok());
  const int follower = leader % kReplicas + 1;

  ASSERT_NO_FATAL_FAILURE(Isolate(follower));
  ExpectMinorityUnavailable(follower);
  ExpectMajorityServesWrites(follower, "majority-");

  ASSERT_NO_FATAL_FAILURE(Heal(follower));
  const std::string state = WaitConverged();
  EXPECT_TRUE(absl::StrContains(state, "majority-19")) << state;
  EXPECT_TRUE(absl::StrContains(state, "\"before\"")) << state;
  // The refused write's fate is unknown to its client (its forward to the leader may still be
  // in flight when the partition heals), so "minority" may or may not be there: only that
  // every replica agrees is checked.
  // And the healed replica serves linearizable reads and writes again.
  CommandResult show = Ctl(follower, {"topics", "show", "part"});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_TRUE(absl::StrContains(show.out, "majority-19")) << show.out;
  CommandResult write =
      Ctl(follower, {"topics", "register", "part", "--node", "p-node", "--server", "healed"});
  EXPECT_EQ(write.exit_code, 0) << write.err;
}

TEST_F(PartitionTest, IsolatedLeaderStepsDownAndMajorityElectsAnother) {
  const int leader = Leader({1, 2, 3});
  ASSERT_NE(leader, 0) << "no leader";
  ASSERT_TRUE(RegisterNode(leader, "p-node").ok());
  ASSERT_TRUE(Register(leader, "part", "before", "p-node").ok());

  ASSERT_NO_FATAL_FAILURE(Isolate(leader));
  // The old leader cannot commit: a write sent to it fails rather than being acknowledged.
  ExpectMinorityUnavailable(leader);
  std::vector<int> majority;
  for (int n = 1; n <= kReplicas; ++n) {
    if (n != leader) majority.push_back(n);
  }
  const int new_leader = Leader(majority);
  ASSERT_NE(new_leader, 0) << "the majority elected no leader";
  ASSERT_NE(new_leader, leader);
  ExpectMajorityServesWrites(leader, "majority-");

  ASSERT_NO_FATAL_FAILURE(Heal(leader));
  const std::string state = WaitConverged();
  EXPECT_TRUE(absl::StrContains(state, "majority-19")) << state;
  // The old leader's uncommitted entry was discarded when it rejoined.
  EXPECT_FALSE(absl::StrContains(state, "minority")) << state;
  EXPECT_EQ(Leader({1, 2, 3}), new_leader) << "leadership should stay with the majority's leader";
}

}  // namespace
}  // namespace zmesh
