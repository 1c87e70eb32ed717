#include "controlplane/service/validation.h"

#include "absl/strings/str_cat.h"

namespace zmesh::service {

namespace dir = ::zmesh::directory::v1;

absl::Status ValidateName(absl::string_view field, absl::string_view value, bool allow_empty) {
  if (value.empty()) {
    if (allow_empty) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(field, ": must not be empty"));
  }
  if (value.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", value.size(), " bytes is longer than the limit of ", kMaxNameBytes));
  }
  for (size_t i = 0; i < value.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(value[i]);
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": control character 0x",
                                                     absl::Hex(c, absl::kZeroPad2), " at byte ", i,
                                                     " (names may hold any printable character)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidatePort(absl::string_view field, uint32_t port) {
  if (port < 1 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", port, " is not a port (1-65535)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTtl(absl::string_view field, int64_t ttl_ms) {
  if (ttl_ms < kMinLeaseTtlMs || ttl_ms > kMaxLeaseTtlMs) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", ttl_ms,
                                                   " ms is outside the allowed range ",
                                                   kMinLeaseTtlMs, "-", kMaxLeaseTtlMs, " ms"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLeaseId(absl::string_view field, int64_t id) {
  if (id <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", id, " is not a lease id"));
  }
  return absl::OkStatus();
}

absl::Status Validate(const dir::RegisterNodeRequest& request) {
  const dir::Node& node = request.node();
  if (absl::Status st = ValidateName("node.name", node.name()); !st.ok()) return st;
  if (absl::Status st = ValidateName("node.host", node.host()); !st.ok()) return st;
  if (absl::Status st = ValidatePort("node.call_port", node.call_port()); !st.ok()) return st;
  if (absl::Status st = ValidatePort("node.fanout_port", node.fanout_port()); !st.ok()) return st;
  if (absl::Status st = ValidatePort("node.notify_port", node.notify_port()); !st.ok()) return st;
  if (absl::Status st = ValidatePort("node.cast_port", node.cast_port()); !st.ok()) return st;
  if (request.lease_id() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lease_id: ", request.lease_id(), " is not a lease id (0 for none)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateRegistration(absl::string_view field, const dir::Registration& reg) {
  if (absl::Status st = ValidateName(absl::StrCat(field, ".exchange"), reg.exchange()); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateName(absl::StrCat(field, ".topic"), reg.topic()); !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateName(absl::StrCat(field, ".server"), reg.server(), true);
      !st.ok()) {
    return st;
  }
  if (absl::Status st = ValidateName(absl::StrCat(field, ".node"), reg.node()); !st.ok()) {
    return st;
  }
  switch (reg.kind()) {
    case dir::KIND_RPC_SERVER:
      if (!reg.pool().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".pool: only notification listeners have a pool"));
      }
      if (reg.server().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".server: an RPC server needs a server name"));
      }
      break;
    case dir::KIND_NOTIFY_LISTENER:
      if (absl::Status st = ValidateName(absl::StrCat(field, ".pool"), reg.pool(), true);
          !st.ok()) {
        return st;
      }
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".kind: must be KIND_RPC_SERVER or KIND_NOTIFY_LISTENER"));
  }
  return absl::OkStatus();
}

absl::Status Validate(const dir::LookupRequest& request) {
  if (absl::Status st = ValidateName("exchange", request.exchange()); !st.ok()) return st;
  if (absl::Status st = ValidateName("topic", request.topic()); !st.ok()) return st;
  if (absl::Status st = ValidateName("server", request.server(), true); !st.ok()) return st;
  if (!dir::Kind_IsValid(request.kind())) {
    return absl::InvalidArgumentError(absl::StrCat("kind: unknown kind ", request.kind()));
  }
  return absl::OkStatus();
}

absl::Status Validate(const dir::ListTopicsRequest& request) {
  if (absl::Status st = ValidateName("exchange", request.exchange(), true); !st.ok()) return st;
  if (request.page_size() < 0 || request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: ", request.page_size(), " is outside 0-", kMaxPageSize));
  }
  return absl::OkStatus();
}

absl::Status Validate(const dir::WatchRequest& request) {
  if (absl::Status st = ValidateName("exchange", request.exchange(), true); !st.ok()) return st;
  if (absl::Status st = ValidateName("topic_prefix", request.topic_prefix(), true); !st.ok()) {
    return st;
  }
  if (request.start_revision() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("start_revision: ", request.start_revision(), " is negative"));
  }
  return absl::OkStatus();
}

}  // namespace zmesh::service
