#include "controlplane/raft/raft_consensus.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/log.h"
#include "controlplane/raft/raft_api.h"
#include "controlplane/raft/store_fsm.h"

namespace zmesh::raft {
namespace {

// How often the loop thread samples Raft's state (libraft has no state-change callback).
constexpr uint64_t kPollIntervalMs = 5;

Role RoleFromRaft(int state) {
  switch (state) {
    case RAFT_LEADER:
      return Role::kLeader;
    case RAFT_FOLLOWER:
      return Role::kFollower;
    case RAFT_CANDIDATE:
      return Role::kCandidate;
    default:
      return Role::kUnavailable;
  }
}

absl::Status RaftError(int rv, absl::string_view context, const char* detail = nullptr) {
  std::string message = absl::StrCat(context, ": ", raft_strerror(rv));
  if (detail != nullptr && detail[0] != '\0') absl::StrAppend(&message, " (", detail, ")");
  switch (rv) {
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
      return absl::UnavailableError(message);
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS:
      return absl::AlreadyExistsError(message);
    case RAFT_BADID:
    case RAFT_NOTFOUND:
      return absl::NotFoundError(message);
    case RAFT_CANTCHANGE:
    case RAFT_SHUTDOWN:
    case RAFT_NOCONNECTION:
      return absl::UnavailableError(message);
    case RAFT_NOMEM:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace

absl::StatusOr<std::vector<RaftPeer>> RaftConsensus::ParsePeers(absl::string_view text) {
  std::vector<RaftPeer> peers;
  absl::flat_hash_set<uint64_t> ids;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> parts = absl::StrSplit(item, absl::MaxSplits('=', 1));
    RaftPeer peer;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &peer.id) || peer.id == 0 ||
        parts[1].find(':') == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", item, "\" is not ID=HOST:PORT (ids are positive integers)"));
    }
    if (!ids.insert(peer.id).second) {
      return absl::InvalidArgumentError(absl::StrCat("replica id ", peer.id, " appears twice"));
    }
    peer.address = std::string(parts[1]);
    peers.push_back(std::move(peer));
  }
  if (peers.empty()) return absl::InvalidArgumentError("no replicas listed");
  return peers;
}

struct RaftConsensus::Impl {
  Impl(store::Store& s, RaftConsensusOptions o) : store(s), options(std::move(o)), fsm(s) {}

  // ---- fixed after Start ----
  store::Store& store;
  const RaftConsensusOptions options;
  StoreFsm fsm;
  std::vector<ApplyObserver*> observers;
  std::vector<RoleObserver*> role_observers;
  std::thread thread;
  RaftStats stats;  // atomics

  // ---- shared, under mu ----
  mutable absl::Mutex mu;
  std::deque<absl::AnyInvocable<void() &&>> posted ABSL_GUARDED_BY(mu);
  bool running ABSL_GUARDED_BY(mu) = false;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  ConsensusStatus status ABSL_GUARDED_BY(mu);
  std::vector<MemberInfo> members ABSL_GUARDED_BY(mu);

  // ---- loop thread only ----
  uv_loop_t loop;
  uv_async_t async;
  uv_timer_t timer;
  struct raft_uv_transport transport;
  struct raft_io io;
  struct raft raft;
  bool raft_inited = false;
  bool closing = false;
  absl::flat_hash_map<uint64_t, Done> proposals;  // by log index
  std::vector<StatusDone> barrier_next;           // wait for a barrier not yet started
  std::vector<StatusDone> barrier_running;        // wait for the barrier in flight
  bool barrier_in_flight = false;
  struct AppliedWaiter {
    uint64_t index;
    int64_t deadline_ms;
    StatusDone done;
  };
  std::multimap<uint64_t, AppliedWaiter> applied_waiters;  // by Raft index
  uint64_t ready_term = 0;  // term in which this leader's barrier committed (reads may skip one)
  bool first_snapshot_pending = false;       // see InitOnLoop
  uint64_t first_snapshot_barrier_term = 0;  // term of the barrier appended for it
  ConsensusStatus last_notified;
  uint64_t last_leader_id = 0;  // last known leader (0 before the first)

  // ---- threads hand work to the loop ----
  // Returns false (and does not run `work`) when the loop is not running.
  bool Post(absl::AnyInvocable<void() &&> work) {
    absl::MutexLock lock(&mu);
    if (!running || stopping) return false;
    posted.push_back(std::move(work));
    // Under the lock: the loop closes `async` only after `stopping` is set, so no send can
    // reach a closed handle.
    uv_async_send(&async);
    return true;
  }

  static void OnAsync(uv_async_t* handle) {
    auto* self = static_cast<Impl*>(handle->data);
    std::deque<absl::AnyInvocable<void() &&>> work;
    {
      absl::MutexLock lock(&self->mu);
      work.swap(self->posted);
    }
    for (auto& item : work) std::move(item)();
  }

  // ---- start and stop (loop thread) ----
  absl::Status InitOnLoop() {
    std::error_code ec;
    std::filesystem::create_directories(options.dir, ec);
    if (ec)
      return absl::PermissionDeniedError(
          absl::StrCat("creating ", options.dir, ": ", ec.message()));
    int rv = raft_uv_tcp_init(&transport, &loop);
    if (rv != 0) return RaftError(rv, "initializing Raft TCP transport");
    rv = raft_uv_init(&io, &loop, options.dir.c_str(), &transport);
    if (rv != 0) {
      absl::Status st = RaftError(rv, absl::StrCat("opening Raft log in ", options.dir), io.errmsg);
      raft_uv_tcp_close(&transport);
      return st;
    }
    raft_uv_set_connect_retry_delay(&io, 100);
    rv = raft_init(&raft, &io, fsm.fsm(), options.id, options.raft_address.c_str());
    if (rv != 0) {
      absl::Status st = RaftError(rv, "initializing Raft", raft_errmsg(&raft));
      raft_uv_close(&io);
      raft_uv_tcp_close(&transport);
      return st;
    }
    raft_inited = true;
    raft.data = this;
    fsm.set_raft(&raft);
    fsm.set_applied_hook(
        [this](uint64_t index, const state::v1::Command& command,
               const store::CommandResult& result) { OnApplied(index, command, result); });
    fsm.set_restored_hook([this] {
      for (ApplyObserver* observer : observers) observer->OnRestored();
    });
    raft_set_election_timeout(&raft, options.election_timeout_ms);
    raft_set_heartbeat_timeout(&raft, options.heartbeat_timeout_ms);
    raft_set_pre_vote(&raft, true);
    raft_set_snapshot_threshold(&raft, options.snapshot_threshold);
    raft_set_snapshot_trailing(&raft, options.snapshot_trailing);
    if (!options.join) {
      struct raft_configuration configuration;
      raft_configuration_init(&configuration);
      std::vector<RaftPeer> peers = options.initial_cluster;
      if (peers.empty()) peers.push_back(RaftPeer{options.id, options.raft_address});
      for (const RaftPeer& peer : peers) {
        rv = raft_configuration_add(&configuration, peer.id, peer.address.c_str(), RAFT_VOTER);
        if (rv != 0) break;
      }
      if (rv == 0) rv = raft_bootstrap(&raft, &configuration);
      raft_configuration_close(&configuration);
      if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {  // CANTBOOTSTRAP: the log has state already
        return RaftError(rv, "bootstrapping the cluster", raft_errmsg(&raft));
      }
    }
    // A store that holds state while the Raft log has no snapshot (restored from a backup with
    // --restore-backup: its content never went through the log) must be snapshotted before a
    // replica joins, or the joiner would replay the log onto an empty store and miss the
    // backup. So: a snapshot after the first applied entry, dropping the whole log before it
    // (trailing 0), so that a joiner gets the snapshot instead of the entries. Set before
    // raft_start, which may apply entries already (a one-member cluster).
    const bool holds_state = StoreHoldsState();
    if (holds_state) {
      raft_set_snapshot_threshold(&raft, 1);
      raft_set_snapshot_trailing(&raft, 0);
    }
    rv = raft_start(&raft);
    if (rv != 0) return RaftError(rv, "starting Raft", raft_errmsg(&raft));
    if (holds_state && raft.log.snapshot.last_index == 0) {
      first_snapshot_pending = true;
      ZLOG_INFO(
          "raft: the store holds state the Raft log has no snapshot of (restored from a "
          "backup?): taking a snapshot as soon as an entry is applied");
    } else {
      EndFirstSnapshot();
    }
    return absl::OkStatus();
  }

  bool StoreHoldsState() {
    if (store.revision() > 0) return true;
    absl::StatusOr<store::StoreStats> stats = store.Stats();
    if (!stats.ok() || stats->leases > 0 || stats->nodes > 0) return true;
    absl::StatusOr<std::vector<state::v1::SetMember>> members = store.Members();
    return !members.ok() || !members->empty();
  }

  // Back to the configured snapshot schedule.
  void EndFirstSnapshot() {
    first_snapshot_pending = false;
    raft_set_snapshot_threshold(&raft, options.snapshot_threshold);
    raft_set_snapshot_trailing(&raft, options.snapshot_trailing);
  }

  // While the first snapshot of a restored store is pending: once it is stored, back to the
  // configured schedule; a leader appends a barrier (once per term) so that an entry gets
  // applied, which takes the snapshot, here and on the followers.
  void AdvanceFirstSnapshot() {
    if (!first_snapshot_pending || closing) return;
    if (raft.log.snapshot.last_index > 0) {
      ZLOG_INFO("raft: snapshot of the restored state taken at index %d; replicas that join get it",
                raft.log.snapshot.last_index);
      EndFirstSnapshot();
      return;
    }
    if (raft_state(&raft) == RAFT_LEADER && first_snapshot_barrier_term != raft.current_term) {
      first_snapshot_barrier_term = raft.current_term;
      BarrierOnLoop([](absl::Status) {});
    }
  }

  void Run(absl::Notification* ready, absl::Status* init_status) {
    uv_loop_init(&loop);
    uv_async_init(&loop, &async, &Impl::OnAsync);
    async.data = this;
    uv_timer_init(&loop, &timer);
    timer.data = this;
    absl::Status st = InitOnLoop();
    if (st.ok()) {
      uv_timer_start(&timer, &Impl::OnTimer, kPollIntervalMs, kPollIntervalMs);
      {
        absl::MutexLock lock(&mu);
        running = true;
      }
      Poll();
    }
    *init_status = st;
    const bool ok = st.ok();
    ready->Notify();  // `ready` and `init_status` are gone after this
    if (!ok) {
      BeginClose();
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }

  // Closes Raft (which fails its pending requests), then every handle; the loop then ends.
  void BeginClose() {
    if (closing) return;
    closing = true;
    uv_timer_stop(&timer);
    if (raft_inited) {
      raft_close(&raft, [](struct raft* r) {
        auto* self = static_cast<Impl*>(r->data);
        raft_uv_close(&self->io);
        raft_uv_tcp_close(&self->transport);
        self->FailEverything(absl::UnavailableError("directory replica is shutting down"));
        uv_close(reinterpret_cast<uv_handle_t*>(&self->timer), nullptr);
        uv_close(reinterpret_cast<uv_handle_t*>(&self->async), nullptr);
      });
    } else {
      uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&async), nullptr);
    }
  }

  void FailEverything(const absl::Status& status) {
    auto proposals_left = std::move(proposals);
    proposals.clear();
    for (auto& [index, done] : proposals_left) std::move(done)(status);
    for (auto& done : barrier_next) std::move(done)(status);
    for (auto& done : barrier_running) std::move(done)(status);
    barrier_next.clear();
    barrier_running.clear();
    auto waiters = std::move(applied_waiters);
    applied_waiters.clear();
    for (auto& [index, waiter] : waiters) std::move(waiter.done)(status);
  }

  // ---- status (loop thread) ----
  static void OnTimer(uv_timer_t* handle) { static_cast<Impl*>(handle->data)->Poll(); }

  void Poll() {
    ConsensusStatus now;
    now.id = options.id;
    now.address = options.raft_address;
    now.role = RoleFromRaft(raft_state(&raft));
    raft_id leader_id = 0;
    const char* leader_address = nullptr;
    raft_leader(&raft, &leader_id, &leader_address);
    now.leader_id = leader_id;
    now.term = raft.current_term;
    now.commit_index = raft.commit_index;
    now.applied_index = raft_last_applied(&raft);
    now.last_index = raft_last_index(&raft);
    if (raft_state(&raft) == RAFT_UNAVAILABLE && !closing) {
      // libraft 0.15 never recovers an instance after a disk or network I/O error; a restart
      // reloads it from disk. Better to die loudly than to serve stale reads forever.
      ZLOG_ERROR("raft: this replica's Raft instance failed (%s); exiting so that it restarts",
                 raft_errmsg(&raft));
      std::_Exit(3);
    }
    std::vector<MemberInfo> configuration;
    for (unsigned i = 0; i < raft.configuration.n; ++i) {
      const struct raft_server& server = raft.configuration.servers[i];
      configuration.push_back(MemberInfo{server.id, server.address != nullptr ? server.address : "",
                                         server.role == RAFT_VOTER});
    }
    {
      absl::MutexLock lock(&mu);
      status = now;
      members = std::move(configuration);
    }
    if (now.leader_id != 0 && now.leader_id != last_leader_id) {
      last_leader_id = now.leader_id;
      stats.leader_changes.fetch_add(1, std::memory_order_relaxed);
    }
    if (now.role != last_notified.role || now.term != last_notified.term ||
        now.leader_id != last_notified.leader_id) {
      const bool log_change =
          now.role != last_notified.role || now.leader_id != last_notified.leader_id;
      if (last_notified.role == Role::kLeader && now.role != Role::kLeader) {
        // Whatever was proposed and not yet applied may or may not be committed by the next
        // leader: its outcome is unknown.
        auto proposals_left = std::move(proposals);
        proposals.clear();
        for (auto& [index, done] : proposals_left) {
          std::move(done)(absl::UnavailableError(
              "leadership lost before the change was applied; it may or may not take effect"));
        }
      }
      last_notified = now;
      // Observers first: one of them may put the new role and term in the log prefix.
      for (RoleObserver* observer : role_observers) observer->OnRoleChanged(now);
      if (log_change) {
        ZLOG_INFO("raft: %s in term %d, leader %d", RoleName(now.role), now.term, now.leader_id);
      }
    }
    CompleteAppliedWaiters(now.applied_index);
    ExpireAppliedWaiters();
    AdvanceFirstSnapshot();
  }

  // Entries that are not commands (barriers, configuration) advance the applied index without
  // passing through the fsm: the poll sees them.
  void CompleteAppliedWaiters(uint64_t applied) {
    while (!applied_waiters.empty() && applied_waiters.begin()->first <= applied) {
      StatusDone done = std::move(applied_waiters.begin()->second.done);
      applied_waiters.erase(applied_waiters.begin());
      std::move(done)(absl::OkStatus());
    }
  }

  void LeaderReadIndexOnLoop(absl::AnyInvocable<void(absl::StatusOr<ReadIndex>) &&> done) {
    if (raft_state(&raft) != RAFT_LEADER) {
      std::move(done)(NotLeaderError(CurrentLeader()));
      return;
    }
    if (ready_term == raft.current_term) {
      std::move(done)(ReadIndex{raft.current_term, raft.commit_index, false});
      return;
    }
    // A new leader may not know the commit index of earlier terms yet: a barrier settles it.
    auto shared =
        std::make_shared<absl::AnyInvocable<void(absl::StatusOr<ReadIndex>) &&>>(std::move(done));
    BarrierOnLoop([this, shared](absl::Status status) {
      if (!status.ok()) {
        std::move (*shared)(status);
        return;
      }
      std::move (*shared)(ReadIndex{raft.current_term, raft_last_applied(&raft), true});
    });
  }

  // ---- proposals (loop thread) ----
  void ProposeOnLoop(const state::v1::Command& command, Done done) {
    if (raft_state(&raft) != RAFT_LEADER) {
      std::move(done)(NotLeaderError(CurrentLeader()));
      return;
    }
    std::string entry = EncodeEntry(command);
    struct raft_buffer buf;
    buf.len = entry.size();
    buf.base = raft_malloc(entry.size());
    if (buf.base == nullptr) {
      stats.proposals_failed.fetch_add(1, std::memory_order_relaxed);
      std::move(done)(absl::ResourceExhaustedError("no memory for a log entry"));
      return;
    }
    std::memcpy(buf.base, entry.data(), entry.size());
    auto* req = new struct raft_apply;
    req->data = this;
    int rv = raft_apply(&raft, req, &buf, 1, &Impl::OnApplyDone);
    if (rv != 0) {
      raft_free(buf.base);
      delete req;
      if (rv != RAFT_NOTLEADER) stats.proposals_failed.fetch_add(1, std::memory_order_relaxed);
      std::move(done)(rv == RAFT_NOTLEADER ? NotLeaderError(CurrentLeader())
                                           : RaftError(rv, "proposing", raft_errmsg(&raft)));
      return;
    }
    // Every way a proposal ends (applied, leadership lost, not committed, shutdown) runs this.
    proposals.emplace(
        req->index, [this, started = std::chrono::steady_clock::now(),
                     done = std::move(done)](absl::StatusOr<store::CommandResult> result) mutable {
          if (result.ok()) {
            stats.proposals_committed.fetch_add(1, std::memory_order_relaxed);
            stats.proposal_seconds.Observe(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
          } else {
            stats.proposals_failed.fetch_add(1, std::memory_order_relaxed);
          }
          std::move(done)(std::move(result));
        });
  }

  static void OnApplyDone(struct raft_apply* req, int status, void* /*result*/) {
    auto* self = static_cast<Impl*>(req->data);
    if (status != 0) {
      auto it = self->proposals.find(req->index);
      if (it != self->proposals.end()) {
        Done done = std::move(it->second);
        self->proposals.erase(it);
        std::move(done)(absl::UnavailableError(absl::StrCat("the change was not committed (",
                                                            raft_strerror(status),
                                                            "); it may or may not take effect")));
      }
    }
    delete req;
  }

  void OnApplied(uint64_t index, const state::v1::Command& command,
                 const store::CommandResult& result) {
    for (ApplyObserver* observer : observers) observer->OnApplied(command, result);
    auto it = proposals.find(index);
    if (it != proposals.end()) {
      Done done = std::move(it->second);
      proposals.erase(it);
      std::move(done)(result);
    }
    // Waiters on a Raft index up to this one are satisfied (the store holds it now).
    while (!applied_waiters.empty() && applied_waiters.begin()->first <= index) {
      StatusDone done = std::move(applied_waiters.begin()->second.done);
      applied_waiters.erase(applied_waiters.begin());
      std::move(done)(absl::OkStatus());
    }
  }

  uint64_t CurrentLeader() {
    raft_id id = 0;
    const char* address = nullptr;
    raft_leader(&raft, &id, &address);
    return id;
  }

  // ---- barriers (loop thread) ----
  void BarrierOnLoop(StatusDone done) {
    if (raft_state(&raft) != RAFT_LEADER) {
      std::move(done)(NotLeaderError(CurrentLeader()));
      return;
    }
    barrier_next.push_back(std::move(done));
    if (!barrier_in_flight) StartBarrier();
  }

  // Callers waiting when a barrier starts are served by it; later ones by the next one.
  void StartBarrier() {
    barrier_running = std::move(barrier_next);
    barrier_next.clear();
    auto* req = new struct raft_barrier;
    req->data = this;
    int rv = raft_barrier(&raft, req, &Impl::OnBarrierDone);
    if (rv != 0) {
      delete req;
      absl::Status st = rv == RAFT_NOTLEADER ? NotLeaderError(CurrentLeader())
                                             : RaftError(rv, "barrier", raft_errmsg(&raft));
      for (auto& done : barrier_running) std::move(done)(st);
      barrier_running.clear();
      return;
    }
    barrier_in_flight = true;
  }

  static void OnBarrierDone(struct raft_barrier* req, int status) {
    auto* self = static_cast<Impl*>(req->data);
    delete req;
    self->barrier_in_flight = false;
    if (status == 0 && raft_state(&self->raft) == RAFT_LEADER) {
      self->ready_term = self->raft.current_term;
    }
    absl::Status st = status == 0 ? absl::OkStatus()
                                  : absl::UnavailableError(absl::StrCat(
                                        "leadership not confirmed: ", raft_strerror(status)));
    auto running_now = std::move(self->barrier_running);
    self->barrier_running.clear();
    for (auto& done : running_now) std::move(done)(st);
    if (!self->barrier_next.empty() && !self->closing) {
      if (raft_state(&self->raft) == RAFT_LEADER) {
        self->StartBarrier();
      } else {
        auto waiting = std::move(self->barrier_next);
        self->barrier_next.clear();
        for (auto& done : waiting) std::move(done)(NotLeaderError(self->CurrentLeader()));
      }
    }
  }

  void ExpireAppliedWaiters() {
    const int64_t now = SystemClock::Get().NowMs();
    for (auto it = applied_waiters.begin(); it != applied_waiters.end();) {
      if (it->second.deadline_ms <= now) {
        StatusDone done = std::move(it->second.done);
        const uint64_t index = it->first;
        it = applied_waiters.erase(it);
        std::move(done)(absl::DeadlineExceededError(absl::StrCat("replica has not applied index ",
                                                                 index, " in time (it is at ",
                                                                 store.applied_index(), ")")));
      } else {
        ++it;
      }
    }
  }

  // ---- membership (loop thread) ----
  struct Change {
    struct raft_change req;
    Impl* impl;
    uint64_t id;
    StatusDone done;
  };

  void AddMemberOnLoop(uint64_t id, const std::string& address, StatusDone done) {
    if (raft_state(&raft) != RAFT_LEADER) {
      std::move(done)(NotLeaderError(CurrentLeader()));
      return;
    }
    auto* change = new Change{{}, this, id, std::move(done)};
    change->req.data = change;
    int rv =
        raft_add(&raft, &change->req, id, address.c_str(), [](struct raft_change* req, int status) {
          auto* change = static_cast<Change*>(req->data);
          if (status != 0) {
            std::move(change->done)(RaftError(status, absl::StrCat("adding replica ", change->id)));
            delete change;
            return;
          }
          ZLOG_INFO("raft: replica %d added; promoting it to voter once caught up", change->id);
          int rv2 = raft_assign(
              &change->impl->raft, &change->req, change->id, RAFT_VOTER,
              [](struct raft_change* req, int status) {
                auto* change = static_cast<Change*>(req->data);
                change->impl->Poll();  // members() reflects the change now
                std::move(change->done)(
                    status == 0 ? absl::OkStatus()
                                : RaftError(status, absl::StrCat("promoting replica ", change->id,
                                                                 " to voter")));
                delete change;
              });
          if (rv2 != 0) {
            std::move(change->done)(RaftError(rv2, absl::StrCat("promoting replica ", change->id),
                                              raft_errmsg(&change->impl->raft)));
            delete change;
          }
        });
    if (rv != 0) {
      std::move(change->done)(
          rv == RAFT_NOTLEADER
              ? NotLeaderError(CurrentLeader())
              : RaftError(rv, absl::StrCat("adding replica ", id), raft_errmsg(&raft)));
      delete change;
    }
  }

  void RemoveMemberOnLoop(uint64_t id, StatusDone done) {
    if (raft_state(&raft) != RAFT_LEADER) {
      std::move(done)(NotLeaderError(CurrentLeader()));
      return;
    }
    auto* change = new Change{{}, this, id, std::move(done)};
    change->req.data = change;
    int rv = raft_remove(&raft, &change->req, id, [](struct raft_change* req, int status) {
      auto* change = static_cast<Change*>(req->data);
      change->impl->Poll();  // members() reflects the change now
      std::move(change->done)(
          status == 0 ? absl::OkStatus()
                      : RaftError(status, absl::StrCat("removing replica ", change->id)));
      delete change;
    });
    if (rv != 0) {
      std::move(change->done)(
          rv == RAFT_NOTLEADER
              ? NotLeaderError(CurrentLeader())
              : RaftError(rv, absl::StrCat("removing replica ", id), raft_errmsg(&raft)));
      delete change;
    }
  }

  struct Transfer {
    struct raft_transfer req;
    Impl* impl;
    uint64_t id;
    absl::AnyInvocable<void(absl::StatusOr<uint64_t>) &&> done;
  };

  void TransferOnLoop(uint64_t id, absl::AnyInvocable<void(absl::StatusOr<uint64_t>) &&> done) {
    if (raft_state(&raft) != RAFT_LEADER) {
      std::move(done)(NotLeaderError(CurrentLeader()));
      return;
    }
    auto* transfer = new Transfer{{}, this, id, std::move(done)};
    transfer->req.data = transfer;
    int rv = raft_transfer(&raft, &transfer->req, id, [](struct raft_transfer* req) {
      auto* transfer = static_cast<Transfer*>(req->data);
      transfer->impl->Poll();  // status() reflects the new leader now
      const uint64_t leader = transfer->impl->CurrentLeader();
      if (leader != 0 && leader != transfer->impl->options.id &&
          (transfer->id == 0 || leader == transfer->id)) {
        std::move(transfer->done)(leader);
      } else {
        std::move(transfer->done)(absl::UnavailableError(
            absl::StrCat("leadership transfer did not complete (leader is ", leader, ")")));
      }
      delete transfer;
    });
    if (rv != 0) {
      absl::Status st;
      if (rv == RAFT_NOTLEADER) {
        st = NotLeaderError(CurrentLeader());
      } else if (rv == RAFT_BADID) {
        st = absl::InvalidArgumentError(absl::StrCat(
            "replica ", id, " cannot take leadership (unknown, not a voter, or the leader)"));
      } else if (rv == RAFT_NOTFOUND) {
        st = absl::FailedPreconditionError("there is no other voter to take leadership");
      } else {
        st = RaftError(rv, "transferring leadership", raft_errmsg(&raft));
      }
      std::move(transfer->done)(st);
      delete transfer;
    }
  }
};

RaftConsensus::RaftConsensus(store::Store& store, RaftConsensusOptions options)
    : impl_(std::make_unique<Impl>(store, std::move(options))) {}

RaftConsensus::~RaftConsensus() { Stop(); }

absl::Status RaftConsensus::Start() {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->running || impl_->stopping || impl_->thread.joinable()) {
      return absl::FailedPreconditionError("consensus already started");
    }
  }
  absl::Notification ready;
  absl::Status init_status;
  impl_->thread = std::thread([this, &ready, &init_status] { impl_->Run(&ready, &init_status); });
  ready.WaitForNotification();
  if (!init_status.ok()) {
    impl_->thread.join();
    return init_status;
  }
  return absl::OkStatus();
}

void RaftConsensus::Stop() {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->running && !impl_->stopping) {
      impl_->stopping = true;
      impl_->posted.emplace_back([impl = impl_.get()] { impl->BeginClose(); });
      uv_async_send(&impl_->async);
    }
  }
  if (impl_->thread.joinable()) impl_->thread.join();
  absl::MutexLock lock(&impl_->mu);
  impl_->running = false;
  impl_->status.role = Role::kUnavailable;
}

void RaftConsensus::Propose(state::v1::Command command, Done done) {
  // The closure owns `done` until it runs; when the loop is gone, fail it here.
  auto shared =
      std::make_shared<std::pair<state::v1::Command, Done>>(std::move(command), std::move(done));
  if (!impl_->Post([impl = impl_.get(), shared]() mutable {
        impl->ProposeOnLoop(shared->first, std::move(shared->second));
      })) {
    std::move(shared->second)(absl::UnavailableError("directory replica is not running"));
  }
}

void RaftConsensus::Barrier(StatusDone done) {
  auto shared = std::make_shared<StatusDone>(std::move(done));
  if (!impl_->Post(
          [impl = impl_.get(), shared]() mutable { impl->BarrierOnLoop(std::move(*shared)); })) {
    std::move (*shared)(absl::UnavailableError("directory replica is not running"));
  }
}

void RaftConsensus::WaitApplied(uint64_t index, int64_t timeout_ms, StatusDone done) {
  auto shared = std::make_shared<StatusDone>(std::move(done));
  const int64_t deadline = SystemClock::Get().NowMs() + timeout_ms;
  if (!impl_->Post([impl = impl_.get(), shared, index, deadline]() mutable {
        if (raft_last_applied(&impl->raft) >= index) {
          std::move (*shared)(absl::OkStatus());
          return;
        }
        impl->applied_waiters.emplace(index,
                                      Impl::AppliedWaiter{index, deadline, std::move(*shared)});
      })) {
    std::move (*shared)(absl::UnavailableError("directory replica is not running"));
  }
}

void RaftConsensus::LeaderReadIndex(absl::AnyInvocable<void(absl::StatusOr<ReadIndex>) &&> done) {
  auto shared =
      std::make_shared<absl::AnyInvocable<void(absl::StatusOr<ReadIndex>) &&>>(std::move(done));
  if (!impl_->Post([impl = impl_.get(), shared]() mutable {
        impl->LeaderReadIndexOnLoop(std::move(*shared));
      })) {
    std::move (*shared)(absl::UnavailableError("directory replica is not running"));
  }
}

void RaftConsensus::CurrentLeadership(absl::AnyInvocable<void(ConsensusStatus) &&> done) {
  auto shared = std::make_shared<absl::AnyInvocable<void(ConsensusStatus) &&>>(std::move(done));
  if (!impl_->Post([impl = impl_.get(), shared]() mutable {
        ConsensusStatus now;
        now.id = impl->options.id;
        now.role = RoleFromRaft(raft_state(&impl->raft));
        now.term = impl->raft.current_term;
        now.leader_id = impl->CurrentLeader();
        std::move (*shared)(now);
      })) {
    ConsensusStatus unavailable;
    std::move (*shared)(unavailable);
  }
}

void RaftConsensus::AddMember(uint64_t id, const std::string& raft_address, StatusDone done) {
  auto shared = std::make_shared<StatusDone>(std::move(done));
  if (!impl_->Post([impl = impl_.get(), shared, id, raft_address]() mutable {
        impl->AddMemberOnLoop(id, raft_address, std::move(*shared));
      })) {
    std::move (*shared)(absl::UnavailableError("directory replica is not running"));
  }
}

void RaftConsensus::RemoveMember(uint64_t id, StatusDone done) {
  auto shared = std::make_shared<StatusDone>(std::move(done));
  if (!impl_->Post([impl = impl_.get(), shared, id]() mutable {
        impl->RemoveMemberOnLoop(id, std::move(*shared));
      })) {
    std::move (*shared)(absl::UnavailableError("directory replica is not running"));
  }
}

void RaftConsensus::TransferLeadership(uint64_t id,
                                       absl::AnyInvocable<void(absl::StatusOr<uint64_t>) &&> done) {
  auto shared =
      std::make_shared<absl::AnyInvocable<void(absl::StatusOr<uint64_t>) &&>>(std::move(done));
  if (!impl_->Post([impl = impl_.get(), shared, id]() mutable {
        impl->TransferOnLoop(id, std::move(*shared));
      })) {
    std::move (*shared)(absl::UnavailableError("directory replica is not running"));
  }
}

const RaftStats& RaftConsensus::stats() const { return impl_->stats; }

const metrics::AtomicHistogram& RaftConsensus::apply_seconds() const {
  return impl_->fsm.apply_seconds();
}

uint64_t RaftConsensus::snapshots_taken() const { return impl_->fsm.snapshots_taken(); }

uint64_t RaftConsensus::snapshots_restored() const { return impl_->fsm.snapshots_restored(); }

ConsensusStatus RaftConsensus::status() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->status;
}

std::vector<MemberInfo> RaftConsensus::members() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->members;
}

void RaftConsensus::AddObserver(ApplyObserver* observer) { impl_->observers.push_back(observer); }

void RaftConsensus::AddRoleObserver(RoleObserver* observer) {
  impl_->role_observers.push_back(observer);
}

}  // namespace zmesh::raft
