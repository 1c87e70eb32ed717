// What zmesh-proxy serves on /metrics (docs/metrics.md): the pipelines' counters (messages and
// bytes by pattern, refusals, drops by reason, stalls), connected peers, the directory link's
// state and backlog, the mirror, local instances. Everything is read at scrape time from the
// atomics the pipelines bump anyway: no metric work on the message path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dataplane/proxy/mirror.h"
#include "dataplane/proxy/proxy_stats.h"
#include "prometheus/metric_family.h"

namespace zmesh::proxy {

// The proxy's state besides its counters, sampled at scrape time.
struct ProxyGauges {
  bool directory_connected = false;  // the watch stream is up
  bool node_registered = false;      // registered at least once
  int64_t mirror_revision = 0;
  bool mirror_synced = false;
  size_t local_instances = 0;
  size_t pending_registrations = 0;  // registration writes waiting for the directory
  size_t pending_lookups = 0;        // fresh lookups waiting for the directory
  Mirror::LookupCounts mirror_lookups;
};

// The families for `stats` and `gauges`. Thread-safe (reads atomics).
std::vector<prometheus::MetricFamily> ProxyMetricFamilies(const ProxyStats& stats,
                                                          const ProxyGauges& gauges);

}  // namespace zmesh::proxy
