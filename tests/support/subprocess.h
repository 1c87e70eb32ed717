// Subprocess: runs a program as a child process for multi-process tests (real daemons, CLI).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace zmesh::testing {

// Owns a running child process; the destructor SIGKILLs and reaps it if still running.
// Not thread-safe.
//
// The child runs in its own process group, with stdin on /dev/null, default signal dispositions
// and an empty signal mask. It gets SIGKILL when the thread that started it exits (Linux
// PR_SET_PDEATHSIG), so a crashed or killed test leaves no daemon behind: start long-lived
// children from a thread that outlives them (the test's or main()'s thread).
class Subprocess {
 public:
  // Starts argv[0] (a path, not searched in $PATH) with argv. stdout/stderr go to the given files
  // ("" = inherit), created or truncated; both may name the same file. Fails with NOT_FOUND or
  // PERMISSION_DENIED (from errno) when the program cannot be executed, INVALID_ARGUMENT for an
  // empty argv, INTERNAL when an output file cannot be opened.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      std::vector<std::string> argv, const std::string& stdout_path = "",
      const std::string& stderr_path = "");
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  ~Subprocess();

  pid_t pid() const { return pid_; }
  // True until Wait() has reaped the child (a zombie still counts as running).
  bool running() const { return pid_ > 0; }
  // Sends a signal (e.g. SIGTERM, SIGKILL) to the child; a no-op once it has been reaped.
  void Signal(int signo) const;
  // Sends a signal to the child's whole process group (the child and what it started).
  void SignalGroup(int signo) const;
  // Waits up to timeout_ms (0 = just check) for the child to exit and reaps it; returns its raw
  // wait status (use WIFEXITED/WEXITSTATUS), DEADLINE_EXCEEDED if it is still running, or
  // FAILED_PRECONDITION if it was already reaped.
  [[nodiscard]] absl::StatusOr<int> Wait(int64_t timeout_ms);

 private:
  explicit Subprocess(pid_t pid) : pid_(pid) {}
  pid_t pid_;  // 0 once reaped
};

// SIGKILLs the child's process group and reaps the child (waiting up to 10 s).
void KillAndReap(Subprocess& process);

// "exited with status 3", "killed by signal 9 (Killed)" for a raw wait status.
std::string DescribeWaitStatus(int wait_status);

struct CommandResult {
  int exit_code = -1;  // -1 if killed by a signal or timed out
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs a command to completion and captures its output (through temporary files, so output of
// any size works). After timeout_ms its whole process group is SIGKILLed and the result has
// timed_out = true and whatever it printed until then. An error status only when it cannot be
// started (see Subprocess::Start).
[[nodiscard]] absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                                       int64_t timeout_ms = 30000);

// A fresh temporary directory under $TMPDIR (or /tmp), removed recursively by the destructor.
// Aborts the process if it cannot be created (a broken test environment).
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Path of a program built into build/bin: $ZMESH_BIN_DIR/program when ZMESH_BIN_DIR is set (ctest
// sets it), else <dir of this executable>/../bin/program (test binaries live in build/tests).
std::string BinPath(const std::string& program);

// Reads a whole file; NOT_FOUND if it does not exist.
[[nodiscard]] absl::StatusOr<std::string> ReadFile(const std::string& path);

// The last max_lines lines of a file (for error messages about a daemon's log); "" if unreadable.
std::string TailFile(const std::string& path, int max_lines = 30);

// Polls `condition` every few milliseconds until it holds (true) or timeout_ms passes (false).
// The condition is always evaluated at least once, and once more after the deadline.
bool Eventually(const std::function<bool()>& condition, int64_t timeout_ms = 10000);

}  // namespace zmesh::testing
