#include "controlplane/raft/store_fsm.h"

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "controlplane/raft/raft_api.h"
#include "gtest/gtest.h"
#include "tests/controlplane/raft/store_test_util.h"
#include "tests/support/subprocess.h"

extern "C" {
#include <raft/fixture.h>
}

namespace zmesh::raft {
namespace {

using test::Dump;
using test::Grant;
using test::PutNode;
using test::Reg;
using test::Register;

std::string U64(uint64_t value) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  return out;
}

// A libraft-owned copy of `data`, as libraft hands buffers to the fsm.
struct raft_buffer RaftBuffer(const std::string& data) {
  struct raft_buffer buf;
  buf.len = data.size();
  buf.base = raft_malloc(data.size() == 0 ? 1 : data.size());
  std::memcpy(buf.base, data.data(), data.size());
  return buf;
}

class StoreFsmTest : public ::testing::Test {
 protected:
  std::unique_ptr<store::SqliteStore> Open(const std::string& name) {
    return test::OpenStore(dir_.path() + "/" + name);
  }

  static void MustApply(store::Store& store, const state::v1::Command& command) {
    absl::StatusOr<store::CommandResult> result = store.Apply(store.applied_index() + 1, command);
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_TRUE(result->status.ok()) << result->status;
  }

  // Takes a snapshot through the libraft callback; the returned buffer is libraft-owned.
  static struct raft_buffer TakeSnapshot(StoreFsm& fsm) {
    struct raft_buffer* bufs = nullptr;
    unsigned n_bufs = 0;
    const int rv = fsm.fsm()->snapshot(fsm.fsm(), &bufs, &n_bufs);
    EXPECT_EQ(rv, 0) << raft_strerror(rv);
    EXPECT_EQ(n_bufs, 1u);
    struct raft_buffer buf = {nullptr, 0};
    if (rv == 0 && n_bufs == 1) {
      buf = bufs[0];
      raft_free(bufs);
    }
    return buf;
  }

  testing::TempDir dir_;
};

TEST_F(StoreFsmTest, EntryRoundTripsEveryCommandKind) {
  std::vector<state::v1::Command> commands = {
      state::v1::Command(),        Grant(5000, "request-1"),
      PutNode("node-1", 3),        Register(Reg("compute", "host@backend", "node-1")),
      test::Drain("node-1", true), test::SetMember(2, "10.0.0.2:9510"),
  };
  state::v1::Command big = PutNode(std::string(100000, 'n'));
  commands.push_back(big);
  for (const state::v1::Command& command : commands) {
    const std::string entry = EncodeEntry(command);
    absl::StatusOr<state::v1::Command> decoded = DecodeEntry(entry);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->SerializeAsString(), command.SerializeAsString());
  }
}

TEST_F(StoreFsmTest, EveryEntryLengthIsAMultipleOfEightWithLittleEndianPrefix) {
  // Node names of 0..40 bytes cover every payload length modulo 8.
  for (size_t name_length = 0; name_length <= 40; ++name_length) {
    const state::v1::Command command = PutNode(std::string(name_length, 'x'));
    const std::string payload = command.SerializeAsString();
    const std::string entry = EncodeEntry(command);
    EXPECT_EQ(entry.size() % 8, 0u) << "payload of " << payload.size() << " bytes";
    EXPECT_GE(entry.size(), 8 + payload.size());
    EXPECT_LT(entry.size(), 8 + payload.size() + 8);
    EXPECT_EQ(entry.substr(0, 8), U64(payload.size()));
    EXPECT_EQ(entry.substr(8, payload.size()), payload);
    EXPECT_EQ(entry.substr(8 + payload.size()),
              std::string(entry.size() - 8 - payload.size(), '\0'));
  }
}

TEST_F(StoreFsmTest, MalformedEntriesAreDataLoss) {
  const std::string good = EncodeEntry(PutNode("node-1"));
  ASSERT_GT(good.size(), 16u);
  ASSERT_NE(PutNode("node-1").ByteSizeLong() % 8, 0u) << "the cases below need some padding";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},
      {"shorter than the prefix", std::string(7, '\0')},
      {"not 8-aligned", good + std::string(4, '\0')},
      {"truncated", good.substr(0, good.size() - 8)},
      {"prefix beyond the buffer", U64(good.size()) + good.substr(8)},
      {"prefix overflows", U64(~uint64_t{0}) + good.substr(8)},
      {"prefix shorter than the payload", U64(1) + good.substr(8)},
      {"prefix of zero before a payload", U64(0) + good.substr(8)},
      {"garbage protobuf", U64(8) + std::string(8, '\xff')},
      {"non-zero padding", good.substr(0, good.size() - 1) + "x"},
  };
  for (const auto& [what, payload] : cases) {
    absl::StatusOr<state::v1::Command> decoded = DecodeEntry(payload);
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss)
        << what << ": " << (decoded.ok() ? decoded->DebugString() : decoded.status().ToString());
  }
}

TEST_F(StoreFsmTest, SnapshotRestoresIntoAnotherReplicaThroughTheFsmCallbacks) {
  auto source = Open("source.db");
  auto target = Open("target.db");
  ASSERT_NE(source, nullptr);
  ASSERT_NE(target, nullptr);
  MustApply(*source, Grant(5000, "grant-1"));
  MustApply(*source, PutNode("node-1", 1));
  MustApply(*source, Register(Reg("compute", "c1", "node-1")));
  MustApply(*source, test::SetMember(1, "10.0.0.1:9510"));
  MustApply(*target, PutNode("stale-node"));  // replaced by the restore
  StoreFsm source_fsm(*source);
  StoreFsm target_fsm(*target);

  struct raft_buffer snapshot = TakeSnapshot(source_fsm);
  ASSERT_NE(snapshot.base, nullptr);
  EXPECT_EQ(source_fsm.snapshots_taken(), 1u);
  EXPECT_EQ(snapshot.len % 8, 0u);
  ASSERT_GE(snapshot.len, 24u);
  EXPECT_EQ(std::string(static_cast<const char*>(snapshot.base), 8), "ZMSNAP01");
  EXPECT_EQ(std::string(static_cast<const char*>(snapshot.base) + 8, 8),
            U64(source->applied_index()));

  // On success the fsm owns (and frees) the buffer.
  ASSERT_EQ(target_fsm.fsm()->restore(target_fsm.fsm(), &snapshot), 0);
  EXPECT_EQ(target_fsm.snapshots_restored(), 1u);
  EXPECT_EQ(target->applied_index(), source->applied_index());
  EXPECT_EQ(Dump(*target), Dump(*source));

  // The request ids travel with the snapshot: a retry is still recognized on the target.
  absl::StatusOr<store::CommandResult> retry =
      target->Apply(target->applied_index() + 1, Grant(5000, "grant-1"));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->lease_id, 1);
  EXPECT_EQ(target->revision(), source->revision());
}

TEST_F(StoreFsmTest, RestoringGarbageFailsAndKeepsTheState) {
  auto store = Open("a.db");
  ASSERT_NE(store, nullptr);
  MustApply(*store, Grant(5000));
  MustApply(*store, PutNode("node-1", 1));
  StoreFsm fsm(*store);
  const std::string before = Dump(*store);

  const std::string image_of_garbage = std::string(40, 'g');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},
      {"short", std::string(16, '\0')},
      {"wrong magic", "ZMSNAP99" + U64(100) + U64(0)},
      {"image beyond the buffer", "ZMSNAP01" + U64(100) + U64(1000) + std::string(8, '\0')},
      {"garbage image", "ZMSNAP01" + U64(100) + U64(image_of_garbage.size()) + image_of_garbage},
  };
  for (const auto& [what, data] : cases) {
    struct raft_buffer buf = RaftBuffer(data);
    const int rv = fsm.fsm()->restore(fsm.fsm(), &buf);
    EXPECT_NE(rv, 0) << what;
    if (rv != 0) raft_free(buf.base);  // still ours on failure
    EXPECT_EQ(Dump(*store), before) << what;
  }
  EXPECT_EQ(fsm.snapshots_restored(), 0u);
  EXPECT_EQ(store->applied_index(), 2u);
}

TEST_F(StoreFsmTest, RestoringASnapshotTheStoreAlreadyHoldsIsSkipped) {
  auto store = Open("a.db");
  ASSERT_NE(store, nullptr);
  MustApply(*store, Grant(5000));
  StoreFsm fsm(*store);
  struct raft_buffer older = TakeSnapshot(fsm);
  struct raft_buffer same = {nullptr, 0};
  ASSERT_NE(older.base, nullptr);
  MustApply(*store, PutNode("node-1", 1));
  MustApply(*store, PutNode("node-2"));
  same = TakeSnapshot(fsm);
  ASSERT_NE(same.base, nullptr);
  const std::string before = Dump(*store);

  // A restart loads the latest snapshot although the store already has it (and more).
  EXPECT_EQ(fsm.fsm()->restore(fsm.fsm(), &older), 0);
  EXPECT_EQ(fsm.fsm()->restore(fsm.fsm(), &same), 0);
  EXPECT_EQ(fsm.snapshots_restored(), 0u);
  EXPECT_EQ(store->applied_index(), 3u);
  EXPECT_EQ(Dump(*store), before);
}

// The fsm numbers each command with its Raft log index, so the store's applied index follows
// the log (configuration entries included) on a real, if in-memory, Raft instance.
TEST_F(StoreFsmTest, AppliedCommandsCarryTheirRaftIndex) {
  auto store = Open("a.db");
  ASSERT_NE(store, nullptr);
  StoreFsm fsm(*store);
  std::vector<uint64_t> hooked;
  fsm.set_applied_hook(
      [&](uint64_t index, const state::v1::Command&, const store::CommandResult& result) {
        EXPECT_TRUE(result.status.ok()) << result.status;
        hooked.push_back(index);
      });

  struct raft_fixture fixture = {};
  ASSERT_EQ(raft_fixture_initialize(&fixture), 0);
  ASSERT_EQ(raft_fixture_grow(&fixture, fsm.fsm()), 0);
  fsm.set_raft(raft_fixture_get(&fixture, 0));
  struct raft_configuration configuration;
  ASSERT_EQ(raft_fixture_configuration(&fixture, 1, &configuration), 0);
  const int bootstrapped = raft_fixture_bootstrap(&fixture, &configuration);
  raft_configuration_close(&configuration);
  ASSERT_EQ(bootstrapped, 0);
  ASSERT_EQ(raft_fixture_start(&fixture), 0);
  ASSERT_TRUE(raft_fixture_step_until_has_leader(&fixture, 10000));

  struct raft* raft = raft_fixture_get(&fixture, 0);
  std::vector<uint64_t> proposed;
  struct raft_apply requests[3];
  for (int i = 0; i < 3; ++i) {
    const std::string entry = EncodeEntry(Grant(1000 + i));
    struct raft_buffer buf = RaftBuffer(entry);
    ASSERT_EQ(raft_apply(raft, &requests[i], &buf, 1, nullptr), 0);
    proposed.push_back(raft_last_index(raft));
  }
  EXPECT_TRUE(raft_fixture_step_until_applied(&fixture, 0, proposed.back(), 10000));
  raft_fixture_close(&fixture);

  EXPECT_EQ(hooked, proposed);
  EXPECT_EQ(store->applied_index(), proposed.back());
  EXPECT_GT(proposed.front(), 1u);  // index 1 is the bootstrap configuration
  EXPECT_EQ(store->revision(), 3);
}

}  // namespace
}  // namespace zmesh::raft
