"""The live web view of a real `floe serve` (docs/operations.md "The web
view"), opened in headless Chromium.

WebViewFilesTest (no browser): / and /webview/* are served from the binary
with the right Content-Type and Cache-Control: no-cache, and every file the
page names is served.

WebViewBrowserTest: the real floe CLI creates two streams, publishes, lets
durable consumer c1 take some, and keeps a consumer session waiting; the
page, driven over the Chrome DevTools protocol (--remote-debugging-pipe:
NUL-separated JSON on fds 3 and 4, Python's standard library only), must
list the node, both streams with their owner and frontier, the consumer
with its lag, and the waiting session. A screenshot is saved under the
build dir (path printed). Then more messages are published and, without a
reload, the page shows the new frontier and a publish rate that matches
the counters it sampled; when the node stops, the page says it is
unreachable. It loads nothing but the node's own URLs and throws nothing.

Outside CI the browser test is skipped (with the reason) when no chromium
is installed (scripts/bootstrap installs it); with CI=true it must run.

Run by ctest (FLOE_BINARY is the build's floe): python3 webview_test.py"""

import base64
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import http_support as hs  # noqa: E402
from http_support import floe_cli, run  # noqa: E402

IN_CI = os.environ.get("CI") == "true"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = os.environ.get("FLOE_ARTIFACT_DIR") or os.path.join(os.getcwd(), "webview-artifacts")
SIZE = 100  # bytes per synthetic message: published_bytes grows by SIZE per message


def start_node(data_dir):
    """A `floe serve` with HTTP on a free port and no MQTT listener."""
    node = floe_cli.Node(data_dir)
    argv = [floe_cli.BINARY, "serve", "--data", data_dir, "--listen", "127.0.0.1:0", "--mqtt-listen", "",
            "--http-listen", "127.0.0.1:0", "--node-id", node.node_id]
    node.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    listening = threading.Event()

    def reader():
        for line in iter(node.proc.stdout.readline, b""):
            text = line.decode("utf-8", "replace")
            node.output.append(text)
            m = re.search(r"listening on [^ ]+:(\d+) ", text)
            if m:
                node.port = int(m.group(1))
                listening.set()

    threading.Thread(target=reader, daemon=True).start()
    if not listening.wait(20):
        node.kill()
        raise RuntimeError("node did not start: " + "".join(node.output))
    return node


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe: we
    write commands to its fd 3 and read answers and events from its fd 4,
    each message JSON ended by a NUL byte. One page, attached flat: page
    commands carry its sessionId."""

    def __init__(self, profile_dir):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        args = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--user-data-dir=" + profile_dir, "--remote-debugging-pipe",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--mute-audio",
            # The page's timers must run at full speed in a window nobody looks at.
            "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows", "about:blank",
        ]
        # fds 3 and 4 in chromium, whatever numbers the pipes have here.
        script = 'exec "$0" "$@" 3<&%d 4>&%d' % (to_chrome_r, from_chrome_w)
        self.log = open(os.path.join(profile_dir, "chromium.log"), "wb")
        self.proc = subprocess.Popen(["sh", "-c", script, CHROMIUM] + args, pass_fds=(to_chrome_r, from_chrome_w),
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._lock = threading.Condition()
        self._answers = {}
        self.events = []  # (method, params) of every event, in order
        self._next_id = 0
        self._closed = False
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.page(domain + ".enable")
        # A laptop screen.
        self.page("Emulation.setDeviceMetricsOverride", width=1366, height=900, deviceScaleFactor=1, mobile=False)

    def _read(self):
        buf = b""
        while True:
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._lock:
                    if "id" in msg:
                        self._answers[msg["id"]] = msg
                    else:
                        self.events.append((msg.get("method"), msg.get("params", {})))
                    self._lock.notify_all()
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def call(self, method, session=None, timeout=30.0, **params):
        with self._lock:
            self._next_id += 1
            mid = self._next_id
        msg = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._lock:
            while mid not in self._answers:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise AssertionError("chromium did not answer %s (closed=%s); its log: %s" % (
                        method, self._closed, self.log.name))
                self._lock.wait(left)
            answer = self._answers.pop(mid)
        if "error" in answer:
            raise AssertionError("%s failed: %s" % (method, answer["error"]))
        return answer["result"]

    def page(self, method, **params):
        return self.call(method, session=self.session, **params)

    def navigate(self, url, timeout=20.0):
        """Loads `url` and waits for its load event (the page's script has run)."""
        with self._lock:
            seen = len(self.events)
        self.page("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        with self._lock:
            while not any(m == "Page.loadEventFired" for m, _ in self.events[seen:]):
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise AssertionError("%s did not load" % url)
                self._lock.wait(left)

    def js(self, expression):
        """The value of a JavaScript expression in the page (JSON-able)."""
        r = self.page("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError("%s threw: %s" % (expression, r["exceptionDetails"]))
        return r["result"].get("value")

    def wait_for(self, expression, timeout=20.0, what=None):
        """Polls `expression` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        status = self.js("(document.getElementById('status') || {}).textContent")
        raise AssertionError("timed out waiting for %s (last value %r; the page says %r)" % (
            what or expression, value, status))

    def screenshot(self, path):
        data = self.page("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        print("webview_test: screenshot %s" % path, flush=True)
        return path

    def close(self):
        try:
            if self.proc.poll() is None:
                self.call("Browser.close", timeout=10)
        except AssertionError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self._to_chrome)
        self.log.close()


# Every row of a table body as {key, sample_ms, cells: {field: {"t": text, "v": data-value}}}.
ROWS_JS = """(function (tbody, key) {
  return Array.from(document.getElementById(tbody).rows).map((tr) => ({
    key: tr.getAttribute(key),
    sample_ms: tr.dataset.sampleMs === undefined ? null : Number(tr.dataset.sampleMs),
    cells: Object.fromEntries(Array.from(tr.cells).map((td) => [td.dataset.field,
        {t: td.textContent, v: td.dataset.value === undefined ? null : td.dataset.value}])),
  }));
})(%s, %s)"""


def rows_js(tbody, key):
    return ROWS_JS % (json.dumps(tbody), json.dumps(key))


class WebViewFilesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = floe_cli.TempDir("floe-webview-files-")
        cls.node = start_node(os.path.join(cls.dir.path, "data"))
        cls.port = hs.http_port(cls.node)

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.dir.cleanup()

    def test_the_page_and_its_files_are_served_from_the_binary(self):
        status, headers, page = hs.get(self.port, "/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/html; charset=utf-8")
        self.assertEqual(headers["Cache-Control"], "no-cache")
        self.assertIn("default-src 'self'", headers["Content-Security-Policy"])
        html = page.decode("utf-8")
        self.assertIn('<tbody id="streams-body">', html)
        # Every file the page names is the node's own, and served.
        refs = re.findall(r'(?:src|href)="([^"]+)"', html)
        self.assertEqual(sorted(refs), ["/webview/app.js", "/webview/style.css"])
        types = {"/webview/app.js": "text/javascript; charset=utf-8", "/webview/style.css": "text/css; charset=utf-8"}
        for ref in refs:
            status, headers, body = hs.get(self.port, ref)
            self.assertEqual(status, 200, ref)
            self.assertEqual(headers["Content-Type"], types[ref], ref)
            self.assertEqual(headers["Cache-Control"], "no-cache", ref)
            self.assertGreater(len(body), 1000, ref)
        # The script reads only the node's API (relative URLs), nothing elsewhere.
        _, _, script = hs.get(self.port, "/webview/app.js")
        self.assertNotIn("http://", script.decode())
        self.assertNotIn("https://", script.decode())
        status, headers, body = hs.get(self.port, "/", method="HEAD")
        self.assertEqual((status, body, headers["Content-Type"]), (200, b"", "text/html; charset=utf-8"))
        status, _, err = hs.get_json(self.port, "/webview/no-such.js")
        self.assertEqual((status, err["error"]["code"]), (404, "NOT_FOUND"))
        status, _, _ = hs.get(self.port, "/webview/../metrics")
        self.assertNotEqual(status, 500)


    def test_idle_browser_connections_hold_no_listener_thread(self):
        # A browser keeps connections open after their answers (the page
        # opens several at once); the listener's two threads must not wait
        # on them while /metrics or the page's next poll waits.
        idle = []
        start = time.monotonic()
        try:
            for path in ("/webview/app.js", "/webview/style.css", "/"):
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                c.request("GET", path, headers={"Connection": "keep-alive"})
                r = c.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
                idle.append((c, r.getheader("Connection")))  # left open, as a browser would
            status, _, _ = hs.get(self.port, "/metrics", timeout=10)
            took = time.monotonic() - start
            self.assertEqual(status, 200)
            self.assertLess(took, 2.0, "four small requests took %.1f s: they waited behind idle connections" % took)
            # The listener closes each connection after its answer.
            self.assertEqual([connection for _, connection in idle], ["close"] * 3)
        finally:
            for c, _ in idle:
                c.close()


@unittest.skipIf(CHROMIUM is None and not IN_CI,
                 "no chromium (apt-get install chromium, or scripts/bootstrap); required when CI=true")
class WebViewBrowserTest(unittest.TestCase):
    def setUp(self):
        self.assertIsNotNone(CHROMIUM, "CI=true but no chromium: scripts/bootstrap installs it")
        self.dir = tempfile.mkdtemp(prefix="floe-webview-test-")
        self.node = start_node(os.path.join(self.dir, "data"))
        self.port = hs.http_port(self.node)
        self.waiter = None
        self.browser = None

    def tearDown(self):
        if self.browser:
            self.browser.close()
        if self.waiter:
            self.waiter.kill()
            self.waiter.wait()
        self.node.stop()
        if not os.environ.get("FLOE_KEEP_TEST_DIRS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def floe(self, *args, timeout=60):
        r = run(list(args) + ["--server", self.node.address], timeout=timeout)
        self.assertEqual(r.rc, 0, r)
        return r

    def produce(self, stream, count):
        self.floe("produce", stream, "--count", str(count), "--size", str(SIZE))

    def stream_rows(self):
        return {r["key"]: r for r in self.browser.js(rows_js("streams-body", "data-stream"))}

    def test_the_page_shows_the_cluster_live(self):
        # The workload, with the real CLI: two streams, 10 of orders' 50 messages
        # taken by durable consumer c1, and a consumer session that stays, waiting.
        self.floe("stream", "create", "orders")
        self.floe("stream", "create", "payments")
        self.produce("orders", 50)
        self.produce("payments", 20)
        self.floe("consume", "orders", "--consumer", "c1", "--max", "10", "--wait-ms", "2000", timeout=30)
        self.waiter = subprocess.Popen(
            [floe_cli.BINARY, "consume", "payments", "--consumer", "watcher", "--from", "new", "--wait-ms", "120000",
             "--server", self.node.address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline, mine = time.monotonic() + 15, []
        while time.monotonic() < deadline and not mine:
            _, _, api = hs.get_json(self.port, "/api/v1/sessions")
            mine = [s for s in api["sessions"] if s["consumer"] == "watcher" and s["holder"] == "node-1"]
            time.sleep(0.1)
        self.assertTrue(mine, "the waiting consumer's session never showed in /api/v1/sessions")
        session_id = mine[0]["id"]
        listed = json.loads(run(["session", "list", "--json", "--bank", self.node.bank]).out)
        self.assertIn(session_id, [s["id"] for s in listed])

        self.browser = Browser(self.dir)
        url = "http://127.0.0.1:%d/" % self.port
        self.browser.navigate(url)
        b = self.browser
        b.wait_for("document.body.dataset.state === 'live' && document.querySelector("
                   "'#sessions-body tr[data-session=%s]') !== null" % json.dumps(session_id),
                   what="the page live with the waiting session")

        # What the page lists is what the CLI made.
        nodes = {r["key"]: r["cells"] for r in b.js(rows_js("nodes-body", "data-node"))}
        self.assertEqual(list(nodes), ["node-1"])
        self.assertEqual(nodes["node-1"]["alive"]["v"], "true")
        self.assertEqual(nodes["node-1"]["address"]["t"], self.node.address)
        streams = self.stream_rows()
        self.assertEqual(sorted(streams), ["orders", "payments"])
        for name, frontier in (("orders", 50), ("payments", 20)):
            cells = streams[name]["cells"]
            self.assertEqual(cells["owner"]["t"], "node-1", name)
            self.assertEqual(int(cells["frontier"]["v"]), frontier, name)
            self.assertEqual(int(cells["published_messages"]["v"]), frontier, name)
        consumers = {r["key"]: r["cells"] for r in b.js(rows_js("consumers-body", "data-consumer"))}
        self.assertEqual(sorted(consumers), ["orders/c1", "payments/watcher"])
        self.assertEqual((int(consumers["orders/c1"]["ack_floor"]["v"]), int(consumers["orders/c1"]["lag"]["v"])),
                         (10, 40))
        sessions = {r["key"]: r["cells"] for r in b.js(rows_js("sessions-body", "data-session"))}
        self.assertIn(session_id, sessions)
        s = sessions[session_id]
        self.assertEqual((s["kind"]["t"], s["stream"]["t"], s["consumer"]["t"], s["holder"]["t"]),
                         ("consumer", "payments", "watcher", "node-1"))
        self.assertEqual(b.js("document.getElementById('node-id').textContent"), "node-1")
        b.wait_for("Number(document.body.dataset.polls) >= 2", what="a second poll (the first rates)")
        shot = b.screenshot(os.path.join(ARTIFACTS, "webview.png"))
        self.assertGreater(os.path.getsize(shot), 10000)

        # Live: more messages, and the same document (no reload) shows them.
        # Every render of the orders row is recorded, with the sample it shows.
        b.js("""window.floeTestMarker = 'same document';
          window.floeTestSamples = [];
          const snap = () => {
            const tr = document.querySelector('#streams-body tr[data-stream="orders"]');
            const v = (f) => tr.querySelector('td[data-field="' + f + '"]').dataset.value;
            window.floeTestSamples.push({sample_ms: Number(tr.dataset.sampleMs), published: Number(v('published_messages')),
                                         frontier: Number(v('frontier')), rate: v('messages_rate'),
                                         bytes_rate: v('bytes_rate')});
          };
          snap();  // what it shows now, before the new messages
          new MutationObserver(snap).observe(document.getElementById('streams-body'),
                                             {subtree: true, childList: true, characterData: true, attributes: true});
          true""")
        polls_before = int(b.js("document.body.dataset.polls"))
        self.produce("orders", 30)
        b.wait_for("(document.querySelector('#streams-body tr[data-stream=\"orders\"] td[data-field=\"frontier\"]')"
                   " || {dataset: {}}).dataset.value === '80'", what="the frontier of orders to show 80")
        b.screenshot(os.path.join(ARTIFACTS, "webview-publishing.png"))  # most likely with its rate
        # Two more polls after the one that showed 80: the rate falls back to 0.
        polls_at_80 = int(b.js("document.body.dataset.polls"))
        b.wait_for("Number(document.body.dataset.polls) >= %d" % (polls_at_80 + 2), what="two more polls")
        self.assertEqual(b.js("window.floeTestMarker"), "same document", "the page reloaded")
        self.assertGreater(polls_at_80, polls_before)

        # One sample per render (a changed row, or at least its data-sample-ms).
        samples = []
        for x in b.js("window.floeTestSamples"):
            if not samples or samples[-1]["sample_ms"] != x["sample_ms"]:
                samples.append(x)
            else:
                samples[-1] = x  # the same poll's row, fully rendered
        self.assertGreaterEqual(len(samples), 3, samples)
        self.assertEqual((samples[0]["published"], samples[-1]["published"]), (50, 80), samples)
        self.assertEqual(samples[-1]["frontier"], 80)
        # Each rate is the counters' difference over the node's clocks of two samples.
        for prev, cur in zip(samples, samples[1:]):
            expected = (cur["published"] - prev["published"]) / ((cur["sample_ms"] - prev["sample_ms"]) / 1000.0)
            self.assertIsNotNone(cur["rate"], cur)
            self.assertAlmostEqual(float(cur["rate"]), expected, places=6, msg=(prev, cur))
            self.assertAlmostEqual(float(cur["bytes_rate"]), expected * SIZE, places=4, msg=(prev, cur))
        self.assertTrue(any(float(x["rate"]) > 0 for x in samples[1:]), samples)
        self.assertEqual(float(samples[-1]["rate"]), 0.0, samples)
        text = self.stream_rows()["orders"]["cells"]
        self.assertEqual((text["frontier"]["t"], text["messages_rate"]["t"]), ("80", "0.0"))

        # The node goes away: the page says so and keeps what it last saw.
        self.node.stop()
        b.wait_for("document.getElementById('status').dataset.state === 'unreachable'", what="the unreachable state")
        self.assertIn("unreachable", b.js("document.getElementById('status').textContent"))
        self.assertEqual(sorted(self.stream_rows()), ["orders", "payments"])
        b.screenshot(os.path.join(ARTIFACTS, "webview-unreachable.png"))

        # It loaded nothing but the node's own URLs, and threw nothing.
        urls = [p["request"]["url"] for m, p in b.events if m == "Network.requestWillBeSent"]
        self.assertIn(url + "webview/app.js", urls)
        self.assertEqual([u for u in urls if not u.startswith(url)], [])
        thrown = [p for m, p in b.events if m == "Runtime.exceptionThrown"]
        self.assertEqual(thrown, [])
        errors = [p for m, p in b.events if m == "Runtime.consoleAPICalled" and p.get("type") == "error"]
        self.assertEqual(errors, [])


if __name__ == "__main__":
    if not floe_cli.BINARY:
        sys.exit("set FLOE_BINARY to the floe binary")
    unittest.main(verbosity=2)
