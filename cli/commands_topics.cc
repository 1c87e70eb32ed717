// zmeshctl topics list | show | register | unregister
#include <ostream>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"

namespace zmesh::cli {

namespace dv1 = ::zmesh::directory::v1;

namespace {

// Topics per ListTopics page: the server's maximum, to need few round trips.
constexpr int32_t kTopicPageSize = 1000;

dv1::Kind ParseKind(const std::string& kind) {
  return kind == "notify" ? dv1::KIND_NOTIFY_LISTENER : dv1::KIND_RPC_SERVER;
}

absl::Status ListTopics(Context& ctx) {
  dv1::ListTopicsRequest request;
  *request.mutable_read() = ctx.read;
  request.set_exchange(ctx.args.GetString("exchange"));
  request.set_page_size(kTopicPageSize);
  // All pages gathered into one response, so that scripts see one list.
  dv1::ListTopicsResponse all;
  for (;;) {
    absl::StatusOr<dv1::ListTopicsResponse> page = ctx.client.ListTopics(request);
    if (!page.ok()) return page.status();
    all.mutable_topics()->MergeFrom(page->topics());
    all.set_revision(page->revision());
    if (page->next_page_token().empty()) break;
    request.set_page_token(page->next_page_token());
  }
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(all) << "\n";
    return absl::OkStatus();
  }
  if (all.topics().empty()) {
    ctx.err << "No topics found.\n";
    return absl::OkStatus();
  }
  Table table({"EXCHANGE", "TOPIC", "RPC-SERVERS", "NOTIFY-LISTENERS", "NODES"});
  for (const dv1::TopicSummary& topic : all.topics()) {
    table.AddRow({OneLine(topic.exchange()), OneLine(topic.topic()),
                  absl::StrCat(topic.rpc_servers()), absl::StrCat(topic.notify_listeners()),
                  absl::StrCat(topic.nodes())});
  }
  ctx.out << table.Render();
  return absl::OkStatus();
}

absl::Status ShowTopic(Context& ctx) {
  dv1::LookupRequest request;
  *request.mutable_read() = ctx.read;
  request.set_exchange(ctx.args.GetString("exchange"));
  request.set_topic(ctx.args.positional(0));
  request.set_server(ctx.args.GetString("server"));
  if (ctx.args.Has("kind")) request.set_kind(ParseKind(ctx.args.GetString("kind")));
  absl::StatusOr<dv1::LookupResponse> response = ctx.client.Lookup(request);
  if (!response.ok()) return response.status();
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
    return absl::OkStatus();
  }
  if (response->endpoints().empty()) {
    ctx.err << "No registrations for " << OneLine(request.exchange()) << "/"
            << OneLine(request.topic()) << ".\n";
    return absl::OkStatus();
  }
  Table table(
      {"SERVER", "KIND", "POOL", "NODE", "HOST", "CALL", "CAST", "FANOUT", "NOTIFY", "STATE"});
  for (const dv1::Endpoint& endpoint : response->endpoints()) {
    const dv1::Registration& r = endpoint.registration();
    const dv1::Node& node = endpoint.node();
    table.AddRow({OrDash(r.server()), KindName(r.kind()), OrDash(r.pool()), OneLine(r.node()),
                  OneLine(node.host()), absl::StrCat(node.call_port()),
                  absl::StrCat(node.cast_port()), absl::StrCat(node.fanout_port()),
                  absl::StrCat(node.notify_port()), node.draining() ? "draining" : "active"});
  }
  ctx.out << table.Render();
  return absl::OkStatus();
}

absl::StatusOr<dv1::Registration> RegistrationFromArgs(Context& ctx) {
  dv1::Registration registration;
  registration.set_exchange(ctx.args.GetString("exchange"));
  registration.set_topic(ctx.args.positional(0));
  registration.set_server(ctx.args.GetString("server"));
  registration.set_kind(ParseKind(ctx.args.GetString("kind")));
  registration.set_pool(ctx.args.GetString("pool"));
  registration.set_node(ctx.args.GetString("node"));
  if (!registration.pool().empty() && registration.kind() != dv1::KIND_NOTIFY_LISTENER) {
    return UsageError("--pool needs --kind notify");
  }
  return registration;
}

absl::Status RegisterTopic(Context& ctx) {
  dv1::RegisterRequest request;
  absl::StatusOr<dv1::Registration> registration = RegistrationFromArgs(ctx);
  if (!registration.ok()) return registration.status();
  *request.mutable_registration() = *std::move(registration);
  absl::StatusOr<dv1::RegisterResponse> response = ctx.client.Register(request);
  if (!response.ok()) return response.status();
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
  } else {
    ctx.out << (response->created() ? "registered " : "already registered ")
            << DescribeRegistration(request.registration()) << " (revision " << response->revision()
            << ")\n";
  }
  return absl::OkStatus();
}

absl::Status UnregisterTopic(Context& ctx) {
  dv1::UnregisterRequest request;
  absl::StatusOr<dv1::Registration> registration = RegistrationFromArgs(ctx);
  if (!registration.ok()) return registration.status();
  *request.mutable_registration() = *std::move(registration);
  absl::StatusOr<dv1::UnregisterResponse> response = ctx.client.Unregister(request);
  if (!response.ok()) return response.status();
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << ToJson(*response) << "\n";
  } else {
    ctx.out << "unregistered " << DescribeRegistration(request.registration()) << " (revision "
            << response->revision() << ")\n";
  }
  return absl::OkStatus();
}

PositionalSpec TopicArg() { return {"TOPIC", "Name of the topic"}; }

FlagSpec KindFlag(std::string default_value) {
  return ChoiceFlag("kind", "KIND", "rpc (RPC server) or notify (notification listener)",
                    {"rpc", "notify"}, std::move(default_value));
}

std::vector<FlagSpec> RegistrationFlags() {
  return {
      Required(StringFlag("node", "NODE", "Node that serves the registration")),
      StringFlag("server", "SERVER", "Server name (e.g. compute-1, host@backend)"), ExchangeFlag(),
      KindFlag("rpc"),
      StringFlag("pool", "POOL", "Notification pool (kind notify only; default pool if unset)")};
}

}  // namespace

std::vector<Command> TopicCommands() {
  std::vector<Command> commands;
  commands.push_back(
      {{{"topics", "list"},
        "List topics with their numbers of servers, listeners and nodes",
        "",
        {},
        {StringFlag("exchange", "EXCHANGE", "Only topics of this exchange (default: all)")}},
       ListTopics});
  commands.push_back(
      {{{"topics", "show"},
        "Show who serves a topic, with each node's host and ports",
        "",
        {TopicArg()},
        {ExchangeFlag(), StringFlag("server", "SERVER", "Only registrations of this server"),
         KindFlag("")}},
       ShowTopic});
  commands.push_back({{{"topics", "register"},
                       "Register a server or listener of a topic on a node (idempotent)",
                       "",
                       {TopicArg()},
                       RegistrationFlags()},
                      RegisterTopic});
  commands.push_back(
      {{{"topics", "unregister"}, "Remove a registration", "", {TopicArg()}, RegistrationFlags()},
       UnregisterTopic});
  return commands;
}

}  // namespace zmesh::cli
