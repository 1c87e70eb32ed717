// zmeshctl members list | add | remove, leader transfer: the Raft membership of the directory.
#include <ostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"

namespace zmesh::cli {

namespace dv1 = ::zmesh::directory::v1;

namespace {

absl::StatusOr<uint64_t> ReplicaIdArg(const Context& ctx, size_t index) {
  const std::string& text = ctx.args.positional(index);
  uint64_t id = 0;
  if (!absl::SimpleAtoi(text, &id) || id == 0) {
    return UsageError(
        absl::StrCat("invalid replica id \"", OneLine(text), "\": expected a positive integer"));
  }
  return id;
}

std::string MembersTable(const google::protobuf::RepeatedPtrField<dv1::Member>& members) {
  Table table({"ID", "RAFT-ADDRESS", "GRPC-ADDRESS", "VOTER", "ROLE"});
  for (const dv1::Member& member : members) {
    table.AddRow({absl::StrCat(member.id()), OrDash(member.raft_address()),
                  OrDash(member.grpc_address()), member.voter() ? "yes" : "no",
                  RoleName(member.role())});
  }
  return table.Render();
}

absl::Status ListMembers(Context& ctx) {
  absl::StatusOr<dv1::ListMembersResponse> response = ctx.client.ListMembers({});
  if (!response.ok()) return response.status();
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
  } else {
    ctx.out << MembersTable(response->members());
  }
  return absl::OkStatus();
}

absl::Status AddMember(Context& ctx) {
  absl::StatusOr<uint64_t> id = ReplicaIdArg(ctx, 0);
  if (!id.ok()) return id.status();
  dv1::AddMemberRequest request;
  request.set_id(*id);
  request.set_raft_address(ctx.args.positional(1));
  absl::StatusOr<dv1::AddMemberResponse> response = ctx.client.AddMember(request);
  if (!response.ok()) return WithContext(response.status(), absl::StrCat("adding member ", *id));
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
  } else {
    ctx.out << "member " << *id << " added at " << OneLine(request.raft_address())
            << " (it becomes a voter once it has caught up)\n"
            << MembersTable(response->members());
  }
  return absl::OkStatus();
}

absl::Status RemoveMember(Context& ctx) {
  absl::StatusOr<uint64_t> id = ReplicaIdArg(ctx, 0);
  if (!id.ok()) return id.status();
  dv1::RemoveMemberRequest request;
  request.set_id(*id);
  absl::StatusOr<dv1::RemoveMemberResponse> response = ctx.client.RemoveMember(request);
  if (!response.ok()) {
    return WithContext(response.status(), absl::StrCat("removing member ", *id));
  }
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
  } else {
    ctx.out << "member " << *id << " removed\n" << MembersTable(response->members());
  }
  return absl::OkStatus();
}

absl::Status TransferLeadership(Context& ctx) {
  dv1::TransferLeadershipRequest request;
  if (!ctx.args.positionals().empty()) {
    absl::StatusOr<uint64_t> id = ReplicaIdArg(ctx, 0);
    if (!id.ok()) return id.status();
    request.set_id(*id);
  }
  absl::StatusOr<dv1::TransferLeadershipResponse> response = ctx.client.TransferLeadership(request);
  if (!response.ok()) return WithContext(response.status(), "transferring leadership");
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
    return absl::OkStatus();
  }
  // The address helps the operator; the transfer already succeeded if it cannot be found.
  std::string where;
  if (absl::StatusOr<dv1::ListMembersResponse> members = ctx.client.ListMembers({}); members.ok()) {
    for (const dv1::Member& member : members->members()) {
      if (member.id() == response->leader_id() && !member.grpc_address().empty()) {
        where = absl::StrCat(" (", OneLine(member.grpc_address()), ")");
      }
    }
  }
  ctx.out << "leader is now " << response->leader_id() << where << "\n";
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> ClusterCommands() {
  std::vector<Command> commands;
  commands.push_back({{{"members", "list"},
                       "List the directory replicas with their addresses, voting right and role",
                       "ROLE is as the answering replica sees it (leader, or follower for the\n"
                       "others); VOTER is no for a replica still catching up after being added.",
                       {},
                       {}},
                      ListMembers});
  commands.push_back(
      {{{"members", "add"},
        "Add a replica started with --join to the cluster",
        "The new replica is a non-voting member until it has caught up with the log, then a\n"
        "voter. Run on any replica; the leader applies the change.",
        {{"ID", "Id of the new replica (its --id)"},
         {"RAFT_ADDR", "HOST:PORT it listens on for Raft (its --raft-listen)"}},
        {}},
       AddMember});
  commands.push_back(
      {{{"members", "remove"},
        "Remove a replica from the cluster",
        "Removing the leader makes the others elect a new one. Stop the removed replica after.",
        {{"ID", "Id of the replica"}},
        {}},
       RemoveMember});
  commands.push_back({{{"leader", "transfer"},
                       "Hand leadership to another voter and print the new leader",
                       "Without ID the leader picks the most up-to-date voter.",
                       {{"ID", "Id of the replica to hand leadership to", /*optional=*/true}},
                       {}},
                      TransferLeadership});
  return commands;
}

}  // namespace zmesh::cli
