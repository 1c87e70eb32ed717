"""oslo.messaging notifications over zmesh:// against a real cluster: pools, and no loss while a
pool member restarts."""

import collections
import threading
import time
import unittest
import uuid

from oslo_config import cfg

import oslo_messaging
from oslo_messaging._metrics import client as metrics_client

from zmesh import oslo_driver
from zmesh_cluster import LocalCluster

CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = LocalCluster(proxies=2)


def tearDownModule():
    CLUSTER.stop()


def make_conf(proxy=0):
    conf = cfg.ConfigOpts()
    conf([], project='zmesh-test')
    conf.register_opts(metrics_client.oslo_messaging_metrics, group='oslo_messaging_metrics')
    # Its metrics thread (started even with metrics off) delays exit by this long.
    conf.set_override('metrics_thread_stop_timeout', 1, group='oslo_messaging_metrics')
    conf.register_group(oslo_driver.zmesh_opt_group)
    conf.register_opts(oslo_driver.zmesh_opts, group=oslo_driver.zmesh_opt_group)
    conf.set_override('ipc_dir', CLUSTER.ipc_dirs[proxy], group='oslo_messaging_zmesh')
    return conf


def eventually(predicate, timeout=15.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Recorder(object):
    def __init__(self):
        self.payloads = []
        self.lock = threading.Lock()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        with self.lock:
            self.payloads.append(payload)


class NotifyTest(unittest.TestCase):
    def setUp(self):
        self.topic = 'notify-%s' % uuid.uuid4().hex[:8]
        self._listeners = []
        self._transports = []

    def tearDown(self):
        for listener in self._listeners:
            if listener not in self._stopped:
                listener.stop()
                listener.wait()
        for transport in self._transports:
            transport.cleanup()

    _stopped = ()

    def transport(self, proxy=0):
        transport = oslo_messaging.get_notification_transport(make_conf(proxy), url=CLUSTER.url)
        self._transports.append(transport)
        return transport

    def listen(self, pool, proxy=0):
        recorder = Recorder()
        listener = oslo_messaging.get_notification_listener(
            self.transport(proxy), [oslo_messaging.Target(topic=self.topic)], [recorder],
            executor='threading', pool=pool)
        listener.start()
        self._listeners.append(listener)
        return listener, recorder

    def notifier(self):
        return oslo_messaging.Notifier(self.transport(), publisher_id='test', driver='messaging',
                                       topics=[self.topic])

    def assert_exactly_once(self, recorders, count, pool):
        received = [p for r in recorders for p in r.payloads]
        duplicates = [p for p, n in collections.Counter(received).items() if n > 1]
        self.assertEqual(duplicates, [], 'pool %s got duplicates' % pool)
        self.assertEqual(sorted(received), list(range(count)), 'pool %s lost messages' % pool)

    def test_every_pool_gets_every_message_shared_inside_the_pool(self):
        a = [self.listen('A', proxy=0)[1], self.listen('A', proxy=1)[1]]
        b = [self.listen('B', proxy=1)[1], self.listen('B', proxy=0)[1]]
        notifier = self.notifier()
        count = 40
        for i in range(count):
            notifier.info({}, 'test.event', i)
        self.assertTrue(eventually(
            lambda: sum(len(r.payloads) for r in a + b) >= 2 * count))
        self.assert_exactly_once(a, count, 'A')
        self.assert_exactly_once(b, count, 'B')
        for recorder in a + b:  # shared round-robin: every member has a part
            self.assertGreater(len(recorder.payloads), 0)
            self.assertLess(len(recorder.payloads), count)

    def test_no_loss_while_a_pool_member_restarts(self):
        first, first_recorder = self.listen('A', proxy=0)
        _, other_recorder = self.listen('A', proxy=1)
        _, b_recorder = self.listen('B', proxy=0)
        notifier = self.notifier()
        restarted = {}

        def restart_member():
            eventually(lambda: len(first_recorder.payloads) >= 20)
            first.stop()
            first.wait()
            self._stopped = (first,)
            restarted['listener'], restarted['recorder'] = self.listen('A', proxy=0)

        restarter = threading.Thread(target=restart_member)
        restarter.start()
        sent = 0
        while restarter.is_alive() or sent < 100 + restarted.get('at', sent):
            if not restarter.is_alive() and 'at' not in restarted:
                restarted['at'] = sent  # keep sending 100 more after the restart
            notifier.info({}, 'test.event', sent)
            sent += 1
            time.sleep(0.003)
            self.assertLess(sent, 20000, 'the restart never finished')
        restarter.join()
        a = [first_recorder, other_recorder, restarted['recorder']]
        self.assertTrue(eventually(
            lambda: sum(len(r.payloads) for r in a) >= sent and len(b_recorder.payloads) >= sent))
        self.assert_exactly_once(a, sent, 'A')
        self.assert_exactly_once([b_recorder], sent, 'B')
        self.assertGreater(len(restarted['recorder'].payloads), 0,
                           'the restarted member got nothing')

    def test_a_listener_keeps_listening_across_a_restart_of_its_proxy(self):
        _, recorder = self.listen('A', proxy=1)
        notifier = self.notifier()
        notifier.info({}, 'test.event', 'before')
        self.assertTrue(eventually(lambda: 'before' in recorder.payloads))
        CLUSTER.restart_proxy(1)
        # Until libzmesh has announced the listener again a notification may find nobody (and
        # is dropped, as documented): send until one arrives.
        deadline = time.monotonic() + 20
        sent = 0
        while not any(str(p).startswith('after') for p in recorder.payloads):
            self.assertLess(time.monotonic(), deadline, 'the listener never came back')
            notifier.info({}, 'test.event', 'after-%d' % sent)
            sent += 1
            eventually(lambda: len(recorder.payloads) > 1, timeout=0.2)

    def test_a_notification_nobody_listens_to_is_not_an_error(self):
        self.notifier().info({}, 'test.event', 'into the void')

    def test_priorities_and_exchanges_are_separate_addresses(self):
        recorder = Recorder()
        recorder.error = lambda ctxt, pub, event, payload, md: recorder.payloads.append(
            ('error', payload))
        listener = oslo_messaging.get_notification_listener(
            self.transport(), [oslo_messaging.Target(topic=self.topic, exchange='x1')],
            [recorder], executor='threading')
        listener.start()
        self._listeners.append(listener)
        transport = self.transport()
        other_exchange = oslo_messaging.Notifier(transport, publisher_id='p', driver='messaging',
                                                 topics=[self.topic])
        other_exchange.error({}, 'e', 'default exchange: not for x1')
        # Notifier has no exchange knob; send through the driver the way oslo does.
        transport._send_notification(
            oslo_messaging.Target(topic=self.topic + '.error', exchange='x1'), {},
            {'publisher_id': 'p', 'event_type': 'e', 'priority': 'ERROR', 'payload': 'x1',
             'timestamp': 'now', 'message_id': '1'}, version=2.0)
        # Same sender, so a wrongly routed copy of the first would arrive before this one.
        self.assertTrue(eventually(lambda: len(recorder.payloads) >= 1))
        self.assertEqual(recorder.payloads, [('error', 'x1')])


if __name__ == '__main__':
    unittest.main()
