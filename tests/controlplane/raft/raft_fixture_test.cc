// Replication scenarios on libraft's deterministic in-memory cluster (raft/fixture.h), each
// replica running the real StoreFsm over its own SqliteStore. Time is virtual: the fixture
// advances a clock event by event, so no test sleeps. Election timeouts, network and disk
// latencies and crash points come from a seed that each test prints; rerun a failure with
// ZMESH_TEST_SEED=<seed>.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/raft/raft_api.h"
#include "controlplane/raft/store_fsm.h"
#include "controlplane/store/sqlite_store.h"
#include "gtest/gtest.h"
#include "tests/controlplane/raft/store_test_util.h"
#include "tests/support/subprocess.h"

extern "C" {
#include <raft/fixture.h>
}

namespace zmesh::raft {
namespace {

using test::Dump;
using test::Grant;
using test::PutNode;

// Virtual milliseconds a single wait may last before the test gives up on it.
constexpr unsigned kWaitMs = 20000;

// One replica: its store, the fsm over it, and every command it applied (from the fsm hook).
struct Replica {
  struct Applied {
    uint64_t index;
    state::v1::Command command;
    store::CommandResult result;
  };
  std::unique_ptr<store::SqliteStore> store;
  std::unique_ptr<StoreFsm> fsm;
  std::vector<Applied> applied;
};

// A command handed to raft_apply on one replica; `req.data` points back here.
struct Proposal {
  struct raft_apply req;
  state::v1::Command command;
  raft_index index = 0;  // the log index it was appended at on its replica
  bool done = false;
  int status = 0;  // libraft status once done (0: committed and applied)
};

struct Barrier {
  struct raft_barrier req;
  bool done = false;
  int status = 0;
};

uint64_t TestSeed() {
  if (const char* env = std::getenv("ZMESH_TEST_SEED"); env != nullptr && *env != '\0') {
    return std::strtoull(env, nullptr, 10);
  }
  return std::random_device{}();
}

bool CallStop(struct raft_fixture* /*fixture*/, void* arg) {
  return (*static_cast<std::function<bool()>*>(arg))();
}

class RaftFixtureTest : public ::testing::Test {
 protected:
  ~RaftFixtureTest() override {
    // Closing fails the requests still pending, whose callbacks touch proposals_ / barriers_.
    if (initialized_) raft_fixture_close(&fixture_);
  }

  void TearDown() override {
    if (HasFailure())
      std::fprintf(stderr, "reproduce with ZMESH_TEST_SEED=%llu\n",
                   static_cast<unsigned long long>(seed_));
  }

  // Bootstraps and starts n voting replicas (not yet a leader). A snapshot threshold of 0
  // keeps libraft's default.
  void StartCluster(unsigned n, unsigned snapshot_threshold = 0, unsigned snapshot_trailing = 0) {
    seed_ = TestSeed();
    std::fprintf(stderr, "seed %llu\n", static_cast<unsigned long long>(seed_));
    RecordProperty("seed", std::to_string(seed_));
    rng_.seed(seed_);

    ASSERT_EQ(raft_fixture_initialize(&fixture_), 0);
    initialized_ = true;
    for (unsigned i = 0; i < n; ++i) {
      auto replica = std::make_unique<Replica>();
      replica->store = test::OpenStore(absl::StrCat(dir_.path(), "/replica-", i, ".db"));
      ASSERT_NE(replica->store, nullptr);
      replica->fsm = std::make_unique<StoreFsm>(*replica->store);
      Replica* self = replica.get();
      replica->fsm->set_applied_hook([self](uint64_t index, const state::v1::Command& command,
                                            const store::CommandResult& result) {
        self->applied.push_back(Replica::Applied{index, command, result});
      });
      ASSERT_EQ(raft_fixture_grow(&fixture_, replica->fsm->fsm()), 0);
      struct raft* raft = raft_fixture_get(&fixture_, i);
      replica->fsm->set_raft(raft);
      raft_set_pre_vote(raft, true);  // as in production (RaftConsensus)
      if (snapshot_threshold != 0) {
        raft_set_snapshot_threshold(raft, snapshot_threshold);
        raft_set_snapshot_trailing(raft, snapshot_trailing);
      }
      replicas_.push_back(std::move(replica));
    }
    // Distinct election timeouts (at least 100 ms apart, well above the network latency) so an
    // election never ties forever; their order, the latencies and the crash points come from
    // the seed.
    std::vector<unsigned> slots(n);
    std::iota(slots.begin(), slots.end(), 0u);
    std::shuffle(slots.begin(), slots.end(), rng_);
    for (unsigned i = 0; i < n; ++i) {
      raft_fixture_set_randomized_election_timeout(&fixture_, i,
                                                   1000 + slots[i] * 150 + Uniform(0, 49));
      raft_fixture_set_network_latency(&fixture_, i, Uniform(5, 25));
      raft_fixture_set_disk_latency(&fixture_, i, Uniform(2, 15));
    }
    struct raft_configuration configuration;
    ASSERT_EQ(raft_fixture_configuration(&fixture_, n, &configuration), 0);
    const int bootstrapped = raft_fixture_bootstrap(&fixture_, &configuration);
    raft_configuration_close(&configuration);
    ASSERT_EQ(bootstrapped, 0);
    ASSERT_EQ(raft_fixture_start(&fixture_), 0);
  }

  unsigned Uniform(unsigned lo, unsigned hi) {
    return std::uniform_int_distribution<unsigned>(lo, hi)(rng_);
  }
  unsigned size() const { return static_cast<unsigned>(replicas_.size()); }
  struct raft* Raft(unsigned i) {
    return raft_fixture_get(&fixture_, i);
  }
  store::SqliteStore& Store(unsigned i) { return *replicas_[i]->store; }
  StoreFsm& Fsm(unsigned i) { return *replicas_[i]->fsm; }
  bool Alive(unsigned i) { return raft_fixture_alive(&fixture_, i); }

  std::vector<unsigned> All() {
    std::vector<unsigned> all(size());
    std::iota(all.begin(), all.end(), 0u);
    return all;
  }
  std::vector<unsigned> AllBut(unsigned excluded) {
    std::vector<unsigned> rest;
    for (unsigned i = 0; i < size(); ++i) {
      if (i != excluded) rest.push_back(i);
    }
    return rest;
  }
  std::vector<unsigned> AliveReplicas() {
    std::vector<unsigned> alive;
    for (unsigned i = 0; i < size(); ++i) {
      if (Alive(i)) alive.push_back(i);
    }
    return alive;
  }

  // Steps the cluster until `done` holds; false when max_ms of virtual time pass first.
  bool StepUntil(std::function<bool()> done, unsigned max_ms = kWaitMs) {
    return raft_fixture_step_until(&fixture_, &CallStop, &done, max_ms);
  }

  // The alive leader with the highest term among `members`, or size() if none of them leads.
  unsigned LeaderAmong(const std::vector<unsigned>& members) {
    unsigned leader = size();
    for (unsigned i : members) {
      if (!Alive(i) || raft_state(Raft(i)) != RAFT_LEADER) continue;
      if (leader == size() || Raft(i)->current_term > Raft(leader)->current_term) leader = i;
    }
    return leader;
  }

  // Steps until one of `members` is leader (see LeaderAmong); size() when none is in time.
  unsigned WaitForLeaderAmong(const std::vector<unsigned>& members) {
    unsigned leader = size();
    StepUntil([&] {
      leader = LeaderAmong(members);
      return leader != size();
    });
    return leader;
  }
  unsigned WaitForLeader() { return WaitForLeaderAmong(All()); }

  Proposal& Propose(unsigned i, const state::v1::Command& command) {
    proposals_.emplace_back();
    Proposal& proposal = proposals_.back();
    proposal.command = command;
    proposal.req.data = &proposal;
    const std::string entry = EncodeEntry(command);
    struct raft_buffer buf;
    buf.len = entry.size();
    buf.base = raft_malloc(entry.size());
    std::memcpy(buf.base, entry.data(), entry.size());
    const int rv = raft_apply(Raft(i), &proposal.req, &buf, 1, &OnApplied);
    if (rv != 0) {
      raft_free(buf.base);
      proposal.done = true;
      proposal.status = rv;
    } else {
      proposal.index = raft_last_index(Raft(i));
    }
    return proposal;
  }

  static void OnApplied(struct raft_apply* req, int status, void* /*result*/) {
    auto* proposal = static_cast<Proposal*>(req->data);
    proposal->done = true;
    proposal->status = status;
  }

  // Proposes each command on replica i and waits until all are done; true if all committed.
  [[nodiscard]] bool Commit(unsigned i, const std::vector<state::v1::Command>& commands) {
    std::vector<Proposal*> proposals;
    for (const state::v1::Command& command : commands) proposals.push_back(&Propose(i, command));
    if (!WaitDone(proposals)) {
      ADD_FAILURE() << "proposals on replica " << i << " never finished";
      return false;
    }
    bool ok = true;
    for (const Proposal* p : proposals) {
      if (p->status != 0) {
        ADD_FAILURE() << "proposal on replica " << i << " failed: " << raft_strerror(p->status)
                      << " for " << p->command.ShortDebugString();
        ok = false;
      }
    }
    return ok;
  }

  [[nodiscard]] bool WaitDone(const std::vector<Proposal*>& proposals) {
    return StepUntil([&] {
      return std::all_of(proposals.begin(), proposals.end(),
                         [](const Proposal* p) { return p->done; });
    });
  }

  // Steps until every replica in `members` has applied log index `index`.
  [[nodiscard]] bool WaitApplied(const std::vector<unsigned>& members, raft_index index) {
    return StepUntil([&] {
      return std::all_of(members.begin(), members.end(),
                         [&](unsigned i) { return raft_last_applied(Raft(i)) >= index; });
    });
  }

  // Cuts replica i off from every other one: messages both ways are dropped.
  void Isolate(unsigned i) {
    for (unsigned j : AllBut(i)) {
      raft_fixture_saturate(&fixture_, i, j);
      raft_fixture_saturate(&fixture_, j, i);
    }
  }
  void HealAll() {
    for (unsigned i = 0; i < size(); ++i) {
      for (unsigned j : AllBut(i)) raft_fixture_desaturate(&fixture_, i, j);
    }
  }

  // Waits for a leader among the alive replicas, commits a barrier on it (so every entry of
  // earlier terms commits too) and waits until all alive replicas applied it. Then every alive
  // replica's store must dump identically, and replicas must agree on the command at every
  // index any two of them applied.
  void ExpectConverged() {
    const std::vector<unsigned> alive = AliveReplicas();
    unsigned leader = size();
    for (int attempt = 0; attempt < 5; ++attempt) {
      leader = WaitForLeaderAmong(alive);
      ASSERT_LT(leader, size()) << "no leader among the alive replicas";
      barriers_.emplace_back();
      Barrier& barrier = barriers_.back();
      barrier.req.data = &barrier;
      const int rv =
          raft_barrier(Raft(leader), &barrier.req, [](struct raft_barrier* req, int status) {
            auto* b = static_cast<Barrier*>(req->data);
            b->done = true;
            b->status = status;
          });
      if (rv != 0) continue;  // lost leadership in between: find the new leader
      ASSERT_TRUE(StepUntil([&] { return barrier.done; })) << "barrier never finished";
      if (barrier.status == 0) break;
      leader = size();
    }
    ASSERT_LT(leader, size()) << "no barrier committed";
    const raft_index last = raft_last_index(Raft(leader));
    ASSERT_TRUE(WaitApplied(alive, last)) << "replicas did not apply up to " << last;
    const std::string reference = Dump(Store(leader));
    for (unsigned i : alive) {
      EXPECT_EQ(Dump(Store(i)), reference) << "replica " << i << " differs from leader " << leader;
      EXPECT_EQ(raft_last_applied(Raft(i)), raft_last_applied(Raft(leader))) << "replica " << i;
    }
    ExpectAppliedLogsAgree();
  }

  // State machine safety: no two replicas applied different commands at one index, and each
  // replica applied in strictly increasing index order, every command at most once.
  void ExpectAppliedLogsAgree() {
    std::map<uint64_t, std::pair<unsigned, std::string>> by_index;
    for (unsigned i = 0; i < size(); ++i) {
      uint64_t previous = 0;
      for (const Replica::Applied& applied : replicas_[i]->applied) {
        EXPECT_GT(applied.index, previous) << "replica " << i << " applied out of order";
        previous = applied.index;
        const std::string command = applied.command.SerializeAsString();
        auto [it, inserted] = by_index.emplace(applied.index, std::make_pair(i, command));
        if (!inserted) {
          EXPECT_EQ(it->second.second, command)
              << "replicas " << it->second.first << " and " << i << " applied different commands"
              << " at index " << applied.index;
        }
      }
    }
  }

  // Replica i's node `name`, or false when it does not exist there.
  bool HasNode(unsigned i, const std::string& name) {
    absl::StatusOr<directory::v1::GetNodeResponse> node = Store(i).GetNode(name);
    EXPECT_TRUE(node.ok() || node.status().code() == absl::StatusCode::kNotFound) << node.status();
    return node.ok();
  }
  int64_t Leases(unsigned i) {
    absl::StatusOr<store::StoreStats> stats = Store(i).Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? stats->leases : -1;
  }

  // Member order matters: the fixture is closed (destructor body) while the proposals, barriers
  // and replicas its callbacks use are still alive; the stores close before their directory
  // goes away.
  testing::TempDir dir_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::deque<Proposal> proposals_;
  std::deque<Barrier> barriers_;
  struct raft_fixture fixture_ = {};
  bool initialized_ = false;
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
};

TEST_F(RaftFixtureTest, ElectsALeaderThatAppliesCommandsInOrderOnEveryReplica) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(3));
  const unsigned leader = WaitForLeader();
  ASSERT_LT(leader, size());

  const std::vector<state::v1::Command> commands = {
      Grant(5000, "grant-1"),
      PutNode("node-1", 1),
      test::Register(test::Reg("compute", "compute-1", "node-1")),
      test::Register(test::Reg("compute", "compute-2", "node-1")),
      test::Drain("node-1", true),
      test::SetMember(1, "1"),
  };
  ASSERT_TRUE(Commit(leader, commands));
  ASSERT_NO_FATAL_FAILURE(ExpectConverged());

  for (unsigned i : All()) {
    const std::vector<Replica::Applied>& applied = replicas_[i]->applied;
    ASSERT_EQ(applied.size(), commands.size()) << "replica " << i;
    for (size_t k = 0; k < commands.size(); ++k) {
      EXPECT_EQ(applied[k].command.SerializeAsString(), commands[k].SerializeAsString());
      EXPECT_TRUE(applied[k].result.status.ok()) << applied[k].result.status;
    }
    EXPECT_EQ(Store(i).revision(), 6);
    directory::v1::LookupRequest lookup;
    lookup.set_exchange("openstack");
    lookup.set_topic("compute");
    absl::StatusOr<directory::v1::LookupResponse> found = Store(i).Lookup(lookup);
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_EQ(found->endpoints_size(), 2) << "replica " << i;
  }
}

TEST_F(RaftFixtureTest, LeaderCrashLosesOnlyUnreplicatedCommandsAndRetriesApplyOnce) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(3));
  const unsigned old_leader = WaitForLeader();
  ASSERT_LT(old_leader, size());
  ASSERT_TRUE(Commit(old_leader, {Grant(1000, "base")}));

  std::vector<state::v1::Command> in_flight;
  std::vector<Proposal*> stranded;
  for (int k = 1; k <= 5; ++k) {
    in_flight.push_back(Grant(1000 + k, absl::StrCat("crash-", k)));
    stranded.push_back(&Propose(old_leader, in_flight.back()));
  }
  // Crash somewhere between "nothing replicated" and "everything committed".
  const unsigned events = Uniform(0, 40);
  std::fprintf(stderr, "crashing the leader after %u events\n", events);
  for (unsigned e = 0; e < events; ++e) raft_fixture_step(&fixture_);
  raft_fixture_kill(&fixture_, old_leader);

  const unsigned new_leader = WaitForLeaderAmong(AllBut(old_leader));
  ASSERT_LT(new_leader, size());
  // The fate of the in-flight commands is unknown to their client: it retries them all, with
  // the same request ids, on the new leader.
  std::vector<state::v1::Command> retries = in_flight;
  retries.push_back(Grant(2001, "after-1"));
  retries.push_back(Grant(2002, "after-2"));
  ASSERT_TRUE(Commit(new_leader, retries));

  raft_fixture_revive(&fixture_, old_leader);
  ASSERT_NO_FATAL_FAILURE(ExpectConverged());
  ASSERT_TRUE(WaitDone(stranded));
  for (const Proposal* p : stranded) {
    // Success would have meant "committed"; the old leader may not claim that for entries a
    // newer leader committed, so it reports leadership lost.
    EXPECT_TRUE(p->status == 0 || p->status == RAFT_LEADERSHIPLOST) << raft_strerror(p->status);
  }

  // Every request took effect exactly once: 1 + 5 + 2 leases, one revision each.
  for (unsigned i : All()) {
    EXPECT_EQ(Leases(i), 8) << "replica " << i;
    EXPECT_EQ(Store(i).revision(), 8) << "replica " << i;
  }
  // And a retry got the outcome of the first application (the same lease), wherever it ran.
  for (unsigned i : All()) {
    std::map<std::string, std::set<int64_t>> leases_by_request;
    for (const Replica::Applied& applied : replicas_[i]->applied) {
      EXPECT_TRUE(applied.result.status.ok()) << applied.result.status;
      leases_by_request[applied.command.request_id()].insert(applied.result.lease_id);
    }
    EXPECT_EQ(leases_by_request.size(), 8u) << "replica " << i;
    for (const auto& [request_id, leases] : leases_by_request) {
      EXPECT_EQ(leases.size(), 1u) << request_id << " got several leases on replica " << i;
    }
  }
}

TEST_F(RaftFixtureTest, MinorityCannotCommitWhileTheMajorityCarriesOn) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(3));
  unsigned leader = WaitForLeader();
  ASSERT_LT(leader, size());

  // A follower alone on its side: the other two keep committing without it.
  const unsigned lonely = (leader + 1) % size();
  const unsigned other = (leader + 2) % size();
  Isolate(lonely);
  const raft_index lonely_applied = raft_last_applied(Raft(lonely));
  ASSERT_TRUE(Commit(leader, {PutNode("majority-1"), PutNode("majority-2")}));
  ASSERT_TRUE(WaitApplied({leader, other}, raft_last_index(Raft(leader))));
  EXPECT_EQ(raft_last_applied(Raft(lonely)), lonely_applied);
  EXPECT_FALSE(HasNode(lonely, "majority-1"));
  HealAll();
  ASSERT_NO_FATAL_FAILURE(ExpectConverged());
  EXPECT_TRUE(HasNode(lonely, "majority-2"));

  // Now the leader alone on its side.
  leader = WaitForLeader();
  ASSERT_LT(leader, size());
  Isolate(leader);
  const raft_index leader_applied = raft_last_applied(Raft(leader));
  const uint64_t leader_store_index = Store(leader).applied_index();
  Proposal& minority_1 = Propose(leader, PutNode("minority-1"));
  Proposal& minority_2 = Propose(leader, PutNode("minority-2"));
  EXPECT_EQ(minority_1.status, 0) << "the isolated leader still accepts proposals";

  const unsigned new_leader = WaitForLeaderAmong(AllBut(leader));
  ASSERT_LT(new_leader, size());
  ASSERT_TRUE(Commit(new_leader, {PutNode("after-split-1")}));
  // The stranded leader notices it lost its majority and fails what it could not commit.
  ASSERT_TRUE(WaitDone({&minority_1, &minority_2}));
  EXPECT_EQ(minority_1.status, RAFT_LEADERSHIPLOST) << raft_strerror(minority_1.status);
  EXPECT_EQ(minority_2.status, RAFT_LEADERSHIPLOST) << raft_strerror(minority_2.status);
  EXPECT_NE(raft_state(Raft(leader)), RAFT_LEADER);
  EXPECT_EQ(raft_last_applied(Raft(leader)), leader_applied);
  EXPECT_EQ(Store(leader).applied_index(), leader_store_index);

  HealAll();
  ASSERT_NO_FATAL_FAILURE(ExpectConverged());
  for (unsigned i : All()) {
    EXPECT_FALSE(HasNode(i, "minority-1")) << "replica " << i;
    EXPECT_FALSE(HasNode(i, "minority-2")) << "replica " << i;
    EXPECT_TRUE(HasNode(i, "majority-1")) << "replica " << i;
    EXPECT_TRUE(HasNode(i, "after-split-1")) << "replica " << i;
  }
}

TEST_F(RaftFixtureTest, StaleLeaderLogSuffixIsReplacedWhenItRejoins) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(3));
  const unsigned old_leader = WaitForLeader();
  ASSERT_LT(old_leader, size());
  ASSERT_TRUE(Commit(old_leader, {PutNode("base")}));
  ASSERT_NO_FATAL_FAILURE(ExpectConverged());

  // Cut off, the old leader still appends (and persists) entries nobody else will see.
  Isolate(old_leader);
  std::vector<Proposal*> stale;
  for (int k = 1; k <= 3; ++k)
    stale.push_back(&Propose(old_leader, PutNode(absl::StrCat("stale-", k))));
  raft_fixture_step_until_elapsed(&fixture_, 100);
  const raft_index stale_first = stale.front()->index;
  const raft_index stale_last = stale.back()->index;
  ASSERT_GT(stale_first, 0u);
  EXPECT_LT(Raft(old_leader)->commit_index, stale_first);
  EXPECT_GE(Raft(old_leader)->last_stored, stale_last);

  // The majority moves on and writes different entries at the same indexes.
  const unsigned new_leader = WaitForLeaderAmong(AllBut(old_leader));
  ASSERT_LT(new_leader, size());
  std::vector<Proposal*> fresh;
  for (int k = 1; k <= 4; ++k)
    fresh.push_back(&Propose(new_leader, PutNode(absl::StrCat("fresh-", k))));
  ASSERT_TRUE(WaitDone(fresh));
  for (const Proposal* p : fresh) ASSERT_EQ(p->status, 0) << raft_strerror(p->status);
  ASSERT_LE(fresh.front()->index, stale_last) << "the logs did not conflict";

  HealAll();
  ASSERT_NO_FATAL_FAILURE(ExpectConverged());
  ASSERT_TRUE(WaitDone(stale));
  for (const Proposal* p : stale) EXPECT_NE(p->status, 0) << "a stale entry reported committed";
  EXPECT_EQ(raft_last_index(Raft(old_leader)), raft_last_index(Raft(new_leader)));
  for (unsigned i : All()) {
    for (int k = 1; k <= 3; ++k) EXPECT_FALSE(HasNode(i, absl::StrCat("stale-", k))) << i;
    for (int k = 1; k <= 4; ++k) EXPECT_TRUE(HasNode(i, absl::StrCat("fresh-", k))) << i;
  }
  // The old leader applied the new leader's entries at the indexes it once filled itself.
  bool overwritten = false;
  for (const Replica::Applied& applied : replicas_[old_leader]->applied) {
    EXPECT_NE(applied.command.put_node().node().name().rfind("stale-", 0), 0u);
    if (applied.index >= stale_first && applied.index <= stale_last) overwritten = true;
  }
  EXPECT_TRUE(overwritten);
}

TEST_F(RaftFixtureTest, LaggingFollowerCatchesUpFromASnapshot) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(3, /*snapshot_threshold=*/8, /*snapshot_trailing=*/2));
  const unsigned leader = WaitForLeader();
  ASSERT_LT(leader, size());
  const unsigned lagging = (leader + 1) % size();
  ASSERT_TRUE(Commit(leader, {Grant(1000, "snap-0")}));
  ASSERT_TRUE(WaitApplied(All(), raft_last_index(Raft(leader))));

  raft_fixture_kill(&fixture_, lagging);
  for (int batch = 0; batch < 4; ++batch) {
    std::vector<state::v1::Command> commands;
    for (int k = 1; k <= 10; ++k) {
      const int id = batch * 10 + k;
      commands.push_back(Grant(1000 + id, absl::StrCat("snap-", id)));
    }
    ASSERT_TRUE(Commit(leader, commands));
  }
  EXPECT_GT(Fsm(leader).snapshots_taken(), 0u);
  ASSERT_EQ(Fsm(lagging).snapshots_restored(), 0u);

  raft_fixture_revive(&fixture_, lagging);
  ASSERT_NO_FATAL_FAILURE(ExpectConverged());
  EXPECT_GT(Fsm(lagging).snapshots_restored(), 0u)
      << "the follower caught up from the log, not from a snapshot";
  for (unsigned i : All()) EXPECT_EQ(Leases(i), 41) << "replica " << i;

  // The request ids came along with the snapshot: a late retry changes nothing, anywhere.
  const unsigned current = WaitForLeader();
  ASSERT_LT(current, size());
  ASSERT_TRUE(Commit(current, {Grant(1005, "snap-5")}));
  ASSERT_NO_FATAL_FAILURE(ExpectConverged());
  for (unsigned i : All()) {
    EXPECT_EQ(Leases(i), 41) << "replica " << i;
    EXPECT_EQ(replicas_[i]->applied.back().result.lease_id, 6) << "replica " << i;
  }
}

TEST_F(RaftFixtureTest, FiveReplicasTolerateTwoFailuresButNotThree) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(5));
  const unsigned leader = WaitForLeader();
  ASSERT_LT(leader, size());
  const std::vector<unsigned> followers = AllBut(leader);

  raft_fixture_kill(&fixture_, followers[0]);
  raft_fixture_kill(&fixture_, followers[1]);
  ASSERT_TRUE(Commit(leader, {Grant(1000, "five-1")}));
  ASSERT_TRUE(WaitApplied(AliveReplicas(), raft_last_index(Raft(leader))));

  raft_fixture_kill(&fixture_, followers[2]);
  const std::vector<unsigned> survivors = AliveReplicas();
  ASSERT_EQ(survivors.size(), 2u);
  std::map<unsigned, uint64_t> applied_before;
  for (unsigned i : survivors) applied_before[i] = Store(i).applied_index();
  Proposal& stuck = Propose(leader, Grant(2000, "five-2"));
  raft_fixture_step_until_elapsed(&fixture_, 5000);
  EXPECT_FALSE(stuck.done && stuck.status == 0) << "committed with 2 of 5 replicas";
  EXPECT_EQ(LeaderAmong(survivors), size()) << "a leader with 2 of 5 replicas";
  for (unsigned i : survivors) EXPECT_EQ(Store(i).applied_index(), applied_before[i]) << i;

  raft_fixture_revive(&fixture_, followers[2]);
  const unsigned next = WaitForLeaderAmong(AliveReplicas());
  ASSERT_LT(next, size());
  ASSERT_TRUE(Commit(next, {Grant(2000, "five-2")}));
  raft_fixture_revive(&fixture_, followers[0]);
  raft_fixture_revive(&fixture_, followers[1]);
  ASSERT_NO_FATAL_FAILURE(ExpectConverged());
  ASSERT_TRUE(WaitDone({&stuck}));
  for (unsigned i : All()) EXPECT_EQ(Leases(i), 2) << "replica " << i;
}

// libraft 0.15 treats any I/O error as fatal for the replica that sees it: the instance turns
// RAFT_UNAVAILABLE for good (only a process restart brings it back). What the cluster must
// guarantee is that the majority carries on and that the failed replica's store stays a
// consistent prefix of the others'.
TEST_F(RaftFixtureTest, FollowerDiskFaultTakesOutOnlyThatFollower) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(3));
  const unsigned leader = WaitForLeader();
  ASSERT_LT(leader, size());
  ASSERT_TRUE(Commit(leader, {Grant(1000, "disk-0")}));
  ASSERT_TRUE(WaitApplied(All(), raft_last_index(Raft(leader))));

  const unsigned faulty = (leader + 1) % size();
  const unsigned healthy = (leader + 2) % size();
  const uint64_t faulty_store_index = Store(faulty).applied_index();
  raft_fixture_io_fault(&fixture_, faulty, /*delay=*/0, /*repeat=*/1);
  ASSERT_TRUE(Commit(leader, {Grant(1001, "disk-1"), Grant(1002, "disk-2")}));
  ASSERT_TRUE(StepUntil([&] { return raft_state(Raft(faulty)) == RAFT_UNAVAILABLE; }));
  ASSERT_TRUE(Commit(leader, {Grant(1003, "disk-3")}));
  raft_fixture_step_until_elapsed(&fixture_, 3000);  // the fault is long over

  EXPECT_EQ(raft_state(Raft(faulty)), RAFT_UNAVAILABLE);
  EXPECT_EQ(Store(faulty).applied_index(), faulty_store_index);
  EXPECT_EQ(LeaderAmong(All()), leader) << "the healthy majority lost its leader";
  ASSERT_TRUE(Commit(leader, {Grant(1004, "disk-4")}));
  // Without the failed replica, the others converge; it agrees with them on what it applied.
  raft_fixture_kill(&fixture_, faulty);
  ASSERT_NO_FATAL_FAILURE(ExpectConverged());
  EXPECT_EQ(Leases(leader), 5);
  EXPECT_EQ(Leases(healthy), 5);
  EXPECT_EQ(Leases(faulty), 1);
}

// A transient I/O error on the leader fails the proposals it hits, cleanly: they are not
// applied anywhere, and the cluster (all three replicas) carries on once the disk recovers.
TEST_F(RaftFixtureTest, LeaderDiskFaultFailsProposalsWithoutApplyingThem) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(3));
  const unsigned leader = WaitForLeader();
  ASSERT_LT(leader, size());
  ASSERT_TRUE(Commit(leader, {Grant(1000, "disk-0")}));

  raft_fixture_io_fault(&fixture_, leader, /*delay=*/0, /*repeat=*/1);
  Proposal& failed = Propose(leader, Grant(1001, "disk-1"));
  ASSERT_TRUE(WaitDone({&failed}));
  std::fprintf(stderr, "proposal during the fault: %s; leader state %d\n",
               raft_strerror(failed.status), raft_state(Raft(leader)));
  EXPECT_EQ(failed.status, RAFT_IOERR) << raft_strerror(failed.status);

  const unsigned current = WaitForLeader();
  ASSERT_LT(current, size());
  ASSERT_TRUE(Commit(current, {Grant(1002, "disk-2")}));
  ASSERT_NO_FATAL_FAILURE(ExpectConverged());
  for (unsigned i : All()) {
    EXPECT_EQ(Leases(i), 2) << "replica " << i;
    EXPECT_EQ(raft_state(Raft(i)) == RAFT_UNAVAILABLE, false) << "replica " << i;
  }
}

}  // namespace
}  // namespace zmesh::raft
