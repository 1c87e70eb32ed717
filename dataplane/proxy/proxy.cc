#include "dataplane/proxy/proxy.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "dataplane/wire/sockets.h"

namespace zmesh::proxy {

namespace {

std::string NewIncarnation() {
  std::random_device rd;
  return absl::StrFormat("%08x%08x", rd(), rd());
}

}  // namespace

absl::StatusOr<std::unique_ptr<Proxy>> Proxy::Start(ProxyOptions options) {
  std::unique_ptr<Proxy> proxy(new Proxy(std::move(options)));
  const ProxyOptions& o = proxy->options_;
  std::error_code error;
  std::filesystem::create_directories(o.ipc_dir, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("creating IPC dir ", o.ipc_dir, ": ", error.message()));
  }

  // One proxy per IPC dir: binding would silently take the sockets of a running one.
  const std::string lock_path = o.ipc_dir + "/proxy.lock";
  proxy->lock_fd_ = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (proxy->lock_fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("opening ", lock_path, ": ", std::strerror(errno)));
  }
  if (flock(proxy->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("another zmesh-proxy uses the IPC dir ",
                                                      o.ipc_dir, " (", lock_path, " is locked)"));
  }
  proxy->owns_ipc_dir_ = true;

  const std::array<int, kPatternCount> ports = {o.call_port, o.fanout_port, o.notify_port,
                                                o.cast_port};
  for (int i = 0; i < kPatternCount; ++i) {
    const Pattern pattern = static_cast<Pattern>(i);
    PipelineOptions pipeline;
    pipeline.pattern = pattern;
    const bool v6 = absl::StrContains(o.bind, ':');
    pipeline.tcp_endpoint =
        absl::StrCat("tcp://", v6 ? "[" : "", o.bind, v6 ? "]" : "", ":", ports[i]);
    absl::StatusOr<std::string> ipc = wire::IpcEndpoint(o.ipc_dir, PatternName(pattern));
    if (!ipc.ok()) return ipc.status();
    pipeline.ipc_endpoint = *ipc;
    proxy->ipc_paths_.push_back(ipc->substr(6));
    pipeline.max_payload_bytes = o.max_payload_bytes;
    pipeline.node_name = o.node_name;
    absl::StatusOr<std::unique_ptr<Pipeline>> created = Pipeline::Create(
        proxy->context_, std::move(pipeline), proxy->table_, proxy->stats_.of(pattern));
    if (!created.ok()) return created.status();
    proxy->pipelines_[i] = *std::move(created);
  }

  ControlOptions control;
  absl::StatusOr<std::string> control_endpoint = wire::IpcEndpoint(o.ipc_dir, "control");
  if (!control_endpoint.ok()) return control_endpoint.status();
  control.ipc_endpoint = *control_endpoint;
  proxy->ipc_paths_.push_back(control_endpoint->substr(6));
  control.node_name = o.node_name;
  control.directory = o.directory;
  control.incarnation = proxy->incarnation_;
  control.max_payload_bytes = o.max_payload_bytes;
  control.ping_interval_ms = o.ping_interval_ms;
  control.instance_timeout_ms = o.instance_timeout_ms;
  absl::StatusOr<std::unique_ptr<ControlServer>> server =
      ControlServer::Create(proxy->context_, control, proxy->table_, proxy->mirror_, proxy->stats_);
  if (!server.ok()) return server.status();
  proxy->control_ = *std::move(server);

  DirectoryLinkOptions link;
  link.addresses = o.directory;
  link.node.set_name(o.node_name);
  link.node.set_host(o.advertise_host);
  link.node.set_call_port(proxy->port(Pattern::kCall));
  link.node.set_fanout_port(proxy->port(Pattern::kFanout));
  link.node.set_notify_port(proxy->port(Pattern::kNotify));
  link.node.set_cast_port(proxy->port(Pattern::kCast));
  link.lease_ttl_ms = o.lease_ttl_ms;
  link.reconcile_after_ms = 2 * o.instance_timeout_ms;
  ControlServer* control_server = proxy->control_.get();
  DirectoryLinkCallbacks callbacks;
  callbacks.on_node_registered = o.on_node_registered;
  callbacks.on_registered = [control_server](const std::string& key, int64_t revision) {
    control_server->PostRegistered(key, revision);
  };
  callbacks.on_mirror_changed = [control_server](std::vector<TopicKey> changed) {
    control_server->PostMirrorChanged(std::move(changed));
  };
  callbacks.on_lookup = [control_server](uint64_t token,
                                         absl::StatusOr<wire::v1::LookupResult> result) {
    control_server->PostLookup(token, std::move(result));
  };
  absl::StatusOr<std::unique_ptr<DirectoryLink>> started =
      DirectoryLink::Start(std::move(link), std::move(callbacks), proxy->mirror_, proxy->stats_);
  if (!started.ok()) return started.status();
  proxy->link_ = *std::move(started);
  proxy->control_->set_directory(proxy->link_.get());

  if (!o.metrics_listen.empty()) {
    absl::StatusOr<std::unique_ptr<metrics::MetricsServer>> metrics =
        metrics::MetricsServer::Start(o.metrics_listen);
    if (!metrics.ok()) return metrics.status();
    proxy->metrics_ = *std::move(metrics);
    proxy->metrics_port_ = proxy->metrics_->port();
    const Proxy* self = proxy.get();
    proxy->metrics_->AddCollector(
        [self] { return ProxyMetricFamilies(self->stats_, self->gauges()); });
  }

  for (auto& pipeline : proxy->pipelines_) pipeline->Start();
  proxy->control_->Start();
  ZLOG_INFO(
      "zmesh-proxy %s up: call=%d fanout=%d notify=%d cast=%d on %s, ipc %s, incarnation %s%s",
      o.node_name, proxy->port(Pattern::kCall), proxy->port(Pattern::kFanout),
      proxy->port(Pattern::kNotify), proxy->port(Pattern::kCast), o.bind, o.ipc_dir,
      proxy->incarnation_,
      proxy->metrics_port_ > 0 ? absl::StrCat(", metrics on port ", proxy->metrics_port_) : "");
  return proxy;
}

Proxy::Proxy(ProxyOptions options)
    : options_(std::move(options)), incarnation_(NewIncarnation()), context_(1) {}

Proxy::~Proxy() {
  Stop(false);
  if (lock_fd_ >= 0) close(lock_fd_);
}

void Proxy::Stop(bool revoke_lease) {
  if (stopped_) return;
  stopped_ = true;
  metrics_.reset();  // no scrape reads what stops below
  // The control thread first: it calls into the link.
  if (control_ != nullptr) control_->Stop();
  if (link_ != nullptr) link_->Stop(revoke_lease);
  for (auto& pipeline : pipelines_) {
    if (pipeline != nullptr) pipeline->Stop();
  }
  // Without the lock, the socket files belong to another proxy.
  for (const std::string& path : owns_ipc_dir_ ? ipc_paths_ : std::vector<std::string>()) {
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
  }
  context_.close();
}

ProxyGauges Proxy::gauges() const {
  ProxyGauges gauges;
  if (link_ != nullptr) {
    gauges.directory_connected = link_->connected();
    gauges.node_registered = link_->node_registered();
    const DirectoryLink::Backlog backlog = link_->backlog();
    gauges.pending_registrations = backlog.registrations;
    gauges.pending_lookups = backlog.lookups;
  }
  if (control_ != nullptr) gauges.local_instances = control_->instance_count();
  gauges.mirror_revision = mirror_.revision();
  gauges.mirror_synced = mirror_.synced();
  gauges.mirror_lookups = mirror_.lookups();
  return gauges;
}

}  // namespace zmesh::proxy
