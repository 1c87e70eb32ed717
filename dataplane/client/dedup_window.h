// DedupWindow: the acknowledged casts a Server has seen, by (sender, message id), so a retried
// cast is acknowledged again without running its handler twice. Bounded: the oldest entries are
// forgotten first.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace zmesh::internal {

// Thread-safe.
class DedupWindow {
 public:
  enum class State { kNew, kRunning, kDone };

  explicit DedupWindow(int64_t capacity) : capacity_(capacity < 1 ? 1 : capacity) {}
  DedupWindow(const DedupWindow&) = delete;
  DedupWindow& operator=(const DedupWindow&) = delete;

  // Records (sender, id) as running when it is new and returns kNew; otherwise returns what is
  // known about it (kRunning: its handler has not finished; kDone: handled and acknowledged).
  State Begin(const std::string& sender, uint64_t message_id);
  // The handler ran: a later copy is acknowledged at once.
  void Finish(const std::string& sender, uint64_t message_id);
  // The message was not handled after all (refused at Stop): a later copy runs.
  void Forget(const std::string& sender, uint64_t message_id);
  int64_t size() const;

 private:
  static std::string Key(const std::string& sender, uint64_t message_id);

  const int64_t capacity_;
  mutable absl::Mutex mu_;
  std::unordered_map<std::string, State> states_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> order_ ABSL_GUARDED_BY(mu_);  // oldest first; may hold forgotten keys
};

}  // namespace zmesh::internal
