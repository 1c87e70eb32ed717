#include "dataplane/proxy/local_table.h"

#include <algorithm>
#include <utility>

namespace zmesh::proxy {

void TargetKey(absl::string_view exchange, absl::string_view topic, absl::string_view server,
               std::string* out) {
  out->clear();
  out->append(exchange.data(), exchange.size());
  out->push_back('\0');
  out->append(topic.data(), topic.size());
  out->push_back('\0');
  out->append(server.data(), server.size());
}

void LocalTable::AddRpcServer(absl::string_view exchange, absl::string_view topic,
                              absl::string_view server, const std::string& instance) {
  std::string key;
  TargetKey(exchange, topic, server, &key);
  Insert(rpc_, std::move(key), instance);
  TargetKey(exchange, topic, "", &key);
  Insert(fanout_, std::move(key), instance);
}

void LocalTable::AddListener(absl::string_view exchange, absl::string_view topic,
                             absl::string_view name, const std::string& instance) {
  std::string key;
  TargetKey(exchange, topic, name, &key);
  Insert(notify_, std::move(key), instance);
}

const LocalTable::Instances* LocalTable::Find(const Map& map, absl::string_view key) {
  auto it = map.find(key);
  if (it == map.end() || it->second.empty()) return nullptr;
  return &it->second;
}

void LocalTable::Insert(Map& map, std::string key, const std::string& instance) {
  Instances& instances = map[std::move(key)];
  auto pos = std::lower_bound(instances.begin(), instances.end(), instance);
  if (pos == instances.end() || *pos != instance) instances.insert(pos, instance);
}

size_t RoundRobin::Next(absl::string_view key, size_t count) {
  auto it = next_.find(key);
  if (it == next_.end()) it = next_.emplace(std::string(key), 0).first;
  const size_t index = it->second % count;
  it->second = index + 1;
  return index;
}

LocalTableHolder::LocalTableHolder() : table_(std::make_shared<const LocalTable>()) {}

void LocalTableHolder::Publish(std::shared_ptr<const LocalTable> table) {
  absl::MutexLock lock(&mu_);
  table_ = std::move(table);
  generation_.fetch_add(1, std::memory_order_release);
}

void LocalTableHolder::Refresh(std::shared_ptr<const LocalTable>* table,
                               uint64_t* generation) const {
  const uint64_t current = generation_.load(std::memory_order_acquire);
  if (current == *generation && *table != nullptr) return;
  absl::MutexLock lock(&mu_);
  *table = table_;
  *generation = generation_.load(std::memory_order_acquire);
}

}  // namespace zmesh::proxy
