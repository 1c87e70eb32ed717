// Engine: the machinery behind a Transport. One I/O thread owns every ZeroMQ socket of the
// instance: the control DEALER and the four IPC data DEALERs to the local proxy, and per remote
// node one DEALER per pattern used (created on first use). Other threads hand work over through
// a mutex-protected command queue and an eventfd the I/O thread polls. Deadlines, retries and
// pings are timers of the I/O thread (TimerHeap), never sleeps.
//
// Failure handling (docs/wire-protocol.md):
//  - A group CALL or acknowledged CAST refused by the chosen member (NO_SUCH_TARGET) is resent
//    to the next member at once (after a short back-off when every member refused).
//  - A lost peer is detected on its connection: every peer socket has a zmq_socket_monitor, and
//    a disconnect (the node's proxy died: its kernel closes the connection at once; or ZMTP
//    heartbeats, 1 s / 3 s timeout, and TCP keepalive gave up on a silent host) or a failed
//    connect marks the node's socket down until the next handshake (HANDSHAKE_SUCCEEDED; a TCP
//    connect alone does not count). Answers travel back on the connection a request came from,
//    so a disconnect loses every answer of the messages in flight on it: group CALLs and
//    acknowledged CASTs among them are resent to another member at once, and group sends
//    (CALL, CAST, NOTIFY) skip down nodes while another member is up (the directory drops a dead
//    node only after its lease TTL). A server that withdraws gracefully is not a lost peer: its
//    running handlers still answer, and what it refuses is resent. Queues toward a peer are
//    bounded by ZMQ_SNDHWM (max_queued_per_node); a send that finds the queue full waits for
//    room until its deadline.
//  - A peer that never answers (a dead or blackholed host still in the directory: registered
//    by hand, or its lease not expired yet) is found by its socket never completing a
//    handshake: ZMQ_CONNECT_TIMEOUT (peer_connect_timeout_ms) ends an unanswered connect attempt
//    (CONNECT_RETRIED), a refused one retries at once, and a timer (2 x peer_connect_timeout_ms
//    after the socket was created) catches a connection whose handshake never completes. The
//    socket is then down (OnPeerUnreachable), and if group messages sit in its queue, it is
//    closed with linger 0 (ZeroMQ drops the queue, so nothing arrives later as a duplicate) and
//    replaced by a new socket, down until its handshake; everything that was queued in it goes
//    out again: group CALLs, CASTs (plain ones still lingering, see below), notifications and
//    group messages waiting for room to another member; messages to a specific server to the
//    same server on the new socket (they keep waiting for it until their deadline). Nothing
//    sent on a socket that never completed a handshake can have been delivered, so this never
//    duplicates. FANOUTs travel on their own sockets, which are never replaced.
//  - A group CALL without any answer yet whose member leaves the lookup answer (its process
//    died and its proxy withdrew it, or it closed its Transport) is resent to another member: a
//    Server that stops gracefully withdraws only after answering everything it accepted.
//  - A CALL to a specific server that is gone keeps waiting (retrying refusals every 100 ms)
//    until its deadline.
//  - Plain casts and notifications are kept for a short while after sending (bounded by count
//    and bytes) so that a NO_SUCH_TARGET refusal, or their socket never connecting, resends them
//    to another member: 2 s, or 2 x peer_connect_timeout_ms + 1 s when longer and the socket
//    they went out on has not completed a handshake yet.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "dataplane/client/selection.h"
#include "dataplane/client/timer_heap.h"
#include "dataplane/client/worker_pool.h"
#include "zmesh/directory/v1/types.pb.h"
#include "zmesh/transport.h"
#include "zmesh/types.h"
#include "zmesh/wire/v1/envelope.pb.h"
#include "zmesh/wire/v1/local.pb.h"

namespace zmesh::internal {

// The four data pipelines, in the order of the IPC data sockets.
enum class Pattern { kCall = 0, kFanout = 1, kNotify = 2, kCast = 3 };
inline constexpr int kPatterns = 4;

// One message the local proxy delivered to this instance.
struct Incoming {
  Pattern pattern = Pattern::kCall;
  ::zmesh::wire::v1::Header header;
  bool has_route = false;
  std::string route;  // routing frame to echo in the answer (has_route)
  std::string payload;
  int64_t received_ms = 0;  // monotonic
};

// Receives the messages of the targets it announced. Deliver runs on the I/O thread and must
// not block: hand the work to a pool.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void Deliver(Incoming message) = 0;
  // Messages delivered and not yet handled. While any sink has kMaxSinkBacklog or more, the
  // engine stops reading its local data sockets: the proxy's queue toward this instance fills
  // and the proxy stops reading the network, so senders slow down instead of a queue growing
  // without bound here.
  virtual size_t backlog() const = 0;
};
inline constexpr size_t kMaxSinkBacklog = 1000;

using CallDone = absl::AnyInvocable<void(absl::StatusOr<CallResult>) &&>;
using StatusDone = absl::AnyInvocable<void(absl::Status) &&>;

// Thread-safe. Completion callbacks (CallDone, StatusDone) run on the I/O thread, or on the
// caller's thread when the engine is closed: they must be quick and must not call back into
// blocking Engine methods.
class Engine {
 public:
  // Connects to the proxy, says hello, attaches the data sockets and waits (connect_timeout_ms)
  // for the answers. UNAVAILABLE when no proxy answers.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Engine>> Create(TransportOptions options);
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  ~Engine();  // Close()

  // Patterns. Arguments are validated by the caller (Transport); `target.exchange` non-empty.
  void Call(Target target, std::string payload, CallOptions options, CallDone done);
  void Cast(Target target, std::string payload, CastOptions options, StatusDone done);
  void Fanout(Target target, std::string payload, StatusDone done);
  // Fast path of an unacknowledged Cast / a Fanout: when the target is known to have a member
  // (from an earlier lookup) and fewer than max_queued_per_node such messages are still on their
  // way to a socket, queues the message and returns true at once (it then counts as sent: a
  // later failure is logged, not returned). Otherwise false, `payload` untouched: use Cast /
  // Fanout, which wait for the outcome. Any thread.
  bool TryQueueOneWay(const Target& target, bool fanout, std::string& payload);
  // `topic` is "<topic>.<priority>".
  void Notify(std::string exchange, std::string topic, std::string payload, StatusDone done);

  // Serves a registration: messages for it go to `sink` from now on (kept alive by the caller
  // until Withdraw's done ran). `done` gets the proxy's answer (UNAVAILABLE from the proxy,
  // meaning "held until the directory is back", is reported as OK).
  void Announce(::zmesh::directory::v1::Registration registration, Sink* sink, StatusDone done);
  // Stops delivering the registration to `sink` at once and tells the proxy; done runs once the
  // proxy confirmed, after 1 s without an answer (proxy gone), or at once when the engine is
  // closed. Afterwards the engine never touches `sink`.
  void Withdraw(::zmesh::directory::v1::Registration registration, Sink* sink, StatusDone done);

  // Sends an answer (REPLY, HEARTBEAT, ACK) to the local proxy on `pattern`'s data socket.
  // Ends the heartbeats of `heartbeat_token` (when non-zero) first. Any thread.
  void Answer(Pattern pattern, std::string route, ::zmesh::wire::v1::Header header,
              std::string payload, uint64_t heartbeat_token = 0);
  // While a monitored CALL runs: sends HEARTBEAT every interval_ms until Answer/EndHeartbeats
  // with the returned token. Any thread.
  uint64_t BeginHeartbeats(std::string route, const ::zmesh::wire::v1::Header& call,
                           int64_t interval_ms);
  void EndHeartbeats(uint64_t token);

  // Fails pending work with UNAVAILABLE, says goodbye, flushes (at most 1 s) and stops the I/O
  // thread. Idempotent.
  void Close();

  const std::string& instance_id() const { return instance_id_; }
  std::string node_name() const;
  std::vector<std::string> proxy_directory() const;
  int64_t max_payload_bytes() const { return max_payload_bytes_.load(); }
  bool closed() const { return closed_.load(); }
  TransportStats stats() const;
  void CountRequestHandled() { stats_.requests_handled.fetch_add(1); }
  void CountDelivered() { stats_.messages_delivered.fetch_add(1); }
  void CountDuplicate() { stats_.duplicates_dropped.fetch_add(1); }
  int64_t NowMs() const;
  // NowMs() + timeout_ms, rounded so that it is never before the caller's start + timeout_ms.
  int64_t DeadlineAfter(int64_t timeout_ms) const;
  // Runs `callback` on the callback thread (async forms of Transport).
  void RunCallback(absl::AnyInvocable<void() &&> callback);

 private:
  using Command = absl::AnyInvocable<void() &&>;
  using PairKey = std::pair<std::string, std::string>;  // (exchange, topic)

  enum class OpKind { kCall, kCast, kFanout, kNotify };
  enum class OpState { kWaiting, kBlocked, kInFlight, kLingering };

  // A message of this instance on its way: waiting for a lookup or a member, waiting for room
  // in a send queue, or sent and waiting for its answer.
  struct Op {
    OpKind kind = OpKind::kCall;
    OpState state = OpState::kWaiting;
    uint64_t id = 0;
    PairKey pair;
    std::string server;  // CALL/CAST: empty for the group
    std::shared_ptr<std::string> payload;
    int64_t deadline_ms = 0;
    int64_t call_monitor_timeout_ms = 0;
    bool at_least_once = false;
    bool acknowledged = false;
    int64_t ack_timeout_ms = 0;
    CallDone call_done;
    StatusDone status_done;
    // Selection and progress.
    Member chosen;
    std::set<MemberKey> refused;
    bool heard = false;            // a heartbeat or answer arrived
    int64_t monitor_due_ms = 0;    // call monitor: fail when no news by then (0: none)
    int64_t retry_ms = 0;          // resend at this time (0: none)
    int64_t linger_until_ms = 0;   // kLingering: forget at this time
    int64_t armed_ms = 0;          // due time of the timer armed for this op (0: none)
    std::vector<std::string> fanout_nodes;  // FANOUT: nodes still to send to
    std::map<std::string, std::set<MemberKey>> notify_refused;  // NOTIFY: by pool
    std::string pool;              // NOTIFY: pool of `chosen`
    bool per_pool = false;         // NOTIFY: one pool's copy (a parent op spawns them)
    bool answered = false;         // the caller's done ran (plain casts linger after it)
    uint64_t socket_id = 0;        // the peer socket it was last sent on (Peer::socket_ids)
  };

  struct PairState {
    bool resolved = false;
    bool query_in_flight = false;
    bool fresh_answer = false;  // the latest answer came from the directory, not a cache
    int64_t revision = 0;
    EndpointSet set;
    RoundRobin rr;
    std::deque<uint64_t> waiting;  // ops waiting for the answer or for a member
  };

  struct Peer {
    NodeAddress address;
    std::array<std::unique_ptr<zmq::socket_t>, kPatterns> sockets;
    // PAIR sockets reading each socket's zmq_socket_monitor events (connection up/down).
    std::array<std::unique_ptr<zmq::socket_t>, kPatterns> monitors;
    std::array<std::string, kPatterns> endpoints;
    std::array<std::deque<uint64_t>, kPatterns> blocked;  // ops waiting for room
    // False from a disconnect, a failed connect, or peer_connect_timeout_ms without a handshake
    // on a new socket, until the next handshake.
    std::array<bool, kPatterns> up{true, true, true, true};
    // Which socket this is (unique per engine, 0: none), and whether it ever completed a
    // handshake: what was sent on a socket that never did cannot have been delivered.
    std::array<uint64_t, kPatterns> socket_ids{};
    std::array<bool, kPatterns> ever_connected{};
  };

  struct RegEntry {
    ::zmesh::directory::v1::Registration registration;
    Sink* sink;  // owned by the Server/NotificationListener, alive until withdrawn
    StatusDone done;  // Announce's caller, until the proxy answered
  };

  struct Heartbeats {
    std::string route;
    ::zmesh::wire::v1::Header header;
    int64_t interval_ms = 0;
  };

  // Thread-safe counters.
  struct Stats {
    std::atomic<int64_t> calls_sent{0}, calls_retried{0}, casts_sent{0}, casts_retried{0},
        fanouts_sent{0}, notifications_sent{0}, requests_handled{0}, messages_delivered{0},
        duplicates_dropped{0}, lookups_from_proxy{0}, proxy_reconnects{0};
  };

  explicit Engine(TransportOptions options);
  absl::Status Open();

  // Any thread: queue a command for the I/O thread. False when the engine is closed (the
  // command was not queued).
  bool Post(Command& command);
  void PostOrRun(Command command);
  void Loop();
  void DrainCommands();
  void RebuildPollItems();

  // Control protocol.
  void SendControl(::zmesh::wire::v1::LocalRequest& request);
  uint64_t SendControlRequest(::zmesh::wire::v1::LocalRequest request,
                              absl::AnyInvocable<void(const ::zmesh::wire::v1::LocalResponse&) &&>
                                  on_answer);
  void OnControl(zmq::message_t& frame);
  void SayHello();
  void SendAttach();
  void OnAttached(int index);
  void OnReady();
  // Sends an Announce for the registration; its answer completes the `done` of the matching
  // RegEntry (if still pending).
  void SendAnnounce(const ::zmesh::directory::v1::Registration& registration, const Sink* sink);
  void PingTick();
  void AttachTick();
  void HeartbeatTick(uint64_t token);
  void SendLookup(const PairKey& key);
  void OnLookup(const ::zmesh::wire::v1::LookupResult& result, bool fresh, bool is_update);
  void RetryLookupLater(const PairKey& key);

  // Data in from the local proxy (servers) and from peers (answers).
  void OnLocalData(int index, std::vector<zmq::message_t>& frames);
  void RefuseLocal(Pattern pattern, const Incoming& message, ::zmesh::wire::v1::Status status,
                   const std::string& detail);
  void SendLocal(Pattern pattern, const std::string* route, const ::zmesh::wire::v1::Header& h,
                 zmq::message_t payload);
  void OnPeerData(Peer& peer, int index, std::vector<zmq::message_t>& frames);
  void OnCallAnswer(Op& op, const ::zmesh::wire::v1::Header& header, zmq::message_t& payload);
  void OnAck(Op& op, const ::zmesh::wire::v1::Header& header);

  // Ops.
  static Pattern PatternOfOp(OpKind kind);
  void Start(std::unique_ptr<Op> op);
  void Drive(Op& op);  // select and send, or wait
  // Sends op to one member. False when the op is blocked (queue full) or was completed.
  bool SendOp(Op& op, const std::string& node, const std::string& server, bool from_blocked);
  void ResendToNext(Op& op, bool count_retry);
  void Complete(Op& op, absl::StatusOr<CallResult> result);
  void ArmTimer(Op& op);
  void OnOpTimer(uint64_t id, int64_t due);
  void RetryBlocked(Peer& peer, int index);
  void SendFanout(Op& op, bool from_blocked);
  void RebuildSinks();
  // True while a sink's backlog is at kMaxSinkBacklog (local data reads paused).
  bool SinksFull() const;
  void Erase(uint64_t id);
  zmq::socket_t* PeerSocket(const NodeAddress& address, Pattern pattern, Peer** peer_out);
  void ResendLostCalls(const PairKey& key, PairState& pair);
  void OnMonitorEvent(Peer& peer, int index, std::vector<zmq::message_t>& frames);
  void OnPeerDown(Peer& peer, int index);
  // The socket `index` of `peer` never completed a handshake (peer_connect_timeout_ms passed, or
  // its connect failed): marks it down, closes it with everything queued in it and opens a new
  // one, then sends again what was queued: group messages to another member, messages to a
  // specific server to the new socket. Nothing on it can have been delivered, so no duplicates.
  void OnPeerUnreachable(Peer& peer, int index);
  void OnConnectTimer(const std::string& node, int index, uint64_t socket_id);
  // Members of the pair whose node's socket for `pattern` is down (group sends avoid them):
  // RPC servers, or for kNotify the listeners of `pool`.
  std::set<MemberKey> DownMembers(const PairState& pair, Pattern pattern,
                                  const std::string& pool = "") const;
  // `unconnected`: sent on a socket that has not completed a handshake yet (kept long enough
  // for OnPeerUnreachable to find it).
  void Linger(Op& op, bool unconnected = false);
  void FailAll(const absl::Status& status);
  void CloseOnIoThread();

  const TransportOptions options_;
  const std::string instance_id_;
  zmq::context_t context_;
  int event_fd_ = -1;
  std::thread io_thread_;
  std::atomic<bool> closed_{false};
  std::atomic<int64_t> max_payload_bytes_;
  std::atomic<uint64_t> next_message_id_{1};
  std::atomic<uint64_t> next_heartbeat_token_{1};
  Stats stats_;

  // Runs the callbacks of the async forms (one thread, in order); lives until destruction.
  WorkerPool callbacks_{1, "zmesh-cb"};

  // Targets a one-way message can be queued for without waiting (see TryQueueOneWay):
  // (exchange, topic, server) of every RPC server, (exchange, topic, "") when the group has a
  // member on a non-draining node, (exchange, topic, "\n") once the pair is resolved (fanout).
  // Written by the I/O thread on lookup answers. Lock order: mu_ and sendable_mu_ never nest.
  mutable absl::Mutex sendable_mu_;
  std::set<std::tuple<std::string, std::string, std::string>> sendable_
      ABSL_GUARDED_BY(sendable_mu_);
  std::atomic<int64_t> one_way_queued_{0};  // fast-path messages not yet on a socket
  // A receiver refused a message as OVERLOADED: no fast path before this time (ms), so senders
  // wait for each message again instead of outrunning the receiver.
  std::atomic<int64_t> fast_path_closed_until_ms_{0};

  mutable absl::Mutex mu_;  // guards the command queue and the startup outcome
  std::vector<Command> commands_ ABSL_GUARDED_BY(mu_);
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool started_ ABSL_GUARDED_BY(mu_) = false;  // welcomed and attached once
  std::string node_name_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> proxy_directory_ ABSL_GUARDED_BY(mu_);  // from the latest Welcome

  absl::Mutex close_mu_;  // serializes Close()

  // Owned by the I/O thread.
  std::unique_ptr<zmq::socket_t> control_;
  std::array<std::unique_ptr<zmq::socket_t>, kPatterns> data_;
  std::vector<zmq_pollitem_t> poll_items_;
  // What each poll item is: -1 eventfd, -2 control, 0..3 data socket, >= 100: peer socket
  // (100 + peer index * kPatterns + pattern), resolved through poll_peers_.
  std::vector<int> poll_kinds_;
  std::vector<Peer*> poll_peers_;
  bool poll_dirty_ = true;
  bool stop_ = false;
  TimerHeap timers_;
  uint64_t next_seq_ = 1;
  std::unordered_map<uint64_t,
                     absl::AnyInvocable<void(const ::zmesh::wire::v1::LocalResponse&) &&>>
      control_waiters_;
  uint64_t hello_seq_ = 0;
  bool welcomed_ = false;
  bool ready_ = false;  // welcomed and every data socket attached
  bool ever_ready_ = false;
  bool attach_timer_armed_ = false;
  std::array<bool, kPatterns> attached_{};
  std::string incarnation_;
  int64_t ping_interval_ms_ = 300;
  int64_t instance_timeout_ms_ = 1500;
  int64_t last_heard_ms_ = 0;
  bool silence_logged_ = false;
  std::unordered_map<uint64_t, std::unique_ptr<Op>> ops_;
  std::deque<uint64_t> lingering_;  // plain casts/notifications kept for resends, oldest first
  int64_t lingering_bytes_ = 0;
  std::map<PairKey, PairState> pairs_;
  std::unordered_map<uint64_t, PairKey> lookup_seqs_;
  std::map<std::string, std::unique_ptr<Peer>> peers_;
  int peers_down_ = 0;  // peer sockets with up == false
  uint64_t next_monitor_ = 0;
  uint64_t next_socket_id_ = 1;
  std::vector<std::unique_ptr<zmq::socket_t>> closed_sockets_;  // closed at the loop's top
  std::vector<RegEntry> registrations_;
  // (exchange, topic, server) -> sinks of RPC servers; (exchange, topic, name) -> listener.
  std::map<std::tuple<std::string, std::string, std::string>, std::vector<Sink*>> rpc_sinks_;
  std::map<std::tuple<std::string, std::string, std::string>, Sink*> listener_sinks_;
  std::map<std::tuple<std::string, std::string, std::string>, size_t> rpc_rr_;
  std::unordered_map<uint64_t, Heartbeats> heartbeats_;
};

}  // namespace zmesh::internal
