#include "dataplane/proxy/directory_link.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace zmesh::proxy {

namespace dv1 = ::zmesh::directory::v1;

namespace {

constexpr absl::Duration kFirstRetryDelay = absl::Milliseconds(100);
constexpr absl::Duration kMaxRetryDelay = absl::Seconds(1);

// While the directory is away the writer retries every second: one warning per interval.
constexpr absl::Duration kWarningInterval = absl::Seconds(30);

bool IsUnreachable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded;
}

}  // namespace

std::string RegistrationKey(const dv1::Registration& r) {
  return absl::StrCat(r.exchange(), absl::string_view("\0", 1), r.topic(),
                      absl::string_view("\0", 1), r.server(), absl::string_view("\0", 1),
                      static_cast<int>(r.kind()), absl::string_view("\0", 1), r.pool());
}

absl::StatusOr<std::unique_ptr<DirectoryLink>> DirectoryLink::Start(
    DirectoryLinkOptions options, DirectoryLinkCallbacks callbacks, Mirror& mirror,
    ProxyStats& stats) {
  std::unique_ptr<DirectoryLink> link(
      new DirectoryLink(std::move(options), std::move(callbacks), mirror, stats));
  client::DirectoryClientOptions write_options;
  write_options.addresses = link->options_.addresses;
  write_options.request_timeout_ms = link->options_.write_timeout_ms;
  write_options.prefer_leader = true;
  absl::StatusOr<std::unique_ptr<client::DirectoryClient>> writes =
      client::DirectoryClient::Create(write_options);
  if (!writes.ok()) return writes.status();
  link->writes_ = *std::move(writes);

  client::DirectoryClientOptions lookup_options;
  lookup_options.addresses = link->options_.addresses;
  lookup_options.request_timeout_ms = link->options_.lookup_timeout_ms;
  absl::StatusOr<std::unique_ptr<client::DirectoryClient>> lookups =
      client::DirectoryClient::Create(lookup_options);
  if (!lookups.ok()) return lookups.status();
  link->lookups_ = *std::move(lookups);

  DirectoryLink* self = link.get();
  client::LeaseKeepAliveOptions keepalive_options;
  keepalive_options.on_lost = [self](int64_t lease_id, const absl::Status& reason) {
    ZLOG_WARNING("lease %d lost (%s): registering the node again under a new lease", lease_id,
                 reason.ToString());
    absl::MutexLock lock(&self->mu_);
    if (lease_id == self->lease_id_) self->lease_lost_ = true;
    self->changed_.SignalAll();
  };
  absl::StatusOr<std::unique_ptr<client::LeaseKeepAlive>> keepalive =
      client::LeaseKeepAlive::Start(*link->writes_, keepalive_options);
  if (!keepalive.ok()) return keepalive.status();
  link->keepalive_ = *std::move(keepalive);

  client::WatcherOptions watch_options;
  watch_options.request.set_include_nodes(true);
  watch_options.request.set_initial_snapshot(true);
  watch_options.on_response = [self](const dv1::WatchResponse& response, bool snapshot_begins) {
    self->watch_failures_.store(0);
    std::vector<TopicKey> changed = self->mirror_.Apply(response, snapshot_begins);
    if (!changed.empty() && self->callbacks_.on_mirror_changed) {
      self->callbacks_.on_mirror_changed(std::move(changed));
    }
  };
  watch_options.on_resume = [self](const client::WatchResume& resume) {
    // The first failure of a row, then one in 30 (the watcher retries every 2 s at most).
    const int64_t row = self->watch_failures_.fetch_add(1);
    if (row % 30 != 0) return;
    ZLOG_INFO("directory watch on %s ended (%s); resuming on %s at revision %d",
              resume.lost_address.empty() ? "-" : resume.lost_address, resume.reason.ToString(),
              resume.next_address, resume.start_revision);
  };
  absl::StatusOr<std::unique_ptr<client::Watcher>> watcher =
      client::Watcher::Start(*link->writes_, std::move(watch_options));
  if (!watcher.ok()) return watcher.status();
  link->watcher_ = *std::move(watcher);

  link->writer_ = std::thread([self] { self->RunWriter(); });
  link->lookup_worker_ = std::thread([self] { self->RunLookups(); });
  return link;
}

DirectoryLink::DirectoryLink(DirectoryLinkOptions options, DirectoryLinkCallbacks callbacks,
                             Mirror& mirror, ProxyStats& stats)
    : options_(std::move(options)),
      callbacks_(std::move(callbacks)),
      mirror_(mirror),
      stats_(stats) {}

DirectoryLink::~DirectoryLink() { Stop(false); }

void DirectoryLink::Register(const dv1::Registration& registration) {
  std::string key = RegistrationKey(registration);
  absl::MutexLock lock(&mu_);
  desired_[key] = registration;
  if (dirty_set_.insert(key).second) dirty_.push_back(std::move(key));
  changed_.SignalAll();
}

void DirectoryLink::Unregister(const dv1::Registration& registration) {
  std::string key = RegistrationKey(registration);
  absl::MutexLock lock(&mu_);
  desired_.erase(key);
  if (dirty_set_.insert(key).second) dirty_.push_back(std::move(key));
  changed_.SignalAll();
}

void DirectoryLink::Lookup(uint64_t token, const std::string& exchange, const std::string& topic) {
  absl::MutexLock lock(&mu_);
  lookup_queue_.push_back({token, exchange, topic, absl::Now()});
  changed_.SignalAll();
}

bool DirectoryLink::connected() const {
  return watcher_ != nullptr && !watcher_->stream_address().empty();
}

bool DirectoryLink::node_registered() const {
  absl::MutexLock lock(&mu_);
  return ever_registered_;
}

DirectoryLink::Backlog DirectoryLink::backlog() const {
  absl::MutexLock lock(&mu_);
  return Backlog{dirty_.size(), lookup_queue_.size()};
}

int64_t DirectoryLink::lease_id() const {
  absl::MutexLock lock(&mu_);
  return lease_id_;
}

void DirectoryLink::Stop(bool revoke) {
  int64_t lease = 0;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
    changed_.SignalAll();
    lease = lease_id_;
  }
  // Revoke first, bounded by the lookup client's short deadline, while the threads wind down:
  // the node and its registrations leave the directory at once.
  if (revoke && lease != 0 && lookups_ != nullptr) {
    dv1::RevokeRequest request;
    request.set_id(lease);
    absl::StatusOr<dv1::RevokeResponse> revoked = lookups_->Revoke(request);
    if (revoked.ok()) {
      ZLOG_INFO("revoked lease %d: node %s is gone from the directory", lease,
                options_.node.name());
    } else {
      ZLOG_WARNING("revoking lease %d: %s (the node goes when the lease expires)", lease,
                   revoked.status().ToString());
    }
  }
  if (writer_.joinable()) writer_.join();
  if (lookup_worker_.joinable()) lookup_worker_.join();
  if (watcher_ != nullptr) watcher_->Stop();
  if (keepalive_ != nullptr) keepalive_->Stop();
}

bool DirectoryLink::Pause(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  const absl::Time until = absl::Now() + delay;
  while (!stopping_ && absl::Now() < until) changed_.WaitWithDeadline(&mu_, until);
  return !stopping_;
}

void DirectoryLink::RunWriter() {
  absl::Duration retry_delay = kFirstRetryDelay;
  auto succeeded = [&] {
    retry_delay = kFirstRetryDelay;
    if (failures_ > 0) {
      ZLOG_INFO("directory reachable again after %d failed attempt(s)", failures_);
      failures_ = 0;
      last_warning_ = absl::InfinitePast();
    }
  };
  auto failed = [&] {
    const bool go_on = Pause(retry_delay);
    retry_delay = std::min(retry_delay * 2, kMaxRetryDelay);
    return go_on;
  };
  while (true) {
    std::string key;
    {
      absl::MutexLock lock(&mu_);
      // Wake for: stop, a lost lease, a node to register, a dirty key, a reconcile due.
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || lease_lost_ || !node_up_ || !dirty_.empty() ||
               absl::Now() >= reconcile_at_;
      };
      while (!ready()) {
        changed_.WaitWithDeadline(&mu_, reconcile_at_);
      }
      if (stopping_) return;
      if (lease_lost_) {
        lease_lost_ = false;
        node_up_ = false;
        if (lease_id_ != 0) keepalive_->Remove(lease_id_);
        lease_id_ = 0;
      }
      if (node_up_ && !dirty_.empty()) key = dirty_.front();
    }
    if (!node_up_) {
      if (!EstablishNode()) {
        if (!failed()) return;
        continue;
      }
      succeeded();
      continue;
    }
    if (!key.empty()) {
      if (!SyncOne(key)) {
        if (!failed()) return;
        continue;
      }
      succeeded();
      absl::MutexLock lock(&mu_);
      if (!dirty_.empty() && dirty_.front() == key) {
        dirty_.pop_front();
        dirty_set_.erase(key);
      }
      continue;
    }
    if (absl::Now() >= reconcile_at_) {
      if (!Reconcile()) {
        if (!failed()) return;
        continue;
      }
      succeeded();
      reconcile_at_ = absl::InfiniteFuture();
    }
  }
}

bool DirectoryLink::ShouldWarn() {
  ++failures_;
  const absl::Time now = absl::Now();
  if (now - last_warning_ < kWarningInterval) return false;
  last_warning_ = now;
  return true;
}

bool DirectoryLink::EstablishNode() {
  int64_t lease = 0;
  {
    absl::MutexLock lock(&mu_);
    lease = lease_id_;
  }
  if (lease == 0) {
    dv1::GrantRequest grant;
    grant.set_ttl_ms(options_.lease_ttl_ms);
    absl::StatusOr<dv1::GrantResponse> granted = writes_->Grant(grant);
    if (!granted.ok()) {
      if (ShouldWarn()) {
        ZLOG_WARNING("directory unreachable: granting a lease: %s (retrying)",
                     granted.status().ToString());
      }
      return false;
    }
    lease = granted->id();
    stats_.leases_granted.fetch_add(1, std::memory_order_relaxed);
    absl::MutexLock lock(&mu_);
    lease_id_ = lease;
  }
  dv1::RegisterNodeRequest request;
  *request.mutable_node() = options_.node;
  request.set_lease_id(lease);
  absl::StatusOr<dv1::RegisterNodeResponse> registered = writes_->RegisterNode(request);
  if (!registered.ok()) {
    if (ShouldWarn()) {
      ZLOG_WARNING("registering node %s under lease %d: %s (retrying)", options_.node.name(), lease,
                   registered.status().ToString());
    }
    if (registered.status().code() == absl::StatusCode::kNotFound) {
      absl::MutexLock lock(&mu_);
      lease_id_ = 0;  // expired meanwhile: grant another
    }
    return false;
  }
  if (absl::Status kept = keepalive_->Add(lease, options_.lease_ttl_ms); !kept.ok()) {
    ZLOG_ERROR("keeping lease %d alive: %s", lease, kept.ToString());
  }
  node_up_ = true;
  in_dir_.clear();
  bool first = false;
  {
    absl::MutexLock lock(&mu_);
    first = !ever_registered_;
    ever_registered_ = true;
    // Everything wanted is written again (the directory holds nothing under a new lease; and
    // after a restart nothing is known).
    for (const auto& [key, registration] : desired_) {
      if (dirty_set_.insert(key).second) dirty_.push_back(key);
    }
  }
  if (first) reconcile_at_ = absl::Now() + absl::Milliseconds(options_.reconcile_after_ms);
  ZLOG_INFO("node %s registered in the directory under lease %d (ttl %d ms) at revision %d",
            options_.node.name(), lease, options_.lease_ttl_ms, registered->revision());
  if (callbacks_.on_node_registered) callbacks_.on_node_registered();
  return true;
}

bool DirectoryLink::SyncOne(const std::string& key) {
  std::optional<dv1::Registration> wanted;
  {
    absl::MutexLock lock(&mu_);
    auto it = desired_.find(key);
    if (it != desired_.end()) wanted = it->second;
  }
  if (wanted.has_value()) {
    auto known = in_dir_.find(key);
    if (known != in_dir_.end()) {
      if (callbacks_.on_registered) callbacks_.on_registered(key, known->second.revision);
      return true;
    }
    dv1::RegisterRequest request;
    *request.mutable_registration() = *wanted;
    request.mutable_registration()->set_node(options_.node.name());
    absl::StatusOr<dv1::RegisterResponse> done = writes_->Register(request);
    if (!done.ok()) {
      if (done.status().code() == absl::StatusCode::kNotFound) {
        // The node is gone: its lease expired. Register it again, then everything.
        ZLOG_WARNING("registering %s/%s: %s; registering the node again", wanted->exchange(),
                     wanted->topic(), done.status().ToString());
        absl::MutexLock lock(&mu_);
        lease_lost_ = true;
        return false;
      }
      if (!IsUnreachable(done.status())) {
        // Refused for good (bad name): nothing to retry.
        ZLOG_ERROR("directory refused registration %s/%s/%s: %s", wanted->exchange(),
                   wanted->topic(), wanted->server(), done.status().ToString());
        return true;
      }
      if (ShouldWarn()) {
        ZLOG_WARNING("registering %s/%s/%s: %s (kept, retrying)", wanted->exchange(),
                     wanted->topic(), wanted->server(), done.status().ToString());
      }
      return false;
    }
    stats_.directory_writes.fetch_add(1, std::memory_order_relaxed);
    const int64_t revision = done->registration().mod_revision() != 0
                                 ? done->registration().mod_revision()
                                 : done->revision();
    in_dir_[key] = {request.registration(), revision};
    if (callbacks_.on_registered) callbacks_.on_registered(key, revision);
    return true;
  }
  auto known = in_dir_.find(key);
  if (known == in_dir_.end()) return true;  // never written
  dv1::UnregisterRequest request;
  *request.mutable_registration() = known->second.registration;
  const dv1::Registration& r = request.registration();
  absl::StatusOr<dv1::UnregisterResponse> done = writes_->Unregister(request);
  if (!done.ok() && done.status().code() != absl::StatusCode::kNotFound) {
    if (IsUnreachable(done.status())) {
      if (ShouldWarn()) {
        ZLOG_WARNING("unregistering %s/%s/%s: %s (retrying)", r.exchange(), r.topic(), r.server(),
                     done.status().ToString());
      }
      return false;
    }
    ZLOG_ERROR("directory refused to unregister %s/%s/%s: %s", r.exchange(), r.topic(), r.server(),
               done.status().ToString());
  }
  stats_.directory_writes.fetch_add(1, std::memory_order_relaxed);
  in_dir_.erase(known);
  return true;
}

bool DirectoryLink::Reconcile() {
  dv1::GetNodeRequest request;
  request.set_name(options_.node.name());
  absl::StatusOr<dv1::GetNodeResponse> node = writes_->GetNode(request);
  if (!node.ok()) {
    if (node.status().code() == absl::StatusCode::kNotFound) return true;
    if (ShouldWarn()) {
      ZLOG_WARNING("reading node %s for reconciliation: %s (retrying)", options_.node.name(),
                   node.status().ToString());
    }
    return false;
  }
  int removed = 0;
  for (const dv1::Registration& registration : node->registrations()) {
    const std::string key = RegistrationKey(registration);
    {
      absl::MutexLock lock(&mu_);
      if (desired_.count(key) > 0) continue;
    }
    // Left over from an earlier run of this node: nobody local announced it again.
    dv1::UnregisterRequest unregister;
    *unregister.mutable_registration() = registration;
    absl::StatusOr<dv1::UnregisterResponse> done = writes_->Unregister(unregister);
    if (!done.ok() && done.status().code() != absl::StatusCode::kNotFound) {
      if (ShouldWarn()) {
        ZLOG_WARNING("removing stale registration %s/%s/%s: %s (retrying)", registration.exchange(),
                     registration.topic(), registration.server(), done.status().ToString());
      }
      return false;
    }
    in_dir_.erase(key);
    ++removed;
    // An announce that raced with the removal is written again.
    absl::MutexLock lock(&mu_);
    if (desired_.count(key) > 0 && dirty_set_.insert(key).second) dirty_.push_back(key);
  }
  ZLOG_INFO("reconciled node %s with the directory: %d stale registration(s) removed",
            options_.node.name(), removed);
  return true;
}

void DirectoryLink::RunLookups() {
  while (true) {
    LookupRequest next;
    {
      absl::MutexLock lock(&mu_);
      while (!stopping_ && lookup_queue_.empty()) changed_.Wait(&mu_);
      if (stopping_) return;
      next = std::move(lookup_queue_.front());
      lookup_queue_.pop_front();
    }
    if (absl::Now() - next.queued > absl::Milliseconds(options_.lookup_timeout_ms)) {
      stats_.fresh_lookups_expired.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    dv1::LookupRequest request;
    request.set_exchange(next.exchange);
    request.set_topic(next.topic);
    absl::StatusOr<dv1::LookupResponse> response = lookups_->Lookup(request);
    (response.ok() ? stats_.fresh_lookups_ok : stats_.fresh_lookups_failed)
        .fetch_add(1, std::memory_order_relaxed);
    if (!callbacks_.on_lookup) continue;
    if (!response.ok()) {
      callbacks_.on_lookup(next.token, response.status());
      continue;
    }
    wire::v1::LookupResult result;
    result.set_exchange(next.exchange);
    result.set_topic(next.topic);
    for (dv1::Endpoint& endpoint : *response->mutable_endpoints()) {
      *result.add_endpoints() = std::move(endpoint);
    }
    result.set_revision(response->revision());
    result.set_from_cache(false);
    callbacks_.on_lookup(next.token, std::move(result));
  }
}

}  // namespace zmesh::proxy
