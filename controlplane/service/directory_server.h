// DirectoryServer: one zmesh-directory replica assembled: store, Raft consensus, lease timing,
// watch hub, leader routing and the gRPC services (Directory, Leases, Cluster, the internal
// Peer service, grpc.health.v1.Health and server reflection).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/raft/raft_consensus.h"

namespace zmesh::service {

struct DirectoryServerOptions {
  // Holds directory.db (SQLite, WAL), raft/ (the Raft log and snapshots) and a LOCK file;
  // created if missing.
  std::string data_dir;
  // gRPC address; port 0 picks a free port (see address()).
  std::string listen = "127.0.0.1:9500";
  // The address other replicas and clients reach this one at; default: address().
  std::string advertise;
  // Raft: id, address, initial cluster, timing (see RaftConsensusOptions).
  raft::RaftConsensusOptions raft;
  // Revisions of change history kept for watchers.
  int64_t history_revisions = 10000;
  // Largest request accepted; larger ones fail with RESOURCE_EXHAUSTED.
  int max_request_bytes = 1 << 20;
  // Messages queued for one slow watcher before its stream is ended.
  size_t max_watch_backlog = 10000;
  // How long a request waits for a leader during an election before UNAVAILABLE.
  int64_t leader_wait_ms = 3000;
  // Prometheus /metrics at "HOST:PORT" (port 0: any free port; see metrics_port()); empty:
  // no metrics endpoint (and no gRPC interceptor).
  std::string metrics_listen;
  // Called once, from an internal thread, when this replica has joined: its address is
  // recorded in the replicated state (so a leader exists and reaches it). Readiness.
  // `metrics_port` is the port /metrics is served on, 0 when off.
  std::function<void(const std::string& address, int metrics_port)> on_joined;
  // Called on the apply thread whenever this replica's Raft role, term or known leader changes
  // (e.g. to put the role and term in the log prefix), and once more from Shutdown() after Raft
  // stopped (role unavailable). Must not block.
  std::function<void(const raft::ConsensusStatus& status)> on_role_changed;
};

// Thread-safe.
class DirectoryServer {
 public:
  // Opens the data dir (FAILED_PRECONDITION if another process holds it), starts Raft and
  // serves.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DirectoryServer>> Start(
      DirectoryServerOptions options);
  DirectoryServer(const DirectoryServer&) = delete;
  DirectoryServer& operator=(const DirectoryServer&) = delete;
  ~DirectoryServer();  // Shutdown()

  // The address actually listened on ("127.0.0.1:43121").
  const std::string& address() const;
  // The port /metrics is served on; 0 when options.metrics_listen was empty.
  int metrics_port() const;
  // Stops serving: open streams are cancelled, in-flight writes finish or fail, Raft leaves,
  // the state is closed. Idempotent.
  void Shutdown();

 private:
  struct Impl;
  explicit DirectoryServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zmesh::service
