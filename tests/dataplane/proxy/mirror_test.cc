#include "dataplane/proxy/mirror.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace zmesh::proxy {
namespace {

namespace dv1 = ::zmesh::directory::v1;

dv1::Event NodeEvent(dv1::Event::Type type, const std::string& name, int port,
                     bool draining = false) {
  dv1::Event e;
  e.set_type(type);
  dv1::Node* n = e.mutable_node();
  n->set_name(name);
  n->set_host(name + ".example");
  n->set_call_port(port);
  n->set_draining(draining);
  return e;
}

dv1::Event RegEvent(dv1::Event::Type type, const std::string& topic, const std::string& server,
                    const std::string& node) {
  dv1::Event e;
  e.set_type(type);
  dv1::Registration* r = e.mutable_registration();
  r->set_exchange("openstack");
  r->set_topic(topic);
  r->set_server(server);
  r->set_kind(dv1::KIND_RPC_SERVER);
  r->set_node(node);
  return e;
}

dv1::WatchResponse Changes(int64_t revision, std::vector<dv1::Event> events) {
  dv1::WatchResponse r;
  r.set_revision(revision);
  for (dv1::Event& e : events) {
    e.set_revision(revision);
    *r.add_events() = std::move(e);
  }
  return r;
}

dv1::WatchResponse Snapshot(int64_t revision, std::vector<dv1::Event> events, bool end) {
  dv1::WatchResponse r = Changes(revision, std::move(events));
  r.set_snapshot(true);
  r.set_snapshot_end(end);
  return r;
}

constexpr auto kPut = dv1::Event::TYPE_PUT;
constexpr auto kDelete = dv1::Event::TYPE_DELETE;

TEST(MirrorTest, RegistrationsAreAnsweredWithTheirNodesInOrder) {
  Mirror mirror;
  std::vector<TopicKey> changed = mirror.Apply(
      Changes(5, {NodeEvent(kPut, "n2", 2), NodeEvent(kPut, "n1", 1),
                  RegEvent(kPut, "compute", "b", "n2"), RegEvent(kPut, "compute", "a", "n2"),
                  RegEvent(kPut, "compute", "c", "n1"), RegEvent(kPut, "network", "x", "n1")}),
      false);
  EXPECT_EQ(changed, (std::vector<TopicKey>{{"openstack", "compute"}, {"openstack", "network"}}));
  wire::v1::LookupResult result = mirror.Lookup("openstack", "compute");
  EXPECT_EQ(result.revision(), 5);
  EXPECT_TRUE(result.from_cache());
  ASSERT_EQ(result.endpoints_size(), 3);
  EXPECT_EQ(result.endpoints(0).registration().server(), "c");
  EXPECT_EQ(result.endpoints(0).node().call_port(), 1u);
  EXPECT_EQ(result.endpoints(1).registration().server(), "a");
  EXPECT_EQ(result.endpoints(2).registration().server(), "b");
  EXPECT_EQ(result.endpoints(2).node().host(), "n2.example");
  EXPECT_EQ(mirror.Lookup("openstack", "nothing").endpoints_size(), 0);
}

TEST(MirrorTest, DeletesAndNodeChangesAreReportedForTheTopicsTheyTouch) {
  Mirror mirror;
  mirror.Apply(
      Changes(3, {NodeEvent(kPut, "n1", 1), NodeEvent(kPut, "n2", 2),
                  RegEvent(kPut, "compute", "a", "n1"), RegEvent(kPut, "network", "b", "n2")}),
      false);
  EXPECT_EQ(mirror.Apply(Changes(4, {RegEvent(kDelete, "compute", "a", "n1")}), false),
            (std::vector<TopicKey>{{"openstack", "compute"}}));
  EXPECT_EQ(mirror.Lookup("openstack", "compute").endpoints_size(), 0);
  // Draining n2 changes the answer of every topic it serves.
  EXPECT_EQ(mirror.Apply(Changes(5, {NodeEvent(kPut, "n2", 2, true)}), false),
            (std::vector<TopicKey>{{"openstack", "network"}}));
  EXPECT_TRUE(mirror.Lookup("openstack", "network").endpoints(0).node().draining());
  // A deleted node takes its registrations along.
  EXPECT_EQ(mirror.Apply(Changes(6, {NodeEvent(kDelete, "n2", 2)}), false),
            (std::vector<TopicKey>{{"openstack", "network"}}));
  EXPECT_EQ(mirror.Lookup("openstack", "network").endpoints_size(), 0);
  EXPECT_TRUE(mirror.RegistrationsOf("n2").empty());
  EXPECT_EQ(mirror.revision(), 6);
}

TEST(MirrorTest, SnapshotReplacesTheViewAndReportsOnlyWhatDiffers) {
  Mirror mirror;
  mirror.Apply(
      Changes(3, {NodeEvent(kPut, "n1", 1), RegEvent(kPut, "compute", "a", "n1"),
                  RegEvent(kPut, "network", "b", "n1"), RegEvent(kPut, "image", "c", "n1")}),
      false);
  // A snapshot in two messages: nothing happens before its end.
  EXPECT_TRUE(
      mirror
          .Apply(
              Snapshot(9, {NodeEvent(kPut, "n1", 1), RegEvent(kPut, "compute", "a", "n1")}, false),
              true)
          .empty());
  EXPECT_EQ(mirror.Lookup("openstack", "network").endpoints_size(), 1);
  EXPECT_EQ(mirror.revision(), 3);
  std::vector<TopicKey> changed = mirror.Apply(
      Snapshot(9, {RegEvent(kPut, "network", "b2", "n1"), RegEvent(kPut, "volume", "d", "n1")},
               true),
      false);
  // compute is unchanged; network changed server; image went away; volume is new.
  EXPECT_EQ(changed,
            (std::vector<TopicKey>{
                {"openstack", "image"}, {"openstack", "network"}, {"openstack", "volume"}}));
  EXPECT_EQ(mirror.Lookup("openstack", "image").endpoints_size(), 0);
  EXPECT_EQ(mirror.Lookup("openstack", "network").endpoints(0).registration().server(), "b2");
  EXPECT_EQ(mirror.revision(), 9);
  EXPECT_TRUE(mirror.synced());
}

TEST(MirrorTest, RegistrationOfAnUnknownNodeIsNotAnsweredUntilTheNodeArrives) {
  Mirror mirror;
  mirror.Apply(Changes(2, {RegEvent(kPut, "compute", "a", "n1")}), false);
  EXPECT_EQ(mirror.Lookup("openstack", "compute").endpoints_size(), 0);
  EXPECT_EQ(mirror.Apply(Changes(3, {NodeEvent(kPut, "n1", 1)}), false),
            (std::vector<TopicKey>{{"openstack", "compute"}}));
  EXPECT_EQ(mirror.Lookup("openstack", "compute").endpoints_size(), 1);
}

}  // namespace
}  // namespace zmesh::proxy
