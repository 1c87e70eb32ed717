// LocalTable: which local instances serve which targets, as the pipelines read it. The control
// thread builds a new immutable table whenever announcements change and publishes it through a
// LocalTableHolder; each pipeline picks up the newest one without waiting on the control thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace zmesh::proxy {

// Lookup key of a target: the fields joined with NUL (names never contain one). `out` is reused
// by the caller so that the hot path does not allocate.
void TargetKey(absl::string_view exchange, absl::string_view topic, absl::string_view server,
               std::string* out);

// Immutable once built; safe to read from any thread.
class LocalTable {
 public:
  using Instances = std::vector<std::string>;  // instance ids, sorted, no duplicates

  // Builders (before publishing only).
  void AddRpcServer(absl::string_view exchange, absl::string_view topic, absl::string_view server,
                    const std::string& instance);
  void AddListener(absl::string_view exchange, absl::string_view topic, absl::string_view name,
                   const std::string& instance);

  // Instances for a CALL/CAST key (exchange, topic, server), a FANOUT key (exchange, topic, "")
  // and a NOTIFY key (exchange, "<topic>.<priority>", listener name); nullptr when none.
  const Instances* RpcServers(absl::string_view key) const { return Find(rpc_, key); }
  const Instances* FanoutMembers(absl::string_view key) const { return Find(fanout_, key); }
  const Instances* Listeners(absl::string_view key) const { return Find(notify_, key); }

  size_t rpc_target_count() const { return rpc_.size(); }

 private:
  using Map = absl::flat_hash_map<std::string, Instances>;
  static const Instances* Find(const Map& map, absl::string_view key);
  static void Insert(Map& map, std::string key, const std::string& instance);

  Map rpc_;
  Map fanout_;
  Map notify_;
};

// Round-robin choice among the instances of one target, per pipeline (not thread-safe: each
// pipeline has its own).
class RoundRobin {
 public:
  // Index of the next instance to try for `key` among `count` instances (count > 0).
  size_t Next(absl::string_view key, size_t count);

 private:
  absl::flat_hash_map<std::string, size_t> next_;
};

// Thread-safe. Holds the current table; readers keep a reference and check cheaply (one atomic
// load) whether a newer one was published.
class LocalTableHolder {
 public:
  LocalTableHolder();

  void Publish(std::shared_ptr<const LocalTable> table) ABSL_LOCKS_EXCLUDED(mu_);

  // Refreshes *table when a newer one was published since *generation.
  void Refresh(std::shared_ptr<const LocalTable>* table, uint64_t* generation) const
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const LocalTable> table_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> generation_{1};  // bumped after each Publish
};

}  // namespace zmesh::proxy
