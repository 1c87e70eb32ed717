// Selection: which registration of an (exchange, topic) receives a message, as DESIGN.md
// ("Vocabulary") and docs/wire-protocol.md define it. Pure logic over a lookup answer, no
// sockets, so the rules are unit-tested on their own.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "zmesh/wire/v1/local.pb.h"

namespace zmesh::internal {

// Where a node's proxy listens (from the directory's Node record).
struct NodeAddress {
  std::string name;
  std::string host;
  uint32_t call_port = 0;
  uint32_t fanout_port = 0;
  uint32_t notify_port = 0;
  uint32_t cast_port = 0;
  bool draining = false;
};

// One registration of the pair, on one node.
struct Member {
  std::string node;
  std::string server;  // RPC server name, or a listener's registration name
  std::string pool;    // listeners only
  bool draining = false;
  bool operator==(const Member& o) const { return node == o.node && server == o.server; }
};

// An immutable view of one lookup answer: RPC servers ordered by (node, server), listeners
// grouped by pool and ordered by (node, server), and the nodes' addresses.
class EndpointSet {
 public:
  EndpointSet() = default;
  static EndpointSet FromLookup(const ::zmesh::wire::v1::LookupResult& result);

  const std::vector<Member>& rpc_servers() const { return rpc_servers_; }
  // pool -> listeners of the pool.
  const std::map<std::string, std::vector<Member>>& pools() const { return pools_; }
  // nullptr when the node is not in the answer.
  const NodeAddress* node(const std::string& name) const;
  bool HasRpcServer(const std::string& node, const std::string& server) const;
  bool HasListener(const std::string& node, const std::string& name) const;
  bool empty() const { return rpc_servers_.empty() && pools_.empty(); }

 private:
  std::vector<Member> rpc_servers_;
  std::map<std::string, std::vector<Member>> pools_;
  std::map<std::string, NodeAddress> nodes_;
};

// Key of a member for exclusion sets: (node, server).
using MemberKey = std::pair<std::string, std::string>;

// Per-Transport round-robin state of one (exchange, topic). Picks "the next member after the one
// chosen last" in (node, server) order, so the rotation stays strict while the membership is
// stable and stays fair when members come and go. Not thread-safe (the I/O thread owns it).
class RoundRobin {
 public:
  // Group CALL/CAST: next RPC server on a non-draining node, skipping `excluded` members.
  // nullptr when there is none.
  const Member* PickGroup(const EndpointSet& set, const std::set<MemberKey>& excluded = {});
  // CALL/CAST to a server name: its registrations on any node (draining included), in turn.
  const Member* PickServer(const EndpointSet& set, const std::string& server,
                           const std::set<MemberKey>& excluded = {});
  // FANOUT: each distinct node with an RPC server of the pair (draining included).
  static std::vector<std::string> FanoutNodes(const EndpointSet& set);
  // NOTIFY: one listener of `pool`, in turn, skipping draining nodes unless all of the pool's
  // candidates are draining, and skipping `excluded`. nullptr when none is left.
  const Member* PickInPool(const EndpointSet& set, const std::string& pool,
                           const std::set<MemberKey>& excluded = {});

 private:
  static const Member* NextAfter(const std::vector<const Member*>& candidates,
                                 const MemberKey* last);

  bool has_last_group_ = false;
  MemberKey last_group_;
  std::map<std::string, std::string> last_node_of_server_;  // server -> node chosen last
  std::map<std::string, MemberKey> last_of_pool_;            // pool -> listener chosen last
};

}  // namespace zmesh::internal
