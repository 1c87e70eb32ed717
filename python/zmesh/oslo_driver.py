"""oslo.messaging driver for zmesh: ``transport_url = zmesh://dir1:9500,dir2:9500,dir3:9500/``.

Loaded by oslo.messaging through the ``oslo.messaging.drivers`` entry point ``zmesh`` (see the
package's dist-info). It maps oslo.messaging's patterns onto libzmesh through ``zmesh.client``;
routing, round-robin, retries, heartbeats, flow control and the wire format are libzmesh's job,
this module only translates:

- ``RPCClient.call``  -> ``Transport.call`` (timeout, call_monitor_timeout, at_least_once)
- ``RPCClient.cast``  -> ``Transport.cast`` (or ``Transport.fanout`` for ``fanout=True`` targets)
- ``Notifier``        -> ``Transport.notify`` (``"<topic>.<priority>"`` split at the last dot)
- RPC server          -> ``Transport.serve(exchange, topic, server)`` (gets the topic's group
  calls/casts, the ones for its server name, and fanouts)
- notification listener -> ``Transport.listen(pairs, pool)``

Messages are one JSON document (oslo_serialization.jsonutils) ``{"ctxt": ..., "msg": ...}``;
replies ``{"result": ...}``; failures are oslo's serialized remote exception, sent with
``Message.fail`` and re-raised by the caller through ``deserialize_remote_exception`` with the
transport's ``allowed_remote_exmods``.

The native Transport is created on first use and recreated when the process id changed (services
create their transport, then fork workers): a child never uses its parent's native objects, it
keeps references to them so they are never even garbage-collected there.

Configuration: group ``[oslo_messaging_zmesh]`` (``ipc_dir``, ``server_threads``,
``cast_timeout``, ``cast_acknowledged``, ``connect_timeout``). See docs/oslo-messaging.md.
"""

import collections
import logging
import os
import select
import sys
import threading
import time

from oslo_config import cfg
from oslo_serialization import jsonutils

import oslo_messaging
from oslo_messaging._drivers import base
from oslo_messaging._drivers import common
from oslo_messaging import exceptions as messaging_exceptions

import zmesh
from zmesh import client

LOG = logging.getLogger(__name__)

DEFAULT_DIRECTORY_PORT = 9500
# oslo's timeout=None means "wait for ever"; libzmesh wants a deadline: 30 days.
NO_TIMEOUT_S = 30 * 24 * 3600.0
# After a listener is stopped, keep handing over what is still queued until the native stop
# (which withdraws the target) is done, at most this long.
STOP_GRACE_S = 2.0
# How long cleanup() waits for a listener's native stop (it waits for running handlers, i.e. for
# oslo's executor to answer the calls it took).
CLEANUP_WAIT_S = 60.0
# libzmesh's default payload limit (zmesh/types.h kMaxPayloadBytes).
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
# Poll period of a listener whose transport was cleaned up under a running oslo server.
IDLE_POLL_S = 1.0
# Messages taken from the native inbox at once (handed to oslo one by one).
POP_BATCH = 16

zmesh_opts = [
    cfg.StrOpt('ipc_dir',
               default=os.environ.get('ZMESH_IPC_DIR') or '/run/zmesh',
               sample_default='$ZMESH_IPC_DIR or /run/zmesh',
               help='Directory holding the IPC sockets of the local zmesh-proxy (the node\'s '
                    'proxy started with --ipc-dir). The default comes from the environment '
                    'variable ZMESH_IPC_DIR when set, else /run/zmesh.'),
    cfg.IntOpt('server_threads', default=64, min=1,
               help='Native worker threads per RPC server: how many calls one server can hold '
                    'open at once while oslo\'s executor handles them (like '
                    'executor_thread_pool_size). A call holds a worker until it is answered.'),
    cfg.FloatOpt('cast_timeout', default=30.0, min=0.001,
                 help='Seconds a cast may wait for a server of its target to exist and for room '
                      'in the send queue (or, with cast_acknowledged, for the acknowledgement). '
                      'After it the cast raises MessageDeliveryFailure; a cast is never dropped '
                      'silently.'),
    cfg.BoolOpt('cast_acknowledged', default=False,
                help='Wait for the server to acknowledge each cast (it is in the server '
                     'process); unacknowledged casts are resent, to the next member of a group, '
                     'until cast_timeout. Slower, survives a server crash between send and '
                     'receipt.'),
    cfg.FloatOpt('connect_timeout', default=5.0, min=0.001,
                 help='Seconds to wait for the local zmesh-proxy when the driver connects (on '
                      'first use, and again in a forked child).'),
    cfg.FloatOpt('peer_connect_timeout', default=1.0, min=0.001,
                 help='Seconds a connection to another node\'s proxy may take to complete its '
                      'handshake; after that the node is treated as down: group calls, casts '
                      'and notifications go to other members, and what was queued for it is '
                      'resent to them. Raise it for links whose TCP connect is slower.'),
]

zmesh_opt_group = cfg.OptGroup(name='oslo_messaging_zmesh',
                               title='zmesh driver options')


def list_opts():
    """For oslo-config-generator."""
    return [(zmesh_opt_group, zmesh_opts)]


def parse_directory_hosts(url):
    """The directory addresses named by a zmesh:// TransportURL, as ["host:port", ...].

    Raises oslo_messaging.InvalidTransportURL for anything zmesh does not understand (a user
    name or password, a virtual host, query options, a bad port)."""
    text = str(url)
    if url.virtual_host:
        raise oslo_messaging.InvalidTransportURL(
            text, 'zmesh:// takes no virtual host (got "/%s"); the path must be empty or "/"'
            % url.virtual_host)
    if url.query:
        raise oslo_messaging.InvalidTransportURL(
            text, 'zmesh:// takes no query options (got %s); use the [oslo_messaging_zmesh] '
            'options instead' % ', '.join(sorted(url.query)))
    addresses = []
    for host in url.hosts:
        if host.username or host.password:
            raise oslo_messaging.InvalidTransportURL(
                text, 'zmesh:// takes no user name or password (directory "%s")'
                % (host.hostname or ''))
        if not host.hostname:
            raise oslo_messaging.InvalidTransportURL(
                text, 'a directory address has no host name')
        port = DEFAULT_DIRECTORY_PORT if host.port is None else host.port
        if not isinstance(port, int) or not 0 < port < 65536:
            raise oslo_messaging.InvalidTransportURL(
                text, 'bad port %r for directory %s (1-65535)' % (port, host.hostname))
        hostname = host.hostname
        if ':' in hostname:  # IPv6 literal
            hostname = '[%s]' % hostname
        addresses.append('%s:%d' % (hostname, port))
    return addresses


def _wait_readable(fds, timeout):
    """Waits until one of fds is readable or timeout (seconds, None = for ever) passes; returns
    the readable ones.

    select.poll when present (any fd number); under eventlet.monkey_patch() select.poll is gone
    and select.select is the green one, so the hub keeps running."""
    if timeout is not None and timeout < 0:
        timeout = 0
    poll = getattr(select, 'poll', None)
    while True:
        try:
            if poll is not None:
                poller = poll()
                for fd in fds:
                    poller.register(fd, select.POLLIN)
                events = poller.poll(None if timeout is None else timeout * 1000.0)
                return [fd for fd, _ in events]
            readable, _, _ = select.select(fds, [], [], timeout)
            return readable
        except InterruptedError:
            continue


def _exc_info(failure):
    if isinstance(failure, BaseException):
        return (type(failure), failure, failure.__traceback__)
    return failure


def _serialized_error(exc):
    """exc as oslo's serialized remote exception (bytes), as if raised by a server."""
    try:
        raise exc
    except Exception:
        return common.serialize_remote_exception(sys.exc_info()).encode('utf-8')


class ZmeshIncomingMessage(base.RpcIncomingMessage):
    """An RPC request (call, cast or fanout). reply()/heartbeat() only act for calls."""

    def __init__(self, raw, ctxt, message):
        super(ZmeshIncomingMessage, self).__init__(ctxt, message)
        self._raw = raw
        # libzmesh sends heartbeats itself while a call is being handled (the native worker
        # waits for our answer), so oslo need not run its own heartbeat loop.
        self.client_timeout = None

    def acknowledge(self):
        pass  # delivery to this process is the acknowledgement (see cast_acknowledged)

    def requeue(self):
        LOG.warning('zmesh: requeue is not supported; message %s from %s is not requeued',
                    self._raw.message_id, self._raw.sender)

    def heartbeat(self):
        try:
            self._raw.heartbeat()
        except Exception:
            LOG.exception('zmesh: sending a heartbeat failed')

    def reply(self, reply=None, failure=None):
        if self._raw.kind != 'call':
            return
        try:
            if failure is not None:
                self._raw.fail(common.serialize_remote_exception(_exc_info(failure))
                               .encode('utf-8'))
                return
            try:
                payload = jsonutils.dump_as_bytes({'result': reply})
            except Exception as e:
                LOG.exception('zmesh: the reply to %s cannot be serialized', self.message)
                self._raw.fail(_serialized_error(oslo_messaging.MessagingException(
                    'the server could not serialize its reply: %s' % e)))
                return
            if len(payload) > MAX_PAYLOAD_BYTES:
                # Tell the caller now rather than letting it wait for its timeout.
                self._raw.fail(_serialized_error(oslo_messaging.MessagingException(
                    'the reply is %d bytes, more than zmesh carries (%d)'
                    % (len(payload), MAX_PAYLOAD_BYTES))))
                return
            self._raw.reply(payload)
        except Exception:
            LOG.exception('zmesh: sending the reply failed')


class ZmeshNotificationMessage(base.IncomingMessage):
    def acknowledge(self):
        pass

    def requeue(self):
        LOG.warning('zmesh: requeue is not supported (require_features(requeue=True) says so); '
                    'the notification is not requeued')


class ZmeshListener(base.PollStyleListener):
    """Polls one native inbox (an RPC server or a notification listener).

    stop() starts the native stop in a background thread with a grace period: libzmesh refuses
    new messages (senders fail over to other members) and withdraws the target, while what is
    already queued stays poppable, so poll() keeps handing it over. Once the native stop is done
    (or STOP_GRACE_S passed) the inbox reports ``stopped``; poll() then returns nothing, which
    ends oslo's poll loop. Calls still unpopped then fail with a MessageDeliveryFailure the
    caller sees as a remote error; unpopped casts/notifications are dropped and counted (the
    grace makes that rare). cleanup() waits for the native stop, which waits for the calls this
    server took to be answered."""

    def __init__(self, driver, inbox, description, notifications, drain_error):
        super(ZmeshListener, self).__init__(prefetch_size=driver.prefetch_size)
        self._driver = driver
        self._inbox = inbox
        self._description = description
        self._notifications = notifications
        self._drain_error = drain_error
        self._buffer = collections.deque()
        self._stopping = False
        self._stop_deadline = None
        self._stop_thread = None
        self._stop_lock = threading.Lock()
        self._stopped_by_oslo = False
        self._warned_idle = False
        self._cleaned = False
        self._pid = os.getpid()

    def _decode(self, raw):
        try:
            doc = jsonutils.loads(raw.payload)
            ctxt, message = doc['ctxt'], doc['msg']
        except Exception as e:
            LOG.error('zmesh: dropping a %s from %s on %s: not an oslo.messaging message (%s)',
                      raw.kind, raw.sender, self._description, e)
            if raw.kind == 'call':
                raw.fail(_serialized_error(oslo_messaging.MessagingException(
                    'zmesh: the server could not decode the request: %s' % e)))
            return None
        if self._notifications:
            return ZmeshNotificationMessage(ctxt, message)
        return ZmeshIncomingMessage(raw, ctxt, message)

    @base.batch_poll_helper
    def poll(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            while self._buffer:
                message = self._decode(self._buffer.popleft())
                if message is not None:
                    return message
            if self._pid != os.getpid():
                return None  # a forked child: the inbox is the parent's
            raws = self._inbox.pop(POP_BATCH)
            if raws:
                self._buffer.extend(raws)
                continue
            if self._inbox.stopped:  # the native stop is done: nothing more will come
                if not self._stopped_by_oslo:
                    # The transport was cleaned up under a running server: oslo's poll loop
                    # goes on until server.stop(); make it idle, not spin.
                    if not self._warned_idle:
                        self._warned_idle = True
                        LOG.warning('zmesh: %s was cleaned up while its oslo server still '
                                    'runs; stop the server first', self._description)
                    time.sleep(IDLE_POLL_S if timeout is None else min(timeout, IDLE_POLL_S))
                return None
            now = time.monotonic()
            wait = None if deadline is None else deadline - now
            if self._stopping:
                # Normally `stopped` ends this; the bound only guards a failed native stop.
                left = self._stop_deadline + 1.0 - now
                if left <= 0:
                    return None
                wait = left if wait is None else min(wait, left)
            if wait is not None and wait <= 0:
                return None
            # The inbox fd is readable while messages wait, and for good once stopped.
            _wait_readable([self._inbox.fileno()], wait)

    def stop(self):
        """Called by oslo (PollStyleListenerAdapter.stop)."""
        self._stopped_by_oslo = True
        self._begin_stop()

    def _begin_stop(self):
        with self._stop_lock:
            if self._stopping:
                return
            self._stop_deadline = time.monotonic() + STOP_GRACE_S
            self._stopping = True
            if self._pid == os.getpid():
                self._stop_thread = threading.Thread(
                    target=self._native_stop, name='zmesh-stop %s' % self._description,
                    daemon=True)
                self._stop_thread.start()

    def _native_stop(self):
        try:
            self._inbox.stop(self._drain_error, grace_s=STOP_GRACE_S)
        except Exception:
            LOG.exception('zmesh: stopping %s failed', self._description)
        dropped = self._inbox.dropped_on_stop
        if dropped:
            LOG.warning('zmesh: %s dropped %d queued message(s) it had not handed over when it '
                        'stopped', self._description, dropped)

    def cleanup(self):
        if self._cleaned:
            return
        self._begin_stop()
        if self._stop_thread is not None:
            self._stop_thread.join(CLEANUP_WAIT_S)
            if self._stop_thread.is_alive():
                LOG.warning('zmesh: %s did not stop within %.0f s (calls it took still not '
                            'answered?)', self._description, CLEANUP_WAIT_S)
        self._cleaned = True
        self._buffer.clear()
        self._driver._forget_listener(self)


class ZmeshDriver(base.BaseDriver):
    """oslo.messaging driver for ``zmesh://`` transport URLs (see the module docstring)."""

    # oslo's batch_poll_helper caps batches at prefetch_size when > 0: no cap.
    prefetch_size = 0

    def __init__(self, conf, url, default_exchange=None, allowed_remote_exmods=None):
        super(ZmeshDriver, self).__init__(conf, url, default_exchange, allowed_remote_exmods)
        conf.register_group(zmesh_opt_group)
        conf.register_opts(zmesh_opts, group=zmesh_opt_group)
        self.directory_addresses = parse_directory_hosts(url)
        opts = conf.oslo_messaging_zmesh
        # Read every option now: a bad value fails get_transport(), not the first message.
        self.ipc_dir = opts.ipc_dir
        if not self.ipc_dir or not os.path.isabs(self.ipc_dir):
            raise messaging_exceptions.ConfigurationError(
                '[oslo_messaging_zmesh] ipc_dir must be an absolute path (got %r)' % self.ipc_dir)
        self.server_threads = opts.server_threads
        self.cast_timeout = opts.cast_timeout
        self.cast_acknowledged = opts.cast_acknowledged
        self.connect_timeout = opts.connect_timeout
        self.peer_connect_timeout = opts.peer_connect_timeout
        self._exchange = default_exchange or 'openstack'
        self._lock = threading.Lock()
        self._lock_pid = os.getpid()
        self._pid = os.getpid()
        self._native = None
        self._listeners = set()
        self._leaked = []  # native objects of a parent process, kept out of the GC in a child
        self._checked_directory = False
        self.proxy_directory = []  # the proxy's --directory, known once connected

    # --- native transport, per process ---

    def _process_lock(self):
        pid = os.getpid()
        if self._lock_pid != pid:  # forked: the parent's lock may have been held at fork time
            self._lock = threading.Lock()
            self._lock_pid = pid
        return self._lock

    def _transport(self):
        native = self._native
        if native is not None and self._pid == os.getpid():
            return native
        with self._process_lock():
            pid = os.getpid()
            if self._pid != pid:
                # Forked: never touch the parent's objects, and keep them referenced so their
                # destructors do not run here either.
                if self._native is not None:
                    self._leaked.append(self._native)
                self._leaked.extend(self._listeners)
                self._native = None
                self._listeners = set()
                self._pid = pid
            if self._native is None:
                description = 'oslo.messaging %s pid %d' % (
                    os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else 'python',
                    pid)
                try:
                    self._native = client.Transport(ipc_dir=self.ipc_dir,
                                                    description=description,
                                                    connect_timeout_s=self.connect_timeout,
                                                    peer_connect_timeout_s=(
                                                        self.peer_connect_timeout))
                except zmesh.Error as e:
                    raise oslo_messaging.MessageDeliveryFailure(
                        'zmesh: cannot connect to the zmesh-proxy at %s ([oslo_messaging_zmesh] '
                        'ipc_dir or $ZMESH_IPC_DIR; is zmesh-proxy running on this node?): %s'
                        % (self.ipc_dir, e))
                self._check_directory()
            return self._native

    def _check_directory(self):
        if self._checked_directory:
            return
        self._checked_directory = True
        # The proxy talks to the directory (its --directory); the URL's hosts name the one the
        # service means. Disjoint lists are most likely a service pointed at another cloud's
        # directory, or a proxy of another deployment: say so loudly. Names and addresses of
        # the same replica differ textually, so this warns rather than refuses.
        self.proxy_directory = self._native.proxy_directory
        if (self.directory_addresses and self.proxy_directory and
                not set(self.directory_addresses) & set(self.proxy_directory)):
            LOG.warning('zmesh: the transport URL names directory %s, but the zmesh-proxy at %s '
                        '(node %s) uses %s; messages follow the proxy\'s directory',
                        ','.join(self.directory_addresses), self.ipc_dir,
                        self._native.node_name, ','.join(self.proxy_directory))
        else:
            LOG.debug('zmesh: connected to proxy %s at %s; directory %s (transport URL: %s)',
                      self._native.node_name, self.ipc_dir,
                      ','.join(self.proxy_directory) or '(not told)',
                      ','.join(self.directory_addresses) or '(none)')

    def _forget_listener(self, listener):
        with self._process_lock():
            self._listeners.discard(listener)

    # --- encoding ---

    @staticmethod
    def _encode(ctxt, message):
        return jsonutils.dump_as_bytes({'ctxt': ctxt, 'msg': message})

    def _target(self, target, server=None):
        return client.Target(exchange=target.exchange or self._exchange, topic=target.topic,
                             server=(target.server if server is None else server) or '')

    @staticmethod
    def _describe(zt):
        return '%s/%s%s' % (zt.exchange, zt.topic, '/' + zt.server if zt.server else '')

    def _remote_exception(self, data):
        text = data.decode('utf-8', 'replace')
        try:
            return common.deserialize_remote_exception(text, self._allowed_remote_exmods)
        except Exception:  # not oslo's format (e.g. a non-oslo server failed the call)
            return oslo_messaging.RemoteError('zmesh.RemoteFailure', text or
                                              'the server failed the call without details')

    # --- BaseDriver ---

    def require_features(self, requeue=False):
        if requeue:
            raise NotImplementedError('zmesh does not support requeueing messages')

    def send(self, target, ctxt, message, wait_for_reply=None, timeout=None,
             call_monitor_timeout=None, retry=None, transport_options=None):
        # retry: libzmesh resends on its own (to the next group member, or the same server
        # until the deadline), without duplicates; there is nothing to count here.
        payload = self._encode(ctxt, message)
        transport = self._transport()
        zt = self._target(target)
        if target.fanout:
            try:
                transport.fanout(zt.exchange, zt.topic, payload)
            except zmesh.Error as e:
                raise oslo_messaging.MessageDeliveryFailure(
                    'zmesh: fanout to %s failed: %s' % (self._describe(zt), e))
            return None
        if not wait_for_reply:
            try:
                transport.cast(zt, payload, timeout_s=self.cast_timeout,
                               acknowledged=self.cast_acknowledged)
            except zmesh.Timeout as e:
                raise oslo_messaging.MessageDeliveryFailure(
                    'zmesh: cast to %s not delivered within %s s (cast_timeout): no server '
                    'serves it, or none had room: %s' % (self._describe(zt), self.cast_timeout, e))
            except zmesh.Error as e:
                raise oslo_messaging.MessageDeliveryFailure(
                    'zmesh: cast to %s failed: %s' % (self._describe(zt), e))
            return None

        timeout_s = NO_TIMEOUT_S if timeout is None else max(float(timeout), 0.001)
        monitor_s = float(call_monitor_timeout) if call_monitor_timeout else None
        at_least_once = bool(transport_options is not None and
                             getattr(transport_options, 'at_least_once', False))
        try:
            data, remote_error = transport.call(zt, payload, timeout_s,
                                                call_monitor_timeout_s=monitor_s,
                                                at_least_once=at_least_once)
        except zmesh.Timeout as e:
            raise oslo_messaging.MessagingTimeout(
                'Timed out waiting for a reply from %s (timeout %s s%s): %s' % (
                    self._describe(zt), timeout,
                    ', call_monitor_timeout %s s' % monitor_s if monitor_s else '', e))
        except zmesh.NotFound as e:
            raise oslo_messaging.MessageUndeliverable(e, zt.exchange, zt.topic, message)
        except zmesh.Error as e:
            raise oslo_messaging.MessageDeliveryFailure(
                'zmesh: call to %s failed: %s' % (self._describe(zt), e))
        if remote_error:
            raise self._remote_exception(data)
        try:
            return jsonutils.loads(data)['result']
        except Exception as e:
            raise oslo_messaging.MessagingException(
                'zmesh: undecodable reply from %s: %s' % (self._describe(zt), e))

    def send_notification(self, target, ctxt, message, version, retry=None):
        topic, dot, priority = target.topic.rpartition('.')
        if not dot or not topic or not priority:
            raise oslo_messaging.InvalidTarget(
                'zmesh: a notification topic must be "<topic>.<priority>"', target)
        exchange = target.exchange or self._exchange
        payload = self._encode(ctxt, message)
        transport = self._transport()
        try:
            transport.notify(exchange, topic, priority, payload)
        except zmesh.Error as e:
            raise oslo_messaging.MessageDeliveryFailure(
                'zmesh: notification to %s/%s.%s failed: %s' % (exchange, topic, priority, e))

    def _start_listener(self, start, description, notifications, batch_size, batch_timeout):
        native = self._transport()
        try:
            inbox = start(native)
        except zmesh.Error as e:
            raise base.TransportDriverError('zmesh: cannot start %s: %s' % (description, e))
        drain_error = _serialized_error(oslo_messaging.MessageDeliveryFailure(
            'zmesh: %s stopped before handling this call' % description))
        listener = ZmeshListener(self, inbox, description, notifications, drain_error)
        with self._process_lock():
            self._listeners.add(listener)
        return base.PollStyleListenerAdapter(listener, batch_size, batch_timeout)

    def listen(self, target, batch_size, batch_timeout):
        zt = self._target(target)
        return self._start_listener(
            lambda native: native.serve(zt, threads=self.server_threads),
            'RPC server %s' % self._describe(zt), False, batch_size, batch_timeout)

    def listen_for_notifications(self, targets_and_priorities, pool, batch_size,
                                 batch_timeout):
        pairs = [(target.exchange or self._exchange, target.topic, priority)
                 for target, priority in targets_and_priorities]
        description = 'notification listener %s%s' % (
            ','.join('%s/%s.%s' % p for p in pairs), ' pool ' + pool if pool else '')
        return self._start_listener(
            lambda native: native.listen(pairs, pool=pool or ''),
            description, True, batch_size, batch_timeout)

    def cleanup(self):
        if self._pid != os.getpid():
            # A forked child that never used the driver: leave the parent's objects alone.
            with self._process_lock():
                if self._native is not None:
                    self._leaked.append(self._native)
                self._leaked.extend(self._listeners)
                self._native = None
                self._listeners = set()
                self._pid = os.getpid()
            return
        with self._process_lock():
            listeners = list(self._listeners)
        for listener in listeners:
            listener.cleanup()
        with self._process_lock():
            native, self._native = self._native, None
        if native is not None:
            try:
                native.close()
            except Exception:
                LOG.exception('zmesh: closing the transport failed')
