#!/usr/bin/python3
"""One process of bench/oslo_bench.py: RPC servers, a notification listener and/or the client,
all through oslo.messaging's public API, driven over a side channel (stdin/stdout, one JSON
object per line) that never touches the measured transport.

    worker.py --url URL [--serve TOPIC:SERVER ...] [--listen TOPIC] [--client] [--profile FILE]

Servers use get_rpc_server(..., executor="threading"), the listener
get_notification_listener(..., executor="threading"); every message received is recorded as
(server name, kind, phase, seq) with its arrival time (time.monotonic(): CLOCK_MONOTONIC, the
same clock in every process), so the orchestrator can tell when all arrived, and whether one was
lost or duplicated. Once everything is started the worker prints {"ready": pid}.

Commands (stdin) and answers (stdout); failures answer {"error": text}:
  {"op": "stats"}                                    every (name, kind, phase) recorded so far
  {"op": "wait", "name", "kind", "phase", "count", "timeout"}
                                                     until that many arrived (or timeout)
  {"op": "call_seq", "phase", "duration", "max"}     sequential CALLs, each timed
  {"op": "call_threads", "phase", "threads", "duration"}
  {"op": "cast", "phase", "count", "fanout"}         CASTs (to topic bench) or fanout casts
                                                     (to topic bench_fanout)
  {"op": "notify", "phase", "count"}                 Notifier.info to topic bench_notifications
  {"op": "quit"}                                     stop servers/listener, cleanup, exit 0
"""

import argparse
import json
import os
import sys
import threading
import time
import traceback

CALL_TOPIC = "bench"
FANOUT_TOPIC = "bench_fanout"
NOTIFY_TOPIC = "bench_notifications"
CALL_TIMEOUT_S = 30
PAYLOAD = "x" * 100  # the argument of every message: ~100 bytes of user data


class Recorder:
    """What arrived, per (server name, kind, phase): count, distinct seqs, first/last time."""

    def __init__(self):
        self._cond = threading.Condition()
        self._phases = {}

    def record(self, name, kind, phase, seq):
        now = time.monotonic()
        with self._cond:
            key = (name, kind, phase)
            st = self._phases.get(key)
            if st is None:
                st = self._phases[key] = {"count": 0, "dups": 0, "first": now, "last": now,
                                          "seen": set()}
            if seq in st["seen"]:
                st["dups"] += 1
            else:
                st["seen"].add(seq)
                if kind == "call":
                    st.setdefault("times", {})[seq] = now
            st["count"] += 1
            st["last"] = now
            self._cond.notify_all()

    def _public(self, key):
        st = self._phases.get(key)
        if st is None:
            return {"count": 0, "dups": 0, "first": None, "last": None, "distinct": 0}
        return {"count": st["count"], "dups": st["dups"], "first": st["first"],
                "last": st["last"], "distinct": len(st["seen"])}

    def wait(self, name, kind, phase, count, timeout):
        key = (name, kind, phase)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                st = self._phases.get(key)
                if st is not None and st["count"] >= count:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._public(key)

    def arrivals(self, name, kind, phase):
        """{seq: arrival time} of the CALLs of a phase."""
        with self._cond:
            st = self._phases.get((name, kind, phase))
            return dict(st.get("times", {})) if st else {}

    def all(self):
        with self._cond:
            return [[name, kind, phase, self._public((name, kind, phase))]
                    for (name, kind, phase) in sorted(self._phases)]


class RpcEndpoint:
    def __init__(self, recorder, name):
        self._recorder = recorder
        self._name = name

    def echo(self, ctxt, phase, seq, data):
        self._recorder.record(self._name, "call", phase, seq)
        return data

    def take(self, ctxt, phase, seq, data):
        self._recorder.record(self._name, "cast", phase, seq)


class NotifyEndpoint:
    def __init__(self, recorder, name):
        self._recorder = recorder
        self._name = name

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self._recorder.record(self._name, "notify", payload["phase"], payload["seq"])


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[index]


def latency_summary(latencies):
    values = sorted(latencies)
    return {"n": len(values),
            "p50_ms": percentile(values, 0.50) * 1e3 if values else None,
            "p90_ms": percentile(values, 0.90) * 1e3 if values else None,
            "p99_ms": percentile(values, 0.99) * 1e3 if values else None,
            "max_ms": values[-1] * 1e3 if values else None,
            "mean_ms": sum(values) / len(values) * 1e3 if values else None}


# Who owns the code a profile entry is in: (layer, path fragment), first match wins.
LAYERS = [
    ("zmesh binding (_zmesh)", "zmesh._zmesh"),
    ("zmesh driver (oslo_driver.py)", "zmesh/oslo_driver.py"),
    ("zmesh client API (client.py)", "zmesh/client.py"),
    ("oslo _drivers/ (base, common; rabbit: amqpdriver...)", "oslo_messaging/_drivers/"),
    ("kombu + amqp (rabbit)", "/kombu/"),
    ("kombu + amqp (rabbit)", "/amqp/"),
    ("oslo.messaging (client, server, dispatcher, notify)", "oslo_messaging/"),
    ("futurist executor", "/futurist/"),
    ("oslo config/serialization/utils/context", "/oslo_"),
    ("json", "json/"),
    ("bench endpoint/client loop (worker.py)", "bench/oslo/worker.py"),
    ("threading/queue (stdlib)", "threading.py"),
    ("threading/queue (stdlib)", "queue.py"),
]


TRANSPARENT = "(charged to callers)"


def _layer_of(func):
    """The layer owning `func`'s self time, or TRANSPARENT for built-ins and the stdlib's
    threading/queue, whose time is charged to whoever called them."""
    filename, _, name = func
    if filename == "~":  # a built-in: name is e.g. "<built-in method zmesh._zmesh.reply>"
        if "zmesh._zmesh" in name:
            return "zmesh binding (_zmesh)"
        if "json" in name:
            return "json"
        return TRANSPARENT
    if filename.endswith(("/threading.py", "/queue.py")):
        return TRANSPARENT
    text = filename + ":" + name
    for layer, fragment in LAYERS:
        if fragment in text:
            return layer
    return "other Python (stdlib, logging, ...)"


def layer_report(raw, ops, ops_label):
    """CPU (self time) per layer. The time of built-ins and of threading/queue is charged to
    the layers that called them (through chains of such calls), in proportion to the time each
    caller spent in them."""
    memo = {}

    def owners(func, depth=0):
        """{layer: share} of who is responsible for func's time."""
        if func in memo:
            return memo[func]
        layer = _layer_of(func)
        if layer != TRANSPARENT:
            return {layer: 1.0}
        callers = raw[func][4] if func in raw else {}
        total = sum(edge[3] for edge in callers.values())
        if depth > 20 or not callers or total <= 0:
            return {"other Python (stdlib, logging, ...)": 1.0}
        shares = {}
        for caller, edge in callers.items():
            for owner, share in owners(caller, depth + 1).items():
                shares[owner] = shares.get(owner, 0.0) + share * edge[3] / total
        memo[func] = shares
        return shares

    totals = {}
    for func, (cc, nc, tt, ct, callers) in raw.items():
        if func[0] == "~" and "acquire" in func[2] and nc and tt / nc > 0.001:
            # A lock wait of more than 1 ms per call is an idle thread blocked (e.g. oslo's
            # metrics thread), not CPU: cProfile occasionally charges such waits wrongly.
            continue
        for owner, share in owners(func).items():
            totals[owner] = totals.get(owner, 0.0) + tt * share
    whole = sum(totals.values()) or 1.0
    lines = ["CPU per layer (self time; built-ins and threading/queue charged to their "
             "callers), %d %s:" % (ops, ops_label)]
    for layer, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        per_op = " %8.1f us/op" % (seconds / ops * 1e6) if ops else ""
        lines.append("  %-52s %8.3f s %5.1f%%%s" % (layer, seconds, seconds / whole * 100,
                                                    per_op))
    return "\n".join(lines) + "\n\n"


class ThreadProfiles:
    """cProfile for every thread (cProfile profiles only the thread that enables it): one
    profiler per thread, installed through threading.setprofile for threads started later (the
    executor's workers, the drivers' threads), merged at the end. clock "cpu" charges each
    function its thread's CPU time (time.thread_time), "wall" its elapsed time."""

    def __init__(self, path, clock):
        import cProfile
        self._cProfile = cProfile
        self._path = path
        self._timer = time.thread_time if clock == "cpu" else time.perf_counter
        self._lock = threading.Lock()
        self._profiles = []
        threading.setprofile(self._bootstrap)
        self._start_one()

    def _start_one(self):
        profile = self._cProfile.Profile(self._timer)
        with self._lock:
            self._profiles.append(profile)
        profile.enable()

    def _bootstrap(self, frame, event, arg):
        sys.setprofile(None)
        self._start_one()

    def dump(self, ops, ops_label):
        import pstats
        threading.setprofile(None)
        stats = None
        with self._lock:
            profiles = list(self._profiles)
        for profile in profiles:
            # No disable()/create_stats(): they would close the frames still open in the
            # profile's own thread (idle threads blocked in a lock) with THIS thread's clock.
            # The other threads are idle by now, their finished calls are what counts.
            try:
                profile.snapshot_stats()
            except Exception:
                continue
            if not getattr(profile, "stats", None):
                continue
            if stats is None:
                stats = pstats.Stats(profile)
            else:
                stats.add(profile)
        if stats is None:
            return
        stats.dump_stats(self._path)
        with open(self._path + ".txt", "w") as f:
            f.write(layer_report(stats.stats, ops, ops_label))
            text = pstats.Stats(self._path, stream=f)
            text.sort_stats("tottime").print_stats(45)
            text.sort_stats("cumulative").print_stats(60)


class Worker:
    def __init__(self, args, before_servers=lambda: None):
        # Imported here so that --help works without oslo.
        import oslo_messaging
        from oslo_config import cfg
        self.om = oslo_messaging
        conf = cfg.CONF
        # No config files: oslo's defaults (executor_thread_pool_size 64, rabbit defaults...).
        conf([], project="oslo_bench", default_config_files=[], default_config_dirs=[])
        self.conf = conf
        self.recorder = Recorder()
        self.servers = []
        self.rpc_transport = None
        self.notify_transport = None
        self.client = None
        self.notifier = None
        self.sent = 0
        if args.serve or args.client:
            self.rpc_transport = oslo_messaging.get_rpc_transport(conf, url=args.url)
        if args.listen or args.client:
            self.notify_transport = oslo_messaging.get_notification_transport(conf, url=args.url)
        # Profiling (when asked) starts here: after the imports and the driver's loading.
        before_servers()
        for spec in args.serve:
            topic, _, name = spec.partition(":")
            server = oslo_messaging.get_rpc_server(
                self.rpc_transport, oslo_messaging.Target(topic=topic, server=name),
                [RpcEndpoint(self.recorder, name)], executor="threading")
            server.start()
            self.servers.append(server)
        if args.listen:
            listener = oslo_messaging.get_notification_listener(
                self.notify_transport, [oslo_messaging.Target(topic=args.listen)],
                [NotifyEndpoint(self.recorder, "listener")], executor="threading")
            listener.start()
            self.servers.append(listener)
        if args.client:
            self.client = oslo_messaging.get_rpc_client(
                self.rpc_transport, oslo_messaging.Target(topic=CALL_TOPIC),
                timeout=CALL_TIMEOUT_S)
            self.fanout_client = self.client.prepare(topic=FANOUT_TOPIC, fanout=True)
            self.notifier = oslo_messaging.Notifier(
                self.notify_transport, publisher_id="oslo_bench", driver="messaging",
                topics=[NOTIFY_TOPIC])

    # --- client operations ---

    def call_seq(self, phase, duration, max_calls):
        client = self.client
        latencies = []
        times = []  # (start, end) per call, CLOCK_MONOTONIC like the server's arrival times
        clock = time.monotonic
        start = clock()
        end = start + duration
        seq = 0
        while seq < max_calls:
            t0 = clock()
            reply = client.call({}, "echo", phase=phase, seq=seq, data=PAYLOAD)
            t1 = clock()
            if reply != PAYLOAD:
                raise RuntimeError("call %d: wrong reply %r" % (seq, reply))
            latencies.append(t1 - t0)
            times.append((t0, t1))
            seq += 1
            if t1 >= end:
                break
        result = latency_summary(latencies)
        result["elapsed_s"] = clock() - start
        result["times"] = times
        self.sent += len(latencies)
        return result

    def call_threads(self, phase, threads, duration):
        client = self.client
        results = [None] * threads
        caller_cpu = [0.0] * threads  # each caller thread's CPU: they exit before the window ends
        errors = []
        barrier = threading.Barrier(threads + 1)
        clock = time.perf_counter

        def run(index):
            latencies = []
            cpu_start = time.thread_time()
            try:
                barrier.wait()
                end = clock() + duration
                seq = index * 10_000_000
                while True:
                    t0 = clock()
                    reply = client.call({}, "echo", phase=phase, seq=seq, data=PAYLOAD)
                    t1 = clock()
                    if reply != PAYLOAD:
                        raise RuntimeError("call %d: wrong reply %r" % (seq, reply))
                    latencies.append(t1 - t0)
                    seq += 1
                    if t1 >= end:
                        break
            except Exception:  # reported below, fails the run
                errors.append("thread %d: %s" % (index, traceback.format_exc()))
            results[index] = (latencies, clock())
            caller_cpu[index] = time.thread_time() - cpu_start

        pool = [threading.Thread(target=run, args=(i,), name="caller-%d" % i)
                for i in range(threads)]
        for t in pool:
            t.start()
        barrier.wait()
        start = clock()
        for t in pool:
            t.join()
        if errors:
            raise RuntimeError("; ".join(errors))
        all_latencies = [x for lat, _ in results for x in lat]
        elapsed = max(done for _, done in results) - start
        result = latency_summary(all_latencies)
        result["elapsed_s"] = elapsed
        result["per_s"] = len(all_latencies) / elapsed
        result["caller_cpu_s"] = sum(caller_cpu)
        self.sent += len(all_latencies)
        return result

    def cast(self, phase, count, fanout):
        client = self.fanout_client if fanout else self.client
        t0 = time.monotonic()
        for seq in range(count):
            client.cast({}, "take", phase=phase, seq=seq, data=PAYLOAD)
        self.sent += count
        return {"t0": t0, "t1": time.monotonic()}

    def notify(self, phase, count):
        notifier = self.notifier
        t0 = time.monotonic()
        for seq in range(count):
            notifier.info({}, "bench.event", {"phase": phase, "seq": seq, "data": PAYLOAD})
        self.sent += count
        return {"t0": t0, "t1": time.monotonic()}

    def operations(self):
        """How many messages this process handled (receivers) or sent (the client)."""
        if self.client is not None:
            return self.sent, "messages sent"
        return sum(st["count"] for _, _, _, st in self.recorder.all()), "messages received"

    def quit(self):
        t0 = time.monotonic()
        for server in self.servers:
            server.stop()
        for server in self.servers:
            server.wait()
        t1 = time.monotonic()
        for transport in (self.rpc_transport, self.notify_transport):
            if transport is not None:
                transport.cleanup()
        print("worker %d: servers stopped in %.3f s, transports cleaned up in %.3f s; "
              "threads left: %s" % (os.getpid(), t1 - t0, time.monotonic() - t1,
                                    [t.name for t in threading.enumerate()
                                     if t is not threading.current_thread()]),
              file=sys.stderr)

    def handle(self, cmd):
        op = cmd["op"]
        if op == "threads":
            return {"threads": {str(t.native_id): t.name for t in threading.enumerate()}}
        if op == "arrivals":
            return {"arrivals": self.recorder.arrivals(cmd["name"], cmd["kind"], cmd["phase"])}
        if op == "stats":
            return {"stats": self.recorder.all()}
        if op == "wait":
            return self.recorder.wait(cmd["name"], cmd["kind"], cmd["phase"], cmd["count"],
                                      cmd["timeout"])
        if op == "call_seq":
            return self.call_seq(cmd["phase"], cmd["duration"], cmd.get("max", 10 ** 9))
        if op == "call_threads":
            return self.call_threads(cmd["phase"], cmd["threads"], cmd["duration"])
        if op == "cast":
            return self.cast(cmd["phase"], cmd["count"], cmd.get("fanout", False))
        if op == "notify":
            return self.notify(cmd["phase"], cmd["count"])
        raise ValueError("unknown op %r" % op)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--serve", action="append", default=[], metavar="TOPIC:SERVER")
    parser.add_argument("--listen", metavar="TOPIC")
    parser.add_argument("--client", action="store_true")
    parser.add_argument("--profile", metavar="FILE")
    parser.add_argument("--profile-clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    # The side channel: answers go to the real stdout only; anything else printing to stdout
    # (it should not) would land in the log instead.
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    profiles = None

    def start_profiles():
        nonlocal profiles
        if args.profile:
            profiles = ThreadProfiles(args.profile, args.profile_clock)

    def answer(obj):
        channel.write(json.dumps(obj) + "\n")

    try:
        worker = Worker(args, start_profiles)
    except Exception:
        answer({"error": "worker start failed:\n" + traceback.format_exc()})
        return 1
    answer({"ready": os.getpid()})
    status = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            try:
                worker.quit()
                if profiles:
                    ops, label = worker.operations()
                    profiles.dump(ops, label)
                answer({"bye": os.getpid()})
            except Exception:
                answer({"error": "quit failed:\n" + traceback.format_exc()})
                status = 1
            # Everything is stopped and cleaned up; the interpreter's own shutdown would only
            # join idle driver threads (seconds with the rabbit driver), which measures nothing.
            sys.stderr.flush()
            os._exit(status)
        try:
            answer(worker.handle(cmd))
        except Exception:
            answer({"error": "%s failed:\n%s" % (cmd["op"], traceback.format_exc())})
    return status


if __name__ == "__main__":
    sys.exit(main())
