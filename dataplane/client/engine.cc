#include "dataplane/client/engine.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/log.h"
#include "dataplane/wire/envelope.h"
#include "dataplane/wire/sockets.h"

namespace zmesh::internal {

namespace v1 = ::zmesh::wire::v1;
namespace dv1 = ::zmesh::directory::v1;

namespace {

constexpr const char* kDataSocketNames[kPatterns] = {"call", "fanout", "notify", "cast"};
// After a refusal by every member (or of a specific server), wait this long before trying again.
constexpr int64_t kRefusalBackoffMs = 100;
// Plain casts and notifications are kept this long after sending, for resends on refusal.
constexpr int64_t kLingerMs = 2000;
constexpr size_t kMaxLingering = 50000;
// Sent on a socket not connected yet: kept until its connect timer surely ran, plus this.
constexpr int64_t kLingerSlackMs = 1000;
constexpr int64_t kMaxLingeringBytes = 256 * 1024 * 1024;
// FANOUT/NOTIFY have no timeout option: how long they may wait for a lookup or queue room.
constexpr int64_t kOneWayTimeoutMs = 30000;
constexpr size_t kMaxWaitingPerPair = 10000;
constexpr int64_t kAttachRetryMs = 300;
constexpr int64_t kLookupRetryMs = 200;
constexpr int64_t kWithdrawWaitMs = 1000;
// After an OVERLOADED refusal, one-way sends wait for each message again for this long.
constexpr int64_t kOverloadBackoffMs = 500;
// Messages read from one socket per poll round (fairness between sockets).
constexpr int kReadBatch = 256;
// Payloads at least this large are sent without copying (zmq_msg_init_data).
constexpr size_t kZeroCopyBytes = 1024;
constexpr int kFlushLingerMs = 1000;
// While local data reads are paused (a sink is full), how often to look whether it drained.
constexpr int64_t kPausedPollMs = 2;
// Poll item kinds (see Engine::poll_kinds_): peer sockets, then their monitors.
constexpr int kPeerKind = 100;
constexpr int kMonitorKind = 1000000;

Pattern PatternOf(v1::Kind kind) {
  switch (kind) {
    case v1::KIND_CAST: return Pattern::kCast;
    case v1::KIND_FANOUT: return Pattern::kFanout;
    case v1::KIND_NOTIFY: return Pattern::kNotify;
    default: return Pattern::kCall;
  }
}

bool SameRegistration(const dv1::Registration& a, const dv1::Registration& b) {
  return a.exchange() == b.exchange() && a.topic() == b.topic() && a.server() == b.server() &&
         a.kind() == b.kind() && a.pool() == b.pool();
}

void FreeSharedPayload(void* /*data*/, void* hint) {
  delete static_cast<std::shared_ptr<std::string>*>(hint);
}

// Sends [header][payload] (payload moved into ZeroMQ). RESOURCE_EXHAUSTED when the queue is full
// (nothing sent).
absl::Status SendTwo(zmq::socket_t& socket, const std::string& header, zmq::message_t payload) {
  if (zmq_send(socket.handle(), header.data(), header.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
    const int err = zmq_errno();
    if (err == EAGAIN) return absl::ResourceExhaustedError("send queue full");
    return absl::UnavailableError(absl::StrCat("zmq_send: ", zmq_strerror(err)));
  }
  if (zmq_msg_send(payload.handle(), socket.handle(), ZMQ_DONTWAIT) < 0) {
    return absl::UnavailableError(absl::StrCat("zmq_msg_send: ", zmq_strerror(zmq_errno())));
  }
  return absl::OkStatus();
}

std::string PairName(const std::pair<std::string, std::string>& key) {
  return absl::StrCat(key.first, "/", key.second);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Setup and the loop.

Engine::Engine(TransportOptions options)
    : options_(std::move(options)),
      instance_id_(wire::NewInstanceId()),
      context_(1),
      max_payload_bytes_(options_.max_payload_bytes) {}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(TransportOptions options) {
  if (options.ipc_dir.empty()) return absl::InvalidArgumentError("ipc_dir: must not be empty");
  if (options.connect_timeout_ms <= 0) {
    return absl::InvalidArgumentError("connect_timeout_ms: must be > 0");
  }
  if (options.max_payload_bytes <= 0) {
    return absl::InvalidArgumentError("max_payload_bytes: must be > 0");
  }
  if (options.max_queued_per_node <= 0) {
    return absl::InvalidArgumentError("max_queued_per_node: must be > 0");
  }
  if (options.peer_connect_timeout_ms <= 0 || options.peer_connect_timeout_ms > (1 << 30)) {
    return absl::InvalidArgumentError("peer_connect_timeout_ms: must be in [1, 2^30]");
  }
  const int64_t timeout_ms = options.connect_timeout_ms;
  std::unique_ptr<Engine> engine(new Engine(std::move(options)));
  if (absl::Status st = engine->Open(); !st.ok()) {
    engine->Close();
    return st;
  }
  bool started = false;
  {
    absl::MutexLock lock(&engine->mu_);
    started = engine->mu_.AwaitWithTimeout(absl::Condition(&engine->started_),
                                           absl::Milliseconds(timeout_ms));
  }
  if (!started) {
    std::string dir = engine->options_.ipc_dir;
    engine->Close();
    return absl::UnavailableError(absl::StrCat("no zmesh-proxy answered at ", dir, " within ",
                                               timeout_ms, " ms"));
  }
  return engine;
}

absl::Status Engine::Open() {
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  auto make = [&](const char* name, std::unique_ptr<zmq::socket_t>* out) -> absl::Status {
    absl::StatusOr<std::string> endpoint = wire::IpcEndpoint(options_.ipc_dir, name);
    if (!endpoint.ok()) return endpoint.status();
    try {
      auto socket = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
      if (absl::Status st = wire::ConfigureSocket(*socket, wire::SocketRole::kLocalPeer,
                                                  options_.max_payload_bytes, instance_id_);
          !st.ok()) {
        return st;
      }
      socket->connect(*endpoint);
      *out = std::move(socket);
    } catch (const zmq::error_t& e) {
      return absl::UnavailableError(absl::StrCat("connecting to ", *endpoint, ": ", e.what()));
    }
    return absl::OkStatus();
  };
  if (absl::Status st = make("control", &control_); !st.ok()) return st;
  for (int i = 0; i < kPatterns; ++i) {
    if (absl::Status st = make(kDataSocketNames[i], &data_[i]); !st.ok()) return st;
  }
  io_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "zmesh-io");
    Loop();
  });
  return absl::OkStatus();
}

Engine::~Engine() {
  Close();
  callbacks_.Stop();
  if (event_fd_ >= 0) ::close(event_fd_);
}

int64_t Engine::NowMs() const { return SystemClock::Get().NowMs(); }

int64_t Engine::DeadlineAfter(int64_t timeout_ms) const {
  // NowMs() truncates: the caller started up to 1 ms after it. Rounding up keeps the promise
  // that a deadline never fires before timeout_ms has passed for the caller.
  return NowMs() + timeout_ms + 1;
}

void Engine::RunCallback(absl::AnyInvocable<void() &&> callback) {
  // Refused only during destruction, when no Transport method can be running.
  if (!callbacks_.Submit(std::move(callback))) ZLOG_WARNING("libzmesh: callback after destruction");
}

bool Engine::Post(Command& command) {
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    if (!accepting_) return false;
    wake = commands_.empty();
    commands_.push_back(std::move(command));
  }
  if (wake) {
    const uint64_t one = 1;
    // The eventfd only fails when its counter would overflow: then it is readable anyway.
    (void)!::write(event_fd_, &one, sizeof(one));
  }
  return true;
}

void Engine::PostOrRun(Command command) {
  // Not accepting: the I/O thread is gone and stop_ is set, so the command takes its closed
  // path (it only completes its caller) and may run here.
  if (!Post(command)) std::move(command)();
}

void Engine::DrainCommands() {
  uint64_t value = 0;
  (void)!::read(event_fd_, &value, sizeof(value));
  std::vector<Command> batch;
  {
    absl::MutexLock lock(&mu_);
    batch.swap(commands_);
  }
  for (Command& command : batch) std::move(command)();
}

void Engine::RebuildPollItems() {
  poll_items_.clear();
  poll_kinds_.clear();
  poll_peers_.clear();
  poll_items_.push_back({nullptr, event_fd_, ZMQ_POLLIN, 0});
  poll_kinds_.push_back(-1);
  poll_items_.push_back({control_->handle(), 0, ZMQ_POLLIN, 0});
  poll_kinds_.push_back(-2);
  for (int i = 0; i < kPatterns; ++i) {
    poll_items_.push_back({data_[i]->handle(), 0, ZMQ_POLLIN, 0});
    poll_kinds_.push_back(i);
  }
  for (auto& [name, peer] : peers_) {
    for (int p = 0; p < kPatterns; ++p) {
      if (peer->sockets[p] == nullptr) continue;
      const int code = static_cast<int>(poll_peers_.size()) * kPatterns + p;
      poll_items_.push_back({peer->sockets[p]->handle(), 0, ZMQ_POLLIN, 0});
      poll_kinds_.push_back(kPeerKind + code);
      if (peer->monitors[p] != nullptr) {
        poll_items_.push_back({peer->monitors[p]->handle(), 0, ZMQ_POLLIN, 0});
        poll_kinds_.push_back(kMonitorKind + code);
      }
    }
    poll_peers_.push_back(peer.get());
  }
  poll_dirty_ = false;
}

void Engine::Loop() {
  last_heard_ms_ = NowMs();
  SayHello();
  timers_.Add(NowMs() + ping_interval_ms_, [this] { PingTick(); });
  while (!stop_) {
    closed_sockets_.clear();
    if (poll_dirty_) RebuildPollItems();
    for (size_t i = 0; i < poll_items_.size(); ++i) {
      const int kind = poll_kinds_[i];
      if (kind < kPeerKind || kind >= kMonitorKind) continue;
      const int p = (kind - kPeerKind) % kPatterns;
      Peer* peer = poll_peers_[(kind - kPeerKind) / kPatterns];
      poll_items_[i].events =
          peer->blocked[p].empty() ? ZMQ_POLLIN : static_cast<short>(ZMQ_POLLIN | ZMQ_POLLOUT);
    }
    // A full sink pauses reading the local data sockets; its workers drain it, which no event
    // announces, so look again every kPausedPollMs.
    const bool paused = SinksFull();
    for (size_t i = 0; i < poll_items_.size(); ++i) {
      if (poll_kinds_[i] >= 0 && poll_kinds_[i] < kPatterns) {
        poll_items_[i].events = paused ? 0 : ZMQ_POLLIN;
      }
    }
    int64_t timeout = timers_.MsUntilNext(NowMs());
    if (paused && (timeout < 0 || timeout > kPausedPollMs)) timeout = kPausedPollMs;
    const int rc = zmq_poll(poll_items_.data(), static_cast<int>(poll_items_.size()),
                            static_cast<long>(timeout));
    if (rc < 0 && zmq_errno() != EINTR) {
      ZLOG_ERROR("libzmesh: zmq_poll: %s", zmq_strerror(zmq_errno()));
    }
    for (size_t i = 0; rc > 0 && i < poll_items_.size() && !stop_; ++i) {
      const short revents = poll_items_[i].revents;
      if (revents == 0) continue;
      const int kind = poll_kinds_[i];
      if (kind == -1) {
        DrainCommands();
      } else if (kind == -2) {
        for (int n = 0; n < kReadBatch && !stop_; ++n) {
          std::optional<std::vector<zmq::message_t>> frames = wire::ReceiveFrames(*control_);
          if (!frames) break;
          if (frames->size() == 1) OnControl((*frames)[0]);
        }
      } else if (kind >= kMonitorKind) {
        const int p = (kind - kMonitorKind) % kPatterns;
        Peer* peer = poll_peers_[(kind - kMonitorKind) / kPatterns];
        for (int n = 0; n < kReadBatch && !stop_; ++n) {
          if (peer->monitors[p] == nullptr) break;
          std::optional<std::vector<zmq::message_t>> frames =
              wire::ReceiveFrames(*peer->monitors[p]);
          if (!frames) break;
          OnMonitorEvent(*peer, p, *frames);
        }
      } else if (kind < kPeerKind) {
        for (int n = 0; n < kReadBatch && !stop_; ++n) {
          std::optional<std::vector<zmq::message_t>> frames = wire::ReceiveFrames(*data_[kind]);
          if (!frames) break;
          OnLocalData(kind, *frames);
        }
      } else {
        const int p = (kind - kPeerKind) % kPatterns;
        Peer* peer = poll_peers_[(kind - kPeerKind) / kPatterns];
        if ((revents & ZMQ_POLLIN) != 0) {
          for (int n = 0; n < kReadBatch && !stop_; ++n) {
            if (peer->sockets[p] == nullptr) break;
            std::optional<std::vector<zmq::message_t>> frames =
                wire::ReceiveFrames(*peer->sockets[p]);
            if (!frames) break;
            OnPeerData(*peer, p, *frames);
          }
        }
        if ((revents & ZMQ_POLLOUT) != 0 && !stop_) RetryBlocked(*peer, p);
      }
    }
    if (!stop_) timers_.RunDue(NowMs());
  }
  // Closing: refuse new commands, complete the queued ones (they take their closed path).
  std::vector<Command> rest;
  {
    absl::MutexLock lock(&mu_);
    accepting_ = false;
    rest.swap(commands_);
  }
  for (Command& command : rest) std::move(command)();
  // Flush what is queued (Goodbye, casts) for at most kFlushLingerMs, then close. Never
  // welcomed: nothing worth flushing (and no proxy to take it).
  try {
    if (ever_ready_) {
      control_->set(zmq::sockopt::linger, kFlushLingerMs);
      for (auto& [name, peer] : peers_) {
        for (auto& socket : peer->sockets) {
          if (socket != nullptr) socket->set(zmq::sockopt::linger, kFlushLingerMs);
        }
      }
    }
  } catch (const zmq::error_t& e) {
    ZLOG_WARNING("libzmesh: setting linger: %s", e.what());
  }
  peers_.clear();
  closed_sockets_.clear();
  for (auto& socket : data_) socket.reset();
  control_.reset();
}

void Engine::Close() {
  absl::MutexLock close_lock(&close_mu_);
  if (io_thread_.joinable()) {
    Command command = [this] {
      closed_ = true;
      stop_ = true;
      FailAll(absl::UnavailableError("transport closed"));
      if (welcomed_) {
        v1::LocalRequest request;
        request.mutable_goodbye();
        SendControl(request);
      }
    };
    if (Post(command)) {
      io_thread_.join();
    } else {
      io_thread_.join();
    }
  } else {
    absl::MutexLock lock(&mu_);
    accepting_ = false;
    stop_ = true;
  }
  closed_ = true;
}

void Engine::FailAll(const absl::Status& status) {
  std::unordered_map<uint64_t, std::unique_ptr<Op>> ops;
  ops.swap(ops_);
  for (auto& [id, op] : ops) {
    if (op->answered) continue;
    op->answered = true;
    if (op->call_done) std::move(op->call_done)(status);
    if (op->status_done) std::move(op->status_done)(status);
  }
  lingering_.clear();
  lingering_bytes_ = 0;
  auto waiters = std::move(control_waiters_);
  control_waiters_.clear();
  v1::LocalResponse closed;
  closed.set_code(static_cast<int>(status.code()));
  closed.set_message(std::string(status.message()));
  for (auto& [seq, waiter] : waiters) std::move(waiter)(closed);
  for (RegEntry& entry : registrations_) {
    if (entry.done) std::move(entry.done)(status);
    entry.done = nullptr;
  }
  heartbeats_.clear();
}

// ---------------------------------------------------------------------------------------------
// Local control protocol.

void Engine::SendControl(v1::LocalRequest& request) {
  const std::string bytes = request.SerializeAsString();
  absl::Status st = wire::SendFrames(*control_, {zmq::const_buffer(bytes.data(), bytes.size())},
                                     /*dont_wait=*/true);
  if (!st.ok()) ZLOG_WARNING("libzmesh: sending to the proxy's control socket: %s", st.ToString());
}

uint64_t Engine::SendControlRequest(
    v1::LocalRequest request,
    absl::AnyInvocable<void(const v1::LocalResponse&) &&> on_answer) {
  const uint64_t seq = next_seq_++;
  request.set_seq(seq);
  if (on_answer) control_waiters_.emplace(seq, std::move(on_answer));
  SendControl(request);
  return seq;
}

void Engine::SayHello() {
  if (ever_ready_) {
    stats_.proxy_reconnects.fetch_add(1);
    ZLOG_INFO("libzmesh: saying hello again to the proxy at %s", options_.ipc_dir);
  }
  welcomed_ = false;
  ready_ = false;
  attached_ = {};
  // Requests to the previous proxy will not be answered: complete them as "unavailable"; what
  // they asked for is sent again once the new proxy welcomed us (OnReady).
  auto waiters = std::move(control_waiters_);
  control_waiters_.clear();
  v1::LocalResponse gone;
  gone.set_code(static_cast<int>(absl::StatusCode::kUnavailable));
  gone.set_message("proxy restarted");
  for (auto& [seq, waiter] : waiters) std::move(waiter)(gone);
  v1::LocalRequest request;
  v1::Hello* hello = request.mutable_hello();
  hello->set_instance_id(instance_id_);
  hello->set_pid(getpid());
  hello->set_description(options_.description);
  hello_seq_ = SendControlRequest(std::move(request), nullptr);
}

void Engine::OnControl(zmq::message_t& frame) {
  v1::LocalResponse response;
  if (!response.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
    ZLOG_WARNING("libzmesh: unreadable message from the proxy's control socket");
    return;
  }
  last_heard_ms_ = NowMs();
  silence_logged_ = false;
  switch (response.body_case()) {
    case v1::LocalResponse::kWelcome: {
      if (response.seq() != hello_seq_) return;  // answers an older hello
      if (response.code() != 0) {
        ZLOG_WARNING("libzmesh: proxy refused hello: %s", response.message());
        return;
      }
      const v1::Welcome& w = response.welcome();
      welcomed_ = true;
      incarnation_ = w.incarnation();
      if (w.max_payload_bytes() > 0) {
        max_payload_bytes_ = std::min(options_.max_payload_bytes, w.max_payload_bytes());
      }
      if (w.ping_interval_ms() > 0) ping_interval_ms_ = w.ping_interval_ms();
      if (w.instance_timeout_ms() > 0) instance_timeout_ms_ = w.instance_timeout_ms();
      {
        absl::MutexLock lock(&mu_);
        node_name_ = w.node_name();
        proxy_directory_.assign(w.directory().begin(), w.directory().end());
      }
      SendAttach();
      if (!attach_timer_armed_) {
        attach_timer_armed_ = true;
        timers_.Add(NowMs() + kAttachRetryMs, [this] { AttachTick(); });
      }
      return;
    }
    case v1::LocalResponse::kPong: {
      if (response.seq() < hello_seq_) return;  // a ping sent before our latest hello
      const v1::Pong& pong = response.pong();
      if (!pong.known() || (welcomed_ && pong.incarnation() != incarnation_)) {
        ZLOG_INFO("libzmesh: the proxy %s", pong.known() ? "restarted" : "does not know us");
        SayHello();
      }
      return;
    }
    case v1::LocalResponse::kUpdate:
      OnLookup(response.update(), /*fresh=*/false, /*is_update=*/true);
      return;
    default:
      break;
  }
  auto it = control_waiters_.find(response.seq());
  if (it == control_waiters_.end()) return;
  auto waiter = std::move(it->second);
  control_waiters_.erase(it);
  std::move(waiter)(response);
}

void Engine::SendAttach() {
  for (int i = 0; i < kPatterns; ++i) {
    if (attached_[i]) continue;
    v1::Header header;
    header.set_kind(v1::KIND_ATTACH);
    header.set_sender(instance_id_);
    const std::string bytes = wire::EncodeHeader(std::move(header));
    absl::Status st = wire::SendFrames(
        *data_[i], {zmq::const_buffer(bytes.data(), bytes.size()), zmq::const_buffer()}, true);
    if (!st.ok()) ZLOG_DEBUG("libzmesh: ATTACH on %s.sock: %s", kDataSocketNames[i], st.ToString());
  }
}

void Engine::AttachTick() {
  attach_timer_armed_ = false;
  if (!welcomed_ || ready_) return;
  SendAttach();
  attach_timer_armed_ = true;
  timers_.Add(NowMs() + kAttachRetryMs, [this] { AttachTick(); });
}

void Engine::OnAttached(int index) {
  if (!welcomed_ || ready_) return;
  attached_[index] = true;
  for (bool a : attached_) {
    if (!a) return;
  }
  OnReady();
}

void Engine::OnReady() {
  ready_ = true;
  if (!ever_ready_) {
    ever_ready_ = true;
    absl::MutexLock lock(&mu_);
    started_ = true;
  }
  // Announces (again, after a proxy restart), then lookups: docs/wire-protocol.md.
  for (const RegEntry& entry : registrations_) SendAnnounce(entry.registration, entry.sink);
  for (auto& [key, pair] : pairs_) {
    pair.query_in_flight = false;
    SendLookup(key);
  }
}

void Engine::PingTick() {
  if (stop_) return;
  v1::LocalRequest request;
  request.mutable_ping();
  SendControlRequest(std::move(request), nullptr);
  const int64_t now = NowMs();
  if (now - last_heard_ms_ > instance_timeout_ms_) {
    if (!silence_logged_) {
      silence_logged_ = true;
      ZLOG_WARNING("libzmesh: no answer from the proxy at %s for %d ms", options_.ipc_dir,
                   now - last_heard_ms_);
    }
    // Not welcomed yet (proxy down at start, or restarting): say hello again.
    if (!welcomed_ && now - last_heard_ms_ > 2 * instance_timeout_ms_) {
      last_heard_ms_ = now - instance_timeout_ms_ - 1;
      SayHello();
    }
  }
  timers_.Add(now + ping_interval_ms_, [this] { PingTick(); });
}

void Engine::SendLookup(const PairKey& key) {
  PairState& pair = pairs_[key];
  if (!ready_ || pair.query_in_flight || stop_) return;
  pair.query_in_flight = true;
  stats_.lookups_from_proxy.fetch_add(1);
  v1::LocalRequest request;
  v1::LookupQuery* query = request.mutable_lookup();
  query->set_exchange(key.first);
  query->set_topic(key.second);
  query->set_fresh(!pair.resolved);
  SendControlRequest(std::move(request), [this, key](const v1::LocalResponse& r) {
    if (stop_) return;
    auto it = pairs_.find(key);
    if (it == pairs_.end()) return;
    it->second.query_in_flight = false;
    if (r.code() != 0) {
      ZLOG_WARNING("libzmesh: lookup of %s failed: %s", PairName(key), r.message());
      if (ready_) RetryLookupLater(key);
      return;
    }
    OnLookup(r.lookup(), !r.lookup().from_cache(), /*is_update=*/false);
  });
}

void Engine::RetryLookupLater(const PairKey& key) {
  timers_.Add(NowMs() + kLookupRetryMs, [this, key] {
    auto it = pairs_.find(key);
    if (it != pairs_.end() && !it->second.query_in_flight) SendLookup(key);
  });
}

void Engine::OnLookup(const v1::LookupResult& result, bool fresh, bool is_update) {
  const PairKey key(result.exchange(), result.topic());
  auto it = pairs_.find(key);
  if (it == pairs_.end()) return;
  PairState& pair = it->second;
  if (pair.resolved && result.revision() < pair.revision) return;  // older than what we have
  if (is_update && !pair.resolved && pair.query_in_flight) {
    // A push from the proxy's mirror (fed by its directory watch, which may lag) while the first,
    // fresh lookup is on its way: acting on it would send the waiting ops to a set that can miss
    // targets registered before they were sent. The fresh answer is never older than a push
    // sent before it (the proxy answers from its mirror when that is newer), so wait for it.
    return;
  }
  pair.set = EndpointSet::FromLookup(result);
  {
    absl::MutexLock lock(&sendable_mu_);
    auto first = sendable_.lower_bound(std::make_tuple(key.first, key.second, std::string()));
    auto last = first;
    while (last != sendable_.end() && std::get<0>(*last) == key.first &&
           std::get<1>(*last) == key.second) {
      ++last;
    }
    sendable_.erase(first, last);
    sendable_.emplace(key.first, key.second, "\n");
    for (const Member& m : pair.set.rpc_servers()) {
      sendable_.emplace(key.first, key.second, m.server);
      if (!m.draining) sendable_.emplace(key.first, key.second, "");
    }
  }
  pair.revision = result.revision();
  pair.resolved = true;
  ResendLostCalls(key, pair);
  pair.fresh_answer = fresh || is_update;
  std::deque<uint64_t> waiting;
  waiting.swap(pairs_[key].waiting);
  for (uint64_t id : waiting) {
    auto op = ops_.find(id);
    if (op != ops_.end() && op->second->state == OpState::kWaiting) Drive(*op->second);
  }
}

// ---------------------------------------------------------------------------------------------
// Registrations and incoming messages.

void Engine::SendAnnounce(const dv1::Registration& registration, const Sink* sink) {
  v1::LocalRequest request;
  *request.mutable_announce()->mutable_registration() = registration;
  SendControlRequest(std::move(request), [this, registration, sink](const v1::LocalResponse& r) {
    for (RegEntry& entry : registrations_) {
      if (entry.sink != sink || !SameRegistration(entry.registration, registration)) continue;
      if (!entry.done) continue;
      if (stop_) {
        std::move(entry.done)(absl::UnavailableError("transport closed"));
      } else if (r.code() == 0 || r.code() == static_cast<int>(absl::StatusCode::kUnavailable)) {
        // UNAVAILABLE: the proxy holds it until the directory is back (server.h).
        std::move(entry.done)(absl::OkStatus());
      } else {
        std::move(entry.done)(absl::Status(
            static_cast<absl::StatusCode>(r.code()),
            absl::StrCat("announcing ", registration.topic(), ": ", r.message())));
      }
      entry.done = nullptr;
    }
  });
}

void Engine::Announce(dv1::Registration registration, Sink* sink, StatusDone done) {
  PostOrRun([this, registration = std::move(registration), sink,
             done = std::move(done)]() mutable {
    if (stop_) {
      std::move(done)(absl::UnavailableError("transport closed"));
      return;
    }
    registrations_.push_back(RegEntry{registration, sink, std::move(done)});
    RebuildSinks();
    if (!ready_) return;  // OnReady announces it
    SendAnnounce(registration, sink);
  });
}

void Engine::Withdraw(dv1::Registration registration, Sink* sink, StatusDone done) {
  PostOrRun([this, registration = std::move(registration), sink,
             done = std::move(done)]() mutable {
    if (stop_) {
      std::move(done)(absl::OkStatus());
      return;
    }
    bool others = false;
    for (auto it = registrations_.begin(); it != registrations_.end();) {
      if (!SameRegistration(it->registration, registration)) {
        ++it;
      } else if (it->sink == sink) {
        if (it->done) std::move(it->done)(absl::CancelledError("withdrawn"));
        it = registrations_.erase(it);
      } else {
        others = true;
        ++it;
      }
    }
    RebuildSinks();
    if (others || !ready_) {
      std::move(done)(absl::OkStatus());
      return;
    }
    v1::LocalRequest request;
    *request.mutable_withdraw()->mutable_registration() = registration;
    // Once the proxy confirmed, or after kWithdrawWaitMs when it does not answer (it is gone:
    // then it withdraws everything of ours anyway). Nothing reaches the sink meanwhile.
    auto shared = std::make_shared<StatusDone>(std::move(done));
    SendControlRequest(std::move(request), [shared](const v1::LocalResponse&) {
      if (*shared) std::move (*shared)(absl::OkStatus());
      *shared = nullptr;
    });
    timers_.Add(NowMs() + kWithdrawWaitMs, [shared] {
      if (*shared) std::move (*shared)(absl::OkStatus());
      *shared = nullptr;
    });
  });
}

bool Engine::SinksFull() const {
  for (const RegEntry& entry : registrations_) {
    if (entry.sink != nullptr && entry.sink->backlog() >= kMaxSinkBacklog) return true;
  }
  return false;
}

void Engine::RebuildSinks() {
  rpc_sinks_.clear();
  listener_sinks_.clear();
  for (const RegEntry& entry : registrations_) {
    const dv1::Registration& r = entry.registration;
    auto key = std::make_tuple(r.exchange(), r.topic(), r.server());
    if (r.kind() == dv1::KIND_RPC_SERVER) {
      rpc_sinks_[key].push_back(entry.sink);
    } else {
      listener_sinks_[key] = entry.sink;
    }
  }
}

void Engine::OnLocalData(int index, std::vector<zmq::message_t>& frames) {
  if (frames.size() != 2 && frames.size() != 3) {
    ZLOG_WARNING("libzmesh: dropped a message of %d frames from %s.sock", frames.size(),
                 kDataSocketNames[index]);
    return;
  }
  const bool has_route = frames.size() == 3;
  zmq::message_t& header_frame = frames[has_route ? 1 : 0];
  zmq::message_t& payload_frame = frames[has_route ? 2 : 1];
  wire::Decoded d = wire::DecodeHeader(
      absl::string_view(static_cast<const char*>(header_frame.data()), header_frame.size()),
      static_cast<int64_t>(payload_frame.size()), max_payload_bytes_.load());
  Incoming in;
  in.pattern = static_cast<Pattern>(index);
  in.has_route = has_route;
  if (has_route) in.route = frames[0].to_string();
  if (!d.ok()) {
    ZLOG_WARNING("libzmesh: refused a message from %s.sock: %s", kDataSocketNames[index],
                 d.detail);
    if (d.header_readable && has_route) {
      in.header = std::move(d.header);
      RefuseLocal(in.pattern, in, d.status, d.detail);
    }
    return;
  }
  in.header = std::move(d.header);
  const v1::Kind kind = in.header.kind();
  if (kind == v1::KIND_ATTACHED) {
    OnAttached(index);
    return;
  }
  in.received_ms = NowMs();
  const v1::Target& t = in.header.target();
  if ((kind == v1::KIND_CALL || kind == v1::KIND_CAST) && PatternOf(kind) == in.pattern) {
    auto it = rpc_sinks_.find(std::make_tuple(t.exchange(), t.topic(), t.server()));
    if (it == rpc_sinks_.end() || it->second.empty()) {
      RefuseLocal(in.pattern, in, v1::STATUS_NO_SUCH_TARGET, "no such server here");
      return;
    }
    size_t& next = rpc_rr_[it->first];
    Sink* sink = it->second[next++ % it->second.size()];
    in.payload = payload_frame.to_string();
    sink->Deliver(std::move(in));
  } else if (kind == v1::KIND_FANOUT && in.pattern == Pattern::kFanout) {
    std::vector<Sink*> sinks;
    for (auto it = rpc_sinks_.lower_bound(std::make_tuple(t.exchange(), t.topic(), std::string()));
         it != rpc_sinks_.end() && std::get<0>(it->first) == t.exchange() &&
         std::get<1>(it->first) == t.topic();
         ++it) {
      for (Sink* s : it->second) {
        if (std::find(sinks.begin(), sinks.end(), s) == sinks.end()) sinks.push_back(s);
      }
    }
    if (sinks.empty()) {
      ZLOG_DEBUG("libzmesh: fanout for %s/%s with no server here", t.exchange(), t.topic());
      return;
    }
    in.payload = payload_frame.to_string();
    for (size_t i = 0; i + 1 < sinks.size(); ++i) sinks[i]->Deliver(in);
    sinks.back()->Deliver(std::move(in));
  } else if (kind == v1::KIND_NOTIFY && in.pattern == Pattern::kNotify) {
    auto it = listener_sinks_.find(std::make_tuple(t.exchange(), t.topic(), t.server()));
    if (it == listener_sinks_.end()) {
      RefuseLocal(in.pattern, in, v1::STATUS_NO_SUCH_TARGET, "no such listener here");
      return;
    }
    in.payload = payload_frame.to_string();
    it->second->Deliver(std::move(in));
  } else {
    ZLOG_WARNING("libzmesh: unexpected %s on %s.sock", wire::KindName(kind),
                 kDataSocketNames[index]);
  }
}

void Engine::RefuseLocal(Pattern pattern, const Incoming& message, v1::Status status,
                         const std::string& detail) {
  if (!message.has_route) return;
  const v1::Kind kind = message.header.kind();
  if (kind != v1::KIND_CALL && kind != v1::KIND_CAST && kind != v1::KIND_NOTIFY &&
      kind != v1::KIND_FANOUT) {
    return;
  }
  v1::Header h;
  h.set_kind(kind == v1::KIND_CALL ? v1::KIND_REPLY : v1::KIND_ACK);
  h.set_message_id(message.header.message_id());
  h.set_sender(message.header.sender());
  *h.mutable_target() = message.header.target();
  h.set_status(status);
  h.set_detail(detail);
  {
    absl::MutexLock lock(&mu_);
    h.set_node(node_name_);
  }
  SendLocal(pattern, &message.route, h, zmq::message_t());
}

void Engine::SendLocal(Pattern pattern, const std::string* route, const v1::Header& h,
                       zmq::message_t payload) {
  zmq::socket_t& socket = *data_[static_cast<int>(pattern)];
  const std::string header = wire::EncodeHeader(h);
  if (route != nullptr) {
    if (zmq_send(socket.handle(), route->data(), route->size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
      ZLOG_WARNING("libzmesh: answering on %s.sock: %s", kDataSocketNames[static_cast<int>(pattern)],
                   zmq_strerror(zmq_errno()));
      return;
    }
  }
  absl::Status st = SendTwo(socket, header, std::move(payload));
  if (!st.ok()) {
    ZLOG_WARNING("libzmesh: answering on %s.sock: %s", kDataSocketNames[static_cast<int>(pattern)],
                 st.ToString());
  }
}

void Engine::Answer(Pattern pattern, std::string route, v1::Header header, std::string payload,
                    uint64_t heartbeat_token) {
  PostOrRun([this, pattern, route = std::move(route), header = std::move(header),
             payload = std::move(payload), heartbeat_token]() mutable {
    if (stop_) return;
    if (heartbeat_token != 0) heartbeats_.erase(heartbeat_token);
    zmq::message_t body;
    if (payload.size() >= kZeroCopyBytes) {
      auto shared = std::make_shared<std::string>(std::move(payload));
      body = zmq::message_t(shared->data(), shared->size(), FreeSharedPayload,
                            new std::shared_ptr<std::string>(shared));
    } else {
      body = zmq::message_t(payload.data(), payload.size());
    }
    SendLocal(pattern, &route, header, std::move(body));
  });
}

uint64_t Engine::BeginHeartbeats(std::string route, const v1::Header& call, int64_t interval_ms) {
  const uint64_t token = next_heartbeat_token_.fetch_add(1);
  v1::Header h;
  h.set_kind(v1::KIND_HEARTBEAT);
  h.set_message_id(call.message_id());
  h.set_sender(call.sender());
  *h.mutable_target() = call.target();
  PostOrRun([this, token, route = std::move(route), h = std::move(h),
             interval_ms = std::max<int64_t>(1, interval_ms)]() mutable {
    if (stop_) return;
    heartbeats_[token] = Heartbeats{std::move(route), std::move(h), interval_ms};
    timers_.Add(NowMs() + interval_ms, [this, token] { HeartbeatTick(token); });
  });
  return token;
}

void Engine::EndHeartbeats(uint64_t token) {
  PostOrRun([this, token] {
    if (!stop_) heartbeats_.erase(token);
  });
}

void Engine::HeartbeatTick(uint64_t token) {
  auto it = heartbeats_.find(token);
  if (it == heartbeats_.end()) return;
  SendLocal(Pattern::kCall, &it->second.route, it->second.header, zmq::message_t());
  timers_.Add(NowMs() + it->second.interval_ms, [this, token] { HeartbeatTick(token); });
}

// ---------------------------------------------------------------------------------------------
// Outgoing messages.

void Engine::Call(Target target, std::string payload, CallOptions options, CallDone done) {
  auto op = std::make_unique<Op>();
  op->kind = OpKind::kCall;
  op->pair = {std::move(target.exchange), std::move(target.topic)};
  op->server = std::move(target.server);
  op->payload = std::make_shared<std::string>(std::move(payload));
  op->deadline_ms = DeadlineAfter(options.timeout_ms);
  op->call_monitor_timeout_ms = options.call_monitor_timeout_ms;
  op->at_least_once = options.at_least_once;
  op->call_done = std::move(done);
  PostOrRun([this, op = std::move(op)]() mutable { Start(std::move(op)); });
}

void Engine::Cast(Target target, std::string payload, CastOptions options, StatusDone done) {
  auto op = std::make_unique<Op>();
  op->kind = OpKind::kCast;
  op->pair = {std::move(target.exchange), std::move(target.topic)};
  op->server = std::move(target.server);
  op->payload = std::make_shared<std::string>(std::move(payload));
  op->deadline_ms = DeadlineAfter(options.timeout_ms);
  op->acknowledged = options.acknowledged;
  op->ack_timeout_ms = std::max<int64_t>(1, options.ack_timeout_ms);
  op->status_done = std::move(done);
  PostOrRun([this, op = std::move(op)]() mutable { Start(std::move(op)); });
}

void Engine::Fanout(Target target, std::string payload, StatusDone done) {
  auto op = std::make_unique<Op>();
  op->kind = OpKind::kFanout;
  op->pair = {std::move(target.exchange), std::move(target.topic)};
  op->payload = std::make_shared<std::string>(std::move(payload));
  op->deadline_ms = DeadlineAfter(kOneWayTimeoutMs);
  op->status_done = std::move(done);
  PostOrRun([this, op = std::move(op)]() mutable { Start(std::move(op)); });
}

bool Engine::TryQueueOneWay(const Target& target, bool fanout, std::string& payload) {
  if (NowMs() < fast_path_closed_until_ms_.load(std::memory_order_relaxed)) return false;
  {
    absl::MutexLock lock(&sendable_mu_);
    if (sendable_.count(std::make_tuple(target.exchange, target.topic,
                                        fanout ? std::string("\n") : target.server)) == 0) {
      return false;
    }
  }
  if (one_way_queued_.fetch_add(1) >= options_.max_queued_per_node) {
    one_way_queued_.fetch_sub(1);
    return false;
  }
  StatusDone done = [this, topic = target.topic](absl::Status status) {
    one_way_queued_.fetch_sub(1);
    if (!status.ok() && !absl::IsUnavailable(status)) {
      ZLOG_WARNING("libzmesh: a one-way message to %s was not sent: %s", topic,
                   status.ToString());
    }
  };
  if (fanout) {
    Fanout(target, std::move(payload), std::move(done));
  } else {
    CastOptions options;
    Cast(target, std::move(payload), options, std::move(done));
  }
  return true;
}

void Engine::Notify(std::string exchange, std::string topic, std::string payload,
                    StatusDone done) {
  auto op = std::make_unique<Op>();
  op->kind = OpKind::kNotify;
  op->pair = {std::move(exchange), std::move(topic)};
  op->payload = std::make_shared<std::string>(std::move(payload));
  op->deadline_ms = DeadlineAfter(kOneWayTimeoutMs);
  op->status_done = std::move(done);
  PostOrRun([this, op = std::move(op)]() mutable { Start(std::move(op)); });
}

void Engine::Start(std::unique_ptr<Op> op) {
  if (stop_) {
    const absl::Status closed = absl::UnavailableError("transport closed");
    if (op->call_done) std::move(op->call_done)(closed);
    if (op->status_done) std::move(op->status_done)(closed);
    return;
  }
  op->id = next_message_id_.fetch_add(1);
  Op& ref = *op;
  ops_.emplace(op->id, std::move(op));
  PairState& pair = pairs_[ref.pair];
  if (!pair.resolved && pair.waiting.size() >= kMaxWaitingPerPair) {
    Complete(ref, absl::UnavailableError(absl::StrCat("too many messages waiting for the lookup of ",
                                                      PairName(ref.pair))));
    return;
  }
  const uint64_t id = ref.id;
  Drive(ref);
  // Sent at once (the common case): its own timers are armed. Still waiting: arm its deadline.
  auto it = ops_.find(id);
  if (it != ops_.end() && it->second->armed_ms == 0) ArmTimer(*it->second);
}

void Engine::Drive(Op& op) {
  op.state = OpState::kWaiting;
  PairState& pair = pairs_[op.pair];
  if (!pair.resolved) {
    pair.waiting.push_back(op.id);
    SendLookup(op.pair);
    return;
  }
  if (op.kind == OpKind::kFanout) {
    if (op.fanout_nodes.empty()) op.fanout_nodes = RoundRobin::FanoutNodes(pair.set);
    if (op.fanout_nodes.empty()) {  // nobody to reach
      Complete(op, CallResult{});
      return;
    }
    SendFanout(op, false);
    return;
  }
  if (op.kind == OpKind::kNotify && !op.per_pool) {
    // One copy per pool, each its own message (a refusal names the copy to resend).
    std::vector<std::string> pools;
    for (const auto& [pool, members] : pair.set.pools()) pools.push_back(pool);
    for (const std::string& pool : pools) {
      auto child = std::make_unique<Op>();
      child->kind = OpKind::kNotify;
      child->per_pool = true;
      child->pool = pool;
      child->pair = op.pair;
      child->payload = op.payload;
      child->deadline_ms = op.deadline_ms;
      child->answered = true;
      child->id = next_message_id_.fetch_add(1);
      Op& c = *child;
      const uint64_t child_id = c.id;
      ops_.emplace(child_id, std::move(child));
      Drive(c);
      auto it = ops_.find(child_id);
      if (it != ops_.end() && it->second->armed_ms == 0) ArmTimer(*it->second);
    }
    Complete(op, CallResult{});
    return;
  }
  const Member* member = nullptr;
  if (op.server.empty() || op.kind == OpKind::kNotify) {
    // A group (or a notification pool): skip members whose node is down while another is up.
    if (peers_down_ > 0) {
      std::set<MemberKey> excluded = DownMembers(pair, PatternOfOp(op.kind), op.pool);
      const bool some_down = !excluded.empty();
      excluded.insert(op.refused.begin(), op.refused.end());
      member = op.kind == OpKind::kNotify ? pair.rr.PickInPool(pair.set, op.pool, excluded)
                                          : pair.rr.PickGroup(pair.set, excluded);
      if (member == nullptr && some_down) {
        // Every live member is on a node we lost: wait for it to come back or leave the cache.
        op.retry_ms = NowMs() + kRefusalBackoffMs;
        ArmTimer(op);
        return;
      }
    } else if (op.kind == OpKind::kNotify) {
      member = pair.rr.PickInPool(pair.set, op.pool, op.refused);
    } else {
      member = pair.rr.PickGroup(pair.set, op.refused);
    }
  } else {
    member = pair.rr.PickServer(pair.set, op.server);
  }
  if (member == nullptr) {
    if (op.kind == OpKind::kCall && op.at_least_once) {
      Complete(op, absl::NotFoundError(absl::StrCat(
                       "no server for ", PairName(op.pair),
                       op.server.empty() ? "" : absl::StrCat(" server ", op.server),
                       " in the directory")));
      return;
    }
    if (!op.refused.empty()) {
      // Every member refused: wait a little (the cache may catch up), then start over.
      op.refused.clear();
      op.retry_ms = NowMs() + kRefusalBackoffMs;
      ArmTimer(op);
      return;
    }
    pair.waiting.push_back(op.id);  // until an update brings a member (or the deadline)
    return;
  }
  const std::string node = member->node;
  const std::string server = member->server;
  SendOp(op, node, server, false);
}

zmq::socket_t* Engine::PeerSocket(const NodeAddress& address, Pattern pattern, Peer** peer_out) {
  std::unique_ptr<Peer>& peer = peers_[address.name];
  if (peer == nullptr) peer = std::make_unique<Peer>();
  peer->address = address;
  *peer_out = peer.get();
  const int p = static_cast<int>(pattern);
  uint32_t port = 0;
  switch (pattern) {
    case Pattern::kCall: port = address.call_port; break;
    case Pattern::kFanout: port = address.fanout_port; break;
    case Pattern::kNotify: port = address.notify_port; break;
    case Pattern::kCast: port = address.cast_port; break;
  }
  std::string endpoint = absl::StrCat("tcp://", address.host, ":", port);
  if (peer->sockets[p] != nullptr && peer->endpoints[p] == endpoint) return peer->sockets[p].get();
  if (peer->sockets[p] != nullptr) {
    ZLOG_INFO("libzmesh: node %s moved to %s", address.name, endpoint);
    closed_sockets_.push_back(std::move(peer->sockets[p]));
    if (peer->monitors[p] != nullptr) closed_sockets_.push_back(std::move(peer->monitors[p]));
    if (!peer->up[p]) --peers_down_;
    peer->up[p] = true;
  }
  try {
    auto socket = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
    if (absl::Status st = wire::ConfigureSocket(*socket, wire::SocketRole::kNetworkPeer,
                                                max_payload_bytes_.load());
        !st.ok()) {
      ZLOG_ERROR("libzmesh: %s", st.ToString());
      return nullptr;
    }
    socket->set(zmq::sockopt::sndhwm, static_cast<int>(std::min<int64_t>(
                                          options_.max_queued_per_node, 1 << 30)));
    // A connect attempt the host does not answer is abandoned (and retried) after this, instead
    // of the kernel's SYN retries (minutes), so a host that comes back is found quickly.
    socket->set(zmq::sockopt::connect_timeout, static_cast<int>(options_.peer_connect_timeout_ms));
    // Connection events (before connecting, so none is missed).
    const std::string monitor_endpoint =
        absl::StrCat("inproc://zmesh-monitor-", next_monitor_++);
    if (zmq_socket_monitor(socket->handle(), monitor_endpoint.c_str(),
                           ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED |
                               ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) == 0) {
      auto monitor = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::pair);
      monitor->set(zmq::sockopt::linger, 0);
      monitor->connect(monitor_endpoint);
      peer->monitors[p] = std::move(monitor);
    } else {
      ZLOG_WARNING("libzmesh: no connection monitor for %s: %s", endpoint,
                   zmq_strerror(zmq_errno()));
    }
    socket->connect(endpoint);
    peer->sockets[p] = std::move(socket);
    peer->endpoints[p] = std::move(endpoint);
  } catch (const zmq::error_t& e) {
    ZLOG_ERROR("libzmesh: connecting to %s: %s", endpoint, e.what());
    return nullptr;
  }
  const uint64_t socket_id = next_socket_id_++;
  peer->socket_ids[p] = socket_id;
  peer->ever_connected[p] = false;
  // ZMQ_CONNECT_TIMEOUT reports a TCP connect without answer (CONNECT_RETRIED); this backstop
  // catches a connection that never completes its ZMTP handshake.
  timers_.Add(NowMs() + 2 * options_.peer_connect_timeout_ms,
              [this, node = address.name, p, socket_id] { OnConnectTimer(node, p, socket_id); });
  poll_dirty_ = true;
  return peer->sockets[p].get();
}

bool Engine::SendOp(Op& op, const std::string& node, const std::string& server,
                    bool from_blocked) {
  PairState& pair = pairs_[op.pair];
  const NodeAddress* address = pair.set.node(node);
  if (address == nullptr) {  // the node left while the op was blocked
    pair.waiting.push_back(op.id);
    op.state = OpState::kWaiting;
    return false;
  }
  v1::Header h;
  Pattern pattern = Pattern::kCall;
  switch (op.kind) {
    case OpKind::kCall:
      h.set_kind(v1::KIND_CALL);
      h.set_timeout_ms(std::max<int64_t>(1, op.deadline_ms - NowMs()));
      h.set_call_monitor_timeout_ms(op.call_monitor_timeout_ms);
      break;
    case OpKind::kCast:
      h.set_kind(v1::KIND_CAST);
      h.set_ack(op.acknowledged);
      pattern = Pattern::kCast;
      break;
    case OpKind::kFanout:
      h.set_kind(v1::KIND_FANOUT);
      pattern = Pattern::kFanout;
      break;
    case OpKind::kNotify:
      h.set_kind(v1::KIND_NOTIFY);
      h.mutable_target()->set_pool(op.pool);
      pattern = Pattern::kNotify;
      break;
  }
  h.set_message_id(op.id);
  h.set_sender(instance_id_);
  h.mutable_target()->set_exchange(op.pair.first);
  h.mutable_target()->set_topic(op.pair.second);
  h.mutable_target()->set_server(server);
  Peer* peer = nullptr;
  zmq::socket_t* socket = PeerSocket(*address, pattern, &peer);
  if (socket == nullptr) {
    Complete(op, absl::UnavailableError(absl::StrCat("cannot connect to node ", node)));
    return false;
  }
  zmq::message_t body;
  if (op.payload->size() >= kZeroCopyBytes) {
    body = zmq::message_t(op.payload->data(), op.payload->size(), FreeSharedPayload,
                          new std::shared_ptr<std::string>(op.payload));
  } else {
    body = zmq::message_t(op.payload->data(), op.payload->size());
  }
  op.chosen.node = node;
  op.chosen.server = server;
  absl::Status st = SendTwo(*socket, wire::EncodeHeader(std::move(h)), std::move(body));
  if (absl::IsResourceExhausted(st)) {
    op.state = OpState::kBlocked;
    auto& blocked = peer->blocked[static_cast<int>(pattern)];
    if (from_blocked) {
      blocked.push_front(op.id);
    } else {
      blocked.push_back(op.id);
    }
    return false;
  }
  if (!st.ok()) {
    Complete(op, absl::UnavailableError(absl::StrCat("sending to node ", node, ": ",
                                                     st.message())));
    return false;
  }
  op.state = OpState::kInFlight;
  op.socket_id = peer->socket_ids[static_cast<int>(pattern)];
  const bool unconnected = !peer->ever_connected[static_cast<int>(pattern)];
  op.heard = false;
  op.retry_ms = 0;
  const int64_t now = NowMs();
  switch (op.kind) {
    case OpKind::kCall:
      stats_.calls_sent.fetch_add(1);
      if (op.call_monitor_timeout_ms > 0) op.monitor_due_ms = now + op.call_monitor_timeout_ms;
      ArmTimer(op);
      break;
    case OpKind::kCast:
      stats_.casts_sent.fetch_add(1);
      if (op.acknowledged) {
        op.retry_ms = std::min(now + op.ack_timeout_ms, op.deadline_ms);
        ArmTimer(op);
      } else {
        Linger(op, unconnected);
      }
      break;
    case OpKind::kNotify:
      stats_.notifications_sent.fetch_add(1);
      Linger(op, unconnected);
      break;
    case OpKind::kFanout:
      stats_.fanouts_sent.fetch_add(1);
      break;
  }
  return true;
}

void Engine::SendFanout(Op& op, bool from_blocked) {
  while (!op.fanout_nodes.empty()) {
    const std::string node = op.fanout_nodes.front();
    if (!SendOp(op, node, "", from_blocked)) {
      if (op.state == OpState::kWaiting) {
        // The node left the answer while we waited for room: nothing to reach there.
        pairs_[op.pair].waiting.pop_back();
        op.fanout_nodes.erase(op.fanout_nodes.begin());
        continue;
      }
      return;  // blocked, or completed with an error
    }
    op.fanout_nodes.erase(op.fanout_nodes.begin());
    from_blocked = false;
  }
  Complete(op, CallResult{});
}

void Engine::RetryBlocked(Peer& peer, int index) {
  std::deque<uint64_t>& blocked = peer.blocked[index];
  while (!blocked.empty()) {
    const uint64_t id = blocked.front();
    blocked.pop_front();
    auto it = ops_.find(id);
    if (it == ops_.end() || it->second->state != OpState::kBlocked) continue;
    Op& op = *it->second;
    if (op.kind == OpKind::kFanout) {
      SendFanout(op, true);
    } else {
      const std::string node = op.chosen.node;
      const std::string server = op.chosen.server;
      SendOp(op, node, server, true);
    }
    auto again = ops_.find(id);
    if (again != ops_.end() && again->second->state == OpState::kBlocked) return;  // still full
  }
}

void Engine::Linger(Op& op, bool unconnected) {
  if (!op.answered) {
    op.answered = true;
    if (op.status_done) std::move(op.status_done)(absl::OkStatus());
  }
  if (op.state == OpState::kLingering) return;
  op.state = OpState::kLingering;
  int64_t linger_ms = kLingerMs;
  if (unconnected) {
    linger_ms = std::max(linger_ms, 2 * options_.peer_connect_timeout_ms + kLingerSlackMs);
  }
  op.linger_until_ms = NowMs() + linger_ms;
  lingering_.push_back(op.id);
  lingering_bytes_ += static_cast<int64_t>(op.payload->size());
  ArmTimer(op);
  while (!lingering_.empty() &&
         (lingering_.size() > kMaxLingering || lingering_bytes_ > kMaxLingeringBytes)) {
    const uint64_t oldest = lingering_.front();
    lingering_.pop_front();
    auto it = ops_.find(oldest);
    if (it != ops_.end() && it->second->state == OpState::kLingering) Erase(oldest);
  }
}

void Engine::Erase(uint64_t id) {
  auto it = ops_.find(id);
  if (it == ops_.end()) return;
  if (it->second->state == OpState::kLingering) {
    lingering_bytes_ -= static_cast<int64_t>(it->second->payload->size());
  }
  ops_.erase(it);
}

void Engine::Complete(Op& op, absl::StatusOr<CallResult> result) {
  if (!op.answered) {
    op.answered = true;
    if (op.call_done) {
      std::move(op.call_done)(std::move(result));
    } else if (op.status_done) {
      std::move(op.status_done)(result.status());
    }
  }
  Erase(op.id);
}

void Engine::ResendToNext(Op& op, bool count_retry) {
  if (op.kind == OpKind::kCall && count_retry) stats_.calls_retried.fetch_add(1);
  if (op.kind == OpKind::kCast && count_retry) stats_.casts_retried.fetch_add(1);
  if (op.server.empty()) op.refused.insert({op.chosen.node, op.chosen.server});
  if (op.state == OpState::kLingering) {
    // Back to work: it leaves the lingering set (its entry in lingering_ is skipped later).
    lingering_bytes_ -= static_cast<int64_t>(op.payload->size());
    op.linger_until_ms = 0;
  }
  if (!op.server.empty() && op.kind != OpKind::kNotify) {
    // A specific server: the same one again after a pause, until the deadline.
    op.state = OpState::kWaiting;
    op.retry_ms = NowMs() + kRefusalBackoffMs;
    ArmTimer(op);
    return;
  }
  Drive(op);
}

void Engine::ArmTimer(Op& op) {
  int64_t due = op.deadline_ms;
  auto consider = [&due](int64_t t) {
    if (t != 0 && (due == 0 || t < due)) due = t;
  };
  if (op.state == OpState::kInFlight) consider(op.monitor_due_ms);
  consider(op.retry_ms);
  if (op.state == OpState::kLingering) consider(op.linger_until_ms);
  if (due == 0) return;
  if (op.armed_ms != 0 && op.armed_ms <= due) return;  // the armed timer fires first
  op.armed_ms = due;
  const uint64_t id = op.id;
  timers_.Add(due, [this, id, due] { OnOpTimer(id, due); }, id);
  // Timers of finished ops stay until due (a call's deadline may be a minute away): drop them
  // once they outnumber the live ones, so the heap stays proportional to the work in flight.
  if (timers_.size() > 4 * (ops_.size() + heartbeats_.size()) + 1024) {
    timers_.RemoveIf([this](uint64_t owner, int64_t due_ms) {
      auto it = ops_.find(owner);
      return it == ops_.end() || it->second->armed_ms != due_ms;
    });
  }
}

void Engine::OnOpTimer(uint64_t id, int64_t due) {
  auto it = ops_.find(id);
  if (it == ops_.end()) return;
  Op& op = *it->second;
  if (op.armed_ms != due) return;  // superseded by an earlier timer
  op.armed_ms = 0;
  const int64_t now = NowMs();
  if (op.deadline_ms != 0 && now >= op.deadline_ms) {
    std::string why;
    switch (op.state) {
      case OpState::kWaiting:
        why = absl::StrCat("no reachable server for ", PairName(op.pair),
                           op.server.empty() ? "" : absl::StrCat(" server ", op.server));
        break;
      case OpState::kBlocked:
        why = absl::StrCat("no room in the send queue to node ", op.chosen.node);
        break;
      default:
        why = op.kind == OpKind::kCall
                  ? absl::StrCat("no reply from ", op.chosen.node, "/", op.chosen.server)
                  : absl::StrCat("no acknowledgement from ", op.chosen.node, "/",
                                 op.chosen.server);
    }
    if (op.answered && op.state != OpState::kLingering) {
      ZLOG_WARNING("libzmesh: message %d to %s dropped: %s", op.id, PairName(op.pair), why);
    }
    Complete(op, absl::DeadlineExceededError(absl::StrCat("deadline exceeded: ", why)));
    return;
  }
  if (op.state == OpState::kInFlight && op.monitor_due_ms != 0 && now >= op.monitor_due_ms) {
    Complete(op, absl::DeadlineExceededError(absl::StrCat(
                     "call monitor timeout: no reply or heartbeat from ", op.chosen.node, "/",
                     op.chosen.server, " for ", op.call_monitor_timeout_ms, " ms")));
    return;
  }
  if (op.state == OpState::kLingering && now >= op.linger_until_ms) {
    Erase(id);
    return;
  }
  if (op.retry_ms != 0 && now >= op.retry_ms) {
    op.retry_ms = 0;
    if (op.state == OpState::kInFlight && op.kind == OpKind::kCast && op.acknowledged) {
      ResendToNext(op, /*count_retry=*/true);  // no ack in time
    } else if (op.state == OpState::kWaiting) {
      Drive(op);
    }
    // The op may be done now; if not, it needs a timer again (at least its deadline).
    auto again = ops_.find(id);
    if (again != ops_.end() && again->second->armed_ms == 0) ArmTimer(*again->second);
    return;
  }
  ArmTimer(op);
}

// ---------------------------------------------------------------------------------------------
// Answers from peers.

void Engine::OnPeerData(Peer& peer, int index, std::vector<zmq::message_t>& frames) {
  if (frames.size() != 2) {
    ZLOG_WARNING("libzmesh: dropped a message of %d frames from node %s", frames.size(),
                 peer.address.name);
    return;
  }
  wire::Decoded d = wire::DecodeHeader(
      absl::string_view(static_cast<const char*>(frames[0].data()), frames[0].size()),
      static_cast<int64_t>(frames[1].size()), max_payload_bytes_.load());
  if (!d.ok()) {
    ZLOG_WARNING("libzmesh: dropped a message from node %s: %s", peer.address.name, d.detail);
    return;
  }
  const v1::Header& h = d.header;
  auto it = ops_.find(h.message_id());
  if (it == ops_.end()) return;  // answered already, or given up
  Op& op = *it->second;
  // An answer of an earlier attempt (another member) is stale for refusals.
  const bool current = op.chosen.node == peer.address.name &&
                       (h.target().server().empty() || h.target().server() == op.chosen.server);
  if (op.kind == OpKind::kCall && index == static_cast<int>(Pattern::kCall)) {
    if (h.kind() == v1::KIND_HEARTBEAT) {
      op.heard = true;
      if (op.call_monitor_timeout_ms > 0) op.monitor_due_ms = NowMs() + op.call_monitor_timeout_ms;
      return;
    }
    if (h.kind() != v1::KIND_REPLY) return;
    switch (h.status()) {
      case v1::STATUS_OK:
        Complete(op, CallResult{frames[1].to_string(), false});
        return;
      case v1::STATUS_REMOTE_ERROR:
        Complete(op, CallResult{frames[1].to_string(), true});
        return;
      case v1::STATUS_NO_SUCH_TARGET:
      case v1::STATUS_OVERLOADED:
        if (current && op.state == OpState::kInFlight) ResendToNext(op, true);
        return;
      case v1::STATUS_EXPIRED:
        Complete(op, absl::DeadlineExceededError(absl::StrCat("expired at node ",
                                                              peer.address.name, ": ",
                                                              h.detail())));
        return;
      case v1::STATUS_TOO_LARGE:
        Complete(op, absl::InvalidArgumentError(absl::StrCat("refused by node ",
                                                             peer.address.name, ": ",
                                                             h.detail())));
        return;
      default:
        Complete(op, absl::InternalError(absl::StrCat("refused by node ", peer.address.name,
                                                      ": ", wire::StatusName(h.status()), " ",
                                                      h.detail())));
        return;
    }
  }
  if (h.kind() != v1::KIND_ACK) return;
  if (h.status() == v1::STATUS_OK) {
    if (op.kind == OpKind::kCast && op.acknowledged) Complete(op, CallResult{});
    return;
  }
  if (h.status() == v1::STATUS_NO_SUCH_TARGET || h.status() == v1::STATUS_OVERLOADED) {
    if (h.status() == v1::STATUS_OVERLOADED) {
      fast_path_closed_until_ms_.store(NowMs() + kOverloadBackoffMs, std::memory_order_relaxed);
    }
    if (!current || (op.state != OpState::kInFlight && op.state != OpState::kLingering)) return;
    if (op.kind == OpKind::kCast || (op.kind == OpKind::kNotify && op.per_pool)) {
      ResendToNext(op, true);
    }
    return;
  }
  ZLOG_WARNING("libzmesh: node %s refused message %d: %s %s", peer.address.name, op.id,
               wire::StatusName(h.status()), h.detail());
  if (op.kind == OpKind::kCast && op.acknowledged) {
    Complete(op, absl::InvalidArgumentError(absl::StrCat("refused by node ", peer.address.name,
                                                         ": ", h.detail())));
  } else if (op.state == OpState::kLingering) {
    Erase(op.id);
  }
}

void Engine::ResendLostCalls(const PairKey& key, PairState& pair) {
  // A Server withdraws only after its handlers answered everything it accepted (server.cc), so
  // a group call still unanswered whose member left the answer went to a server that died (or
  // whose proxy dropped it): nobody will answer it.
  std::vector<uint64_t> lost;
  for (auto& [id, op] : ops_) {
    if (op->kind != OpKind::kCall || op->pair != key || op->state != OpState::kInFlight ||
        !op->server.empty() || op->heard) {
      continue;
    }
    if (!pair.set.HasRpcServer(op->chosen.node, op->chosen.server)) lost.push_back(id);
  }
  for (uint64_t id : lost) {
    auto it = ops_.find(id);
    if (it == ops_.end()) continue;
    ZLOG_INFO("libzmesh: %s/%s left %s: resending call %d", it->second->chosen.node,
              it->second->chosen.server, PairName(key), id);
    ResendToNext(*it->second, /*count_retry=*/true);
  }
}

void Engine::OnMonitorEvent(Peer& peer, int index, std::vector<zmq::message_t>& frames) {
  if (frames.empty() || frames[0].size() < sizeof(uint16_t)) return;
  uint16_t event = 0;
  std::memcpy(&event, frames[0].data(), sizeof(event));
  if (event == ZMQ_EVENT_DISCONNECTED || event == ZMQ_EVENT_CONNECT_RETRIED) {
    if (!peer.ever_connected[index]) {
      // Refused or timed out before any handshake: what is queued was never delivered.
      OnPeerUnreachable(peer, index);
      return;
    }
    if (!peer.up[index]) return;
    peer.up[index] = false;
    ++peers_down_;
    ZLOG_INFO("libzmesh: lost the %s connection to node %s (%s)", kDataSocketNames[index],
              peer.address.name, event == ZMQ_EVENT_DISCONNECTED ? "disconnected" : "no answer");
    OnPeerDown(peer, index);
  } else if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
    // Only a completed handshake counts: a TCP connection whose other end never speaks ZMTP
    // delivers nothing.
    peer.ever_connected[index] = true;
    if (peer.up[index]) return;
    peer.up[index] = true;
    --peers_down_;
    ZLOG_INFO("libzmesh: %s connection to node %s is back", kDataSocketNames[index],
              peer.address.name);
  }
}

void Engine::OnPeerDown(Peer& peer, int index) {
  // The answers of what is in flight on this connection are lost with it.
  std::vector<uint64_t> lost;
  for (auto& [id, op] : ops_) {
    if (op->state != OpState::kInFlight || op->chosen.node != peer.address.name) continue;
    if (!op->server.empty()) continue;  // a specific server: wait for it until the deadline
    const bool call = op->kind == OpKind::kCall && index == static_cast<int>(Pattern::kCall);
    const bool cast = op->kind == OpKind::kCast && op->acknowledged &&
                      index == static_cast<int>(Pattern::kCast);
    if (call || cast) lost.push_back(id);
  }
  for (uint64_t id : lost) {
    auto it = ops_.find(id);
    if (it != ops_.end()) ResendToNext(*it->second, /*count_retry=*/true);
  }
}

std::set<MemberKey> Engine::DownMembers(const PairState& pair, Pattern pattern,
                                        const std::string& pool) const {
  std::set<MemberKey> down;
  const int p = static_cast<int>(pattern);
  static const std::vector<Member> kNone;
  const std::vector<Member>* members = &pair.set.rpc_servers();
  if (pattern == Pattern::kNotify) {
    auto it = pair.set.pools().find(pool);
    members = it == pair.set.pools().end() ? &kNone : &it->second;
  }
  for (const Member& m : *members) {
    auto it = peers_.find(m.node);
    if (it != peers_.end() && it->second->sockets[p] != nullptr && !it->second->up[p]) {
      down.insert({m.node, m.server});
    }
  }
  return down;
}

Pattern Engine::PatternOfOp(OpKind kind) {
  switch (kind) {
    case OpKind::kCall:
      return Pattern::kCall;
    case OpKind::kCast:
      return Pattern::kCast;
    case OpKind::kFanout:
      return Pattern::kFanout;
    case OpKind::kNotify:
      return Pattern::kNotify;
  }
  return Pattern::kCall;
}

void Engine::OnConnectTimer(const std::string& node, int index, uint64_t socket_id) {
  if (stop_) return;
  auto it = peers_.find(node);
  if (it == peers_.end()) return;
  Peer& peer = *it->second;
  // A newer socket replaced it, or it connected: nothing to do.
  if (peer.socket_ids[index] != socket_id || peer.ever_connected[index]) return;
  OnPeerUnreachable(peer, index);
}

void Engine::OnPeerUnreachable(Peer& peer, int index) {
  if (peer.sockets[index] == nullptr) return;
  // Events queued behind the one that brought us here: a handshake among them (a retry that
  // succeeded) means the queue may be on its way, so nothing may be resent. The events before
  // it only say "not connected"; the ones after it are left for the loop.
  while (peer.monitors[index] != nullptr) {
    std::optional<std::vector<zmq::message_t>> frames = wire::ReceiveFrames(*peer.monitors[index]);
    if (!frames) break;
    if (frames->empty() || (*frames)[0].size() < sizeof(uint16_t)) continue;
    uint16_t event = 0;
    std::memcpy(&event, (*frames)[0].data(), sizeof(event));
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      OnMonitorEvent(peer, index, *frames);  // up again, and ever_connected
      return;
    }
  }
  const uint64_t socket_id = peer.socket_ids[index];
  if (peer.up[index]) {
    peer.up[index] = false;
    ++peers_down_;
    ZLOG_INFO(
        "libzmesh: the %s connection to node %s (%s) did not come up: group messages "
        "skip the node until it does",
        kDataSocketNames[index], peer.address.name, peer.endpoints[index]);
  }
  // What sits in this socket's queue (sent on it, never delivered: it never connected), and the
  // group messages waiting for room in it.
  std::vector<uint64_t> queued;
  bool group_queued = false;
  for (auto& [id, op] : ops_) {
    if (op->chosen.node != peer.address.name || static_cast<int>(PatternOfOp(op->kind)) != index ||
        op->kind == OpKind::kFanout) {
      continue;
    }
    const bool group = op->server.empty();
    if (op->state == OpState::kBlocked) {
      if (group) queued.push_back(id);  // to another member (specific ones keep waiting)
      continue;
    }
    if (op->state != OpState::kInFlight && op->state != OpState::kLingering) continue;
    if (op->socket_id != socket_id) continue;
    queued.push_back(id);
    if (group) group_queued = true;
  }
  if (!group_queued) return;  // nothing to rescue: messages to specific servers wait in the queue
  // Close the socket with its queue (linger 0: ZeroMQ will never deliver it) and open a new one,
  // down until its handshake; everything queued in it is sent again below (fanouts have their
  // own socket, never replaced: no group message goes there).
  ZLOG_INFO("libzmesh: resending the messages queued for node %s (%s), which never connected",
            peer.address.name, kDataSocketNames[index]);
  // Closed now rather than at the loop's top, so that a handshake completing meanwhile cannot
  // send the queue (the loop reaches sockets through `peer`, never through a stale handle).
  peer.sockets[index].reset();
  if (peer.monitors[index] != nullptr) closed_sockets_.push_back(std::move(peer.monitors[index]));
  peer.endpoints[index].clear();
  poll_dirty_ = true;
  Peer* same = nullptr;
  const NodeAddress address = peer.address;
  if (PeerSocket(address, static_cast<Pattern>(index), &same) == nullptr) {
    // No socket: not down either (the next send tries to create it again).
    peer.up[index] = true;
    --peers_down_;
  }
  for (uint64_t id : queued) {
    auto it = ops_.find(id);
    if (it == ops_.end()) continue;
    Op& op = *it->second;
    // Group: another member (this one is down now). A specific server: the same one again,
    // on the new socket, after a short pause.
    ResendToNext(op, /*count_retry=*/op.server.empty());
  }
}

// ---------------------------------------------------------------------------------------------
// Accessors.

std::string Engine::node_name() const {
  absl::MutexLock lock(&mu_);
  return node_name_;
}

std::vector<std::string> Engine::proxy_directory() const {
  absl::MutexLock lock(&mu_);
  return proxy_directory_;
}

TransportStats Engine::stats() const {
  TransportStats s;
  s.calls_sent = stats_.calls_sent.load();
  s.calls_retried = stats_.calls_retried.load();
  s.casts_sent = stats_.casts_sent.load();
  s.casts_retried = stats_.casts_retried.load();
  s.fanouts_sent = stats_.fanouts_sent.load();
  s.notifications_sent = stats_.notifications_sent.load();
  s.requests_handled = stats_.requests_handled.load();
  s.messages_delivered = stats_.messages_delivered.load();
  s.duplicates_dropped = stats_.duplicates_dropped.load();
  s.lookups_from_proxy = stats_.lookups_from_proxy.load();
  s.proxy_reconnects = stats_.proxy_reconnects.load();
  return s;
}

}  // namespace zmesh::internal
