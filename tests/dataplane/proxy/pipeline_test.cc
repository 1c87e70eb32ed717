// The four pipelines with real ZeroMQ sockets (loopback TCP, IPC in a temp dir) and a local
// table set by the test.
#include "dataplane/proxy/pipeline.h"

#include <array>
#include <memory>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "dataplane/wire/envelope.h"
#include "dataplane/wire/sockets.h"
#include "tests/dataplane/proxy/test_peers.h"
#include "tests/support/subprocess.h"

namespace zmesh::proxy {
namespace {

namespace v1 = ::zmesh::wire::v1;
using testing::FakeInstance;
using testing::Frames;
using testing::MakeHeader;
using testing::NetworkPeer;
using testing::ReceiveWithin;
using testing::SendStrings;

constexpr int64_t kMaxPayload = 1024;
constexpr int64_t kWaitMs = 3000;
// Long enough for a message that is coming to arrive on loopback; used only to check that
// nothing arrives.
constexpr int64_t kQuietMs = 100;

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < kPatternCount; ++i) {
      const Pattern pattern = static_cast<Pattern>(i);
      PipelineOptions options;
      options.pattern = pattern;
      options.tcp_endpoint = "tcp://127.0.0.1:0";
      options.ipc_endpoint = *wire::IpcEndpoint(dir_.path(), PatternName(pattern));
      options.max_payload_bytes = kMaxPayload;
      options.node_name = "node-t";
      auto created = Pipeline::Create(context_, options, table_, stats_.of(pattern));
      ASSERT_TRUE(created.ok()) << created.status();
      pipelines_[i] = *std::move(created);
      pipelines_[i]->Start();
    }
  }
  void TearDown() override {
    for (auto& p : pipelines_) {
      if (p != nullptr) p->Stop();
    }
  }

  int port(Pattern pattern) { return pipelines_[static_cast<int>(pattern)]->port(); }
  const PipelineStats& stats(Pattern pattern) { return stats_.of(pattern); }

  std::unique_ptr<FakeInstance> Attached() {
    auto instance = std::make_unique<FakeInstance>(context_, dir_.path());
    EXPECT_TRUE(instance->Attach().ok());
    return instance;
  }

  // Publishes a table where each (instance, topic, server) serves as RPC server.
  void Serve(std::vector<std::tuple<std::string, std::string, std::string>> servers,
             std::vector<std::tuple<std::string, std::string, std::string>> listeners = {}) {
    auto table = std::make_shared<LocalTable>();
    for (const auto& [instance, topic, server] : servers) {
      table->AddRpcServer("openstack", topic, server, instance);
    }
    for (const auto& [instance, topic, name] : listeners) {
      table->AddListener("openstack", topic, name, instance);
    }
    table_.Publish(table);
  }

  // Echoes one CALL received by the instance; returns the CALL's payload ("" if none came).
  static std::string EchoOne(FakeInstance& instance, const std::string& prefix) {
    std::optional<Frames> call = ReceiveWithin(instance.data(Pattern::kCall), kWaitMs);
    if (!call.has_value() || call->size() != 3) return "";
    v1::Header request;
    request.ParseFromString((*call)[1]);
    v1::Header reply;
    reply.set_kind(v1::KIND_REPLY);
    reply.set_message_id(request.message_id());
    (void)SendStrings(instance.data(Pattern::kCall),
                      {(*call)[0], wire::EncodeHeader(reply), prefix + (*call)[2]});
    return (*call)[2];
  }

  ::zmesh::testing::TempDir dir_;
  zmq::context_t context_{1};
  ProxyStats stats_;
  LocalTableHolder table_;
  std::array<std::unique_ptr<Pipeline>, kPatternCount> pipelines_;
};

TEST_F(PipelineTest, CallReachesTheInstanceAndTheReplyComesBack) {
  auto instance = Attached();
  Serve({{instance->id(), "compute", "host-1"}});
  NetworkPeer caller(context_, port(Pattern::kCall));
  ASSERT_TRUE(caller.Send(MakeHeader(v1::KIND_CALL, 1, "compute", "host-1"), "hello").ok());
  EXPECT_EQ(EchoOne(*instance, "re:"), "hello");
  auto reply = caller.Receive(kWaitMs);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->first.kind(), v1::KIND_REPLY);
  EXPECT_EQ(reply->first.message_id(), 1u);
  EXPECT_EQ(reply->second, "re:hello");
  EXPECT_EQ(stats(Pattern::kCall).delivered.load(), 1);
  EXPECT_EQ(stats(Pattern::kCall).answers.load(), 1);
}

TEST_F(PipelineTest, HeartbeatsTravelBackLikeReplies) {
  auto instance = Attached();
  Serve({{instance->id(), "compute", "host-1"}});
  NetworkPeer caller(context_, port(Pattern::kCall));
  ASSERT_TRUE(caller.Send(MakeHeader(v1::KIND_CALL, 4, "compute", "host-1"), "x").ok());
  std::optional<Frames> call = ReceiveWithin(instance->data(Pattern::kCall), kWaitMs);
  ASSERT_TRUE(call.has_value());
  v1::Header heartbeat;
  heartbeat.set_kind(v1::KIND_HEARTBEAT);
  heartbeat.set_message_id(4);
  ASSERT_TRUE(
      SendStrings(instance->data(Pattern::kCall), {(*call)[0], wire::EncodeHeader(heartbeat), ""})
          .ok());
  auto got = caller.Receive(kWaitMs);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->first.kind(), v1::KIND_HEARTBEAT);
}

TEST_F(PipelineTest, CallsAreSharedRoundRobinAmongLocalInstances) {
  auto one = Attached();
  auto two = Attached();
  Serve({{one->id(), "compute", "host-1"}, {two->id(), "compute", "host-1"}});
  NetworkPeer caller(context_, port(Pattern::kCall));
  for (uint64_t id = 1; id <= 4; ++id) {
    ASSERT_TRUE(caller.Send(MakeHeader(v1::KIND_CALL, id, "compute", "host-1"), "x").ok());
  }
  int one_got = 0;
  int two_got = 0;
  while (ReceiveWithin(one->data(Pattern::kCall), kQuietMs).has_value()) ++one_got;
  while (ReceiveWithin(two->data(Pattern::kCall), kQuietMs).has_value()) ++two_got;
  EXPECT_EQ(one_got, 2);
  EXPECT_EQ(two_got, 2);
}

TEST_F(PipelineTest, UnknownTargetIsRefusedWithNoSuchTarget) {
  NetworkPeer caller(context_, port(Pattern::kCall));
  ASSERT_TRUE(caller.Send(MakeHeader(v1::KIND_CALL, 3, "compute", "nobody"), "x").ok());
  auto reply = caller.Receive(kWaitMs);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->first.kind(), v1::KIND_REPLY);
  EXPECT_EQ(reply->first.message_id(), 3u);
  EXPECT_EQ(reply->first.status(), v1::STATUS_NO_SUCH_TARGET);
  EXPECT_EQ(reply->first.node(), "node-t");
  EXPECT_EQ(stats(Pattern::kCall).drop(DropReason::kNoSuchTarget), 1);

  NetworkPeer caster(context_, port(Pattern::kCast));
  ASSERT_TRUE(caster.Send(MakeHeader(v1::KIND_CAST, 4, "compute", "nobody"), "x").ok());
  auto ack = caster.Receive(kWaitMs);
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->first.kind(), v1::KIND_ACK);
  EXPECT_EQ(ack->first.status(), v1::STATUS_NO_SUCH_TARGET);
}

TEST_F(PipelineTest, InstanceInTheTableButNotConnectedIsNoSuchTarget) {
  Serve({{"gone-instance", "compute", "host-1"}});
  NetworkPeer caller(context_, port(Pattern::kCall));
  ASSERT_TRUE(caller.Send(MakeHeader(v1::KIND_CALL, 3, "compute", "host-1"), "x").ok());
  auto reply = caller.Receive(kWaitMs);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->first.status(), v1::STATUS_NO_SUCH_TARGET);
}

TEST_F(PipelineTest, MalformedMessagesAreCountedAndTheProxyKeepsServing) {
  auto instance = Attached();
  Serve({{instance->id(), "compute", "host-1"}});
  NetworkPeer caller(context_, port(Pattern::kCall));
  // One frame: nothing to answer.
  ASSERT_TRUE(caller.SendRaw({"just one frame"}).ok());
  // A header that is not a header: dropped.
  ASSERT_TRUE(caller.SendRaw({"\x0a\xff\xff\xff\xff", "payload"}).ok());
  // Too many frames with a readable header: refused.
  ASSERT_TRUE(caller
                  .SendRaw({MakeHeader(v1::KIND_CALL, 10, "compute", "host-1").SerializeAsString(),
                            "a", "b"})
                  .ok());
  auto refused = caller.Receive(kWaitMs);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->first.message_id(), 10u);
  EXPECT_EQ(refused->first.status(), v1::STATUS_BAD_MESSAGE);
  // Wrong version.
  v1::Header v2 = MakeHeader(v1::KIND_CALL, 11, "compute", "host-1");
  v2.set_version(static_cast<v1::Version>(2));
  ASSERT_TRUE(caller.Send(v2, "x").ok());
  refused = caller.Receive(kWaitMs);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->first.message_id(), 11u);
  EXPECT_EQ(refused->first.status(), v1::STATUS_BAD_MESSAGE);
  // A kind this port does not carry.
  ASSERT_TRUE(caller.Send(MakeHeader(v1::KIND_CAST, 12, "compute", "host-1"), "x").ok());
  refused = caller.Receive(kWaitMs);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->first.message_id(), 12u);
  EXPECT_EQ(refused->first.status(), v1::STATUS_BAD_MESSAGE);
  // Over the payload limit.
  ASSERT_TRUE(
      caller.Send(MakeHeader(v1::KIND_CALL, 13, "compute", "host-1"), std::string(2000, 'x')).ok());
  refused = caller.Receive(kWaitMs);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->first.message_id(), 13u);
  EXPECT_EQ(refused->first.status(), v1::STATUS_TOO_LARGE);

  EXPECT_FALSE(ReceiveWithin(instance->data(Pattern::kCall), kQuietMs).has_value());
  const PipelineStats& s = stats(Pattern::kCall);
  EXPECT_EQ(s.drop(DropReason::kBadFrameCount), 2);
  EXPECT_EQ(s.drop(DropReason::kBadHeader), 1);
  EXPECT_EQ(s.drop(DropReason::kBadVersion), 1);
  EXPECT_EQ(s.drop(DropReason::kBadKind), 1);
  EXPECT_EQ(s.drop(DropReason::kTooLarge), 1);
  EXPECT_EQ(s.refused.load(), 4);

  // Still serving.
  ASSERT_TRUE(caller.Send(MakeHeader(v1::KIND_CALL, 14, "compute", "host-1"), "ok").ok());
  EXPECT_EQ(EchoOne(*instance, ""), "ok");
  auto reply = caller.Receive(kWaitMs);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->first.message_id(), 14u);
}

TEST_F(PipelineTest, RandomInputOnEveryPortNeverStopsThePipelines) {
  auto instance = Attached();
  Serve({{instance->id(), "compute", "host-1"}}, {{instance->id(), "events.info", "l-1"}});
  const unsigned seed = std::random_device()();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 random(seed);
  auto bytes = [&](size_t max) {
    std::string out(random() % (max + 1), '\0');
    for (char& c : out) c = static_cast<char>(random());
    return out;
  };
  const v1::Kind kinds[] = {v1::KIND_CALL, v1::KIND_FANOUT, v1::KIND_NOTIFY, v1::KIND_CAST};
  std::vector<std::unique_ptr<NetworkPeer>> peers;
  for (int i = 0; i < kPatternCount; ++i) {
    peers.push_back(std::make_unique<NetworkPeer>(context_, port(static_cast<Pattern>(i))));
  }
  int64_t sent = 0;
  for (int n = 0; n < 400; ++n) {
    const int i = static_cast<int>(random() % kPatternCount);
    Frames frames;
    const size_t count = 1 + random() % 4;
    for (size_t f = 0; f < count; ++f) {
      if (f == 0 && random() % 2 == 0) {
        // A real header with one byte flipped: parses more often than pure noise.
        std::string header =
            MakeHeader(kinds[random() % 4], 1 + random() % 1000, "compute", "host-1")
                .SerializeAsString();
        header[random() % header.size()] ^= static_cast<char>(1 + random() % 255);
        frames.push_back(header);
      } else {
        frames.push_back(bytes(f == 0 ? 64 : 2 * kMaxPayload));
      }
    }
    ASSERT_TRUE(peers[i]->SendRaw(frames).ok());
    ++sent;
  }
  int64_t received = 0;
  ASSERT_TRUE(::zmesh::testing::Eventually(
      [&] {
        received = 0;
        for (int i = 0; i < kPatternCount; ++i) received += stats(static_cast<Pattern>(i)).received;
        return received == sent;
      },
      kWaitMs))
      << received << " of " << sent;
  // Whatever reached the instance, the CALL pipeline still delivers and answers a good call
  // (mutated headers may have made valid calls too: skip them).
  NetworkPeer caller(context_, port(Pattern::kCall));
  ASSERT_TRUE(caller.Send(MakeHeader(v1::KIND_CALL, 99, "compute", "host-1"), "ok").ok());
  std::optional<Frames> call;
  while ((call = ReceiveWithin(instance->data(Pattern::kCall), kWaitMs)).has_value() &&
         (call->size() != 3 || (*call)[2] != "ok")) {
  }
  ASSERT_TRUE(call.has_value());
  v1::Header answer;
  answer.set_kind(v1::KIND_REPLY);
  answer.set_message_id(99);
  ASSERT_TRUE(
      SendStrings(instance->data(Pattern::kCall), {(*call)[0], wire::EncodeHeader(answer), "ok"})
          .ok());
  auto reply = caller.Receive(kWaitMs);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->first.message_id(), 99u);
}

TEST_F(PipelineTest, ReplyForAGoneCallerIsCountedNotDelivered) {
  auto instance = Attached();
  v1::Header reply;
  reply.set_kind(v1::KIND_REPLY);
  reply.set_message_id(1);
  ASSERT_TRUE(
      SendStrings(instance->data(Pattern::kCall), {"no-such-route", wire::EncodeHeader(reply), ""})
          .ok());
  EXPECT_TRUE(::zmesh::testing::Eventually(
      [&] { return stats(Pattern::kCall).drop(DropReason::kRouteGone) == 1; }, kWaitMs));
}

TEST_F(PipelineTest, CastAckTravelsBackToTheSender) {
  auto instance = Attached();
  Serve({{instance->id(), "compute", "host-1"}});
  NetworkPeer caster(context_, port(Pattern::kCast));
  v1::Header cast = MakeHeader(v1::KIND_CAST, 21, "compute", "host-1");
  cast.set_ack(true);
  ASSERT_TRUE(caster.Send(cast, "c").ok());
  std::optional<Frames> got = ReceiveWithin(instance->data(Pattern::kCast), kWaitMs);
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ((*got)[2], "c");
  v1::Header ack;
  ack.set_kind(v1::KIND_ACK);
  ack.set_message_id(21);
  ASSERT_TRUE(
      SendStrings(instance->data(Pattern::kCast), {(*got)[0], wire::EncodeHeader(ack), ""}).ok());
  auto answer = caster.Receive(kWaitMs);
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->first.kind(), v1::KIND_ACK);
  EXPECT_EQ(answer->first.status(), v1::STATUS_OK);
  EXPECT_EQ(answer->first.message_id(), 21u);
}

TEST_F(PipelineTest, FanoutReachesEveryInstanceOfTheTopicOnce) {
  auto one = Attached();
  auto two = Attached();
  auto other = Attached();
  Serve({{one->id(), "compute", "host-1"},
         {one->id(), "compute", "host-2"},
         {two->id(), "compute", "host-3"},
         {other->id(), "network", "host-1"}});
  NetworkPeer sender(context_, port(Pattern::kFanout));
  ASSERT_TRUE(sender.Send(MakeHeader(v1::KIND_FANOUT, 31, "compute", ""), "f").ok());
  for (FakeInstance* instance : {one.get(), two.get()}) {
    std::optional<Frames> got = ReceiveWithin(instance->data(Pattern::kFanout), kWaitMs);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ((*got)[2], "f");
    EXPECT_FALSE(ReceiveWithin(instance->data(Pattern::kFanout), kQuietMs).has_value());
  }
  EXPECT_FALSE(ReceiveWithin(other->data(Pattern::kFanout), kQuietMs).has_value());
  EXPECT_EQ(stats(Pattern::kFanout).delivered.load(), 2);
  // No answer for a fanout, delivered or not; only the counter tells.
  ASSERT_TRUE(sender.Send(MakeHeader(v1::KIND_FANOUT, 32, "nobody-here", ""), "f").ok());
  EXPECT_FALSE(sender.Receive(kQuietMs).has_value());
  EXPECT_EQ(stats(Pattern::kFanout).drop(DropReason::kNoSuchTarget), 1);
}

TEST_F(PipelineTest, NotifyGoesToTheListenerThatAnnouncedTheName) {
  auto one = Attached();
  auto two = Attached();
  Serve({}, {{one->id(), "events.info", "listener-1"}, {two->id(), "events.info", "listener-2"}});
  NetworkPeer sender(context_, port(Pattern::kNotify));
  ASSERT_TRUE(sender.Send(MakeHeader(v1::KIND_NOTIFY, 41, "events.info", "listener-2"), "n").ok());
  std::optional<Frames> got = ReceiveWithin(two->data(Pattern::kNotify), kWaitMs);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ((*got)[2], "n");
  EXPECT_FALSE(ReceiveWithin(one->data(Pattern::kNotify), kQuietMs).has_value());
  ASSERT_TRUE(sender.Send(MakeHeader(v1::KIND_NOTIFY, 42, "events.info", "listener-3"), "n").ok());
  auto refused = sender.Receive(kWaitMs);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->first.kind(), v1::KIND_ACK);
  EXPECT_EQ(refused->first.status(), v1::STATUS_NO_SUCH_TARGET);
}

}  // namespace
}  // namespace zmesh::proxy
