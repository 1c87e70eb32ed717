// ClusterTest: a gtest fixture with a real 3-replica zmesh-directory cluster, started (and its
// leader found) in SetUp, in the test's own temp dir. Header-only: tests link GTest already.
#pragma once

#include <cstdint>
#include <memory>

#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/subprocess.h"

namespace zmesh::testing {

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<ClusterProcess>> cluster = ClusterProcess::Start(dir_.path());
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    absl::StatusOr<uint64_t> leader = cluster_->WaitForLeader();
    ASSERT_TRUE(leader.ok()) << leader.status();
    leader_ = *leader;
  }

  TempDir dir_;
  std::unique_ptr<ClusterProcess> cluster_;
  uint64_t leader_ = 0;  // the leader found in SetUp
};

}  // namespace zmesh::testing
