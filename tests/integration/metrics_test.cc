// Prometheus /metrics of zmesh-directory and zmesh-proxy, scraped over loopback from real
// processes while real calls and casts flow: the counters an operator's dashboards rely on
// must move with the traffic, and the endpoint must be off unless asked for.
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/support/directory_process.h"
#include "tests/support/metrics_scrape.h"
#include "tests/support/proxy_process.h"
#include "tests/support/subprocess.h"
#include "zmesh/transport.h"

namespace zmesh {
namespace {

using testing::BinPath;
using testing::DirectoryProcess;
using testing::Eventually;
using testing::ProxyProcess;
using testing::Scrape;
using testing::Subprocess;
using testing::TailFile;
using testing::TempDir;

constexpr char kTopic[] = "metered";
const std::vector<std::string> kMetricsArgs = {"--metrics-listen", "127.0.0.1:0"};

// Calls `method` ("/pkg.Service/Method") on `address` with an empty request; its status code.
grpc::StatusCode CallWithEmptyRequest(const std::string& address, const std::string& method) {
  grpc::GenericStub stub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::CompletionQueue queue;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  grpc::Status status;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
      stub.PrepareUnaryCall(&context, method, request, &queue);
  call->StartCall();
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  EXPECT_TRUE(queue.Next(&tag, &ok));
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  return status.error_code();
}

// The scrape, or a failed expectation and an empty scrape.
Scrape Fetch(int port) {
  absl::StatusOr<Scrape> scrape = Scrape::Fetch(port);
  EXPECT_TRUE(scrape.ok()) << "scraping port " << port << ": " << scrape.status();
  return scrape.ok() ? *std::move(scrape) : Scrape();
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<DirectoryProcess>> directory =
        DirectoryProcess::Start(absl::StrCat(dir_.path(), "/directory"), kMetricsArgs);
    ASSERT_TRUE(directory.ok()) << directory.status();
    directory_ = *std::move(directory);
    ASSERT_GT(directory_->metrics_port(), 0) << "no metrics=PORT line in the ready file";
    for (int n = 1; n <= 2; ++n) {
      absl::StatusOr<std::unique_ptr<ProxyProcess>> proxy =
          ProxyProcess::Start({.directory = directory_->address(),
                               .node_name = absl::StrCat("node-", n),
                               .ipc_dir = absl::StrCat(dir_.path(), "/n", n),
                               .extra_args = kMetricsArgs});
      ASSERT_TRUE(proxy.ok()) << proxy.status();
      ASSERT_GT((*proxy)->metrics_port(), 0) << "no metrics=PORT in the proxy's ready line";
      proxies_.push_back(*std::move(proxy));
    }
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "---- directory log tail:\n" << TailFile(directory_->log_path()) << "\n";
      for (auto& proxy : proxies_) {
        std::cerr << "---- " << proxy->node_name() << " log tail:\n"
                  << TailFile(proxy->log_path()) << "\n";
      }
    }
    server_.reset();
    proxies_.clear();
    directory_.reset();
  }

  // `zmeshctl serve kTopic --server s --echo` behind proxy `index`; waits until it serves.
  void StartServer(size_t index) {
    const std::string out = absl::StrCat(dir_.path(), "/server.out");
    absl::StatusOr<std::unique_ptr<Subprocess>> process =
        Subprocess::Start({BinPath("zmeshctl"), "serve", kTopic, "--server", "s", "--echo",
                           "--ipc-dir", proxies_[index]->ipc_dir()},
                          out, out);
    ASSERT_TRUE(process.ok()) << process.status();
    server_ = *std::move(process);
    ASSERT_TRUE(Eventually(
        [&] { return absl::StrContains(testing::ReadFile(out).value_or(""), "ready:"); }, 15000))
        << "server did not start:\n"
        << TailFile(out);
  }

  TempDir dir_;
  std::unique_ptr<DirectoryProcess> directory_;
  std::vector<std::unique_ptr<ProxyProcess>> proxies_;
  std::unique_ptr<Subprocess> server_;
};

TEST_F(MetricsTest, CountersMoveWithCallsCastsAndDirectoryRequests) {
  const Scrape directory_before = Fetch(directory_->metrics_port());
  const Scrape proxy_before = Fetch(proxies_[1]->metrics_port());
  EXPECT_EQ(directory_before.Type("zmesh_directory_grpc_requests_total"), "counter");
  EXPECT_EQ(proxy_before.Type("zmesh_proxy_received_messages_total"), "counter");
  EXPECT_EQ(directory_before.Type("zmesh_directory_raft_proposal_duration_seconds"), "histogram");

  StartServer(1);  // behind node-2
  absl::StatusOr<std::unique_ptr<Transport>> client =
      Transport::Create({.ipc_dir = proxies_[0]->ipc_dir()});
  ASSERT_TRUE(client.ok()) << client.status();
  constexpr int kCalls = 25;
  constexpr int kCasts = 40;
  const std::string payload(100, 'p');
  for (int i = 0; i < kCalls; ++i) {
    absl::StatusOr<CallResult> result =
        (*client)->Call({.topic = kTopic, .server = "s"}, payload, {.timeout_ms = 10000});
    ASSERT_TRUE(result.ok()) << "call " << i << ": " << result.status();
  }
  for (int i = 0; i < kCasts; ++i) {
    ASSERT_TRUE((*client)->Cast({.topic = kTopic, .server = "s"}, payload).ok());
  }

  // The server's proxy: every request read from the network, handed to the instance, and every
  // reply sent back (casts are queued by Cast: wait until they arrived).
  Scrape proxy;
  auto proxy_delta = [&](const std::string& name, const std::string& pattern) {
    return proxy.Sum(name, {{"pattern", pattern}}) - proxy_before.Sum(name, {{"pattern", pattern}});
  };
  ASSERT_TRUE(Eventually(
      [&] {
        proxy = Fetch(proxies_[1]->metrics_port());
        return proxy_delta("zmesh_proxy_delivered_messages_total", "cast") >= kCasts;
      },
      15000))
      << proxy.text();
  EXPECT_GE(proxy_delta("zmesh_proxy_received_messages_total", "call"), kCalls);
  EXPECT_GE(proxy_delta("zmesh_proxy_delivered_messages_total", "call"), kCalls);
  EXPECT_GE(proxy_delta("zmesh_proxy_answers_total", "call"), kCalls);
  EXPECT_GE(proxy_delta("zmesh_proxy_received_messages_total", "cast"), kCasts);
  EXPECT_GE(proxy_delta("zmesh_proxy_received_bytes_total", "call"),
            kCalls * static_cast<double>(payload.size()));
  EXPECT_GE(proxy_delta("zmesh_proxy_delivered_bytes_total", "cast"),
            kCasts * static_cast<double>(payload.size()));
  EXPECT_GE(proxy_delta("zmesh_proxy_answer_bytes_total", "call"),
            kCalls * static_cast<double>(payload.size()));  // echoed
  EXPECT_EQ(proxy_delta("zmesh_proxy_received_messages_total", "fanout"), 0);
  EXPECT_GE(proxy.Sum("zmesh_proxy_connected_peers", {{"pattern", "call"}}), 1);
  EXPECT_GE(proxy.Sum("zmesh_proxy_connected_peers", {{"pattern", "cast"}}), 1);
  EXPECT_EQ(proxy.Sum("zmesh_proxy_local_instances"), 1);
  EXPECT_EQ(proxy.Sum("zmesh_proxy_directory_connected"), 1);
  EXPECT_EQ(proxy.Sum("zmesh_proxy_node_registered"), 1);
  EXPECT_EQ(proxy.Sum("zmesh_proxy_mirror_synced"), 1);
  EXPECT_EQ(proxy.Sum("zmesh_proxy_undelivered_messages_total"),
            proxy_before.Sum("zmesh_proxy_undelivered_messages_total"))
      << "nothing was refused or dropped";
  // The sender's proxy resolved the target for its client: a fresh lookup or a mirror answer.
  const Scrape sender = Fetch(proxies_[0]->metrics_port());
  EXPECT_GE(sender.Sum("zmesh_proxy_lookup_cache_total") +
                sender.Sum("zmesh_proxy_directory_lookups_total", {{"result", "ok"}}),
            1);

  // The directory: the proxy registered the server (gRPC Register, a committed proposal), and
  // both proxies hold a lease kept alive over a stream and watch the directory.
  const Scrape directory = Fetch(directory_->metrics_port());
  auto directory_delta = [&](const std::string& name,
                             const std::map<std::string, std::string>& labels) {
    return directory.Sum(name, labels) - directory_before.Sum(name, labels);
  };
  EXPECT_GE(
      directory_delta(
          "zmesh_directory_grpc_requests_total",
          {{"service", "zmesh.directory.v1.Directory"}, {"method", "Register"}, {"code", "OK"}}),
      1);
  EXPECT_GE(directory_delta("zmesh_directory_grpc_request_duration_seconds_count",
                            {{"service", "zmesh.directory.v1.Directory"}, {"method", "Register"}}),
            1);
  EXPECT_GE(directory_delta("zmesh_directory_raft_proposals_total", {{"result", "committed"}}), 1);
  EXPECT_GE(
      directory_delta("zmesh_directory_commands_applied_total", {{"command", "put_registration"}}),
      1);
  EXPECT_GE(
      directory.Sum("zmesh_directory_grpc_requests_total",
                    {{"service", "zmesh.directory.v1.Directory"}, {"method", "RegisterNode"}}),
      2);
  EXPECT_EQ(directory.Sum("zmesh_directory_grpc_streams_open",
                          {{"service", "zmesh.directory.v1.Leases"}, {"method", "KeepAlive"}}),
            2);
  EXPECT_GE(directory.Sum("zmesh_directory_grpc_streams_open",
                          {{"service", "zmesh.directory.v1.Directory"}, {"method", "Watch"}}),
            2);
  EXPECT_GE(directory.Sum("zmesh_directory_watchers"), 2);
  EXPECT_EQ(directory.Sum("zmesh_directory_raft_role", {{"role", "leader"}}), 1);
  EXPECT_EQ(directory.Sum("zmesh_directory_raft_role"), 1) << "exactly one role at a time";
  EXPECT_GE(directory.Sum("zmesh_directory_raft_term"), 1);
  EXPECT_EQ(directory.Sum("zmesh_directory_raft_commit_index"),
            directory.Sum("zmesh_directory_raft_applied_index"));
  EXPECT_EQ(directory.Sum("zmesh_directory_nodes"), 2);
  EXPECT_EQ(directory.Sum("zmesh_directory_leases"), 2);
  EXPECT_GE(directory.Sum("zmesh_directory_registrations"), 1);
  EXPECT_EQ(directory.Sum("zmesh_directory_raft_proposals_total", {{"result", "failed"}}), 0);
}

TEST_F(MetricsTest, GrpcMethodLabelsAreTheServedMethodsOnly) {
  EXPECT_EQ(CallWithEmptyRequest(directory_->address(), "/grpc.health.v1.Health/Check"),
            grpc::StatusCode::OK);
  EXPECT_EQ(CallWithEmptyRequest(directory_->address(), "/zmesh.directory.v1.Cluster/Status"),
            grpc::StatusCode::OK);
  EXPECT_EQ(CallWithEmptyRequest(directory_->address(), "/zmesh.directory.v1.Directory/Made-Up"),
            grpc::StatusCode::UNIMPLEMENTED);
  const Scrape scrape = Fetch(directory_->metrics_port());
  EXPECT_EQ(scrape.Sum("zmesh_directory_grpc_requests_total",
                       {{"service", "grpc.health.v1.Health"}, {"method", "Check"}, {"code", "OK"}}),
            1);
  EXPECT_GE(scrape.Sum("zmesh_directory_grpc_requests_total",
                       {{"service", "zmesh.directory.v1.Cluster"}, {"method", "Status"}}),
            1);
  EXPECT_EQ(scrape.Count("zmesh_directory_grpc_requests_total", {{"method", "Made-Up"}}), 0)
      << "a client must not be able to add label values";
  for (const Scrape::Sample& sample : scrape.samples()) {
    if (sample.name != "zmesh_directory_grpc_requests_total") continue;
    const std::string& service = sample.labels.at("service");
    EXPECT_TRUE(absl::StartsWith(service, "zmesh.") || absl::StartsWith(service, "grpc.") ||
                service == "unknown")
        << service;
  }
}

TEST_F(MetricsTest, BadMessagesAreCountedByReason) {
  const Scrape before = Fetch(proxies_[0]->metrics_port());
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.connect(absl::StrCat("tcp://127.0.0.1:", proxies_[0]->call_port()));
  constexpr int kBad = 3;
  for (int i = 0; i < kBad; ++i) {
    socket.send(zmq::str_buffer("not a header"), zmq::send_flags::sndmore);
    socket.send(zmq::str_buffer("payload"), zmq::send_flags::none);
  }
  Scrape after;
  ASSERT_TRUE(Eventually(
      [&] {
        after = Fetch(proxies_[0]->metrics_port());
        return after.Sum("zmesh_proxy_received_messages_total", {{"pattern", "call"}}) -
                   before.Sum("zmesh_proxy_received_messages_total", {{"pattern", "call"}}) >=
               kBad;
      },
      10000))
      << after.text();
  EXPECT_EQ(after.Sum("zmesh_proxy_undelivered_messages_total",
                      {{"pattern", "call"}, {"reason", "bad_header"}}) -
                before.Sum("zmesh_proxy_undelivered_messages_total",
                           {{"pattern", "call"}, {"reason", "bad_header"}}),
            kBad);
  EXPECT_EQ(after.Sum("zmesh_proxy_delivered_messages_total", {{"pattern", "call"}}),
            before.Sum("zmesh_proxy_delivered_messages_total", {{"pattern", "call"}}));
  // One series per (pattern, reason): the label set is fixed, whatever arrives.
  EXPECT_EQ(after.Count("zmesh_proxy_undelivered_messages_total"), 4 * 9);
  // The sender's connection is counted while it is open, and no longer once it is closed.
  const double peers_before = before.Sum("zmesh_proxy_connected_peers", {{"pattern", "call"}});
  EXPECT_EQ(after.Sum("zmesh_proxy_connected_peers", {{"pattern", "call"}}), peers_before + 1);
  socket.close();
  Scrape closed;
  EXPECT_TRUE(Eventually(
      [&] {
        closed = Fetch(proxies_[0]->metrics_port());
        return closed.Sum("zmesh_proxy_connected_peers", {{"pattern", "call"}}) == peers_before;
      },
      10000))
      << closed.text();
}

TEST(MetricsFlagTest, OffUnlessAskedForAndABusyPortIsAClearError) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<DirectoryProcess>> plain =
      DirectoryProcess::Start(absl::StrCat(dir.path(), "/plain"));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->metrics_port(), 0);
  EXPECT_EQ(testing::ReadFile(absl::StrCat(dir.path(), "/plain/test-directory.ready")).value_or(""),
            (*plain)->address() + "\n")
      << "without --metrics-listen the ready file is the address alone, as before";
  absl::StatusOr<std::unique_ptr<ProxyProcess>> proxy =
      ProxyProcess::Start({.directory = (*plain)->address(),
                           .node_name = "plain",
                           .ipc_dir = absl::StrCat(dir.path(), "/p")});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_EQ((*proxy)->metrics_port(), 0);

  absl::StatusOr<std::unique_ptr<DirectoryProcess>> metered =
      DirectoryProcess::Start(absl::StrCat(dir.path(), "/metered"), kMetricsArgs);
  ASSERT_TRUE(metered.ok()) << metered.status();
  const std::string busy = absl::StrCat("127.0.0.1:", (*metered)->metrics_port());
  absl::StatusOr<std::unique_ptr<DirectoryProcess>> clash =
      DirectoryProcess::Start(absl::StrCat(dir.path(), "/clash"), {"--metrics-listen", busy});
  ASSERT_FALSE(clash.ok());
  EXPECT_TRUE(absl::StrContains(clash.status().message(), "cannot serve metrics on " + busy))
      << clash.status();
  const std::string proxy_log = absl::StrCat(dir.path(), "/bad-proxy.log");
  absl::StatusOr<std::unique_ptr<Subprocess>> bad_proxy = Subprocess::Start(
      {BinPath("zmesh-proxy"), "--directory", (*plain)->address(), "--node-name", "bad",
       "--ipc-dir", absl::StrCat(dir.path(), "/bad"), "--call-port", "0", "--fanout-port", "0",
       "--notify-port", "0", "--cast-port", "0", "--metrics-listen", "no-port"},
      proxy_log, proxy_log);
  ASSERT_TRUE(bad_proxy.ok()) << bad_proxy.status();
  absl::StatusOr<int> status = (*bad_proxy)->Wait(10000);
  ASSERT_TRUE(status.ok()) << "zmesh-proxy kept running with --metrics-listen no-port";
  EXPECT_NE(*status, 0);
  EXPECT_TRUE(absl::StrContains(testing::ReadFile(proxy_log).value_or(""), "is not HOST:PORT"))
      << TailFile(proxy_log);
}

}  // namespace
}  // namespace zmesh
