// zmeshctl status as the health summary of a real system: a 3-replica zmesh-directory cluster
// and real zmesh-proxy processes keeping their leases alive. Checks the verdict, its reasons,
// the nodes and leases that need attention, the exit code, in table and JSON output.
#include <signal.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/cluster_test.h"
#include "tests/support/directory_process.h"
#include "tests/support/proxy_process.h"
#include "tests/support/restored_replicas_test.h"
#include "tests/support/subprocess.h"

namespace zmesh::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// Lease TTL of the test proxies: they renew every third of it, and status calls a lease late
// once less than half of it is left, so a stopped proxy is late after 2 s and gone after 4 s.
constexpr int64_t kLeaseTtlMs = 4000;

std::vector<std::string> Lines(absl::string_view text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

// The parsed JSON of one `zmeshctl status -o json`, with its exit code.
struct Report {
  int exit_code = -1;
  std::string err;
  google::protobuf::Struct json;

  const google::protobuf::Struct& Object(const std::string& key) const {
    return json.fields().at(key).struct_value();
  }
  std::string Verdict() const { return Object("health").fields().at("verdict").string_value(); }
  std::vector<std::string> Strings(const std::string& key) const {
    std::vector<std::string> out;
    for (const auto& value : Object("health").fields().at(key).list_value().values()) {
      out.push_back(value.string_value());
    }
    return out;
  }
  std::string Summary(const std::string& key) const {
    return Object("summary").fields().at(key).string_value();
  }
  // The "attention" entries as "problem node lease" strings, e.g. "lease_late n1 7".
  std::vector<std::string> Attention() const {
    std::vector<std::string> out;
    auto it = json.fields().find("attention");
    if (it == json.fields().end()) return out;
    for (const auto& value : it->second.list_value().values()) {
      const auto& fields = value.struct_value().fields();
      auto node = fields.find("node");
      out.push_back(absl::StrCat(fields.at("problem").string_value(), " ",
                                 node == fields.end() ? "-" : node->second.string_value(), " ",
                                 fields.at("lease_id").string_value()));
    }
    return out;
  }
};

class StatusTest : public ClusterTest {
 protected:
  CommandResult Ctl(std::vector<std::string> args, std::string directory = "") {
    if (directory.empty()) directory = cluster_->addresses();
    std::vector<std::string> argv = {BinPath("zmeshctl"), "--directory", directory};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<CommandResult> result = RunCommand(argv, 30000);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : CommandResult{};
  }

  Report Status(std::string directory = "") {
    CommandResult result = Ctl({"status", "-o", "json"}, std::move(directory));
    Report report;
    report.exit_code = result.exit_code;
    report.err = result.err;
    auto parsed = google::protobuf::util::JsonStringToMessage(result.out, &report.json);
    EXPECT_TRUE(parsed.ok()) << parsed << " in: " << result.out << "\nstderr: " << result.err;
    if (!report.json.fields().contains("health")) {
      report.json.mutable_fields()->operator[]("health").mutable_struct_value();
    }
    return report;
  }

  // A proxy for `node`, keeping its lease alive; nullptr (and a test failure) if it fails.
  ProxyProcess* StartProxy(const std::string& node) {
    ProxyProcessOptions options;
    options.directory = cluster_->addresses();
    options.node_name = node;
    options.ipc_dir = dir_.path() + "/" + node;
    options.lease_ttl_ms = kLeaseTtlMs;
    absl::StatusOr<std::unique_ptr<ProxyProcess>> proxy = ProxyProcess::Start(options);
    EXPECT_TRUE(proxy.ok()) << proxy.status();
    if (!proxy.ok()) return nullptr;
    proxies_.push_back(*std::move(proxy));
    return proxies_.back().get();
  }

  std::string Follower() const { return cluster_->grpc_address(leader_ == 1 ? 2 : 1); }

  std::vector<std::unique_ptr<ProxyProcess>> proxies_;
};

TEST_F(StatusTest, HealthyWhileProxiesRenewTheirLeases) {
  ASSERT_NE(StartProxy("node-a"), nullptr);
  ASSERT_NE(StartProxy("node-b"), nullptr);
  // Longer than half the TTL: a proxy that renews on time is never reported late.
  const absl::Time until = absl::Now() + absl::Milliseconds(kLeaseTtlMs * 3 / 4);
  do {
    Report report = Status(Follower());
    ASSERT_EQ(report.exit_code, 0) << report.err;
    EXPECT_EQ(report.Verdict(), "healthy");
    EXPECT_THAT(report.Strings("reasons"), ::testing::IsEmpty());
    EXPECT_EQ(report.Summary("nodes"), "2");
    EXPECT_EQ(report.Summary("leases"), "2");
    EXPECT_EQ(report.Summary("late_leases"), "0");
    EXPECT_EQ(report.Summary("read_from"), cluster_->grpc_address(leader_));
    EXPECT_THAT(report.Attention(), ::testing::IsEmpty());
  } while (absl::Now() < until);

  std::vector<std::string> lines = Lines(Ctl({"status"}).out);
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines[lines.size() - 2],
            "Nodes: 2 (0 draining, 0 permanent); leases: 2 (0 not renewed in time, 0 bound to no "
            "node); revision " +
                Status().Summary("revision"))
      << absl::StrJoin(lines, "\n");
  EXPECT_EQ(lines.back(), "Health: healthy");
}

TEST_F(StatusTest, DrainingAndPermanentNodesAreNotedNotUnhealthy) {
  ASSERT_NE(StartProxy("node-a"), nullptr);
  ASSERT_EQ(Ctl({"nodes", "drain", "node-a"}).exit_code, 0);
  ASSERT_EQ(Ctl({"nodes", "register", "by-hand", "--host", "10.0.0.9"}).exit_code, 0);

  Report report = Status();
  EXPECT_EQ(report.exit_code, 0) << report.err;
  EXPECT_EQ(report.Verdict(), "healthy");
  EXPECT_THAT(report.Strings("notes"),
              ::testing::ElementsAre("node node-a is draining",
                                     "1 permanent node(s) (registered by hand, no lease)"));
  EXPECT_EQ(report.Summary("draining_nodes"), "1");
  EXPECT_EQ(report.Summary("permanent_nodes"), "1");
  ASSERT_EQ(report.Attention().size(), 1u);
  EXPECT_THAT(report.Attention()[0], StartsWith("draining node-a "));

  std::string table = Ctl({"status"}).out;
  EXPECT_THAT(table, ::testing::ContainsRegex(
                         "\nnode-a +[0-9]+ +4000 +[0-9]+ +draining: no new topic-only traffic\n"));
  EXPECT_THAT(table, HasSubstr("\nNote: node node-a is draining\n"));
  EXPECT_EQ(Lines(table).back(), "Health: healthy");
}

TEST_F(StatusTest, AProxyThatStopsRenewingShowsAsNotRenewed) {
  ASSERT_NE(StartProxy("node-a"), nullptr);
  ProxyProcess* stopped = StartProxy("node-b");
  ASSERT_NE(stopped, nullptr);
  ASSERT_EQ(Status().Verdict(), "healthy");

  stopped->process().Signal(SIGSTOP);  // alive, but its keepalives stop
  Report report;
  ASSERT_TRUE(Eventually(
      [&] {
        report = Status();
        return report.Verdict() != "healthy";
      },
      kLeaseTtlMs))
      << "still healthy: " << report.json.DebugString();
  EXPECT_EQ(report.exit_code, 1);
  EXPECT_EQ(report.Verdict(), "degraded");
  ASSERT_EQ(report.Attention().size(), 1u) << report.json.DebugString();
  EXPECT_THAT(report.Attention()[0], StartsWith("lease_late node-b "));
  EXPECT_EQ(report.Summary("late_leases"), "1");
  ASSERT_EQ(report.Strings("reasons").size(), 1u);
  EXPECT_THAT(report.Strings("reasons")[0],
              ::testing::MatchesRegex("lease [0-9]+ \\(node node-b\\) not renewed for [0-9]+ ms "
                                      "\\([0-9]+ of 4000 ms left\\)"));
  EXPECT_THAT(report.err, StartsWith("zmeshctl: FAILED_PRECONDITION: degraded: lease "));

  CommandResult table = Ctl({"status"});
  EXPECT_EQ(table.exit_code, 1);
  // Unless its lease expired meanwhile (then node-b is gone and the system healthy again).
  if (absl::StrContains(table.out, "node-b")) {
    EXPECT_THAT(table.out,
                ::testing::ContainsRegex(
                    "\nnode-b +[0-9]+ +4000 +[0-9]+ +lease not renewed for [0-9]+ ms\n"));
    EXPECT_THAT(table.out, HasSubstr("\nHealth: degraded: lease "));
  }

  // Running again, the proxy renews (or registers anew if its lease expired): healthy.
  stopped->process().Signal(SIGCONT);
  EXPECT_TRUE(Eventually([&] { return Status().exit_code == 0; }, 10000))
      << Status().json.DebugString();
  EXPECT_EQ(Status().Summary("nodes"), "2");
}

TEST_F(StatusTest, ALeaseNobodyRenewsIsReportedUntilItExpires) {
  CommandResult granted = Ctl({"leases", "grant", "--ttl-ms", "3000"});
  ASSERT_EQ(granted.exit_code, 0) << granted.err;
  Report report;
  ASSERT_TRUE(Eventually(
      [&] {
        report = Status();
        return report.Verdict() == "degraded";
      },
      3000))
      << report.json.DebugString();
  EXPECT_THAT(report.Attention(), ::testing::ElementsAre(::testing::StartsWith("lease_late - ")));
  EXPECT_EQ(report.Summary("unbound_leases"), "1");
  EXPECT_THAT(report.Strings("reasons")[0], HasSubstr("(bound to no node) not renewed for"));
  // Expired, it is gone and harms nothing.
  EXPECT_TRUE(Eventually([&] { return Status().exit_code == 0; }, 10000));
}

TEST_F(StatusTest, AReplicaDownIsDegradedAndTheRestIsStillRead) {
  ASSERT_NE(StartProxy("node-a"), nullptr);
  const uint64_t dead = leader_ == 3 ? 2 : 3;
  cluster_->Kill(dead);
  Report report = Status(Follower());
  EXPECT_EQ(report.exit_code, 1);
  EXPECT_EQ(report.Verdict(), "degraded");
  EXPECT_THAT(report.Strings("reasons"), ::testing::ElementsAre(absl::StrCat(
                                             "replica ", dead, " (", cluster_->grpc_address(dead),
                                             ") did not answer (UNAVAILABLE)")));
  EXPECT_EQ(report.Summary("nodes"), "1");
  EXPECT_EQ(report.Summary("late_leases"), "0");
}

TEST_F(StatusTest, WithoutAQuorumTheSystemIsUnavailable) {
  const uint64_t alive = leader_ == 1 ? 2 : 1;
  for (uint64_t id : cluster_->ids()) {
    if (id != alive) cluster_->Kill(id);
  }
  Report report = Status(cluster_->grpc_address(alive));
  EXPECT_EQ(report.exit_code, 1);
  EXPECT_EQ(report.Verdict(), "unavailable");
  EXPECT_THAT(report.Strings("reasons"),
              ::testing::Contains("only 1 of 3 voters answered (a quorum is 2)"));
  EXPECT_THAT(report.err, StartsWith("zmeshctl: UNAVAILABLE: unavailable: "));
  EXPECT_FALSE(report.json.fields().contains("summary"));

  CommandResult table = Ctl({"status"}, cluster_->grpc_address(alive));
  EXPECT_THAT(Lines(table.out).back(), StartsWith("Health: unavailable: "));
}

TEST_F(StatusTest, TheLeaderIsAskedEvenWhenNotGiven) {
  std::vector<std::string> followers;
  for (uint64_t id : cluster_->ids()) {
    if (id != leader_) followers.push_back(cluster_->grpc_address(id));
  }
  Report report = Status(absl::StrJoin(followers, ","));
  EXPECT_EQ(report.exit_code, 0) << report.err;
  EXPECT_EQ(report.Verdict(), "healthy");
  EXPECT_EQ(report.json.fields().at("leader_id").string_value(), absl::StrCat(leader_));
  EXPECT_EQ(report.Summary("read_from"), cluster_->grpc_address(leader_));
  EXPECT_EQ(report.json.fields().at("endpoints").list_value().values_size(), 3);
}

TEST_F(StatusTest, BadThresholdsAreUsageErrors) {
  CommandResult zero = Ctl({"status", "--late-percent", "0"});
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_THAT(zero.err, StartsWith("zmeshctl: "));
  EXPECT_THAT(zero.err, HasSubstr("--late-percent"));
  EXPECT_EQ(Ctl({"status", "--max-lag", "-1"}).exit_code, 2);
}

// A cluster restored from a backup as docs/operations.md says: a replica added with an empty
// data dir gets the backup's content (the restored replicas snapshot it before anyone joins), so
// status finds the cluster healthy; one restored from the same backup first is healthy too.
class RestoredClusterTest : public RestoredReplicasTest {};

TEST_F(RestoredClusterTest, AJoinerHoldsTheBackupWithOrWithoutRestoringItFirst) {
  // The backup: a directory with the node "before", copied online as operations.md says.
  const std::string backup = MakeBackup();
  ASSERT_FALSE(backup.empty());
  std::vector<const Replica*> restored = StartRestoredCluster(backup, 3);
  const std::string cluster = Addresses(restored);
  ASSERT_TRUE(Eventually([&] { return Ctl(cluster, {"status"}).exit_code == 0; }, 20000))
      << Ctl(cluster, {"status"}).out;
  EXPECT_THAT(Ctl(cluster, {"nodes", "list"}).out, HasSubstr("before"));

  // Joined with an empty data dir: caught up, with the backup's node, healthy.
  Replica& empty = Add(4, "");
  Launch(empty, {"--join"});
  ASSERT_EQ(Ctl(cluster, {"members", "add", "4", empty.raft}).exit_code, 0);
  std::vector<const Replica*> with_empty = restored;
  with_empty.push_back(&empty);
  CommandResult status;
  EXPECT_TRUE(Eventually(
      [&] {
        status = Ctl(Addresses(with_empty), {"status"});
        return status.exit_code == 0;
      },
      20000))
      << status.out;
  EXPECT_THAT(status.out, Not(HasSubstr("its state differs from the leader's")));
  EXPECT_THAT(LocalNodes(empty), HasSubstr("before"));

  // Replaced by one restored from the same backup first: the same state, healthy.
  ASSERT_EQ(Ctl(cluster, {"members", "remove", "4"}).exit_code, 0);
  KillAndReap(*empty.process);
  Replica& joiner = Add(5, backup);
  Launch(joiner, {"--join"});
  ASSERT_EQ(Ctl(cluster, {"members", "add", "5", joiner.raft}).exit_code, 0);
  std::vector<const Replica*> with_joiner = restored;
  with_joiner.push_back(&joiner);
  EXPECT_TRUE(Eventually(
      [&] {
        status = Ctl(Addresses(with_joiner), {"status"});
        return status.exit_code == 0;
      },
      20000))
      << status.out;
  EXPECT_THAT(LocalNodes(joiner), HasSubstr("before"));
}

}  // namespace
}  // namespace zmesh::testing
