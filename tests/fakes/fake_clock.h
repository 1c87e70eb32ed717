// FakeClock: a Clock that moves only when a test advances it.
#pragma once

#include <atomic>
#include <cstdint>

#include "common/clock.h"

namespace zmesh::testing {

// Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_ms = 1000) : now_ms_(start_ms) {}
  int64_t NowMs() const override { return now_ms_.load(); }
  void AdvanceMs(int64_t ms) { now_ms_ += ms; }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace zmesh::testing
