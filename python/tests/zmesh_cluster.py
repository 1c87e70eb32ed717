#!/usr/bin/python3
"""A real zmesh cluster on loopback for Python tests: 3 zmesh-directory replicas + N zmesh-proxy.

Library use (the daemons come from ``bin_dir``, default ``$ZMESH_BIN_DIR``)::

    from zmesh_cluster import LocalCluster
    with LocalCluster(proxies=2) as cluster:
        cluster.url                  # "zmesh://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/"
        cluster.directory_addresses  # ["127.0.0.1:P1", ...]
        cluster.ipc_dirs[0]          # IPC dir of proxy 0: give it to zmesh.client.Transport
        cluster.restart_proxy(1)     # SIGTERM, wait, start again on the same ports

Command line: runs one command against a fresh cluster and returns its exit status; the cluster is
always stopped afterwards::

    /usr/bin/python3 zmesh_cluster.py [--proxies N] [--replicas N] -- CMD ARGS...

CMD gets ZMESH_IPC_DIR (proxy 0), ZMESH_IPC_DIRS (all, ':'-separated), RPC_TRANSPORT_URL and
NOTIFY_TRANSPORT_URL (both = the cluster's zmesh:// URL) in its environment.

Everything lives in a fresh temp dir under /tmp (short paths: Unix socket paths are limited to 107
bytes): replica-<i>/ data dirs, replica-<i>.ready, replica-<i>.<launch>.log, and per proxy
p<i>/ (its IPC dir, proxy.ready, proxy.<launch>.log). It is removed by stop() when every daemon
stopped cleanly, kept (and named on stderr) otherwise. Daemons run in their own process group and
get SIGKILL when the thread that started them dies (PR_SET_PDEATHSIG), so a crashed test leaks no
daemon: start the cluster from a thread that outlives it (normally the main thread).

Readiness is polled with a deadline (ready files the daemons write atomically once they serve),
never guessed with sleeps.
"""

import argparse
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """A daemon failed to start, to get ready or to stop cleanly (message has its log tail)."""


def wait_child(pid, timeout_s, sleep=time.sleep):
    """Reaps the forked child `pid` (polling, `sleep` between polls: eventlet.sleep in a green
    program). Its wait status, or None when it had not exited after timeout_s: it is SIGKILLed
    and reaped then, so a hung child never outlives the test."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        sleep(0.02)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path, lines=40):
    try:
        with open(path, "r", errors="replace") as f:
            content = f.read().splitlines()
    except OSError as e:
        return "(no log: %s)" % e
    return "\n".join(content[-lines:])


def _read_ready_line(path):
    """The ready file's line once complete (the daemons write it atomically, ending in '\\n')."""
    try:
        with open(path, "r") as f:
            content = f.read()
    except FileNotFoundError:
        return None
    if not content.endswith("\n"):
        return None
    return content.strip()


def _child_setup(parent_pid):
    def setup():
        os.setpgid(0, 0)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except OSError:
            pass
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return setup


class _Daemon:
    """One daemon process: argv factory, ready file, one log per launch."""

    def __init__(self, name, work_dir, log_prefix, ready_path):
        self.name = name
        self.work_dir = work_dir
        self.log_prefix = log_prefix
        self.ready_path = ready_path
        self.process = None
        self.launches = 0
        self.log_path = None

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def launch(self, argv):
        try:
            os.unlink(self.ready_path)  # a stale file would point at a dead port
        except FileNotFoundError:
            pass
        self.log_path = "%s.%d.log" % (self.log_prefix, self.launches)
        self.launches += 1
        with open(self.log_path, "wb") as log:
            try:
                self.process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    close_fds=True, preexec_fn=_child_setup(os.getpid()))
            except OSError as e:
                raise ClusterError("starting %s (%s): %s" % (self.name, argv[0], e)) from e

    def wait_ready(self, parse, deadline):
        """Polls the ready file until parse(line) returns non-None; returns that value."""
        while True:
            code = self.process.poll()
            if code is not None:
                raise ClusterError("%s exited with status %d before it got ready; log %s:\n%s" %
                                   (self.name, code, self.log_path, _tail(self.log_path)))
            line = _read_ready_line(self.ready_path)
            if line is not None:
                value = parse(line)
                if value is not None:
                    return value
            if time.monotonic() > deadline:
                self.kill()
                raise ClusterError("%s not ready after %.0f s; log %s:\n%s" %
                                   (self.name, READY_TIMEOUT_S, self.log_path,
                                    _tail(self.log_path)))
            time.sleep(0.02)

    def stop(self):
        """SIGTERM, wait, SIGKILL fallback. Returns an error text or None when it exited with 0."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
                return "%s did not exit within %.0f s of SIGTERM (killed); log %s:\n%s" % (
                    self.name, STOP_TIMEOUT_S, self.log_path, _tail(self.log_path))
        code = self.process.returncode
        if code != 0:
            how = "was killed by signal %d" % -code if code < 0 else "exited with status %d" % code
            return "%s %s; log %s:\n%s" % (self.name, how, self.log_path, _tail(self.log_path))
        return None

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass


def _parse_proxy_ready(line):
    """ "call=P fanout=P notify=P cast=P [metrics=P ...]" -> dict of the four data ports, or
    None if incomplete. Keys the proxy may add (metrics=P with --metrics-listen) are ignored."""
    ports = {}
    for part in line.split():
        key, _, value = part.partition("=")
        if key not in ("call", "fanout", "notify", "cast"):
            continue
        if not value.isdigit() or int(value) <= 0:
            return None
        ports[key] = int(value)
    if len(ports) != 4:
        return None
    return ports


class LocalCluster:
    """A directory cluster of `replicas` replicas plus `proxies` node proxies on 127.0.0.1.

    Starts everything in __init__ (waits until every daemon wrote its ready file; raises
    ClusterError with the log tail otherwise, having stopped what it started). Use as a context
    manager or call stop().
    """

    def __init__(self, bin_dir=None, replicas=3, proxies=1, lease_ttl_ms=2000, work_dir=None):
        bin_dir = bin_dir or os.environ.get("ZMESH_BIN_DIR")
        if not bin_dir:
            raise ClusterError("no bin_dir given and ZMESH_BIN_DIR is not set "
                               "(the build's bin dir, e.g. build/bin)")
        self.bin_dir = os.path.abspath(bin_dir)
        for daemon in ("zmesh-directory", "zmesh-proxy"):
            path = os.path.join(self.bin_dir, daemon)
            if not os.access(path, os.X_OK):
                raise ClusterError("%s is missing or not executable (build it first)" % path)
        if replicas < 1:
            raise ClusterError("replicas must be at least 1")
        if proxies < 0:
            raise ClusterError("proxies must not be negative")
        self.lease_ttl_ms = int(lease_ttl_ms)
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="zmc-", dir="/tmp")
        os.makedirs(self.work_dir, exist_ok=True)
        self._replicas = []
        self._proxies = []
        self._proxy_ports = []
        self._stopped = False
        try:
            self._start_directory(replicas)
            for i in range(proxies):
                self._add_proxy(i)
        except BaseException:
            self._stop_all(report=False)
            raise

    # --- public API ---

    @property
    def directory_addresses(self):
        return list(self._directory_addresses)

    @property
    def url(self):
        return "zmesh://%s/" % ",".join(self._directory_addresses)

    @property
    def ipc_dirs(self):
        return [os.path.join(self.work_dir, "p%d" % i) for i in range(len(self._proxies))]

    def proxy_log(self, i):
        return self._proxies[i].log_path

    def proxy_pid(self, i):
        """Process id of proxy i (e.g. to SIGSTOP it: a node that hangs without dying)."""
        return self._proxies[i].process.pid

    def proxy_running(self, i):
        return self._proxies[i].running

    def stop_proxy(self, i):
        """SIGTERM proxy i and wait for it (ClusterError if it does not exit with status 0)."""
        error = self._proxies[i].stop()
        if error:
            raise ClusterError(error)

    def kill_proxy(self, i):
        """SIGKILL proxy i (a crash: its records stay until its lease expires). Deliberate, so
        stop() does not report it."""
        self._proxies[i].kill()
        self._proxies[i].process = None

    def start_proxy(self, i):
        """Starts proxy i again (same IPC dir, same ports as its first launch) and waits for it."""
        if self._proxies[i].running:
            raise ClusterError("proxy %d is still running" % i)
        self._launch_proxy(i)

    def restart_proxy(self, i):
        if self._proxies[i].running:
            self.stop_proxy(i)
        self.start_proxy(i)

    def stop(self):
        """Stops proxies then replicas (SIGTERM, wait, SIGKILL fallback). Raises ClusterError
        naming every daemon that did not exit cleanly, with its log tail."""
        if self._stopped:
            return
        self._stop_all(report=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # Do not mask the test's own exception with a stop error; print it instead.
        try:
            self.stop()
        except ClusterError as e:
            if exc_type is None:
                raise
            print("zmesh_cluster: %s" % e, file=sys.stderr)
        return False

    # --- internals ---

    def _bin(self, name):
        return os.path.join(self.bin_dir, name)

    def _start_directory(self, replicas):
        grpc = ["127.0.0.1:%d" % _free_port() for _ in range(replicas)]
        raft = ["127.0.0.1:%d" % _free_port() for _ in range(replicas)]
        initial = ",".join("%d=%s" % (i + 1, raft[i]) for i in range(replicas))
        self._directory_addresses = grpc
        for i in range(replicas):
            rid = i + 1
            base = os.path.join(self.work_dir, "replica-%d" % rid)
            daemon = _Daemon("zmesh-directory replica %d" % rid, self.work_dir, base,
                             base + ".ready")
            self._replicas.append(daemon)
            os.makedirs(base, exist_ok=True)
            daemon.launch([
                self._bin("zmesh-directory"), "--data-dir", base, "--id", str(rid),
                "--listen", grpc[i], "--raft-listen", raft[i], "--ready-file", daemon.ready_path,
                "--initial-cluster", initial])
        deadline = time.monotonic() + READY_TIMEOUT_S
        for daemon in self._replicas:
            daemon.wait_ready(lambda line: line or None, deadline)

    def _add_proxy(self, i):
        ipc_dir = os.path.join(self.work_dir, "p%d" % i)
        os.makedirs(ipc_dir, exist_ok=True)
        self._proxies.append(_Daemon("zmesh-proxy %d" % i, ipc_dir,
                                     os.path.join(ipc_dir, "proxy"),
                                     os.path.join(ipc_dir, "proxy.ready")))
        self._proxy_ports.append(None)
        self._launch_proxy(i)

    def _launch_proxy(self, i):
        daemon = self._proxies[i]
        ports = self._proxy_ports[i] or {"call": 0, "fanout": 0, "notify": 0, "cast": 0}
        daemon.launch([
            self._bin("zmesh-proxy"), "--directory", ",".join(self._directory_addresses),
            "--node-name", "node-%d" % i, "--advertise-host", "127.0.0.1", "--bind", "127.0.0.1",
            "--ipc-dir", daemon.work_dir,
            "--call-port", str(ports["call"]), "--fanout-port", str(ports["fanout"]),
            "--notify-port", str(ports["notify"]), "--cast-port", str(ports["cast"]),
            "--lease-ttl-ms", str(self.lease_ttl_ms), "--ready-file", daemon.ready_path])
        # A restart reuses the first launch's ports, so peers that know the node still reach it.
        self._proxy_ports[i] = daemon.wait_ready(_parse_proxy_ready,
                                                 time.monotonic() + READY_TIMEOUT_S)

    def _stop_all(self, report):
        self._stopped = True
        errors = []
        for daemon in reversed(self._proxies):
            error = daemon.stop()
            if error:
                errors.append(error)
        for daemon in reversed(self._replicas):
            error = daemon.stop()
            if error:
                errors.append(error)
        if errors:
            print("zmesh_cluster: work dir kept: %s" % self.work_dir, file=sys.stderr)
            if report:
                raise ClusterError("\n\n".join(errors))
        elif self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Run CMD against a fresh local zmesh cluster (3 directory replicas + proxies "
        "on 127.0.0.1); exit with CMD's status.",
        usage="%(prog)s [--proxies N] [--replicas N] [--bin-dir DIR] -- CMD ARGS...")
    parser.add_argument("--proxies", type=int, default=1)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--lease-ttl-ms", type=int, default=2000)
    parser.add_argument("--bin-dir", default=None, help="default: $ZMESH_BIN_DIR")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("no command given (after --)")
    if args.proxies < 1:
        parser.error("--proxies must be at least 1 (CMD gets proxy 0's IPC dir)")
    try:
        cluster = LocalCluster(bin_dir=args.bin_dir, replicas=args.replicas,
                               proxies=args.proxies, lease_ttl_ms=args.lease_ttl_ms)
    except ClusterError as e:
        print("zmesh_cluster: %s" % e, file=sys.stderr)
        return 2
    status = 1
    try:
        env = dict(os.environ)
        env["ZMESH_IPC_DIR"] = cluster.ipc_dirs[0]
        env["ZMESH_IPC_DIRS"] = ":".join(cluster.ipc_dirs)
        env["RPC_TRANSPORT_URL"] = cluster.url
        env["NOTIFY_TRANSPORT_URL"] = cluster.url
        # Forward SIGTERM/SIGINT to the command; the cluster is stopped once it ends.
        child = subprocess.Popen(command, env=env)
        forward = lambda signum, frame: child.send_signal(signum)
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        status = child.wait()
        if status < 0:
            status = 128 - status
    except OSError as e:
        print("zmesh_cluster: cannot run %s: %s" % (command[0], e), file=sys.stderr)
        status = 127
    finally:
        try:
            cluster.stop()
        except ClusterError as e:
            print("zmesh_cluster: %s" % e, file=sys.stderr)
            if status == 0:
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
