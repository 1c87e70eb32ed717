// ProxyProcess: a real zmesh-proxy daemon for integration tests, standing in for one node: its
// own node name, IPC directory and data ports (free loopback ports unless given).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/support/subprocess.h"

namespace zmesh::testing {

struct ProxyProcessOptions {
  // Directory replica addresses "host:port[,host:port...]"; required.
  std::string directory;
  // Node name; required (tests run several "nodes" on one host).
  std::string node_name;
  // IPC directory (created if missing; keep it short: Unix socket paths are at most 107 bytes).
  // Also holds the ready file and the logs ("proxy.ready", "proxy.<launch>.log").
  std::string ipc_dir;
  std::string advertise_host = "127.0.0.1";
  std::string bind = "127.0.0.1";
  // 0: a free port chosen by the proxy (the same ports are reused by Restart()).
  int call_port = 0;
  int fanout_port = 0;
  int notify_port = 0;
  int cast_port = 0;
  int64_t lease_ttl_ms = 2000;
  // Passed as --instance-timeout-ms when > 0.
  int64_t instance_timeout_ms = 0;
  std::vector<std::string> extra_args;
  // Wrap the command (e.g. {"ip", "netns", "exec", "ns1"}); empty for none.
  std::vector<std::string> command_prefix;
};

// Not thread-safe; create on the test's thread (see Subprocess).
class ProxyProcess {
 public:
  // Starts BinPath("zmesh-proxy") with the options and --ready-file, and waits (up to 15 s) for
  // the ready file, which the proxy writes once its sockets are bound and its node is registered
  // in the directory: one line "call=P fanout=P notify=P cast=P" (plus " metrics=P" with
  // --metrics-listen in extra_args). Fails with the tail of the log
  // when the proxy exits early or never gets ready (it is killed then).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ProxyProcess>> Start(
      ProxyProcessOptions options);
  ProxyProcess(const ProxyProcess&) = delete;
  ProxyProcess& operator=(const ProxyProcess&) = delete;
  ~ProxyProcess();  // SIGKILLs if still running

  const ProxyProcessOptions& options() const { return options_; }
  const std::string& ipc_dir() const { return options_.ipc_dir; }
  const std::string& node_name() const { return options_.node_name; }
  // Actual ports of the latest launch.
  int call_port() const { return call_port_; }
  int fanout_port() const { return fanout_port_; }
  int notify_port() const { return notify_port_; }
  int cast_port() const { return cast_port_; }
  // The /metrics port when extra_args has --metrics-listen (read from the ready file), else 0.
  int metrics_port() const { return metrics_port_; }
  const std::string& log_path() const { return log_path_; }
  bool running() const { return process_ != nullptr && process_->running(); }
  Subprocess& process() { return *process_; }

  // SIGTERM and wait (up to 10 s) for exit status 0; error with the log tail otherwise.
  [[nodiscard]] absl::Status Stop();
  // SIGKILL and reap; no-op if not running.
  void Kill();
  // Starts again with the same options and the ports of the first launch.
  [[nodiscard]] absl::Status Restart();

 private:
  explicit ProxyProcess(ProxyProcessOptions options);
  absl::Status Launch();

  ProxyProcessOptions options_;
  int launches_ = 0;
  int call_port_ = 0;
  int fanout_port_ = 0;
  int notify_port_ = 0;
  int cast_port_ = 0;
  int metrics_port_ = 0;
  std::string ready_path_;
  std::string log_path_;
  std::unique_ptr<Subprocess> process_;
};

}  // namespace zmesh::testing
