// zmeshctl status: the status of every replica given with --directory, and the members.
#include <memory>
#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace zmesh::cli {

namespace dv1 = ::zmesh::directory::v1;

namespace {

std::string RoleName(dv1::Role role) {
  std::string name = dv1::Role_Name(role);
  if (absl::StartsWith(name, "ROLE_")) name = name.substr(5);
  return absl::AsciiStrToLower(name);
}

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

struct EndpointStatus {
  std::string address;
  absl::StatusOr<dv1::StatusResponse> status;
};

absl::Status ShowStatus(Context& ctx) {
  std::vector<EndpointStatus> endpoints;
  absl::Status first_error;
  for (const std::string& address : ctx.addresses) {
    client::DirectoryClientOptions options;
    options.addresses = {address};
    options.request_timeout_ms = ctx.timeout_ms;
    absl::StatusOr<std::unique_ptr<client::DirectoryClient>> one =
        client::DirectoryClient::Create(options);
    absl::StatusOr<dv1::StatusResponse> status =
        one.ok() ? (*one)->Status({}) : absl::StatusOr<dv1::StatusResponse>(one.status());
    if (!status.ok() && first_error.ok()) first_error = status.status();
    endpoints.push_back({address, std::move(status)});
  }
  // With one replica the usual one-line error says it all.
  if (endpoints.size() == 1 && !first_error.ok()) return first_error;
  // Members are optional: a replica that does not know them (or is down) just omits them.
  absl::StatusOr<dv1::ListMembersResponse> members = ctx.client.ListMembers({});

  if (ctx.format == OutputFormat::kJson) {
    google::protobuf::Struct root;
    google::protobuf::ListValue* list = (*root.mutable_fields())["endpoints"].mutable_list_value();
    for (const EndpointStatus& endpoint : endpoints) {
      google::protobuf::Struct* entry = list->add_values()->mutable_struct_value();
      (*entry->mutable_fields())["endpoint"].set_string_value(endpoint.address);
      if (endpoint.status.ok()) {
        (*entry->mutable_fields())["status"] = ToValue(*endpoint.status);
      } else {
        (*entry->mutable_fields())["error"].set_string_value(
            absl::StrCat(absl::StatusCodeToString(endpoint.status.status().code()), ": ",
                         endpoint.status.status().message()));
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
    bool first = true;
    for (const EndpointStatus& endpoint : endpoints) {
      if (!first) ctx.out << "\n";
      first = false;
      KeyValues fields;
      fields.Add("Endpoint", endpoint.address);
      if (!endpoint.status.ok()) {
        fields.Add("Error",
                   OneLine(absl::StrCat(absl::StatusCodeToString(endpoint.status.status().code()),
                                        ": ", endpoint.status.status().message())));
        ctx.out << fields.Render();
        continue;
      }
      const dv1::StatusResponse& s = *endpoint.status;
      fields.Add("Replica", absl::StrCat(s.id()));
      fields.Add("Role", RoleName(s.role()));
      fields.Add("Term", absl::StrCat(s.term()));
      fields.Add("Leader", s.leader_id() == 0 ? "none" : absl::StrCat(s.leader_id()));
      fields.Add("Revision",
                 absl::StrCat(s.revision(), " (compacted up to ", s.compact_revision(), ")"));
      fields.Add("Raft index",
                 absl::StrCat("commit ", s.commit_index(), ", applied ", s.applied_index()));
      fields.Add("Database", Bytes(s.db_size_bytes()));
      fields.Add("Nodes", absl::StrCat(s.nodes()));
      fields.Add("Registrations", absl::StrCat(s.registrations()));
      fields.Add("Leases", absl::StrCat(s.leases()));
      fields.Add("Watchers", absl::StrCat(s.watchers()));
      fields.Add("Version", OrDash(s.version()));
      ctx.out << fields.Render();
    }
    if (members.ok() && !members->members().empty()) {
      ctx.out << "\nMembers:\n";
      Table table({"ID", "ROLE", "GRPC-ADDRESS", "RAFT-ADDRESS"});
      for (const dv1::Member& member : members->members()) {
        table.AddRow({absl::StrCat(member.id()), RoleName(member.role()),
                      OrDash(member.grpc_address()), OrDash(member.raft_address())});
      }
      ctx.out << table.Render("  ");
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
  commands.push_back({{{"status"},
                       "Show the status of each directory replica and the cluster members",
                       "Asks every address given with --directory.",
                       {},
                       {}},
                      ShowStatus});
  return commands;
}

}  // namespace zmesh::cli
