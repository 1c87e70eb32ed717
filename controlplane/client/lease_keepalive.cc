#include "controlplane/client/lease_keepalive.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/sync_stream.h"

namespace zmesh::client {

namespace dv1 = ::zmesh::directory::v1;

namespace {

// UNAVAILABLE answers in a row after which the stream moves to another replica: the one it is
// on may be cut off from the leader while another one is not.
constexpr int kUnavailableBeforeSwitch = 3;
// Upper bound of every wait of the thread, so that a missed wake-up costs at most this.
constexpr absl::Duration kMaxWait = absl::Seconds(1);

}  // namespace

absl::StatusOr<std::unique_ptr<LeaseKeepAlive>> LeaseKeepAlive::Start(
    DirectoryClient& client, LeaseKeepAliveOptions options) {
  for (auto [name, value] :
       {std::pair<const char*, int64_t>{"response timeout", options.response_timeout_ms},
        {"connect timeout", options.connect_timeout_ms},
        {"retry delay", options.retry_delay_ms},
        {"first reconnect delay", options.first_reconnect_delay_ms},
        {"max reconnect delay", options.max_reconnect_delay_ms}}) {
    if (value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("lease keepalive: ", name, " must be positive, got ", value, " ms"));
    }
  }
  std::unique_ptr<LeaseKeepAlive> keepalive(new LeaseKeepAlive(client, std::move(options)));
  absl::MutexLock lock(&keepalive->join_mu_);
  keepalive->thread_ = std::thread([k = keepalive.get()] { k->Run(); });
  return keepalive;
}

LeaseKeepAlive::LeaseKeepAlive(DirectoryClient& client, LeaseKeepAliveOptions options)
    : client_(client), options_(std::move(options)) {}

LeaseKeepAlive::~LeaseKeepAlive() { Stop(); }

absl::Status LeaseKeepAlive::Add(int64_t lease_id, int64_t ttl_ms) {
  if (lease_id <= 0 || ttl_ms <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lease keepalive: lease id and TTL must be positive, got ", lease_id, " and ", ttl_ms));
  }
  absl::MutexLock lock(&mu_);
  Lease& lease = leases_[lease_id];
  lease.ttl_ms = ttl_ms;
  lease.due = absl::Now();
  changed_.Signal();
  return absl::OkStatus();
}

void LeaseKeepAlive::Remove(int64_t lease_id) {
  absl::MutexLock lock(&mu_);
  leases_.erase(lease_id);
}

std::vector<int64_t> LeaseKeepAlive::leases() const {
  absl::MutexLock lock(&mu_);
  std::vector<int64_t> ids;
  for (const auto& [id, lease] : leases_) ids.push_back(id);
  return ids;
}

std::string LeaseKeepAlive::stream_address() const {
  absl::MutexLock lock(&mu_);
  return stream_address_;
}

int64_t LeaseKeepAlive::renewals() const {
  absl::MutexLock lock(&mu_);
  return renewals_;
}

void LeaseKeepAlive::Stop() {
  absl::MutexLock join_lock(&join_mu_);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
    changed_.Signal();
  }
  if (thread_.joinable()) thread_.join();
}

void LeaseKeepAlive::Run() {
  size_t index = client_.preferred_index();
  int64_t delay_ms = options_.first_reconnect_delay_ms;
  for (;;) {
    bool renewed = RunStream(index);
    DeliverLost();
    index = (index + 1) % client_.replica_count();
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    if (renewed) {
      delay_ms = options_.first_reconnect_delay_ms;
      continue;
    }
    // Nothing answered on that replica: pause before the next one, so that a cluster that is
    // entirely down is not hammered.
    const absl::Time until = absl::Now() + absl::Milliseconds(delay_ms);
    while (!stopping_ && absl::Now() < until) changed_.WaitWithDeadline(&mu_, until);
    if (stopping_) return;
    delay_ms = std::min(delay_ms * 2, options_.max_reconnect_delay_ms);
  }
}

bool LeaseKeepAlive::RunStream(size_t index) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
  }
  if (!client_.Connect(index, options_.connect_timeout_ms).ok()) return false;

  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<dv1::KeepAliveRequest, dv1::KeepAliveResponse>> stream =
      client_.leases_stub(index).KeepAlive(&context);
  {
    absl::MutexLock lock(&mu_);
    context_ = &context;
    if (stopping_) context.TryCancel();
    stream_address_ = client_.address(index);
    stream_broken_ = false;
    stream_renewed_ = false;
    unavailable_in_row_ = 0;
    in_flight_.clear();
    for (auto& [id, lease] : leases_) lease.in_flight = false;
  }
  // The answers are read on their own thread so that this one can time them out.
  std::thread reader([&] {
    dv1::KeepAliveResponse response;
    while (stream->Read(&response)) HandleResponse(response);
    absl::MutexLock lock(&mu_);
    stream_broken_ = true;
    changed_.Signal();
  });

  for (;;) {
    std::vector<int64_t> due;
    bool have_lost = false;
    {
      absl::MutexLock lock(&mu_);
      for (;;) {
        if (stopping_ || stream_broken_ || unavailable_in_row_ >= kUnavailableBeforeSwitch) break;
        const absl::Time now = absl::Now();
        absl::Time wake = now + kMaxWait;
        if (!in_flight_.empty()) {
          const absl::Time late =
              in_flight_.front().at + absl::Milliseconds(options_.response_timeout_ms);
          if (now >= late) break;
          wake = std::min(wake, late);
        }
        for (auto& [id, lease] : leases_) {
          if (lease.in_flight) continue;
          if (lease.due <= now) {
            lease.in_flight = true;
            in_flight_.push_back({id, now});
            due.push_back(id);
          } else {
            wake = std::min(wake, lease.due);
          }
        }
        have_lost = !lost_.empty();
        if (!due.empty() || have_lost) break;
        changed_.WaitWithDeadline(&mu_, wake);
      }
      if (due.empty() && !have_lost) break;  // the session ends (see the checks above)
    }
    if (have_lost) DeliverLost();
    bool written = true;
    for (int64_t id : due) {
      dv1::KeepAliveRequest request;
      request.set_id(id);
      if (!stream->Write(request)) {
        written = false;
        break;
      }
    }
    if (!written) break;
  }

  // Ends the stream whatever the reason: the reader returns once the call is cancelled.
  {
    absl::MutexLock lock(&mu_);
    context_ = nullptr;
  }
  context.TryCancel();
  reader.join();
  (void)stream->Finish();  // CANCELLED, by us; the reason was decided above

  absl::MutexLock lock(&mu_);
  stream_address_.clear();
  // Renewals that were not answered are sent again on the next stream, at once.
  for (const Sent& sent : in_flight_) {
    auto it = leases_.find(sent.lease_id);
    if (it != leases_.end()) it->second.due = absl::Now();
  }
  in_flight_.clear();
  for (auto& [id, lease] : leases_) lease.in_flight = false;
  return stream_renewed_;
}

void LeaseKeepAlive::HandleResponse(const dv1::KeepAliveResponse& response) {
  absl::MutexLock lock(&mu_);
  if (!in_flight_.empty()) in_flight_.pop_front();
  auto it = leases_.find(response.id());
  if (it == leases_.end()) return;  // removed while its renewal was in flight
  Lease& lease = it->second;
  lease.in_flight = false;
  const auto code = static_cast<absl::StatusCode>(response.code());
  const absl::Time now = absl::Now();
  if (code == absl::StatusCode::kOk && response.ttl_ms() > 0) {
    lease.ttl_ms = response.ttl_ms();
    lease.due = now + absl::Milliseconds(lease.ttl_ms) / 3;
    ++renewals_;
    unavailable_in_row_ = 0;
    stream_renewed_ = true;
  } else if (code == absl::StatusCode::kNotFound || code == absl::StatusCode::kInvalidArgument) {
    lost_.emplace_back(response.id(),
                       absl::Status(code, response.error().empty()
                                              ? absl::StrCat("lease ", response.id(), " not found")
                                              : response.error()));
    leases_.erase(it);
  } else {
    // No leader right now (or another answer that may change): keep renewing.
    lease.due = now + absl::Milliseconds(options_.retry_delay_ms);
    if (code == absl::StatusCode::kUnavailable) ++unavailable_in_row_;
  }
  changed_.Signal();
}

void LeaseKeepAlive::DeliverLost() {
  std::vector<std::pair<int64_t, absl::Status>> lost;
  {
    absl::MutexLock lock(&mu_);
    lost.swap(lost_);
  }
  if (!options_.on_lost) return;
  for (const auto& [id, reason] : lost) options_.on_lost(id, reason);
}

}  // namespace zmesh::client
