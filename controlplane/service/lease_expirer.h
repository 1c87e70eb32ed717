// LeaseExpirer: lease timing on the replica that owns it, the leader. It drives a LeaseKeeper
// from applied commands (grants start timing, revokes and expiries stop it), answers renewals,
// and proposes the expiry of leases whose deadline passed, from its own thread.
//
// On becoming leader it waits for a Raft barrier (so every committed grant is applied), then
// gives every lease in the store a fresh TTL and starts answering; until then renewals get
// UNAVAILABLE (retry), never a wrong NOT_FOUND. On losing leadership it forgets all timing.
#pragma once

#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/raft/consensus.h"
#include "controlplane/service/lease_keeper.h"
#include "controlplane/store/store.h"

namespace zmesh::service {

// Thread-safe.
class LeaseExpirer final : public raft::ApplyObserver, public raft::RoleObserver {
 public:
  // All references must outlive the expirer. The keeper must run on the system clock.
  LeaseExpirer(LeaseKeeper& keeper, raft::Consensus& consensus, store::Store& store);
  LeaseExpirer(const LeaseExpirer&) = delete;
  LeaseExpirer& operator=(const LeaseExpirer&) = delete;
  ~LeaseExpirer() override;

  // Starts the expiry thread.
  void Start();
  void Stop();

  // Renews a lease: its TTL, NOT_FOUND when unknown or expired, UNAVAILABLE when this replica
  // does not own lease timing (not the leader, or still loading).
  absl::StatusOr<int64_t> Renew(int64_t id);
  // Remaining time of a lease, or -1 when this replica does not own lease timing.
  int64_t RemainingMs(int64_t id);
  bool active();

  void OnApplied(const state::v1::Command& command, const store::CommandResult& result) override;
  void OnRoleChanged(const raft::ConsensusStatus& status) override;

 private:
  void Run();
  // Loads every lease with a fresh TTL and starts answering (on the apply thread).
  void Activate(uint64_t term);

  LeaseKeeper& keeper_;
  raft::Consensus& consensus_;
  store::Store& store_;
  absl::Mutex mu_;
  bool active_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t leader_term_ ABSL_GUARDED_BY(mu_) = 0;  // term we lead in, 0 when not leading
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool changed_ ABSL_GUARDED_BY(mu_) = false;  // a deadline may have moved earlier
  std::thread thread_;
};

}  // namespace zmesh::service
