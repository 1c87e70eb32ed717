// Store: the directory's state and its deterministic state machine.
//
// Every change is a state::v1::Command applied at a log index by Apply(). Applying the same
// commands in the same order yields byte-identical state on every replica: Apply reads no
// wall clock and no randomness (lease ids and revisions are derived from the state itself).
// Each command that changes something bumps the global revision by one; all events of one
// command share that revision. The change events of the last `history_revisions` revisions are
// kept for watchers. The whole state can be captured as an opaque snapshot and restored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "zmesh/directory/v1/cluster.pb.h"
#include "zmesh/directory/v1/directory.pb.h"
#include "zmesh/directory/v1/lease.pb.h"
#include "zmesh/directory/v1/types.pb.h"
#include "zmesh/state/v1/command.pb.h"

namespace zmesh::store {

namespace dir = ::zmesh::directory::v1;

// The outcome of one applied command.
struct CommandResult {
  // OK, or why the command was rejected (NOT_FOUND for an unknown lease, node or
  // registration). A rejected command changes nothing but still consumes its log index.
  absl::Status status;
  // Revision after the command (unchanged if the command changed nothing).
  int64_t revision = 0;
  // Changes made, in order; they all carry `revision`.
  std::vector<dir::Event> events;
  // GrantLease: the new lease id.
  int64_t lease_id = 0;
  // PutNode / SetDraining: the node after the command.
  dir::Node node;
  // PutRegistration: the registration (existing or new).
  dir::Registration registration;
  // PutRegistration: false when it already existed.
  bool created = false;
  // RevokeLease / ExpireLeases: leases deleted; with RemoveNode too: nodes deleted.
  std::vector<int64_t> leases_deleted;
  std::vector<std::string> nodes_deleted;
  int64_t registrations_deleted = 0;
};

// Which changes a watcher wants.
struct WatchFilter {
  std::string exchange;      // empty: every exchange
  std::string topic_prefix;  // empty: every topic
  bool include_nodes = false;

  bool Matches(const dir::Event& event) const;
};

// What a watcher starting at some revision must receive first.
struct ChangesSince {
  // true: `events` is a full snapshot of the matching state (all PUTs), because the requested
  // revision is no longer in the history (or a snapshot was asked for).
  bool snapshot = false;
  std::vector<dir::Event> events;
  // The state revision these were read at: everything up to it is covered.
  int64_t revision = 0;
  int64_t compact_revision = 0;
};

struct StoreStats {
  int64_t revision = 0;
  int64_t compact_revision = 0;
  uint64_t applied_index = 0;
  int64_t nodes = 0;
  int64_t registrations = 0;
  int64_t leases = 0;
  int64_t db_size_bytes = 0;
};

// Thread-safe: Apply/Restore are serialized with each other; reads may run concurrently with
// them and see the state as of the last applied command.
class Store {
 public:
  virtual ~Store() = default;

  struct Entry {
    uint64_t index;
    const state::v1::Command* command;  // not owned; alive for the call
  };

  // Applies entries (indexes strictly increasing, each > applied_index()) atomically as a
  // group: either all are applied and durable, or none (error status: the storage failed, and
  // the caller must not continue). Entries at or below applied_index() are skipped (their
  // result has status ALREADY_EXISTS "index already applied").
  [[nodiscard]] virtual absl::StatusOr<std::vector<CommandResult>> ApplyBatch(
      const std::vector<Entry>& entries) = 0;
  [[nodiscard]] absl::StatusOr<CommandResult> Apply(uint64_t index,
                                                    const state::v1::Command& command);

  virtual uint64_t applied_index() const = 0;
  virtual int64_t revision() const = 0;

  // Reads. Each answers from one consistent view and reports the revision it was read at.
  [[nodiscard]] virtual absl::StatusOr<dir::GetNodeResponse> GetNode(absl::string_view name) = 0;
  [[nodiscard]] virtual absl::StatusOr<dir::ListNodesResponse> ListNodes() = 0;
  [[nodiscard]] virtual absl::StatusOr<dir::LookupResponse> Lookup(
      const dir::LookupRequest& request) = 0;
  // page_size must already be within bounds; page_token as returned before (or empty).
  [[nodiscard]] virtual absl::StatusOr<dir::ListTopicsResponse> ListTopics(
      const dir::ListTopicsRequest& request) = 0;
  // Leases with remaining_ms = -1 (timing is not part of the state).
  [[nodiscard]] virtual absl::StatusOr<dir::ListLeasesResponse> ListLeases() = 0;
  [[nodiscard]] virtual absl::StatusOr<dir::Lease> GetLease(int64_t id) = 0;
  // Events with revision >= start_revision matching `filter`, or a snapshot when
  // start_revision <= compact revision, start_revision > revision + 1 (a revision not reached)
  // or `want_snapshot`. start_revision 0 means "after the current revision" (no events).
  [[nodiscard]] virtual absl::StatusOr<ChangesSince> ReadChanges(const WatchFilter& filter,
                                                                 int64_t start_revision,
                                                                 bool want_snapshot) = 0;
  // Replica addresses recorded by SetMember commands, by id.
  [[nodiscard]] virtual absl::StatusOr<std::vector<state::v1::SetMember>> Members() = 0;
  [[nodiscard]] virtual absl::StatusOr<StoreStats> Stats() = 0;

  // The whole state (including applied index and history) as an opaque image.
  [[nodiscard]] virtual absl::StatusOr<std::string> Snapshot() = 0;
  // Replaces the whole state with an image from Snapshot().
  [[nodiscard]] virtual absl::Status Restore(absl::string_view image) = 0;
};

}  // namespace zmesh::store
