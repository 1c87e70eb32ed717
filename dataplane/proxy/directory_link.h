// DirectoryLink: everything zmesh-proxy says to and hears from the directory, off the zmq
// threads. It keeps the node registered under a lease (a new lease and a full re-registration
// when the lease is lost), writes the node's registrations in the order they were asked for
// (retrying while the directory is out of reach), removes stale registrations of the node after
// a restart, feeds the Mirror from a watch of the whole directory, and answers fresh lookups.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controlplane/client/directory_client.h"
#include "controlplane/client/lease_keepalive.h"
#include "controlplane/client/watcher.h"
#include "dataplane/proxy/directory_access.h"
#include "dataplane/proxy/mirror.h"
#include "dataplane/proxy/proxy_stats.h"
#include "zmesh/directory/v1/types.pb.h"
#include "zmesh/wire/v1/local.pb.h"

namespace zmesh::proxy {

// Identity of a registration: (exchange, topic, server, kind, pool), NUL-joined. The node is
// always the proxy's own.
std::string RegistrationKey(const directory::v1::Registration& registration);

struct DirectoryLinkOptions {
  // Replica addresses "host:port"; at least one.
  std::vector<std::string> addresses;
  // The node to register: name, host and the four actual ports.
  directory::v1::Node node;
  int64_t lease_ttl_ms = 10000;
  // Registrations of this node found in the directory that nobody announced within this long
  // after the node was first registered are removed.
  int64_t reconcile_after_ms = 3000;
  // Deadline of a fresh (linearizable) lookup.
  int64_t lookup_timeout_ms = 1000;
  // Deadline of each directory write.
  int64_t write_timeout_ms = 2000;
};

// Called on the link's own threads; they must not block (post to the owner and return).
struct DirectoryLinkCallbacks {
  // The node is registered (first time, or again under a new lease).
  std::function<void()> on_node_registered;
  // The registration with this key is in the directory at `revision` (after Register).
  std::function<void(const std::string& key, int64_t revision)> on_registered;
  // The mirror changed the answer of these (exchange, topic) pairs.
  std::function<void(std::vector<TopicKey> changed)> on_mirror_changed;
  // Answer to Lookup(token, ...): the directory's, or its error.
  std::function<void(uint64_t token, absl::StatusOr<wire::v1::LookupResult> result)> on_lookup;
};

// Thread-safe. Threads: a writer (lease, node, registrations), a lookup worker, plus the
// LeaseKeepAlive's and the Watcher's own.
class DirectoryLink final : public DirectoryAccess {
 public:
  // Starts the threads; the directory may be unreachable (everything is retried). `mirror` and
  // `stats` must outlive the link. INVALID_ARGUMENT for bad addresses.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DirectoryLink>> Start(
      DirectoryLinkOptions options, DirectoryLinkCallbacks callbacks, Mirror& mirror,
      ProxyStats& stats);
  DirectoryLink(const DirectoryLink&) = delete;
  DirectoryLink& operator=(const DirectoryLink&) = delete;
  ~DirectoryLink() override;  // Stop(false)

  // Wants the registration in the directory (node filled in) / out of it. Written in order, on
  // the writer thread, retried until the directory answers.
  void Register(const directory::v1::Registration& registration) override ABSL_LOCKS_EXCLUDED(mu_);
  void Unregister(const directory::v1::Registration& registration) override
      ABSL_LOCKS_EXCLUDED(mu_);
  // Asks the directory (linearizable) who serves (exchange, topic); the answer comes through
  // on_lookup. Requests older than lookup_timeout_ms when their turn comes are skipped (the
  // owner answered from the mirror by then).
  void Lookup(uint64_t token, const std::string& exchange, const std::string& topic) override
      ABSL_LOCKS_EXCLUDED(mu_);

  // True while the watch stream is up.
  bool connected() const override;
  // True once the node has been registered at least once.
  bool node_registered() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t lease_id() const ABSL_LOCKS_EXCLUDED(mu_);
  // Work waiting for the directory: registrations to write or remove, fresh lookups.
  struct Backlog {
    size_t registrations = 0;
    size_t lookups = 0;
  };
  Backlog backlog() const ABSL_LOCKS_EXCLUDED(mu_);

  // Stops every thread; with `revoke`, revokes the lease first (best effort, bounded by the
  // write timeout) so the node and its registrations go at once.
  void Stop(bool revoke) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct LookupRequest {
    uint64_t token = 0;
    std::string exchange;
    std::string topic;
    absl::Time queued;
  };

  DirectoryLink(DirectoryLinkOptions options, DirectoryLinkCallbacks callbacks, Mirror& mirror,
                ProxyStats& stats);
  void RunWriter();
  void RunLookups();
  // Writer steps; each returns false when the directory did not answer (retry later).
  bool EstablishNode();
  bool SyncOne(const std::string& key);
  bool Reconcile();
  // Waits up to `delay` or until stopping; false when stopping.
  bool Pause(absl::Duration delay) ABSL_LOCKS_EXCLUDED(mu_);
  // Counts a failed directory call; true when it should be logged (rate limit).
  bool ShouldWarn();

  const DirectoryLinkOptions options_;
  const DirectoryLinkCallbacks callbacks_;
  Mirror& mirror_;     // owned by the proxy, outlives the link
  ProxyStats& stats_;  // owned by the proxy, outlives the link

  std::unique_ptr<client::DirectoryClient> writes_;   // writer thread + keepalive
  std::unique_ptr<client::DirectoryClient> lookups_;  // lookup worker
  std::unique_ptr<client::DirectoryClient> watches_;  // watcher
  std::unique_ptr<client::LeaseKeepAlive> keepalive_;
  std::unique_ptr<client::Watcher> watcher_;

  mutable absl::Mutex mu_;
  absl::CondVar changed_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // What the node should have in the directory, by key.
  std::map<std::string, directory::v1::Registration> desired_ ABSL_GUARDED_BY(mu_);
  // Keys whose directory state may differ from desired_, in the order they changed.
  std::deque<std::string> dirty_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> dirty_set_ ABSL_GUARDED_BY(mu_);
  bool lease_lost_ ABSL_GUARDED_BY(mu_) = false;
  int64_t lease_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool ever_registered_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<LookupRequest> lookup_queue_ ABSL_GUARDED_BY(mu_);

  // Writer thread only.
  bool node_up_ = false;  // node registered under the current lease
  struct Written {
    directory::v1::Registration registration;
    int64_t revision = 0;
  };
  std::map<std::string, Written> in_dir_;  // what the directory holds, by key
  absl::Time reconcile_at_ = absl::InfiniteFuture();
  int64_t failures_ = 0;  // directory calls failed in a row
  absl::Time last_warning_ = absl::InfinitePast();

  std::atomic<int64_t> watch_failures_{0};  // watch streams ended in a row

  std::thread writer_;
  std::thread lookup_worker_;
};

}  // namespace zmesh::proxy
