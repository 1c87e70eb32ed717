#include "controlplane/service/directory_service.h"

#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "controlplane/service/status_conversion.h"
#include "controlplane/service/validation.h"

namespace zmesh::service {
namespace {

namespace dir = ::zmesh::directory::v1;

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context,
                                    const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Proposes `command` through the leader; when it is applied, `fill(result)` writes the response
// and the RPC finishes. A rejected command finishes with the rejection.
template <typename Fill>
grpc::ServerUnaryReactor* ProposeAndFinish(grpc::CallbackServerContext* context,
                                           ServiceContext& ctx, state::v1::Command&& command,
                                           Fill fill) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  ctx.router.Propose(std::move(command), ctx.router.DeadlineFor(context->deadline()),
                     [reactor, fill = std::move(fill)](
                         const absl::StatusOr<store::CommandResult>& result) mutable {
                       if (!result.ok()) {
                         reactor->Finish(ToGrpcStatus(result.status()));
                       } else if (!result->status.ok()) {
                         reactor->Finish(ToGrpcStatus(result->status));
                       } else {
                         fill(*result);
                         reactor->Finish(grpc::Status::OK);
                       }
                     });
  return reactor;
}

// Serves a read once the consistency asked for is ensured (linearizable: after a barrier
// through the leader; stale: at once). `read` runs on whichever thread completes the barrier
// and must only use what it captured by value (and the request/response, alive until Finish).
template <typename Read>
grpc::ServerUnaryReactor* ServeRead(grpc::CallbackServerContext* context, ServiceContext& ctx,
                                    const dir::ReadOptions& options, Read read) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  ctx.router.ReadBarrier(options.consistency(), ctx.router.DeadlineFor(context->deadline()),
                         [reactor, read = std::move(read)](absl::Status ready) mutable {
                           reactor->Finish(ToGrpcStatus(ready.ok() ? read() : ready));
                         });
  return reactor;
}

// Copies a StatusOr's value into *out, or returns its status.
template <typename T>
absl::Status Assign(absl::StatusOr<T> value, T* out) {
  if (!value.ok()) return value.status();
  *out = *std::move(value);
  return absl::OkStatus();
}

// Streams a watch to one client. Deleted by gRPC's OnDone. Lock order: the hub's lock, then
// mu_ (Deliver is called under the hub's lock); the hub is never called with mu_ held.
class WatchReactor final : public grpc::ServerWriteReactor<dir::WatchResponse>, public WatchSink {
 public:
  WatchReactor(ServiceContext& ctx, const dir::WatchRequest& request, int64_t deadline_ms)
      : ctx_(ctx) {
    if (absl::Status st = Validate(request); !st.ok()) {
      FinishOnce(ToGrpcStatus(st));
      return;
    }
    if (request.start_revision() > ctx_.store.revision() + 1) {
      // A revision this replica has not reached: it may only be behind (the watcher resumes
      // here after another replica), so it first catches up with the leader, as for a
      // linearizable read. The hub answers a start still beyond the revision after that (the
      // revisions were rewound by a restore) with a snapshot. Without a leader it subscribes
      // all the same: a snapshot, then changes, is correct, only larger.
      {
        absl::MutexLock lock(&mu_);
        catching_up_ = true;
      }
      ctx_.router.ReadBarrier(dir::CONSISTENCY_LINEARIZABLE, deadline_ms,
                              [this, request](absl::Status /*caught_up*/) { Subscribe(request); });
      return;
    }
    Subscribe(request);
  }

  void Deliver(dir::WatchResponse response) override {
    absl::MutexLock lock(&mu_);
    if (finishing_) return;
    if (queue_.size() >= ctx_.max_watch_backlog) {
      queue_.clear();
      finishing_ = true;
      pending_finish_ = grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("watch fell behind by more than ", ctx_.max_watch_backlog,
                       " messages; resume with start_revision = last revision received + 1"));
      if (!writing_) FinishLocked();
      return;
    }
    queue_.push_back(std::move(response));
    if (!writing_) WriteNextLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    queue_.pop_front();
    if (!ok) {  // the client went away
      finishing_ = true;
      pending_finish_ = grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled");
    }
    if (finishing_) {
      FinishLocked();
      return;
    }
    if (!queue_.empty()) WriteNextLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    if (!pending_finish_) {
      pending_finish_ = grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled");
    }
    finishing_ = true;
    if (!writing_) FinishLocked();
  }

  void OnDone() override {
    uint64_t subscription;
    {
      absl::MutexLock lock(&mu_);
      if (catching_up_) {  // the barrier's callback still refers to this reactor: it deletes it
        done_ = true;
        return;
      }
      subscription = subscription_;
    }
    if (subscription != 0) ctx_.hub.Unsubscribe(subscription);  // no Deliver after this
    delete this;
  }

 private:
  void Subscribe(const dir::WatchRequest& request) {
    bool gone = false;
    {
      absl::MutexLock lock(&mu_);
      catching_up_ = false;
      if (done_) {
        gone = true;  // OnDone came while catching up and left the deletion to us
      } else if (finishing_) {
        return;  // cancelled while catching up; OnDone deletes
      }
    }
    if (gone) {
      delete this;
      return;
    }
    absl::StatusOr<uint64_t> id = ctx_.hub.Subscribe(request, this);
    if (!id.ok()) {
      FinishOnce(ToGrpcStatus(id.status()));
      return;
    }
    absl::MutexLock lock(&mu_);
    subscription_ = *id;
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = true;
    StartWrite(&queue_.front());
  }
  void FinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || !pending_finish_) return;
    finished_ = true;
    Finish(*pending_finish_);
  }
  void FinishOnce(grpc::Status status) {
    absl::MutexLock lock(&mu_);
    finishing_ = true;
    pending_finish_ = std::move(status);
    FinishLocked();
  }

  ServiceContext& ctx_;
  absl::Mutex mu_;
  uint64_t subscription_ ABSL_GUARDED_BY(mu_) = 0;
  bool catching_up_ ABSL_GUARDED_BY(mu_) = false;  // waiting for ReadBarrier before Subscribe
  bool done_ ABSL_GUARDED_BY(mu_) = false;         // OnDone ran while catching up
  std::deque<dir::WatchResponse> queue_ ABSL_GUARDED_BY(mu_);  // front is being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> pending_finish_ ABSL_GUARDED_BY(mu_);
};

// Renews leases, one response per request, in order, through the leader. Deleted by gRPC's
// OnDone.
class KeepAliveReactor final
    : public grpc::ServerBidiReactor<dir::KeepAliveRequest, dir::KeepAliveResponse> {
 public:
  // Each renewal may wait this long for a leader before answering UNAVAILABLE.
  static constexpr int64_t kRenewTimeoutMs = 3000;

  explicit KeepAliveReactor(LeaderRouter& router) : router_(router) { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client closed its side (or went away)
      Finish(grpc::Status::OK);
      return;
    }
    response_.Clear();
    response_.set_id(request_.id());
    if (absl::Status valid = ValidateLeaseId("id", request_.id()); !valid.ok()) {
      Answer(valid);
      return;
    }
    router_.RenewLease(request_.id(), SystemClock::Get().NowMs() + kRenewTimeoutMs,
                       [this](const absl::StatusOr<int64_t>& ttl) { Answer(ttl); });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "keepalive stream broken"));
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  void Answer(const absl::StatusOr<int64_t>& ttl) {
    if (ttl.ok()) {
      response_.set_ttl_ms(*ttl);
    } else {
      response_.set_code(static_cast<int32_t>(ttl.status().code()));
      response_.set_error(std::string(ttl.status().message()));
    }
    StartWrite(&response_);
  }

  LeaderRouter& router_;
  dir::KeepAliveRequest request_;
  dir::KeepAliveResponse response_;
};

dir::Role ToProtoRole(raft::Role role) {
  switch (role) {
    case raft::Role::kLeader:
      return dir::ROLE_LEADER;
    case raft::Role::kFollower:
      return dir::ROLE_FOLLOWER;
    case raft::Role::kCandidate:
      return dir::ROLE_CANDIDATE;
    case raft::Role::kUnavailable:
      return dir::ROLE_UNAVAILABLE;
  }
  return dir::ROLE_UNSPECIFIED;
}

}  // namespace

// ---- Directory ----

grpc::ServerUnaryReactor* DirectoryService::RegisterNode(grpc::CallbackServerContext* context,
                                                         const dir::RegisterNodeRequest* request,
                                                         dir::RegisterNodeResponse* response) {
  if (absl::Status st = Validate(*request); !st.ok()) return FinishNow(context, st);
  state::v1::Command command;
  *command.mutable_put_node()->mutable_node() = request->node();
  command.mutable_put_node()->set_lease_id(request->lease_id());
  return ProposeAndFinish(context, ctx_, std::move(command),
                          [response](const store::CommandResult& result) {
                            *response->mutable_node() = result.node;
                            response->set_revision(result.revision);
                          });
}

grpc::ServerUnaryReactor* DirectoryService::DrainNode(grpc::CallbackServerContext* context,
                                                      const dir::DrainNodeRequest* request,
                                                      dir::DrainNodeResponse* response) {
  if (absl::Status st = ValidateName("name", request->name()); !st.ok()) {
    return FinishNow(context, st);
  }
  state::v1::Command command;
  command.mutable_set_draining()->set_name(request->name());
  command.mutable_set_draining()->set_draining(request->draining());
  return ProposeAndFinish(context, ctx_, std::move(command),
                          [response](const store::CommandResult& result) {
                            *response->mutable_node() = result.node;
                            response->set_revision(result.revision);
                          });
}

grpc::ServerUnaryReactor* DirectoryService::RemoveNode(grpc::CallbackServerContext* context,
                                                       const dir::RemoveNodeRequest* request,
                                                       dir::RemoveNodeResponse* response) {
  if (absl::Status st = ValidateName("name", request->name()); !st.ok()) {
    return FinishNow(context, st);
  }
  state::v1::Command command;
  command.mutable_remove_node()->set_name(request->name());
  return ProposeAndFinish(context, ctx_, std::move(command),
                          [response](const store::CommandResult& result) {
                            response->set_revision(result.revision);
                            response->set_registrations_removed(result.registrations_deleted);
                          });
}

grpc::ServerUnaryReactor* DirectoryService::GetNode(grpc::CallbackServerContext* context,
                                                    const dir::GetNodeRequest* request,
                                                    dir::GetNodeResponse* response) {
  if (absl::Status st = ValidateName("name", request->name()); !st.ok()) {
    return FinishNow(context, st);
  }
  return ServeRead(context, ctx_, request->read(), [this, request, response] {
    return Assign(ctx_.store.GetNode(request->name()), response);
  });
}

grpc::ServerUnaryReactor* DirectoryService::ListNodes(grpc::CallbackServerContext* context,
                                                      const dir::ListNodesRequest* request,
                                                      dir::ListNodesResponse* response) {
  return ServeRead(context, ctx_, request->read(),
                   [this, response] { return Assign(ctx_.store.ListNodes(), response); });
}

grpc::ServerUnaryReactor* DirectoryService::Register(grpc::CallbackServerContext* context,
                                                     const dir::RegisterRequest* request,
                                                     dir::RegisterResponse* response) {
  if (absl::Status st = ValidateRegistration("registration", request->registration()); !st.ok()) {
    return FinishNow(context, st);
  }
  state::v1::Command command;
  *command.mutable_put_registration()->mutable_registration() = request->registration();
  return ProposeAndFinish(context, ctx_, std::move(command),
                          [response](const store::CommandResult& result) {
                            *response->mutable_registration() = result.registration;
                            response->set_revision(result.revision);
                            response->set_created(result.created);
                          });
}

grpc::ServerUnaryReactor* DirectoryService::Unregister(grpc::CallbackServerContext* context,
                                                       const dir::UnregisterRequest* request,
                                                       dir::UnregisterResponse* response) {
  if (absl::Status st = ValidateRegistration("registration", request->registration()); !st.ok()) {
    return FinishNow(context, st);
  }
  state::v1::Command command;
  *command.mutable_delete_registration()->mutable_registration() = request->registration();
  return ProposeAndFinish(
      context, ctx_, std::move(command),
      [response](const store::CommandResult& result) { response->set_revision(result.revision); });
}

grpc::ServerUnaryReactor* DirectoryService::Lookup(grpc::CallbackServerContext* context,
                                                   const dir::LookupRequest* request,
                                                   dir::LookupResponse* response) {
  if (absl::Status st = Validate(*request); !st.ok()) return FinishNow(context, st);
  return ServeRead(context, ctx_, request->read(), [this, request, response] {
    return Assign(ctx_.store.Lookup(*request), response);
  });
}

grpc::ServerUnaryReactor* DirectoryService::ListTopics(grpc::CallbackServerContext* context,
                                                       const dir::ListTopicsRequest* request,
                                                       dir::ListTopicsResponse* response) {
  if (absl::Status st = Validate(*request); !st.ok()) return FinishNow(context, st);
  dir::ListTopicsRequest paged = *request;
  if (paged.page_size() == 0) paged.set_page_size(kDefaultPageSize);
  return ServeRead(context, ctx_, request->read(), [this, paged, response] {
    return Assign(ctx_.store.ListTopics(paged), response);
  });
}

grpc::ServerWriteReactor<dir::WatchResponse>* DirectoryService::Watch(
    grpc::CallbackServerContext* context, const dir::WatchRequest* request) {
  return new WatchReactor(ctx_, *request, ctx_.router.DeadlineFor(context->deadline()));
}

// ---- Leases ----

grpc::ServerUnaryReactor* LeaseService::Grant(grpc::CallbackServerContext* context,
                                              const dir::GrantRequest* request,
                                              dir::GrantResponse* response) {
  if (absl::Status st = ValidateTtl("ttl_ms", request->ttl_ms()); !st.ok()) {
    return FinishNow(context, st);
  }
  state::v1::Command command;
  command.mutable_grant_lease()->set_ttl_ms(request->ttl_ms());
  const int64_t ttl_ms = request->ttl_ms();
  return ProposeAndFinish(context, ctx_, std::move(command),
                          [response, ttl_ms](const store::CommandResult& result) {
                            response->set_id(result.lease_id);
                            response->set_ttl_ms(ttl_ms);
                            response->set_revision(result.revision);
                          });
}

grpc::ServerUnaryReactor* LeaseService::Revoke(grpc::CallbackServerContext* context,
                                               const dir::RevokeRequest* request,
                                               dir::RevokeResponse* response) {
  if (absl::Status st = ValidateLeaseId("id", request->id()); !st.ok()) {
    return FinishNow(context, st);
  }
  state::v1::Command command;
  command.mutable_revoke_lease()->set_id(request->id());
  return ProposeAndFinish(context, ctx_, std::move(command),
                          [response](const store::CommandResult& result) {
                            response->set_revision(result.revision);
                            for (const std::string& node : result.nodes_deleted) {
                              response->add_nodes_deleted(node);
                            }
                          });
}

grpc::ServerBidiReactor<dir::KeepAliveRequest, dir::KeepAliveResponse>* LeaseService::KeepAlive(
    grpc::CallbackServerContext* /*context*/) {
  return new KeepAliveReactor(ctx_.router);
}

grpc::ServerUnaryReactor* LeaseService::TimeToLive(grpc::CallbackServerContext* context,
                                                   const dir::TimeToLiveRequest* request,
                                                   dir::TimeToLiveResponse* response) {
  if (absl::Status st = ValidateLeaseId("id", request->id()); !st.ok()) {
    return FinishNow(context, st);
  }
  return ServeRead(context, ctx_, request->read(), [this, request, response]() -> absl::Status {
    absl::StatusOr<dir::Lease> lease = ctx_.store.GetLease(request->id());
    if (!lease.ok()) return lease.status();
    lease->set_remaining_ms(ctx_.expirer.RemainingMs(lease->id()));
    *response->mutable_lease() = *std::move(lease);
    response->set_revision(ctx_.store.revision());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* LeaseService::ListLeases(grpc::CallbackServerContext* context,
                                                   const dir::ListLeasesRequest* request,
                                                   dir::ListLeasesResponse* response) {
  return ServeRead(context, ctx_, request->read(), [this, response]() -> absl::Status {
    if (absl::Status st = Assign(ctx_.store.ListLeases(), response); !st.ok()) return st;
    for (dir::Lease& lease : *response->mutable_leases()) {
      lease.set_remaining_ms(ctx_.expirer.RemainingMs(lease.id()));
    }
    return absl::OkStatus();
  });
}

// ---- Cluster ----

namespace {

// The configuration joined with the addresses members announced.
void FillMembers(ServiceContext& ctx, google::protobuf::RepeatedPtrField<dir::Member>* out) {
  const raft::ConsensusStatus status = ctx.consensus.status();
  absl::StatusOr<std::vector<state::v1::SetMember>> known = ctx.store.Members();
  for (const raft::MemberInfo& info : ctx.consensus.members()) {
    dir::Member* member = out->Add();
    member->set_id(info.id);
    member->set_raft_address(info.raft_address);
    member->set_voter(info.voter);
    member->set_role(info.id == status.leader_id ? dir::ROLE_LEADER : dir::ROLE_FOLLOWER);
    if (known.ok()) {
      for (const state::v1::SetMember& m : *known) {
        if (m.id() == info.id) member->set_grpc_address(m.grpc_address());
      }
    }
  }
}

// Runs `local` when this replica leads, else forwards `forward(stub, context, done)` to the
// leader's Cluster service and relays its answer. During an election it waits for a leader
// (up to --leader-wait-ms), like writes do.
template <typename Local, typename Forward>
grpc::ServerUnaryReactor* OnLeader(grpc::CallbackServerContext* context, ServiceContext& ctx,
                                   Local local, Forward forward) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const auto grpc_deadline = context->deadline();
  ctx.router.ResolveLeader(
      ctx.router.DeadlineFor(grpc_deadline),
      [reactor, grpc_deadline, local = std::move(local), forward = std::move(forward)](
          absl::StatusOr<std::shared_ptr<dir::Cluster::Stub>> stub) mutable {
        if (!stub.ok()) {
          reactor->Finish(ToGrpcStatus(absl::UnavailableError(
              absl::StrCat("cannot reach the leader: ", stub.status().message()))));
          return;
        }
        if (*stub == nullptr) {  // this replica leads
          local(reactor);
          return;
        }
        auto client_context = std::make_shared<grpc::ClientContext>();
        client_context->set_deadline(grpc_deadline);
        forward(**stub, client_context.get(),
                [reactor, client_context, keep = *stub](const grpc::Status& status) {
                  reactor->Finish(status);
                });
      });
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* ClusterService::Status(grpc::CallbackServerContext* context,
                                                 const dir::StatusRequest* /*request*/,
                                                 dir::StatusResponse* response) {
  absl::StatusOr<store::StoreStats> stats = ctx_.store.Stats();  // here, not on the Raft loop
  if (!stats.ok()) return FinishNow(context, stats.status());
  const std::string leader_address = ctx_.router.LeaderGrpcAddress();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // Role, term and leader as Raft has them now: right after a leadership change the sampled
  // status() could still call a former leader "leader".
  ctx_.consensus.CurrentLeadership([this, reactor, response, stats = *std::move(stats),
                                    leader_address](raft::ConsensusStatus now) {
    raft::ConsensusStatus consensus = ctx_.consensus.status();
    response->set_id(consensus.id);
    response->set_role(ToProtoRole(now.role));
    response->set_term(now.term);
    response->set_leader_id(now.leader_id);
    response->set_commit_index(consensus.commit_index);
    response->set_applied_index(consensus.applied_index);
    response->set_last_log_index(consensus.last_index);
    response->set_raft_address(consensus.address);
    response->set_leader_grpc_address(now.role == raft::Role::kLeader ? ctx_.grpc_address
                                                                      : leader_address);
    response->set_revision(stats.revision);
    response->set_compact_revision(stats.compact_revision);
    response->set_db_size_bytes(stats.db_size_bytes);
    response->set_version(ZMESH_VERSION);
    response->set_nodes(stats.nodes);
    response->set_registrations(stats.registrations);
    response->set_leases(stats.leases);
    response->set_watchers(static_cast<int64_t>(ctx_.hub.size()));
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* ClusterService::ListMembers(grpc::CallbackServerContext* context,
                                                      const dir::ListMembersRequest* /*request*/,
                                                      dir::ListMembersResponse* response) {
  FillMembers(ctx_, response->mutable_members());
  return FinishNow(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* ClusterService::AddMember(grpc::CallbackServerContext* context,
                                                    const dir::AddMemberRequest* request,
                                                    dir::AddMemberResponse* response) {
  if (request->id() == 0) {
    return FinishNow(context, absl::InvalidArgumentError("id: must be a positive integer"));
  }
  if (absl::Status st = ValidateName("raft_address", request->raft_address()); !st.ok()) {
    return FinishNow(context, st);
  }
  if (request->raft_address().find(':') == std::string::npos) {
    return FinishNow(context, absl::InvalidArgumentError("raft_address: expected HOST:PORT"));
  }
  return OnLeader(
      context, ctx_,
      [this, request, response](grpc::ServerUnaryReactor* reactor) {
        ctx_.consensus.AddMember(request->id(), request->raft_address(),
                                 [this, reactor, response](absl::Status status) {
                                   if (status.ok()) FillMembers(ctx_, response->mutable_members());
                                   reactor->Finish(ToGrpcStatus(status));
                                 });
      },
      [request, response](dir::Cluster::Stub& stub, grpc::ClientContext* client,
                          std::function<void(grpc::Status)> done) {
        stub.async()->AddMember(client, request, response, std::move(done));
      });
}

grpc::ServerUnaryReactor* ClusterService::RemoveMember(grpc::CallbackServerContext* context,
                                                       const dir::RemoveMemberRequest* request,
                                                       dir::RemoveMemberResponse* response) {
  if (request->id() == 0) {
    return FinishNow(context, absl::InvalidArgumentError("id: must be a positive integer"));
  }
  return OnLeader(
      context, ctx_,
      [this, context, request, response](grpc::ServerUnaryReactor* reactor) {
        const uint64_t id = request->id();
        const int64_t deadline = ctx_.router.DeadlineFor(context->deadline());
        ctx_.consensus.RemoveMember(
            id, [this, reactor, response, id, deadline](absl::Status status) {
              if (!status.ok()) {
                reactor->Finish(ToGrpcStatus(status));
                return;
              }
              // Forget its addresses too.
              state::v1::Command forget;
              forget.mutable_remove_member()->set_id(id);
              ctx_.router.Propose(
                  std::move(forget), deadline,
                  [this, reactor, response](const absl::StatusOr<store::CommandResult>& result) {
                    FillMembers(ctx_, response->mutable_members());
                    reactor->Finish(ToGrpcStatus(result.status()));
                  });
            });
      },
      [request, response](dir::Cluster::Stub& stub, grpc::ClientContext* client,
                          std::function<void(grpc::Status)> done) {
        stub.async()->RemoveMember(client, request, response, std::move(done));
      });
}

grpc::ServerUnaryReactor* ClusterService::TransferLeadership(
    grpc::CallbackServerContext* context, const dir::TransferLeadershipRequest* request,
    dir::TransferLeadershipResponse* response) {
  return OnLeader(
      context, ctx_,
      [this, request, response](grpc::ServerUnaryReactor* reactor) {
        ctx_.consensus.TransferLeadership(request->id(),
                                          [reactor, response](absl::StatusOr<uint64_t> leader) {
                                            if (leader.ok()) response->set_leader_id(*leader);
                                            reactor->Finish(ToGrpcStatus(leader.status()));
                                          });
      },
      [request, response](dir::Cluster::Stub& stub, grpc::ClientContext* client,
                          std::function<void(grpc::Status)> done) {
        stub.async()->TransferLeadership(client, request, response, std::move(done));
      });
}

}  // namespace zmesh::service
