// Consensus: how the directory turns a command into an applied, durable change. The service
// layer proposes commands and never touches the store's write side itself.
//
// Implementations: LocalConsensus (one replica, no log: commands are applied straight to the
// store on one apply thread) and, with replication, a Raft-backed implementation.
#pragma once

#include <cstdint>
#include <functional>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "controlplane/store/store.h"
#include "zmesh/state/v1/command.pb.h"

namespace zmesh::raft {

enum class Role { kLeader, kFollower, kCandidate, kUnavailable };

struct ConsensusStatus {
  uint64_t id = 0;
  Role role = Role::kUnavailable;
  uint64_t term = 0;
  uint64_t leader_id = 0;
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
};

// Told about every applied command, on the apply thread, in log order. Must not block.
class ApplyObserver {
 public:
  virtual ~ApplyObserver() = default;
  virtual void OnApplied(const state::v1::Command& command, const store::CommandResult& result) = 0;
};

// Thread-safe.
class Consensus {
 public:
  using Done = absl::AnyInvocable<void(absl::StatusOr<store::CommandResult>) &&>;
  virtual ~Consensus() = default;

  // Starts applying. Observers registered before Start see every command applied after it.
  [[nodiscard]] virtual absl::Status Start() = 0;
  // Stops accepting proposals, finishes (or fails with UNAVAILABLE) those in flight, and
  // joins internal threads. Idempotent.
  virtual void Stop() = 0;

  // Replicates and applies `command`. `done` runs exactly once, on the apply thread, after the
  // command was applied (its result, whose status may be a rejection such as NOT_FOUND) or
  // with an error when it could not be committed (UNAVAILABLE: stopping or no leader).
  // Never blocks on I/O.
  virtual void Propose(state::v1::Command command, Done done) = 0;

  virtual ConsensusStatus status() const = 0;
  // Not owned; must outlive the consensus. Register before Start().
  virtual void AddObserver(ApplyObserver* observer) = 0;
};

}  // namespace zmesh::raft
