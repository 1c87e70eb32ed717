// The zmesh side of zmesh-bench-dataplane: a real zmesh-directory (one replica), one zmesh-proxy
// for the client's node ("bench-client") and one per server node ("bench-node-1".."-N"), and on
// each server node one server process (this binary in the zmesh-server role) holding a
// zmesh::Server on (topic "bench", server "server-<i>") that echoes CALLs and counts CASTs and
// FANOUTs. The client is the orchestrating process itself, with one zmesh::Transport.
//
//   call:    Transport::Call to server-1: client -tcp-> node-1's proxy -ipc-> server-1 and back
//   cast:    Transport::Cast to server-1 (unacknowledged, the default)
//   fanout:  Transport::Fanout to topic "bench": one message to each node's proxy, which hands
//            it to its local server
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/dataplane/child_process.h"
#include "bench/dataplane/control.h"
#include "bench/dataplane/raw.h"
#include "bench/dataplane/runner.h"
#include "bench/dataplane/usage.h"
#include "tests/support/directory_process.h"
#include "tests/support/proxy_process.h"
#include "zmesh/transport.h"

namespace zmesh::bench {

// The zmesh-server child role (flags: ipc_dir, topic, server, control, ready_file): a Transport
// on the proxy at ipc_dir and a Server (default ServerOptions) on (topic, server). Exit status
// 0 after SIGTERM once the server and transport closed cleanly.
int RunZmeshServerRole(const RoleOptions& options);

// Casts of the CastAsync case that may be on their way (handed to the Transport, not yet
// reported sent) at once.
inline constexpr int kCastAsyncWindow = 1000;

struct ZmeshSystemOptions {
  std::string dir;       // for the directory's data, the proxies' IPC dirs and the logs; short
  int server_nodes = 3;  // proxies with one server process each
  // Words put before every zmesh-proxy command (e.g. {"valgrind", "--tool=callgrind"}).
  std::vector<std::string> proxy_prefix;
};

// Not thread-safe; create and stop on main()'s thread (the processes die with that thread).
class ZmeshSystem {
 public:
  // Starts everything and waits until every server is registered, then connects the client
  // Transport. Everything started is killed when it fails.
  static absl::StatusOr<std::unique_ptr<ZmeshSystem>> Start(zmq::context_t& context,
                                                            const ZmeshSystemOptions& options);
  ZmeshSystem(const ZmeshSystem&) = delete;
  ZmeshSystem& operator=(const ZmeshSystem&) = delete;
  ~ZmeshSystem();

  CallPath& call_path() { return *call_path_; }
  OneWaySender& cast_sender() { return *cast_sender_; }
  std::vector<ReceiverControl*> cast_receivers() { return {controls_[0].get()}; }
  // Transport::CastAsync with at most kCastAsyncWindow casts not yet handed over.
  OneWaySender& cast_async_sender() { return *cast_async_sender_; }
  OneWaySender& fanout_sender() { return *fanout_sender_; }
  std::vector<ReceiverControl*> fanout_receivers();
  Transport& transport() { return *transport_; }
  // This process ("client"), the directory, the proxies and the servers, for a UsageMeter.
  std::vector<UsageMeter::Process> processes();

  // Closes the client, then stops the servers, the proxies and the directory, each expected to
  // exit cleanly (status 0); the first error.
  [[nodiscard]] absl::Status Stop();

 private:
  ZmeshSystem() = default;

  std::unique_ptr<testing::DirectoryProcess> directory_;
  std::vector<std::unique_ptr<testing::ProxyProcess>> proxies_;  // [0] is the client's node
  std::vector<std::unique_ptr<ChildProcess>> servers_;
  std::vector<std::unique_ptr<ReceiverControl>> controls_;  // one per server
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<CallPath> call_path_;
  std::unique_ptr<OneWaySender> cast_sender_;
  std::unique_ptr<OneWaySender> cast_async_sender_;
  std::unique_ptr<OneWaySender> fanout_sender_;
};

}  // namespace zmesh::bench
