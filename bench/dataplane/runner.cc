#include "bench/dataplane/runner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace zmesh::bench {

double CallStats::PercentileUs(double q) const {
  if (latencies_ns.empty()) return 0;
  const double rank = std::ceil(q * static_cast<double>(latencies_ns.size()));
  size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  index = std::min(index, latencies_ns.size() - 1);
  return latencies_ns[index] / 1000.0;
}

CallStats RunCalls(CallPath& path, const std::string& payload, int callers, const Timing& timing,
                   UsageMeter* meter) {
  CallStats stats;
  stats.callers = callers;
  std::vector<std::unique_ptr<Caller>> clients;
  for (int i = 0; i < callers; ++i) {
    absl::StatusOr<std::unique_ptr<Caller>> caller = path.NewCaller();
    if (!caller.ok()) {
      stats.error = absl::StrCat("creating caller ", i, ": ", caller.status().ToString());
      return stats;
    }
    clients.push_back(std::move(*caller));
  }

  const int64_t window_start = SteadyNowNs() + timing.warmup_ms * 1000000;
  const int64_t window_end = window_start + timing.duration_ms * 1000000;
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::string first_error;          // guarded by mu
  int64_t last_end = window_start;  // guarded by mu
  std::vector<std::vector<int64_t>> samples(callers);
  std::vector<std::thread> threads;
  threads.reserve(callers);
  for (int i = 0; i < callers; ++i) {
    threads.emplace_back([&, i]() {
      Caller& caller = *clients[i];
      std::vector<int64_t>& mine = samples[i];
      mine.reserve(1 << 16);
      int64_t my_last_end = window_start;
      while (!stop.load(std::memory_order_relaxed)) {
        const int64_t begin = SteadyNowNs();
        if (begin >= window_end) break;
        absl::Status status = caller.Call(payload);
        const int64_t end = SteadyNowNs();
        if (!status.ok()) {
          absl::MutexLock lock(&mu);
          if (first_error.empty()) {
            first_error = absl::StrCat("caller ", i, ": ", status.ToString());
          }
          stop = true;
          break;
        }
        if (begin >= window_start) {
          mine.push_back(end - begin);
          my_last_end = end;
        }
      }
      absl::MutexLock lock(&mu);
      last_end = std::max(last_end, my_last_end);
    });
  }
  if (meter != nullptr) {
    std::this_thread::sleep_for(std::chrono::nanoseconds(window_start - SteadyNowNs()));
    meter->Start();
  }
  for (std::thread& thread : threads) thread.join();
  if (meter != nullptr) meter->Stop();
  clients.clear();

  for (std::vector<int64_t>& mine : samples) {
    stats.latencies_ns.insert(stats.latencies_ns.end(), mine.begin(), mine.end());
  }
  std::sort(stats.latencies_ns.begin(), stats.latencies_ns.end());
  stats.calls = static_cast<int64_t>(stats.latencies_ns.size());
  stats.seconds = (last_end - window_start) / 1e9;
  stats.error = first_error;
  if (stats.error.empty() && stats.calls == 0) stats.error = "no call completed in the window";
  return stats;
}

namespace {

// Sends until `until_ns` (at least one message); returns how many were sent.
absl::StatusOr<int64_t> SendUntil(OneWaySender& sender, const std::string& payload,
                                  int64_t until_ns) {
  int64_t sent = 0;
  do {
    absl::Status status = sender.Send(payload);
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat("send ", sent + 1, " failed: ", status.message()));
    }
    ++sent;
  } while (SteadyNowNs() < until_ns);
  return sent;
}

// A receiver that got nothing new for this long while short of the count has lost messages.
constexpr int64_t kStallMs = 3000;
constexpr int64_t kPollMs = 500;

// Waits until every receiver has exactly `n` (giving up on one after kStallMs without a new
// delivery, or timeout_ms in all); returns the latest last delivery time.
// `lost` gets the shortfall of a receiver that stalled.
absl::StatusOr<int64_t> AwaitDeliveries(const std::vector<ReceiverControl*>& receivers, int64_t n,
                                        int64_t timeout_ms, int64_t* lost) {
  const int64_t give_up_ns = SteadyNowNs() + timeout_ms * 1000000;
  int64_t last_ns = 0;
  for (ReceiverControl* receiver : receivers) {
    DeliveryCount count;
    int64_t progress_ns = SteadyNowNs();
    while (true) {
      absl::StatusOr<DeliveryCount> now = receiver->WaitFor(n, kPollMs);
      if (!now.ok()) return now.status();
      if (now->count >= n) {
        count = *now;
        break;
      }
      if (now->count != count.count) progress_ns = SteadyNowNs();
      count = *now;
      const int64_t at = SteadyNowNs();
      if (at - progress_ns >= kStallMs * 1000000 || at >= give_up_ns) {
        *lost = n - count.count;
        return absl::DataLossError(absl::StrCat(
            receiver->name(), " got ", count.count, " of ", n, " messages (", n - count.count,
            " lost: nothing more came for ", (at - progress_ns) / 1000000, " ms)"));
      }
    }
    if (count.count != n) {
      return absl::DataLossError(absl::StrCat(receiver->name(), " got ", count.count, " messages, ",
                                              n, " were sent (duplicates)"));
    }
    last_ns = std::max(last_ns, count.last_ns);
  }
  return last_ns;
}

absl::Status ResetAll(const std::vector<ReceiverControl*>& receivers) {
  for (ReceiverControl* receiver : receivers) {
    absl::Status status = receiver->Reset();
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace

OneWayStats RunOneWay(OneWaySender& sender, const std::vector<ReceiverControl*>& receivers,
                      const std::string& payload, const Timing& timing, UsageMeter* meter,
                      int64_t drain_timeout_ms) {
  OneWayStats stats;
  absl::Status status = ResetAll(receivers);
  if (!status.ok()) {
    stats.error = status.ToString();
    return stats;
  }
  absl::StatusOr<int64_t> warm =
      SendUntil(sender, payload, SteadyNowNs() + timing.warmup_ms * 1000000);
  if (!warm.ok()) {
    stats.error = absl::StrCat("warm-up: ", warm.status().ToString());
    return stats;
  }
  stats.lost_of = *warm;
  absl::StatusOr<int64_t> drained =
      AwaitDeliveries(receivers, *warm, drain_timeout_ms, &stats.lost);
  if (!drained.ok()) {
    stats.error = absl::StrCat("warm-up: ", drained.status().ToString());
    return stats;
  }
  status = ResetAll(receivers);
  if (!status.ok()) {
    stats.error = status.ToString();
    return stats;
  }

  if (meter != nullptr) meter->Start();
  const int64_t start = SteadyNowNs();
  absl::StatusOr<int64_t> sent = SendUntil(sender, payload, start + timing.duration_ms * 1000000);
  if (!sent.ok()) {
    stats.error = sent.status().ToString();
    return stats;
  }
  stats.send_seconds = (SteadyNowNs() - start) / 1e9;
  stats.lost_of = *sent;
  absl::StatusOr<int64_t> last = AwaitDeliveries(receivers, *sent, drain_timeout_ms, &stats.lost);
  if (meter != nullptr) meter->Stop();
  if (!last.ok()) {
    stats.error = last.status().ToString();
    return stats;
  }
  stats.messages = *sent;
  stats.seconds = (*last - start) / 1e9;
  return stats;
}

}  // namespace zmesh::bench
