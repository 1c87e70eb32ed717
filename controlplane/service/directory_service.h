// gRPC handlers of zmesh.directory.v1.Directory, Leases and Cluster. Thin: validate, build a
// command and hand it to the LeaderRouter (writes), or pass the read barrier and read the store
// (reads), convert the status. Callback API: no handler blocks a gRPC thread on a commit.
#pragma once

#include <string>

#include "controlplane/raft/consensus.h"
#include "controlplane/service/leader_router.h"
#include "controlplane/service/lease_expirer.h"
#include "controlplane/service/watch_hub.h"
#include "controlplane/store/store.h"
#include "zmesh/directory/v1/cluster.grpc.pb.h"
#include "zmesh/directory/v1/directory.grpc.pb.h"
#include "zmesh/directory/v1/lease.grpc.pb.h"

namespace zmesh::service {

// What the handlers work on. Not owned; all outlive the services.
struct ServiceContext {
  store::Store& store;
  raft::Consensus& consensus;
  LeaderRouter& router;
  LeaseExpirer& expirer;
  WatchHub& hub;
  // Address clients reach this replica at.
  std::string grpc_address;
  // Most watch messages queued for one slow watcher before its stream is ended with
  // RESOURCE_EXHAUSTED (it resumes from its last revision).
  size_t max_watch_backlog = 10000;
};

class DirectoryService final : public directory::v1::Directory::CallbackService {
 public:
  explicit DirectoryService(ServiceContext& ctx) : ctx_(ctx) {}

  grpc::ServerUnaryReactor* RegisterNode(grpc::CallbackServerContext* context,
                                         const directory::v1::RegisterNodeRequest* request,
                                         directory::v1::RegisterNodeResponse* response) override;
  grpc::ServerUnaryReactor* DrainNode(grpc::CallbackServerContext* context,
                                      const directory::v1::DrainNodeRequest* request,
                                      directory::v1::DrainNodeResponse* response) override;
  grpc::ServerUnaryReactor* RemoveNode(grpc::CallbackServerContext* context,
                                       const directory::v1::RemoveNodeRequest* request,
                                       directory::v1::RemoveNodeResponse* response) override;
  grpc::ServerUnaryReactor* GetNode(grpc::CallbackServerContext* context,
                                    const directory::v1::GetNodeRequest* request,
                                    directory::v1::GetNodeResponse* response) override;
  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* context,
                                      const directory::v1::ListNodesRequest* request,
                                      directory::v1::ListNodesResponse* response) override;
  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* context,
                                     const directory::v1::RegisterRequest* request,
                                     directory::v1::RegisterResponse* response) override;
  grpc::ServerUnaryReactor* Unregister(grpc::CallbackServerContext* context,
                                       const directory::v1::UnregisterRequest* request,
                                       directory::v1::UnregisterResponse* response) override;
  grpc::ServerUnaryReactor* Lookup(grpc::CallbackServerContext* context,
                                   const directory::v1::LookupRequest* request,
                                   directory::v1::LookupResponse* response) override;
  grpc::ServerUnaryReactor* ListTopics(grpc::CallbackServerContext* context,
                                       const directory::v1::ListTopicsRequest* request,
                                       directory::v1::ListTopicsResponse* response) override;
  grpc::ServerWriteReactor<directory::v1::WatchResponse>* Watch(
      grpc::CallbackServerContext* context, const directory::v1::WatchRequest* request) override;

 private:
  ServiceContext& ctx_;
};

class LeaseService final : public directory::v1::Leases::CallbackService {
 public:
  explicit LeaseService(ServiceContext& ctx) : ctx_(ctx) {}

  grpc::ServerUnaryReactor* Grant(grpc::CallbackServerContext* context,
                                  const directory::v1::GrantRequest* request,
                                  directory::v1::GrantResponse* response) override;
  grpc::ServerUnaryReactor* Revoke(grpc::CallbackServerContext* context,
                                   const directory::v1::RevokeRequest* request,
                                   directory::v1::RevokeResponse* response) override;
  grpc::ServerBidiReactor<directory::v1::KeepAliveRequest, directory::v1::KeepAliveResponse>*
  KeepAlive(grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* TimeToLive(grpc::CallbackServerContext* context,
                                       const directory::v1::TimeToLiveRequest* request,
                                       directory::v1::TimeToLiveResponse* response) override;
  grpc::ServerUnaryReactor* ListLeases(grpc::CallbackServerContext* context,
                                       const directory::v1::ListLeasesRequest* request,
                                       directory::v1::ListLeasesResponse* response) override;

 private:
  ServiceContext& ctx_;
};

class ClusterService final : public directory::v1::Cluster::CallbackService {
 public:
  explicit ClusterService(ServiceContext& ctx) : ctx_(ctx) {}

  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* context,
                                   const directory::v1::StatusRequest* request,
                                   directory::v1::StatusResponse* response) override;
  grpc::ServerUnaryReactor* ListMembers(grpc::CallbackServerContext* context,
                                        const directory::v1::ListMembersRequest* request,
                                        directory::v1::ListMembersResponse* response) override;
  grpc::ServerUnaryReactor* AddMember(grpc::CallbackServerContext* context,
                                      const directory::v1::AddMemberRequest* request,
                                      directory::v1::AddMemberResponse* response) override;
  grpc::ServerUnaryReactor* RemoveMember(grpc::CallbackServerContext* context,
                                         const directory::v1::RemoveMemberRequest* request,
                                         directory::v1::RemoveMemberResponse* response) override;
  grpc::ServerUnaryReactor* TransferLeadership(
      grpc::CallbackServerContext* context, const directory::v1::TransferLeadershipRequest* request,
      directory::v1::TransferLeadershipResponse* response) override;

 private:
  ServiceContext& ctx_;
};

}  // namespace zmesh::service
