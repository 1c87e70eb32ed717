// A cluster restored from a backup (zmesh-directory --restore-backup, docs/operations.md) and a
// replica added to it later with an EMPTY data dir: the joiner must hold the backup's content,
// not only the Raft log written since the restore (the backup never went through the log). Real
// zmesh-directory processes and zmeshctl; the default snapshot threshold (4096 entries, far more
// than this test writes), so no scheduled snapshot hides the problem.
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/directory_process.h"
#include "tests/support/subprocess.h"

namespace zmesh::testing {
namespace {

using ::testing::HasSubstr;

class RestoreJoinTest : public ::testing::Test {
 protected:
  struct Replica {
    uint64_t id = 0;
    std::string grpc;
    std::string raft;
    std::string data_dir;
    std::string ready_file;
    std::unique_ptr<Subprocess> process;
  };

  // Picks the replica's ports; restores `backup` into its data dir unless empty.
  Replica& Add(uint64_t id, const std::string& backup) {
    Replica replica;
    replica.id = id;
    absl::StatusOr<int> grpc_port = PickFreePort();
    absl::StatusOr<int> raft_port = PickFreePort();
    EXPECT_TRUE(grpc_port.ok() && raft_port.ok());
    replica.grpc = absl::StrCat("127.0.0.1:", grpc_port.value_or(0));
    replica.raft = absl::StrCat("127.0.0.1:", raft_port.value_or(0));
    replica.data_dir = absl::StrCat(dir_.path(), "/replica-", id);
    replica.ready_file = absl::StrCat(dir_.path(), "/replica-", id, ".ready");
    if (!backup.empty()) {
      CommandResult restored = Run(
          {BinPath("zmesh-directory"), "--data-dir", replica.data_dir, "--restore-backup", backup});
      EXPECT_EQ(restored.exit_code, 0) << restored.err;
    }
    replicas_.push_back(std::move(replica));
    return replicas_.back();
  }

  void Launch(Replica& replica, std::vector<std::string> membership) {
    std::vector<std::string> argv = {BinPath("zmesh-directory"),
                                     "--id",
                                     absl::StrCat(replica.id),
                                     "--data-dir",
                                     replica.data_dir,
                                     "--listen",
                                     replica.grpc,
                                     "--raft-listen",
                                     replica.raft,
                                     "--ready-file",
                                     replica.ready_file};
    argv.insert(argv.end(), membership.begin(), membership.end());
    const std::string log = Log(replica);
    absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(argv, log, log);
    ASSERT_TRUE(process.ok()) << process.status();
    replica.process = *std::move(process);
  }

  std::string Log(const Replica& replica) {
    return absl::StrCat(dir_.path(), "/replica-", replica.id, ".log");
  }

  CommandResult Run(const std::vector<std::string>& argv) {
    absl::StatusOr<CommandResult> result = RunCommand(argv, 30000);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : CommandResult{};
  }

  CommandResult Ctl(const std::string& directory, std::vector<std::string> args) {
    std::vector<std::string> argv = {BinPath("zmeshctl"), "--directory", directory};
    argv.insert(argv.end(), args.begin(), args.end());
    return Run(argv);
  }

  // A backup of a one-replica directory holding the node "before", made online with sqlite3
  // as docs/operations.md says.
  std::string MakeBackup() {
    absl::StatusOr<std::unique_ptr<DirectoryProcess>> source =
        DirectoryProcess::Start(dir_.path() + "/source");
    EXPECT_TRUE(source.ok()) << source.status();
    if (!source.ok()) return "";
    EXPECT_EQ(Ctl((*source)->address(), {"nodes", "register", "before", "--host", "h"}).exit_code,
              0);
    const std::string backup = dir_.path() + "/backup.db";
    CommandResult copied =
        Run({"/usr/bin/sqlite3", (*source)->data_dir() + "/directory.db", ".backup " + backup});
    EXPECT_EQ(copied.exit_code, 0) << copied.err;
    EXPECT_TRUE((*source)->Stop().ok());
    return backup;
  }

  // Starts replicas 1..n restored from `backup` as one cluster; returns their gRPC addresses.
  std::string StartRestoredCluster(const std::string& backup, int n) {
    std::vector<Replica*> restored;
    for (int id = 1; id <= n; ++id) restored.push_back(&Add(id, backup));
    const std::string voters =
        absl::StrJoin(restored, ",", [](std::string* out, const Replica* replica) {
          absl::StrAppend(out, replica->id, "=", replica->raft);
        });
    for (Replica* replica : restored) Launch(*replica, {"--initial-cluster", voters});
    return absl::StrJoin(restored, ",", [](std::string* out, const Replica* replica) {
      out->append(replica->grpc);
    });
  }

  // The node names a replica lists from its own store (a stale read: no leader involved).
  std::string LocalNodes(const Replica& replica) {
    return Ctl(replica.grpc, {"--consistency", "stale", "nodes", "list"}).out;
  }

  TempDir dir_;
  std::deque<Replica> replicas_;  // stable addresses
};

TEST_F(RestoreJoinTest, AJoinerWithAnEmptyDataDirGetsTheRestoredState) {
  const std::string backup = MakeBackup();
  ASSERT_FALSE(backup.empty());
  const std::string cluster = StartRestoredCluster(backup, 3);
  CommandResult listed;
  ASSERT_TRUE(Eventually(
      [&] {
        listed = Ctl(cluster, {"nodes", "list"});
        return listed.exit_code == 0;
      },
      20000))
      << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("before"));
  // A change after the restore: in the Raft log, unlike the backup's content.
  ASSERT_EQ(Ctl(cluster, {"nodes", "register", "after", "--host", "h"}).exit_code, 0);

  Replica& joiner = Add(4, "");  // empty data dir
  Launch(joiner, {"--join"});
  CommandResult added = Ctl(cluster, {"members", "add", "4", joiner.raft});
  ASSERT_EQ(added.exit_code, 0) << added.err;

  // Joined: it records its gRPC address in the directory, then writes its ready file.
  EXPECT_TRUE(Eventually([&] { return ReadFile(joiner.ready_file).ok(); }, 20000))
      << TailFile(Log(joiner));
  std::string nodes;
  EXPECT_TRUE(Eventually(
      [&] {
        nodes = LocalNodes(joiner);
        return absl::StrContains(nodes, "before") && absl::StrContains(nodes, "after");
      },
      20000))
      << nodes << "\n"
      << TailFile(Log(joiner));

  // And it stays so when it restarts (the snapshot is loaded again, the log replayed after it).
  KillAndReap(*joiner.process);
  std::remove(joiner.ready_file.c_str());
  Launch(joiner, {"--join"});
  EXPECT_TRUE(Eventually([&] { return ReadFile(joiner.ready_file).ok(); }, 20000))
      << TailFile(Log(joiner));
  EXPECT_TRUE(Eventually(
      [&] {
        nodes = LocalNodes(joiner);
        return absl::StrContains(nodes, "before") && absl::StrContains(nodes, "after");
      },
      20000))
      << nodes;
}

// A restored replica restarted before anything was written still snapshots its state, so a
// joiner added afterwards gets it too.
TEST_F(RestoreJoinTest, ARestoredReplicaRestartedEarlyStillHandsTheStateToAJoiner) {
  const std::string backup = MakeBackup();
  ASSERT_FALSE(backup.empty());
  Replica& single = Add(1, backup);
  Launch(single, {});
  ASSERT_TRUE(Eventually([&] { return ReadFile(single.ready_file).ok(); }, 20000))
      << TailFile(Log(single));
  KillAndReap(*single.process);
  std::remove(single.ready_file.c_str());
  Launch(single, {});
  ASSERT_TRUE(Eventually([&] { return ReadFile(single.ready_file).ok(); }, 20000))
      << TailFile(Log(single));

  Replica& joiner = Add(2, "");
  Launch(joiner, {"--join"});
  CommandResult added = Ctl(single.grpc, {"members", "add", "2", joiner.raft});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  std::string nodes;
  EXPECT_TRUE(Eventually(
      [&] {
        nodes = LocalNodes(joiner);
        return absl::StrContains(nodes, "before");
      },
      20000))
      << nodes << "\n"
      << TailFile(Log(joiner));
}

// A proxy that kept running across a restore resumes its watch at a revision the restored
// directory has not reached: it must get the whole state (a snapshot) and then every change, not
// silently skip the changes up to its old revision.
TEST_F(RestoreJoinTest, AWatchResumedPastTheRestoredRevisionStartsWithASnapshot) {
  const std::string backup = MakeBackup();
  ASSERT_FALSE(backup.empty());
  Replica& single = Add(1, backup);
  Launch(single, {});
  ASSERT_TRUE(Eventually([&] { return ReadFile(single.ready_file).ok(); }, 20000))
      << TailFile(Log(single));

  const std::string out = dir_.path() + "/watch.out";
  const std::string err = dir_.path() + "/watch.err";
  absl::StatusOr<std::unique_ptr<Subprocess>> watch = Subprocess::Start(
      {BinPath("zmeshctl"), "--directory", single.grpc, "watch", "--nodes", "--from", "1000"}, out,
      err);
  ASSERT_TRUE(watch.ok()) << watch.status();
  EXPECT_TRUE(Eventually(
      [&] { return absl::StrContains(ReadFile(out).value_or(""), "PUT node before"); }, 20000))
      << ReadFile(out).value_or("") << ReadFile(err).value_or("");
  EXPECT_THAT(ReadFile(out).value_or(""), HasSubstr("(snapshot)"));

  ASSERT_EQ(Ctl(single.grpc, {"nodes", "register", "after", "--host", "h"}).exit_code, 0);
  EXPECT_TRUE(Eventually(
      [&] { return absl::StrContains(ReadFile(out).value_or(""), "PUT node after"); }, 20000))
      << ReadFile(out).value_or("") << ReadFile(err).value_or("");
  (*watch)->Signal(SIGTERM);
  absl::StatusOr<int> ended = (*watch)->Wait(10000);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_TRUE(WIFEXITED(*ended) && WEXITSTATUS(*ended) == 0) << DescribeWaitStatus(*ended);
}

}  // namespace
}  // namespace zmesh::testing
