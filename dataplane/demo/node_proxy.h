// NodeProxy: a zmesh-proxy child process standing in for one node of the demo: its own node name,
// loopback ports and IPC directory.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace zmesh::demo {

struct NodeProxyOptions {
  // Path of the zmesh-proxy binary.
  std::string binary;
  // Directory replicas "host:port[,host:port...]".
  std::string directory;
  std::string node_name;
  // IPC directory (created if missing); also holds the ready file. Keep it short: Unix socket
  // paths are at most 107 bytes.
  std::string ipc_dir;
  // stdout and stderr of the proxy.
  std::string log_path;
  int64_t lease_ttl_ms = 3000;
};

// Owns one running zmesh-proxy. Not thread-safe. The child runs in its own process group (a
// Ctrl-C in the terminal reaches the demo, which stops it) and is SIGKILLed by the kernel if the
// thread that started it exits first (PR_SET_PDEATHSIG): start it from the main thread.
class NodeProxy {
 public:
  // Starts the proxy on 127.0.0.1 with ports chosen by the proxy, and waits up to
  // ready_timeout_ms for its ready file (written once its sockets are bound and its node is in
  // the directory). Fails with the end of its log when it exits early or does not get ready.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<NodeProxy>> Start(
      NodeProxyOptions options, int64_t ready_timeout_ms = 15000);

  NodeProxy(const NodeProxy&) = delete;
  NodeProxy& operator=(const NodeProxy&) = delete;
  ~NodeProxy();  // SIGKILLs and reaps the proxy if still running

  const NodeProxyOptions& options() const { return options_; }
  pid_t pid() const { return pid_; }
  // The ready file's line, e.g. "call=41001 fanout=41002 notify=41003 cast=41004".
  const std::string& ports() const { return ports_; }

  // SIGTERM, then waits up to timeout_ms for the exit (SIGKILL after it). OK for exit status 0;
  // otherwise an error saying how it ended, with the end of its log.
  [[nodiscard]] absl::Status Stop(int64_t timeout_ms = 10000);

 private:
  NodeProxy(NodeProxyOptions options, pid_t pid) : options_(std::move(options)), pid_(pid) {}
  // Waits up to timeout_ms for the child to exit; its raw wait status, or -1 when still running.
  int WaitForExit(int64_t timeout_ms);

  NodeProxyOptions options_;
  pid_t pid_;  // 0 once reaped
  std::string ports_;
};

// For a signal handler thread about to exit the process: SIGTERMs every proxy started by
// NodeProxy and not reaped yet (including one still getting ready), and waits up to timeout_ms
// for them to exit (they would be SIGKILLed with this process otherwise). Returns how many it
// signalled. Thread-safe.
int TerminateRunningProxies(int64_t timeout_ms);

// The last max_lines lines of a file, for error messages ("" if unreadable).
std::string TailOfFile(const std::string& path, int max_lines = 20);

}  // namespace zmesh::demo
