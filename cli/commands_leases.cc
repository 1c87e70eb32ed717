// zmeshctl leases list | show | grant | revoke
#include <ostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/commands.h"

namespace zmesh::cli {

namespace dv1 = ::zmesh::directory::v1;

namespace {

absl::StatusOr<int64_t> LeaseIdArg(const Context& ctx) {
  const std::string& text = ctx.args.positional(0);
  int64_t id = 0;
  if (!absl::SimpleAtoi(text, &id) || id <= 0) {
    return UsageError(
        absl::StrCat("invalid lease id \"", OneLine(text), "\": expected a positive integer"));
  }
  return id;
}

std::string Remaining(int64_t remaining_ms) {
  return remaining_ms < 0 ? "unknown" : absl::StrCat(remaining_ms);
}

std::string NodeList(const google::protobuf::RepeatedPtrField<std::string>& nodes) {
  if (nodes.empty()) return "-";
  std::vector<std::string> names;
  for (const std::string& node : nodes) names.push_back(OneLine(node));
  return absl::StrJoin(names, ",");
}

absl::Status ListLeases(Context& ctx) {
  dv1::ListLeasesRequest request;
  *request.mutable_read() = ctx.read;
  absl::StatusOr<dv1::ListLeasesResponse> response = ctx.client.ListLeases(request);
  if (!response.ok()) return response.status();
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
    return absl::OkStatus();
  }
  if (response->leases().empty()) {
    ctx.err << "No leases found.\n";
    return absl::OkStatus();
  }
  Table table({"ID", "TTL-MS", "REMAINING-MS", "GRANTED", "NODES"});
  for (const dv1::Lease& lease : response->leases()) {
    table.AddRow({absl::StrCat(lease.id()), absl::StrCat(lease.ttl_ms()),
                  Remaining(lease.remaining_ms()), absl::StrCat(lease.grant_revision()),
                  NodeList(lease.nodes())});
  }
  ctx.out << table.Render();
  return absl::OkStatus();
}

absl::Status ShowLease(Context& ctx) {
  absl::StatusOr<int64_t> id = LeaseIdArg(ctx);
  if (!id.ok()) return id.status();
  dv1::TimeToLiveRequest request;
  *request.mutable_read() = ctx.read;
  request.set_id(*id);
  absl::StatusOr<dv1::TimeToLiveResponse> response = ctx.client.TimeToLive(request);
  if (!response.ok()) return response.status();
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
    return absl::OkStatus();
  }
  const dv1::Lease& lease = response->lease();
  KeyValues fields;
  fields.Add("ID", absl::StrCat(lease.id()));
  fields.Add("TTL", absl::StrCat(lease.ttl_ms(), " ms"));
  fields.Add("Remaining", lease.remaining_ms() < 0 ? "unknown (not tracked by this replica)"
                                                   : absl::StrCat(lease.remaining_ms(), " ms"));
  fields.Add("Granted", absl::StrCat("revision ", lease.grant_revision()));
  fields.Add("Nodes", NodeList(lease.nodes()));
  ctx.out << fields.Render();
  return absl::OkStatus();
}

absl::Status GrantLease(Context& ctx) {
  dv1::GrantRequest request;
  request.set_ttl_ms(ctx.args.GetInt("ttl-ms"));
  absl::StatusOr<dv1::GrantResponse> response = ctx.client.Grant(request);
  if (!response.ok()) return response.status();
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
  } else {
    ctx.out << "lease " << response->id() << " granted (ttl " << response->ttl_ms()
            << " ms, revision " << response->revision() << ")\n";
  }
  return absl::OkStatus();
}

absl::Status RevokeLease(Context& ctx) {
  absl::StatusOr<int64_t> id = LeaseIdArg(ctx);
  if (!id.ok()) return id.status();
  dv1::RevokeRequest request;
  request.set_id(*id);
  absl::StatusOr<dv1::RevokeResponse> response = ctx.client.Revoke(request);
  if (!response.ok()) return response.status();
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
  } else {
    ctx.out << "lease " << *id << " revoked, nodes deleted: " << NodeList(response->nodes_deleted())
            << " (revision " << response->revision() << ")\n";
  }
  return absl::OkStatus();
}

PositionalSpec LeaseArg() { return {"ID", "Lease id"}; }

}  // namespace

std::vector<Command> LeaseCommands() {
  std::vector<Command> commands;
  commands.push_back(
      {{{"leases", "list"}, "List the leases with their remaining time", "", {}, {}}, ListLeases});
  commands.push_back(
      {{{"leases", "show"}, "Show a lease and the nodes bound to it", "", {LeaseArg()}, {}},
       ShowLease});
  commands.push_back({{{"leases", "grant"},
                       "Grant a lease (it is not kept alive: it expires after its TTL)",
                       "",
                       {},
                       {Required(IntFlag("ttl-ms", "MS", "Time to live of the lease", 1,
                                         std::numeric_limits<int64_t>::max()))}},
                      GrantLease});
  commands.push_back({{{"leases", "revoke"},
                       "Revoke a lease now, deleting its nodes and their registrations",
                       "",
                       {LeaseArg()},
                       {}},
                      RevokeLease});
  return commands;
}

}  // namespace zmesh::cli
