// RaftConsensus: the directory's consensus on libraft, with libuv disk and TCP I/O.
//
// All libraft calls happen on one loop thread owned by this class; other threads hand work over
// through a queue and a uv_async_t, so no gRPC thread ever waits on Raft. Commands are applied
// to the Store by StoreFsm on the loop thread, which then tells the observers and completes the
// proposal.
//
// Timing (see docs/architecture.md): pre-vote on, election timeout ~200 ms and heartbeat
// ~20 ms by default (libraft's defaults give ~3 s failover); snapshots every
// `snapshot_threshold` entries, keeping `snapshot_trailing` entries for lagging followers.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/metrics/histogram.h"
#include "controlplane/raft/consensus.h"
#include "controlplane/store/store.h"

namespace zmesh::raft {

struct RaftPeer {
  uint64_t id = 0;
  std::string address;  // host:port for Raft
};

struct RaftConsensusOptions {
  uint64_t id = 1;
  // Where this replica listens for Raft and how the others reach it (host:port).
  std::string raft_address = "127.0.0.1:9510";
  // Raft log and snapshots (created if missing).
  std::string dir;
  // Voters of a new cluster; empty: a one-member cluster of this replica. Ignored when the log
  // already holds a configuration (a restart) and when `join` is set.
  std::vector<RaftPeer> initial_cluster;
  // Start empty and wait to be added to an existing cluster (zmeshctl members add).
  bool join = false;
  unsigned election_timeout_ms = 200;
  unsigned heartbeat_timeout_ms = 20;
  unsigned snapshot_threshold = 4096;
  unsigned snapshot_trailing = 1024;
};

// What this replica's consensus did, for metrics. Thread-safe (relaxed atomics).
struct RaftStats {
  // Proposals this replica made as leader that were applied (including commands the state
  // machine rejected, e.g. NOT_FOUND: they were committed all the same).
  std::atomic<uint64_t> proposals_committed{0};
  // Proposals that failed after reaching Raft: leadership lost, not committed, Raft errors.
  // (A "not the leader" answer proposes nothing and is not counted.)
  std::atomic<uint64_t> proposals_failed{0};
  // Times this replica saw a new leader (a known leader id different from the last one).
  std::atomic<uint64_t> leader_changes{0};
  // Seconds from proposing on the leader to the command applied there.
  metrics::AtomicHistogram proposal_seconds;
};

// Thread-safe.
class RaftConsensus final : public Consensus {
 public:
  // `store` must outlive this object.
  RaftConsensus(store::Store& store, RaftConsensusOptions options);
  RaftConsensus(const RaftConsensus&) = delete;
  RaftConsensus& operator=(const RaftConsensus&) = delete;
  ~RaftConsensus() override;  // Stop()

  // Opens the log (replaying it into the store), joins the cluster and returns once running.
  absl::Status Start() override;
  void Stop() override;
  void Propose(state::v1::Command command, Done done) override;
  void Barrier(StatusDone done) override;
  void WaitApplied(uint64_t index, int64_t timeout_ms, StatusDone done) override;
  void LeaderReadIndex(absl::AnyInvocable<void(absl::StatusOr<ReadIndex>) &&> done) override;
  void CurrentLeadership(absl::AnyInvocable<void(ConsensusStatus) &&> done) override;
  void AddMember(uint64_t id, const std::string& raft_address, StatusDone done) override;
  void RemoveMember(uint64_t id, StatusDone done) override;
  void TransferLeadership(uint64_t id,
                          absl::AnyInvocable<void(absl::StatusOr<uint64_t>) &&> done) override;
  ConsensusStatus status() const override;
  std::vector<MemberInfo> members() const override;
  void AddObserver(ApplyObserver* observer) override;
  void AddRoleObserver(RoleObserver* observer) override;

  const RaftStats& stats() const;
  // Seconds spent applying each command to the store (every replica).
  const metrics::AtomicHistogram& apply_seconds() const;
  uint64_t snapshots_taken() const;
  uint64_t snapshots_restored() const;

  // Parses "1=host:port,2=host:port" (ids > 0, distinct).
  static absl::StatusOr<std::vector<RaftPeer>> ParsePeers(absl::string_view text);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zmesh::raft
