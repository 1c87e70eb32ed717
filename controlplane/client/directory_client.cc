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

// How often a known leader is confirmed, and how soon an unknown one is asked for again.
constexpr absl::Duration kLeaderRefresh = absl::Seconds(10);
constexpr absl::Duration kLeaderRetry = absl::Seconds(1);
// Longest wait for the Status call that learns the leader.
constexpr int64_t kLeaderStatusTimeoutMs = 1000;

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
  for (const std::string& address : options_.addresses) replicas_.push_back(MakeReplica(address));
}

DirectoryClient::~DirectoryClient() = default;

std::shared_ptr<DirectoryClient::Replica> DirectoryClient::MakeReplica(
    const std::string& address) const {
  auto replica = std::make_shared<Replica>();
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
  return replica;
}

template <typename Response, typename Call>
absl::StatusOr<Response> DirectoryClient::Attempt(Replica& replica, int64_t connect_timeout_ms,
                                                  Call& call, bool* unreachable) {
  *unreachable = false;
  const auto now = std::chrono::system_clock::now();
  const auto deadline = now + std::chrono::milliseconds(options_.request_timeout_ms);
  const bool shared = connect_timeout_ms < options_.request_timeout_ms;
  // Each replica gets its share of the timeout to connect, so that a dead one does not eat the
  // time of the others.
  const auto connect_deadline =
      shared ? now + std::chrono::milliseconds(connect_timeout_ms) : deadline;
  // After a failed attempt the call below fails at once with gRPC's reason (e.g. connection
  // refused); only a connection that is still pending after its share is skipped here.
  if (WaitConnected(*replica.channel, connect_deadline) == GRPC_CHANNEL_CONNECTING && shared) {
    *unreachable = true;
    return absl::UnavailableError(
        absl::StrCat(replica.address, ": not connected within ", connect_timeout_ms, " ms"));
  }
  grpc::ClientContext context;
  context.set_deadline(deadline);
  Response response;
  grpc::Status status = call(replica, &context, &response);
  if (status.ok()) return response;
  // Only failures to reach a replica move on: anything else is the replica's answer. A deadline
  // counts as unreachable only while the connection is not up, so a slow but connected replica
  // is not asked twice to apply the same write.
  *unreachable = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                 (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
                  replica.channel->GetState(false) != GRPC_CHANNEL_READY);
  if (*unreachable) {
    return absl::UnavailableError(absl::StrCat(replica.address, ": ", status.error_message()));
  }
  return FromGrpc(status);
}

template <typename Response, typename Call>
absl::StatusOr<Response> DirectoryClient::Invoke(CallKind kind, Call call) {
  const size_t n = replicas_.size();
  std::vector<std::string> failures;
  if (kind == CallKind::kWrite && options_.prefer_leader) {
    std::shared_ptr<Replica> leader;
    {
      absl::MutexLock lock(&leader_mu_);
      leader = leader_;
    }
    if (leader != nullptr) {
      bool unreachable = false;
      absl::StatusOr<Response> result = Attempt<Response>(
          *leader, std::max<int64_t>(options_.request_timeout_ms / static_cast<int64_t>(n + 1), 1),
          call, &unreachable);
      if (!unreachable) {
        if (result.ok()) MaybeLearnLeader(*leader);
        return result;
      }
      ForgetLeader(*leader);
      failures.push_back(absl::StrCat(result.status().message()));
    }
  }
  const size_t first = preferred_.load();
  for (size_t attempt = 0; attempt < n; ++attempt) {
    const size_t index = (first + attempt) % n;
    Replica& replica = *replicas_[index];
    bool unreachable = false;
    absl::StatusOr<Response> result = Attempt<Response>(
        replica,
        n == 1 ? options_.request_timeout_ms
               : std::max<int64_t>(options_.request_timeout_ms / static_cast<int64_t>(n), 1),
        call, &unreachable);
    if (!unreachable) {
      preferred_.store(index);
      if (result.ok() && options_.prefer_leader) MaybeLearnLeader(replica);
      return result;
    }
    failures.push_back(absl::StrCat(result.status().message()));
  }
  return absl::UnavailableError(
      absl::StrCat("cannot reach the directory (", absl::StrJoin(failures, "; "), ")"));
}

void DirectoryClient::MaybeLearnLeader(Replica& answered) {
  const absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&leader_mu_);
    if (now - leader_checked_ < (leader_ != nullptr ? kLeaderRefresh : kLeaderRetry)) return;
    leader_checked_ = now;
  }
  grpc::ClientContext context;
  context.set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(std::min(options_.request_timeout_ms, kLeaderStatusTimeoutMs)));
  dv1::StatusResponse status;
  if (!answered.cluster->Status(&context, dv1::StatusRequest(), &status).ok()) return;
  const std::string& address = status.leader_grpc_address();
  absl::MutexLock lock(&leader_mu_);
  if (address.empty() || !ValidateAddress(address).ok()) {
    leader_.reset();
    return;
  }
  if (leader_ != nullptr && leader_->address == address) return;
  for (const auto& replica : replicas_) {
    if (replica->address == address) {
      leader_ = replica;
      return;
    }
  }
  for (const auto& replica : extra_replicas_) {
    if (replica->address == address) {
      leader_ = replica;
      return;
    }
  }
  extra_replicas_.push_back(MakeReplica(address));
  leader_ = extra_replicas_.back();
}

void DirectoryClient::ForgetLeader(const Replica& leader) {
  absl::MutexLock lock(&leader_mu_);
  if (leader_.get() == &leader) leader_.reset();
  // Ask again after the next successful call (rate-limited), as the cluster elects a new one.
  leader_checked_ = absl::InfinitePast();
}

std::string DirectoryClient::leader_address() const {
  absl::MutexLock lock(&leader_mu_);
  return leader_ != nullptr ? leader_->address : "";
}

#define ZMESH_UNARY(Kind, Method, StubField, Request, Response)                        \
  absl::StatusOr<dv1::Response> DirectoryClient::Method(const dv1::Request& request) { \
    return Invoke<dv1::Response>(                                                      \
        CallKind::Kind,                                                                \
        [&](Replica& replica, grpc::ClientContext* context, dv1::Response* response) { \
          return replica.StubField->Method(context, request, response);                \
        });                                                                            \
  }

ZMESH_UNARY(kWrite, RegisterNode, directory, RegisterNodeRequest, RegisterNodeResponse)
ZMESH_UNARY(kWrite, DrainNode, directory, DrainNodeRequest, DrainNodeResponse)
ZMESH_UNARY(kWrite, RemoveNode, directory, RemoveNodeRequest, RemoveNodeResponse)
ZMESH_UNARY(kWrite, Register, directory, RegisterRequest, RegisterResponse)
ZMESH_UNARY(kWrite, Unregister, directory, UnregisterRequest, UnregisterResponse)
ZMESH_UNARY(kWrite, Grant, leases, GrantRequest, GrantResponse)
ZMESH_UNARY(kWrite, Revoke, leases, RevokeRequest, RevokeResponse)
ZMESH_UNARY(kWrite, AddMember, cluster, AddMemberRequest, AddMemberResponse)
ZMESH_UNARY(kWrite, RemoveMember, cluster, RemoveMemberRequest, RemoveMemberResponse)
ZMESH_UNARY(kWrite, TransferLeadership, cluster, TransferLeadershipRequest,
            TransferLeadershipResponse)
ZMESH_UNARY(kRead, GetNode, directory, GetNodeRequest, GetNodeResponse)
ZMESH_UNARY(kRead, ListNodes, directory, ListNodesRequest, ListNodesResponse)
ZMESH_UNARY(kRead, Lookup, directory, LookupRequest, LookupResponse)
ZMESH_UNARY(kRead, ListTopics, directory, ListTopicsRequest, ListTopicsResponse)
ZMESH_UNARY(kRead, TimeToLive, leases, TimeToLiveRequest, TimeToLiveResponse)
ZMESH_UNARY(kRead, ListLeases, leases, ListLeasesRequest, ListLeasesResponse)
ZMESH_UNARY(kRead, Status, cluster, StatusRequest, StatusResponse)
ZMESH_UNARY(kRead, ListMembers, cluster, ListMembersRequest, ListMembersResponse)

#undef ZMESH_UNARY

const std::string& DirectoryClient::address(size_t index) const {
  return replicas_.at(index)->address;
}

DirectoryClient::Dir::Stub& DirectoryClient::directory_stub(size_t index) {
  return *replicas_.at(index)->directory;
}

DirectoryClient::Leases::Stub& DirectoryClient::leases_stub(size_t index) {
  return *replicas_.at(index)->leases;
}

absl::Status DirectoryClient::Connect(size_t index, int64_t timeout_ms) {
  Replica& replica = *replicas_.at(index);
  grpc_connectivity_state state = WaitConnected(
      *replica.channel, std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  if (state == GRPC_CHANNEL_READY) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      replica.address,
      state == GRPC_CHANNEL_CONNECTING ? ": not connected within " : ": connection failed",
      state == GRPC_CHANNEL_CONNECTING ? absl::StrCat(timeout_ms, " ms") : ""));
}

DirectoryClient::Dir::Stub& DirectoryClient::directory_stub() {
  return directory_stub(preferred_.load());
}

DirectoryClient::Leases::Stub& DirectoryClient::leases_stub() {
  return leases_stub(preferred_.load());
}

const std::string& DirectoryClient::preferred_address() const { return address(preferred_.load()); }

absl::Status DirectoryClient::ConnectPreferred(int64_t timeout_ms) {
  return Connect(preferred_.load(), timeout_ms);
}

void DirectoryClient::FailOver() {
  size_t current = preferred_.load();
  // Only one of several concurrent callers that saw the same failure moves the preference.
  preferred_.compare_exchange_strong(current, (current + 1) % replicas_.size());
}

}  // namespace zmesh::client
