// ProxyStats: counters of what zmesh-proxy did with the messages it received, for logs, tests
// and (later) metrics. Plain atomics: pipelines bump them on the hot path without locks.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace zmesh::proxy {

// The four data-plane patterns, one pipeline each.
enum class Pattern { kCall = 0, kFanout = 1, kNotify = 2, kCast = 3 };
inline constexpr int kPatternCount = 4;

// Why a message was not delivered (refused with an answer, or dropped).
enum class DropReason {
  kBadFrameCount = 0,  // not [Header][payload] after the routing frames
  kBadHeader,          // header does not parse, or a required field is missing
  kBadVersion,         // envelope version is not 1
  kBadKind,            // a kind this socket does not carry
  kTooLarge,           // payload over --max-payload-bytes
  kNoSuchTarget,       // no live local instance serves the target
  kOverloaded,         // the instance's queue is full
  kRouteGone,          // an answer for a caller whose connection is gone
  kSendFailed,         // any other ZeroMQ send error
};
inline constexpr int kDropReasonCount = 9;

absl::string_view PatternName(Pattern pattern);
absl::string_view DropReasonName(DropReason reason);

// Thread-safe (atomics, relaxed ordering: these are statistics).
struct PipelineStats {
  std::atomic<int64_t> received{0};   // messages read from the network port
  std::atomic<int64_t> delivered{0};  // copies handed to local instances
  std::atomic<int64_t> answers{0};    // replies, heartbeats and acks sent back to callers
  std::atomic<int64_t> refused{0};    // refusals the proxy answered itself
  // Requests held because a local instance's queue was full (the network is not read meanwhile).
  std::atomic<int64_t> stalls{0};
  std::array<std::atomic<int64_t>, kDropReasonCount> drops{};  // by DropReason

  int64_t drop(DropReason reason) const {
    return drops[static_cast<int>(reason)].load(std::memory_order_relaxed);
  }
  void Count(DropReason reason) {
    drops[static_cast<int>(reason)].fetch_add(1, std::memory_order_relaxed);
  }
};

struct ProxyStats {
  std::array<PipelineStats, kPatternCount> pipelines;
  // Local control protocol.
  std::atomic<int64_t> control_malformed{0};  // control frames that are not a LocalRequest
  std::atomic<int64_t> instances_dropped{0};  // instances dropped after a silence
  std::atomic<int64_t> directory_writes{0};   // registrations written to the directory
  std::atomic<int64_t> leases_granted{0};

  PipelineStats& of(Pattern pattern) { return pipelines[static_cast<int>(pattern)]; }
  const PipelineStats& of(Pattern pattern) const { return pipelines[static_cast<int>(pattern)]; }
};

}  // namespace zmesh::proxy
