// AtomicHistogram: a fixed-bucket histogram of durations (or any values) that hot paths feed
// without a lock, read at scrape time by a collector (metric_families.h turns it into a
// Prometheus histogram). Buckets are cumulative only when read.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

namespace zmesh::metrics {

// Upper bounds (seconds) for latencies from ~100 us to ~10 s.
inline constexpr std::array<double, 15> kLatencyBucketsSeconds = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   10.0};

// Thread-safe: Observe from any thread (relaxed atomics); a concurrent Read may see a sample in
// the count but not yet in the sum (statistics, not accounting).
class AtomicHistogram {
 public:
  struct Snapshot {
    std::vector<double> bounds;               // upper bounds, ascending (+Inf implied)
    std::vector<uint64_t> cumulative_counts;  // one per bound, then +Inf (== count)
    uint64_t count = 0;
    double sum = 0;
  };

  AtomicHistogram();
  AtomicHistogram(const AtomicHistogram&) = delete;
  AtomicHistogram& operator=(const AtomicHistogram&) = delete;

  void Observe(double value);
  Snapshot Read() const;

 private:
  // One per bound of kLatencyBucketsSeconds, then +Inf.
  std::array<std::atomic<uint64_t>, kLatencyBucketsSeconds.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_nanos_{0};  // sum in units of 1e-9 (fits ~584 years of seconds)
};

}  // namespace zmesh::metrics
