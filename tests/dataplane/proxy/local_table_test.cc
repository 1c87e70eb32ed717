#include "dataplane/proxy/local_table.h"

#include <memory>
#include <string>

#include <gtest/gtest.h>

namespace zmesh::proxy {
namespace {

std::string Key(absl::string_view exchange, absl::string_view topic, absl::string_view server) {
  std::string key;
  TargetKey(exchange, topic, server, &key);
  return key;
}

TEST(LocalTableTest, RpcServerIsFoundByItsTargetOnly) {
  LocalTable table;
  table.AddRpcServer("openstack", "compute", "host-1", "i1");
  ASSERT_NE(table.RpcServers(Key("openstack", "compute", "host-1")), nullptr);
  EXPECT_EQ(*table.RpcServers(Key("openstack", "compute", "host-1")), LocalTable::Instances{"i1"});
  EXPECT_EQ(table.RpcServers(Key("openstack", "compute", "host-2")), nullptr);
  EXPECT_EQ(table.RpcServers(Key("other", "compute", "host-1")), nullptr);
  // Fields cannot run into each other: "a" + "bc" is not "ab" + "c".
  table.AddRpcServer("a", "bc", "s", "i2");
  EXPECT_EQ(table.RpcServers(Key("ab", "c", "s")), nullptr);
  EXPECT_EQ(table.Listeners(Key("openstack", "compute", "host-1")), nullptr);
}

TEST(LocalTableTest, FanoutReachesEveryInstanceOfTheTopicOnce) {
  LocalTable table;
  table.AddRpcServer("openstack", "compute", "host-1", "i1");
  table.AddRpcServer("openstack", "compute", "host-2", "i1");
  table.AddRpcServer("openstack", "compute", "host-2", "i2");
  table.AddRpcServer("openstack", "network", "host-1", "i3");
  const LocalTable::Instances* members = table.FanoutMembers(Key("openstack", "compute", ""));
  ASSERT_NE(members, nullptr);
  EXPECT_EQ(*members, (LocalTable::Instances{"i1", "i2"}));
}

TEST(LocalTableTest, ListenersAreKeyedByTheirName) {
  LocalTable table;
  table.AddListener("openstack", "notifications.info", "listener-1", "i1");
  ASSERT_NE(table.Listeners(Key("openstack", "notifications.info", "listener-1")), nullptr);
  EXPECT_EQ(table.FanoutMembers(Key("openstack", "notifications.info", "")), nullptr);
  EXPECT_EQ(table.RpcServers(Key("openstack", "notifications.info", "listener-1")), nullptr);
}

TEST(LocalTableTest, RoundRobinCyclesPerTarget) {
  RoundRobin rr;
  EXPECT_EQ(rr.Next("a", 3), 0u);
  EXPECT_EQ(rr.Next("a", 3), 1u);
  EXPECT_EQ(rr.Next("b", 3), 0u);
  EXPECT_EQ(rr.Next("a", 3), 2u);
  EXPECT_EQ(rr.Next("a", 3), 0u);
  // Fewer instances than before: still in range.
  EXPECT_LT(rr.Next("a", 1), 1u);
}

TEST(LocalTableTest, HolderHandsOutTheNewestTable) {
  LocalTableHolder holder;
  std::shared_ptr<const LocalTable> seen;
  uint64_t generation = 0;
  holder.Refresh(&seen, &generation);
  ASSERT_NE(seen, nullptr);
  EXPECT_EQ(seen->rpc_target_count(), 0u);
  const LocalTable* first = seen.get();
  holder.Refresh(&seen, &generation);
  EXPECT_EQ(seen.get(), first);

  auto next = std::make_shared<LocalTable>();
  next->AddRpcServer("openstack", "compute", "host-1", "i1");
  holder.Publish(next);
  holder.Refresh(&seen, &generation);
  EXPECT_EQ(seen.get(), next.get());
  EXPECT_EQ(seen->rpc_target_count(), 1u);
}

}  // namespace
}  // namespace zmesh::proxy
