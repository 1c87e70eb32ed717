// MetricsServer: a daemon's Prometheus endpoint, GET http://HOST:PORT/metrics in the text
// exposition format (prometheus-cpp's Exposer on civetweb, with its own small thread pool).
//
// Two kinds of metrics are served: prometheus-cpp metrics made from registry() (counters,
// gauges, histograms that are cheap enough to bump where things happen), and collectors that
// build their families at scrape time from state the daemon keeps anyway (atomic counters on hot
// paths, role and indexes, table sizes). Both are read only when Prometheus scrapes.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics/histogram.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace prometheus {
class Exposer;
}  // namespace prometheus

namespace zmesh::metrics {

// Families built at each scrape, on one of the endpoint's threads. Must be thread-safe with
// respect to the daemon's own threads and must not block for long.
using CollectFn = std::function<std::vector<prometheus::MetricFamily>()>;

// Thread-safe.
class MetricsServer {
 public:
  // Listens on `listen` ("HOST:PORT", IPv4 address or host name; port 0 picks a free port).
  // INVALID_ARGUMENT for an address that is not HOST:PORT, UNAVAILABLE when it cannot listen
  // (port in use, address not on this machine).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen);
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  // Stops serving (waits for a scrape in progress) before the collectors go.
  ~MetricsServer();

  // The port actually listened on.
  int port() const { return port_; }
  // Metrics created here are served from now on; the registry lives as long as the server.
  prometheus::Registry& registry() { return *registry_; }
  // `collect` is called at every scrape from now on, until the server is destroyed: whatever it
  // reads must outlive the server.
  void AddCollector(CollectFn collect);

 private:
  MetricsServer() = default;

  std::shared_ptr<prometheus::Registry> registry_;
  absl::Mutex mu_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectors_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<prometheus::Exposer> exposer_;  // destroyed first: stops the scrapes
  std::string host_;                              // where to reach the listener from this machine
  int port_ = 0;
};

// OK when `listen` is "HOST:PORT" with a port in 0..65535; INVALID_ARGUMENT naming it otherwise.
[[nodiscard]] absl::Status ValidateListenAddress(const std::string& listen);

// Builders for collectors.
prometheus::MetricFamily CounterFamily(std::string name, std::string help);
prometheus::MetricFamily GaugeFamily(std::string name, std::string help);
prometheus::MetricFamily HistogramFamily(std::string name, std::string help);
// Adds one sample with `labels` ({name, value} pairs) to a family of the matching type.
void AddSample(prometheus::MetricFamily& family, double value,
               std::vector<prometheus::ClientMetric::Label> labels = {});
// Adds a histogram sample to a HistogramFamily.
void AddHistogram(prometheus::MetricFamily& family, const AtomicHistogram::Snapshot& snapshot,
                  std::vector<prometheus::ClientMetric::Label> labels = {});

}  // namespace zmesh::metrics
