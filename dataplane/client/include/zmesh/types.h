// Vocabulary of libzmesh: targets, options and results shared by Transport, Server and
// NotificationListener. See DESIGN.md ("Vocabulary") for the semantics each pattern promises.
#pragma once

#include <cstdint>
#include <string>

namespace zmesh {

// Exchange used when a target leaves it empty.
inline constexpr char kDefaultExchange[] = "openstack";
// Largest payload libzmesh sends or accepts, in bytes (16 MiB), unless TransportOptions lowers it
// or the local proxy announces a lower limit.
inline constexpr int64_t kMaxPayloadBytes = 16 * 1024 * 1024;

// (exchange, topic, server). Empty exchange means kDefaultExchange. Empty server means "the topic
// group": CALL and CAST pick one server of the group round-robin. Names are at most 255 bytes and
// contain no control characters (as in the directory).
struct Target {
  std::string exchange;
  std::string topic;
  std::string server;
};

// Notification address: listeners of topic "<topic>.<priority>" in `exchange`.
struct NotifyTarget {
  std::string exchange;
  std::string topic;
  std::string priority;  // e.g. "info", "error"; required
};

struct CallOptions {
  // Overall deadline, in milliseconds (> 0). DEADLINE_EXCEEDED after it.
  int64_t timeout_ms = 60000;
  // When > 0: the call fails with DEADLINE_EXCEEDED as soon as this long passes without a reply
  // or a heartbeat from the server (servers send heartbeats while the handler runs).
  int64_t call_monitor_timeout_ms = 0;
  // Fail at once with NOT_FOUND when the directory knows no server for the target, instead of
  // waiting for one to appear until the deadline.
  bool at_least_once = false;
};

struct CastOptions {
  // Wait for the server's acknowledgement (sent once its handler ran). An unacknowledged cast is
  // resent, with the same message id, to the next member of the group (or the same server when
  // a server name is given) every ack_timeout_ms, until timeout_ms; servers suppress duplicates.
  bool acknowledged = false;
  int64_t ack_timeout_ms = 1000;
  // How long Cast may wait: for a target to exist (when none is known), for room in the send
  // queue, and with `acknowledged` for the acknowledgement. DEADLINE_EXCEEDED after it.
  int64_t timeout_ms = 30000;
};

// What a CALL returned. A handler's error (Responder::Fail) is not a failed call: the call
// succeeds with remote_error = true and the error in payload, for the caller to decode.
struct CallResult {
  std::string payload;
  bool remote_error = false;
};

// Counters of one Transport (monotonic since Create).
struct TransportStats {
  int64_t calls_sent = 0;
  int64_t calls_retried = 0;     // resent to another member after a refusal or lost peer
  int64_t casts_sent = 0;
  int64_t casts_retried = 0;     // acknowledged casts resent after no ack in time
  int64_t fanouts_sent = 0;      // one per node reached
  int64_t notifications_sent = 0;
  int64_t requests_handled = 0;  // CALLs run by this transport's servers
  int64_t messages_delivered = 0;  // CAST/FANOUT/NOTIFY handed to handlers
  int64_t duplicates_dropped = 0;  // retried casts already handled
  int64_t lookups_from_proxy = 0;  // lookups that went to the proxy (cache misses)
  int64_t proxy_reconnects = 0;    // times the proxy restarted and the instance said hello again
};

}  // namespace zmesh
