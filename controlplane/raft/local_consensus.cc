#include "controlplane/raft/local_consensus.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace zmesh::raft {

LocalConsensus::LocalConsensus(store::Store& store, LocalConsensusOptions options)
    : store_(store), options_(options) {}

LocalConsensus::~LocalConsensus() { Stop(); }

absl::Status LocalConsensus::Start() {
  absl::MutexLock lock(&mu_);
  if (running_ || stopping_) return absl::FailedPreconditionError("consensus already started");
  running_ = true;
  apply_thread_ = std::thread([this] { ApplyLoop(); });
  return absl::OkStatus();
}

void LocalConsensus::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (!running_) return;
    stopping_ = true;
  }
  if (apply_thread_.joinable()) apply_thread_.join();
  absl::MutexLock lock(&mu_);
  running_ = false;
}

void LocalConsensus::Propose(state::v1::Command command, Done done) {
  {
    absl::MutexLock lock(&mu_);
    if (running_ && !stopping_) {
      queue_.push_back(Proposal{std::move(command), std::move(done)});
      return;
    }
  }
  std::move(done)(absl::UnavailableError("directory is shutting down"));
}

ConsensusStatus LocalConsensus::status() const {
  ConsensusStatus status;
  status.id = options_.id;
  {
    absl::MutexLock lock(&mu_);
    status.role = running_ && !stopping_ ? Role::kLeader : Role::kUnavailable;
  }
  status.term = 1;
  status.leader_id = options_.id;
  status.applied_index = store_.applied_index();
  status.commit_index = status.applied_index;
  return status;
}

void LocalConsensus::AddObserver(ApplyObserver* observer) { observers_.push_back(observer); }

void LocalConsensus::ApplyLoop() {
  while (true) {
    std::vector<Proposal> batch;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](LocalConsensus* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->queue_.empty();
          },
          this));
      // Proposals queued before Stop() are still applied: they may already be promised.
      if (queue_.empty()) return;
      while (!queue_.empty() && batch.size() < options_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    std::vector<store::Store::Entry> entries;
    entries.reserve(batch.size());
    uint64_t index = store_.applied_index();
    for (const Proposal& proposal : batch) {
      entries.push_back(store::Store::Entry{++index, &proposal.command});
    }
    absl::StatusOr<std::vector<store::CommandResult>> results = store_.ApplyBatch(entries);
    if (!results.ok()) {
      // Nothing of the batch was applied; the state is as before. Fail these proposals and
      // keep serving: a full disk may clear.
      ZLOG_ERROR("applying %d commands failed: %s", static_cast<int>(batch.size()),
                 std::string(results.status().message()));
      for (Proposal& proposal : batch) {
        std::move(proposal.done)(
            absl::Status(results.status().code(),
                         absl::StrCat("storing the change failed: ", results.status().message())));
      }
      continue;
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      for (ApplyObserver* observer : observers_) {
        observer->OnApplied(batch[i].command, (*results)[i]);
      }
      std::move(batch[i].done)(std::move((*results)[i]));
    }
  }
}

}  // namespace zmesh::raft
