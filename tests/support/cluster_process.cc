#include "tests/support/cluster_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "zmesh/directory/v1/cluster.grpc.pb.h"

namespace zmesh::testing {

absl::StatusOr<int> PickFreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return absl::InternalError("binding a free port failed");
  }
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

absl::StatusOr<std::unique_ptr<ClusterProcess>> ClusterProcess::Start(std::string base_dir,
                                                                      ClusterOptions options) {
  if (options.replicas < 1) return absl::InvalidArgumentError("replicas must be at least 1");
  std::unique_ptr<ClusterProcess> cluster(new ClusterProcess(std::move(base_dir), options));
  std::vector<std::string> peers;
  for (int i = 1; i <= options.replicas; ++i) {
    Replica& replica = cluster->Add(static_cast<uint64_t>(i));
    peers.push_back(absl::StrCat(i, "=", replica.raft_address));
  }
  const std::string initial = absl::StrJoin(peers, ",");
  for (auto& [id, replica] : cluster->replicas_) {
    replica.args = {"--initial-cluster", initial};
    if (absl::Status st = cluster->Launch(replica); !st.ok()) return st;
  }
  for (auto& [id, replica] : cluster->replicas_) {
    if (absl::Status st = cluster->WaitReady(id, options.ready_timeout_ms); !st.ok()) return st;
  }
  return cluster;
}

ClusterProcess::~ClusterProcess() {
  for (auto& [id, replica] : replicas_) {
    if (replica.process != nullptr && replica.process->running()) Kill(id);
  }
}

ClusterProcess::Replica& ClusterProcess::Add(uint64_t id) {
  Replica& replica = replicas_[id];
  replica.id = id;
  replica.grpc_address = absl::StrCat("127.0.0.1:", PickFreePort().value_or(0));
  replica.raft_address = absl::StrCat("127.0.0.1:", PickFreePort().value_or(0));
  replica.data_dir = absl::StrCat(base_dir_, "/replica-", id);
  replica.ready_path = absl::StrCat(base_dir_, "/replica-", id, ".ready");
  return replica;
}

ClusterProcess::Replica& ClusterProcess::Get(uint64_t id) { return replicas_.at(id); }
const ClusterProcess::Replica& ClusterProcess::Get(uint64_t id) const { return replicas_.at(id); }

std::vector<uint64_t> ClusterProcess::ids() const {
  std::vector<uint64_t> ids;
  for (const auto& [id, replica] : replicas_) ids.push_back(id);
  return ids;
}

const std::string& ClusterProcess::grpc_address(uint64_t id) const { return Get(id).grpc_address; }
const std::string& ClusterProcess::raft_address(uint64_t id) const { return Get(id).raft_address; }
const std::string& ClusterProcess::data_dir(uint64_t id) const { return Get(id).data_dir; }

std::string ClusterProcess::log_path(uint64_t id) const {
  const Replica& replica = Get(id);
  return absl::StrCat(base_dir_, "/replica-", id, ".", std::max(0, replica.launches - 1), ".log");
}

std::string ClusterProcess::addresses() const {
  std::vector<std::string> all;
  for (const auto& [id, replica] : replicas_) all.push_back(replica.grpc_address);
  return absl::StrJoin(all, ",");
}

bool ClusterProcess::running(uint64_t id) const {
  const Replica& replica = Get(id);
  return replica.process != nullptr && replica.process->running();
}

Subprocess& ClusterProcess::process(uint64_t id) { return *Get(id).process; }

absl::Status ClusterProcess::Launch(Replica& replica) {
  std::error_code ec;
  std::filesystem::create_directories(replica.data_dir, ec);
  std::filesystem::remove(replica.ready_path, ec);
  const std::string log =
      absl::StrCat(base_dir_, "/replica-", replica.id, ".", replica.launches++, ".log");
  std::vector<std::string> argv = {
      BinPath("zmesh-directory"), "--data-dir",   replica.data_dir,     "--id",
      absl::StrCat(replica.id),   "--listen",     replica.grpc_address, "--raft-listen",
      replica.raft_address,       "--ready-file", replica.ready_path};
  argv.insert(argv.end(), replica.args.begin(), replica.args.end());
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(argv, log, log);
  if (!process.ok()) return process.status();
  replica.process = *std::move(process);
  return absl::OkStatus();
}

absl::Status ClusterProcess::WaitReady(uint64_t id, int64_t timeout_ms) {
  Replica& replica = Get(id);
  absl::StatusOr<int> exited = absl::DeadlineExceededError("");
  const bool ready = Eventually(
      [&] {
        if (replica.process == nullptr) return true;
        exited = replica.process->Wait(0);
        if (exited.ok()) return true;
        std::ifstream in(replica.ready_path);
        std::string line;
        return static_cast<bool>(std::getline(in, line)) && !line.empty();
      },
      timeout_ms);
  if (exited.ok()) {
    return absl::InternalError(absl::StrCat(
        "replica ", id, " exited (", DescribeWaitStatus(*exited), "):\n", TailFile(log_path(id))));
  }
  if (!ready) {
    return absl::DeadlineExceededError(absl::StrCat("replica ", id, " not ready after ", timeout_ms,
                                                    " ms:\n", TailFile(log_path(id))));
  }
  return absl::OkStatus();
}

absl::Status ClusterProcess::Stop(uint64_t id) {
  Replica& replica = Get(id);
  if (replica.process == nullptr || !replica.process->running()) {
    return absl::FailedPreconditionError(absl::StrCat("replica ", id, " is not running"));
  }
  replica.process->Signal(SIGTERM);
  absl::StatusOr<int> status = replica.process->Wait(15000);
  if (!status.ok()) {
    Kill(id);
    return absl::DeadlineExceededError(
        absl::StrCat("replica ", id, " did not stop on SIGTERM:\n", TailFile(log_path(id))));
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return absl::InternalError(absl::StrCat("replica ", id, " ", DescribeWaitStatus(*status), ":\n",
                                            TailFile(log_path(id))));
  }
  return absl::OkStatus();
}

void ClusterProcess::Kill(uint64_t id) {
  Replica& replica = Get(id);
  if (replica.process == nullptr || !replica.process->running()) return;
  replica.process->Signal(SIGKILL);
  (void)replica.process->Wait(10000);
}

absl::Status ClusterProcess::Restart(uint64_t id) {
  Replica& replica = Get(id);
  if (replica.process != nullptr && replica.process->running()) {
    return absl::FailedPreconditionError(absl::StrCat("replica ", id, " is still running"));
  }
  if (absl::Status st = Launch(replica); !st.ok()) return st;
  return WaitReady(id, options_.ready_timeout_ms);
}

absl::Status ClusterProcess::Wipe(uint64_t id) {
  Replica& replica = Get(id);
  if (replica.process != nullptr && replica.process->running()) {
    return absl::FailedPreconditionError(absl::StrCat("replica ", id, " is still running"));
  }
  std::error_code ec;
  std::filesystem::remove_all(replica.data_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("wiping ", replica.data_dir, ": ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ClusterProcess::StartJoiner() {
  const uint64_t id = replicas_.empty() ? 1 : replicas_.rbegin()->first + 1;
  Replica& replica = Add(id);
  replica.args = {"--join"};
  if (absl::Status st = Launch(replica); !st.ok()) return st;
  return id;
}

absl::StatusOr<uint64_t> ClusterProcess::WaitForLeader(int64_t timeout_ms) {
  uint64_t leader = 0;
  const bool found = Eventually(
      [&] {
        for (const auto& [id, replica] : replicas_) {
          if (replica.process == nullptr || !replica.process->running()) continue;
          auto channel =
              grpc::CreateChannel(replica.grpc_address, grpc::InsecureChannelCredentials());
          auto stub = directory::v1::Cluster::NewStub(channel);
          grpc::ClientContext context;
          context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
          directory::v1::StatusResponse status;
          if (stub->Status(&context, directory::v1::StatusRequest(), &status).ok() &&
              status.role() == directory::v1::ROLE_LEADER) {
            leader = id;
            return true;
          }
        }
        return false;
      },
      timeout_ms);
  if (!found) return absl::UnavailableError("no leader elected in time");
  return leader;
}

}  // namespace zmesh::testing
