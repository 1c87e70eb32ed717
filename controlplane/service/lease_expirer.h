// LeaseExpirer: drives a LeaseKeeper from applied commands (grants start timing, revokes and
// expiries stop it) and proposes the expiry of leases whose deadline passed, from its own
// thread. Runs on the replica that owns lease timing (the only replica, or the leader).
#pragma once

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/raft/consensus.h"
#include "controlplane/service/lease_keeper.h"
#include "controlplane/store/store.h"

namespace zmesh::service {

// Thread-safe.
class LeaseExpirer final : public raft::ApplyObserver {
 public:
  // All references must outlive the expirer. The keeper must run on the system clock.
  LeaseExpirer(LeaseKeeper& keeper, raft::Consensus& consensus, store::Store& store);
  LeaseExpirer(const LeaseExpirer&) = delete;
  LeaseExpirer& operator=(const LeaseExpirer&) = delete;
  ~LeaseExpirer() override;

  // Gives every lease in the store a fresh TTL and starts the expiry thread.
  [[nodiscard]] absl::Status Start();
  void Stop();

  void OnApplied(const state::v1::Command& command, const store::CommandResult& result) override;

 private:
  void Run();

  LeaseKeeper& keeper_;
  raft::Consensus& consensus_;
  store::Store& store_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool changed_ ABSL_GUARDED_BY(mu_) = false;  // a deadline may have moved earlier
  std::thread thread_;
};

}  // namespace zmesh::service
