#include "tests/support/proxy_process.h"

#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace zmesh::testing {
namespace {

constexpr int64_t kReadyTimeoutMs = 15000;
constexpr int64_t kStopTimeoutMs = 10000;

// Parses "call=P fanout=P notify=P cast=P[ metrics=P]".
bool ParseReady(absl::string_view line, int* call, int* fanout, int* notify, int* cast,
                int* metrics) {
  int found = 0;
  for (absl::string_view part : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(part, '=');
    int port = 0;
    if (!absl::SimpleAtoi(kv.second, &port) || port <= 0) return false;
    if (kv.first == "call") {
      *call = port;
    } else if (kv.first == "fanout") {
      *fanout = port;
    } else if (kv.first == "notify") {
      *notify = port;
    } else if (kv.first == "cast") {
      *cast = port;
    } else if (kv.first == "metrics") {
      *metrics = port;
      continue;  // optional
    } else {
      return false;
    }
    ++found;
  }
  return found == 4;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ProxyProcess>> ProxyProcess::Start(ProxyProcessOptions options) {
  if (options.directory.empty()) return absl::InvalidArgumentError("directory is required");
  if (options.node_name.empty()) return absl::InvalidArgumentError("node_name is required");
  if (options.ipc_dir.empty()) return absl::InvalidArgumentError("ipc_dir is required");
  std::unique_ptr<ProxyProcess> proxy(new ProxyProcess(std::move(options)));
  absl::Status launched = proxy->Launch();
  if (!launched.ok()) return launched;
  return proxy;
}

ProxyProcess::ProxyProcess(ProxyProcessOptions options) : options_(std::move(options)) {}

ProxyProcess::~ProxyProcess() { Kill(); }

absl::Status ProxyProcess::Launch() {
  std::error_code error;
  std::filesystem::create_directories(options_.ipc_dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("creating IPC dir ", options_.ipc_dir, ": ", error.message()));
  }
  ready_path_ = options_.ipc_dir + "/proxy.ready";
  log_path_ = absl::StrCat(options_.ipc_dir, "/proxy.", launches_++, ".log");
  std::filesystem::remove(ready_path_, error);

  // A restart reuses the ports of the first launch, so peers that know the node still reach it.
  const bool relaunch = call_port_ != 0;
  auto port_arg = [&](int given, int actual) { return std::to_string(relaunch ? actual : given); };
  std::vector<std::string> argv = options_.command_prefix;
  argv.insert(argv.end(), {BinPath("zmesh-proxy"),
                           "--directory",
                           options_.directory,
                           "--node-name",
                           options_.node_name,
                           "--advertise-host",
                           options_.advertise_host,
                           "--bind",
                           options_.bind,
                           "--ipc-dir",
                           options_.ipc_dir,
                           "--call-port",
                           port_arg(options_.call_port, call_port_),
                           "--fanout-port",
                           port_arg(options_.fanout_port, fanout_port_),
                           "--notify-port",
                           port_arg(options_.notify_port, notify_port_),
                           "--cast-port",
                           port_arg(options_.cast_port, cast_port_),
                           "--lease-ttl-ms",
                           std::to_string(options_.lease_ttl_ms),
                           "--ready-file",
                           ready_path_});
  if (options_.instance_timeout_ms > 0) {
    argv.push_back("--instance-timeout-ms");
    argv.push_back(std::to_string(options_.instance_timeout_ms));
  }
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Start(argv, log_path_, log_path_);
  if (!process.ok()) {
    return absl::Status(process.status().code(),
                        absl::StrCat("starting zmesh-proxy: ", process.status().message()));
  }
  process_ = *std::move(process);

  absl::StatusOr<int> exited = absl::DeadlineExceededError("");
  int call = 0, fanout = 0, notify = 0, cast = 0, metrics = 0;
  const bool ready = Eventually(
      [&] {
        exited = process_->Wait(0);
        if (exited.ok()) return true;
        absl::StatusOr<std::string> content = ReadFile(ready_path_);
        if (!content.ok() || !absl::EndsWith(*content, "\n")) return false;
        return ParseReady(absl::StripAsciiWhitespace(*content), &call, &fanout, &notify, &cast,
                          &metrics);
      },
      kReadyTimeoutMs);
  if (exited.ok()) {
    return absl::InternalError(absl::StrCat("zmesh-proxy ", DescribeWaitStatus(*exited),
                                            " before it got ready; log ", log_path_, ":\n",
                                            TailFile(log_path_)));
  }
  if (!ready) {
    Kill();
    return absl::DeadlineExceededError(absl::StrCat("zmesh-proxy not ready after ", kReadyTimeoutMs,
                                                    " ms; log ", log_path_, ":\n",
                                                    TailFile(log_path_)));
  }
  call_port_ = call;
  fanout_port_ = fanout;
  notify_port_ = notify;
  cast_port_ = cast;
  metrics_port_ = metrics;
  return absl::OkStatus();
}

absl::Status ProxyProcess::Stop() {
  if (!running()) return absl::FailedPreconditionError("zmesh-proxy is not running");
  process_->Signal(SIGTERM);
  absl::StatusOr<int> status = process_->Wait(kStopTimeoutMs);
  if (!status.ok()) {
    Kill();
    return absl::DeadlineExceededError(absl::StrCat("zmesh-proxy did not exit within ",
                                                    kStopTimeoutMs, " ms of SIGTERM; log ",
                                                    log_path_, ":\n", TailFile(log_path_)));
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return absl::InternalError(absl::StrCat("zmesh-proxy ", DescribeWaitStatus(*status),
                                            " after SIGTERM; log ", log_path_, ":\n",
                                            TailFile(log_path_)));
  }
  return absl::OkStatus();
}

void ProxyProcess::Kill() {
  if (!running()) return;
  process_->Signal(SIGKILL);
  (void)process_->Wait(kStopTimeoutMs);
}

absl::Status ProxyProcess::Restart() {
  if (running()) {
    absl::Status stopped = Stop();
    if (!stopped.ok()) return stopped;
  }
  return Launch();
}

}  // namespace zmesh::testing
