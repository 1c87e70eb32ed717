#include "dataplane/client/timer_heap.h"

#include <algorithm>
#include <utility>

namespace zmesh::internal {

void TimerHeap::Add(int64_t due_ms, Callback callback, uint64_t owner) {
  heap_.push_back(Entry{due_ms, next_seq_++, owner, std::move(callback)});
  std::push_heap(heap_.begin(), heap_.end(), Later);
}

size_t TimerHeap::RemoveIf(const std::function<bool(uint64_t owner, int64_t due_ms)>& stale) {
  const size_t before = heap_.size();
  heap_.erase(std::remove_if(heap_.begin(), heap_.end(),
                             [&](const Entry& e) { return e.owner != 0 && stale(e.owner, e.due_ms); }),
              heap_.end());
  std::make_heap(heap_.begin(), heap_.end(), Later);
  return before - heap_.size();
}

int64_t TimerHeap::MsUntilNext(int64_t now_ms) const {
  if (heap_.empty()) return -1;
  return std::max<int64_t>(0, heap_.front().due_ms - now_ms);
}

int TimerHeap::RunDue(int64_t now_ms) {
  int ran = 0;
  while (!heap_.empty() && heap_.front().due_ms <= now_ms) {
    std::pop_heap(heap_.begin(), heap_.end(), Later);
    Callback callback = std::move(heap_.back().callback);
    heap_.pop_back();
    std::move(callback)();
    ++ran;
  }
  return ran;
}

}  // namespace zmesh::internal
