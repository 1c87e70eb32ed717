// RestoredReplicasTest: a test fixture for directory replicas started by hand, one flag set at a
// time, as an operator restoring a backup does (zmesh-directory --restore-backup, then
// --initial-cluster or --join; docs/operations.md "Backup and restore"), with zmeshctl at hand.
// Real processes on free loopback ports; everything lives in the fixture's TempDir (data dirs,
// ready files, logs "replica-<id>.log"). Shared by the CLI's status tests and the integration
// test of joining a restored cluster.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/directory_process.h"
#include "tests/support/subprocess.h"

namespace zmesh::testing {

class RestoredReplicasTest : public ::testing::Test {
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
      EXPECT_THAT(restored.out, ::testing::HasSubstr("start the replica now"));
    }
    replicas_.push_back(std::move(replica));
    return replicas_.back();
  }

  // Starts the replica with `membership` (--initial-cluster ... or --join) and its ready file.
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

  // Starts replicas 1..n restored from `backup` as one cluster; returns them.
  std::vector<const Replica*> StartRestoredCluster(const std::string& backup, int n) {
    std::vector<Replica*> restored;
    for (int id = 1; id <= n; ++id) restored.push_back(&Add(id, backup));
    const std::string voters =
        absl::StrJoin(restored, ",", [](std::string* out, const Replica* replica) {
          absl::StrAppend(out, replica->id, "=", replica->raft);
        });
    for (Replica* replica : restored) Launch(*replica, {"--initial-cluster", voters});
    return {restored.begin(), restored.end()};
  }

  // Their gRPC addresses, as zmeshctl --directory takes them.
  static std::string Addresses(const std::vector<const Replica*>& replicas) {
    return absl::StrJoin(replicas, ",", [](std::string* out, const Replica* replica) {
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

}  // namespace zmesh::testing
