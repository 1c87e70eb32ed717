// Pipeline: one data-plane pattern (CALL, CAST, FANOUT or NOTIFY) of zmesh-proxy. Its own
// thread owns the pattern's TCP ROUTER (the network) and IPC ROUTER (the local instances) and
// moves messages between them as docs/wire-protocol.md says: requests from the network to the
// local instances serving their target, answers from the instances back along the caller's
// route, refusals the proxy answers itself, ATTACH/ATTACHED with instances.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include <zmq.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dataplane/proxy/local_table.h"
#include "dataplane/proxy/proxy_stats.h"

namespace zmesh::proxy {

struct PipelineOptions {
  Pattern pattern = Pattern::kCall;
  // Where to bind: "tcp://ADDR:PORT" (port 0: any free port) and "ipc://DIR/<name>.sock".
  std::string tcp_endpoint;
  std::string ipc_endpoint;
  int64_t max_payload_bytes = 16 * 1024 * 1024;
  // Put in refusals ("node" of the header).
  std::string node_name;
};

// Thread-compatible from the owner's side: Create, then Start once, then Stop once. The
// pipeline's thread is the only one touching its sockets after Start.
class Pipeline {
 public:
  // Creates and binds both sockets (on the caller's thread). `context`, `table` and `stats`
  // must outlive the pipeline. Errors name the endpoint (e.g. port in use).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Pipeline>> Create(
      zmq::context_t& context, PipelineOptions options, const LocalTableHolder& table,
      PipelineStats& stats);
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;
  ~Pipeline();  // Stop()

  // TCP port actually bound.
  int port() const { return port_; }
  void Start();
  // Stops the thread and closes the sockets. Idempotent.
  void Stop();

 private:
  Pipeline(zmq::context_t& context, PipelineOptions options, const LocalTableHolder& table,
           PipelineStats& stats);
  void Run();
  // Reads the network socket's monitor events: counts TCP connections in stats_.peers.
  void CountConnections();
  class Loop;

  PipelineOptions options_;
  const LocalTableHolder& table_;  // owned by the proxy
  PipelineStats& stats_;           // owned by the proxy
  zmq::socket_t network_;
  zmq::socket_t local_;
  zmq::socket_t monitor_;  // PAIR: connection events of network_
  int port_ = 0;
  int stop_fd_ = -1;  // eventfd: readable once Stop() was called
  std::thread thread_;
};

}  // namespace zmesh::proxy
