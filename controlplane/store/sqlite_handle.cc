#include "controlplane/store/sqlite_handle.h"

#include "absl/strings/str_cat.h"

namespace zmesh::store {

absl::Status SqliteError(sqlite3* db, int rc, absl::string_view context) {
  std::string message = absl::StrCat(context, ": ", sqlite3_errstr(rc));
  if (db != nullptr && sqlite3_errcode(db) == rc) {
    absl::StrAppend(&message, " (", sqlite3_errmsg(db), ")");
  }
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(message);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::StatusOr<SqliteDb> OpenSqlite(const std::string& path, int flags) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  SqliteDb db(raw);
  if (rc != SQLITE_OK) {
    return SqliteError(raw, rc, absl::StrCat("opening ", path));
  }
  sqlite3_extended_result_codes(raw, 1);
  return db;
}

absl::Status Exec(sqlite3* db, absl::string_view sql) {
  std::string text(sql);
  char* error = nullptr;
  int rc = sqlite3_exec(db, text.c_str(), nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    std::string message = error != nullptr ? error : sqlite3_errstr(rc);
    sqlite3_free(error);
    return SqliteError(db, rc, absl::StrCat("running \"", sql.substr(0, 60), "\": ", message));
  }
  return absl::OkStatus();
}

absl::StatusOr<Statement> Connection::Prepare(const char* sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) {
    sqlite3_reset(it->second.get());
    sqlite3_clear_bindings(it->second.get());
    return Statement(it->second.get());
  }
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  if (rc != SQLITE_OK) {
    return SqliteError(db_.get(), rc, absl::StrCat("preparing \"", sql, "\""));
  }
  cache_.emplace(sql, SqliteStmt(raw));
  return Statement(raw);
}

void BindText(sqlite3_stmt* stmt, int index, absl::string_view text) {
  sqlite3_bind_text(stmt, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

void BindInt(sqlite3_stmt* stmt, int index, int64_t value) {
  sqlite3_bind_int64(stmt, index, value);
}

void BindBlob(sqlite3_stmt* stmt, int index, absl::string_view bytes) {
  sqlite3_bind_blob(stmt, index, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
}

std::string ColumnText(sqlite3_stmt* stmt, int index) {
  const unsigned char* text = sqlite3_column_text(stmt, index);
  int size = sqlite3_column_bytes(stmt, index);
  return text == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(text), size);
}

std::string ColumnBlob(sqlite3_stmt* stmt, int index) {
  const void* blob = sqlite3_column_blob(stmt, index);
  int size = sqlite3_column_bytes(stmt, index);
  return blob == nullptr ? std::string() : std::string(static_cast<const char*>(blob), size);
}

}  // namespace zmesh::store
