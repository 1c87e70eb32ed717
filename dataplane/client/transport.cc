#include "zmesh/transport.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "dataplane/client/engine.h"
#include "dataplane/wire/envelope.h"

namespace zmesh {

namespace {

// Checks a target and fills in the default exchange.
absl::StatusOr<Target> Normalize(Target target, bool server_allowed) {
  if (target.exchange.empty()) target.exchange = kDefaultExchange;
  if (absl::Status st = wire::ValidateName("target.exchange", target.exchange, true); !st.ok()) {
    return st;
  }
  if (absl::Status st = wire::ValidateName("target.topic", target.topic, true); !st.ok()) {
    return st;
  }
  if (!server_allowed && !target.server.empty()) {
    return absl::InvalidArgumentError("target.server: must be empty for a fanout");
  }
  if (absl::Status st = wire::ValidateName("target.server", target.server, false); !st.ok()) {
    return st;
  }
  return target;
}

absl::Status CheckPayload(const std::string& payload, int64_t limit) {
  if (static_cast<int64_t>(payload.size()) > limit) {
    return absl::InvalidArgumentError(absl::StrCat("payload of ", payload.size(),
                                                   " bytes is over the limit of ", limit));
  }
  return absl::OkStatus();
}

absl::Status CheckCall(const CallOptions& options) {
  if (options.timeout_ms <= 0) return absl::InvalidArgumentError("timeout_ms: must be > 0");
  if (options.call_monitor_timeout_ms < 0) {
    return absl::InvalidArgumentError("call_monitor_timeout_ms: must be >= 0");
  }
  return absl::OkStatus();
}

absl::Status CheckCast(const CastOptions& options) {
  if (options.timeout_ms <= 0) return absl::InvalidArgumentError("timeout_ms: must be > 0");
  if (options.acknowledged && options.ack_timeout_ms <= 0) {
    return absl::InvalidArgumentError("ack_timeout_ms: must be > 0");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> Transport::Create(TransportOptions options) {
  absl::StatusOr<std::unique_ptr<internal::Engine>> engine =
      internal::Engine::Create(std::move(options));
  if (!engine.ok()) return engine.status();
  return std::unique_ptr<Transport>(new Transport(std::move(*engine)));
}

Transport::Transport(std::unique_ptr<internal::Engine> engine) : engine_(std::move(engine)) {}

Transport::~Transport() { Close(); }

void Transport::Close() { engine_->Close(); }

const std::string& Transport::instance_id() const { return engine_->instance_id(); }
std::string Transport::node_name() const { return engine_->node_name(); }
std::vector<std::string> Transport::proxy_directory() const { return engine_->proxy_directory(); }
TransportStats Transport::stats() const { return engine_->stats(); }

std::future<absl::StatusOr<CallResult>> Transport::CallAsync(const Target& target,
                                                             std::string payload,
                                                             const CallOptions& options) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<CallResult>>>();
  std::future<absl::StatusOr<CallResult>> future = promise->get_future();
  absl::StatusOr<Target> t = Normalize(target, true);
  absl::Status st = t.ok() ? CheckCall(options) : t.status();
  if (st.ok()) st = CheckPayload(payload, engine_->max_payload_bytes());
  if (!st.ok()) {
    promise->set_value(st);
    return future;
  }
  engine_->Call(std::move(*t), std::move(payload), options,
                [promise](absl::StatusOr<CallResult> r) { promise->set_value(std::move(r)); });
  return future;
}

absl::StatusOr<CallResult> Transport::Call(const Target& target, std::string payload,
                                           const CallOptions& options) {
  return CallAsync(target, std::move(payload), options).get();
}

void Transport::CallAsync(const Target& target, std::string payload, const CallOptions& options,
                          std::function<void(absl::StatusOr<CallResult>)> done) {
  internal::Engine* engine = engine_.get();
  absl::StatusOr<Target> t = Normalize(target, true);
  absl::Status st = t.ok() ? CheckCall(options) : t.status();
  if (st.ok()) st = CheckPayload(payload, engine->max_payload_bytes());
  if (!st.ok()) {
    engine->RunCallback([done = std::move(done), st]() { done(st); });
    return;
  }
  engine->Call(std::move(*t), std::move(payload), options,
               [engine, done = std::move(done)](absl::StatusOr<CallResult> r) mutable {
                 engine->RunCallback(
                     [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
               });
}

absl::Status Transport::Cast(const Target& target, std::string payload,
                             const CastOptions& options) {
  absl::StatusOr<Target> t = Normalize(target, true);
  absl::Status st = t.ok() ? CheckCast(options) : t.status();
  if (st.ok()) st = CheckPayload(payload, engine_->max_payload_bytes());
  if (!st.ok()) return st;
  if (engine_->closed()) return absl::UnavailableError("transport closed");
  // Known target and room in the queue: queued is sent (see transport.h).
  if (!options.acknowledged && engine_->TryQueueOneWay(*t, /*fanout=*/false, payload)) {
    return absl::OkStatus();
  }
  std::promise<absl::Status> promise;
  std::future<absl::Status> future = promise.get_future();
  engine_->Cast(std::move(*t), std::move(payload), options,
                [&promise](absl::Status s) { promise.set_value(std::move(s)); });
  return future.get();
}

void Transport::CastAsync(const Target& target, std::string payload, const CastOptions& options,
                          std::function<void(absl::Status)> done) {
  internal::Engine* engine = engine_.get();
  absl::StatusOr<Target> t = Normalize(target, true);
  absl::Status st = t.ok() ? CheckCast(options) : t.status();
  if (st.ok()) st = CheckPayload(payload, engine->max_payload_bytes());
  if (!st.ok()) {
    engine->RunCallback([done = std::move(done), st]() { done(st); });
    return;
  }
  // Known target and room in the queue: queued is sent, as in Cast (no I/O-thread round trip).
  if (!options.acknowledged && !engine->closed() &&
      engine->TryQueueOneWay(*t, /*fanout=*/false, payload)) {
    engine->RunCallback([done = std::move(done)]() { done(absl::OkStatus()); });
    return;
  }
  engine->Cast(std::move(*t), std::move(payload), options,
               [engine, done = std::move(done)](absl::Status s) mutable {
                 engine->RunCallback(
                     [done = std::move(done), s = std::move(s)]() mutable { done(std::move(s)); });
               });
}

absl::Status Transport::Fanout(const Target& target, std::string payload) {
  absl::StatusOr<Target> t = Normalize(target, false);
  if (!t.ok()) return t.status();
  if (absl::Status st = CheckPayload(payload, engine_->max_payload_bytes()); !st.ok()) return st;
  // Known target and room in the queue: queued is sent, as for Cast (a full proxy pushes back
  // rather than drop copies: docs/wire-protocol.md, "Flow control").
  if (engine_->TryQueueOneWay(*t, /*fanout=*/true, payload)) return absl::OkStatus();
  std::promise<absl::Status> promise;
  std::future<absl::Status> future = promise.get_future();
  engine_->Fanout(std::move(*t), std::move(payload),
                  [&promise](absl::Status s) { promise.set_value(std::move(s)); });
  return future.get();
}

absl::Status Transport::Notify(const NotifyTarget& target, std::string payload) {
  const std::string exchange = target.exchange.empty() ? kDefaultExchange : target.exchange;
  if (absl::Status st = wire::ValidateName("target.exchange", exchange, true); !st.ok()) return st;
  if (absl::Status st = wire::ValidateName("target.topic", target.topic, true); !st.ok()) return st;
  if (absl::Status st = wire::ValidateName("target.priority", target.priority, true); !st.ok()) {
    return st;
  }
  std::string topic = absl::StrCat(target.topic, ".", target.priority);
  if (absl::Status st = wire::ValidateName("target.topic + priority", topic, true); !st.ok()) {
    return st;
  }
  if (absl::Status st = CheckPayload(payload, engine_->max_payload_bytes()); !st.ok()) return st;
  std::promise<absl::Status> promise;
  std::future<absl::Status> future = promise.get_future();
  engine_->Notify(exchange, std::move(topic), std::move(payload),
                  [&promise](absl::Status s) { promise.set_value(std::move(s)); });
  return future.get();
}

}  // namespace zmesh
