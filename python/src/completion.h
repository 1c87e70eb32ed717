// Completion: the C++ side of a `zmesh._zmesh.Pending`, and BlockingPool, the few binding-level
// threads that run the libzmesh calls that have no async form.
//
// Python never blocks inside the binding: an operation returns a Completion whose eventfd
// becomes readable once it is done, and Python waits on that fd with select.select (green under
// eventlet.monkey_patch(), GIL-free under plain threads). C++ threads never call into Python:
// they only set the status and a C++ value, and write the eventfd.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace zmesh::python {

// Thread-safe. Completes once; later Complete() calls are ignored. The fd stays open (and
// readable once done) until the Completion is destroyed.
class Completion {
 public:
  // INTERNAL error (with the errno text) when no eventfd could be made.
  static std::shared_ptr<Completion> Create();
  // A completion that is already done with `status` (validation errors found before starting).
  static std::shared_ptr<Completion> Failed(absl::Status status);

  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;
  ~Completion();

  // Marks the operation done. `status` not OK: result() raises; OK: `value` (may be empty) is
  // what result() converts (a C++ value, never a Python object: it may be
  // destroyed on any thread). Never blocks beyond a short mutex hold.
  void Complete(absl::Status status, std::shared_ptr<void> value = nullptr);

  int fd() const { return fd_; }
  bool done() const;
  // Only meaningful once done().
  absl::Status status() const;
  std::shared_ptr<void> value() const;

 private:
  explicit Completion(int fd) : fd_(fd) {}

  const int fd_;  // eventfd (-1 when creation failed: then done from the start)
  mutable absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<void> value_ ABSL_GUARDED_BY(mu_);
};

// Writes 1 to an eventfd (it becomes readable). Ignores EAGAIN (already readable enough).
void SignalEventFd(int fd);
// Reads an eventfd down to 0 (it stops being readable). Non-blocking.
void DrainEventFd(int fd);

// Runs `task` on a binding-level worker thread. The pool grows while every thread is busy (a
// long Server::Stop must not hold up a Fanout), up to 32 threads, and idle threads exit after a
// while. A task must never wait for another pool task. Threads never
// touch Python. After fork() the child starts with a fresh, empty pool (pthread_atfork): the
// parent's threads do not exist there.
void RunBlocking(std::function<void()> task);

// True when called in the process that `pid` names: objects made before a fork() are unusable in
// the child (their libzmesh threads do not exist there), so they are leaked instead of closed.
bool SameProcess(pid_t pid);

}  // namespace zmesh::python
