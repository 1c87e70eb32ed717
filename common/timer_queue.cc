#include "common/timer_queue.h"

#include "absl/time/time.h"
#include "common/clock.h"

namespace zmesh {

TimerQueue::TimerQueue() : thread_([this] { Run(); }) {}

TimerQueue::~TimerQueue() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void TimerQueue::RunAfter(int64_t delay_ms, absl::AnyInvocable<void() &&> callback) {
  absl::MutexLock lock(&mu_);
  queue_.emplace(SystemClock::Get().NowMs() + delay_ms, std::move(callback));
}

void TimerQueue::Run() {
  const Clock& clock = SystemClock::Get();
  absl::MutexLock lock(&mu_);
  while (true) {
    if (queue_.empty()) {
      if (stopping_) return;
      auto woken = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&woken));
      continue;
    }
    const int64_t due = queue_.begin()->first;
    const int64_t now = clock.NowMs();
    if (due > now && !stopping_) {
      // Wake at the due time, or earlier when something is queued or we stop.
      const size_t size = queue_.size();
      auto changed = [this, size]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || queue_.size() != size;
      };
      mu_.AwaitWithTimeout(absl::Condition(&changed), absl::Milliseconds(due - now));
      continue;
    }
    absl::AnyInvocable<void()&&> callback = std::move(queue_.begin()->second);
    queue_.erase(queue_.begin());
    mu_.Unlock();
    std::move(callback)();
    mu_.Lock();
  }
}

}  // namespace zmesh
