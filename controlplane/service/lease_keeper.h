// LeaseKeeper: lease timing, outside the state machine. It knows each live lease's TTL and
// deadline, renews leases on keepalive, and says which leases ran out; expiring them is a
// command proposed by its owner (the expiry is then replicated like any other change).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"

namespace zmesh::service {

// Thread-safe.
class LeaseKeeper {
 public:
  // `clock` must outlive the keeper.
  explicit LeaseKeeper(const Clock& clock) : clock_(clock) {}
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Starts timing a lease with a fresh TTL (a grant, or every lease when a replica takes over).
  void Track(int64_t id, int64_t ttl_ms);
  // Stops timing a lease (revoked or expired).
  void Forget(int64_t id);
  void Clear();

  // Renews a lease to its full TTL and returns the TTL. NOT_FOUND when the lease is unknown or
  // its deadline has already passed (it is being expired).
  absl::StatusOr<int64_t> Renew(int64_t id);
  // Milliseconds left (0 when past its deadline), or nullopt for an unknown lease.
  std::optional<int64_t> RemainingMs(int64_t id) const;

  // Leases whose deadline has passed and that were not handed out before; each id is handed
  // out once (until Release). The caller proposes their expiry.
  std::vector<int64_t> TakeExpired();
  // Hands ids back to be taken again (their expiry could not be committed).
  void Release(const std::vector<int64_t>& ids);
  // Earliest deadline among leases not yet taken, in the clock's milliseconds.
  std::optional<int64_t> NextDeadlineMs() const;
  size_t size() const;

 private:
  struct Timing {
    int64_t ttl_ms;
    int64_t deadline_ms;
    bool taken;  // handed out by TakeExpired
  };
  const Clock& clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<int64_t, Timing> leases_ ABSL_GUARDED_BY(mu_);
};

}  // namespace zmesh::service
