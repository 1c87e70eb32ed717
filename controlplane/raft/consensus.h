// Consensus: how the directory turns a command into a replicated, applied, durable change, and
// how a replica learns it is up to date. The service layer proposes commands and never touches
// the store's write side itself.
//
// The implementation is RaftConsensus (libraft). Tests may implement it with a fake.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/store/store.h"
#include "zmesh/state/v1/command.pb.h"

namespace zmesh::raft {

enum class Role { kLeader, kFollower, kCandidate, kUnavailable };

const char* RoleName(Role role);

struct ConsensusStatus {
  uint64_t id = 0;
  std::string address;  // this replica's Raft address
  Role role = Role::kUnavailable;
  uint64_t term = 0;
  uint64_t leader_id = 0;  // 0 when unknown
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  uint64_t last_index = 0;
};

struct MemberInfo {
  uint64_t id = 0;
  std::string raft_address;
  bool voter = false;
};

// Told about every applied command, on the apply thread, in log order. Must not block.
class ApplyObserver {
 public:
  virtual ~ApplyObserver() = default;
  virtual void OnApplied(const state::v1::Command& command, const store::CommandResult& result) = 0;
  // The state was replaced by a snapshot from the leader (this replica was too far behind):
  // changes since the last OnApplied arrived without commands.
  virtual void OnRestored() {}
};

// Told when this replica's role, term or known leader changes, on the apply thread (so in
// order with applied commands). Must not block.
class RoleObserver {
 public:
  virtual ~RoleObserver() = default;
  virtual void OnRoleChanged(const ConsensusStatus& status) = 0;
};

// Is `status` the "not the leader" answer (the command was not proposed, so it is safe to
// send it again, to the leader)?
bool IsNotLeader(const absl::Status& status);
absl::Status NotLeaderError(uint64_t leader_id);

// Thread-safe.
class Consensus {
 public:
  using Done = absl::AnyInvocable<void(absl::StatusOr<store::CommandResult>) &&>;
  using StatusDone = absl::AnyInvocable<void(absl::Status) &&>;
  virtual ~Consensus() = default;

  // Starts taking part in the cluster. Register observers before.
  [[nodiscard]] virtual absl::Status Start() = 0;
  // Leaves: pending work fails with UNAVAILABLE; internal threads are joined. Idempotent.
  virtual void Stop() = 0;

  // Replicates and applies `command`. `done` runs exactly once, on the apply thread: with the
  // command's result once applied (whose status may be a rejection such as NOT_FOUND);
  // NotLeaderError when this replica is not the leader (nothing was proposed); UNAVAILABLE
  // when leadership was lost after proposing (the command may or may not be applied).
  virtual void Propose(state::v1::Command command, Done done) = 0;

  // Leader only: `done(OK)` once every command committed before the call is applied here
  // (a Raft barrier, shared by concurrent callers). NotLeaderError on a follower.
  virtual void Barrier(StatusDone done) = 0;
  // `done(OK)` once this replica has applied up to `index` (a Raft index), or
  // DEADLINE_EXCEEDED after timeout_ms.
  virtual void WaitApplied(uint64_t index, int64_t timeout_ms, StatusDone done) = 0;

  // Leader only (NotLeaderError otherwise): the index a linearizable read may be served at
  // (the commit index now), valid once a majority confirms, after this call, that this replica
  // still leads in `term` (see LeaderRouter). When this leader has not committed an entry of
  // its own term yet, it runs a barrier first and reports `confirmed`: no confirmation needed.
  struct ReadIndex {
    uint64_t term = 0;
    uint64_t index = 0;
    bool confirmed = false;
  };
  virtual void LeaderReadIndex(absl::AnyInvocable<void(absl::StatusOr<ReadIndex>) &&> done) = 0;
  // This replica's term, role and leader as Raft has them now (status() is sampled).
  virtual void CurrentLeadership(absl::AnyInvocable<void(ConsensusStatus) &&> done) = 0;

  // Leader only (NotLeaderError otherwise). AddMember adds the replica as a spare and promotes
  // it to voter once caught up; RemoveMember removes it; TransferLeadership hands leadership
  // to `id` (0: let Raft choose) and returns the new leader.
  virtual void AddMember(uint64_t id, const std::string& raft_address, StatusDone done) = 0;
  virtual void RemoveMember(uint64_t id, StatusDone done) = 0;
  virtual void TransferLeadership(uint64_t id,
                                  absl::AnyInvocable<void(absl::StatusOr<uint64_t>) &&> done) = 0;

  virtual ConsensusStatus status() const = 0;
  // The Raft configuration as this replica knows it.
  virtual std::vector<MemberInfo> members() const = 0;

  // Not owned; must outlive the consensus. Register before Start().
  virtual void AddObserver(ApplyObserver* observer) = 0;
  virtual void AddRoleObserver(RoleObserver* observer) = 0;
};

}  // namespace zmesh::raft
