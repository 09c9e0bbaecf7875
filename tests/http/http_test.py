"""The HTTP listener of a real `floe serve`: a workload with the real floe
CLI (N messages published, K of them consumed by a durable consumer), then
/metrics parsed strictly (the publish counter is N, the lag gauge N - K, the
group commits hold exactly the N messages), /healthz, /readyz, and the
/api/v1 JSON against what `floe cluster status`, `floe stream info` and
`floe session list` print; unknown paths 404 and other methods 405, with
JSON errors.

Run by ctest (FLOE_BINARY is the build's floe): python3 http_test.py"""

import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import http_support as hs  # noqa: E402
from http_support import floe_cli, run  # noqa: E402

N, K, SIZE = 237, 61, 64


class HttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = floe_cli.TempDir("floe-http-test-")
        cls.node = floe_cli.Node(os.path.join(cls.dir.path, "data"))
        cls.node.start()
        cls.port = hs.http_port(cls.node)
        hs.workload(cls.node, "orders", N, K, SIZE)

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.dir.cleanup()

    def test_metrics_show_the_workload(self):
        status, headers, body = hs.get(self.port, "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers)
        samples, types = hs.parse_metrics(body.decode("utf-8"))
        v = lambda name, **l: hs.value(samples, name, **l)  # noqa: E731
        self.assertEqual(v("floe_stream_published_messages_total", stream="orders"), N)
        self.assertEqual(v("floe_stream_published_bytes_total", stream="orders"), N * SIZE)
        self.assertEqual(v("floe_published_messages_total"), N)
        self.assertEqual(v("floe_stream_delivered_messages_total", stream="orders"), K)
        self.assertEqual(v("floe_stream_redelivered_messages_total", stream="orders"), 0)
        self.assertEqual(v("floe_stream_frontier_seq", stream="orders"), N)
        self.assertEqual(v("floe_consumer_lag_messages", stream="orders", consumer="c1"), N - K)
        self.assertEqual(v("floe_consumer_ack_floor_seq", stream="orders", consumer="c1"), K)
        self.assertGreater(v("floe_consumer_lag_seconds", stream="orders", consumer="c1"), 0)
        # Every published message went through exactly one group commit (and its fdatasync).
        self.assertEqual(v("floe_log_group_commit_messages_sum"), N)
        commits = v("floe_log_group_commit_messages_count")
        self.assertGreaterEqual(commits, 1)
        self.assertEqual(v("floe_log_fdatasync_seconds_count"), commits)
        self.assertEqual(v("floe_stream_group_commits_total", stream="orders"), commits)
        self.assertGreaterEqual(v("floe_publish_ack_latency_seconds_count"), 1)
        self.assertGreater(v("floe_publish_ack_latency_seconds_sum"), 0)
        self.assertGreater(v("floe_bank_commit_seconds_count"), 0)
        self.assertEqual(v("floe_log_fdatasync_errors_total"), 0)
        self.assertEqual(v("floe_leases_held"), 1)
        self.assertEqual(v("floe_node_ready"), 1)
        self.assertEqual(v("floe_cluster_nodes", alive="true"), 1)
        self.assertGreaterEqual(v("floe_sessions_opened_total", protocol="floe"), 2)
        for family in ("floe_publish_ack_latency_seconds", "floe_log_fdatasync_seconds", "floe_bank_commit_seconds"):
            self.assertEqual(types[family], "histogram")

    def test_health_and_readiness(self):
        status, _, body = hs.get(self.port, "/healthz")
        self.assertEqual((status, body), (200, b"ok\n"))
        status, _, ready = hs.get_json(self.port, "/readyz")
        self.assertEqual(status, 200)
        self.assertEqual(ready["ready"], True)
        self.assertEqual(ready["node"], "node-1")

    def test_streams_api_mirrors_stream_info(self):
        info = json.loads(run(["stream", "info", "orders", "--json", "--server", self.node.address]).out)
        status, _, one = hs.get_json(self.port, "/api/v1/streams/orders")
        self.assertEqual(status, 200)
        for key, value in info.items():  # every member of `floe stream info --json`, same value
            if key == "consumers":
                continue
            self.assertEqual(one[key], value, key)
        self.assertEqual([c["name"] for c in one["consumers"]], [c["name"] for c in info["consumers"]])
        c = one["consumers"][0]
        self.assertEqual((c["ack_floor"], c["lag"]), (K, N - K))
        self.assertEqual(one["counters"]["published_messages"], N)
        self.assertEqual(one["counters"]["delivered_messages"], K)
        self.assertEqual((one["owner"], one["served_here"]), ("node-1", True))
        status, _, all_ = hs.get_json(self.port, "/api/v1/streams")
        self.assertEqual(status, 200)
        self.assertIn("orders", [s["name"] for s in all_["streams"]])
        self.assertGreater(all_["time_ms"], 0)
        status, _, err = hs.get_json(self.port, "/api/v1/streams/no-such")
        self.assertEqual((status, err["error"]["code"]), (404, "UNKNOWN_STREAM"))
        status, _, err = hs.get_json(self.port, "/api/v1/streams/bad%20name")
        self.assertEqual((status, err["error"]["code"]), (400, "INVALID_NAME"))

    def test_cluster_api_mirrors_cluster_status(self):
        r = run(["cluster", "status", "--json", "--bank", self.node.bank])
        self.assertEqual(r.rc, 0, r)
        cli = json.loads(r.out)
        status, _, api = hs.get_json(self.port, "/api/v1/cluster")
        self.assertEqual(status, 200)
        self.assertEqual([n["id"] for n in api["nodes"]], [n["id"] for n in cli["nodes"]])
        self.assertEqual(set(api["nodes"][0]), set(cli["nodes"][0]))
        for key in ("address", "alive", "drained", "streams", "mqtt_address"):
            self.assertEqual(api["nodes"][0][key], cli["nodes"][0][key], key)
        strip = lambda ss: [{k: v for k, v in s.items() if k != "expires_in_ms"} for s in ss]  # noqa: E731
        self.assertEqual(strip(api["streams"]), strip(cli["streams"]))

    def test_sessions_api_mirrors_session_list(self):
        # A consumer that stays connected holds its session meanwhile.
        run(["stream", "create", "idle", "--server", self.node.address])
        consumer = subprocess.Popen(
            [floe_cli.BINARY, "consume", "idle", "--consumer", "waiter", "--wait-ms", "20000", "--max", "1",
             "--server", self.node.address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline, mine = time.monotonic() + 15, []
            while time.monotonic() < deadline and not mine:
                status, _, api = hs.get_json(self.port, "/api/v1/sessions")
                self.assertEqual(status, 200)
                mine = [s for s in api["sessions"] if s["stream"] == "idle" and s["holder"] == "node-1"]
                time.sleep(0.1)
            self.assertTrue(mine, "the waiting consumer's session never showed")
            cli = json.loads(run(["session", "list", "--json", "--bank", self.node.bank]).out)
            by_id = {s["id"]: s for s in cli}
            self.assertIn(mine[0]["id"], by_id)
            self.assertEqual(set(mine[0]), set(by_id[mine[0]["id"]]))
            self.assertEqual(mine[0]["consumer"], "waiter")
            self.assertEqual(mine[0]["kind"], "consumer")
        finally:
            consumer.kill()
            consumer.wait()

    def test_unknown_paths_and_methods_are_refused_as_json(self):
        status, _, err = hs.get_json(self.port, "/no/such/path")
        self.assertEqual((status, err["error"]["code"]), (404, "NOT_FOUND"))
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            status, headers, body = hs.get(self.port, "/metrics", method=method, data=b"x")
            self.assertEqual(status, 405, method)
            self.assertEqual(headers.get("Allow"), "GET, HEAD")
            self.assertEqual(json.loads(body)["error"]["code"], "METHOD_NOT_ALLOWED")
        status, headers, body = hs.get(self.port, "/metrics", method="HEAD")
        self.assertEqual((status, body), (200, b""))
        # Requests are bounded: a huge header or URI is refused before any handler.
        status, _, _ = hs.get(self.port, "/metrics?" + "a" * 20000)
        self.assertEqual(status, 414)
        req = hs.urllib.request.Request("http://127.0.0.1:%d/metrics" % self.port, headers={"X-Big": "a" * 20000})
        with self.assertRaises(hs.urllib.error.HTTPError) as e:
            hs.urllib.request.urlopen(req, timeout=10)
        self.assertEqual(e.exception.code, 400)

    def test_the_listener_is_off_with_an_empty_address(self):
        data = os.path.join(self.dir.path, "off")
        p = subprocess.Popen([floe_cli.BINARY, "serve", "--data", data, "--listen", "127.0.0.1:0", "--mqtt-listen", "",
                              "--http-listen", ""], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            lines = []
            for line in iter(p.stdout.readline, b""):  # noqa: B007
                lines.append(line.decode("utf-8", "replace"))
                if "listening on" in lines[-1]:
                    break
            self.assertTrue(any("listening on" in line for line in lines), lines)
            self.assertFalse(any("HTTP on" in line for line in lines), lines)
        finally:
            p.terminate()
            p.wait(20)
            p.stdout.close()

if __name__ == "__main__":
    if not floe_cli.BINARY:
        sys.exit("set FLOE_BINARY to the floe binary")
    unittest.main(verbosity=2)
