#include "controlplane/service/directory_server.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics/metrics_server.h"
#include "common/timer_queue.h"
#include "controlplane/raft/raft_consensus.h"
#include "controlplane/service/directory_metrics.h"
#include "controlplane/service/directory_service.h"
#include "controlplane/service/leader_router.h"
#include "controlplane/service/lease_expirer.h"
#include "controlplane/service/lease_keeper.h"
#include "controlplane/service/peer_service.h"
#include "controlplane/service/watch_hub.h"
#include "controlplane/store/sqlite_store.h"

namespace zmesh::service {
namespace {

// An exclusive flock on DATA_DIR/LOCK, held for the server's life.
class DataDirLock {
 public:
  static absl::StatusOr<std::unique_ptr<DataDirLock>> Acquire(const std::string& dir) {
    const std::string path = dir + "/LOCK";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return absl::PermissionDeniedError(absl::StrCat("opening ", path, ": ", strerror(errno)));
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      return absl::FailedPreconditionError(
          absl::StrCat("data dir ", dir, " is in use by another zmesh-directory"));
    }
    return std::unique_ptr<DataDirLock>(new DataDirLock(fd));
  }
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;
  ~DataDirLock() { ::close(fd_); }

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_;
};

// Makes this replica's gRPC address known to the others (a SetMember command through the
// leader), and again whenever the recorded one differs, e.g. after a restart on a new port.
class MemberAnnouncer {
 public:
  MemberAnnouncer(store::Store& store, LeaderRouter& router, state::v1::SetMember self,
                  std::function<void(const std::string&)> on_joined)
      : store_(store), router_(router), self_(std::move(self)), on_joined_(std::move(on_joined)) {
    thread_ = std::thread([this] { Run(); });
  }
  MemberAnnouncer(const MemberAnnouncer&) = delete;
  MemberAnnouncer& operator=(const MemberAnnouncer&) = delete;
  ~MemberAnnouncer() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    thread_.join();
  }

 private:
  bool Recorded() {
    absl::StatusOr<std::vector<state::v1::SetMember>> members = store_.Members();
    if (!members.ok()) return false;
    for (const state::v1::SetMember& m : *members) {
      if (m.id() == self_.id()) {
        return m.grpc_address() == self_.grpc_address() && m.raft_address() == self_.raft_address();
      }
    }
    return false;
  }

  void Run() {
    while (true) {
      int64_t pause_ms = 2000;
      if (Recorded()) {
        if (on_joined_) {
          ZLOG_INFO("joined the cluster");
          std::exchange(on_joined_, nullptr)(self_.grpc_address());
        }
      } else {
        pause_ms = 100;
        absl::Notification done;
        state::v1::Command command;
        *command.mutable_set_member() = self_;
        router_.Propose(std::move(command), SystemClock::Get().NowMs() + 1000,
                        [&done](const absl::StatusOr<store::CommandResult>& result) {
                          if (result.ok()) ZLOG_DEBUG("announced this replica's address");
                          done.Notify();
                        });
        done.WaitForNotification();
        if (Recorded()) pause_ms = 0;
      }
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(pause_ms))) {
        return;
      }
    }
  }

  store::Store& store_;
  LeaderRouter& router_;
  const state::v1::SetMember self_;
  std::function<void(const std::string&)> on_joined_;  // called once, then cleared
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace

struct DirectoryServer::Impl {
  DirectoryServerOptions options;
  std::unique_ptr<DataDirLock> lock;
  std::unique_ptr<store::SqliteStore> store;
  std::unique_ptr<raft::RaftConsensus> consensus;
  std::unique_ptr<TimerQueue> timers;
  std::unique_ptr<LeaseKeeper> keeper;
  std::unique_ptr<WatchHub> hub;
  std::unique_ptr<LeaseExpirer> expirer;
  std::unique_ptr<LeaderRouter> router;
  // Role changes to options.on_role_changed.
  class RoleForwarder final : public raft::RoleObserver {
   public:
    explicit RoleForwarder(std::function<void(const raft::ConsensusStatus&)> forward)
        : forward_(std::move(forward)) {}
    void OnRoleChanged(const raft::ConsensusStatus& status) override { forward_(status); }

   private:
    const std::function<void(const raft::ConsensusStatus&)> forward_;
  };
  std::unique_ptr<RoleForwarder> role_forwarder;
  std::unique_ptr<ServiceContext> context;
  std::unique_ptr<DirectoryService> directory_service;
  std::unique_ptr<LeaseService> lease_service;
  std::unique_ptr<ClusterService> cluster_service;
  std::unique_ptr<PeerService> peer_service;
  // Destroyed in reverse order: the gRPC server (whose interceptors count into the metrics
  // server's registry), then the metrics server (whose scrapes call `metrics`), then `metrics`.
  std::unique_ptr<DirectoryMetrics> metrics;
  std::unique_ptr<metrics::MetricsServer> metrics_server;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<MemberAnnouncer> announcer;
  std::string address;
  absl::Mutex mu;
  bool shut_down ABSL_GUARDED_BY(mu) = false;
};

absl::StatusOr<std::unique_ptr<DirectoryServer>> DirectoryServer::Start(
    DirectoryServerOptions options) {
  auto impl = std::make_unique<Impl>();
  if (options.data_dir.empty()) return absl::InvalidArgumentError("data dir must be given");
  std::error_code ec;
  std::filesystem::create_directories(options.data_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("creating data dir ", options.data_dir, ": ", ec.message()));
  }
  absl::StatusOr<std::unique_ptr<DataDirLock>> lock = DataDirLock::Acquire(options.data_dir);
  if (!lock.ok()) return lock.status();
  impl->lock = *std::move(lock);

  store::SqliteStoreOptions store_options;
  store_options.path = options.data_dir + "/directory.db";
  store_options.history_revisions = options.history_revisions;
  // The Raft log makes applied commands durable: the store need not fsync each commit.
  store_options.sync_commits = false;
  absl::StatusOr<std::unique_ptr<store::SqliteStore>> store =
      store::SqliteStore::Open(store_options);
  if (!store.ok()) return store.status();
  impl->store = *std::move(store);
  ZLOG_INFO("opened %s at revision %d (applied index %d)", store_options.path,
            impl->store->revision(), impl->store->applied_index());

  // gRPC first, so the advertised address (with a port picked by the kernel) is known before
  // this replica announces it. Requests wait for Raft through the router meanwhile.
  impl->timers = std::make_unique<TimerQueue>();
  raft::RaftConsensusOptions raft_options = options.raft;
  if (raft_options.dir.empty()) raft_options.dir = options.data_dir + "/raft";
  impl->consensus = std::make_unique<raft::RaftConsensus>(*impl->store, raft_options);
  impl->keeper = std::make_unique<LeaseKeeper>(SystemClock::Get());
  impl->hub = std::make_unique<WatchHub>(*impl->store);
  impl->expirer = std::make_unique<LeaseExpirer>(*impl->keeper, *impl->consensus, *impl->store);
  impl->router = std::make_unique<LeaderRouter>(*impl->consensus, *impl->store, *impl->expirer,
                                                *impl->timers, options.leader_wait_ms);
  impl->consensus->AddObserver(impl->hub.get());
  impl->consensus->AddObserver(impl->expirer.get());
  impl->consensus->AddRoleObserver(impl->expirer.get());
  if (options.on_role_changed) {
    impl->role_forwarder = std::make_unique<Impl::RoleForwarder>(options.on_role_changed);
    impl->consensus->AddRoleObserver(impl->role_forwarder.get());
  }
  if (!options.metrics_listen.empty()) {
    absl::StatusOr<std::unique_ptr<metrics::MetricsServer>> metrics_server =
        metrics::MetricsServer::Start(options.metrics_listen);
    if (!metrics_server.ok()) return metrics_server.status();
    impl->metrics_server = *std::move(metrics_server);
    impl->metrics = std::make_unique<DirectoryMetrics>(*impl->metrics_server, *impl->consensus,
                                                       *impl->store, *impl->hub, *impl->keeper);
  }

  // An aggregate with reference members: std::make_unique cannot brace-initialize it.
  // NOLINTNEXTLINE(modernize-make-unique)
  impl->context = std::unique_ptr<ServiceContext>(
      new ServiceContext{*impl->store, *impl->consensus, *impl->router, *impl->expirer, *impl->hub,
                         "", options.max_watch_backlog});
  impl->directory_service = std::make_unique<DirectoryService>(*impl->context);
  impl->lease_service = std::make_unique<LeaseService>(*impl->context);
  impl->cluster_service = std::make_unique<ClusterService>(*impl->context);
  impl->peer_service =
      std::make_unique<PeerService>(*impl->consensus, *impl->router, *impl->expirer);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(impl->directory_service.get());
  builder.RegisterService(impl->lease_service.get());
  builder.RegisterService(impl->cluster_service.get());
  builder.RegisterService(impl->peer_service.get());
  builder.SetMaxReceiveMessageSize(options.max_request_bytes);
  if (impl->metrics != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(impl->metrics->NewInterceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  // Detect dead clients (and their abandoned streams) without waiting for TCP timeouts.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  std::string host = options.listen.substr(0, options.listen.rfind(':'));
  impl->address = absl::StrCat(host, ":", port);
  impl->context->grpc_address = options.advertise.empty() ? impl->address : options.advertise;

  impl->expirer->Start();
  if (absl::Status st = impl->consensus->Start(); !st.ok()) {
    impl->server->Shutdown(std::chrono::system_clock::now());
    impl->expirer->Stop();
    return st;
  }
  state::v1::SetMember self;
  self.set_id(raft_options.id);
  self.set_raft_address(raft_options.raft_address);
  self.set_grpc_address(impl->context->grpc_address);
  std::function<void(const std::string&)> on_joined;
  if (options.on_joined) {
    const int metrics_port = impl->metrics_server != nullptr ? impl->metrics_server->port() : 0;
    on_joined = [callback = options.on_joined, metrics_port](const std::string& address) {
      callback(address, metrics_port);
    };
  }
  impl->announcer =
      std::make_unique<MemberAnnouncer>(*impl->store, *impl->router, self, std::move(on_joined));
  if (grpc::HealthCheckServiceInterface* health = impl->server->GetHealthCheckService()) {
    health->SetServingStatus(true);
  }
  impl->options = std::move(options);
  if (impl->metrics_server != nullptr) {
    ZLOG_INFO("serving on %s (raft %s), metrics on port %d", impl->address,
              raft_options.raft_address, impl->metrics_server->port());
  } else {
    ZLOG_INFO("serving on %s (raft %s)", impl->address, raft_options.raft_address);
  }
  return std::unique_ptr<DirectoryServer>(new DirectoryServer(std::move(impl)));
}

DirectoryServer::DirectoryServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DirectoryServer::~DirectoryServer() { Shutdown(); }

const std::string& DirectoryServer::address() const { return impl_->address; }

int DirectoryServer::metrics_port() const {
  return impl_->metrics_server != nullptr ? impl_->metrics_server->port() : 0;
}

void DirectoryServer::Shutdown() {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->shut_down) return;
    impl_->shut_down = true;
  }
  ZLOG_INFO("shutting down");
  if (grpc::HealthCheckServiceInterface* health = impl_->server->GetHealthCheckService()) {
    health->SetServingStatus(false);
  }
  impl_->announcer.reset();
  impl_->router->Stop();
  // Raft first: proposals in flight fail, so no handler waits on a commit; then gRPC, whose
  // streams (watch, keepalive) never end by themselves: the deadline cancels them.
  impl_->consensus->Stop();
  if (impl_->options.on_role_changed) impl_->options.on_role_changed(impl_->consensus->status());
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  impl_->server->Wait();
  impl_->expirer->Stop();
  impl_->timers.reset();  // runs what is left: the router's retries fail fast now
  ZLOG_INFO("stopped at revision %d", impl_->store->revision());
}

}  // namespace zmesh::service
