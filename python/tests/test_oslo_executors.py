"""oslo.messaging over zmesh:// with the "eventlet" executor in a monkey-patched process (a
subprocess, so the patching stays there), next to the "threading" one: concurrent calls from many
greenthreads, a slow server, notifications, and the hub never stalled while waits are pending."""

import os
import subprocess
import sys
import textwrap
import unittest

from zmesh_cluster import LocalCluster

EVENTLET_PROGRAM = textwrap.dedent(r'''
    import eventlet
    eventlet.monkey_patch()

    import os, sys, time, uuid
    from oslo_config import cfg
    import oslo_messaging
    from oslo_messaging._metrics import client as metrics_client

    url = os.environ['RPC_TRANSPORT_URL']

    def conf():
        c = cfg.ConfigOpts()
        c([], project='zmesh-test')
        # oslo.messaging registers these on cfg.CONF only; RPC clients read them.
        c.register_opts(metrics_client.oslo_messaging_metrics, group='oslo_messaging_metrics')
        return c

    class Endpoint(object):
        def __init__(self):
            self.notified = []
        def slow(self, ctxt, i):
            time.sleep(0.5)           # green: other handlers run meanwhile
            return i
        def info(self, ctxt, publisher_id, event_type, payload, metadata):
            self.notified.append(payload)

    max_gap = [0.0]
    ticking = [True]
    def ticker():
        last = time.monotonic()
        while ticking[0]:
            eventlet.sleep(0.01)
            now = time.monotonic()
            max_gap[0] = max(max_gap[0], now - last)
            last = now

    topic = 'green-' + uuid.uuid4().hex[:8]
    endpoint = Endpoint()
    server_transport = oslo_messaging.get_rpc_transport(conf(), url=url)
    server = oslo_messaging.get_rpc_server(
        server_transport, oslo_messaging.Target(topic=topic, server='s1'), [endpoint],
        executor='eventlet')
    server.start()
    notify_transport = oslo_messaging.get_notification_transport(conf(), url=url)
    listener = oslo_messaging.get_notification_listener(
        notify_transport, [oslo_messaging.Target(topic=topic)], [endpoint], executor='eventlet')
    listener.start()

    tick = eventlet.spawn(ticker)
    client_transport = oslo_messaging.get_rpc_transport(conf(), url=url)
    client = oslo_messaging.get_rpc_client(client_transport,
                                           oslo_messaging.Target(topic=topic), timeout=30)
    client.call({}, 'slow', i=-1)  # resolve once, warm up
    max_gap[0] = 0.0

    started = time.monotonic()
    pool = eventlet.GreenPool(50)
    results = sorted(pool.imap(lambda i: client.call({}, 'slow', i=i), range(50)))
    elapsed = time.monotonic() - started

    notifier = oslo_messaging.Notifier(notify_transport, publisher_id='p', driver='messaging',
                                       topics=[topic])
    for i in range(20):
        notifier.info({}, 'e', i)
    deadline = time.monotonic() + 10
    while len(endpoint.notified) < 20 and time.monotonic() < deadline:
        eventlet.sleep(0.01)

    ticking[0] = False
    tick.wait()
    for s in (server, listener):
        s.stop()
        s.wait()
    for t in (client_transport, notify_transport, server_transport):
        t.cleanup()

    problems = []
    if results != list(range(50)):
        problems.append('results %r' % results)
    # 50 calls of 0.5 s each, handled concurrently by green handlers: far below 25 s.
    if elapsed > 5.0:
        problems.append('50 concurrent calls took %.2f s (not concurrent?)' % elapsed)
    if max_gap[0] > 0.25:
        problems.append('the hub stalled for %.3f s' % max_gap[0])
    if sorted(endpoint.notified) != list(range(20)):
        problems.append('notifications %r' % sorted(endpoint.notified))
    print('elapsed %.2f s, max ticker gap %.3f s' % (elapsed, max_gap[0]))
    if problems:
        print('PROBLEMS: ' + '; '.join(problems))
        sys.exit(1)
    print('OK')
''')


# oslo.service's pattern: a monkey-patched parent creates its transport (and uses it), then
# forks workers that use the same oslo transport object.
EVENTLET_FORK_PROGRAM = textwrap.dedent(r'''
    import eventlet
    eventlet.monkey_patch()

    import os, sys, time, uuid
    from oslo_config import cfg
    import oslo_messaging
    from oslo_messaging._metrics import client as metrics_client

    url = os.environ['RPC_TRANSPORT_URL']

    def conf():
        c = cfg.ConfigOpts()
        c([], project='zmesh-test')
        c.register_opts(metrics_client.oslo_messaging_metrics, group='oslo_messaging_metrics')
        c.set_override('metrics_thread_stop_timeout', 1, group='oslo_messaging_metrics')
        return c

    class Endpoint(object):
        def whoami(self, ctxt):
            return os.getpid()

    topic = 'fork-' + uuid.uuid4().hex[:8]
    server_transport = oslo_messaging.get_rpc_transport(conf(), url=url)
    server = oslo_messaging.get_rpc_server(
        server_transport, oslo_messaging.Target(topic=topic, server='parent'), [Endpoint()],
        executor='eventlet')
    server.start()
    transport = oslo_messaging.get_rpc_transport(conf(), url=url)
    client = oslo_messaging.get_rpc_client(transport, oslo_messaging.Target(topic=topic),
                                           timeout=10)
    parent = os.getpid()
    assert client.call({}, 'whoami') == parent

    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            # As oslo.service does in a forked worker: a hub of its own (the inherited one
            # shares its epoll set with the parent).
            eventlet.hubs.use_hub()
            code = 1
            try:
                # The parent's server keeps running there; the child is a client only.
                answers = [client.call({}, 'whoami') for _ in range(3)]
                code = 0 if answers == [parent] * 3 else 2
                transport.cleanup()
            except BaseException:
                import traceback
                traceback.print_exc()
            finally:
                os._exit(code)
        children.append(pid)
    statuses = []
    for pid in children:
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                statuses.append(status)
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                statuses.append(-1)
                break
            eventlet.sleep(0.02)
    after = client.call({}, 'whoami')
    server.stop()
    server.wait()
    transport.cleanup()
    server_transport.cleanup()
    print('children', statuses, 'parent after fork', after == parent)
    if statuses != [0, 0] or after != parent:
        sys.exit(1)
    print('OK')
''')


class EventletExecutorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = LocalCluster(proxies=1)

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()

    def run_program(self, program):
        env = dict(os.environ)
        env['RPC_TRANSPORT_URL'] = self.cluster.url
        env['ZMESH_IPC_DIR'] = self.cluster.ipc_dirs[0]
        proc = subprocess.run(['/usr/bin/python3', '-c', program], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        output = proc.stdout.decode(errors='replace')
        sys.stdout.write(output)
        self.assertEqual(proc.returncode, 0, output[-3000:])
        self.assertIn('OK', output)

    def test_eventlet_executor_concurrent_calls_without_stalling_the_hub(self):
        self.run_program(EVENTLET_PROGRAM)

    def test_forked_workers_of_a_monkey_patched_service(self):
        self.run_program(EVENTLET_FORK_PROGRAM)


if __name__ == '__main__':
    unittest.main()
