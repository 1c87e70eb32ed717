// Recorder: what the handlers of a client integration test saw, counted by key (e.g.
// "<server>:<payload>"). Thread-safe: handlers run on libzmesh's worker threads.
#pragma once

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace zmesh::testing {

class Recorder {
 public:
  void Add(const std::string& key) {
    absl::MutexLock lock(&mu_);
    ++counts_[key];
    ++total_;
  }
  int Count(const std::string& key) {
    absl::MutexLock lock(&mu_);
    auto it = counts_.find(key);
    return it == counts_.end() ? 0 : it->second;
  }
  int total() {
    absl::MutexLock lock(&mu_);
    return total_;
  }
  std::map<std::string, int> counts() {
    absl::MutexLock lock(&mu_);
    return counts_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, int> counts_ ABSL_GUARDED_BY(mu_);
  int total_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace zmesh::testing
