#include "tests/support/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace zmesh::testing {
namespace {

// Steps of the child between fork() and exec(), as reported when one fails.
enum ChildStep : int {
  kProcessGroup,
  kDeathSignal,
  kDevNull,
  kStdoutFile,
  kStderrFile,
  kRedirect,
  kExec,
};
constexpr const char* kChildSteps[] = {"setting up the process group",
                                       "setting the parent-death signal",
                                       "opening /dev/null",
                                       "opening the stdout file",
                                       "opening the stderr file",
                                       "redirecting output",
                                       "executing"};

// What the child writes to the parent through the close-on-exec pipe when it cannot exec.
struct ChildFailure {
  int step;   // a ChildStep
  int error;  // errno
};

// Runs in the forked child of a possibly multi-threaded parent: async-signal-safe calls only,
// on data prepared before fork(). Never returns.
[[noreturn]] void ExecChild(int report_fd, pid_t parent, char* const* argv, const char* out_path,
                            const char* err_path) {
  auto fail = [report_fd](ChildStep step) {
    ChildFailure failure{step, errno};
    ssize_t ignored = write(report_fd, &failure, sizeof(failure));
    (void)ignored;
    _exit(127);
  };
  if (setpgid(0, 0) != 0) fail(kProcessGroup);
  // Dies with the thread that started it, so aborted tests leave no daemons behind. The check of
  // getppid() closes the race where the parent is already gone.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(kDeathSignal);
  if (getppid() != parent) _exit(126);

  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl;
  memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (int signo = 1; signo < NSIG; ++signo) {
    sigaction(signo, &dfl, nullptr);  // fails harmlessly for SIGKILL/SIGSTOP and reserved ones
  }

  int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd < 0) fail(kDevNull);
  if (dup2(null_fd, STDIN_FILENO) < 0) fail(kRedirect);
  int out_fd = -1;
  if (out_path != nullptr) {
    out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out_fd < 0) fail(kStdoutFile);
    if (dup2(out_fd, STDOUT_FILENO) < 0) fail(kRedirect);
  }
  if (err_path != nullptr) {
    if (out_path != nullptr && strcmp(out_path, err_path) == 0) {
      if (dup2(out_fd, STDERR_FILENO) < 0) fail(kRedirect);
    } else {
      int err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (err_fd < 0) fail(kStderrFile);
      if (dup2(err_fd, STDERR_FILENO) < 0) fail(kRedirect);
    }
  }
  execv(argv[0], argv);
  fail(kExec);
  _exit(127);  // not reached
}

absl::Status ErrnoStatus(int error, absl::string_view context) {
  std::string message = absl::StrCat(context, ": ", strerror(error));
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(std::vector<std::string> argv,
                                                              const std::string& stdout_path,
                                                              const std::string& stderr_path) {
  if (argv.empty() || argv[0].empty()) {
    return absl::InvalidArgumentError("Subprocess::Start: empty argv");
  }
  std::vector<char*> c_argv;
  c_argv.reserve(argv.size() + 1);
  for (std::string& arg : argv) c_argv.push_back(arg.data());
  c_argv.push_back(nullptr);
  const char* out_path = stdout_path.empty() ? nullptr : stdout_path.c_str();
  const char* err_path = stderr_path.empty() ? nullptr : stderr_path.c_str();

  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    return ErrnoStatus(errno, "starting " + argv[0] + ": pipe2");
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    int error = errno;
    close(report[0]);
    close(report[1]);
    return ErrnoStatus(error, "starting " + argv[0] + ": fork");
  }
  if (pid == 0) {
    close(report[0]);
    ExecChild(report[1], parent, c_argv.data(), out_path, err_path);
  }
  close(report[1]);

  // EOF means exec succeeded (the pipe was closed on exec); a record means it failed.
  ChildFailure failure{};
  ssize_t n;
  do {
    n = read(report[0], &failure, sizeof(failure));
  } while (n < 0 && errno == EINTR);
  close(report[0]);
  if (n == static_cast<ssize_t>(sizeof(failure))) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const int steps = static_cast<int>(sizeof(kChildSteps) / sizeof(kChildSteps[0]));
    const char* step =
        failure.step >= 0 && failure.step < steps ? kChildSteps[failure.step] : "starting";
    return ErrnoStatus(failure.error, absl::StrCat("starting ", argv[0], ": ", step));
  }
  return std::unique_ptr<Subprocess>(new Subprocess(pid));
}

Subprocess::~Subprocess() {
  if (pid_ <= 0) return;
  SignalGroup(SIGKILL);
  Signal(SIGKILL);
  int status;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

void Subprocess::Signal(int signo) const {
  if (pid_ > 0) kill(pid_, signo);
}

void Subprocess::SignalGroup(int signo) const {
  if (pid_ > 0) kill(-pid_, signo);
}

absl::StatusOr<int> Subprocess::Wait(int64_t timeout_ms) {
  if (pid_ <= 0) return absl::FailedPreconditionError("Subprocess::Wait: already reaped");
  const absl::Time deadline = absl::Now() + absl::Milliseconds(timeout_ms);
  absl::Duration pause = absl::Milliseconds(1);
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = 0;
      return status;
    }
    if (r < 0 && errno != EINTR) {
      int error = errno;
      pid_ = 0;
      return ErrnoStatus(error, "waitpid");
    }
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("process ", pid_, " still running after ", timeout_ms, " ms"));
    }
    absl::SleepFor(std::min(pause, deadline - now));
    pause = std::min(pause * 2, absl::Milliseconds(20));
  }
}

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return absl::StrCat("exited with status ", WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    const int signo = WTERMSIG(wait_status);
    return absl::StrCat("killed by signal ", signo, " (", strsignal(signo), ")");
  }
  return absl::StrCat("wait status ", wait_status);
}

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv, int64_t timeout_ms) {
  TempDir dir;
  const std::string out_path = dir.path() + "/stdout";
  const std::string err_path = dir.path() + "/stderr";
  absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(argv, out_path, err_path);
  if (!process.ok()) return process.status();

  CommandResult result;
  absl::StatusOr<int> status = (*process)->Wait(timeout_ms);
  if (absl::IsDeadlineExceeded(status.status())) {
    result.timed_out = true;
    (*process)->SignalGroup(SIGKILL);
    status = (*process)->Wait(10000);
  }
  if (!status.ok()) {
    return absl::Status(status.status().code(), absl::StrCat("running ", absl::StrJoin(argv, " "),
                                                             ": ", status.status().message()));
  }
  if (WIFEXITED(*status) && !result.timed_out) result.exit_code = WEXITSTATUS(*status);
  result.out = ReadFile(out_path).value_or("");
  result.err = ReadFile(err_path).value_or("");
  return result;
}

TempDir::TempDir() {
  const char* tmp = getenv("TMPDIR");
  std::string base = (tmp != nullptr && tmp[0] != '\0') ? tmp : "/tmp";
  std::string templ = base + "/zmesh-test-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    fprintf(stderr, "TempDir: mkdtemp(%s): %s\n", templ.c_str(), strerror(errno));
    abort();
  }
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string BinPath(const std::string& program) {
  const char* bin_dir = getenv("ZMESH_BIN_DIR");
  if (bin_dir != nullptr && bin_dir[0] != '\0') return std::string(bin_dir) + "/" + program;
  std::error_code error;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return "bin/" + program;
  return (self.parent_path().parent_path() / "bin" / program).string();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

std::string TailFile(const std::string& path, int max_lines) {
  absl::StatusOr<std::string> content = ReadFile(path);
  if (!content.ok()) return "";
  std::vector<absl::string_view> lines = absl::StrSplit(*content, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  const size_t keep = std::min(lines.size(), static_cast<size_t>(std::max(max_lines, 0)));
  std::vector<absl::string_view> tail(lines.end() - static_cast<std::ptrdiff_t>(keep), lines.end());
  return absl::StrJoin(tail, "\n");
}

void KillAndReap(Subprocess& process) {
  process.SignalGroup(SIGKILL);
  (void)process.Wait(10000);
}

bool Eventually(const std::function<bool()>& condition, int64_t timeout_ms) {
  const absl::Time deadline = absl::Now() + absl::Milliseconds(timeout_ms);
  absl::Duration pause = absl::Milliseconds(2);
  while (true) {
    if (condition()) return true;
    const absl::Time now = absl::Now();
    if (now >= deadline) return false;
    absl::SleepFor(std::min(pause, deadline - now));
    pause = std::min(pause * 2, absl::Milliseconds(20));
  }
}

}  // namespace zmesh::testing
