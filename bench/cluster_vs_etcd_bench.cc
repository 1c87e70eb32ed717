// zmesh-bench-cluster: the same workloads, in one run, against a 3-replica zmesh-directory cluster
// and a 3-member etcd cluster (Debian's etcd 3.4), both on loopback and both driven by the same C++
// gRPC client code, then a table with ops/s, p50/p99 latency and the zmesh/etcd ratios.
//
// Cases (each at 1 and at --many-clients clients; every client has its own channel and TCP
// connection; client i talks to member i % 3 with the leader listed last, so a single client talks
// to a follower, as most clients of a 3-member cluster do):
//   register   zmesh Register of a new registration on a node bound to a lease
//              vs etcd Put of a new key with a lease id (the value: the same Registration,
//              encoded);
//   lookup-lin zmesh Lookup (CONSISTENCY_LINEARIZABLE) of a topic with 10 registrations
//              vs etcd Range (serializable = false) of a prefix with 10 keys;
//   lookup-stale  the same with CONSISTENCY_STALE vs serializable = true;
//   failover   SIGKILL the leader, time until the first acknowledged write; the client keeps
//              sending writes to every member (one every kFailoverProbeIntervalMs to each, each
//              with its own deadline) and the first success stops the clock. Median of --failovers
//              runs; the killed member is restarted and the cluster healthy again between runs.
// The zmesh and etcd runs of each case alternate, so background load on the machine hits both
// alike. A plain main() rather than Google Benchmark: the unit of comparison is a pair of runs
// against two live clusters plus a failover series, which Google Benchmark's per-function
// repetitions do not express; see bench/README.md.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "bench/etcd/etcd_cluster.h"
#include "common/flags.h"
#include "etcd/etcd_subset.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/support/cluster_process.h"
#include "tests/support/subprocess.h"
#include "zmesh/directory/v1/directory.grpc.pb.h"
#include "zmesh/directory/v1/lease.grpc.pb.h"

ABSL_FLAG(bool, quick, false,
          "Smoke run: short cases and one failover per system (well under 20 s in all).");
ABSL_FLAG(std::string, benchmark_min_time, "",
          "Accepted so that scripts/test can smoke-run every zmesh-bench-* binary alike: any "
          "value means --quick.");
ABSL_FLAG(int64_t, duration_ms, 5000, "Measured time of each case, per system.");
ABSL_FLAG(int64_t, warmup_ms, 1000, "Unmeasured load before each case's measured time.");
ABSL_FLAG(int32_t, many_clients, 16, "Concurrent clients of the many-client cases.");
ABSL_FLAG(int32_t, failovers, 5, "Leader kills per system (the median is reported).");
ABSL_FLAG(std::string, etcd, "/usr/bin/etcd", "The etcd server binary (Debian's etcd-server).");
ABSL_FLAG(int32_t, etcd_heartbeat_ms, 100, "etcd --heartbeat-interval (etcd's default: 100).");
ABSL_FLAG(int32_t, etcd_election_timeout_ms, 1000,
          "etcd --election-timeout (etcd's default: 1000; zmesh-directory's default is 200).");

namespace zmesh::bench {
namespace {

namespace v1 = ::zmesh::directory::v1;
using Clock = std::chrono::steady_clock;

constexpr int kMembers = 3;
constexpr char kExchange[] = "openstack";
constexpr char kNode[] = "bench-node";
constexpr char kLookupTopic[] = "bench.lookup";
constexpr int kLookupRegistrations = 10;
// etcd keys mirror the directory's identity of a registration.
constexpr char kEtcdPrefix[] = "/zmesh/openstack/";
constexpr int64_t kLeaseTtlMs = 600000;  // outlives the run: nothing expires while measuring
constexpr int64_t kRequestTimeoutMs = 10000;
constexpr int64_t kFailoverProbeIntervalMs = 10;
constexpr int64_t kFailoverProbeTimeoutMs = 1000;
constexpr int64_t kFailoverGiveUpMs = 30000;
constexpr int64_t kHealthyTimeoutMs = 30000;

enum class Workload { kRegister, kLookupLinearizable, kLookupStale };

const char* WorkloadName(Workload workload) {
  switch (workload) {
    case Workload::kRegister:
      return "register+lease / put+lease";
    case Workload::kLookupLinearizable:
      return "lookup linearizable / range";
    case Workload::kLookupStale:
      return "lookup stale / range serializable";
  }
  return "?";
}

std::chrono::system_clock::time_point DeadlineIn(int64_t ms) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
}

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// A channel of its own (its own TCP connection, not one shared through the global subchannel
// pool), connected before it is returned.
absl::StatusOr<std::shared_ptr<grpc::Channel>> NewConnectedChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(DeadlineIn(5000))) {
    return absl::UnavailableError(absl::StrCat("cannot connect to ", address));
  }
  return channel;
}

absl::Status FromGrpc(const std::string& what, const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat(what, ": ", status.error_message(), " (gRPC code ", status.error_code(), ")"));
}

// Makes every registration / key of the register case unique across clients, cases and systems.
std::atomic<int64_t> g_next_registration{0};

v1::Registration NewRegistration(int64_t n, const std::string& topic = "") {
  v1::Registration registration;
  registration.set_exchange(kExchange);
  registration.set_topic(topic.empty() ? absl::StrCat("bench.register.", n / 100) : topic);
  registration.set_server(absl::StrCat("server-", n));
  registration.set_kind(v1::KIND_RPC_SERVER);
  registration.set_node(kNode);
  return registration;
}

v1::Node BenchNode(int64_t lease_id) {
  v1::Node node;
  node.set_name(kNode);
  node.set_host("127.0.0.1");
  node.set_call_port(9501);
  node.set_fanout_port(9502);
  node.set_notify_port(9503);
  node.set_cast_port(9504);
  node.set_lease_id(lease_id);
  return node;
}

std::string EtcdKey(const v1::Registration& registration) {
  return absl::StrCat(kEtcdPrefix, registration.topic(), "/", registration.node(), "/",
                      registration.server());
}

// One client of a throughput case: owns one channel. Not thread-safe (one thread per client).
class Client {
 public:
  virtual ~Client() = default;
  // One request; an error when it fails or the answer is not the expected one.
  virtual absl::Status Do() = 0;
};

// One asynchronous write of a failover probe; its address is the completion-queue tag.
struct Attempt {
  virtual ~Attempt() = default;
  grpc::ClientContext context;
  grpc::Status status;
};
template <typename Response>
struct UnaryAttempt : Attempt {
  Response response;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader;
};
// Starts one probe write to member `index` on `cq`, tagged with the returned attempt.
using StartAttempt = std::function<std::unique_ptr<Attempt>(int index, grpc::CompletionQueue& cq)>;

// Sends a probe write to each of `members` every kFailoverProbeIntervalMs until one is
// acknowledged; returns the milliseconds from `since` to that acknowledgement.
absl::StatusOr<double> TimeToFirstWrite(int members, const StartAttempt& start_attempt,
                                        Clock::time_point since) {
  grpc::CompletionQueue cq;
  std::map<void*, std::unique_ptr<Attempt>> pending;
  const Clock::time_point give_up = since + std::chrono::milliseconds(kFailoverGiveUpMs);
  Clock::time_point next_round = Clock::now();
  std::optional<double> acked_ms;
  std::string last_error = "no answer";
  while (!acked_ms.has_value() && Clock::now() < give_up) {
    if (Clock::now() >= next_round) {
      for (int i = 0; i < members; ++i) {
        std::unique_ptr<Attempt> attempt = start_attempt(i, cq);
        void* tag = attempt.get();
        pending.emplace(tag, std::move(attempt));
      }
      next_round += std::chrono::milliseconds(kFailoverProbeIntervalMs);
    }
    const Clock::time_point wake = std::min(next_round, give_up);
    void* tag = nullptr;
    bool ok = false;
    const grpc::CompletionQueue::NextStatus next =
        cq.AsyncNext(&tag, &ok, std::chrono::system_clock::now() + (wake - Clock::now()));
    if (next != grpc::CompletionQueue::GOT_EVENT) continue;
    auto it = pending.find(tag);
    if (it == pending.end()) continue;
    if (it->second->status.ok()) {
      acked_ms = MillisSince(since);
    } else {
      last_error = it->second->status.error_message();
    }
    pending.erase(it);
  }
  for (auto& [tag, attempt] : pending) attempt->context.TryCancel();
  while (!pending.empty()) {
    void* tag = nullptr;
    bool ok = false;
    if (!cq.Next(&tag, &ok)) break;
    pending.erase(tag);
  }
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
  if (!acked_ms.has_value()) {
    return absl::DeadlineExceededError(absl::StrCat("no write acknowledged ", kFailoverGiveUpMs,
                                                    " ms after the kill (last: ", last_error, ")"));
  }
  return *acked_ms;
}

// A replicated store under test. Created and used on main()'s thread only; the clients it makes
// run on their own threads.
class System {
 public:
  virtual ~System() = default;
  virtual const char* name() const = 0;
  // Client addresses of the members, the leader last.
  [[nodiscard]] virtual absl::StatusOr<std::vector<std::string>> MembersLeaderLast() = 0;
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<Client>> NewClient(
      Workload workload, const std::string& address) = 0;
  // SIGKILLs the leader and returns the milliseconds until the first acknowledged write; then
  // restarts the killed member and waits until the cluster is healthy again.
  [[nodiscard]] virtual absl::StatusOr<double> Failover() = 0;
  // Stops every member cleanly.
  [[nodiscard]] virtual absl::Status Stop() = 0;
};

// ---- zmesh-directory ----------------------------------------------------------------------------

class ZmeshRegisterClient : public Client {
 public:
  explicit ZmeshRegisterClient(std::shared_ptr<grpc::Channel> channel)
      : stub_(v1::Directory::NewStub(std::move(channel))) {}
  absl::Status Do() override {
    v1::RegisterRequest request;
    *request.mutable_registration() = NewRegistration(g_next_registration.fetch_add(1));
    v1::RegisterResponse response;
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(kRequestTimeoutMs));
    if (absl::Status st = FromGrpc("Register", stub_->Register(&context, request, &response));
        !st.ok()) {
      return st;
    }
    if (!response.created()) return absl::InternalError("Register: registration existed");
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<v1::Directory::Stub> stub_;
};

class ZmeshLookupClient : public Client {
 public:
  ZmeshLookupClient(std::shared_ptr<grpc::Channel> channel, v1::Consistency consistency)
      : stub_(v1::Directory::NewStub(std::move(channel))) {
    request_.set_exchange(kExchange);
    request_.set_topic(kLookupTopic);
    request_.mutable_read()->set_consistency(consistency);
  }
  absl::Status Do() override {
    v1::LookupResponse response;
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(kRequestTimeoutMs));
    if (absl::Status st = FromGrpc("Lookup", stub_->Lookup(&context, request_, &response));
        !st.ok()) {
      return st;
    }
    if (response.endpoints_size() != kLookupRegistrations) {
      return absl::InternalError(absl::StrCat("Lookup: ", response.endpoints_size(),
                                              " endpoints, not ", kLookupRegistrations));
    }
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<v1::Directory::Stub> stub_;
  v1::LookupRequest request_;
};

class ZmeshSystem : public System {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ZmeshSystem>> Start(
      const std::string& base_dir) {
    testing::ClusterOptions options;
    options.replicas = kMembers;
    options.extra_args = {"--log-level", "warning"};
    absl::StatusOr<std::unique_ptr<testing::ClusterProcess>> cluster =
        testing::ClusterProcess::Start(base_dir, options);
    if (!cluster.ok()) {
      return absl::Status(cluster.status().code(),
                          absl::StrCat("starting zmesh-directory: ", cluster.status().message()));
    }
    std::unique_ptr<ZmeshSystem> system(new ZmeshSystem(*std::move(cluster)));
    if (absl::Status st = system->Populate(); !st.ok()) return st;
    return system;
  }

  const char* name() const override { return "zmesh"; }

  absl::StatusOr<std::vector<std::string>> MembersLeaderLast() override {
    absl::StatusOr<uint64_t> leader = cluster_->WaitForLeader(kHealthyTimeoutMs);
    if (!leader.ok()) return leader.status();
    std::vector<std::string> members;
    for (uint64_t id : cluster_->ids()) {
      if (id != *leader) members.push_back(cluster_->grpc_address(id));
    }
    members.push_back(cluster_->grpc_address(*leader));
    return members;
  }

  absl::StatusOr<std::unique_ptr<Client>> NewClient(Workload workload,
                                                    const std::string& address) override {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = NewConnectedChannel(address);
    if (!channel.ok()) return channel.status();
    switch (workload) {
      case Workload::kRegister:
        return std::make_unique<ZmeshRegisterClient>(*channel);
      case Workload::kLookupLinearizable:
        return std::make_unique<ZmeshLookupClient>(*channel, v1::CONSISTENCY_LINEARIZABLE);
      case Workload::kLookupStale:
        return std::make_unique<ZmeshLookupClient>(*channel, v1::CONSISTENCY_STALE);
    }
    return absl::InvalidArgumentError("unknown workload");
  }

  absl::StatusOr<double> Failover() override {
    absl::StatusOr<uint64_t> leader = cluster_->WaitForLeader(kHealthyTimeoutMs);
    if (!leader.ok()) return leader.status();
    std::vector<std::unique_ptr<v1::Directory::Stub>> stubs;
    for (uint64_t id : cluster_->ids()) {
      absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
          NewConnectedChannel(cluster_->grpc_address(id));
      if (!channel.ok()) return channel.status();
      stubs.push_back(v1::Directory::NewStub(*channel));
    }
    const Clock::time_point killed_at = Clock::now();
    cluster_->Kill(*leader);
    absl::StatusOr<double> ms = TimeToFirstWrite(
        static_cast<int>(stubs.size()),
        [&](int index, grpc::CompletionQueue& cq) -> std::unique_ptr<Attempt> {
          auto attempt = std::make_unique<UnaryAttempt<v1::RegisterResponse>>();
          v1::RegisterRequest request;
          *request.mutable_registration() = NewRegistration(g_next_registration.fetch_add(1));
          attempt->context.set_deadline(DeadlineIn(kFailoverProbeTimeoutMs));
          attempt->reader = stubs[index]->AsyncRegister(&attempt->context, request, &cq);
          attempt->reader->Finish(&attempt->response, &attempt->status, attempt.get());
          return attempt;
        },
        killed_at);
    if (!ms.ok()) return ms.status();
    if (absl::Status st = cluster_->Restart(*leader); !st.ok()) return st;
    if (absl::Status st = WaitHealthy(); !st.ok()) return st;
    return *ms;
  }

  absl::Status Stop() override {
    absl::Status result;
    for (uint64_t id : cluster_->ids()) {
      if (cluster_->running(id)) result.Update(cluster_->Stop(id));
    }
    return result;
  }

 private:
  explicit ZmeshSystem(std::unique_ptr<testing::ClusterProcess> cluster)
      : cluster_(std::move(cluster)) {}

  // A leased node with the lookup topic's registrations; done when every replica serves them.
  absl::Status Populate() {
    absl::StatusOr<std::vector<std::string>> members = MembersLeaderLast();
    if (!members.ok()) return members.status();
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = NewConnectedChannel(members->back());
    if (!channel.ok()) return channel.status();
    auto leases = v1::Leases::NewStub(*channel);
    auto directory = v1::Directory::NewStub(*channel);

    v1::GrantRequest grant;
    grant.set_ttl_ms(kLeaseTtlMs);
    v1::GrantResponse granted;
    grpc::ClientContext grant_context;
    grant_context.set_deadline(DeadlineIn(kRequestTimeoutMs));
    if (absl::Status st = FromGrpc("zmesh Grant", leases->Grant(&grant_context, grant, &granted));
        !st.ok()) {
      return st;
    }
    v1::RegisterNodeRequest node_request;
    *node_request.mutable_node() = BenchNode(granted.id());
    node_request.set_lease_id(granted.id());
    v1::RegisterNodeResponse node_response;
    grpc::ClientContext node_context;
    node_context.set_deadline(DeadlineIn(kRequestTimeoutMs));
    if (absl::Status st =
            FromGrpc("zmesh RegisterNode",
                     directory->RegisterNode(&node_context, node_request, &node_response));
        !st.ok()) {
      return st;
    }
    for (int i = 0; i < kLookupRegistrations; ++i) {
      v1::RegisterRequest request;
      *request.mutable_registration() = NewRegistration(i, kLookupTopic);
      request.mutable_registration()->set_server(absl::StrCat("compute-", i));
      v1::RegisterResponse response;
      grpc::ClientContext context;
      context.set_deadline(DeadlineIn(kRequestTimeoutMs));
      if (absl::Status st =
              FromGrpc("zmesh Register", directory->Register(&context, request, &response));
          !st.ok()) {
        return st;
      }
    }
    return WaitHealthy();
  }

  // Every running replica answers a linearizable and a stale Lookup with all registrations.
  absl::Status WaitHealthy() {
    std::string last_error = "no answer yet";
    const bool healthy = testing::Eventually(
        [&] {
          for (uint64_t id : cluster_->ids()) {
            if (!cluster_->running(id)) continue;
            for (Workload workload : {Workload::kLookupLinearizable, Workload::kLookupStale}) {
              absl::StatusOr<std::unique_ptr<Client>> client =
                  NewClient(workload, cluster_->grpc_address(id));
              absl::Status st = client.ok() ? (*client)->Do() : client.status();
              if (!st.ok()) {
                last_error = absl::StrCat("replica ", id, ": ", st.message());
                return false;
              }
            }
          }
          return true;
        },
        kHealthyTimeoutMs);
    if (!healthy) {
      return absl::DeadlineExceededError(
          absl::StrCat("zmesh cluster not healthy in time (", last_error, ")"));
    }
    return absl::OkStatus();
  }

  std::unique_ptr<testing::ClusterProcess> cluster_;
};

// ---- etcd ---------------------------------------------------------------------------------------

class EtcdPutClient : public Client {
 public:
  EtcdPutClient(std::shared_ptr<grpc::Channel> channel, int64_t lease_id)
      : stub_(etcdserverpb::KV::NewStub(std::move(channel))), lease_id_(lease_id) {}
  absl::Status Do() override {
    const v1::Registration registration = NewRegistration(g_next_registration.fetch_add(1));
    etcdserverpb::PutRequest request;
    request.set_key(EtcdKey(registration));
    request.set_value(registration.SerializeAsString());
    request.set_lease(lease_id_);
    etcdserverpb::PutResponse response;
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(kRequestTimeoutMs));
    return FromGrpc("etcd Put", stub_->Put(&context, request, &response));
  }

 private:
  std::unique_ptr<etcdserverpb::KV::Stub> stub_;
  int64_t lease_id_;
};

class EtcdRangeClient : public Client {
 public:
  EtcdRangeClient(std::shared_ptr<grpc::Channel> channel, bool serializable)
      : stub_(etcdserverpb::KV::NewStub(std::move(channel))) {
    const std::string prefix = absl::StrCat(kEtcdPrefix, kLookupTopic, "/");
    std::string end = prefix;
    end.back() = static_cast<char>(end.back() + 1);  // '/' + 1: every key under the prefix
    request_.set_key(prefix);
    request_.set_range_end(end);
    request_.set_serializable(serializable);
  }
  absl::Status Do() override {
    etcdserverpb::RangeResponse response;
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(kRequestTimeoutMs));
    if (absl::Status st = FromGrpc("etcd Range", stub_->Range(&context, request_, &response));
        !st.ok()) {
      return st;
    }
    if (response.kvs_size() != kLookupRegistrations) {
      return absl::InternalError(
          absl::StrCat("etcd Range: ", response.kvs_size(), " keys, not ", kLookupRegistrations));
    }
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<etcdserverpb::KV::Stub> stub_;
  etcdserverpb::RangeRequest request_;
};

class EtcdSystem : public System {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EtcdSystem>> Start(
      const std::string& base_dir, const EtcdOptions& options) {
    absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(base_dir, options);
    if (!cluster.ok()) {
      return absl::Status(cluster.status().code(),
                          absl::StrCat("starting etcd: ", cluster.status().message()));
    }
    std::unique_ptr<EtcdSystem> system(new EtcdSystem(*std::move(cluster)));
    if (absl::Status st = system->Populate(); !st.ok()) return st;
    return system;
  }

  const char* name() const override { return "etcd"; }

  absl::StatusOr<std::vector<std::string>> MembersLeaderLast() override {
    absl::StatusOr<int> leader = cluster_->WaitForLeader(kHealthyTimeoutMs);
    if (!leader.ok()) return leader.status();
    std::vector<std::string> members;
    for (int i = 0; i < cluster_->size(); ++i) {
      if (i != *leader) members.push_back(cluster_->client_address(i));
    }
    members.push_back(cluster_->client_address(*leader));
    return members;
  }

  absl::StatusOr<std::unique_ptr<Client>> NewClient(Workload workload,
                                                    const std::string& address) override {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = NewConnectedChannel(address);
    if (!channel.ok()) return channel.status();
    switch (workload) {
      case Workload::kRegister:
        return std::make_unique<EtcdPutClient>(*channel, lease_id_);
      case Workload::kLookupLinearizable:
        return std::make_unique<EtcdRangeClient>(*channel, /*serializable=*/false);
      case Workload::kLookupStale:
        return std::make_unique<EtcdRangeClient>(*channel, /*serializable=*/true);
    }
    return absl::InvalidArgumentError("unknown workload");
  }

  absl::StatusOr<double> Failover() override {
    absl::StatusOr<int> leader = cluster_->WaitForLeader(kHealthyTimeoutMs);
    if (!leader.ok()) return leader.status();
    std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> stubs;
    for (int i = 0; i < cluster_->size(); ++i) {
      absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
          NewConnectedChannel(cluster_->client_address(i));
      if (!channel.ok()) return channel.status();
      stubs.push_back(etcdserverpb::KV::NewStub(*channel));
    }
    const Clock::time_point killed_at = Clock::now();
    cluster_->Kill(*leader);
    absl::StatusOr<double> ms = TimeToFirstWrite(
        static_cast<int>(stubs.size()),
        [&](int index, grpc::CompletionQueue& cq) -> std::unique_ptr<Attempt> {
          auto attempt = std::make_unique<UnaryAttempt<etcdserverpb::PutResponse>>();
          const v1::Registration registration = NewRegistration(g_next_registration.fetch_add(1));
          etcdserverpb::PutRequest request;
          request.set_key(EtcdKey(registration));
          request.set_value(registration.SerializeAsString());
          request.set_lease(lease_id_);
          attempt->context.set_deadline(DeadlineIn(kFailoverProbeTimeoutMs));
          attempt->reader = stubs[index]->AsyncPut(&attempt->context, request, &cq);
          attempt->reader->Finish(&attempt->response, &attempt->status, attempt.get());
          return attempt;
        },
        killed_at);
    if (!ms.ok()) return ms.status();
    if (absl::Status st = cluster_->Restart(*leader); !st.ok()) return st;
    if (absl::Status st = WaitServing(); !st.ok()) return st;
    return *ms;
  }

  absl::Status Stop() override { return cluster_->Stop(); }

 private:
  explicit EtcdSystem(std::unique_ptr<EtcdCluster> cluster) : cluster_(std::move(cluster)) {}

  // A lease and the lookup prefix's keys (the same Endpoints zmesh's Lookup returns, encoded).
  absl::Status Populate() {
    absl::StatusOr<std::vector<std::string>> members = MembersLeaderLast();
    if (!members.ok()) return members.status();
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = NewConnectedChannel(members->back());
    if (!channel.ok()) return channel.status();
    auto lease = etcdserverpb::Lease::NewStub(*channel);
    auto kv = etcdserverpb::KV::NewStub(*channel);

    etcdserverpb::LeaseGrantRequest grant;
    grant.set_ttl(kLeaseTtlMs / 1000);
    etcdserverpb::LeaseGrantResponse granted;
    grpc::ClientContext grant_context;
    grant_context.set_deadline(DeadlineIn(kRequestTimeoutMs));
    if (absl::Status st =
            FromGrpc("etcd LeaseGrant", lease->LeaseGrant(&grant_context, grant, &granted));
        !st.ok()) {
      return st;
    }
    if (!granted.error().empty()) return absl::InternalError("etcd LeaseGrant: " + granted.error());
    lease_id_ = granted.id();
    for (int i = 0; i < kLookupRegistrations; ++i) {
      v1::Endpoint endpoint;
      *endpoint.mutable_registration() = NewRegistration(i, kLookupTopic);
      endpoint.mutable_registration()->set_server(absl::StrCat("compute-", i));
      *endpoint.mutable_node() = BenchNode(lease_id_);
      etcdserverpb::PutRequest request;
      request.set_key(EtcdKey(endpoint.registration()));
      request.set_value(endpoint.SerializeAsString());
      request.set_lease(lease_id_);
      etcdserverpb::PutResponse response;
      grpc::ClientContext context;
      context.set_deadline(DeadlineIn(kRequestTimeoutMs));
      if (absl::Status st = FromGrpc("etcd Put", kv->Put(&context, request, &response)); !st.ok()) {
        return st;
      }
    }
    return WaitServing();
  }

  // Every running member answers a linearizable and a serializable Range with all keys.
  absl::Status WaitServing() {
    std::string last_error = "no answer yet";
    const bool serving = testing::Eventually(
        [&] {
          for (int i = 0; i < cluster_->size(); ++i) {
            if (!cluster_->running(i)) continue;
            for (Workload workload : {Workload::kLookupLinearizable, Workload::kLookupStale}) {
              absl::StatusOr<std::unique_ptr<Client>> client =
                  NewClient(workload, cluster_->client_address(i));
              absl::Status st = client.ok() ? (*client)->Do() : client.status();
              if (!st.ok()) {
                last_error = absl::StrCat("member ", i, ": ", st.message());
                return false;
              }
            }
          }
          return true;
        },
        kHealthyTimeoutMs);
    if (!serving) {
      return absl::DeadlineExceededError(
          absl::StrCat("etcd cluster not serving in time (", last_error, ")"));
    }
    return absl::OkStatus();
  }

  std::unique_ptr<EtcdCluster> cluster_;
  int64_t lease_id_ = 0;
};

// ---- measuring ----------------------------------------------------------------------------------

struct CaseResult {
  int64_t ops = 0;
  double seconds = 0;
  std::vector<int64_t> latencies_ns;  // sorted
  std::string error;                  // the first error of any client; empty when all went well

  double ops_per_second() const { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }
  double PercentileUs(double fraction) const {
    if (latencies_ns.empty()) return 0;
    const size_t index =
        std::min(latencies_ns.size() - 1,
                 static_cast<size_t>(fraction * static_cast<double>(latencies_ns.size())));
    return static_cast<double>(latencies_ns[index]) / 1000.0;
  }
};

struct Timing {
  int64_t warmup_ms = 0;
  int64_t duration_ms = 0;
};

// Runs `clients` clients (client i on member i % members) flat out for warmup + duration; counts
// the requests that start after the warmup and end within the duration.
CaseResult RunCase(System& system, Workload workload, int clients, const Timing& timing) {
  CaseResult result;
  absl::StatusOr<std::vector<std::string>> members = system.MembersLeaderLast();
  if (!members.ok()) {
    result.error = std::string(members.status().message());
    return result;
  }
  std::vector<std::unique_ptr<Client>> all;
  for (int i = 0; i < clients; ++i) {
    absl::StatusOr<std::unique_ptr<Client>> client =
        system.NewClient(workload, (*members)[i % members->size()]);
    if (!client.ok()) {
      result.error = std::string(client.status().message());
      return result;
    }
    all.push_back(*std::move(client));
  }

  struct PerClient {
    std::vector<int64_t> latencies_ns;
    std::string error;
  };
  std::vector<PerClient> per_client(clients);
  absl::Notification go;
  Clock::time_point measure_from;
  Clock::time_point measure_until;
  std::vector<std::thread> threads;
  threads.reserve(clients);
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      go.WaitForNotification();
      PerClient& mine = per_client[i];
      mine.latencies_ns.reserve(1 << 16);
      while (true) {
        const Clock::time_point start = Clock::now();
        if (start >= measure_until) break;
        absl::Status status = all[i]->Do();
        const Clock::time_point end = Clock::now();
        if (!status.ok()) {
          mine.error = std::string(status.message());
          break;
        }
        if (start >= measure_from && end <= measure_until) {
          mine.latencies_ns.push_back(
              std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count());
        }
      }
    });
  }
  measure_from = Clock::now() + std::chrono::milliseconds(timing.warmup_ms);
  measure_until = measure_from + std::chrono::milliseconds(timing.duration_ms);
  go.Notify();  // publishes measure_from / measure_until to the threads
  for (std::thread& thread : threads) thread.join();

  result.seconds = static_cast<double>(timing.duration_ms) / 1000.0;
  for (PerClient& client : per_client) {
    result.latencies_ns.insert(result.latencies_ns.end(), client.latencies_ns.begin(),
                               client.latencies_ns.end());
    if (result.error.empty() && !client.error.empty()) result.error = client.error;
  }
  std::sort(result.latencies_ns.begin(), result.latencies_ns.end());
  result.ops = static_cast<int64_t>(result.latencies_ns.size());
  return result;
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

std::string Ratio(double zmesh, double etcd) {
  if (zmesh <= 0 || etcd <= 0) return "-";
  return absl::StrFormat("%.2f", zmesh / etcd);
}

struct Row {
  Workload workload;
  int clients;
  CaseResult zmesh;
  CaseResult etcd;
};

void PrintTable(const std::vector<Row>& rows, const std::vector<double>& zmesh_failover_ms,
                const std::vector<double>& etcd_failover_ms, const Timing& timing,
                const EtcdOptions& etcd_options) {
  printf("\nzmesh-directory (3 replicas) vs etcd %s (3 members), loopback, C++ gRPC clients\n",
         "3.4");
  printf(
      "%lld ms measured per case after %lld ms warmup; latencies in microseconds; "
      "ratio = zmesh / etcd\n",
      static_cast<long long>(timing.duration_ms), static_cast<long long>(timing.warmup_ms));
  printf("election timeout: zmesh 200 ms (heartbeat 20 ms), etcd %d ms (heartbeat %d ms)\n\n",
         etcd_options.election_timeout_ms, etcd_options.heartbeat_ms);
  const char* header = "%-34s %7s | %10s %8s %8s | %10s %8s %8s | %6s %6s %6s\n";
  printf(header, "case", "clients", "zmesh op/s", "p50 us", "p99 us", "etcd op/s", "p50 us",
         "p99 us", "op/s", "p50", "p99");
  printf("%s\n", std::string(124, '-').c_str());
  for (const Row& row : rows) {
    printf("%-34s %7d | %10.0f %8.0f %8.0f | %10.0f %8.0f %8.0f | %6s %6s %6s\n",
           WorkloadName(row.workload), row.clients, row.zmesh.ops_per_second(),
           row.zmesh.PercentileUs(0.50), row.zmesh.PercentileUs(0.99), row.etcd.ops_per_second(),
           row.etcd.PercentileUs(0.50), row.etcd.PercentileUs(0.99),
           Ratio(row.zmesh.ops_per_second(), row.etcd.ops_per_second()).c_str(),
           Ratio(row.zmesh.PercentileUs(0.50), row.etcd.PercentileUs(0.50)).c_str(),
           Ratio(row.zmesh.PercentileUs(0.99), row.etcd.PercentileUs(0.99)).c_str());
    if (!row.zmesh.error.empty()) printf("    zmesh FAILED: %s\n", row.zmesh.error.c_str());
    if (!row.etcd.error.empty()) printf("    etcd FAILED: %s\n", row.etcd.error.c_str());
  }
  auto runs = [](const std::vector<double>& ms) {
    std::vector<std::string> parts;
    parts.reserve(ms.size());
    for (double m : ms) parts.push_back(absl::StrFormat("%.0f", m));
    return parts.empty() ? std::string("none") : absl::StrJoin(parts, " ");
  };
  const double zmesh_median = Median(zmesh_failover_ms);
  const double etcd_median = Median(etcd_failover_ms);
  printf("\nfailover: SIGKILL the leader -> first acknowledged write (ms, median of runs)\n");
  printf("  zmesh %8.0f ms   runs: %s\n", zmesh_median, runs(zmesh_failover_ms).c_str());
  printf("  etcd  %8.0f ms   runs: %s\n", etcd_median, runs(etcd_failover_ms).c_str());
  printf("  ratio zmesh / etcd: %s\n", Ratio(zmesh_median, etcd_median).c_str());
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "zmesh-bench-cluster [--quick] [--duration-ms N] [--warmup-ms N] [--failovers N]\n"
      "  Compares a 3-replica zmesh-directory with a 3-member etcd on loopback; see "
      "bench/README.md.");
  const std::vector<std::string> positional = ParseFlags(argc, argv);
  if (positional.size() > 1) {
    fprintf(stderr, "unexpected argument: %s\n", positional[1].c_str());
    return 2;
  }
  const bool quick = absl::GetFlag(FLAGS_quick) || !absl::GetFlag(FLAGS_benchmark_min_time).empty();
  Timing timing{absl::GetFlag(FLAGS_warmup_ms), absl::GetFlag(FLAGS_duration_ms)};
  int failovers = absl::GetFlag(FLAGS_failovers);
  if (quick) {
    timing = Timing{100, 300};
    failovers = 1;
  }
  const int many_clients = absl::GetFlag(FLAGS_many_clients);
  if (timing.duration_ms <= 0 || timing.warmup_ms < 0 || failovers < 0 || many_clients < 1) {
    fprintf(stderr,
            "--duration-ms, --many-clients must be positive, --warmup-ms and "
            "--failovers not negative\n");
    return 2;
  }
  EtcdOptions etcd_options;
  etcd_options.members = kMembers;
  etcd_options.binary = absl::GetFlag(FLAGS_etcd);
  etcd_options.heartbeat_ms = absl::GetFlag(FLAGS_etcd_heartbeat_ms);
  etcd_options.election_timeout_ms = absl::GetFlag(FLAGS_etcd_election_timeout_ms);

  // The clients' writes to a killed member must not kill this process.
  signal(SIGPIPE, SIG_IGN);
  testing::TempDir dir;
  const Clock::time_point begin = Clock::now();
  // Both clusters run for the whole benchmark; each owns its processes and kills them on every
  // early return.
  absl::StatusOr<std::unique_ptr<ZmeshSystem>> zmesh = ZmeshSystem::Start(dir.path() + "/zmesh");
  if (!zmesh.ok()) {
    fprintf(stderr, "%s\n", zmesh.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<EtcdSystem>> etcd =
      EtcdSystem::Start(dir.path() + "/etcd", etcd_options);
  if (!etcd.ok()) {
    fprintf(stderr, "%s\n", etcd.status().ToString().c_str());
    return 1;
  }
  fprintf(stderr, "clusters up after %.0f ms (data under %s)\n", MillisSince(begin),
          dir.path().c_str());
  System* systems[] = {zmesh->get(), etcd->get()};

  bool failed = false;
  std::vector<Row> rows;
  for (Workload workload :
       {Workload::kRegister, Workload::kLookupLinearizable, Workload::kLookupStale}) {
    for (int clients : {1, many_clients}) {
      Row row{workload, clients, {}, {}};
      for (System* system : systems) {
        CaseResult result = RunCase(*system, workload, clients, timing);
        fprintf(stderr, "%-6s %-34s %3d clients: %8.0f op/s  p50 %6.0f us  p99 %6.0f us%s%s\n",
                system->name(), WorkloadName(workload), clients, result.ops_per_second(),
                result.PercentileUs(0.50), result.PercentileUs(0.99),
                result.error.empty() ? "" : "  FAILED: ", result.error.c_str());
        failed |= !result.error.empty();
        (system == systems[0] ? row.zmesh : row.etcd) = std::move(result);
      }
      rows.push_back(std::move(row));
    }
  }

  std::vector<double> failover_ms[2];
  for (int run = 0; run < failovers && !failed; ++run) {
    for (int s = 0; s < 2 && !failed; ++s) {
      const Clock::time_point failover_begin = Clock::now();
      absl::StatusOr<double> ms = systems[s]->Failover();
      if (!ms.ok()) {
        fprintf(stderr, "%s failover: %s\n", systems[s]->name(), ms.status().ToString().c_str());
        failed = true;
        break;
      }
      fprintf(stderr,
              "%-6s failover %d: first write acknowledged %.0f ms after the kill (healthy "
              "again after %.0f ms)\n",
              systems[s]->name(), run + 1, *ms, MillisSince(failover_begin));
      failover_ms[s].push_back(*ms);
    }
  }

  PrintTable(rows, failover_ms[0], failover_ms[1], timing, etcd_options);
  for (System* system : systems) {
    const Clock::time_point stop_begin = Clock::now();
    absl::Status stopped = system->Stop();
    fprintf(stderr, "%s stopped in %.0f ms\n", system->name(), MillisSince(stop_begin));
    if (!stopped.ok()) {
      fprintf(stderr, "stopping %s: %s\n", system->name(), stopped.ToString().c_str());
      failed = true;
    }
  }
  fprintf(stderr, "total %.1f s\n", MillisSince(begin) / 1000.0);
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace zmesh::bench

int main(int argc, char** argv) { return zmesh::bench::Main(argc, argv); }
