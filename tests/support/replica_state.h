// ReplicaStateDump: the whole state one directory replica holds, read locally (stale reads),
// as one comparable text, for tests that check replicas converge.
#pragma once

#include <cstdint>
#include <string>

#include "zmesh/directory/v1/directory.grpc.pb.h"
#include "zmesh/directory/v1/lease.grpc.pb.h"

namespace zmesh::testing {

// Nodes, every topic's registrations (all pages), leases (without the remaining time, which
// only the leader tracks) and the revision. Each call gets `timeout_ms`. On an RPC failure the
// text says which call failed (so it never equals a real dump).
std::string ReplicaStateDump(directory::v1::Directory::Stub& directory,
                             directory::v1::Leases::Stub& leases, int64_t timeout_ms);

}  // namespace zmesh::testing
