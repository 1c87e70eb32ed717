// The raw libzmq baselines of zmesh-bench-dataplane: the child roles (echo server, echo worker,
// zmq_proxy, sink) and the orchestrator's view of them.
//
//   call, no hop:  DEALER --tcp--> ROUTER echo server (child)
//   call, 1 hop:   DEALER --tcp--> ROUTER|zmq_proxy()|DEALER (child) --ipc--> DEALER echo worker
//                  (child): the path of a zmesh CALL (client -> the server node's proxy -> local
//                  server over IPC), without zmesh
//   cast:          PUSH --tcp--> PULL sink (child)
//   fanout:        3 PUSH --tcp--> 3 PULL sinks (children); each message is sent to all three
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/dataplane/child_process.h"
#include "bench/dataplane/control.h"
#include "bench/dataplane/runner.h"
#include "bench/dataplane/usage.h"

namespace zmesh::bench {

// Flags of the child roles (both raw and zmesh roles use these).
struct RoleOptions {
  std::string bind;        // endpoint to bind (tcp://127.0.0.1:0 for a free port)
  std::string connect;     // endpoint to connect to
  std::string backend;     // zmq-proxy: endpoint its DEALER binds
  std::string control;     // control endpoint (control.h) of a receiver
  std::string ready_file;  // written once the role serves
  std::string ipc_dir;     // zmesh-server: the proxy's IPC directory
  std::string topic;       // zmesh-server: target topic
  std::string server;      // zmesh-server: target server name
};

// Each returns the process's exit status: 0 after SIGTERM, 1 on an error (printed on stderr).
// ROUTER bound to `bind`, echoes every message to its sender; ready text: the bound endpoint.
int RunEchoServerRole(const RoleOptions& options);
// DEALER connected to `connect`, echoes every message (all frames) back.
int RunEchoWorkerRole(const RoleOptions& options);
// zmq_proxy() between a ROUTER bound to `bind` and a DEALER bound to `backend`; ready text: the
// ROUTER's endpoint.
int RunZmqProxyRole(const RoleOptions& options);
// PULL bound to `bind`, counting deliveries for the control endpoint; ready text: the endpoint.
int RunSinkRole(const RoleOptions& options);

// The raw side as the orchestrator sees it: its child processes, paths and senders.
// Not thread-safe; create and stop on main()'s thread.
class RawSystem {
 public:
  // Starts every child (in `dir`, which must be short enough for IPC paths) and connects the
  // senders and controls on `context`. `fanout_receivers` sinks are started.
  static absl::StatusOr<std::unique_ptr<RawSystem>> Start(zmq::context_t& context,
                                                          const std::string& dir,
                                                          int fanout_receivers);
  RawSystem(const RawSystem&) = delete;
  RawSystem& operator=(const RawSystem&) = delete;
  ~RawSystem();

  CallPath& direct_echo() { return *direct_echo_; }
  CallPath& proxied_echo() { return *proxied_echo_; }
  OneWaySender& cast_sender() { return *cast_sender_; }
  std::vector<ReceiverControl*> cast_receivers() { return {controls_[0].get()}; }
  OneWaySender& fanout_sender() { return *fanout_sender_; }
  std::vector<ReceiverControl*> fanout_receivers();
  // This process ("client") and every child, for a UsageMeter.
  std::vector<UsageMeter::Process> processes() const;

  // Closes the sockets and stops every child (SIGTERM, exit status 0 expected); the first error.
  [[nodiscard]] absl::Status Stop();

 private:
  RawSystem() = default;

  std::vector<std::unique_ptr<ChildProcess>> children_;
  std::unique_ptr<CallPath> direct_echo_;
  std::unique_ptr<CallPath> proxied_echo_;
  std::vector<std::unique_ptr<ReceiverControl>> controls_;
  std::unique_ptr<OneWaySender> cast_sender_;
  std::unique_ptr<OneWaySender> fanout_sender_;
};

}  // namespace zmesh::bench
