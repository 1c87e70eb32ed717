#include "dataplane/demo/walkthrough.h"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "controlplane/client/directory_client.h"
#include "zmesh/notification_listener.h"
#include "zmesh/server.h"
#include "zmesh/transport.h"
#include "zmesh/types.h"

namespace zmesh::demo {

namespace dv1 = ::zmesh::directory::v1;

namespace {

// Everything lives in its own exchange, apart from whatever else the directory holds.
constexpr char kExchange[] = "demo";
constexpr char kTopic[] = "compute";
constexpr char kEventTopic[] = "events";
constexpr char kEventPriority[] = "info";
constexpr int64_t kCallTimeoutMs = 5000;
constexpr int64_t kDeliveryTimeoutMs = 10000;

// What one server or listener received. Thread-safe.
class Inbox {
 public:
  Inbox(std::string name, std::string node) : name_(std::move(name)), node_(std::move(node)) {}

  const std::string& name() const { return name_; }
  const std::string& node() const { return node_; }

  void Add(const Request& request) {
    absl::MutexLock lock(&mu_);
    received_.emplace_back(request.kind, request.payload);
  }

  // Payloads of the messages of `kind` received so far, in arrival order.
  std::vector<std::string> Payloads(MessageKind kind) const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> payloads;
    for (const auto& [k, payload] : received_) {
      if (k == kind) payloads.push_back(payload);
    }
    return payloads;
  }

  int Count(MessageKind kind) const { return static_cast<int>(Payloads(kind).size()); }

 private:
  const std::string name_;
  const std::string node_;
  mutable absl::Mutex mu_;
  std::vector<std::pair<MessageKind, std::string>> received_ ABSL_GUARDED_BY(mu_);
};

// Polls `condition` until it holds or timeout_ms passes; true when it holds.
bool WaitUntil(const std::function<bool()>& condition, int64_t timeout_ms) {
  const absl::Time deadline = absl::Now() + absl::Milliseconds(timeout_ms);
  while (!condition()) {
    if (absl::Now() >= deadline) return condition();
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

std::string Quoted(absl::string_view text) { return absl::StrCat("\"", text, "\""); }

std::string QuotedList(const std::vector<std::string>& items) {
  if (items.empty()) return "nothing";
  return absl::StrJoin(items, ", ", [](std::string* out, const std::string& item) {
    absl::StrAppend(out, Quoted(item));
  });
}

// The services of the demo and the client, on the nodes' proxies.
class Services {
 public:
  Services(const std::vector<DemoNode>& nodes, Reporter& reporter)
      : nodes_(nodes), reporter_(reporter) {}
  Services(const Services&) = delete;
  Services& operator=(const Services&) = delete;
  ~Services() { Stop(); }

  absl::Status Start();
  // Stops the client, listeners and servers, and closes the transports. Idempotent.
  void Stop();

  void GroupCalls();
  void CallByName();
  void RemoteError();
  void GroupCasts();
  void AcknowledgedCast();
  void Fanout();
  void Notify();
  void Drain(client::DirectoryClient& directory);

 private:
  // Makes one call and says what happened; returns the name of the server that answered ("" on
  // failure).
  std::string CallAndTell(const Target& target, const std::string& payload);
  Inbox* ServerInbox(absl::string_view name);
  std::string NodeOf(absl::string_view server);

  const std::vector<DemoNode>& nodes_;
  Reporter& reporter_;
  std::vector<std::unique_ptr<Transport>> transports_;  // one per node, same order as nodes_
  std::unique_ptr<Transport> client_;                   // on the first node
  // Inboxes outlive the servers and listeners whose handlers write to them.
  std::vector<std::unique_ptr<Inbox>> server_inboxes_;
  std::vector<std::unique_ptr<Inbox>> listener_inboxes_;
  std::map<std::string, std::string> listener_pool_;  // listener name -> pool
  std::vector<std::unique_ptr<Server>> servers_;
  std::vector<std::unique_ptr<NotificationListener>> listeners_;
};

absl::Status Services::Start() {
  for (const DemoNode& node : nodes_) {
    TransportOptions options;
    options.ipc_dir = node.ipc_dir;
    options.description = absl::StrCat("zmesh-demo services on ", node.name);
    absl::StatusOr<std::unique_ptr<Transport>> transport = Transport::Create(options);
    if (!transport.ok()) {
      return absl::Status(transport.status().code(),
                          absl::StrCat("connecting to the proxy of ", node.name, " at ",
                                       node.ipc_dir, ": ", transport.status().message()));
    }
    transports_.push_back(*std::move(transport));
  }

  // One RPC server per node: compute-a on node-a, ...
  std::vector<std::string> described;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    std::string suffix = nodes_[i].name.substr(nodes_[i].name.rfind('-') + 1);
    std::string name = absl::StrCat(kTopic, "-", suffix);
    server_inboxes_.push_back(std::make_unique<Inbox>(name, nodes_[i].name));
    Inbox* inbox = server_inboxes_.back().get();
    Handler handler = [inbox](const Request& request, Responder& responder) {
      inbox->Add(request);
      if (request.kind != MessageKind::kCall) return;
      if (absl::StartsWith(request.payload, "divide ") &&
          absl::EndsWith(request.payload, " by 0")) {
        // What an oslo.messaging server does with an exception: it goes back to the caller.
        responder.Fail(absl::StrCat("ZeroDivisionError: cannot ", request.payload));
        return;
      }
      responder.Reply(inbox->name());
    };
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(
        *transports_[i], Target{kExchange, kTopic, name}, std::move(handler), ServerOptions{});
    if (!server.ok()) {
      return absl::Status(server.status().code(),
                          absl::StrCat("starting server ", name, " on ", nodes_[i].name, ": ",
                                       server.status().message()));
    }
    servers_.push_back(*std::move(server));
    described.push_back(absl::StrCat(name, " on ", nodes_[i].name));
  }
  reporter_.Say(absl::StrCat("RPC servers of topic \"", kTopic, "\" (exchange \"", kExchange,
                             "\"): ", absl::StrJoin(described, ", ")));

  // Two pools of notification listeners, sharing node-b: billing on a and b, audit on b and c.
  const std::vector<std::pair<std::string, size_t>> listeners = {
      {"billing", 0}, {"billing", 1}, {"audit", 1}, {"audit", 2}};
  described.clear();
  for (const auto& [pool, node_index] : listeners) {
    const DemoNode& node = nodes_[node_index];
    std::string name = absl::StrCat(pool, "@", node.name);
    listener_inboxes_.push_back(std::make_unique<Inbox>(name, node.name));
    listener_pool_[name] = pool;
    Inbox* inbox = listener_inboxes_.back().get();
    ListenerOptions options;
    options.pool = pool;
    absl::StatusOr<std::unique_ptr<NotificationListener>> listener = NotificationListener::Start(
        *transports_[node_index], {NotifyTarget{kExchange, kEventTopic, kEventPriority}},
        [inbox](const Request& request) { inbox->Add(request); }, options);
    if (!listener.ok()) {
      return absl::Status(listener.status().code(), absl::StrCat("starting listener ", name, ": ",
                                                                 listener.status().message()));
    }
    listeners_.push_back(*std::move(listener));
    described.push_back(absl::StrCat("pool \"", pool, "\" on ", node.name));
  }
  reporter_.Say(absl::StrCat("notification listeners of \"", kEventTopic, ".", kEventPriority,
                             "\": ", absl::StrJoin(described, ", ")));

  TransportOptions options;
  options.ipc_dir = nodes_[0].ipc_dir;
  options.description = "zmesh-demo client";
  absl::StatusOr<std::unique_ptr<Transport>> client = Transport::Create(options);
  if (!client.ok()) {
    return absl::Status(client.status().code(),
                        absl::StrCat("connecting the client: ", client.status().message()));
  }
  client_ = *std::move(client);
  reporter_.Say(absl::StrCat("the client is a program on ", nodes_[0].name,
                             ": it talks to that node's proxy for lookups, and sends each "
                             "message straight to the proxy of the node that serves it"));
  return absl::OkStatus();
}

void Services::Stop() {
  if (client_ != nullptr) client_->Close();
  for (auto& listener : listeners_) listener->Stop();
  for (auto& server : servers_) server->Stop();
  for (auto& transport : transports_) transport->Close();
  listeners_.clear();
  servers_.clear();
  client_.reset();
  transports_.clear();
}

Inbox* Services::ServerInbox(absl::string_view name) {
  for (auto& inbox : server_inboxes_) {
    if (inbox->name() == name) return inbox.get();
  }
  return nullptr;
}

std::string Services::NodeOf(absl::string_view server) {
  Inbox* inbox = ServerInbox(server);
  return inbox != nullptr ? inbox->node() : "an unknown node";
}

std::string Services::CallAndTell(const Target& target, const std::string& payload) {
  CallOptions options;
  options.timeout_ms = kCallTimeoutMs;
  const absl::Time start = absl::Now();
  absl::StatusOr<CallResult> result = client_->Call(target, payload, options);
  const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
  if (!result.ok()) {
    reporter_.Say(absl::StrFormat("%s -> failed after %.1f ms: %s", Quoted(payload), ms,
                                  result.status().ToString()));
    return "";
  }
  if (result->remote_error) {
    reporter_.Say(absl::StrFormat("%s -> remote error after %.1f ms: %s", Quoted(payload), ms,
                                  result->payload));
    return "";
  }
  reporter_.Say(absl::StrFormat("%s -> answered by %s on %s (%.1f ms)", Quoted(payload),
                                result->payload, NodeOf(result->payload), ms));
  return result->payload;
}

void Services::GroupCalls() {
  std::vector<std::string> answered;
  for (int i = 1; i <= 6; ++i) {
    answered.push_back(CallAndTell(Target{kExchange, kTopic, ""}, absl::StrCat("call ", i)));
  }
  bool ok = std::set<std::string>(answered.begin(), answered.begin() + 3).size() == 3 &&
            std::find(answered.begin(), answered.end(), "") == answered.end();
  for (size_t i = 3; i < answered.size(); ++i) ok = ok && answered[i] == answered[i - 3];
  reporter_.Check(ok, "round-robin: each of the 3 servers answered 2 of the 6 calls, taking turns",
                  absl::StrJoin(answered, ", "));
}

void Services::CallByName() {
  const std::string server = server_inboxes_.back()->name();
  std::vector<std::string> answered;
  for (int i = 1; i <= 3; ++i) {
    answered.push_back(CallAndTell(Target{kExchange, kTopic, server}, absl::StrCat("call ", i)));
  }
  bool ok = std::count(answered.begin(), answered.end(), server) == 3;
  reporter_.Check(ok, absl::StrCat("all 3 calls were answered by ", server),
                  absl::StrJoin(answered, ", "));
}

void Services::RemoteError() {
  const std::string server = server_inboxes_[1]->name();
  CallOptions options;
  options.timeout_ms = kCallTimeoutMs;
  const std::string payload = "divide 1 by 0";
  absl::StatusOr<CallResult> result =
      client_->Call(Target{kExchange, kTopic, server}, payload, options);
  if (!result.ok()) {
    reporter_.Check(false, "the server's error came back to the caller",
                    absl::StrCat("the call itself failed: ", result.status().ToString()));
    return;
  }
  reporter_.Say(
      absl::StrCat(Quoted(payload), " to ", server, " -> ",
                   result->remote_error ? "remote error: " : "reply: ", Quoted(result->payload)));
  reporter_.Check(result->remote_error && absl::StrContains(result->payload, "ZeroDivisionError"),
                  "the server's error came back to the caller, marked as a remote error (the "
                  "call itself worked)");
}

void Services::GroupCasts() {
  for (int i = 1; i <= 3; ++i) {
    CastOptions options;
    options.timeout_ms = kCallTimeoutMs;
    absl::Status sent =
        client_->Cast(Target{kExchange, kTopic, ""}, absl::StrCat("cast ", i), options);
    if (!sent.ok()) reporter_.Say(absl::StrCat("cast ", i, " failed: ", sent.ToString()));
  }
  auto total = [&] {
    int n = 0;
    for (auto& inbox : server_inboxes_) n += inbox->Count(MessageKind::kCast);
    return n;
  };
  WaitUntil([&] { return total() >= 3; }, kDeliveryTimeoutMs);
  bool ok = total() == 3;
  for (auto& inbox : server_inboxes_) {
    std::vector<std::string> got = inbox->Payloads(MessageKind::kCast);
    reporter_.Say(absl::StrCat(inbox->name(), " got ", QuotedList(got)));
    ok = ok && got.size() == 1;
  }
  reporter_.Check(ok, "each server got exactly one of the 3 casts");
}

void Services::AcknowledgedCast() {
  Inbox& inbox = *server_inboxes_[1];
  CastOptions options;
  options.acknowledged = true;
  options.timeout_ms = kCallTimeoutMs;
  const std::string payload = "acknowledged cast";
  absl::Status sent = client_->Cast(Target{kExchange, kTopic, inbox.name()}, payload, options);
  // Checked at once: the acknowledgement comes after the handler ran.
  std::vector<std::string> got = inbox.Payloads(MessageKind::kCast);
  bool handled = std::find(got.begin(), got.end(), payload) != got.end();
  reporter_.Say(absl::StrCat("Cast(", Quoted(payload), ", acknowledged) to ", inbox.name(),
                             " returned ", sent.ok() ? "OK" : sent.ToString()));
  reporter_.Check(sent.ok() && handled,
                  absl::StrCat(inbox.name(), " had already handled it when Cast() returned"));
}

void Services::Fanout() {
  const std::string payload = "refresh your caches";
  absl::Status sent = client_->Fanout(Target{kExchange, kTopic, ""}, payload);
  if (!sent.ok()) reporter_.Say(absl::StrCat("Fanout failed: ", sent.ToString()));
  auto everyone = [&] {
    for (auto& inbox : server_inboxes_) {
      if (inbox->Count(MessageKind::kFanout) < 1) return false;
    }
    return true;
  };
  WaitUntil(everyone, kDeliveryTimeoutMs);
  bool ok = sent.ok();
  for (auto& inbox : server_inboxes_) {
    std::vector<std::string> got = inbox->Payloads(MessageKind::kFanout);
    reporter_.Say(absl::StrCat(inbox->name(), " on ", inbox->node(), " got ", QuotedList(got)));
    ok = ok && got.size() == 1 && got[0] == payload;
  }
  reporter_.Check(ok, "every server, on every node, got the fanout once");
}

void Services::Notify() {
  constexpr int kNotifications = 4;
  for (int i = 1; i <= kNotifications; ++i) {
    absl::Status sent = client_->Notify(NotifyTarget{kExchange, kEventTopic, kEventPriority},
                                        absl::StrCat("instance ", i, " created"));
    if (!sent.ok()) reporter_.Say(absl::StrCat("notification ", i, " failed: ", sent.ToString()));
  }
  auto pool_total = [&](const std::string& pool) {
    int n = 0;
    for (auto& inbox : listener_inboxes_) {
      if (listener_pool_[inbox->name()] == pool) n += inbox->Count(MessageKind::kNotify);
    }
    return n;
  };
  WaitUntil(
      [&] {
        return pool_total("billing") >= kNotifications && pool_total("audit") >= kNotifications;
      },
      kDeliveryTimeoutMs);
  bool ok = true;
  std::map<std::string, std::set<std::string>> pool_payloads;
  for (auto& inbox : listener_inboxes_) {
    std::vector<std::string> got = inbox->Payloads(MessageKind::kNotify);
    reporter_.Say(absl::StrCat("pool ", listener_pool_[inbox->name()], ": ", inbox->name(), " got ",
                               QuotedList(got)));
    ok = ok && got.size() == kNotifications / 2;
    pool_payloads[listener_pool_[inbox->name()]].insert(got.begin(), got.end());
  }
  for (const auto& [pool, payloads] : pool_payloads) {
    ok = ok && payloads.size() == kNotifications && pool_total(pool) == kNotifications;
  }
  reporter_.Check(ok, absl::StrCat("each pool got all ", kNotifications,
                                   " notifications once, shared 2 and 2 by its two listeners"));
}

void Services::Drain(client::DirectoryClient& directory) {
  const DemoNode& drained = nodes_.back();
  const std::string drained_server = server_inboxes_.back()->name();
  dv1::DrainNodeRequest request;
  request.set_name(drained.name);
  request.set_draining(true);
  absl::StatusOr<dv1::DrainNodeResponse> response = directory.DrainNode(request);
  if (!response.ok()) {
    reporter_.Check(false, absl::StrCat(drained.name, " drained"), response.status().ToString());
    return;
  }
  reporter_.Say(
      absl::StrCat(drained.name, " is draining (directory revision ", response->revision(), ")"));

  // The change reaches the client through its proxy's directory watch, within milliseconds;
  // calls sent before it arrives may still go to the drained node. Wait until 4 calls in a row
  // avoid it, quietly.
  CallOptions options;
  options.timeout_ms = kCallTimeoutMs;
  int in_a_row = 0;
  int before_news = 0;
  WaitUntil(
      [&] {
        absl::StatusOr<CallResult> result =
            client_->Call(Target{kExchange, kTopic, ""}, "are you draining?", options);
        if (result.ok() && result->payload == drained_server) {
          ++before_news;
          in_a_row = 0;
        } else {
          ++in_a_row;
        }
        return in_a_row >= 4;
      },
      kDeliveryTimeoutMs);
  if (before_news > 0) {
    reporter_.Say(absl::StrCat("(", before_news, " call", before_news == 1 ? "" : "s",
                               " still reached ", drained_server,
                               " before the client's cache heard of the drain)"));
  }

  std::vector<std::string> answered;
  for (int i = 1; i <= 4; ++i) {
    answered.push_back(
        CallAndTell(Target{kExchange, kTopic, ""}, absl::StrCat("call ", i, " after the drain")));
  }
  bool ok = std::find(answered.begin(), answered.end(), drained_server) == answered.end() &&
            std::find(answered.begin(), answered.end(), "") == answered.end();
  for (size_t i = 1; i < answered.size(); ++i) ok = ok && answered[i] != answered[i - 1];
  reporter_.Check(
      ok,
      absl::StrCat("group calls skip ", drained_server, " and the other two servers take turns"),
      absl::StrJoin(answered, ", "));

  std::string by_name =
      CallAndTell(Target{kExchange, kTopic, drained_server}, "call by name while draining");
  reporter_.Check(by_name == drained_server,
                  absl::StrCat(drained_server, " still answers calls addressed to it by name"));
}

}  // namespace

void Reporter::Step(absl::string_view title, absl::string_view explanation) {
  ++step_;
  out_ << "\n== " << step_ << ". " << title << "\n";
  for (absl::string_view line : absl::StrSplit(explanation, '\n', absl::SkipEmpty())) {
    out_ << "   " << line << "\n";
  }
  out_.flush();
}

void Reporter::Say(absl::string_view line) { out_ << "   " << line << std::endl; }

bool Reporter::Check(bool ok, absl::string_view what, absl::string_view detail) {
  ++checks_;
  if (ok) {
    out_ << "   [ok] " << what << std::endl;
  } else {
    ++failures_;
    out_ << "   [FAILED] " << what;
    if (!detail.empty()) out_ << " (" << detail << ")";
    out_ << std::endl;
  }
  return ok;
}

absl::Status RunWalkthrough(const std::vector<DemoNode>& nodes, client::DirectoryClient& directory,
                            Reporter& reporter) {
  if (nodes.size() != 3) return absl::InvalidArgumentError("the walkthrough needs three nodes");
  Services services(nodes, reporter);
  reporter.Step(
      "Start the services, through each node's proxy",
      "Programs on a node (here: this process, with one libzmesh Transport per node) announce\n"
      "their targets to their node's proxy over IPC; the proxy registers them in the directory.");
  if (absl::Status started = services.Start(); !started.ok()) return started;

  reporter.Step(
      "CALL to the topic group (no server named): one server answers each call, in turn",
      "The client asked its proxy once who serves \"compute\" (the proxy read the directory);\n"
      "now it picks the servers round-robin and sends each call straight to that server's node.");
  services.GroupCalls();

  reporter.Step("CALL to one server by name",
                "Target (topic, server): exactly that server answers, whatever the rotation.");
  services.CallByName();

  reporter.Step("A server's error travels back to the caller",
                "The handler raised an error instead of replying; the caller gets it as a\n"
                "remote error, like an exception re-raised by oslo.messaging.");
  services.RemoteError();

  reporter.Step("CAST: one-way, to one server of the group (round-robin, no reply)");
  services.GroupCasts();

  reporter.Step("CAST with acknowledgement",
                "The server acknowledges once its handler ran; without an acknowledgement in\n"
                "time the cast is resent (to another member for a group), and servers drop\n"
                "duplicates.");
  services.AcknowledgedCast();

  reporter.Step("FANOUT: one-way, to every server of the topic on every node",
                "One message per node that has a server of the topic; each proxy hands it to\n"
                "every local server.");
  services.Fanout();

  reporter.Step("NOTIFY with two pools of listeners",
                "4 notifications to \"events.info\". Every pool gets one copy of each; inside a\n"
                "pool the copies are shared round-robin (e.g. two workers splitting the load).");
  services.Notify();

  reporter.Step(absl::StrCat("Drain ", nodes.back().name, " (what `zmeshctl nodes drain ",
                             nodes.back().name, "` does)"),
                "A draining node gets no new traffic sent to a topic group (maintenance), but\n"
                "its servers still answer messages addressed to them by name.");
  services.Drain(directory);

  reporter.Step("Stop the services",
                "Servers and listeners withdraw their targets; the client closes.");
  services.Stop();
  reporter.Say("stopped");
  return absl::OkStatus();
}

}  // namespace zmesh::demo
