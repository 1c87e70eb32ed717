#include "dataplane/proxy/control_server.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/clock.h"
#include "common/log.h"
#include "dataplane/proxy/directory_link.h"
#include "dataplane/wire/envelope.h"
#include "dataplane/wire/sockets.h"

namespace zmesh::proxy {

namespace dv1 = ::zmesh::directory::v1;
namespace v1 = ::zmesh::wire::v1;

namespace {

// Longest sleep of the control loop (instance timeouts are checked at least this often).
constexpr int64_t kTickMs = 100;
constexpr int kBatch = 256;
// Longest instance description or id written to the log, in bytes.
constexpr size_t kMaxLoggedDescription = 128;

absl::Status ValidateRegistration(const dv1::Registration& r) {
  if (absl::Status st = wire::ValidateName("registration.exchange", r.exchange(), true); !st.ok()) {
    return st;
  }
  if (absl::Status st = wire::ValidateName("registration.topic", r.topic(), true); !st.ok()) {
    return st;
  }
  if (absl::Status st = wire::ValidateName("registration.server", r.server(),
                                           r.kind() == dv1::KIND_NOTIFY_LISTENER);
      !st.ok()) {
    return st;
  }
  if (absl::Status st = wire::ValidateName("registration.pool", r.pool(), false); !st.ok()) {
    return st;
  }
  if (r.kind() != dv1::KIND_RPC_SERVER && r.kind() != dv1::KIND_NOTIFY_LISTENER) {
    return absl::InvalidArgumentError("registration.kind must be RPC_SERVER or NOTIFY_LISTENER");
  }
  if (r.kind() == dv1::KIND_RPC_SERVER && !r.pool().empty()) {
    return absl::InvalidArgumentError("registration.pool is for notification listeners only");
  }
  return absl::OkStatus();
}

void SetStatus(v1::LocalResponse* response, const absl::Status& status) {
  response->set_code(static_cast<int32_t>(status.code()));
  response->set_message(std::string(status.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Create(zmq::context_t& context,
                                                                     ControlOptions options,
                                                                     LocalTableHolder& table,
                                                                     Mirror& mirror,
                                                                     ProxyStats& stats) {
  std::unique_ptr<ControlServer> server(
      new ControlServer(context, std::move(options), table, mirror, stats));
  if (absl::Status st = wire::ConfigureSocket(server->socket_, wire::SocketRole::kLocalListener,
                                              server->options_.max_payload_bytes);
      !st.ok()) {
    return st;
  }
  try {
    server->socket_.set(zmq::sockopt::router_handover, 1);
    server->socket_.bind(server->options_.ipc_endpoint);
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(
        absl::StrCat("binding ", server->options_.ipc_endpoint, ": ", e.what()));
  }
  server->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  server->stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (server->wake_fd_ < 0 || server->stop_fd_ < 0) return absl::InternalError("eventfd failed");
  return server;
}

ControlServer::ControlServer(zmq::context_t& context, ControlOptions options,
                             LocalTableHolder& table, Mirror& mirror, ProxyStats& stats)
    : options_(std::move(options)),
      table_(table),
      mirror_(mirror),
      stats_(stats),
      socket_(context, zmq::socket_type::router) {}

ControlServer::~ControlServer() {
  Stop();
  if (wake_fd_ >= 0) close(wake_fd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

void ControlServer::Start() {
  thread_ = std::thread([this] { Run(); });
}

void ControlServer::Stop() {
  if (stop_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof(one));
  }
  if (thread_.joinable()) thread_.join();
  socket_.close();
}

void ControlServer::Post(absl::AnyInvocable<void() &&> task) {
  {
    absl::MutexLock lock(&mu_);
    tasks_.push_back(std::move(task));
  }
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
}

void ControlServer::PostRegistered(std::string key, int64_t revision) {
  Post([this, key = std::move(key), revision]() mutable { OnRegistered(key, revision); });
}

void ControlServer::PostMirrorChanged(std::vector<TopicKey> changed) {
  Post([this, changed = std::move(changed)]() mutable { OnMirrorChanged(changed); });
}

void ControlServer::PostLookup(uint64_t token, absl::StatusOr<v1::LookupResult> result) {
  Post([this, token, result = std::move(result)]() mutable { OnLookup(token, std::move(result)); });
}

size_t ControlServer::instance_count() const {
  absl::MutexLock lock(&mu_);
  return instance_count_;
}

int64_t ControlServer::NowMs() const { return SystemClock::Get().NowMs(); }

void ControlServer::Run() {
  zmq_pollitem_t items[] = {
      {socket_.handle(), 0, ZMQ_POLLIN, 0},
      {nullptr, wake_fd_, ZMQ_POLLIN, 0},
      {nullptr, stop_fd_, ZMQ_POLLIN, 0},
  };
  int64_t next_check_ms = NowMs() + kTickMs;
  while (true) {
    const int64_t wait_ms = std::max<int64_t>(0, next_check_ms - NowMs());
    if (zmq_poll(items, 3, static_cast<long>(wait_ms)) < 0) {
      if (zmq_errno() == EINTR) continue;
      ZLOG_ERROR("control: zmq_poll: %s", zmq_strerror(zmq_errno()));
      return;
    }
    if (items[2].revents & ZMQ_POLLIN) return;
    if (items[1].revents & ZMQ_POLLIN) {
      uint64_t count = 0;
      (void)!read(wake_fd_, &count, sizeof(count));
      std::vector<absl::AnyInvocable<void() &&>> tasks;
      {
        absl::MutexLock lock(&mu_);
        tasks.swap(tasks_);
      }
      for (auto& task : tasks) std::move(task)();
    }
    for (int i = 0; i < kBatch; ++i) {
      std::optional<std::vector<zmq::message_t>> frames = wire::ReceiveFrames(socket_);
      if (!frames.has_value()) break;
      if (frames->size() != 2) {
        stats_.control_malformed.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      v1::LocalRequest request;
      if (!request.ParseFromArray((*frames)[1].data(), static_cast<int>((*frames)[1].size()))) {
        stats_.control_malformed.fetch_add(1, std::memory_order_relaxed);
        ZLOG_DEBUG("control: a frame that is not a LocalRequest");
        continue;
      }
      HandleRequest((*frames)[0].to_string(), request);
    }
    if (NowMs() >= next_check_ms) {
      CheckTimers();
      next_check_ms = NowMs() + kTickMs;
    }
  }
}

void ControlServer::HandleRequest(const std::string& from, const v1::LocalRequest& request) {
  const uint64_t seq = request.seq();
  auto known = instances_.find(from);
  if (known != instances_.end()) known->second.last_seen_ms = NowMs();

  switch (request.body_case()) {
    case v1::LocalRequest::kHello: {
      const v1::Hello& hello = request.hello();
      if (known == instances_.end()) {
        Instance& instance = instances_[from];
        instance.pid = hello.pid();
        instance.description = hello.description();
        instance.last_seen_ms = NowMs();
        absl::MutexLock lock(&mu_);
        instance_count_ = instances_.size();
        // Descriptions are free text from the instance: logged clipped, like names from the network.
        ZLOG_INFO("instance %s (pid %d, %s) said hello", from, hello.pid(),
                  hello.description().empty()
                      ? "-"
                      : absl::ClippedSubstr(hello.description(), 0, kMaxLoggedDescription));
      }
      if (!hello.instance_id().empty() && hello.instance_id() != from) {
        ZLOG_WARNING("instance %s says hello as %s; using its routing id", from,
                     absl::ClippedSubstr(hello.instance_id(), 0, kMaxLoggedDescription));
      }
      v1::LocalResponse response;
      response.set_seq(seq);
      v1::Welcome* welcome = response.mutable_welcome();
      welcome->set_incarnation(options_.incarnation);
      welcome->set_node_name(options_.node_name);
      welcome->set_max_payload_bytes(options_.max_payload_bytes);
      welcome->set_ping_interval_ms(options_.ping_interval_ms);
      welcome->set_instance_timeout_ms(options_.instance_timeout_ms);
      for (const std::string& address : options_.directory) welcome->add_directory(address);
      Send(from, response);
      return;
    }
    case v1::LocalRequest::kPing: {
      v1::LocalResponse response;
      response.set_seq(seq);
      v1::Pong* pong = response.mutable_pong();
      pong->set_incarnation(options_.incarnation);
      pong->set_known(known != instances_.end());
      pong->set_directory_connected(directory_ != nullptr && directory_->connected());
      Send(from, response);
      return;
    }
    default:
      break;
  }
  if (known == instances_.end()) {
    if (request.body_case() == v1::LocalRequest::kGoodbye ||
        request.body_case() == v1::LocalRequest::kUnsubscribe || seq == 0) {
      return;
    }
    v1::LocalResponse response;
    response.set_seq(seq);
    SetStatus(&response, absl::FailedPreconditionError(
                             "unknown instance (the proxy restarted or dropped it after a "
                             "silence): send Hello first"));
    Send(from, response);
    return;
  }
  switch (request.body_case()) {
    case v1::LocalRequest::kAnnounce:
      HandleAnnounce(from, seq, request.announce().registration());
      return;
    case v1::LocalRequest::kWithdraw:
      HandleWithdraw(from, seq, request.withdraw().registration());
      return;
    case v1::LocalRequest::kLookup:
      HandleLookup(from, seq, request.lookup());
      return;
    case v1::LocalRequest::kUnsubscribe:
      known->second.subscriptions.erase(
          TopicKey(request.unsubscribe().exchange(), request.unsubscribe().topic()));
      return;
    case v1::LocalRequest::kGoodbye:
      DropInstance(from, "said goodbye");
      return;
    default: {
      stats_.control_malformed.fetch_add(1, std::memory_order_relaxed);
      if (seq == 0) return;
      v1::LocalResponse response;
      response.set_seq(seq);
      SetStatus(&response, absl::InvalidArgumentError("empty or unknown request"));
      Send(from, response);
      return;
    }
  }
}

void ControlServer::HandleAnnounce(const std::string& from, uint64_t seq,
                                   const dv1::Registration& wanted) {
  v1::LocalResponse response;
  response.set_seq(seq);
  if (absl::Status valid = ValidateRegistration(wanted); !valid.ok()) {
    SetStatus(&response, valid);
    Send(from, response);
    return;
  }
  dv1::Registration registration;
  registration.set_exchange(wanted.exchange());
  registration.set_topic(wanted.topic());
  registration.set_server(wanted.server());
  registration.set_kind(wanted.kind());
  registration.set_pool(wanted.pool());
  registration.set_node(options_.node_name);
  const std::string key = RegistrationKey(registration);

  Instance& instance = instances_[from];
  Entry& entry = entries_[key];
  const bool new_entry = entry.instances.empty();
  if (new_entry) entry.registration = registration;
  const bool added = instance.announced.insert(key).second;
  entry.instances.insert(from);
  if (added) {
    PublishTable();
    ZLOG_INFO("instance %s announced %s %s/%s/%s%s", from,
              registration.kind() == dv1::KIND_RPC_SERVER ? "server" : "listener",
              registration.exchange(), registration.topic(), registration.server(),
              registration.pool().empty() ? "" : absl::StrCat(" pool ", registration.pool()));
  }
  if (new_entry) {
    entry.revision = 0;
    if (directory_ != nullptr) directory_->Register(registration);
  }
  if (entry.revision > 0) {
    response.mutable_announced()->set_revision(entry.revision);
    Send(from, response);
    return;
  }
  waiters_.push_back({from, seq, key, NowMs() + options_.announce_timeout_ms});
}

void ControlServer::HandleWithdraw(const std::string& from, uint64_t seq,
                                   const dv1::Registration& wanted) {
  dv1::Registration registration = wanted;
  registration.set_node(options_.node_name);
  registration.clear_create_revision();
  registration.clear_mod_revision();
  const std::string key = RegistrationKey(registration);
  if (instances_[from].announced.erase(key) > 0) {
    RemoveAnnouncement(from, key);
    PublishTable();
    ZLOG_INFO("instance %s withdrew %s/%s/%s", from, registration.exchange(), registration.topic(),
              registration.server());
  }
  // An Announce still waiting for the directory gets no answer any more.
  waiters_.erase(
      std::remove_if(waiters_.begin(), waiters_.end(),
                     [&](const Waiter& w) { return w.instance == from && w.key == key; }),
      waiters_.end());
  v1::LocalResponse response;
  response.set_seq(seq);
  response.mutable_withdrawn();
  Send(from, response);
}

void ControlServer::RemoveAnnouncement(const std::string& instance, const std::string& key) {
  auto entry = entries_.find(key);
  if (entry == entries_.end()) return;
  entry->second.instances.erase(instance);
  if (!entry->second.instances.empty()) return;
  if (directory_ != nullptr) directory_->Unregister(entry->second.registration);
  entries_.erase(entry);
}

void ControlServer::HandleLookup(const std::string& from, uint64_t seq,
                                 const v1::LookupQuery& query) {
  absl::Status valid = wire::ValidateName("exchange", query.exchange(), true);
  if (valid.ok()) valid = wire::ValidateName("topic", query.topic(), true);
  if (!valid.ok()) {
    v1::LocalResponse response;
    response.set_seq(seq);
    SetStatus(&response, valid);
    Send(from, response);
    return;
  }
  TopicKey key(query.exchange(), query.topic());
  instances_[from].subscriptions.emplace(key, 0);
  if (query.fresh() && directory_ != nullptr) {
    const uint64_t token = next_token_++;
    lookups_[token] = {from, seq, key, NowMs() + options_.lookup_timeout_ms};
    directory_->Lookup(token, key.first, key.second);
    return;
  }
  AnswerLookup(from, seq, mirror_.Lookup(key.first, key.second));
}

void ControlServer::AnswerLookup(const std::string& instance, uint64_t seq,
                                 v1::LookupResult result) {
  auto it = instances_.find(instance);
  if (it == instances_.end()) return;
  int64_t& sent = it->second.subscriptions[TopicKey(result.exchange(), result.topic())];
  if (result.revision() < sent) {
    // A push newer than this answer went out while it was on its way: never step back.
    result = mirror_.Lookup(result.exchange(), result.topic());
  }
  sent = std::max(sent, result.revision());
  v1::LocalResponse response;
  response.set_seq(seq);
  *response.mutable_lookup() = std::move(result);
  Send(instance, response);
}

void ControlServer::OnLookup(uint64_t token, absl::StatusOr<v1::LookupResult> result) {
  auto it = lookups_.find(token);
  if (it == lookups_.end()) return;  // answered from the mirror already
  PendingLookup pending = std::move(it->second);
  lookups_.erase(it);
  if (!result.ok()) {
    ZLOG_DEBUG("fresh lookup of %s/%s: %s; answering from the cache", pending.key.first,
               pending.key.second, result.status().ToString());
    result = mirror_.Lookup(pending.key.first, pending.key.second);
  }
  AnswerLookup(pending.instance, pending.seq, *std::move(result));
}

void ControlServer::OnRegistered(const std::string& key, int64_t revision) {
  auto entry = entries_.find(key);
  if (entry == entries_.end()) return;  // withdrawn meanwhile
  entry->second.revision = revision;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->key != key) {
      ++it;
      continue;
    }
    v1::LocalResponse response;
    response.set_seq(it->seq);
    response.mutable_announced()->set_revision(revision);
    Send(it->instance, response);
    it = waiters_.erase(it);
  }
}

void ControlServer::OnMirrorChanged(const std::vector<TopicKey>& changed) {
  std::map<TopicKey, v1::LookupResult> answers;
  for (auto& [id, instance] : instances_) {
    for (const TopicKey& key : changed) {
      auto sub = instance.subscriptions.find(key);
      if (sub == instance.subscriptions.end()) continue;
      auto answer = answers.find(key);
      if (answer == answers.end()) {
        answer = answers.emplace(key, mirror_.Lookup(key.first, key.second)).first;
      }
      if (answer->second.revision() <= sub->second) continue;
      sub->second = answer->second.revision();
      v1::LocalResponse response;
      *response.mutable_update() = answer->second;
      Send(id, response);
    }
  }
}

void ControlServer::CheckTimers() {
  const int64_t now = NowMs();
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->deadline_ms > now) {
      ++it;
      continue;
    }
    v1::LocalResponse response;
    response.set_seq(it->seq);
    SetStatus(&response,
              absl::UnavailableError(absl::StrCat(
                  "the directory did not answer within ", options_.announce_timeout_ms,
                  " ms; the registration is kept and written when the directory is back")));
    response.mutable_announced()->set_revision(0);
    Send(it->instance, response);
    it = waiters_.erase(it);
  }
  for (auto it = lookups_.begin(); it != lookups_.end();) {
    if (it->second.deadline_ms > now) {
      ++it;
      continue;
    }
    PendingLookup pending = std::move(it->second);
    it = lookups_.erase(it);
    AnswerLookup(pending.instance, pending.seq,
                 mirror_.Lookup(pending.key.first, pending.key.second));
  }
  MaybeLogStats(now);
  std::vector<std::string> silent;
  for (const auto& [id, instance] : instances_) {
    if (now - instance.last_seen_ms > options_.instance_timeout_ms) silent.push_back(id);
  }
  for (const std::string& id : silent) {
    stats_.instances_dropped.fetch_add(1, std::memory_order_relaxed);
    DropInstance(id, absl::StrCat("silent for more than ", options_.instance_timeout_ms, " ms"));
  }
}

void ControlServer::MaybeLogStats(int64_t now_ms) {
  if (next_stats_log_ms_ == 0) next_stats_log_ms_ = now_ms + options_.stats_log_interval_ms;
  if (now_ms < next_stats_log_ms_) return;
  next_stats_log_ms_ = now_ms + options_.stats_log_interval_ms;
  std::string line;
  for (int i = 0; i < kPatternCount; ++i) {
    const Pattern pattern = static_cast<Pattern>(i);
    const PipelineStats& p = stats_.of(pattern);
    absl::StrAppend(&line, line.empty() ? "" : "; ", PatternName(pattern),
                    " received=", p.received.load(std::memory_order_relaxed),
                    " delivered=", p.delivered.load(std::memory_order_relaxed),
                    " answers=", p.answers.load(std::memory_order_relaxed),
                    " refused=", p.refused.load(std::memory_order_relaxed));
    for (int r = 0; r < kDropReasonCount; ++r) {
      const int64_t n = p.drop(static_cast<DropReason>(r));
      if (n > 0) absl::StrAppend(&line, " ", DropReasonName(static_cast<DropReason>(r)), "=", n);
    }
  }
  absl::StrAppend(&line, "; instances=", instances_.size(), " targets=", entries_.size(),
                  " control_malformed=", stats_.control_malformed.load(std::memory_order_relaxed));
  if (line == last_stats_) return;
  last_stats_ = line;
  ZLOG_INFO("stats: %s", line);
}

void ControlServer::DropInstance(const std::string& id, absl::string_view why) {
  auto it = instances_.find(id);
  if (it == instances_.end()) return;
  const size_t targets = it->second.announced.size();
  for (const std::string& key : it->second.announced) RemoveAnnouncement(id, key);
  instances_.erase(it);
  waiters_.erase(std::remove_if(waiters_.begin(), waiters_.end(),
                                [&](const Waiter& w) { return w.instance == id; }),
                 waiters_.end());
  for (auto l = lookups_.begin(); l != lookups_.end();) {
    l = l->second.instance == id ? lookups_.erase(l) : std::next(l);
  }
  if (targets > 0) PublishTable();
  {
    absl::MutexLock lock(&mu_);
    instance_count_ = instances_.size();
  }
  ZLOG_INFO("instance %s dropped (%s); %d target(s) withdrawn", id, why, targets);
}

void ControlServer::PublishTable() {
  auto table = std::make_shared<LocalTable>();
  for (const auto& [key, entry] : entries_) {
    const dv1::Registration& r = entry.registration;
    for (const std::string& instance : entry.instances) {
      if (r.kind() == dv1::KIND_RPC_SERVER) {
        table->AddRpcServer(r.exchange(), r.topic(), r.server(), instance);
      } else {
        table->AddListener(r.exchange(), r.topic(), r.server(), instance);
      }
    }
  }
  table_.Publish(std::move(table));
}

void ControlServer::Send(const std::string& to, const v1::LocalResponse& response) {
  const std::string body = response.SerializeAsString();
  absl::Status sent =
      wire::SendFrames(socket_, {zmq::buffer(to), zmq::buffer(body)}, /*dont_wait=*/true);
  if (!sent.ok()) ZLOG_DEBUG("control: answer to %s not sent: %s", to, sent.ToString());
}

}  // namespace zmesh::proxy
