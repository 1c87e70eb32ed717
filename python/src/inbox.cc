#include "python/src/inbox.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "python/src/completion.h"
#include "python/src/gil.h"
#include "python/src/transport_core.h"

namespace zmesh::python {

namespace {

// Wakes a CALL's worker once Python answered it or the inbox gave up on it.
struct AnswerWaiter {
  const MessageState* message;
  const bool* abandoned;
  bool Ready() const { return message->answered || *abandoned; }
};

}  // namespace

absl::StatusOr<std::shared_ptr<InboxQueue>> InboxQueue::Create(int64_t queue_limit) {
  if (queue_limit < 1) return absl::InvalidArgumentError("queue_limit: must be >= 1");
  const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) {
    return absl::ResourceExhaustedError(absl::StrCat("zmesh: eventfd: ", std::strerror(errno)));
  }
  return std::shared_ptr<InboxQueue>(new InboxQueue(fd, static_cast<size_t>(queue_limit)));
}

InboxQueue::~InboxQueue() { ::close(fd_); }

bool InboxQueue::HasRoomOrStopping() const { return stopping_ || queue_.size() < queue_limit_; }

void InboxQueue::Handle(const Request& request, Responder* responder) {
  auto message = std::make_shared<MessageState>();
  message->kind = request.kind;
  message->target = request.target;
  message->payload = request.payload;
  message->sender = request.sender;
  message->message_id = request.message_id;
  const bool call = request.kind == MessageKind::kCall;

  absl::MutexLock lock(&mu_);
  // Back-pressure: a full inbox holds this worker, so libzmesh's server backlog grows and the
  // proxy stops reading from the senders (nothing is dropped).
  if (!call) mu_.Await(absl::Condition(this, &InboxQueue::HasRoomOrStopping));
  if (stopping_) {
    if (call) {
      responder->Fail(drain_error_);
    } else {
      ++dropped_on_stop_;
    }
    return;
  }
  if (call) message->responder = responder;
  queue_.push_back(message);
  if (queue_.size() == 1) SignalEventFd(fd_);
  if (!call) return;

  AnswerWaiter waiter{message.get(), &abandoned_};
  mu_.Await(absl::Condition(&waiter, &AnswerWaiter::Ready));
  if (!message->answered) {
    message->answered = true;
    responder->Fail(kAbandonedError);
  }
  message->responder = nullptr;  // the Responder dies when this handler returns
}

std::vector<std::shared_ptr<MessageState>> InboxQueue::Pop(size_t max) {
  std::vector<std::shared_ptr<MessageState>> out;
  absl::MutexLock lock(&mu_);
  if (stopping_) return out;
  while (out.size() < max && !queue_.empty()) {
    out.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  if (queue_.empty() && !out.empty()) DrainEventFd(fd_);
  return out;
}

void InboxQueue::AnswerLocked(MessageState& message, bool ok, std::string payload) {
  if (message.answered || message.responder == nullptr) return;
  message.answered = true;  // wakes the worker once mu_ is released
  if (ok) {
    message.responder->Reply(std::move(payload));
  } else {
    message.responder->Fail(std::move(payload));
  }
}

void InboxQueue::Reply(MessageState& message, std::string payload) {
  absl::MutexLock lock(&mu_);
  AnswerLocked(message, true, std::move(payload));
}

void InboxQueue::Fail(MessageState& message, std::string error) {
  absl::MutexLock lock(&mu_);
  AnswerLocked(message, false, std::move(error));
}

void InboxQueue::Heartbeat(MessageState& message) {
  absl::MutexLock lock(&mu_);
  if (message.answered || message.responder == nullptr) return;
  message.responder->Heartbeat();
}

void InboxQueue::Release(MessageState& message) {
  absl::MutexLock lock(&mu_);
  AnswerLocked(message, false, kDroppedError);
}

void InboxQueue::Stop(const std::string& drain_error, bool abandon) {
  absl::MutexLock lock(&mu_);
  if (abandon) abandoned_ = true;
  if (stopping_) return;
  stopping_ = true;
  drain_error_ = drain_error;
  for (std::shared_ptr<MessageState>& message : queue_) {
    if (message->kind == MessageKind::kCall) {
      AnswerLocked(*message, false, drain_error_);
    } else {
      ++dropped_on_stop_;
    }
  }
  queue_.clear();
  SignalEventFd(fd_);  // readable from now on: a waiting Python wakes and sees `stopped`
}

bool InboxQueue::stopped() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

size_t InboxQueue::size() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

int64_t InboxQueue::dropped_on_stop() const {
  absl::MutexLock lock(&mu_);
  return dropped_on_stop_;
}

Inbox::Inbox(std::shared_ptr<TransportCore> transport, std::shared_ptr<InboxQueue> queue)
    : transport_(std::move(transport)), queue_(std::move(queue)), pid_(::getpid()) {}

absl::StatusOr<std::shared_ptr<Inbox>> Inbox::StartServer(std::shared_ptr<TransportCore> transport,
                                                          Target target, int threads,
                                                          int64_t queue_limit) {
  if (absl::Status st = transport->CheckUsable(); !st.ok()) return st;
  absl::StatusOr<std::shared_ptr<InboxQueue>> queue = InboxQueue::Create(queue_limit);
  if (!queue.ok()) return queue.status();
  std::shared_ptr<Inbox> inbox(new Inbox(transport, *queue));
  Handler handler = [queue = *queue](const Request& request, Responder& responder) {
    queue->Handle(request, request.kind == MessageKind::kCall ? &responder : nullptr);
  };
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Start(transport->transport(), std::move(target), std::move(handler),
                    ServerOptions{.threads = threads});
  if (!server.ok()) return server.status();
  {
    absl::MutexLock lock(&inbox->stop_mu_);
    inbox->server_ = *std::move(server);
  }
  transport->AddInbox(inbox);
  return inbox;
}

absl::StatusOr<std::shared_ptr<Inbox>> Inbox::StartListener(
    std::shared_ptr<TransportCore> transport, std::vector<NotifyTarget> targets, std::string pool,
    int64_t queue_limit) {
  if (absl::Status st = transport->CheckUsable(); !st.ok()) return st;
  absl::StatusOr<std::shared_ptr<InboxQueue>> queue = InboxQueue::Create(queue_limit);
  if (!queue.ok()) return queue.status();
  std::shared_ptr<Inbox> inbox(new Inbox(transport, *queue));
  NotificationHandler handler = [queue = *queue](const Request& request) {
    queue->Handle(request, nullptr);
  };
  // One worker: it only queues, and keeps the notifications in arrival order.
  absl::StatusOr<std::unique_ptr<NotificationListener>> listener =
      NotificationListener::Start(transport->transport(), std::move(targets), std::move(handler),
                                  ListenerOptions{.pool = std::move(pool), .threads = 1});
  if (!listener.ok()) return listener.status();
  {
    absl::MutexLock lock(&inbox->stop_mu_);
    inbox->listener_ = *std::move(listener);
  }
  transport->AddInbox(inbox);
  return inbox;
}

void Inbox::Stop(const std::string& drain_error, bool abandon, int64_t grace_ms) {
  if (grace_ms <= 0 || abandon) {
    // The queue first, so workers waiting for room or for Python's answer return and libzmesh's
    // Stop (which waits for running handlers) does not wait for Python.
    queue_->Stop(drain_error, abandon);
    absl::MutexLock lock(&stop_mu_);
    if (server_ != nullptr) server_->Stop();
    if (listener_ != nullptr) listener_->Stop();
    return;
  }
  absl::MutexLock lock(&stop_mu_);
  // Kept alive by stop_mu_ (~Inbox takes it) until `stopped` is notified below.
  Server* server = server_.get();
  NotificationListener* listener = listener_.get();
  // A thread of its own rather than the binding pool: this one waits for it, and a pool full of
  // such waiters must not starve the stops they wait for.
  absl::Notification stopped;
  std::thread stopper([server, listener, &stopped] {
    if (server != nullptr) server->Stop();
    if (listener != nullptr) listener->Stop();
    stopped.Notify();
  });
  if (!stopped.WaitForNotificationWithTimeout(absl::Milliseconds(grace_ms))) {
    queue_->Stop(drain_error, /*abandon=*/false);  // lets handlers waiting for Python return
  }
  stopper.join();
  queue_->Stop(drain_error, /*abandon=*/false);
}

Inbox::~Inbox() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  if (!SameProcess(pid_)) {
    // The parent's: its worker threads do not exist here, and a parent thread may have held
    // stop_mu_ at fork() time.
    (void)server_.release();
    (void)listener_.release();
    return;
  }
  ReleaseGilIfHeld release;  // Stop withdraws the target: a round trip to the proxy
  queue_->Stop(kAbandonedError, /*abandon=*/true);
  absl::MutexLock lock(&stop_mu_);
  server_.reset();
  listener_.reset();
}

}  // namespace zmesh::python
