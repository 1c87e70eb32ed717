// Where the time goes: CPU time and context switches of every process taking part in a case,
// read from Linux's accounting before and after the measured window and divided by the messages
// of the window. A round trip that costs little CPU but many context switches waits on thread
// hand-offs rather than on work.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace zmesh::bench {

struct Usage {
  int64_t cpu_ns = 0;            // on-CPU time, all threads
  int64_t context_switches = 0;  // voluntary + involuntary, all threads
};

// This process (pid 0: getrusage, counting threads that already ended) or a child (the sum over
// /proc/PID/task/*: threads alive at the time of reading). Zero when unreadable.
Usage ReadUsage(pid_t pid);

// Usage of a set of named processes over one window. Not thread-safe.
class UsageMeter {
 public:
  struct Process {
    std::string name;
    pid_t pid = 0;  // 0 = this process
  };
  explicit UsageMeter(std::vector<Process> processes) : processes_(std::move(processes)) {}

  void Start();
  void Stop();
  // "client 31.2 us 4.1 cs, proxy-1 12.0 us 2.0 cs, ..." per message of the window, followed by
  // the total; "" before Stop() or for no message.
  std::string PerMessage(int64_t messages) const;
  // Total CPU microseconds per message over every process.
  double TotalCpuUsPerMessage(int64_t messages) const;
  double TotalSwitchesPerMessage(int64_t messages) const;

 private:
  std::vector<Process> processes_;
  std::vector<Usage> start_;
  std::vector<Usage> delta_;
};

}  // namespace zmesh::bench
