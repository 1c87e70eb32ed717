// Conversions between a command's in-process result and its wire/disk form
// (state::v1::CommandOutcome): forwarded to the replica that asked, and remembered for
// duplicate suppression.
#pragma once

#include "controlplane/store/store.h"
#include "zmesh/state/v1/command.pb.h"

namespace zmesh::store {

state::v1::CommandOutcome ToOutcome(const CommandResult& result);
CommandResult FromOutcome(const state::v1::CommandOutcome& outcome);

}  // namespace zmesh::store
