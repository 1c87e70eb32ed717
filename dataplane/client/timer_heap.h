// TimerHeap: callbacks due at given times, earliest first, for a single-threaded event loop (the
// Engine's I/O thread keeps its deadlines, retries and pings here instead of sleeping). Time is
// passed in, so tests drive it without waiting.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/functional/any_invocable.h"

namespace zmesh::internal {

// Not thread-safe: owned by one loop.
class TimerHeap {
 public:
  using Callback = absl::AnyInvocable<void() &&>;

  // Runs `callback` from the first RunDue(now) with now >= due_ms. `owner` (non-zero) names
  // what the timer is for, so RemoveIf can drop timers whose owner is gone.
  void Add(int64_t due_ms, Callback callback, uint64_t owner = 0);
  // Drops the timers with a non-zero owner for which stale(owner, due_ms) holds, without running
  // them. Returns how many were dropped.
  size_t RemoveIf(const std::function<bool(uint64_t owner, int64_t due_ms)>& stale);
  // Milliseconds until the earliest timer is due (0 when overdue), or -1 when there is none.
  int64_t MsUntilNext(int64_t now_ms) const;
  // Runs the callbacks due at now_ms in due order (ties: insertion order); callbacks may add
  // timers (those due by now_ms run in the same call). Returns how many ran.
  int RunDue(int64_t now_ms);
  size_t size() const { return heap_.size(); }

 private:
  struct Entry {
    int64_t due_ms;
    uint64_t seq;
    uint64_t owner;
    Callback callback;
  };
  static bool Later(const Entry& a, const Entry& b) {
    return a.due_ms != b.due_ms ? a.due_ms > b.due_ms : a.seq > b.seq;
  }

  std::vector<Entry> heap_;  // a min-heap by (due_ms, seq)
  uint64_t next_seq_ = 0;
};

}  // namespace zmesh::internal
