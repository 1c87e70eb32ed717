#include "controlplane/service/lease_keeper.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace zmesh::service {

void LeaseKeeper::Track(int64_t id, int64_t ttl_ms) {
  absl::MutexLock lock(&mu_);
  leases_[id] = Timing{ttl_ms, clock_.NowMs() + ttl_ms, false};
}

void LeaseKeeper::Forget(int64_t id) {
  absl::MutexLock lock(&mu_);
  leases_.erase(id);
}

void LeaseKeeper::Clear() {
  absl::MutexLock lock(&mu_);
  leases_.clear();
}

absl::StatusOr<int64_t> LeaseKeeper::Renew(int64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return absl::NotFoundError(absl::StrCat("lease ", id, " not found"));
  const int64_t now = clock_.NowMs();
  if (it->second.taken || now >= it->second.deadline_ms) {
    return absl::NotFoundError(absl::StrCat("lease ", id, " has expired"));
  }
  it->second.deadline_ms = now + it->second.ttl_ms;
  return it->second.ttl_ms;
}

std::optional<int64_t> LeaseKeeper::RemainingMs(int64_t id) const {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return std::nullopt;
  return std::max<int64_t>(0, it->second.deadline_ms - clock_.NowMs());
}

std::vector<int64_t> LeaseKeeper::TakeExpired() {
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_.NowMs();
  std::vector<int64_t> expired;
  for (auto& [id, timing] : leases_) {
    if (!timing.taken && now >= timing.deadline_ms) {
      timing.taken = true;
      expired.push_back(id);
    }
  }
  std::sort(expired.begin(), expired.end());
  return expired;
}

void LeaseKeeper::Release(const std::vector<int64_t>& ids) {
  absl::MutexLock lock(&mu_);
  for (int64_t id : ids) {
    auto it = leases_.find(id);
    if (it != leases_.end()) it->second.taken = false;
  }
}

std::optional<int64_t> LeaseKeeper::NextDeadlineMs() const {
  absl::MutexLock lock(&mu_);
  std::optional<int64_t> next;
  for (const auto& [id, timing] : leases_) {
    if (timing.taken) continue;
    if (!next || timing.deadline_ms < *next) next = timing.deadline_ms;
  }
  return next;
}

size_t LeaseKeeper::size() const {
  absl::MutexLock lock(&mu_);
  return leases_.size();
}

}  // namespace zmesh::service
