// libzmesh end to end: real zmesh-directory, two real zmesh-proxy processes standing in for two
// nodes ("node-a", "node-b"), and Transports, Servers and NotificationListeners in this process.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "controlplane/client/directory_client.h"
#include "tests/dataplane/client/recorder.h"
#include "tests/support/directory_process.h"
#include "tests/support/proxy_process.h"
#include "tests/support/subprocess.h"
#include "zmesh/notification_listener.h"
#include "zmesh/server.h"
#include "zmesh/transport.h"

namespace zmesh {
namespace {

using ::zmesh::testing::DirectoryProcess;
using ::zmesh::testing::Eventually;
using ::zmesh::testing::ProxyProcess;
using ::zmesh::testing::ProxyProcessOptions;
using ::zmesh::testing::Recorder;
using ::zmesh::testing::TempDir;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class TransportIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<DirectoryProcess>> dir =
        DirectoryProcess::Start(tmp_.path() + "/dir");
    ASSERT_TRUE(dir.ok()) << dir.status();
    directory_ = *std::move(dir);
    node_a_ = StartProxy("node-a");
    ASSERT_NE(node_a_, nullptr);
    node_b_ = StartProxy("node-b");
    ASSERT_NE(node_b_, nullptr);
  }

  std::unique_ptr<ProxyProcess> StartProxy(const std::string& node) {
    ProxyProcessOptions options;
    options.directory = directory_->address();
    options.node_name = node;
    options.ipc_dir = tmp_.path() + "/" + node;
    options.lease_ttl_ms = 2000;
    absl::StatusOr<std::unique_ptr<ProxyProcess>> proxy = ProxyProcess::Start(options);
    EXPECT_TRUE(proxy.ok()) << proxy.status();
    return proxy.ok() ? *std::move(proxy) : nullptr;
  }

  std::unique_ptr<Transport> Connect(const ProxyProcess& proxy) {
    TransportOptions options;
    options.ipc_dir = proxy.ipc_dir();
    options.description = "transport_integration_test";
    absl::StatusOr<std::unique_ptr<Transport>> t = Transport::Create(options);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *std::move(t) : nullptr;
  }

  // A server answering "<server>:<payload>" and recording "<server>:<payload>" for one-ways.
  std::unique_ptr<Server> EchoServer(Transport& transport, const std::string& topic,
                                     const std::string& server, Recorder* recorder = nullptr,
                                     ServerOptions options = {}) {
    absl::StatusOr<std::unique_ptr<Server>> s = Server::Start(
        transport, Target{"", topic, server},
        [server, recorder](const Request& request, Responder& responder) {
          if (recorder != nullptr) recorder->Add(absl::StrCat(server, ":", request.payload));
          responder.Reply(absl::StrCat(server, ":", request.payload));
        },
        options);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  std::string CallPayload(Transport& t, const Target& target, const std::string& payload,
                          CallOptions options = {}) {
    options.timeout_ms = options.timeout_ms == 60000 ? 5000 : options.timeout_ms;
    absl::StatusOr<CallResult> r = t.Call(target, payload, options);
    if (!r.ok()) return absl::StrCat("error: ", r.status().ToString());
    return r->payload;
  }

  TempDir tmp_;
  std::unique_ptr<DirectoryProcess> directory_;
  std::unique_ptr<ProxyProcess> node_a_;
  std::unique_ptr<ProxyProcess> node_b_;
};

TEST_F(TransportIntegrationTest, WelcomeTellsTheNodeAndTheDirectoryOfTheProxy) {
  std::unique_ptr<Transport> client = Connect(*node_a_);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->node_name(), "node-a");
  EXPECT_EQ(client->proxy_directory(), std::vector<std::string>{directory_->address()});
}

TEST_F(TransportIntegrationTest, GroupCallsAlternateStrictlyAcrossNodes) {
  auto server_a = Connect(*node_a_);
  auto server_b = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(server_a && server_b && client);
  auto s1 = EchoServer(*server_a, "compute", "s1");
  auto s2 = EchoServer(*server_b, "compute", "s2");
  ASSERT_TRUE(s1 && s2);
  std::vector<std::string> replies;
  for (int i = 0; i < 6; ++i) replies.push_back(CallPayload(*client, {"", "compute", ""}, "x"));
  EXPECT_EQ(replies, (std::vector<std::string>{"s1:x", "s2:x", "s1:x", "s2:x", "s1:x", "s2:x"}));
  EXPECT_EQ(client->stats().calls_sent, 6);
  EXPECT_EQ(client->stats().lookups_from_proxy, 1);
}

TEST_F(TransportIntegrationTest, CallToServerNameReachesOnlyThatServer) {
  auto server_a = Connect(*node_a_);
  auto server_b = Connect(*node_b_);
  auto client = Connect(*node_b_);
  ASSERT_TRUE(server_a && server_b && client);
  auto s1 = EchoServer(*server_a, "compute", "s1");
  auto s2 = EchoServer(*server_b, "compute", "s2");
  ASSERT_TRUE(s1 && s2);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(CallPayload(*client, {"", "compute", "s1"}, absl::StrCat(i)), absl::StrCat("s1:", i));
  }
}

TEST_F(TransportIntegrationTest, ExchangesIsolateTargets) {
  auto server = Connect(*node_a_);
  auto client = Connect(*node_b_);
  ASSERT_TRUE(server && client);
  auto s = EchoServer(*server, "compute", "s1");
  ASSERT_TRUE(s);
  CallOptions options;
  options.at_least_once = true;
  absl::StatusOr<CallResult> r = client->Call({"other", "compute", ""}, "x", options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
}

TEST_F(TransportIntegrationTest, RemoteErrorComesBackToTheCaller) {
  auto server = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(server && client);
  auto s = Server::Start(*server, {"", "compute", "s1"},
                         [](const Request&, Responder& responder) { responder.Fail("boom"); });
  ASSERT_TRUE(s.ok()) << s.status();
  absl::StatusOr<CallResult> r = client->Call({"", "compute", ""}, "x", {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->remote_error);
  EXPECT_EQ(r->payload, "boom");
}

TEST_F(TransportIntegrationTest, HeartbeatsKeepALongCallAliveUnderAShortMonitorTimeout) {
  auto server = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(server && client);
  auto s = Server::Start(*server, {"", "compute", "slow"},
                         [](const Request&, Responder& responder) {
                           // Simulated long work (not synchronization).
                           std::this_thread::sleep_for(std::chrono::milliseconds(1500));
                           responder.Reply("done");
                         });
  ASSERT_TRUE(s.ok()) << s.status();
  CallOptions options;
  options.timeout_ms = 10000;
  options.call_monitor_timeout_ms = 400;
  absl::StatusOr<CallResult> r = client->Call({"", "compute", "slow"}, "x", options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->payload, "done");
}

TEST_F(TransportIntegrationTest, CallMonitorTimeoutFiresWhenHeartbeatsStop) {
  auto server = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(server && client);
  absl::Notification started;
  absl::Notification release;
  auto s = Server::Start(*server, {"", "compute", "stuck"},
                         [&](const Request&, Responder& responder) {
                           started.Notify();
                           release.WaitForNotificationWithTimeout(absl::Seconds(20));
                         });
  ASSERT_TRUE(s.ok()) << s.status();
  CallOptions options;
  options.timeout_ms = 20000;
  options.call_monitor_timeout_ms = 500;
  const int64_t start = NowMs();
  std::future<absl::StatusOr<CallResult>> call =
      client->CallAsync({"", "compute", "stuck"}, "x", options);
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  server->Close();  // the server's process goes silent: no more heartbeats
  absl::StatusOr<CallResult> r = call.get();
  const int64_t elapsed = NowMs() - start;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "call monitor")) << r.status();
  EXPECT_LT(elapsed, 5000);
  release.Notify();
}

TEST_F(TransportIntegrationTest, AtLeastOnceFailsAtOnceWhenNoServerIsKnown) {
  auto client = Connect(*node_a_);
  ASSERT_TRUE(client);
  CallOptions options;
  options.timeout_ms = 10000;
  options.at_least_once = true;
  const int64_t start = NowMs();
  absl::StatusOr<CallResult> r = client->Call({"", "nobody", ""}, "x", options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_LT(NowMs() - start, 3000);
}

TEST_F(TransportIntegrationTest, CallToAGoneServerTimesOutAtItsDeadline) {
  auto server = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(server && client);
  auto s = EchoServer(*server, "compute", "s9");
  ASSERT_TRUE(s);
  ASSERT_EQ(CallPayload(*client, {"", "compute", "s9"}, "x"), "s9:x");  // cached now
  s->Stop();
  CallOptions options;
  options.timeout_ms = 1500;
  const int64_t start = NowMs();
  absl::StatusOr<CallResult> r = client->Call({"", "compute", "s9"}, "x", options);
  const int64_t elapsed = NowMs() - start;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_GE(elapsed, 1500);
  EXPECT_LT(elapsed, 2500);
}

TEST_F(TransportIntegrationTest, CastAndFanoutFromANewClientReachEveryServer) {
  auto ta = Connect(*node_a_);
  auto tb = Connect(*node_b_);
  ASSERT_TRUE(ta && tb);
  Recorder recorder;
  auto s1 = EchoServer(*ta, "fan", "s1", &recorder);
  auto s2 = EchoServer(*ta, "fan", "s2", &recorder);
  auto s3 = EchoServer(*tb, "fan", "s3", &recorder);
  ASSERT_TRUE(s1 && s2 && s3);
  {
    auto client = Connect(*node_a_);  // created right before sending
    ASSERT_TRUE(client);
    ASSERT_TRUE(client->Fanout({"", "fan", ""}, "f").ok());
  }
  {
    auto client = Connect(*node_b_);
    ASSERT_TRUE(client);
    for (const char* server : {"s1", "s2", "s3"}) {
      ASSERT_TRUE(client->Cast({"", "fan", server}, "c").ok());
    }
  }
  EXPECT_TRUE(Eventually([&] { return recorder.total() >= 6; }, 5000));
  EXPECT_EQ(recorder.counts(), (std::map<std::string, int>{{"s1:c", 1},
                                                           {"s1:f", 1},
                                                           {"s2:c", 1},
                                                           {"s2:f", 1},
                                                           {"s3:c", 1},
                                                           {"s3:f", 1}}));
}

TEST_F(TransportIntegrationTest, ManyCastsToAGroupAreDeliveredExactlyOnce) {
  auto ta = Connect(*node_a_);
  auto tb = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(ta && tb && client);
  Recorder recorder;
  auto s1 = EchoServer(*ta, "bulk", "s1", &recorder);
  auto s2 = EchoServer(*tb, "bulk", "s2", &recorder);
  ASSERT_TRUE(s1 && s2);
  constexpr int kCasts = 100000;
  for (int i = 0; i < kCasts; ++i) {
    ASSERT_TRUE(client->Cast({"", "bulk", ""}, absl::StrCat(i)).ok());
  }
  EXPECT_TRUE(Eventually([&] { return recorder.total() >= kCasts; }, 60000));
  EXPECT_EQ(recorder.total(), kCasts);
  int s1_count = 0;
  for (const auto& [key, count] : recorder.counts()) {
    EXPECT_EQ(count, 1) << key;
    if (absl::StartsWith(key, "s1:")) ++s1_count;
  }
  // Strict round-robin, unless a receiver refused some (OVERLOADED) and they went to the other.
  if (client->stats().casts_retried == 0) {
    EXPECT_EQ(s1_count, kCasts / 2);
  }
}

TEST_F(TransportIntegrationTest, EachNotificationPoolGetsEveryMessageSharedInside) {
  auto ta = Connect(*node_a_);
  auto tb = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(ta && tb && client);
  Recorder recorder;
  auto listen = [&](Transport& t, const std::string& name, const std::string& pool) {
    ListenerOptions options;
    options.pool = pool;
    auto l = NotificationListener::Start(
        t, {NotifyTarget{"", "events", "info"}},
        [&recorder, name](const Request& r) {
          EXPECT_EQ(r.kind, MessageKind::kNotify);
          EXPECT_EQ(r.target.topic, "events.info");
          recorder.Add(name);
        },
        options);
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? *std::move(l) : nullptr;
  };
  auto l1 = listen(*ta, "default-1", "");
  auto l2 = listen(*tb, "default-2", "");
  auto l3 = listen(*ta, "audit-1", "audit");
  auto l4 = listen(*tb, "audit-2", "audit");
  ASSERT_TRUE(l1 && l2 && l3 && l4);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(client->Notify({"", "events", "info"}, absl::StrCat(i)).ok());
  }
  ASSERT_TRUE(client->Notify({"", "events", "error"}, "nobody listens").ok());
  EXPECT_TRUE(Eventually([&] { return recorder.total() >= 20; }, 5000));
  EXPECT_EQ(recorder.counts(), (std::map<std::string, int>{
                                   {"audit-1", 5}, {"audit-2", 5}, {"default-1", 5}, {"default-2", 5}}));
}

TEST_F(TransportIntegrationTest, DrainedNodeGetsNoGroupCallsButStaysReachableByName) {
  auto ta = Connect(*node_a_);
  auto tb = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(ta && tb && client);
  auto s1 = EchoServer(*ta, "compute", "s1");
  auto s2 = EchoServer(*tb, "compute", "s2");
  ASSERT_TRUE(s1 && s2);
  ASSERT_EQ(CallPayload(*client, {"", "compute", ""}, "x"), "s1:x");
  client::DirectoryClientOptions dir_options;
  dir_options.addresses = {directory_->address()};
  auto dir = client::DirectoryClient::Create(dir_options);
  ASSERT_TRUE(dir.ok()) << dir.status();
  directory::v1::DrainNodeRequest drain;
  drain.set_name("node-b");
  drain.set_draining(true);
  ASSERT_TRUE((*dir)->DrainNode(drain).ok());
  // The drain reaches the client's cache through the proxy's push.
  EXPECT_TRUE(Eventually(
      [&] {
        for (int i = 0; i < 4; ++i) {
          if (CallPayload(*client, {"", "compute", ""}, "x") != "s1:x") return false;
        }
        return true;
      },
      10000));
  EXPECT_EQ(CallPayload(*client, {"", "compute", "s2"}, "x"), "s2:x");
}

TEST_F(TransportIntegrationTest, GroupCallFailsOverWhenTheNodeOfItsServerDies) {
  auto ta = Connect(*node_a_);
  auto tb = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(ta && tb && client);
  absl::Notification started;
  absl::Notification release;
  auto s1 = EchoServer(*ta, "compute", "s1");
  auto s2 = Server::Start(*tb, {"", "compute", "s2"}, [&](const Request& r, Responder& responder) {
    started.Notify();
    release.WaitForNotificationWithTimeout(absl::Seconds(20));
    responder.Reply("s2:" + r.payload);
  });
  ASSERT_TRUE(s1 && s2.ok());
  ASSERT_EQ(CallPayload(*client, {"", "compute", ""}, "x"), "s1:x");
  CallOptions options;
  options.timeout_ms = 15000;
  const int64_t start = NowMs();
  std::future<absl::StatusOr<CallResult>> call =
      client->CallAsync({"", "compute", ""}, "y", options);  // round-robin: s2
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  node_b_->Kill();
  absl::StatusOr<CallResult> r = call.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->payload, "s1:y");
  EXPECT_LT(NowMs() - start, 3000);  // well before node-b's lease (2 s TTL) could expire
  EXPECT_EQ(client->stats().calls_retried, 1);
  // New group calls avoid the lost node at once.
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(CallPayload(*client, {"", "compute", ""}, absl::StrCat(i)), absl::StrCat("s1:", i));
  }
  release.Notify();
}

TEST_F(TransportIntegrationTest, GroupCallIsResentWhenItsServerGoesAwayWithoutAnswering) {
  auto ta = Connect(*node_a_);
  auto tb = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(ta && tb && client);
  absl::Notification started;
  absl::Notification release;
  auto s1 = Server::Start(*ta, {"", "compute", "s1"}, [&](const Request& r, Responder& responder) {
    started.Notify();
    release.WaitForNotificationWithTimeout(absl::Seconds(20));
    responder.Reply("s1:" + r.payload);
  });
  auto s2 = EchoServer(*tb, "compute", "s2");
  ASSERT_TRUE(s1.ok() && s2);
  CallOptions options;
  options.timeout_ms = 15000;
  const int64_t start = NowMs();
  std::future<absl::StatusOr<CallResult>> call =
      client->CallAsync({"", "compute", ""}, "y", options);  // round-robin: s1 first
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ta->Close();  // s1's process goes away (its proxy withdraws it at once) without answering
  absl::StatusOr<CallResult> r = call.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->payload, "s2:y");
  EXPECT_LT(NowMs() - start, 5000);
  EXPECT_EQ(client->stats().calls_retried, 1);
  release.Notify();
}

TEST_F(TransportIntegrationTest, StoppingServerAnswersWhatItRunsAndIsNotCalledTwice) {
  auto ta = Connect(*node_a_);
  auto tb = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(ta && tb && client);
  absl::Notification started;
  absl::Notification release;
  Recorder recorder;
  auto s1 = Server::Start(*ta, {"", "compute", "s1"}, [&](const Request& r, Responder& responder) {
    recorder.Add("s1:" + r.payload);
    started.Notify();
    release.WaitForNotificationWithTimeout(absl::Seconds(20));
    responder.Reply("s1:" + r.payload);
  });
  auto s2 = EchoServer(*tb, "compute", "s2", &recorder);
  ASSERT_TRUE(s1.ok() && s2);
  std::future<absl::StatusOr<CallResult>> call = client->CallAsync({"", "compute", ""}, "y", {});
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  std::thread stopper([&] { (*s1)->Stop(); });
  // New calls go to s2 while s1 finishes its running call.
  EXPECT_EQ(CallPayload(*client, {"", "compute", ""}, "z"), "s2:z");
  release.Notify();
  stopper.join();
  absl::StatusOr<CallResult> r = call.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->payload, "s1:y");
  EXPECT_EQ(recorder.Count("s1:y") + recorder.Count("s2:y"), 1);
}

TEST_F(TransportIntegrationTest, AcknowledgedCastsSurviveAServerStoppingMidStream) {
  auto ta = Connect(*node_a_);
  auto tb = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(ta && tb && client);
  Recorder recorder;
  auto s1 = EchoServer(*ta, "acked", "s1", &recorder);
  auto s2 = EchoServer(*tb, "acked", "s2", &recorder);
  ASSERT_TRUE(s1 && s2);
  constexpr int kCasts = 400;
  std::atomic<int> acked{0};
  std::atomic<int> failed{0};
  CastOptions options;
  options.acknowledged = true;
  options.ack_timeout_ms = 1000;
  options.timeout_ms = 20000;
  std::thread stopper;
  for (int i = 0; i < kCasts; ++i) {
    client->CastAsync({"", "acked", ""}, absl::StrCat(i), options, [&](absl::Status st) {
      (st.ok() ? acked : failed).fetch_add(1);
    });
    if (i == kCasts / 4) {
      ASSERT_TRUE(Eventually([&] { return recorder.total() >= kCasts / 8; }, 5000));
      stopper = std::thread([&] { s1->Stop(); });
    }
  }
  EXPECT_TRUE(Eventually([&] { return acked.load() + failed.load() == kCasts; }, 30000));
  if (stopper.joinable()) stopper.join();
  EXPECT_EQ(acked.load(), kCasts);
  std::map<std::string, int> by_payload;
  for (const auto& [key, count] : recorder.counts()) by_payload[key.substr(3)] += count;
  EXPECT_EQ(static_cast<int>(by_payload.size()), kCasts);
  for (const auto& [payload, count] : by_payload) EXPECT_EQ(count, 1) << payload;
}

TEST_F(TransportIntegrationTest, PayloadOverTheLimitIsRefusedBeforeSending) {
  auto client = Connect(*node_a_);
  ASSERT_TRUE(client);
  std::string big(kMaxPayloadBytes + 1, 'x');
  EXPECT_EQ(client->Call({"", "compute", ""}, big, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client->Cast({"", "compute", ""}, big, {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client->Call({"", "", ""}, "x", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status bad_name = client->Cast({"", "comp\nute", ""}, "x", {});
  EXPECT_EQ(bad_name.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad_name.message(), "target.topic")) << bad_name;
  EXPECT_EQ(client->stats().calls_sent + client->stats().casts_sent, 0);
}

TEST_F(TransportIntegrationTest, SixteenMebibytePayloadRoundTrips) {
  auto server = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(server && client);
  auto s = Server::Start(*server, {"", "blob", "s1"},
                         [](const Request& r, Responder& responder) { responder.Reply(r.payload); });
  ASSERT_TRUE(s.ok()) << s.status();
  std::string big(kMaxPayloadBytes, '\0');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>(i / 4096);
  CallOptions options;
  options.timeout_ms = 20000;
  absl::StatusOr<CallResult> r = client->Call({"", "blob", ""}, big, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->payload == big);
}

TEST_F(TransportIntegrationTest, ConcurrentCallsFromSixteenThreads) {
  auto ta = Connect(*node_a_);
  auto tb = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(ta && tb && client);
  auto s1 = EchoServer(*ta, "compute", "s1");
  auto s2 = EchoServer(*tb, "compute", "s2");
  ASSERT_TRUE(s1 && s2);
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const std::string payload = absl::StrCat(t, "-", i);
        const std::string reply = CallPayload(*client, {"", "compute", ""}, payload);
        if (reply == "s1:" + payload || reply == "s2:" + payload) good.fetch_add(1);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(good.load(), 16 * 50);
}

TEST_F(TransportIntegrationTest, ALongCallDoesNotHoldUpShortOnes) {
  auto server = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(server && client);
  absl::Notification release;
  ServerOptions options;
  options.threads = 4;
  auto s = Server::Start(
      *server, {"", "compute", "s1"},
      [&](const Request& r, Responder& responder) {
        if (r.payload == "long") release.WaitForNotificationWithTimeout(absl::Seconds(20));
        responder.Reply(r.payload);
      },
      options);
  ASSERT_TRUE(s.ok()) << s.status();
  CallOptions long_options;
  long_options.timeout_ms = 30000;
  std::future<absl::StatusOr<CallResult>> long_call =
      client->CallAsync({"", "compute", "s1"}, "long", long_options);
  const int64_t start = NowMs();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(CallPayload(*client, {"", "compute", "s1"}, absl::StrCat(i)), absl::StrCat(i));
  }
  EXPECT_LT(NowMs() - start, 3000);
  EXPECT_EQ(long_call.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  release.Notify();
  absl::StatusOr<CallResult> r = long_call.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->payload, "long");
}

TEST_F(TransportIntegrationTest, AsyncCallbackRunsOffTheCallersStack) {
  auto server = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(server && client);
  auto s = EchoServer(*server, "compute", "s1");
  ASSERT_TRUE(s);
  absl::Notification done;
  std::string reply;
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id callback_thread;
  client->CallAsync({"", "compute", ""}, "x", {}, [&](absl::StatusOr<CallResult> r) {
    reply = r.ok() ? r->payload : r.status().ToString();
    callback_thread = std::this_thread::get_id();
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(reply, "s1:x");
  EXPECT_NE(callback_thread, caller);
}

TEST_F(TransportIntegrationTest, ServerReannouncesAfterItsProxyRestarts) {
  auto server = Connect(*node_b_);
  auto client = Connect(*node_a_);
  ASSERT_TRUE(server && client);
  auto s = EchoServer(*server, "compute", "s1");
  ASSERT_TRUE(s);
  ASSERT_EQ(CallPayload(*client, {"", "compute", "s1"}, "x"), "s1:x");
  node_b_->Kill();
  ASSERT_TRUE(node_b_->Restart().ok());
  CallOptions options;
  options.timeout_ms = 1000;
  EXPECT_TRUE(Eventually(
      [&] { return CallPayload(*client, {"", "compute", "s1"}, "y", options) == "s1:y"; },
      20000));
  EXPECT_GE(server->stats().proxy_reconnects, 1);
}

TEST_F(TransportIntegrationTest, CreateFailsWithoutAProxy) {
  TransportOptions options;
  options.ipc_dir = tmp_.path() + "/none";
  options.connect_timeout_ms = 300;
  absl::StatusOr<std::unique_ptr<Transport>> t = Transport::Create(options);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kUnavailable) << t.status();
}

TEST_F(TransportIntegrationTest, CallsFailUnavailableOnceClosed) {
  auto client = Connect(*node_a_);
  ASSERT_TRUE(client);
  client->Close();
  EXPECT_EQ(client->Call({"", "compute", ""}, "x", {}).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(client->Cast({"", "compute", ""}, "x", {}).code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace zmesh
