#include "controlplane/store/outcome.h"

#include <string>

namespace zmesh::store {

state::v1::CommandOutcome ToOutcome(const CommandResult& result) {
  state::v1::CommandOutcome outcome;
  outcome.set_code(static_cast<int32_t>(result.status.code()));
  outcome.set_message(std::string(result.status.message()));
  outcome.set_revision(result.revision);
  for (const dir::Event& event : result.events) *outcome.add_events() = event;
  outcome.set_lease_id(result.lease_id);
  *outcome.mutable_node() = result.node;
  *outcome.mutable_registration() = result.registration;
  outcome.set_created(result.created);
  for (int64_t id : result.leases_deleted) outcome.add_leases_deleted(id);
  for (const std::string& node : result.nodes_deleted) outcome.add_nodes_deleted(node);
  outcome.set_registrations_deleted(result.registrations_deleted);
  return outcome;
}

CommandResult FromOutcome(const state::v1::CommandOutcome& outcome) {
  CommandResult result;
  result.status = absl::Status(static_cast<absl::StatusCode>(outcome.code()), outcome.message());
  result.revision = outcome.revision();
  result.events.assign(outcome.events().begin(), outcome.events().end());
  result.lease_id = outcome.lease_id();
  result.node = outcome.node();
  result.registration = outcome.registration();
  result.created = outcome.created();
  result.leases_deleted.assign(outcome.leases_deleted().begin(), outcome.leases_deleted().end());
  result.nodes_deleted.assign(outcome.nodes_deleted().begin(), outcome.nodes_deleted().end());
  result.registrations_deleted = outcome.registrations_deleted();
  return result;
}

}  // namespace zmesh::store
