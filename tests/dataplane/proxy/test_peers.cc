#include "tests/dataplane/proxy/test_peers.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "dataplane/wire/envelope.h"
#include "dataplane/wire/sockets.h"

namespace zmesh::proxy::testing {

namespace v1 = ::zmesh::wire::v1;
namespace dv1 = ::zmesh::directory::v1;

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::optional<Frames> ReceiveWithin(zmq::socket_t& socket, int64_t timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  while (true) {
    std::optional<std::vector<zmq::message_t>> got = wire::ReceiveFrames(socket);
    if (got.has_value()) {
      Frames frames;
      for (zmq::message_t& f : *got) frames.push_back(f.to_string());
      return frames;
    }
    const int64_t left = deadline - NowMs();
    if (left <= 0) return std::nullopt;
    zmq_pollitem_t item = {socket.handle(), 0, ZMQ_POLLIN, 0};
    zmq_poll(&item, 1, static_cast<long>(left));
  }
}

absl::Status SendStrings(zmq::socket_t& socket, const Frames& frames) {
  std::vector<zmq::const_buffer> buffers;
  for (const std::string& f : frames) buffers.push_back(zmq::buffer(f));
  return wire::SendFrames(socket, buffers, /*dont_wait=*/false);
}

v1::Header MakeHeader(v1::Kind kind, uint64_t message_id, const std::string& topic,
                      const std::string& server, const std::string& exchange) {
  v1::Header h;
  h.set_version(v1::VERSION_1);
  h.set_kind(kind);
  h.set_message_id(message_id);
  h.set_sender("test-sender");
  h.mutable_target()->set_exchange(exchange);
  h.mutable_target()->set_topic(topic);
  h.mutable_target()->set_server(server);
  return h;
}

dv1::Registration RpcServer(const std::string& topic, const std::string& server,
                            const std::string& exchange) {
  dv1::Registration r;
  r.set_exchange(exchange);
  r.set_topic(topic);
  r.set_server(server);
  r.set_kind(dv1::KIND_RPC_SERVER);
  return r;
}

FakeInstance::FakeInstance(zmq::context_t& context, std::string ipc_dir, std::string id)
    : ipc_dir_(std::move(ipc_dir)),
      id_(id.empty() ? wire::NewInstanceId() : std::move(id)),
      control_(context, zmq::socket_type::dealer),
      data_{zmq::socket_t(context, zmq::socket_type::dealer),
            zmq::socket_t(context, zmq::socket_type::dealer),
            zmq::socket_t(context, zmq::socket_type::dealer),
            zmq::socket_t(context, zmq::socket_type::dealer)} {
  (void)wire::ConfigureSocket(control_, wire::SocketRole::kLocalPeer, 0, id_);
  control_.connect(*wire::IpcEndpoint(ipc_dir_, "control"));
}

absl::Status FakeInstance::Post(v1::LocalRequest request) {
  const std::string body = request.SerializeAsString();
  return wire::SendFrames(control_, {zmq::buffer(body)}, false);
}

absl::StatusOr<v1::LocalResponse> FakeInstance::Request(v1::LocalRequest request,
                                                        int64_t timeout_ms) {
  const uint64_t seq = next_seq_++;
  request.set_seq(seq);
  if (absl::Status st = Post(request); !st.ok()) return st;
  const int64_t deadline = NowMs() + timeout_ms;
  while (true) {
    std::optional<Frames> got = ReceiveWithin(control_, std::max<int64_t>(0, deadline - NowMs()));
    if (!got.has_value()) {
      return absl::DeadlineExceededError(absl::StrCat("no answer to request ", seq));
    }
    v1::LocalResponse response;
    if (got->size() != 1 || !response.ParseFromString((*got)[0])) {
      return absl::InternalError("a control answer that is not a LocalResponse");
    }
    if (response.seq() == seq) return response;
    if (response.seq() == 0) pushes_.push_back(std::move(response));
  }
}

absl::StatusOr<v1::LocalResponse> FakeInstance::Hello() {
  v1::LocalRequest request;
  request.mutable_hello()->set_instance_id(id_);
  request.mutable_hello()->set_pid(1);
  request.mutable_hello()->set_description("proxy test");
  return Request(std::move(request));
}

absl::StatusOr<v1::LocalResponse> FakeInstance::Ping() {
  v1::LocalRequest request;
  request.mutable_ping();
  return Request(std::move(request));
}

absl::StatusOr<v1::LocalResponse> FakeInstance::Announce(const dv1::Registration& r,
                                                         int64_t timeout_ms) {
  v1::LocalRequest request;
  *request.mutable_announce()->mutable_registration() = r;
  return Request(std::move(request), timeout_ms);
}

absl::StatusOr<v1::LocalResponse> FakeInstance::Withdraw(const dv1::Registration& r) {
  v1::LocalRequest request;
  *request.mutable_withdraw()->mutable_registration() = r;
  return Request(std::move(request));
}

absl::StatusOr<v1::LocalResponse> FakeInstance::Lookup(const std::string& topic, bool fresh,
                                                       const std::string& exchange) {
  v1::LocalRequest request;
  request.mutable_lookup()->set_exchange(exchange);
  request.mutable_lookup()->set_topic(topic);
  request.mutable_lookup()->set_fresh(fresh);
  return Request(std::move(request));
}

absl::Status FakeInstance::Attach(int64_t timeout_ms) {
  static const char* const kNames[] = {"call", "fanout", "notify", "cast"};
  for (int i = 0; i < 4; ++i) {
    if (absl::Status st = wire::ConfigureSocket(data_[i], wire::SocketRole::kLocalPeer, 0, id_);
        !st.ok()) {
      return st;
    }
    data_[i].connect(*wire::IpcEndpoint(ipc_dir_, kNames[i]));
    v1::Header attach;
    attach.set_kind(v1::KIND_ATTACH);
    attach.set_sender(id_);
    if (absl::Status st = SendStrings(data_[i], {wire::EncodeHeader(attach), ""}); !st.ok()) {
      return st;
    }
  }
  for (int i = 0; i < 4; ++i) {
    std::optional<Frames> got = ReceiveWithin(data_[i], timeout_ms);
    if (!got.has_value())
      return absl::DeadlineExceededError(absl::StrCat("no ATTACHED on ", kNames[i]));
    v1::Header h;
    if (got->size() != 2 || !h.ParseFromString((*got)[0]) || h.kind() != v1::KIND_ATTACHED) {
      return absl::InternalError(absl::StrCat("unexpected answer to ATTACH on ", kNames[i]));
    }
  }
  return absl::OkStatus();
}

std::optional<v1::LocalResponse> FakeInstance::NextPush(int64_t timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  while (pushes_.empty()) {
    std::optional<Frames> got = ReceiveWithin(control_, std::max<int64_t>(0, deadline - NowMs()));
    if (!got.has_value()) return std::nullopt;
    v1::LocalResponse response;
    if (got->size() == 1 && response.ParseFromString((*got)[0]) && response.seq() == 0) {
      pushes_.push_back(std::move(response));
    }
  }
  v1::LocalResponse next = std::move(pushes_.front());
  pushes_.pop_front();
  return next;
}

NetworkPeer::NetworkPeer(zmq::context_t& context, int port)
    : socket_(context, zmq::socket_type::dealer) {
  (void)wire::ConfigureSocket(socket_, wire::SocketRole::kNetworkPeer, 0);
  socket_.connect(absl::StrCat("tcp://127.0.0.1:", port));
}

absl::Status NetworkPeer::Send(const v1::Header& header, const std::string& payload) {
  return SendStrings(socket_, {header.SerializeAsString(), payload});
}

std::optional<std::pair<v1::Header, std::string>> NetworkPeer::Receive(int64_t timeout_ms) {
  std::optional<Frames> got = ReceiveWithin(socket_, timeout_ms);
  if (!got.has_value() || got->size() != 2) return std::nullopt;
  v1::Header h;
  if (!h.ParseFromString((*got)[0])) return std::nullopt;
  return std::make_pair(std::move(h), std::move((*got)[1]));
}

}  // namespace zmesh::proxy::testing
