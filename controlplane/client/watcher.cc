#include "controlplane/client/watcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/sync_stream.h"

namespace zmesh::client {

namespace dv1 = ::zmesh::directory::v1;

namespace {

// A watch never ends by itself: these ends mean the replica went away, restarted, or dropped a
// watcher that fell behind; the watch goes on elsewhere. Other codes are answers about the
// request itself.
bool Resumable(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
      return true;
    default:
      return false;
  }
}

int64_t EventRevision(const dv1::Event& event, const dv1::WatchResponse& response) {
  return event.revision() != 0 ? event.revision() : response.revision();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Watcher>> Watcher::Start(DirectoryClient& client,
                                                        WatcherOptions options) {
  if (!options.on_response) return absl::InvalidArgumentError("watcher: on_response is required");
  if (options.connect_timeout_ms <= 0 || options.first_retry_delay_ms <= 0 ||
      options.max_retry_delay_ms <= 0) {
    return absl::InvalidArgumentError("watcher: timeouts and delays must be positive");
  }
  std::unique_ptr<Watcher> watcher(new Watcher(client, std::move(options)));
  absl::MutexLock lock(&watcher->join_mu_);
  watcher->thread_ = std::thread([w = watcher.get()] { w->Run(); });
  return watcher;
}

Watcher::Watcher(DirectoryClient& client, WatcherOptions options)
    : client_(client), options_(std::move(options)), request_(options_.request) {}

Watcher::~Watcher() { Stop(); }

void Watcher::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

void Watcher::Stop() {
  Cancel();
  absl::MutexLock join_lock(&join_mu_);
  if (thread_.joinable()) thread_.join();
}

absl::Status Watcher::Wait() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&finished_));
  return result_;
}

int64_t Watcher::last_revision() const {
  absl::MutexLock lock(&mu_);
  return last_revision_;
}

std::string Watcher::stream_address() const {
  absl::MutexLock lock(&mu_);
  return stream_address_;
}

int64_t Watcher::duplicates_dropped() const {
  absl::MutexLock lock(&mu_);
  return duplicates_dropped_;
}

void Watcher::Run() {
  auto finish = [this](absl::Status result) {
    absl::MutexLock lock(&mu_);
    result_ = std::move(result);
    finished_ = true;
  };
  // Waits before the next attempt; false when cancelled meanwhile.
  auto pause = [this](int64_t delay_ms) {
    absl::MutexLock lock(&mu_);
    return !mu_.AwaitWithTimeout(absl::Condition(&cancelled_), absl::Milliseconds(delay_ms));
  };
  int64_t delay_ms = options_.first_retry_delay_ms;
  bool pinned = request_.start_revision() != 0 || request_.initial_snapshot();
  size_t index = client_.preferred_index();
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) break;
    }
    if (!pinned) {
      absl::StatusOr<dv1::StatusResponse> status = client_.Status({});
      if (!status.ok()) {
        if (!pause(delay_ms)) break;
        delay_ms = std::min(delay_ms * 2, options_.max_retry_delay_ms);
        continue;
      }
      request_.set_start_revision(status->revision() + 1);
      pinned = true;
      index = client_.preferred_index();  // the replica that answered
    }
    bool delivered = false;
    const std::string address = client_.address(index);
    absl::Status end = RunStream(index, &delivered);
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) break;
    }
    if (!Resumable(end)) {
      finish(end);
      return;
    }
    // A snapshot cut in the middle is asked for again, whole; otherwise resume right after the
    // last revision delivered.
    if (in_snapshot_) {
      request_.set_initial_snapshot(true);
      in_snapshot_ = false;
    } else if (int64_t last = last_revision(); last > 0) {
      request_.set_start_revision(last + 1);
      request_.set_initial_snapshot(false);
    }
    index = (index + 1) % client_.replica_count();
    if (options_.on_resume) {
      options_.on_resume({address, end, client_.address(index), request_.start_revision(),
                          request_.initial_snapshot()});
    }
    if (delivered) {
      delay_ms = options_.first_retry_delay_ms;
    } else {
      if (!pause(delay_ms)) break;
      delay_ms = std::min(delay_ms * 2, options_.max_retry_delay_ms);
    }
  }
  finish(absl::OkStatus());
}

absl::Status Watcher::RunStream(size_t index, bool* delivered) {
  if (absl::Status connected = client_.Connect(index, options_.connect_timeout_ms);
      !connected.ok()) {
    return connected;
  }
  grpc::ClientContext context;
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return absl::CancelledError("watch cancelled");
    context_ = &context;
    stream_address_ = client_.address(index);
  }
  std::unique_ptr<grpc::ClientReader<dv1::WatchResponse>> reader =
      client_.directory_stub(index).Watch(&context, request_);
  dv1::WatchResponse response;
  while (reader->Read(&response)) {
    *delivered = true;
    Deliver(response);
  }
  grpc::Status status = reader->Finish();
  {
    absl::MutexLock lock(&mu_);
    context_ = nullptr;
    stream_address_.clear();
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

void Watcher::Deliver(const dv1::WatchResponse& response) {
  if (response.snapshot()) {
    const bool begins = !in_snapshot_;
    in_snapshot_ = !response.snapshot_end();
    options_.on_response(response, begins);
    if (response.snapshot_end()) {
      // The snapshot replaces the view, whatever was delivered before it.
      absl::MutexLock lock(&mu_);
      last_revision_ = response.revision();
    }
    return;
  }
  in_snapshot_ = false;
  const int64_t last = last_revision();
  int64_t repeated = 0;
  for (const dv1::Event& event : response.events()) {
    if (EventRevision(event, response) <= last) ++repeated;
  }
  if (repeated == 0 && response.revision() > last) {
    options_.on_response(response, false);
  } else if (repeated < response.events_size() || response.revision() > last) {
    dv1::WatchResponse fresh = response;
    fresh.clear_events();
    for (const dv1::Event& event : response.events()) {
      if (EventRevision(event, response) > last) *fresh.add_events() = event;
    }
    options_.on_response(fresh, false);
  }
  absl::MutexLock lock(&mu_);
  duplicates_dropped_ += repeated;
  last_revision_ = std::max(last, response.revision());
}

}  // namespace zmesh::client
