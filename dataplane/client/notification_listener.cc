#include "zmesh/notification_listener.h"

#include <atomic>
#include <exception>
#include <future>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "dataplane/client/engine.h"
#include "dataplane/client/worker_pool.h"
#include "dataplane/wire/envelope.h"

namespace zmesh {

namespace v1 = ::zmesh::wire::v1;
namespace dv1 = ::zmesh::directory::v1;
using internal::Engine;
using internal::Incoming;

namespace {

constexpr int64_t kAnnounceTimeoutMs = 30000;

}  // namespace

// The Sink of one listener: every pair is one registration named "<instance id>#<n>".
class NotificationListener::Impl final : public internal::Sink {
 public:
  Impl(Engine& engine, std::vector<dv1::Registration> registrations,
       NotificationHandler handler, int threads)
      : engine_(engine),
        registrations_(std::move(registrations)),
        handler_(std::move(handler)),
        pool_(threads, "zmesh-lsn") {}
  ~Impl() override { Stop(); }

  absl::Status Announce() {
    std::vector<std::shared_ptr<std::promise<absl::Status>>> promises;
    for (const dv1::Registration& r : registrations_) {
      auto promise = std::make_shared<std::promise<absl::Status>>();
      promises.push_back(promise);
      engine_.Announce(r, this, [promise](absl::Status s) { promise->set_value(std::move(s)); });
    }
    for (auto& promise : promises) {
      std::future<absl::Status> future = promise->get_future();
      if (future.wait_for(std::chrono::milliseconds(kAnnounceTimeoutMs)) !=
          std::future_status::ready) {
        return absl::UnavailableError("the proxy did not answer the announce in time");
      }
      if (absl::Status st = future.get(); !st.ok()) return st;
    }
    return absl::OkStatus();
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    stopping_ = true;
    std::vector<std::shared_ptr<std::promise<absl::Status>>> promises;
    for (const dv1::Registration& r : registrations_) {
      auto promise = std::make_shared<std::promise<absl::Status>>();
      promises.push_back(promise);
      engine_.Withdraw(r, this, [promise](absl::Status s) { promise->set_value(std::move(s)); });
    }
    for (auto& promise : promises) promise->get_future().wait();
    pool_.Stop();  // notifications already queued are still handled
  }

  size_t backlog() const override { return pool_.queued(); }

  // I/O thread.
  void Deliver(Incoming message) override {
    if (stopping_) {
      Refuse(message);
      return;
    }
    auto shared = std::make_shared<Incoming>(std::move(message));
    if (!pool_.Submit([this, shared]() { Run(*shared); })) Refuse(*shared);
  }

 private:
  // The sender resends to another listener of the pool.
  void Refuse(const Incoming& m) {
    if (!m.has_route) return;
    v1::Header h;
    h.set_kind(v1::KIND_ACK);
    h.set_message_id(m.header.message_id());
    h.set_sender(m.header.sender());
    *h.mutable_target() = m.header.target();
    h.set_status(v1::STATUS_NO_SUCH_TARGET);
    h.set_detail("listener stopping");
    engine_.Answer(internal::Pattern::kNotify, m.route, std::move(h), "");
  }

  void Run(Incoming& m) {
    Request request;
    request.kind = MessageKind::kNotify;
    const v1::Target& t = m.header.target();
    request.target = Target{t.exchange(), t.topic(), t.server()};
    request.sender = m.header.sender();
    request.message_id = m.header.message_id();
    request.payload = std::move(m.payload);
    try {
      handler_(request);
    } catch (const std::exception& e) {
      ZLOG_ERROR("libzmesh: notification handler of %s threw: %s", t.topic(), e.what());
    } catch (...) {
      ZLOG_ERROR("libzmesh: notification handler of %s threw", t.topic());
    }
    engine_.CountDelivered();
  }

  Engine& engine_;
  const std::vector<dv1::Registration> registrations_;
  const NotificationHandler handler_;
  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  internal::WorkerPool pool_;  // last: its threads stop before the members they use go
};

absl::StatusOr<std::unique_ptr<NotificationListener>> NotificationListener::Start(
    Transport& transport, std::vector<NotifyTarget> targets, NotificationHandler handler,
    ListenerOptions options) {
  if (targets.empty()) return absl::InvalidArgumentError("targets: must not be empty");
  if (options.threads < 1) return absl::InvalidArgumentError("threads: must be >= 1");
  if (!handler) return absl::InvalidArgumentError("handler: must be set");
  if (absl::Status st = wire::ValidateName("pool", options.pool, false); !st.ok()) return st;
  if (transport.engine().closed()) return absl::UnavailableError("transport closed");
  static std::atomic<uint64_t> counter{0};
  const std::string name = absl::StrCat(transport.instance_id(), "#", counter.fetch_add(1) + 1);
  std::vector<dv1::Registration> registrations;
  for (NotifyTarget& t : targets) {
    if (t.exchange.empty()) t.exchange = kDefaultExchange;
    if (absl::Status st = wire::ValidateName("target.exchange", t.exchange, true); !st.ok()) {
      return st;
    }
    if (absl::Status st = wire::ValidateName("target.topic", t.topic, true); !st.ok()) return st;
    if (absl::Status st = wire::ValidateName("target.priority", t.priority, true); !st.ok()) {
      return st;
    }
    dv1::Registration r;
    r.set_exchange(t.exchange);
    r.set_topic(absl::StrCat(t.topic, ".", t.priority));
    if (absl::Status st = wire::ValidateName("target.topic + priority", r.topic(), true);
        !st.ok()) {
      return st;
    }
    r.set_server(name);
    r.set_kind(dv1::KIND_NOTIFY_LISTENER);
    r.set_pool(options.pool);
    registrations.push_back(std::move(r));
  }
  auto impl = std::make_unique<Impl>(transport.engine(), std::move(registrations),
                                     std::move(handler), options.threads);
  if (absl::Status st = impl->Announce(); !st.ok()) {
    impl->Stop();
    return st;
  }
  return std::unique_ptr<NotificationListener>(new NotificationListener(std::move(impl)));
}

NotificationListener::NotificationListener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NotificationListener::~NotificationListener() { Stop(); }

void NotificationListener::Stop() { impl_->Stop(); }

}  // namespace zmesh
