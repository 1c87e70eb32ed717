#include "controlplane/client/directory_client.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace zmesh::client {

namespace dv1 = ::zmesh::directory::v1;

struct DirectoryClient::Replica {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<Dir::Stub> directory;
  std::unique_ptr<Leases::Stub> leases;
  std::unique_ptr<Cluster::Stub> cluster;
};

namespace {

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::Status ValidateAddress(absl::string_view address) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid directory address \"", address, "\": ", why));
  };
  size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return bad("expected HOST:PORT");
  absl::string_view host = address.substr(0, colon);
  absl::string_view port_text = address.substr(colon + 1);
  if (host.empty()) return bad("missing host");
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return bad("malformed [IPv6] host");
  } else if (host.find(':') != absl::string_view::npos) {
    return bad("IPv6 hosts must be written [ADDR]:PORT");
  }
  for (char c : host) {
    if (absl::ascii_iscntrl(static_cast<unsigned char>(c)) || c == ' ' || c == '/') {
      return bad("invalid character in host");
    }
  }
  int port = 0;
  if (port_text.empty() || !absl::SimpleAtoi(port_text, &port) || port < 1 || port > 65535 ||
      !absl::ascii_isdigit(static_cast<unsigned char>(port_text.front()))) {
    return bad("port must be a number in 1-65535");
  }
  return absl::OkStatus();
}

// Gives the channel a chance to connect: returns once it is READY, once a connection attempt
// made during the wait has failed, or at the deadline; returns the state then. Needed because
// a channel whose last attempt failed fails RPCs at once without trying again until something
// asks for a connection; asking for the state with try_to_connect is what makes it reconnect.
grpc_connectivity_state WaitConnected(grpc::Channel& channel,
                                      std::chrono::system_clock::time_point deadline) {
  bool attempted = false;
  for (;;) {
    grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_READY || state == GRPC_CHANNEL_SHUTDOWN) return state;
    if (state == GRPC_CHANNEL_CONNECTING) attempted = true;
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE && attempted) return state;
    if (!channel.WaitForStateChange(state, deadline)) return channel.GetState(false);
  }
}

}  // namespace

absl::StatusOr<std::vector<std::string>> DirectoryClient::ParseAddresses(
    std::string_view list_view) {
  absl::string_view list(list_view.data(), list_view.size());
  std::vector<std::string> addresses;
  for (absl::string_view entry : absl::StrSplit(list, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    if (entry.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid directory address list \"", list, "\": empty entry"));
    }
    if (absl::Status status = ValidateAddress(entry); !status.ok()) return status;
    addresses.emplace_back(entry);
  }
  return addresses;
}

absl::StatusOr<std::unique_ptr<DirectoryClient>> DirectoryClient::Create(
    DirectoryClientOptions options) {
  if (options.addresses.empty()) {
    return absl::InvalidArgumentError("no directory address given");
  }
  for (const std::string& address : options.addresses) {
    if (absl::Status status = ValidateAddress(address); !status.ok()) return status;
  }
  if (options.request_timeout_ms <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("request timeout must be positive, got ", options.request_timeout_ms, " ms"));
  }
  return std::unique_ptr<DirectoryClient>(new DirectoryClient(std::move(options)));
}

DirectoryClient::DirectoryClient(DirectoryClientOptions options) : options_(std::move(options)) {
  for (const std::string& address : options_.addresses) {
    auto replica = std::make_unique<Replica>();
    replica->address = address;
    grpc::ChannelArguments args;
    // A replica that restarts should be retried within a second, not after gRPC's default
    // backoff that grows to two minutes.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    replica->channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    replica->directory = Dir::NewStub(replica->channel);
    replica->leases = Leases::NewStub(replica->channel);
    replica->cluster = Cluster::NewStub(replica->channel);
    replicas_.push_back(std::move(replica));
  }
}

DirectoryClient::~DirectoryClient() = default;

template <typename Response, typename Call>
absl::StatusOr<Response> DirectoryClient::Invoke(Call call) {
  const size_t n = replicas_.size();
  const size_t first = preferred_.load();
  std::vector<std::string> failures;
  for (size_t attempt = 0; attempt < n; ++attempt) {
    const size_t index = (first + attempt) % n;
    Replica& replica = *replicas_[index];
    const auto now = std::chrono::system_clock::now();
    const auto deadline = now + std::chrono::milliseconds(options_.request_timeout_ms);
    // Each replica gets its share of the timeout to connect, so that a dead one does not eat
    // the time of the others.
    const auto connect_deadline = n == 1 ? deadline
                                         : now + std::chrono::milliseconds(std::max<int64_t>(
                                                     options_.request_timeout_ms / n, 1));
    // After a failed attempt the call below fails at once with gRPC's reason (e.g. connection
    // refused); only a connection that is still pending after its share is skipped here.
    if (WaitConnected(*replica.channel, connect_deadline) == GRPC_CHANNEL_CONNECTING && n > 1) {
      failures.push_back(absl::StrCat(replica.address, ": not connected within ",
                                      options_.request_timeout_ms / n, " ms"));
      continue;
    }
    grpc::ClientContext context;
    context.set_deadline(deadline);
    Response response;
    grpc::Status status = call(replica, &context, &response);
    if (status.ok()) {
      preferred_.store(index);
      return response;
    }
    // Only failures to reach a replica move on: anything else is the replica's answer. A
    // deadline counts as unreachable only while the connection is not up, so a slow but
    // connected replica is not asked twice to apply the same write.
    bool unreachable = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                       (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
                        replica.channel->GetState(false) != GRPC_CHANNEL_READY);
    if (!unreachable) {
      preferred_.store(index);
      return FromGrpc(status);
    }
    failures.push_back(absl::StrCat(replica.address, ": ", status.error_message()));
  }
  return absl::UnavailableError(
      absl::StrCat("cannot reach the directory (", absl::StrJoin(failures, "; "), ")"));
}

#define ZMESH_UNARY(Method, StubField, Request, Response)                              \
  absl::StatusOr<dv1::Response> DirectoryClient::Method(const dv1::Request& request) { \
    return Invoke<dv1::Response>(                                                      \
        [&](Replica& replica, grpc::ClientContext* context, dv1::Response* response) { \
          return replica.StubField->Method(context, request, response);                \
        });                                                                            \
  }

ZMESH_UNARY(RegisterNode, directory, RegisterNodeRequest, RegisterNodeResponse)
ZMESH_UNARY(DrainNode, directory, DrainNodeRequest, DrainNodeResponse)
ZMESH_UNARY(RemoveNode, directory, RemoveNodeRequest, RemoveNodeResponse)
ZMESH_UNARY(GetNode, directory, GetNodeRequest, GetNodeResponse)
ZMESH_UNARY(ListNodes, directory, ListNodesRequest, ListNodesResponse)
ZMESH_UNARY(Register, directory, RegisterRequest, RegisterResponse)
ZMESH_UNARY(Unregister, directory, UnregisterRequest, UnregisterResponse)
ZMESH_UNARY(Lookup, directory, LookupRequest, LookupResponse)
ZMESH_UNARY(ListTopics, directory, ListTopicsRequest, ListTopicsResponse)
ZMESH_UNARY(Grant, leases, GrantRequest, GrantResponse)
ZMESH_UNARY(Revoke, leases, RevokeRequest, RevokeResponse)
ZMESH_UNARY(TimeToLive, leases, TimeToLiveRequest, TimeToLiveResponse)
ZMESH_UNARY(ListLeases, leases, ListLeasesRequest, ListLeasesResponse)
ZMESH_UNARY(Status, cluster, StatusRequest, StatusResponse)
ZMESH_UNARY(ListMembers, cluster, ListMembersRequest, ListMembersResponse)

#undef ZMESH_UNARY

DirectoryClient::Dir::Stub& DirectoryClient::directory_stub() {
  return *replicas_[preferred_.load()]->directory;
}

DirectoryClient::Leases::Stub& DirectoryClient::leases_stub() {
  return *replicas_[preferred_.load()]->leases;
}

const std::string& DirectoryClient::preferred_address() const {
  return replicas_[preferred_.load()]->address;
}

absl::Status DirectoryClient::ConnectPreferred(int64_t timeout_ms) {
  Replica& replica = *replicas_[preferred_.load()];
  grpc_connectivity_state state = WaitConnected(
      *replica.channel, std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  if (state == GRPC_CHANNEL_READY) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      replica.address,
      state == GRPC_CHANNEL_CONNECTING ? ": not connected within " : ": connection failed",
      state == GRPC_CHANNEL_CONNECTING ? absl::StrCat(timeout_ms, " ms") : ""));
}

void DirectoryClient::FailOver() {
  size_t current = preferred_.load();
  // Only one of several concurrent callers that saw the same failure moves the preference.
  preferred_.compare_exchange_strong(current, (current + 1) % replicas_.size());
}

}  // namespace zmesh::client
