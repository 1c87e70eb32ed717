// zmesh-directory: one replica of the zmesh directory service.
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/metrics/metrics_server.h"
#include "controlplane/service/directory_server.h"
#include "controlplane/store/sqlite_store.h"

ABSL_FLAG(std::string, data_dir, "", "Directory for the replica's state (required).");
ABSL_FLAG(std::string, listen, "127.0.0.1:9500",
          "gRPC address HOST:PORT to serve on; port 0 picks a free port.");
ABSL_FLAG(std::string, advertise, "",
          "gRPC address other replicas and clients reach this one at (default: the listen "
          "address).");
ABSL_FLAG(uint64_t, id, 1, "Replica id (a positive integer, unique in the cluster).");
ABSL_FLAG(std::string, raft_listen, "127.0.0.1:9510",
          "Raft address HOST:PORT this replica listens on and is reached at.");
ABSL_FLAG(std::string, initial_cluster, "",
          "Voters of a new cluster, ID=HOST:PORT,... (Raft addresses, this replica included). "
          "Empty: a one-member cluster. Ignored once the data dir holds a Raft log.");
ABSL_FLAG(bool, join, false,
          "Start empty and wait to be added to an existing cluster (zmeshctl members add).");
ABSL_FLAG(uint32_t, raft_election_timeout_ms, 200, "Raft election timeout.");
ABSL_FLAG(uint32_t, raft_heartbeat_timeout_ms, 20, "Raft heartbeat interval.");
ABSL_FLAG(uint32_t, raft_snapshot_threshold, 4096, "Take a snapshot after this many log entries.");
ABSL_FLAG(uint32_t, raft_snapshot_trailing, 1024,
          "Log entries kept after a snapshot, for followers that lag a little.");
ABSL_FLAG(int64_t, leader_wait_ms, 3000,
          "How long a request waits for a leader during an election before UNAVAILABLE.");
ABSL_FLAG(std::string, ready_file, "",
          "Once serving and joined to the cluster, write the listening address to this file "
          "(for scripts and tests); with --metrics-listen, a second line \"metrics=PORT\".");
ABSL_FLAG(int64_t, history_revisions, 10000, "Revisions of change history kept for watchers.");
ABSL_FLAG(int32_t, max_request_bytes, 1 << 20, "Largest request accepted, in bytes.");
ABSL_FLAG(std::string, restore_backup, "",
          "Create the replica's state from this backup of directory.db (made with sqlite3 "
          ".backup) into an empty --data-dir, then exit. Start the replica normally afterwards.");
ABSL_FLAG(std::string, metrics_listen, "",
          "Serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks a free port, "
          "written to the ready file). Empty: no metrics endpoint.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");
ABSL_FLAG(std::string, log_format, "text", "text or json.");

namespace {

// Set once the log is configured: failures from then on are log lines (JSON with
// --log-format json), so collectors see them.
bool logging = false;

int Fail(const std::string& message) {
  if (logging) {
    ZLOG_ERROR("%s", message);
  } else {
    std::fprintf(stderr, "zmesh-directory: %s\n", message.c_str());
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "zmesh-directory --data-dir DIR [--listen HOST:PORT] [--id N --raft-listen HOST:PORT\n"
      "                [--initial-cluster 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT | --join]]\n"
      "Serves the zmesh directory (nodes, registrations, leases, watch) over gRPC, replicated\n"
      "with Raft.");
  const std::vector<std::string> positional = zmesh::ParseFlags(argc, argv);
  if (positional.size() > 1) return Fail(absl::StrCat("unexpected argument: ", positional[1]));

  zmesh::log::Level level;
  zmesh::log::Format format;
  if (!zmesh::log::ParseLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    return Fail("--log-level must be debug, info, warning or error");
  }
  if (!zmesh::log::ParseFormat(absl::GetFlag(FLAGS_log_format), &format)) {
    return Fail("--log-format must be text or json");
  }
  zmesh::log::SetLevel(level);
  zmesh::log::SetFormat(format);
  zmesh::log::SetPrefix(absl::StrCat("directory-", absl::GetFlag(FLAGS_id)));
  // Until Raft has started, the role is unknown: "unavailable", term 0.
  zmesh::log::SetRaftState(zmesh::raft::RoleName(zmesh::raft::Role::kUnavailable), 0);
  logging = true;

  if (absl::GetFlag(FLAGS_data_dir).empty()) return Fail("--data-dir is required");
  if (const std::string backup = absl::GetFlag(FLAGS_restore_backup); !backup.empty()) {
    const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
    std::error_code ec;
    if (std::filesystem::exists(data_dir + "/raft", ec)) {
      return Fail(
          absl::StrCat("--restore-backup needs an empty data dir; ", data_dir, "/raft exists"));
    }
    std::filesystem::create_directories(data_dir, ec);
    if (absl::Status st =
            zmesh::store::SqliteStore::ImportBackup(backup, data_dir + "/directory.db");
        !st.ok()) {
      return Fail(absl::StrCat("restoring ", backup, ": ", st.message()));
    }
    std::printf("restored %s into %s; start the replica now\n", backup.c_str(), data_dir.c_str());
    return 0;
  }
  if (absl::GetFlag(FLAGS_history_revisions) < 1) {
    return Fail("--history-revisions must be at least 1");
  }
  if (absl::GetFlag(FLAGS_max_request_bytes) < 1024) {
    return Fail("--max-request-bytes must be at least 1024");
  }

  // Signals are taken synchronously by the main thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  zmesh::service::DirectoryServerOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.listen = absl::GetFlag(FLAGS_listen);
  options.advertise = absl::GetFlag(FLAGS_advertise);
  options.raft.id = absl::GetFlag(FLAGS_id);
  options.raft.raft_address = absl::GetFlag(FLAGS_raft_listen);
  options.raft.join = absl::GetFlag(FLAGS_join);
  options.raft.election_timeout_ms = absl::GetFlag(FLAGS_raft_election_timeout_ms);
  options.raft.heartbeat_timeout_ms = absl::GetFlag(FLAGS_raft_heartbeat_timeout_ms);
  options.raft.snapshot_threshold = absl::GetFlag(FLAGS_raft_snapshot_threshold);
  options.raft.snapshot_trailing = absl::GetFlag(FLAGS_raft_snapshot_trailing);
  options.leader_wait_ms = absl::GetFlag(FLAGS_leader_wait_ms);
  if (options.raft.id == 0) return Fail("--id must be a positive integer");
  if (options.raft.raft_address.find(':') == std::string::npos) {
    return Fail("--raft-listen must be HOST:PORT");
  }
  if (options.raft.heartbeat_timeout_ms == 0 ||
      options.raft.election_timeout_ms <= options.raft.heartbeat_timeout_ms) {
    return Fail("--raft-election-timeout-ms must be larger than --raft-heartbeat-timeout-ms");
  }
  const std::string initial_cluster = absl::GetFlag(FLAGS_initial_cluster);
  if (!initial_cluster.empty()) {
    if (options.raft.join) return Fail("--join and --initial-cluster exclude each other");
    absl::StatusOr<std::vector<zmesh::raft::RaftPeer>> peers =
        zmesh::raft::RaftConsensus::ParsePeers(initial_cluster);
    if (!peers.ok()) return Fail(absl::StrCat("--initial-cluster: ", peers.status().message()));
    bool self_listed = false;
    for (const zmesh::raft::RaftPeer& peer : *peers) {
      if (peer.id == options.raft.id) {
        self_listed = true;
        if (peer.address != options.raft.raft_address) {
          return Fail(absl::StrCat("--initial-cluster gives replica ", peer.id, " the address ",
                                   peer.address, " but --raft-listen is ",
                                   options.raft.raft_address));
        }
      }
    }
    if (!self_listed) {
      return Fail(absl::StrCat("--initial-cluster does not list this replica (--id ",
                               options.raft.id, ")"));
    }
    options.raft.initial_cluster = *std::move(peers);
  }
  options.history_revisions = absl::GetFlag(FLAGS_history_revisions);
  options.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  const std::string ready_file = absl::GetFlag(FLAGS_ready_file);
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  if (!options.metrics_listen.empty()) {
    if (absl::Status st = zmesh::metrics::ValidateListenAddress(options.metrics_listen); !st.ok()) {
      return Fail(absl::StrCat("--metrics-listen: ", st.message()));
    }
  }
  options.on_joined = [ready_file](const std::string& address, int metrics_port) {
    // Line 1 is the gRPC address (what every reader of the file takes); the metrics port
    // follows on its own line only when metrics are on.
    std::string contents = address + "\n";
    if (metrics_port > 0) absl::StrAppend(&contents, "metrics=", metrics_port, "\n");
    if (!ready_file.empty() && !zmesh::WriteFileAtomically(ready_file, contents)) {
      ZLOG_ERROR("cannot write ready file %s", ready_file);
    }
  };
  options.on_role_changed = [](const zmesh::raft::ConsensusStatus& status) {
    zmesh::log::SetRaftState(zmesh::raft::RoleName(status.role), status.term);
  };
  absl::StatusOr<std::unique_ptr<zmesh::service::DirectoryServer>> server =
      zmesh::service::DirectoryServer::Start(options);
  if (!server.ok()) return Fail(server.status().ToString());

  int signo = 0;
  sigwait(&signals, &signo);
  ZLOG_INFO("received %s", signo == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Shutdown();
  return 0;
}
