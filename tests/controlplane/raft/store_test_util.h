// Helpers shared by the Raft tests: command builders, opening a SqliteStore in a test directory,
// and a dump of a store's whole observable state for comparing replicas.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "controlplane/store/sqlite_store.h"
#include "gtest/gtest.h"
#include "zmesh/state/v1/command.pb.h"

namespace zmesh::raft::test {

namespace dir = ::zmesh::directory::v1;

inline state::v1::Command Grant(int64_t ttl_ms, const std::string& request_id = "") {
  state::v1::Command c;
  c.mutable_grant_lease()->set_ttl_ms(ttl_ms);
  c.set_request_id(request_id);
  return c;
}

inline state::v1::Command PutNode(const std::string& name, int64_t lease_id = 0,
                                  const std::string& request_id = "") {
  state::v1::Command c;
  dir::Node* node = c.mutable_put_node()->mutable_node();
  node->set_name(name);
  node->set_host("10.0.0.1");
  node->set_call_port(9501);
  node->set_fanout_port(9502);
  node->set_notify_port(9503);
  node->set_cast_port(9504);
  c.mutable_put_node()->set_lease_id(lease_id);
  c.set_request_id(request_id);
  return c;
}

inline state::v1::Command Drain(const std::string& name, bool draining) {
  state::v1::Command c;
  c.mutable_set_draining()->set_name(name);
  c.mutable_set_draining()->set_draining(draining);
  return c;
}

inline dir::Registration Reg(const std::string& topic, const std::string& server,
                             const std::string& node) {
  dir::Registration r;
  r.set_exchange("openstack");
  r.set_topic(topic);
  r.set_server(server);
  r.set_kind(dir::KIND_RPC_SERVER);
  r.set_node(node);
  return r;
}

inline state::v1::Command Register(const dir::Registration& reg) {
  state::v1::Command c;
  *c.mutable_put_registration()->mutable_registration() = reg;
  return c;
}

inline state::v1::Command SetMember(uint64_t id, const std::string& raft_address) {
  state::v1::Command c;
  c.mutable_set_member()->set_id(id);
  c.mutable_set_member()->set_raft_address(raft_address);
  c.mutable_set_member()->set_grpc_address(absl::StrCat("grpc-", id));
  return c;
}

// Opens (creates) a SqliteStore at `path`; nullptr and a test failure when it cannot.
inline std::unique_ptr<store::SqliteStore> OpenStore(const std::string& path) {
  store::SqliteStoreOptions options;
  options.path = path;
  options.history_revisions = 1000;
  options.sync_commits = false;  // tests do not need fsync
  absl::StatusOr<std::unique_ptr<store::SqliteStore>> opened = store::SqliteStore::Open(options);
  EXPECT_TRUE(opened.ok()) << opened.status();
  return opened.ok() ? *std::move(opened) : nullptr;
}

// Everything a client can observe of a store: nodes, leases, registrations (as a full watch
// snapshot), the retained change history, members, revision, compact revision and applied index.
// Two replicas that applied the same log prefix dump identical strings.
inline std::string Dump(store::Store& store) {
  std::string dump;
  absl::StatusOr<dir::ListNodesResponse> nodes = store.ListNodes();
  absl::StatusOr<dir::ListLeasesResponse> leases = store.ListLeases();
  absl::StatusOr<std::vector<state::v1::SetMember>> members = store.Members();
  absl::StatusOr<store::StoreStats> stats = store.Stats();
  if (!nodes.ok() || !leases.ok() || !members.ok() || !stats.ok()) {
    ADD_FAILURE() << "reading the store failed";
    return "<unreadable>";
  }
  absl::StrAppend(&dump, "nodes:\n", nodes->DebugString(), "leases:\n", leases->DebugString());
  const store::WatchFilter everything{"", "", true};
  absl::StatusOr<store::ChangesSince> state = store.ReadChanges(everything, 0, true);
  absl::StatusOr<store::ChangesSince> history =
      store.ReadChanges(everything, stats->compact_revision + 1, false);
  if (!state.ok() || !history.ok()) {
    ADD_FAILURE() << "reading changes failed";
    return "<unreadable>";
  }
  absl::StrAppend(&dump, "state:\n");
  for (const dir::Event& e : state->events) absl::StrAppend(&dump, e.DebugString());
  absl::StrAppend(&dump, "history:\n");
  for (const dir::Event& e : history->events) absl::StrAppend(&dump, e.DebugString());
  absl::StrAppend(&dump, "members:\n");
  for (const state::v1::SetMember& m : *members) absl::StrAppend(&dump, m.DebugString());
  absl::StrAppend(&dump, "revision ", stats->revision, " compact ", stats->compact_revision,
                  " applied ", stats->applied_index, " nodes ", stats->nodes, " registrations ",
                  stats->registrations, " leases ", stats->leases, "\n");
  return dump;
}

}  // namespace zmesh::raft::test
