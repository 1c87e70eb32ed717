// Inbox: what a Server or a NotificationListener of the binding received, waiting for Python to
// pop it. The libzmesh handler runs on a libzmesh worker thread and only queues: Python pops
// with `Inbox.pop()` when the inbox's eventfd is readable, so no C++ thread ever calls Python.
//
// CALL: the handler queues the message and then blocks its worker until Python answers
// (Message.reply / fail), the Message is garbage-collected unanswered (then the caller gets
// remote_error with kDroppedError), the inbox is stopped before Python popped it (drain_error),
// or the transport is closed / the Inbox collected (kAbandonedError). Blocking the worker keeps
// libzmesh's automatic heartbeats flowing while Python works, and keeps the Responder valid.
// CAST / FANOUT / NOTIFY: the handler returns once queued, but first waits while `queue_limit`
// messages wait in the inbox, so libzmesh's flow control pushes back on the senders instead of
// the inbox growing or dropping.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "zmesh/notification_listener.h"
#include "zmesh/server.h"
#include "zmesh/types.h"

namespace zmesh::python {

class TransportCore;

// Error text a caller gets when the server's Python code dropped its request (the Message was
// garbage-collected) without replying.
inline constexpr char kDroppedError[] =
    "zmesh: the server dropped the request without answering it";
// Error text a caller gets when its request was being handled by Python when the server's
// transport was closed or its inbox garbage-collected.
inline constexpr char kAbandonedError[] = "zmesh: the server stopped before answering the request";

// One received message. Immutable except for the answer state, which InboxQueue guards.
struct MessageState {
  MessageKind kind = MessageKind::kCall;
  Target target;
  std::string payload;
  std::string sender;
  uint64_t message_id = 0;
  // CALL only: valid while the worker waits (non-null), guarded by the queue's mutex.
  Responder* responder = nullptr;
  bool answered = false;  // guarded by the queue's mutex
};

// The queue between libzmesh's workers and Python. Thread-safe; shared (shared_ptr) by the Inbox,
// the handler closures and every popped Message, so Python may drop them in any order.
class InboxQueue {
 public:
  static absl::StatusOr<std::shared_ptr<InboxQueue>> Create(int64_t queue_limit);
  InboxQueue(const InboxQueue&) = delete;
  InboxQueue& operator=(const InboxQueue&) = delete;
  ~InboxQueue();

  // libzmesh worker thread; see the file comment. `responder` null for non-calls.
  void Handle(const Request& request, Responder* responder);

  // Never blocks beyond the mutex. Up to `max` messages, oldest first; [] when none.
  std::vector<std::shared_ptr<MessageState>> Pop(size_t max);
  // The first Reply/Fail of a CALL counts; no-ops for other kinds or once answered.
  void Reply(MessageState& message, std::string payload);
  void Fail(MessageState& message, std::string error);
  void Heartbeat(MessageState& message);
  // A popped Message's last Python reference went away: an unanswered CALL fails (kDroppedError).
  void Release(MessageState& message);

  // Stops receiving: unpopped CALLs fail with `drain_error`, other unpopped messages are dropped
  // (counted); what arrives later is treated the same way. With `abandon`, workers waiting for
  // Python to answer a popped CALL fail it (kAbandonedError) and return. Idempotent (a later
  // call may still abandon). Afterwards the fd stays readable and Pop returns [].
  void Stop(const std::string& drain_error, bool abandon);

  int fd() const { return fd_; }
  bool stopped() const;
  size_t size() const;
  int64_t dropped_on_stop() const;

 private:
  InboxQueue(int fd, size_t queue_limit) : fd_(fd), queue_limit_(queue_limit) {}
  bool HasRoomOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AnswerLocked(MessageState& message, bool ok, std::string payload)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int fd_;  // eventfd: non-zero exactly while messages wait (or once stopped)
  const size_t queue_limit_;
  mutable absl::Mutex mu_;
  std::deque<std::shared_ptr<MessageState>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;
  std::string drain_error_ ABSL_GUARDED_BY(mu_);
  int64_t dropped_on_stop_ ABSL_GUARDED_BY(mu_) = 0;
};

// A running Server or NotificationListener feeding an InboxQueue. Thread-safe. Keeps its
// TransportCore alive (libzmesh requires the Transport to outlive its servers).
class Inbox {
 public:
  // Blocking (announces to the proxy): run on the binding pool.
  static absl::StatusOr<std::shared_ptr<Inbox>> StartServer(
      std::shared_ptr<TransportCore> transport, Target target, int threads, int64_t queue_limit);
  static absl::StatusOr<std::shared_ptr<Inbox>> StartListener(
      std::shared_ptr<TransportCore> transport, std::vector<NotifyTarget> targets, std::string pool,
      int64_t queue_limit);

  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;
  // Stop(kAbandonedError, abandon = true) in the creating process; in a fork() child the
  // libzmesh objects are leaked (their threads do not exist there).
  ~Inbox();

  // Blocking. Server::Stop / NotificationListener::Stop (refuses new messages, withdraws the
  // target, waits for running handlers: for Python to answer the CALLs it popped) and
  // InboxQueue::Stop (fails unpopped CALLs with drain_error, drops other unpopped messages).
  // grace_ms <= 0 or `abandon`: the queue first, then libzmesh's Stop. grace_ms > 0: libzmesh's
  // Stop first while queued messages stay poppable, and the queue only once it returned or
  // grace_ms passed (whichever first), so a Python that keeps popping loses nothing.
  // Concurrent callers wait for the first.
  void Stop(const std::string& drain_error, bool abandon, int64_t grace_ms = 0);

  const std::shared_ptr<InboxQueue>& queue() const { return queue_; }
  pid_t pid() const { return pid_; }

 private:
  Inbox(std::shared_ptr<TransportCore> transport, std::shared_ptr<InboxQueue> queue);

  const std::shared_ptr<TransportCore> transport_;
  const std::shared_ptr<InboxQueue> queue_;
  const pid_t pid_;
  absl::Mutex stop_mu_;  // held across the blocking stop
  std::unique_ptr<Server> server_ ABSL_GUARDED_BY(stop_mu_);
  std::unique_ptr<NotificationListener> listener_ ABSL_GUARDED_BY(stop_mu_);
};

}  // namespace zmesh::python
