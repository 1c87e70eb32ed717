#include "controlplane/service/directory_metrics.h"

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/descriptor.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/log.h"

namespace zmesh::service {
namespace {

using prometheus::ClientMetric;

// gRPC status code names as grpc-go and grpc-prometheus spell them ("OK", "NOT_FOUND", ...).
const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

// Splits "/pkg.Service/Method" into its labels. Only methods compiled into this binary (the
// protobuf services, and gRPC's own health service, which is not a protobuf one here) get their
// own labels, so a client cannot grow the label set with made-up names.
std::pair<std::string, std::string> MethodLabels(const char* full) {
  const absl::string_view name(full == nullptr ? "" : full);
  const size_t slash = name.rfind('/');
  if (name.size() > 1 && name[0] == '/' && slash != 0 && slash != absl::string_view::npos) {
    const std::string service(name.substr(1, slash - 1));
    const std::string method(name.substr(slash + 1));
    const bool health =
        service == "grpc.health.v1.Health" && (method == "Check" || method == "Watch");
    if (health || google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
                      absl::StrCat(service, ".", method)) != nullptr) {
      return {service, method};
    }
  }
  return {"unknown", "unknown"};
}

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(DirectoryMetrics& metrics, grpc::experimental::ServerRpcInfo* info)
      : metrics_(metrics),
        labels_(MethodLabels(info->method())),
        streaming_(info->type() != grpc::experimental::ServerRpcInfo::Type::UNARY),
        started_(std::chrono::steady_clock::now()) {
    metrics_.RpcStarted(labels_.first, labels_.second, streaming_);
  }
  MetricsInterceptor(const MetricsInterceptor&) = delete;
  MetricsInterceptor& operator=(const MetricsInterceptor&) = delete;
  // The RPC is over (also when the client went away and no status was sent: CANCELLED).
  ~MetricsInterceptor() override {
    metrics_.RpcFinished(
        labels_.first, labels_.second, streaming_, code_,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      code_ = methods->GetSendStatus().error_code();
    }
    methods->Proceed();
  }

 private:
  DirectoryMetrics& metrics_;
  const std::pair<std::string, std::string> labels_;  // service, method
  const bool streaming_;
  const std::chrono::steady_clock::time_point started_;
  grpc::StatusCode code_ = grpc::StatusCode::CANCELLED;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(DirectoryMetrics& metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(metrics_, info);
  }

 private:
  DirectoryMetrics& metrics_;
};

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return prometheus::Histogram::BucketBoundaries(metrics::kLatencyBucketsSeconds.begin(),
                                                 metrics::kLatencyBucketsSeconds.end());
}

}  // namespace

DirectoryMetrics::DirectoryMetrics(metrics::MetricsServer& server, raft::RaftConsensus& consensus,
                                   store::Store& store, WatchHub& hub, LeaseKeeper& keeper)
    : consensus_(consensus),
      store_(store),
      hub_(hub),
      keeper_(keeper),
      grpc_started_(prometheus::BuildCounter()
                        .Name("zmesh_directory_grpc_requests_started_total")
                        .Help("gRPC requests (unary calls and streams) received, by method.")
                        .Register(server.registry())),
      grpc_handled_(prometheus::BuildCounter()
                        .Name("zmesh_directory_grpc_requests_total")
                        .Help("gRPC requests finished, by method and status code (CANCELLED "
                              "when the client went away).")
                        .Register(server.registry())),
      grpc_seconds_(prometheus::BuildHistogram()
                        .Name("zmesh_directory_grpc_request_duration_seconds")
                        .Help("Time to answer a unary gRPC request, by method.")
                        .Register(server.registry())),
      grpc_streams_(prometheus::BuildGauge()
                        .Name("zmesh_directory_grpc_streams_open")
                        .Help("Streaming gRPC requests (Watch, KeepAlive) open now, by method.")
                        .Register(server.registry())) {
  consensus_.AddObserver(this);
  server.AddCollector([this] { return Collect(); });
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
DirectoryMetrics::NewInterceptorFactory() {
  return std::make_unique<MetricsInterceptorFactory>(*this);
}

void DirectoryMetrics::RpcStarted(absl::string_view service, absl::string_view method,
                                  bool streaming) {
  grpc_started_.Add({{"service", std::string(service)}, {"method", std::string(method)}})
      .Increment();
  if (streaming) {
    grpc_streams_.Add({{"service", std::string(service)}, {"method", std::string(method)}})
        .Increment();
  }
}

void DirectoryMetrics::RpcFinished(absl::string_view service, absl::string_view method,
                                   bool streaming, grpc::StatusCode code, double seconds) {
  grpc_handled_
      .Add({{"service", std::string(service)},
            {"method", std::string(method)},
            {"code", CodeName(code)}})
      .Increment();
  if (streaming) {
    grpc_streams_.Add({{"service", std::string(service)}, {"method", std::string(method)}})
        .Decrement();
  } else {
    grpc_seconds_
        .Add({{"service", std::string(service)}, {"method", std::string(method)}}, LatencyBuckets())
        .Observe(seconds);
  }
}

void DirectoryMetrics::OnApplied(const state::v1::Command& command,
                                 const store::CommandResult& result) {
  const int op = static_cast<int>(command.op_case());
  applied_[op >= 0 && op <= kMaxOp ? op : 0].fetch_add(1, std::memory_order_relaxed);
  if (command.op_case() == state::v1::Command::kExpireLeases && result.status.ok()) {
    leases_expired_.fetch_add(result.leases_deleted.size(), std::memory_order_relaxed);
  }
}

std::vector<prometheus::MetricFamily> DirectoryMetrics::Collect() const {
  using metrics::AddHistogram;
  using metrics::AddSample;
  std::vector<prometheus::MetricFamily> out;
  const raft::ConsensusStatus status = consensus_.status();
  const raft::RaftStats& stats = consensus_.stats();

  prometheus::MetricFamily role = metrics::GaugeFamily(
      "zmesh_directory_raft_role", "1 for this replica's current Raft role, 0 for the others.");
  for (raft::Role r : {raft::Role::kLeader, raft::Role::kFollower, raft::Role::kCandidate,
                       raft::Role::kUnavailable}) {
    AddSample(role, status.role == r ? 1 : 0, {{"role", raft::RoleName(r)}});
  }
  out.push_back(std::move(role));
  auto gauge = [&out](const char* name, const char* help, double value) {
    prometheus::MetricFamily family = metrics::GaugeFamily(name, help);
    AddSample(family, value);
    out.push_back(std::move(family));
  };
  auto counter = [&out](const char* name, const char* help, double value) {
    prometheus::MetricFamily family = metrics::CounterFamily(name, help);
    AddSample(family, value);
    out.push_back(std::move(family));
  };
  gauge("zmesh_directory_raft_term", "This replica's current Raft term.",
        static_cast<double>(status.term));
  gauge("zmesh_directory_raft_leader_id", "Replica id of the leader this replica knows (0: none).",
        static_cast<double>(status.leader_id));
  gauge("zmesh_directory_raft_commit_index", "Highest Raft log index known to be committed.",
        static_cast<double>(status.commit_index));
  gauge("zmesh_directory_raft_applied_index", "Highest Raft log index applied to the store.",
        static_cast<double>(status.applied_index));
  gauge("zmesh_directory_raft_last_index", "Highest Raft log index in this replica's log.",
        static_cast<double>(status.last_index));
  int voters = 0;
  for (const raft::MemberInfo& member : consensus_.members()) voters += member.voter ? 1 : 0;
  gauge("zmesh_directory_raft_voters", "Voters in the Raft configuration as this replica knows it.",
        voters);
  counter("zmesh_directory_raft_leader_changes_total",
          "Times this replica saw a new leader (including the first one after it started).",
          static_cast<double>(stats.leader_changes.load(std::memory_order_relaxed)));
  prometheus::MetricFamily proposals = metrics::CounterFamily(
      "zmesh_directory_raft_proposals_total",
      "Changes this replica proposed as leader, by result: committed (applied; possibly a "
      "rejection such as NOT_FOUND) or failed (leadership lost, not committed, Raft error).");
  AddSample(proposals,
            static_cast<double>(stats.proposals_committed.load(std::memory_order_relaxed)),
            {{"result", "committed"}});
  AddSample(proposals, static_cast<double>(stats.proposals_failed.load(std::memory_order_relaxed)),
            {{"result", "failed"}});
  out.push_back(std::move(proposals));
  prometheus::MetricFamily proposal_seconds = metrics::HistogramFamily(
      "zmesh_directory_raft_proposal_duration_seconds",
      "Time from proposing a change on the leader to its being applied there (committed ones).");
  AddHistogram(proposal_seconds, stats.proposal_seconds.Read());
  out.push_back(std::move(proposal_seconds));
  prometheus::MetricFamily apply_seconds =
      metrics::HistogramFamily("zmesh_directory_store_apply_duration_seconds",
                               "Time to apply one committed command to the SQLite store.");
  AddHistogram(apply_seconds, consensus_.apply_seconds().Read());
  out.push_back(std::move(apply_seconds));
  prometheus::MetricFamily snapshots = metrics::CounterFamily(
      "zmesh_directory_raft_snapshots_total",
      "Raft snapshots taken by this replica, or restored from the leader's.");
  AddSample(snapshots, static_cast<double>(consensus_.snapshots_taken()), {{"op", "taken"}});
  AddSample(snapshots, static_cast<double>(consensus_.snapshots_restored()), {{"op", "restored"}});
  out.push_back(std::move(snapshots));

  prometheus::MetricFamily applied = metrics::CounterFamily(
      "zmesh_directory_commands_applied_total",
      "Replicated commands applied to this replica's store, by command type.");
  const google::protobuf::Descriptor* descriptor = state::v1::Command::descriptor();
  for (int op = 1; op <= kMaxOp; ++op) {
    const google::protobuf::FieldDescriptor* field = descriptor->FindFieldByNumber(op);
    if (field == nullptr || field->containing_oneof() == nullptr) continue;
    AddSample(applied, static_cast<double>(applied_[op].load(std::memory_order_relaxed)),
              {{"command", field->name()}});
  }
  out.push_back(std::move(applied));
  counter("zmesh_directory_leases_expired_total",
          "Leases deleted because their TTL ran out (their nodes and registrations went with "
          "them).",
          static_cast<double>(leases_expired_.load(std::memory_order_relaxed)));

  absl::StatusOr<store::StoreStats> store_stats = store_.Stats();
  if (store_stats.ok()) {
    gauge("zmesh_directory_revision", "Revision of the replicated state on this replica.",
          static_cast<double>(store_stats->revision));
    gauge("zmesh_directory_nodes", "Nodes (proxies) registered.",
          static_cast<double>(store_stats->nodes));
    gauge("zmesh_directory_registrations", "Registrations (target -> node) in the directory.",
          static_cast<double>(store_stats->registrations));
    gauge("zmesh_directory_leases", "Leases alive in the replicated state.",
          static_cast<double>(store_stats->leases));
    gauge("zmesh_directory_store_size_bytes", "Size of the SQLite database.",
          static_cast<double>(store_stats->db_size_bytes));
  } else {
    ZLOG_DEBUG("metrics: reading store stats: %s", store_stats.status().ToString());
  }
  gauge("zmesh_directory_leases_timed",
        "Leases whose TTL this replica is timing (the leader's; 0 on followers).",
        static_cast<double>(keeper_.size()));
  gauge("zmesh_directory_watchers", "Watch streams registered with this replica.",
        static_cast<double>(hub_.size()));
  return out;
}

}  // namespace zmesh::service
