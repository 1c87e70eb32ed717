#include "cli/signals.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <thread>
#include <utility>

#include "grpcpp/client_context.h"

namespace zmesh::cli {

namespace {

sigset_t StopSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

StopSignals& StopSignals::Get() {
  static StopSignals* signals = new StopSignals();  // never destroyed: the waiter thread uses it
  return *signals;
}

void StopSignals::Start() {
  sigset_t set = StopSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // Detached: it waits for the whole life of the process, which may end while it waits.
  std::thread([this] {
    sigset_t waited = StopSet();
    for (;;) {
      int signo = 0;
      if (sigwait(&waited, &signo) == 0) HandleSignal(signo);
    }
  }).detach();
}

void StopSignals::HandleSignal(int signo) {
  absl::MutexLock lock(&mu_);
  if (!graceful_ || stopped_) {
    _exit(128 + signo);
  }
  stopped_ = true;
  if (call_ != nullptr) call_->TryCancel();
  if (on_stop_) on_stop_();
}

void StopSignals::EnableGracefulStop() {
  absl::MutexLock lock(&mu_);
  graceful_ = true;
}

void StopSignals::SetCall(grpc::ClientContext* call) {
  absl::MutexLock lock(&mu_);
  call_ = call;
  if (stopped_ && call_ != nullptr) call_->TryCancel();
}

void StopSignals::SetOnStop(std::function<void()> on_stop) {
  absl::MutexLock lock(&mu_);
  on_stop_ = std::move(on_stop);
  if (stopped_ && on_stop_) on_stop_();
}

bool StopSignals::stopped() const {
  absl::MutexLock lock(&mu_);
  return stopped_;
}

bool StopSignals::WaitForStop(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&stopped_), timeout);
}

}  // namespace zmesh::cli
