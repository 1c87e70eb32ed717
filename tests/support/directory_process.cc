#include "tests/support/directory_process.h"

#include <signal.h>
#include <sys/wait.h>

#include <cstdint>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace zmesh::testing {
namespace {

constexpr int64_t kReadyTimeoutMs = 15000;
constexpr int64_t kStopTimeoutMs = 10000;

}  // namespace

absl::StatusOr<std::unique_ptr<DirectoryProcess>> DirectoryProcess::Start(
    std::string data_dir, std::vector<std::string> extra_args) {
  std::unique_ptr<DirectoryProcess> directory(
      new DirectoryProcess(std::move(data_dir), std::move(extra_args)));
  absl::Status launched = directory->Launch();
  if (!launched.ok()) return launched;
  return directory;
}

DirectoryProcess::DirectoryProcess(std::string data_dir, std::vector<std::string> extra_args)
    : data_dir_(std::move(data_dir)), extra_args_(std::move(extra_args)) {}

DirectoryProcess::~DirectoryProcess() { Kill(); }

absl::Status DirectoryProcess::Launch() {
  std::error_code error;
  std::filesystem::create_directories(data_dir_, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("creating data dir ", data_dir_, ": ", error.message()));
  }
  ready_path_ = data_dir_ + "/test-directory.ready";
  log_path_ = absl::StrCat(data_dir_, "/test-directory.", launches_++, ".log");
  address_.clear();
  metrics_port_ = 0;
  // A ready file from an earlier launch would make us talk to a dead port.
  std::filesystem::remove(ready_path_, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("removing stale ready file ", ready_path_, ": ", error.message()));
  }

  std::vector<std::string> argv = {BinPath("zmesh-directory"), "--data-dir", data_dir_, "--listen",
                                   "127.0.0.1:0",
                                   // A one-member cluster nobody joins needs no fixed Raft
                                   // port; extra_args may name one (the last flag wins).
                                   "--raft-listen", "127.0.0.1:0", "--ready-file", ready_path_};
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Start(argv, log_path_, log_path_);
  if (!process.ok()) {
    return absl::Status(process.status().code(),
                        absl::StrCat("starting zmesh-directory: ", process.status().message()));
  }
  process_ = *std::move(process);

  // The daemon writes the file atomically (rename), so a complete line means it serves.
  absl::StatusOr<int> exited = absl::DeadlineExceededError("");
  const bool ready = Eventually(
      [&] {
        exited = process_->Wait(0);
        if (exited.ok()) return true;  // gave up early: stop waiting
        absl::StatusOr<std::string> content = ReadFile(ready_path_);
        if (!content.ok() || !absl::EndsWith(*content, "\n")) return false;
        // Line 1: the address; then "metrics=PORT" when --metrics-listen was given.
        std::vector<std::string> lines = absl::StrSplit(*content, '\n', absl::SkipEmpty());
        address_ = std::string(absl::StripAsciiWhitespace(lines.front()));
        for (size_t i = 1; i < lines.size(); ++i) {
          absl::string_view line = absl::StripAsciiWhitespace(lines[i]);
          if (absl::ConsumePrefix(&line, "metrics=") && !absl::SimpleAtoi(line, &metrics_port_)) {
            metrics_port_ = 0;
          }
        }
        return true;
      },
      kReadyTimeoutMs);
  if (exited.ok()) {
    return absl::InternalError(absl::StrCat("zmesh-directory ", DescribeWaitStatus(*exited),
                                            " before it got ready; log ", log_path_, ":\n",
                                            TailFile(log_path_)));
  }
  if (!ready) {
    Kill();
    return absl::DeadlineExceededError(absl::StrCat("zmesh-directory not ready after ",
                                                    kReadyTimeoutMs, " ms; log ", log_path_, ":\n",
                                                    TailFile(log_path_)));
  }
  if (!absl::StartsWith(address_, "127.0.0.1:")) {
    Kill();
    return absl::InternalError(
        absl::StrCat("zmesh-directory wrote an unexpected ready file: \"", address_, "\""));
  }
  return absl::OkStatus();
}

absl::Status DirectoryProcess::Stop() {
  if (!running()) return absl::FailedPreconditionError("zmesh-directory is not running");
  process_->Signal(SIGTERM);
  absl::StatusOr<int> status = process_->Wait(kStopTimeoutMs);
  if (!status.ok()) {
    Kill();
    return absl::DeadlineExceededError(absl::StrCat("zmesh-directory did not exit within ",
                                                    kStopTimeoutMs, " ms of SIGTERM; log ",
                                                    log_path_, ":\n", TailFile(log_path_)));
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return absl::InternalError(absl::StrCat("zmesh-directory ", DescribeWaitStatus(*status),
                                            " after SIGTERM; log ", log_path_, ":\n",
                                            TailFile(log_path_)));
  }
  return absl::OkStatus();
}

void DirectoryProcess::Kill() {
  if (!running()) return;
  process_->Signal(SIGKILL);
  (void)process_->Wait(kStopTimeoutMs);
}

absl::Status DirectoryProcess::Restart() {
  if (running()) {
    absl::Status stopped = Stop();
    if (!stopped.ok()) return stopped;
  }
  return Launch();
}

}  // namespace zmesh::testing
