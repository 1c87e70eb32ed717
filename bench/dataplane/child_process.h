// How zmesh-bench-dataplane runs parts of itself in other processes: the orchestrating process
// starts the benchmark binary again with --role=... (an echo server, a zmq proxy, a sink, a zmesh
// server), waits for the child's ready file, and stops it with SIGTERM at the end; the child
// side blocks SIGTERM and turns it into a clean shutdown and exit status 0.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/support/subprocess.h"

namespace zmesh::bench {

// ---- Orchestrator side -------------------------------------------------------------------

// One child process running this binary in a role. Not thread-safe; create it on main()'s
// thread (the child dies with the thread that started it, see testing::Subprocess).
class ChildProcess {
 public:
  // Starts /proc/self/exe with `args` plus --ready_file=<dir>/<name>.ready, output to
  // <dir>/<name>.log, and waits (up to 15 s) for the ready file; its content (trimmed) is
  // ready_text(). Fails with the log's tail when the child exits first or never gets ready.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(const std::string& dir,
                                                             const std::string& name,
                                                             std::vector<std::string> args);
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();  // SIGKILL if still running

  const std::string& name() const { return name_; }
  pid_t pid() const { return process_->pid(); }
  const std::string& ready_text() const { return ready_text_; }
  const std::string& log_path() const { return log_path_; }

  // SIGTERM, then waits up to 10 s for exit status 0; an error with the log's tail otherwise
  // (the child is SIGKILLed if it did not exit). OK if already stopped.
  [[nodiscard]] absl::Status Stop();

 private:
  ChildProcess(std::string name, std::string log_path, std::unique_ptr<testing::Subprocess> process)
      : name_(std::move(name)), log_path_(std::move(log_path)), process_(std::move(process)) {}

  std::string name_;
  std::string log_path_;
  std::string ready_text_;
  std::unique_ptr<testing::Subprocess> process_;
};

// ---- Child side ---------------------------------------------------------------------------

// Blocks SIGTERM and SIGINT in the calling thread, and so in every thread started after it
// (ZeroMQ's and zmesh's included), and starts a detached thread that waits for one of them and
// then runs `on_signal` once. Call at the start of a role, before any other thread exists.
void WatchTermination(std::function<void()> on_signal);

// Writes `text` to `path` atomically (temporary file, then rename).
[[nodiscard]] absl::Status WriteReadyFile(const std::string& path, const std::string& text);

// Socket options of the raw libzmq baselines: the ones docs/wire-protocol.md gives zmesh's own
// sockets (linger 0, high-water marks 10000, and for TCP ZMTP heartbeats and TCP keepalive), so
// that the baselines differ from zmesh by zmesh's logic only.
void ConfigureRawSocket(zmq::socket_t& socket, bool tcp);

}  // namespace zmesh::bench
