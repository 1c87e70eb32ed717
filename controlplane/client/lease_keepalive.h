// LeaseKeepAlive: keeps directory leases alive from a background thread, over one KeepAlive
// stream that moves to another replica whenever the one it is on goes away. Node proxies use it
// to keep the lease their records hang on.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controlplane/client/directory_client.h"

namespace grpc {
class ClientContext;
}  // namespace grpc

namespace zmesh::client {

struct LeaseKeepAliveOptions {
  // Called on the keepalive thread when a lease is gone for good: the directory answered
  // NOT_FOUND (expired or revoked) or INVALID_ARGUMENT. The lease is no longer kept; the owner
  // registers again under a new lease. Must not call LeaseKeepAlive::Stop(). Optional.
  std::function<void(int64_t lease_id, const absl::Status& reason)> on_lost;
  // Longest wait for the answer to a renewal before the stream is taken for dead and reopened
  // on the next replica. Longer than the directory's own wait for a leader (about 3 s, after
  // which it answers UNAVAILABLE).
  int64_t response_timeout_ms = 5000;
  // Longest wait for a replica's connection when (re)opening the stream.
  int64_t connect_timeout_ms = 1000;
  // Delay before renewing again a lease whose renewal was answered UNAVAILABLE (no leader).
  int64_t retry_delay_ms = 100;
  // Pause between stream attempts that got no answer: doubles from first to max.
  int64_t first_reconnect_delay_ms = 50;
  int64_t max_reconnect_delay_ms = 1000;
};

// Thread-safe. Each lease is renewed as soon as it is added, then ttl/3 after each successful
// renewal (the TTL the directory answers with). A renewal answered UNAVAILABLE is retried after
// retry_delay_ms; after a few such answers in a row, or when the stream breaks or an answer is
// late, the stream is reopened on the next address of the client, round-robin, without ever
// giving up. Renewals in flight on a broken stream are sent again on the next one.
class LeaseKeepAlive {
 public:
  // Starts the background thread. `client` must outlive the LeaseKeepAlive. INVALID_ARGUMENT
  // for non-positive timeouts or delays.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<LeaseKeepAlive>> Start(
      DirectoryClient& client, LeaseKeepAliveOptions options = {});
  LeaseKeepAlive(const LeaseKeepAlive&) = delete;
  LeaseKeepAlive& operator=(const LeaseKeepAlive&) = delete;
  ~LeaseKeepAlive();  // Stop()

  // Keeps lease_id (granted with ttl_ms) alive, starting with a renewal now. Adding a lease
  // already kept renews it now. INVALID_ARGUMENT for a non-positive id or TTL.
  [[nodiscard]] absl::Status Add(int64_t lease_id, int64_t ttl_ms);
  // Stops renewing the lease (it then expires; it is not revoked). No-op for an unknown lease.
  void Remove(int64_t lease_id);
  // The leases being kept, in id order.
  std::vector<int64_t> leases() const;
  // Address of the replica the stream is open on; "" between streams.
  std::string stream_address() const;
  // Successful renewals so far, all leases together.
  int64_t renewals() const;
  // Stops renewing and joins the thread. Idempotent; must not be called from on_lost.
  void Stop();

 private:
  struct Lease {
    int64_t ttl_ms = 0;
    absl::Time due;  // when to send the next renewal
    bool in_flight = false;
  };
  struct Sent {
    int64_t lease_id = 0;
    absl::Time at;
  };
  LeaseKeepAlive(DirectoryClient& client, LeaseKeepAliveOptions options);
  void Run();
  // Opens a stream on the replica and renews over it until it ends; true when at least one
  // renewal succeeded on it.
  bool RunStream(size_t index);
  void HandleResponse(const directory::v1::KeepAliveResponse& response) ABSL_LOCKS_EXCLUDED(mu_);
  void DeliverLost() ABSL_LOCKS_EXCLUDED(mu_);

  DirectoryClient& client_;  // kept alive by the owner (see Start)
  const LeaseKeepAliveOptions options_;

  mutable absl::Mutex mu_;
  absl::CondVar changed_;  // signalled on any change the thread waits for
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<int64_t, Lease> leases_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int64_t, absl::Status>> lost_ ABSL_GUARDED_BY(mu_);  // to report
  // The current stream (null between streams); owned by RunStream's frame.
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string stream_address_ ABSL_GUARDED_BY(mu_);
  std::deque<Sent> in_flight_ ABSL_GUARDED_BY(mu_);  // renewals sent on the stream, oldest first
  bool stream_broken_ ABSL_GUARDED_BY(mu_) = false;
  bool stream_renewed_ ABSL_GUARDED_BY(mu_) = false;  // a renewal succeeded on this stream
  int unavailable_in_row_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t renewals_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Mutex join_mu_;  // serializes Stop(); taken before mu_
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);
};

}  // namespace zmesh::client
