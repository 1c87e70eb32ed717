#include "cli/commands.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace zmesh::cli {

namespace dv1 = ::zmesh::directory::v1;

namespace {
constexpr absl::string_view kUsagePayload = "type.zmesh.dev/zmeshctl.UsageError";
}  // namespace

absl::Status UsageError(absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kUsagePayload, absl::Cord("1"));
  return status;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsagePayload).has_value();
}

absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

std::string KindName(dv1::Kind kind) {
  switch (kind) {
    case dv1::KIND_RPC_SERVER:
      return "rpc";
    case dv1::KIND_NOTIFY_LISTENER:
      return "notify";
    default:
      return "unspecified";
  }
}

std::string TargetName(const dv1::Registration& registration) {
  return absl::StrCat(OneLine(registration.exchange()), "/", OneLine(registration.topic()));
}

std::string DescribeRegistration(const dv1::Registration& registration) {
  std::string text = TargetName(registration);
  if (!registration.server().empty())
    absl::StrAppend(&text, " server=", OneLine(registration.server()));
  absl::StrAppend(&text, " kind=", KindName(registration.kind()));
  if (!registration.pool().empty()) absl::StrAppend(&text, " pool=", OneLine(registration.pool()));
  absl::StrAppend(&text, " node=", OneLine(registration.node()));
  return text;
}

std::string OrDash(absl::string_view text) { return text.empty() ? "-" : OneLine(text); }

std::string RoleName(dv1::Role role) {
  switch (role) {
    case dv1::ROLE_LEADER:
      return "leader";
    case dv1::ROLE_FOLLOWER:
      return "follower";
    case dv1::ROLE_CANDIDATE:
      return "candidate";
    case dv1::ROLE_UNAVAILABLE:
      return "unavailable";
    default:
      return "unspecified";
  }
}

std::string LeaseName(int64_t lease_id) { return lease_id == 0 ? "-" : absl::StrCat(lease_id); }

FlagSpec ExchangeFlag() {
  return StringFlag("exchange", "EXCHANGE", "Exchange (namespace) of the topic", "openstack");
}

}  // namespace zmesh::cli
