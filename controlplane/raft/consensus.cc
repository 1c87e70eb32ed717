#include "controlplane/raft/consensus.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace zmesh::raft {

namespace {
constexpr char kNotLeader[] = "not leader";
}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kLeader:
      return "leader";
    case Role::kFollower:
      return "follower";
    case Role::kCandidate:
      return "candidate";
    case Role::kUnavailable:
      return "unavailable";
  }
  return "unavailable";
}

bool IsNotLeader(const absl::Status& status) {
  return status.code() == absl::StatusCode::kFailedPrecondition &&
         absl::StartsWith(status.message(), kNotLeader);
}

absl::Status NotLeaderError(uint64_t leader_id) {
  if (leader_id == 0)
    return absl::FailedPreconditionError(absl::StrCat(kNotLeader, " (no leader)"));
  return absl::FailedPreconditionError(absl::StrCat(kNotLeader, " (leader is ", leader_id, ")"));
}

}  // namespace zmesh::raft
