#include "bench/dataplane/usage.h"

#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace zmesh::bench {
namespace {

int64_t ReadSchedstatNs(const std::string& path) {
  std::ifstream in(path);
  int64_t ns = 0;
  in >> ns;
  return in ? ns : 0;
}

int64_t ReadSwitches(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  int64_t total = 0;
  while (std::getline(in, line)) {
    for (const char* key : {"voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"}) {
      if (line.rfind(key, 0) == 0) {
        int64_t n = 0;
        if (absl::SimpleAtoi(line.substr(std::string(key).size()), &n)) total += n;
      }
    }
  }
  return total;
}

}  // namespace

Usage ReadUsage(pid_t pid) {
  Usage usage;
  if (pid == 0) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return usage;
    usage.cpu_ns = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
                   (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
    usage.context_switches = ru.ru_nvcsw + ru.ru_nivcsw;
    return usage;
  }
  std::error_code error;
  const std::string task_dir = absl::StrCat("/proc/", pid, "/task");
  for (const auto& entry : std::filesystem::directory_iterator(task_dir, error)) {
    usage.cpu_ns += ReadSchedstatNs(entry.path().string() + "/schedstat");
    usage.context_switches += ReadSwitches(entry.path().string() + "/status");
  }
  return usage;
}

void UsageMeter::Start() {
  start_.clear();
  delta_.clear();
  for (const Process& process : processes_) start_.push_back(ReadUsage(process.pid));
}

void UsageMeter::Stop() {
  delta_.clear();
  for (size_t i = 0; i < processes_.size() && i < start_.size(); ++i) {
    const Usage now = ReadUsage(processes_[i].pid);
    delta_.push_back(
        Usage{now.cpu_ns - start_[i].cpu_ns, now.context_switches - start_[i].context_switches});
  }
}

std::string UsageMeter::PerMessage(int64_t messages) const {
  if (delta_.empty() || messages <= 0) return "";
  std::vector<std::string> parts;
  for (size_t i = 0; i < delta_.size(); ++i) {
    // Idle bystanders (a proxy the case does not use) would only make the line longer.
    if (delta_[i].cpu_ns / messages < 100) continue;
    parts.push_back(absl::StrFormat("%s %.1f us %.1f cs", processes_[i].name,
                                    delta_[i].cpu_ns / 1000.0 / messages,
                                    static_cast<double>(delta_[i].context_switches) / messages));
  }
  parts.push_back(absl::StrFormat("total %.1f us %.1f cs", TotalCpuUsPerMessage(messages),
                                  TotalSwitchesPerMessage(messages)));
  return absl::StrJoin(parts, ", ");
}

double UsageMeter::TotalCpuUsPerMessage(int64_t messages) const {
  if (messages <= 0) return 0;
  int64_t ns = 0;
  for (const Usage& usage : delta_) ns += usage.cpu_ns;
  return ns / 1000.0 / messages;
}

double UsageMeter::TotalSwitchesPerMessage(int64_t messages) const {
  if (messages <= 0) return 0;
  int64_t switches = 0;
  for (const Usage& usage : delta_) switches += usage.context_switches;
  return static_cast<double>(switches) / messages;
}

}  // namespace zmesh::bench
