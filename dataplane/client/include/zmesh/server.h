// Server: an RPC server on a target (exchange, topic, server name). It receives the CALLs,
// CASTs and FANOUTs sent to that target and runs a handler for each on a worker pool.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "zmesh/transport.h"
#include "zmesh/types.h"

namespace zmesh {

enum class MessageKind { kCall, kCast, kFanout, kNotify };

// One incoming message.
struct Request {
  MessageKind kind = MessageKind::kCall;
  Target target;            // as addressed (for a group call, the chosen member's server name)
  std::string payload;
  std::string sender;       // instance id of the sender
  uint64_t message_id = 0;  // unique per sender
};

// How a CALL handler answers. Exactly one of Reply/Fail takes effect; later ones are ignored.
// A handler that returns without answering replies with an empty payload. Heartbeats are sent
// automatically while the handler runs when the caller asked for call monitoring; Heartbeat()
// sends one now (e.g. from a long loop). Safe to use from any thread while the handler runs;
// a no-op for casts and fanouts.
class Responder {
 public:
  virtual ~Responder() = default;
  virtual void Reply(std::string payload) = 0;
  // The caller gets CallResult{payload = error, remote_error = true}.
  virtual void Fail(std::string error) = 0;
  virtual void Heartbeat() = 0;
};

using Handler = std::function<void(const Request& request, Responder& responder)>;

struct ServerOptions {
  // Worker threads running handlers (>= 1). A handler busy for long holds one worker.
  int threads = 4;
  // Acknowledged casts already handled are remembered (by sender and message id) to drop
  // duplicates: this many, most recent first.
  int64_t dedup_window = 100000;
};

// Thread-safe. Stop() (or destruction) withdraws the target, waits for running handlers and
// stops; calls that arrive after it are refused, so callers fail over to other members.
class Server {
 public:
  // Announces the target to the proxy and returns once the directory has it (or the proxy holds
  // it until the directory is back: then OK too, and the server is reachable by whoever already
  // knows it). INVALID_ARGUMENT for an empty topic or server name, or threads < 1.
  // `transport` must outlive the Server.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Server>> Start(
      Transport& transport, Target target, Handler handler, ServerOptions options = {});

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server();  // Stop()

  void Stop();
  const Target& target() const { return target_; }

  class Impl;

 private:
  Server(Target target, std::unique_ptr<Impl> impl);
  Target target_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zmesh
