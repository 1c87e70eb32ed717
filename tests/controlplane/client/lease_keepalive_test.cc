// LeaseKeepAlive against a real 3-replica directory: leases outlive the loss of the leader and
// of the replica the keepalive stream is on; a lease that is gone is reported.
#include "controlplane/client/lease_keepalive.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/cluster_test.h"
#include "tests/support/subprocess.h"

namespace zmesh::client {
namespace {

namespace dv1 = ::zmesh::directory::v1;
using ::zmesh::testing::ClusterProcess;
using ::zmesh::testing::Eventually;
using ::zmesh::testing::TempDir;

// Long enough that a loaded 2-core machine renews in time, short enough that a lease that is
// not renewed across a failover would expire during the test.
constexpr int64_t kTtlMs = 1500;

class LeaseKeepAliveTest : public ::zmesh::testing::ClusterTest {
 protected:
  // A client whose first address is replica `first` (the keepalive stream starts there).
  std::unique_ptr<DirectoryClient> ClientStartingAt(uint64_t first) {
    DirectoryClientOptions options;
    options.addresses.push_back(cluster_->grpc_address(first));
    for (uint64_t id : cluster_->ids()) {
      if (id != first) options.addresses.push_back(cluster_->grpc_address(id));
    }
    absl::StatusOr<std::unique_ptr<DirectoryClient>> client =
        DirectoryClient::Create(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  uint64_t AFollower() const { return leader_ == 1 ? 2 : 1; }
  uint64_t AnotherFollower(uint64_t follower) const {
    for (uint64_t id : cluster_->ids()) {
      if (id != leader_ && id != follower) return id;
    }
    return 0;
  }

  std::unique_ptr<LeaseKeepAlive> StartKeepAlive(DirectoryClient& client) {
    LeaseKeepAliveOptions options;
    options.on_lost = [this](int64_t id, const absl::Status& reason) {
      absl::MutexLock lock(&mu_);
      lost_.emplace_back(id, reason);
    };
    absl::StatusOr<std::unique_ptr<LeaseKeepAlive>> keepalive =
        LeaseKeepAlive::Start(client, std::move(options));
    EXPECT_TRUE(keepalive.ok()) << keepalive.status();
    return keepalive.ok() ? *std::move(keepalive) : nullptr;
  }

  int64_t Grant(DirectoryClient& client) {
    dv1::GrantRequest request;
    request.set_ttl_ms(kTtlMs);
    absl::StatusOr<dv1::GrantResponse> granted = client.Grant(request);
    EXPECT_TRUE(granted.ok()) << granted.status();
    return granted.ok() ? granted->id() : 0;
  }

  // A node bound to the lease: it disappears if the lease ever expires.
  void RegisterNode(DirectoryClient& client, int64_t lease_id) {
    dv1::RegisterNodeRequest request;
    request.mutable_node()->set_name("node-1");
    request.mutable_node()->set_host("10.0.0.1");
    request.mutable_node()->set_call_port(9501);
    request.mutable_node()->set_fanout_port(9502);
    request.mutable_node()->set_notify_port(9503);
    request.mutable_node()->set_cast_port(9504);
    request.set_lease_id(lease_id);
    absl::StatusOr<dv1::RegisterNodeResponse> registered = client.RegisterNode(request);
    ASSERT_TRUE(registered.ok()) << registered.status();
  }

  // Kills `victim` while the lease is kept, then checks that it lives on for several TTLs.
  void ExpectLeaseSurvivesKill(uint64_t stream_on, uint64_t victim) {
    std::unique_ptr<DirectoryClient> client = ClientStartingAt(stream_on);
    ASSERT_NE(client, nullptr);
    const int64_t lease = Grant(*client);
    ASSERT_GT(lease, 0);
    RegisterNode(*client, lease);
    std::unique_ptr<LeaseKeepAlive> keepalive = StartKeepAlive(*client);
    ASSERT_NE(keepalive, nullptr);
    ASSERT_TRUE(keepalive->Add(lease, kTtlMs).ok());
    ASSERT_TRUE(Eventually([&] { return keepalive->renewals() >= 2; }, 10000));
    ASSERT_EQ(keepalive->stream_address(), cluster_->grpc_address(stream_on));

    cluster_->Kill(victim);
    // Six renewals at ttl/3 after the kill span two TTLs: the lease would have expired.
    const int64_t before = keepalive->renewals();
    EXPECT_TRUE(Eventually([&] { return keepalive->renewals() >= before + 6; }, 20000))
        << "renewals: " << keepalive->renewals() << " (before the kill: " << before << ")";
    EXPECT_FALSE(keepalive->stream_address().empty());
    EXPECT_NE(keepalive->stream_address(), cluster_->grpc_address(victim));

    dv1::TimeToLiveRequest ttl;
    ttl.set_id(lease);
    absl::StatusOr<dv1::TimeToLiveResponse> alive = client->TimeToLive(ttl);
    ASSERT_TRUE(alive.ok()) << alive.status();
    ASSERT_EQ(alive->lease().nodes_size(), 1);
    EXPECT_EQ(alive->lease().nodes(0), "node-1");
    absl::MutexLock lock(&mu_);
    EXPECT_TRUE(lost_.empty()) << "lease " << lost_.front().first
                               << " reported lost: " << lost_.front().second;
  }

  absl::Mutex mu_;
  std::vector<std::pair<int64_t, absl::Status>> lost_ ABSL_GUARDED_BY(mu_);
};

TEST_F(LeaseKeepAliveTest, LeaseSurvivesLeaderKillWhileStreamingFromAFollower) {
  ExpectLeaseSurvivesKill(/*stream_on=*/AFollower(), /*victim=*/leader_);
}

TEST_F(LeaseKeepAliveTest, StreamMovesWhenItsReplicaDies) {
  const uint64_t follower = AFollower();
  ExpectLeaseSurvivesKill(/*stream_on=*/follower, /*victim=*/follower);
}

TEST_F(LeaseKeepAliveTest, LeaseSurvivesLeaderKillWhileStreamingFromTheLeader) {
  ExpectLeaseSurvivesKill(/*stream_on=*/leader_, /*victim=*/leader_);
}

TEST_F(LeaseKeepAliveTest, RevokedAndUnknownLeasesAreReportedLost) {
  std::unique_ptr<DirectoryClient> client = ClientStartingAt(AFollower());
  ASSERT_NE(client, nullptr);
  const int64_t kept = Grant(*client);
  const int64_t revoked = Grant(*client);
  const int64_t unknown = revoked + 1000;
  std::unique_ptr<LeaseKeepAlive> keepalive = StartKeepAlive(*client);
  ASSERT_NE(keepalive, nullptr);
  ASSERT_TRUE(keepalive->Add(kept, kTtlMs).ok());
  ASSERT_TRUE(keepalive->Add(revoked, kTtlMs).ok());
  ASSERT_TRUE(keepalive->Add(unknown, kTtlMs).ok());
  ASSERT_TRUE(Eventually(
      [&] {
        absl::MutexLock lock(&mu_);
        return !lost_.empty();
      },
      10000));
  {
    absl::MutexLock lock(&mu_);
    ASSERT_EQ(lost_.size(), 1u);
    EXPECT_EQ(lost_[0].first, unknown);
    EXPECT_EQ(lost_[0].second.code(), absl::StatusCode::kNotFound) << lost_[0].second;
  }

  dv1::RevokeRequest revoke;
  revoke.set_id(revoked);
  ASSERT_TRUE(client->Revoke(revoke).ok());
  // Reported at its next renewal, within a third of its TTL.
  ASSERT_TRUE(Eventually(
      [&] {
        absl::MutexLock lock(&mu_);
        return lost_.size() >= 2;
      },
      10000));
  {
    absl::MutexLock lock(&mu_);
    EXPECT_EQ(lost_[1].first, revoked);
    EXPECT_EQ(lost_[1].second.code(), absl::StatusCode::kNotFound) << lost_[1].second;
  }
  EXPECT_EQ(keepalive->leases(), std::vector<int64_t>{kept});
  keepalive->Stop();
  EXPECT_EQ(keepalive->stream_address(), "");
}

TEST_F(LeaseKeepAliveTest, RejectsBadLeasesAndOptions) {
  std::unique_ptr<DirectoryClient> client = ClientStartingAt(leader_);
  ASSERT_NE(client, nullptr);
  LeaseKeepAliveOptions bad;
  bad.response_timeout_ms = 0;
  EXPECT_EQ(LeaseKeepAlive::Start(*client, bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::unique_ptr<LeaseKeepAlive> keepalive = StartKeepAlive(*client);
  ASSERT_NE(keepalive, nullptr);
  EXPECT_EQ(keepalive->Add(0, kTtlMs).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(keepalive->Add(1, 0).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace zmesh::client
