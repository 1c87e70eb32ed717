"""Synchronous, green-aware Python API over libzmesh (the binding ``zmesh._zmesh``).

Every method here waits for its libzmesh operation by ``select.select()`` on an eventfd that
the binding makes readable when the operation is done. Under plain threads that is the real
``select`` (the GIL is released while it waits); after ``eventlet.monkey_patch()`` it is
eventlet's green ``select``, so a waiting call only suspends its greenthread and the hub keeps
running every other one. Nothing in the binding blocks, and no C++ thread ever calls Python.

Routing, round-robin, retries, deadlines, heartbeats and the wire format are libzmesh's: this
module only converts arguments (seconds to milliseconds, ``Target`` to strings) and waits.

Example::

    import zmesh
    with zmesh.Transport("/run/zmesh") as transport:
        inbox = transport.serve(zmesh.Target(topic="compute", server="node-1"))
        ...
        payload, remote_error = transport.call(
            zmesh.Target(topic="compute", server="node-1"), b"request", timeout_s=10)

    # on the server side
    for message in inbox.get(timeout_s=1.0, max=16):
        if message.kind == "call":
            message.reply(b"answer")          # or message.fail(b"error text")

Errors: a failed operation raises ``zmesh.Error`` (``.code`` is the status code name such as
``"UNAVAILABLE"``, ``.message`` the text) or one of its subclasses: ``Timeout``
(DEADLINE_EXCEEDED), ``NotFound`` (NOT_FOUND), ``Unavailable`` (UNAVAILABLE),
``InvalidArgument`` (INVALID_ARGUMENT). A handler's failure (``Message.fail``) is not an
error: ``call`` returns ``(error_payload, True)``.

fork(): a Transport (and its inboxes) belongs to the process that created it. A child of
``os.fork()`` must create its own; the parent's objects raise ``Unavailable`` there and are
leaked, never closed, when the child drops them.
"""

import collections
import errno
import math
import os
import select
import threading
import time

from zmesh import _zmesh
from zmesh._zmesh import Error, InvalidArgument, NotFound, Timeout, Unavailable

__all__ = [
    "DEFAULT_EXCHANGE",
    "DEFAULT_IPC_DIR",
    "Error",
    "Inbox",
    "InvalidArgument",
    "NotFound",
    "Target",
    "Timeout",
    "Transport",
    "Unavailable",
    "wait",
]

DEFAULT_EXCHANGE = "openstack"
DEFAULT_IPC_DIR = "/run/zmesh"


class Target(collections.namedtuple("Target", ("exchange", "topic", "server"))):
    """Where a message goes: (exchange, topic, server).

    ``exchange`` None or empty means "openstack"; ``server`` None or empty means "one server of
    the topic group" (round-robin, chosen by libzmesh). ``topic`` is required.
    """

    __slots__ = ()

    def __new__(cls, exchange=DEFAULT_EXCHANGE, topic=None, server=""):
        if not topic:
            raise ValueError("zmesh.Target: topic is required")
        return super().__new__(cls, exchange or DEFAULT_EXCHANGE, topic, server or "")


def _ms(seconds, name):
    """Seconds (int or float) to whole milliseconds, rounded up so a deadline never shrinks."""
    if seconds is None or isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError("zmesh: %s must be a number of seconds, not %r" % (name, seconds))
    return int(math.ceil(seconds * 1000))


def _select(fd, timeout_s):
    """Waits once for fd to be readable (None: no timeout); EINTR is just an early return.

    poll() when the select module has it (no FD_SETSIZE limit on fd numbers); eventlet's
    monkey_patch() removes select.poll and makes select.select green, so under eventlet this is
    the green select. Both are looked up at each call, not at import time.
    """
    try:
        poll = getattr(select, "poll", None)
        if poll is not None:
            poller = poll()
            poller.register(fd, select.POLLIN)
            poller.poll(None if timeout_s is None else int(math.ceil(timeout_s * 1000)))
        else:
            select.select([fd], [], [], timeout_s)
    except InterruptedError:
        pass
    except OSError as e:
        if e.errno != errno.EINTR:
            raise


def _wait_readable(fd, ready, timeout_s):
    """Waits until ready() is true, sleeping in select() on fd. False if timeout_s passed first."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not ready():
        remaining = None
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
        _select(fd, remaining)
    return True


def wait(pending, timeout_s=None):
    """Waits for a ``_zmesh.Pending`` and returns its result (or raises its error).

    Green under eventlet, GIL-free under threads. With ``timeout_s``, raises ``zmesh.Timeout``
    once that many seconds passed; the operation itself keeps running (libzmesh enforces the
    operation's own deadline).
    """
    if not _wait_readable(pending.fileno(), pending.done, timeout_s):
        raise Timeout("DEADLINE_EXCEEDED",
                      "zmesh: gave up waiting after %s s (the operation continues)" % timeout_s)
    return pending.result()


class Inbox(object):
    """What a server (``Transport.serve``) or a notification listener (``Transport.listen``)
    received. Messages are ``_zmesh.Message``: ``kind`` ("call", "cast", "fanout", "notify"),
    ``payload`` (bytes), ``exchange``, ``topic``, ``server``, ``sender``, ``message_id``, and for
    calls ``reply(bytes)``, ``fail(bytes)``, ``heartbeat()`` (no-ops for other kinds; the first
    reply or fail counts).

    A CALL holds one of the server's libzmesh worker threads until it is answered, and libzmesh
    sends heartbeats meanwhile. A popped CALL that Python drops without answering fails with
    ``_zmesh.DROPPED_ERROR``. While ``queue_limit`` messages wait unpopped, the server stops
    taking new ones and its senders are slowed down (nothing is dropped).
    """

    def __init__(self, raw):
        self._raw = raw
        # One waiter in select() per fd at a time (eventlet refuses two greenthreads reading one
        # fd); others wait for the lock. Created lazily so it is green if monkey_patch() came
        # after this module was imported.
        self._lock = None
        self._lock_guard = threading.Lock()

    @property
    def raw(self):
        """The ``_zmesh.Inbox``."""
        return self._raw

    def fileno(self):
        """Readable while messages wait (and forever once stopped)."""
        return self._raw.fileno()

    @property
    def stopped(self):
        return self._raw.stopped

    @property
    def dropped_on_stop(self):
        """One-way messages that were waiting unpopped when the inbox stopped (dropped)."""
        return self._raw.dropped_on_stop

    def __len__(self):
        return len(self._raw)

    def _waiter_lock(self):
        if self._lock is None:
            with self._lock_guard:
                if self._lock is None:
                    self._lock = threading.Lock()
        return self._lock

    def pop(self, max=1):  # noqa: A002 (the API's name)
        """Up to ``max`` waiting messages, never waiting; [] when none (or once stopped)."""
        return self._raw.pop(max)

    def get(self, timeout_s=None, max=1):  # noqa: A002 (the API's name)
        """Up to ``max`` messages, waiting up to ``timeout_s`` (None: until one arrives or the
        inbox stops) for the first. [] on timeout, and at once when the inbox is stopped (also
        when ``stop()`` is called by another thread while this waits: stopping makes the fd
        readable)."""
        messages = self._raw.pop(max)
        if messages or self._raw.stopped or timeout_s == 0:
            return messages
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        lock = self._waiter_lock()
        if not lock.acquire(True, -1 if timeout_s is None else (timeout_s if timeout_s > 0 else 0)):
            return []
        try:
            while True:
                messages = self._raw.pop(max)
                if messages or self._raw.stopped:
                    return messages
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                _select(self._raw.fileno(), remaining)
        finally:
            lock.release()

    def stop(self, drain_error=b"", grace_s=0):
        """Stops receiving: libzmesh refuses new messages (senders fail over to other members),
        withdraws the target and waits for the CALLs already popped to be answered (or their
        Message collected). Unpopped CALLs fail with ``drain_error`` (remote_error) so their
        callers do not wait for their deadline; other unpopped messages are dropped and counted
        (``dropped_on_stop``). With ``grace_s`` = 0 that happens first; with ``grace_s`` > 0,
        queued messages stay poppable (keep calling get/pop from another thread) until the
        withdrawal is done or ``grace_s`` passed."""
        wait(self._raw.stop_async(drain_error, _ms(grace_s, "grace_s") if grace_s else 0))


class Transport(object):
    """A connection to the node's zmesh-proxy (libzmesh ``Transport``).

    ``ipc_dir`` None means ``$ZMESH_IPC_DIR``, else "/run/zmesh". Raises ``zmesh.Unavailable``
    when no proxy answers within ``connect_timeout_s``. Thread- and greenthread-safe.
    """

    def __init__(self, ipc_dir=None, description="", connect_timeout_s=5, max_payload_bytes=0,
                 peer_connect_timeout_s=None):
        if ipc_dir is None:
            ipc_dir = os.environ.get("ZMESH_IPC_DIR") or DEFAULT_IPC_DIR
        peer_connect_timeout_ms = 0  # libzmesh's default (1 s)
        if peer_connect_timeout_s is not None:
            peer_connect_timeout_ms = _ms(peer_connect_timeout_s, "peer_connect_timeout_s")
        self._raw = wait(_zmesh.Transport.create_async(
            ipc_dir, description, _ms(connect_timeout_s, "connect_timeout_s"),
            max_payload_bytes, peer_connect_timeout_ms))
        self._closed = False

    @property
    def raw(self):
        """The ``_zmesh.Transport``."""
        return self._raw

    @property
    def instance_id(self):
        return self._raw.instance_id

    @property
    def node_name(self):
        return self._raw.node_name

    @property
    def proxy_directory(self):
        """The directory replicas ("HOST:PORT") the local proxy uses (its --directory)."""
        return list(self._raw.proxy_directory)

    def stats(self):
        return self._raw.stats()

    def call(self, target, payload, timeout_s, call_monitor_timeout_s=None, at_least_once=False):
        """CALL: returns (reply payload, remote_error). Raises Timeout at ``timeout_s`` (or when
        ``call_monitor_timeout_s`` passes without a reply or heartbeat), NotFound at once with
        ``at_least_once`` when no server is known."""
        monitor_ms = 0
        if call_monitor_timeout_s:
            monitor_ms = _ms(call_monitor_timeout_s, "call_monitor_timeout_s")
        return wait(self._raw.call_async(target.exchange, target.topic, target.server, payload,
                                         _ms(timeout_s, "timeout_s"), monitor_ms,
                                         bool(at_least_once)))

    def cast(self, target, payload, timeout_s=30, acknowledged=False, ack_timeout_s=1.0):
        """CAST: returns once queued (or, with ``acknowledged``, once the server handled it)."""
        wait(self._raw.cast_async(target.exchange, target.topic, target.server, payload,
                                  _ms(timeout_s, "timeout_s"), bool(acknowledged),
                                  _ms(ack_timeout_s, "ack_timeout_s")))

    def fanout(self, exchange, topic, payload):
        """FANOUT to every server of (exchange, topic) on every node; returns once queued."""
        wait(self._raw.fanout_async(exchange or DEFAULT_EXCHANGE, topic, payload))

    def notify(self, exchange, topic, priority, payload):
        """NOTIFY "<topic>.<priority>": one copy per listener pool."""
        wait(self._raw.notify_async(exchange or DEFAULT_EXCHANGE, topic, priority, payload))

    def serve(self, target, threads=64, queue_limit=1000):
        """Starts a server on ``target`` (server name required); returns its Inbox once the
        directory knows it."""
        return Inbox(wait(self._raw.start_server_async(target.exchange, target.topic,
                                                       target.server, threads, queue_limit)))

    def listen(self, targets, pool="", queue_limit=1000):
        """Listens to notifications: ``targets`` is a list of (exchange, topic, priority)."""
        pairs = [(exchange or DEFAULT_EXCHANGE, topic, priority)
                 for exchange, topic, priority in targets]
        return Inbox(wait(self._raw.start_listener_async(pairs, pool or "", queue_limit)))

    def close(self):
        """Stops this transport's inboxes (their pending calls fail) and closes it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        wait(self._raw.close_async())

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
