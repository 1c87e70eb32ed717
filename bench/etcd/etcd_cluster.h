// EtcdCluster: a real multi-member etcd cluster (Debian's etcd-server, etcd 3.4) on loopback, the
// baseline zmesh-bench-cluster compares zmesh-directory against.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/support/subprocess.h"

namespace zmesh::bench {

struct EtcdOptions {
  int members = 3;
  std::string binary = "/usr/bin/etcd";
  // etcd's --heartbeat-interval and --election-timeout; the defaults are etcd's own.
  int heartbeat_ms = 100;
  int election_timeout_ms = 1000;
  // Milliseconds to wait for the cluster (or a restarted member) to be healthy.
  int64_t ready_timeout_ms = 20000;
};

// Not thread-safe; create it on main()'s thread (children die with the thread that started them,
// see testing::Subprocess). Members are indexed 0..members-1; each has its own data dir under
// base_dir and a log file next to it. The destructor SIGKILLs every member still running, so every
// failure path of the caller stops the cluster.
class EtcdCluster {
 public:
  // Starts every member with --initial-cluster naming them all, then waits until the cluster is
  // healthy (see WaitHealthy). FAILED_PRECONDITION when options.binary does not exist.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(
      std::string base_dir, const EtcdOptions& options = {});
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;
  ~EtcdCluster();

  int size() const { return static_cast<int>(members_.size()); }
  // "127.0.0.1:PORT", the member's gRPC (client URL) address.
  const std::string& client_address(int index) const;
  // Log of the member's latest launch.
  std::string log_path(int index) const;
  bool running(int index) const;

  // Waits until every running member answers a linearizable Range (which needs a leader and a
  // quorum) within the timeout.
  [[nodiscard]] absl::Status WaitHealthy(int64_t timeout_ms);
  // Polls the running members until one says it is the leader; returns its index.
  [[nodiscard]] absl::StatusOr<int> WaitForLeader(int64_t timeout_ms = 10000) const;
  // SIGKILL and reap.
  void Kill(int index);
  // Starts a killed member again on its data dir and ports, then waits until the cluster is
  // healthy.
  [[nodiscard]] absl::Status Restart(int index);
  // SIGTERMs the running members one at a time, waiting for each to exit (etcd exits with
  // status 0 or by re-raising SIGTERM; both count as clean).
  [[nodiscard]] absl::Status Stop();

 private:
  struct Member {
    std::string name;
    std::string client_address;  // 127.0.0.1:PORT
    std::string peer_url;        // http://127.0.0.1:PORT
    std::string data_dir;
    int launches = 0;
    std::unique_ptr<testing::Subprocess> process;
  };
  EtcdCluster(std::string base_dir, EtcdOptions options)
      : base_dir_(std::move(base_dir)), options_(std::move(options)) {}
  absl::Status Launch(int index);
  // An error naming the first member that exited, with its log's tail; OK if all still run.
  absl::Status CheckAlive();

  std::string base_dir_;
  EtcdOptions options_;
  std::string initial_cluster_;  // name=peer_url,...
  std::vector<Member> members_;
};

}  // namespace zmesh::bench
