#include "dataplane/proxy/pipeline.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "dataplane/wire/envelope.h"
#include "dataplane/wire/sockets.h"

namespace zmesh::proxy {

namespace v1 = ::zmesh::wire::v1;

namespace {

// More frames than any valid message has ([instance][route][header][payload]).
constexpr size_t kMaxFrames = 4;
// Messages handled from one socket before looking at the other (fairness).
constexpr int kBatch = 64;
constexpr int64_t kLogIntervalMs = 1000;
// A stalled request is retried this often (ms), and reported once it lasts kLongStallMs.
constexpr long kStallRetryMs = 1;
constexpr int64_t kLongStallMs = 1000;

struct Received {
  std::array<zmq::message_t, kMaxFrames> frames;
  size_t count = 0;       // frames kept (at most kMaxFrames)
  bool too_many = false;  // more frames arrived than kMaxFrames (discarded)
};

// Reads one whole multipart message without waiting; false when none is ready.
bool Receive(zmq::socket_t& socket, Received* out) {
  out->count = 0;
  out->too_many = false;
  while (true) {
    zmq::message_t scratch;
    zmq::message_t& frame = out->count < kMaxFrames ? out->frames[out->count] : scratch;
    if (out->count < kMaxFrames) frame.rebuild();
    if (zmq_msg_recv(frame.handle(), socket.handle(), ZMQ_DONTWAIT) < 0) {
      // EAGAIN before the first frame: nothing to read. Anything else: socket closing.
      return out->count > 0;
    }
    const bool more = frame.more();
    if (out->count < kMaxFrames) {
      ++out->count;
    } else {
      out->too_many = true;
    }
    if (!more) return true;
  }
}

// Sends the frames as one message without waiting; the frames are consumed on success. Returns
// 0 or the errno of the failure (which can only happen on the first frame: then nothing was
// consumed).
int Send(zmq::socket_t& socket, zmq::message_t* const* frames, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    const int flags = ZMQ_DONTWAIT | (i + 1 < count ? ZMQ_SNDMORE : 0);
    if (zmq_msg_send(frames[i]->handle(), socket.handle(), flags) < 0) return zmq_errno();
  }
  return 0;
}

absl::string_view AsView(const zmq::message_t& frame) {
  return absl::string_view(static_cast<const char*>(frame.data()), frame.size());
}

v1::Kind RequestKind(Pattern pattern) {
  switch (pattern) {
    case Pattern::kCall:
      return v1::KIND_CALL;
    case Pattern::kFanout:
      return v1::KIND_FANOUT;
    case Pattern::kNotify:
      return v1::KIND_NOTIFY;
    case Pattern::kCast:
      return v1::KIND_CAST;
  }
  return v1::KIND_UNSPECIFIED;
}

// A name from the network as it may appear in a log line: at most kMaxLoggedName bytes (headers
// can carry long names; logs carry names, sizes and reasons, never payloads).
constexpr size_t kMaxLoggedName = 128;
std::string Loggable(absl::string_view name) {
  if (name.size() <= kMaxLoggedName) return std::string(name);
  return absl::StrCat(name.substr(0, kMaxLoggedName), "...(", name.size(), " bytes)");
}

DropReason ReasonOf(const wire::Decoded& decoded) {
  if (decoded.status == v1::STATUS_TOO_LARGE) return DropReason::kTooLarge;
  if (absl::StartsWith(decoded.detail, "unsupported envelope version")) {
    return DropReason::kBadVersion;
  }
  if (absl::StartsWith(decoded.detail, "unknown message kind")) return DropReason::kBadKind;
  return DropReason::kBadHeader;
}

}  // namespace

absl::string_view PatternName(Pattern pattern) {
  switch (pattern) {
    case Pattern::kCall:
      return "call";
    case Pattern::kFanout:
      return "fanout";
    case Pattern::kNotify:
      return "notify";
    case Pattern::kCast:
      return "cast";
  }
  return "unknown";
}

absl::string_view DropReasonName(DropReason reason) {
  switch (reason) {
    case DropReason::kBadFrameCount:
      return "bad_frame_count";
    case DropReason::kBadHeader:
      return "bad_header";
    case DropReason::kBadVersion:
      return "bad_version";
    case DropReason::kBadKind:
      return "bad_kind";
    case DropReason::kTooLarge:
      return "too_large";
    case DropReason::kNoSuchTarget:
      return "no_such_target";
    case DropReason::kOverloaded:
      return "overloaded";
    case DropReason::kRouteGone:
      return "route_gone";
    case DropReason::kSendFailed:
      return "send_failed";
  }
  return "unknown";
}

// The pipeline thread's state: the sockets' loop and what it keeps between messages.
class Pipeline::Loop {
 public:
  explicit Loop(Pipeline& pipeline)
      : p_(pipeline), request_kind_(RequestKind(pipeline.options_.pattern)) {}

  // Handles one message from the network; false when none was ready, or while a request is
  // stalled (the network is not read until it is delivered).
  bool FromNetwork() {
    if (stalled_.active) return false;
    if (!Receive(p_.network_, &in_)) return false;
    p_.stats_.received.fetch_add(1, std::memory_order_relaxed);
    int64_t bytes = 0;
    for (size_t i = 1; i < in_.count; ++i) bytes += static_cast<int64_t>(in_.frames[i].size());
    p_.stats_.received_bytes.fetch_add(bytes, std::memory_order_relaxed);
    // [route][header][payload]
    if (in_.count < 2) {
      Drop(DropReason::kBadFrameCount, "a message without a header frame");
      return true;
    }
    const bool frame_count_ok = in_.count == 3 && !in_.too_many;
    const int64_t payload_bytes = in_.count >= 3 ? static_cast<int64_t>(in_.frames[2].size()) : 0;
    wire::Decoded decoded =
        wire::DecodeHeader(AsView(in_.frames[1]), payload_bytes, p_.options_.max_payload_bytes);
    if (!frame_count_ok) {
      Refuse(decoded, DropReason::kBadFrameCount, v1::STATUS_BAD_MESSAGE,
             absl::StrCat("expected [header][payload], got ", in_.count - 1,
                          in_.too_many ? "+" : "", " frame(s)"));
      return true;
    }
    if (!decoded.ok()) {
      Refuse(decoded, ReasonOf(decoded), decoded.status, decoded.detail);
      return true;
    }
    const v1::Header& header = decoded.header;
    if (header.kind() != request_kind_) {
      Refuse(decoded, DropReason::kBadKind, v1::STATUS_BAD_MESSAGE,
             absl::StrCat(wire::KindName(header.kind()), " is not accepted on the ",
                          PatternName(p_.options_.pattern), " port"));
      return true;
    }
    const v1::Target& target = header.target();
    const bool fanout = p_.options_.pattern == Pattern::kFanout;
    const LocalTable::Instances* instances = InstancesFor(target);
    if (instances == nullptr && fanout) {
      // A FANOUT is never answered except for a bad message (docs/wire-protocol.md).
      Drop(DropReason::kNoSuchTarget,
           absl::StrCat("FANOUT for ", Loggable(target.exchange()), "/", Loggable(target.topic()),
                        " with no local instance"));
      return true;
    }
    if (instances == nullptr) {
      Refuse(decoded, DropReason::kNoSuchTarget, v1::STATUS_NO_SUCH_TARGET,
             absl::StrCat("no local instance serves ", Loggable(target.exchange()), "/",
                          Loggable(target.topic()), fanout ? "" : "/",
                          fanout ? "" : Loggable(target.server())));
      return true;
    }
    if (fanout) {
      DeliverToAll(decoded, *instances);
      return true;
    }
    zmq::message_t* request[] = {&in_.frames[0], &in_.frames[1], &in_.frames[2]};
    const int err = DeliverToOne(*instances, request);
    if (err == EAGAIN) {
      Stall(decoded, {});
    } else if (err != 0) {
      Refuse(decoded, DropReason::kNoSuchTarget, v1::STATUS_NO_SUCH_TARGET,
             "the local instances serving the target are gone");
    }
    return true;
  }

  bool stalled() const { return stalled_.active; }

  // Tries the stalled request again (the instances' queues may have room now, or the
  // instances may be gone). True when nothing is stalled any more.
  bool RetryStalled() {
    if (!stalled_.active) return true;
    const int64_t now_ms = absl::ToUnixMillis(absl::Now());
    if (p_.options_.pattern == Pattern::kFanout) {
      while (!stalled_.remaining.empty()) {
        const int err = SendCopy(stalled_.remaining.back(), stalled_.frames);
        if (err == EAGAIN) return ReportLongStall(now_ms);
        if (err == 0) {
          CountDelivered(stalled_.frames[1].size() + stalled_.frames[2].size());
        } else {
          Drop(DropReason::kNoSuchTarget, "a FANOUT copy for a local instance that is gone");
        }
        stalled_.remaining.pop_back();
      }
    } else {
      const LocalTable::Instances* instances = InstancesFor(stalled_.decoded.header.target());
      zmq::message_t* request[] = {&stalled_.frames[0], &stalled_.frames[1], &stalled_.frames[2]};
      const int err = instances == nullptr ? EHOSTUNREACH : DeliverToOne(*instances, request);
      if (err == EAGAIN) return ReportLongStall(now_ms);
      if (err != 0) {
        RefuseTo(stalled_.frames[0], stalled_.decoded, DropReason::kNoSuchTarget,
                 v1::STATUS_NO_SUCH_TARGET, "the local instances serving the target are gone");
      }
    }
    if (stalled_.reported) {
      ZLOG_INFO("%s pipeline: local queue drained after %d ms; reading the network again",
                PatternName(p_.options_.pattern), now_ms - stalled_.since_ms);
    }
    stalled_.active = false;
    p_.stats_.stalled_now.store(0, std::memory_order_relaxed);
    return true;
  }

  // Handles one message from a local instance; false when none was ready.
  bool FromLocal() {
    if (!Receive(p_.local_, &in_)) return false;
    // [instance][header][payload] (ATTACH) or [instance][route][header][payload] (answers).
    if (in_.too_many || in_.count < 3) {
      Drop(DropReason::kBadFrameCount, "a local message with a wrong number of frames");
      return true;
    }
    if (in_.count == 3) {
      wire::Decoded decoded =
          wire::DecodeHeader(AsView(in_.frames[1]), static_cast<int64_t>(in_.frames[2].size()),
                             p_.options_.max_payload_bytes);
      if (!decoded.ok() || decoded.header.kind() != v1::KIND_ATTACH) {
        Drop(decoded.ok() ? DropReason::kBadKind : ReasonOf(decoded),
             "a local message that is not ATTACH");
        return true;
      }
      v1::Header attached;
      attached.set_kind(v1::KIND_ATTACHED);
      attached.set_node(p_.options_.node_name);
      zmq::message_t header(wire::EncodeHeader(attached));
      zmq::message_t empty;
      zmq::message_t* out[] = {&in_.frames[0], &header, &empty};
      if (Send(p_.local_, out, 3) != 0) Drop(DropReason::kSendFailed, "ATTACHED not sent");
      return true;
    }
    wire::Decoded decoded =
        wire::DecodeHeader(AsView(in_.frames[2]), static_cast<int64_t>(in_.frames[3].size()),
                           p_.options_.max_payload_bytes);
    if (!decoded.ok()) {
      Drop(ReasonOf(decoded), absl::StrCat("local answer: ", decoded.detail));
      return true;
    }
    const v1::Kind kind = decoded.header.kind();
    const bool answer_ok = (p_.options_.pattern == Pattern::kCall &&
                            (kind == v1::KIND_REPLY || kind == v1::KIND_HEARTBEAT)) ||
                           (p_.options_.pattern != Pattern::kCall && kind == v1::KIND_ACK);
    if (!answer_ok) {
      Drop(DropReason::kBadKind, absl::StrCat("local ", wire::KindName(kind), " on the ",
                                              PatternName(p_.options_.pattern), " socket"));
      return true;
    }
    zmq::message_t* out[] = {&in_.frames[1], &in_.frames[2], &in_.frames[3]};
    const auto answer_bytes = static_cast<int64_t>(in_.frames[2].size() + in_.frames[3].size());
    const int err = Send(p_.network_, out, 3);
    if (err == 0) {
      p_.stats_.answers.fetch_add(1, std::memory_order_relaxed);
      p_.stats_.answer_bytes.fetch_add(answer_bytes, std::memory_order_relaxed);
    } else if (err == EHOSTUNREACH) {
      Drop(DropReason::kRouteGone, "an answer for a caller whose connection is gone");
    } else if (err == EAGAIN) {
      Drop(DropReason::kOverloaded, "an answer for a caller whose queue is full");
    } else {
      Drop(DropReason::kSendFailed, absl::StrCat("answer not sent: ", zmq_strerror(err)));
    }
    return true;
  }

 private:
  // The local instances for a request's target (nullptr when none), from the latest table.
  const LocalTable::Instances* InstancesFor(const v1::Target& target) {
    p_.table_.Refresh(&table_, &generation_);
    const bool fanout = p_.options_.pattern == Pattern::kFanout;
    TargetKey(target.exchange(), target.topic(), fanout ? "" : target.server(), &key_);
    switch (p_.options_.pattern) {
      case Pattern::kCall:
      case Pattern::kCast:
        return table_->RpcServers(key_);
      case Pattern::kFanout:
        return table_->FanoutMembers(key_);
      case Pattern::kNotify:
        return table_->Listeners(key_);
    }
    return nullptr;
  }

  // Hands [route][header][payload] to one of the instances, round-robin, skipping those gone or
  // full. 0 when delivered (the frames are consumed); EAGAIN when every live one is full;
  // EHOSTUNREACH when all are gone.
  int DeliverToOne(const LocalTable::Instances& instances, zmq::message_t* const* request) {
    const size_t count = instances.size();
    const size_t first = count == 1 ? 0 : rr_.Next(key_, count);
    const size_t bytes = request[1]->size() + request[2]->size();  // before the send takes them
    bool full = false;
    for (size_t i = 0; i < count; ++i) {
      const std::string& instance = instances[(first + i) % count];
      zmq::message_t id(instance.data(), instance.size());
      zmq::message_t* out[] = {&id, request[0], request[1], request[2]};
      const int err = Send(p_.local_, out, 4);
      if (err == 0) {
        CountDelivered(bytes);
        return 0;
      }
      if (err == EAGAIN) full = true;
    }
    return full ? EAGAIN : EHOSTUNREACH;
  }

  // Sends a copy of [route][header][payload] to one instance; 0 or the errno.
  int SendCopy(const std::string& instance, std::array<zmq::message_t, 3>& request) {
    zmq::message_t id(instance.data(), instance.size());
    zmq::message_t route;
    zmq::message_t header;
    zmq::message_t payload;
    route.copy(request[0]);
    header.copy(request[1]);
    payload.copy(request[2]);  // shares large payloads (reference counted)
    zmq::message_t* out[] = {&id, &route, &header, &payload};
    return Send(p_.local_, out, 4);
  }

  void DeliverToAll(const wire::Decoded& decoded, const LocalTable::Instances& instances) {
    std::array<zmq::message_t, 3> request;
    for (size_t i = 0; i < 3; ++i) request[i].move(in_.frames[i]);
    for (size_t i = 0; i < instances.size(); ++i) {
      const int err = SendCopy(instances[i], request);
      if (err == 0) {
        CountDelivered(request[1].size() + request[2].size());
      } else if (err == EAGAIN) {
        // The rest (this one included) once there is room; kept in reverse for pop_back.
        std::vector<std::string> rest(instances.rbegin(), instances.rend() - i);
        for (size_t f = 0; f < 3; ++f) in_.frames[f].move(request[f]);
        Stall(decoded, std::move(rest));
        return;
      } else {
        Drop(DropReason::kNoSuchTarget, "a FANOUT copy for a local instance that is gone");
      }
    }
  }

  // Keeps the request in in_ (and, for FANOUT, the instances still to serve) until the local
  // queues have room: the network is not read meanwhile, so ZeroMQ's queues and TCP push back
  // on the senders instead of the proxy dropping what they sent.
  void Stall(const wire::Decoded& decoded, std::vector<std::string> remaining) {
    stalled_.active = true;
    for (size_t i = 0; i < 3; ++i) stalled_.frames[i].move(in_.frames[i]);
    stalled_.decoded = decoded;
    stalled_.remaining = std::move(remaining);
    stalled_.since_ms = absl::ToUnixMillis(absl::Now());
    stalled_.reported = false;
    p_.stats_.stalls.fetch_add(1, std::memory_order_relaxed);
    p_.stats_.stalled_now.store(1, std::memory_order_relaxed);
  }

  // One copy of a request handed to a local instance (header and payload `bytes`).
  void CountDelivered(size_t bytes) {
    p_.stats_.delivered.fetch_add(1, std::memory_order_relaxed);
    p_.stats_.delivered_bytes.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed);
  }

  // Still stalled: says so once when it lasts (a local instance stopped reading). Returns false.
  bool ReportLongStall(int64_t now_ms) {
    if (!stalled_.reported && now_ms - stalled_.since_ms >= kLongStallMs) {
      stalled_.reported = true;
      ZLOG_WARNING(
          "%s pipeline: a local instance's queue has been full for %d ms; not reading the "
          "network until it drains",
          PatternName(p_.options_.pattern), now_ms - stalled_.since_ms);
    }
    return false;
  }

  // Answers a request the proxy could not deliver (when it can be answered), and counts it.
  void Refuse(const wire::Decoded& decoded, DropReason reason, v1::Status status,
              const std::string& detail) {
    RefuseTo(in_.frames[0], decoded, reason, status, detail);
  }
  void RefuseTo(zmq::message_t& route, const wire::Decoded& decoded, DropReason reason,
                v1::Status status, const std::string& detail) {
    Drop(reason, detail);
    if (!decoded.header_readable) return;
    const v1::Kind kind = decoded.header.kind();
    const bool answerable = kind == v1::KIND_CALL || kind == v1::KIND_CAST ||
                            kind == v1::KIND_FANOUT || kind == v1::KIND_NOTIFY;
    if (!answerable) return;
    v1::Header refusal;
    refusal.set_kind(p_.options_.pattern == Pattern::kCall ? v1::KIND_REPLY : v1::KIND_ACK);
    refusal.set_message_id(decoded.header.message_id());
    refusal.set_sender(decoded.header.sender());
    *refusal.mutable_target() = decoded.header.target();
    refusal.set_status(status);
    refusal.set_detail(detail);
    refusal.set_node(p_.options_.node_name);
    zmq::message_t header(wire::EncodeHeader(std::move(refusal)));
    zmq::message_t empty;
    zmq::message_t* out[] = {&route, &header, &empty};
    const int err = Send(p_.network_, out, 3);
    if (err == 0) {
      p_.stats_.refused.fetch_add(1, std::memory_order_relaxed);
    } else {
      p_.stats_.Count(DropReason::kRouteGone);
    }
  }

  // Counts a drop and logs it, at most once a second per reason.
  void Drop(DropReason reason, absl::string_view detail) {
    p_.stats_.Count(reason);
    const int r = static_cast<int>(reason);
    const int64_t now_ms = absl::ToUnixMillis(absl::Now());
    if (now_ms - last_log_ms_[r] < kLogIntervalMs) {
      ++suppressed_[r];
      return;
    }
    last_log_ms_[r] = now_ms;
    ZLOG_WARNING("%s pipeline: not delivered (%s): %s%s", PatternName(p_.options_.pattern),
                 DropReasonName(reason), detail,
                 suppressed_[r] > 0 ? absl::StrCat(" (and ", suppressed_[r], " more since)") : "");
    suppressed_[r] = 0;
  }

  // A request the local instance(s) could not take yet (queues full).
  struct Stalled {
    bool active = false;
    std::array<zmq::message_t, 3> frames;  // [route][header][payload]
    wire::Decoded decoded;
    std::vector<std::string> remaining;  // FANOUT: instances still to get a copy (last first)
    int64_t since_ms = 0;                // wall clock, for the log line
    bool reported = false;               // the long-stall warning was logged
  };

  Pipeline& p_;
  const v1::Kind request_kind_;
  Received in_;
  Stalled stalled_;
  std::shared_ptr<const LocalTable> table_;
  uint64_t generation_ = 0;
  RoundRobin rr_;
  std::string key_;  // reused for every lookup
  std::array<int64_t, kDropReasonCount> last_log_ms_{};
  std::array<int64_t, kDropReasonCount> suppressed_{};
};

absl::StatusOr<std::unique_ptr<Pipeline>> Pipeline::Create(zmq::context_t& context,
                                                           PipelineOptions options,
                                                           const LocalTableHolder& table,
                                                           PipelineStats& stats) {
  std::unique_ptr<Pipeline> pipeline(new Pipeline(context, std::move(options), table, stats));
  const PipelineOptions& o = pipeline->options_;
  absl::Status configured = wire::ConfigureSocket(
      pipeline->network_, wire::SocketRole::kNetworkListener, o.max_payload_bytes);
  if (configured.ok()) {
    configured = wire::ConfigureSocket(pipeline->local_, wire::SocketRole::kLocalListener,
                                       o.max_payload_bytes);
  }
  if (!configured.ok()) return configured;
  try {
    // A reconnecting instance keeps its routing id: let it take over its old pipe.
    pipeline->local_.set(zmq::sockopt::router_handover, 1);
    pipeline->network_.bind(o.tcp_endpoint);
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(absl::StrCat("binding ", o.tcp_endpoint, ": ", e.what()));
  }
  try {
    pipeline->local_.bind(o.ipc_endpoint);
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(absl::StrCat("binding ", o.ipc_endpoint, ": ", e.what()));
  }
  absl::StatusOr<int> port = wire::BoundPort(pipeline->network_);
  if (!port.ok()) return port.status();
  pipeline->port_ = *port;
  // Connections come and go inside ZeroMQ; its socket monitor is the only way to count them.
  const std::string monitor_endpoint =
      absl::StrCat("inproc://zmesh-monitor-", PatternName(o.pattern), "-",
                   reinterpret_cast<uintptr_t>(pipeline.get()));
  if (zmq_socket_monitor(pipeline->network_.handle(), monitor_endpoint.c_str(),
                         ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0) {
    return absl::InternalError(
        absl::StrCat("monitoring ", o.tcp_endpoint, ": ", zmq_strerror(zmq_errno())));
  }
  try {
    pipeline->monitor_.set(zmq::sockopt::linger, 0);
    pipeline->monitor_.connect(monitor_endpoint);
  } catch (const zmq::error_t& e) {
    return absl::InternalError(absl::StrCat("monitoring ", o.tcp_endpoint, ": ", e.what()));
  }
  pipeline->stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (pipeline->stop_fd_ < 0) return absl::InternalError("eventfd failed");
  return pipeline;
}

Pipeline::Pipeline(zmq::context_t& context, PipelineOptions options, const LocalTableHolder& table,
                   PipelineStats& stats)
    : options_(std::move(options)),
      table_(table),
      stats_(stats),
      network_(context, zmq::socket_type::router),
      local_(context, zmq::socket_type::router),
      monitor_(context, zmq::socket_type::pair) {}

Pipeline::~Pipeline() {
  Stop();
  if (stop_fd_ >= 0) close(stop_fd_);
}

void Pipeline::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Pipeline::Stop() {
  if (stop_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof(one));
  }
  if (thread_.joinable()) thread_.join();
  if (network_.handle() != nullptr) zmq_socket_monitor(network_.handle(), nullptr, 0);
  monitor_.close();
  network_.close();
  local_.close();
}

void Pipeline::Run() {
  Loop loop(*this);
  zmq_pollitem_t items[] = {
      {network_.handle(), 0, ZMQ_POLLIN, 0},
      {local_.handle(), 0, ZMQ_POLLIN, 0},
      {nullptr, stop_fd_, ZMQ_POLLIN, 0},
      {monitor_.handle(), 0, ZMQ_POLLIN, 0},
  };
  while (true) {
    // While a request is stalled the network is not read; its delivery is retried every
    // kStallRetryMs (a ROUTER does not say which peer has room again).
    items[0].events = loop.stalled() ? 0 : ZMQ_POLLIN;
    if (zmq_poll(items, 4, loop.stalled() ? kStallRetryMs : -1) < 0) {
      if (zmq_errno() == EINTR) continue;
      ZLOG_ERROR("%s pipeline: zmq_poll: %s", PatternName(options_.pattern),
                 zmq_strerror(zmq_errno()));
      return;
    }
    if (items[2].revents & ZMQ_POLLIN) return;
    if (items[3].revents & ZMQ_POLLIN) CountConnections();
    // Answers first: they finish work already under way.
    for (int i = 0; i < kBatch && loop.FromLocal(); ++i) {
    }
    loop.RetryStalled();
    for (int i = 0; i < kBatch && loop.FromNetwork(); ++i) {
    }
  }
}

void Pipeline::CountConnections() {
  while (true) {
    // [uint16 event, uint32 value][endpoint]
    zmq::message_t event;
    zmq::message_t endpoint;
    if (zmq_msg_recv(event.handle(), monitor_.handle(), ZMQ_DONTWAIT) < 0) return;
    if (event.more() && zmq_msg_recv(endpoint.handle(), monitor_.handle(), 0) < 0) return;
    if (event.size() < sizeof(uint16_t)) continue;
    uint16_t id = 0;
    std::memcpy(&id, event.data(), sizeof(id));
    if (id == ZMQ_EVENT_ACCEPTED) {
      stats_.peers.fetch_add(1, std::memory_order_relaxed);
    } else if (id == ZMQ_EVENT_DISCONNECTED && stats_.peers.load(std::memory_order_relaxed) > 0) {
      stats_.peers.fetch_sub(1, std::memory_order_relaxed);
    }
  }
}

}  // namespace zmesh::proxy
