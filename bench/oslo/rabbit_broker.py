"""A private RabbitMQ broker on 127.0.0.1 for bench/oslo_bench.py (Debian rabbitmq-server 3.10).

Nothing of a system instance is used or touched: the broker runs /usr/lib/rabbitmq/bin/
rabbitmq-server (not the /usr/sbin wrapper, which switches to the `rabbitmq` user and
/var/lib/rabbitmq) with every location in a temporary dir:

- its own epmd on a free loopback port (ERL_EPMD_PORT / ERL_EPMD_ADDRESS), started here in the
  foreground so it is stopped with the broker;
- HOME with its own .erlang.cookie, an empty rabbitmq-env.conf (RABBITMQ_CONF_ENV_FILE: the
  system's /etc/rabbitmq/rabbitmq-env.conf is not read), no config file, no plugins;
- node name oslobench-<pid>@localhost, AMQP on a free 127.0.0.1 port, Erlang distribution on a
  free port bound to 127.0.0.1 (-kernel inet_dist_use_interface);
- MNESIA_BASE / LOG_BASE / PID_FILE under the temp dir.

Readiness: the pid file (the beam.smp OS pid, written by the node while it boots) and an AMQP
0-9-1 handshake on the port (the listener opens at the very end of the boot), polled with a
deadline. stop(): SIGTERM to the start script (it stops the node and waits), SIGKILL to the
process group after a deadline; every child also gets SIGTERM if the benchmark dies.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import procs

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EPMD = "/usr/bin/epmd"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class BrokerError(RuntimeError):
    pass


def _amqp_answers(port):
    """True once the broker answers an AMQP 0-9-1 protocol header with a method frame
    (Connection.Start)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            data = s.recv(7)
            return len(data) == 7 and data[0] == 1
    except OSError:
        return False


class RabbitBroker:
    def __init__(self, work_dir=None):
        for path in (RABBITMQ_SERVER, EPMD):
            if not os.access(path, os.X_OK):
                raise BrokerError("%s is missing: install Debian's rabbitmq-server" % path)
        self._own_dir = work_dir is None
        self.dir = work_dir or tempfile.mkdtemp(prefix="oslobench-rabbit-", dir="/tmp")
        self.amqp_port = None
        self.beam_pid = None
        self._epmd = None
        self._server = None

    @property
    def url(self):
        return "rabbit://guest:guest@127.0.0.1:%d/" % self.amqp_port

    @property
    def log_path(self):
        return os.path.join(self.dir, "rabbitmq-server.log")

    def pids(self):
        """Processes whose CPU the benchmark charges to the broker."""
        return {"broker": [self.beam_pid]}

    def start(self):
        try:
            self._start()
        except BaseException:
            self.stop(quiet=True)
            raise

    def _start(self):
        home = os.path.join(self.dir, "home")
        os.makedirs(home, exist_ok=True)
        cookie = os.path.join(home, ".erlang.cookie")
        with open(cookie, "w") as f:
            f.write("OSLOBENCH%dCOOKIE" % os.getpid())
        os.chmod(cookie, 0o400)
        env_conf = os.path.join(self.dir, "rabbitmq-env.conf")
        open(env_conf, "w").close()
        plugins = os.path.join(self.dir, "enabled_plugins")
        with open(plugins, "w") as f:
            f.write("[].\n")
        epmd_port = procs.free_port()
        self.amqp_port = procs.free_port()
        dist_port = procs.free_port()
        with open(os.path.join(self.dir, "epmd.log"), "wb") as log:
            self._epmd = subprocess.Popen(
                [EPMD, "-port", str(epmd_port), "-address", "127.0.0.1"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=procs.die_with_parent(signal.SIGTERM))
        pid_file = os.path.join(self.dir, "rabbitmq.pid")
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": home,
            "LANG": "C.UTF-8",
            "ERL_EPMD_PORT": str(epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONF_ENV_FILE": env_conf,
            "RABBITMQ_CONFIG_FILE": os.path.join(self.dir, "rabbitmq"),  # does not exist
            "RABBITMQ_ENABLED_PLUGINS_FILE": plugins,
            "RABBITMQ_NODENAME": "oslobench-%d@localhost" % os.getpid(),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": os.path.join(self.dir, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.dir, "log"),
            "RABBITMQ_LOGS": "-",  # to stdout, i.e. our log file
            "RABBITMQ_PID_FILE": pid_file,
        }
        with open(self.log_path, "wb") as log:
            # Own process group (stop() can SIGKILL the script, beam.smp and its port helpers
            # together); the script gets SIGTERM if we die, which stops the node.
            self._server = subprocess.Popen(
                [RABBITMQ_SERVER], cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=procs.die_with_parent(signal.SIGTERM, new_group=True))
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            code = self._server.poll()
            if code is not None:
                raise BrokerError("rabbitmq-server exited with status %d while starting; log %s:"
                                  "\n%s" % (code, self.log_path, procs.tail(self.log_path)))
            if self.beam_pid is None:
                try:
                    with open(pid_file) as f:
                        text = f.read().strip()
                    if text.isdigit():
                        self.beam_pid = int(text)
                except OSError:
                    pass
            if self.beam_pid is not None and _amqp_answers(self.amqp_port):
                break
            if time.monotonic() > deadline:
                raise BrokerError("rabbitmq-server not ready after %.0f s; log %s:\n%s" %
                                  (START_TIMEOUT_S, self.log_path, procs.tail(self.log_path)))
            time.sleep(0.1)
        name = procs.process_name(self.beam_pid)
        if name != "beam.smp":
            raise BrokerError("pid file %s names pid %d (%s), not beam.smp" %
                              (pid_file, self.beam_pid, name))

    def stop(self, quiet=False):
        """Stops the node, then epmd. Returns an error text (or None) unless quiet."""
        error = None
        if self._server is not None and self._server.poll() is None:
            self._server.send_signal(signal.SIGTERM)
            try:
                self._server.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                error = "rabbitmq-server did not stop within %.0f s of SIGTERM (killed)" % (
                    STOP_TIMEOUT_S)
        if self._server is not None:
            # Whatever is left of the group (beam.smp, erl_child_setup, inet_gethost).
            try:
                os.killpg(self._server.pid, signal.SIGKILL)
            except OSError:
                pass
            self._server = None
        if self._epmd is not None:
            if self._epmd.poll() is None:
                self._epmd.terminate()
                try:
                    self._epmd.wait(5)
                except subprocess.TimeoutExpired:
                    self._epmd.kill()
                    self._epmd.wait()
            self._epmd = None
        if error and not quiet:
            error += "; log %s:\n%s" % (self.log_path, procs.tail(self.log_path))
        if not error and self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return None if quiet else error
