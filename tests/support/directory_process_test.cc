// DirectoryProcess against a fake zmesh-directory (a shell script), so its start/stop contract is
// checked without the real daemon.
#include "tests/support/directory_process.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace zmesh::testing {
namespace {

// Understands the daemon's flags plus --mode: "ok" (ready after a short pause, exit 0 on SIGTERM),
constexpr char kFakeDirectory[] = R"(#!/bin/sh
mode=ok
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) data="$2"; shift ;;
    --listen) listen="$2"; shift ;;
    --ready-file) ready="$2"; shift ;;
    --mode) mode="$2"; shift ;;
  esac
  shift
done
echo "fake directory: data $data listen $listen mode $mode"
[ -d "$data" ] || { echo "no data dir" >&2; exit 3; }
[ -e "$ready" ] && { echo "stale ready file" >&2; exit 4; }
if [ "$mode" = crash ]; then echo "fatal: cannot open store" >&2; exit 2; fi
case "$mode" in
  dirty) trap 'echo "shutdown failed" >&2; exit 1' TERM ;;
  *) trap 'echo bye; exit 0' TERM ;;
esac
sleep 0.1
printf '127.0.0.1:%s\n' $$ > "$ready.tmp" && mv "$ready.tmp" "$ready"
while :; do sleep 0.02; done
)";

class DirectoryProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* saved = getenv("ZMESH_BIN_DIR");
    if (saved != nullptr) saved_bin_dir_ = saved;
    const std::string bin_dir = dir_.path() + "/bin";
    std::filesystem::create_directories(bin_dir);
    const std::string fake = bin_dir + "/zmesh-directory";
    std::ofstream(fake) << kFakeDirectory;
    ASSERT_EQ(chmod(fake.c_str(), 0755), 0);
    setenv("ZMESH_BIN_DIR", bin_dir.c_str(), 1);
  }
  void TearDown() override {
    if (saved_bin_dir_.empty()) {
      unsetenv("ZMESH_BIN_DIR");
    } else {
      setenv("ZMESH_BIN_DIR", saved_bin_dir_.c_str(), 1);
    }
  }

  TempDir dir_;
  std::string saved_bin_dir_;
};

TEST_F(DirectoryProcessTest, StartWaitsForTheReadyFileAndStopExitsCleanly) {
  const std::string data_dir = dir_.path() + "/data";  // does not exist yet
  absl::StatusOr<std::unique_ptr<DirectoryProcess>> directory = DirectoryProcess::Start(data_dir);
  ASSERT_TRUE(directory.ok()) << directory.status();
  EXPECT_TRUE((*directory)->running());
  EXPECT_EQ((*directory)->address(), "127.0.0.1:" + std::to_string((*directory)->process().pid()));
  EXPECT_EQ((*directory)->data_dir(), data_dir);
  EXPECT_TRUE(std::filesystem::is_directory(data_dir));

  ASSERT_TRUE((*directory)->Stop().ok());
  EXPECT_FALSE((*directory)->running());
  EXPECT_TRUE(absl::StrContains(ReadFile((*directory)->log_path()).value_or(""), "bye"));
  EXPECT_TRUE(absl::IsFailedPrecondition((*directory)->Stop()));
}

TEST_F(DirectoryProcessTest, RestartUsesTheSameDataDirAndANewLog) {
  absl::StatusOr<std::unique_ptr<DirectoryProcess>> directory =
      DirectoryProcess::Start(dir_.path() + "/data");
  ASSERT_TRUE(directory.ok()) << directory.status();
  const std::string first_log = (*directory)->log_path();
  const std::string first_address = (*directory)->address();

  (*directory)->Kill();
  EXPECT_FALSE((*directory)->running());
  // The stale ready file is removed before the relaunch (the fake refuses to start otherwise).
  ASSERT_TRUE((*directory)->Restart().ok());
  EXPECT_TRUE((*directory)->running());
  EXPECT_NE((*directory)->address(), first_address);
  EXPECT_NE((*directory)->log_path(), first_log);
  EXPECT_TRUE(std::filesystem::exists(first_log));

  // Restart of a running daemon stops it first.
  ASSERT_TRUE((*directory)->Restart().ok());
  EXPECT_TRUE((*directory)->running());
}

TEST_F(DirectoryProcessTest, StartReportsAnEarlyExitWithTheLog) {
  absl::StatusOr<std::unique_ptr<DirectoryProcess>> directory =
      DirectoryProcess::Start(dir_.path() + "/data", {"--mode", "crash"});
  ASSERT_FALSE(directory.ok());
  EXPECT_TRUE(absl::StrContains(directory.status().message(), "exited with status 2"))
      << directory.status();
  EXPECT_TRUE(absl::StrContains(directory.status().message(), "fatal: cannot open store"))
      << directory.status();
}

TEST_F(DirectoryProcessTest, StopReportsANonZeroExit) {
  absl::StatusOr<std::unique_ptr<DirectoryProcess>> directory =
      DirectoryProcess::Start(dir_.path() + "/data", {"--mode", "dirty"});
  ASSERT_TRUE(directory.ok()) << directory.status();
  absl::Status stopped = (*directory)->Stop();
  EXPECT_FALSE(stopped.ok());
  EXPECT_TRUE(absl::StrContains(stopped.message(), "exited with status 1")) << stopped;
  EXPECT_TRUE(absl::StrContains(stopped.message(), "shutdown failed")) << stopped;
}

TEST_F(DirectoryProcessTest, StartFailsWhenTheProgramIsMissing) {
  setenv("ZMESH_BIN_DIR", (dir_.path() + "/nowhere").c_str(), 1);
  absl::StatusOr<std::unique_ptr<DirectoryProcess>> directory =
      DirectoryProcess::Start(dir_.path() + "/data");
  EXPECT_TRUE(absl::IsNotFound(directory.status())) << directory.status();
}

}  // namespace
}  // namespace zmesh::testing
