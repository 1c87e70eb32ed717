#include "bench/dataplane/zmesh.h"

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "zmesh/server.h"

namespace zmesh::bench {
namespace {

constexpr char kTopic[] = "bench";
constexpr char kClientNode[] = "bench-client";
constexpr int64_t kCallTimeoutMs = 10000;

std::string ServerName(int i) { return absl::StrCat("server-", i + 1); }

class ZmeshCaller : public Caller {
 public:
  ZmeshCaller(Transport& transport, Target target)
      : transport_(transport), target_(std::move(target)) {
    options_.timeout_ms = kCallTimeoutMs;
  }

  absl::Status Call(const std::string& payload) override {
    absl::StatusOr<CallResult> result = transport_.Call(target_, payload, options_);
    if (!result.ok()) return result.status();
    if (result->remote_error) {
      return absl::InternalError(absl::StrCat("remote error: ", result->payload));
    }
    if (result->payload != payload) return absl::DataLossError("the echo differs from the request");
    return absl::OkStatus();
  }

 private:
  Transport& transport_;
  Target target_;
  CallOptions options_;
};

// Every caller shares the one Transport, as the threads of a service process would.
class ZmeshCallPath : public CallPath {
 public:
  ZmeshCallPath(Transport& transport, Target target)
      : transport_(transport), target_(std::move(target)) {}
  absl::StatusOr<std::unique_ptr<Caller>> NewCaller() override {
    return std::unique_ptr<Caller>(new ZmeshCaller(transport_, target_));
  }

 private:
  Transport& transport_;
  Target target_;
};

class ZmeshCastSender : public OneWaySender {
 public:
  ZmeshCastSender(Transport& transport, Target target)
      : transport_(transport), target_(std::move(target)) {}
  absl::Status Send(const std::string& payload) override {
    return transport_.Cast(target_, payload);
  }

 private:
  Transport& transport_;
  Target target_;
};

// Keeps up to kCastAsyncWindow CastAsync calls outstanding, so the sender does not wait for the
// Transport's I/O thread on every message.
class ZmeshCastAsyncSender : public OneWaySender {
 public:
  ZmeshCastAsyncSender(Transport& transport, Target target)
      : transport_(transport), target_(std::move(target)) {}
  ~ZmeshCastAsyncSender() override {
    absl::MutexLock lock(&mu_);
    auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
    mu_.Await(absl::Condition(&drained));
  }

  absl::Status Send(const std::string& payload) override {
    {
      absl::MutexLock lock(&mu_);
      auto room = [this]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ < kCastAsyncWindow; };
      mu_.Await(absl::Condition(&room));
      if (!first_error_.ok()) return first_error_;
      ++in_flight_;
    }
    transport_.CastAsync(target_, payload, CastOptions{}, [this](absl::Status status) {
      absl::MutexLock lock(&mu_);
      --in_flight_;
      if (!status.ok() && first_error_.ok()) first_error_ = status;
    });
    return absl::OkStatus();
  }

 private:
  Transport& transport_;
  Target target_;
  absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);
};

class ZmeshFanoutSender : public OneWaySender {
 public:
  ZmeshFanoutSender(Transport& transport, Target target)
      : transport_(transport), target_(std::move(target)) {}
  absl::Status Send(const std::string& payload) override {
    return transport_.Fanout(target_, payload);
  }

 private:
  Transport& transport_;
  Target target_;
};

}  // namespace

int RunZmeshServerRole(const RoleOptions& options) {
  zmq::context_t context;  // of the control socket only
  WatchTermination([&context]() { context.shutdown(); });
  TransportOptions transport_options;
  transport_options.ipc_dir = options.ipc_dir;
  transport_options.description = absl::StrCat("zmesh-bench-dataplane server ", options.server);
  absl::StatusOr<std::unique_ptr<Transport>> transport = Transport::Create(transport_options);
  if (!transport.ok()) {
    fprintf(stderr, "zmesh-server: %s\n", transport.status().ToString().c_str());
    return 1;
  }
  DeliveryCounter counter;
  Target target;
  target.topic = options.topic;
  target.server = options.server;
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Start(**transport, target, [&counter](const Request& request, Responder& responder) {
        if (request.kind == MessageKind::kCall) {
          responder.Reply(request.payload);
        } else {
          counter.Add();
        }
      });
  if (!server.ok()) {
    fprintf(stderr, "zmesh-server: starting the server: %s\n", server.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<zmq::socket_t> control = BindControl(context, options.control);
  absl::Status status = control.status();
  if (status.ok()) status = WriteReadyFile(options.ready_file, (*transport)->instance_id());
  if (status.ok()) status = ServeControl(*control, counter);
  (*server)->Stop();
  (*transport)->Close();
  if (!status.ok()) {
    fprintf(stderr, "zmesh-server: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}

absl::StatusOr<std::unique_ptr<ZmeshSystem>> ZmeshSystem::Start(zmq::context_t& context,
                                                                const ZmeshSystemOptions& options) {
  std::unique_ptr<ZmeshSystem> system(new ZmeshSystem());
  absl::StatusOr<std::unique_ptr<testing::DirectoryProcess>> directory =
      testing::DirectoryProcess::Start(options.dir + "/directory");
  if (!directory.ok()) return directory.status();
  system->directory_ = std::move(*directory);

  for (int i = 0; i <= options.server_nodes; ++i) {
    testing::ProxyProcessOptions proxy_options;
    proxy_options.directory = system->directory_->address();
    proxy_options.node_name = i == 0 ? kClientNode : absl::StrCat("bench-node-", i);
    proxy_options.ipc_dir = absl::StrCat(options.dir, "/p", i);
    proxy_options.command_prefix = options.proxy_prefix;
    absl::StatusOr<std::unique_ptr<testing::ProxyProcess>> proxy =
        testing::ProxyProcess::Start(proxy_options);
    if (!proxy.ok()) {
      return absl::Status(
          proxy.status().code(),
          absl::StrCat("starting proxy ", proxy_options.node_name, ": ", proxy.status().message()));
    }
    system->proxies_.push_back(std::move(*proxy));
  }

  // Each server process returns from Server::Start (and writes its ready file) once the
  // directory has its target.
  for (int i = 0; i < options.server_nodes; ++i) {
    const std::string name = absl::StrCat("zmesh-", ServerName(i));
    const std::string control = absl::StrCat("ipc://", options.dir, "/", name, ".ctl");
    absl::StatusOr<std::unique_ptr<ChildProcess>> server = ChildProcess::Start(
        options.dir, name,
        {"--role=zmesh-server", "--ipc_dir=" + system->proxies_[i + 1]->ipc_dir(),
         absl::StrCat("--topic=", kTopic), "--server=" + ServerName(i), "--control=" + control});
    if (!server.ok()) return server.status();
    system->servers_.push_back(std::move(*server));
    absl::StatusOr<std::unique_ptr<ReceiverControl>> receiver =
        ReceiverControl::Connect(context, control, name);
    if (!receiver.ok()) return receiver.status();
    system->controls_.push_back(std::move(*receiver));
  }

  TransportOptions transport_options;
  transport_options.ipc_dir = system->proxies_[0]->ipc_dir();
  transport_options.description = "zmesh-bench-dataplane client";
  absl::StatusOr<std::unique_ptr<Transport>> transport = Transport::Create(transport_options);
  if (!transport.ok()) {
    return absl::Status(transport.status().code(),
                        absl::StrCat("client transport: ", transport.status().message()));
  }
  system->transport_ = std::move(*transport);
  Target one;
  one.topic = kTopic;
  one.server = ServerName(0);
  Target group;
  group.topic = kTopic;
  system->call_path_ = std::make_unique<ZmeshCallPath>(*system->transport_, one);
  system->cast_sender_ = std::make_unique<ZmeshCastSender>(*system->transport_, one);
  system->cast_async_sender_ = std::make_unique<ZmeshCastAsyncSender>(*system->transport_, one);
  system->fanout_sender_ = std::make_unique<ZmeshFanoutSender>(*system->transport_, group);
  return system;
}

ZmeshSystem::~ZmeshSystem() {
  if (transport_ != nullptr) transport_->Close();
}

std::vector<ReceiverControl*> ZmeshSystem::fanout_receivers() {
  std::vector<ReceiverControl*> receivers;
  for (const std::unique_ptr<ReceiverControl>& control : controls_) {
    receivers.push_back(control.get());
  }
  return receivers;
}

std::vector<UsageMeter::Process> ZmeshSystem::processes() {
  std::vector<UsageMeter::Process> processes = {{"client", 0}};
  if (directory_ != nullptr) processes.push_back({"directory", directory_->process().pid()});
  for (size_t i = 0; i < proxies_.size(); ++i) {
    processes.push_back({i == 0 ? std::string("proxy-client") : absl::StrCat("proxy-", i),
                         proxies_[i]->process().pid()});
  }
  for (const std::unique_ptr<ChildProcess>& server : servers_) {
    processes.push_back({server->name(), server->pid()});
  }
  return processes;
}

absl::Status ZmeshSystem::Stop() {
  absl::Status first;
  auto note = [&first](absl::Status status) {
    if (first.ok()) first = std::move(status);
  };
  call_path_.reset();
  cast_sender_.reset();
  cast_async_sender_.reset();
  fanout_sender_.reset();
  if (transport_ != nullptr) transport_->Close();
  transport_.reset();
  controls_.clear();
  for (const std::unique_ptr<ChildProcess>& server : servers_) note(server->Stop());
  for (const std::unique_ptr<testing::ProxyProcess>& proxy : proxies_) {
    if (proxy->running()) note(proxy->Stop());
  }
  if (directory_ != nullptr && directory_->running()) note(directory_->Stop());
  return first;
}

}  // namespace zmesh::bench
