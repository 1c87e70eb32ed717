#include "dataplane/proxy/proxy_metrics.h"

#include <string>
#include <utility>

#include "common/metrics/metrics_server.h"

namespace zmesh::proxy {
namespace {

using metrics::AddSample;

// One family with a sample per pattern, from a PipelineStats field.
prometheus::MetricFamily PerPattern(prometheus::MetricFamily family, const ProxyStats& stats,
                                    std::atomic<int64_t> PipelineStats::*field) {
  for (int i = 0; i < kPatternCount; ++i) {
    const Pattern pattern = static_cast<Pattern>(i);
    AddSample(family,
              static_cast<double>((stats.of(pattern).*field).load(std::memory_order_relaxed)),
              {{"pattern", std::string(PatternName(pattern))}});
  }
  return family;
}

double Load(const std::atomic<int64_t>& value) {
  return static_cast<double>(value.load(std::memory_order_relaxed));
}

}  // namespace

std::vector<prometheus::MetricFamily> ProxyMetricFamilies(const ProxyStats& stats,
                                                          const ProxyGauges& gauges) {
  std::vector<prometheus::MetricFamily> out;
  out.push_back(PerPattern(
      metrics::CounterFamily("zmesh_proxy_received_messages_total",
                             "Messages read from the pattern's network port (requests from "
                             "callers, valid or not)."),
      stats, &PipelineStats::received));
  out.push_back(PerPattern(
      metrics::CounterFamily("zmesh_proxy_received_bytes_total",
                             "Header and payload bytes of the messages read from the network."),
      stats, &PipelineStats::received_bytes));
  out.push_back(PerPattern(
      metrics::CounterFamily("zmesh_proxy_delivered_messages_total",
                             "Copies of requests handed to local instances (a FANOUT or NOTIFY "
                             "counts one per instance reached)."),
      stats, &PipelineStats::delivered));
  out.push_back(PerPattern(
      metrics::CounterFamily("zmesh_proxy_delivered_bytes_total",
                             "Header and payload bytes of the copies handed to local instances."),
      stats, &PipelineStats::delivered_bytes));
  out.push_back(PerPattern(
      metrics::CounterFamily("zmesh_proxy_answers_total",
                             "Replies, heartbeats and acks of local instances sent back to "
                             "callers."),
      stats, &PipelineStats::answers));
  out.push_back(PerPattern(
      metrics::CounterFamily("zmesh_proxy_answer_bytes_total",
                             "Header and payload bytes of the answers sent back to callers."),
      stats, &PipelineStats::answer_bytes));
  out.push_back(
      PerPattern(metrics::CounterFamily(
                     "zmesh_proxy_refusals_total",
                     "Refusals the proxy answered itself (bad message, no such target, "
                     "...); each is also counted in zmesh_proxy_undelivered_messages_total."),
                 stats, &PipelineStats::refused));
  prometheus::MetricFamily undelivered = metrics::CounterFamily(
      "zmesh_proxy_undelivered_messages_total",
      "Messages not delivered, by pattern and reason (refused with an answer, or dropped).");
  for (int i = 0; i < kPatternCount; ++i) {
    const Pattern pattern = static_cast<Pattern>(i);
    for (int r = 0; r < kDropReasonCount; ++r) {
      const DropReason reason = static_cast<DropReason>(r);
      AddSample(undelivered, static_cast<double>(stats.of(pattern).drop(reason)),
                {{"pattern", std::string(PatternName(pattern))},
                 {"reason", std::string(DropReasonName(reason))}});
    }
  }
  out.push_back(std::move(undelivered));
  out.push_back(PerPattern(
      metrics::CounterFamily("zmesh_proxy_stalls_total",
                             "Requests held because a local instance's queue was full (the "
                             "pipeline stops reading the network until it drains)."),
      stats, &PipelineStats::stalls));
  out.push_back(PerPattern(
      metrics::GaugeFamily("zmesh_proxy_stalled_requests",
                           "Requests held now, waiting for room in a local instance's queue "
                           "(0 or 1 per pattern)."),
      stats, &PipelineStats::stalled_now));
  out.push_back(PerPattern(
      metrics::GaugeFamily("zmesh_proxy_connected_peers",
                           "TCP connections on the pattern's network port (clients and proxies "
                           "of other nodes)."),
      stats, &PipelineStats::peers));

  auto single = [&out](prometheus::MetricFamily family, double value) {
    AddSample(family, value);
    out.push_back(std::move(family));
  };
  single(metrics::GaugeFamily("zmesh_proxy_local_instances",
                              "Local server and listener instances connected to this proxy."),
         static_cast<double>(gauges.local_instances));
  single(metrics::CounterFamily("zmesh_proxy_control_malformed_total",
                                "Control frames from local instances that were not a valid "
                                "request."),
         Load(stats.control_malformed));
  single(metrics::CounterFamily("zmesh_proxy_instances_dropped_total",
                                "Local instances dropped after a silence (their targets "
                                "withdrawn)."),
         Load(stats.instances_dropped));
  single(metrics::GaugeFamily("zmesh_proxy_directory_connected",
                              "1 while the watch stream to a directory replica is up."),
         gauges.directory_connected ? 1 : 0);
  single(metrics::GaugeFamily("zmesh_proxy_node_registered",
                              "1 once this node has been registered in the directory."),
         gauges.node_registered ? 1 : 0);
  single(metrics::CounterFamily("zmesh_proxy_directory_writes_total",
                                "Registrations written to or removed from the directory."),
         Load(stats.directory_writes));
  single(metrics::CounterFamily("zmesh_proxy_leases_granted_total",
                                "Leases granted to this node (more than one: the lease was lost "
                                "and the node registered again)."),
         Load(stats.leases_granted));
  prometheus::MetricFamily backlog = metrics::GaugeFamily(
      "zmesh_proxy_directory_backlog",
      "Work waiting for the directory: registrations to write or remove, fresh lookups.");
  AddSample(backlog, static_cast<double>(gauges.pending_registrations),
            {{"queue", "registrations"}});
  AddSample(backlog, static_cast<double>(gauges.pending_lookups), {{"queue", "lookups"}});
  out.push_back(std::move(backlog));
  single(metrics::GaugeFamily("zmesh_proxy_mirror_revision",
                              "Directory revision of the proxy's mirror (its lookup cache)."),
         static_cast<double>(gauges.mirror_revision));
  single(metrics::GaugeFamily("zmesh_proxy_mirror_synced",
                              "1 once the mirror holds the directory's state."),
         gauges.mirror_synced ? 1 : 0);
  prometheus::MetricFamily cache = metrics::CounterFamily(
      "zmesh_proxy_lookup_cache_total",
      "Lookup answers computed from the mirror (for local instances' lookups and the updates "
      "pushed to them): hit when it names a server, miss when the mirror knows none.");
  AddSample(cache, static_cast<double>(gauges.mirror_lookups.hits), {{"result", "hit"}});
  AddSample(cache, static_cast<double>(gauges.mirror_lookups.misses), {{"result", "miss"}});
  out.push_back(std::move(cache));
  prometheus::MetricFamily fresh = metrics::CounterFamily(
      "zmesh_proxy_directory_lookups_total",
      "Fresh lookups asked of the directory for local instances, by result (failed and expired "
      "ones were answered from the mirror).");
  AddSample(fresh, Load(stats.fresh_lookups_ok), {{"result", "ok"}});
  AddSample(fresh, Load(stats.fresh_lookups_failed), {{"result", "failed"}});
  AddSample(fresh, Load(stats.fresh_lookups_expired), {{"result", "expired"}});
  out.push_back(std::move(fresh));
  return out;
}

}  // namespace zmesh::proxy
