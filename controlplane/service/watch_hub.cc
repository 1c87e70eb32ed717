#include "controlplane/service/watch_hub.h"

#include <utility>

namespace zmesh::service {

namespace dir = ::zmesh::directory::v1;

void WatchHub::OnApplied(const state::v1::Command& /*command*/,
                         const store::CommandResult& result) {
  if (result.events.empty()) return;
  absl::MutexLock lock(&mu_);
  for (auto& [id, watcher] : watchers_) {
    if (result.revision <= watcher.covered_revision) continue;  // already read from the store
    dir::WatchResponse response;
    response.set_revision(result.revision);
    response.set_compact_revision(compact_revision_);
    for (const dir::Event& event : result.events) {
      if (watcher.filter.Matches(event)) *response.add_events() = event;
    }
    if (response.events_size() > 0) watcher.sink->Deliver(std::move(response));
  }
}

absl::StatusOr<int64_t> WatchHub::DeliverStart(const store::WatchFilter& filter,
                                               int64_t start_revision, bool snapshot,
                                               WatchSink* sink) {
  absl::StatusOr<store::ChangesSince> start = store_.ReadChanges(filter, start_revision, snapshot);
  if (!start.ok()) return start.status();
  compact_revision_ = start->compact_revision;
  auto new_message = [&] {
    dir::WatchResponse response;
    response.set_revision(start->revision);
    response.set_compact_revision(start->compact_revision);
    response.set_snapshot(start->snapshot);
    return response;
  };
  dir::WatchResponse message = new_message();
  for (dir::Event& event : start->events) {
    if (static_cast<size_t>(message.events_size()) == kMaxEventsPerMessage) {
      sink->Deliver(std::exchange(message, new_message()));
    }
    *message.add_events() = std::move(event);
  }
  message.set_snapshot_end(start->snapshot);
  sink->Deliver(std::move(message));
  return start->revision;
}

absl::StatusOr<uint64_t> WatchHub::Subscribe(const dir::WatchRequest& request, WatchSink* sink) {
  store::WatchFilter filter{request.exchange(), request.topic_prefix(), request.include_nodes()};
  // The store is read under the hub's lock: changes applied after this read are published
  // after it, and those already in the read are skipped by covered_revision.
  absl::MutexLock lock(&mu_);
  absl::StatusOr<int64_t> covered =
      DeliverStart(filter, request.start_revision(), request.initial_snapshot(), sink);
  if (!covered.ok()) return covered.status();
  const uint64_t id = next_id_++;
  // A start_revision this replica has not reached got a snapshot at its revision (the store
  // cannot tell a replica that is behind from a directory whose revisions were rewound by a
  // restore): the watcher replaces its view, and every change after it follows.
  watchers_.emplace(id, Watcher{std::move(filter), sink, *covered});
  return id;
}

void WatchHub::OnRestored() {
  absl::MutexLock lock(&mu_);
  for (auto& [id, watcher] : watchers_) {
    absl::StatusOr<int64_t> covered = DeliverStart(watcher.filter, 0, true, watcher.sink);
    if (covered.ok()) watcher.covered_revision = *covered;
  }
}

void WatchHub::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(id);
}

size_t WatchHub::size() const {
  absl::MutexLock lock(&mu_);
  return watchers_.size();
}

}  // namespace zmesh::service
