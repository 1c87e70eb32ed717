// zmesh-demo: the data plane, live, for newcomers. Against a running directory it starts three
// zmesh-proxy processes standing in for three nodes, runs RPC servers and notification listeners
// on them and a client that shows CALL, CAST, FANOUT and NOTIFY, explaining what happens. Every
// step is checked: the exit code is 0 only if everything behaved as promised (so it doubles as a
// smoke test). Stops everything it started, also on SIGINT/SIGTERM.
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/log.h"
#include "controlplane/client/directory_client.h"
#include "dataplane/demo/node_proxy.h"
#include "dataplane/demo/walkthrough.h"

ABSL_FLAG(std::string, directory, "",
          "Directory replicas HOST:PORT[,HOST:PORT...] of a running zmesh-directory (required).");
ABSL_FLAG(std::string, work_dir, "",
          "Directory for the proxies' IPC sockets and logs (created if missing, kept). Default: "
          "a new temporary directory, removed at the end unless something failed.");
ABSL_FLAG(int64_t, lease_ttl_ms, 3000, "Lease TTL of the proxies' nodes.");

namespace zmesh::demo {
namespace {

constexpr const char* kNodeNames[] = {"node-a", "node-b", "node-c"};
// Unix socket paths are at most 107 bytes; the proxy's longest is "<ipc dir>/control.sock".
constexpr size_t kMaxIpcDirLength = 90;

int Fail(const std::string& message) {
  std::cout.flush();
  std::cerr << "zmesh-demo: " << message << std::endl;
  return 1;
}

// Directory holding this executable: zmesh-proxy is built next to it.
std::string BinDir() {
  std::error_code ec;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}

// Set by the signal thread, which then ends the process.
std::atomic<bool> interrupted{false};

// SIGINT/SIGTERM: SIGTERM the proxies, give them up to 5 s to exit cleanly, then exit.
void WaitForSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int signo = 0;
  while (sigwait(&set, &signo) != 0) {
  }
  interrupted.store(true);
  std::fprintf(stderr, "\nzmesh-demo: interrupted; stopping the proxies\n");
  TerminateRunningProxies(5000);
  _exit(128 + signo);
}

int Run() {
  const std::string directory_flag = absl::GetFlag(FLAGS_directory);
  if (directory_flag.empty()) return Fail("--directory is required (see --help)");
  absl::StatusOr<std::vector<std::string>> addresses =
      client::DirectoryClient::ParseAddresses(directory_flag);
  if (!addresses.ok()) return Fail(absl::StrCat("--directory: ", addresses.status().message()));

  std::string work_dir = absl::GetFlag(FLAGS_work_dir);
  const bool temporary_work_dir = work_dir.empty();
  if (temporary_work_dir) {
    const char* tmp = getenv("TMPDIR");
    std::string pattern =
        absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/zmesh-demo.XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) {
      return Fail(absl::StrCat("cannot create a temporary directory ", pattern));
    }
    work_dir = pattern;
  } else {
    std::error_code ec;
    std::filesystem::create_directories(work_dir, ec);
    if (ec) return Fail(absl::StrCat("cannot create --work-dir ", work_dir, ": ", ec.message()));
    work_dir = std::filesystem::absolute(work_dir).lexically_normal().string();
  }
  const std::string proxy_binary = BinDir() + "/zmesh-proxy";
  if (access(proxy_binary.c_str(), X_OK) != 0) {
    return Fail(absl::StrCat(proxy_binary, " not found: build it first (scripts/build)"));
  }

  client::DirectoryClientOptions directory_options;
  directory_options.addresses = *addresses;
  absl::StatusOr<std::unique_ptr<client::DirectoryClient>> directory =
      client::DirectoryClient::Create(directory_options);
  if (!directory.ok()) return Fail(std::string(directory.status().message()));

  std::cout << "zmesh-demo: the zmesh data plane, live.\n"
            << "Three pretend nodes, each with its own zmesh-proxy; RPC servers and notification\n"
            << "listeners on them; and a client that sends every kind of message. The directory\n"
            << "(" << directory_flag
            << ") only records who serves what: no message goes through it.\n"
            << "Files (IPC sockets, proxy logs): " << work_dir << "\n";

  Reporter reporter(std::cout);
  reporter.Step("Start three node proxies (zmesh-proxy), one per pretend node",
                "Each registers its node in the directory under a lease it keeps alive, and\n"
                "opens one TCP port per message pattern (here on 127.0.0.1, free ports) plus IPC\n"
                "sockets for the programs on its node.");
  std::vector<std::unique_ptr<NodeProxy>> proxies;
  std::vector<DemoNode> nodes;
  for (const char* name : kNodeNames) {
    NodeProxyOptions options;
    options.binary = proxy_binary;
    options.directory = directory_flag;
    options.node_name = name;
    options.ipc_dir = absl::StrCat(work_dir, "/", name);
    options.log_path = absl::StrCat(work_dir, "/", name, ".log");
    options.lease_ttl_ms = absl::GetFlag(FLAGS_lease_ttl_ms);
    if (options.ipc_dir.size() > kMaxIpcDirLength) {
      return Fail(absl::StrCat("--work-dir is too long for Unix socket paths: ", options.ipc_dir,
                               " (at most ", kMaxIpcDirLength, " bytes)"));
    }
    absl::StatusOr<std::unique_ptr<NodeProxy>> proxy = NodeProxy::Start(options);
    if (!proxy.ok()) {
      reporter.Check(false, absl::StrCat(name, "'s proxy started"));
      return Fail(std::string(proxy.status().message()));
    }
    reporter.Say(absl::StrCat(name, ": zmesh-proxy pid ", (*proxy)->pid(), ", ports ",
                              (*proxy)->ports(), ", IPC dir ", options.ipc_dir));
    nodes.push_back({name, options.ipc_dir});
    proxies.push_back(*std::move(proxy));
  }

  absl::Status walked = RunWalkthrough(nodes, **directory, reporter);
  if (!walked.ok()) reporter.Check(false, "the services started", walked.ToString());

  reporter.Step("Stop the proxies (SIGTERM)",
                "Each withdraws its node from the directory and exits.");
  for (auto& proxy : proxies) {
    absl::Status stopped = proxy->Stop();
    reporter.Check(stopped.ok(),
                   absl::StrCat(proxy->options().node_name, "'s proxy exited cleanly"),
                   stopped.message());
  }

  std::cout << "\n";
  if (reporter.failures() == 0) {
    std::cout << "All " << reporter.checks() << " checks passed.\n";
    if (temporary_work_dir) {
      std::error_code ec;
      std::filesystem::remove_all(work_dir, ec);
    }
    std::cout.flush();
    return 0;
  }
  std::cout << reporter.failures() << " of " << reporter.checks()
            << " checks FAILED. Proxy logs are kept in " << work_dir << "\n";
  std::cout.flush();
  return 1;
}

}  // namespace
}  // namespace zmesh::demo

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "zmesh-demo --directory HOST:PORT[,HOST:PORT...] [--work-dir DIR]\n"
      "Starts three zmesh-proxy processes (node-a, node-b, node-c) against a running directory\n"
      "and walks through CALL, CAST, FANOUT and NOTIFY between them. Exit code 0 when every\n"
      "step behaved as expected.");
  const std::vector<std::string> positional = zmesh::ParseFlags(argc, argv);
  if (positional.size() > 1) {
    return zmesh::demo::Fail(absl::StrCat("unexpected argument: ", positional[1]));
  }
  // The walkthrough speaks for itself; the library only reports trouble.
  zmesh::log::SetLevel(zmesh::log::Level::kWarning);

  // Before any thread starts: every thread inherits the mask, and only the waiter takes signals.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  std::thread(zmesh::demo::WaitForSignals).detach();
  int exit_code = zmesh::demo::Run();
  // A step may have failed because of the interruption: let the signal thread finish stopping the
  // proxies and exit with its code.
  while (zmesh::demo::interrupted.load()) pause();
  return exit_code;
}
