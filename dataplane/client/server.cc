#include "zmesh/server.h"

#include <atomic>
#include <exception>
#include <future>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "dataplane/client/dedup_window.h"
#include "dataplane/client/engine.h"
#include "dataplane/client/worker_pool.h"
#include "dataplane/wire/envelope.h"

namespace zmesh {

namespace v1 = ::zmesh::wire::v1;
namespace dv1 = ::zmesh::directory::v1;
using internal::Engine;
using internal::Incoming;
using internal::Pattern;

namespace {

// How long Start waits for the proxy's answer to the announce.
constexpr int64_t kAnnounceTimeoutMs = 30000;

v1::Header AnswerHeader(const v1::Header& request, v1::Kind kind, v1::Status status) {
  v1::Header h;
  h.set_kind(kind);
  h.set_message_id(request.message_id());
  h.set_sender(request.sender());
  *h.mutable_target() = request.target();
  h.set_status(status);
  return h;
}

// Answers one CALL: the first Reply/Fail wins. Thread-safe.
class CallResponder final : public Responder {
 public:
  CallResponder(Engine& engine, const Incoming& request, uint64_t heartbeat_token)
      : engine_(engine), request_(request), heartbeat_token_(heartbeat_token) {}

  void Reply(std::string payload) override { Answer(v1::STATUS_OK, std::move(payload)); }
  void Fail(std::string error) override { Answer(v1::STATUS_REMOTE_ERROR, std::move(error)); }
  void Heartbeat() override {
    absl::MutexLock lock(&mu_);
    if (answered_) return;
    engine_.Answer(Pattern::kCall, request_.route,
                   AnswerHeader(request_.header, v1::KIND_HEARTBEAT, v1::STATUS_OK), "");
  }
  bool answered() {
    absl::MutexLock lock(&mu_);
    return answered_;
  }

 private:
  void Answer(v1::Status status, std::string payload) {
    absl::MutexLock lock(&mu_);
    if (answered_) return;
    answered_ = true;
    v1::Header h = AnswerHeader(request_.header, v1::KIND_REPLY, status);
    const int64_t limit = engine_.max_payload_bytes();
    if (static_cast<int64_t>(payload.size()) > limit) {
      h.set_status(v1::STATUS_TOO_LARGE);
      h.set_detail(absl::StrCat("reply of ", payload.size(), " bytes is over the limit of ",
                                limit));
      payload.clear();
    }
    engine_.Answer(Pattern::kCall, request_.route, std::move(h), std::move(payload),
                   heartbeat_token_);
  }

  Engine& engine_;
  const Incoming& request_;
  const uint64_t heartbeat_token_;
  absl::Mutex mu_;
  bool answered_ ABSL_GUARDED_BY(mu_) = false;
};

// Casts and fanouts have nobody to answer.
class NullResponder final : public Responder {
 public:
  void Reply(std::string) override {}
  void Fail(std::string) override {}
  void Heartbeat() override {}
};

MessageKind KindOf(v1::Kind kind) {
  switch (kind) {
    case v1::KIND_CAST: return MessageKind::kCast;
    case v1::KIND_FANOUT: return MessageKind::kFanout;
    case v1::KIND_NOTIFY: return MessageKind::kNotify;
    default: return MessageKind::kCall;
  }
}

}  // namespace

// The Sink of one Server: queues messages for the workers, refuses them once stopping.
class Server::Impl final : public internal::Sink {
 public:
  Impl(Engine& engine, Target target, Handler handler, const ServerOptions& options)
      : engine_(engine),
        target_(std::move(target)),
        handler_(std::move(handler)),
        dedup_(options.dedup_window),
        pool_(options.threads, "zmesh-srv") {
    registration_.set_exchange(target_.exchange);
    registration_.set_topic(target_.topic);
    registration_.set_server(target_.server);
    registration_.set_kind(dv1::KIND_RPC_SERVER);
  }
  ~Impl() override { Stop(); }

  absl::Status Announce() {
    auto promise = std::make_shared<std::promise<absl::Status>>();
    std::future<absl::Status> future = promise->get_future();
    engine_.Announce(registration_, this,
                     [promise](absl::Status s) { promise->set_value(std::move(s)); });
    if (future.wait_for(std::chrono::milliseconds(kAnnounceTimeoutMs)) !=
        std::future_status::ready) {
      return absl::UnavailableError("the proxy did not answer the announce in time");
    }
    return future.get();
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    // Refuse what arrives from now on (callers fail over), let running handlers answer, and
    // only then withdraw: a caller that sees the server leave the directory knows that its
    // unanswered call will never be answered (engine.h).
    stopping_ = true;
    pool_.Stop();  // running handlers finish; queued messages are refused (stopping_)
    std::promise<absl::Status> withdrawn;
    std::future<absl::Status> future = withdrawn.get_future();
    engine_.Withdraw(registration_, this,
                     [&withdrawn](absl::Status s) { withdrawn.set_value(std::move(s)); });
    future.wait();
  }

  size_t backlog() const override { return pool_.queued(); }

  // I/O thread.
  void Deliver(Incoming message) override {
    if (stopping_) {
      Refuse(message);
      return;
    }
    const v1::Header& h = message.header;
    if (h.kind() == v1::KIND_CAST && h.ack()) {
      switch (dedup_.Begin(h.sender(), h.message_id())) {
        case internal::DedupWindow::State::kDone:
          engine_.CountDuplicate();
          engine_.Answer(Pattern::kCast, message.route,
                         AnswerHeader(h, v1::KIND_ACK, v1::STATUS_OK), "");
          return;
        case internal::DedupWindow::State::kRunning:
          engine_.CountDuplicate();  // its ack follows when the handler returns
          return;
        case internal::DedupWindow::State::kNew:
          break;
      }
    }
    auto shared = std::make_shared<Incoming>(std::move(message));
    if (!pool_.Submit([this, shared]() { Run(*shared); })) Refuse(*shared);
  }

 private:
  // Not handled here: the sender tries another member (CALL, CAST).
  void Refuse(const Incoming& m) {
    const v1::Header& h = m.header;
    if (!m.has_route) return;
    if (h.kind() == v1::KIND_CALL) {
      v1::Header answer = AnswerHeader(h, v1::KIND_REPLY, v1::STATUS_NO_SUCH_TARGET);
      answer.set_detail("server stopping");
      engine_.Answer(Pattern::kCall, m.route, std::move(answer), "");
    } else if (h.kind() == v1::KIND_CAST) {
      if (h.ack()) dedup_.Forget(h.sender(), h.message_id());
      v1::Header answer = AnswerHeader(h, v1::KIND_ACK, v1::STATUS_NO_SUCH_TARGET);
      answer.set_detail("server stopping");
      engine_.Answer(Pattern::kCast, m.route, std::move(answer), "");
    }
  }

  void Run(Incoming& m) {
    const v1::Header& h = m.header;
    if (stopping_ && h.kind() != v1::KIND_FANOUT) {
      Refuse(m);
      return;
    }
    Request request;
    request.kind = KindOf(h.kind());
    request.target = Target{h.target().exchange(), h.target().topic(), h.target().server()};
    request.sender = h.sender();
    request.message_id = h.message_id();
    if (h.kind() == v1::KIND_CALL) {
      if (h.timeout_ms() > 0 && engine_.NowMs() - m.received_ms >= h.timeout_ms()) {
        ZLOG_DEBUG("libzmesh: dropped call %d from %s: its caller gave up while it was queued",
                   h.message_id(), h.sender());
        return;
      }
      request.payload = std::move(m.payload);  // the responder needs only the route and header
      const uint64_t token = h.call_monitor_timeout_ms() > 0
                                 ? engine_.BeginHeartbeats(m.route, h,
                                                           h.call_monitor_timeout_ms() / 2)
                                 : 0;
      CallResponder responder(engine_, m, token);
      RunHandler(request, responder);
      if (!responder.answered()) responder.Reply("");
      engine_.CountRequestHandled();
      return;
    }
    request.payload = std::move(m.payload);
    NullResponder responder;
    RunHandler(request, responder);
    engine_.CountDelivered();
    if (h.kind() == v1::KIND_CAST && h.ack()) {
      dedup_.Finish(h.sender(), h.message_id());
      engine_.Answer(Pattern::kCast, m.route, AnswerHeader(h, v1::KIND_ACK, v1::STATUS_OK), "");
    }
  }

  void RunHandler(const Request& request, Responder& responder) {
    try {
      handler_(request, responder);
    } catch (const std::exception& e) {
      ZLOG_ERROR("libzmesh: handler of %s/%s threw: %s", target_.topic, target_.server, e.what());
      responder.Fail(absl::StrCat("handler threw: ", e.what()));
    } catch (...) {
      ZLOG_ERROR("libzmesh: handler of %s/%s threw", target_.topic, target_.server);
      responder.Fail("handler threw");
    }
  }

  Engine& engine_;
  const Target target_;
  const Handler handler_;
  dv1::Registration registration_;
  internal::DedupWindow dedup_;
  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  internal::WorkerPool pool_;  // last: its threads stop before the members they use go
};

absl::StatusOr<std::unique_ptr<Server>> Server::Start(Transport& transport, Target target,
                                                      Handler handler, ServerOptions options) {
  if (target.exchange.empty()) target.exchange = kDefaultExchange;
  if (absl::Status st = wire::ValidateName("target.exchange", target.exchange, true); !st.ok()) {
    return st;
  }
  if (absl::Status st = wire::ValidateName("target.topic", target.topic, true); !st.ok()) {
    return st;
  }
  if (absl::Status st = wire::ValidateName("target.server", target.server, true); !st.ok()) {
    return st;
  }
  if (options.threads < 1) return absl::InvalidArgumentError("threads: must be >= 1");
  if (options.dedup_window < 1) return absl::InvalidArgumentError("dedup_window: must be >= 1");
  if (!handler) return absl::InvalidArgumentError("handler: must be set");
  if (transport.engine().closed()) return absl::UnavailableError("transport closed");
  auto impl = std::make_unique<Impl>(transport.engine(), target, std::move(handler), options);
  if (absl::Status st = impl->Announce(); !st.ok()) {
    impl->Stop();
    return st;
  }
  return std::unique_ptr<Server>(new Server(std::move(target), std::move(impl)));
}

Server::Server(Target target, std::unique_ptr<Impl> impl)
    : target_(std::move(target)), impl_(std::move(impl)) {}

Server::~Server() { Stop(); }

void Server::Stop() { impl_->Stop(); }

}  // namespace zmesh
