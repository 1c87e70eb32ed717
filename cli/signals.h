// SIGINT/SIGTERM handling for zmeshctl.
#pragma once

#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace grpc {
class ClientContext;
}  // namespace grpc

namespace zmesh::cli {

// Process-wide. Start() must be called first thing in main, before any thread exists (gRPC's
// included): it blocks SIGINT and SIGTERM in the calling thread, so that every thread created
// later inherits the mask and the signals reach only the thread that waits for them.
//
// By default a signal ends the process at once with exit code 128+signo. A command that wants
// a clean stop (watch) calls EnableGracefulStop(): a signal then marks the process stopped,
// cancels the registered gRPC call, runs the registered stop function and wakes WaitForStop();
// a second signal still exits at once.
// Thread-safe.
class StopSignals {
 public:
  static StopSignals& Get();

  void Start();
  void EnableGracefulStop();
  // Registers the call to cancel on a stop (nullptr clears it). The caller keeps the context
  // alive until it clears it. If the stop already happened the call is cancelled right away.
  void SetCall(grpc::ClientContext* call);
  // Registers a function to run on a stop (empty clears it), on the signal thread with the
  // internal lock held: it must return at once (e.g. cancel something) and not call back into
  // StopSignals. Runs right away if the stop already happened.
  void SetOnStop(std::function<void()> on_stop);
  bool stopped() const;
  // Waits until a stop or the timeout; true when stopped.
  bool WaitForStop(absl::Duration timeout);

 private:
  StopSignals() = default;
  void HandleSignal(int signo);

  mutable absl::Mutex mu_;
  bool graceful_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* call_ ABSL_GUARDED_BY(mu_) = nullptr;  // owned by the caller of SetCall
  std::function<void()> on_stop_ ABSL_GUARDED_BY(mu_);
};

}  // namespace zmesh::cli
