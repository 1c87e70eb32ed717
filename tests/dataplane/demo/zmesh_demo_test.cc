// zmesh-demo against a real zmesh-directory: the walkthrough of scripts/demo doubles as a smoke
// test of the whole data plane (real proxies, libzmesh, every pattern).
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/directory_process.h"
#include "tests/support/subprocess.h"

namespace zmesh::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ZmeshDemoTest, EveryStepBehavesAndEverythingStops) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<DirectoryProcess>> directory =
      DirectoryProcess::Start(dir.path() + "/data");
  ASSERT_TRUE(directory.ok()) << directory.status();

  absl::StatusOr<CommandResult> demo =
      RunCommand({BinPath("zmesh-demo"), "--directory", (*directory)->address(), "--work-dir",
                  dir.path() + "/demo"},
                 120000);
  ASSERT_TRUE(demo.ok()) << demo.status();
  EXPECT_EQ(demo->exit_code, 0) << "stdout:\n" << demo->out << "\nstderr:\n" << demo->err;
  EXPECT_THAT(demo->out, Not(HasSubstr("[FAILED]")));
  EXPECT_THAT(demo->out, HasSubstr("checks passed"));
  // What a newcomer is told happened, pattern by pattern.
  EXPECT_THAT(demo->out, HasSubstr("answered by compute-a on node-a"));
  EXPECT_THAT(demo->out, HasSubstr("remote error: \"ZeroDivisionError"));
  EXPECT_THAT(demo->out, HasSubstr("compute-c on node-c got \"refresh your caches\""));
  EXPECT_THAT(demo->out, HasSubstr("pool audit: audit@node-c got"));

  // The demo's proxies are gone: their nodes leave the directory (withdrawn on SIGTERM, or at
  // the latest when their 3 s leases expire).
  std::string nodes;
  EXPECT_TRUE(Eventually(
      [&] {
        absl::StatusOr<CommandResult> list = RunCommand(
            {BinPath("zmeshctl"), "--directory", (*directory)->address(), "nodes", "list"});
        nodes = list.ok() ? list->out + list->err : "";
        return list.ok() && list->exit_code == 0 && !absl::StrContains(nodes, "node-");
      },
      15000))
      << nodes;
}

TEST(ZmeshDemoTest, MissingDirectoryFlagIsAnError) {
  absl::StatusOr<CommandResult> demo = RunCommand({BinPath("zmesh-demo")});
  ASSERT_TRUE(demo.ok()) << demo.status();
  EXPECT_EQ(demo->exit_code, 1);
  EXPECT_THAT(demo->err, HasSubstr("--directory is required"));
}

}  // namespace
}  // namespace zmesh::testing
