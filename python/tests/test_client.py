"""zmesh.client on its own: Target, wait(), the exceptions, argument checks. No cluster needed
(the Transport tests here only meet "no proxy")."""

import os
import tempfile
import threading
import time
import unittest

import zmesh
from zmesh import _zmesh
from zmesh import client


class FakePending(object):
    """A Pending made of a pipe: done once a byte was written (like the binding's eventfd)."""

    def __init__(self, value=None, error=None):
        self.read_fd, self.write_fd = os.pipe()
        self.value = value
        self.error = error
        self._done = False

    def finish(self):
        self._done = True
        os.write(self.write_fd, b"x")

    def fileno(self):
        return self.read_fd

    def done(self):
        return self._done

    def result(self):
        if not self._done:
            raise RuntimeError("not done")
        if self.error is not None:
            raise self.error
        return self.value

    def close(self):
        os.close(self.read_fd)
        os.close(self.write_fd)


class TargetTest(unittest.TestCase):
    def test_defaults(self):
        t = zmesh.Target(topic="compute")
        self.assertEqual(t, ("openstack", "compute", ""))
        self.assertEqual(zmesh.Target("nova", "compute", "host-1").server, "host-1")
        self.assertEqual(zmesh.Target(None, "compute", None), ("openstack", "compute", ""))

    def test_topic_is_required(self):
        with self.assertRaises(ValueError):
            zmesh.Target()
        with self.assertRaises(ValueError):
            zmesh.Target(exchange="nova", server="s")


class WaitTest(unittest.TestCase):
    def test_returns_the_result_once_done(self):
        pending = FakePending(value=("reply", False))
        self.addCleanup(pending.close)
        threading.Timer(0.05, pending.finish).start()
        self.assertEqual(zmesh.wait(pending, timeout_s=10), ("reply", False))

    def test_raises_the_operations_error(self):
        pending = FakePending(error=_zmesh.NotFound("NOT_FOUND", "no server"))
        self.addCleanup(pending.close)
        pending.finish()
        with self.assertRaises(zmesh.NotFound) as raised:
            zmesh.wait(pending)
        self.assertEqual((raised.exception.code, raised.exception.message),
                         ("NOT_FOUND", "no server"))
        self.assertEqual(str(raised.exception), "NOT_FOUND: no server")

    def test_gives_up_after_timeout_s(self):
        pending = FakePending(value=1)
        self.addCleanup(pending.close)
        start = time.monotonic()
        with self.assertRaises(zmesh.Timeout) as raised:
            zmesh.wait(pending, timeout_s=0.2)
        self.assertGreaterEqual(time.monotonic() - start, 0.2)
        self.assertEqual(raised.exception.code, "DEADLINE_EXCEEDED")
        pending.finish()
        self.assertEqual(zmesh.wait(pending, timeout_s=0), 1)


class ExceptionsTest(unittest.TestCase):
    def test_hierarchy(self):
        for cls in (zmesh.Timeout, zmesh.NotFound, zmesh.Unavailable, zmesh.InvalidArgument):
            self.assertTrue(issubclass(cls, zmesh.Error))
        self.assertIs(zmesh.Error, _zmesh.Error)
        self.assertTrue(issubclass(zmesh.Error, Exception))


class ArgumentsTest(unittest.TestCase):
    def test_seconds_become_milliseconds_rounded_up(self):
        self.assertEqual(client._ms(1, "t"), 1000)
        self.assertEqual(client._ms(0.0001, "t"), 1)
        self.assertEqual(client._ms(2.5, "t"), 2500)
        for bad in (None, "1", True):
            with self.assertRaises(TypeError):
                client._ms(bad, "t")

    def test_ipc_dir_defaults_to_the_environment(self):
        with tempfile.TemporaryDirectory(prefix="zmesh-noproxy-") as empty:
            old = os.environ.get("ZMESH_IPC_DIR")
            os.environ["ZMESH_IPC_DIR"] = empty
            try:
                with self.assertRaises(zmesh.Unavailable) as raised:
                    zmesh.Transport(connect_timeout_s=0.2)
            finally:
                if old is None:
                    del os.environ["ZMESH_IPC_DIR"]
                else:
                    os.environ["ZMESH_IPC_DIR"] = old
            self.assertIn(empty, raised.exception.message)

    def test_bad_transport_options_are_invalid_arguments(self):
        with self.assertRaises(zmesh.InvalidArgument):
            zmesh.Transport("/nonexistent", connect_timeout_s=-1)
        with self.assertRaises(zmesh.InvalidArgument):
            zmesh.Transport("/nonexistent", max_payload_bytes=-5)


if __name__ == "__main__":
    unittest.main()
