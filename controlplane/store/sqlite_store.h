// SqliteStore: the Store on a SQLite database in WAL mode. Schema: docs/storage.md.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/store/sqlite_handle.h"
#include "controlplane/store/store.h"

namespace zmesh::store {

struct SqliteStoreOptions {
  // Database file; ":memory:" is not supported (the store needs a second connection).
  std::string path;
  // Change events of this many most recent revisions are kept for watchers. Must be the same
  // on every replica: history trimming is part of the deterministic state.
  int64_t history_revisions = 10000;
  // fsync every commit (PRAGMA synchronous=FULL). Off when a replicated log already makes
  // applied commands durable.
  bool sync_commits = true;
};

// Thread-safe (see Store). Lock order: write_mu_ before read_mu_.
class SqliteStore final : public Store {
 public:
  // Opens or creates the database and its schema. FAILED_PRECONDITION if the file holds a
  // schema of another version; DATA_LOSS if it is not a database.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      SqliteStoreOptions options);
  ~SqliteStore() override;

  // Creates a store at `store_path` (which must not exist) from a backup of a store (a copy of
  // directory.db, e.g. made with sqlite3's .backup), ready to start a new Raft log: the applied
  // index is reset to 0, everything else is kept. INVALID_ARGUMENT if the backup is not a store.
  [[nodiscard]] static absl::Status ImportBackup(const std::string& backup_path,
                                                 const std::string& store_path);

  absl::StatusOr<std::vector<CommandResult>> ApplyBatch(const std::vector<Entry>& entries) override;
  uint64_t applied_index() const override;
  int64_t revision() const override;

  absl::StatusOr<dir::GetNodeResponse> GetNode(absl::string_view name) override;
  absl::StatusOr<dir::ListNodesResponse> ListNodes() override;
  absl::StatusOr<dir::LookupResponse> Lookup(const dir::LookupRequest& request) override;
  absl::StatusOr<dir::ListTopicsResponse> ListTopics(
      const dir::ListTopicsRequest& request) override;
  absl::StatusOr<dir::ListLeasesResponse> ListLeases() override;
  absl::StatusOr<dir::Lease> GetLease(int64_t id) override;
  absl::StatusOr<ChangesSince> ReadChanges(const WatchFilter& filter, int64_t start_revision,
                                           bool want_snapshot) override;
  absl::StatusOr<std::vector<state::v1::SetMember>> Members() override;
  absl::StatusOr<StoreStats> Stats() override;
  absl::StatusOr<std::string> Snapshot() override;
  absl::Status Restore(absl::string_view image) override;

 private:
  // The counters kept in the single row of table `state`.
  struct Counters {
    int64_t revision = 0;
    int64_t compact_revision = 0;
    uint64_t applied_index = 0;
    int64_t next_lease_id = 1;
  };
  class Writer;  // applies one command inside the write transaction
  class ReadTxn;

  SqliteStore(SqliteStoreOptions options, std::unique_ptr<Connection> writer,
              std::unique_ptr<Connection> reader);
  static absl::Status LoadCounters(Connection& conn, Counters* counters);
  // Duplicate suppression (inside the write transaction).
  absl::StatusOr<std::optional<CommandResult>> FindRequest(Connection& conn, absl::string_view id);
  absl::Status RememberRequest(Connection& conn, absl::string_view id, uint64_t index,
                               const CommandResult& result);

  const SqliteStoreOptions options_;
  mutable absl::Mutex write_mu_;
  std::unique_ptr<Connection> writer_ ABSL_GUARDED_BY(write_mu_);
  Counters counters_ ABSL_GUARDED_BY(write_mu_);
  mutable absl::Mutex read_mu_;
  std::unique_ptr<Connection> reader_ ABSL_GUARDED_BY(read_mu_);
  // Mirrors of counters_ readable without write_mu_ (updated after each commit).
  std::atomic<uint64_t> applied_index_{0};
  std::atomic<int64_t> revision_{0};
};

}  // namespace zmesh::store
