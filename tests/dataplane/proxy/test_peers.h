// Test peers of zmesh-proxy speaking docs/wire-protocol.md with raw ZeroMQ sockets: a local
// instance (control.sock + the four IPC data sockets) and a remote caller (a TCP DEALER).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dataplane/proxy/proxy_stats.h"
#include "zmesh/directory/v1/types.pb.h"
#include "zmesh/wire/v1/envelope.pb.h"
#include "zmesh/wire/v1/local.pb.h"

namespace zmesh::proxy::testing {

// A received multipart message, frames as strings.
using Frames = std::vector<std::string>;

// Receives one message within timeout_ms; nullopt when none came.
std::optional<Frames> ReceiveWithin(zmq::socket_t& socket, int64_t timeout_ms);
absl::Status SendStrings(zmq::socket_t& socket, const Frames& frames);

// A header for a request of `kind` to (exchange, topic, server).
wire::v1::Header MakeHeader(wire::v1::Kind kind, uint64_t message_id, const std::string& topic,
                            const std::string& server, const std::string& exchange = "openstack");
// An RPC server registration (node left empty: the proxy fills it in).
directory::v1::Registration RpcServer(const std::string& topic, const std::string& server,
                                      const std::string& exchange = "openstack");

// One local instance. Not thread-safe; use from the test's thread.
class FakeInstance {
 public:
  FakeInstance(zmq::context_t& context, std::string ipc_dir, std::string id = "");
  FakeInstance(const FakeInstance&) = delete;
  FakeInstance& operator=(const FakeInstance&) = delete;

  const std::string& id() const { return id_; }

  // Sends the request (seq assigned here) and waits for the answer with that seq; pushes
  // received meanwhile are kept in pushes(). DEADLINE_EXCEEDED without an answer.
  absl::StatusOr<wire::v1::LocalResponse> Request(wire::v1::LocalRequest request,
                                                  int64_t timeout_ms = 5000);
  // Sends without waiting for an answer (Goodbye, Unsubscribe).
  absl::Status Post(wire::v1::LocalRequest request);
  absl::StatusOr<wire::v1::LocalResponse> Hello();
  absl::StatusOr<wire::v1::LocalResponse> Ping();
  absl::StatusOr<wire::v1::LocalResponse> Announce(const directory::v1::Registration& r,
                                                   int64_t timeout_ms = 5000);
  absl::StatusOr<wire::v1::LocalResponse> Withdraw(const directory::v1::Registration& r);
  absl::StatusOr<wire::v1::LocalResponse> Lookup(const std::string& topic, bool fresh,
                                                 const std::string& exchange = "openstack");
  // Connects the four data sockets and waits for ATTACHED on each.
  absl::Status Attach(int64_t timeout_ms = 5000);
  // Waits for the next push (update) within timeout_ms.
  std::optional<wire::v1::LocalResponse> NextPush(int64_t timeout_ms);

  zmq::socket_t& data(Pattern pattern) { return data_[static_cast<int>(pattern)]; }
  zmq::socket_t& control() { return control_; }

 private:
  std::string ipc_dir_;
  std::string id_;
  zmq::socket_t control_;
  std::array<zmq::socket_t, 4> data_;
  uint64_t next_seq_ = 1;
  std::deque<wire::v1::LocalResponse> pushes_;
};

// A remote peer: one DEALER connected to a proxy's TCP port.
class NetworkPeer {
 public:
  NetworkPeer(zmq::context_t& context, int port);
  absl::Status Send(const wire::v1::Header& header, const std::string& payload);
  absl::Status SendRaw(const Frames& frames) { return SendStrings(socket_, frames); }
  // The next [header][payload] within timeout_ms, header decoded.
  std::optional<std::pair<wire::v1::Header, std::string>> Receive(int64_t timeout_ms);
  zmq::socket_t& socket() { return socket_; }

 private:
  zmq::socket_t socket_;
};

}  // namespace zmesh::proxy::testing
