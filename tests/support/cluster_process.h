// ClusterProcess: a real multi-replica zmesh-directory cluster for tests and benchmarks, each
// replica its own process on loopback ports chosen at start (fixed across restarts).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/support/subprocess.h"

namespace zmesh::testing {

struct ClusterOptions {
  int replicas = 3;
  // Extra zmesh-directory flags for every replica.
  std::vector<std::string> extra_args;
  // Milliseconds to wait for each replica to be ready (joined).
  int64_t ready_timeout_ms = 20000;
};

// Not thread-safe; create it on the test's main thread (children die with the thread that
// started them, see Subprocess). Replica ids are 1..n. The destructor SIGKILLs every replica.
class ClusterProcess {
 public:
  // Starts every replica with --initial-cluster naming them all, then waits until each has
  // joined (written its ready file).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ClusterProcess>> Start(
      std::string base_dir, ClusterOptions options = {});
  ClusterProcess(const ClusterProcess&) = delete;
  ClusterProcess& operator=(const ClusterProcess&) = delete;
  ~ClusterProcess();

  // Ids of all replicas ever started, including joiners and stopped ones.
  std::vector<uint64_t> ids() const;
  const std::string& grpc_address(uint64_t id) const;
  const std::string& raft_address(uint64_t id) const;
  const std::string& data_dir(uint64_t id) const;
  // Log of the replica's latest launch.
  std::string log_path(uint64_t id) const;
  // "a,b,c": the gRPC addresses of the replicas (for clients and --directory).
  std::string addresses() const;
  bool running(uint64_t id) const;
  Subprocess& process(uint64_t id);

  // SIGTERM and wait for exit status 0.
  [[nodiscard]] absl::Status Stop(uint64_t id);
  // SIGKILL and reap.
  void Kill(uint64_t id);
  // Starts a stopped replica again (same ports, same data dir) and waits until it has joined.
  [[nodiscard]] absl::Status Restart(uint64_t id);
  // Deletes a stopped replica's data dir (it rejoins empty, from the leader, on Restart).
  [[nodiscard]] absl::Status Wipe(uint64_t id);
  // Starts a new replica with --join (not yet a member: add it with Cluster.AddMember, then
  // WaitReady). Returns its id.
  [[nodiscard]] absl::StatusOr<uint64_t> StartJoiner();
  // Waits until the replica has joined (its ready file exists).
  [[nodiscard]] absl::Status WaitReady(uint64_t id, int64_t timeout_ms = 20000);
  // Polls the running replicas until one says it is the leader; returns its id.
  [[nodiscard]] absl::StatusOr<uint64_t> WaitForLeader(int64_t timeout_ms = 10000);

 private:
  struct Replica {
    uint64_t id = 0;
    std::string grpc_address;
    std::string raft_address;
    std::string data_dir;
    std::string ready_path;
    std::vector<std::string> args;  // flags besides the common ones
    int launches = 0;
    std::unique_ptr<Subprocess> process;
  };
  explicit ClusterProcess(std::string base_dir, ClusterOptions options)
      : base_dir_(std::move(base_dir)), options_(std::move(options)) {}
  absl::Status Launch(Replica& replica);
  Replica& Get(uint64_t id);
  const Replica& Get(uint64_t id) const;
  Replica& Add(uint64_t id);

  std::string base_dir_;
  ClusterOptions options_;
  std::map<uint64_t, Replica> replicas_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bound, then released).
absl::StatusOr<int> PickFreePort();

}  // namespace zmesh::testing
