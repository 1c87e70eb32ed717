// Clock: the source of time for code that must be testable without waiting (lease timing,
// timeouts). Production code uses SystemClock; tests use tests/fakes/fake_clock.h.
#pragma once

#include <cstdint>

namespace zmesh {

// Thread-safe. Times are milliseconds on a monotonic clock with an arbitrary origin.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowMs() const = 0;
};

// The real monotonic clock (CLOCK_MONOTONIC).
class SystemClock final : public Clock {
 public:
  int64_t NowMs() const override;
  // A process-wide instance; lives forever.
  static SystemClock& Get();
};

}  // namespace zmesh
