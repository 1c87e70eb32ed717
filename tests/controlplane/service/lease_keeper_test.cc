#include "controlplane/service/lease_keeper.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_clock.h"

namespace zmesh::service {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class LeaseKeeperTest : public ::testing::Test {
 protected:
  testing::FakeClock clock_;
  LeaseKeeper keeper_{clock_};
};

TEST_F(LeaseKeeperTest, LeaseExpiresAfterItsTtl) {
  keeper_.Track(1, 1000);
  clock_.AdvanceMs(999);
  EXPECT_THAT(keeper_.TakeExpired(), IsEmpty());
  EXPECT_EQ(keeper_.RemainingMs(1), 1);
  clock_.AdvanceMs(1);
  EXPECT_THAT(keeper_.TakeExpired(), ElementsAre(1));
}

TEST_F(LeaseKeeperTest, RenewRestartsTheTtl) {
  keeper_.Track(1, 1000);
  clock_.AdvanceMs(800);
  absl::StatusOr<int64_t> ttl = keeper_.Renew(1);
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(*ttl, 1000);
  clock_.AdvanceMs(800);
  EXPECT_THAT(keeper_.TakeExpired(), IsEmpty());
  clock_.AdvanceMs(200);
  EXPECT_THAT(keeper_.TakeExpired(), ElementsAre(1));
}

TEST_F(LeaseKeeperTest, ExpiredLeaseIsHandedOutOnceAndCannotBeRenewed) {
  keeper_.Track(1, 100);
  keeper_.Track(2, 100);
  clock_.AdvanceMs(100);
  EXPECT_THAT(keeper_.TakeExpired(), ElementsAre(1, 2));
  EXPECT_THAT(keeper_.TakeExpired(), IsEmpty());
  EXPECT_EQ(keeper_.Renew(1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(keeper_.NextDeadlineMs().has_value());
}

TEST_F(LeaseKeeperTest, RenewAfterDeadlineFailsEvenBeforeItIsTaken) {
  keeper_.Track(1, 100);
  clock_.AdvanceMs(150);
  absl::StatusOr<int64_t> ttl = keeper_.Renew(1);
  EXPECT_EQ(ttl.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ttl.status().message(), "lease 1 has expired");
}

TEST_F(LeaseKeeperTest, UnknownLeaseIsNotFound) {
  EXPECT_EQ(keeper_.Renew(42).status().message(), "lease 42 not found");
  EXPECT_FALSE(keeper_.RemainingMs(42).has_value());
}

TEST_F(LeaseKeeperTest, ReleasedLeasesAreTakenAgain) {
  keeper_.Track(1, 100);
  clock_.AdvanceMs(100);
  std::vector<int64_t> taken = keeper_.TakeExpired();
  keeper_.Release(taken);
  EXPECT_THAT(keeper_.TakeExpired(), ElementsAre(1));
}

TEST_F(LeaseKeeperTest, ForgottenLeaseNeverExpires) {
  keeper_.Track(1, 100);
  keeper_.Forget(1);
  clock_.AdvanceMs(1000);
  EXPECT_THAT(keeper_.TakeExpired(), IsEmpty());
  EXPECT_EQ(keeper_.size(), 0u);
}

TEST_F(LeaseKeeperTest, NextDeadlineIsTheEarliest) {
  keeper_.Track(1, 5000);
  keeper_.Track(2, 300);
  EXPECT_EQ(keeper_.NextDeadlineMs(), clock_.NowMs() + 300);
}

TEST_F(LeaseKeeperTest, TrackingAgainGivesAFreshTtl) {
  keeper_.Track(1, 1000);
  clock_.AdvanceMs(900);
  keeper_.Track(1, 1000);  // what a restarted replica does for every lease
  clock_.AdvanceMs(900);
  EXPECT_THAT(keeper_.TakeExpired(), IsEmpty());
}

}  // namespace
}  // namespace zmesh::service
