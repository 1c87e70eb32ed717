#!/usr/bin/python3
"""Runs oslo.messaging's own functional suite, unmodified, against zmesh:// and checks the result.

The suite is the one Debian's python3-oslo.messaging installs
(oslo_messaging.tests.functional.test_functional). This runner starts a LocalCluster (3 directory
replicas + 1 proxy, real daemons from $ZMESH_BIN_DIR), runs the suite in a child
/usr/bin/python3 (it calls eventlet.monkey_patch() on import) with RPC_TRANSPORT_URL and
NOTIFY_TRANSPORT_URL = the cluster's zmesh:// URL and ZMESH_IPC_DIR = the proxy's IPC dir, and
asserts:

- every test of CallTestCase, CastTestCase, NotifyTestCase and MetricsTestCase ran and passed,
  except exactly the tests the suite skips for URLs that are not rabbit:// or amqp://
  (EXPECTED_SKIPS): a new skip, a missing test or any failure fails the run;
- no other test class appeared without this runner knowing it (so a new suite version is looked
  at, not silently half-run).

MetricsTestCase runs ``python3 -m oslo_metrics`` from PATH (Debian's python3-oslo.metrics), which
listens on localhost:3000 and /var/tmp/metrics_collector.sock: PATH starts with /usr/bin here.

    ZMESH_BIN_DIR=build/bin PYTHONPATH=build/python /usr/bin/python3 run_oslo_functional.py
"""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zmesh_cluster import LocalCluster  # noqa: E402

MODULE = 'oslo_messaging.tests.functional.test_functional'
CLASSES = ('CallTestCase', 'CastTestCase', 'NotifyTestCase', 'MetricsTestCase')
# Skipped by the suite itself unless the URL is rabbit:// (or amqp://): call monitoring and
# "mandatory" calls. test_oslo_call.py covers both for zmesh.
EXPECTED_SKIPS = {
    'CallTestCase.test_mandatory_call',
    'CallTestCase.test_monitor_long_call',
}
SUITE_TIMEOUT_S = 900

INNER = r'''
import json, sys, unittest
out = sys.argv[1]
suite = unittest.defaultTestLoader.loadTestsFromName(%r)

class Recorder(unittest.TextTestResult):
    outcomes = {}
    def _name(self, test):
        return '%%s.%%s' %% (type(test).__name__, test._testMethodName)
    def addSuccess(self, test):
        super().addSuccess(test); self.outcomes[self._name(test)] = ['pass', '']
    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.outcomes[self._name(test)] = ['fail', self._exc_info_to_string(err, test)]
    def addError(self, test, err):
        super().addError(test, err)
        name = self._name(test) if isinstance(test, unittest.TestCase) else str(test)
        self.outcomes[name] = ['error', self._exc_info_to_string(err, test)]
    def addSkip(self, test, reason):
        super().addSkip(test, reason); self.outcomes[self._name(test)] = ['skip', reason]
    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err); self.outcomes[self._name(test)] = ['xfail', '']
    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test); self.outcomes[self._name(test)] = ['xpass', '']

runner = unittest.TextTestRunner(verbosity=2, resultclass=Recorder, stream=sys.stdout)
result = runner.run(suite)
with open(out, 'w') as f:
    json.dump(Recorder.outcomes, f)
''' % MODULE


def check(outcomes):
    """Returns a list of problems (empty when the run is as expected)."""
    problems = []
    for name, (status, detail) in sorted(outcomes.items()):
        cls = name.split('.')[0]
        if cls not in CLASSES:
            problems.append('unexpected test %s (%s): a new suite version? look at it' %
                            (name, status))
        elif status == 'skip' and name not in EXPECTED_SKIPS:
            problems.append('%s was skipped (not an expected skip): %s' % (name, detail))
        elif status != 'skip' and name in EXPECTED_SKIPS:
            problems.append('%s was expected to be skipped but %s' % (name, status))
        elif status not in ('pass', 'skip'):
            problems.append('%s: %s\n%s' % (name, status, detail))
    for cls in CLASSES:
        passed = [n for n, (s, _) in outcomes.items() if n.startswith(cls + '.') and s == 'pass']
        if not passed:
            problems.append('no test of %s passed (did it run?)' % cls)
    for name in EXPECTED_SKIPS:
        if name not in outcomes:
            problems.append('%s did not run at all' % name)
    return problems


def main():
    env = dict(os.environ)
    env['PATH'] = '/usr/bin:/bin:/usr/sbin:/sbin'
    with LocalCluster(replicas=3, proxies=1) as cluster, \
            tempfile.TemporaryDirectory(prefix='oslo-func-') as tmp:
        env['RPC_TRANSPORT_URL'] = cluster.url
        env['NOTIFY_TRANSPORT_URL'] = cluster.url
        env['ZMESH_IPC_DIR'] = cluster.ipc_dirs[0]
        out = os.path.join(tmp, 'outcomes.json')
        print('running %s against %s (proxy %s)' % (MODULE, cluster.url, cluster.ipc_dirs[0]),
              flush=True)
        try:
            proc = subprocess.run(['/usr/bin/python3', '-c', INNER, out], env=env, cwd=tmp,
                                  timeout=SUITE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print('FAIL: the suite did not finish within %d s' % SUITE_TIMEOUT_S)
            return 1
        if not os.path.exists(out):
            print('FAIL: the suite exited with %d before recording results' % proc.returncode)
            return 1
        with open(out) as f:
            outcomes = json.load(f)
    problems = check(outcomes)
    counts = {}
    for status, _ in outcomes.values():
        counts[status] = counts.get(status, 0) + 1
    print('outcomes: %s' % ', '.join('%s=%d' % kv for kv in sorted(counts.items())))
    if problems:
        print('FAIL:\n- ' + '\n- '.join(problems))
        return 1
    print('OK: %d tests passed, skipped exactly %s' %
          (counts.get('pass', 0), ', '.join(sorted(EXPECTED_SKIPS))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
