// Watcher: a directory watch that survives the loss of the replica it streams from. It resumes
// on another replica right after the last revision it delivered, so the consumer sees every
// change once, in order. Node proxies feed their lookup caches from it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/client/directory_client.h"
#include "zmesh/directory/v1/directory.pb.h"

namespace grpc {
class ClientContext;
}  // namespace grpc

namespace zmesh::client {

// Why and how a watch resumes (for logs).
struct WatchResume {
  // The replica whose stream ended, and how it ended.
  std::string lost_address;
  absl::Status reason;
  // Where the next stream opens and what it asks for.
  std::string next_address;
  int64_t start_revision = 0;
  // The next stream starts with a snapshot (one was cut in the middle).
  bool snapshot = false;
};

struct WatcherOptions {
  // What to watch and where to start (see WatchRequest). start_revision 0 without
  // initial_snapshot means "changes after now": the watcher then pins "now" to the current
  // revision of the first replica it reaches, so that a stream that breaks before its first
  // change loses nothing.
  directory::v1::WatchRequest request;
  // Called on the watcher's thread for each response delivered, in order. `snapshot_begins` is
  // true on the first message of a snapshot: the consumer drops its view and rebuilds it from
  // the snapshot's messages (up to the one with snapshot_end). A snapshot cut by a broken
  // stream is delivered again from its beginning (possibly at a newer revision). Outside
  // snapshots no revision is delivered twice: events already delivered are dropped from a
  // resumed stream. Required.
  std::function<void(const directory::v1::WatchResponse& response, bool snapshot_begins)>
      on_response;
  // Called on the watcher's thread when a stream ended and the watch resumes. Optional.
  std::function<void(const WatchResume& resume)> on_resume;
  // Longest wait for a replica's connection before moving to the next one.
  int64_t connect_timeout_ms = 2000;
  // Pause before resuming after a stream that delivered nothing: doubles from first to max.
  int64_t first_retry_delay_ms = 100;
  int64_t max_retry_delay_ms = 2000;
};

// Thread-safe. Streams from the client's replicas in turn, starting with its preferred one. A
// stream that ends (replica gone: UNAVAILABLE, CANCELLED by the server, or an OK end; the
// watcher fell behind: RESOURCE_EXHAUSTED; ABORTED, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN) is
// resumed on the next replica with start_revision = last revision delivered + 1. Any other error
// (e.g. INVALID_ARGUMENT for a bad filter) ends the watch: Wait() returns it. Callbacks run on
// the watcher's thread and must not call Stop().
class Watcher {
 public:
  // Starts the watcher's thread. `client` must outlive the Watcher. INVALID_ARGUMENT without
  // on_response or with non-positive timeouts.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Watcher>> Start(DirectoryClient& client,
                                                                      WatcherOptions options);
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;
  ~Watcher();  // Stop()

  // Asks the watch to end (cancels the stream) without waiting. Safe from any thread, including
  // a signal-handling one, and from callbacks.
  void Cancel();
  // Cancel() and join the thread. Idempotent; not from a callback.
  void Stop();
  // Waits until the watch ended: OK once cancelled, else the error that ended it.
  absl::Status Wait();
  // Highest revision delivered (a finished snapshot counts as its revision); 0 before any.
  int64_t last_revision() const;
  // Address of the replica streaming now; "" between streams.
  std::string stream_address() const;
  // Events dropped because their revision had already been delivered (a resumed stream that
  // repeated changes). Zero with a directory that honours start_revision.
  int64_t duplicates_dropped() const;

 private:
  Watcher(DirectoryClient& client, WatcherOptions options);
  void Run();
  // Streams from the replica until the stream ends; returns how it ended, and sets *delivered
  // when it delivered at least one response.
  absl::Status RunStream(size_t index, bool* delivered);
  // Filters and delivers one response; updates the resume point.
  void Deliver(const directory::v1::WatchResponse& response);

  DirectoryClient& client_;  // kept alive by the owner (see Start)
  WatcherOptions options_;

  // State of the watcher's thread only.
  directory::v1::WatchRequest request_;  // the request the next stream sends
  bool in_snapshot_ = false;             // between a snapshot's first and last message

  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status result_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;  // owned by RunStream's frame
  std::string stream_address_ ABSL_GUARDED_BY(mu_);
  int64_t last_revision_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t duplicates_dropped_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Mutex join_mu_;  // serializes Stop(); taken before mu_
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);
};

}  // namespace zmesh::client
