// Watcher against a real 3-replica directory: the watch resumes on another replica when the one
// it streams from dies, with every change delivered once and in order.
#include "controlplane/client/watcher.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
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

// "rev=5 PUT registration compute/s@node-1" or "... node node-1".
std::string Describe(const dv1::Event& event) {
  std::string what = event.has_node() ? absl::StrCat("node ", event.node().name())
                                      : absl::StrCat("registration ", event.registration().topic(),
                                                     "/", event.registration().server(), "@",
                                                     event.registration().node());
  return absl::StrCat("rev=", event.revision(), " ", dv1::Event::Type_Name(event.type()), " ",
                      what);
}

// What a consumer saw: the events, and the snapshots begun.
class Collector {
 public:
  void OnResponse(const dv1::WatchResponse& response, bool snapshot_begins) {
    absl::MutexLock lock(&mu_);
    if (snapshot_begins) ++snapshots_;
    for (const dv1::Event& event : response.events()) events_.push_back(Describe(event));
  }
  std::vector<std::string> events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  int snapshots() const {
    absl::MutexLock lock(&mu_);
    return snapshots_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
  int snapshots_ ABSL_GUARDED_BY(mu_) = 0;
};

class WatcherTest : public ::zmesh::testing::ClusterTest {
 protected:
  // A client whose first address is replica `first` (a watch starts there).
  std::unique_ptr<DirectoryClient> ClientStartingAt(uint64_t first) {
    DirectoryClientOptions options;
    options.addresses.push_back(cluster_->grpc_address(first));
    for (uint64_t id : cluster_->ids()) {
      if (id != first && cluster_->running(id)) {
        options.addresses.push_back(cluster_->grpc_address(id));
      }
    }
    absl::StatusOr<std::unique_ptr<DirectoryClient>> client =
        DirectoryClient::Create(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  uint64_t AFollower() const { return leader_ == 1 ? 2 : 1; }

  std::unique_ptr<Watcher> StartWatcher(DirectoryClient& client, Collector& collector,
                                        dv1::WatchRequest request) {
    WatcherOptions options;
    options.request = std::move(request);
    options.on_response = [&collector](const dv1::WatchResponse& response, bool begins) {
      collector.OnResponse(response, begins);
    };
    options.on_resume = [this](const WatchResume& resume) {
      absl::MutexLock lock(&mu_);
      resumes_.push_back(resume);
    };
    absl::StatusOr<std::unique_ptr<Watcher>> watcher = Watcher::Start(client, std::move(options));
    EXPECT_TRUE(watcher.ok()) << watcher.status();
    return watcher.ok() ? *std::move(watcher) : nullptr;
  }

  // Registers topic/s on node-1; returns the revision.
  int64_t Register(DirectoryClient& client, const std::string& topic) {
    dv1::RegisterRequest request;
    dv1::Registration& registration = *request.mutable_registration();
    registration.set_exchange("openstack");
    registration.set_topic(topic);
    registration.set_server("s");
    registration.set_kind(dv1::KIND_RPC_SERVER);
    registration.set_node("node-1");
    absl::StatusOr<dv1::RegisterResponse> registered = client.Register(request);
    EXPECT_TRUE(registered.ok()) << topic << ": " << registered.status();
    return registered.ok() ? registered->revision() : 0;
  }

  void RegisterNode(DirectoryClient& client) {
    dv1::RegisterNodeRequest request;
    request.mutable_node()->set_name("node-1");
    request.mutable_node()->set_host("10.0.0.1");
    request.mutable_node()->set_call_port(9501);
    request.mutable_node()->set_fanout_port(9502);
    request.mutable_node()->set_notify_port(9503);
    request.mutable_node()->set_cast_port(9504);
    ASSERT_TRUE(client.RegisterNode(request).ok());
  }

  uint64_t IdOf(const std::string& address) const {
    for (uint64_t id : cluster_->ids()) {
      if (cluster_->grpc_address(id) == address) return id;
    }
    return 0;
  }

  // Watches from revision 1 with the stream on `stream_on`, kills `victim` between writes and
  // compares what was delivered with a fresh watch of the whole history.
  void ExpectNoGapOrDuplicateAcrossKill(uint64_t stream_on, uint64_t victim) {
    std::unique_ptr<DirectoryClient> client = ClientStartingAt(stream_on);
    ASSERT_NE(client, nullptr);
    RegisterNode(*client);
    Collector collector;
    dv1::WatchRequest request;
    request.set_start_revision(1);
    request.set_include_nodes(true);
    std::unique_ptr<Watcher> watcher = StartWatcher(*client, collector, request);
    ASSERT_NE(watcher, nullptr);
    int64_t last = 0;
    for (int i = 0; i < 5; ++i) last = Register(*client, absl::StrCat("before-", i));
    ASSERT_TRUE(Eventually([&] { return watcher->last_revision() >= last; }, 10000));
    ASSERT_EQ(IdOf(watcher->stream_address()), stream_on);

    cluster_->Kill(victim);
    for (int i = 0; i < 5; ++i) last = Register(*client, absl::StrCat("after-", i));
    ASSERT_TRUE(Eventually([&] { return watcher->last_revision() >= last; }, 20000))
        << "delivered up to " << watcher->last_revision() << ", written up to " << last;
    EXPECT_NE(IdOf(watcher->stream_address()), stream_on);
    watcher->Stop();
    EXPECT_EQ(watcher->Wait(), absl::OkStatus());
    // A resumed stream never repeats a change, even from a follower that had not yet applied
    // start_revision - 1 when the watch resumed there.
    EXPECT_EQ(watcher->duplicates_dropped(), 0);
    {
      absl::MutexLock lock(&mu_);
      ASSERT_FALSE(resumes_.empty());
      EXPECT_EQ(resumes_.front().lost_address, cluster_->grpc_address(stream_on));
    }

    // The whole history, as a watch that never broke sees it.
    std::unique_ptr<DirectoryClient> other = ClientStartingAt(AnySurvivor(victim));
    Collector truth;
    std::unique_ptr<Watcher> reference = StartWatcher(*other, truth, request);
    ASSERT_NE(reference, nullptr);
    ASSERT_TRUE(Eventually([&] { return reference->last_revision() >= last; }, 10000));
    reference->Stop();
    std::vector<std::string> seen = collector.events();
    EXPECT_EQ(seen, truth.events());
    EXPECT_EQ(seen.size(), 11u);  // the node and ten registrations
    EXPECT_EQ(collector.snapshots(), 0);
  }

  uint64_t AnySurvivor(uint64_t victim) const {
    for (uint64_t id : cluster_->ids()) {
      if (id != victim && cluster_->running(id)) return id;
    }
    return 0;
  }

  absl::Mutex mu_;
  std::vector<WatchResume> resumes_ ABSL_GUARDED_BY(mu_);
};

TEST_F(WatcherTest, ResumesAfterItsFollowerIsKilledWithoutGapsOrDuplicates) {
  const uint64_t follower = AFollower();
  ExpectNoGapOrDuplicateAcrossKill(/*stream_on=*/follower, /*victim=*/follower);
}

TEST_F(WatcherTest, ResumesAfterItsLeaderIsKilledWithoutGapsOrDuplicates) {
  ExpectNoGapOrDuplicateAcrossKill(/*stream_on=*/leader_, /*victim=*/leader_);
}

TEST_F(WatcherTest, SnapshotComesFirstThenChanges) {
  std::unique_ptr<DirectoryClient> client = ClientStartingAt(AFollower());
  ASSERT_NE(client, nullptr);
  RegisterNode(*client);
  Register(*client, "existing");
  Collector collector;
  dv1::WatchRequest request;
  request.set_initial_snapshot(true);
  std::unique_ptr<Watcher> watcher = StartWatcher(*client, collector, request);
  ASSERT_NE(watcher, nullptr);
  ASSERT_TRUE(Eventually([&] { return collector.snapshots() == 1 && watcher->last_revision() > 0; },
                         10000));
  const int64_t revision = Register(*client, "new");
  ASSERT_TRUE(Eventually([&] { return watcher->last_revision() >= revision; }, 10000));
  std::vector<std::string> events = collector.events();
  ASSERT_EQ(events.size(), 2u) << ::testing::PrintToString(events);
  EXPECT_THAT(events[0], ::testing::HasSubstr("TYPE_PUT registration existing/s@node-1"));
  EXPECT_EQ(events[1], absl::StrCat("rev=", revision, " TYPE_PUT registration new/s@node-1"));
}

TEST_F(WatcherTest, StartingNowDeliversOnlyLaterChanges) {
  std::unique_ptr<DirectoryClient> client = ClientStartingAt(leader_);
  ASSERT_NE(client, nullptr);
  RegisterNode(*client);
  Register(*client, "old");
  Collector collector;
  std::unique_ptr<Watcher> watcher = StartWatcher(*client, collector, dv1::WatchRequest());
  ASSERT_NE(watcher, nullptr);
  // "Now" is pinned once the watcher reached a replica.
  ASSERT_TRUE(Eventually([&] { return !watcher->stream_address().empty(); }, 10000));
  const int64_t revision = Register(*client, "later");
  ASSERT_TRUE(Eventually([&] { return watcher->last_revision() >= revision; }, 10000));
  EXPECT_EQ(collector.events(), std::vector<std::string>{absl::StrCat(
                                    "rev=", revision, " TYPE_PUT registration later/s@node-1")});
}

}  // namespace
}  // namespace zmesh::client
