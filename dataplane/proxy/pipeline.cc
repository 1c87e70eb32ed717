#include "dataplane/proxy/pipeline.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <utility>

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

  // Handles one message from the network; false when none was ready.
  bool FromNetwork() {
    if (!Receive(p_.network_, &in_)) return false;
    p_.stats_.received.fetch_add(1, std::memory_order_relaxed);
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
    p_.table_.Refresh(&table_, &generation_);
    const v1::Target& target = header.target();
    const bool fanout = p_.options_.pattern == Pattern::kFanout;
    TargetKey(target.exchange(), target.topic(), fanout ? "" : target.server(), &key_);
    const LocalTable::Instances* instances = nullptr;
    switch (p_.options_.pattern) {
      case Pattern::kCall:
      case Pattern::kCast:
        instances = table_->RpcServers(key_);
        break;
      case Pattern::kFanout:
        instances = table_->FanoutMembers(key_);
        break;
      case Pattern::kNotify:
        instances = table_->Listeners(key_);
        break;
    }
    if (instances == nullptr && fanout) {
      // A FANOUT is never answered except for a bad message (docs/wire-protocol.md).
      Drop(DropReason::kNoSuchTarget, absl::StrCat("FANOUT for ", target.exchange(), "/",
                                                   target.topic(), " with no local instance"));
      return true;
    }
    if (instances == nullptr) {
      Refuse(decoded, DropReason::kNoSuchTarget, v1::STATUS_NO_SUCH_TARGET,
             absl::StrCat("no local instance serves ", target.exchange(), "/", target.topic(),
                          fanout ? "" : "/", fanout ? "" : target.server()));
      return true;
    }
    if (fanout) {
      DeliverToAll(*instances);
      return true;
    }
    DeliverToOne(decoded, *instances);
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
    const int err = Send(p_.network_, out, 3);
    if (err == 0) {
      p_.stats_.answers.fetch_add(1, std::memory_order_relaxed);
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
  void DeliverToOne(const wire::Decoded& decoded, const LocalTable::Instances& instances) {
    const size_t count = instances.size();
    const size_t first = count == 1 ? 0 : rr_.Next(key_, count);
    bool overloaded = false;
    for (size_t i = 0; i < count; ++i) {
      const std::string& instance = instances[(first + i) % count];
      zmq::message_t id(instance.data(), instance.size());
      zmq::message_t* out[] = {&id, &in_.frames[0], &in_.frames[1], &in_.frames[2]};
      const int err = Send(p_.local_, out, 4);
      if (err == 0) {
        p_.stats_.delivered.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      if (err == EAGAIN) overloaded = true;
    }
    if (overloaded) {
      Refuse(decoded, DropReason::kOverloaded, v1::STATUS_OVERLOADED,
             "the local instances' queues are full");
    } else {
      Refuse(decoded, DropReason::kNoSuchTarget, v1::STATUS_NO_SUCH_TARGET,
             "the local instances serving the target are gone");
    }
  }

  void DeliverToAll(const LocalTable::Instances& instances) {
    for (const std::string& instance : instances) {
      zmq::message_t id(instance.data(), instance.size());
      zmq::message_t route;
      zmq::message_t header;
      zmq::message_t payload;
      route.copy(in_.frames[0]);
      header.copy(in_.frames[1]);
      payload.copy(in_.frames[2]);  // shares large payloads (reference counted)
      zmq::message_t* out[] = {&id, &route, &header, &payload};
      const int err = Send(p_.local_, out, 4);
      if (err == 0) {
        p_.stats_.delivered.fetch_add(1, std::memory_order_relaxed);
      } else {
        Drop(err == EAGAIN ? DropReason::kOverloaded : DropReason::kNoSuchTarget,
             "a FANOUT copy for a local instance that is gone or full");
      }
    }
  }

  // Answers a request the proxy could not deliver (when it can be answered), and counts it.
  void Refuse(const wire::Decoded& decoded, DropReason reason, v1::Status status,
              const std::string& detail) {
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
    zmq::message_t* out[] = {&in_.frames[0], &header, &empty};
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

  Pipeline& p_;
  const v1::Kind request_kind_;
  Received in_;
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
      local_(context, zmq::socket_type::router) {}

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
  network_.close();
  local_.close();
}

void Pipeline::Run() {
  Loop loop(*this);
  zmq_pollitem_t items[] = {
      {network_.handle(), 0, ZMQ_POLLIN, 0},
      {local_.handle(), 0, ZMQ_POLLIN, 0},
      {nullptr, stop_fd_, ZMQ_POLLIN, 0},
  };
  while (true) {
    if (zmq_poll(items, 3, -1) < 0) {
      if (zmq_errno() == EINTR) continue;
      ZLOG_ERROR("%s pipeline: zmq_poll: %s", PatternName(options_.pattern),
                 zmq_strerror(zmq_errno()));
      return;
    }
    if (items[2].revents & ZMQ_POLLIN) return;
    // Answers first: they finish work already under way.
    for (int i = 0; i < kBatch && loop.FromLocal(); ++i) {
    }
    for (int i = 0; i < kBatch && loop.FromNetwork(); ++i) {
    }
  }
}

}  // namespace zmesh::proxy
