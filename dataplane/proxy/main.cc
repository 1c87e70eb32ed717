// zmesh-proxy: the per-node data-plane daemon (docs/wire-protocol.md, docs/operations.md).
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/metrics/metrics_server.h"
#include "controlplane/client/directory_client.h"
#include "dataplane/proxy/proxy.h"
#include "dataplane/wire/envelope.h"

ABSL_FLAG(std::string, directory, "", "Directory replicas HOST:PORT[,HOST:PORT...] (required).");
ABSL_FLAG(std::string, node_name, "", "Name of this node in the directory (default: host name).");
ABSL_FLAG(std::string, advertise_host, "",
          "Host name or address other nodes reach this proxy at (default: host name).");
ABSL_FLAG(std::string, bind, "*", "Address the four TCP ports are bound on (* = all).");
ABSL_FLAG(int32_t, call_port, 9501, "CALL port; 0 picks a free port.");
ABSL_FLAG(int32_t, fanout_port, 9502, "FANOUT port; 0 picks a free port.");
ABSL_FLAG(int32_t, notify_port, 9503, "NOTIFY port; 0 picks a free port.");
ABSL_FLAG(int32_t, cast_port, 9504, "CAST port; 0 picks a free port.");
ABSL_FLAG(std::string, ipc_dir, "/run/zmesh",
          "Directory of the IPC sockets for local instances (created if missing).");
ABSL_FLAG(int64_t, lease_ttl_ms, 10000,
          "TTL of the directory lease; the node disappears this long after the proxy dies.");
ABSL_FLAG(int64_t, instance_timeout_ms, 1500,
          "A local instance silent this long is dropped and its targets withdrawn.");
ABSL_FLAG(int64_t, ping_interval_ms, 300, "How often local instances are asked to ping.");
ABSL_FLAG(int64_t, max_payload_bytes, zmesh::wire::kDefaultMaxPayloadBytes,
          "Largest payload accepted, in bytes.");
ABSL_FLAG(std::string, ready_file, "",
          "Once the sockets are bound and the node is registered, write "
          "\"call=P fanout=P notify=P cast=P\" to this file (and \" metrics=P\" with "
          "--metrics-listen).");
ABSL_FLAG(std::string, metrics_listen, "",
          "Serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks a free port, "
          "written to the ready file). Empty: no metrics endpoint.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");
ABSL_FLAG(std::string, log_format, "text", "text or json.");

namespace {

constexpr int kExitUsage = 2;
constexpr int kExitFailure = 1;

// Set once the log is configured: failures from then on are log lines (JSON with
// --log-format json), so collectors see them.
bool logging = false;

int Fail(int code, const std::string& message) {
  if (logging) {
    ZLOG_ERROR("%s", message);
  } else {
    std::fprintf(stderr, "zmesh-proxy: %s\n", message.c_str());
  }
  return code;
}

// absl exits with status 1 on a bad flag; the documented status for bad usage is 2, so the
// arguments are checked here first. Returns "" when they parse.
std::string CheckArguments(const std::vector<std::string>& args) {
  static const char* const kBuiltin[] = {"help",    "helpfull",        "helpshort", "helppackage",
                                         "version", "only_check_args", "helpmatch"};
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") break;
    if (!absl::StartsWith(arg, "-") || arg == "-") {
      return absl::StrCat("unexpected argument: ", arg);
    }
    std::string body = arg.substr(absl::StartsWith(arg, "--") ? 2 : 1);
    const size_t eq = body.find('=');
    const std::string name = body.substr(0, eq);
    bool builtin = false;
    for (const char* b : kBuiltin) builtin = builtin || name == b;
    if (builtin) continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      absl::CommandLineFlag* negated = absl::FindCommandLineFlag(name.substr(2));
      if (negated != nullptr && negated->IsOfType<bool>() && eq == std::string::npos) continue;
    }
    if (flag == nullptr) return absl::StrCat("unknown flag --", name);
    std::string value;
    if (eq != std::string::npos) {
      value = body.substr(eq + 1);
    } else if (flag->IsOfType<bool>()) {
      value = "true";
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::StrCat("--", name, " needs a value");
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) return absl::StrCat("--", name, ": ", error);
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "zmesh-proxy --directory HOST:PORT[,...] [--node-name NAME] [--advertise-host HOST]\n"
      "            [--bind ADDR] [--call-port 9501 --fanout-port 9502 --notify-port 9503\n"
      "             --cast-port 9504] [--ipc-dir /run/zmesh] [--lease-ttl-ms 10000]\n"
      "Per-node data-plane proxy of zmesh: registers the node and its local servers in the\n"
      "directory and moves CALL, CAST, FANOUT and NOTIFY messages between the network and the\n"
      "local instances.");
  std::vector<std::string> args = zmesh::NormalizeFlagNames(argc, argv);
  if (std::string bad = CheckArguments(args); !bad.empty()) {
    return Fail(kExitUsage, absl::StrCat(bad, " (see --help)"));
  }
  const std::vector<std::string> positional = zmesh::ParseFlags(std::move(args));
  if (positional.size() > 1) {
    return Fail(kExitUsage, absl::StrCat("unexpected argument: ", positional[1]));
  }

  zmesh::log::Level level;
  zmesh::log::Format format;
  if (!zmesh::log::ParseLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    return Fail(kExitUsage, "--log-level must be debug, info, warning or error");
  }
  if (!zmesh::log::ParseFormat(absl::GetFlag(FLAGS_log_format), &format)) {
    return Fail(kExitUsage, "--log-format must be text or json");
  }

  zmesh::proxy::ProxyOptions options;
  const std::string directory = absl::GetFlag(FLAGS_directory);
  if (directory.empty()) return Fail(kExitUsage, "--directory is required");
  absl::StatusOr<std::vector<std::string>> addresses =
      zmesh::client::DirectoryClient::ParseAddresses(directory);
  if (!addresses.ok()) {
    return Fail(kExitUsage, absl::StrCat("--directory: ", addresses.status().message()));
  }
  options.directory = *addresses;
  options.node_name = absl::GetFlag(FLAGS_node_name);
  if (options.node_name.empty()) options.node_name = zmesh::HostName();
  if (absl::Status st = zmesh::wire::ValidateName("--node-name", options.node_name, true);
      !st.ok()) {
    return Fail(kExitUsage, std::string(st.message()));
  }
  options.advertise_host = absl::GetFlag(FLAGS_advertise_host);
  if (options.advertise_host.empty()) options.advertise_host = zmesh::HostName();
  options.bind = absl::GetFlag(FLAGS_bind);
  if (options.bind.empty()) return Fail(kExitUsage, "--bind must not be empty");
  const std::pair<const char*, int> ports[] = {
      {"--call-port", absl::GetFlag(FLAGS_call_port)},
      {"--fanout-port", absl::GetFlag(FLAGS_fanout_port)},
      {"--notify-port", absl::GetFlag(FLAGS_notify_port)},
      {"--cast-port", absl::GetFlag(FLAGS_cast_port)},
  };
  for (const auto& [name, port] : ports) {
    if (port < 0 || port > 65535) {
      return Fail(kExitUsage, absl::StrCat(name, " must be 0..65535 (0: any free port)"));
    }
  }
  options.call_port = ports[0].second;
  options.fanout_port = ports[1].second;
  options.notify_port = ports[2].second;
  options.cast_port = ports[3].second;
  options.ipc_dir = absl::GetFlag(FLAGS_ipc_dir);
  if (options.ipc_dir.empty()) return Fail(kExitUsage, "--ipc-dir must not be empty");
  options.lease_ttl_ms = absl::GetFlag(FLAGS_lease_ttl_ms);
  options.instance_timeout_ms = absl::GetFlag(FLAGS_instance_timeout_ms);
  options.ping_interval_ms = absl::GetFlag(FLAGS_ping_interval_ms);
  options.max_payload_bytes = absl::GetFlag(FLAGS_max_payload_bytes);
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  if (!options.metrics_listen.empty()) {
    if (absl::Status st = zmesh::metrics::ValidateListenAddress(options.metrics_listen); !st.ok()) {
      return Fail(kExitUsage, absl::StrCat("--metrics-listen: ", st.message()));
    }
  }
  if (options.lease_ttl_ms <= 0) return Fail(kExitUsage, "--lease-ttl-ms must be positive");
  if (options.ping_interval_ms <= 0) {
    return Fail(kExitUsage, "--ping-interval-ms must be positive");
  }
  if (options.instance_timeout_ms <= options.ping_interval_ms) {
    return Fail(kExitUsage, "--instance-timeout-ms must be larger than --ping-interval-ms");
  }
  if (options.max_payload_bytes <= 0 || options.max_payload_bytes > (int64_t{1} << 31) - 65536) {
    return Fail(kExitUsage, "--max-payload-bytes must be between 1 and 2 GiB - 64 KiB");
  }

  zmesh::log::SetLevel(level);
  zmesh::log::SetFormat(format);
  zmesh::log::SetPrefix(absl::StrCat("proxy-", options.node_name));
  logging = true;

  // Signals are taken synchronously by the main thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const std::string ready_file = absl::GetFlag(FLAGS_ready_file);
  // Filled in once the ports are known, before the directory thread can call back.
  auto ready_line = std::make_shared<std::string>();
  auto ready_written = std::make_shared<std::atomic<bool>>(false);
  auto ports_known = std::make_shared<absl::Notification>();
  options.on_node_registered = [ready_file, ready_line, ready_written, ports_known] {
    if (ready_file.empty() || ready_written->exchange(true)) return;
    ports_known->WaitForNotification();
    if (!zmesh::WriteFileAtomically(ready_file, *ready_line + "\n")) {
      ZLOG_ERROR("cannot write ready file %s", ready_file);
    }
  };
  absl::StatusOr<std::unique_ptr<zmesh::proxy::Proxy>> proxy = zmesh::proxy::Proxy::Start(options);
  if (!proxy.ok()) {
    ports_known->Notify();
    return Fail(kExitFailure, proxy.status().ToString());
  }
  using zmesh::proxy::Pattern;
  *ready_line = absl::StrFormat("call=%d fanout=%d notify=%d cast=%d",
                                (*proxy)->port(Pattern::kCall), (*proxy)->port(Pattern::kFanout),
                                (*proxy)->port(Pattern::kNotify), (*proxy)->port(Pattern::kCast));
  // Only with metrics on, so that readers that know the four ports alone keep working.
  if ((*proxy)->metrics_port() > 0) {
    absl::StrAppend(ready_line.get(), " metrics=", (*proxy)->metrics_port());
  }
  ports_known->Notify();

  int signo = 0;
  sigwait(&signals, &signo);
  ZLOG_INFO("received %s: revoking the lease and stopping",
            signo == SIGTERM ? "SIGTERM" : "SIGINT");
  (*proxy)->Stop(/*revoke_lease=*/true);
  if (!ready_file.empty()) {
    std::error_code ignored;
    std::filesystem::remove(ready_file, ignored);
  }
  ZLOG_INFO("stopped");
  return 0;
}
