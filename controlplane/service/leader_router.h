// LeaderRouter: lets any replica answer any request. Writes go to the leader (proposed locally
// when this replica leads, forwarded over zmesh.peer.v1.Peer otherwise); linearizable reads
// wait until this replica has applied what the leader had committed when the read began;
// lease renewals go to the leader, where lease timing lives. While there is no leader (an
// election), requests wait briefly and then fail with UNAVAILABLE, never with a wrong answer.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/channel.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/timer_queue.h"
#include "controlplane/raft/consensus.h"
#include "controlplane/store/store.h"
#include "zmesh/directory/v1/cluster.grpc.pb.h"
#include "zmesh/directory/v1/types.pb.h"
#include "zmesh/peer/v1/peer.grpc.pb.h"

namespace zmesh::service {

class LeaseExpirer;

// Thread-safe.
class LeaderRouter {
 public:
  using StatusDone = absl::AnyInvocable<void(absl::Status) &&>;

  // All references must outlive the router. `expirer` answers renewals on the leader.
  LeaderRouter(raft::Consensus& consensus, store::Store& store, LeaseExpirer& expirer,
               TimerQueue& timers, int64_t leader_wait_ms);
  LeaderRouter(const LeaderRouter&) = delete;
  LeaderRouter& operator=(const LeaderRouter&) = delete;

  // Applies `command` through the leader. `deadline_ms` (monotonic clock) bounds the whole
  // attempt, including waiting for an election. Same result contract as Consensus::Propose.
  void Propose(state::v1::Command command, int64_t deadline_ms, raft::Consensus::Done done);
  // Calls done(OK) when a read served by this replica now is linearizable (or at once for a
  // stale read).
  void ReadBarrier(directory::v1::Consistency consistency, int64_t deadline_ms, StatusDone done);
  // On the leader: the Raft index at which a linearizable read may be served, once a majority
  // of voters has confirmed (after this call) that this replica still leads; concurrent callers
  // share one confirmation round. NotLeaderError on a follower; UNAVAILABLE when leadership is
  // not confirmed.
  void ConfirmedReadIndex(int64_t deadline_ms,
                          absl::AnyInvocable<void(absl::StatusOr<uint64_t>) &&> done);
  // Renews a lease on the leader; NOT_FOUND for an unknown/expired lease, UNAVAILABLE when no
  // leader answered in time.
  void RenewLease(int64_t id, int64_t deadline_ms,
                  absl::AnyInvocable<void(absl::StatusOr<int64_t>) &&> done);

  // From now on operations fail with UNAVAILABLE instead of waiting or retrying (shutdown).
  void Stop() { stopping_ = true; }

  // The leader's gRPC address when it is known ("" otherwise), and a Cluster stub for it.
  std::string LeaderGrpcAddress();
  absl::StatusOr<std::shared_ptr<directory::v1::Cluster::Stub>> LeaderClusterStub();
  // Waits (retrying, like Propose) until a leader is known: `done` gets nullptr when this
  // replica leads, else a Cluster stub for the leader; UNAVAILABLE after the wait.
  void ResolveLeader(
      int64_t deadline_ms,
      absl::AnyInvocable<void(absl::StatusOr<std::shared_ptr<directory::v1::Cluster::Stub>>) &&>
          done);

  // Monotonic deadline for a request with this gRPC deadline (capped for retries).
  int64_t DeadlineFor(std::chrono::system_clock::time_point grpc_deadline) const;

 private:
  struct Channel {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<peer::v1::Peer::Stub> peer;
    std::shared_ptr<directory::v1::Cluster::Stub> cluster;
  };
  // The leader's channel, or an error saying why there is none (retryable).
  absl::StatusOr<Channel*> LeaderChannel();
  Channel* ChannelFor(const std::string& address) ABSL_LOCKS_EXCLUDED(mu_);
  // Confirmation rounds (ConfirmedReadIndex).
  struct PendingConfirm {
    uint64_t term;
    int64_t deadline_ms;
    absl::AnyInvocable<void(absl::Status) &&> done;
  };
  void Confirm(PendingConfirm pending);
  void StartConfirmRound() ABSL_LOCKS_EXCLUDED(confirm_mu_);
  void ConfirmRoundDone() ABSL_LOCKS_EXCLUDED(confirm_mu_);
  raft::Consensus& consensus_;
  store::Store& store_;
  LeaseExpirer& expirer_;
  TimerQueue& timers_;
  const int64_t leader_wait_ms_;
  std::atomic<bool> stopping_{false};
  // Request ids: "<replica id>-<nonce>-<counter>", unique across restarts of this replica.
  const uint64_t request_nonce_;
  std::atomic<uint64_t> next_request_{1};
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Channel>> channels_ ABSL_GUARDED_BY(mu_);
  absl::Mutex confirm_mu_;  // never held while calling out
  std::vector<PendingConfirm> confirm_next_ ABSL_GUARDED_BY(confirm_mu_);
  bool confirm_in_flight_ ABSL_GUARDED_BY(confirm_mu_) = false;
};

// Is this forwarding failure one where the request surely did not reach the leader (so it is
// safe to send it again)?
bool NotDelivered(const absl::Status& status);

}  // namespace zmesh::service
