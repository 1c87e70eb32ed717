// DirectoryMetrics: what a zmesh-directory replica serves on /metrics (docs/metrics.md):
// Raft role, term, indexes, proposals and their latency, store apply latency, the replicated
// state's size (nodes, registrations, leases, revision), watchers, applied commands by type, and
// gRPC requests by method and code with their latency (a server interceptor).
//
// Counting is done where it is cheap (atomics on the apply thread, prometheus-cpp counters in
// the interceptor); everything else is read at scrape time.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include <grpcpp/support/server_interceptor.h>

#include "common/metrics/metrics_server.h"
#include "controlplane/raft/raft_consensus.h"
#include "controlplane/service/lease_keeper.h"
#include "controlplane/service/watch_hub.h"
#include "controlplane/store/store.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"

namespace zmesh::service {

// Thread-safe. Create before the consensus starts (it observes applied commands), keep alive
// while the metrics server, the gRPC server or the consensus may call it.
class DirectoryMetrics final : public raft::ApplyObserver {
 public:
  // Registers its families with `server`; every reference must outlive this object.
  DirectoryMetrics(metrics::MetricsServer& server, raft::RaftConsensus& consensus,
                   store::Store& store, WatchHub& hub, LeaseKeeper& keeper);
  DirectoryMetrics(const DirectoryMetrics&) = delete;
  DirectoryMetrics& operator=(const DirectoryMetrics&) = delete;

  // For grpc::ServerBuilder::experimental().SetInterceptorCreators; the factory refers to this
  // object.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewInterceptorFactory();

  void OnApplied(const state::v1::Command& command, const store::CommandResult& result) override;

  // Called by the interceptor.
  void RpcStarted(absl::string_view service, absl::string_view method, bool streaming);
  void RpcFinished(absl::string_view service, absl::string_view method, bool streaming,
                   grpc::StatusCode code, double seconds);

 private:
  std::vector<prometheus::MetricFamily> Collect() const;

  raft::RaftConsensus& consensus_;
  store::Store& store_;
  WatchHub& hub_;
  LeaseKeeper& keeper_;

  // By Command.op field number (0: none).
  static constexpr int kMaxOp = 16;
  std::array<std::atomic<uint64_t>, kMaxOp + 1> applied_{};
  std::atomic<uint64_t> leases_expired_{0};

  // prometheus-cpp families (thread-safe; owned by the server's registry).
  prometheus::Family<prometheus::Counter>& grpc_started_;
  prometheus::Family<prometheus::Counter>& grpc_handled_;
  prometheus::Family<prometheus::Histogram>& grpc_seconds_;
  prometheus::Family<prometheus::Gauge>& grpc_streams_;
};

}  // namespace zmesh::service
