#include "controlplane/store/sqlite_store.h"

#include <fstream>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/subprocess.h"

namespace zmesh::store {
namespace {

using ::testing::ElementsAre;
using ::testing::SizeIs;

// Command builders.
state::v1::Command Grant(int64_t ttl_ms) {
  state::v1::Command c;
  c.mutable_grant_lease()->set_ttl_ms(ttl_ms);
  return c;
}
state::v1::Command Revoke(int64_t id) {
  state::v1::Command c;
  c.mutable_revoke_lease()->set_id(id);
  return c;
}
state::v1::Command Expire(std::vector<int64_t> ids) {
  state::v1::Command c;
  for (int64_t id : ids) c.mutable_expire_leases()->add_ids(id);
  return c;
}
state::v1::Command PutNode(const std::string& name, int64_t lease_id = 0,
                           const std::string& host = "10.0.0.1") {
  state::v1::Command c;
  dir::Node* node = c.mutable_put_node()->mutable_node();
  node->set_name(name);
  node->set_host(host);
  node->set_call_port(9501);
  node->set_fanout_port(9502);
  node->set_notify_port(9503);
  node->set_cast_port(9504);
  c.mutable_put_node()->set_lease_id(lease_id);
  return c;
}
state::v1::Command Drain(const std::string& name, bool draining) {
  state::v1::Command c;
  c.mutable_set_draining()->set_name(name);
  c.mutable_set_draining()->set_draining(draining);
  return c;
}
state::v1::Command RemoveNode(const std::string& name) {
  state::v1::Command c;
  c.mutable_remove_node()->set_name(name);
  return c;
}
dir::Registration Reg(const std::string& topic, const std::string& server, const std::string& node,
                      dir::Kind kind = dir::KIND_RPC_SERVER, const std::string& pool = "",
                      const std::string& exchange = "openstack") {
  dir::Registration r;
  r.set_exchange(exchange);
  r.set_topic(topic);
  r.set_server(server);
  r.set_kind(kind);
  r.set_pool(pool);
  r.set_node(node);
  return r;
}
state::v1::Command Put(const dir::Registration& reg) {
  state::v1::Command c;
  *c.mutable_put_registration()->mutable_registration() = reg;
  return c;
}
state::v1::Command Delete(const dir::Registration& reg) {
  state::v1::Command c;
  *c.mutable_delete_registration()->mutable_registration() = reg;
  return c;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<SqliteStore> OpenStore(const std::string& name = "a.db",
                                         int64_t history_revisions = 10000) {
    SqliteStoreOptions options;
    options.path = dir_.path() + "/" + name;
    options.history_revisions = history_revisions;
    options.sync_commits = false;  // tests do not need fsync
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // Applies at the next index and expects the command to be accepted.
  CommandResult MustApply(Store& store, const state::v1::Command& command) {
    absl::StatusOr<CommandResult> result = store.Apply(store.applied_index() + 1, command);
    EXPECT_TRUE(result.ok()) << result.status();
    EXPECT_TRUE(result->status.ok()) << result->status << " for " << command.DebugString();
    return result.ok() ? *std::move(result) : CommandResult{};
  }
  absl::Status ApplyStatus(Store& store, const state::v1::Command& command) {
    absl::StatusOr<CommandResult> result = store.Apply(store.applied_index() + 1, command);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->status : result.status();
  }

  dir::LookupResponse LookupTopic(Store& store, const std::string& topic,
                                  const std::string& server = "") {
    dir::LookupRequest request;
    request.set_exchange("openstack");
    request.set_topic(topic);
    request.set_server(server);
    absl::StatusOr<dir::LookupResponse> response = store.Lookup(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : dir::LookupResponse{};
  }

  testing::TempDir dir_;
};

TEST_F(SqliteStoreTest, NewStoreStartsAtRevisionZero) {
  auto store = OpenStore();
  EXPECT_EQ(store->revision(), 0);
  EXPECT_EQ(store->applied_index(), 0u);
  absl::StatusOr<dir::ListNodesResponse> nodes = store->ListNodes();
  ASSERT_TRUE(nodes.ok());
  EXPECT_EQ(nodes->nodes_size(), 0);
}

TEST_F(SqliteStoreTest, GrantAllocatesIncreasingLeaseIdsAndBumpsRevision) {
  auto store = OpenStore();
  CommandResult first = MustApply(*store, Grant(5000));
  CommandResult second = MustApply(*store, Grant(7000));
  EXPECT_EQ(first.lease_id, 1);
  EXPECT_EQ(second.lease_id, 2);
  EXPECT_EQ(second.revision, 2);
  absl::StatusOr<dir::Lease> lease = store->GetLease(2);
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->ttl_ms(), 7000);
  EXPECT_EQ(lease->grant_revision(), 2);
}

TEST_F(SqliteStoreTest, PutNodeCreatesThenUpdatesKeepingDrainingAndCreateRevision) {
  auto store = OpenStore();
  CommandResult created = MustApply(*store, PutNode("node-1"));
  ASSERT_THAT(created.events, SizeIs(1));
  EXPECT_EQ(created.events[0].type(), dir::Event::TYPE_PUT);
  EXPECT_EQ(created.node.create_revision(), 1);
  MustApply(*store, Drain("node-1", true));
  CommandResult updated = MustApply(*store, PutNode("node-1", 0, "10.0.0.2"));
  EXPECT_EQ(updated.node.host(), "10.0.0.2");
  EXPECT_TRUE(updated.node.draining());
  EXPECT_EQ(updated.node.create_revision(), 1);
  EXPECT_EQ(updated.node.mod_revision(), 3);
}

TEST_F(SqliteStoreTest, PutNodeWithSameValuesIsIdempotent) {
  auto store = OpenStore();
  MustApply(*store, PutNode("node-1"));
  CommandResult again = MustApply(*store, PutNode("node-1"));
  EXPECT_TRUE(again.events.empty());
  EXPECT_EQ(again.revision, 1);
}

TEST_F(SqliteStoreTest, PutNodeWithUnknownLeaseIsRejectedAndChangesNothing) {
  auto store = OpenStore();
  absl::Status status = ApplyStatus(*store, PutNode("node-1", 42));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("lease 42"));
  EXPECT_EQ(store->revision(), 0);
  EXPECT_EQ(store->applied_index(), 1u);  // the index is consumed all the same
  EXPECT_EQ(store->GetNode("node-1").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteStoreTest, RegisterIsIdempotentAndNeedsAKnownNode) {
  auto store = OpenStore();
  EXPECT_EQ(ApplyStatus(*store, Put(Reg("compute", "c1", "node-1"))).code(),
            absl::StatusCode::kNotFound);
  MustApply(*store, PutNode("node-1"));
  CommandResult first = MustApply(*store, Put(Reg("compute", "c1", "node-1")));
  EXPECT_TRUE(first.created);
  CommandResult second = MustApply(*store, Put(Reg("compute", "c1", "node-1")));
  EXPECT_FALSE(second.created);
  EXPECT_TRUE(second.events.empty());
  EXPECT_EQ(second.revision, first.revision);
}

TEST_F(SqliteStoreTest, LookupJoinsNodesAndFiltersByServerAndKind) {
  auto store = OpenStore();
  MustApply(*store, PutNode("node-1", 0, "10.0.0.1"));
  MustApply(*store, PutNode("node-2", 0, "10.0.0.2"));
  MustApply(*store, Put(Reg("compute", "compute-1", "node-1")));
  MustApply(*store, Put(Reg("compute", "host@backend", "node-2")));
  MustApply(*store, Put(Reg("compute", "", "node-2", dir::KIND_NOTIFY_LISTENER, "pool-a")));
  MustApply(*store, Put(Reg("other", "compute-1", "node-1")));

  dir::LookupResponse all = LookupTopic(*store, "compute");
  ASSERT_EQ(all.endpoints_size(), 3);
  EXPECT_EQ(all.revision(), store->revision());
  EXPECT_EQ(all.endpoints(0).node().host(), "10.0.0.1");
  EXPECT_EQ(all.endpoints(0).node().call_port(), 9501u);

  dir::LookupResponse one = LookupTopic(*store, "compute", "host@backend");
  ASSERT_EQ(one.endpoints_size(), 1);
  EXPECT_EQ(one.endpoints(0).node().name(), "node-2");

  dir::LookupRequest by_kind;
  by_kind.set_exchange("openstack");
  by_kind.set_topic("compute");
  by_kind.set_kind(dir::KIND_NOTIFY_LISTENER);
  absl::StatusOr<dir::LookupResponse> listeners = store->Lookup(by_kind);
  ASSERT_TRUE(listeners.ok());
  ASSERT_EQ(listeners->endpoints_size(), 1);
  EXPECT_EQ(listeners->endpoints(0).registration().pool(), "pool-a");

  dir::LookupRequest other_exchange = by_kind;
  other_exchange.set_exchange("nova");
  EXPECT_EQ(store->Lookup(other_exchange)->endpoints_size(), 0);
}

TEST_F(SqliteStoreTest, ExpiredLeaseDeletesItsNodesAndRegistrationsInOneRevision) {
  auto store = OpenStore();
  const int64_t lease = MustApply(*store, Grant(1000)).lease_id;
  MustApply(*store, PutNode("node-1", lease));
  MustApply(*store, PutNode("node-2"));  // permanent: survives
  MustApply(*store, Put(Reg("compute", "c1", "node-1")));
  MustApply(*store, Put(Reg("scheduler", "c1", "node-1")));
  MustApply(*store, Put(Reg("compute", "c2", "node-2")));

  CommandResult expired = MustApply(*store, Expire({lease, 999}));
  EXPECT_THAT(expired.leases_deleted, ElementsAre(lease));
  EXPECT_THAT(expired.nodes_deleted, ElementsAre("node-1"));
  EXPECT_EQ(expired.registrations_deleted, 2);
  ASSERT_THAT(expired.events, SizeIs(3));
  for (const dir::Event& event : expired.events) {
    EXPECT_EQ(event.type(), dir::Event::TYPE_DELETE);
    EXPECT_EQ(event.revision(), expired.revision);
  }
  EXPECT_TRUE(expired.events.back().has_node());
  EXPECT_EQ(store->GetNode("node-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->GetLease(lease).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(LookupTopic(*store, "compute").endpoints_size(), 1);
}

TEST_F(SqliteStoreTest, RevokeUnknownLeaseIsNotFound) {
  auto store = OpenStore();
  absl::Status status = ApplyStatus(*store, Revoke(7));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "lease 7 not found");
}

TEST_F(SqliteStoreTest, RemoveNodeDeletesItsRegistrations) {
  auto store = OpenStore();
  MustApply(*store, PutNode("node-1"));
  MustApply(*store, Put(Reg("compute", "c1", "node-1")));
  CommandResult removed = MustApply(*store, RemoveNode("node-1"));
  EXPECT_EQ(removed.registrations_deleted, 1);
  EXPECT_EQ(LookupTopic(*store, "compute").endpoints_size(), 0);
  EXPECT_EQ(ApplyStatus(*store, RemoveNode("node-1")).code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteStoreTest, UnregisterUnknownIsNotFoundAndKnownEmitsDelete) {
  auto store = OpenStore();
  MustApply(*store, PutNode("node-1"));
  EXPECT_EQ(ApplyStatus(*store, Delete(Reg("compute", "c1", "node-1"))).code(),
            absl::StatusCode::kNotFound);
  MustApply(*store, Put(Reg("compute", "c1", "node-1")));
  CommandResult deleted = MustApply(*store, Delete(Reg("compute", "c1", "node-1")));
  ASSERT_THAT(deleted.events, SizeIs(1));
  EXPECT_EQ(deleted.events[0].type(), dir::Event::TYPE_DELETE);
}

TEST_F(SqliteStoreTest, DrainSetsFlagOnceAndUnknownNodeIsNotFound) {
  auto store = OpenStore();
  MustApply(*store, PutNode("node-1"));
  EXPECT_EQ(MustApply(*store, Drain("node-1", true)).events.size(), 1u);
  EXPECT_EQ(MustApply(*store, Drain("node-1", true)).events.size(), 0u);
  EXPECT_TRUE(store->GetNode("node-1")->node().draining());
  EXPECT_EQ(ApplyStatus(*store, Drain("ghost", true)).code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteStoreTest, AlreadyAppliedIndexIsSkipped) {
  auto store = OpenStore();
  MustApply(*store, PutNode("node-1"));
  absl::StatusOr<CommandResult> replay = store->Apply(1, PutNode("node-2"));
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store->GetNode("node-2").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteStoreTest, BatchWithARejectedCommandAppliesTheOthers) {
  auto store = OpenStore();
  state::v1::Command a = PutNode("node-1");
  state::v1::Command bad = Revoke(99);
  state::v1::Command b = Put(Reg("compute", "c1", "node-1"));
  absl::StatusOr<std::vector<CommandResult>> results =
      store->ApplyBatch({{1, &a}, {2, &bad}, {3, &b}});
  ASSERT_TRUE(results.ok());
  EXPECT_TRUE((*results)[0].status.ok());
  EXPECT_EQ((*results)[1].status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE((*results)[2].status.ok());
  EXPECT_EQ(store->applied_index(), 3u);
  EXPECT_EQ(store->revision(), 2);
}

TEST_F(SqliteStoreTest, StateSurvivesReopen) {
  {
    auto store = OpenStore();
    const int64_t lease = MustApply(*store, Grant(3000)).lease_id;
    MustApply(*store, PutNode("node-1", lease));
    MustApply(*store, Put(Reg("compute", "c1", "node-1")));
  }
  auto store = OpenStore();
  EXPECT_EQ(store->revision(), 3);
  EXPECT_EQ(store->applied_index(), 3u);
  EXPECT_EQ(LookupTopic(*store, "compute").endpoints_size(), 1);
  EXPECT_EQ(MustApply(*store, Grant(3000)).lease_id, 2);  // the id counter is persisted
}

TEST_F(SqliteStoreTest, ReadChangesFromHistoryAndSnapshotWhenCompacted) {
  auto store = OpenStore("a.db", /*history_revisions=*/3);
  MustApply(*store, PutNode("node-1"));                       // rev 1
  MustApply(*store, Put(Reg("compute", "c1", "node-1")));     // rev 2
  MustApply(*store, Put(Reg("scheduler", "s1", "node-1")));   // rev 3
  MustApply(*store, Delete(Reg("compute", "c1", "node-1")));  // rev 4
  MustApply(*store, Put(Reg("compute", "c2", "node-1")));     // rev 5 -> keeps 3..5

  WatchFilter compute{"openstack", "comp", false};
  absl::StatusOr<ChangesSince> recent = store->ReadChanges(compute, 4, false);
  ASSERT_TRUE(recent.ok());
  EXPECT_FALSE(recent->snapshot);
  EXPECT_EQ(recent->revision, 5);
  EXPECT_EQ(recent->compact_revision, 2);
  ASSERT_THAT(recent->events, SizeIs(2));
  EXPECT_EQ(recent->events[0].type(), dir::Event::TYPE_DELETE);
  EXPECT_EQ(recent->events[1].registration().server(), "c2");

  absl::StatusOr<ChangesSince> old = store->ReadChanges(compute, 1, false);
  ASSERT_TRUE(old.ok());
  EXPECT_TRUE(old->snapshot);
  ASSERT_THAT(old->events, SizeIs(1));  // just what exists now
  EXPECT_EQ(old->events[0].registration().server(), "c2");

  WatchFilter everything{"", "", true};
  absl::StatusOr<ChangesSince> snapshot = store->ReadChanges(everything, 0, true);
  ASSERT_TRUE(snapshot.ok());
  EXPECT_TRUE(snapshot->snapshot);
  EXPECT_THAT(snapshot->events, SizeIs(3));  // node-1, scheduler s1, compute c2

  absl::StatusOr<ChangesSince> now = store->ReadChanges(everything, 0, false);
  ASSERT_TRUE(now.ok());
  EXPECT_TRUE(now->events.empty());
  EXPECT_EQ(now->revision, 5);
}

TEST_F(SqliteStoreTest, ListTopicsPagesThroughEveryTopicOnce) {
  auto store = OpenStore();
  MustApply(*store, PutNode("node-1"));
  MustApply(*store, PutNode("node-2"));
  std::set<std::string> expected;
  for (int i = 0; i < 25; ++i) {
    std::string topic = "topic-" + std::to_string(i);
    expected.insert(topic);
    MustApply(*store, Put(Reg(topic, "s", "node-1")));
    MustApply(*store, Put(Reg(topic, "s", "node-2")));
  }
  MustApply(*store, Put(Reg("topic-0", "", "node-1", dir::KIND_NOTIFY_LISTENER)));
  std::set<std::string> seen;
  dir::ListTopicsRequest request;
  request.set_page_size(10);
  int pages = 0;
  do {
    absl::StatusOr<dir::ListTopicsResponse> page = store->ListTopics(request);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const dir::TopicSummary& topic : page->topics()) {
      EXPECT_TRUE(seen.insert(topic.topic()).second) << topic.topic();
      EXPECT_EQ(topic.nodes(), 2);
      EXPECT_EQ(topic.rpc_servers(), 2);
      EXPECT_EQ(topic.notify_listeners(), topic.topic() == "topic-0" ? 1 : 0);
    }
    request.set_page_token(page->next_page_token());
    ++pages;
  } while (!request.page_token().empty());
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(pages, 3);

  request.set_page_token("zz-not-hex");
  EXPECT_EQ(store->ListTopics(request).status().code(), absl::StatusCode::kInvalidArgument);
}

// A seeded random sequence of commands, to compare replicas.
std::vector<state::v1::Command> RandomCommands(uint32_t seed, int count) {
  std::mt19937 rng(seed);
  std::vector<state::v1::Command> commands;
  auto pick = [&](int n) { return static_cast<int>(rng() % n); };
  for (int i = 0; i < count; ++i) {
    std::string node = "node-" + std::to_string(pick(5));
    switch (pick(8)) {
      case 0:
        commands.push_back(Grant(1000 + pick(5000)));
        break;
      case 1:
        commands.push_back(PutNode(node, pick(4)));  // lease may not exist: rejected
        break;
      case 2:
        commands.push_back(Drain(node, pick(2) == 0));
        break;
      case 3:
        commands.push_back(Expire({pick(6)}));
        break;
      case 4:
        commands.push_back(RemoveNode(node));
        break;
      case 5:
        commands.push_back(Delete(Reg("t" + std::to_string(pick(3)), "s", node)));
        break;
      default:
        commands.push_back(Put(Reg("t" + std::to_string(pick(3)), "s", node)));
        break;
    }
  }
  return commands;
}

TEST_F(SqliteStoreTest, SameCommandsGiveByteIdenticalState) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::vector<state::v1::Command> commands = RandomCommands(seed, 400);
  auto a = OpenStore("a.db", 50);
  auto b = OpenStore("b.db", 50);
  uint64_t index = 0;
  for (const state::v1::Command& command : commands) {
    ++index;
    absl::StatusOr<CommandResult> ra = a->Apply(index, command);
    absl::StatusOr<CommandResult> rb = b->Apply(index, command);
    ASSERT_TRUE(ra.ok() && rb.ok());
    ASSERT_EQ(ra->status, rb->status);
    ASSERT_EQ(ra->revision, rb->revision);
  }
  absl::StatusOr<std::string> image_a = a->Snapshot();
  absl::StatusOr<std::string> image_b = b->Snapshot();
  ASSERT_TRUE(image_a.ok() && image_b.ok());
  EXPECT_GT(a->revision(), 50);  // history was trimmed along the way
  EXPECT_TRUE(*image_a == *image_b) << "replicas fed the same commands differ";
}

// Everything a client can read: nodes, leases, registrations and the kept history.
std::string Dump(Store& store) {
  WatchFilter everything{"", "", true};
  std::string dump = store.ListNodes()->DebugString() + store.ListLeases()->DebugString();
  absl::StatusOr<ChangesSince> snapshot = store.ReadChanges(everything, 0, true);
  for (const dir::Event& e : snapshot->events) dump += e.DebugString();
  absl::StatusOr<ChangesSince> history =
      store.ReadChanges(everything, store.Stats()->compact_revision + 1, false);
  for (const dir::Event& e : history->events) dump += e.DebugString();
  return dump + std::to_string(store.applied_index());
}

TEST_F(SqliteStoreTest, SnapshotRestoreRoundTrip) {
  auto source = OpenStore("source.db", 20);
  for (const state::v1::Command& command : RandomCommands(7, 200)) {
    ASSERT_TRUE(source->Apply(source->applied_index() + 1, command).ok());
  }
  absl::StatusOr<std::string> image = source->Snapshot();
  ASSERT_TRUE(image.ok()) << image.status();

  auto target = OpenStore("target.db", 20);
  MustApply(*target, PutNode("stale-node"));  // replaced by the restore
  absl::Status restored = target->Restore(*image);
  ASSERT_TRUE(restored.ok()) << restored;
  EXPECT_EQ(target->revision(), source->revision());
  EXPECT_EQ(target->applied_index(), source->applied_index());
  EXPECT_EQ(Dump(*target), Dump(*source));

  // The restored store keeps applying where the source left off, identically.
  state::v1::Command next = Grant(1234);
  absl::StatusOr<CommandResult> on_source = source->Apply(source->applied_index() + 1, next);
  absl::StatusOr<CommandResult> on_target = target->Apply(target->applied_index() + 1, next);
  EXPECT_EQ(on_source->lease_id, on_target->lease_id);
  EXPECT_EQ(Dump(*source), Dump(*target));

  // And it survives a reopen.
  target.reset();
  auto reopened = OpenStore("target.db", 20);
  EXPECT_EQ(reopened->revision(), source->revision());
}

TEST_F(SqliteStoreTest, RestoreRejectsGarbageAndKeepsState) {
  auto store = OpenStore();
  MustApply(*store, PutNode("node-1"));
  EXPECT_FALSE(store->Restore("this is not a database image").ok());
  EXPECT_TRUE(store->GetNode("node-1").ok());
  MustApply(*store, PutNode("node-2"));
}

TEST_F(SqliteStoreTest, OpeningAFileThatIsNotADatabaseFails) {
  const std::string path = dir_.path() + "/garbage.db";
  std::ofstream(path) << std::string(8192, 'x');
  SqliteStoreOptions options;
  options.path = path;
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), ::testing::HasSubstr(path));
}

}  // namespace
}  // namespace zmesh::store
