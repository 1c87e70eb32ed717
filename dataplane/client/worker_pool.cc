#include "dataplane/client/worker_pool.h"

#include <pthread.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace zmesh::internal {

WorkerPool::WorkerPool(int threads, const char* name) {
  if (threads < 1) threads = 1;
  threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this, thread_name = absl::StrCat(name, "-", i).substr(0, 15)] {
      pthread_setname_np(pthread_self(), thread_name.c_str());
      Run();
    });
  }
}

WorkerPool::~WorkerPool() { Stop(); }

size_t WorkerPool::queued() const { return queued_.load(std::memory_order_relaxed); }

bool WorkerPool::Submit(Task task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  tasks_.push_back(std::move(task));
  queued_.store(tasks_.size(), std::memory_order_relaxed);
  return true;
}

void WorkerPool::Stop() {
  absl::MutexLock join_lock(&join_mu_);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void WorkerPool::Run() {
  while (true) {
    Task task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](WorkerPool* p) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return p->stopping_ || !p->tasks_.empty();
          },
          this));
      if (tasks_.empty()) return;  // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
      queued_.store(tasks_.size(), std::memory_order_relaxed);
    }
    std::move(task)();
  }
}

}  // namespace zmesh::internal
