#include "dataplane/wire/envelope.h"

#include "absl/strings/str_cat.h"

namespace zmesh::wire {

namespace {

Decoded Refuse(Decoded d, v1::Status status, std::string detail) {
  d.status = status;
  d.detail = std::move(detail);
  return d;
}

}  // namespace

Decoded DecodeHeader(absl::string_view header_bytes, int64_t payload_bytes,
                     int64_t max_payload_bytes) {
  Decoded d;
  if (static_cast<int64_t>(header_bytes.size()) > kMaxHeaderBytes) {
    return Refuse(std::move(d), v1::STATUS_BAD_MESSAGE,
                  absl::StrCat("header of ", header_bytes.size(), " bytes is over the limit of ",
                               kMaxHeaderBytes));
  }
  if (!d.header.ParseFromArray(header_bytes.data(), static_cast<int>(header_bytes.size()))) {
    return Refuse(std::move(d), v1::STATUS_BAD_MESSAGE, "header is not a zmesh.wire.v1.Header");
  }
  d.header_readable = d.header.message_id() != 0 && v1::Kind_IsValid(d.header.kind()) &&
                      d.header.kind() != v1::KIND_UNSPECIFIED;
  if (d.header.version() != v1::VERSION_1) {
    return Refuse(std::move(d), v1::STATUS_BAD_MESSAGE,
                  absl::StrCat("unsupported envelope version ", d.header.version(),
                               " (this side speaks 1)"));
  }
  if (!v1::Kind_IsValid(d.header.kind()) || d.header.kind() == v1::KIND_UNSPECIFIED) {
    return Refuse(std::move(d), v1::STATUS_BAD_MESSAGE,
                  absl::StrCat("unknown message kind ", d.header.kind()));
  }
  const v1::Kind kind = d.header.kind();
  const bool addressed = kind == v1::KIND_CALL || kind == v1::KIND_CAST ||
                         kind == v1::KIND_FANOUT || kind == v1::KIND_NOTIFY;
  if (kind != v1::KIND_ATTACH && kind != v1::KIND_ATTACHED && d.header.message_id() == 0) {
    return Refuse(std::move(d), v1::STATUS_BAD_MESSAGE, "message_id must not be 0");
  }
  if (addressed) {
    const v1::Target& t = d.header.target();
    if (absl::Status st = ValidateName("target.exchange", t.exchange(), true); !st.ok()) {
      return Refuse(std::move(d), v1::STATUS_BAD_MESSAGE, std::string(st.message()));
    }
    if (absl::Status st = ValidateName("target.topic", t.topic(), true); !st.ok()) {
      return Refuse(std::move(d), v1::STATUS_BAD_MESSAGE, std::string(st.message()));
    }
    const bool server_required = kind != v1::KIND_FANOUT;
    if (absl::Status st = ValidateName("target.server", t.server(), server_required); !st.ok()) {
      return Refuse(std::move(d), v1::STATUS_BAD_MESSAGE, std::string(st.message()));
    }
    if (absl::Status st = ValidateName("target.pool", t.pool(), false); !st.ok()) {
      return Refuse(std::move(d), v1::STATUS_BAD_MESSAGE, std::string(st.message()));
    }
    if (absl::Status st = ValidateName("sender", d.header.sender(), false); !st.ok()) {
      return Refuse(std::move(d), v1::STATUS_BAD_MESSAGE, std::string(st.message()));
    }
  }
  if (payload_bytes > max_payload_bytes) {
    return Refuse(std::move(d), v1::STATUS_TOO_LARGE,
                  absl::StrCat("payload of ", payload_bytes, " bytes is over the limit of ",
                               max_payload_bytes));
  }
  return d;
}

std::string EncodeHeader(v1::Header header) {
  header.set_version(v1::VERSION_1);
  return header.SerializeAsString();
}

absl::Status ValidateName(absl::string_view field, absl::string_view value, bool required) {
  if (value.empty()) {
    if (required) return absl::InvalidArgumentError(absl::StrCat(field, ": must not be empty"));
    return absl::OkStatus();
  }
  if (value.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", value.size(),
                                                   " bytes is longer than the limit of ",
                                                   kMaxNameBytes));
  }
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": contains a control character (0x", absl::Hex(u), ")"));
    }
  }
  return absl::OkStatus();
}

absl::string_view KindName(v1::Kind kind) {
  switch (kind) {
    case v1::KIND_CALL: return "CALL";
    case v1::KIND_REPLY: return "REPLY";
    case v1::KIND_HEARTBEAT: return "HEARTBEAT";
    case v1::KIND_CAST: return "CAST";
    case v1::KIND_ACK: return "ACK";
    case v1::KIND_FANOUT: return "FANOUT";
    case v1::KIND_NOTIFY: return "NOTIFY";
    case v1::KIND_ATTACH: return "ATTACH";
    case v1::KIND_ATTACHED: return "ATTACHED";
    default: return "UNKNOWN";
  }
}

absl::string_view StatusName(v1::Status status) {
  switch (status) {
    case v1::STATUS_OK: return "OK";
    case v1::STATUS_REMOTE_ERROR: return "REMOTE_ERROR";
    case v1::STATUS_NO_SUCH_TARGET: return "NO_SUCH_TARGET";
    case v1::STATUS_BAD_MESSAGE: return "BAD_MESSAGE";
    case v1::STATUS_TOO_LARGE: return "TOO_LARGE";
    case v1::STATUS_OVERLOADED: return "OVERLOADED";
    case v1::STATUS_EXPIRED: return "EXPIRED";
    default: return "UNKNOWN";
  }
}

}  // namespace zmesh::wire
