// A real three-replica zmesh-directory cluster (processes, sockets, SQLite files) under faults:
// followers serving everything, leaders killed under load, a checked linearizable history,
// whole-cluster restarts, membership changes, wiped replicas, leases across leader changes and
// requests during elections.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/replica_state.h"
#include "tests/support/subprocess.h"
#include "zmesh/directory/v1/cluster.grpc.pb.h"
#include "zmesh/directory/v1/directory.grpc.pb.h"
#include "zmesh/directory/v1/lease.grpc.pb.h"

namespace zmesh {
namespace {

namespace dir = ::zmesh::directory::v1;
using testing::ClusterOptions;
using testing::ClusterProcess;
using testing::Eventually;
using testing::TailFile;
using testing::TempDir;

constexpr char kExchange[] = "openstack";

// Milliseconds on a monotonic clock, for recording histories.
int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::unique_ptr<grpc::ClientContext> Context(int64_t timeout_ms = 10000) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  return context;
}

// A request whose fate is unknown to the client: the replica may or may not have applied it.
bool OutcomeUnknown(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

dir::Registration MakeRegistration(const std::string& topic, const std::string& server,
                                   const std::string& node) {
  dir::Registration registration;
  registration.set_exchange(kExchange);
  registration.set_topic(topic);
  registration.set_server(server);
  registration.set_kind(dir::KIND_RPC_SERVER);
  registration.set_node(node);
  return registration;
}

// gRPC stubs of one replica. Thread-safe (gRPC stubs are).
struct ReplicaStubs {
  explicit ReplicaStubs(const std::string& address) {
    grpc::ChannelArguments args;
    // A replica that comes back is reconnected to within a fraction of a second.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 300);
    channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    directory = dir::Directory::NewStub(channel);
    leases = dir::Leases::NewStub(channel);
    cluster = dir::Cluster::NewStub(channel);
  }
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<dir::Directory::Stub> directory;
  std::unique_ptr<dir::Leases::Stub> leases;
  std::unique_ptr<dir::Cluster::Stub> cluster;
};

// A Watch stream read on its own thread; the events are collected for the test to poll.
class WatchStream {
 public:
  WatchStream(dir::Directory::Stub& stub, const dir::WatchRequest& request) {
    reader_ = stub.Watch(&context_, request);
    thread_ = std::thread([this] {
      dir::WatchResponse response;
      while (reader_->Read(&response)) {
        absl::MutexLock lock(&mu_);
        for (const dir::Event& event : response.events()) events_.push_back(event);
      }
    });
  }
  WatchStream(const WatchStream&) = delete;
  WatchStream& operator=(const WatchStream&) = delete;
  ~WatchStream() {
    context_.TryCancel();
    thread_.join();
    (void)reader_->Finish();
  }
  std::vector<dir::Event> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<dir::WatchResponse>> reader_;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<dir::Event> events_ ABSL_GUARDED_BY(mu_);
};

class RaftClusterTest : public ::testing::Test {
 protected:
  void StartCluster(std::vector<std::string> extra_args = {}) {
    ClusterOptions options;
    options.extra_args = std::move(extra_args);
    absl::StatusOr<std::unique_ptr<ClusterProcess>> cluster =
        ClusterProcess::Start(dir_.path(), options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    // Created up front: client threads then only look them up (ClusterProcess itself is not
    // thread-safe, so they never touch it).
    for (uint64_t id : cluster_->ids()) stubs(id);
  }

  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) {
      for (uint64_t id : cluster_->ids()) {
        std::cerr << "---- replica " << id << " log tail:\n"
                  << TailFile(cluster_->log_path(id), 40) << "\n";
      }
    }
  }

  ReplicaStubs& stubs(uint64_t id) {
    absl::MutexLock lock(&stubs_mu_);
    std::unique_ptr<ReplicaStubs>& stubs = stubs_[id];
    if (stubs == nullptr) stubs = std::make_unique<ReplicaStubs>(cluster_->grpc_address(id));
    return *stubs;
  }

  uint64_t Leader() {
    absl::StatusOr<uint64_t> leader = cluster_->WaitForLeader(15000);
    EXPECT_TRUE(leader.ok()) << leader.status();
    return leader.value_or(0);
  }

  std::vector<uint64_t> Running() {
    std::vector<uint64_t> running;
    for (uint64_t id : cluster_->ids()) {
      if (cluster_->running(id)) running.push_back(id);
    }
    return running;
  }

  uint64_t AnyFollower(uint64_t leader) {
    for (uint64_t id : Running()) {
      if (id != leader) return id;
    }
    ADD_FAILURE() << "no follower running";
    return 0;
  }

  grpc::Status RegisterNode(uint64_t via, const std::string& name, int64_t lease_id = 0,
                            int64_t timeout_ms = 10000) {
    dir::RegisterNodeRequest request;
    dir::Node* node = request.mutable_node();
    node->set_name(name);
    node->set_host("127.0.0.1");
    node->set_call_port(9501);
    node->set_fanout_port(9502);
    node->set_notify_port(9503);
    node->set_cast_port(9504);
    request.set_lease_id(lease_id);
    dir::RegisterNodeResponse response;
    return stubs(via).directory->RegisterNode(Context(timeout_ms).get(), request, &response);
  }

  grpc::Status Register(uint64_t via, const std::string& topic, const std::string& server,
                        const std::string& node, dir::RegisterResponse* out = nullptr,
                        int64_t timeout_ms = 10000) {
    dir::RegisterRequest request;
    *request.mutable_registration() = MakeRegistration(topic, server, node);
    dir::RegisterResponse response;
    return stubs(via).directory->Register(Context(timeout_ms).get(), request,
                                          out != nullptr ? out : &response);
  }

  grpc::Status Unregister(uint64_t via, const std::string& topic, const std::string& server,
                          const std::string& node, int64_t timeout_ms = 10000) {
    dir::UnregisterRequest request;
    *request.mutable_registration() = MakeRegistration(topic, server, node);
    dir::UnregisterResponse response;
    return stubs(via).directory->Unregister(Context(timeout_ms).get(), request, &response);
  }

  // Server names registered on a topic, as the replica answers.
  absl::StatusOr<std::set<std::string>> Servers(
      uint64_t via, const std::string& topic,
      dir::Consistency consistency = dir::CONSISTENCY_LINEARIZABLE, int64_t timeout_ms = 10000) {
    dir::LookupRequest request;
    request.set_exchange(kExchange);
    request.set_topic(topic);
    request.mutable_read()->set_consistency(consistency);
    dir::LookupResponse response;
    grpc::Status status =
        stubs(via).directory->Lookup(Context(timeout_ms).get(), request, &response);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    std::set<std::string> servers;
    for (const dir::Endpoint& endpoint : response.endpoints()) {
      servers.insert(endpoint.registration().server());
    }
    return servers;
  }

  bool NodeExists(uint64_t via, const std::string& name,
                  dir::Consistency consistency = dir::CONSISTENCY_LINEARIZABLE) {
    dir::GetNodeRequest request;
    request.set_name(name);
    request.mutable_read()->set_consistency(consistency);
    dir::GetNodeResponse response;
    grpc::Status status = stubs(via).directory->GetNode(Context().get(), request, &response);
    EXPECT_TRUE(status.ok() || status.error_code() == grpc::StatusCode::NOT_FOUND)
        << status.error_message();
    return status.ok();
  }

  int64_t Grant(uint64_t via, int64_t ttl_ms) {
    dir::GrantRequest request;
    request.set_ttl_ms(ttl_ms);
    dir::GrantResponse response;
    grpc::Status status = stubs(via).leases->Grant(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.id();
  }

  absl::StatusOr<dir::StatusResponse> ReplicaStatus(uint64_t id, int64_t timeout_ms = 2000) {
    dir::StatusResponse response;
    grpc::Status status =
        stubs(id).cluster->Status(Context(timeout_ms).get(), dir::StatusRequest(), &response);
    if (!status.ok()) return absl::UnavailableError(status.error_message());
    return response;
  }

  // The whole state a replica holds, read locally (see ReplicaStateDump).
  std::string StateDump(uint64_t id) {
    return testing::ReplicaStateDump(*stubs(id).directory, *stubs(id).leases, 3000);
  }

  // Waits until every running replica holds the same state as the leader; returns that state.
  std::string WaitConverged(int64_t timeout_ms = 15000) {
    std::map<uint64_t, std::string> dumps;
    const bool converged = Eventually(
        [&] {
          dumps.clear();
          for (uint64_t id : Running()) dumps[id] = StateDump(id);
          for (const auto& [id, dump] : dumps) {
            if (dump != dumps.begin()->second) return false;
          }
          return !dumps.empty();
        },
        timeout_ms);
    if (!converged) {
      std::string all;
      for (const auto& [id, dump] : dumps) absl::StrAppend(&all, "== replica ", id, ":\n", dump);
      ADD_FAILURE() << "replicas did not converge:\n" << all;
      return "";
    }
    return dumps.begin()->second;
  }

  TempDir dir_;
  std::unique_ptr<ClusterProcess> cluster_;
  absl::Mutex stubs_mu_;
  std::map<uint64_t, std::unique_ptr<ReplicaStubs>> stubs_ ABSL_GUARDED_BY(stubs_mu_);
};

TEST_F(RaftClusterTest, FollowersServeWritesReadsAndWatches) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const uint64_t leader = Leader();
  const std::vector<uint64_t> ids = cluster_->ids();
  ASSERT_TRUE(RegisterNode(AnyFollower(leader), "n1").ok());

  // One watch per replica, all opened before the writes.
  std::map<uint64_t, std::unique_ptr<WatchStream>> watches;
  dir::WatchRequest watch_request;
  watch_request.set_topic_prefix("fw");
  for (uint64_t id : ids) {
    watches[id] = std::make_unique<WatchStream>(*stubs(id).directory, watch_request);
  }
  // A watch starting at revision 0 begins at the replica's current revision: probe until
  // every stream is established, so that each must see all the writes below.
  int probes = 0;
  ASSERT_TRUE(Eventually([&] {
    EXPECT_TRUE(Register(leader, "fw-probe", absl::StrCat("probe", probes++), "n1").ok());
    for (uint64_t id : ids) {
      if (watches[id]->events().empty()) return false;
    }
    return true;
  })) << "a watch saw no probe";

  // Each write goes through a different replica and is read back, linearizably, through every
  // other replica at once: no replica may answer with a state older than an acknowledged write.
  std::vector<int64_t> revisions;
  for (int i = 0; i < 12; ++i) {
    const uint64_t via = ids[i % ids.size()];
    const std::string server = absl::StrCat("s", i);
    dir::RegisterResponse response;
    grpc::Status status = Register(via, "fw", server, "n1", &response);
    ASSERT_TRUE(status.ok()) << "via " << via << ": " << status.error_message();
    ASSERT_TRUE(response.created());
    revisions.push_back(response.revision());
    for (uint64_t reader : ids) {
      absl::StatusOr<std::set<std::string>> servers = Servers(reader, "fw");
      ASSERT_TRUE(servers.ok()) << servers.status();
      EXPECT_EQ(servers->count(server), 1u)
          << "replica " << reader << " missed " << server << " written via " << via;
      EXPECT_EQ(servers->size(), static_cast<size_t>(i + 1)) << "replica " << reader;
    }
  }
  ASSERT_TRUE(std::is_sorted(revisions.begin(), revisions.end()));

  // Every watch, on leader and followers alike, sees the writes in revision order.
  for (uint64_t id : ids) {
    std::vector<dir::Event> events;
    ASSERT_TRUE(Eventually([&] {
      events.clear();
      for (const dir::Event& event : watches[id]->events()) {
        if (event.registration().topic() == "fw") events.push_back(event);
      }
      return events.size() >= revisions.size();
    })) << "watch on replica "
        << id << " saw " << events.size() << " events";
    ASSERT_EQ(events.size(), revisions.size()) << "replica " << id;
    for (size_t i = 0; i < revisions.size(); ++i) {
      const dir::Event& event = events[i];
      EXPECT_EQ(event.type(), dir::Event::TYPE_PUT) << "replica " << id;
      EXPECT_EQ(event.registration().server(), absl::StrCat("s", i)) << "replica " << id;
      EXPECT_EQ(event.revision(), revisions[i]) << "replica " << id;
    }
  }

  // Unregister and lease grants through followers too.
  const uint64_t follower = AnyFollower(leader);
  EXPECT_TRUE(Unregister(follower, "fw", "s0", "n1").ok());
  const int64_t lease = Grant(follower, 60000);
  EXPECT_NE(lease, 0);
  EXPECT_TRUE(RegisterNode(follower, "leased", lease).ok());
  for (uint64_t reader : ids) {
    absl::StatusOr<std::set<std::string>> servers = Servers(reader, "fw");
    ASSERT_TRUE(servers.ok()) << servers.status();
    EXPECT_EQ(servers->count("s0"), 0u) << "replica " << reader;
    EXPECT_TRUE(NodeExists(reader, "leased")) << "replica " << reader;
  }
  WaitConverged();
}

// What one load thread expects of a registration key after its last resolved operation.
struct KeyState {
  bool present = false;
  bool resolved = true;  // false while the last operation's outcome is unknown
  // An attempt to register it had an unknown fate and may still be applied late (the retry
  // went to another replica, under another request id): never unregistered, so that such a
  // late duplicate cannot blur the expected state.
  bool sticky = false;
};

TEST_F(RaftClusterTest, LeaderKilledUnderLoadLosesNoAcknowledgedWrite) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const uint64_t leader = Leader();
  const std::vector<uint64_t> ids = cluster_->ids();
  constexpr int kThreads = 4;

  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::vector<int64_t> ack_times;
  std::vector<std::string> errors;
  // Per thread: server name -> expected state; nodes the thread bound to leases.
  std::vector<std::map<std::string, KeyState>> keys(kThreads);
  std::vector<std::vector<std::string>> leased_nodes(kThreads);

  auto worker = [&](int t) {
    absl::BitGen rng;
    size_t replica = static_cast<size_t>(t) % ids.size();
    const std::string node = absl::StrCat("load-node-", t);
    // Sends one write through the replicas in turn until its outcome is known. Returns the
    // final status and whether an earlier attempt's fate was unknown.
    auto send = [&](auto&& call, bool* had_unknown) {
      *had_unknown = false;
      const int64_t give_up = NowMs() + 20000;
      while (true) {
        // A dead replica fails fast (connection refused): the next one is tried.
        grpc::Status status = call(ids[replica]);
        if (!OutcomeUnknown(status) || NowMs() > give_up || stop.load()) return status;
        *had_unknown = true;
        replica = (replica + 1) % ids.size();
      }
    };
    auto record_ack = [&] {
      absl::MutexLock lock(&mu);
      ack_times.push_back(NowMs());
    };
    auto fail = [&](const std::string& what) {
      absl::MutexLock lock(&mu);
      errors.push_back(absl::StrCat("thread ", t, ": ", what));
    };

    bool unknown = false;
    grpc::Status status =
        send([&](uint64_t via) { return RegisterNode(via, node, 0, 5000); }, &unknown);
    if (!status.ok()) return fail(absl::StrCat("RegisterNode: ", status.error_message()));
    for (int i = 0; !stop.load(); ++i) {
      const int choice = absl::Uniform(rng, 0, 10);
      if (choice == 0) {
        // A leased node: grant, then bind (both must survive the leader's death).
        int64_t lease = 0;
        status = send(
            [&](uint64_t via) {
              dir::GrantRequest request;
              request.set_ttl_ms(60000);
              dir::GrantResponse response;
              grpc::Status s = stubs(via).leases->Grant(Context(5000).get(), request, &response);
              lease = response.id();
              return s;
            },
            &unknown);
        if (!status.ok()) {
          if (!stop.load()) fail(absl::StrCat("Grant: ", status.error_message()));
          continue;
        }
        record_ack();
        const std::string leased = absl::StrCat("load-leased-", t, "-", i);
        status =
            send([&](uint64_t via) { return RegisterNode(via, leased, lease, 5000); }, &unknown);
        if (status.ok()) {
          record_ack();
          leased_nodes[t].push_back(leased);
        } else if (!stop.load()) {
          fail(absl::StrCat("RegisterNode ", leased, ": ", status.error_message()));
        }
        continue;
      }
      KeyState* state = nullptr;
      std::string server;
      const bool unregister = choice <= 3 && !keys[t].empty();
      if (unregister) {
        // Remove a random key believed present.
        auto it = keys[t].begin();
        std::advance(it, absl::Uniform<size_t>(rng, 0, keys[t].size()));
        if (!it->second.present || !it->second.resolved || it->second.sticky) continue;
        server = it->first;
        state = &it->second;
        status = send([&](uint64_t via) { return Unregister(via, "load", server, node, 5000); },
                      &unknown);
        if (status.ok() || (status.error_code() == grpc::StatusCode::NOT_FOUND && unknown)) {
          // NOT_FOUND after an attempt with unknown fate: that attempt removed it.
          state->present = false;
          record_ack();
        } else if (OutcomeUnknown(status)) {
          state->resolved = false;
        } else {
          fail(absl::StrCat("Unregister ", server, ": ", status.error_code(), " ",
                            status.error_message()));
        }
      } else {
        server = absl::StrCat("t", t, "-k", i);
        state = &keys[t][server];
        status =
            send([&](uint64_t via) { return Register(via, "load", server, node, nullptr, 5000); },
                 &unknown);
        state->sticky = unknown;
        if (status.ok()) {
          state->present = true;
          record_ack();
        } else if (OutcomeUnknown(status)) {
          state->resolved = false;
        } else {
          fail(absl::StrCat("Register ", server, ": ", status.error_message()));
        }
      }
    }
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  auto acks = [&] {
    absl::MutexLock lock(&mu);
    return ack_times.size();
  };
  ASSERT_TRUE(Eventually([&] { return acks() >= 100; }, 20000)) << "load did not start";
  const int64_t kill_time = NowMs();
  cluster_->Kill(leader);
  const size_t acks_at_kill = acks();
  EXPECT_TRUE(Eventually([&] { return acks() >= acks_at_kill + 200; }, 20000))
      << "writes did not resume after the leader was killed";
  stop.store(true);
  for (std::thread& thread : threads) thread.join();

  {
    absl::MutexLock lock(&mu);
    for (const std::string& error : errors) ADD_FAILURE() << error;
    // The longest pause in acknowledgements around the failover.
    std::sort(ack_times.begin(), ack_times.end());
    int64_t longest_gap = 0;
    int64_t after_kill = 0;
    for (size_t i = 1; i < ack_times.size(); ++i) {
      if (ack_times[i] >= kill_time) ++after_kill;
      if (ack_times[i] >= kill_time - 1000) {
        longest_gap = std::max(longest_gap, ack_times[i] - ack_times[i - 1]);
      }
    }
    std::cerr << "acknowledged writes: " << ack_times.size() << ", after the kill: " << after_kill
              << ", longest pause around the failover: " << longest_gap << " ms\n";
    EXPECT_GT(after_kill, 0);
    EXPECT_LT(longest_gap, 3000) << "writes stalled too long after the leader died";
  }

  // Every acknowledged write is on every replica, the killed one included once restarted.
  auto check_replica = [&](uint64_t id) {
    absl::StatusOr<std::set<std::string>> servers = Servers(id, "load", dir::CONSISTENCY_STALE);
    ASSERT_TRUE(servers.ok()) << servers.status();
    size_t checked = 0;
    for (int t = 0; t < kThreads; ++t) {
      for (const auto& [server, state] : keys[t]) {
        if (!state.resolved) continue;
        ++checked;
        EXPECT_EQ(servers->count(server), state.present ? 1u : 0u)
            << "replica " << id << ": " << server << " should be "
            << (state.present ? "present" : "absent");
      }
      for (const std::string& node : leased_nodes[t]) {
        EXPECT_TRUE(NodeExists(id, node, dir::CONSISTENCY_STALE)) << "replica " << id << node;
      }
    }
    EXPECT_GT(checked, 100u);
  };
  const std::string state = WaitConverged();
  for (uint64_t id : Running()) check_replica(id);
  ASSERT_TRUE(cluster_->Restart(leader).ok());
  EXPECT_EQ(WaitConverged(), state);
  check_replica(leader);
}

// One acknowledged write of the linearizability history.
struct WriteRecord {
  int writer;
  int seq;
  int64_t ack_ms;
};
// One successful linearizable read: per writer, the sequence numbers it saw.
struct ReadRecord {
  int64_t start_ms;
  int64_t end_ms;
  uint64_t replica;
  std::map<int, std::set<int>> seen;
};

TEST_F(RaftClusterTest, ReadsAreLinearizableWhileReplicasDie) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const std::vector<uint64_t> ids = cluster_->ids();
  ASSERT_TRUE(RegisterNode(Leader(), "lin-node").ok());
  constexpr int kWriters = 2;
  constexpr int kReaders = 3;

  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::vector<WriteRecord> writes;
  std::vector<ReadRecord> reads;
  std::vector<std::string> errors;
  std::vector<std::atomic<int>> attempted(kWriters);  // highest seq ever sent, per writer
  for (auto& a : attempted) a.store(-1);

  auto writer = [&](int w) {
    absl::BitGen rng;
    for (int seq = 0; !stop.load(); ++seq) {
      attempted[w].store(seq);
      // Retries the same registration (idempotent) until acknowledged, on random replicas.
      while (!stop.load()) {
        const uint64_t via = ids[absl::Uniform<size_t>(rng, 0, ids.size())];
        grpc::Status status =
            Register(via, "lin", absl::StrCat("w", w, "-", seq), "lin-node", nullptr, 5000);
        if (status.ok()) {
          absl::MutexLock lock(&mu);
          writes.push_back({w, seq, NowMs()});
          break;
        }
        if (!OutcomeUnknown(status)) {
          absl::MutexLock lock(&mu);
          errors.push_back(absl::StrCat("writer ", w, ": ", status.error_message()));
          return;
        }
      }
    }
  };
  auto reader = [&](int r) {
    absl::BitGen rng;
    while (!stop.load()) {
      const uint64_t via = ids[absl::Uniform<size_t>(rng, 0, ids.size())];
      ReadRecord record;
      record.replica = via;
      record.start_ms = NowMs();
      absl::StatusOr<std::set<std::string>> servers =
          Servers(via, "lin", dir::CONSISTENCY_LINEARIZABLE, 5000);
      record.end_ms = NowMs();
      if (!servers.ok()) {
        if (servers.status().code() != absl::StatusCode::kUnavailable &&
            servers.status().code() != absl::StatusCode::kDeadlineExceeded) {
          absl::MutexLock lock(&mu);
          errors.push_back(absl::StrCat("reader ", r, ": ", servers.status().ToString()));
        }
        continue;
      }
      for (const std::string& server : *servers) {
        int w = -1;
        int seq = -1;
        if (std::sscanf(server.c_str(), "w%d-%d", &w, &seq) != 2 || w < 0 || w >= kWriters) {
          absl::MutexLock lock(&mu);
          errors.push_back(absl::StrCat("reader ", r, ": unexpected server ", server));
          continue;
        }
        record.seen[w].insert(seq);
      }
      absl::MutexLock lock(&mu);
      reads.push_back(std::move(record));
    }
  };

  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) threads.emplace_back(writer, w);
  for (int r = 0; r < kReaders; ++r) threads.emplace_back(reader, r);
  auto count_writes = [&] {
    absl::MutexLock lock(&mu);
    return writes.size();
  };
  // Faults: a follower dies and returns, then the leader dies and returns; some writes are
  // acknowledged in each phase.
  auto progress = [&](size_t more) {
    const size_t target = count_writes() + more;
    EXPECT_TRUE(Eventually([&] { return count_writes() >= target; }, 20000)) << "writes stalled";
  };
  progress(30);
  const uint64_t leader = Leader();
  const uint64_t follower = AnyFollower(leader);
  cluster_->Kill(follower);
  progress(30);
  EXPECT_TRUE(cluster_->Restart(follower).ok());
  progress(30);
  const uint64_t leader2 = Leader();
  cluster_->Kill(leader2);
  progress(30);
  EXPECT_TRUE(cluster_->Restart(leader2).ok());
  progress(30);
  stop.store(true);
  for (std::thread& thread : threads) thread.join();

  absl::MutexLock lock(&mu);
  for (const std::string& error : errors) ADD_FAILURE() << error;
  std::cerr << "history: " << writes.size() << " acknowledged writes, " << reads.size()
            << " linearizable reads\n";
  ASSERT_GT(reads.size(), 50u);
  std::sort(writes.begin(), writes.end(),
            [](const WriteRecord& a, const WriteRecord& b) { return a.ack_ms < b.ack_ms; });
  std::sort(reads.begin(), reads.end(),
            [](const ReadRecord& a, const ReadRecord& b) { return a.start_ms < b.start_ms; });
  // Reads by completion time, to find, for each read, what every earlier-completed read saw.
  std::vector<const ReadRecord*> by_end;
  for (const ReadRecord& read : reads) by_end.push_back(&read);
  std::sort(by_end.begin(), by_end.end(),
            [](const ReadRecord* a, const ReadRecord* b) { return a->end_ms < b->end_ms; });

  int violations = 0;
  size_t next_write = 0;
  size_t next_done = 0;
  std::vector<int> acked_before(kWriters, -1);  // highest seq acknowledged before the read
  std::vector<int> seen_before(kWriters, -1);   // highest seq seen by a read completed before
  for (const ReadRecord& read : reads) {
    while (next_write < writes.size() && writes[next_write].ack_ms < read.start_ms) {
      const WriteRecord& write = writes[next_write++];
      acked_before[write.writer] = std::max(acked_before[write.writer], write.seq);
    }
    while (next_done < by_end.size() && by_end[next_done]->end_ms < read.start_ms) {
      for (const auto& [w, seqs] : by_end[next_done++]->seen) {
        seen_before[w] = std::max(seen_before[w], *seqs.rbegin());
      }
    }
    for (int w = 0; w < kWriters && violations < 10; ++w) {
      auto it = read.seen.find(w);
      const int highest = it == read.seen.end() ? -1 : *it->second.rbegin();
      const size_t count = it == read.seen.end() ? 0 : it->second.size();
      // A writer's registrations are applied in order: what a read sees is a prefix.
      if (count != static_cast<size_t>(highest + 1)) {
        ++violations;
        ADD_FAILURE() << "read on replica " << read.replica << " at " << read.start_ms
                      << " saw a gap in writer " << w << "'s registrations (" << count << " of 0.."
                      << highest << ")";
      }
      if (highest < acked_before[w]) {
        ++violations;
        ADD_FAILURE() << "stale read on replica " << read.replica << " started at " << read.start_ms
                      << ": writer " << w << " seq " << acked_before[w]
                      << " was acknowledged before it, the read saw only up to " << highest;
      }
      if (highest < seen_before[w]) {
        ++violations;
        ADD_FAILURE() << "read on replica " << read.replica << " started at " << read.start_ms
                      << " went back in time: writer " << w << " seq " << seen_before[w]
                      << " was seen by a read that completed before it, this one saw " << highest;
      }
      if (highest > attempted[w].load()) {
        ++violations;
        ADD_FAILURE() << "read saw writer " << w << " seq " << highest << " never written";
      }
    }
  }
}

TEST_F(RaftClusterTest, WholeClusterRestartKeepsStateAndRefreshesLeases) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  uint64_t leader = Leader();
  constexpr int64_t kTtlMs = 3000;
  const int64_t lease = Grant(leader, kTtlMs);
  ASSERT_TRUE(RegisterNode(leader, "permanent").ok());
  ASSERT_TRUE(RegisterNode(leader, "leased", lease).ok());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(Register(leader, "restart", absl::StrCat("p", i), "permanent").ok());
    ASSERT_TRUE(Register(leader, "restart", absl::StrCat("l", i), "leased").ok());
  }
  const std::string before = WaitConverged();
  ASSERT_FALSE(before.empty());

  // Renew once more, then stop everything, and stay down longer than the TTL: the lease only
  // survives if the next leader gives it a fresh TTL.
  {
    grpc::ClientContext context;
    auto stream = stubs(leader).leases->KeepAlive(&context);
    dir::KeepAliveRequest request;
    request.set_id(lease);
    dir::KeepAliveResponse response;
    ASSERT_TRUE(stream->Write(request));
    ASSERT_TRUE(stream->Read(&response));
    ASSERT_EQ(response.code(), 0) << response.error();
    stream->WritesDone();
    EXPECT_TRUE(stream->Finish().ok());
  }
  const int64_t renewed_ms = NowMs();
  for (uint64_t id : cluster_->ids()) {
    if (id != leader) {
      ASSERT_TRUE(cluster_->Stop(id).ok()) << "replica " << id;
    }
  }
  ASSERT_TRUE(cluster_->Stop(leader).ok()) << "replica " << leader;
  const int64_t down_for_ms = kTtlMs + 500 - (NowMs() - renewed_ms);
  if (down_for_ms > 0) absl::SleepFor(absl::Milliseconds(down_for_ms));  // the outage itself

  const int64_t restart_ms = NowMs();
  for (uint64_t id : cluster_->ids()) ASSERT_TRUE(cluster_->Restart(id).ok()) << "replica " << id;
  leader = Leader();
  dir::Lease ttl;
  ASSERT_TRUE(Eventually([&] {
    dir::TimeToLiveRequest request;
    request.set_id(lease);
    dir::TimeToLiveResponse response;
    if (!stubs(leader).leases->TimeToLive(Context().get(), request, &response).ok()) return false;
    ttl = response.lease();
    return ttl.remaining_ms() >= 0;  // the new leader has loaded its leases
  }));
  const int64_t since_restart = NowMs() - restart_ms;
  EXPECT_EQ(ttl.ttl_ms(), kTtlMs);
  EXPECT_GE(ttl.remaining_ms(), kTtlMs - since_restart - 100)
      << "the lease did not get a fresh TTL after the restart (" << since_restart
      << " ms since it began)";
  EXPECT_LE(ttl.remaining_ms(), kTtlMs);

  // Everything is back, identical on every replica (the lease included).
  EXPECT_EQ(WaitConverged(), before);

  // Without renewals the lease still expires, and takes its node and registrations along.
  EXPECT_TRUE(Eventually([&] { return !NodeExists(leader, "leased"); }, kTtlMs + 5000))
      << "the lease never expired after the restart";
  absl::StatusOr<std::set<std::string>> servers = Servers(leader, "restart");
  ASSERT_TRUE(servers.ok()) << servers.status();
  EXPECT_EQ(*servers, (std::set<std::string>{"p0", "p1", "p2", "p3", "p4"}));
  EXPECT_TRUE(NodeExists(leader, "permanent"));
  WaitConverged();
}

TEST_F(RaftClusterTest, MembersJoinTakeLeadershipAndLeave) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const uint64_t leader = Leader();
  const uint64_t follower = AnyFollower(leader);
  ASSERT_TRUE(RegisterNode(leader, "m-node").ok());
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(Register(leader, "members", absl::StrCat("s", i), "m-node").ok());
  }

  // A new replica joins through a follower (which forwards to the leader).
  absl::StatusOr<uint64_t> joiner = cluster_->StartJoiner();
  ASSERT_TRUE(joiner.ok()) << joiner.status();
  {
    dir::AddMemberRequest request;
    request.set_id(*joiner);
    request.set_raft_address(cluster_->raft_address(*joiner));
    dir::AddMemberResponse response;
    grpc::Status status =
        stubs(follower).cluster->AddMember(Context(20000).get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  ASSERT_TRUE(cluster_->WaitReady(*joiner).ok()) << TailFile(cluster_->log_path(*joiner));
  // It serves the data, both locally and linearizably.
  EXPECT_TRUE(Eventually([&] {
    absl::StatusOr<std::set<std::string>> servers =
        Servers(*joiner, "members", dir::CONSISTENCY_STALE);
    return servers.ok() && servers->size() == 20;
  }));
  absl::StatusOr<std::set<std::string>> servers = Servers(*joiner, "members");
  ASSERT_TRUE(servers.ok()) << servers.status();
  EXPECT_EQ(servers->size(), 20u);
  // Adding it twice is refused.
  {
    dir::AddMemberRequest request;
    request.set_id(*joiner);
    request.set_raft_address(cluster_->raft_address(*joiner));
    dir::AddMemberResponse response;
    EXPECT_EQ(stubs(leader).cluster->AddMember(Context().get(), request, &response).error_code(),
              grpc::StatusCode::ALREADY_EXISTS);
  }
  // It becomes a voter once caught up, with its addresses known to every replica.
  EXPECT_TRUE(Eventually([&] {
    for (uint64_t id : Running()) {
      dir::ListMembersResponse members;
      if (!stubs(id).cluster->ListMembers(Context().get(), {}, &members).ok()) return false;
      bool found = false;
      for (const dir::Member& member : members.members()) {
        if (member.id() == *joiner) {
          found = member.voter() && member.grpc_address() == cluster_->grpc_address(*joiner) &&
                  member.raft_address() == cluster_->raft_address(*joiner);
        }
      }
      if (!found || members.members_size() != 4) return false;
    }
    return true;
  })) << "the joiner did not become a voter known to all";

  // Leadership moves to the joiner on request.
  {
    dir::TransferLeadershipRequest request;
    request.set_id(*joiner);
    dir::TransferLeadershipResponse response;
    grpc::Status status =
        stubs(follower).cluster->TransferLeadership(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.leader_id(), *joiner);
  }
  EXPECT_TRUE(Eventually([&] {
    absl::StatusOr<dir::StatusResponse> status = ReplicaStatus(*joiner);
    return status.ok() && status->role() == dir::ROLE_LEADER;
  }));
  ASSERT_TRUE(Register(*joiner, "members", "after-transfer", "m-node").ok());

  // The former leader leaves the configuration.
  {
    dir::RemoveMemberRequest request;
    request.set_id(leader);
    dir::RemoveMemberResponse response;
    grpc::Status status =
        stubs(follower).cluster->RemoveMember(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (const dir::Member& member : response.members()) {
      EXPECT_NE(member.id(), leader) << "RemoveMember answered " << response.ShortDebugString();
    }
    request.set_id(99);
    EXPECT_EQ(
        stubs(follower).cluster->RemoveMember(Context().get(), request, &response).error_code(),
        grpc::StatusCode::NOT_FOUND);
  }
  cluster_->Kill(leader);
  // Every remaining member agrees on the configuration, the leader and the term.
  EXPECT_TRUE(Eventually([&] {
    std::set<uint64_t> leaders;
    std::set<uint64_t> terms;
    int leading = 0;
    for (uint64_t id : Running()) {
      dir::ListMembersResponse members;
      if (!stubs(id).cluster->ListMembers(Context().get(), {}, &members).ok()) return false;
      if (members.members_size() != 3) return false;
      for (const dir::Member& member : members.members()) {
        if (member.id() == leader) return false;
      }
      absl::StatusOr<dir::StatusResponse> status = ReplicaStatus(id);
      if (!status.ok()) return false;
      if (status->role() == dir::ROLE_LEADER) ++leading;
      if (status->role() != dir::ROLE_LEADER && status->role() != dir::ROLE_FOLLOWER) {
        return false;
      }
      leaders.insert(status->leader_id());
      terms.insert(status->term());
    }
    return leading == 1 && leaders.size() == 1 && *leaders.begin() == *joiner && terms.size() == 1;
  })) << "members disagree after the removal";
  // The three remaining replicas still commit writes and hold the same state.
  ASSERT_TRUE(Register(follower, "members", "after-removal", "m-node").ok());
  servers = Servers(*joiner, "members");
  ASSERT_TRUE(servers.ok()) << servers.status();
  EXPECT_EQ(servers->size(), 22u);
  WaitConverged();
}

TEST_F(RaftClusterTest, WipedReplicaCatchesUpFromSnapshot) {
  ASSERT_NO_FATAL_FAILURE(
      StartCluster({"--raft-snapshot-threshold", "64", "--raft-snapshot-trailing", "16"}));
  const uint64_t leader = Leader();
  const uint64_t follower = AnyFollower(leader);
  const int64_t lease = Grant(leader, 60000);
  ASSERT_TRUE(RegisterNode(leader, "wipe-node").ok());
  ASSERT_TRUE(RegisterNode(leader, "wipe-leased", lease).ok());
  ASSERT_TRUE(Register(leader, "wipe", "before", "wipe-node").ok());

  ASSERT_TRUE(cluster_->Stop(follower).ok());
  ASSERT_TRUE(cluster_->Wipe(follower).ok());
  // Far more commands than the log keeps: the follower can only catch up from a snapshot.
  for (int i = 0; i < 240; ++i) {
    const std::string node = i % 2 == 0 ? "wipe-node" : "wipe-leased";
    ASSERT_TRUE(Register(leader, absl::StrCat("wipe-", i % 7), absl::StrCat("s", i), node).ok());
    if (i % 5 == 0) {
      ASSERT_TRUE(
          Unregister(leader, absl::StrCat("wipe-", i % 7), absl::StrCat("s", i), node).ok());
    }
  }
  ASSERT_TRUE(Unregister(leader, "wipe", "before", "wipe-node").ok());
  const int64_t lease2 = Grant(leader, 60000);
  ASSERT_TRUE(RegisterNode(leader, "wipe-leased-2", lease2).ok());

  ASSERT_TRUE(cluster_->Restart(follower).ok());
  const std::string leader_state = StateDump(leader);
  EXPECT_TRUE(Eventually([&] { return StateDump(follower) == leader_state; }, 20000))
      << "leader:\n"
      << leader_state << "\nfollower:\n"
      << StateDump(follower);
  EXPECT_NE(leader_state.find("wipe-leased-2"), std::string::npos);
  // The log it needed was compacted away: it must have been sent the leader's snapshot.
  EXPECT_NE(testing::ReadFile(cluster_->log_path(follower)).value_or("").find("restored snapshot"),
            std::string::npos)
      << "the wiped replica caught up without a snapshot: the test no longer covers that path";
  // It is a full member again: with the other follower gone, it makes the quorum.
  const uint64_t other = [&] {
    for (uint64_t id : cluster_->ids()) {
      if (id != leader && id != follower) return id;
    }
    return uint64_t{0};
  }();
  cluster_->Kill(other);
  EXPECT_TRUE(Register(follower, "wipe", "quorum-with-wiped", "wipe-node").ok());
  absl::StatusOr<std::set<std::string>> servers = Servers(follower, "wipe");
  ASSERT_TRUE(servers.ok()) << servers.status();
  EXPECT_EQ(*servers, std::set<std::string>{"quorum-with-wiped"});
}

TEST_F(RaftClusterTest, LeaseKeptAliveThroughFollowerSurvivesLeaderDeath) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const uint64_t leader = Leader();
  const uint64_t follower = AnyFollower(leader);
  constexpr int64_t kTtlMs = 2000;
  const int64_t lease = Grant(follower, kTtlMs);
  ASSERT_TRUE(RegisterNode(follower, "ka-node", lease).ok());
  ASSERT_TRUE(Register(follower, "ka", "ka-server", "ka-node").ok());

  grpc::ClientContext context;
  auto stream = stubs(follower).leases->KeepAlive(&context);
  std::map<int32_t, int> codes;  // response code -> count
  int renewed_after_kill = 0;
  bool killed = false;
  int64_t last_renewal_sent = 0;
  // Renews every 500 ms for three TTLs after the leader's death.
  auto renew_until = [&](int64_t until_ms) {
    while (NowMs() < until_ms) {
      const int64_t sent = NowMs();
      dir::KeepAliveRequest request;
      request.set_id(lease);
      dir::KeepAliveResponse response;
      if (!stream->Write(request) || !stream->Read(&response)) return false;
      ++codes[response.code()];
      if (response.code() == 0) {
        EXPECT_EQ(response.ttl_ms(), kTtlMs);
        last_renewal_sent = sent;
        if (killed) ++renewed_after_kill;
      } else {
        EXPECT_EQ(response.code(), static_cast<int32_t>(grpc::StatusCode::UNAVAILABLE))
            << response.error();
      }
      const int64_t pause = 500 - (NowMs() - sent);
      if (pause > 0) absl::SleepFor(absl::Milliseconds(pause));  // the renewal cadence
    }
    return true;
  };
  ASSERT_TRUE(renew_until(NowMs() + 1000)) << "keepalive stream broke";
  cluster_->Kill(leader);
  killed = true;
  ASSERT_TRUE(renew_until(NowMs() + 3 * kTtlMs)) << "keepalive stream broke";
  std::string summary;
  for (const auto& [code, count] : codes) absl::StrAppend(&summary, code, ":", count, " ");
  std::cerr << "keepalive response codes: " << summary << "\n";
  EXPECT_GE(renewed_after_kill, 6);
  EXPECT_TRUE(NodeExists(follower, "ka-node")) << "the lease expired while kept alive";
  absl::StatusOr<std::set<std::string>> servers = Servers(follower, "ka");
  ASSERT_TRUE(servers.ok()) << servers.status();
  EXPECT_EQ(servers->count("ka-server"), 1u);

  // Once renewals stop it expires, with its node and registrations.
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_TRUE(Eventually([&] { return !NodeExists(follower, "ka-node"); }, kTtlMs + 5000));
  EXPECT_GE(NowMs() - last_renewal_sent, kTtlMs - 200) << "the lease expired before its TTL";
  servers = Servers(follower, "ka");
  ASSERT_TRUE(servers.ok()) << servers.status();
  EXPECT_TRUE(servers->empty());
}

TEST_F(RaftClusterTest, RequestsWithoutQuorumFailUnavailableThenSucceed) {
  ASSERT_NO_FATAL_FAILURE(StartCluster({"--leader-wait-ms", "1000"}));
  const uint64_t leader = Leader();
  ASSERT_TRUE(RegisterNode(leader, "e-node").ok());
  ASSERT_TRUE(Register(leader, "election", "before", "e-node").ok());
  // Keep one follower (once it has applied that write); lose the leader and the other one.
  const uint64_t survivor = AnyFollower(leader);
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<std::set<std::string>> servers =
        Servers(survivor, "election", dir::CONSISTENCY_STALE);
    return servers.ok() && servers->count("before") == 1;
  }));
  std::vector<uint64_t> killed;
  for (uint64_t id : cluster_->ids()) {
    if (id != survivor) {
      cluster_->Kill(id);
      killed.push_back(id);
    }
  }

  int64_t start = NowMs();
  grpc::Status write = Register(survivor, "election", "no-quorum", "e-node", nullptr, 10000);
  int64_t elapsed = NowMs() - start;
  EXPECT_EQ(write.error_code(), grpc::StatusCode::UNAVAILABLE) << write.error_message();
  EXPECT_GE(elapsed, 800) << "gave up before --leader-wait-ms";
  EXPECT_LE(elapsed, 4000) << "waited far longer than --leader-wait-ms";

  start = NowMs();
  absl::StatusOr<std::set<std::string>> read = Servers(survivor, "election");
  elapsed = NowMs() - start;
  EXPECT_EQ(read.status().code(), absl::StatusCode::kUnavailable) << read.status();
  EXPECT_LE(elapsed, 4000);
  // A stale read is still served from the replica's own state.
  read = Servers(survivor, "election", dir::CONSISTENCY_STALE);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->count("before"), 1u);

  // With a majority back, the same requests succeed; meanwhile the only allowed failure is
  // UNAVAILABLE.
  ASSERT_TRUE(cluster_->Restart(killed[0]).ok());
  EXPECT_TRUE(Eventually(
      [&] {
        grpc::Status status = Register(survivor, "election", "quorum", "e-node", nullptr, 5000);
        EXPECT_TRUE(status.ok() || status.error_code() == grpc::StatusCode::UNAVAILABLE)
            << status.error_message();
        return status.ok();
      },
      15000));
  read = Servers(survivor, "election");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->count("before"), 1u);
  EXPECT_EQ(read->count("quorum"), 1u);
  read = Servers(killed[0], "election");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->count("quorum"), 1u);
}

}  // namespace
}  // namespace zmesh
