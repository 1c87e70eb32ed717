#include "bench/dataplane/raw.h"

#include <cstdio>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace zmesh::bench {
namespace {

// Answers that do not come back within this time fail the round trip.
constexpr int kCallTimeoutMs = 10000;
// A send blocked this long by full queues fails.
constexpr int kSendTimeoutMs = 10000;

bool IsTcp(const std::string& endpoint) {
  return absl::string_view(endpoint).substr(0, 6) == "tcp://";
}

int Fail(const char* role, const std::string& what) {
  fprintf(stderr, "%s: %s\n", role, what.c_str());
  return 1;
}

// Receives one whole multipart message into `frames` (blocking).
void ReceiveMultipart(zmq::socket_t& socket, std::vector<zmq::message_t>& frames) {
  frames.clear();
  do {
    frames.emplace_back();
    (void)socket.recv(frames.back());
  } while (frames.back().more());
}

void SendMultipart(zmq::socket_t& socket, std::vector<zmq::message_t>& frames) {
  for (size_t i = 0; i < frames.size(); ++i) {
    (void)socket.send(frames[i],
                      i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

// Echoes every message on `socket` back the way it came, until the context is shut down.
void EchoLoop(zmq::socket_t& socket) {
  std::vector<zmq::message_t> frames;
  while (true) {
    ReceiveMultipart(socket, frames);
    SendMultipart(socket, frames);
  }
}

// The orchestrator's DEALER to an echo server (directly or through the zmq proxy).
class RawCaller : public Caller {
 public:
  explicit RawCaller(zmq::socket_t socket) : socket_(std::move(socket)) {}

  absl::Status Call(const std::string& payload) override {
    try {
      (void)socket_.send(zmq::buffer(payload), zmq::send_flags::none);
      zmq::message_t reply;
      if (!socket_.recv(reply)) {
        return absl::DeadlineExceededError(absl::StrCat("no echo within ", kCallTimeoutMs, " ms"));
      }
      if (reply.more() || reply.to_string_view() != payload) {
        return absl::DataLossError("the echo differs from the request");
      }
      return absl::OkStatus();
    } catch (const zmq::error_t& e) {
      return absl::UnavailableError(e.what());
    }
  }

 private:
  zmq::socket_t socket_;
};

class RawCallPath : public CallPath {
 public:
  RawCallPath(zmq::context_t& context, std::string endpoint)
      : context_(context), endpoint_(std::move(endpoint)) {}

  absl::StatusOr<std::unique_ptr<Caller>> NewCaller() override {
    try {
      zmq::socket_t socket(context_, zmq::socket_type::dealer);
      ConfigureRawSocket(socket, /*tcp=*/true);
      socket.set(zmq::sockopt::rcvtimeo, kCallTimeoutMs);
      socket.connect(endpoint_);
      return std::unique_ptr<Caller>(new RawCaller(std::move(socket)));
    } catch (const zmq::error_t& e) {
      return absl::UnavailableError(absl::StrCat("DEALER to ", endpoint_, ": ", e.what()));
    }
  }

 private:
  zmq::context_t& context_;
  std::string endpoint_;
};

// One PUSH per receiver; every message goes to each.
class RawPushSender : public OneWaySender {
 public:
  explicit RawPushSender(std::vector<zmq::socket_t> sockets) : sockets_(std::move(sockets)) {}

  absl::Status Send(const std::string& payload) override {
    try {
      for (zmq::socket_t& socket : sockets_) {
        if (!socket.send(zmq::buffer(payload), zmq::send_flags::none)) {
          return absl::DeadlineExceededError(
              absl::StrCat("send queue full for ", kSendTimeoutMs, " ms"));
        }
      }
      return absl::OkStatus();
    } catch (const zmq::error_t& e) {
      return absl::UnavailableError(e.what());
    }
  }

 private:
  std::vector<zmq::socket_t> sockets_;
};

absl::StatusOr<std::unique_ptr<OneWaySender>> NewPushSender(
    zmq::context_t& context, const std::vector<std::string>& endpoints) {
  std::vector<zmq::socket_t> sockets;
  try {
    for (const std::string& endpoint : endpoints) {
      zmq::socket_t socket(context, zmq::socket_type::push);
      ConfigureRawSocket(socket, /*tcp=*/true);
      socket.set(zmq::sockopt::sndtimeo, kSendTimeoutMs);
      socket.connect(endpoint);
      sockets.push_back(std::move(socket));
    }
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(absl::StrCat("PUSH sockets: ", e.what()));
  }
  return std::unique_ptr<OneWaySender>(new RawPushSender(std::move(sockets)));
}

}  // namespace

int RunEchoServerRole(const RoleOptions& options) {
  zmq::context_t context;
  WatchTermination([&context]() { context.shutdown(); });
  try {
    zmq::socket_t socket(context, zmq::socket_type::router);
    ConfigureRawSocket(socket, IsTcp(options.bind));
    socket.bind(options.bind);
    absl::Status ready =
        WriteReadyFile(options.ready_file, socket.get(zmq::sockopt::last_endpoint));
    if (!ready.ok()) return Fail("echo-server", ready.ToString());
    EchoLoop(socket);
  } catch (const zmq::error_t& e) {
    if (e.num() != ETERM) return Fail("echo-server", e.what());
  }
  return 0;
}

int RunEchoWorkerRole(const RoleOptions& options) {
  zmq::context_t context;
  WatchTermination([&context]() { context.shutdown(); });
  try {
    zmq::socket_t socket(context, zmq::socket_type::dealer);
    ConfigureRawSocket(socket, IsTcp(options.connect));
    socket.connect(options.connect);
    absl::Status ready = WriteReadyFile(options.ready_file, options.connect);
    if (!ready.ok()) return Fail("echo-worker", ready.ToString());
    EchoLoop(socket);
  } catch (const zmq::error_t& e) {
    if (e.num() != ETERM) return Fail("echo-worker", e.what());
  }
  return 0;
}

int RunZmqProxyRole(const RoleOptions& options) {
  zmq::context_t context;
  WatchTermination([&context]() { context.shutdown(); });
  try {
    zmq::socket_t frontend(context, zmq::socket_type::router);
    ConfigureRawSocket(frontend, IsTcp(options.bind));
    frontend.bind(options.bind);
    zmq::socket_t backend(context, zmq::socket_type::dealer);
    ConfigureRawSocket(backend, IsTcp(options.backend));
    backend.bind(options.backend);
    absl::Status ready =
        WriteReadyFile(options.ready_file, frontend.get(zmq::sockopt::last_endpoint));
    if (!ready.ok()) return Fail("zmq-proxy", ready.ToString());
    zmq::proxy(frontend, backend);
  } catch (const zmq::error_t& e) {
    if (e.num() != ETERM) return Fail("zmq-proxy", e.what());
  }
  return 0;
}

int RunSinkRole(const RoleOptions& options) {
  zmq::context_t context;
  WatchTermination([&context]() { context.shutdown(); });
  DeliveryCounter counter;
  std::string error;
  // The receiving thread owns the PULL socket; main() serves the control socket.
  std::thread receiver;
  std::string endpoint;
  try {
    zmq::socket_t socket(context, zmq::socket_type::pull);
    ConfigureRawSocket(socket, IsTcp(options.bind));
    socket.bind(options.bind);
    endpoint = socket.get(zmq::sockopt::last_endpoint);
    receiver = std::thread([&counter, &error, socket = std::move(socket)]() mutable {
      try {
        while (true) {
          zmq::message_t message;
          if (socket.recv(message)) counter.Add();
        }
      } catch (const zmq::error_t& e) {
        if (e.num() != ETERM) error = e.what();
      }
    });
  } catch (const zmq::error_t& e) {
    return Fail("sink", e.what());
  }
  absl::StatusOr<zmq::socket_t> control = BindControl(context, options.control);
  absl::Status ready = control.status();
  if (ready.ok()) ready = WriteReadyFile(options.ready_file, endpoint);
  if (!ready.ok()) {
    context.shutdown();
    receiver.join();
    return Fail("sink", ready.ToString());
  }
  absl::Status served = ServeControl(*control, counter);
  receiver.join();
  if (!served.ok()) return Fail("sink", served.ToString());
  if (!error.empty()) return Fail("sink", error);
  return 0;
}

absl::StatusOr<std::unique_ptr<RawSystem>> RawSystem::Start(zmq::context_t& context,
                                                            const std::string& dir,
                                                            int fanout_receivers) {
  std::unique_ptr<RawSystem> system(new RawSystem());
  auto start = [&](const std::string& name,
                   std::vector<std::string> args) -> absl::StatusOr<std::string> {
    absl::StatusOr<std::unique_ptr<ChildProcess>> child =
        ChildProcess::Start(dir, name, std::move(args));
    if (!child.ok()) return child.status();
    system->children_.push_back(std::move(*child));
    return system->children_.back()->ready_text();
  };

  absl::StatusOr<std::string> echo =
      start("raw-echo", {"--role=echo-server", "--bind=tcp://127.0.0.1:0"});
  if (!echo.ok()) return echo.status();
  system->direct_echo_ = std::make_unique<RawCallPath>(context, *echo);

  const std::string backend = absl::StrCat("ipc://", dir, "/raw-backend.sock");
  absl::StatusOr<std::string> proxy =
      start("raw-proxy", {"--role=zmq-proxy", "--bind=tcp://127.0.0.1:0", "--backend=" + backend});
  if (!proxy.ok()) return proxy.status();
  absl::StatusOr<std::string> worker =
      start("raw-worker", {"--role=echo-worker", "--connect=" + backend});
  if (!worker.ok()) return worker.status();
  system->proxied_echo_ = std::make_unique<RawCallPath>(context, *proxy);

  std::vector<std::string> sinks;
  for (int i = 0; i < std::max(fanout_receivers, 1); ++i) {
    const std::string name = absl::StrCat("raw-sink-", i + 1);
    const std::string control = absl::StrCat("ipc://", dir, "/", name, ".ctl");
    absl::StatusOr<std::string> sink =
        start(name, {"--role=sink", "--bind=tcp://127.0.0.1:0", "--control=" + control});
    if (!sink.ok()) return sink.status();
    sinks.push_back(*sink);
    absl::StatusOr<std::unique_ptr<ReceiverControl>> receiver =
        ReceiverControl::Connect(context, control, name);
    if (!receiver.ok()) return receiver.status();
    system->controls_.push_back(std::move(*receiver));
  }
  absl::StatusOr<std::unique_ptr<OneWaySender>> cast = NewPushSender(context, {sinks[0]});
  if (!cast.ok()) return cast.status();
  system->cast_sender_ = std::move(*cast);
  absl::StatusOr<std::unique_ptr<OneWaySender>> fanout = NewPushSender(context, sinks);
  if (!fanout.ok()) return fanout.status();
  system->fanout_sender_ = std::move(*fanout);
  return system;
}

RawSystem::~RawSystem() = default;

std::vector<ReceiverControl*> RawSystem::fanout_receivers() {
  std::vector<ReceiverControl*> receivers;
  for (const std::unique_ptr<ReceiverControl>& control : controls_) {
    receivers.push_back(control.get());
  }
  return receivers;
}

std::vector<UsageMeter::Process> RawSystem::processes() const {
  std::vector<UsageMeter::Process> processes = {{"client", 0}};
  for (const std::unique_ptr<ChildProcess>& child : children_) {
    processes.push_back({child->name(), child->pid()});
  }
  return processes;
}

absl::Status RawSystem::Stop() {
  cast_sender_.reset();
  fanout_sender_.reset();
  controls_.clear();
  absl::Status first;
  for (const std::unique_ptr<ChildProcess>& child : children_) {
    absl::Status stopped = child->Stop();
    if (first.ok()) first = stopped;
  }
  return first;
}

}  // namespace zmesh::bench
