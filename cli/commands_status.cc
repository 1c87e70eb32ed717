// zmeshctl status: one row per directory replica with its Raft progress and its lag behind the
// leader, asked of each replica directly (Status is never forwarded).
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace zmesh::cli {

namespace dv1 = ::zmesh::directory::v1;

namespace {

std::string Bytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  if (bytes < 1024 * 1024) return absl::StrFormat("%.1f KiB", bytes / 1024.0);
  return absl::StrFormat("%.1f MiB", bytes / (1024.0 * 1024.0));
}

// Converts a message to a generic JSON value (same field names and encodings as ToJson).
google::protobuf::Value ToValue(const google::protobuf::Message& message) {
  google::protobuf::Value value;
  auto status = google::protobuf::util::JsonStringToMessage(ToJson(message, false),
                                                            value.mutable_struct_value());
  if (!status.ok()) value.set_string_value("unprintable");
  return value;
}

std::string ErrorText(const absl::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
}

// Endpoint of a member whose gRPC address is not known.
constexpr char kNoAddress[] = "-";

struct EndpointStatus {
  std::string address;
  // Id of the member at this address per ListMembers; 0 when unknown.
  uint64_t member_id = 0;
  absl::StatusOr<dv1::StatusResponse> status = absl::UnknownError("not asked");
};

// Asks each endpoint with an address for its own Status, all at once, each with its own
// single-address client so that no answer comes from another replica.
void QueryAll(const Context& ctx, std::vector<EndpointStatus>& endpoints) {
  std::vector<std::thread> threads;
  for (EndpointStatus& endpoint : endpoints) {
    if (endpoint.address == kNoAddress) continue;
    threads.emplace_back([&ctx, &endpoint] {
      client::DirectoryClientOptions options;
      options.addresses = {endpoint.address};
      options.request_timeout_ms = ctx.timeout_ms;
      absl::StatusOr<std::unique_ptr<client::DirectoryClient>> one =
          client::DirectoryClient::Create(options);
      endpoint.status = one.ok() ? (*one)->Status({}) : one.status();
    });
  }
  for (std::thread& thread : threads) thread.join();
}

// The endpoints to ask: the given addresses; with a single one, also every member's gRPC
// address as that replica knows them.
std::vector<EndpointStatus> Endpoints(const Context& ctx,
                                      const absl::StatusOr<dv1::ListMembersResponse>& members) {
  std::vector<EndpointStatus> endpoints;
  std::map<std::string, uint64_t> ids;
  if (members.ok()) {
    for (const dv1::Member& member : members->members()) ids[member.grpc_address()] = member.id();
  }
  auto add = [&](const std::string& address) {
    for (const EndpointStatus& endpoint : endpoints) {
      if (endpoint.address == address) return;
    }
    auto it = ids.find(address);
    endpoints.push_back({address, it != ids.end() ? it->second : 0});
  };
  for (const std::string& address : ctx.addresses) add(address);
  if (ctx.addresses.size() == 1 && members.ok()) {
    for (const dv1::Member& member : members->members()) {
      if (member.grpc_address().empty()) {
        EndpointStatus unknown{kNoAddress, member.id()};
        unknown.status = absl::NotFoundError("no gRPC address known for this member");
        endpoints.push_back(std::move(unknown));
      } else {
        add(member.grpc_address());
      }
    }
  }
  return endpoints;
}

absl::Status ShowStatus(Context& ctx) {
  // With one address the members tell where the others are; otherwise they only label the
  // replicas that do not answer. A replica that does not know them (or is down) gives none.
  absl::StatusOr<dv1::ListMembersResponse> members = ctx.client.ListMembers({});
  std::vector<EndpointStatus> endpoints = Endpoints(ctx, members);
  QueryAll(ctx, endpoints);
  // The same replica reached under two spellings of its address is shown once.
  std::vector<EndpointStatus> unique;
  for (EndpointStatus& endpoint : endpoints) {
    bool seen = false;
    for (const EndpointStatus& other : unique) {
      seen = seen || (endpoint.status.ok() && other.status.ok() &&
                      endpoint.status->id() == other.status->id());
    }
    if (!seen) unique.push_back(std::move(endpoint));
  }
  endpoints = std::move(unique);
  // With one replica the usual one-line error says it all.
  if (endpoints.size() == 1 && !endpoints[0].status.ok()) return endpoints[0].status.status();

  // Answering replicas by id, then the others in the order asked.
  std::stable_sort(endpoints.begin(), endpoints.end(),
                   [](const EndpointStatus& a, const EndpointStatus& b) {
                     if (a.status.ok() != b.status.ok()) return a.status.ok();
                     return a.status.ok() && a.status->id() < b.status->id();
                   });
  const dv1::StatusResponse* leader = nullptr;
  for (const EndpointStatus& endpoint : endpoints) {
    if (endpoint.status.ok() && endpoint.status->role() == dv1::ROLE_LEADER &&
        (leader == nullptr || endpoint.status->term() > leader->term())) {
      leader = &*endpoint.status;
    }
  }
  // How far a replica's applied state is behind what the leader has committed.
  auto lag = [&](const dv1::StatusResponse& s) -> std::optional<uint64_t> {
    if (leader == nullptr) return std::nullopt;
    return leader->commit_index() > s.applied_index() ? leader->commit_index() - s.applied_index()
                                                      : 0;
  };
  absl::Status first_error;
  for (const EndpointStatus& endpoint : endpoints) {
    if (!endpoint.status.ok() && first_error.ok()) first_error = endpoint.status.status();
  }

  if (ctx.format == OutputFormat::kJson) {
    google::protobuf::Struct root;
    if (leader != nullptr) {
      (*root.mutable_fields())["leader_id"].set_string_value(absl::StrCat(leader->id()));
    }
    google::protobuf::ListValue* list = (*root.mutable_fields())["endpoints"].mutable_list_value();
    for (const EndpointStatus& endpoint : endpoints) {
      google::protobuf::Struct* entry = list->add_values()->mutable_struct_value();
      (*entry->mutable_fields())["endpoint"].set_string_value(endpoint.address);
      if (endpoint.status.ok()) {
        (*entry->mutable_fields())["status"] = ToValue(*endpoint.status);
        if (std::optional<uint64_t> behind = lag(*endpoint.status); behind.has_value()) {
          (*entry->mutable_fields())["lag"].set_string_value(absl::StrCat(*behind));
        }
      } else {
        if (endpoint.member_id != 0) {
          (*entry->mutable_fields())["id"].set_string_value(absl::StrCat(endpoint.member_id));
        }
        (*entry->mutable_fields())["error"].set_string_value(ErrorText(endpoint.status.status()));
      }
    }
    if (members.ok()) {
      google::protobuf::Value value = ToValue(*members);
      auto it = value.struct_value().fields().find("members");
      if (it != value.struct_value().fields().end())
        (*root.mutable_fields())["members"] = it->second;
    }
    ctx.out << ToJson(root) << "\n";
  } else {
    Table table(
        {"ID", "ENDPOINT", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG", "REVISION"});
    std::vector<std::string> errors;
    for (const EndpointStatus& endpoint : endpoints) {
      if (!endpoint.status.ok()) {
        table.AddRow({endpoint.member_id != 0 ? absl::StrCat(endpoint.member_id) : "-",
                      OneLine(endpoint.address), "UNREACHABLE", "-", "-", "-", "-", "-", "-"});
        errors.push_back(absl::StrCat(OneLine(endpoint.address), ": ",
                                      OneLine(ErrorText(endpoint.status.status()))));
        continue;
      }
      const dv1::StatusResponse& s = *endpoint.status;
      std::optional<uint64_t> behind = lag(s);
      table.AddRow({absl::StrCat(s.id()), OneLine(endpoint.address), RoleName(s.role()),
                    absl::StrCat(s.term()),
                    s.leader_id() == 0 ? "none" : absl::StrCat(s.leader_id()),
                    absl::StrCat(s.commit_index()), absl::StrCat(s.applied_index()),
                    behind.has_value() ? absl::StrCat(*behind) : "-", absl::StrCat(s.revision())});
    }
    ctx.out << table.Render();
    for (const std::string& error : errors) ctx.out << "UNREACHABLE " << error << "\n";
    if (leader != nullptr) {
      ctx.out << "\nLeader " << leader->id() << " (term " << leader->term() << "): revision "
              << leader->revision() << " (compacted up to " << leader->compact_revision() << "), "
              << leader->nodes() << " nodes, " << leader->registrations() << " registrations, "
              << leader->leases() << " leases, " << leader->watchers() << " watchers, database "
              << Bytes(leader->db_size_bytes()) << ", version " << OrDash(leader->version())
              << "\n";
    } else {
      ctx.out << "\nNo leader among the replicas that answered.\n";
    }
  }
  if (!first_error.ok()) {
    return absl::Status(first_error.code(), "some replicas did not answer (see above)");
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> StatusCommands() {
  std::vector<Command> commands;
  commands.push_back(
      {{{"status"},
        "Show each directory replica's role, Raft progress and lag behind the leader",
        "Asks every address given with --directory for its own status; with a single address,\n"
        "also every member that replica knows of. LAG is the leader's commit index minus the\n"
        "replica's applied index. Replicas that do not answer are listed as UNREACHABLE with\n"
        "the error, and the exit code is then 1. JSON output has every status field.",
        {},
        {}},
       ShowStatus});
  return commands;
}

}  // namespace zmesh::cli
