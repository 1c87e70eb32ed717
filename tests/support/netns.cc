#include "tests/support/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <iostream>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tests/support/subprocess.h"

namespace zmesh::testing {

std::string IpPath() {
  for (const char* path : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(path, X_OK) == 0) return path;
  }
  return "/usr/sbin/ip";
}

absl::Status Ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {IpPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<CommandResult> result = RunCommand(argv, 10000);
  if (!result.ok()) return result.status();
  if (result->exit_code != 0) {
    return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), " failed (exit ",
                                            result->exit_code, "): ", result->err, result->out));
  }
  return absl::OkStatus();
}

void RemoveLeftoverNamespaces(absl::string_view prefix) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/run/netns", ec)) {
    const std::string name = entry.path().filename().string();
    if (!absl::StartsWith(name, prefix)) continue;
    std::vector<std::string> parts = absl::StrSplit(name.substr(prefix.size()), '-');
    int pid = 0;
    if (parts.empty() || !absl::SimpleAtoi(parts[0], &pid) || pid <= 0) continue;
    if (pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH) continue;
    (void)Ip({"netns", "del", name});
  }
}

Namespaces::~Namespaces() {
  for (auto it = names_.rbegin(); it != names_.rend(); ++it) {
    if (absl::Status st = Ip({"netns", "del", *it}); !st.ok()) {
      std::cerr << "cleanup: " << st << "\n";
    }
  }
}

absl::Status Namespaces::Add(const std::string& name) {
  (void)Ip({"netns", "del", name});  // a leftover of the same name
  if (absl::Status st = Ip({"netns", "add", name}); !st.ok()) return st;
  names_.push_back(name);
  return Ip({"-n", name, "link", "set", "lo", "up"});
}

absl::Status AddBridge(const std::string& bridge_ns, const std::string& bridge) {
  if (absl::Status st = Ip({"-n", bridge_ns, "link", "add", bridge, "type", "bridge"}); !st.ok()) {
    return st;
  }
  return Ip({"-n", bridge_ns, "link", "set", bridge, "up"});
}

absl::Status AttachHost(const std::string& bridge_ns, const std::string& bridge,
                        const std::string& host_ns, const std::string& veth,
                        const std::string& cidr_address) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"-n", bridge_ns, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
            host_ns},
           {"-n", bridge_ns, "link", "set", veth, "master", bridge, "up"},
           {"-n", host_ns, "addr", "add", cidr_address, "dev", "eth0"},
           {"-n", host_ns, "link", "set", "eth0", "up"}}) {
    if (absl::Status st = Ip(args); !st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status EnterNamespace(const std::string& name, int* original_fd) {
  if (original_fd != nullptr) *original_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  const int fd = open(absl::StrCat("/run/netns/", name).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
    const int err = errno;
    if (fd >= 0) close(fd);
    return absl::InternalError(
        absl::StrCat("entering network namespace ", name, ": ", strerror(err)));
  }
  close(fd);
  return absl::OkStatus();
}

void ReturnToNamespace(int fd) {
  if (fd < 0) return;
  if (setns(fd, CLONE_NEWNET) != 0)
    std::cerr << "cannot return to the original network namespace\n";
  close(fd);
}

absl::StatusOr<std::unique_ptr<BridgeLab>> BridgeLab::Create(const std::string& prefix) {
  RemoveLeftoverNamespaces(prefix);
  std::unique_ptr<BridgeLab> lab(new BridgeLab);
  lab->ns_ = absl::StrCat(prefix, getpid(), "-br");
  if (absl::Status st = lab->namespaces_.Add(lab->ns_); !st.ok()) return st;
  if (absl::Status st = AddBridge(lab->ns_, kBridge); !st.ok()) return st;
  if (absl::Status st = EnterNamespace(lab->ns_, &lab->original_netns_fd_); !st.ok()) return st;
  return lab;
}

BridgeLab::~BridgeLab() { ReturnToNamespace(original_netns_fd_); }

absl::Status BridgeLab::Detach(const std::string& veth) const {
  return Ip({"-n", ns_, "link", "set", veth, "nomaster"});
}

absl::Status BridgeLab::Reattach(const std::string& veth) const {
  return Ip({"-n", ns_, "link", "set", veth, "master", kBridge});
}

}  // namespace zmesh::testing
