// LocalConsensus: a single replica without a log. Proposals are queued and applied to the store
// by one apply thread, in batches (one SQLite transaction per batch: group commit).
#pragma once

#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/raft/consensus.h"
#include "controlplane/store/store.h"

namespace zmesh::raft {

struct LocalConsensusOptions {
  uint64_t id = 1;
  // Most commands applied in one transaction.
  size_t max_batch = 256;
};

// Thread-safe.
class LocalConsensus final : public Consensus {
 public:
  // `store` must outlive this object.
  LocalConsensus(store::Store& store, LocalConsensusOptions options);
  LocalConsensus(const LocalConsensus&) = delete;
  LocalConsensus& operator=(const LocalConsensus&) = delete;
  ~LocalConsensus() override;

  absl::Status Start() override;
  void Stop() override;
  void Propose(state::v1::Command command, Done done) override;
  ConsensusStatus status() const override;
  void AddObserver(ApplyObserver* observer) override;

 private:
  struct Proposal {
    state::v1::Command command;
    Done done;
  };
  void ApplyLoop();

  store::Store& store_;
  const LocalConsensusOptions options_;
  std::vector<ApplyObserver*> observers_;  // fixed after Start()
  mutable absl::Mutex mu_;
  std::deque<Proposal> queue_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread apply_thread_;
};

}  // namespace zmesh::raft
