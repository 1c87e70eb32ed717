// DirectoryClient: the gRPC client of zmesh-directory used by zmeshctl, tests, benchmarks and
// (later) node proxies. It takes one or more replica addresses and fails over between them.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "zmesh/directory/v1/cluster.grpc.pb.h"
#include "zmesh/directory/v1/directory.grpc.pb.h"
#include "zmesh/directory/v1/lease.grpc.pb.h"

namespace zmesh::client {

struct DirectoryClientOptions {
  // Replica addresses "host:port"; at least one.
  std::vector<std::string> addresses;
  // Deadline of each unary request, in milliseconds.
  int64_t request_timeout_ms = 5000;
};

// Thread-safe. Unary calls try the replicas in turn, starting with the last one that answered,
// and move to the next one when a replica is UNAVAILABLE (or its connection is not up within
// its share of the request timeout: the timeout divided by the number of replicas). Errors come
// back as absl::Status with the server's code and message; when every replica is unreachable the
// UNAVAILABLE message names each address.
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

  // Unary calls.
  absl::StatusOr<directory::v1::RegisterNodeResponse> RegisterNode(
      const directory::v1::RegisterNodeRequest& request);
  absl::StatusOr<directory::v1::DrainNodeResponse> DrainNode(
      const directory::v1::DrainNodeRequest& request);
  absl::StatusOr<directory::v1::RemoveNodeResponse> RemoveNode(
      const directory::v1::RemoveNodeRequest& request);
  absl::StatusOr<directory::v1::GetNodeResponse> GetNode(
      const directory::v1::GetNodeRequest& request);
  absl::StatusOr<directory::v1::ListNodesResponse> ListNodes(
      const directory::v1::ListNodesRequest& request);
  absl::StatusOr<directory::v1::RegisterResponse> Register(
      const directory::v1::RegisterRequest& request);
  absl::StatusOr<directory::v1::UnregisterResponse> Unregister(
      const directory::v1::UnregisterRequest& request);
  absl::StatusOr<directory::v1::LookupResponse> Lookup(const directory::v1::LookupRequest& request);
  absl::StatusOr<directory::v1::ListTopicsResponse> ListTopics(
      const directory::v1::ListTopicsRequest& request);
  absl::StatusOr<directory::v1::GrantResponse> Grant(const directory::v1::GrantRequest& request);
  absl::StatusOr<directory::v1::RevokeResponse> Revoke(const directory::v1::RevokeRequest& request);
  absl::StatusOr<directory::v1::TimeToLiveResponse> TimeToLive(
      const directory::v1::TimeToLiveRequest& request);
  absl::StatusOr<directory::v1::ListLeasesResponse> ListLeases(
      const directory::v1::ListLeasesRequest& request);
  absl::StatusOr<directory::v1::StatusResponse> Status(const directory::v1::StatusRequest& request);
  absl::StatusOr<directory::v1::ListMembersResponse> ListMembers(
      const directory::v1::ListMembersRequest& request);

  // Streams: raw stubs of the replica currently preferred (streams are long-lived; the caller
  // handles their failure, e.g. by resuming a watch from its last revision).
  Dir::Stub& directory_stub();
  Leases::Stub& leases_stub();
  // Address of the replica currently preferred.
  const std::string& preferred_address() const;
  // Moves the preference to the next replica (after a stream on the preferred one broke).
  void FailOver();
  // Waits up to timeout_ms for the connection to the preferred replica to be up, connecting
  // (again) if needed; UNAVAILABLE naming the address if it is not up in time. Call before
  // opening a stream: a stream opened on a replica that is not connected fails at once.
  [[nodiscard]] absl::Status ConnectPreferred(int64_t timeout_ms);

 private:
  explicit DirectoryClient(DirectoryClientOptions options);
  struct Replica;
  template <typename Response, typename Call>
  absl::StatusOr<Response> Invoke(Call call);

  DirectoryClientOptions options_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::atomic<size_t> preferred_{0};  // index into replicas_
};

}  // namespace zmesh::client
