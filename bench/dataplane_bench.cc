// zmesh-bench-dataplane: zmesh's data plane against raw libzmq on the same machine, in one run.
//
// Cases, each with 100-byte and 4 KiB payloads:
//   call latency     one caller, round trips back to back: p50 / p99;
//   call throughput  --callers threads (16) making round trips back to back: calls/s;
//   cast             one sender, counted at the receiver: messages/s until it has them all;
//   fanout           one sender to 3 nodes: messages/s until all three have them all.
// Raw libzmq baselines (bench/dataplane/raw.h): DEALER -> ROUTER echo over TCP, the same echo
// through a zmq_proxy process (the path of a zmesh CALL), PUSH/PULL, and 3 PUSH sockets.
// zmesh (bench/dataplane/zmesh.h): a real zmesh-directory, one zmesh-proxy for the client's node
// and one per server node, one server process per server node.
//
// Every server and receiver runs in its own process: this binary started again with --role=....
// A plain main() rather than Google Benchmark, for the reasons given in bench/README.md; it
// accepts --benchmark_min_time so that scripts/test's smoke run works unchanged.
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <zmq.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/dataplane/child_process.h"
#include "bench/dataplane/raw.h"
#include "bench/dataplane/runner.h"
#include "common/flags.h"
#include "tests/support/subprocess.h"
#ifdef ZMESH_BENCH_HAS_ZMESH
#include "bench/dataplane/zmesh.h"
#endif

ABSL_FLAG(int64_t, duration_ms, 2000, "Measured time of each case, per system.");
ABSL_FLAG(int64_t, warmup_ms, 300, "Unmeasured traffic before each case's measured time.");
ABSL_FLAG(std::vector<std::string>, payload_bytes, std::vector<std::string>({"100", "4096"}),
          "Payload sizes to measure, comma-separated (bytes).");
ABSL_FLAG(std::vector<std::string>, cases,
          std::vector<std::string>({"latency", "many", "cast", "fanout"}),
          "Cases to run, comma-separated: latency (one caller), many (--callers callers), cast "
          "(with the CastAsync diagnostic), fanout.");
ABSL_FLAG(int32_t, callers, 16, "Concurrent callers (threads) of the call throughput case.");
ABSL_FLAG(bool, quick, false, "Smoke run: 200 ms cases (about 10 s in all).");
ABSL_FLAG(std::string, benchmark_min_time, "",
          "Accepted so that scripts/test can smoke-run every zmesh-bench-* binary alike: any "
          "value means --quick.");
ABSL_FLAG(std::string, work_dir, "",
          "Directory for the children's logs and IPC sockets, kept after the run (default: a "
          "temporary directory, removed at the end). Keep it short: IPC paths are limited.");
ABSL_FLAG(bool, raw_only, false, "Measure the raw libzmq baselines only.");
ABSL_FLAG(bool, strict, false,
          "Fail the run when the diagnostic case (zmesh CastAsync) fails too.");
ABSL_FLAG(bool, zmesh_only, false, "Measure zmesh only (e.g. to profile it).");
ABSL_FLAG(std::string, proxy_prefix, "",
          "Command wrapped around every zmesh-proxy, words separated by spaces, the program "
          "by absolute path (e.g. \"/usr/bin/valgrind --tool=callgrind\" to profile it).");
// Child roles.
ABSL_FLAG(std::string, role, "",
          "Internal: run as a child process in this role (echo-server, echo-worker, zmq-proxy, "
          "sink, zmesh-server).");
ABSL_FLAG(std::string, bind, "", "Internal (roles): endpoint to bind.");
ABSL_FLAG(std::string, connect, "", "Internal (roles): endpoint to connect to.");
ABSL_FLAG(std::string, backend, "", "Internal (zmq-proxy): endpoint of its DEALER.");
ABSL_FLAG(std::string, control, "", "Internal (receivers): control endpoint.");
ABSL_FLAG(std::string, ready_file, "", "Internal (roles): file written once serving.");
ABSL_FLAG(std::string, ipc_dir, "", "Internal (zmesh-server): the proxy's IPC directory.");
ABSL_FLAG(std::string, topic, "", "Internal (zmesh-server): target topic.");
ABSL_FLAG(std::string, server, "", "Internal (zmesh-server): target server name.");

namespace zmesh::bench {
namespace {

constexpr int kFanoutNodes = 3;

int RunRole(const std::string& role) {
  RoleOptions options;
  options.bind = absl::GetFlag(FLAGS_bind);
  options.connect = absl::GetFlag(FLAGS_connect);
  options.backend = absl::GetFlag(FLAGS_backend);
  options.control = absl::GetFlag(FLAGS_control);
  options.ready_file = absl::GetFlag(FLAGS_ready_file);
  options.ipc_dir = absl::GetFlag(FLAGS_ipc_dir);
  options.topic = absl::GetFlag(FLAGS_topic);
  options.server = absl::GetFlag(FLAGS_server);
  if (role == "echo-server") return RunEchoServerRole(options);
  if (role == "echo-worker") return RunEchoWorkerRole(options);
  if (role == "zmq-proxy") return RunZmqProxyRole(options);
  if (role == "sink") return RunSinkRole(options);
#ifdef ZMESH_BENCH_HAS_ZMESH
  if (role == "zmesh-server") return RunZmeshServerRole(options);
#endif
  fprintf(stderr, "unknown role %s\n", role.c_str());
  return 2;
}

std::string PayloadName(int64_t bytes) {
  return bytes % 1024 == 0 ? absl::StrCat(bytes / 1024, " KiB") : absl::StrCat(bytes, " B");
}

// The results of one payload size; a system that was not measured has empty stats.
struct PayloadResults {
  int64_t payload_bytes = 0;
  CallStats zmesh_latency, hop_latency, direct_latency;
  CallStats zmesh_many, hop_many, direct_many;
  OneWayStats zmesh_cast, raw_cast;
  OneWayStats zmesh_cast_async;
  OneWayStats zmesh_fanout, raw_fanout;
  // "where the time goes" lines, one per case and system.
  std::vector<std::string> usage;
};

bool failed = false;

// Prints one case's figures on stderr; false when it failed.
bool Report(const char* system, const char* what, int64_t payload, const CallStats& stats) {
  fprintf(stderr, "%-5s %-22s %6s: %9.0f calls/s  p50 %8.1f us  p99 %8.1f us  (%lld calls)%s%s\n",
          system, what, PayloadName(payload).c_str(), stats.calls_per_second(),
          stats.PercentileUs(0.50), stats.PercentileUs(0.99), static_cast<long long>(stats.calls),
          stats.error.empty() ? "" : "  FAILED: ", stats.error.c_str());
  return stats.error.empty();
}

bool Report(const char* system, const char* what, int64_t payload, const OneWayStats& stats) {
  fprintf(stderr,
          "%-5s %-22s %6s: %9.0f msgs/s  (%lld messages in %.3f s; sender done after %.3f s)%s%s\n",
          system, what, PayloadName(payload).c_str(), stats.per_second(),
          static_cast<long long>(stats.messages), stats.seconds, stats.send_seconds,
          stats.error.empty() ? "" : "  FAILED: ", stats.error.c_str());
  return stats.error.empty();
}

std::string Cell(double value, bool measured, const char* format = "%.0f") {
  if (!measured) return "-";
  if (value == 0) return "FAILED";
  char text[64];
  snprintf(text, sizeof(text), format, value);
  return text;
}

// How zmesh compares with the aim: "ok" or "MISSED" with the bound.
std::string Aim(double ratio, bool at_most, double bound) {
  const bool met = at_most ? ratio <= bound : ratio >= bound;
  return absl::StrFormat("%s %.2f %s", at_most ? "<=" : ">=", bound, met ? "ok" : "MISSED");
}

// Which cases a run measures (--cases).
struct Cases {
  bool latency = true;
  bool many = true;
  bool cast = true;
  bool fanout = true;
};

// Which systems a run measured.
struct Measured {
  bool zmesh = false;
  bool raw = false;
};

// `lost` (of a one-way case that lost messages) replaces zmesh's figure with the share lost.
void PrintRow(const std::string& what, int64_t payload, const Measured& measured, double zmesh,
              double raw, double direct, bool has_direct, const std::string& aim_text,
              const char* format, const OneWayStats* lost = nullptr) {
  const bool ratio_ok = measured.zmesh && measured.raw && raw > 0;
  std::string zmesh_cell = Cell(zmesh, measured.zmesh, format);
  if (lost != nullptr && lost->lost > 0 && lost->lost_of > 0) {
    zmesh_cell = absl::StrFormat("LOST %.1f%%", 100.0 * lost->lost / lost->lost_of);
  }
  printf("%-30s %7s %11s %11s %9s %11s  %s\n", what.c_str(), PayloadName(payload).c_str(),
         zmesh_cell.c_str(), Cell(raw, measured.raw, format).c_str(),
         ratio_ok ? absl::StrFormat("%.2f", zmesh / raw).c_str() : "-",
         has_direct ? Cell(direct, measured.raw, format).c_str() : "",
         ratio_ok ? aim_text.c_str() : "");
}

void PrintTable(const std::vector<PayloadResults>& results, const Timing& timing, int callers,
                const Measured& measured, const Cases& cases) {
  char date[32];
  const time_t now = time(nullptr);
  strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
  printf("\nzmesh-bench-dataplane, %s, %ld cores, %lld ms per case after %lld ms warm-up\n", date,
         sysconf(_SC_NPROCESSORS_ONLN), static_cast<long long>(timing.duration_ms),
         static_cast<long long>(timing.warmup_ms));
  printf("%-30s %7s %11s %11s %9s %11s  %s\n", "case", "payload", "zmesh", "raw", "zmesh/raw",
         "raw no hop", "aim (zmesh/raw)");
  for (const PayloadResults& r : results) {
    const int64_t p = r.payload_bytes;
    const double latency_ratio =
        r.hop_latency.PercentileUs(0.5) > 0
            ? r.zmesh_latency.PercentileUs(0.5) / r.hop_latency.PercentileUs(0.5)
            : 0;
    if (cases.latency) {
      PrintRow("call latency p50 (us)", p, measured, r.zmesh_latency.PercentileUs(0.5),
               r.hop_latency.PercentileUs(0.5), r.direct_latency.PercentileUs(0.5), true,
               Aim(latency_ratio, /*at_most=*/true, 1.3), "%.1f");
      PrintRow("call latency p99 (us)", p, measured, r.zmesh_latency.PercentileUs(0.99),
               r.hop_latency.PercentileUs(0.99), r.direct_latency.PercentileUs(0.99), true, "",
               "%.1f");
    }
    if (cases.many) {
      PrintRow(absl::StrCat("call ", callers, " callers (calls/s)"), p, measured,
               r.zmesh_many.calls_per_second(), r.hop_many.calls_per_second(),
               r.direct_many.calls_per_second(), true, "", "%.0f");
      PrintRow(absl::StrCat("call ", callers, " callers p50 (us)"), p, measured,
               r.zmesh_many.PercentileUs(0.5), r.hop_many.PercentileUs(0.5),
               r.direct_many.PercentileUs(0.5), true, "", "%.1f");
    }
    if (cases.cast) {
      const double cast_ratio =
          r.raw_cast.per_second() > 0 ? r.zmesh_cast.per_second() / r.raw_cast.per_second() : 0;
      PrintRow("cast (msgs/s)", p, measured, r.zmesh_cast.per_second(), r.raw_cast.per_second(), 0,
               false, Aim(cast_ratio, /*at_most=*/false, 0.5), "%.0f", &r.zmesh_cast);
#ifdef ZMESH_BENCH_HAS_ZMESH
      PrintRow("cast, CastAsync (msgs/s)", p, measured, r.zmesh_cast_async.per_second(),
               r.raw_cast.per_second(), 0, false, "", "%.0f", &r.zmesh_cast_async);
#endif
    }
    if (cases.fanout) {
      PrintRow(absl::StrCat("fanout to ", kFanoutNodes, " nodes (msgs/s)"), p, measured,
               r.zmesh_fanout.per_second(), r.raw_fanout.per_second(), 0, false, "", "%.0f",
               &r.zmesh_fanout);
    }
  }
  printf(
      "raw: calls = DEALER -tcp-> zmq_proxy process (ROUTER|DEALER) -ipc-> echo worker process "
      "(the path of a zmesh CALL);\n"
      "     raw no hop = DEALER -tcp-> ROUTER echo process; cast = PUSH -tcp-> PULL process;\n"
      "     fanout = %d PUSH -tcp-> %d PULL processes, every message to each.\n"
      "zmesh/raw: latency below 1 and rates above 1 mean zmesh is faster.\n",
      kFanoutNodes, kFanoutNodes);
#ifdef ZMESH_BENCH_HAS_ZMESH
  printf(
      "cast, CastAsync: Transport::CastAsync with at most %d casts handed over and not yet "
      "reported queued\n(raw column: PUSH/PULL again). LOST x%%: the receiver never got x%% of "
      "the messages sent.\n",
      kCastAsyncWindow);
#endif
  printf(
      "\nWhere the time goes: on-CPU time (us) and context switches (cs) per message (per round "
      "trip for calls)\nof each process over the measured window (processes under 0.1 us left "
      "out):\n");
  for (const PayloadResults& r : results) {
    for (const std::string& line : r.usage) printf("  %s\n", line.c_str());
  }
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "zmesh-bench-dataplane [--duration-ms N] [--warmup-ms N] [--callers N] [--quick]\n"
      "  zmesh's data plane against raw libzmq on loopback; see bench/README.md.");
  const std::vector<std::string> positional = ParseFlags(argc, argv);
  if (positional.size() > 1) {
    fprintf(stderr, "unexpected argument: %s\n", positional[1].c_str());
    return 2;
  }
  const std::string role = absl::GetFlag(FLAGS_role);
  if (!role.empty()) return RunRole(role);

  const bool quick = absl::GetFlag(FLAGS_quick) || !absl::GetFlag(FLAGS_benchmark_min_time).empty();
  Timing timing{absl::GetFlag(FLAGS_warmup_ms), absl::GetFlag(FLAGS_duration_ms)};
  if (quick) timing = Timing{50, 200};
  const int callers = absl::GetFlag(FLAGS_callers);
  std::vector<int64_t> payload_sizes;
  for (const std::string& text : absl::GetFlag(FLAGS_payload_bytes)) {
    int64_t bytes = 0;
    if (!absl::SimpleAtoi(text, &bytes) || bytes < 0) {
      fprintf(stderr, "--payload-bytes: not a size: %s\n", text.c_str());
      return 2;
    }
    payload_sizes.push_back(bytes);
  }
  Cases cases{false, false, false, false};
  for (const std::string& name : absl::GetFlag(FLAGS_cases)) {
    if (name == "latency") {
      cases.latency = true;
    } else if (name == "many") {
      cases.many = true;
    } else if (name == "cast") {
      cases.cast = true;
    } else if (name == "fanout") {
      cases.fanout = true;
    } else {
      fprintf(stderr, "--cases: unknown case %s (latency, many, cast, fanout)\n", name.c_str());
      return 2;
    }
  }
  if (timing.duration_ms <= 0 || timing.warmup_ms < 0 || callers < 1) {
    fprintf(stderr, "--duration-ms and --callers must be positive, --warmup-ms not negative\n");
    return 2;
  }
  // A write to a child that died must fail, not kill us.
  signal(SIGPIPE, SIG_IGN);

  std::optional<testing::TempDir> temporary;
  std::string dir = absl::GetFlag(FLAGS_work_dir);
  if (dir.empty()) {
    temporary.emplace();
    dir = temporary->path();
  } else {
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    if (error) {
      fprintf(stderr, "creating %s: %s\n", dir.c_str(), error.message().c_str());
      return 1;
    }
  }

  const int64_t begin_ns = SteadyNowNs();
  zmq::context_t context;
  std::unique_ptr<RawSystem> raw;
  if (!absl::GetFlag(FLAGS_zmesh_only)) {
    absl::StatusOr<std::unique_ptr<RawSystem>> started =
        RawSystem::Start(context, dir, kFanoutNodes);
    if (!started.ok()) {
      fprintf(stderr, "starting the raw baselines: %s\n", started.status().ToString().c_str());
      return 1;
    }
    raw = std::move(*started);
  }
#ifdef ZMESH_BENCH_HAS_ZMESH
  std::unique_ptr<ZmeshSystem> zmesh;
  if (!absl::GetFlag(FLAGS_raw_only)) {
    ZmeshSystemOptions zmesh_options;
    zmesh_options.dir = dir;
    zmesh_options.server_nodes = kFanoutNodes;
    zmesh_options.proxy_prefix =
        absl::StrSplit(absl::GetFlag(FLAGS_proxy_prefix), ' ', absl::SkipEmpty());
    absl::StatusOr<std::unique_ptr<ZmeshSystem>> started =
        ZmeshSystem::Start(context, zmesh_options);
    if (!started.ok()) {
      fprintf(stderr, "starting zmesh: %s\n", started.status().ToString().c_str());
      if (raw != nullptr) (void)raw->Stop();
      return 1;
    }
    zmesh = std::move(*started);
  }
  const bool zmesh_measured = zmesh != nullptr;
#else
  const bool zmesh_measured = false;
  if (absl::GetFlag(FLAGS_zmesh_only)) {
    fprintf(stderr, "--zmesh_only: this build has no zmesh side (libzmesh not built)\n");
    return 2;
  }
#endif
  std::unique_ptr<UsageMeter> raw_meter;
  if (raw != nullptr) raw_meter = std::make_unique<UsageMeter>(raw->processes());
  std::unique_ptr<UsageMeter> zmesh_meter;
#ifdef ZMESH_BENCH_HAS_ZMESH
  if (zmesh != nullptr) zmesh_meter = std::make_unique<UsageMeter>(zmesh->processes());
#endif
  fprintf(stderr, "processes up after %.0f ms (logs in %s)\n", (SteadyNowNs() - begin_ns) / 1e6,
          dir.c_str());

  // The systems alternate within each case, so background load on the machine hits both alike.
  std::vector<PayloadResults> results;
  for (int64_t payload_bytes : payload_sizes) {
    PayloadResults r;
    r.payload_bytes = payload_bytes;
    const std::string payload(payload_bytes, 'z');
    auto note_usage = [&](const char* system, const char* what, const UsageMeter& meter,
                          int64_t messages) {
      r.usage.push_back(absl::StrFormat("%-5s %-20s %6s  %s", system, what,
                                        PayloadName(payload_bytes), meter.PerMessage(messages)));
    };
    auto calls = [&](const char* system, const char* what, CallPath& path, int n,
                     CallStats& stats) {
      UsageMeter& meter = strcmp(system, "zmesh") == 0 ? *zmesh_meter : *raw_meter;
      stats = RunCalls(path, payload, n, timing, &meter);
      failed |= !Report(system, what, payload_bytes, stats);
      note_usage(system, what, meter, stats.calls);
    };
    // A diagnostic case's failure does not fail the run unless --strict.
    auto one_way = [&](const char* system, const char* what, OneWaySender& sender,
                       const std::vector<ReceiverControl*>& receivers, OneWayStats& stats,
                       bool diagnostic = false) {
      UsageMeter& meter = strcmp(system, "zmesh") == 0 ? *zmesh_meter : *raw_meter;
      stats = RunOneWay(sender, receivers, payload, timing, &meter);
      if (!Report(system, what, payload_bytes, stats)) {
        if (!diagnostic || absl::GetFlag(FLAGS_strict)) {
          failed = true;
        } else {
          fprintf(stderr, "      (a diagnostic case: not counted as a failure without --strict)\n");
        }
      }
      note_usage(system, what, meter, stats.messages);
    };
    if (cases.latency) {
#ifdef ZMESH_BENCH_HAS_ZMESH
      if (zmesh) calls("zmesh", "call latency", zmesh->call_path(), 1, r.zmesh_latency);
#endif
      if (raw) calls("raw", "call latency 1 hop", raw->proxied_echo(), 1, r.hop_latency);
      if (raw) calls("raw", "call latency no hop", raw->direct_echo(), 1, r.direct_latency);
    }
    if (cases.many) {
#ifdef ZMESH_BENCH_HAS_ZMESH
      if (zmesh) calls("zmesh", "call many callers", zmesh->call_path(), callers, r.zmesh_many);
#endif
      if (raw) calls("raw", "call many 1 hop", raw->proxied_echo(), callers, r.hop_many);
      if (raw) calls("raw", "call many no hop", raw->direct_echo(), callers, r.direct_many);
    }
    if (cases.cast) {
#ifdef ZMESH_BENCH_HAS_ZMESH
      if (zmesh) {
        one_way("zmesh", "cast", zmesh->cast_sender(), zmesh->cast_receivers(), r.zmesh_cast);
        one_way("zmesh", "cast async", zmesh->cast_async_sender(), zmesh->cast_receivers(),
                r.zmesh_cast_async, /*diagnostic=*/true);
      }
#endif
      if (raw) {
        one_way("raw", "cast push/pull", raw->cast_sender(), raw->cast_receivers(), r.raw_cast);
      }
    }
    if (cases.fanout) {
#ifdef ZMESH_BENCH_HAS_ZMESH
      if (zmesh) {
        one_way("zmesh", "fanout", zmesh->fanout_sender(), zmesh->fanout_receivers(),
                r.zmesh_fanout);
      }
#endif
      if (raw) {
        one_way("raw", "fanout 3 push", raw->fanout_sender(), raw->fanout_receivers(),
                r.raw_fanout);
      }
    }
    results.push_back(std::move(r));
  }

  PrintTable(results, timing, callers, Measured{zmesh_measured, raw != nullptr}, cases);

#ifdef ZMESH_BENCH_HAS_ZMESH
  if (zmesh != nullptr) {
    absl::Status stopped = zmesh->Stop();
    if (!stopped.ok()) {
      fprintf(stderr, "stopping zmesh: %s\n", stopped.ToString().c_str());
      failed = true;
    }
  }
#endif
  if (raw != nullptr) {
    absl::Status stopped = raw->Stop();
    if (!stopped.ok()) {
      fprintf(stderr, "stopping the raw baselines: %s\n", stopped.ToString().c_str());
      failed = true;
    }
  }
  fprintf(stderr, "total %.1f s%s\n", (SteadyNowNs() - begin_ns) / 1e9,
          failed ? "; FAILED (see above)" : "");
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace zmesh::bench

int main(int argc, char** argv) {
  // cppzmq throws; an error nobody caught is reported rather than left to std::terminate.
  try {
    return zmesh::bench::Main(argc, argv);
  } catch (const std::exception& e) {
    fprintf(stderr, "zmesh-bench-dataplane: %s\n", e.what());
    return 1;
  }
}
