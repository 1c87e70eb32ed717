// Mirror: the proxy's copy of the directory (nodes and registrations at a revision), fed by a
// watch of the whole directory. It answers lookups from local instances and says which
// (exchange, topic) answers a change touched, so the proxy can push updates to subscribers.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "zmesh/directory/v1/directory.pb.h"
#include "zmesh/wire/v1/local.pb.h"

namespace zmesh::proxy {

// (exchange, topic)
using TopicKey = std::pair<std::string, std::string>;

// Thread-safe: the watcher's thread applies responses while the control thread reads.
class Mirror {
 public:
  // Applies one watch response (see client::WatcherOptions::on_response). A snapshot replaces
  // the whole view once its last message arrived. Returns the (exchange, topic) pairs whose
  // lookup answer changed, sorted; empty while a snapshot is incomplete.
  std::vector<TopicKey> Apply(const directory::v1::WatchResponse& response, bool snapshot_begins)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Every registration of (exchange, topic) with its node, ordered by (node, server, kind, pool),
  // at revision(); from_cache is set. Counted in lookups(): a hit when the answer names at least
  // one server, a miss when the mirror knows none.
  wire::v1::LookupResult Lookup(const std::string& exchange, const std::string& topic) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Registrations whose node is `node`.
  std::vector<directory::v1::Registration> RegistrationsOf(const std::string& node) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Revision of the view; 0 before the first response.
  int64_t revision() const ABSL_LOCKS_EXCLUDED(mu_);
  // True once a snapshot or a change has been applied.
  bool synced() const ABSL_LOCKS_EXCLUDED(mu_);

  // Answers computed by Lookup (for local instances' lookups and for the updates pushed to
  // them), with and without a server in them.
  struct LookupCounts {
    int64_t hits = 0;
    int64_t misses = 0;
  };
  LookupCounts lookups() const;

 private:
  // Identity of a registration within its topic, in answer order.
  using RegId = std::tuple<std::string, std::string, int, std::string>;  // node, server, kind, pool
  struct State {
    std::map<std::string, directory::v1::Node> nodes;
    std::map<TopicKey, std::map<RegId, directory::v1::Registration>> topics;
  };

  static void ApplyEvent(const directory::v1::Event& event, State& state,
                         std::set<TopicKey>* changed);
  static void Answer(const State& state, const TopicKey& key, wire::v1::LookupResult* result);

  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_);
  State pending_ ABSL_GUARDED_BY(mu_);  // a snapshot being received
  bool in_snapshot_ ABSL_GUARDED_BY(mu_) = false;
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  mutable std::atomic<int64_t> hits_{0};
  mutable std::atomic<int64_t> misses_{0};
};

}  // namespace zmesh::proxy
