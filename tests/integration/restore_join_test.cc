// A cluster restored from a backup (zmesh-directory --restore-backup, docs/operations.md) and a
// replica added to it later with an EMPTY data dir: the joiner must hold the backup's content,
// not only the Raft log written since the restore (the backup never went through the log). Real
// zmesh-directory processes and zmeshctl; the default snapshot threshold (4096 entries, far more
// than this test writes), so no scheduled snapshot hides the problem.
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/directory_process.h"
#include "tests/support/restored_replicas_test.h"
#include "tests/support/subprocess.h"

namespace zmesh::testing {
namespace {

using ::testing::HasSubstr;

class RestoreJoinTest : public RestoredReplicasTest {};

TEST_F(RestoreJoinTest, AJoinerWithAnEmptyDataDirGetsTheRestoredState) {
  const std::string backup = MakeBackup();
  ASSERT_FALSE(backup.empty());
  const std::string cluster = Addresses(StartRestoredCluster(backup, 3));
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
