#!/usr/bin/python3
"""oslo.messaging-level benchmark: zmesh's `zmesh://` driver against RabbitMQ (`rabbit://`,
oslo.messaging's default driver) in one run, through oslo.messaging's public API only.

    /usr/bin/python3 bench/oslo_bench.py [--drivers rabbit,zmesh] [--duration S] [--count N]
        [--build-dir build] [--smoke] [--json FILE] [--zmesh-proxies 1|2] [--profile DIR]

For each driver: a private broker (RabbitMQ on 127.0.0.1 at free ports, bench/oslo/
rabbit_broker.py) or a LocalCluster (3 zmesh-directory replicas + zmesh-proxy, python/tests/
zmesh_cluster.py); then separate processes (bench/oslo/worker.py) for the RPC server (topic
`bench`), three fanout servers (topic `bench_fanout`), the notification listener, all with the
threading executor, and the client. Cases:

  CALL sequential    p50 / p99 latency of back-to-back RPCClient.call, after a warm-up
  CALL N threads     calls/s of --threads threads sharing one RPCClient
  CAST               casts/s, from the first send until the server has handled every one
  FANOUT to 3        fanout casts/s until each of the three servers has handled every one
  NOTIFY             Notifier.info/s until the listener has handled every one

Every message carries (phase, seq); receivers record what arrived, and a lost or duplicated
message fails the run (exit status 1). CPU per operation is utime+stime from /proc/<pid>/stat of
every process (client, receivers, beam.smp or zmesh-proxy, directory replicas) over the measured
window, divided by the operations. See bench/README.md.
"""

import argparse
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "oslo"))

import procs  # noqa: E402  (bench/oslo)
import rabbit_broker  # noqa: E402

PYTHON = "/usr/bin/python3"
WORKER = os.path.join(HERE, "oslo", "worker.py")
READY_TIMEOUT_S = 60.0
OP_TIMEOUT_S = 120.0
FANOUT_SERVERS = 3
CASES = ("call", "threads", "cast", "fanout", "notify")
# The aims for zmesh, as zmesh / rabbit ratios of the case's value.
AIMS = {"call_p50_ms": ("<=", 0.25), "call_threads_per_s": (">=", 2.5),
        "cast_per_s": (">=", 3.0)}


class BenchError(RuntimeError):
    pass


# --- worker processes -------------------------------------------------------------------------

class WorkerProcess:
    """A bench/oslo/worker.py child; request() sends one command and waits for its answer."""

    def __init__(self, name, args, env, log_dir):
        self.name = name
        self.log_path = os.path.join(log_dir, "%s.log" % name)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [PYTHON, WORKER] + args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, preexec_fn=procs.die_with_parent(signal.SIGKILL))
        self.pid = self.process.pid
        self._buffer = b""

    def _read_answer(self, timeout, what):
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("%s: no answer to %s within %.0f s; log %s:\n%s" % (
                    self.name, what, timeout, self.log_path, procs.tail(self.log_path)))
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    code = self.process.wait()
                    raise BenchError("%s exited (status %s) during %s; log %s:\n%s" % (
                        self.name, code, what, self.log_path, procs.tail(self.log_path)))
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer = json.loads(line)
        if "error" in answer:
            raise BenchError("%s: %s\n(log %s)" % (self.name, answer["error"], self.log_path))
        return answer

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        return self._read_answer(timeout, "start-up")

    def request(self, cmd, timeout=OP_TIMEOUT_S):
        try:
            self.process.stdin.write((json.dumps(cmd) + "\n").encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            raise BenchError("%s is gone (status %s); log %s:\n%s" % (
                self.name, self.process.poll(), self.log_path, procs.tail(self.log_path)))
        return self._read_answer(timeout, cmd["op"])

    def send_quit(self):
        """Asks it to stop its servers, clean up and exit (finish_quit() collects it)."""
        try:
            self.process.stdin.write(b'{"op": "quit"}\n')
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def finish_quit(self, timeout=30.0):
        """Waits for the answer to send_quit() and the exit; kills it if it does not come.
        Returns an error text or None."""
        try:
            self._read_answer(timeout, "quit")
            self.process.wait(timeout)
        except (BenchError, subprocess.TimeoutExpired) as e:
            self.kill()
            return "%s did not quit cleanly: %s" % (self.name, e)
        if self.process.returncode != 0:
            return "%s exited with status %d; log %s" % (self.name, self.process.returncode,
                                                         self.log_path)
        return None

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --- the systems under test -------------------------------------------------------------------

class RabbitSystem:
    """oslo's rabbit:// driver against a private RabbitMQ broker (bench/oslo/rabbit_broker.py)."""

    name = "rabbit"
    in_process = False

    def __init__(self, args, work_dir):
        # A fresh dir per run, also when --work-dir is reused.
        self.broker = rabbit_broker.RabbitBroker(tempfile.mkdtemp(prefix="rabbitmq-",
                                                                  dir=work_dir))
        self.topology = "RabbitMQ %s on 127.0.0.1" % _rabbit_version()

    def start(self):
        self.broker.start()
        self.url = self.broker.url

    def env(self, role):
        return _base_env()

    def infra_pids(self):
        return self.broker.pids()

    def stop(self):
        return self.broker.stop()


class ZmeshSystem:
    """The zmesh:// driver from <build>/python against a LocalCluster (python/tests/
    zmesh_cluster.py): 3 directory replicas and 1 or 2 proxies; with 2, the client uses proxy 0
    and every server and listener proxy 1 (the proxy column then sums both)."""

    name = "zmesh"
    in_process = False

    def __init__(self, args, work_dir):
        self.build_dir = os.path.abspath(args.build_dir)
        self.bin_dir = os.path.abspath(args.bin_dir or os.path.join(self.build_dir, "bin"))
        self.python_dir = os.path.join(self.build_dir, "python")
        if not os.path.isdir(os.path.join(self.python_dir, "zmesh")):
            raise BenchError("%s/zmesh is missing: build the Python package first "
                             "(cmake --build %s)" % (self.python_dir, args.build_dir))
        self.proxies = args.zmesh_proxies
        self.work_dir = tempfile.mkdtemp(prefix="zmesh-", dir=work_dir)  # fresh per run
        self.cluster = None
        self.topology = ("3 directory replicas, %s" % (
            "client and servers on one zmesh-proxy" if self.proxies == 1 else
            "client on proxy 0, servers on proxy 1"))

    def start(self):
        sys.path.insert(0, os.path.join(REPO, "python", "tests"))
        from zmesh_cluster import LocalCluster
        self.cluster = LocalCluster(bin_dir=self.bin_dir, proxies=self.proxies,
                                    work_dir=self.work_dir)
        self.url = self.cluster.url

    def env(self, role):
        env = _base_env()
        env["PYTHONPATH"] = self.python_dir
        ipc_dirs = self.cluster.ipc_dirs
        env["ZMESH_IPC_DIR"] = ipc_dirs[0] if role == "client" else ipc_dirs[-1]
        return env

    def infra_pids(self):
        # LocalCluster keeps its daemons in _proxies / _replicas (_Daemon.process).
        def pids(daemons):
            return [d.process.pid for d in daemons if d.process is not None]
        return {"proxy": pids(self.cluster._proxies),
                "directory": pids(self.cluster._replicas)}

    def stop(self):
        if self.cluster is None:
            return None
        try:
            self.cluster.stop()
        except Exception as e:  # ClusterError: a daemon did not exit cleanly
            return str(e)
        return None


class FakeSystem:
    """oslo.messaging's in-memory fake:// driver: client, servers and listener in ONE process
    (the driver only works within a process). Not a transport to compare with: the floor of
    what oslo.messaging itself costs per message (client + executor + dispatch + the fake
    driver's queues and JSON check) with no network, no broker and no second process. Its
    multi-threaded figures share one GIL between client and servers."""

    name = "fake"
    in_process = True

    def __init__(self, args, work_dir):
        self.topology = "oslo.messaging's fake:// driver, client and servers in one process " \
            "(the floor of oslo's own cost, no transport)"

    def start(self):
        self.url = "fake://"

    def env(self, role):
        return _base_env()

    def infra_pids(self):
        return {}

    def stop(self):
        return None


SYSTEMS = {"rabbit": RabbitSystem, "zmesh": ZmeshSystem, "fake": FakeSystem}


def _base_env():
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "HOME": os.environ.get("HOME", "/root")}
    return env


def _rabbit_version():
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "rabbitmq-server"],
                             capture_output=True, text=True, timeout=10).stdout
        return out.split("-")[0] or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


# --- one driver's run -------------------------------------------------------------------------

class CpuWindow:
    """utime+stime of groups of processes between begin() and end(), and per thread for the
    breakdown: Python threads by name (the worker names its own, `thread_names`), native ones
    (libzmesh, ZeroMQ, Erlang schedulers) by their kernel name."""

    def __init__(self, groups, thread_names=None):
        self.groups = groups  # role -> [pid]
        self.thread_names = thread_names or (lambda pid: {})

    def _read(self):
        values = {}
        threads = {}
        for role, pids in self.groups.items():
            for pid in pids:
                value = procs.cpu_seconds(pid)
                if value is None:
                    raise BenchError("%s process %d is gone" % (role, pid))
                values[(role, pid)] = value
                threads[pid] = procs.thread_cpu_seconds(pid)
        return values, threads

    def begin(self):
        self._start, self._start_threads = self._read()

    def end(self, ops):
        stop, stop_threads = self._read()
        per_role = {}
        per_process = {}
        per_thread = {}
        wakeups = {}
        for key, value in stop.items():
            used = value - self._start[key]
            per_role[key[0]] = per_role.get(key[0], 0.0) + used
            label = "%s:%d" % key
            per_process[label] = used * 1e3 / ops
            pid = key[1]
            names = self.thread_names(pid)
            groups = {}
            accounted = 0.0
            runs = 0
            for tid, (comm, seconds, scheduled) in stop_threads[pid].items():
                _, before, scheduled_before = self._start_threads[pid].get(tid, (comm, 0.0, 0))
                delta = seconds - before
                accounted += delta
                runs += scheduled - scheduled_before
                if tid in names:
                    name = "py " + re.sub(r"\d+", "N", names[tid])
                else:
                    name = re.sub(r"\d+", "N", comm)
                groups[name] = groups.get(name, 0.0) + delta
            # Threads that exited in the window, and the tick sampling of utime+stime.
            groups["(exited threads, rounding)"] = used - accounted
            per_thread[label] = {name: round(v * 1e3 / ops, 4) for name, v in
                                 sorted(groups.items(), key=lambda kv: -kv[1])
                                 if abs(v) * 1e3 / ops >= 0.0005}
            wakeups[label] = round(runs / ops, 2)
        return ({role: used * 1e3 / ops for role, used in per_role.items()},
                {"total": per_process, "threads": per_thread,
                 "thread_wakeups_per_op": wakeups})


class DriverRun:
    def __init__(self, system, args, log_dir):
        self.system = system
        self.args = args
        self.log_dir = log_dir
        self.workers = {}
        self.results = []
        self.expected = {}  # (receiver name, kind, phase) -> count it must end with

    def log(self, text):
        print("[%s] %s" % (self.system.name, text), file=sys.stderr, flush=True)

    def start_workers(self):
        url = self.system.url
        specs = [("server", ["--serve", "bench:s0"], "server")]
        specs += [("fanout%d" % i, ["--serve", "bench_fanout:f%d" % i], "server")
                  for i in range(FANOUT_SERVERS)]
        specs += [("listener", ["--listen", "bench_notifications"], "server"),
                  ("client", ["--client"], "client")]
        if self.system.in_process:
            merged = [arg for _, extra, _ in specs for arg in extra]
            specs = [("all", merged, "client")]
        for name, extra, role in specs:
            argv = ["--url", url] + extra
            if self.args.profile:
                argv += ["--profile", os.path.join(self.args.profile, "%s-%s.prof" % (
                    self.system.name, name)), "--profile-clock", self.args.profile_clock]
            self.workers[name] = WorkerProcess("%s-%s" % (self.system.name, name), argv,
                                               self.system.env(role), self.log_dir)
        for worker in self.workers.values():
            worker.wait_ready()
        if self.system.in_process:
            every = self.workers["all"]
            self.workers = {name: every for name in ["server", "listener", "client"] + [
                "fanout%d" % i for i in range(FANOUT_SERVERS)]}

    def unique_workers(self):
        unique = []
        for worker in self.workers.values():
            if worker not in unique:
                unique.append(worker)
        return unique

    def thread_names(self, pid):
        """{tid: name} of the Python threads of worker `pid` ({} for other processes)."""
        for worker in self.unique_workers():
            if worker.pid == pid:
                return {int(tid): name for tid, name in
                        worker.request({"op": "threads"})["threads"].items()}
        return {}

    def cpu_window(self, receivers):
        if self.system.in_process:
            return CpuWindow({"client": [self.workers["client"].pid]}, self.thread_names)
        groups = {"client": [self.workers["client"].pid],
                  "server": [self.workers[r].pid for r in receivers]}
        groups.update(self.system.infra_pids())
        idle = [w.pid for n, w in self.workers.items() if n != "client" and n not in receivers]
        groups["idle workers"] = idle
        return CpuWindow(groups, self.thread_names)

    def add(self, case, metric, value, unit, cpu, per_process, detail):
        row = {"driver": self.system.name, "case": case, "metric": metric, "value": value,
               "unit": unit, "cpu_ms_per_op": cpu, "cpu_ms_per_op_per_process": per_process,
               "detail": detail}
        self.results.append(row)
        return row

    def expect(self, worker, name, kind, phase, count):
        key = (name, kind, phase)
        self.expected[key] = self.expected.get(key, 0) + count

    def wait_receiver(self, worker, name, kind, phase, count):
        timeout = max(30.0, count / 50.0)
        got = self.workers[worker].request(
            {"op": "wait", "name": name, "kind": kind, "phase": phase, "count": count,
             "timeout": timeout}, timeout + 30)
        if got["count"] != count or got["dups"] or got["distinct"] != count:
            raise BenchError("%s (%s) %s phase %s: expected %d messages, got %d (%d distinct, "
                             "%d duplicates) within %.0f s" % (
                                 worker, name, kind, phase, count, got["count"],
                                 got["distinct"], got["dups"], timeout))
        return got

    # --- cases ---

    def case_call(self):
        a = self.args
        client = self.workers["client"]
        warm = client.request({"op": "call_seq", "phase": "call-warm", "duration": a.warmup})
        self.expect("server", "s0", "call", "call-warm", warm["n"])
        window = self.cpu_window(["server"])
        window.begin()
        r = client.request({"op": "call_seq", "phase": "call", "duration": a.duration})
        cpu, per_process = window.end(r["n"])
        self.expect("server", "s0", "call", "call", r["n"])
        # The two legs of each call: client start -> the server's endpoint runs (request),
        # endpoint -> the client has the reply (reply). One clock (CLOCK_MONOTONIC) for all.
        times = r.pop("times")
        arrivals = self.workers["server"].request(
            {"op": "arrivals", "name": "s0", "kind": "call", "phase": "call"})["arrivals"]
        request_legs, reply_legs = [], []
        for seq, (t0, t1) in enumerate(times):
            arrived = arrivals.get(str(seq))
            if arrived is not None:
                request_legs.append(arrived - t0)
                reply_legs.append(t1 - arrived)
        request_legs.sort()
        reply_legs.sort()
        if request_legs:
            r["request_leg_p50_ms"] = request_legs[len(request_legs) // 2] * 1e3
            r["reply_leg_p50_ms"] = reply_legs[len(reply_legs) // 2] * 1e3
        self.add("CALL sequential", "call_p50_ms", r["p50_ms"], "ms", cpu, per_process, r)
        self.add("CALL sequential", "call_p99_ms", r["p99_ms"], "ms", None, None, r)
        self.add("CALL sequential", "call_seq_per_s", r["n"] / r["elapsed_s"], "calls/s", None,
                 None, r)
        self.log("CALL sequential: %d calls, p50 %.3f ms, p99 %.3f ms; p50 of the legs: "
                 "request (call -> endpoint) %.3f ms, reply (endpoint -> caller) %.3f ms" % (
                     r["n"], r["p50_ms"], r["p99_ms"], r.get("request_leg_p50_ms", -1),
                     r.get("reply_leg_p50_ms", -1)))

    def case_threads(self):
        a = self.args
        client = self.workers["client"]
        warm = client.request({"op": "call_threads", "phase": "threads-warm",
                               "threads": a.threads, "duration": a.warmup})
        self.expect("server", "s0", "call", "threads-warm", warm["n"])
        window = self.cpu_window(["server"])
        window.begin()
        r = client.request({"op": "call_threads", "phase": "threads", "threads": a.threads,
                            "duration": a.duration})
        cpu, per_process = window.end(r["n"])
        # The caller threads exited before the window ended: their CPU (they measured it
        # themselves) is in the process total only; name it in the breakdown.
        label = "client:%d" % client.pid
        groups = per_process["threads"].get(label)
        if groups is not None and r.get("caller_cpu_s") is not None:
            callers = r["caller_cpu_s"] * 1e3 / r["n"]
            groups["py caller-N"] = round(callers, 4)
            rest = groups.pop("(exited threads, rounding)", 0.0) - callers
            if abs(rest) >= 0.0005:
                groups["(exited threads, rounding)"] = round(rest, 4)
            per_process["threads"][label] = dict(sorted(groups.items(), key=lambda kv: -kv[1]))
        self.expect("server", "s0", "call", "threads", r["n"])
        self.add("CALL %d threads" % a.threads, "call_threads_per_s", r["per_s"], "calls/s",
                 cpu, per_process, r)
        self.log("CALL %d threads: %d calls, %.0f calls/s, p50 %.3f ms" % (
            a.threads, r["n"], r["per_s"], r["p50_ms"]))

    def _one_way(self, case, metric, phase, count, send, receivers):
        """Sends `count` messages with send(phase, count) from the client, waits until every
        receiver (worker, name, kind) has all; rate = count / (last arrival - first send)."""
        warm_phase = phase + "-warm"
        warm_count = self.args.warmup_count
        self.workers["client"].request(send(warm_phase, warm_count))
        for worker, name, kind in receivers:
            self.wait_receiver(worker, name, kind, warm_phase, warm_count)
            self.expect(worker, name, kind, warm_phase, warm_count)
        window = self.cpu_window(sorted({w for w, _, _ in receivers}))
        window.begin()
        sent = self.workers["client"].request(send(phase, count))
        last = 0.0
        for worker, name, kind in receivers:
            got = self.wait_receiver(worker, name, kind, phase, count)
            self.expect(worker, name, kind, phase, count)
            last = max(last, got["last"])
        cpu, per_process = window.end(count)
        elapsed = last - sent["t0"]
        detail = {"count": count, "elapsed_s": elapsed,
                  "sender_per_s": count / (sent["t1"] - sent["t0"]),
                  "sender_s": sent["t1"] - sent["t0"]}
        self.add(case, metric, count / elapsed, "msgs/s", cpu, per_process, detail)
        self.log("%s: %d msgs in %.3f s: %.0f msgs/s (sender done after %.3f s)" % (
            case, count, elapsed, count / elapsed, detail["sender_s"]))

    def case_cast(self):
        self._one_way("CAST", "cast_per_s", "cast", self.args.count,
                      lambda phase, n: {"op": "cast", "phase": phase, "count": n},
                      [("server", "s0", "cast")])

    def case_fanout(self):
        self._one_way("FANOUT to %d" % FANOUT_SERVERS, "fanout_per_s", "fanout",
                      self.args.count,
                      lambda phase, n: {"op": "cast", "phase": phase, "count": n,
                                        "fanout": True},
                      [("fanout%d" % i, "f%d" % i, "cast") for i in range(FANOUT_SERVERS)])

    def case_notify(self):
        self._one_way("NOTIFY", "notify_per_s", "notify", self.args.count,
                      lambda phase, n: {"op": "notify", "phase": phase, "count": n},
                      [("listener", "listener", "notify")])

    def verify_totals(self):
        """Every receiver ended with exactly what was sent to it: nothing late, nothing extra."""
        problems = []
        seen = set()
        for worker in self.unique_workers():
            for name, kind, phase, st in worker.request({"op": "stats"})["stats"]:
                key = (name, kind, phase)
                seen.add(key)
                want = self.expected.get(key)
                if want is None:
                    problems.append("%s got %d unexpected %s messages (phase %s)" % (
                        name, st["count"], kind, phase))
                elif st["count"] != want or st["dups"]:
                    problems.append("%s %s phase %s: %d received (%d duplicates), %d sent" %
                                    (name, kind, phase, st["count"], st["dups"], want))
        for key, want in self.expected.items():
            if key not in seen and want:
                problems.append("%s %s phase %s: nothing received, %d sent" % (key + (want,)))
        if problems:
            raise BenchError("lost or duplicated messages:\n  " + "\n  ".join(problems))

    def run(self):
        self.log("starting (%s)" % self.system.topology)
        t0 = time.monotonic()
        self.system.start()
        self.log("%s ready in %.1f s: %s" % ("broker" if self.system.name == "rabbit" else
                                             "cluster", time.monotonic() - t0, self.system.url))
        self.start_workers()
        for case in self.args.cases:
            getattr(self, "case_" + case)()
        self.verify_totals()

    def stop(self):
        errors = []
        for worker in self.unique_workers():
            worker.send_quit()
        for worker in self.unique_workers():
            error = worker.finish_quit()
            if error:
                errors.append(error)
        error = self.system.stop()
        if error:
            errors.append(error)
        return errors

    def kill(self):
        for worker in self.unique_workers():
            worker.kill()


# --- report -----------------------------------------------------------------------------------

def _fmt(value):
    if value is None:
        return "-"
    if value >= 1000:
        return "%.0f" % value
    if value >= 100:
        return "%.1f" % value
    if value >= 10:
        return "%.2f" % value
    return "%.3f" % value


def print_table(results, out):
    fmt = "%-7s %-22s %9s %-8s %8s %8s %13s %9s"
    print("%-49s %s" % ("", "CPU ms per operation (all threads)"), file=out)
    header = fmt % ("driver", "case", "value", "unit", "client", "server", "broker/proxy",
                    "directory")
    print("%s\n%s" % (header, "-" * len(header)), file=out)
    for r in results:
        cpu = r["cpu_ms_per_op"] or {}
        infra = cpu.get("broker", cpu.get("proxy"))
        label = r["case"]
        if r["metric"].endswith("_p50_ms"):
            label += " p50"
        elif r["metric"].endswith("_p99_ms"):
            label += " p99"
        elif r["metric"] == "call_seq_per_s":
            label += " rate"
        print(fmt % (
            r["driver"], label, _fmt(r["value"]), r["unit"],
            _fmt(cpu.get("client")) if cpu else "", _fmt(cpu.get("server")) if cpu else "",
            _fmt(infra) if cpu else "", _fmt(cpu.get("directory")) if cpu else ""), file=out)


def medians(results):
    """One row per (driver, metric): the median value over the rounds (the mean of the middle
    two for an even count), the median of each CPU column, and the detail/breakdown of the
    round whose value is the (lower) median."""
    groups = {}
    for r in results:
        groups.setdefault((r["driver"], r["metric"]), []).append(r)
    merged = []
    for (driver, metric), rows in groups.items():
        ordered = sorted(rows, key=lambda r: r["value"])
        middle = dict(ordered[(len(ordered) - 1) // 2])
        middle["values"] = [r["value"] for r in rows]
        middle["value"] = statistics.median(middle["values"])
        if middle["cpu_ms_per_op"]:
            cpu = {}
            for key in middle["cpu_ms_per_op"]:
                cpu[key] = statistics.median(r["cpu_ms_per_op"].get(key, 0.0) for r in rows
                                             if r["cpu_ms_per_op"])
            middle["cpu_ms_per_op"] = cpu
        merged.append(middle)
    return merged


def print_breakdown(results, out):
    """Per case and process: CPU ms/op, thread wake-ups/op, and CPU ms/op per thread group."""
    print("\nWhere the time goes (per operation: CPU ms, thread wake-ups; CPU per thread "
          "group: 'py NAME' = Python threads, others native, by kernel name):", file=out)
    for r in results:
        detail = r["cpu_ms_per_op_per_process"]
        if not detail:
            continue
        legs = ""
        if "request_leg_p50_ms" in r["detail"]:
            legs = " (p50 of the legs: request %.3f ms, reply %.3f ms)" % (
                r["detail"]["request_leg_p50_ms"], r["detail"]["reply_leg_p50_ms"])
        print("  %s %s:%s" % (r["driver"], r["case"], legs), file=out)
        for label, total in detail["total"].items():
            if label.startswith("idle workers") and total < 0.001:
                continue
            groups = detail["threads"].get(label, {})
            text = ", ".join("%s %.3f" % (name, v) for name, v in groups.items())
            print("    %-20s %7.3f ms %6.1f wake-ups   %s" % (
                label, total, detail["thread_wakeups_per_op"].get(label, 0), text), file=out)


def ratios(results):
    by = {}
    for r in results:
        by[(r["driver"], r["metric"])] = r
    rows = []
    for r in results:
        if r["driver"] != "zmesh" or ("rabbit", r["metric"]) not in by:
            continue
        base = by[("rabbit", r["metric"])]
        ratio = r["value"] / base["value"] if base["value"] else None
        aim = AIMS.get(r["metric"])
        verdict = ""
        if aim and ratio is not None:
            ok = ratio <= aim[1] if aim[0] == "<=" else ratio >= aim[1]
            verdict = "aim %s %.2f: %s" % (aim[0], aim[1], "met" if ok else "MISSED")
        cpu_z = r["cpu_ms_per_op"]
        cpu_r = base["cpu_ms_per_op"]
        cpu_ratio = None
        if cpu_z and cpu_r:
            total_z = sum(v for k, v in cpu_z.items() if k != "idle workers")
            total_r = sum(v for k, v in cpu_r.items() if k != "idle workers")
            cpu_ratio = total_z / total_r if total_r else None
        rows.append({"case": r["case"], "metric": r["metric"], "zmesh": r["value"],
                     "rabbit": base["value"], "ratio": ratio, "aim": verdict,
                     "cpu_total_ratio": cpu_ratio})
    return rows


def print_ratios(rows, out):
    if not rows:
        return
    print("\n%-22s %-20s %10s %10s %12s %10s  %s" % (
        "case", "metric", "zmesh", "rabbit", "zmesh/rabbit", "CPU ratio", "aim"), file=out)
    for row in rows:
        print("%-22s %-20s %10s %10s %12s %10s  %s" % (
            row["case"], row["metric"], _fmt(row["zmesh"]), _fmt(row["rabbit"]),
            "%.2f" % row["ratio"] if row["ratio"] is not None else "-",
            "%.2f" % row["cpu_total_ratio"] if row["cpu_total_ratio"] is not None else "-",
            row["aim"]), file=out)


# --- main -------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See bench/README.md for what is measured and how.")
    p.add_argument("--drivers", default="rabbit,zmesh",
                   help="comma-separated, in run order: rabbit, zmesh, fake (oslo's in-memory "
                   "driver in one process: the floor of oslo's own cost; default: rabbit,zmesh)")
    p.add_argument("--cases", default=",".join(CASES),
                   help="comma-separated subset of %s" % ",".join(CASES))
    p.add_argument("--duration", type=float, default=5.0,
                   help="seconds per CALL case (default 5)")
    p.add_argument("--count", type=int, default=5000,
                   help="messages per CAST / FANOUT / NOTIFY case (default 5000)")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="seconds of unmeasured calls before each CALL case (default 1)")
    p.add_argument("--warmup-count", type=int, default=200,
                   help="unmeasured messages before each one-way case (default 200)")
    p.add_argument("--threads", type=int, default=8, help="client threads of the CALL N "
                   "threads case (default 8)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the drivers this many times, alternating, and report medians "
                   "(default 1)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny counts and durations, for CI: proves the benchmark works")
    p.add_argument("--build-dir", default=os.path.join(REPO, "build"),
                   help="zmesh build dir: daemons from <dir>/bin, package from <dir>/python "
                   "(default: build)")
    p.add_argument("--bin-dir", help="take zmesh-directory and zmesh-proxy from here instead of "
                   "<build-dir>/bin")
    p.add_argument("--zmesh-proxies", type=int, choices=(1, 2), default=1,
                   help="1: client and servers on one proxy (default); 2: client on one "
                   "proxy, servers on another")
    p.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    p.add_argument("--work-dir", help="keep logs (workers, broker, daemons) here")
    p.add_argument("--profile", metavar="DIR",
                   help="run every worker under cProfile (all threads); writes "
                   "DIR/<driver>-<worker>.prof and .prof.txt; figures are then distorted")
    p.add_argument("--profile-clock", choices=("cpu", "wall"), default="cpu")
    args = p.parse_args(argv)
    args.drivers = [d.strip() for d in args.drivers.split(",") if d.strip()]
    for d in args.drivers:
        if d not in SYSTEMS:
            p.error("unknown driver %r (known: %s)" % (d, ", ".join(SYSTEMS)))
    if len(set(args.drivers)) != len(args.drivers) or not args.drivers:
        p.error("--drivers needs each driver at most once, at least one")
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in args.cases:
        if c not in CASES:
            p.error("unknown case %r (known: %s)" % (c, ", ".join(CASES)))
    if args.smoke:
        args.duration = 0.3
        args.warmup = 0.1
        args.count = 100
        args.warmup_count = 10
    if args.duration <= 0 or args.count <= 0 or args.threads <= 0 or args.warmup < 0 or \
            args.warmup_count <= 0 or args.rounds <= 0:
        p.error("--duration, --count, --threads, --warmup-count and --rounds must be positive")
    if args.profile:
        args.profile = os.path.abspath(args.profile)
        os.makedirs(args.profile, exist_ok=True)
    return args


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    work_dir = os.path.abspath(args.work_dir) if args.work_dir else tempfile.mkdtemp(
        prefix="oslobench-", dir="/tmp")
    os.makedirs(work_dir, exist_ok=True)
    load_before = os.getloadavg()
    results = []
    failed = False
    started = time.time()
    topologies = {}
    for round_index in range(args.rounds):
        for name in args.drivers:
            if failed:
                break
            if args.rounds > 1:
                print("[%s] round %d of %d" % (name, round_index + 1, args.rounds),
                      file=sys.stderr)
            run = None
            system = None
            try:
                system = SYSTEMS[name](args, work_dir)
                topologies[name] = system.topology
                run = DriverRun(system, args, work_dir)
                run.run()
                for row in run.results:
                    row["round"] = round_index + 1
                results.extend(run.results)
            except (BenchError, rabbit_broker.BrokerError) as e:
                print("[%s] FAILED: %s" % (name, e), file=sys.stderr)
                failed = True
            except Exception:
                print("[%s] FAILED:\n%s" % (name, traceback.format_exc()), file=sys.stderr)
                failed = True
            finally:
                if run is not None:
                    for error in run.stop():
                        print("[%s] cleanup: %s" % (name, error), file=sys.stderr)
                        failed = True
                elif system is not None:
                    system.stop()
    all_results = results
    results = medians(all_results) if args.rounds > 1 else all_results
    load_after = os.getloadavg()
    print("\noslo.messaging benchmark, %s UTC, load average %.2f before / %.2f after; "
          "duration %.1f s per CALL case, %d msgs per one-way case, %d threads" % (
              time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)), load_before[0],
              load_after[0], args.duration, args.count, args.threads))
    for name, topology in topologies.items():
        print("  %s: %s" % (name, topology))
    if args.rounds > 1:
        print("  %d rounds, drivers alternating; every figure is the median over the rounds "
              "(CPU columns: per column), the breakdown is the median round's" % args.rounds)
    print()
    print_table(results, sys.stdout)
    if not args.smoke:
        print_breakdown(results, sys.stdout)
    rows = ratios(results)
    print_ratios(rows, sys.stdout)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                       "loadavg_before": load_before, "loadavg_after": load_after,
                       "args": {k: v for k, v in vars(args).items()},
                       "topology": topologies, "results": results, "ratios": rows,
                       "rounds": all_results if args.rounds > 1 else None,
                       "failed": failed}, f, indent=2)
    if failed:
        print("\nFAILED (see above); logs kept in %s" % work_dir, file=sys.stderr)
        return 1
    if not args.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
