// DirectoryClient against a real 3-replica directory: it finds the leader for writes, follows it
// when it changes, and never reads from anything but the addresses it was given.
#include "controlplane/client/directory_client.h"

#include <memory>
#include <string>
#include <utility>

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

class DirectoryClientTest : public ::zmesh::testing::ClusterTest {
 protected:
  std::unique_ptr<DirectoryClient> Client(std::vector<std::string> addresses, bool prefer_leader) {
    DirectoryClientOptions options;
    options.addresses = std::move(addresses);
    options.prefer_leader = prefer_leader;
    absl::StatusOr<std::unique_ptr<DirectoryClient>> client =
        DirectoryClient::Create(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  absl::Status Grant(DirectoryClient& client) {
    dv1::GrantRequest request;
    request.set_ttl_ms(60000);
    return client.Grant(request).status();
  }

  uint64_t AFollower() const { return leader_ == 1 ? 2 : 1; }
};

TEST_F(DirectoryClientTest, LearnsTheLeaderAndFollowsItAcrossAFailover) {
  const uint64_t follower = AFollower();
  std::unique_ptr<DirectoryClient> client =
      Client({cluster_->grpc_address(follower)}, /*prefer_leader=*/true);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->leader_address(), "");
  ASSERT_TRUE(Grant(*client).ok());
  EXPECT_EQ(client->leader_address(), cluster_->grpc_address(leader_));

  cluster_->Kill(leader_);
  // The write fails over to the given follower (which forwards to the new leader).
  ASSERT_TRUE(Grant(*client).ok());
  absl::StatusOr<uint64_t> next = cluster_->WaitForLeader();
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE(Eventually(
      [&] {
        return Grant(*client).ok() && client->leader_address() == cluster_->grpc_address(*next);
      },
      10000))
      << "leader address: " << client->leader_address();
}

TEST_F(DirectoryClientTest, StaleReadsStayOnTheGivenReplica) {
  const uint64_t follower = AFollower();
  std::unique_ptr<DirectoryClient> client =
      Client({cluster_->grpc_address(follower)}, /*prefer_leader=*/true);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(Grant(*client).ok());
  ASSERT_EQ(client->leader_address(), cluster_->grpc_address(leader_));
  dv1::ListLeasesRequest stale;
  stale.mutable_read()->set_consistency(dv1::CONSISTENCY_STALE);
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<dv1::ListLeasesResponse> leases = client->ListLeases(stale);
    return leases.ok() && leases->leases_size() == 1;
  }));
  // Alone, the follower cannot serve linearizable reads; a stale read is its own state, and
  // the client must not take it from the leader it knows.
  for (uint64_t id : cluster_->ids()) {
    if (id != follower) cluster_->Kill(id);
  }
  absl::StatusOr<dv1::ListLeasesResponse> leases = client->ListLeases(stale);
  ASSERT_TRUE(leases.ok()) << leases.status();
  EXPECT_EQ(leases->leases_size(), 1);
  absl::StatusOr<dv1::StatusResponse> status = client->Status({});
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->id(), follower);
}

TEST_F(DirectoryClientTest, WithoutPreferLeaderTheLeaderIsNeverAskedFor) {
  std::unique_ptr<DirectoryClient> client =
      Client({cluster_->grpc_address(AFollower())}, /*prefer_leader=*/false);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(Grant(*client).ok());
  EXPECT_EQ(client->leader_address(), "");
}

}  // namespace
}  // namespace zmesh::client
