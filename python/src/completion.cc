#include "python/src/completion.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace zmesh::python {

std::shared_ptr<Completion> Completion::Create() {
  const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  std::shared_ptr<Completion> completion(new Completion(fd));
  if (fd < 0) {
    // Nothing to wait on: done at once, and select() on -1 fails loudly instead of hanging.
    completion->Complete(absl::ResourceExhaustedError(
        absl::StrCat("zmesh: eventfd for a pending operation: ", std::strerror(errno))));
  }
  return completion;
}

std::shared_ptr<Completion> Completion::Failed(absl::Status status) {
  std::shared_ptr<Completion> completion = Create();
  completion->Complete(std::move(status));
  return completion;
}

Completion::~Completion() {
  if (fd_ >= 0) ::close(fd_);
}

void Completion::Complete(absl::Status status, std::shared_ptr<void> value) {
  absl::MutexLock lock(&mu_);
  if (done_) return;
  done_ = true;
  status_ = std::move(status);
  value_ = std::move(value);
  if (fd_ >= 0) SignalEventFd(fd_);
}

bool Completion::done() const {
  absl::MutexLock lock(&mu_);
  return done_;
}

absl::Status Completion::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

std::shared_ptr<void> Completion::value() const {
  absl::MutexLock lock(&mu_);
  return value_;
}

void SignalEventFd(int fd) {
  const uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(fd, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
}

void DrainEventFd(int fd) {
  uint64_t count;
  ssize_t n;
  do {
    n = ::read(fd, &count, sizeof(count));
  } while (n < 0 && errno == EINTR);
}

bool SameProcess(pid_t pid) { return ::getpid() == pid; }

namespace {

// How long an idle pool thread waits for work before it exits.
constexpr absl::Duration kIdleExit = absl::Seconds(10);
// Most threads at once: beyond it tasks queue (a burst of notifies must not make 1,000 threads).
// No task waits for another pool task, so a full pool only delays, never deadlocks.
constexpr int kMaxThreads = 32;

// Threads are detached and the pool is never destroyed: a process may exit (or the interpreter
// finalize) while a thread still waits in libzmesh, and joining there could hang the exit.
class BlockingPool {
 public:
  void Run(std::function<void()> task) {
    absl::MutexLock lock(&mu_);
    tasks_.push_back(std::move(task));
    if (idle_ < static_cast<int>(tasks_.size()) && threads_ < kMaxThreads) {
      // Every thread is busy (a Stop may wait for handlers for long): one more.
      ++threads_;
      std::thread([this] {
        pthread_setname_np(pthread_self(), "zmesh-py-pool");
        Loop();
      }).detach();
    }
  }

 private:
  void Loop() {
    absl::MutexLock lock(&mu_);
    while (true) {
      ++idle_;
      const bool got =
          mu_.AwaitWithTimeout(absl::Condition(this, &BlockingPool::HasTask), kIdleExit);
      --idle_;
      if (!got) {
        --threads_;
        return;
      }
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      mu_.Unlock();
      task();
      task = nullptr;  // what it captured goes before the lock is taken again
      mu_.Lock();
    }
  }

  bool HasTask() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !tasks_.empty(); }

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  int threads_ ABSL_GUARDED_BY(mu_) = 0;
  int idle_ ABSL_GUARDED_BY(mu_) = 0;  // threads waiting for a task
};

// The current process's pool. A fork() child gets nullptr (pthread_atfork): the parent's pool,
// its threads and maybe its locked mutex stay behind, leaked.
std::atomic<BlockingPool*> g_pool{nullptr};
absl::Mutex g_pool_mu(absl::kConstInit);

void ResetPoolInChild() {
  g_pool.store(nullptr);
  // The child may have inherited g_pool_mu locked by a parent thread mid-creation: make a fresh
  // one impossible to need by creating the pool here, while the child is single-threaded.
  g_pool.store(new BlockingPool());
}

BlockingPool& Pool() {
  BlockingPool* pool = g_pool.load(std::memory_order_acquire);
  if (pool != nullptr) return *pool;
  absl::MutexLock lock(&g_pool_mu);
  pool = g_pool.load();
  if (pool == nullptr) {
    static const int registered = pthread_atfork(nullptr, nullptr, &ResetPoolInChild);
    (void)registered;
    pool = new BlockingPool();
    g_pool.store(pool, std::memory_order_release);
  }
  return *pool;
}

}  // namespace

void RunBlocking(std::function<void()> task) { Pool().Run(std::move(task)); }

}  // namespace zmesh::python
