// zmeshctl nodes list | show | register | drain | undrain | remove
#include <ostream>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"

namespace zmesh::cli {

namespace dv1 = ::zmesh::directory::v1;

namespace {

constexpr int64_t kMaxPort = 65535;

std::string Quoted(absl::string_view name) { return absl::StrCat("\"", OneLine(name), "\""); }

std::string NodeState(const dv1::Node& node) { return node.draining() ? "draining" : "active"; }

absl::Status ListNodes(Context& ctx) {
  dv1::ListNodesRequest request;
  *request.mutable_read() = ctx.read;
  absl::StatusOr<dv1::ListNodesResponse> response = ctx.client.ListNodes(request);
  if (!response.ok()) return response.status();
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
    return absl::OkStatus();
  }
  if (response->nodes().empty()) {
    ctx.err << "No nodes found.\n";
    return absl::OkStatus();
  }
  Table table({"NAME", "HOST", "CALL", "CAST", "FANOUT", "NOTIFY", "STATE", "LEASE"});
  for (const dv1::Node& node : response->nodes()) {
    table.AddRow({OneLine(node.name()), OneLine(node.host()), absl::StrCat(node.call_port()),
                  absl::StrCat(node.cast_port()), absl::StrCat(node.fanout_port()),
                  absl::StrCat(node.notify_port()), NodeState(node), LeaseName(node.lease_id())});
  }
  ctx.out << table.Render();
  return absl::OkStatus();
}

absl::Status ShowNode(Context& ctx) {
  dv1::GetNodeRequest request;
  *request.mutable_read() = ctx.read;
  request.set_name(ctx.args.positional(0));
  absl::StatusOr<dv1::GetNodeResponse> response = ctx.client.GetNode(request);
  if (!response.ok()) return response.status();
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
    return absl::OkStatus();
  }
  const dv1::Node& node = response->node();
  KeyValues fields;
  fields.Add("Name", OneLine(node.name()));
  fields.Add("Host", OneLine(node.host()));
  fields.Add("Ports", absl::StrCat("call=", node.call_port(), " cast=", node.cast_port(),
                                   " fanout=", node.fanout_port(), " notify=", node.notify_port()));
  fields.Add("State", NodeState(node));
  fields.Add("Lease", node.lease_id() == 0 ? "none (permanent)" : absl::StrCat(node.lease_id()));
  fields.Add("Created", absl::StrCat("revision ", node.create_revision()));
  fields.Add("Modified", absl::StrCat("revision ", node.mod_revision()));
  fields.Add("Registrations", absl::StrCat(response->registrations_size()));
  ctx.out << fields.Render();
  if (!response->registrations().empty()) {
    Table table({"EXCHANGE", "TOPIC", "SERVER", "KIND", "POOL", "REVISION"});
    for (const dv1::Registration& r : response->registrations()) {
      table.AddRow({OneLine(r.exchange()), OneLine(r.topic()), OrDash(r.server()),
                    KindName(r.kind()), OrDash(r.pool()), absl::StrCat(r.mod_revision())});
    }
    ctx.out << table.Render("  ");
  }
  return absl::OkStatus();
}

absl::Status RegisterNode(Context& ctx) {
  dv1::RegisterNodeRequest request;
  dv1::Node* node = request.mutable_node();
  node->set_name(ctx.args.positional(0));
  node->set_host(ctx.args.GetString("host"));
  node->set_call_port(static_cast<uint32_t>(ctx.args.GetInt("call-port")));
  node->set_cast_port(static_cast<uint32_t>(ctx.args.GetInt("cast-port")));
  node->set_fanout_port(static_cast<uint32_t>(ctx.args.GetInt("fanout-port")));
  node->set_notify_port(static_cast<uint32_t>(ctx.args.GetInt("notify-port")));

  int64_t lease_id = 0;
  if (ctx.args.Has("ttl-ms")) {
    dv1::GrantRequest grant;
    grant.set_ttl_ms(ctx.args.GetInt("ttl-ms"));
    absl::StatusOr<dv1::GrantResponse> granted = ctx.client.Grant(grant);
    if (!granted.ok()) return granted.status();
    lease_id = granted->id();
    request.set_lease_id(lease_id);
    if (ctx.format == OutputFormat::kTable) {
      ctx.out << "lease " << lease_id << " granted (ttl " << granted->ttl_ms()
              << " ms, not kept alive: the node and its registrations go when it expires)\n";
    }
  }
  absl::StatusOr<dv1::RegisterNodeResponse> response = ctx.client.RegisterNode(request);
  if (!response.ok()) {
    if (lease_id != 0) {
      // Do not leave behind a lease nobody knows about.
      dv1::RevokeRequest revoke;
      revoke.set_id(lease_id);
      (void)ctx.client.Revoke(revoke);
    }
    return response.status();
  }
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
  } else {
    ctx.out << "node " << Quoted(response->node().name()) << " registered (revision "
            << response->revision() << ")\n";
  }
  return absl::OkStatus();
}

absl::Status SetDraining(Context& ctx, bool draining) {
  dv1::DrainNodeRequest request;
  request.set_name(ctx.args.positional(0));
  request.set_draining(draining);
  absl::StatusOr<dv1::DrainNodeResponse> response = ctx.client.DrainNode(request);
  if (!response.ok()) return response.status();
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
  } else {
    ctx.out << "node " << Quoted(request.name()) << (draining ? " drained" : " undrained")
            << " (revision " << response->revision() << ")\n";
  }
  return absl::OkStatus();
}

absl::Status RemoveNode(Context& ctx) {
  dv1::RemoveNodeRequest request;
  request.set_name(ctx.args.positional(0));
  absl::StatusOr<dv1::RemoveNodeResponse> response = ctx.client.RemoveNode(request);
  if (!response.ok()) return response.status();
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
  } else {
    ctx.out << "node " << Quoted(request.name()) << " removed with "
            << response->registrations_removed() << " registration"
            << (response->registrations_removed() == 1 ? "" : "s") << " (revision "
            << response->revision() << ")\n";
  }
  return absl::OkStatus();
}

PositionalSpec NodeArg() { return {"NODE", "Name of the node"}; }

}  // namespace

std::vector<Command> NodeCommands() {
  std::vector<Command> commands;
  commands.push_back({{{"nodes", "list"}, "List the nodes (node proxies)", "", {}, {}}, ListNodes});
  commands.push_back(
      {{{"nodes", "show"}, "Show a node and the registrations it serves", "", {NodeArg()}, {}},
       ShowNode});
  commands.push_back(
      {{{"nodes", "register"},
        "Register (or replace) a node",
        "Without --ttl-ms the node is permanent. With --ttl-ms a lease of that TTL is granted,\n"
        "the node is bound to it and the lease id is printed; the lease is NOT kept alive, so\n"
        "after the TTL the node and all its registrations disappear (a way to try lease\n"
        "expiry by hand).",
        {NodeArg()},
        {Required(StringFlag("host", "HOST", "Host name or address other nodes reach it at")),
         IntFlag("call-port", "PORT", "CALL port", 1, kMaxPort, "9501"),
         IntFlag("cast-port", "PORT", "CAST port", 1, kMaxPort, "9504"),
         IntFlag("fanout-port", "PORT", "FANOUT port", 1, kMaxPort, "9502"),
         IntFlag("notify-port", "PORT", "NOTIFY port", 1, kMaxPort, "9503"),
         IntFlag("ttl-ms", "MS", "Bind the node to a new lease with this TTL (not kept alive)", 1,
                 std::numeric_limits<int64_t>::max())}},
       RegisterNode});
  commands.push_back({{{"nodes", "drain"},
                       "Drain a node: no new topic-only traffic (still reachable by server name)",
                       "",
                       {NodeArg()},
                       {}},
                      [](Context& ctx) { return SetDraining(ctx, true); }});
  commands.push_back({{{"nodes", "undrain"}, "Undo drain", "", {NodeArg()}, {}},
                      [](Context& ctx) { return SetDraining(ctx, false); }});
  commands.push_back(
      {{{"nodes", "remove"}, "Remove a node and all its registrations", "", {NodeArg()}, {}},
       RemoveNode});
  return commands;
}

}  // namespace zmesh::cli
