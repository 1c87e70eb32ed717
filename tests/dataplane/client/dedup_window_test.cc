#include "dataplane/client/dedup_window.h"

#include <gtest/gtest.h>

namespace zmesh::internal {
namespace {

using State = DedupWindow::State;

TEST(DedupWindowTest, SecondCopyWhileRunningIsNotRunAgain) {
  DedupWindow window(10);
  EXPECT_EQ(window.Begin("a", 1), State::kNew);
  EXPECT_EQ(window.Begin("a", 1), State::kRunning);
  window.Finish("a", 1);
  EXPECT_EQ(window.Begin("a", 1), State::kDone);
}

TEST(DedupWindowTest, SendersAreTellApart) {
  DedupWindow window(10);
  EXPECT_EQ(window.Begin("a", 1), State::kNew);
  EXPECT_EQ(window.Begin("b", 1), State::kNew);
  EXPECT_EQ(window.Begin("a", 2), State::kNew);
}

TEST(DedupWindowTest, OldestAreForgottenBeyondCapacity) {
  DedupWindow window(3);
  for (uint64_t id = 1; id <= 4; ++id) EXPECT_EQ(window.Begin("a", id), State::kNew);
  EXPECT_EQ(window.size(), 3);
  EXPECT_EQ(window.Begin("a", 4), State::kRunning);
  EXPECT_EQ(window.Begin("a", 1), State::kNew);  // fell out of the window
}

TEST(DedupWindowTest, ForgottenMessageRunsAgain) {
  DedupWindow window(3);
  EXPECT_EQ(window.Begin("a", 1), State::kNew);
  window.Forget("a", 1);
  EXPECT_EQ(window.Begin("a", 1), State::kNew);
}

TEST(DedupWindowTest, StaysBoundedWithManyForgets) {
  DedupWindow window(4);
  for (uint64_t id = 1; id <= 1000; ++id) {
    window.Begin("a", id);
    if (id % 2 == 0) window.Forget("a", id);
  }
  EXPECT_LE(window.size(), 4);
}

}  // namespace
}  // namespace zmesh::internal
