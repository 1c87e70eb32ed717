#include "controlplane/service/watch_hub.h"

#include <thread>

#include "controlplane/store/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/subprocess.h"

namespace zmesh::service {
namespace {

namespace dir = ::zmesh::directory::v1;

// Collects what the hub delivers.
class RecordingSink final : public WatchSink {
 public:
  void Deliver(dir::WatchResponse response) override {
    absl::MutexLock lock(&mu_);
    responses_.push_back(std::move(response));
  }
  std::vector<dir::WatchResponse> responses() {
    absl::MutexLock lock(&mu_);
    return responses_;
  }
  // Every event delivered so far, in order.
  std::vector<dir::Event> events() {
    std::vector<dir::Event> all;
    for (const dir::WatchResponse& r : responses()) {
      all.insert(all.end(), r.events().begin(), r.events().end());
    }
    return all;
  }

 private:
  absl::Mutex mu_;
  std::vector<dir::WatchResponse> responses_ ABSL_GUARDED_BY(mu_);
};

class WatchHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::SqliteStoreOptions options;
    options.path = dir_.path() + "/hub.db";
    options.sync_commits = false;
    options.history_revisions = 1000;
    store_ = *store::SqliteStore::Open(options);
    hub_ = std::make_unique<WatchHub>(*store_);
    Apply(PutNodeCommand("node-1"));
  }

  static state::v1::Command PutNodeCommand(const std::string& name) {
    state::v1::Command c;
    dir::Node* node = c.mutable_put_node()->mutable_node();
    node->set_name(name);
    node->set_host("h");
    node->set_call_port(1);
    node->set_fanout_port(2);
    node->set_notify_port(3);
    node->set_cast_port(4);
    return c;
  }
  static state::v1::Command RegisterCommand(const std::string& topic, const std::string& server,
                                            const std::string& exchange = "openstack") {
    state::v1::Command c;
    dir::Registration* reg = c.mutable_put_registration()->mutable_registration();
    reg->set_exchange(exchange);
    reg->set_topic(topic);
    reg->set_server(server);
    reg->set_kind(dir::KIND_RPC_SERVER);
    reg->set_node("node-1");
    return c;
  }
  // Applies and publishes, as the apply thread does.
  void Apply(const state::v1::Command& command) {
    absl::StatusOr<store::CommandResult> result =
        store_->Apply(store_->applied_index() + 1, command);
    ASSERT_TRUE(result.ok() && result->status.ok());
    hub_->OnApplied(command, *result);
  }

  testing::TempDir dir_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<WatchHub> hub_;
};

TEST_F(WatchHubTest, NewWatcherGetsCurrentRevisionThenLiveChanges) {
  RecordingSink sink;
  dir::WatchRequest request;
  absl::StatusOr<uint64_t> id = hub_->Subscribe(request, &sink);
  ASSERT_TRUE(id.ok());
  ASSERT_EQ(sink.responses().size(), 1u);
  EXPECT_EQ(sink.responses()[0].revision(), 1);
  EXPECT_EQ(sink.responses()[0].events_size(), 0);

  Apply(RegisterCommand("compute", "c1"));
  ASSERT_EQ(sink.events().size(), 1u);
  EXPECT_EQ(sink.events()[0].revision(), 2);
  hub_->Unsubscribe(*id);
  Apply(RegisterCommand("compute", "c2"));
  EXPECT_EQ(sink.events().size(), 1u);
  EXPECT_EQ(hub_->size(), 0u);
}

TEST_F(WatchHubTest, FiltersByExchangeTopicPrefixAndNodes) {
  RecordingSink sink;
  dir::WatchRequest request;
  request.set_exchange("openstack");
  request.set_topic_prefix("comp");
  ASSERT_TRUE(hub_->Subscribe(request, &sink).ok());
  Apply(RegisterCommand("compute", "c1"));
  Apply(RegisterCommand("scheduler", "s1"));
  Apply(RegisterCommand("compute", "c1", "nova"));
  Apply(PutNodeCommand("node-2"));
  std::vector<dir::Event> events = sink.events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].registration().topic(), "compute");
  EXPECT_EQ(events[0].registration().exchange(), "openstack");
}

TEST_F(WatchHubTest, ResumeFromOldRevisionReplaysHistoryWithoutDuplicates) {
  Apply(RegisterCommand("compute", "c1"));  // rev 2
  Apply(RegisterCommand("compute", "c2"));  // rev 3
  RecordingSink sink;
  dir::WatchRequest request;
  request.set_start_revision(2);
  ASSERT_TRUE(hub_->Subscribe(request, &sink).ok());
  Apply(RegisterCommand("compute", "c3"));  // rev 4
  std::vector<int64_t> revisions;
  for (const dir::Event& e : sink.events()) revisions.push_back(e.revision());
  EXPECT_THAT(revisions, ::testing::ElementsAre(2, 3, 4));
}

TEST_F(WatchHubTest, InitialSnapshotIsMarkedAndEnded) {
  for (int i = 0; i < 1200; ++i) Apply(RegisterCommand("compute", "c" + std::to_string(i)));
  RecordingSink sink;
  dir::WatchRequest request;
  request.set_initial_snapshot(true);
  request.set_include_nodes(true);
  ASSERT_TRUE(hub_->Subscribe(request, &sink).ok());
  std::vector<dir::WatchResponse> responses = sink.responses();
  ASSERT_EQ(responses.size(), 3u);  // 1201 events in messages of at most 500
  for (size_t i = 0; i < responses.size(); ++i) {
    EXPECT_TRUE(responses[i].snapshot());
    EXPECT_EQ(responses[i].snapshot_end(), i + 1 == responses.size());
    EXPECT_EQ(responses[i].revision(), store_->revision());
  }
  EXPECT_EQ(sink.events().size(), 1201u);
}

// A watch resumed from a revision this directory has not reached (a restore from a backup
// rewound the revisions while a proxy kept its view; or a replica that is behind): the changes
// up to there are not the watcher's, so it gets a snapshot to replace its view, then every
// change after it, as a watch from too old a revision does. Nothing is skipped.
TEST_F(WatchHubTest, ResumeFromARevisionNotReachedStartsWithASnapshot) {
  Apply(RegisterCommand("compute", "c1"));  // 2
  RecordingSink sink;
  dir::WatchRequest request;
  request.set_start_revision(5);  // the watcher saw up to revision 4 of another history
  ASSERT_TRUE(hub_->Subscribe(request, &sink).ok());
  std::vector<dir::WatchResponse> start = sink.responses();
  ASSERT_EQ(start.size(), 1u);
  EXPECT_TRUE(start[0].snapshot());
  EXPECT_TRUE(start[0].snapshot_end());
  EXPECT_EQ(start[0].revision(), 2);
  ASSERT_EQ(start[0].events_size(), 1);
  EXPECT_EQ(start[0].events(0).registration().server(), "c1");

  Apply(RegisterCommand("compute", "c2"));  // 3
  Apply(RegisterCommand("compute", "c3"));  // 4
  Apply(RegisterCommand("compute", "c4"));  // 5
  std::vector<dir::WatchResponse> responses = sink.responses();
  ASSERT_EQ(responses.size(), 4u);
  std::vector<std::string> servers;
  for (size_t i = 1; i < responses.size(); ++i) {
    EXPECT_FALSE(responses[i].snapshot());
    EXPECT_EQ(responses[i].revision(), static_cast<int64_t>(i) + 2);
    for (const dir::Event& event : responses[i].events()) {
      servers.push_back(event.registration().server());
    }
  }
  EXPECT_THAT(servers, ::testing::ElementsAre("c2", "c3", "c4"));
}

// The next revision is a normal resume point: history (nothing yet), no snapshot.
TEST_F(WatchHubTest, ResumeFromTheNextRevisionGetsNoSnapshot) {
  Apply(RegisterCommand("compute", "c1"));  // 2
  RecordingSink sink;
  dir::WatchRequest request;
  request.set_start_revision(3);
  ASSERT_TRUE(hub_->Subscribe(request, &sink).ok());
  ASSERT_EQ(sink.responses().size(), 1u);
  EXPECT_FALSE(sink.responses()[0].snapshot());
  EXPECT_EQ(sink.responses()[0].events_size(), 0);
  Apply(RegisterCommand("compute", "c2"));  // 3
  ASSERT_EQ(sink.events().size(), 1u);
  EXPECT_EQ(sink.events()[0].registration().server(), "c2");
}

// A follower that falls too far behind gets the leader's snapshot instead of the commands:
// its watchers must be told the new state, not silently skip the changes in between.
TEST_F(WatchHubTest, SnapshotInstallResyncsEveryWatcher) {
  RecordingSink sink;
  dir::WatchRequest request;
  ASSERT_TRUE(hub_->Subscribe(request, &sink).ok());

  // Another replica's state, further ahead: node-1 plus two registrations.
  store::SqliteStoreOptions options;
  options.path = dir_.path() + "/leader.db";
  options.sync_commits = false;
  std::unique_ptr<store::SqliteStore> leader = *store::SqliteStore::Open(options);
  for (const state::v1::Command& c : {PutNodeCommand("node-1"), RegisterCommand("compute", "c1"),
                                      RegisterCommand("compute", "c2")}) {
    ASSERT_TRUE(leader->Apply(leader->applied_index() + 1, c).ok());
  }
  ASSERT_TRUE(store_->Restore(*leader->Snapshot()).ok());
  hub_->OnRestored();

  std::vector<dir::WatchResponse> responses = sink.responses();
  ASSERT_EQ(responses.size(), 2u);  // the initial message, then the resync
  EXPECT_TRUE(responses[1].snapshot());
  EXPECT_TRUE(responses[1].snapshot_end());
  EXPECT_EQ(responses[1].revision(), 3);
  EXPECT_EQ(responses[1].events_size(), 2);

  Apply(RegisterCommand("compute", "c3"));  // revision 4 continues after the snapshot
  std::vector<dir::Event> events = sink.events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events.back().revision(), 4);
  EXPECT_FALSE(sink.responses().back().snapshot());
}

// Subscribing while changes are applied from another thread: the watcher sees every revision
// exactly once, in order.
TEST_F(WatchHubTest, NoGapOrDuplicateWhenSubscribingDuringWrites) {
  constexpr int kWrites = 300;
  std::thread writer([&] {
    for (int i = 0; i < kWrites; ++i) Apply(RegisterCommand("compute", "c" + std::to_string(i)));
  });
  std::vector<std::unique_ptr<RecordingSink>> sinks;
  for (int i = 0; i < 20; ++i) {
    sinks.push_back(std::make_unique<RecordingSink>());
    dir::WatchRequest request;
    request.set_start_revision(1);
    ASSERT_TRUE(hub_->Subscribe(request, sinks.back().get()).ok());
  }
  writer.join();
  for (auto& sink : sinks) {
    std::vector<dir::Event> events = sink->events();
    ASSERT_EQ(events.size(), static_cast<size_t>(kWrites));
    for (int i = 0; i < kWrites; ++i) EXPECT_EQ(events[i].revision(), i + 2);
  }
}

}  // namespace
}  // namespace zmesh::service
