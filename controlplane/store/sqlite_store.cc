#include "controlplane/store/sqlite_store.h"

#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "controlplane/store/outcome.h"

namespace zmesh::store {
namespace {

constexpr int kSchemaVersion = 1;
// Request ids of commands applied within this many log indexes are remembered (duplicates of
// them are not applied again). Part of the deterministic state: a constant, not an option.
constexpr int64_t kRequestWindow = 100000;

constexpr char kSchema[] = R"sql(
CREATE TABLE state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  revision INTEGER NOT NULL,
  compact_revision INTEGER NOT NULL,
  applied_index INTEGER NOT NULL,
  next_lease_id INTEGER NOT NULL
);
INSERT INTO state VALUES (1, 0, 0, 0, 1);
CREATE TABLE leases (
  id INTEGER PRIMARY KEY,
  ttl_ms INTEGER NOT NULL,
  grant_revision INTEGER NOT NULL
);
CREATE TABLE nodes (
  name TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  call_port INTEGER NOT NULL,
  fanout_port INTEGER NOT NULL,
  notify_port INTEGER NOT NULL,
  cast_port INTEGER NOT NULL,
  draining INTEGER NOT NULL,
  lease_id INTEGER NOT NULL,
  create_revision INTEGER NOT NULL,
  mod_revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX nodes_by_lease ON nodes (lease_id);
CREATE TABLE registrations (
  exchange TEXT NOT NULL,
  topic TEXT NOT NULL,
  server TEXT NOT NULL,
  kind INTEGER NOT NULL,
  pool TEXT NOT NULL,
  node TEXT NOT NULL,
  create_revision INTEGER NOT NULL,
  mod_revision INTEGER NOT NULL,
  PRIMARY KEY (exchange, topic, server, kind, pool, node)
) WITHOUT ROWID;
CREATE INDEX registrations_by_node ON registrations (node);
CREATE TABLE members (
  id INTEGER PRIMARY KEY,
  raft_address TEXT NOT NULL,
  grpc_address TEXT NOT NULL
);
CREATE TABLE requests (
  id TEXT PRIMARY KEY,
  idx INTEGER NOT NULL,
  outcome BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX requests_by_index ON requests (idx);
CREATE TABLE events (
  revision INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  event BLOB NOT NULL,
  PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
)sql";

constexpr char kNodeColumns[] =
    "name, host, call_port, fanout_port, notify_port, cast_port, draining, lease_id, "
    "create_revision, mod_revision";

// Reads a node from `stmt` columns [first, first + 10).
dir::Node NodeFromRow(sqlite3_stmt* stmt, int first) {
  dir::Node node;
  node.set_name(ColumnText(stmt, first));
  node.set_host(ColumnText(stmt, first + 1));
  node.set_call_port(static_cast<uint32_t>(sqlite3_column_int64(stmt, first + 2)));
  node.set_fanout_port(static_cast<uint32_t>(sqlite3_column_int64(stmt, first + 3)));
  node.set_notify_port(static_cast<uint32_t>(sqlite3_column_int64(stmt, first + 4)));
  node.set_cast_port(static_cast<uint32_t>(sqlite3_column_int64(stmt, first + 5)));
  node.set_draining(sqlite3_column_int64(stmt, first + 6) != 0);
  node.set_lease_id(sqlite3_column_int64(stmt, first + 7));
  node.set_create_revision(sqlite3_column_int64(stmt, first + 8));
  node.set_mod_revision(sqlite3_column_int64(stmt, first + 9));
  return node;
}

// Reads a registration from `stmt` columns [first, first + 8).
dir::Registration RegistrationFromRow(sqlite3_stmt* stmt, int first) {
  dir::Registration reg;
  reg.set_exchange(ColumnText(stmt, first));
  reg.set_topic(ColumnText(stmt, first + 1));
  reg.set_server(ColumnText(stmt, first + 2));
  reg.set_kind(static_cast<dir::Kind>(sqlite3_column_int64(stmt, first + 3)));
  reg.set_pool(ColumnText(stmt, first + 4));
  reg.set_node(ColumnText(stmt, first + 5));
  reg.set_create_revision(sqlite3_column_int64(stmt, first + 6));
  reg.set_mod_revision(sqlite3_column_int64(stmt, first + 7));
  return reg;
}

constexpr char kRegistrationColumns[] =
    "exchange, topic, server, kind, pool, node, create_revision, mod_revision";

std::string RegistrationName(const dir::Registration& reg) {
  return absl::StrCat(reg.exchange(), "/", reg.topic(), " server=\"", reg.server(),
                      "\" kind=", dir::Kind_Name(reg.kind()), " pool=\"", reg.pool(), "\" node=\"",
                      reg.node(), "\"");
}

// Steps a prepared statement expected to return no rows.
absl::Status Done(Connection& conn, sqlite3_stmt* stmt, absl::string_view context) {
  int rc = sqlite3_step(stmt);
  if (rc != SQLITE_DONE) {
    return SqliteError(conn.get(), rc, context);
  }
  return absl::OkStatus();
}

// Calls row(stmt) for every row; stops at the first error.
template <typename RowFn>
absl::Status ForEachRow(Connection& conn, sqlite3_stmt* stmt, absl::string_view context,
                        RowFn row) {
  while (true) {
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) return absl::OkStatus();
    if (rc != SQLITE_ROW) return SqliteError(conn.get(), rc, context);
    row(stmt);
  }
}

// The header bytes 18-19 say "WAL" (2) in an image copied from our WAL database; an in-memory
// database cannot have a WAL file, so images say "rollback journal" (1). The state is the same.
void MarkRollbackJournal(std::string& image) {
  if (image.size() >= 20) {
    image[18] = 1;
    image[19] = 1;
  }
}

}  // namespace

bool WatchFilter::Matches(const dir::Event& event) const {
  if (event.has_node()) return include_nodes;
  if (!event.has_registration()) return false;
  const dir::Registration& reg = event.registration();
  if (!exchange.empty() && reg.exchange() != exchange) return false;
  return absl::StartsWith(reg.topic(), topic_prefix);
}

absl::StatusOr<CommandResult> Store::Apply(uint64_t index, const state::v1::Command& command) {
  std::vector<Entry> entries{{index, &command}};
  absl::StatusOr<std::vector<CommandResult>> results = ApplyBatch(entries);
  if (!results.ok()) return results.status();
  return std::move(results->front());
}

// Applies one command inside the open write transaction, recording its effects in a
// CommandResult. Business errors (unknown ids) are returned before anything is written.
class SqliteStore::Writer {
 public:
  Writer(Connection& conn, Counters& counters, int64_t history_revisions)
      : conn_(conn), counters_(counters), history_revisions_(history_revisions) {}

  // Returns a storage error; a rejected command sets result->status instead.
  absl::Status Apply(const state::v1::Command& command, CommandResult* result) {
    result_ = result;
    pending_revision_ = counters_.revision + 1;
    absl::Status st;
    switch (command.op_case()) {
      case state::v1::Command::kGrantLease:
        st = GrantLease(command.grant_lease());
        break;
      case state::v1::Command::kRevokeLease:
        st = RevokeLease(command.revoke_lease());
        break;
      case state::v1::Command::kExpireLeases:
        st = ExpireLeases(command.expire_leases());
        break;
      case state::v1::Command::kPutNode:
        st = PutNode(command.put_node());
        break;
      case state::v1::Command::kSetDraining:
        st = SetDraining(command.set_draining());
        break;
      case state::v1::Command::kRemoveNode:
        st = RemoveNode(command.remove_node());
        break;
      case state::v1::Command::kPutRegistration:
        st = PutRegistration(command.put_registration());
        break;
      case state::v1::Command::kDeleteRegistration:
        st = DeleteRegistration(command.delete_registration());
        break;
      case state::v1::Command::kSetMember:
        st = SetMember(command.set_member());
        break;
      case state::v1::Command::kRemoveMember:
        st = RemoveMember(command.remove_member());
        break;
      case state::v1::Command::OP_NOT_SET:
        result->status = absl::InvalidArgumentError("empty command");
        break;
    }
    if (!st.ok()) return st;
    if (result->status.ok() && bumped_) {
      counters_.revision = pending_revision_;
      if (absl::Status trimmed = TrimHistory(); !trimmed.ok()) return trimmed;
    }
    result->revision = counters_.revision;
    return absl::OkStatus();
  }

 private:
  // Marks the command as a change: it gets revision counters_.revision + 1.
  void Bump() { bumped_ = true; }

  absl::Status AddEvent(dir::Event::Type type, const dir::Node* node,
                        const dir::Registration* reg) {
    Bump();
    dir::Event event;
    event.set_type(type);
    event.set_revision(pending_revision_);
    if (node != nullptr) *event.mutable_node() = *node;
    if (reg != nullptr) *event.mutable_registration() = *reg;
    std::string bytes;
    event.SerializeToString(&bytes);
    absl::StatusOr<Statement> stmt =
        conn_.Prepare("INSERT INTO events (revision, seq, event) VALUES (?, ?, ?)");
    if (!stmt.ok()) return stmt.status();
    BindInt(*stmt, 1, pending_revision_);
    BindInt(*stmt, 2, static_cast<int64_t>(result_->events.size()));
    BindBlob(*stmt, 3, bytes);
    if (absl::Status st = Done(conn_, *stmt, "recording event"); !st.ok()) return st;
    result_->events.push_back(std::move(event));
    return absl::OkStatus();
  }

  absl::Status TrimHistory() {
    int64_t keep_from = counters_.revision - history_revisions_;
    if (keep_from <= counters_.compact_revision) return absl::OkStatus();
    absl::StatusOr<Statement> stmt = conn_.Prepare("DELETE FROM events WHERE revision <= ?");
    if (!stmt.ok()) return stmt.status();
    BindInt(*stmt, 1, keep_from);
    if (absl::Status st = Done(conn_, *stmt, "trimming history"); !st.ok()) return st;
    counters_.compact_revision = keep_from;
    return absl::OkStatus();
  }

  absl::StatusOr<bool> LeaseExists(int64_t id) {
    absl::StatusOr<Statement> stmt = conn_.Prepare("SELECT 1 FROM leases WHERE id = ?");
    if (!stmt.ok()) return stmt.status();
    BindInt(*stmt, 1, id);
    int rc = sqlite3_step(*stmt);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(conn_.get(), rc, absl::StrCat("reading lease ", id));
  }

  absl::StatusOr<std::optional<dir::Node>> FindNode(absl::string_view name) {
    static const std::string sql =
        absl::StrCat("SELECT ", kNodeColumns, " FROM nodes WHERE name = ?");
    absl::StatusOr<Statement> stmt = conn_.Prepare(sql.c_str());
    if (!stmt.ok()) return stmt.status();
    BindText(*stmt, 1, name);
    int rc = sqlite3_step(*stmt);
    if (rc == SQLITE_ROW) return std::optional<dir::Node>(NodeFromRow(*stmt, 0));
    if (rc == SQLITE_DONE) return std::optional<dir::Node>();
    return SqliteError(conn_.get(), rc, absl::StrCat("reading node ", name));
  }

  absl::Status GrantLease(const state::v1::GrantLease& cmd) {
    const int64_t id = counters_.next_lease_id;
    absl::StatusOr<Statement> stmt =
        conn_.Prepare("INSERT INTO leases (id, ttl_ms, grant_revision) VALUES (?, ?, ?)");
    if (!stmt.ok()) return stmt.status();
    BindInt(*stmt, 1, id);
    BindInt(*stmt, 2, cmd.ttl_ms());
    BindInt(*stmt, 3, pending_revision_);
    if (absl::Status st = Done(conn_, *stmt, absl::StrCat("persisting lease ", id)); !st.ok()) {
      return st;
    }
    counters_.next_lease_id = id + 1;
    result_->lease_id = id;
    Bump();
    return absl::OkStatus();
  }

  // Deletes a node's registrations (events first) and then the node.
  absl::Status DeleteNodeCascade(const dir::Node& node) {
    static const std::string select = absl::StrCat(
        "SELECT ", kRegistrationColumns,
        " FROM registrations WHERE node = ? ORDER BY exchange, topic, server, kind, pool");
    absl::StatusOr<Statement> stmt = conn_.Prepare(select.c_str());
    if (!stmt.ok()) return stmt.status();
    BindText(*stmt, 1, node.name());
    std::vector<dir::Registration> regs;
    if (absl::Status st =
            ForEachRow(conn_, *stmt, "reading registrations of node",
                       [&](sqlite3_stmt* s) { regs.push_back(RegistrationFromRow(s, 0)); });
        !st.ok()) {
      return st;
    }
    for (const dir::Registration& reg : regs) {
      if (absl::Status st = AddEvent(dir::Event::TYPE_DELETE, nullptr, &reg); !st.ok()) return st;
    }
    absl::StatusOr<Statement> del = conn_.Prepare("DELETE FROM registrations WHERE node = ?");
    if (!del.ok()) return del.status();
    BindText(*del, 1, node.name());
    if (absl::Status st = Done(conn_, *del, "deleting registrations of node"); !st.ok()) return st;
    absl::StatusOr<Statement> del_node = conn_.Prepare("DELETE FROM nodes WHERE name = ?");
    if (!del_node.ok()) return del_node.status();
    BindText(*del_node, 1, node.name());
    if (absl::Status st = Done(conn_, *del_node, absl::StrCat("deleting node ", node.name()));
        !st.ok()) {
      return st;
    }
    if (absl::Status st = AddEvent(dir::Event::TYPE_DELETE, &node, nullptr); !st.ok()) return st;
    result_->nodes_deleted.push_back(node.name());
    result_->registrations_deleted += static_cast<int64_t>(regs.size());
    return absl::OkStatus();
  }

  absl::Status DeleteLease(int64_t id) {
    static const std::string select =
        absl::StrCat("SELECT ", kNodeColumns, " FROM nodes WHERE lease_id = ? ORDER BY name");
    absl::StatusOr<Statement> stmt = conn_.Prepare(select.c_str());
    if (!stmt.ok()) return stmt.status();
    BindInt(*stmt, 1, id);
    std::vector<dir::Node> nodes;
    if (absl::Status st = ForEachRow(conn_, *stmt, "reading nodes of lease",
                                     [&](sqlite3_stmt* s) { nodes.push_back(NodeFromRow(s, 0)); });
        !st.ok()) {
      return st;
    }
    for (const dir::Node& node : nodes) {
      if (absl::Status st = DeleteNodeCascade(node); !st.ok()) return st;
    }
    absl::StatusOr<Statement> del = conn_.Prepare("DELETE FROM leases WHERE id = ?");
    if (!del.ok()) return del.status();
    BindInt(*del, 1, id);
    if (absl::Status st = Done(conn_, *del, absl::StrCat("deleting lease ", id)); !st.ok()) {
      return st;
    }
    result_->leases_deleted.push_back(id);
    Bump();
    return absl::OkStatus();
  }

  absl::Status RevokeLease(const state::v1::RevokeLease& cmd) {
    absl::StatusOr<bool> exists = LeaseExists(cmd.id());
    if (!exists.ok()) return exists.status();
    if (!*exists) {
      result_->status = absl::NotFoundError(absl::StrCat("lease ", cmd.id(), " not found"));
      return absl::OkStatus();
    }
    return DeleteLease(cmd.id());
  }

  absl::Status ExpireLeases(const state::v1::ExpireLeases& cmd) {
    for (int64_t id : cmd.ids()) {
      absl::StatusOr<bool> exists = LeaseExists(id);
      if (!exists.ok()) return exists.status();
      if (!*exists) continue;  // revoked meanwhile
      if (absl::Status st = DeleteLease(id); !st.ok()) return st;
    }
    return absl::OkStatus();
  }

  absl::Status PutNode(const state::v1::PutNode& cmd) {
    const dir::Node& in = cmd.node();
    if (cmd.lease_id() != 0) {
      absl::StatusOr<bool> exists = LeaseExists(cmd.lease_id());
      if (!exists.ok()) return exists.status();
      if (!*exists) {
        result_->status = absl::NotFoundError(absl::StrCat("lease ", cmd.lease_id(), " not found"));
        return absl::OkStatus();
      }
    }
    absl::StatusOr<std::optional<dir::Node>> existing = FindNode(in.name());
    if (!existing.ok()) return existing.status();
    dir::Node node;
    node.set_name(in.name());
    node.set_host(in.host());
    node.set_call_port(in.call_port());
    node.set_fanout_port(in.fanout_port());
    node.set_notify_port(in.notify_port());
    node.set_cast_port(in.cast_port());
    node.set_lease_id(cmd.lease_id());
    if (existing->has_value()) {
      const dir::Node& old = **existing;
      node.set_draining(old.draining());
      node.set_create_revision(old.create_revision());
      node.set_mod_revision(old.mod_revision());
      if (node.SerializeAsString() == old.SerializeAsString()) {
        result_->node = old;  // unchanged: idempotent
        return absl::OkStatus();
      }
    } else {
      node.set_create_revision(pending_revision_);
    }
    node.set_mod_revision(pending_revision_);
    absl::StatusOr<Statement> stmt = conn_.Prepare(
        "INSERT OR REPLACE INTO nodes (name, host, call_port, fanout_port, notify_port, "
        "cast_port, draining, lease_id, create_revision, mod_revision) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!stmt.ok()) return stmt.status();
    BindText(*stmt, 1, node.name());
    BindText(*stmt, 2, node.host());
    BindInt(*stmt, 3, node.call_port());
    BindInt(*stmt, 4, node.fanout_port());
    BindInt(*stmt, 5, node.notify_port());
    BindInt(*stmt, 6, node.cast_port());
    BindInt(*stmt, 7, node.draining() ? 1 : 0);
    BindInt(*stmt, 8, node.lease_id());
    BindInt(*stmt, 9, node.create_revision());
    BindInt(*stmt, 10, node.mod_revision());
    if (absl::Status st = Done(conn_, *stmt, absl::StrCat("persisting node ", node.name()));
        !st.ok()) {
      return st;
    }
    result_->node = node;
    return AddEvent(dir::Event::TYPE_PUT, &node, nullptr);
  }

  absl::Status SetDraining(const state::v1::SetDraining& cmd) {
    absl::StatusOr<std::optional<dir::Node>> existing = FindNode(cmd.name());
    if (!existing.ok()) return existing.status();
    if (!existing->has_value()) {
      result_->status = absl::NotFoundError(absl::StrCat("node \"", cmd.name(), "\" not found"));
      return absl::OkStatus();
    }
    dir::Node node = **existing;
    if (node.draining() == cmd.draining()) {
      result_->node = node;
      return absl::OkStatus();
    }
    node.set_draining(cmd.draining());
    node.set_mod_revision(pending_revision_);
    absl::StatusOr<Statement> stmt =
        conn_.Prepare("UPDATE nodes SET draining = ?, mod_revision = ? WHERE name = ?");
    if (!stmt.ok()) return stmt.status();
    BindInt(*stmt, 1, node.draining() ? 1 : 0);
    BindInt(*stmt, 2, node.mod_revision());
    BindText(*stmt, 3, node.name());
    if (absl::Status st = Done(conn_, *stmt, absl::StrCat("draining node ", node.name()));
        !st.ok()) {
      return st;
    }
    result_->node = node;
    return AddEvent(dir::Event::TYPE_PUT, &node, nullptr);
  }

  absl::Status RemoveNode(const state::v1::RemoveNode& cmd) {
    absl::StatusOr<std::optional<dir::Node>> existing = FindNode(cmd.name());
    if (!existing.ok()) return existing.status();
    if (!existing->has_value()) {
      result_->status = absl::NotFoundError(absl::StrCat("node \"", cmd.name(), "\" not found"));
      return absl::OkStatus();
    }
    return DeleteNodeCascade(**existing);
  }

  absl::StatusOr<std::optional<dir::Registration>> FindRegistration(const dir::Registration& key) {
    static const std::string sql = absl::StrCat(
        "SELECT ", kRegistrationColumns,
        " FROM registrations WHERE exchange = ? AND topic = ? AND server = ? AND kind = ? "
        "AND pool = ? AND node = ?");
    absl::StatusOr<Statement> stmt = conn_.Prepare(sql.c_str());
    if (!stmt.ok()) return stmt.status();
    BindText(*stmt, 1, key.exchange());
    BindText(*stmt, 2, key.topic());
    BindText(*stmt, 3, key.server());
    BindInt(*stmt, 4, key.kind());
    BindText(*stmt, 5, key.pool());
    BindText(*stmt, 6, key.node());
    int rc = sqlite3_step(*stmt);
    if (rc == SQLITE_ROW) return std::optional<dir::Registration>(RegistrationFromRow(*stmt, 0));
    if (rc == SQLITE_DONE) return std::optional<dir::Registration>();
    return SqliteError(conn_.get(), rc, "reading registration");
  }

  absl::Status PutRegistration(const state::v1::PutRegistration& cmd) {
    const dir::Registration& in = cmd.registration();
    absl::StatusOr<std::optional<dir::Node>> node = FindNode(in.node());
    if (!node.ok()) return node.status();
    if (!node->has_value()) {
      result_->status = absl::NotFoundError(absl::StrCat("node \"", in.node(), "\" not found"));
      return absl::OkStatus();
    }
    absl::StatusOr<std::optional<dir::Registration>> existing = FindRegistration(in);
    if (!existing.ok()) return existing.status();
    if (existing->has_value()) {
      result_->registration = **existing;
      result_->created = false;
      return absl::OkStatus();
    }
    dir::Registration reg;
    reg.set_exchange(in.exchange());
    reg.set_topic(in.topic());
    reg.set_server(in.server());
    reg.set_kind(in.kind());
    reg.set_pool(in.pool());
    reg.set_node(in.node());
    reg.set_create_revision(pending_revision_);
    reg.set_mod_revision(pending_revision_);
    absl::StatusOr<Statement> stmt = conn_.Prepare(
        "INSERT INTO registrations (exchange, topic, server, kind, pool, node, "
        "create_revision, mod_revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    if (!stmt.ok()) return stmt.status();
    BindText(*stmt, 1, reg.exchange());
    BindText(*stmt, 2, reg.topic());
    BindText(*stmt, 3, reg.server());
    BindInt(*stmt, 4, reg.kind());
    BindText(*stmt, 5, reg.pool());
    BindText(*stmt, 6, reg.node());
    BindInt(*stmt, 7, reg.create_revision());
    BindInt(*stmt, 8, reg.mod_revision());
    if (absl::Status st = Done(conn_, *stmt, "persisting registration"); !st.ok()) return st;
    result_->registration = reg;
    result_->created = true;
    return AddEvent(dir::Event::TYPE_PUT, nullptr, &reg);
  }

  absl::Status DeleteRegistration(const state::v1::DeleteRegistration& cmd) {
    absl::StatusOr<std::optional<dir::Registration>> existing =
        FindRegistration(cmd.registration());
    if (!existing.ok()) return existing.status();
    if (!existing->has_value()) {
      result_->status = absl::NotFoundError(
          absl::StrCat("registration ", RegistrationName(cmd.registration()), " not found"));
      return absl::OkStatus();
    }
    const dir::Registration& reg = **existing;
    absl::StatusOr<Statement> stmt = conn_.Prepare(
        "DELETE FROM registrations WHERE exchange = ? AND topic = ? AND server = ? AND "
        "kind = ? AND pool = ? AND node = ?");
    if (!stmt.ok()) return stmt.status();
    BindText(*stmt, 1, reg.exchange());
    BindText(*stmt, 2, reg.topic());
    BindText(*stmt, 3, reg.server());
    BindInt(*stmt, 4, reg.kind());
    BindText(*stmt, 5, reg.pool());
    BindText(*stmt, 6, reg.node());
    if (absl::Status st = Done(conn_, *stmt, "deleting registration"); !st.ok()) return st;
    result_->registration = reg;
    return AddEvent(dir::Event::TYPE_DELETE, nullptr, &reg);
  }

  // Members are not watched objects, but a change still bumps the revision.
  absl::Status SetMember(const state::v1::SetMember& cmd) {
    absl::StatusOr<Statement> find =
        conn_.Prepare("SELECT raft_address, grpc_address FROM members WHERE id = ?");
    if (!find.ok()) return find.status();
    BindInt(*find, 1, static_cast<int64_t>(cmd.id()));
    int rc = sqlite3_step(*find);
    if (rc == SQLITE_ROW && ColumnText(*find, 0) == cmd.raft_address() &&
        ColumnText(*find, 1) == cmd.grpc_address()) {
      return absl::OkStatus();  // unchanged
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
      return SqliteError(conn_.get(), rc, "reading member");
    }
    absl::StatusOr<Statement> stmt = conn_.Prepare(
        "INSERT OR REPLACE INTO members (id, raft_address, grpc_address) VALUES (?, ?, ?)");
    if (!stmt.ok()) return stmt.status();
    BindInt(*stmt, 1, static_cast<int64_t>(cmd.id()));
    BindText(*stmt, 2, cmd.raft_address());
    BindText(*stmt, 3, cmd.grpc_address());
    if (absl::Status st = Done(conn_, *stmt, absl::StrCat("persisting member ", cmd.id()));
        !st.ok()) {
      return st;
    }
    Bump();
    return absl::OkStatus();
  }

  absl::Status RemoveMember(const state::v1::RemoveMember& cmd) {
    absl::StatusOr<Statement> stmt = conn_.Prepare("DELETE FROM members WHERE id = ?");
    if (!stmt.ok()) return stmt.status();
    BindInt(*stmt, 1, static_cast<int64_t>(cmd.id()));
    if (absl::Status st = Done(conn_, *stmt, absl::StrCat("deleting member ", cmd.id()));
        !st.ok()) {
      return st;
    }
    if (sqlite3_changes(conn_.get()) > 0) Bump();
    return absl::OkStatus();
  }

  Connection& conn_;
  Counters& counters_;
  const int64_t history_revisions_;
  CommandResult* result_ = nullptr;
  int64_t pending_revision_ = 0;
  bool bumped_ = false;
};

// A read transaction on the reader connection: one consistent view of the state.
class SqliteStore::ReadTxn {
 public:
  explicit ReadTxn(Connection& conn) : conn_(conn) {}
  ~ReadTxn() {
    if (open_) (void)Exec(conn_.get(), "COMMIT");
  }
  absl::Status Begin() {
    if (absl::Status st = Exec(conn_.get(), "BEGIN"); !st.ok()) return st;
    open_ = true;
    absl::StatusOr<Statement> stmt =
        conn_.Prepare("SELECT revision, compact_revision FROM state WHERE id = 1");
    if (!stmt.ok()) return stmt.status();
    int rc = sqlite3_step(*stmt);
    if (rc != SQLITE_ROW) return SqliteError(conn_.get(), rc, "reading revision");
    revision_ = sqlite3_column_int64(*stmt, 0);
    compact_revision_ = sqlite3_column_int64(*stmt, 1);
    sqlite3_reset(*stmt);
    return absl::OkStatus();
  }
  int64_t revision() const { return revision_; }
  int64_t compact_revision() const { return compact_revision_; }

 private:
  Connection& conn_;
  bool open_ = false;
  int64_t revision_ = 0;
  int64_t compact_revision_ = 0;
};

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(SqliteStoreOptions options) {
  if (options.path.empty() || options.path == ":memory:") {
    return absl::InvalidArgumentError("store path must name a file");
  }
  if (options.history_revisions < 1) {
    return absl::InvalidArgumentError("history_revisions must be at least 1");
  }
  const std::string context = absl::StrCat("opening store ", options.path);
  absl::StatusOr<SqliteDb> wdb =
      OpenSqlite(options.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX);
  if (!wdb.ok()) return wdb.status();
  auto writer = std::make_unique<Connection>(*std::move(wdb));
  sqlite3_busy_timeout(writer->get(), 5000);
  // A file that is not a database fails here (SQLITE_NOTADB).
  if (absl::Status st = Exec(writer->get(), "PRAGMA journal_mode=WAL"); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat(context, ": ", st.message()));
  }
  if (absl::Status st = Exec(writer->get(), options.sync_commits ? "PRAGMA synchronous=FULL"
                                                                 : "PRAGMA synchronous=NORMAL");
      !st.ok()) {
    return st;
  }
  int version = 0;
  {
    absl::StatusOr<Statement> stmt = writer->Prepare("PRAGMA user_version");
    if (!stmt.ok()) return stmt.status();
    if (sqlite3_step(*stmt) == SQLITE_ROW) version = sqlite3_column_int(*stmt, 0);
    sqlite3_reset(*stmt);
  }
  if (version == 0) {
    std::string create = absl::StrCat("BEGIN IMMEDIATE;", kSchema,
                                      "PRAGMA user_version = ", kSchemaVersion, "; COMMIT;");
    if (absl::Status st = Exec(writer->get(), create); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat(context, ": creating schema: ", st.message()));
    }
  } else if (version != kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        context, ": schema version ", version, ", this build reads version ", kSchemaVersion));
  }

  absl::StatusOr<SqliteDb> rdb =
      OpenSqlite(options.path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX);
  if (!rdb.ok()) return rdb.status();
  auto reader = std::make_unique<Connection>(*std::move(rdb));
  sqlite3_busy_timeout(reader->get(), 5000);

  std::unique_ptr<SqliteStore> store(
      new SqliteStore(std::move(options), std::move(writer), std::move(reader)));
  absl::MutexLock lock(&store->write_mu_);
  if (absl::Status st = store->LoadCounters(*store->writer_, &store->counters_); !st.ok()) {
    return st;
  }
  store->applied_index_ = store->counters_.applied_index;
  store->revision_ = store->counters_.revision;
  return store;
}

absl::Status SqliteStore::ImportBackup(const std::string& backup_path,
                                       const std::string& store_path) {
  std::error_code ec;
  if (std::filesystem::exists(store_path, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(store_path, " already exists"));
  }
  absl::StatusOr<SqliteDb> source = OpenSqlite(backup_path, SQLITE_OPEN_READONLY);
  if (!source.ok()) return source.status();
  Connection source_conn(*std::move(source));
  Counters counters;
  if (absl::Status st = LoadCounters(source_conn, &counters); !st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(backup_path, " is not a zmesh directory store: ", st.message()));
  }
  absl::StatusOr<SqliteDb> target =
      OpenSqlite(store_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (!target.ok()) return target.status();
  sqlite3_backup* backup = sqlite3_backup_init(target->get(), "main", source_conn.get(), "main");
  if (backup == nullptr) {
    return SqliteError(target->get(), sqlite3_errcode(target->get()), "importing backup");
  }
  int rc = sqlite3_backup_step(backup, -1);
  sqlite3_backup_finish(backup);
  if (rc != SQLITE_DONE) return SqliteError(target->get(), rc, "importing backup");
  // The new Raft log starts at index 1: nothing of it is applied yet.
  if (absl::Status st = Exec(target->get(),
                             "PRAGMA journal_mode=WAL; "
                             "UPDATE state SET applied_index = 0 WHERE id = 1");
      !st.ok()) {
    return st;
  }
  return absl::OkStatus();
}

SqliteStore::SqliteStore(SqliteStoreOptions options, std::unique_ptr<Connection> writer,
                         std::unique_ptr<Connection> reader)
    : options_(std::move(options)), writer_(std::move(writer)), reader_(std::move(reader)) {}

SqliteStore::~SqliteStore() = default;

absl::Status SqliteStore::LoadCounters(Connection& conn, Counters* counters) {
  absl::StatusOr<Statement> stmt = conn.Prepare(
      "SELECT revision, compact_revision, applied_index, next_lease_id FROM state WHERE id = 1");
  if (!stmt.ok()) return stmt.status();
  int rc = sqlite3_step(*stmt);
  if (rc != SQLITE_ROW) {
    return rc == SQLITE_DONE ? absl::DataLossError("store has no state row")
                             : SqliteError(conn.get(), rc, "reading state");
  }
  counters->revision = sqlite3_column_int64(*stmt, 0);
  counters->compact_revision = sqlite3_column_int64(*stmt, 1);
  counters->applied_index = static_cast<uint64_t>(sqlite3_column_int64(*stmt, 2));
  counters->next_lease_id = sqlite3_column_int64(*stmt, 3);
  sqlite3_reset(*stmt);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<CommandResult>> SqliteStore::ApplyBatch(
    const std::vector<Entry>& entries) {
  absl::MutexLock lock(&write_mu_);
  Connection& conn = *writer_;
  const Counters before = counters_;
  std::vector<CommandResult> results(entries.size());
  auto fail = [&](absl::Status st) {
    (void)Exec(conn.get(), "ROLLBACK");
    counters_ = before;
    return st;
  };
  if (absl::Status st = Exec(conn.get(), "BEGIN IMMEDIATE"); !st.ok()) return st;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& entry = entries[i];
    if (entry.index <= counters_.applied_index) {
      results[i].status =
          absl::AlreadyExistsError(absl::StrCat("index ", entry.index, " already applied"));
      results[i].revision = counters_.revision;
      continue;
    }
    const std::string& request_id = entry.command->request_id();
    if (!request_id.empty()) {
      absl::StatusOr<std::optional<CommandResult>> earlier = FindRequest(conn, request_id);
      if (!earlier.ok()) return fail(earlier.status());
      if (earlier->has_value()) {  // a retry of a command already applied
        results[i] = **std::move(earlier);
        results[i].revision = counters_.revision;
        counters_.applied_index = entry.index;
        continue;
      }
    }
    if (absl::Status st = Exec(conn.get(), "SAVEPOINT command"); !st.ok()) return fail(st);
    Writer writer(conn, counters_, options_.history_revisions);
    if (absl::Status st = writer.Apply(*entry.command, &results[i]); !st.ok()) {
      return fail(absl::Status(st.code(),
                               absl::StrCat("applying index ", entry.index, ": ", st.message())));
    }
    if (!results[i].status.ok()) {
      // Rejected: undo anything written before the rejection was found.
      results[i].events.clear();
      if (absl::Status st = Exec(conn.get(), "ROLLBACK TO command"); !st.ok()) return fail(st);
    }
    if (absl::Status st = Exec(conn.get(), "RELEASE command"); !st.ok()) return fail(st);
    if (!request_id.empty()) {
      if (absl::Status st = RememberRequest(conn, request_id, entry.index, results[i]); !st.ok()) {
        return fail(st);
      }
    }
    counters_.applied_index = entry.index;
  }
  absl::StatusOr<Statement> stmt = conn.Prepare(
      "UPDATE state SET revision = ?, compact_revision = ?, applied_index = ?, "
      "next_lease_id = ? WHERE id = 1");
  if (!stmt.ok()) return fail(stmt.status());
  BindInt(*stmt, 1, counters_.revision);
  BindInt(*stmt, 2, counters_.compact_revision);
  BindInt(*stmt, 3, static_cast<int64_t>(counters_.applied_index));
  BindInt(*stmt, 4, counters_.next_lease_id);
  if (absl::Status st = Done(conn, *stmt, "updating state"); !st.ok()) return fail(st);
  if (absl::Status st = Exec(conn.get(), "COMMIT"); !st.ok()) return fail(st);
  applied_index_ = counters_.applied_index;
  revision_ = counters_.revision;
  return results;
}

absl::StatusOr<std::optional<CommandResult>> SqliteStore::FindRequest(Connection& conn,
                                                                      absl::string_view id) {
  absl::StatusOr<Statement> stmt = conn.Prepare("SELECT outcome FROM requests WHERE id = ?");
  if (!stmt.ok()) return stmt.status();
  BindText(*stmt, 1, id);
  int rc = sqlite3_step(*stmt);
  if (rc == SQLITE_DONE) return std::optional<CommandResult>();
  if (rc != SQLITE_ROW) return SqliteError(conn.get(), rc, "reading request");
  state::v1::CommandOutcome outcome;
  if (!outcome.ParseFromString(ColumnBlob(*stmt, 0))) {
    return absl::DataLossError(absl::StrCat("corrupt outcome of request ", id));
  }
  return std::optional<CommandResult>(FromOutcome(outcome));
}

absl::Status SqliteStore::RememberRequest(Connection& conn, absl::string_view id, uint64_t index,
                                          const CommandResult& result) {
  state::v1::CommandOutcome outcome = ToOutcome(result);
  outcome.clear_events();  // a retry returns the outcome; watchers already saw the events
  absl::StatusOr<Statement> insert =
      conn.Prepare("INSERT INTO requests (id, idx, outcome) VALUES (?, ?, ?)");
  if (!insert.ok()) return insert.status();
  BindText(*insert, 1, id);
  BindInt(*insert, 2, static_cast<int64_t>(index));
  BindBlob(*insert, 3, outcome.SerializeAsString());
  if (absl::Status st = Done(conn, *insert, "remembering request"); !st.ok()) return st;
  absl::StatusOr<Statement> trim = conn.Prepare("DELETE FROM requests WHERE idx <= ?");
  if (!trim.ok()) return trim.status();
  BindInt(*trim, 1, static_cast<int64_t>(index) - kRequestWindow);
  return Done(conn, *trim, "forgetting old requests");
}

uint64_t SqliteStore::applied_index() const { return applied_index_.load(); }
int64_t SqliteStore::revision() const { return revision_.load(); }

absl::StatusOr<dir::GetNodeResponse> SqliteStore::GetNode(absl::string_view name) {
  absl::MutexLock lock(&read_mu_);
  Connection& conn = *reader_;
  ReadTxn txn(conn);
  if (absl::Status st = txn.Begin(); !st.ok()) return st;
  dir::GetNodeResponse response;
  response.set_revision(txn.revision());
  static const std::string node_sql =
      absl::StrCat("SELECT ", kNodeColumns, " FROM nodes WHERE name = ?");
  absl::StatusOr<Statement> stmt = conn.Prepare(node_sql.c_str());
  if (!stmt.ok()) return stmt.status();
  BindText(*stmt, 1, name);
  int rc = sqlite3_step(*stmt);
  if (rc == SQLITE_DONE) {
    return absl::NotFoundError(absl::StrCat("node \"", name, "\" not found"));
  }
  if (rc != SQLITE_ROW) return SqliteError(conn.get(), rc, "reading node");
  *response.mutable_node() = NodeFromRow(*stmt, 0);
  sqlite3_reset(*stmt);
  static const std::string regs_sql = absl::StrCat(
      "SELECT ", kRegistrationColumns,
      " FROM registrations WHERE node = ? ORDER BY exchange, topic, server, kind, pool");
  absl::StatusOr<Statement> regs = conn.Prepare(regs_sql.c_str());
  if (!regs.ok()) return regs.status();
  BindText(*regs, 1, name);
  if (absl::Status st = ForEachRow(
          conn, *regs, "reading registrations",
          [&](sqlite3_stmt* s) { *response.add_registrations() = RegistrationFromRow(s, 0); });
      !st.ok()) {
    return st;
  }
  return response;
}

absl::StatusOr<dir::ListNodesResponse> SqliteStore::ListNodes() {
  absl::MutexLock lock(&read_mu_);
  Connection& conn = *reader_;
  ReadTxn txn(conn);
  if (absl::Status st = txn.Begin(); !st.ok()) return st;
  dir::ListNodesResponse response;
  response.set_revision(txn.revision());
  static const std::string sql = absl::StrCat("SELECT ", kNodeColumns, " FROM nodes ORDER BY name");
  absl::StatusOr<Statement> stmt = conn.Prepare(sql.c_str());
  if (!stmt.ok()) return stmt.status();
  if (absl::Status st =
          ForEachRow(conn, *stmt, "listing nodes",
                     [&](sqlite3_stmt* s) { *response.add_nodes() = NodeFromRow(s, 0); });
      !st.ok()) {
    return st;
  }
  return response;
}

absl::StatusOr<dir::LookupResponse> SqliteStore::Lookup(const dir::LookupRequest& request) {
  absl::MutexLock lock(&read_mu_);
  Connection& conn = *reader_;
  ReadTxn txn(conn);
  if (absl::Status st = txn.Begin(); !st.ok()) return st;
  dir::LookupResponse response;
  response.set_revision(txn.revision());
  // ?3/?4 are "no filter" when empty / 0.
  static const std::string sql = absl::StrCat(
      "SELECT r.exchange, r.topic, r.server, r.kind, r.pool, r.node, r.create_revision, "
      "r.mod_revision, n.name, n.host, n.call_port, n.fanout_port, n.notify_port, n.cast_port, "
      "n.draining, n.lease_id, n.create_revision, n.mod_revision "
      "FROM registrations r JOIN nodes n ON n.name = r.node "
      "WHERE r.exchange = ?1 AND r.topic = ?2 AND (?3 = '' OR r.server = ?3) "
      "AND (?4 = 0 OR r.kind = ?4) ORDER BY r.node, r.server, r.kind, r.pool");
  absl::StatusOr<Statement> stmt = conn.Prepare(sql.c_str());
  if (!stmt.ok()) return stmt.status();
  BindText(*stmt, 1, request.exchange());
  BindText(*stmt, 2, request.topic());
  BindText(*stmt, 3, request.server());
  BindInt(*stmt, 4, request.kind());
  if (absl::Status st = ForEachRow(conn, *stmt, "looking up",
                                   [&](sqlite3_stmt* s) {
                                     dir::Endpoint* endpoint = response.add_endpoints();
                                     *endpoint->mutable_registration() = RegistrationFromRow(s, 0);
                                     *endpoint->mutable_node() = NodeFromRow(s, 8);
                                   });
      !st.ok()) {
    return st;
  }
  return response;
}

absl::StatusOr<dir::ListTopicsResponse> SqliteStore::ListTopics(
    const dir::ListTopicsRequest& request) {
  // The page token is the hex of "<exchange>\0<topic>" of the last topic returned; names never
  // contain NUL.
  std::string after_exchange;
  std::string after_topic;
  bool has_token = !request.page_token().empty();
  if (has_token) {
    std::string raw = absl::HexStringToBytes(request.page_token());
    std::vector<std::string> parts = absl::StrSplit(raw, absl::MaxSplits('\0', 1));
    if (parts.size() != 2 || absl::BytesToHexString(raw) != request.page_token() ||
        parts[0].empty() || parts[1].empty()) {
      return absl::InvalidArgumentError("page_token is malformed");
    }
    after_exchange = parts[0];
    after_topic = parts[1];
  }
  const int64_t page_size = request.page_size();

  absl::MutexLock lock(&read_mu_);
  Connection& conn = *reader_;
  ReadTxn txn(conn);
  if (absl::Status st = txn.Begin(); !st.ok()) return st;
  dir::ListTopicsResponse response;
  response.set_revision(txn.revision());
  absl::StatusOr<Statement> stmt = conn.Prepare(
      "SELECT exchange, topic, SUM(kind = 1), SUM(kind = 2), COUNT(DISTINCT node) "
      "FROM registrations WHERE (?1 = '' OR exchange = ?1) "
      "AND (?2 = 0 OR (exchange, topic) > (?3, ?4)) "
      "GROUP BY exchange, topic ORDER BY exchange, topic LIMIT ?5");
  if (!stmt.ok()) return stmt.status();
  BindText(*stmt, 1, request.exchange());
  BindInt(*stmt, 2, has_token ? 1 : 0);
  BindText(*stmt, 3, after_exchange);
  BindText(*stmt, 4, after_topic);
  BindInt(*stmt, 5, page_size + 1);
  if (absl::Status st = ForEachRow(conn, *stmt, "listing topics",
                                   [&](sqlite3_stmt* s) {
                                     dir::TopicSummary* topic = response.add_topics();
                                     topic->set_exchange(ColumnText(s, 0));
                                     topic->set_topic(ColumnText(s, 1));
                                     topic->set_rpc_servers(sqlite3_column_int64(s, 2));
                                     topic->set_notify_listeners(sqlite3_column_int64(s, 3));
                                     topic->set_nodes(sqlite3_column_int64(s, 4));
                                   });
      !st.ok()) {
    return st;
  }
  if (response.topics_size() > page_size) {
    response.mutable_topics()->RemoveLast();
    const dir::TopicSummary& last = response.topics(response.topics_size() - 1);
    std::string raw = absl::StrCat(last.exchange(), std::string(1, '\0'), last.topic());
    response.set_next_page_token(absl::BytesToHexString(raw));
  }
  return response;
}

absl::StatusOr<dir::ListLeasesResponse> SqliteStore::ListLeases() {
  absl::MutexLock lock(&read_mu_);
  Connection& conn = *reader_;
  ReadTxn txn(conn);
  if (absl::Status st = txn.Begin(); !st.ok()) return st;
  dir::ListLeasesResponse response;
  response.set_revision(txn.revision());
  absl::StatusOr<Statement> stmt = conn.Prepare(
      "SELECT l.id, l.ttl_ms, l.grant_revision, n.name FROM leases l "
      "LEFT JOIN nodes n ON n.lease_id = l.id ORDER BY l.id, n.name");
  if (!stmt.ok()) return stmt.status();
  if (absl::Status st = ForEachRow(
          conn, *stmt, "listing leases",
          [&](sqlite3_stmt* s) {
            int64_t id = sqlite3_column_int64(s, 0);
            if (response.leases_size() == 0 ||
                response.leases(response.leases_size() - 1).id() != id) {
              dir::Lease* lease = response.add_leases();
              lease->set_id(id);
              lease->set_ttl_ms(sqlite3_column_int64(s, 1));
              lease->set_grant_revision(sqlite3_column_int64(s, 2));
              lease->set_remaining_ms(-1);
            }
            if (sqlite3_column_type(s, 3) != SQLITE_NULL) {
              response.mutable_leases(response.leases_size() - 1)->add_nodes(ColumnText(s, 3));
            }
          });
      !st.ok()) {
    return st;
  }
  return response;
}

absl::StatusOr<dir::Lease> SqliteStore::GetLease(int64_t id) {
  absl::MutexLock lock(&read_mu_);
  Connection& conn = *reader_;
  ReadTxn txn(conn);
  if (absl::Status st = txn.Begin(); !st.ok()) return st;
  absl::StatusOr<Statement> stmt =
      conn.Prepare("SELECT ttl_ms, grant_revision FROM leases WHERE id = ?");
  if (!stmt.ok()) return stmt.status();
  BindInt(*stmt, 1, id);
  int rc = sqlite3_step(*stmt);
  if (rc == SQLITE_DONE) return absl::NotFoundError(absl::StrCat("lease ", id, " not found"));
  if (rc != SQLITE_ROW) return SqliteError(conn.get(), rc, "reading lease");
  dir::Lease lease;
  lease.set_id(id);
  lease.set_ttl_ms(sqlite3_column_int64(*stmt, 0));
  lease.set_grant_revision(sqlite3_column_int64(*stmt, 1));
  lease.set_remaining_ms(-1);
  sqlite3_reset(*stmt);
  absl::StatusOr<Statement> nodes =
      conn.Prepare("SELECT name FROM nodes WHERE lease_id = ? ORDER BY name");
  if (!nodes.ok()) return nodes.status();
  BindInt(*nodes, 1, id);
  if (absl::Status st = ForEachRow(conn, *nodes, "reading lease nodes",
                                   [&](sqlite3_stmt* s) { lease.add_nodes(ColumnText(s, 0)); });
      !st.ok()) {
    return st;
  }
  return lease;
}

absl::StatusOr<ChangesSince> SqliteStore::ReadChanges(const WatchFilter& filter,
                                                      int64_t start_revision, bool want_snapshot) {
  absl::MutexLock lock(&read_mu_);
  Connection& conn = *reader_;
  ReadTxn txn(conn);
  if (absl::Status st = txn.Begin(); !st.ok()) return st;
  ChangesSince changes;
  changes.revision = txn.revision();
  changes.compact_revision = txn.compact_revision();
  if (start_revision == 0 && !want_snapshot) return changes;
  // A start beyond the next revision is a revision this directory has not reached: the
  // watcher's view came from a directory whose revisions ran ahead of this one (a restore from
  // a backup rewinds them). Its view cannot be patched with history: it gets a snapshot.
  if (!want_snapshot && start_revision > changes.compact_revision &&
      start_revision <= changes.revision + 1) {
    absl::StatusOr<Statement> stmt =
        conn.Prepare("SELECT event FROM events WHERE revision >= ? ORDER BY revision, seq");
    if (!stmt.ok()) return stmt.status();
    BindInt(*stmt, 1, start_revision);
    absl::Status parse_error;
    absl::Status st = ForEachRow(conn, *stmt, "reading history", [&](sqlite3_stmt* s) {
      dir::Event event;
      if (!event.ParseFromString(ColumnBlob(s, 0))) {
        parse_error = absl::DataLossError("corrupt event in history");
        return;
      }
      if (filter.Matches(event)) changes.events.push_back(std::move(event));
    });
    if (!st.ok()) return st;
    if (!parse_error.ok()) return parse_error;
    return changes;
  }
  changes.snapshot = true;
  if (filter.include_nodes) {
    static const std::string sql =
        absl::StrCat("SELECT ", kNodeColumns, " FROM nodes ORDER BY name");
    absl::StatusOr<Statement> stmt = conn.Prepare(sql.c_str());
    if (!stmt.ok()) return stmt.status();
    if (absl::Status st = ForEachRow(conn, *stmt, "reading nodes",
                                     [&](sqlite3_stmt* s) {
                                       dir::Event event;
                                       event.set_type(dir::Event::TYPE_PUT);
                                       *event.mutable_node() = NodeFromRow(s, 0);
                                       event.set_revision(event.node().mod_revision());
                                       changes.events.push_back(std::move(event));
                                     });
        !st.ok()) {
      return st;
    }
  }
  static const std::string sql = absl::StrCat(
      "SELECT ", kRegistrationColumns,
      " FROM registrations WHERE (?1 = '' OR exchange = ?1) "
      "AND substr(topic, 1, length(?2)) = ?2 ORDER BY exchange, topic, server, kind, pool, node");
  absl::StatusOr<Statement> stmt = conn.Prepare(sql.c_str());
  if (!stmt.ok()) return stmt.status();
  BindText(*stmt, 1, filter.exchange);
  BindText(*stmt, 2, filter.topic_prefix);
  if (absl::Status st = ForEachRow(conn, *stmt, "reading registrations",
                                   [&](sqlite3_stmt* s) {
                                     dir::Event event;
                                     event.set_type(dir::Event::TYPE_PUT);
                                     *event.mutable_registration() = RegistrationFromRow(s, 0);
                                     event.set_revision(event.registration().mod_revision());
                                     changes.events.push_back(std::move(event));
                                   });
      !st.ok()) {
    return st;
  }
  return changes;
}

absl::StatusOr<std::vector<state::v1::SetMember>> SqliteStore::Members() {
  absl::MutexLock lock(&read_mu_);
  Connection& conn = *reader_;
  ReadTxn txn(conn);
  if (absl::Status st = txn.Begin(); !st.ok()) return st;
  absl::StatusOr<Statement> stmt =
      conn.Prepare("SELECT id, raft_address, grpc_address FROM members ORDER BY id");
  if (!stmt.ok()) return stmt.status();
  std::vector<state::v1::SetMember> members;
  if (absl::Status st = ForEachRow(conn, *stmt, "listing members",
                                   [&](sqlite3_stmt* s) {
                                     state::v1::SetMember& m = members.emplace_back();
                                     m.set_id(static_cast<uint64_t>(sqlite3_column_int64(s, 0)));
                                     m.set_raft_address(ColumnText(s, 1));
                                     m.set_grpc_address(ColumnText(s, 2));
                                   });
      !st.ok()) {
    return st;
  }
  return members;
}

absl::StatusOr<StoreStats> SqliteStore::Stats() {
  absl::MutexLock lock(&read_mu_);
  Connection& conn = *reader_;
  ReadTxn txn(conn);
  if (absl::Status st = txn.Begin(); !st.ok()) return st;
  StoreStats stats;
  stats.revision = txn.revision();
  stats.compact_revision = txn.compact_revision();
  absl::StatusOr<Statement> stmt = conn.Prepare(
      "SELECT (SELECT applied_index FROM state WHERE id = 1), (SELECT COUNT(*) FROM nodes), "
      "(SELECT COUNT(*) FROM registrations), (SELECT COUNT(*) FROM leases)");
  if (!stmt.ok()) return stmt.status();
  int rc = sqlite3_step(*stmt);
  if (rc != SQLITE_ROW) return SqliteError(conn.get(), rc, "reading stats");
  stats.applied_index = static_cast<uint64_t>(sqlite3_column_int64(*stmt, 0));
  stats.nodes = sqlite3_column_int64(*stmt, 1);
  stats.registrations = sqlite3_column_int64(*stmt, 2);
  stats.leases = sqlite3_column_int64(*stmt, 3);
  sqlite3_reset(*stmt);
  std::error_code ec;
  for (const char* suffix : {"", "-wal"}) {
    auto size = std::filesystem::file_size(options_.path + suffix, ec);
    if (!ec) stats.db_size_bytes += static_cast<int64_t>(size);
  }
  return stats;
}

absl::StatusOr<std::string> SqliteStore::Snapshot() {
  absl::MutexLock lock(&write_mu_);
  absl::StatusOr<SqliteDb> mem = OpenSqlite(":memory:", SQLITE_OPEN_READWRITE);
  if (!mem.ok()) return mem.status();
  sqlite3_backup* backup = sqlite3_backup_init(mem->get(), "main", writer_->get(), "main");
  if (backup == nullptr) return SqliteError(mem->get(), sqlite3_errcode(mem->get()), "snapshot");
  int rc = sqlite3_backup_step(backup, -1);
  sqlite3_backup_finish(backup);
  if (rc != SQLITE_DONE) return SqliteError(mem->get(), rc, "copying state for snapshot");
  sqlite3_int64 size = 0;
  unsigned char* bytes = sqlite3_serialize(mem->get(), "main", &size, 0);
  if (bytes == nullptr) return absl::ResourceExhaustedError("serializing snapshot: no memory");
  std::string image(reinterpret_cast<const char*>(bytes), static_cast<size_t>(size));
  sqlite3_free(bytes);
  MarkRollbackJournal(image);
  return image;
}

absl::Status SqliteStore::Restore(absl::string_view image) {
  absl::MutexLock lock(&write_mu_);
  absl::StatusOr<SqliteDb> mem = OpenSqlite(":memory:", SQLITE_OPEN_READWRITE);
  if (!mem.ok()) return mem.status();
  auto* buffer = static_cast<unsigned char*>(sqlite3_malloc64(image.size()));
  if (buffer == nullptr && !image.empty()) {
    return absl::ResourceExhaustedError("restoring snapshot: no memory");
  }
  std::memcpy(buffer, image.data(), image.size());
  if (image.size() >= 20) {  // an image taken from a WAL file by other means
    buffer[18] = 1;
    buffer[19] = 1;
  }
  int rc = sqlite3_deserialize(mem->get(), "main", buffer, static_cast<sqlite3_int64>(image.size()),
                               static_cast<sqlite3_int64>(image.size()),
                               SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE);
  if (rc != SQLITE_OK) return SqliteError(mem->get(), rc, "loading snapshot image");
  // Check the image is ours before replacing anything.
  Connection image_conn(*std::move(mem));
  Counters restored;
  if (absl::Status st = LoadCounters(image_conn, &restored); !st.ok()) {
    return absl::DataLossError(absl::StrCat("snapshot image is not a zmesh store: ", st.message()));
  }
  writer_->ClearCache();
  sqlite3_backup* backup = sqlite3_backup_init(writer_->get(), "main", image_conn.get(), "main");
  if (backup == nullptr) {
    return SqliteError(writer_->get(), sqlite3_errcode(writer_->get()), "restoring snapshot");
  }
  rc = sqlite3_backup_step(backup, -1);
  sqlite3_backup_finish(backup);
  if (rc != SQLITE_DONE) return SqliteError(writer_->get(), rc, "restoring snapshot");
  {
    absl::MutexLock read_lock(&read_mu_);
    reader_->ClearCache();
  }
  if (absl::Status st = LoadCounters(*writer_, &counters_); !st.ok()) return st;
  applied_index_ = counters_.applied_index;
  revision_ = counters_.revision;
  return absl::OkStatus();
}

}  // namespace zmesh::store
