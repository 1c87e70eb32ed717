#include "dataplane/client/selection.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace zmesh::internal {
namespace {

namespace dv1 = ::zmesh::directory::v1;
namespace v1 = ::zmesh::wire::v1;

class SelectionTest : public ::testing::Test {
 protected:
  void AddServer(const std::string& node, const std::string& server, bool draining = false) {
    Add(node, server, dv1::KIND_RPC_SERVER, "", draining);
  }
  void AddListener(const std::string& node, const std::string& name, const std::string& pool,
                   bool draining = false) {
    Add(node, name, dv1::KIND_NOTIFY_LISTENER, pool, draining);
  }
  void Add(const std::string& node, const std::string& server, dv1::Kind kind,
           const std::string& pool, bool draining) {
    dv1::Endpoint* ep = result_.add_endpoints();
    ep->mutable_registration()->set_exchange("openstack");
    ep->mutable_registration()->set_topic("compute");
    ep->mutable_registration()->set_server(server);
    ep->mutable_registration()->set_kind(kind);
    ep->mutable_registration()->set_pool(pool);
    ep->mutable_registration()->set_node(node);
    ep->mutable_node()->set_name(node);
    ep->mutable_node()->set_host("127.0.0.1");
    ep->mutable_node()->set_call_port(9501);
    ep->mutable_node()->set_draining(draining);
  }
  EndpointSet Set() const { return EndpointSet::FromLookup(result_); }
  static std::string Key(const Member* m) { return m == nullptr ? "none" : m->node + "/" + m->server; }

  v1::LookupResult result_;
  RoundRobin rr_;
};

TEST_F(SelectionTest, GroupRoundRobinIsStrictInNodeServerOrder) {
  AddServer("node-b", "s1");
  AddServer("node-a", "s2");
  AddServer("node-a", "s1");
  EndpointSet set = Set();
  std::vector<std::string> picks;
  for (int i = 0; i < 6; ++i) picks.push_back(Key(rr_.PickGroup(set)));
  EXPECT_EQ(picks, (std::vector<std::string>{"node-a/s1", "node-a/s2", "node-b/s1", "node-a/s1",
                                             "node-a/s2", "node-b/s1"}));
}

TEST_F(SelectionTest, GroupSkipsDrainingNodesButServerNameReachesThem) {
  AddServer("node-a", "s1", /*draining=*/true);
  AddServer("node-b", "s2");
  EndpointSet set = Set();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Key(rr_.PickGroup(set)), "node-b/s2");
  EXPECT_EQ(Key(rr_.PickServer(set, "s1")), "node-a/s1");
}

TEST_F(SelectionTest, GroupWithOnlyDrainingNodesHasNoMember) {
  AddServer("node-a", "s1", /*draining=*/true);
  EXPECT_EQ(rr_.PickGroup(Set()), nullptr);
}

TEST_F(SelectionTest, RotationContinuesAfterTheMembershipChanges) {
  AddServer("node-a", "s1");
  AddServer("node-b", "s1");
  EXPECT_EQ(Key(rr_.PickGroup(Set())), "node-a/s1");
  AddServer("node-c", "s1");
  // The next after node-a in the new answer, not a restart from the first.
  EXPECT_EQ(Key(rr_.PickGroup(Set())), "node-b/s1");
  EXPECT_EQ(Key(rr_.PickGroup(Set())), "node-c/s1");
  EXPECT_EQ(Key(rr_.PickGroup(Set())), "node-a/s1");
}

TEST_F(SelectionTest, ExcludedMembersAreSkipped) {
  AddServer("node-a", "s1");
  AddServer("node-b", "s1");
  EndpointSet set = Set();
  EXPECT_EQ(Key(rr_.PickGroup(set, {{"node-b", "s1"}})), "node-a/s1");
  EXPECT_EQ(Key(rr_.PickGroup(set, {{"node-b", "s1"}})), "node-a/s1");
  EXPECT_EQ(rr_.PickGroup(set, {{"node-a", "s1"}, {"node-b", "s1"}}), nullptr);
}

TEST_F(SelectionTest, UnknownServerNameHasNoMember) {
  AddServer("node-a", "s1");
  EXPECT_EQ(rr_.PickServer(Set(), "s9"), nullptr);
}

TEST_F(SelectionTest, FanoutReachesEachNodeOnceDrainingIncluded) {
  AddServer("node-a", "s1");
  AddServer("node-a", "s2");
  AddServer("node-b", "s3", /*draining=*/true);
  AddListener("node-c", "l1", "");
  EXPECT_EQ(RoundRobin::FanoutNodes(Set()), (std::vector<std::string>{"node-a", "node-b"}));
}

TEST_F(SelectionTest, EachPoolRotatesOnItsOwn) {
  AddListener("node-a", "l1", "");
  AddListener("node-b", "l2", "");
  AddListener("node-a", "l3", "audit");
  EndpointSet set = Set();
  ASSERT_EQ(set.pools().size(), 2u);
  EXPECT_EQ(Key(rr_.PickInPool(set, "")), "node-a/l1");
  EXPECT_EQ(Key(rr_.PickInPool(set, "audit")), "node-a/l3");
  EXPECT_EQ(Key(rr_.PickInPool(set, "")), "node-b/l2");
  EXPECT_EQ(Key(rr_.PickInPool(set, "audit")), "node-a/l3");
  EXPECT_EQ(Key(rr_.PickInPool(set, "")), "node-a/l1");
}

TEST_F(SelectionTest, PoolSkipsDrainingUnlessAllAreDraining) {
  AddListener("node-a", "l1", "p", /*draining=*/true);
  AddListener("node-b", "l2", "p");
  EndpointSet set = Set();
  EXPECT_EQ(Key(rr_.PickInPool(set, "p")), "node-b/l2");
  EXPECT_EQ(Key(rr_.PickInPool(set, "p")), "node-b/l2");
  // Once the live one is excluded (it refused), the draining one is the pool's last resort.
  EXPECT_EQ(Key(rr_.PickInPool(set, "p", {{"node-b", "l2"}})), "node-a/l1");
}

TEST_F(SelectionTest, DuplicateRegistrationsCountOnce) {
  AddServer("node-a", "s1");
  AddServer("node-a", "s1");
  EXPECT_EQ(Set().rpc_servers().size(), 1u);
  EXPECT_TRUE(Set().HasRpcServer("node-a", "s1"));
  EXPECT_FALSE(Set().HasRpcServer("node-b", "s1"));
}

}  // namespace
}  // namespace zmesh::internal
