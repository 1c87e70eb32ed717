// StoreFsm: a Store as libraft's finite state machine, plus the log entry format.
//
// Entry format (docs/storage.md): an 8-byte little-endian payload length, the serialized
// state::v1::Command, zero padding to a multiple of 8 bytes. libraft needs every entry length
// to be a multiple of 8 (followers silently corrupt their state otherwise).
// Snapshot format: magic "ZMSNAP01", the store's applied index and the image length (8 bytes
// each, little-endian), the store image (Store::Snapshot), zero padding to a multiple of 8.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/metrics/histogram.h"
#include "controlplane/store/store.h"
#include "zmesh/state/v1/command.pb.h"

struct raft;
struct raft_buffer;
struct raft_fsm;

namespace zmesh::raft {

// Encodes a command as a log entry payload (length-prefixed, padded to 8 bytes).
std::string EncodeEntry(const state::v1::Command& command);
// Decodes an entry payload; DATA_LOSS when it is not one.
absl::StatusOr<state::v1::Command> DecodeEntry(absl::string_view payload);

// Not thread-safe: libraft calls it on its loop thread only.
class StoreFsm {
 public:
  // Called after each command is applied, with its log index (on the loop thread).
  using AppliedHook = std::function<void(uint64_t index, const state::v1::Command& command,
                                         const store::CommandResult& result)>;

  // `store` must outlive the fsm.
  explicit StoreFsm(store::Store& store);
  StoreFsm(const StoreFsm&) = delete;
  StoreFsm& operator=(const StoreFsm&) = delete;
  ~StoreFsm();

  // The libraft fsm; valid for the life of this object.
  struct raft_fsm* fsm();
  // The raft instance that drives this fsm (its last applied index numbers the commands).
  // Not owned; set before the raft instance starts.
  void set_raft(struct raft* raft) { raft_ = raft; }
  void set_applied_hook(AppliedHook hook) { hook_ = std::move(hook); }
  // Called after the store was replaced by a snapshot (state jumped without commands).
  void set_restored_hook(std::function<void()> hook) { restored_hook_ = std::move(hook); }

  // Statistics, readable from any thread.
  uint64_t snapshots_taken() const { return snapshots_taken_.load(std::memory_order_relaxed); }
  uint64_t snapshots_restored() const {
    return snapshots_restored_.load(std::memory_order_relaxed);
  }
  // Seconds spent applying each command to the store.
  const metrics::AtomicHistogram& apply_seconds() const { return apply_seconds_; }

 private:
  static int Apply(struct raft_fsm* fsm, const struct raft_buffer* buf, void** result);
  static int TakeSnapshot(struct raft_fsm* fsm, struct raft_buffer* bufs[], unsigned* n_bufs);
  static int Restore(struct raft_fsm* fsm, struct raft_buffer* buf);

  store::Store& store_;
  struct raft* raft_ = nullptr;
  AppliedHook hook_;
  std::function<void()> restored_hook_;
  std::unique_ptr<struct raft_fsm> fsm_;
  std::atomic<uint64_t> snapshots_taken_{0};
  std::atomic<uint64_t> snapshots_restored_{0};
  metrics::AtomicHistogram apply_seconds_;
};

}  // namespace zmesh::raft
