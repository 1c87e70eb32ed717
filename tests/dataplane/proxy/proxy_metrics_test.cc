// ProxyMetricFamilies (what zmesh-proxy serves on /metrics) and the MetricsServer it is served
// by: real counters in, Prometheus text out over a loopback socket.
#include "dataplane/proxy/proxy_metrics.h"

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "common/metrics/histogram.h"
#include "common/metrics/metrics_server.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "tests/support/metrics_scrape.h"

namespace zmesh::proxy {
namespace {

using testing::Scrape;

Scrape Serialize(const ProxyStats& stats, const ProxyGauges& gauges) {
  absl::StatusOr<Scrape> scrape =
      Scrape::Parse(prometheus::TextSerializer().Serialize(ProxyMetricFamilies(stats, gauges)));
  EXPECT_TRUE(scrape.ok()) << scrape.status();
  return scrape.ok() ? *std::move(scrape) : Scrape();
}

TEST(ProxyMetricsTest, CountersArePerPatternAndDropsPerPatternAndReason) {
  ProxyStats stats;
  stats.of(Pattern::kCall).received = 5;
  stats.of(Pattern::kCall).received_bytes = 500;
  stats.of(Pattern::kCast).delivered = 7;
  stats.of(Pattern::kCall).answers = 4;
  stats.of(Pattern::kNotify).Count(DropReason::kNoSuchTarget);
  stats.of(Pattern::kNotify).Count(DropReason::kNoSuchTarget);
  stats.of(Pattern::kFanout).stalled_now = 1;
  stats.of(Pattern::kCall).peers = 3;
  stats.fresh_lookups_failed = 2;
  ProxyGauges gauges;
  gauges.directory_connected = true;
  gauges.local_instances = 6;
  gauges.pending_registrations = 9;
  gauges.mirror_lookups = {.hits = 11, .misses = 1};

  const Scrape scrape = Serialize(stats, gauges);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_received_messages_total", {{"pattern", "call"}}), 5);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_received_messages_total", {{"pattern", "cast"}}), 0);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_received_bytes_total", {{"pattern", "call"}}), 500);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_delivered_messages_total", {{"pattern", "cast"}}), 7);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_answers_total", {{"pattern", "call"}}), 4);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_undelivered_messages_total",
                       {{"pattern", "notify"}, {"reason", "no_such_target"}}),
            2);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_undelivered_messages_total"), 2);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_stalled_requests", {{"pattern", "fanout"}}), 1);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_connected_peers", {{"pattern", "call"}}), 3);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_directory_connected"), 1);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_node_registered"), 0);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_local_instances"), 6);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_directory_backlog", {{"queue", "registrations"}}), 9);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_lookup_cache_total", {{"result", "hit"}}), 11);
  EXPECT_EQ(scrape.Sum("zmesh_proxy_directory_lookups_total", {{"result", "failed"}}), 2);
  // Every series exists from the start (rates work from the first scrape), with a fixed label
  // set: 4 patterns, 9 reasons.
  EXPECT_EQ(scrape.Count("zmesh_proxy_received_messages_total"), kPatternCount);
  EXPECT_EQ(scrape.Count("zmesh_proxy_undelivered_messages_total"),
            kPatternCount * kDropReasonCount);
  EXPECT_EQ(scrape.Type("zmesh_proxy_received_messages_total"), "counter");
  EXPECT_EQ(scrape.Type("zmesh_proxy_connected_peers"), "gauge");
}

TEST(ProxyMetricsTest, EveryNameFollowsThePrometheusConventions) {
  const Scrape scrape = Serialize(ProxyStats(), ProxyGauges());
  ASSERT_FALSE(scrape.samples().empty());
  for (const Scrape::Sample& sample : scrape.samples()) {
    EXPECT_TRUE(absl::StartsWith(sample.name, "zmesh_proxy_")) << sample.name;
    const std::string type = scrape.Type(sample.name);
    if (type == "counter") {
      EXPECT_TRUE(absl::EndsWith(sample.name, "_total")) << sample.name;
    } else {
      EXPECT_EQ(type, "gauge") << sample.name;
      EXPECT_FALSE(absl::EndsWith(sample.name, "_total")) << sample.name;
    }
  }
}

TEST(MetricsServerTest, ServesCollectorsAndRegistryMetricsOnAPickedPort) {
  absl::StatusOr<std::unique_ptr<metrics::MetricsServer>> server =
      metrics::MetricsServer::Start("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  int scrapes = 0;
  metrics::AtomicHistogram histogram;
  histogram.Observe(0.003);
  histogram.Observe(20);  // over the last bound: only in +Inf
  (*server)->AddCollector([&] {
    ++scrapes;
    prometheus::MetricFamily gauge = metrics::GaugeFamily("zmesh_test_scrapes", "Scrapes.");
    metrics::AddSample(gauge, scrapes);
    prometheus::MetricFamily latency =
        metrics::HistogramFamily("zmesh_test_duration_seconds", "Latency.");
    metrics::AddHistogram(latency, histogram.Read());
    return std::vector<prometheus::MetricFamily>{gauge, latency};
  });
  absl::StatusOr<Scrape> first = Scrape::Fetch((*server)->port());
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<Scrape> second = Scrape::Fetch((*server)->port());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(first->Sum("zmesh_test_scrapes"), 1);
  EXPECT_EQ(second->Sum("zmesh_test_scrapes"), 2) << "collected at every scrape";
  EXPECT_EQ(second->Sum("zmesh_test_duration_seconds_count"), 2);
  EXPECT_NEAR(second->Sum("zmesh_test_duration_seconds_sum"), 20.003, 1e-6);
  EXPECT_EQ(second->Sum("zmesh_test_duration_seconds_bucket", {{"le", "0.0025"}}), 0);
  EXPECT_EQ(second->Sum("zmesh_test_duration_seconds_bucket", {{"le", "0.005"}}), 1);
  EXPECT_EQ(second->Sum("zmesh_test_duration_seconds_bucket", {{"le", "10"}}), 1);
  EXPECT_EQ(second->Sum("zmesh_test_duration_seconds_bucket", {{"le", "+Inf"}}), 2);
  EXPECT_FALSE(testing::HttpGet((*server)->port(), "/other").ok()) << "only /metrics is served";
}

TEST(MetricsServerTest, BadOrBusyAddressesAreClearErrors) {
  absl::StatusOr<std::unique_ptr<metrics::MetricsServer>> bad =
      metrics::MetricsServer::Start("9100");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "\"9100\" is not HOST:PORT"));
  EXPECT_EQ(metrics::MetricsServer::Start("127.0.0.1:65536").status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<metrics::MetricsServer>> first =
      metrics::MetricsServer::Start("127.0.0.1:0");
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<metrics::MetricsServer>> busy =
      metrics::MetricsServer::Start(absl::StrCat("127.0.0.1:", (*first)->port()));
  EXPECT_EQ(busy.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace zmesh::proxy
