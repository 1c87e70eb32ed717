#include "controlplane/service/lease_expirer.h"

#include <algorithm>

#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/log.h"

namespace zmesh::service {

LeaseExpirer::LeaseExpirer(LeaseKeeper& keeper, raft::Consensus& consensus, store::Store& store)
    : keeper_(keeper), consensus_(consensus), store_(store) {}

LeaseExpirer::~LeaseExpirer() { Stop(); }

void LeaseExpirer::Start() {
  thread_ = std::thread([this] { Run(); });
}

void LeaseExpirer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool LeaseExpirer::active() {
  absl::MutexLock lock(&mu_);
  return active_;
}

absl::StatusOr<int64_t> LeaseExpirer::Renew(int64_t id) {
  if (!active()) {
    return absl::UnavailableError("this replica does not time leases now (not the leader yet)");
  }
  return keeper_.Renew(id);
}

int64_t LeaseExpirer::RemainingMs(int64_t id) {
  if (!active()) return -1;
  return keeper_.RemainingMs(id).value_or(-1);
}

void LeaseExpirer::OnRoleChanged(const raft::ConsensusStatus& status) {
  absl::MutexLock lock(&mu_);
  if (status.role == raft::Role::kLeader) {
    if (leader_term_ == status.term) return;
    leader_term_ = status.term;
    active_ = false;
    const uint64_t term = status.term;
    // Every grant committed before we lead must be applied before we time leases.
    consensus_.Barrier([this, term](absl::Status barrier) {
      if (!barrier.ok()) {
        ZLOG_WARNING("lease timing not started: %s", std::string(barrier.message()));
        return;
      }
      Activate(term);
    });
    return;
  }
  if (leader_term_ != 0) ZLOG_INFO("not the leader: lease timing handed over");
  leader_term_ = 0;
  active_ = false;
  keeper_.Clear();
}

void LeaseExpirer::Activate(uint64_t term) {
  absl::StatusOr<directory::v1::ListLeasesResponse> leases = store_.ListLeases();
  absl::MutexLock lock(&mu_);
  if (leader_term_ != term) return;  // lost leadership meanwhile
  if (!leases.ok()) {
    ZLOG_ERROR("loading leases failed: %s", std::string(leases.status().message()));
    return;
  }
  keeper_.Clear();
  for (const directory::v1::Lease& lease : leases->leases()) {
    keeper_.Track(lease.id(), lease.ttl_ms());
  }
  active_ = true;
  changed_ = true;
  ZLOG_INFO("timing %d leases, each with a fresh TTL", leases->leases_size());
}

void LeaseExpirer::OnApplied(const state::v1::Command& command,
                             const store::CommandResult& result) {
  if (!result.status.ok()) return;
  for (int64_t id : result.leases_deleted) keeper_.Forget(id);
  if (command.has_grant_lease()) {
    absl::MutexLock lock(&mu_);
    if (!active_) return;
    keeper_.Track(result.lease_id, command.grant_lease().ttl_ms());
    changed_ = true;
  }
}

void LeaseExpirer::Run() {
  const Clock& clock = SystemClock::Get();
  while (true) {
    std::vector<int64_t> expired = keeper_.TakeExpired();
    if (!expired.empty()) {
      ZLOG_INFO("leases expired: %s", absl::StrJoin(expired, ", "));
      state::v1::Command command;
      for (int64_t id : expired) command.mutable_expire_leases()->add_ids(id);
      consensus_.Propose(std::move(command),
                         [this, expired](absl::StatusOr<store::CommandResult> result) {
                           if (result.ok()) return;  // OnApplied forgets them
                           ZLOG_WARNING("expiring leases failed, will retry: %s",
                                        std::string(result.status().message()));
                           keeper_.Release(expired);
                           absl::MutexLock lock(&mu_);
                           changed_ = true;
                         });
    }
    // Sleep until the next deadline (at most 1 s, so released leases are retried), or until a
    // grant, an activation or Stop wakes us.
    std::optional<int64_t> next = keeper_.NextDeadlineMs();
    int64_t wait_ms = 1000;
    if (next) wait_ms = std::clamp<int64_t>(*next - clock.NowMs(), 0, 1000);
    absl::MutexLock lock(&mu_);
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || changed_; };
    mu_.AwaitWithTimeout(absl::Condition(&woken), absl::Milliseconds(wait_ms));
    if (stopping_) return;
    changed_ = false;
  }
}

}  // namespace zmesh::service
