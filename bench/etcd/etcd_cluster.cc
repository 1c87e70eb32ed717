#include "bench/etcd/etcd_cluster.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "etcd/etcd_subset.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/support/cluster_process.h"

namespace zmesh::bench {
namespace {

std::chrono::system_clock::time_point DeadlineIn(int64_t ms) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(std::string base_dir,
                                                                const EtcdOptions& options) {
  if (options.members < 1) return absl::InvalidArgumentError("members must be at least 1");
  if (::access(options.binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(options.binary, " is not there: install Debian's etcd-server (scripts/",
                     "install-deps does) or pass the etcd binary's path"));
  }
  std::error_code ec;
  std::filesystem::create_directories(base_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", base_dir, ": ", ec.message()));
  std::unique_ptr<EtcdCluster> cluster(new EtcdCluster(std::move(base_dir), options));
  std::vector<std::string> peers;
  for (int i = 0; i < options.members; ++i) {
    absl::StatusOr<int> client_port = testing::PickFreePort();
    absl::StatusOr<int> peer_port = testing::PickFreePort();
    if (!client_port.ok()) return client_port.status();
    if (!peer_port.ok()) return peer_port.status();
    Member member;
    member.name = absl::StrCat("etcd-", i);
    member.client_address = absl::StrCat("127.0.0.1:", *client_port);
    member.peer_url = absl::StrCat("http://127.0.0.1:", *peer_port);
    member.data_dir = absl::StrCat(cluster->base_dir_, "/", member.name);
    peers.push_back(absl::StrCat(member.name, "=", member.peer_url));
    cluster->members_.push_back(std::move(member));
  }
  cluster->initial_cluster_ = absl::StrJoin(peers, ",");
  for (int i = 0; i < cluster->size(); ++i) {
    if (absl::Status st = cluster->Launch(i); !st.ok()) return st;
  }
  if (absl::Status st = cluster->WaitHealthy(options.ready_timeout_ms); !st.ok()) return st;
  return cluster;
}

EtcdCluster::~EtcdCluster() {
  for (int i = 0; i < size(); ++i) Kill(i);
}

const std::string& EtcdCluster::client_address(int index) const {
  return members_.at(index).client_address;
}

std::string EtcdCluster::log_path(int index) const {
  const Member& member = members_.at(index);
  return absl::StrCat(base_dir_, "/", member.name, ".", std::max(0, member.launches - 1), ".log");
}

bool EtcdCluster::running(int index) const {
  const Member& member = members_.at(index);
  return member.process != nullptr && member.process->running();
}

absl::Status EtcdCluster::Launch(int index) {
  Member& member = members_.at(index);
  const std::string log = absl::StrCat(base_dir_, "/", member.name, ".", member.launches++, ".log");
  const std::string client_url = absl::StrCat("http://", member.client_address);
  // On a restart the data dir holds the member's WAL, and etcd ignores the --initial-* flags.
  // clang-format off
  std::vector<std::string> argv = {
      options_.binary,
      "--name", member.name,
      "--data-dir", member.data_dir,
      "--listen-client-urls", client_url,
      "--advertise-client-urls", client_url,
      "--listen-peer-urls", member.peer_url,
      "--initial-advertise-peer-urls", member.peer_url,
      "--initial-cluster", initial_cluster_,
      "--initial-cluster-state", "new",
      "--initial-cluster-token", absl::StrCat("zmesh-bench-", ::getpid()),
      "--heartbeat-interval", absl::StrCat(options_.heartbeat_ms),
      "--election-timeout", absl::StrCat(options_.election_timeout_ms),
      "--logger", "zap",
      "--log-outputs", "stderr",
      "--log-level", "warn"};
  // clang-format on
  absl::StatusOr<std::unique_ptr<testing::Subprocess>> process =
      testing::Subprocess::Start(argv, log, log);
  if (!process.ok()) {
    return absl::Status(process.status().code(),
                        absl::StrCat("starting ", member.name, ": ", process.status().message()));
  }
  member.process = *std::move(process);
  return absl::OkStatus();
}

absl::Status EtcdCluster::CheckAlive() {
  for (int i = 0; i < size(); ++i) {
    Member& member = members_[i];
    if (member.process == nullptr || !member.process->running()) continue;
    absl::StatusOr<int> exited = member.process->Wait(0);
    if (exited.ok()) {
      return absl::InternalError(absl::StrCat(member.name, " exited (",
                                              testing::DescribeWaitStatus(*exited), "):\n",
                                              testing::TailFile(log_path(i))));
    }
  }
  return absl::OkStatus();
}

absl::Status EtcdCluster::WaitHealthy(int64_t timeout_ms) {
  absl::Status alive;
  std::string last_error = "no answer yet";
  const bool healthy = testing::Eventually(
      [&] {
        alive = CheckAlive();
        if (!alive.ok()) return true;
        for (int i = 0; i < size(); ++i) {
          if (!running(i)) continue;
          auto stub = etcdserverpb::KV::NewStub(
              grpc::CreateChannel(client_address(i), grpc::InsecureChannelCredentials()));
          grpc::ClientContext context;
          context.set_deadline(DeadlineIn(1000));
          etcdserverpb::RangeRequest request;
          request.set_key("health");
          etcdserverpb::RangeResponse response;
          grpc::Status status = stub->Range(&context, request, &response);
          if (!status.ok()) {
            last_error = absl::StrCat(members_[i].name, ": ", status.error_message());
            return false;
          }
        }
        return true;
      },
      timeout_ms);
  if (!alive.ok()) return alive;
  if (!healthy) {
    return absl::DeadlineExceededError(
        absl::StrCat("etcd not healthy after ", timeout_ms, " ms (", last_error, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> EtcdCluster::WaitForLeader(int64_t timeout_ms) const {
  int leader = -1;
  const bool found = testing::Eventually(
      [&] {
        for (int i = 0; i < size(); ++i) {
          if (!running(i)) continue;
          auto stub = etcdserverpb::Maintenance::NewStub(
              grpc::CreateChannel(client_address(i), grpc::InsecureChannelCredentials()));
          grpc::ClientContext context;
          context.set_deadline(DeadlineIn(500));
          etcdserverpb::StatusResponse status;
          if (stub->Status(&context, etcdserverpb::StatusRequest(), &status).ok() &&
              status.leader() != 0 && status.leader() == status.header().member_id()) {
            leader = i;
            return true;
          }
        }
        return false;
      },
      timeout_ms);
  if (!found) return absl::UnavailableError("no etcd leader elected in time");
  return leader;
}

void EtcdCluster::Kill(int index) {
  Member& member = members_.at(index);
  if (member.process == nullptr || !member.process->running()) return;
  member.process->Signal(SIGKILL);
  (void)member.process->Wait(10000);
}

absl::Status EtcdCluster::Restart(int index) {
  if (running(index)) {
    return absl::FailedPreconditionError(
        absl::StrCat(members_.at(index).name, " is still running"));
  }
  if (absl::Status st = Launch(index); !st.ok()) return st;
  return WaitHealthy(options_.ready_timeout_ms);
}

absl::Status EtcdCluster::Stop() {
  // One at a time: a stopping leader first hands leadership to a live follower, which is quick;
  // SIGTERM to all at once makes it wait for a transfer that cannot happen (about 7 s).
  absl::Status result;
  for (int i = 0; i < size(); ++i) {
    Member& member = members_[i];
    if (member.process == nullptr || !member.process->running()) continue;
    member.process->Signal(SIGTERM);
    absl::StatusOr<int> status = member.process->Wait(15000);
    if (!status.ok()) {
      Kill(i);
      result.Update(
          absl::DeadlineExceededError(absl::StrCat(member.name, " did not stop on SIGTERM")));
      continue;
    }
    const bool clean = (WIFEXITED(*status) && WEXITSTATUS(*status) == 0) ||
                       (WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM);
    if (!clean) {
      result.Update(
          absl::InternalError(absl::StrCat(member.name, " ", testing::DescribeWaitStatus(*status),
                                           ":\n", testing::TailFile(log_path(i)))));
    }
  }
  return result;
}

}  // namespace zmesh::bench
