#include "controlplane/service/leader_router.h"

#include <grpcpp/grpcpp.h>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/log.h"
#include "controlplane/service/lease_expirer.h"
#include "controlplane/service/status_conversion.h"
#include "controlplane/store/outcome.h"

namespace zmesh::service {
namespace {

namespace dir = ::zmesh::directory::v1;

// Pause between attempts while there is no leader (an election takes ~0.3 s).
constexpr int64_t kRetryPauseMs = 20;
// Longest a forwarded request may take when the client set no deadline.
constexpr int64_t kMaxForwardMs = 30000;
// Longest one forwarding attempt may take: a leader cut off from us drops packets silently, so
// an attempt must give up in time for the next one (to a newly elected leader) to fit.
constexpr int64_t kAttemptMs = 500;

int64_t AttemptDeadline(int64_t op_deadline_ms) {
  return std::min(op_deadline_ms, SystemClock::Get().NowMs() + kAttemptMs);
}

int64_t NowMs() { return SystemClock::Get().NowMs(); }

void SetDeadline(grpc::ClientContext& context, int64_t deadline_ms) {
  const int64_t remaining = std::max<int64_t>(1, deadline_ms - NowMs());
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(remaining));
}

// Issues one asynchronous unary call to a peer: `invoke(context, request, response, callback)`
// starts it (e.g. stub->async()->Propose); `on_done(status, response)` runs when it ends.
// Context, request and response live until then.
template <typename Response, typename Request, typename Invoke, typename OnDone>
void CallPeer(Invoke invoke, Request request, int64_t deadline_ms, OnDone on_done) {
  struct Call {
    grpc::ClientContext context;
    Request request;
    Response response;
  };
  auto call = std::make_shared<Call>();
  call->request = std::move(request);
  SetDeadline(call->context, deadline_ms);
  invoke(&call->context, &call->request, &call->response,
         [call, on_done = std::move(on_done)](const grpc::Status& status) mutable {
           on_done(FromGrpcStatus(status), call->response);
         });
}

}  // namespace

bool NotDelivered(const absl::Status& status) {
  // gRPC says so when it could not connect at all: nothing was sent.
  return status.code() == absl::StatusCode::kUnavailable &&
         (absl::StrContains(status.message(), "failed to connect") ||
          absl::StrContains(status.message(), "Connection refused") ||
          absl::StrContains(status.message(), "no leader") ||
          absl::StrContains(status.message(), "address of leader"));
}

LeaderRouter::LeaderRouter(raft::Consensus& consensus, store::Store& store, LeaseExpirer& expirer,
                           TimerQueue& timers, int64_t leader_wait_ms)
    : consensus_(consensus),
      store_(store),
      expirer_(expirer),
      timers_(timers),
      leader_wait_ms_(leader_wait_ms),
      request_nonce_(absl::Uniform<uint64_t>(absl::BitGen())) {}

int64_t LeaderRouter::DeadlineFor(std::chrono::system_clock::time_point grpc_deadline) const {
  const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
                             grpc_deadline - std::chrono::system_clock::now())
                             .count();
  return NowMs() + std::clamp<int64_t>(remaining, 0, kMaxForwardMs);
}

LeaderRouter::Channel* LeaderRouter::ChannelFor(const std::string& address) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Channel>& channel = channels_[address];
  if (channel == nullptr) {
    channel = std::make_unique<Channel>();
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
    // Notice a peer that vanished (partition, dead host) instead of queueing for it: the
    // server allows a ping every 5 s.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 2000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    channel->channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    channel->peer = peer::v1::Peer::NewStub(channel->channel);
    channel->cluster = dir::Cluster::NewStub(channel->channel);
  }
  return channel.get();
}

absl::StatusOr<LeaderRouter::Channel*> LeaderRouter::LeaderChannel() {
  const raft::ConsensusStatus status = consensus_.status();
  if (status.leader_id == 0) return absl::UnavailableError("no leader elected yet");
  std::string address;
  absl::StatusOr<std::vector<state::v1::SetMember>> members = store_.Members();
  if (!members.ok()) return members.status();
  for (const state::v1::SetMember& member : *members) {
    if (member.id() == status.leader_id) address = member.grpc_address();
  }
  if (address.empty()) {
    return absl::UnavailableError(
        absl::StrCat("address of leader ", status.leader_id, " not known yet"));
  }
  return ChannelFor(address);
}

std::string LeaderRouter::LeaderGrpcAddress() {
  const raft::ConsensusStatus status = consensus_.status();
  absl::StatusOr<std::vector<state::v1::SetMember>> members = store_.Members();
  if (!members.ok() || status.leader_id == 0) return "";
  for (const state::v1::SetMember& member : *members) {
    if (member.id() == status.leader_id) return member.grpc_address();
  }
  return "";
}

absl::StatusOr<std::shared_ptr<dir::Cluster::Stub>> LeaderRouter::LeaderClusterStub() {
  absl::StatusOr<Channel*> channel = LeaderChannel();
  if (!channel.ok()) return channel.status();
  return (*channel)->cluster;
}

namespace {

// One routed operation: tries, and tries again after a pause while no leader answers.
template <typename Result>
struct RoutedOp : std::enable_shared_from_this<RoutedOp<Result>> {
  using DoneFn = absl::AnyInvocable<void(Result) &&>;
  TimerQueue* timers;
  const std::atomic<bool>* stopping;
  int64_t deadline_ms;
  absl::AnyInvocable<void(std::shared_ptr<RoutedOp>)> attempt;
  DoneFn done;

  void Run() {
    if (stopping->load()) {
      Finish(absl::UnavailableError("directory replica is shutting down"));
      return;
    }
    attempt(this->shared_from_this());
  }
  void Finish(Result result) {
    if (done) std::move(done)(std::move(result));
  }
  // A retryable failure: try again after a pause, or give up with UNAVAILABLE.
  void RetryOrFail(const absl::Status& why) {
    if (!stopping->load() && NowMs() + kRetryPauseMs < deadline_ms) {
      timers->RunAfter(kRetryPauseMs, [self = this->shared_from_this()] { self->Run(); });
      return;
    }
    Finish(
        absl::UnavailableError(absl::StrCat("directory has no reachable leader: ", why.message())));
  }
};

template <typename Result>
std::shared_ptr<RoutedOp<Result>> MakeOp(TimerQueue& timers, const std::atomic<bool>& stopping,
                                         int64_t deadline_ms,
                                         absl::AnyInvocable<void(Result) &&> done) {
  auto op = std::make_shared<RoutedOp<Result>>();
  op->timers = &timers;
  op->stopping = &stopping;
  op->deadline_ms = deadline_ms;
  op->done = std::move(done);
  return op;
}

}  // namespace

void LeaderRouter::Propose(state::v1::Command command, int64_t deadline_ms,
                           raft::Consensus::Done done) {
  using Result = absl::StatusOr<store::CommandResult>;
  // With a request id the state machine applies the command at most once, so every attempt
  // whose fate is unknown (a leader died mid-write) can simply be sent again.
  if (command.request_id().empty()) {
    command.set_request_id(
        absl::StrCat(consensus_.status().id, "-", request_nonce_, "-", next_request_.fetch_add(1)));
  }
  auto op = MakeOp<Result>(timers_, stopping_, std::min(deadline_ms, NowMs() + leader_wait_ms_),
                           std::move(done));
  op->attempt = [this, command = std::move(command),
                 deadline_ms](std::shared_ptr<RoutedOp<Result>> op) {
    if (consensus_.status().role == raft::Role::kLeader) {
      consensus_.Propose(command, [op](Result result) {
        if (!result.ok() && (raft::IsNotLeader(result.status()) ||
                             result.status().code() == absl::StatusCode::kUnavailable)) {
          op->RetryOrFail(result.status());
          return;
        }
        op->Finish(std::move(result));
      });
      return;
    }
    absl::StatusOr<Channel*> channel = LeaderChannel();
    if (!channel.ok()) {
      op->RetryOrFail(channel.status());
      return;
    }
    peer::v1::ProposeRequest request;
    *request.mutable_command() = command;
    CallPeer<peer::v1::ProposeResponse>(
        [stub = (*channel)->peer.get()](auto... args) { stub->async()->Propose(args...); },
        std::move(request), AttemptDeadline(op->deadline_ms),
        [op](const absl::Status& st, const peer::v1::ProposeResponse& response) {
          if (st.ok()) {
            op->Finish(store::FromOutcome(response.outcome()));
          } else if (raft::IsNotLeader(st) || st.code() == absl::StatusCode::kUnavailable ||
                     st.code() == absl::StatusCode::kDeadlineExceeded) {
            op->RetryOrFail(st);  // safe: the request id suppresses a second application
          } else {
            op->Finish(
                absl::Status(st.code(), absl::StrCat("forwarding to the leader: ", st.message())));
          }
        });
  };
  op->Run();
}

void LeaderRouter::ConfirmedReadIndex(int64_t deadline_ms,
                                      absl::AnyInvocable<void(absl::StatusOr<uint64_t>) &&> done) {
  auto shared =
      std::make_shared<absl::AnyInvocable<void(absl::StatusOr<uint64_t>) &&>>(std::move(done));
  consensus_.LeaderReadIndex(
      [this, deadline_ms, shared](absl::StatusOr<raft::Consensus::ReadIndex> read) {
        if (!read.ok()) {
          std::move (*shared)(read.status());
          return;
        }
        if (read->confirmed) {
          std::move (*shared)(read->index);
          return;
        }
        // The index was taken before the round below starts: once a majority confirms this
        // leadership, nothing newer than that index can have been committed by another leader.
        const uint64_t index = read->index;
        Confirm(PendingConfirm{read->term, deadline_ms, [shared, index](absl::Status confirmed) {
                                 if (confirmed.ok()) {
                                   std::move (*shared)(index);
                                 } else {
                                   std::move (*shared)(confirmed);
                                 }
                               }});
      });
}

void LeaderRouter::Confirm(PendingConfirm pending) {
  bool start = false;
  {
    absl::MutexLock lock(&confirm_mu_);
    confirm_next_.push_back(std::move(pending));
    if (!confirm_in_flight_) {
      confirm_in_flight_ = true;
      start = true;
    }
  }
  if (start) StartConfirmRound();
}

namespace {

// One confirmation round: counts the followers that still follow us in `term`.
struct ConfirmRound {
  absl::Mutex mu;
  size_t needed = 0;   // votes for a majority, including our own
  size_t acks = 1;     // our own
  size_t pending = 0;  // followers not answered yet
  bool finished = false;
  absl::AnyInvocable<void(absl::Status) &&> finish;  // runs once
  // Records one follower's answer; returns true when the round is decided now.
  void Answer(bool confirmed) {
    absl::Status outcome;
    {
      absl::MutexLock lock(&mu);
      if (finished) return;
      --pending;
      if (confirmed) ++acks;
      if (acks >= needed) {
        outcome = absl::OkStatus();
      } else if (pending == 0 || acks + pending < needed) {
        outcome = absl::UnavailableError("leadership not confirmed by a majority");
      } else {
        return;
      }
      finished = true;
    }
    std::move(finish)(outcome);
  }
};

}  // namespace

void LeaderRouter::StartConfirmRound() {
  std::vector<PendingConfirm> waiters;
  {
    absl::MutexLock lock(&confirm_mu_);
    waiters.swap(confirm_next_);
  }
  // All waiters of a round share the term of the first; others (a leadership change between)
  // are answered UNAVAILABLE and retried by their callers.
  const uint64_t term = waiters.front().term;
  int64_t deadline_ms = 0;
  for (const PendingConfirm& w : waiters) deadline_ms = std::max(deadline_ms, w.deadline_ms);
  auto shared_waiters = std::make_shared<std::vector<PendingConfirm>>(std::move(waiters));
  auto round = std::make_shared<ConfirmRound>();
  round->finish = [this, shared_waiters, term](absl::Status status) {
    for (PendingConfirm& w : *shared_waiters) {
      std::move(w.done)(w.term == term ? status : absl::UnavailableError("leadership changed"));
    }
    ConfirmRoundDone();
  };

  const uint64_t self = consensus_.status().id;
  std::vector<std::pair<uint64_t, std::string>> followers;  // voter id -> gRPC address
  size_t voters = 0;
  absl::StatusOr<std::vector<state::v1::SetMember>> known = store_.Members();
  for (const raft::MemberInfo& member : consensus_.members()) {
    if (!member.voter) continue;
    ++voters;
    if (member.id == self) continue;
    std::string address;
    if (known.ok()) {
      for (const state::v1::SetMember& m : *known) {
        if (m.id() == member.id) address = m.grpc_address();
      }
    }
    followers.emplace_back(member.id, address);
  }
  round->needed = voters / 2 + 1;
  round->pending = followers.size();
  if (round->acks >= round->needed || followers.empty()) {
    round->finished = true;
    std::move(round->finish)(round->acks >= round->needed
                                 ? absl::OkStatus()
                                 : absl::UnavailableError("leadership not confirmed"));
    return;
  }
  const int64_t round_deadline = std::min(deadline_ms, NowMs() + 1000);
  for (const auto& [id, address] : followers) {
    if (address.empty()) {
      round->Answer(false);  // cannot ask a follower whose address we do not know yet
      continue;
    }
    peer::v1::ConfirmLeaderRequest request;
    request.set_term(term);
    request.set_leader_id(self);
    CallPeer<peer::v1::ConfirmLeaderResponse>(
        [stub = ChannelFor(address)->peer.get()](auto... args) {
          stub->async()->ConfirmLeader(args...);
        },
        std::move(request), round_deadline,
        [round](const absl::Status& st, const peer::v1::ConfirmLeaderResponse& response) {
          round->Answer(st.ok() && response.confirmed());
        });
  }
}

void LeaderRouter::ConfirmRoundDone() {
  bool again = false;
  {
    absl::MutexLock lock(&confirm_mu_);
    if (confirm_next_.empty()) {
      confirm_in_flight_ = false;
    } else {
      again = true;
    }
  }
  if (again) StartConfirmRound();
}

void LeaderRouter::ResolveLeader(
    int64_t deadline_ms,
    absl::AnyInvocable<void(absl::StatusOr<std::shared_ptr<dir::Cluster::Stub>>) &&> done) {
  using Result = absl::StatusOr<std::shared_ptr<dir::Cluster::Stub>>;
  auto op = MakeOp<Result>(timers_, stopping_, std::min(deadline_ms, NowMs() + leader_wait_ms_),
                           std::move(done));
  op->attempt = [this](std::shared_ptr<RoutedOp<Result>> op) {
    if (consensus_.status().role == raft::Role::kLeader) {
      op->Finish(std::shared_ptr<dir::Cluster::Stub>());
      return;
    }
    absl::StatusOr<Channel*> channel = LeaderChannel();
    if (!channel.ok()) {
      op->RetryOrFail(channel.status());
      return;
    }
    op->Finish((*channel)->cluster);
  };
  op->Run();
}

void LeaderRouter::ReadBarrier(dir::Consistency consistency, int64_t deadline_ms, StatusDone done) {
  if (consistency == dir::CONSISTENCY_STALE) {
    std::move(done)(absl::OkStatus());
    return;
  }
  auto op = MakeOp<absl::Status>(timers_, stopping_,
                                 std::min(deadline_ms, NowMs() + leader_wait_ms_), std::move(done));
  op->attempt = [this, deadline_ms](std::shared_ptr<RoutedOp<absl::Status>> op) {
    if (consensus_.status().role == raft::Role::kLeader) {
      ConfirmedReadIndex(deadline_ms, [this, op, deadline_ms](absl::StatusOr<uint64_t> index) {
        if (!index.ok()) {
          op->RetryOrFail(index.status());  // a read has no side effect: retry anything
          return;
        }
        consensus_.WaitApplied(*index, std::max<int64_t>(1, deadline_ms - NowMs()),
                               [op](absl::Status applied) { op->Finish(applied); });
      });
      return;
    }
    absl::StatusOr<Channel*> channel = LeaderChannel();
    if (!channel.ok()) {
      op->RetryOrFail(channel.status());
      return;
    }
    CallPeer<peer::v1::ReadIndexResponse>(
        [stub = (*channel)->peer.get()](auto... args) { stub->async()->ReadIndex(args...); },
        peer::v1::ReadIndexRequest(), AttemptDeadline(op->deadline_ms),
        [this, op, deadline_ms](const absl::Status& st,
                                const peer::v1::ReadIndexResponse& response) {
          if (!st.ok()) {
            op->RetryOrFail(st);  // a read has no side effect: any failure may be retried
            return;
          }
          consensus_.WaitApplied(response.index(), std::max<int64_t>(1, deadline_ms - NowMs()),
                                 [op](absl::Status applied) { op->Finish(applied); });
        });
  };
  op->Run();
}

void LeaderRouter::RenewLease(int64_t id, int64_t deadline_ms,
                              absl::AnyInvocable<void(absl::StatusOr<int64_t>) &&> done) {
  using Result = absl::StatusOr<int64_t>;
  auto op = MakeOp<Result>(timers_, stopping_, std::min(deadline_ms, NowMs() + leader_wait_ms_),
                           std::move(done));
  op->attempt = [this, id, deadline_ms](std::shared_ptr<RoutedOp<Result>> op) {
    if (consensus_.status().role == raft::Role::kLeader) {
      Result ttl = expirer_.Renew(id);
      if (!ttl.ok() && ttl.status().code() == absl::StatusCode::kUnavailable) {
        op->RetryOrFail(ttl.status());  // the new leader is still loading its leases
      } else {
        op->Finish(std::move(ttl));
      }
      return;
    }
    absl::StatusOr<Channel*> channel = LeaderChannel();
    if (!channel.ok()) {
      op->RetryOrFail(channel.status());
      return;
    }
    peer::v1::RenewLeaseRequest request;
    request.set_id(id);
    CallPeer<peer::v1::RenewLeaseResponse>(
        [stub = (*channel)->peer.get()](auto... args) { stub->async()->RenewLease(args...); },
        std::move(request), AttemptDeadline(op->deadline_ms),
        [op](const absl::Status& st, const peer::v1::RenewLeaseResponse& response) {
          if (st.ok()) {
            op->Finish(response.ttl_ms());
          } else if (st.code() == absl::StatusCode::kNotFound ||
                     st.code() == absl::StatusCode::kInvalidArgument) {
            op->Finish(st);
          } else {
            op->RetryOrFail(st);  // renewing twice is harmless
          }
        });
  };
  op->Run();
}

}  // namespace zmesh::service
