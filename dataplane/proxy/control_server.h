// ControlServer: the proxy side of the local control protocol (control.sock, see
// docs/wire-protocol.md "Local control protocol"). One thread owns the socket and all state
// about local instances: who said hello, what each announced (reference-counted into one
// directory registration per target), their lookup subscriptions. It publishes the local
// target table to the pipelines and hands directory work to a DirectoryAccess.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "dataplane/proxy/directory_access.h"
#include "dataplane/proxy/local_table.h"
#include "dataplane/proxy/mirror.h"
#include "dataplane/proxy/proxy_stats.h"
#include "zmesh/directory/v1/types.pb.h"
#include "zmesh/wire/v1/local.pb.h"

namespace zmesh::proxy {

struct ControlOptions {
  std::string ipc_endpoint;  // "ipc://DIR/control.sock"
  std::string node_name;
  std::string incarnation;
  std::vector<std::string> directory;  // the proxy's --directory replicas, told in the Welcome
  int64_t max_payload_bytes = 16 * 1024 * 1024;
  int64_t ping_interval_ms = 300;
  int64_t instance_timeout_ms = 1500;
  // Longest wait for the directory before answering an Announce with UNAVAILABLE.
  int64_t announce_timeout_ms = 2000;
  // Longest wait for a fresh lookup before answering from the mirror.
  int64_t lookup_timeout_ms = 1000;
  // How often the traffic counters are logged (one line, only when they changed).
  int64_t stats_log_interval_ms = 60000;
};

// Create, set_directory, Start once, Stop once (owner's thread). The Post* methods are
// thread-safe and may be called at any time (also before Start).
class ControlServer {
 public:
  // Binds control.sock. `context`, `table`, `mirror` and `stats` must outlive the server.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ControlServer>> Create(
      zmq::context_t& context, ControlOptions options, LocalTableHolder& table, Mirror& mirror,
      ProxyStats& stats);
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;
  ~ControlServer();  // Stop()

  // The directory side; must outlive the server's thread (call Stop() first). Before Start.
  void set_directory(DirectoryAccess* directory) { directory_ = directory; }
  void Start();
  void Stop();

  // From the directory side: the registration with `key` (RegistrationKey) is in the directory.
  void PostRegistered(std::string key, int64_t revision);
  // The mirror's answer changed for these pairs.
  void PostMirrorChanged(std::vector<TopicKey> changed);
  // The answer of the directory to Lookup(token).
  void PostLookup(uint64_t token, absl::StatusOr<wire::v1::LookupResult> result);

  // Instances known now (for tests and logs).
  size_t instance_count() const;

 private:
  struct Instance {
    int64_t pid = 0;
    std::string description;
    int64_t last_seen_ms = 0;
    std::set<std::string> announced;            // registration keys
    std::map<TopicKey, int64_t> subscriptions;  // revision last sent for the pair
  };
  struct Entry {
    directory::v1::Registration registration;  // node filled in
    std::set<std::string> instances;           // local instances announcing it
    int64_t revision = 0;                      // in the directory at; 0 while pending
  };
  struct Waiter {  // an Announce waiting for the directory
    std::string instance;
    uint64_t seq = 0;
    std::string key;
    int64_t deadline_ms = 0;
  };
  struct PendingLookup {
    std::string instance;
    uint64_t seq = 0;
    TopicKey key;
    int64_t deadline_ms = 0;
  };

  ControlServer(zmq::context_t& context, ControlOptions options, LocalTableHolder& table,
                Mirror& mirror, ProxyStats& stats);
  void Post(absl::AnyInvocable<void() &&> task);
  void Run();
  void HandleRequest(const std::string& from, const wire::v1::LocalRequest& request);
  void HandleAnnounce(const std::string& from, uint64_t seq,
                      const directory::v1::Registration& wanted);
  void HandleWithdraw(const std::string& from, uint64_t seq,
                      const directory::v1::Registration& wanted);
  void HandleLookup(const std::string& from, uint64_t seq, const wire::v1::LookupQuery& query);
  void RemoveAnnouncement(const std::string& instance, const std::string& key);
  void DropInstance(const std::string& id, absl::string_view why);
  void OnRegistered(const std::string& key, int64_t revision);
  void OnMirrorChanged(const std::vector<TopicKey>& changed);
  void OnLookup(uint64_t token, absl::StatusOr<wire::v1::LookupResult> result);
  void AnswerLookup(const std::string& instance, uint64_t seq, wire::v1::LookupResult result);
  void CheckTimers();
  void MaybeLogStats(int64_t now_ms);
  void PublishTable();
  void Send(const std::string& to, const wire::v1::LocalResponse& response);
  int64_t NowMs() const;

  ControlOptions options_;
  LocalTableHolder& table_;               // owned by the proxy
  Mirror& mirror_;                        // owned by the proxy
  ProxyStats& stats_;                     // owned by the proxy
  DirectoryAccess* directory_ = nullptr;  // owned by the proxy; outlives the thread
  zmq::socket_t socket_;
  int wake_fd_ = -1;  // eventfd: tasks posted
  int stop_fd_ = -1;  // eventfd: readable once Stop() was called
  std::thread thread_;

  mutable absl::Mutex mu_;
  std::vector<absl::AnyInvocable<void() &&>> tasks_ ABSL_GUARDED_BY(mu_);
  size_t instance_count_ ABSL_GUARDED_BY(mu_) = 0;

  // Control thread only.
  std::map<std::string, Instance> instances_;  // by instance id (= routing id)
  std::map<std::string, Entry> entries_;       // by RegistrationKey
  std::vector<Waiter> waiters_;
  std::map<uint64_t, PendingLookup> lookups_;  // by token
  uint64_t next_token_ = 1;
  int64_t next_stats_log_ms_ = 0;
  std::string last_stats_;  // the counters last logged
};

}  // namespace zmesh::proxy
