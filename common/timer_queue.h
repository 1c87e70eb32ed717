// TimerQueue: runs callbacks at a later time on one thread of its own. For retries and
// timeouts that must not hold a gRPC or Raft thread while they wait.
#pragma once

#include <cstdint>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace zmesh {

// Thread-safe. Callbacks run one at a time on the queue's thread and must not block long.
class TimerQueue {
 public:
  TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;
  // Runs every callback still queued (at once, in time order), then joins the thread.
  ~TimerQueue();

  // Runs `callback` after delay_ms (on the monotonic clock).
  void RunAfter(int64_t delay_ms, absl::AnyInvocable<void() &&> callback);

 private:
  void Run();

  absl::Mutex mu_;
  std::multimap<int64_t, absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);  // by due ms
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace zmesh
