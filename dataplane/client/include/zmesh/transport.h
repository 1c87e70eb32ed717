// Transport: a process's connection to its node's zmesh-proxy, and the client side of every
// pattern (CALL, CAST, FANOUT, NOTIFY). Servers and listeners (server.h,
// notification_listener.h) run on a Transport too.
//
//   auto transport = zmesh::Transport::Create({.ipc_dir = "/run/zmesh"});
//   absl::StatusOr<zmesh::CallResult> r =
//       (*transport)->Call({.topic = "compute", .server = "node-1"}, "payload", {});
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "zmesh/types.h"

namespace zmesh {

namespace internal {
class Engine;
}  // namespace internal

struct TransportOptions {
  // Directory holding the proxy's IPC sockets (control.sock, call.sock, ...).
  std::string ipc_dir = "/run/zmesh";
  // Free text shown in the proxy's logs for this instance.
  std::string description;
  // How long Create waits for the proxy to answer (UNAVAILABLE after it).
  int64_t connect_timeout_ms = 5000;
  // Largest payload sent or accepted (bytes); the proxy's announced limit wins when lower.
  int64_t max_payload_bytes = kMaxPayloadBytes;
  // Bound of the messages waiting for a peer connection, per node (send queue). Cast and Notify
  // wait for room (up to their timeout) when it is full.
  int64_t max_queued_per_node = 10000;
  // How long a TCP connect to a node may take before the node counts as down (1 ms to 2^30 ms;
  // INVALID_ARGUMENT otherwise); a connection that is made but never completes its ZeroMQ
  // handshake counts as down after twice this time. A node whose address does not answer (a
  // dead or blackholed host still in the directory) then gets no group CALL/CAST/NOTIFY while
  // another member is up, and the group messages already queued for it are sent to another
  // member instead (nothing can have been delivered over a connection that never existed, so
  // nothing arrives twice). Messages to a specific server on it keep waiting for it until their
  // timeout. The node becomes eligible again once a connection to it completes its handshake.
  int64_t peer_connect_timeout_ms = 1000;
};

// Thread-safe: any thread may call any method concurrently. One background I/O thread owns every
// socket; calls hand work to it and wait (blocking forms), or return at once (async forms). A
// long call never holds up others. Callbacks of the async forms run on an internal callback
// thread, never on the caller's stack; they must not block for long.
//
// Resolution: the first send to a (exchange, topic) asks the proxy, which reads the directory
// (linearizable), so the message reaches every server registered before it was sent; after
// that the answer is cached in the Transport and kept fresh by the proxy's pushes, so steady
// state lookups are in-memory reads.
//
// When the proxy restarts, the Transport notices (pings), says hello again, re-announces its
// servers and listeners and refreshes its lookups, without help from the application.
class Transport {
 public:
  // Connects to the proxy at options.ipc_dir and waits for its welcome. UNAVAILABLE when no
  // proxy answers within connect_timeout_ms; INVALID_ARGUMENT for bad options.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Transport>> Create(
      TransportOptions options = {});

  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;
  // Close().
  ~Transport();

  // CALL: sends `payload` to one server of `target` and waits for its reply.
  //  - OK with CallResult (remote_error set when the handler failed).
  //  - DEADLINE_EXCEEDED at options.timeout_ms (or after call_monitor_timeout_ms without a
  //    heartbeat; the message says which). A call to a specific server that is gone times out
  //    at its deadline, never earlier.
  //  - NOT_FOUND at once with at_least_once when the directory knows no such server.
  //  - INVALID_ARGUMENT for a bad target, options or a payload over the limit.
  //  - UNAVAILABLE once the Transport is closed.
  // A group call refused by the chosen member (it went away) or whose node is lost before any
  // answer is resent to the next member.
  absl::StatusOr<CallResult> Call(const Target& target, std::string payload,
                                  const CallOptions& options = {});
  std::future<absl::StatusOr<CallResult>> CallAsync(const Target& target, std::string payload,
                                                    const CallOptions& options = {});
  void CallAsync(const Target& target, std::string payload, const CallOptions& options,
                 std::function<void(absl::StatusOr<CallResult>)> done);

  // CAST: one-way to one server of `target` (same selection as Call). Returns once the message
  // is queued, or with options.acknowledged once the server acked it. Queued: when the target is
  // already known to this Transport (an earlier send resolved it) and fewer than
  // max_queued_per_node one-way messages wait for a socket, at once (the I/O thread sends it;
  // a refusal by the chosen member resends it to the next one); otherwise once it is in a
  // peer's send queue. Errors: INVALID_ARGUMENT, DEADLINE_EXCEEDED (no target, no room or no
  // ack in time), UNAVAILABLE when closed.
  absl::Status Cast(const Target& target, std::string payload, const CastOptions& options = {});
  void CastAsync(const Target& target, std::string payload, const CastOptions& options,
                 std::function<void(absl::Status)> done);

  // FANOUT: one-way to every server of (exchange, topic) on every node (draining nodes
  // included). target.server must be empty. OK with no server at all (nothing to reach).
  // Returns once queued, as Cast does (at once for a known pair with room in the queue,
  // otherwise once a copy is in the send queue of every node).
  absl::Status Fanout(const Target& target, std::string payload);

  // NOTIFY: one copy to each pool of listeners of "<topic>.<priority>"; inside a pool one
  // listener, round-robin. OK with no listener (a notification nobody listens to is dropped,
  // as with a broker's unbound exchange).
  absl::Status Notify(const NotifyTarget& target, std::string payload);

  // Stops everything: servers and listeners on this transport stop receiving, pending calls
  // fail UNAVAILABLE, the proxy is told goodbye (it withdraws our targets at once). Idempotent.
  void Close();

  // Instance id (unique per process and Transport), as the proxy knows it.
  const std::string& instance_id() const;
  // Node name of the local proxy, from its welcome.
  std::string node_name() const;
  // The directory replicas (HOST:PORT) the local proxy uses, from its welcome: empty with a
  // proxy too old to say.
  std::vector<std::string> proxy_directory() const;
  TransportStats stats() const;

  // Internal: used by Server and NotificationListener.
  internal::Engine& engine() { return *engine_; }

 private:
  explicit Transport(std::unique_ptr<internal::Engine> engine);
  std::unique_ptr<internal::Engine> engine_;
};

}  // namespace zmesh
