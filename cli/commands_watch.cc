// zmeshctl watch: streams directory changes until SIGINT/SIGTERM, resuming after a broken
// stream from the revision after the last one delivered.
#include <memory>
#include <ostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/signals.h"
#include "controlplane/client/watcher.h"

namespace zmesh::cli {

namespace dv1 = ::zmesh::directory::v1;

namespace {

std::string EventTypeName(dv1::Event::Type type) {
  switch (type) {
    case dv1::Event::TYPE_PUT:
      return "PUT";
    case dv1::Event::TYPE_DELETE:
      return "DELETE";
    default:
      return "UNSPECIFIED";
  }
}

std::string DescribeNode(const dv1::Node& node) {
  return absl::StrCat(
      OneLine(node.name()), " host=", OneLine(node.host()), " call=", node.call_port(),
      " cast=", node.cast_port(), " fanout=", node.fanout_port(), " notify=", node.notify_port(),
      " state=", node.draining() ? "draining" : "active", " lease=", LeaseName(node.lease_id()));
}

void PrintEvent(Context& ctx, const dv1::Event& event, int64_t response_revision, bool snapshot) {
  if (ctx.format == OutputFormat::kJson) {
    // The event's own JSON with a "snapshot" member first, on one line.
    std::string json = ToJson(event, /*multiline=*/false);
    std::string rest = json.size() > 2 ? absl::StrCat(",", json.substr(1)) : "}";
    ctx.out << "{\"snapshot\":" << (snapshot ? "true" : "false") << rest << "\n";
    return;
  }
  int64_t revision = event.revision() != 0 ? event.revision() : response_revision;
  ctx.out << "rev=" << revision << " " << EventTypeName(event.type()) << " ";
  switch (event.object_case()) {
    case dv1::Event::kNode:
      ctx.out << "node " << DescribeNode(event.node());
      break;
    case dv1::Event::kRegistration:
      ctx.out << "registration " << DescribeRegistration(event.registration());
      break;
    default:
      ctx.out << "unknown-object";
      break;
  }
  if (snapshot) ctx.out << " (snapshot)";
  ctx.out << "\n";
}

absl::Status Watch(Context& ctx) {
  StopSignals& signals = StopSignals::Get();
  signals.EnableGracefulStop();

  client::WatcherOptions options;
  dv1::WatchRequest& request = options.request;
  request.set_exchange(ctx.args.GetString("exchange"));
  request.set_topic_prefix(ctx.args.GetString("topic"));
  request.set_start_revision(ctx.args.GetInt("from"));
  request.set_include_nodes(ctx.args.GetBool("nodes"));
  request.set_initial_snapshot(ctx.args.GetBool("snapshot"));
  // Without --from the watch starts "now": ask the current revision first, so that an
  // unreachable directory is an error rather than an endless retry.
  if (request.start_revision() == 0) {
    absl::StatusOr<dv1::StatusResponse> status = ctx.client.Status({});
    if (!status.ok()) {
      if (absl::IsUnavailable(status.status())) return status.status();
    } else {
      request.set_start_revision(status->revision() + 1);
    }
  }

  int64_t snapshot_objects = 0;
  options.on_response = [&](const dv1::WatchResponse& response, bool snapshot_begins) {
    if (snapshot_begins) snapshot_objects = 0;
    for (const dv1::Event& event : response.events()) {
      PrintEvent(ctx, event, response.revision(), response.snapshot());
    }
    if (response.snapshot()) {
      snapshot_objects += response.events_size();
      if (response.snapshot_end()) {
        ctx.err << "zmeshctl: watch: snapshot of " << snapshot_objects << " objects at revision "
                << response.revision() << ", streaming changes after it\n";
      }
    }
    ctx.out.flush();
    ctx.err.flush();
  };
  options.on_resume = [&](const client::WatchResume& resume) {
    ctx.err << "zmeshctl: watch: lost " << resume.lost_address << " ("
            << absl::StatusCodeToString(resume.reason.code())
            << (resume.reason.message().empty() ? "" : ": ") << OneLine(resume.reason.message())
            << "); "
            << (resume.snapshot ? "restarting the snapshot"
                                : absl::StrCat("resuming from revision ", resume.start_revision))
            << " on " << resume.next_address << "\n";
    ctx.err.flush();
  };
  options.connect_timeout_ms = ctx.timeout_ms;

  absl::StatusOr<std::unique_ptr<client::Watcher>> watcher =
      client::Watcher::Start(ctx.client, std::move(options));
  if (!watcher.ok()) return watcher.status();
  signals.SetOnStop([w = watcher->get()] { w->Cancel(); });
  absl::Status ended = (*watcher)->Wait();
  signals.SetOnStop(nullptr);
  (*watcher)->Stop();
  return signals.stopped() ? absl::OkStatus() : ended;
}

}  // namespace

std::vector<Command> WatchCommands() {
  std::vector<Command> commands;
  commands.push_back(
      {{{"watch"},
        "Stream directory changes, one line per event, until interrupted",
        "Table output prints e.g.\n"
        "  rev=12 PUT registration openstack/compute server=compute-1 kind=rpc node=node-1\n"
        "JSON output prints one event object per line, with \"snapshot\" telling whether it is\n"
        "part of a snapshot. If the stream breaks (replica gone, or this watch fell behind),\n"
        "the watch resumes after the last revision it delivered, on the next replica when\n"
        "several are given, so no change is printed twice or missed; a snapshot cut in the\n"
        "middle is printed again from its start. Exits 0 on SIGINT/SIGTERM.",
        {},
        {StringFlag("exchange", "EXCHANGE", "Only registrations of this exchange (default: all)"),
         StringFlag("topic", "PREFIX", "Only registrations whose topic starts with PREFIX"),
         IntFlag("from", "REV",
                 "Start with the changes at revision REV (default: changes after now)", 0,
                 std::numeric_limits<int64_t>::max(), "0"),
         BoolFlag("nodes", "Also print node events"),
         BoolFlag("snapshot", "Start with a snapshot of the current state")}},
       Watch});
  return commands;
}

}  // namespace zmesh::cli
