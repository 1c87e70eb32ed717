#include "controlplane/raft/store_fsm.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "controlplane/raft/raft_api.h"

namespace zmesh::raft {
namespace {

constexpr char kSnapshotMagic[8] = {'Z', 'M', 'S', 'N', 'A', 'P', '0', '1'};

void PutU64(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t GetU64(const char* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(p[i]);
  return value;
}

void PadTo8(std::string& out) { out.resize((out.size() + 7) / 8 * 8, '\0'); }

}  // namespace

std::string EncodeEntry(const state::v1::Command& command) {
  std::string payload = command.SerializeAsString();
  std::string entry;
  entry.reserve(8 + payload.size() + 7);
  PutU64(entry, payload.size());
  entry += payload;
  PadTo8(entry);
  return entry;
}

absl::StatusOr<state::v1::Command> DecodeEntry(absl::string_view payload) {
  if (payload.size() < 8 || payload.size() % 8 != 0) {
    return absl::DataLossError(absl::StrCat("log entry of ", payload.size(), " bytes"));
  }
  const uint64_t length = GetU64(payload.data());
  if (length > payload.size() - 8) {
    return absl::DataLossError(
        absl::StrCat("log entry says ", length, " bytes, holds ", payload.size() - 8));
  }
  // Only padding may follow the command: a shorter length would silently parse a prefix of it
  // (a length of 0 parses as an empty command).
  const absl::string_view padding = payload.substr(8 + length);
  if (padding.size() >= 8 || padding.find_first_not_of('\0') != absl::string_view::npos) {
    return absl::DataLossError(absl::StrCat("log entry says ", length, " bytes, holds ",
                                            payload.size() - 8,
                                            ": only 0-7 zero bytes of padding may follow"));
  }
  state::v1::Command command;
  if (!command.ParseFromArray(payload.data() + 8, static_cast<int>(length))) {
    return absl::DataLossError("log entry is not a command");
  }
  return command;
}

StoreFsm::StoreFsm(store::Store& store) : store_(store), fsm_(new struct raft_fsm()) {
  std::memset(fsm_.get(), 0, sizeof(struct raft_fsm));
  fsm_->version = 1;
  fsm_->data = this;
  fsm_->apply = &StoreFsm::Apply;
  fsm_->snapshot = &StoreFsm::TakeSnapshot;
  fsm_->restore = &StoreFsm::Restore;
}

StoreFsm::~StoreFsm() = default;

struct raft_fsm* StoreFsm::fsm() {
  return fsm_.get();
}

int StoreFsm::Apply(struct raft_fsm* fsm, const struct raft_buffer* buf, void** result) {
  auto* self = static_cast<StoreFsm*>(fsm->data);
  *result = nullptr;  // outcomes travel through the hook, keyed by index
  // libraft sets last_applied after this returns: this entry is the next one.
  const uint64_t index = raft_last_applied(self->raft_) + 1;
  absl::StatusOr<state::v1::Command> command =
      DecodeEntry(absl::string_view(static_cast<const char*>(buf->base), buf->len));
  if (!command.ok()) {
    // Every replica would fail the same way: a broken invariant, not bad input.
    ZLOG_ERROR("entry %d: %s", index, std::string(command.status().message()));
    std::abort();
  }
  const auto started = std::chrono::steady_clock::now();
  absl::StatusOr<store::CommandResult> applied = self->store_.Apply(index, *command);
  self->apply_seconds_.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  if (!applied.ok()) {
    // The state machine cannot skip a committed command and stay in step with the others.
    ZLOG_ERROR("applying entry %d failed, stopping: %s", index,
               std::string(applied.status().message()));
    std::abort();
  }
  if (self->hook_) self->hook_(index, *command, *applied);
  return 0;
}

int StoreFsm::TakeSnapshot(struct raft_fsm* fsm, struct raft_buffer* bufs[], unsigned* n_bufs) {
  auto* self = static_cast<StoreFsm*>(fsm->data);
  absl::StatusOr<std::string> image = self->store_.Snapshot();
  if (!image.ok()) {
    ZLOG_ERROR("taking a snapshot failed: %s", std::string(image.status().message()));
    return RAFT_IOERR;
  }
  // The index the image covers: the Raft index being snapshotted, which may be past the last
  // command applied (barriers and configuration changes do not reach the store). A store
  // restored from a backup holds state before any command: its first snapshot must still
  // count as ahead of an empty store's 0, or a joiner would skip it.
  uint64_t index = self->store_.applied_index();
  if (self->raft_ != nullptr) index = std::max<uint64_t>(index, raft_last_applied(self->raft_));
  std::string data(kSnapshotMagic, sizeof(kSnapshotMagic));
  PutU64(data, index);
  PutU64(data, image->size());
  data += *image;
  PadTo8(data);
  auto* buffers = static_cast<struct raft_buffer*>(raft_malloc(sizeof(struct raft_buffer)));
  void* base = raft_malloc(data.size());
  if (buffers == nullptr || base == nullptr) {
    raft_free(buffers);
    raft_free(base);
    return RAFT_NOMEM;
  }
  std::memcpy(base, data.data(), data.size());
  buffers[0].base = base;
  buffers[0].len = data.size();
  *bufs = buffers;
  *n_bufs = 1;
  self->snapshots_taken_.fetch_add(1, std::memory_order_relaxed);
  ZLOG_INFO("snapshot taken at index %d (%d bytes)", index, data.size());
  return 0;
}

int StoreFsm::Restore(struct raft_fsm* fsm, struct raft_buffer* buf) {
  auto* self = static_cast<StoreFsm*>(fsm->data);
  const char* data = static_cast<const char*>(buf->base);
  if (buf->len < 24 || std::memcmp(data, kSnapshotMagic, sizeof(kSnapshotMagic)) != 0 ||
      GetU64(data + 16) > buf->len - 24) {
    ZLOG_ERROR("snapshot of %d bytes is not a zmesh snapshot", buf->len);
    return RAFT_CORRUPT;
  }
  const uint64_t snapshot_index = GetU64(data + 8);
  const uint64_t length = GetU64(data + 16);
  if (snapshot_index <= self->store_.applied_index()) {
    // A restart loads the last snapshot first; our store already holds everything in it (and
    // the committed entries after it, which are replayed and skipped by index).
    ZLOG_INFO("snapshot at store index %d already applied (store at %d)", snapshot_index,
              self->store_.applied_index());
  } else {
    absl::Status restored = self->store_.Restore(absl::string_view(data + 24, length));
    if (!restored.ok()) {
      ZLOG_ERROR("restoring snapshot failed: %s", std::string(restored.message()));
      return RAFT_CORRUPT;
    }
    self->snapshots_restored_.fetch_add(1, std::memory_order_relaxed);
    ZLOG_INFO("restored snapshot at store index %d", snapshot_index);
    if (self->restored_hook_) self->restored_hook_();
  }
  raft_free(buf->base);  // ours on success
  return 0;
}

}  // namespace zmesh::raft
