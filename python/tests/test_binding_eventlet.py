"""zmesh.client under eventlet.monkey_patch(): waiting never stalls the hub.

The patched program runs in a subprocess (/usr/bin/python3) so the patching does not leak into
this test process; it reports what it measured as one JSON line. The cluster (3 directory
replicas, 2 proxies) is started here, unpatched.
"""

import json
import os
import subprocess
import sys
import unittest
import uuid

from zmesh_cluster import LocalCluster

CHILD = r"""
import eventlet
eventlet.monkey_patch()

import json
import sys
import time

import zmesh

ipc_server, ipc_client, topic = sys.argv[1:4]
server_side = zmesh.Transport(ipc_server)
client = zmesh.Transport(ipc_client)
target = zmesh.Target(topic=topic, server="s1")
inbox = server_side.serve(target)
casts = []


def handle(message):
    if message.payload == b"slow":
        eventlet.sleep(1.0)
    message.reply(b"re:" + message.payload)


def serve():
    while True:
        messages = inbox.get(timeout_s=0.5, max=32)
        if not messages and inbox.stopped:
            return
        for m in messages:
            if m.kind == "call":
                eventlet.spawn_n(handle, m)
            else:
                casts.append(m.payload)


ticks = {"max_gap": 0.0, "count": 0}
running = [True]


def ticker():
    last = time.monotonic()
    while running[0]:
        eventlet.sleep(0.002)
        now = time.monotonic()
        ticks["max_gap"] = max(ticks["max_gap"], now - last)
        ticks["count"] += 1
        last = now


def reset_ticker():
    eventlet.sleep(0.01)
    ticks["max_gap"] = 0.0
    ticks["count"] = 0


eventlet.spawn_n(serve)
eventlet.spawn_n(ticker)
result = {}

# 1. One call waits 1 s for a slow handler while 50 greenthreads make 20 calls each.
reset_ticker()
pool = eventlet.GreenPool(200)
start = time.monotonic()
slow = pool.spawn(client.call, target, b"slow", 10)
workers = [pool.spawn(lambda i=i: [client.call(target, b"%d-%d" % (i, j), 10)[0]
                                   for j in range(20)])
           for i in range(50)]
replies = [w.wait() for w in workers]
result["slow_reply"] = slow.wait()[0].decode()
result["slow_elapsed"] = time.monotonic() - start
result["calls_ok"] = all(r == [b"re:%d-%d" % (i, j) for j in range(20)]
                         for i, r in enumerate(replies))
result["max_gap_calls"] = ticks["max_gap"]
result["ticks_calls"] = ticks["count"]

# 2. Casts, and a deadline that passes while the hub keeps running.
reset_ticker()
for i in range(200):
    client.cast(target, b"c%d" % i)
deadline = time.monotonic() + 10
while len(casts) < 200 and time.monotonic() < deadline:
    eventlet.sleep(0.01)
result["casts"] = sorted(c.decode() for c in casts) == sorted("c%d" % i for i in range(200))
try:
    client.call(zmesh.Target(topic=topic, server="gone"), b"x", 0.5)
    result["timeout"] = "no error"
except zmesh.Timeout:
    result["timeout"] = "Timeout"
result["max_gap_timeout"] = ticks["max_gap"]

# 3. Control: a real blocking select stalls the ticker, so the measurement can see a stall.
reset_ticker()
eventlet.patcher.original("select").select([], [], [], 0.3)
eventlet.sleep(0.01)
result["max_gap_control"] = ticks["max_gap"]

running[0] = False
inbox.stop()
client.close()
server_side.close()
print(json.dumps(result))
"""


class EventletTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = LocalCluster(proxies=2)

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()

    def test_waits_are_green_and_never_stall_the_hub(self):
        topic = "eventlet-%s" % uuid.uuid4().hex[:8]
        child = subprocess.run(
            ["/usr/bin/python3", "-c", CHILD, self.cluster.ipc_dirs[0], self.cluster.ipc_dirs[1],
             topic],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, env=os.environ.copy())
        sys.stderr.write(child.stderr.decode(errors="replace"))
        self.assertEqual(child.returncode, 0, child.stderr.decode(errors="replace")[-2000:])
        result = json.loads(child.stdout.decode().strip().splitlines()[-1])
        self.assertEqual(result["slow_reply"], "re:slow")
        self.assertTrue(result["calls_ok"])
        self.assertTrue(result["casts"])
        self.assertEqual(result["timeout"], "Timeout")
        # The slow call waited ~1 s; the hub ran the ticker throughout.
        self.assertGreaterEqual(result["slow_elapsed"], 1.0)
        self.assertGreater(result["ticks_calls"], 50)
        self.assertLess(result["max_gap_calls"], 0.2, result)
        self.assertLess(result["max_gap_timeout"], 0.2, result)
        # And the ticker does see a blocked hub.
        self.assertGreaterEqual(result["max_gap_control"], 0.3, result)


if __name__ == "__main__":
    unittest.main()
