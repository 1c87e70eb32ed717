// zmeshctl watch: streams directory changes until SIGINT/SIGTERM, resuming after a broken
// stream from the revision after the last one delivered.
#include <algorithm>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/signals.h"
#include "grpcpp/client_context.h"

namespace zmesh::cli {

namespace dv1 = ::zmesh::directory::v1;

namespace {

constexpr int64_t kFirstRetryDelayMs = 100;
constexpr int64_t kMaxRetryDelayMs = 2000;

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

// A watch stream that ended this way is resumed; anything else ends the command. A watch never
// ends by itself, so an OK end or a cancellation we did not ask for means the replica went away.
bool Resumable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::OK ||
         status.error_code() == grpc::StatusCode::CANCELLED;
}

absl::Status Watch(Context& ctx) {
  StopSignals& signals = StopSignals::Get();
  signals.EnableGracefulStop();

  dv1::WatchRequest request;
  request.set_exchange(ctx.args.GetString("exchange"));
  request.set_topic_prefix(ctx.args.GetString("topic"));
  request.set_start_revision(ctx.args.GetInt("from"));
  request.set_include_nodes(ctx.args.GetBool("nodes"));
  request.set_initial_snapshot(ctx.args.GetBool("snapshot"));

  // Revision to resume from if the stream breaks. Without --from the watch starts "now": ask
  // the current revision first (this also reports an unreachable directory as an error rather
  // than as an endless retry).
  int64_t next_revision = request.start_revision();
  if (next_revision == 0) {
    absl::StatusOr<dv1::StatusResponse> status = ctx.client.Status({});
    if (!status.ok()) {
      if (absl::IsUnavailable(status.status())) return status.status();
    } else {
      next_revision = status->revision() + 1;
    }
  }

  int64_t retry_delay_ms = kFirstRetryDelayMs;
  for (;;) {
    bool in_snapshot = false;
    grpc::Status status;
    // A stream opened on a replica whose connection is down fails at once, even when the
    // replica is back: connect first.
    if (absl::Status connected = ctx.client.ConnectPreferred(ctx.timeout_ms); !connected.ok()) {
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string(connected.message()));
    } else {
      grpc::ClientContext call;
      signals.SetCall(&call);
      std::unique_ptr<grpc::ClientReader<dv1::WatchResponse>> reader =
          ctx.client.directory_stub().Watch(&call, request);
      dv1::WatchResponse response;
      int64_t snapshot_objects = 0;
      while (reader->Read(&response)) {
        retry_delay_ms = kFirstRetryDelayMs;
        for (const dv1::Event& event : response.events()) {
          PrintEvent(ctx, event, response.revision(), response.snapshot());
        }
        if (response.snapshot()) {
          in_snapshot = !response.snapshot_end();
          snapshot_objects += response.events_size();
          if (response.snapshot_end()) {
            ctx.err << "zmeshctl: watch: snapshot of " << snapshot_objects
                    << " objects at revision " << response.revision()
                    << ", streaming changes after it\n";
            snapshot_objects = 0;
          }
        }
        if (!in_snapshot) next_revision = std::max(next_revision, response.revision() + 1);
        ctx.out.flush();
        ctx.err.flush();
      }
      status = reader->Finish();
      signals.SetCall(nullptr);
    }
    if (signals.stopped()) return absl::OkStatus();
    if (!Resumable(status)) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    // A snapshot cut in the middle is asked for again from its start; otherwise resume right
    // after the last revision delivered, without a new snapshot.
    if (!in_snapshot) {
      request.set_start_revision(next_revision);
      request.set_initial_snapshot(false);
    }
    std::string lost = ctx.client.preferred_address();
    ctx.client.FailOver();
    ctx.err << "zmeshctl: watch: lost " << lost << " ("
            << absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()))
            << (status.error_message().empty() ? "" : ": ") << OneLine(status.error_message())
            << "); resuming from revision " << request.start_revision() << " on "
            << ctx.client.preferred_address() << "\n";
    ctx.err.flush();
    if (signals.WaitForStop(absl::Milliseconds(retry_delay_ms))) return absl::OkStatus();
    retry_delay_ms = std::min(retry_delay_ms * 2, kMaxRetryDelayMs);
  }
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
        "part of a snapshot. If the stream breaks, the watch resumes after the last revision\n"
        "it delivered (on the next replica when several are given). Exits 0 on SIGINT/SIGTERM.",
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
