"""A real Prometheus server (Debian package `prometheus`) scrapes a real
`floe serve` on loopback every second; after a workload with the real floe
CLI (N published, K consumed by durable consumer c1), Prometheus's HTTP API
(/api/v1/query) must return floe's publish counter == N and the lag gauge ==
N - K, and `up` == 1 for the node.

Outside CI the test is skipped (with the reason) when no prometheus binary is
installed (scripts/bootstrap installs it); with CI=true it must run.

Run by ctest (FLOE_BINARY is the build's floe): python3 prometheus_test.py"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import http_support as hs  # noqa: E402
from http_support import floe_cli  # noqa: E402

N, K = 150, 40
PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)
IN_CI = os.environ.get("CI") == "true"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """A prometheus child on 127.0.0.1 with a temp config and data dir."""

    def __init__(self, workdir, target):
        self.dir = workdir
        self.config = os.path.join(workdir, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: floe\n    static_configs:\n"
                    "      - targets: ['%s']\n" % target)
        self.proc = None
        self.port = 0
        self.log = os.path.join(workdir, "prometheus.log")

    def start(self, timeout=60.0):
        for _ in range(5):  # the free port may be taken between probe and bind: try another
            self.port = free_port()
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(
                    [PROMETHEUS, "--config.file=" + self.config, "--storage.tsdb.path=" + os.path.join(self.dir, "tsdb"),
                     "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                status, _, _ = self.get("/-/ready")
                if status == 200:
                    return
                time.sleep(0.2)
            self.stop()
        raise AssertionError("prometheus did not become ready:\n" + open(self.log, errors="replace").read()[-4000:])

    def get(self, path):
        try:
            return hs.get(self.port, path, timeout=5)
        except OSError as e:
            return 0, {}, str(e).encode()

    def query(self, expr):
        """The instant vector's values, [] while it has none."""
        status, _, body = self.get("/api/v1/query?query=" + urllib.parse.quote(expr))
        if status != 200:
            return []
        reply = json.loads(body)
        assert reply["status"] == "success", reply
        return [float(r["value"][1]) for r in reply["data"]["result"]]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@unittest.skipIf(PROMETHEUS is None and not IN_CI,
                 "no prometheus binary (apt-get install prometheus, or scripts/bootstrap); required when CI=true")
class PrometheusTest(unittest.TestCase):
    def setUp(self):
        self.assertIsNotNone(PROMETHEUS, "CI=true but no prometheus binary: scripts/bootstrap installs it")
        self.dir = floe_cli.TempDir("floe-prometheus-test-")
        self.node = floe_cli.Node(os.path.join(self.dir.path, "data"))
        self.node.start()
        self.http = hs.http_port(self.node)
        self.prom = Prometheus(self.dir.path, "127.0.0.1:%d" % self.http)
        self.prom.start()

    def tearDown(self):
        self.prom.stop()
        self.node.stop()
        self.dir.cleanup()

    def wait_for(self, expr, want, timeout=60.0):
        deadline, seen = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            seen = self.prom.query(expr)
            if seen == [want]:
                return
            time.sleep(0.5)
        targets = self.prom.get("/api/v1/targets")[2][:2000]
        self.fail("Prometheus shows %s = %s, want [%s]; targets: %s" % (expr, seen, want, targets))

    def test_prometheus_sees_the_publish_counter_and_the_lag(self):
        hs.workload(self.node, "orders", N, K)
        self.wait_for('up{job="floe"}', 1)
        self.wait_for('floe_stream_published_messages_total{job="floe",stream="orders"}', N)
        self.wait_for('floe_consumer_lag_messages{job="floe",stream="orders",consumer="c1"}', N - K)
        # More traffic moves both, as scraped a second later.
        r = hs.run(["produce", "orders", "--count", "10", "--server", self.node.address], timeout=30)
        self.assertEqual(r.rc, 0, r)
        self.wait_for('floe_stream_published_messages_total{job="floe",stream="orders"}', N + 10)
        self.wait_for('floe_consumer_lag_messages{job="floe",stream="orders",consumer="c1"}', N + 10 - K)


if __name__ == "__main__":
    if not floe_cli.BINARY:
        sys.exit("set FLOE_BINARY to the floe binary")
    unittest.main(verbosity=2)
