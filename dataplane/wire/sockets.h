// ZeroMQ socket setup shared by zmesh-proxy and libzmesh: the options of
// docs/wire-protocol.md ("Socket options"), multipart send/receive without exceptions, IPC
// endpoint names and instance ids. The only place besides the callers' own socket loops that
// touches cppzmq.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace zmesh::wire {

// Heartbeat and keepalive settings (milliseconds / seconds as ZeroMQ takes them).
inline constexpr int kHeartbeatIvlMs = 1000;
inline constexpr int kHeartbeatTimeoutMs = 3000;
inline constexpr int kHeartbeatTtlMs = 3000;
inline constexpr int kHighWaterMark = 10000;
inline constexpr int kReconnectIvlMs = 100;
inline constexpr int kReconnectIvlMaxMs = 1000;

enum class SocketRole {
  kNetworkListener,  // a proxy's TCP ROUTER (bound): MAXMSGSIZE, ROUTER_MANDATORY, heartbeats
  kNetworkPeer,      // an instance's DEALER to a remote proxy (connected): heartbeats, reconnect
  kLocalListener,    // a proxy's IPC ROUTER (bound): ROUTER_MANDATORY
  kLocalPeer,        // an instance's IPC DEALER (connected), routing id = instance id
};

// Applies the options for `role`. `max_payload_bytes` sets ZMQ_MAXMSGSIZE (payload + 64 KiB
// header slack) on listeners; `routing_id` is set when non-empty. Errors from ZeroMQ are
// returned, not thrown.
[[nodiscard]] absl::Status ConfigureSocket(zmq::socket_t& socket, SocketRole role,
                                           int64_t max_payload_bytes,
                                           absl::string_view routing_id = "");

// Sends the frames as one multipart message. With `dont_wait`, a full queue gives
// RESOURCE_EXHAUSTED (nothing sent). EHOSTUNREACH (ROUTER_MANDATORY, unknown peer) gives
// NOT_FOUND. Other ZeroMQ errors give UNAVAILABLE naming errno. Never throws.
[[nodiscard]] absl::Status SendFrames(zmq::socket_t& socket,
                                      const std::vector<zmq::const_buffer>& frames,
                                      bool dont_wait);

// Receives every frame of one multipart message without waiting; std::nullopt when none is
// ready. Never throws (a ZeroMQ error other than EAGAIN gives an empty vector).
std::optional<std::vector<zmq::message_t>> ReceiveFrames(zmq::socket_t& socket);

// "ipc://<dir>/<name>.sock". INVALID_ARGUMENT when the path is longer than a Unix socket
// path can be (107 bytes).
[[nodiscard]] absl::StatusOr<std::string> IpcEndpoint(absl::string_view dir,
                                                      absl::string_view name);

// A new instance id: "<hostname>/<pid>/<counter>/<8 random hex digits>" (unique per process
// and call; the random part tells apart processes that reuse a pid).
std::string NewInstanceId();

// Port a bound socket actually listens on (after binding to port 0), from ZMQ_LAST_ENDPOINT.
absl::StatusOr<int> BoundPort(zmq::socket_t& socket);

}  // namespace zmesh::wire
