// WatchHub: fans applied changes out to watchers, with no gap and no duplicate between what a
// watcher reads from the store when it starts (history or snapshot) and the live changes.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/raft/consensus.h"
#include "controlplane/store/store.h"
#include "zmesh/directory/v1/directory.pb.h"

namespace zmesh::service {

// Receives a watcher's messages. Deliver is called with the hub's lock held, in revision
// order: it must only queue (never block, never call back into the hub).
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  virtual void Deliver(directory::v1::WatchResponse response) = 0;
};

// Thread-safe. Publishing happens on the apply thread (as an ApplyObserver).
class WatchHub final : public raft::ApplyObserver {
 public:
  // Most events in one message (snapshots and long histories are split).
  static constexpr size_t kMaxEventsPerMessage = 500;

  // `store` must outlive the hub.
  explicit WatchHub(store::Store& store) : store_(store) {}
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  void OnApplied(const state::v1::Command& command, const store::CommandResult& result) override;
  // Every watcher gets a snapshot of its matching state at the new revision (so no watcher
  // misses what a snapshot install skipped over), then changes as usual.
  void OnRestored() override;

  // Delivers the watcher's start to `sink` (always at least one message: the history since
  // start_revision, or a snapshot, or an empty message carrying the current revision), then
  // registers it for live changes. `sink` must stay alive until Unsubscribe returns.
  absl::StatusOr<uint64_t> Subscribe(const directory::v1::WatchRequest& request, WatchSink* sink);
  // After it returns, the sink gets no more calls.
  void Unsubscribe(uint64_t id);
  size_t size() const;

 private:
  struct Watcher {
    store::WatchFilter filter;
    WatchSink* sink;           // not owned; alive until Unsubscribe
    int64_t covered_revision;  // changes up to here were delivered by Subscribe
  };
  store::Store& store_;
  mutable absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t compact_revision_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<uint64_t, Watcher> watchers_ ABSL_GUARDED_BY(mu_);

  // Reads the start for `filter` and delivers it (one message at least). Returns the revision
  // covered.
  absl::StatusOr<int64_t> DeliverStart(const store::WatchFilter& filter, int64_t start_revision,
                                       bool snapshot, WatchSink* sink)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
};

}  // namespace zmesh::service
