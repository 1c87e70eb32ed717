// The benchmark's own side channel between the orchestrating process and a receiver process
// (a raw PULL sink or a zmesh server): the receiver counts deliveries, the orchestrator resets
// the count and waits, over a REQ/REP socket, until the receiver has every message it sent.
//
// Commands (one text frame each way):
//   "reset"               -> "ok"                      count = 0
//   "wait N TIMEOUT_MS"   -> "ok COUNT LAST_NS"        once COUNT >= N
//                          | "timeout COUNT LAST_NS"   when TIMEOUT_MS passed first
// LAST_NS is the CLOCK_MONOTONIC time (std::chrono::steady_clock, shared by every process on the
// host) of the latest delivery, so the orchestrator can stop its clock at the moment the receiver
// got the last message rather than when the answer reached it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <zmq.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace zmesh::bench {

// Now on std::chrono::steady_clock, in nanoseconds.
int64_t SteadyNowNs();

struct DeliveryCount {
  int64_t count = 0;
  int64_t last_ns = 0;  // steady clock time of the latest delivery; 0 when none
};

// Deliveries counted by a receiver. Thread-safe.
class DeliveryCounter {
 public:
  // One delivery, now.
  void Add();
  void Reset();
  // Waits until at least `n` deliveries were counted or `timeout_ms` passed; returns the count.
  DeliveryCount WaitFor(int64_t n, int64_t timeout_ms);

 private:
  absl::Mutex mu_;
  DeliveryCount count_ ABSL_GUARDED_BY(mu_);
};

// Receiver side: the REP socket bound on `endpoint`.
absl::StatusOr<zmq::socket_t> BindControl(zmq::context_t& context, const std::string& endpoint);
// Answers commands on `socket` (from BindControl) until its context is shut down (then OK) or a
// socket error (then the error). Blocks the calling thread, which owns the socket.
absl::Status ServeControl(zmq::socket_t& socket, DeliveryCounter& counter);

// Orchestrator side: one REQ socket to a receiver's control endpoint. Not thread-safe.
class ReceiverControl {
 public:
  static absl::StatusOr<std::unique_ptr<ReceiverControl>> Connect(zmq::context_t& context,
                                                                  const std::string& endpoint,
                                                                  std::string name);
  ReceiverControl(const ReceiverControl&) = delete;
  ReceiverControl& operator=(const ReceiverControl&) = delete;

  const std::string& name() const { return name_; }
  [[nodiscard]] absl::Status Reset();
  // The receiver's count once it reached `n`, or after timeout_ms (then below `n`). An error only
  // when the control channel fails.
  [[nodiscard]] absl::StatusOr<DeliveryCount> WaitFor(int64_t n, int64_t timeout_ms);

 private:
  ReceiverControl(zmq::socket_t socket, std::string name)
      : socket_(std::move(socket)), name_(std::move(name)) {}
  // One request and its answer; the answer is awaited at most timeout_ms.
  absl::StatusOr<std::string> Ask(const std::string& request, int64_t timeout_ms);

  zmq::socket_t socket_;
  std::string name_;
};

}  // namespace zmesh::bench
