// ClusterProcess against the real daemon: start, find the leader, lose it, get it back.
#include "tests/support/cluster_process.h"

#include "gtest/gtest.h"

namespace zmesh::testing {
namespace {

TEST(ClusterProcessTest, StartsThreeReplicasAndSurvivesLosingTheLeader) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<ClusterProcess>> cluster = ClusterProcess::Start(dir.path());
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  EXPECT_EQ((*cluster)->ids().size(), 3u);
  absl::StatusOr<uint64_t> leader = (*cluster)->WaitForLeader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  (*cluster)->Kill(*leader);
  absl::StatusOr<uint64_t> next = (*cluster)->WaitForLeader();
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_NE(*next, *leader);
  ASSERT_TRUE((*cluster)->Restart(*leader).ok());
  EXPECT_TRUE((*cluster)->running(*leader));
  for (uint64_t id : (*cluster)->ids()) EXPECT_TRUE((*cluster)->Stop(id).ok()) << id;
}

}  // namespace
}  // namespace zmesh::testing
