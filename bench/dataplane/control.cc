#include "bench/dataplane/control.h"

#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

namespace zmesh::bench {

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void DeliveryCounter::Add() {
  const int64_t now = SteadyNowNs();
  absl::MutexLock lock(&mu_);
  ++count_.count;
  count_.last_ns = now;
}

void DeliveryCounter::Reset() {
  absl::MutexLock lock(&mu_);
  count_ = DeliveryCount{};
}

DeliveryCount DeliveryCounter::WaitFor(int64_t n, int64_t timeout_ms) {
  absl::MutexLock lock(&mu_);
  auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return count_.count >= n; };
  mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Milliseconds(timeout_ms));
  return count_;
}

absl::StatusOr<zmq::socket_t> BindControl(zmq::context_t& context, const std::string& endpoint) {
  try {
    zmq::socket_t socket(context, zmq::socket_type::rep);
    socket.set(zmq::sockopt::linger, 0);
    socket.bind(endpoint);
    return socket;
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(
        absl::StrCat("binding control socket ", endpoint, ": ", e.what()));
  }
}

absl::Status ServeControl(zmq::socket_t& socket, DeliveryCounter& counter) {
  try {
    while (true) {
      zmq::message_t request;
      if (!socket.recv(request)) continue;
      const std::vector<std::string> words = absl::StrSplit(request.to_string(), ' ');
      std::string answer = "error unknown command";
      int64_t n = 0;
      int64_t timeout_ms = 0;
      if (words.size() == 1 && words[0] == "reset") {
        counter.Reset();
        answer = "ok";
      } else if (words.size() == 3 && words[0] == "wait" && absl::SimpleAtoi(words[1], &n) &&
                 absl::SimpleAtoi(words[2], &timeout_ms)) {
        const DeliveryCount count = counter.WaitFor(n, timeout_ms);
        answer =
            absl::StrCat(count.count >= n ? "ok " : "timeout ", count.count, " ", count.last_ns);
      }
      socket.send(zmq::buffer(answer), zmq::send_flags::none);
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == ETERM) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat("control socket: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<ReceiverControl>> ReceiverControl::Connect(
    zmq::context_t& context, const std::string& endpoint, std::string name) {
  try {
    zmq::socket_t socket(context, zmq::socket_type::req);
    socket.set(zmq::sockopt::linger, 0);
    // A request that timed out must not wedge the socket: the next one may go out, and a late
    // answer to the old one is discarded.
    socket.set(zmq::sockopt::req_relaxed, 1);
    socket.set(zmq::sockopt::req_correlate, 1);
    socket.connect(endpoint);
    return std::unique_ptr<ReceiverControl>(
        new ReceiverControl(std::move(socket), std::move(name)));
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(absl::StrCat("connecting to ", endpoint, ": ", e.what()));
  }
}

absl::StatusOr<std::string> ReceiverControl::Ask(const std::string& request, int64_t timeout_ms) {
  try {
    socket_.set(zmq::sockopt::rcvtimeo, static_cast<int>(timeout_ms));
    socket_.send(zmq::buffer(request), zmq::send_flags::none);
    zmq::message_t answer;
    if (!socket_.recv(answer)) {
      return absl::DeadlineExceededError(
          absl::StrCat(name_, ": no answer to \"", request, "\" within ", timeout_ms, " ms"));
    }
    return answer.to_string();
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(absl::StrCat(name_, ": \"", request, "\": ", e.what()));
  }
}

absl::Status ReceiverControl::Reset() {
  absl::StatusOr<std::string> answer = Ask("reset", 5000);
  if (!answer.ok()) return answer.status();
  if (*answer != "ok") return absl::InternalError(absl::StrCat(name_, ": reset: ", *answer));
  return absl::OkStatus();
}

absl::StatusOr<DeliveryCount> ReceiverControl::WaitFor(int64_t n, int64_t timeout_ms) {
  absl::StatusOr<std::string> answer =
      Ask(absl::StrCat("wait ", n, " ", timeout_ms), timeout_ms + 5000);
  if (!answer.ok()) return answer.status();
  const std::vector<std::string> words = absl::StrSplit(*answer, ' ');
  DeliveryCount count;
  if (words.size() != 3 || !absl::SimpleAtoi(words[1], &count.count) ||
      !absl::SimpleAtoi(words[2], &count.last_ns)) {
    return absl::InternalError(absl::StrCat(name_, ": bad answer \"", *answer, "\""));
  }
  return count;
}

}  // namespace zmesh::bench
