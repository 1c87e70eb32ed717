#include "common/metrics/histogram.h"

#include <algorithm>
#include <cmath>

namespace zmesh::metrics {

AtomicHistogram::AtomicHistogram() = default;

void AtomicHistogram::Observe(double value) {
  const auto it =
      std::lower_bound(kLatencyBucketsSeconds.begin(), kLatencyBucketsSeconds.end(), value);
  buckets_[it - kLatencyBucketsSeconds.begin()].fetch_add(1, std::memory_order_relaxed);
  if (value > 0 && std::isfinite(value)) {
    sum_nanos_.fetch_add(static_cast<uint64_t>(std::llround(value * 1e9)),
                         std::memory_order_relaxed);
  }
}

AtomicHistogram::Snapshot AtomicHistogram::Read() const {
  Snapshot snapshot;
  snapshot.bounds.assign(kLatencyBucketsSeconds.begin(), kLatencyBucketsSeconds.end());
  uint64_t running = 0;
  for (const std::atomic<uint64_t>& bucket : buckets_) {
    running += bucket.load(std::memory_order_relaxed);
    snapshot.cumulative_counts.push_back(running);
  }
  snapshot.count = running;
  snapshot.sum = static_cast<double>(sum_nanos_.load(std::memory_order_relaxed)) / 1e9;
  return snapshot;
}

}  // namespace zmesh::metrics
