// DirectoryProcess: a real zmesh-directory daemon for integration tests, on a free loopback port
// and its own data directory.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/support/subprocess.h"

namespace zmesh::testing {

// Not thread-safe. The daemon is started from the calling thread and dies with it (see
// Subprocess), so create it on the test's (or main()'s) thread.
//
// Files: the data dir is created if missing. Each launch writes its ready file and its log
// (stdout and stderr) inside the data dir, as "test-directory.ready" and
// "test-directory.<launch>.log" (launch = 0, 1, ... across Restart()), so a test's TempDir
// cleans everything up and a restart keeps the previous launch's log.
class DirectoryProcess {
 public:
  // Starts BinPath("zmesh-directory") with --data-dir data_dir --listen 127.0.0.1:0
  // --ready-file ... plus extra_args, and waits (up to 15 s) until the daemon has written its
  // ready file "127.0.0.1:PORT\n", which it does once it serves. Fails with the tail of the
  // daemon's log when it exits early or never gets ready (it is killed then).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DirectoryProcess>> Start(
      std::string data_dir, std::vector<std::string> extra_args = {});
  DirectoryProcess(const DirectoryProcess&) = delete;
  DirectoryProcess& operator=(const DirectoryProcess&) = delete;
  ~DirectoryProcess();  // SIGKILLs if still running

  // "127.0.0.1:PORT" the daemon listens on (of the latest launch).
  const std::string& address() const { return address_; }
  // The /metrics port when extra_args has --metrics-listen (read from the ready file), else 0.
  int metrics_port() const { return metrics_port_; }
  const std::string& data_dir() const { return data_dir_; }
  // Log of the latest launch.
  const std::string& log_path() const { return log_path_; }
  bool running() const { return process_ != nullptr && process_->running(); }
  Subprocess& process() { return *process_; }

  // SIGTERM and wait (up to 10 s) for a clean exit with status 0. Otherwise an error with the
  // exit status and the tail of the log (a daemon that does not exit in time is SIGKILLed).
  // FAILED_PRECONDITION if it is not running.
  [[nodiscard]] absl::Status Stop();
  // SIGKILL and reap; a no-op if it is not running.
  void Kill();
  // Starts again on the same data dir (new port, new log), after Stop() or Kill(); a daemon still
  // running is stopped first with Stop(), and its error, if any, is returned.
  [[nodiscard]] absl::Status Restart();

 private:
  DirectoryProcess(std::string data_dir, std::vector<std::string> extra_args);
  absl::Status Launch();

  std::string data_dir_;
  std::vector<std::string> extra_args_;
  int launches_ = 0;  // number of Launch() calls so far
  std::string address_;
  int metrics_port_ = 0;
  std::string ready_path_;
  std::string log_path_;
  std::unique_ptr<Subprocess> process_;
};

}  // namespace zmesh::testing
