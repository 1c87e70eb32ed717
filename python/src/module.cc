// zmesh._zmesh: the pybind11 binding to libzmesh. See docs/python.md for the contract; in short:
// no method blocks (beyond a short mutex hold, always with the GIL released), every operation
// that may wait returns a Pending whose eventfd becomes readable when it is done, and no C++
// thread ever calls into Python.
#include <pybind11/eval.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "python/src/completion.h"
#include "python/src/gil.h"
#include "python/src/inbox.h"
#include "python/src/transport_core.h"
#include "zmesh/transport.h"
#include "zmesh/types.h"

namespace py = pybind11;

namespace zmesh::python {
namespace {

// The exception classes, defined in Python (below) so they are ordinary Exception subclasses
// with .code and .message. Leaked on purpose: they live as long as the interpreter.
struct ErrorClasses {
  PyObject* base = nullptr;              // Error
  PyObject* deadline = nullptr;          // Timeout: DEADLINE_EXCEEDED
  PyObject* not_found = nullptr;         // NotFound: NOT_FOUND
  PyObject* unavailable = nullptr;       // Unavailable: UNAVAILABLE
  PyObject* invalid_argument = nullptr;  // InvalidArgument: INVALID_ARGUMENT
};
ErrorClasses g_errors;

constexpr char kErrorClassesSource[] = R"(
class Error(Exception):
    """A failed zmesh operation: .code is the status code name (e.g. "UNAVAILABLE"), .message
    the text libzmesh gave."""

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return "%s: %s" % (self.code, self.message)


class Timeout(Error):
    """DEADLINE_EXCEEDED: the operation's deadline (or call monitor timeout) passed."""


class NotFound(Error):
    """NOT_FOUND: no server for the target (a call with at_least_once)."""


class Unavailable(Error):
    """UNAVAILABLE: no proxy, or the transport is closed (or was made before fork())."""


class InvalidArgument(Error):
    """INVALID_ARGUMENT: bad target, options, or a payload over the limit."""


for _cls in (Error, Timeout, NotFound, Unavailable, InvalidArgument):
    _cls.__module__ = "zmesh._zmesh"
del _cls
)";

[[noreturn]] void RaiseStatus(const absl::Status& status) {
  PyObject* cls = g_errors.base;
  switch (status.code()) {
    case absl::StatusCode::kDeadlineExceeded:
      cls = g_errors.deadline;
      break;
    case absl::StatusCode::kNotFound:
      cls = g_errors.not_found;
      break;
    case absl::StatusCode::kUnavailable:
      cls = g_errors.unavailable;
      break;
    case absl::StatusCode::kInvalidArgument:
      cls = g_errors.invalid_argument;
      break;
    default:
      break;
  }
  py::object error = py::reinterpret_borrow<py::object>(cls)(
      absl::StatusCodeToString(status.code()), std::string(status.message()));
  PyErr_SetObject(cls, error.ptr());
  throw py::error_already_set();
}

// What Pending.result() converts the C++ value to.
enum class ResultKind { kNone, kCall, kTransport, kInbox };

struct Pending {
  std::shared_ptr<Completion> completion;
  ResultKind kind = ResultKind::kNone;
};

// A popped message, as Python sees it. When Python drops it, an unanswered CALL fails.
struct Message {
  std::shared_ptr<InboxQueue> queue;
  std::shared_ptr<MessageState> state;
  pid_t pid = 0;

  Message(std::shared_ptr<InboxQueue> q, std::shared_ptr<MessageState> s)
      : queue(std::move(q)), state(std::move(s)), pid(::getpid()) {}
  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;
  ~Message() {
    // In a fork() child the queue's mutex may have been held by a parent thread: leave it.
    if (SameProcess(pid)) queue->Release(*state);
  }
};

const char* KindName(MessageKind kind) {
  switch (kind) {
    case MessageKind::kCall:
      return "call";
    case MessageKind::kCast:
      return "cast";
    case MessageKind::kFanout:
      return "fanout";
    case MessageKind::kNotify:
      return "notify";
  }
  return "call";
}

std::string Bytes(const py::bytes& b) { return std::string(b); }

Pending Unusable(const std::shared_ptr<TransportCore>& core) {
  return {Completion::Failed(core->CheckUsable()), ResultKind::kNone};
}

// Runs a blocking libzmesh call on the binding pool; `work` returns the Status.
Pending Blocking(std::function<absl::Status()> work) {
  std::shared_ptr<Completion> completion = Completion::Create();
  RunBlocking([completion, work = std::move(work)] { completion->Complete(work()); });
  return {completion, ResultKind::kNone};
}

py::object Result(const Pending& pending) {
  if (!pending.completion->done()) {
    throw std::runtime_error("zmesh: result() of an operation that is not done yet");
  }
  absl::Status status = pending.completion->status();
  if (!status.ok()) RaiseStatus(status);
  std::shared_ptr<void> value = pending.completion->value();
  switch (pending.kind) {
    case ResultKind::kNone:
      return py::none();
    case ResultKind::kCall: {
      const auto& result = *std::static_pointer_cast<CallResult>(value);
      return py::make_tuple(py::bytes(result.payload), result.remote_error);
    }
    case ResultKind::kTransport:
      return py::cast(std::static_pointer_cast<TransportCore>(value));
    case ResultKind::kInbox:
      return py::cast(std::static_pointer_cast<Inbox>(value));
  }
  return py::none();
}

Pending CreateTransport(std::string ipc_dir, std::string description, int64_t connect_timeout_ms,
                        int64_t max_payload_bytes, int64_t peer_connect_timeout_ms) {
  TransportOptions options;
  options.ipc_dir = std::move(ipc_dir);
  options.description = std::move(description);
  options.connect_timeout_ms = connect_timeout_ms;
  if (max_payload_bytes != 0) options.max_payload_bytes = max_payload_bytes;
  if (peer_connect_timeout_ms != 0) options.peer_connect_timeout_ms = peer_connect_timeout_ms;
  std::shared_ptr<Completion> completion = Completion::Create();
  RunBlocking([completion, options = std::move(options)]() mutable {
    absl::StatusOr<std::shared_ptr<TransportCore>> core = TransportCore::Create(std::move(options));
    if (!core.ok()) {
      completion->Complete(core.status());
    } else {
      completion->Complete(absl::OkStatus(), *std::move(core));
    }
  });
  return {completion, ResultKind::kTransport};
}

Pending CallAsync(const std::shared_ptr<TransportCore>& core, std::string exchange,
                  std::string topic, std::string server, std::string payload, int64_t timeout_ms,
                  int64_t call_monitor_timeout_ms, bool at_least_once) {
  if (!core->CheckUsable().ok()) return Unusable(core);
  std::shared_ptr<Completion> completion = Completion::Create();
  CallOptions options;
  options.timeout_ms = timeout_ms;
  options.call_monitor_timeout_ms = call_monitor_timeout_ms;
  options.at_least_once = at_least_once;
  core->transport().CallAsync(
      Target{std::move(exchange), std::move(topic), std::move(server)}, std::move(payload), options,
      [completion](absl::StatusOr<CallResult> result) {
        if (!result.ok()) {
          completion->Complete(result.status());
        } else {
          completion->Complete(absl::OkStatus(), std::make_shared<CallResult>(*std::move(result)));
        }
      });
  return {completion, ResultKind::kCall};
}

Pending CastAsync(const std::shared_ptr<TransportCore>& core, std::string exchange,
                  std::string topic, std::string server, std::string payload, int64_t timeout_ms,
                  bool acknowledged, int64_t ack_timeout_ms) {
  if (!core->CheckUsable().ok()) return Unusable(core);
  std::shared_ptr<Completion> completion = Completion::Create();
  CastOptions options;
  options.timeout_ms = timeout_ms;
  options.acknowledged = acknowledged;
  options.ack_timeout_ms = ack_timeout_ms;
  core->transport().CastAsync(
      Target{std::move(exchange), std::move(topic), std::move(server)}, std::move(payload), options,
      [completion](absl::Status status) { completion->Complete(std::move(status)); });
  return {completion, ResultKind::kNone};
}

Pending FanoutAsync(const std::shared_ptr<TransportCore>& core, std::string exchange,
                    std::string topic, std::string payload) {
  if (!core->CheckUsable().ok()) return Unusable(core);
  return Blocking([core, target = Target{std::move(exchange), std::move(topic), ""},
                   payload = std::move(payload)]() mutable {
    return core->transport().Fanout(target, std::move(payload));
  });
}

Pending NotifyAsync(const std::shared_ptr<TransportCore>& core, std::string exchange,
                    std::string topic, std::string priority, std::string payload) {
  if (!core->CheckUsable().ok()) return Unusable(core);
  return Blocking(
      [core, target = NotifyTarget{std::move(exchange), std::move(topic), std::move(priority)},
       payload = std::move(payload)]() mutable {
        return core->transport().Notify(target, std::move(payload));
      });
}

Pending StartServerAsync(const std::shared_ptr<TransportCore>& core, std::string exchange,
                         std::string topic, std::string server, int threads, int64_t queue_limit) {
  if (!core->CheckUsable().ok()) return Unusable(core);
  std::shared_ptr<Completion> completion = Completion::Create();
  RunBlocking([completion, core,
               target = Target{std::move(exchange), std::move(topic), std::move(server)}, threads,
               queue_limit]() mutable {
    absl::StatusOr<std::shared_ptr<Inbox>> inbox =
        Inbox::StartServer(core, std::move(target), threads, queue_limit);
    if (!inbox.ok()) {
      completion->Complete(inbox.status());
    } else {
      completion->Complete(absl::OkStatus(), *std::move(inbox));
    }
  });
  return {completion, ResultKind::kInbox};
}

Pending StartListenerAsync(const std::shared_ptr<TransportCore>& core,
                           std::vector<std::tuple<std::string, std::string, std::string>> targets,
                           std::string pool, int64_t queue_limit) {
  if (!core->CheckUsable().ok()) return Unusable(core);
  std::vector<NotifyTarget> notify_targets;
  notify_targets.reserve(targets.size());
  for (auto& [exchange, topic, priority] : targets) {
    notify_targets.push_back(
        NotifyTarget{std::move(exchange), std::move(topic), std::move(priority)});
  }
  std::shared_ptr<Completion> completion = Completion::Create();
  RunBlocking([completion, core, notify_targets = std::move(notify_targets), pool = std::move(pool),
               queue_limit]() mutable {
    absl::StatusOr<std::shared_ptr<Inbox>> inbox =
        Inbox::StartListener(core, std::move(notify_targets), std::move(pool), queue_limit);
    if (!inbox.ok()) {
      completion->Complete(inbox.status());
    } else {
      completion->Complete(absl::OkStatus(), *std::move(inbox));
    }
  });
  return {completion, ResultKind::kInbox};
}

Pending CloseAsync(const std::shared_ptr<TransportCore>& core) {
  if (!core->CheckUsable().ok()) return Unusable(core);
  return Blocking([core] {
    core->Close();
    return absl::OkStatus();
  });
}

Pending StopInboxAsync(const std::shared_ptr<Inbox>& inbox, std::string drain_error,
                       int64_t grace_ms) {
  if (!SameProcess(inbox->pid())) {
    return {Completion::Failed(absl::UnavailableError(
                "zmesh: this Inbox was created in the parent process before fork()")),
            ResultKind::kNone};
  }
  return Blocking([inbox, drain_error = std::move(drain_error), grace_ms] {
    inbox->Stop(drain_error, /*abandon=*/false, grace_ms);
    return absl::OkStatus();
  });
}

py::dict Stats(const std::shared_ptr<TransportCore>& core) {
  const TransportStats s = WithoutGil(
      [&] { return core->CheckUsable().ok() ? core->transport().stats() : TransportStats{}; });
  py::dict d;
  d["calls_sent"] = s.calls_sent;
  d["calls_retried"] = s.calls_retried;
  d["casts_sent"] = s.casts_sent;
  d["casts_retried"] = s.casts_retried;
  d["fanouts_sent"] = s.fanouts_sent;
  d["notifications_sent"] = s.notifications_sent;
  d["requests_handled"] = s.requests_handled;
  d["messages_delivered"] = s.messages_delivered;
  d["duplicates_dropped"] = s.duplicates_dropped;
  d["lookups_from_proxy"] = s.lookups_from_proxy;
  d["proxy_reconnects"] = s.proxy_reconnects;
  return d;
}

// `Fn` bound so that it runs without the GIL once pybind11 converted its arguments.
template <auto Fn>
struct NoGil;
template <typename R, typename... Args, R (*Fn)(Args...)>
struct NoGil<Fn> {
  static R Call(Args... args) {
    return WithoutGil([&]() -> R { return Fn(std::forward<Args>(args)...); });
  }
};

}  // namespace
}  // namespace zmesh::python

PYBIND11_MODULE(_zmesh, m) {
  using namespace zmesh::python;  // NOLINT(build/namespaces): the binding's own names
  m.doc() =
      "Binding to libzmesh. Nothing here blocks: operations that may wait return a Pending; wait "
      "for it with select.select([pending], [], []) (green under eventlet) and take "
      "pending.result(). See zmesh.client for the synchronous, green-aware API.";

  py::dict scope = m.attr("__dict__");
  py::exec(kErrorClassesSource, scope);
  g_errors.base = py::object(m.attr("Error")).release().ptr();
  g_errors.deadline = py::object(m.attr("Timeout")).release().ptr();
  g_errors.not_found = py::object(m.attr("NotFound")).release().ptr();
  g_errors.unavailable = py::object(m.attr("Unavailable")).release().ptr();
  g_errors.invalid_argument = py::object(m.attr("InvalidArgument")).release().ptr();
  m.attr("DROPPED_ERROR") = py::bytes(zmesh::python::kDroppedError);
  m.attr("ABANDONED_ERROR") = py::bytes(zmesh::python::kAbandonedError);

  py::class_<Pending>(m, "Pending",
                      "An operation in progress. fileno() is an eventfd that becomes readable "
                      "once it is done (and stays readable).")
      .def("fileno", [](const Pending& p) { return p.completion->fd(); })
      .def("done",
           [](const Pending& p) { return WithoutGil([&] { return p.completion->done(); }); })
      .def("result", &Result,
           "The operation's result. Never blocks: RuntimeError if not done yet; raises Error (or "
           "a subclass) if the operation failed.");

  py::class_<TransportCore, std::shared_ptr<TransportCore>>(
      m, "Transport", "A connection to the node's zmesh-proxy (libzmesh Transport).")
      .def_static("create_async", &NoGil<&CreateTransport>::Call, py::arg("ipc_dir"),
                  py::arg("description") = "", py::arg("connect_timeout_ms") = 5000,
                  py::arg("max_payload_bytes") = 0, py::arg("peer_connect_timeout_ms") = 0,
                  "Pending -> Transport. UNAVAILABLE when no proxy answers in time. 0 for "
                  "max_payload_bytes / peer_connect_timeout_ms: libzmesh's default.")
      .def(
          "call_async",
          [](const std::shared_ptr<TransportCore>& core, std::string exchange, std::string topic,
             std::string server, const py::bytes& payload, int64_t timeout_ms,
             int64_t call_monitor_timeout_ms, bool at_least_once) {
            std::string data = Bytes(payload);
            return WithoutGil([&] {
              return CallAsync(core, std::move(exchange), std::move(topic), std::move(server),
                               std::move(data), timeout_ms, call_monitor_timeout_ms, at_least_once);
            });
          },
          py::arg("exchange"), py::arg("topic"), py::arg("server"), py::arg("payload"),
          py::arg("timeout_ms"), py::arg("call_monitor_timeout_ms") = 0,
          py::arg("at_least_once") = false, "Pending -> (payload: bytes, remote_error: bool)")
      .def(
          "cast_async",
          [](const std::shared_ptr<TransportCore>& core, std::string exchange, std::string topic,
             std::string server, const py::bytes& payload, int64_t timeout_ms, bool acknowledged,
             int64_t ack_timeout_ms) {
            std::string data = Bytes(payload);
            return WithoutGil([&] {
              return CastAsync(core, std::move(exchange), std::move(topic), std::move(server),
                               std::move(data), timeout_ms, acknowledged, ack_timeout_ms);
            });
          },
          py::arg("exchange"), py::arg("topic"), py::arg("server"), py::arg("payload"),
          py::arg("timeout_ms") = 30000, py::arg("acknowledged") = false,
          py::arg("ack_timeout_ms") = 1000, "Pending -> None")
      .def(
          "fanout_async",
          [](const std::shared_ptr<TransportCore>& core, std::string exchange, std::string topic,
             const py::bytes& payload) {
            std::string data = Bytes(payload);
            return WithoutGil([&] {
              return FanoutAsync(core, std::move(exchange), std::move(topic), std::move(data));
            });
          },
          py::arg("exchange"), py::arg("topic"), py::arg("payload"), "Pending -> None")
      .def(
          "notify_async",
          [](const std::shared_ptr<TransportCore>& core, std::string exchange, std::string topic,
             std::string priority, const py::bytes& payload) {
            std::string data = Bytes(payload);
            return WithoutGil([&] {
              return NotifyAsync(core, std::move(exchange), std::move(topic), std::move(priority),
                                 std::move(data));
            });
          },
          py::arg("exchange"), py::arg("topic"), py::arg("priority"), py::arg("payload"),
          "Pending -> None")
      .def("start_server_async", &NoGil<&StartServerAsync>::Call, py::arg("exchange"),
           py::arg("topic"), py::arg("server"), py::arg("threads") = 64,
           py::arg("queue_limit") = 1000,
           "Pending -> Inbox receiving the CALLs, CASTs and FANOUTs of the target.")
      .def("start_listener_async", &NoGil<&StartListenerAsync>::Call, py::arg("targets"),
           py::arg("pool") = "", py::arg("queue_limit") = 1000,
           "targets: list of (exchange, topic, priority). Pending -> Inbox of notifications.")
      .def("close_async", &NoGil<&CloseAsync>::Call,
           "Pending -> None. Stops this transport's inboxes, then closes it.")
      .def_property_readonly("instance_id",
                             [](const std::shared_ptr<TransportCore>& core) {
                               return core->transport().instance_id();
                             })
      .def_property_readonly("node_name",
                             [](const std::shared_ptr<TransportCore>& core) {
                               return WithoutGil([&] { return core->transport().node_name(); });
                             })
      .def_property_readonly(
          "proxy_directory",
          [](const std::shared_ptr<TransportCore>& core) {
            return WithoutGil([&] { return core->transport().proxy_directory(); });
          },
          "The directory replicas (HOST:PORT) the local proxy uses, from its welcome.")
      .def("stats", &Stats, "TransportStats as a dict (monotonic counters).");

  py::class_<Inbox, std::shared_ptr<Inbox>>(
      m, "Inbox", "What a server or a notification listener received, waiting to be popped.")
      .def("fileno", [](const std::shared_ptr<Inbox>& inbox) { return inbox->queue()->fd(); })
      .def(
          "pop",
          [](const std::shared_ptr<Inbox>& inbox, size_t max) {
            if (max < 1) throw py::value_error("zmesh: pop(max): max must be >= 1");
            std::vector<std::shared_ptr<MessageState>> states =
                WithoutGil([&] { return inbox->queue()->Pop(max); });
            py::list out;
            for (std::shared_ptr<MessageState>& state : states) {
              out.append(py::cast(std::make_shared<Message>(inbox->queue(), std::move(state))));
            }
            return out;
          },
          py::arg("max") = 1, "Up to `max` messages, oldest first; [] when none. Never blocks.")
      .def("stop_async", &NoGil<&StopInboxAsync>::Call, py::arg("drain_error") = py::bytes(""),
           py::arg("grace_ms") = 0,
           "Pending -> None. Stops receiving (withdraws the target, waits for popped CALLs to be "
           "answered); unpopped CALLs fail with drain_error, other unpopped messages are dropped "
           "(dropped_on_stop). grace_ms > 0: queued messages stay poppable while the target is "
           "withdrawn, up to grace_ms.")
      .def_property_readonly(
          "stopped", [](const std::shared_ptr<Inbox>& inbox) { return inbox->queue()->stopped(); })
      .def_property_readonly(
          "dropped_on_stop",
          [](const std::shared_ptr<Inbox>& inbox) { return inbox->queue()->dropped_on_stop(); })
      .def("__len__", [](const std::shared_ptr<Inbox>& inbox) { return inbox->queue()->size(); });

  py::class_<Message, std::shared_ptr<Message>>(m, "Message", "One received message.")
      .def_property_readonly("kind", [](const Message& msg) { return KindName(msg.state->kind); })
      .def_property_readonly("payload",
                             [](const Message& msg) { return py::bytes(msg.state->payload); })
      .def_property_readonly("exchange",
                             [](const Message& msg) { return msg.state->target.exchange; })
      .def_property_readonly("topic", [](const Message& msg) { return msg.state->target.topic; })
      .def_property_readonly("server", [](const Message& msg) { return msg.state->target.server; })
      .def_property_readonly("sender", [](const Message& msg) { return msg.state->sender; })
      .def_property_readonly("message_id", [](const Message& msg) { return msg.state->message_id; })
      .def(
          "reply",
          [](Message& msg, const py::bytes& payload) {
            std::string data = Bytes(payload);
            WithoutGil([&] { msg.queue->Reply(*msg.state, std::move(data)); });
          },
          py::arg("payload"))
      .def(
          "fail",
          [](Message& msg, const py::bytes& error) {
            std::string data = Bytes(error);
            WithoutGil([&] { msg.queue->Fail(*msg.state, std::move(data)); });
          },
          py::arg("error"))
      .def("heartbeat", [](Message& msg) { WithoutGil([&] { msg.queue->Heartbeat(*msg.state); }); })
      .def("__repr__", [](const Message& msg) {
        return "<zmesh Message " + std::string(KindName(msg.state->kind)) + " " +
               msg.state->target.exchange + "/" + msg.state->target.topic + "/" +
               msg.state->target.server + " id=" + std::to_string(msg.state->message_id) + ">";
      });
}
