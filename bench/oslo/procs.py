"""Process plumbing for bench/oslo_bench.py: CPU time from /proc, children that die with us,
free ports, log tails. Standard library only (Debian's /usr/bin/python3)."""

import ctypes
import os
import signal
import socket

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def cpu_seconds(pid):
    """utime + stime of every thread of process `pid` (also threads that already exited), in
    seconds, from /proc/<pid>/stat. None if the process is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_name(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def die_with_parent(sig=signal.SIGTERM, new_group=False):
    """A preexec_fn: the child gets `sig` when the process that started it dies (so an
    interrupted or crashed benchmark leaks no broker or worker)."""
    parent = os.getpid()

    def setup():
        if new_group:
            os.setpgid(0, 0)
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except OSError:
            pass
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return setup


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=30):
    try:
        with open(path, "r", errors="replace") as f:
            content = f.read().splitlines()
    except OSError as e:
        return "(no log: %s)" % e
    return "\n".join(content[-lines:])


def thread_cpu_seconds(pid):
    """{tid: (comm, seconds on CPU, times scheduled in)} of every live thread of process
    `pid`, from /proc/<pid>/task/<tid>/schedstat (nanoseconds; per-thread utime/stime are tick
    samples that undercount threads running in short bursts). "Times scheduled in" counts the
    thread's wake-ups (and preemptions): a message handed from thread to thread shows there."""
    result = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return result
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid), "rb") as f:
                fields = f.read().split()
            on_cpu_ns, runs = int(fields[0]), int(fields[2])
            with open("/proc/%d/task/%s/comm" % (pid, tid), "rb") as f:
                comm = f.read().strip().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
        result[int(tid)] = (comm, on_cpu_ns / 1e9, runs)
    return result
