#include "dataplane/proxy/mirror.h"

#include <algorithm>

namespace zmesh::proxy {

namespace dv1 = ::zmesh::directory::v1;

std::vector<TopicKey> Mirror::Apply(const dv1::WatchResponse& response, bool snapshot_begins) {
  absl::MutexLock lock(&mu_);
  std::set<TopicKey> changed;
  if (snapshot_begins || (response.snapshot() && !in_snapshot_)) {
    pending_ = State();
    in_snapshot_ = true;
  }
  if (in_snapshot_) {
    for (const dv1::Event& event : response.events()) ApplyEvent(event, pending_, nullptr);
    if (!response.snapshot_end()) return {};
    in_snapshot_ = false;
    // What changed between the old view and the snapshot: compare the answers of every topic
    // either side knows.
    std::set<TopicKey> keys;
    for (const auto& [key, regs] : state_.topics) keys.insert(key);
    for (const auto& [key, regs] : pending_.topics) keys.insert(key);
    for (const TopicKey& key : keys) {
      wire::v1::LookupResult before;
      wire::v1::LookupResult after;
      Answer(state_, key, &before);
      Answer(pending_, key, &after);
      if (before.SerializeAsString() != after.SerializeAsString()) changed.insert(key);
    }
    state_ = std::move(pending_);
    pending_ = State();
  } else {
    for (const dv1::Event& event : response.events()) ApplyEvent(event, state_, &changed);
  }
  revision_ = std::max(revision_, response.revision());
  synced_ = true;
  return std::vector<TopicKey>(changed.begin(), changed.end());
}

void Mirror::ApplyEvent(const dv1::Event& event, State& state, std::set<TopicKey>* changed) {
  const bool put = event.type() == dv1::Event::TYPE_PUT;
  if (event.has_node()) {
    const dv1::Node& node = event.node();
    if (put) {
      state.nodes[node.name()] = node;
    } else {
      state.nodes.erase(node.name());
    }
    // Every answer naming the node changes; a deleted node takes its registrations along.
    for (auto topic = state.topics.begin(); topic != state.topics.end();) {
      bool touched = false;
      for (auto reg = topic->second.begin(); reg != topic->second.end();) {
        if (reg->second.node() != node.name()) {
          ++reg;
          continue;
        }
        touched = true;
        reg = put ? std::next(reg) : topic->second.erase(reg);
      }
      if (touched && changed != nullptr) changed->insert(topic->first);
      topic = topic->second.empty() ? state.topics.erase(topic) : std::next(topic);
    }
    return;
  }
  if (!event.has_registration()) return;
  const dv1::Registration& reg = event.registration();
  TopicKey key(reg.exchange(), reg.topic());
  RegId id(reg.node(), reg.server(), static_cast<int>(reg.kind()), reg.pool());
  if (put) {
    state.topics[key][id] = reg;
  } else {
    auto topic = state.topics.find(key);
    if (topic == state.topics.end()) return;
    topic->second.erase(id);
    if (topic->second.empty()) state.topics.erase(topic);
  }
  if (changed != nullptr) changed->insert(std::move(key));
}

void Mirror::Answer(const State& state, const TopicKey& key, wire::v1::LookupResult* result) {
  result->set_exchange(key.first);
  result->set_topic(key.second);
  auto topic = state.topics.find(key);
  if (topic == state.topics.end()) return;
  for (const auto& [id, reg] : topic->second) {
    auto node = state.nodes.find(reg.node());
    if (node == state.nodes.end()) continue;  // not served until its node is known
    dv1::Endpoint* endpoint = result->add_endpoints();
    *endpoint->mutable_registration() = reg;
    *endpoint->mutable_node() = node->second;
  }
}

wire::v1::LookupResult Mirror::Lookup(const std::string& exchange, const std::string& topic) const {
  absl::MutexLock lock(&mu_);
  wire::v1::LookupResult result;
  Answer(state_, TopicKey(exchange, topic), &result);
  result.set_revision(revision_);
  result.set_from_cache(true);
  (result.endpoints_size() > 0 ? hits_ : misses_).fetch_add(1, std::memory_order_relaxed);
  return result;
}

std::vector<dv1::Registration> Mirror::RegistrationsOf(const std::string& node) const {
  absl::MutexLock lock(&mu_);
  std::vector<dv1::Registration> out;
  for (const auto& [key, regs] : state_.topics) {
    for (const auto& [id, reg] : regs) {
      if (reg.node() == node) out.push_back(reg);
    }
  }
  return out;
}

int64_t Mirror::revision() const {
  absl::MutexLock lock(&mu_);
  return revision_;
}

bool Mirror::synced() const {
  absl::MutexLock lock(&mu_);
  return synced_;
}

Mirror::LookupCounts Mirror::lookups() const {
  return LookupCounts{hits_.load(std::memory_order_relaxed),
                      misses_.load(std::memory_order_relaxed)};
}

}  // namespace zmesh::proxy
