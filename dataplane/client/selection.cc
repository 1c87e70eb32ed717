#include "dataplane/client/selection.h"

#include <algorithm>
#include <tuple>

namespace zmesh::internal {

namespace dv1 = ::zmesh::directory::v1;

EndpointSet EndpointSet::FromLookup(const ::zmesh::wire::v1::LookupResult& result) {
  EndpointSet set;
  for (const dv1::Endpoint& ep : result.endpoints()) {
    const dv1::Node& n = ep.node();
    const dv1::Registration& r = ep.registration();
    const std::string& node_name = n.name().empty() ? r.node() : n.name();
    NodeAddress& addr = set.nodes_[node_name];
    addr.name = node_name;
    addr.host = n.host();
    addr.call_port = n.call_port();
    addr.fanout_port = n.fanout_port();
    addr.notify_port = n.notify_port();
    addr.cast_port = n.cast_port();
    addr.draining = n.draining();
    Member m{node_name, r.server(), r.pool(), n.draining()};
    if (r.kind() == dv1::KIND_RPC_SERVER) {
      set.rpc_servers_.push_back(std::move(m));
    } else if (r.kind() == dv1::KIND_NOTIFY_LISTENER) {
      set.pools_[r.pool()].push_back(std::move(m));
    }
  }
  auto by_key = [](const Member& a, const Member& b) {
    return std::tie(a.node, a.server) < std::tie(b.node, b.server);
  };
  auto same = [](const Member& a, const Member& b) { return a == b; };
  std::sort(set.rpc_servers_.begin(), set.rpc_servers_.end(), by_key);
  set.rpc_servers_.erase(std::unique(set.rpc_servers_.begin(), set.rpc_servers_.end(), same),
                         set.rpc_servers_.end());
  for (auto& [pool, members] : set.pools_) {
    std::sort(members.begin(), members.end(), by_key);
    members.erase(std::unique(members.begin(), members.end(), same), members.end());
  }
  return set;
}

const NodeAddress* EndpointSet::node(const std::string& name) const {
  auto it = nodes_.find(name);
  return it == nodes_.end() ? nullptr : &it->second;
}

bool EndpointSet::HasRpcServer(const std::string& node, const std::string& server) const {
  for (const Member& m : rpc_servers_) {
    if (m.node == node && m.server == server) return true;
  }
  return false;
}

bool EndpointSet::HasListener(const std::string& node, const std::string& name) const {
  for (const auto& [pool, members] : pools_) {
    for (const Member& m : members) {
      if (m.node == node && m.server == name) return true;
    }
  }
  return false;
}

const Member* RoundRobin::NextAfter(const std::vector<const Member*>& candidates,
                                    const MemberKey* last) {
  if (candidates.empty()) return nullptr;
  if (last != nullptr) {
    for (const Member* m : candidates) {
      if (std::tie(m->node, m->server) > std::tie(last->first, last->second)) return m;
    }
  }
  return candidates.front();
}

const Member* RoundRobin::PickGroup(const EndpointSet& set, const std::set<MemberKey>& excluded) {
  std::vector<const Member*> candidates;
  for (const Member& m : set.rpc_servers()) {
    if (m.draining || excluded.count({m.node, m.server}) != 0) continue;
    candidates.push_back(&m);
  }
  const Member* chosen = NextAfter(candidates, has_last_group_ ? &last_group_ : nullptr);
  if (chosen != nullptr) {
    has_last_group_ = true;
    last_group_ = {chosen->node, chosen->server};
  }
  return chosen;
}

const Member* RoundRobin::PickServer(const EndpointSet& set, const std::string& server,
                                     const std::set<MemberKey>& excluded) {
  std::vector<const Member*> candidates;
  for (const Member& m : set.rpc_servers()) {
    if (m.server != server || excluded.count({m.node, m.server}) != 0) continue;
    candidates.push_back(&m);
  }
  if (candidates.size() == 1) return candidates.front();
  auto it = last_node_of_server_.find(server);
  MemberKey last;
  if (it != last_node_of_server_.end()) last = {it->second, server};
  const Member* chosen =
      NextAfter(candidates, it != last_node_of_server_.end() ? &last : nullptr);
  if (chosen != nullptr) last_node_of_server_[server] = chosen->node;
  return chosen;
}

std::vector<std::string> RoundRobin::FanoutNodes(const EndpointSet& set) {
  std::vector<std::string> nodes;
  for (const Member& m : set.rpc_servers()) {
    if (nodes.empty() || nodes.back() != m.node) nodes.push_back(m.node);
  }
  return nodes;
}

const Member* RoundRobin::PickInPool(const EndpointSet& set, const std::string& pool,
                                     const std::set<MemberKey>& excluded) {
  auto pit = set.pools().find(pool);
  if (pit == set.pools().end()) return nullptr;
  std::vector<const Member*> live;
  std::vector<const Member*> draining;
  for (const Member& m : pit->second) {
    if (excluded.count({m.node, m.server}) != 0) continue;
    (m.draining ? draining : live).push_back(&m);
  }
  const std::vector<const Member*>& candidates = live.empty() ? draining : live;
  auto it = last_of_pool_.find(pool);
  const Member* chosen =
      NextAfter(candidates, it != last_of_pool_.end() ? &it->second : nullptr);
  if (chosen != nullptr) last_of_pool_[pool] = {chosen->node, chosen->server};
  return chosen;
}

}  // namespace zmesh::internal
