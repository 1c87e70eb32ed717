#include "dataplane/client/timer_heap.h"

#include <string>

#include <gtest/gtest.h>

namespace zmesh::internal {
namespace {

TEST(TimerHeapTest, RunsOnlyWhatIsDueInDueOrder) {
  TimerHeap timers;
  std::string order;
  timers.Add(30, [&] { order += "c"; });
  timers.Add(10, [&] { order += "a"; });
  timers.Add(20, [&] { order += "b"; });
  EXPECT_EQ(timers.MsUntilNext(0), 10);
  EXPECT_EQ(timers.RunDue(9), 0);
  EXPECT_EQ(timers.RunDue(20), 2);
  EXPECT_EQ(order, "ab");
  EXPECT_EQ(timers.MsUntilNext(25), 5);
  EXPECT_EQ(timers.MsUntilNext(40), 0);
  EXPECT_EQ(timers.RunDue(40), 1);
  EXPECT_EQ(order, "abc");
  EXPECT_EQ(timers.MsUntilNext(40), -1);
}

TEST(TimerHeapTest, TiesRunInInsertionOrder) {
  TimerHeap timers;
  std::string order;
  for (char c : std::string("xyz")) timers.Add(5, [&order, c] { order += c; });
  timers.RunDue(5);
  EXPECT_EQ(order, "xyz");
}

TEST(TimerHeapTest, CallbackMayAddTimersDueNow) {
  TimerHeap timers;
  int runs = 0;
  timers.Add(1, [&] {
    ++runs;
    timers.Add(1, [&] { ++runs; });
    timers.Add(100, [&] { ++runs; });
  });
  EXPECT_EQ(timers.RunDue(1), 2);
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(timers.size(), 1u);
}

TEST(TimerHeapTest, RemoveIfDropsOnlyStaleOwnedTimers) {
  TimerHeap timers;
  std::string order;
  timers.Add(10, [&] { order += "a"; }, /*owner=*/1);
  timers.Add(20, [&] { order += "b"; }, /*owner=*/2);
  timers.Add(30, [&] { order += "c"; });  // no owner: never removed
  EXPECT_EQ(timers.RemoveIf([](uint64_t owner, int64_t due) { return owner == 1 || due == 30; }),
            1u);
  timers.RunDue(100);
  EXPECT_EQ(order, "bc");
}

}  // namespace
}  // namespace zmesh::internal
