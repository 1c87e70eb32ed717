// The commands of zmeshctl. Each commands_*.cc file declares the specs (words, flags,
// positionals) and handlers of one group; main.cc parses the command line and dispatches.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "cli/args.h"
#include "cli/output.h"
#include "controlplane/client/directory_client.h"
#include "zmesh/directory/v1/cluster.pb.h"
#include "zmesh/directory/v1/types.pb.h"

namespace zmesh::cli {

// What a handler gets. References stay valid for the duration of the handler.
struct Context {
  const ParsedArgs& args;
  OutputFormat format;
  // From --consistency: to be set on every read request.
  directory::v1::ReadOptions read;
  // The replicas given with --directory (or $ZMESH_DIRECTORY), already validated.
  const std::vector<std::string>& addresses;
  int64_t timeout_ms;
  client::DirectoryClient& client;
  std::ostream& out;
  std::ostream& err;
};

// A handler returns OK, a server error (printed as "zmeshctl: CODE: message", exit 1) or a
// UsageError (printed as "zmeshctl: COMMAND: message", exit 2).
using Handler = std::function<absl::Status(Context&)>;

struct Command {
  CommandSpec spec;
  Handler handler;
};

std::vector<Command> NodeCommands();
std::vector<Command> TopicCommands();
std::vector<Command> LeaseCommands();
std::vector<Command> StatusCommands();
std::vector<Command> WatchCommands();
std::vector<Command> ClusterCommands();
// call, cast, fanout, notify, serve, listen: messages through the local zmesh-proxy.
std::vector<Command> MessageCommands();

// An error in how the command was used that the parser cannot see (e.g. conflicting flags).
absl::Status UsageError(absl::string_view message);
bool IsUsageError(const absl::Status& status);

// Adds context to an error status without changing its code: "granting the lease: <message>".
absl::Status WithContext(const absl::Status& status, absl::string_view context);

// Presentation helpers shared by the commands.
// "rpc" / "notify" / "unspecified".
std::string KindName(directory::v1::Kind kind);
// "openstack/compute".
std::string TargetName(const directory::v1::Registration& registration);
// "openstack/compute server=compute-1 kind=rpc node=node-1" (pool shown when set).
std::string DescribeRegistration(const directory::v1::Registration& registration);
// "-" for an empty string, else the string on one line.
std::string OrDash(absl::string_view text);
// "leader" / "follower" / "candidate" / "unavailable" / "unspecified".
std::string RoleName(directory::v1::Role role);
// "-" for lease 0 (permanent), else the id.
std::string LeaseName(int64_t lease_id);

// Flags that several commands share.
FlagSpec ExchangeFlag();

}  // namespace zmesh::cli
