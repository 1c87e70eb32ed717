"""oslo.messaging RPC over zmesh:// against a real cluster: what oslo's functional suite skips or
does not look at (call monitoring, at_least_once, allowed_remote_exmods, undeliverable casts,
bad URLs and options, fork, cleanup)."""

import os
import signal
import tempfile
import threading
import time
import unittest
from unittest import mock
import uuid

from oslo_config import cfg

import oslo_messaging
from oslo_messaging import exceptions as messaging_exceptions
from oslo_messaging import transport as msg_transport
from oslo_messaging._metrics import client as metrics_client

from zmesh import oslo_driver
from zmesh_cluster import LocalCluster, wait_child

CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = LocalCluster(proxies=2)


def tearDownModule():
    CLUSTER.stop()


class AppError(Exception):
    """Raised by the test endpoint; re-raised as itself only when its module is allowed."""


def make_conf(ipc_dir=None, config_file=None, **zmesh_options):
    conf = cfg.ConfigOpts()
    conf(['--config-file', config_file] if config_file else [], project='zmesh-test')
    # oslo.messaging registers these on cfg.CONF only; RPC clients read them.
    conf.register_opts(metrics_client.oslo_messaging_metrics, group='oslo_messaging_metrics')
    # Its metrics thread (started even with metrics off) delays exit by this long.
    conf.set_override('metrics_thread_stop_timeout', 1, group='oslo_messaging_metrics')
    conf.register_group(oslo_driver.zmesh_opt_group)
    conf.register_opts(oslo_driver.zmesh_opts, group=oslo_driver.zmesh_opt_group)
    conf.set_override('ipc_dir', ipc_dir or CLUSTER.ipc_dirs[0], group='oslo_messaging_zmesh')
    for name, value in zmesh_options.items():
        conf.set_override(name, value, group='oslo_messaging_zmesh')
    return conf


def unique(prefix):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:8])


class Endpoint(object):
    def __init__(self, name='server'):
        self.name = name
        self.seen = []

    def echo(self, ctxt, value):
        self.seen.append(value)
        return {'server': self.name, 'value': value, 'ctxt': ctxt}

    def sleep(self, ctxt, seconds):
        time.sleep(seconds)
        return 'slept %s' % seconds

    def big(self, ctxt, size):
        return 'x' * size

    def fail_app(self, ctxt):
        raise AppError('application says no')

    def fail_value(self, ctxt):
        raise ValueError('bad value')


def eventually(predicate, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class OsloTestCase(unittest.TestCase):
    def setUp(self):
        self._cleanups_servers = []
        self._transports = []

    def tearDown(self):
        for server in reversed(self._cleanups_servers):
            server.stop()
            server.wait()
        for transport in reversed(self._transports):
            transport.cleanup()

    def transport(self, url=None, conf=None, **kwargs):
        transport = oslo_messaging.get_rpc_transport(conf or make_conf(), url=url or CLUSTER.url,
                                                     **kwargs)
        self._transports.append(transport)
        return transport

    def server(self, target, endpoint, proxy=0, executor='threading'):
        transport = self.transport(conf=make_conf(CLUSTER.ipc_dirs[proxy]))
        server = oslo_messaging.get_rpc_server(transport, target, [endpoint], executor=executor)
        server.start()
        self._cleanups_servers.append(server)
        return server


class CallTest(OsloTestCase):
    def test_reply_round_trip_and_context(self):
        target = oslo_messaging.Target(topic=unique('echo'), server='s1')
        self.server(target, Endpoint('s1'), proxy=1)
        client = oslo_messaging.get_rpc_client(self.transport(), target, timeout=10)
        reply = client.call({'user': 'alice', 'n': 1}, 'echo', value=[1, 'two', None])
        self.assertEqual(reply, {'server': 's1', 'value': [1, 'two', None],
                                 'ctxt': {'user': 'alice', 'n': 1}})

    def test_long_call_survives_with_call_monitoring_and_times_out_without(self):
        target = oslo_messaging.Target(topic=unique('slow'), server='s1')
        self.server(target, Endpoint(), proxy=1)
        client = oslo_messaging.get_rpc_client(self.transport(), target)
        # The handler runs 4 s: longer than call_monitor_timeout (2 s). Only the server's
        # heartbeats keep this call alive.
        started = time.monotonic()
        reply = client.prepare(timeout=3600, call_monitor_timeout=2).call({}, 'sleep', seconds=4)
        elapsed = time.monotonic() - started
        self.assertEqual(reply, 'slept 4')
        self.assertGreaterEqual(elapsed, 4.0)
        self.assertLess(elapsed, 10.0)

        started = time.monotonic()
        with self.assertRaises(oslo_messaging.MessagingTimeout):
            client.prepare(timeout=1).call({}, 'sleep', seconds=4)
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 1.0)
        self.assertLess(elapsed, 2.5)

    def test_call_monitoring_fails_fast_when_the_server_goes_silent(self):
        # A server whose node proxy is SIGSTOPped sends no heartbeat: the call must fail after
        # about call_monitor_timeout, long before its overall timeout.
        target = oslo_messaging.Target(topic=unique('silent'), server='s1')
        self.server(target, Endpoint(), proxy=1)
        client = oslo_messaging.get_rpc_client(self.transport(), target, timeout=3600)
        self.assertEqual(client.call({}, 'sleep', seconds=0), 'slept 0')  # resolved and warm
        proxy_pid = CLUSTER.proxy_pid(1)
        os.kill(proxy_pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with self.assertRaises(oslo_messaging.MessagingTimeout):
                client.prepare(call_monitor_timeout=1).call({}, 'sleep', seconds=3)
            elapsed = time.monotonic() - started
        finally:
            os.kill(proxy_pid, signal.SIGCONT)
        self.assertGreaterEqual(elapsed, 1.0)
        self.assertLess(elapsed, 5.0)

    def test_at_least_once_fails_at_once_for_a_target_nobody_serves(self):
        target = oslo_messaging.Target(topic=unique('nobody'))
        transport = self.transport()
        options = oslo_messaging.TransportOptions(at_least_once=True)
        client = oslo_messaging.get_rpc_client(transport, target, timeout=30,
                                               transport_options=options)
        started = time.monotonic()
        with self.assertRaises(oslo_messaging.MessageUndeliverable) as raised:
            client.call({}, 'echo', value=1)
        self.assertLess(time.monotonic() - started, 3.0)  # far below the 30 s timeout
        self.assertEqual(raised.exception.routing_key, target.topic)

        plain = oslo_messaging.get_rpc_client(transport, target, timeout=1)
        started = time.monotonic()
        with self.assertRaises(oslo_messaging.MessagingTimeout):
            plain.call({}, 'echo', value=1)
        self.assertGreaterEqual(time.monotonic() - started, 1.0)

    def test_remote_exceptions_follow_allowed_remote_exmods(self):
        target = oslo_messaging.Target(topic=unique('errors'), server='s1')
        self.server(target, Endpoint(), proxy=1)
        # Builtin exceptions are always re-raised as themselves.
        client = oslo_messaging.get_rpc_client(self.transport(), target, timeout=10)
        with self.assertRaises(ValueError) as raised:
            client.call({}, 'fail_value')
        self.assertIn('bad value', str(raised.exception))
        # A module not allowed: RemoteError naming the class.
        with self.assertRaises(oslo_messaging.RemoteError) as remote:
            client.call({}, 'fail_app')
        self.assertEqual(remote.exception.exc_type, 'AppError')
        self.assertIn('application says no', remote.exception.value)
        # Allowed: the caller gets the application's own class back.
        allowed = self.transport(allowed_remote_exmods=[AppError.__module__])
        client = oslo_messaging.get_rpc_client(allowed, target, timeout=10)
        with self.assertRaises(AppError) as app:
            client.call({}, 'fail_app')
        self.assertIn('application says no', str(app.exception))

    def test_oversized_requests_and_replies_fail_clearly_and_at_once(self):
        target = oslo_messaging.Target(topic=unique('big'), server='s1')
        self.server(target, Endpoint(), proxy=1)
        client = oslo_messaging.get_rpc_client(self.transport(), target, timeout=30)
        self.assertEqual(len(client.call({}, 'big', size=1 << 20)), 1 << 20)
        started = time.monotonic()
        with self.assertRaises(oslo_messaging.RemoteError) as raised:
            client.call({}, 'big', size=17 << 20)
        self.assertIn('more than zmesh carries', str(raised.exception))
        with self.assertRaises(oslo_messaging.MessageDeliveryFailure) as raised:
            client.call({}, 'echo', value='y' * (17 << 20))
        self.assertIn('payload', str(raised.exception))
        self.assertLess(time.monotonic() - started, 10.0)

    def test_group_calls_and_specific_server_across_nodes(self):
        topic = unique('group')
        endpoints = [Endpoint('a'), Endpoint('b')]
        self.server(oslo_messaging.Target(topic=topic, server='a'), endpoints[0], proxy=0)
        self.server(oslo_messaging.Target(topic=topic, server='b'), endpoints[1], proxy=1)
        transport = self.transport()
        group = oslo_messaging.get_rpc_client(transport, oslo_messaging.Target(topic=topic),
                                              timeout=10)
        served = [group.call({}, 'echo', value=i)['server'] for i in range(6)]
        self.assertEqual(sorted(served), ['a', 'a', 'a', 'b', 'b', 'b'])  # round-robin
        direct = group.prepare(server='b')
        self.assertEqual({direct.call({}, 'echo', value=i)['server'] for i in range(3)}, {'b'})


class CastTest(OsloTestCase):
    def test_cast_and_fanout_are_delivered(self):
        topic = unique('cast')
        endpoints = [Endpoint('a'), Endpoint('b')]
        self.server(oslo_messaging.Target(topic=topic, server='a'), endpoints[0], proxy=0)
        self.server(oslo_messaging.Target(topic=topic, server='b'), endpoints[1], proxy=1)
        client = oslo_messaging.get_rpc_client(self.transport(),
                                               oslo_messaging.Target(topic=topic))
        for i in range(10):
            client.cast({}, 'echo', value=i)
        client.prepare(fanout=True).cast({}, 'echo', value='all')
        self.assertTrue(eventually(
            lambda: sum(len(e.seen) for e in endpoints) == 12))
        group_values = sorted(v for e in endpoints for v in e.seen if v != 'all')
        self.assertEqual(group_values, list(range(10)))
        for e in endpoints:
            self.assertEqual(e.seen.count('all'), 1)
            self.assertEqual(len(e.seen), 6)  # 5 round-robin casts + the fanout

    def test_cast_to_a_target_nobody_serves_fails_clearly(self):
        conf = make_conf(cast_timeout=1.0)
        client = oslo_messaging.get_rpc_client(self.transport(conf=conf),
                                               oslo_messaging.Target(topic=unique('nobody')))
        started = time.monotonic()
        with self.assertRaises(oslo_messaging.MessageDeliveryFailure) as raised:
            client.cast({}, 'echo', value=1)
        self.assertGreaterEqual(time.monotonic() - started, 1.0)
        self.assertIn('cast_timeout', str(raised.exception))

    def test_fanout_with_nobody_listening_is_fine(self):
        client = oslo_messaging.get_rpc_client(
            self.transport(), oslo_messaging.Target(topic=unique('nobody'), fanout=True))
        client.cast({}, 'echo', value=1)

    def test_acknowledged_casts(self):
        target = oslo_messaging.Target(topic=unique('acked'), server='s1')
        endpoint = Endpoint()
        self.server(target, endpoint, proxy=1)
        transport = self.transport(conf=make_conf(cast_acknowledged=True))
        client = oslo_messaging.get_rpc_client(transport, target)
        for i in range(20):
            client.cast({}, 'echo', value=i)
        self.assertTrue(eventually(lambda: len(endpoint.seen) == 20))
        self.assertEqual(sorted(endpoint.seen), list(range(20)))


class ConfigTest(OsloTestCase):
    def test_url_hosts_are_parsed_with_the_default_port(self):
        conf = make_conf()
        url = oslo_messaging.TransportURL.parse(conf, 'zmesh://dir1,dir2:9600/')
        self.assertEqual(oslo_driver.parse_directory_hosts(url), ['dir1:9500', 'dir2:9600'])
        url = oslo_messaging.TransportURL.parse(conf, 'zmesh://[::1]:9700/')
        self.assertEqual(oslo_driver.parse_directory_hosts(url), ['[::1]:9700'])
        transport = self.transport(url=CLUSTER.url)
        self.assertEqual(transport._driver.directory_addresses, CLUSTER.directory_addresses)

    def test_url_hosts_are_checked_against_the_proxys_directory(self):
        target = oslo_messaging.Target(topic=unique('dircheck'), server='s')
        with self.assertLogs('zmesh.oslo_driver', level='DEBUG') as logs:
            transport = self.transport(url=CLUSTER.url)
            client = oslo_messaging.get_rpc_client(transport, target, timeout=1)
            with self.assertRaises(oslo_messaging.MessagingTimeout):
                client.call({}, 'ping')
        self.assertEqual(sorted(transport._driver.proxy_directory),
                         sorted(CLUSTER.directory_addresses))
        self.assertFalse([r for r in logs.records if r.levelname == 'WARNING'], logs.output)

        other = 'zmesh://192.0.2.1:9500,192.0.2.2:9500/'  # TEST-NET: another deployment
        with self.assertLogs('zmesh.oslo_driver', level='WARNING') as logs:
            transport = self.transport(url=other)
            client = oslo_messaging.get_rpc_client(transport, target, timeout=1)
            with self.assertRaises(oslo_messaging.MessagingTimeout):
                client.call({}, 'ping')
        self.assertIn('192.0.2.1:9500', logs.output[0])
        self.assertIn(CLUSTER.directory_addresses[0], logs.output[0])

    def test_bad_urls_are_refused_with_a_clear_error(self):
        bad = {
            'zmesh://user:secret@dir1:9500/': 'user name or password',
            'zmesh://dir1:9500/vhost': 'virtual host',
            'zmesh://dir1:9500/?frobnicate=1': 'query options',
            'zmesh://:9500/': 'no host name',
        }
        for url, expected in bad.items():
            with self.subTest(url=url):
                with self.assertRaises(oslo_messaging.InvalidTransportURL) as raised:
                    oslo_messaging.get_rpc_transport(make_conf(), url=url)
                self.assertIn(expected, str(raised.exception))

    def test_bad_options_are_refused_with_a_clear_error(self):
        with tempfile.NamedTemporaryFile('w', suffix='.conf') as config:
            config.write('[oslo_messaging_zmesh]\nserver_threads = 0\n')
            config.flush()
            with self.assertRaises(cfg.ConfigFileValueError) as raised:
                oslo_messaging.get_rpc_transport(make_conf(config_file=config.name),
                                                 url=CLUSTER.url)
        self.assertIn('server_threads', str(raised.exception))
        conf = make_conf(ipc_dir='relative/dir')
        with self.assertRaises(messaging_exceptions.ConfigurationError) as raised:
            oslo_messaging.get_rpc_transport(conf, url=CLUSTER.url)
        self.assertIn('ipc_dir', str(raised.exception))

    def test_no_proxy_gives_a_clear_error_at_first_use(self):
        conf = make_conf(ipc_dir='/tmp/no-such-zmesh-dir', connect_timeout=0.5)
        transport = self.transport(conf=conf)
        client = oslo_messaging.get_rpc_client(transport, oslo_messaging.Target(topic='t'),
                                               timeout=5)
        with self.assertRaises(oslo_messaging.MessageDeliveryFailure) as raised:
            client.call({}, 'echo', value=1)
        self.assertIn('/tmp/no-such-zmesh-dir', str(raised.exception))
        self.assertIn('zmesh-proxy', str(raised.exception))

    def test_requeue_is_refused_as_oslo_expects(self):
        transport = oslo_messaging.get_notification_transport(make_conf(), url=CLUSTER.url)
        self._transports.append(transport)
        with self.assertRaises(NotImplementedError):
            transport._require_driver_features(requeue=True)
        transport._require_driver_features(requeue=False)

    def test_the_driver_is_found_through_the_entry_point(self):
        transport = self.transport()
        self.assertIsInstance(transport._driver, oslo_driver.ZmeshDriver)
        self.assertIsInstance(transport, msg_transport.RPCTransport)


class LifecycleTest(OsloTestCase):
    def test_cleanup_leaves_no_threads_behind(self):
        def threads():
            # oslo.messaging's own metrics thread (started by the first RPC client call of the
            # process, even with metrics off, ends by itself 10 s later) is not the driver's.
            return {t for t in threading.enumerate() if not t.name.endswith('(send_loop)')}

        before = threads()
        target = oslo_messaging.Target(topic=unique('threads'), server='s1')
        transport = oslo_messaging.get_rpc_transport(make_conf(), url=CLUSTER.url)
        server = oslo_messaging.get_rpc_server(transport, target, [Endpoint()],
                                               executor='threading')
        server.start()
        client = oslo_messaging.get_rpc_client(transport, target, timeout=10)
        self.assertEqual(client.call({}, 'echo', value=1)['value'], 1)
        client.cast({}, 'echo', value=2)
        server.stop()
        server.wait()
        transport.cleanup()
        self.assertTrue(eventually(lambda: threads() <= before, timeout=5),
                        'threads left: %s' % (threads() - before))

    def test_cleanup_under_a_running_server_does_not_spin(self):
        polls = []
        real_poll = oslo_driver.ZmeshListener.poll

        def counting_poll(listener, *args, **kwargs):
            polls.append(time.monotonic())
            return real_poll(listener, *args, **kwargs)

        target = oslo_messaging.Target(topic=unique('spin'), server='s1')
        transport = oslo_messaging.get_rpc_transport(make_conf(), url=CLUSTER.url)
        with mock.patch.object(oslo_driver.ZmeshListener, 'poll', counting_poll):
            server = oslo_messaging.get_rpc_server(transport, target, [Endpoint()],
                                                   executor='threading')
            server.start()
            client = oslo_messaging.get_rpc_client(transport, target, timeout=10)
            self.assertEqual(client.call({}, 'echo', value=1)['value'], 1)
            transport.cleanup()  # the wrong order, but it happens
            time.sleep(0.5)  # let the poll loop notice
            counted_from = time.monotonic()
            time.sleep(2.0)  # what does oslo's poll loop do meanwhile? (measured, not waited for)
            in_window = [t for t in polls if counted_from <= t < counted_from + 2.0]
            self.assertLessEqual(len(in_window), 5, 'the poll loop spins')
            started = time.monotonic()
            server.stop()
            server.wait()
            self.assertLess(time.monotonic() - started, 5.0)

    def test_stopping_a_server_lets_callers_fail_over(self):
        topic = unique('failover')
        a = self.server(oslo_messaging.Target(topic=topic, server='a'), Endpoint('a'), proxy=0)
        self.server(oslo_messaging.Target(topic=topic, server='b'), Endpoint('b'), proxy=1)
        client = oslo_messaging.get_rpc_client(self.transport(),
                                               oslo_messaging.Target(topic=topic), timeout=10)
        self.assertEqual({client.call({}, 'echo', value=i)['server'] for i in range(4)},
                         {'a', 'b'})
        a.stop()
        a.wait()
        self._cleanups_servers.remove(a)
        self.assertEqual({client.call({}, 'echo', value=i)['server'] for i in range(6)}, {'b'})

    def test_servers_keep_serving_across_a_restart_of_their_proxy(self):
        target = oslo_messaging.Target(topic=unique('restart'), server='s1')
        endpoint = Endpoint('s1')
        self.server(target, endpoint, proxy=1)
        client = oslo_messaging.get_rpc_client(self.transport(), target, timeout=5)
        self.assertEqual(client.call({}, 'echo', value='before')['value'], 'before')
        CLUSTER.restart_proxy(1)
        # libzmesh notices the new proxy and announces the server again, without oslo's help.
        deadline = time.monotonic() + 20
        while True:
            try:
                reply = client.call({}, 'echo', value='after')
                break
            except oslo_messaging.MessagingTimeout:
                self.assertLess(time.monotonic(), deadline, 'the server never came back')
        self.assertEqual(reply['value'], 'after')
        client.cast({}, 'echo', value='cast-after')
        self.assertTrue(eventually(lambda: 'cast-after' in endpoint.seen))

    def test_a_forked_child_uses_the_transport_of_its_parent(self):
        target = oslo_messaging.Target(topic=unique('fork'), server='s1')
        self.server(target, Endpoint('parent-server'), proxy=1)
        transport = self.transport()
        client = oslo_messaging.get_rpc_client(transport, target, timeout=10)
        self.assertEqual(client.call({}, 'echo', value='before')['value'], 'before')
        parent_native = transport._driver._native

        pid = os.fork()
        if pid == 0:  # child: only os._exit, never unittest's machinery
            code = 1
            try:
                reply = client.call({}, 'echo', value='child')
                fresh = oslo_messaging.get_rpc_transport(make_conf(), url=CLUSTER.url)
                other = oslo_messaging.get_rpc_client(fresh, target, timeout=10)
                reply2 = other.call({}, 'echo', value='child2')
                ok = (reply['value'] == 'child' and reply2['value'] == 'child2' and
                      transport._driver._native is not parent_native)
                fresh.cleanup()
                transport.cleanup()
                code = 0 if ok else 2
            except BaseException:
                import traceback
                traceback.print_exc()
            finally:
                os._exit(code)
        status = wait_child(pid, 30)
        if status is None:
            self.fail('the forked child hung')
        self.assertTrue(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
                        'child status %d' % status)
        # The parent goes on with its own native transport.
        self.assertIs(transport._driver._native, parent_native)
        self.assertEqual(client.call({}, 'echo', value='after')['value'], 'after')


if __name__ == '__main__':
    unittest.main()
