// DirectoryServer: one zmesh-directory replica assembled: store, consensus, lease timing, watch
// hub and the gRPC services (plus grpc.health.v1.Health and server reflection).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace zmesh::service {

struct DirectoryServerOptions {
  // Holds directory.db (SQLite, WAL) and a LOCK file; created if missing.
  std::string data_dir;
  // gRPC address; port 0 picks a free port (see address()).
  std::string listen = "127.0.0.1:9500";
  uint64_t id = 1;
  // Revisions of change history kept for watchers.
  int64_t history_revisions = 10000;
  // Largest request accepted; larger ones fail with RESOURCE_EXHAUSTED.
  int max_request_bytes = 1 << 20;
  // Messages queued for one slow watcher before its stream is ended.
  size_t max_watch_backlog = 10000;
};

// Thread-safe.
class DirectoryServer {
 public:
  // Opens the data dir (FAILED_PRECONDITION if another process holds it) and starts serving.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DirectoryServer>> Start(
      DirectoryServerOptions options);
  DirectoryServer(const DirectoryServer&) = delete;
  DirectoryServer& operator=(const DirectoryServer&) = delete;
  ~DirectoryServer();  // Shutdown()

  // The address actually listened on ("127.0.0.1:43121").
  const std::string& address() const;
  // Stops serving: open streams are cancelled, in-flight writes finish, state is closed.
  // Idempotent.
  void Shutdown();

 private:
  struct Impl;
  explicit DirectoryServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zmesh::service
