#include "controlplane/service/peer_service.h"

#include "controlplane/service/status_conversion.h"
#include "controlplane/store/outcome.h"

namespace zmesh::service {

grpc::ServerUnaryReactor* PeerService::Propose(grpc::CallbackServerContext* context,
                                               const peer::v1::ProposeRequest* request,
                                               peer::v1::ProposeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (request->command().op_case() == state::v1::Command::OP_NOT_SET) {
    reactor->Finish(ToGrpcStatus(absl::InvalidArgumentError("command: empty")));
    return reactor;
  }
  // Proposed here or refused: a forwarded command is never forwarded again.
  consensus_.Propose(request->command(),
                     [reactor, response](absl::StatusOr<store::CommandResult> result) {
                       if (!result.ok()) {
                         reactor->Finish(ToGrpcStatus(result.status()));
                         return;
                       }
                       *response->mutable_outcome() = store::ToOutcome(*result);
                       reactor->Finish(grpc::Status::OK);
                     });
  return reactor;
}

grpc::ServerUnaryReactor* PeerService::ReadIndex(grpc::CallbackServerContext* context,
                                                 const peer::v1::ReadIndexRequest* /*request*/,
                                                 peer::v1::ReadIndexResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  router_.ConfirmedReadIndex(router_.DeadlineFor(context->deadline()),
                             [reactor, response](absl::StatusOr<uint64_t> index) {
                               if (index.ok()) response->set_index(*index);
                               reactor->Finish(ToGrpcStatus(index.status()));
                             });
  return reactor;
}

grpc::ServerUnaryReactor* PeerService::ConfirmLeader(grpc::CallbackServerContext* context,
                                                     const peer::v1::ConfirmLeaderRequest* request,
                                                     peer::v1::ConfirmLeaderResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // Raft's own current view, not the sampled status(): the answer must hold when it is sent.
  consensus_.CurrentLeadership([reactor, request, response](raft::ConsensusStatus now) {
    response->set_term(now.term);
    response->set_confirmed(now.term == request->term() && now.leader_id == request->leader_id() &&
                            now.role == raft::Role::kFollower);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* PeerService::RenewLease(grpc::CallbackServerContext* context,
                                                  const peer::v1::RenewLeaseRequest* request,
                                                  peer::v1::RenewLeaseResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<int64_t> ttl =
      consensus_.status().role == raft::Role::kLeader
          ? expirer_.Renew(request->id())
          : absl::StatusOr<int64_t>(raft::NotLeaderError(consensus_.status().leader_id));
  if (ttl.ok()) response->set_ttl_ms(*ttl);
  reactor->Finish(ToGrpcStatus(ttl.status()));
  return reactor;
}

}  // namespace zmesh::service
