// WorkerPool: a fixed set of threads running queued tasks in order of submission. Runs the
// handlers of a Server or NotificationListener, and the completion callbacks of a Transport.
#pragma once

#include <atomic>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace zmesh::internal {

// Thread-safe.
class WorkerPool {
 public:
  using Task = absl::AnyInvocable<void() &&>;

  // `name` (at most 15 bytes, as the kernel keeps it) names the threads for top -H, perf and
  // /proc: "<name>-<i>".
  WorkerPool(int threads, const char* name);
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  ~WorkerPool();  // Stop()

  // Queues a task; false (task dropped) once stopped.
  bool Submit(Task task);
  // Tasks queued and not yet started (lock-free: the engine's I/O loop asks on every round).
  size_t queued() const;
  // Runs every task already queued, waits for them, then joins the threads. Idempotent.
  void Stop();

 private:
  void Run();

  absl::Mutex mu_;
  std::deque<Task> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<size_t> queued_{0};  // tasks_.size(), written under mu_
  std::vector<std::thread> threads_;
  absl::Mutex join_mu_;  // serializes Stop() callers
};

}  // namespace zmesh::internal
