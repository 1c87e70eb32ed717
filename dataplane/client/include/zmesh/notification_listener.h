// NotificationListener: receives the notifications sent to one or more (topic, priority) pairs,
// as a member of a pool. Every pool gets one copy of each notification; inside a pool, copies are
// shared round-robin among its listeners.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "zmesh/server.h"
#include "zmesh/transport.h"
#include "zmesh/types.h"

namespace zmesh {

// request.kind is MessageKind::kNotify; request.target.topic is "<topic>.<priority>".
using NotificationHandler = std::function<void(const Request& request)>;

struct ListenerOptions {
  // Pool name; empty is the default pool.
  std::string pool;
  // Worker threads running the handler (>= 1).
  int threads = 1;
};

// Thread-safe. Stop() (or destruction) withdraws every pair and waits for running handlers.
class NotificationListener {
 public:
  // Announces each pair (target.exchange/topic/priority) and returns once the directory has them
  // (or the proxy holds them, see Server::Start). INVALID_ARGUMENT for an empty list, topic or
  // priority. `transport` must outlive the listener.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<NotificationListener>> Start(
      Transport& transport, std::vector<NotifyTarget> targets, NotificationHandler handler,
      ListenerOptions options = {});

  NotificationListener(const NotificationListener&) = delete;
  NotificationListener& operator=(const NotificationListener&) = delete;
  ~NotificationListener();  // Stop()

  void Stop();

  class Impl;

 private:
  explicit NotificationListener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zmesh
