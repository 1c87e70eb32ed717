#include "tests/support/subprocess.h"

#include <signal.h>
#include <sys/wait.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace zmesh::testing {
namespace {

class SubprocessTest : public ::testing::Test {
 protected:
  TempDir dir_;
};

TEST_F(SubprocessTest, WaitReturnsTheExitStatus) {
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Start({"/bin/sh", "-c", "exit 3"});
  ASSERT_TRUE(process.ok()) << process.status();
  absl::StatusOr<int> status = (*process)->Wait(5000);
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 3);
  EXPECT_FALSE((*process)->running());
  EXPECT_TRUE(absl::IsFailedPrecondition((*process)->Wait(0).status()));
}

TEST_F(SubprocessTest, StartFailsForAMissingProgram) {
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Start({dir_.path() + "/no-such-program"});
  EXPECT_TRUE(absl::IsNotFound(process.status())) << process.status();
}

TEST_F(SubprocessTest, StartRejectsAnEmptyArgv) {
  EXPECT_TRUE(absl::IsInvalidArgument(Subprocess::Start({}).status()));
}

TEST_F(SubprocessTest, WaitTimesOutWhileRunningAndSignalStopsTheChild) {
  absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start({"/bin/sleep", "30"});
  ASSERT_TRUE(process.ok()) << process.status();
  const absl::Time start = absl::Now();
  EXPECT_TRUE(absl::IsDeadlineExceeded((*process)->Wait(50).status()));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));
  EXPECT_TRUE((*process)->running());

  (*process)->Signal(SIGTERM);
  absl::StatusOr<int> status = (*process)->Wait(5000);
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_TRUE(WIFSIGNALED(*status));
  EXPECT_EQ(WTERMSIG(*status), SIGTERM);
  EXPECT_EQ(DescribeWaitStatus(*status),
            absl::StrCat("killed by signal ", SIGTERM, " (", strsignal(SIGTERM), ")"));
}

TEST_F(SubprocessTest, OutputGoesToTheGivenFiles) {
  const std::string out = dir_.path() + "/out";
  const std::string err = dir_.path() + "/err";
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Start({"/bin/sh", "-c", "echo to-out; echo to-err >&2"}, out, err);
  ASSERT_TRUE(process.ok()) << process.status();
  ASSERT_TRUE((*process)->Wait(5000).ok());
  EXPECT_EQ(ReadFile(out).value_or("?"), "to-out\n");
  EXPECT_EQ(ReadFile(err).value_or("?"), "to-err\n");
}

TEST_F(SubprocessTest, StdoutAndStderrCanShareOneFile) {
  const std::string log = dir_.path() + "/log";
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Start({"/bin/sh", "-c", "echo one; echo two >&2; echo three"}, log, log);
  ASSERT_TRUE(process.ok()) << process.status();
  ASSERT_TRUE((*process)->Wait(5000).ok());
  EXPECT_EQ(ReadFile(log).value_or("?"), "one\ntwo\nthree\n");
}

TEST_F(SubprocessTest, DestructorKillsARunningChild) {
  pid_t pid;
  {
    absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start({"/bin/sleep", "30"});
    ASSERT_TRUE(process.ok()) << process.status();
    pid = (*process)->pid();
    ASSERT_EQ(kill(pid, 0), 0);
  }
  // Reaped by the destructor, so the pid no longer exists (not even as a zombie).
  EXPECT_NE(kill(pid, 0), 0);
}

TEST(RunCommandTest, CapturesExitCodeAndOutput) {
  absl::StatusOr<CommandResult> result =
      RunCommand({"/bin/sh", "-c", "echo hello; echo oops >&2; exit 7"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 7);
  EXPECT_FALSE(result->timed_out);
  EXPECT_EQ(result->out, "hello\n");
  EXPECT_EQ(result->err, "oops\n");
}

TEST(RunCommandTest, SucceedsWithExitCodeZero) {
  absl::StatusOr<CommandResult> result = RunCommand({"/bin/true"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 0);
  EXPECT_EQ(result->out, "");
}

TEST(RunCommandTest, DoesNotReadTheTestsStdin) {
  absl::StatusOr<CommandResult> result = RunCommand({"/bin/cat"}, 5000);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->timed_out);
  EXPECT_EQ(result->exit_code, 0);
}

TEST(RunCommandTest, KillsTheWholeCommandAfterTheTimeout) {
  const absl::Time start = absl::Now();
  // The shell's child (sleep) is killed too: otherwise it would hold the output file open.
  absl::StatusOr<CommandResult> result =
      RunCommand({"/bin/sh", "-c", "echo started; sleep 30; echo finished"}, 200);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->timed_out);
  EXPECT_EQ(result->exit_code, -1);
  EXPECT_EQ(result->out, "started\n");
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST(RunCommandTest, FailsForAMissingProgram) {
  EXPECT_TRUE(absl::IsNotFound(RunCommand({"/nonexistent/zmesh-program"}).status()));
}

TEST(TempDirTest, IsCreatedEmptyAndRemovedWithItsContents) {
  std::string path;
  {
    TempDir dir;
    path = dir.path();
    ASSERT_TRUE(std::filesystem::is_directory(path));
    EXPECT_TRUE(std::filesystem::is_empty(path));
    std::filesystem::create_directories(path + "/a/b");
    std::ofstream(path + "/a/b/file") << "x";
    TempDir other;
    EXPECT_NE(other.path(), path);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(BinPathTest, UsesZmeshBinDir) {
  const char* saved = getenv("ZMESH_BIN_DIR");
  std::string saved_value = saved != nullptr ? saved : "";
  setenv("ZMESH_BIN_DIR", "/opt/zmesh/bin", 1);
  EXPECT_EQ(BinPath("zmeshctl"), "/opt/zmesh/bin/zmeshctl");
  unsetenv("ZMESH_BIN_DIR");
  // Without it: the bin dir next to the test binary's own dir (build/tests -> build/bin).
  EXPECT_EQ(std::filesystem::path(BinPath("zmeshctl")).parent_path().filename(), "bin");
  if (saved != nullptr) setenv("ZMESH_BIN_DIR", saved_value.c_str(), 1);
}

TEST(TailFileTest, KeepsTheLastLines) {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  std::ofstream(path) << "1\n2\n3\n4\n";
  EXPECT_EQ(TailFile(path, 2), "3\n4");
  EXPECT_EQ(TailFile(path, 10), "1\n2\n3\n4");
  EXPECT_EQ(TailFile(dir.path() + "/missing"), "");
}

TEST(EventuallyTest, ReturnsTrueOnceTheConditionHolds) {
  int calls = 0;
  EXPECT_TRUE(Eventually([&] { return ++calls == 3; }, 5000));
  EXPECT_EQ(calls, 3);
}

TEST(EventuallyTest, ReturnsFalseAfterTheTimeout) {
  int calls = 0;
  const absl::Time start = absl::Now();
  EXPECT_FALSE(Eventually([&] { return ++calls < 0; }, 100));
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_GE(elapsed, absl::Milliseconds(100));
  EXPECT_LT(elapsed, absl::Seconds(5));
  EXPECT_GE(calls, 2);
}

}  // namespace
}  // namespace zmesh::testing
