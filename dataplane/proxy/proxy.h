// Proxy: zmesh-proxy assembled: the four pipelines, the control server, the mirror and the
// directory link, in the right start and stop order.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/metrics/metrics_server.h"
#include "dataplane/proxy/control_server.h"
#include "dataplane/proxy/directory_link.h"
#include "dataplane/proxy/local_table.h"
#include "dataplane/proxy/mirror.h"
#include "dataplane/proxy/pipeline.h"
#include "dataplane/proxy/proxy_metrics.h"
#include "dataplane/proxy/proxy_stats.h"

namespace zmesh::proxy {

struct ProxyOptions {
  // Directory replica addresses "host:port".
  std::vector<std::string> directory;
  std::string node_name;
  std::string advertise_host;
  std::string bind = "*";
  // 0: any free port (the actual one is registered).
  int call_port = 9501;
  int fanout_port = 9502;
  int notify_port = 9503;
  int cast_port = 9504;
  std::string ipc_dir = "/run/zmesh";
  int64_t lease_ttl_ms = 10000;
  int64_t instance_timeout_ms = 1500;
  int64_t ping_interval_ms = 300;
  int64_t max_payload_bytes = 16 * 1024 * 1024;
  // Prometheus /metrics at "HOST:PORT" (port 0: any free port, see metrics_port()); empty: off.
  std::string metrics_listen;
  // Called (on a directory thread) each time the node is registered in the directory.
  std::function<void()> on_node_registered;
};

// Not thread-safe from the owner's side: Start, then Stop once.
class Proxy {
 public:
  // Creates the IPC dir if missing, binds every socket, starts the threads and begins
  // registering the node (the directory may be unreachable: that is retried). Errors name what
  // failed (a port in use, an IPC path too long, an IPC dir that cannot be created).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Proxy>> Start(ProxyOptions options);
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;
  ~Proxy();  // Stop(false)

  // Stops everything; with `revoke_lease`, revokes the lease so the node and its registrations
  // leave the directory at once. Removes the IPC socket files. Idempotent.
  void Stop(bool revoke_lease);

  int port(Pattern pattern) const { return pipelines_[static_cast<int>(pattern)]->port(); }
  const std::string& incarnation() const { return incarnation_; }
  const ProxyStats& stats() const { return stats_; }
  bool directory_connected() const { return link_ != nullptr && link_->connected(); }
  // The port /metrics is served on; 0 when options.metrics_listen was empty.
  int metrics_port() const { return metrics_port_; }
  // The state /metrics reports besides stats(). Thread-safe.
  ProxyGauges gauges() const;
  const Mirror& mirror() const { return mirror_; }

 private:
  explicit Proxy(ProxyOptions options);

  ProxyOptions options_;
  std::string incarnation_;
  ProxyStats stats_;
  LocalTableHolder table_;
  Mirror mirror_;
  zmq::context_t context_;
  std::array<std::unique_ptr<Pipeline>, kPatternCount> pipelines_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<DirectoryLink> link_;
  // Reads everything above at scrape time: stopped first.
  std::unique_ptr<metrics::MetricsServer> metrics_;
  int metrics_port_ = 0;
  std::vector<std::string> ipc_paths_;  // socket files to remove on stop
  int lock_fd_ = -1;                    // flock on IPC_DIR/proxy.lock, held while running
  bool owns_ipc_dir_ = false;           // the lock is ours
  bool stopped_ = false;
};

}  // namespace zmesh::proxy
