#include "dataplane/client/dedup_window.h"

#include <cstring>

namespace zmesh::internal {

std::string DedupWindow::Key(const std::string& sender, uint64_t message_id) {
  std::string key(sizeof(message_id), '\0');
  std::memcpy(key.data(), &message_id, sizeof(message_id));
  key += sender;
  return key;
}

DedupWindow::State DedupWindow::Begin(const std::string& sender, uint64_t message_id) {
  std::string key = Key(sender, message_id);
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = states_.try_emplace(key, State::kRunning);
  if (!inserted) return it->second;
  order_.push_back(std::move(key));
  // Forgotten keys stay in order_ until they reach the front; bound both containers.
  while (static_cast<int64_t>(states_.size()) > capacity_ ||
         static_cast<int64_t>(order_.size()) > 2 * capacity_) {
    states_.erase(order_.front());
    order_.pop_front();
  }
  return State::kNew;
}

void DedupWindow::Finish(const std::string& sender, uint64_t message_id) {
  absl::MutexLock lock(&mu_);
  auto it = states_.find(Key(sender, message_id));
  if (it != states_.end()) it->second = State::kDone;
}

void DedupWindow::Forget(const std::string& sender, uint64_t message_id) {
  absl::MutexLock lock(&mu_);
  states_.erase(Key(sender, message_id));
}

int64_t DedupWindow::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(states_.size());
}

}  // namespace zmesh::internal
