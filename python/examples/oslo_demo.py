#!/usr/bin/python3
"""oslo.messaging over zmesh://: the usual OpenStack patterns, checked.

Runs RPC servers and notification listeners on one or two zmesh nodes (one per IPC dir) and
clients against them, all through plain oslo.messaging calls; the only zmesh-specific things are
the transport URL and the [oslo_messaging_zmesh] ipc_dir option. Exits non-zero if anything does
not behave as expected.

    ZMESH_IPC_DIRS=/run/zmesh-a:/run/zmesh-b /usr/bin/python3 oslo_demo.py \\
        --url zmesh://10.0.0.1:9500,10.0.0.2:9500,10.0.0.3:9500/

ZMESH_IPC_DIRS (':'-separated) names the node proxies to put servers on (one is enough);
without it ZMESH_IPC_DIR, else /run/zmesh. --url defaults to $RPC_TRANSPORT_URL.
"""

import argparse
import os
import sys
import threading
import time

from oslo_config import cfg

import oslo_messaging
from oslo_messaging._metrics import client as metrics_client

from zmesh import oslo_driver


# Names of our own: a shared cluster may already have a "compute" topic.
COMPUTE_TOPIC = 'oslo-demo-compute'
EVENTS_TOPIC = 'oslo-demo-events'


class ComputeError(Exception):
    """An application error; re-raised as itself by callers that allow this module."""


class ComputeEndpoint(object):
    def __init__(self, name):
        self.name = name
        self.remembered = []

    def whoami(self, ctxt):
        return self.name

    def add(self, ctxt, a, b):
        return a + b

    def remember(self, ctxt, what):
        self.remembered.append(what)

    # An expected application error: oslo's server logs it at debug level, not as a crash.
    @oslo_messaging.expected_exceptions(ComputeError)
    def explode(self, ctxt):
        raise ComputeError('%s cannot do that' % self.name)


class AuditEndpoint(object):
    def __init__(self, name):
        self.name = name
        self.events = []

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self.events.append(payload)


class Demo(object):
    def __init__(self, url, ipc_dirs):
        self.url = url
        self.ipc_dirs = ipc_dirs
        self.transports = []
        self.servers = []
        self.failures = []

    def conf(self, ipc_dir):
        # What "[oslo_messaging_zmesh] ipc_dir = ..." in a service's config file does.
        conf = cfg.ConfigOpts()
        conf([], project='zmesh-demo')
        for group, opts in oslo_driver.list_opts():
            conf.register_group(group)
            conf.register_opts(opts, group=group)
        # oslo.messaging registers its metrics options on cfg.CONF only.
        conf.register_opts(metrics_client.oslo_messaging_metrics, group='oslo_messaging_metrics')
        # Its RPC client starts a metrics thread (even with metrics off) that keeps the process
        # from exiting for metrics_thread_stop_timeout (10 s by default).
        conf.set_override('metrics_thread_stop_timeout', 1, group='oslo_messaging_metrics')
        conf.set_override('ipc_dir', ipc_dir, group='oslo_messaging_zmesh')
        return conf

    def node(self, i):
        return self.ipc_dirs[i % len(self.ipc_dirs)]

    def rpc_transport(self, node=0, **kwargs):
        transport = oslo_messaging.get_rpc_transport(self.conf(self.node(node)), url=self.url,
                                                     **kwargs)
        self.transports.append(transport)
        return transport

    def notification_transport(self, node=0):
        transport = oslo_messaging.get_notification_transport(self.conf(self.node(node)),
                                                              url=self.url)
        self.transports.append(transport)
        return transport

    def check(self, ok, what):
        print('  %s %s' % ('ok  ' if ok else 'FAIL', what))
        if not ok:
            self.failures.append(what)

    @staticmethod
    def eventually(predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def run(self):
        print('transport_url = %s; nodes (IPC dirs): %s' % (self.url, ', '.join(self.ipc_dirs)))

        print('RPC servers: topic "%s", servers compute-1 and compute-2 (node 0 and 1)'
              % COMPUTE_TOPIC)
        computes = {}
        for i, name in enumerate(('compute-1', 'compute-2')):
            computes[name] = ComputeEndpoint(name)
            server = oslo_messaging.get_rpc_server(
                self.rpc_transport(node=i),
                oslo_messaging.Target(topic=COMPUTE_TOPIC, server=name),
                [computes[name]], executor='threading')
            server.start()
            self.servers.append(server)

        client_transport = self.rpc_transport(node=0, allowed_remote_exmods=[__name__])
        client = oslo_messaging.get_rpc_client(
            client_transport, oslo_messaging.Target(topic=COMPUTE_TOPIC), timeout=10)

        print('call to the topic group (round-robin):')
        served = [client.call({}, 'whoami') for _ in range(4)]
        print('    served by %s' % served)
        self.check(sorted(served) == ['compute-1', 'compute-1', 'compute-2', 'compute-2'],
                   'group calls alternate between both servers')

        print('call to one server:')
        direct = client.prepare(server='compute-2')
        answers = {direct.call({}, 'whoami') for _ in range(3)}
        self.check(answers == {'compute-2'}, 'calls to compute-2 all reach compute-2')
        self.check(direct.call({'request_id': 'req-1'}, 'add', a=40, b=2) == 42,
                   'compute-2 computed 40 + 2 = 42')

        print('cast to the group, then fanout to every server:')
        for i in range(4):
            client.cast({}, 'remember', what='cast-%d' % i)
        client.prepare(fanout=True).cast({}, 'remember', what='fanout')
        delivered = self.eventually(
            lambda: sum(len(c.remembered) for c in computes.values()) == 6)
        for name, endpoint in sorted(computes.items()):
            print('    %s got %s' % (name, endpoint.remembered))
        self.check(delivered and all(len(c.remembered) == 3 and 'fanout' in c.remembered
                                     for c in computes.values()),
                   'each server got 2 casts and the fanout')

        print('a remote exception:')
        try:
            direct.call({}, 'explode')
            self.check(False, 'ComputeError re-raised')
        except ComputeError as e:
            self.check(True, 'ComputeError re-raised to the caller: %s' % str(e).splitlines()[0])
        strict = oslo_messaging.get_rpc_client(
            self.rpc_transport(node=0), oslo_messaging.Target(topic=COMPUTE_TOPIC), timeout=10)
        try:
            strict.call({}, 'explode')
            self.check(False, 'RemoteError without allowed_remote_exmods')
        except oslo_messaging.RemoteError as e:
            self.check(e.exc_type == 'ComputeError',
                       'a caller that does not allow the module gets RemoteError(%s)' % e.exc_type)

        print('a call nobody can take, with at_least_once:')
        nobody = oslo_messaging.get_rpc_client(
            client_transport, oslo_messaging.Target(topic='nobody-serves-this'), timeout=30,
            transport_options=oslo_messaging.TransportOptions(at_least_once=True))
        started = time.monotonic()
        try:
            nobody.call({}, 'whoami')
            self.check(False, 'MessageUndeliverable')
        except oslo_messaging.MessageUndeliverable:
            self.check(time.monotonic() - started < 5,
                       'MessageUndeliverable after %.0f ms (not the 30 s timeout)'
                       % ((time.monotonic() - started) * 1000))

        print('notifications: pool "audit" (1 listener), pool "billing" (2 listeners):')
        listeners = {}
        for i, (pool, name) in enumerate((('audit', 'audit-1'), ('billing', 'billing-1'),
                                          ('billing', 'billing-2'))):
            listeners[name] = AuditEndpoint(name)
            listener = oslo_messaging.get_notification_listener(
                self.notification_transport(node=i),
                [oslo_messaging.Target(topic=EVENTS_TOPIC)],
                [listeners[name]], executor='threading', pool=pool)
            listener.start()
            self.servers.append(listener)
        notifier = oslo_messaging.Notifier(self.notification_transport(node=0),
                                           publisher_id='compute.demo', driver='messaging',
                                           topics=[EVENTS_TOPIC])
        for i in range(6):
            notifier.info({}, 'instance.create.end', {'instance': i})
        self.eventually(lambda: sum(len(l.events) for l in listeners.values()) == 12)
        for name, endpoint in sorted(listeners.items()):
            print('    %s got instances %s' % (name, [e['instance'] for e in endpoint.events]))
        audit = sorted(e['instance'] for e in listeners['audit-1'].events)
        billing = sorted(e['instance'] for n in ('billing-1', 'billing-2')
                         for e in listeners[n].events)
        self.check(audit == list(range(6)), 'pool audit got all 6')
        self.check(billing == list(range(6)) and listeners['billing-1'].events and
                   listeners['billing-2'].events,
                   'pool billing got all 6, shared between its two listeners')

    def close(self):
        for server in self.servers:
            server.stop()
        for server in self.servers:
            server.wait()
        for transport in self.transports:
            transport.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--url', default=os.environ.get('RPC_TRANSPORT_URL'),
                        help='zmesh:// transport URL (default: $RPC_TRANSPORT_URL)')
    args = parser.parse_args()
    if not args.url:
        parser.error('no --url and no RPC_TRANSPORT_URL')
    dirs = os.environ.get('ZMESH_IPC_DIRS') or os.environ.get('ZMESH_IPC_DIR') or '/run/zmesh'
    demo = Demo(args.url, [d for d in dirs.split(':') if d])
    # A hung step must not hang the demo: a watchdog ends the process.
    watchdog = threading.Timer(120, lambda: (print('FAIL: the demo hung'), os._exit(3)))
    watchdog.daemon = True
    watchdog.start()
    try:
        demo.run()
    except Exception as e:
        print('FAIL: %s: %s' % (type(e).__name__, e))
        demo.failures.append(str(e))
    finally:
        started = time.monotonic()
        demo.close()
        print('stopped servers and listeners, cleaned up transports in %.2f s'
              % (time.monotonic() - started))
        watchdog.cancel()
    if demo.failures:
        print('oslo demo FAILED: %s' % '; '.join(demo.failures))
        return 1
    print('oslo demo OK')
    return 0


if __name__ == '__main__':
    sys.exit(main())
