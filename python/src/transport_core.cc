#include "python/src/transport_core.h"

#include <unistd.h>

#include <utility>

#include "python/src/completion.h"
#include "python/src/gil.h"
#include "python/src/inbox.h"

namespace zmesh::python {

absl::StatusOr<std::shared_ptr<TransportCore>> TransportCore::Create(TransportOptions options) {
  absl::StatusOr<std::unique_ptr<Transport>> transport = Transport::Create(std::move(options));
  if (!transport.ok()) return transport.status();
  return std::shared_ptr<TransportCore>(new TransportCore(*std::move(transport)));
}

TransportCore::TransportCore(std::unique_ptr<Transport> transport)
    : transport_(std::move(transport)), pid_(::getpid()) {}

TransportCore::~TransportCore() {
  if (!SameProcess(pid_)) {
    (void)transport_.release();  // the parent's: its I/O thread does not exist here
    return;
  }
  // Inboxes hold a reference, so none is alive here. Close joins the I/O thread: quick, but not
  // under the GIL (it may be the last reference dropped by Python).
  ReleaseGilIfHeld release;
  transport_.reset();
}

absl::Status TransportCore::CheckUsable() const {
  if (SameProcess(pid_)) return absl::OkStatus();
  return absl::UnavailableError(
      "zmesh: this Transport was created in the parent process before fork(); create a new "
      "Transport in the child");
}

void TransportCore::AddInbox(const std::shared_ptr<Inbox>& inbox) {
  absl::MutexLock lock(&mu_);
  // Forget the dead ones now and then, so a long-lived transport does not grow a list.
  std::vector<std::weak_ptr<Inbox>> live;
  for (std::weak_ptr<Inbox>& weak : inboxes_) {
    if (!weak.expired()) live.push_back(std::move(weak));
  }
  live.push_back(inbox);
  inboxes_ = std::move(live);
}

void TransportCore::Close() {
  std::vector<std::weak_ptr<Inbox>> inboxes;
  {
    absl::MutexLock lock(&mu_);
    inboxes.swap(inboxes_);
  }
  for (std::weak_ptr<Inbox>& weak : inboxes) {
    if (std::shared_ptr<Inbox> inbox = weak.lock()) {
      inbox->Stop("zmesh: the server's transport was closed", /*abandon=*/true);
    }
  }
  transport_->Close();
}

}  // namespace zmesh::python
