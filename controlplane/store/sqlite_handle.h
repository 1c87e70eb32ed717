// RAII wrappers and small helpers for SQLite handles. Only the store uses SQLite.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace zmesh::store {

struct SqliteCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StatementFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using SqliteDb = std::unique_ptr<sqlite3, SqliteCloser>;
using SqliteStmt = std::unique_ptr<sqlite3_stmt, StatementFinalizer>;

// Status for a failed SQLite call on `db`, with what we were doing as context.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view context);

// Opens (creating if needed) a database file, or ":memory:".
absl::StatusOr<SqliteDb> OpenSqlite(const std::string& path, int flags);

// Runs one or more statements that return no rows.
absl::Status Exec(sqlite3* db, absl::string_view sql);

// A cached prepared statement in use; resets it when it goes out of scope so that no statement
// stays active (holding a read snapshot) after its user is done.
class Statement {
 public:
  explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement(Statement&& other) noexcept : stmt_(other.stmt_) { other.stmt_ = nullptr; }
  Statement& operator=(Statement&&) = delete;
  ~Statement() {
    if (stmt_ != nullptr) sqlite3_reset(stmt_);
  }
  operator sqlite3_stmt*() const { return stmt_; }  // NOLINT(google-explicit-constructor)

 private:
  sqlite3_stmt* stmt_;
};

// One connection with a cache of prepared statements. Not thread-safe: the owner serializes.
class Connection {
 public:
  explicit Connection(SqliteDb db) : db_(std::move(db)) {}
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* get() const { return db_.get(); }

  // A statement for `sql` (a string that outlives the connection: it keys the cache), prepared
  // once, with fresh bindings. Owned by the connection; do not use the same SQL twice at once.
  absl::StatusOr<Statement> Prepare(const char* sql);
  // Drops every cached statement (before the database is replaced).
  void ClearCache() { cache_.clear(); }

 private:
  SqliteDb db_;
  absl::flat_hash_map<const char*, SqliteStmt> cache_;  // keyed by the SQL literal's address
};

// Small binding helpers (indexes are 1-based as in SQLite).
void BindText(sqlite3_stmt* stmt, int index, absl::string_view text);
void BindInt(sqlite3_stmt* stmt, int index, int64_t value);
void BindBlob(sqlite3_stmt* stmt, int index, absl::string_view bytes);
std::string ColumnText(sqlite3_stmt* stmt, int index);
std::string ColumnBlob(sqlite3_stmt* stmt, int index);

}  // namespace zmesh::store
