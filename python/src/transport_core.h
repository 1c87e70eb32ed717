// TransportCore: the libzmesh Transport behind a `zmesh._zmesh.Transport`, plus what the binding
// needs around it: the inboxes to stop on close, and the pid of the process that made it (after
// fork() the child must neither use nor close it: the Transport's threads are the parent's).
#pragma once

#include <sys/types.h>

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "zmesh/transport.h"

namespace zmesh::python {

class Inbox;

// Thread-safe.
class TransportCore {
 public:
  // Blocking (Transport::Create waits for the proxy): run on the binding pool.
  static absl::StatusOr<std::shared_ptr<TransportCore>> Create(TransportOptions options);

  TransportCore(const TransportCore&) = delete;
  TransportCore& operator=(const TransportCore&) = delete;
  // Closes the Transport in the creating process; leaks it in a fork() child.
  ~TransportCore();

  // OK in the creating process; UNAVAILABLE in a fork() child (the object is the parent's).
  absl::Status CheckUsable() const;
  Transport& transport() { return *transport_; }

  // Remembered so Close() can stop it first.
  void AddInbox(const std::shared_ptr<Inbox>& inbox);
  // Blocking: stops every live inbox (unpopped calls and calls Python still handles fail), then
  // Transport::Close (pending calls fail UNAVAILABLE). Idempotent.
  void Close();

 private:
  explicit TransportCore(std::unique_ptr<Transport> transport);

  std::unique_ptr<Transport> transport_;
  const pid_t pid_;
  absl::Mutex mu_;
  std::vector<std::weak_ptr<Inbox>> inboxes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace zmesh::python
