"""/readyz follows the bank: a real `floe serve` on a real etcd (Debian
etcd-server) is ready (200) with its stream open; once etcd is stopped,
/readyz answers 503 naming the bank (and within the HTTP timeout: a dead bank
must not hang the probe), /healthz stays 200 and floe_bank_up drops to 0;
when etcd comes back on the same data directory the node is ready again.

Skipped outside CI when /usr/bin/etcd is missing; with CI=true it must run.

Run by ctest (FLOE_BINARY is the build's floe): python3 readyz_test.py"""

import os
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import http_support as hs  # noqa: E402
from http_support import floe_cli, run  # noqa: E402

ETCD = os.environ.get("FLOE_ETCD", "/usr/bin/etcd")
IN_CI = os.environ.get("CI") == "true"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Etcd:
    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "etcd")
        self.client, self.peer = free_port(), free_port()
        self.proc = None

    def start(self):
        url = "http://127.0.0.1:%d" % self.client
        peer = "http://127.0.0.1:%d" % self.peer
        self.log = open(os.path.join(os.path.dirname(self.dir), "etcd.log"), "ab")
        self.proc = subprocess.Popen(
            [ETCD, "--name", "e1", "--data-dir", self.dir, "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "e1=" + peer,
             "--initial-cluster-state", "new", "--log-level", "error"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status, _, _ = hs.get(self.client, "/health", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("etcd did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.log.close()


@unittest.skipIf(not os.access(ETCD, os.X_OK) and not IN_CI, "no etcd at %s (Debian package etcd-server)" % ETCD)
class ReadyzTest(unittest.TestCase):
    def setUp(self):
        self.dir = floe_cli.TempDir("floe-readyz-test-")
        self.etcd = Etcd(self.dir.path)
        self.etcd.start()
        bank = "etcd://127.0.0.1:%d/readyz-%d/" % (self.etcd.client, os.getpid())
        self.node = floe_cli.Node(os.path.join(self.dir.path, "data"), extra=["--bank", bank])
        self.node.start()
        self.port = hs.http_port(self.node)

    def tearDown(self):
        self.node.kill()
        self.etcd.stop()
        self.dir.cleanup()

    def wait_ready(self, want, timeout=30.0):
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            start = time.monotonic()
            status, _, body = hs.get_json(self.port, "/readyz")
            self.assertLess(time.monotonic() - start, 8.0, "/readyz took too long: the probe must not hang")
            last = (status, body)
            if (status == 200) == want:
                return body
            time.sleep(0.2)
        self.fail("/readyz never %s: last %s" % ("ready" if want else "not ready", last))

    def test_readyz_follows_the_bank(self):
        r = run(["stream", "create", "orders", "--server", self.node.address])
        self.assertEqual(r.rc, 0, r)
        self.wait_ready(True)
        samples, _ = hs.parse_metrics(hs.get(self.port, "/metrics")[2].decode())
        self.assertEqual(hs.value(samples, "floe_bank_up"), 1)
        self.assertEqual(hs.value(samples, "floe_leases_held"), 1)

        self.etcd.stop()
        body = self.wait_ready(False)
        self.assertFalse(body["ready"])
        self.assertIn("bank", body["reason"])
        self.assertEqual(hs.get(self.port, "/healthz")[0], 200)
        samples, _ = hs.parse_metrics(hs.get(self.port, "/metrics")[2].decode())
        self.assertEqual(hs.value(samples, "floe_bank_up"), 0)
        self.assertEqual(hs.value(samples, "floe_node_ready"), 0)
        status, _, err = hs.get_json(self.port, "/api/v1/streams")
        self.assertEqual((status, err["error"]["code"]), (503, "UNAVAILABLE"))

        self.etcd.start()  # same data directory: the node's records are there
        self.wait_ready(True, timeout=60)


if __name__ == "__main__":
    if not floe_cli.BINARY:
        sys.exit("set FLOE_BINARY to the floe binary")
    unittest.main(verbosity=2)
