// The measurement loops of zmesh-bench-dataplane, written once for both systems: a system (raw
// libzmq or zmesh) only supplies callers and senders behind the small interfaces below.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/dataplane/control.h"
#include "bench/dataplane/usage.h"

namespace zmesh::bench {

struct Timing {
  int64_t warmup_ms = 300;     // unmeasured traffic first (connections, lookups, caches)
  int64_t duration_ms = 2000;  // measured time of one case
};

// One caller: its own connection (raw) or a handle on a shared Transport (zmesh). Used by one
// thread at a time.
class Caller {
 public:
  virtual ~Caller() = default;
  // One round trip: sends `payload` and waits for the echo, which must be the same bytes.
  [[nodiscard]] virtual absl::Status Call(const std::string& payload) = 0;
};

// A way to reach an echo server.
class CallPath {
 public:
  virtual ~CallPath() = default;
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<Caller>> NewCaller() = 0;
};

// Sends one-way messages (cast, fanout) from the orchestrator's main thread. Not thread-safe.
class OneWaySender {
 public:
  virtual ~OneWaySender() = default;
  // Hands one message over; may block while queues are full (back-pressure).
  [[nodiscard]] virtual absl::Status Send(const std::string& payload) = 0;
};

struct CallStats {
  int callers = 0;
  int64_t calls = 0;                  // round trips started in the measured window (all completed)
  double seconds = 0;                 // from the window's start to the end of its last round trip
  std::vector<int64_t> latencies_ns;  // one per measured round trip, sorted
  std::string error;                  // empty when every round trip succeeded
  double calls_per_second() const { return seconds > 0 ? calls / seconds : 0; }
  // Latency at quantile q (0..1) in microseconds; 0 with no samples.
  double PercentileUs(double q) const;
};

// `callers` threads, each with its own Caller, make round trips back to back for
// timing.warmup_ms (not measured), then for timing.duration_ms (measured). The first failed
// round trip stops every thread and is reported in `error`. `meter` (optional) is started and
// stopped around the measured window.
CallStats RunCalls(CallPath& path, const std::string& payload, int callers, const Timing& timing,
                   UsageMeter* meter = nullptr);

struct OneWayStats {
  int64_t messages = 0;     // sent in the measured window, each delivered to every receiver
  double seconds = 0;       // from the first send to the last receiver's last delivery
  double send_seconds = 0;  // from the first send until the last send returned
  std::string error;        // a send failed, or a receiver got fewer or more than `messages`
  int64_t lost = 0;         // with such an error: messages a receiver never got
  int64_t lost_of = 0;      // ... of this many sent (warm-up or measured window)
  double per_second() const { return seconds > 0 ? messages / seconds : 0; }
  double sent_per_second() const { return send_seconds > 0 ? messages / send_seconds : 0; }
};

// Sends back to back for timing.warmup_ms, waits until every receiver has all of them, resets
// the counts, then sends back to back for timing.duration_ms and waits (up to
// `drain_timeout_ms`) until every receiver has got exactly that many. The clock runs from the
// first measured send to the latest receiver's last delivery; `meter` (optional) runs from the
// first measured send until every receiver had everything.
OneWayStats RunOneWay(OneWaySender& sender, const std::vector<ReceiverControl*>& receivers,
                      const std::string& payload, const Timing& timing, UsageMeter* meter = nullptr,
                      int64_t drain_timeout_ms = 60000);

}  // namespace zmesh::bench
