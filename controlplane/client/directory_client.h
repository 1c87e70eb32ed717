// DirectoryClient: the gRPC client of zmesh-directory used by zmeshctl, tests, benchmarks and
// node proxies. It takes one or more replica addresses and fails over between them; it can send
// writes straight to the leader once it knows it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "zmesh/directory/v1/cluster.grpc.pb.h"
#include "zmesh/directory/v1/directory.grpc.pb.h"
#include "zmesh/directory/v1/lease.grpc.pb.h"

namespace zmesh::client {

struct DirectoryClientOptions {
  // Replica addresses "host:port"; at least one.
  std::vector<std::string> addresses;
  // Deadline of each unary request, in milliseconds.
  int64_t request_timeout_ms = 5000;
  // Send writes to the leader first once it is known, saving the follower's forwarding hop. The
  // leader is learned after a successful call, by asking the replica that answered for its
  // Status (leader_grpc_address); it may be an address not in `addresses`. Reads and Status
  // never use it: they go to the given addresses only.
  bool prefer_leader = false;
};

// Thread-safe. Unary calls try the replicas in turn, starting with the last one that answered,
// and move to the next one when a replica is UNAVAILABLE (or its connection is not up within
// its share of the request timeout: the timeout divided by the number of replicas). Errors come
// back as absl::Status with the server's code and message; when every replica is unreachable the
// UNAVAILABLE message names each address.
//
// With prefer_leader, a write first goes to the known leader; if the leader cannot be reached it
// is forgotten and the write goes through the rotation above. Reads (including
// CONSISTENCY_STALE ones) are only ever sent to the given addresses, so a client given one
// address reads that replica's state and nothing else.
class DirectoryClient {
 public:
  // Fails with INVALID_ARGUMENT when no address is given or an address is malformed.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DirectoryClient>> Create(
      DirectoryClientOptions options);
  // Parses "host:port[,host:port...]" (host may be "[v6addr]"; spaces around entries are
  // ignored). INVALID_ARGUMENT naming the bad entry otherwise.
  [[nodiscard]] static absl::StatusOr<std::vector<std::string>> ParseAddresses(
      std::string_view list);

  DirectoryClient(const DirectoryClient&) = delete;
  DirectoryClient& operator=(const DirectoryClient&) = delete;
  ~DirectoryClient();

  using Dir = ::zmesh::directory::v1::Directory;
  using Leases = ::zmesh::directory::v1::Leases;
  using Cluster = ::zmesh::directory::v1::Cluster;

  // Writes (prefer the leader when enabled).
  absl::StatusOr<directory::v1::RegisterNodeResponse> RegisterNode(
      const directory::v1::RegisterNodeRequest& request);
  absl::StatusOr<directory::v1::DrainNodeResponse> DrainNode(
      const directory::v1::DrainNodeRequest& request);
  absl::StatusOr<directory::v1::RemoveNodeResponse> RemoveNode(
      const directory::v1::RemoveNodeRequest& request);
  absl::StatusOr<directory::v1::RegisterResponse> Register(
      const directory::v1::RegisterRequest& request);
  absl::StatusOr<directory::v1::UnregisterResponse> Unregister(
      const directory::v1::UnregisterRequest& request);
  absl::StatusOr<directory::v1::GrantResponse> Grant(const directory::v1::GrantRequest& request);
  absl::StatusOr<directory::v1::RevokeResponse> Revoke(const directory::v1::RevokeRequest& request);
  absl::StatusOr<directory::v1::AddMemberResponse> AddMember(
      const directory::v1::AddMemberRequest& request);
  absl::StatusOr<directory::v1::RemoveMemberResponse> RemoveMember(
      const directory::v1::RemoveMemberRequest& request);
  absl::StatusOr<directory::v1::TransferLeadershipResponse> TransferLeadership(
      const directory::v1::TransferLeadershipRequest& request);

  // Reads (the given addresses only).
  absl::StatusOr<directory::v1::GetNodeResponse> GetNode(
      const directory::v1::GetNodeRequest& request);
  absl::StatusOr<directory::v1::ListNodesResponse> ListNodes(
      const directory::v1::ListNodesRequest& request);
  absl::StatusOr<directory::v1::LookupResponse> Lookup(const directory::v1::LookupRequest& request);
  absl::StatusOr<directory::v1::ListTopicsResponse> ListTopics(
      const directory::v1::ListTopicsRequest& request);
  absl::StatusOr<directory::v1::TimeToLiveResponse> TimeToLive(
      const directory::v1::TimeToLiveRequest& request);
  absl::StatusOr<directory::v1::ListLeasesResponse> ListLeases(
      const directory::v1::ListLeasesRequest& request);
  absl::StatusOr<directory::v1::StatusResponse> Status(const directory::v1::StatusRequest& request);
  absl::StatusOr<directory::v1::ListMembersResponse> ListMembers(
      const directory::v1::ListMembersRequest& request);

  // The given addresses, by index (0 .. replica_count() - 1). Streams (Watcher, LeaseKeepAlive)
  // pick a replica by index and move to the next one themselves when their stream breaks.
  size_t replica_count() const { return replicas_.size(); }
  const std::string& address(size_t index) const;
  // Index of the replica unary calls try first (the last one that answered).
  size_t preferred_index() const { return preferred_.load(); }
  Dir::Stub& directory_stub(size_t index);
  Leases::Stub& leases_stub(size_t index);
  // Waits up to timeout_ms for the connection to the replica to be up, connecting (again) if
  // needed; UNAVAILABLE naming the address if it is not up in time. Call before opening a
  // stream: a stream opened on a replica that is not connected fails at once.
  [[nodiscard]] absl::Status Connect(size_t index, int64_t timeout_ms);

  // The same for the preferred replica (kept for callers that follow the client's preference).
  Dir::Stub& directory_stub();
  Leases::Stub& leases_stub();
  // Address of the replica currently preferred.
  const std::string& preferred_address() const;
  // Moves the preference to the next replica (after a stream on the preferred one broke).
  void FailOver();
  [[nodiscard]] absl::Status ConnectPreferred(int64_t timeout_ms);

  // gRPC address of the leader writes go to first; "" when unknown or prefer_leader is off.
  std::string leader_address() const;

 private:
  struct Replica;
  enum class CallKind { kRead, kWrite };

  explicit DirectoryClient(DirectoryClientOptions options);
  template <typename Response, typename Call>
  absl::StatusOr<Response> Invoke(CallKind kind, Call call);
  // One attempt on one replica; sets *unreachable when the replica could not be reached.
  template <typename Response, typename Call>
  absl::StatusOr<Response> Attempt(Replica& replica, int64_t connect_timeout_ms, Call& call,
                                   bool* unreachable);
  // After a successful call on `answered`: learns the leader from its Status when it is unknown
  // or was learned long ago (rate-limited).
  void MaybeLearnLeader(Replica& answered);
  void ForgetLeader(const Replica& leader);
  std::shared_ptr<Replica> MakeReplica(const std::string& address) const;

  DirectoryClientOptions options_;
  std::vector<std::shared_ptr<Replica>> replicas_;  // the given addresses; fixed after creation
  std::atomic<size_t> preferred_{0};                // index into replicas_

  mutable absl::Mutex leader_mu_;
  std::shared_ptr<Replica> leader_ ABSL_GUARDED_BY(leader_mu_);  // null when unknown
  // When the leader was last asked for; absl::InfinitePast() for never.
  absl::Time leader_checked_ ABSL_GUARDED_BY(leader_mu_) = absl::InfinitePast();
  // Channels to leaders that are not among replicas_, by address (kept for reuse).
  std::vector<std::shared_ptr<Replica>> extra_replicas_ ABSL_GUARDED_BY(leader_mu_);
};

}  // namespace zmesh::client
