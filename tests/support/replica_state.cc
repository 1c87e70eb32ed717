#include "tests/support/replica_state.h"

#include <chrono>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"

namespace zmesh::testing {

namespace dir = ::zmesh::directory::v1;

std::string ReplicaStateDump(dir::Directory::Stub& directory, dir::Leases::Stub& leases,
                             int64_t timeout_ms) {
  auto context = [timeout_ms] {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
    return c;
  };
  dir::ReadOptions stale;
  stale.set_consistency(dir::CONSISTENCY_STALE);
  std::string dump;
  dir::ListNodesRequest nodes_request;
  *nodes_request.mutable_read() = stale;
  dir::ListNodesResponse nodes;
  grpc::Status status = directory.ListNodes(context().get(), nodes_request, &nodes);
  if (!status.ok()) return absl::StrCat("ListNodes failed: ", status.error_message());
  absl::StrAppend(&dump, "revision ", nodes.revision(), "\n");
  for (const dir::Node& node : nodes.nodes()) {
    absl::StrAppend(&dump, "node ", node.ShortDebugString(), "\n");
  }
  std::string page_token;
  do {
    dir::ListTopicsRequest topics_request;
    *topics_request.mutable_read() = stale;
    topics_request.set_page_size(1000);
    topics_request.set_page_token(page_token);
    dir::ListTopicsResponse topics;
    status = directory.ListTopics(context().get(), topics_request, &topics);
    if (!status.ok()) return absl::StrCat("ListTopics failed: ", status.error_message());
    for (const dir::TopicSummary& topic : topics.topics()) {
      dir::LookupRequest lookup_request;
      *lookup_request.mutable_read() = stale;
      lookup_request.set_exchange(topic.exchange());
      lookup_request.set_topic(topic.topic());
      dir::LookupResponse lookup;
      status = directory.Lookup(context().get(), lookup_request, &lookup);
      if (!status.ok()) return absl::StrCat("Lookup failed: ", status.error_message());
      for (const dir::Endpoint& endpoint : lookup.endpoints()) {
        absl::StrAppend(&dump, "registration ", endpoint.registration().ShortDebugString(), "\n");
      }
    }
    page_token = topics.next_page_token();
  } while (!page_token.empty());
  dir::ListLeasesRequest leases_request;
  *leases_request.mutable_read() = stale;
  dir::ListLeasesResponse lease_list;
  status = leases.ListLeases(context().get(), leases_request, &lease_list);
  if (!status.ok()) return absl::StrCat("ListLeases failed: ", status.error_message());
  for (dir::Lease lease : lease_list.leases()) {
    lease.clear_remaining_ms();
    absl::StrAppend(&dump, "lease ", lease.ShortDebugString(), "\n");
  }
  return dump;
}

}  // namespace zmesh::testing
