// zmeshctl: the operator CLI of zmesh. Parses the command line and runs one command: against the
// directory (cluster, nodes, topics, leases, watch), or through the local zmesh-proxy (call, cast,
// fanout, notify, serve, listen). Exit codes: 0 success, 1 the directory, the proxy or a server
// returned an error, 2 the command line is wrong.
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "cli/signals.h"
#include "controlplane/client/directory_client.h"

#ifndef ZMESH_VERSION
#define ZMESH_VERSION "unknown"
#endif

namespace zmesh::cli {
namespace {

constexpr char kDefaultDirectory[] = "127.0.0.1:9500";
constexpr char kDirectoryEnv[] = "ZMESH_DIRECTORY";
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

int Fail(int code, absl::string_view message) {
  std::cout.flush();
  std::cerr << "zmeshctl: " << OneLine(message) << std::endl;
  return code;
}

int Run(const std::vector<std::string>& argv) {
  CommandLine line("zmeshctl",
                   "zmeshctl: operator CLI of zmesh: the directory, and messages through "
                   "the local zmesh-proxy.");
  line.AddGlobalFlag(StringFlag("directory", "HOST:PORT[,HOST:PORT...]",
                                absl::StrCat("Directory replicas (default $", kDirectoryEnv,
                                             ", else ", kDefaultDirectory, ")")));
  FlagSpec output =
      ChoiceFlag("output", "FORMAT", "Output format: table or json", {"table", "json"}, "table");
  output.short_name = 'o';
  line.AddGlobalFlag(output);
  line.AddGlobalFlag(IntFlag("timeout-ms", "MS",
                             "Deadline of each request (for call and cast: of the message)", 1,
                             std::numeric_limits<int64_t>::max(), "5000"));
  line.AddGlobalFlag(ChoiceFlag(
      "consistency", "MODE",
      "Reads: linearizable (the latest committed state, from any replica) or stale (the "
      "answering replica's own applied state, possibly behind; with one --directory address "
      "only that replica is asked, never another)",
      {"linearizable", "stale"}, "linearizable"));

  std::map<std::string, Handler> handlers;
  for (auto group : {StatusCommands, ClusterCommands, NodeCommands, TopicCommands, LeaseCommands,
                     WatchCommands, MessageCommands}) {
    for (Command& command : group()) {
      handlers[command.spec.Path()] = std::move(command.handler);
      line.AddCommand(std::move(command.spec));
    }
  }

  absl::StatusOr<Invocation> invocation = line.Parse(argv);
  if (!invocation.ok()) return Fail(kExitUsage, invocation.status().message());
  switch (invocation->action) {
    case Invocation::Action::kVersion:
      std::cout << "zmeshctl " << ZMESH_VERSION << std::endl;
      return 0;
    case Invocation::Action::kHelp:
      std::cout << (invocation->command != nullptr ? line.CommandHelp(*invocation->command)
                                                   : line.GroupHelp(invocation->help_words));
      std::cout.flush();
      return 0;
    case Invocation::Action::kRun:
      break;
  }

  const ParsedArgs& args = invocation->args;
  std::string directory = kDefaultDirectory;
  std::string directory_source = "--directory";
  if (args.Has("directory")) {
    directory = args.GetString("directory");
  } else if (const char* env = std::getenv(kDirectoryEnv); env != nullptr && *env != '\0') {
    directory = env;
    directory_source = absl::StrCat("$", kDirectoryEnv);
  }
  absl::StatusOr<std::vector<std::string>> addresses =
      client::DirectoryClient::ParseAddresses(directory);
  if (!addresses.ok()) {
    return Fail(kExitUsage, absl::StrCat(directory_source, ": ", addresses.status().message()));
  }
  client::DirectoryClientOptions options;
  options.addresses = *addresses;
  options.request_timeout_ms = args.GetInt("timeout-ms");
  absl::StatusOr<std::unique_ptr<client::DirectoryClient>> client =
      client::DirectoryClient::Create(options);
  if (!client.ok()) return Fail(kExitUsage, client.status().message());

  directory::v1::ReadOptions read;
  read.set_consistency(args.GetString("consistency") == "stale"
                           ? directory::v1::CONSISTENCY_STALE
                           : directory::v1::CONSISTENCY_LINEARIZABLE);
  Context ctx{args,
              args.GetString("output") == "json" ? OutputFormat::kJson : OutputFormat::kTable,
              read,
              *addresses,
              options.request_timeout_ms,
              **client,
              std::cout,
              std::cerr};
  const CommandSpec& command = *invocation->command;
  absl::Status status = handlers.at(command.Path())(ctx);
  std::cout.flush();
  if (status.ok()) return 0;
  if (IsUsageError(status)) {
    return Fail(kExitUsage, absl::StrCat(command.Path(), ": ", status.message()));
  }
  return Fail(kExitError,
              absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message()));
}

}  // namespace
}  // namespace zmesh::cli

int main(int argc, char** argv) {
  // First, before gRPC starts any thread (see StopSignals).
  zmesh::cli::StopSignals::Get().Start();
  return zmesh::cli::Run(std::vector<std::string>(argv + 1, argv + argc));
}
