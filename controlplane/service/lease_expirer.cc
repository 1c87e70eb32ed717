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

absl::Status LeaseExpirer::Start() {
  absl::StatusOr<directory::v1::ListLeasesResponse> leases = store_.ListLeases();
  if (!leases.ok()) return leases.status();
  for (const directory::v1::Lease& lease : leases->leases()) {
    keeper_.Track(lease.id(), lease.ttl_ms());
  }
  if (leases->leases_size() > 0) {
    ZLOG_INFO("restarted the TTL of %d leases", leases->leases_size());
  }
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void LeaseExpirer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void LeaseExpirer::OnApplied(const state::v1::Command& command,
                             const store::CommandResult& result) {
  if (!result.status.ok()) return;
  if (command.has_grant_lease()) {
    keeper_.Track(result.lease_id, command.grant_lease().ttl_ms());
    absl::MutexLock lock(&mu_);
    changed_ = true;
  }
  for (int64_t id : result.leases_deleted) keeper_.Forget(id);
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
    // grant or stop wakes us.
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
