// zmesh-directory: one replica of the zmesh directory service.
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/log.h"
#include "controlplane/service/directory_server.h"

ABSL_FLAG(std::string, data_dir, "", "Directory for the replica's state (required).");
ABSL_FLAG(std::string, listen, "127.0.0.1:9500",
          "gRPC address HOST:PORT to serve on; port 0 picks a free port.");
ABSL_FLAG(uint64_t, id, 1, "Replica id.");
ABSL_FLAG(std::string, ready_file, "",
          "Once serving, write the listening address to this file (for scripts and tests).");
ABSL_FLAG(int64_t, history_revisions, 10000, "Revisions of change history kept for watchers.");
ABSL_FLAG(int32_t, max_request_bytes, 1 << 20, "Largest request accepted, in bytes.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");
ABSL_FLAG(std::string, log_format, "text", "text or json.");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "zmesh-directory: %s\n", message.c_str());
  return 1;
}

// Writes atomically: readers see the whole address or no file.
bool WriteReadyFile(const std::string& path, const std::string& address) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << address << "\n";
    if (!out.good()) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "zmesh-directory --data-dir DIR [--listen HOST:PORT]\n"
      "Serves the zmesh directory (nodes, registrations, leases, watch) over gRPC.");
  std::vector<std::string> args = zmesh::NormalizeFlagNames(argc, argv);
  std::vector<char*> arg_ptrs;
  arg_ptrs.reserve(args.size());
  for (std::string& arg : args) arg_ptrs.push_back(arg.data());
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(arg_ptrs.size()), arg_ptrs.data());
  if (positional.size() > 1) return Fail(absl::StrCat("unexpected argument: ", positional[1]));

  zmesh::log::Level level;
  zmesh::log::Format format;
  if (!zmesh::log::ParseLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    return Fail("--log-level must be debug, info, warning or error");
  }
  if (!zmesh::log::ParseFormat(absl::GetFlag(FLAGS_log_format), &format)) {
    return Fail("--log-format must be text or json");
  }
  zmesh::log::SetLevel(level);
  zmesh::log::SetFormat(format);
  zmesh::log::SetPrefix(absl::StrCat("directory-", absl::GetFlag(FLAGS_id)));

  if (absl::GetFlag(FLAGS_data_dir).empty()) return Fail("--data-dir is required");
  if (absl::GetFlag(FLAGS_history_revisions) < 1) {
    return Fail("--history-revisions must be at least 1");
  }
  if (absl::GetFlag(FLAGS_max_request_bytes) < 1024) {
    return Fail("--max-request-bytes must be at least 1024");
  }

  // Signals are taken synchronously by the main thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  zmesh::service::DirectoryServerOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.listen = absl::GetFlag(FLAGS_listen);
  options.id = absl::GetFlag(FLAGS_id);
  options.history_revisions = absl::GetFlag(FLAGS_history_revisions);
  options.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  absl::StatusOr<std::unique_ptr<zmesh::service::DirectoryServer>> server =
      zmesh::service::DirectoryServer::Start(options);
  if (!server.ok()) return Fail(server.status().ToString());

  const std::string ready_file = absl::GetFlag(FLAGS_ready_file);
  if (!ready_file.empty() && !WriteReadyFile(ready_file, (*server)->address())) {
    return Fail(absl::StrCat("cannot write ready file ", ready_file));
  }

  int signo = 0;
  sigwait(&signals, &signo);
  ZLOG_INFO("received %s", signo == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Shutdown();
  return 0;
}
