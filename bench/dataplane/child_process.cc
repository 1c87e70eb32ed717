#include "bench/dataplane/child_process.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "dataplane/wire/sockets.h"

namespace zmesh::bench {
namespace {

constexpr int64_t kReadyTimeoutMs = 15000;
constexpr int64_t kStopTimeoutMs = 10000;

absl::StatusOr<std::string> SelfPath() {
  std::error_code error;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return absl::InternalError(absl::StrCat("reading /proc/self/exe: ", error.message()));
  return self.string();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(const std::string& dir,
                                                                  const std::string& name,
                                                                  std::vector<std::string> args) {
  absl::StatusOr<std::string> self = SelfPath();
  if (!self.ok()) return self.status();
  const std::string ready_path = absl::StrCat(dir, "/", name, ".ready");
  const std::string log_path = absl::StrCat(dir, "/", name, ".log");
  // A ready file left by an earlier run in the same --work-dir would name a dead endpoint.
  std::error_code error;
  std::filesystem::remove(ready_path, error);
  if (error) {
    return absl::InternalError(absl::StrCat("removing ", ready_path, ": ", error.message()));
  }
  std::vector<std::string> argv = {*self};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(absl::StrCat("--ready_file=", ready_path));
  absl::StatusOr<std::unique_ptr<testing::Subprocess>> process =
      testing::Subprocess::Start(argv, log_path, log_path);
  if (!process.ok()) {
    return absl::Status(process.status().code(),
                        absl::StrCat("starting ", name, ": ", process.status().message()));
  }
  std::unique_ptr<ChildProcess> child(new ChildProcess(name, log_path, std::move(*process)));

  std::string exited;
  const bool ready = testing::Eventually(
      [&]() {
        absl::StatusOr<int> status = child->process_->Wait(0);
        if (status.ok()) {
          exited = testing::DescribeWaitStatus(*status);
          return true;
        }
        absl::StatusOr<std::string> text = testing::ReadFile(ready_path);
        if (!text.ok()) return false;
        child->ready_text_ = std::string(absl::StripAsciiWhitespace(*text));
        return true;
      },
      kReadyTimeoutMs);
  if (!exited.empty() || !ready) {
    return absl::UnavailableError(
        absl::StrCat(name, exited.empty() ? " did not get ready in time" : " " + exited, "; log ",
                     log_path, ":\n", testing::TailFile(log_path)));
  }
  return child;
}

ChildProcess::~ChildProcess() {
  if (process_ != nullptr && process_->running()) {
    process_->Signal(SIGKILL);
    (void)process_->Wait(kStopTimeoutMs);
  }
}

absl::Status ChildProcess::Stop() {
  if (process_ == nullptr || !process_->running()) return absl::OkStatus();
  process_->Signal(SIGTERM);
  absl::StatusOr<int> status = process_->Wait(kStopTimeoutMs);
  if (!status.ok()) {
    process_->Signal(SIGKILL);
    (void)process_->Wait(kStopTimeoutMs);
    return absl::DeadlineExceededError(absl::StrCat(name_, " did not exit within ", kStopTimeoutMs,
                                                    " ms of SIGTERM; log ", log_path_, ":\n",
                                                    testing::TailFile(log_path_)));
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return absl::InternalError(absl::StrCat(name_, " ", testing::DescribeWaitStatus(*status),
                                            "; log ", log_path_, ":\n",
                                            testing::TailFile(log_path_)));
  }
  return absl::OkStatus();
}

void WatchTermination(std::function<void()> on_signal) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::thread([signals, on_signal = std::move(on_signal)]() {
    int signo = 0;
    sigwait(&signals, &signo);
    on_signal();
  }).detach();
}

absl::Status WriteReadyFile(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << text << "\n";
    if (!out.flush()) return absl::InternalError(absl::StrCat("writing ", temporary));
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    return absl::InternalError(absl::StrCat("renaming ", temporary, ": ", error.message()));
  }
  return absl::OkStatus();
}

void ConfigureRawSocket(zmq::socket_t& socket, bool tcp) {
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::sndhwm, wire::kHighWaterMark);
  socket.set(zmq::sockopt::rcvhwm, wire::kHighWaterMark);
  if (tcp) {
    socket.set(zmq::sockopt::heartbeat_ivl, wire::kHeartbeatIvlMs);
    socket.set(zmq::sockopt::heartbeat_timeout, wire::kHeartbeatTimeoutMs);
    socket.set(zmq::sockopt::heartbeat_ttl, wire::kHeartbeatTtlMs);
    socket.set(zmq::sockopt::tcp_keepalive, 1);
    socket.set(zmq::sockopt::tcp_keepalive_idle, 10);
    socket.set(zmq::sockopt::tcp_keepalive_intvl, 2);
    socket.set(zmq::sockopt::tcp_keepalive_cnt, 3);
  }
}

}  // namespace zmesh::bench
