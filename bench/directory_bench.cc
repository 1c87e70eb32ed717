// zmesh-bench-directory: throughput and latency of a real zmesh-directory, measured over raw gRPC
// stubs so the figures are the daemon's (plus gRPC), not any client library's.
//
// Every benchmark thread is one client with its own channel and its own TCP connection (local
// subchannel pool), like separate node proxies would be. Besides items/s (all threads together,
// over wall-clock time), each benchmark reports per-request latency percentiles of all threads'
// requests as counters p50_us, p99_us and max_us.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "grpcpp/grpcpp.h"
#include "tests/support/directory_process.h"
#include "tests/support/subprocess.h"
#include "zmesh/directory/v1/directory.grpc.pb.h"

namespace zmesh::bench {
namespace {

namespace v1 = ::zmesh::directory::v1;

constexpr char kNode[] = "bench-node";
constexpr char kExchange[] = "openstack";
constexpr char kLookupTopic[] = "bench.lookup";
constexpr int kLookupRegistrations = 10;
constexpr int64_t kRequestTimeoutMs = 10000;

// Address of the daemon under test; set by main() before any benchmark runs.
std::string* g_address = nullptr;
// Makes every Register request's (topic, server) unique across threads and runs.
std::atomic<int64_t> g_next_registration{0};

std::unique_ptr<v1::Directory::Stub> NewStub(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // own connection, not a shared one
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return v1::Directory::NewStub(channel);
}

void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(kRequestTimeoutMs));
}

// Gathers the latencies of all threads of one benchmark run, so thread 0 can report percentiles
// of the whole run. Thread-safe.
class LatencyCollector {
 public:
  // Called by the benchmark's Setup hook, before the run's threads start.
  void Reset(int threads) {
    absl::MutexLock lock(&mu_);
    threads_ = threads;
    added_ = 0;
    samples_ns_.clear();
  }
  // Every thread calls this once after its loop, whatever happened in it.
  void Add(const std::vector<int64_t>& samples_ns) {
    absl::MutexLock lock(&mu_);
    samples_ns_.insert(samples_ns_.end(), samples_ns.begin(), samples_ns.end());
    ++added_;
  }
  // Waits until every thread of the run has called Add(); returns all samples, sorted.
  std::vector<int64_t> WaitAll() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &LatencyCollector::AllAdded));
    std::vector<int64_t> all = std::move(samples_ns_);
    samples_ns_.clear();
    std::sort(all.begin(), all.end());
    return all;
  }

 private:
  bool AllAdded() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return added_ >= threads_; }

  absl::Mutex mu_;
  int threads_ ABSL_GUARDED_BY(mu_) = 0;
  int added_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int64_t> samples_ns_ ABSL_GUARDED_BY(mu_);  // nanoseconds per request
};

LatencyCollector& Collector() {
  static LatencyCollector* collector = new LatencyCollector();  // never destroyed
  return *collector;
}

void ResetCollector(const benchmark::State& state) { Collector().Reset(state.threads()); }

double PercentileUs(const std::vector<int64_t>& sorted_ns, double fraction) {
  if (sorted_ns.empty()) return 0;
  const size_t index = std::min(
      sorted_ns.size() - 1, static_cast<size_t>(fraction * static_cast<double>(sorted_ns.size())));
  return static_cast<double>(sorted_ns[index]) / 1000.0;
}

// The shared tail of every benchmark: items/s and, on thread 0, the run's latency percentiles.
void Report(benchmark::State& state, const std::vector<int64_t>& samples_ns) {
  state.SetItemsProcessed(static_cast<int64_t>(samples_ns.size()));
  Collector().Add(samples_ns);
  if (state.thread_index() != 0) return;
  const std::vector<int64_t> all = Collector().WaitAll();
  state.counters["p50_us"] = PercentileUs(all, 0.50);
  state.counters["p99_us"] = PercentileUs(all, 0.99);
  state.counters["max_us"] = all.empty() ? 0 : static_cast<double>(all.back()) / 1000.0;
}

// Each request adds a new registration: a unique (topic, server) on the bench node, ~100 servers
// per topic.
void BM_Register(benchmark::State& state) {
  std::unique_ptr<v1::Directory::Stub> stub = NewStub(*g_address);
  std::vector<int64_t> samples_ns;
  v1::RegisterRequest request;
  v1::Registration* registration = request.mutable_registration();
  registration->set_exchange(kExchange);
  registration->set_kind(v1::KIND_RPC_SERVER);
  registration->set_node(kNode);
  for (auto _ : state) {
    const int64_t n = g_next_registration.fetch_add(1);
    registration->set_topic(absl::StrCat("bench.register.", n / 100));
    registration->set_server(absl::StrCat("server-", n));
    v1::RegisterResponse response;
    grpc::ClientContext context;
    SetDeadline(context);
    const auto start = std::chrono::steady_clock::now();
    grpc::Status status = stub->Register(&context, request, &response);
    const auto end = std::chrono::steady_clock::now();
    if (!status.ok() || !response.created()) {
      state.SkipWithError(status.ok() ? "Register: registration already existed"
                                      : ("Register: " + status.error_message()).c_str());
      break;
    }
    samples_ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count());
  }
  Report(state, samples_ns);
}
BENCHMARK(BM_Register)->Setup(ResetCollector)->Threads(1)->Threads(16)->UseRealTime();

// Each request looks up a topic with kLookupRegistrations registrations (linearizable read).
void BM_Lookup(benchmark::State& state) {
  std::unique_ptr<v1::Directory::Stub> stub = NewStub(*g_address);
  std::vector<int64_t> samples_ns;
  v1::LookupRequest request;
  request.set_exchange(kExchange);
  request.set_topic(kLookupTopic);
  for (auto _ : state) {
    v1::LookupResponse response;
    grpc::ClientContext context;
    SetDeadline(context);
    const auto start = std::chrono::steady_clock::now();
    grpc::Status status = stub->Lookup(&context, request, &response);
    const auto end = std::chrono::steady_clock::now();
    if (!status.ok() || response.endpoints_size() != kLookupRegistrations) {
      state.SkipWithError(status.ok() ? "Lookup: wrong number of endpoints"
                                      : ("Lookup: " + status.error_message()).c_str());
      break;
    }
    samples_ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count());
  }
  Report(state, samples_ns);
}
BENCHMARK(BM_Lookup)->Setup(ResetCollector)->Threads(1)->Threads(16)->UseRealTime();

// The state every benchmark expects: one permanent node and the lookup topic's registrations.
bool Populate(const std::string& address) {
  std::unique_ptr<v1::Directory::Stub> stub = NewStub(address);
  v1::RegisterNodeRequest node_request;
  v1::Node* node = node_request.mutable_node();
  node->set_name(kNode);
  node->set_host("127.0.0.1");
  node->set_call_port(9501);
  node->set_fanout_port(9502);
  node->set_notify_port(9503);
  node->set_cast_port(9504);
  v1::RegisterNodeResponse node_response;
  grpc::ClientContext node_context;
  SetDeadline(node_context);
  grpc::Status status = stub->RegisterNode(&node_context, node_request, &node_response);
  if (!status.ok()) {
    fprintf(stderr, "RegisterNode: %s\n", status.error_message().c_str());
    return false;
  }
  for (int i = 0; i < kLookupRegistrations; ++i) {
    v1::RegisterRequest request;
    v1::Registration* registration = request.mutable_registration();
    registration->set_exchange(kExchange);
    registration->set_topic(kLookupTopic);
    registration->set_server(absl::StrCat("compute-", i));
    registration->set_kind(v1::KIND_RPC_SERVER);
    registration->set_node(kNode);
    v1::RegisterResponse response;
    grpc::ClientContext context;
    SetDeadline(context);
    status = stub->Register(&context, request, &response);
    if (!status.ok()) {
      fprintf(stderr, "Register: %s\n", status.error_message().c_str());
      return false;
    }
  }
  return true;
}

int Main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;

  testing::TempDir dir;
  absl::StatusOr<std::unique_ptr<testing::DirectoryProcess>> directory =
      testing::DirectoryProcess::Start(dir.path() + "/data", {"--log-level", "warning"});
  if (!directory.ok()) {
    fprintf(stderr, "starting zmesh-directory: %s\n", directory.status().ToString().c_str());
    return 1;
  }
  std::string address = (*directory)->address();
  g_address = &address;
  fprintf(stderr, "zmesh-directory at %s, data dir %s\n", address.c_str(),
          (*directory)->data_dir().c_str());
  if (!Populate(address)) return 1;

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_address = nullptr;

  absl::Status stopped = (*directory)->Stop();
  if (!stopped.ok()) {
    fprintf(stderr, "stopping zmesh-directory: %s\n", stopped.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace zmesh::bench

int main(int argc, char** argv) { return zmesh::bench::Main(argc, argv); }
