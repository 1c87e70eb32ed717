#include "dataplane/wire/sockets.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dataplane/wire/envelope.h"

namespace zmesh::wire {

absl::Status ConfigureSocket(zmq::socket_t& socket, SocketRole role, int64_t max_payload_bytes,
                             absl::string_view routing_id) {
  try {
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::sndhwm, kHighWaterMark);
    socket.set(zmq::sockopt::rcvhwm, kHighWaterMark);
    if (!routing_id.empty()) {
      socket.set(zmq::sockopt::routing_id, zmq::const_buffer(routing_id.data(), routing_id.size()));
    }
    const bool network = role == SocketRole::kNetworkListener || role == SocketRole::kNetworkPeer;
    if (network) {
      socket.set(zmq::sockopt::heartbeat_ivl, kHeartbeatIvlMs);
      socket.set(zmq::sockopt::heartbeat_timeout, kHeartbeatTimeoutMs);
      socket.set(zmq::sockopt::heartbeat_ttl, kHeartbeatTtlMs);
      socket.set(zmq::sockopt::tcp_keepalive, 1);
      socket.set(zmq::sockopt::tcp_keepalive_idle, 10);
      socket.set(zmq::sockopt::tcp_keepalive_intvl, 2);
      socket.set(zmq::sockopt::tcp_keepalive_cnt, 3);
    }
    if (role == SocketRole::kNetworkPeer || role == SocketRole::kLocalPeer) {
      socket.set(zmq::sockopt::reconnect_ivl, kReconnectIvlMs);
      socket.set(zmq::sockopt::reconnect_ivl_max, kReconnectIvlMaxMs);
    }
    if (role == SocketRole::kNetworkListener) {
      socket.set(zmq::sockopt::maxmsgsize, max_payload_bytes + kMaxHeaderBytes);
    }
    if (role == SocketRole::kNetworkListener || role == SocketRole::kLocalListener) {
      socket.set(zmq::sockopt::router_mandatory, 1);
    }
  } catch (const zmq::error_t& e) {
    return absl::InternalError(absl::StrCat("configuring a ZeroMQ socket: ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status SendFrames(zmq::socket_t& socket, const std::vector<zmq::const_buffer>& frames,
                        bool dont_wait) {
  for (size_t i = 0; i < frames.size(); ++i) {
    int flags = 0;
    if (i + 1 < frames.size()) flags |= ZMQ_SNDMORE;
    if (dont_wait) flags |= ZMQ_DONTWAIT;
    // The C API: cppzmq's send() throws on EHOSTUNREACH, which is a normal outcome here.
    if (zmq_send(socket.handle(), frames[i].data(), frames[i].size(), flags) >= 0) continue;
    const int err = zmq_errno();
    // A multipart message is atomic: failure can only happen on the first frame.
    if (err == EAGAIN) return absl::ResourceExhaustedError("send queue full");
    if (err == EHOSTUNREACH) return absl::NotFoundError("peer not connected");
    return absl::UnavailableError(absl::StrCat("zmq_send: ", zmq_strerror(err)));
  }
  return absl::OkStatus();
}

std::optional<std::vector<zmq::message_t>> ReceiveFrames(zmq::socket_t& socket) {
  std::vector<zmq::message_t> frames;
  while (true) {
    zmq::message_t frame;
    const int rc = zmq_msg_recv(frame.handle(), socket.handle(), ZMQ_DONTWAIT);
    if (rc < 0) {
      if (zmq_errno() == EAGAIN && frames.empty()) return std::nullopt;
      // EAGAIN in the middle cannot happen (multipart messages arrive whole); anything else is a
      // socket being closed.
      return std::vector<zmq::message_t>();
    }
    const bool more = frame.more();
    frames.push_back(std::move(frame));
    if (!more) return frames;
  }
}

absl::StatusOr<std::string> IpcEndpoint(absl::string_view dir, absl::string_view name) {
  std::string path = absl::StrCat(dir, "/", name, ".sock");
  if (path.size() > 107) {
    return absl::InvalidArgumentError(absl::StrCat("IPC path ", path, " is ", path.size(),
                                                   " bytes; a Unix socket path is at most 107"));
  }
  return absl::StrCat("ipc://", path);
}

std::string NewInstanceId() {
  static std::atomic<uint64_t> counter{0};
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "unknown");
  std::random_device rd;
  return absl::StrFormat("%s/%d/%d/%08x", host, static_cast<int>(getpid()),
                         counter.fetch_add(1) + 1, rd());
}

absl::StatusOr<int> BoundPort(zmq::socket_t& socket) {
  std::string endpoint;
  try {
    endpoint = socket.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return absl::InternalError(absl::StrCat("reading ZMQ_LAST_ENDPOINT: ", e.what()));
  }
  const size_t colon = endpoint.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(endpoint.substr(colon + 1), &port)) {
    return absl::InternalError(absl::StrCat("no port in endpoint ", endpoint));
  }
  return port;
}

}  // namespace zmesh::wire
