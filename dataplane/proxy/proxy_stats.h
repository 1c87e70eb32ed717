// ProxyStats: counters of what zmesh-proxy did with the messages it received, for logs, tests
// and /metrics (proxy_metrics.h reads them at scrape time). Plain atomics: pipelines bump them on
// the hot path without locks.
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

// Thread-safe (atomics, relaxed ordering: these are statistics). Each pipeline's counters sit on
// their own cache lines: one thread per pipeline writes them.
struct alignas(64) PipelineStats {
  std::atomic<int64_t> received{0};   // messages read from the network port
  std::atomic<int64_t> delivered{0};  // copies handed to local instances
  std::atomic<int64_t> answers{0};    // replies, heartbeats and acks sent back to callers
  std::atomic<int64_t> refused{0};    // refusals the proxy answered itself
  // Header and payload bytes of the messages above (routing frames not included).
  std::atomic<int64_t> received_bytes{0};
  std::atomic<int64_t> delivered_bytes{0};
  std::atomic<int64_t> answer_bytes{0};
  // Requests held because a local instance's queue was full (the network is not read meanwhile).
  std::atomic<int64_t> stalls{0};
  // Requests held now (0 or 1: the pipeline stops reading the network while one is held).
  std::atomic<int64_t> stalled_now{0};
  // TCP connections on the network port now (accepted minus disconnected).
  std::atomic<int64_t> peers{0};
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
  // Fresh lookups asked of the directory for local instances, by outcome.
  std::atomic<int64_t> fresh_lookups_ok{0};
  std::atomic<int64_t> fresh_lookups_failed{0};   // the mirror answered instead
  std::atomic<int64_t> fresh_lookups_expired{0};  // queued too long; the mirror answered instead

  PipelineStats& of(Pattern pattern) { return pipelines[static_cast<int>(pattern)]; }
  const PipelineStats& of(Pattern pattern) const { return pipelines[static_cast<int>(pattern)]; }
};

}  // namespace zmesh::proxy
