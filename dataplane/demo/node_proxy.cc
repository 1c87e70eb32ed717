#include "dataplane/demo/node_proxy.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace zmesh::demo {

namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(20);

// Proxies started and not reaped yet, for TerminateRunningProxies.
absl::Mutex running_mu;
std::set<pid_t>* running ABSL_GUARDED_BY(running_mu) = new std::set<pid_t>();

void AddRunning(pid_t pid) {
  absl::MutexLock lock(&running_mu);
  running->insert(pid);
}

void RemoveRunning(pid_t pid) {
  absl::MutexLock lock(&running_mu);
  running->erase(pid);
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("was killed by signal ", WTERMSIG(status), " (",
                        strsignal(WTERMSIG(status)), ")");
  }
  return absl::StrCat("ended with wait status ", status);
}

// Forks and execs argv with stdout and stderr appended to log_path. Returns the child's pid.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(absl::StrCat("opening ", log_path, ": ", std::strerror(errno)));
  }
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    close(log_fd);
    return absl::InternalError(absl::StrCat("opening /dev/null: ", std::strerror(errno)));
  }
  // A pipe closed on exec tells the parent whether exec worked (and errno if not).
  int exec_pipe[2];
  if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
    close(log_fd);
    close(null_fd);
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int error = errno;
    close(log_fd);
    close(null_fd);
    close(exec_pipe[0]);
    close(exec_pipe[1]);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(error)));
  }
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(args[0], args.data());
    int error = errno;
    (void)!write(exec_pipe[1], &error, sizeof(error));
    _exit(127);
  }
  close(log_fd);
  close(null_fd);
  close(exec_pipe[1]);
  int exec_error = 0;
  ssize_t n;
  do {
    n = read(exec_pipe[0], &exec_error, sizeof(exec_error));
  } while (n < 0 && errno == EINTR);
  close(exec_pipe[0]);
  if (n == sizeof(exec_error)) {
    waitpid(pid, nullptr, 0);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", argv[0], ": ", std::strerror(exec_error)));
  }
  return pid;
}

}  // namespace

std::string TailOfFile(const std::string& path, int max_lines) {
  std::ifstream in(path);
  std::deque<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(line);
    if (static_cast<int>(lines.size()) > max_lines) lines.pop_front();
  }
  return absl::StrJoin(lines, "\n");
}

absl::StatusOr<std::unique_ptr<NodeProxy>> NodeProxy::Start(NodeProxyOptions options,
                                                            int64_t ready_timeout_ms) {
  std::error_code ec;
  std::filesystem::create_directories(options.ipc_dir, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("creating ", options.ipc_dir, ": ", ec.message()));
  const std::string ready_path = absl::StrCat(options.ipc_dir, "/proxy.ready");
  std::filesystem::remove(ready_path, ec);
  std::vector<std::string> argv = {options.binary,
                                   "--directory",
                                   options.directory,
                                   "--node-name",
                                   options.node_name,
                                   "--advertise-host",
                                   "127.0.0.1",
                                   "--bind",
                                   "127.0.0.1",
                                   "--call-port",
                                   "0",
                                   "--fanout-port",
                                   "0",
                                   "--notify-port",
                                   "0",
                                   "--cast-port",
                                   "0",
                                   "--ipc-dir",
                                   options.ipc_dir,
                                   "--lease-ttl-ms",
                                   absl::StrCat(options.lease_ttl_ms),
                                   "--ready-file",
                                   ready_path};
  absl::StatusOr<pid_t> pid = Spawn(argv, options.log_path);
  if (!pid.ok()) return pid.status();
  AddRunning(*pid);
  std::unique_ptr<NodeProxy> proxy(new NodeProxy(std::move(options), *pid));

  const absl::Time deadline = absl::Now() + absl::Milliseconds(ready_timeout_ms);
  for (;;) {
    std::ifstream in(ready_path);
    std::string line;
    if (in && std::getline(in, line) && !line.empty()) {
      proxy->ports_ = std::string(absl::StripAsciiWhitespace(line));
      return proxy;
    }
    if (int status = proxy->WaitForExit(0); status != -1) {
      return absl::InternalError(
          absl::StrCat("zmesh-proxy for ", proxy->options_.node_name, " ",
                       DescribeWaitStatus(status), " before it got ready; end of ",
                       proxy->options_.log_path, ":\n", TailOfFile(proxy->options_.log_path)));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "zmesh-proxy for ", proxy->options_.node_name, " not ready after ", ready_timeout_ms,
          " ms; end of ", proxy->options_.log_path, ":\n", TailOfFile(proxy->options_.log_path)));
    }
    absl::SleepFor(kPollInterval);
  }
}

NodeProxy::~NodeProxy() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    RemoveRunning(pid_);
  }
}

int TerminateRunningProxies(int64_t timeout_ms) {
  std::set<pid_t> pids;
  {
    absl::MutexLock lock(&running_mu);
    pids = *running;
  }
  for (pid_t pid : pids) kill(pid, SIGTERM);
  const absl::Time deadline = absl::Now() + absl::Milliseconds(timeout_ms);
  for (pid_t pid : pids) {
    // Another thread may reap it first: ECHILD then.
    while (waitpid(pid, nullptr, WNOHANG) == 0 && absl::Now() < deadline) {
      absl::SleepFor(kPollInterval);
    }
  }
  return static_cast<int>(pids.size());
}

int NodeProxy::WaitForExit(int64_t timeout_ms) {
  if (pid_ <= 0) return -1;
  const absl::Time deadline = absl::Now() + absl::Milliseconds(timeout_ms);
  for (;;) {
    int status = 0;
    pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      RemoveRunning(pid_);
      pid_ = 0;
      return status;
    }
    if (done < 0 && errno != EINTR) {  // reaped elsewhere (TerminateRunningProxies)
      RemoveRunning(pid_);
      pid_ = 0;
      return 0;
    }
    if (absl::Now() >= deadline) return -1;
    absl::SleepFor(kPollInterval);
  }
}

absl::Status NodeProxy::Stop(int64_t timeout_ms) {
  if (pid_ <= 0) return absl::FailedPreconditionError("not running");
  kill(pid_, SIGTERM);
  int status = WaitForExit(timeout_ms);
  if (status == -1) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    RemoveRunning(pid_);
    pid_ = 0;
    return absl::DeadlineExceededError(
        absl::StrCat("zmesh-proxy for ", options_.node_name, " did not exit within ", timeout_ms,
                     " ms of SIGTERM (killed); end of ", options_.log_path, ":\n",
                     TailOfFile(options_.log_path)));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("zmesh-proxy for ", options_.node_name, " ",
                                          DescribeWaitStatus(status), " after SIGTERM; end of ",
                                          options_.log_path, ":\n", TailOfFile(options_.log_path)));
}

}  // namespace zmesh::demo
