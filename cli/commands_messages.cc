// zmeshctl call | cast | fanout | notify | serve | listen: messages through the local zmesh-proxy
// (libzmesh), like `nats req` / `nats sub`, for operators debugging a live system. These commands
// do not talk to the directory: the proxy at --ipc-dir resolves targets for them.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/signals.h"
#include "common/flags.h"
#include "zmesh/notification_listener.h"
#include "zmesh/server.h"
#include "zmesh/transport.h"
#include "zmesh/types.h"

namespace zmesh::cli {

namespace {

constexpr char kDefaultIpcDir[] = "/run/zmesh";
constexpr char kIpcDirEnv[] = "ZMESH_IPC_DIR";

// Length of the well-formed, printable UTF-8 sequence of 2 to 4 bytes at the start of `bytes`;
// 0 when there is none (invalid UTF-8, or a C1 control character U+0080..U+009F).
size_t PrintableUtf8Length(absl::string_view bytes) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  auto continuation = [&](size_t i, unsigned char low, unsigned char high) {
    return i < bytes.size() && byte(i) >= low && byte(i) <= high;
  };
  if (bytes.empty()) return 0;
  unsigned char lead = byte(0);
  if (lead == 0xc2) return continuation(1, 0xa0, 0xbf) ? 2 : 0;  // skips the C1 controls
  if (lead >= 0xc3 && lead <= 0xdf) return continuation(1, 0x80, 0xbf) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    unsigned char low = lead == 0xe0 ? 0xa0 : 0x80;   // no overlong forms
    unsigned char high = lead == 0xed ? 0x9f : 0xbf;  // no surrogates
    return continuation(1, low, high) && continuation(2, 0x80, 0xbf) ? 3 : 0;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    unsigned char low = lead == 0xf0 ? 0x90 : 0x80;
    unsigned char high = lead == 0xf4 ? 0x8f : 0xbf;  // nothing above U+10FFFF
    return continuation(1, low, high) && continuation(2, 0x80, 0xbf) && continuation(3, 0x80, 0xbf)
               ? 4
               : 0;
  }
  return 0;
}

// A payload as one line of text: printable ASCII and printable UTF-8 as they are, backslash
// doubled, \n \r \t spelled so, every other byte as \xNN. Unambiguous: the bytes can be recovered.
std::string PayloadText(absl::string_view payload) {
  std::string text;
  text.reserve(payload.size());
  size_t i = 0;
  while (i < payload.size()) {
    unsigned char c = static_cast<unsigned char>(payload[i]);
    if (c == '\\') {
      text += "\\\\";
    } else if (c == '\n') {
      text += "\\n";
    } else if (c == '\r') {
      text += "\\r";
    } else if (c == '\t') {
      text += "\\t";
    } else if (c >= 0x20 && c < 0x7f) {
      text += static_cast<char>(c);
    } else if (size_t n = PrintableUtf8Length(payload.substr(i)); n > 0) {
      text.append(payload.data() + i, n);
      i += n;
      continue;
    } else {
      absl::StrAppendFormat(&text, "\\x%02x", c);
    }
    ++i;
  }
  return text;
}

// A payload as JSON members: "payload" (the text, bytes that are not UTF-8 replaced by U+FFFD)
// and "payload_base64" (the exact bytes).
std::string PayloadJson(absl::string_view payload) {
  std::string text;
  size_t i = 0;
  while (i < payload.size()) {
    unsigned char c = static_cast<unsigned char>(payload[i]);
    size_t n = c < 0x80 ? 1 : PrintableUtf8Length(payload.substr(i));
    if (n == 0 && c == 0xc2 && i + 1 < payload.size()) {
      // A C1 control character is valid UTF-8: keep it (JSON allows it).
      unsigned char next = static_cast<unsigned char>(payload[i + 1]);
      if (next >= 0x80 && next <= 0x9f) n = 2;
    }
    if (n == 0) {
      text += "\xef\xbf\xbd";  // U+FFFD
      ++i;
    } else {
      text.append(payload.data() + i, n);
      i += n;
    }
  }
  return absl::StrCat("\"payload\":", JsonQuote(text),
                      ",\"payload_base64\":", JsonQuote(absl::Base64Escape(payload)));
}

std::string TargetJson(absl::string_view exchange, absl::string_view topic,
                       absl::string_view server) {
  return absl::StrCat("{\"exchange\":", JsonQuote(exchange), ",\"topic\":", JsonQuote(topic),
                      ",\"server\":", JsonQuote(server), "}");
}

// "openstack/compute" or "openstack/compute server=compute-1".
std::string DescribeTarget(const Target& target) {
  std::string text = absl::StrCat(OneLine(target.exchange), "/", OneLine(target.topic));
  if (!target.server.empty()) absl::StrAppend(&text, " server=", OneLine(target.server));
  return text;
}

std::string IpcDir(const ParsedArgs& args) {
  if (args.Has("ipc-dir")) return args.GetString("ipc-dir");
  if (const char* env = std::getenv(kIpcDirEnv); env != nullptr && *env != '\0') return env;
  return kDefaultIpcDir;
}

// Connects to the proxy at --ipc-dir. A missing control socket is reported at once, naming the
// place looked at, instead of waiting for the connect timeout.
absl::StatusOr<std::unique_ptr<Transport>> Connect(Context& ctx, absl::string_view description) {
  std::string ipc_dir = IpcDir(ctx.args);
  std::string socket = absl::StrCat(ipc_dir, "/control.sock");
  struct stat info;
  if (stat(socket.c_str(), &info) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "no zmesh-proxy at ", ipc_dir, ": ", socket, ": ", std::strerror(errno),
        " (is zmesh-proxy running? point --ipc-dir or $", kIpcDirEnv, " at its IPC directory)"));
  }
  TransportOptions options;
  options.ipc_dir = ipc_dir;
  options.description = absl::StrCat("zmeshctl ", description);
  options.connect_timeout_ms = ctx.timeout_ms;
  absl::StatusOr<std::unique_ptr<Transport>> transport = Transport::Create(std::move(options));
  if (!transport.ok()) {
    return WithContext(transport.status(),
                       absl::StrCat("connecting to the zmesh-proxy at ", ipc_dir));
  }
  return transport;
}

// INVALID_ARGUMENT from libzmesh is about what the user typed (a bad name, a payload over the
// limit): a usage error. Anything else is a transport or server error.
absl::Status SendError(const absl::Status& status, absl::string_view what) {
  if (absl::IsInvalidArgument(status)) return UsageError(status.message());
  return WithContext(status, what);
}

absl::Status RequireName(absl::string_view value, absl::string_view what) {
  if (value.empty()) return UsageError(absl::StrCat(what, " must not be empty"));
  return absl::OkStatus();
}

Target TargetFromArgs(const ParsedArgs& args, bool with_server) {
  Target target;
  target.exchange = args.GetString("exchange");
  target.topic = args.positional(0);
  if (with_server) target.server = args.GetString("server");
  return target;
}

absl::Status Call(Context& ctx) {
  Target target = TargetFromArgs(ctx.args, /*with_server=*/true);
  if (absl::Status s = RequireName(target.topic, "TOPIC"); !s.ok()) return s;
  CallOptions options;
  options.timeout_ms = ctx.timeout_ms;
  options.at_least_once = ctx.args.GetBool("at-least-once");
  absl::StatusOr<std::unique_ptr<Transport>> transport = Connect(ctx, "call");
  if (!transport.ok()) return transport.status();
  absl::StatusOr<CallResult> result = (*transport)->Call(target, ctx.args.positional(1), options);
  (*transport)->Close();
  if (!result.ok()) {
    return SendError(result.status(), absl::StrCat("calling ", DescribeTarget(target)));
  }
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << "{" << PayloadJson(result->payload)
            << ",\"remote_error\":" << (result->remote_error ? "true" : "false") << "}\n";
  } else if (!result->remote_error) {
    ctx.out << PayloadText(result->payload) << "\n";
  }
  if (result->remote_error) {
    // The handler raised an error: not a failed call, but the command did not get its answer.
    return absl::UnknownError(
        absl::StrCat("the server of ", DescribeTarget(target),
                     " answered with an error: ", PayloadText(result->payload)));
  }
  return absl::OkStatus();
}

// Prints the outcome of a one-way send.
void PrintSent(Context& ctx, absl::string_view pattern, const std::string& to,
               absl::string_view target_json, size_t bytes, bool acknowledged) {
  if (ctx.format == OutputFormat::kJson) {
    ctx.out << "{\"pattern\":" << JsonQuote(pattern) << ",\"target\":" << target_json
            << ",\"bytes\":" << bytes << ",\"acknowledged\":" << (acknowledged ? "true" : "false")
            << "}\n";
    return;
  }
  ctx.out << pattern << " to " << to << ": " << (acknowledged ? "acknowledged" : "sent") << " ("
          << bytes << " bytes)\n";
}

absl::Status Cast(Context& ctx) {
  Target target = TargetFromArgs(ctx.args, /*with_server=*/true);
  if (absl::Status s = RequireName(target.topic, "TOPIC"); !s.ok()) return s;
  CastOptions options;
  options.acknowledged = ctx.args.GetBool("ack");
  options.timeout_ms = ctx.timeout_ms;
  options.ack_timeout_ms = std::min<int64_t>(options.ack_timeout_ms, ctx.timeout_ms);
  absl::StatusOr<std::unique_ptr<Transport>> transport = Connect(ctx, "cast");
  if (!transport.ok()) return transport.status();
  const std::string& payload = ctx.args.positional(1);
  absl::Status sent = (*transport)->Cast(target, payload, options);
  // Close drains what is queued (up to 1 s) before the process exits.
  (*transport)->Close();
  if (!sent.ok()) return SendError(sent, absl::StrCat("casting to ", DescribeTarget(target)));
  PrintSent(ctx, "cast", DescribeTarget(target),
            TargetJson(target.exchange, target.topic, target.server), payload.size(),
            options.acknowledged);
  return absl::OkStatus();
}

absl::Status Fanout(Context& ctx) {
  Target target = TargetFromArgs(ctx.args, /*with_server=*/false);
  if (absl::Status s = RequireName(target.topic, "TOPIC"); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<Transport>> transport = Connect(ctx, "fanout");
  if (!transport.ok()) return transport.status();
  const std::string& payload = ctx.args.positional(1);
  absl::Status sent = (*transport)->Fanout(target, payload);
  (*transport)->Close();
  if (!sent.ok()) {
    return SendError(sent, absl::StrCat("fanning out to ", DescribeTarget(target)));
  }
  PrintSent(ctx, "fanout", DescribeTarget(target), TargetJson(target.exchange, target.topic, ""),
            payload.size(), false);
  return absl::OkStatus();
}

NotifyTarget NotifyTargetFromArgs(const ParsedArgs& args) {
  NotifyTarget target;
  target.exchange = args.GetString("exchange");
  target.topic = args.positional(0);
  target.priority = args.GetString("priority");
  return target;
}

std::string DescribeNotifyTarget(const NotifyTarget& target) {
  return absl::StrCat(OneLine(target.exchange), "/", OneLine(target.topic), ".",
                      OneLine(target.priority));
}

absl::Status Notify(Context& ctx) {
  NotifyTarget target = NotifyTargetFromArgs(ctx.args);
  if (absl::Status s = RequireName(target.topic, "TOPIC"); !s.ok()) return s;
  if (absl::Status s = RequireName(target.priority, "--priority"); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<Transport>> transport = Connect(ctx, "notify");
  if (!transport.ok()) return transport.status();
  const std::string& payload = ctx.args.positional(1);
  absl::Status sent = (*transport)->Notify(target, payload);
  (*transport)->Close();
  if (!sent.ok()) {
    return SendError(sent, absl::StrCat("notifying ", DescribeNotifyTarget(target)));
  }
  PrintSent(ctx, "notification", DescribeNotifyTarget(target),
            TargetJson(target.exchange, absl::StrCat(target.topic, ".", target.priority), ""),
            payload.size(), false);
  return absl::OkStatus();
}

std::string KindWord(MessageKind kind) {
  switch (kind) {
    case MessageKind::kCall:
      return "call";
    case MessageKind::kCast:
      return "cast";
    case MessageKind::kFanout:
      return "fanout";
    case MessageKind::kNotify:
      return "notification";
  }
  return "message";
}

// Prints the messages a serve or listen command receives, one line each, flushed at once so
// that a reader of a pipe or file sees every message as it arrives. Thread-safe.
class MessagePrinter {
 public:
  explicit MessagePrinter(Context& ctx) : ctx_(ctx) {}

  void Ready(const std::string& text, const std::string& json) {
    absl::MutexLock lock(&mu_);
    if (ctx_.format == OutputFormat::kJson) {
      ctx_.out << "{\"ready\":true," << json << "}" << std::endl;
    } else {
      ctx_.out << text << std::endl;
    }
  }

  void Message(const Request& request) {
    absl::MutexLock lock(&mu_);
    if (ctx_.format == OutputFormat::kJson) {
      ctx_.out << "{\"kind\":" << JsonQuote(KindWord(request.kind))
               << ",\"sender\":" << JsonQuote(request.sender)
               << ",\"message_id\":" << request.message_id << ",\"target\":"
               << TargetJson(request.target.exchange, request.target.topic, request.target.server)
               << "," << PayloadJson(request.payload) << "}" << std::endl;
    } else {
      ctx_.out << KindWord(request.kind) << " from " << OneLine(request.sender) << ": "
               << PayloadText(request.payload) << std::endl;
    }
  }

 private:
  Context& ctx_;
  absl::Mutex mu_;  // one line at a time
};

// Blocks until SIGINT or SIGTERM.
void WaitForStopSignal() {
  while (!StopSignals::Get().WaitForStop(absl::Hours(1))) {
  }
}

absl::Status Serve(Context& ctx) {
  StopSignals::Get().EnableGracefulStop();
  Target target = TargetFromArgs(ctx.args, /*with_server=*/true);
  if (target.server.empty()) target.server = zmesh::HostName();
  if (absl::Status s = RequireName(target.topic, "TOPIC"); !s.ok()) return s;
  const bool echo = ctx.args.GetBool("echo");
  const bool fail = ctx.args.Has("fail");
  const bool reply = ctx.args.Has("reply");
  if (echo + fail + reply > 1) return UsageError("give at most one of --echo, --reply and --fail");
  const std::string answer = ctx.args.GetString(fail ? "fail" : "reply");

  absl::StatusOr<std::unique_ptr<Transport>> transport = Connect(ctx, "serve");
  if (!transport.ok()) return transport.status();
  MessagePrinter printer(ctx);
  zmesh::Handler handler = [&](const Request& request, Responder& responder) {
    printer.Message(request);
    if (request.kind != MessageKind::kCall) return;
    if (fail) {
      responder.Fail(answer);
    } else {
      responder.Reply(echo ? request.payload : answer);
    }
  };
  ServerOptions options;
  options.threads = 1;  // lines in the order messages arrive
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Start(**transport, target, std::move(handler), options);
  if (!server.ok())
    return SendError(server.status(), absl::StrCat("serving ", DescribeTarget(target)));
  const std::string node = (*transport)->node_name();
  printer.Ready(
      absl::StrCat("ready: serving ", DescribeTarget(target), " on node ", OneLine(node),
                   " (stop with Ctrl-C)"),
      absl::StrCat("\"target\":", TargetJson(target.exchange, target.topic, target.server),
                   ",\"node\":", JsonQuote(node)));
  WaitForStopSignal();
  (*server)->Stop();
  (*transport)->Close();
  return absl::OkStatus();
}

absl::Status Listen(Context& ctx) {
  StopSignals::Get().EnableGracefulStop();
  NotifyTarget target = NotifyTargetFromArgs(ctx.args);
  if (absl::Status s = RequireName(target.topic, "TOPIC"); !s.ok()) return s;
  if (absl::Status s = RequireName(target.priority, "--priority"); !s.ok()) return s;
  ListenerOptions options;
  options.pool = ctx.args.GetString("pool");
  options.threads = 1;  // lines in the order notifications arrive

  absl::StatusOr<std::unique_ptr<Transport>> transport = Connect(ctx, "listen");
  if (!transport.ok()) return transport.status();
  MessagePrinter printer(ctx);
  absl::StatusOr<std::unique_ptr<NotificationListener>> listener = NotificationListener::Start(
      **transport, {target}, [&](const Request& request) { printer.Message(request); }, options);
  if (!listener.ok()) {
    return SendError(listener.status(),
                     absl::StrCat("listening on ", DescribeNotifyTarget(target)));
  }
  const std::string node = (*transport)->node_name();
  std::string pool = options.pool.empty() ? "the default pool" : "pool " + OneLine(options.pool);
  printer.Ready(absl::StrCat("ready: listening on ", DescribeNotifyTarget(target), " in ", pool,
                             " on node ", OneLine(node), " (stop with Ctrl-C)"),
                absl::StrCat("\"target\":",
                             TargetJson(target.exchange,
                                        absl::StrCat(target.topic, ".", target.priority), ""),
                             ",\"pool\":", JsonQuote(options.pool), ",\"node\":", JsonQuote(node)));
  WaitForStopSignal();
  (*listener)->Stop();
  (*transport)->Close();
  return absl::OkStatus();
}

FlagSpec IpcDirFlag() {
  return StringFlag("ipc-dir", "DIR",
                    absl::StrCat("IPC directory of the local zmesh-proxy (default $", kIpcDirEnv,
                                 ", else ", kDefaultIpcDir, ")"));
}

FlagSpec ServerFlag(std::string help) { return StringFlag("server", "SERVER", std::move(help)); }

FlagSpec PriorityFlag() {
  return Required(StringFlag("priority", "PRIORITY", "Priority, e.g. info or error"));
}

PositionalSpec TopicArg() { return {"TOPIC", "Topic"}; }
PositionalSpec PayloadArg() {
  return {"PAYLOAD", "Message payload (text; use -- before a payload that starts with -)"};
}

constexpr char kPayloadPrinting[] =
    "Payloads are printed as text on one line: backslash is doubled, newline, carriage return\n"
    "and tab are written \\n \\r \\t, and any other byte that is not printable text (ASCII or\n"
    "UTF-8) as \\xNN. With -o json, \"payload\" holds the text (bytes that are not UTF-8\n"
    "replaced by U+FFFD) and \"payload_base64\" the exact bytes.";

}  // namespace

std::vector<Command> MessageCommands() {
  std::vector<Command> commands;
  commands.push_back(
      {{{"call"},
        "Send a CALL through the local proxy and print the reply",
        absl::StrCat(
            "Without --server, one server of the topic group answers (round-robin). The reply\n"
            "is printed on stdout. A remote error (the server's handler failed) is printed on\n"
            "stderr and the exit code is 1, as for a call that fails or times out (--timeout-ms).\n"
            "With -o json: {\"payload\":...,\"payload_base64\":...,\"remote_error\":BOOL}.\n\n",
            kPayloadPrinting),
        {TopicArg(), PayloadArg()},
        {ServerFlag("Server name (default: any server of the topic group)"), ExchangeFlag(),
         BoolFlag("at-least-once",
                  "Fail at once when the directory knows no server for the target, instead of "
                  "waiting for one until the timeout"),
         IpcDirFlag()}},
       Call});
  commands.push_back(
      {{{"cast"},
        "Send a CAST (one-way, to one server) through the local proxy",
        "Without --server, one server of the topic group gets it (round-robin). Returns once\n"
        "the message is on its way, or with --ack once the server acknowledged it (an\n"
        "unacknowledged cast is retried, to another member of the group when there is one).",
        {TopicArg(), PayloadArg()},
        {ServerFlag("Server name (default: any server of the topic group)"), ExchangeFlag(),
         BoolFlag("ack", "Wait for the server's acknowledgement"), IpcDirFlag()}},
       Cast});
  commands.push_back({{{"fanout"},
                       "Send a FANOUT (one-way, to every server of the topic, on every node)",
                       "",
                       {TopicArg(), PayloadArg()},
                       {ExchangeFlag(), IpcDirFlag()}},
                      Fanout});
  commands.push_back({{{"notify"},
                       "Send a notification to TOPIC.PRIORITY (one copy to each pool of listeners)",
                       "",
                       {TopicArg(), PayloadArg()},
                       {PriorityFlag(), ExchangeFlag(), IpcDirFlag()}},
                      Notify});
  commands.push_back(
      {{{"serve"},
        "Run an RPC server on a target and print every message it receives",
        absl::StrCat(
            "Registers (exchange, TOPIC, --server) through the local proxy, prints a first line\n"
            "starting with \"ready:\" once the directory has it, then one line per message, e.g.\n"
            "  call from HOST/PID/N/ID: hello\n"
            "  cast from HOST/PID/N/ID: hello\n"
            "  fanout from HOST/PID/N/ID: hello\n"
            "Calls are answered with an empty payload, the request's payload (--echo), a fixed\n"
            "payload (--reply) or a remote error (--fail). Exits 0 on SIGINT/SIGTERM, after\n"
            "withdrawing the target.\n\n",
            kPayloadPrinting),
        {TopicArg()},
        {ServerFlag("Server name (default: the host name)"), ExchangeFlag(),
         BoolFlag("echo", "Answer each call with its request payload"),
         StringFlag("reply", "PAYLOAD", "Answer each call with this payload"),
         StringFlag("fail", "ERROR", "Answer each call with this remote error"), IpcDirFlag()}},
       Serve});
  commands.push_back(
      {{{"listen"},
        "Listen to notifications of TOPIC.PRIORITY and print them",
        absl::StrCat(
            "Registers a listener through the local proxy, prints a first line starting with\n"
            "\"ready:\" once the directory has it, then one line per notification, e.g.\n"
            "  notification from HOST/PID/N/ID: hello\n"
            "Each pool gets one copy of every notification; listeners of one pool share them\n"
            "round-robin. Exits 0 on SIGINT/SIGTERM.\n\n",
            kPayloadPrinting),
        {TopicArg()},
        {PriorityFlag(), StringFlag("pool", "POOL", "Pool to join (default: the default pool)"),
         ExchangeFlag(), IpcDirFlag()}},
       Listen});
  return commands;
}

}  // namespace zmesh::cli
