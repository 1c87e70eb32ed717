// gRPC handlers of zmesh.peer.v1.Peer: what followers ask of the leader.
#pragma once

#include "controlplane/raft/consensus.h"
#include "controlplane/service/leader_router.h"
#include "controlplane/service/lease_expirer.h"
#include "controlplane/store/store.h"
#include "zmesh/peer/v1/peer.grpc.pb.h"

namespace zmesh::service {

class PeerService final : public peer::v1::Peer::CallbackService {
 public:
  // All references must outlive the service.
  PeerService(raft::Consensus& consensus, LeaderRouter& router, LeaseExpirer& expirer)
      : consensus_(consensus), router_(router), expirer_(expirer) {}

  grpc::ServerUnaryReactor* Propose(grpc::CallbackServerContext* context,
                                    const peer::v1::ProposeRequest* request,
                                    peer::v1::ProposeResponse* response) override;
  grpc::ServerUnaryReactor* ReadIndex(grpc::CallbackServerContext* context,
                                      const peer::v1::ReadIndexRequest* request,
                                      peer::v1::ReadIndexResponse* response) override;
  grpc::ServerUnaryReactor* RenewLease(grpc::CallbackServerContext* context,
                                       const peer::v1::RenewLeaseRequest* request,
                                       peer::v1::RenewLeaseResponse* response) override;
  grpc::ServerUnaryReactor* ConfirmLeader(grpc::CallbackServerContext* context,
                                          const peer::v1::ConfirmLeaderRequest* request,
                                          peer::v1::ConfirmLeaderResponse* response) override;

 private:
  raft::Consensus& consensus_;
  LeaderRouter& router_;
  LeaseExpirer& expirer_;
};

}  // namespace zmesh::service
