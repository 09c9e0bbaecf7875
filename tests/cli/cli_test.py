"""The floe CLI a newcomer meets, against a real `floe serve` node: bad
numbers refused before anything runs, --from's forms, one session id form,
--json that always parses, error texts that say what to do, node drain of a
node that does not exist, --version, and stream info's labelled bytes.

Run by ctest (FLOE_BINARY is the build's floe): python3 cli_test.py"""

import base64
import datetime
import json
import os
import re
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import floe_cli  # noqa: E402
from floe_cli import run  # noqa: E402

HEX16 = re.compile(rb"session ([0-9a-f]{16})\n")


def json_lines(out):
    """Every line of stdout parsed as JSON (fails on the first that is not)."""
    values = []
    text = out.decode("utf-8")  # strict: --json output is UTF-8
    for line in text.splitlines():
        values.append(json.loads(line))
    return values


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = floe_cli.TempDir()
        cls.node = floe_cli.Node(cls.dir.path + "/data")
        cls.node.start()
        cls.server = ["--server", cls.node.address]

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.dir.cleanup()

    def floe(self, *args, stdin=b"", timeout=10.0, server=True):
        return run(list(args) + (self.server if server else []), stdin=stdin, timeout=timeout)

    def assertRefused(self, r, *needles):
        """Exited by itself, non-zero, no signal, with each needle in its output."""
        self.assertFalse(r.timed_out, r)
        self.assertGreater(r.rc, 0, r)
        for n in needles:
            self.assertIn(n, r.text, r)

    def create(self, name, *args):
        r = self.floe("stream", "create", name, *args)
        self.assertEqual(r.rc, 0, r)

    # --- 1. one validation layer -------------------------------------------------------------

    def test_bad_numbers_are_refused_with_the_range(self):
        self.create("numbers")
        # Never stopped (counted down from 2^64-5).
        r = self.floe("produce", "numbers", "--count", "-5", timeout=10)
        self.assertRefused(r, "--count", "1 to 1000000000")
        # Aborted with std::length_error.
        r = self.floe("bench", "publish", "--stream", "numbers", "--messages", "-1")
        self.assertRefused(r, "--messages", "1 to 10000000")
        self.assertNotIn("length_error", r.text)
        # Aborted in stoull.
        r = self.floe("consume", "numbers", "--consumer", "c", "--from", "garbage")
        self.assertRefused(r, "--from", "first", "ISO 8601", "-5m")
        # Stored as 2^64-1: refused, and nothing created.
        r = self.floe("stream", "create", "wrapped", "--retention-bytes", "-1")
        self.assertRefused(r, "--retention-bytes", "1125899906842624")
        r = self.floe("stream", "info", "wrapped")
        self.assertRefused(r, "UNKNOWN_STREAM")
        # Zero, huge, non-numeric, empty: each with its range.
        for opt, value, needle in [("--ack-wait-ms", "0", "100 ms to 604800000 ms"),
                                   ("--ack-wait-ms", "99999999999999999999999", "too large"),
                                   ("--max-deliveries", "many", "not a whole number"),
                                   ("--max-message-bytes", "", "empty"),
                                   ("--max-message-bytes", "17M", "16 MiB")]:
            r = self.floe("stream", "create", "bad", opt, value)
            self.assertRefused(r, opt, needle)
            self.assertEqual(r.rc, 2, r)
        # Units are read as units.
        self.create("units", "--ack-wait-ms", "2s", "--retention-bytes", "1GiB", "--retention-age-ms", "7d")
        info = json_lines(self.floe("stream", "info", "units", "--json").out)[0]
        self.assertEqual(info["ack_wait_ms"], 2000)
        self.assertEqual(info["retention_bytes"], 1 << 30)
        self.assertEqual(info["retention_age_ms"], 7 * 86400 * 1000)

    # --- 2. --from ------------------------------------------------------------------------------

    def consume(self, stream, consumer, *args):
        r = self.floe("consume", stream, "--consumer", consumer, "--json", "--wait-ms", "300", *args)
        self.assertEqual(r.rc, 0, r)
        return [m["seq"] for m in json_lines(r.out) if "seq" in m]

    def test_from_accepts_its_forms_and_refuses_the_rest(self):
        self.create("from")
        r = self.floe("produce", "from", stdin=b"1\n2\n3\n")
        self.assertEqual(r.rc, 0, r)
        time.sleep(1.2)
        between = datetime.datetime.now(datetime.timezone.utc)
        time.sleep(0.2)
        r = self.floe("produce", "from", stdin=b"4\n5\n")
        self.assertEqual(r.rc, 0, r)

        self.assertEqual(self.consume("from", "f-first", "--from", "first"), [1, 2, 3, 4, 5])
        self.assertEqual(self.consume("from", "f-last", "--from", "last"), [5])
        self.assertEqual(self.consume("from", "f-new", "--from", "new"), [])
        self.assertEqual(self.consume("from", "f-seq", "--from", "4"), [4, 5])
        self.assertEqual(self.consume("from", "f-next", "--from", "6"), [])  # frontier + 1: the next message
        iso = between.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.assertEqual(self.consume("from", "f-iso", "--from", iso), [4, 5])
        offset = between.astimezone(datetime.timezone(datetime.timedelta(hours=2))).strftime(
            "%Y-%m-%dT%H:%M:%S.%f+02:00")
        self.assertEqual(self.consume("from", "f-offset", "--from", offset), [4, 5])
        self.assertEqual(self.consume("from", "f-ago", "--from", "-1h"), [1, 2, 3, 4, 5])
        micros = int(between.timestamp() * 1e6)
        self.assertEqual(self.consume("from", "f-us", "--from", "%dus" % micros), [4, 5])

        # Beyond the frontier: refused, naming it (was: a consumer that never receives).
        r = self.floe("consume", "from", "--consumer", "f-far", "--from", "500")
        self.assertRefused(r, "frontier", "from 1 to 6", "new")
        info = json_lines(self.floe("stream", "info", "from", "--json").out)[0]
        self.assertNotIn("f-far", [c["name"] for c in info["consumers"]], "no consumer was created")
        for bad in ["garbage", "0", "-5", "2026-13-01T00:00:00Z", "2026-12-01T10:00:00", "2999-01-01T00:00:00Z",
                    "5x", "-5y", "", "18446744073709551616"]:
            r = self.floe("consume", "from", "--consumer", "f-bad", "--from", bad)
            self.assertRefused(r, "--from")
            self.assertEqual(r.rc, 2, r)

    # --- 3. session ids -------------------------------------------------------------------------

    def test_session_ids_have_one_form(self):
        self.create("sessions")
        r = self.floe("produce", "sessions", stdin=b"a\nb\n")
        self.assertEqual(r.rc, 0, r)
        m = HEX16.search(r.err)
        self.assertIsNotNone(m, r)
        sid = m.group(1).decode()
        # The printed id resumes the session: its producer seqs go on (3, not 1).
        r = self.floe("produce", "sessions", "--session-id", sid, "--json", stdin=b"c\n")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(json_lines(r.out), [{"seq": 3, "producer_seq": 3}])
        self.assertEqual(HEX16.search(r.err).group(1).decode(), sid)
        # ... and is the id the bank's listing shows and `session show` takes.
        # A producer that ends with GOODBYE ends its session and its record
        # goes (asynchronously), so the record is read while a producer
        # holds the session: stdin stays open until both commands ran.
        argv = [floe_cli.BINARY, "produce", "sessions", "--session-id", sid] + self.server
        held = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            ids = []
            while time.monotonic() < deadline:
                listing = run(["session", "list", "--json", "--bank", self.node.bank]).out
                ids = [s["id"] for s in json_lines(listing)[0] if s["holder"]]
                if sid in ids:
                    break
                time.sleep(0.05)
            self.assertIn(sid, ids, "the held session is listed with its holder")
            r = run(["session", "show", sid, "--bank", self.node.bank])
            self.assertEqual(r.rc, 0, r)
            self.assertIn("session            " + sid, r.text)
        finally:
            out, err = held.communicate(b"d\n", timeout=10)
        self.assertEqual(held.returncode, 0, err)
        self.assertEqual(HEX16.search(err).group(1).decode(), sid)
        # A consumer prints its id in the same form.
        r = self.floe("consume", "sessions", "--consumer", "s", "--wait-ms", "200")
        self.assertEqual(r.rc, 0, r)
        self.assertIsNotNone(HEX16.search(r.err), r)
        for bad in ["0", "xyz", "12345678901234567", "-1", ""]:
            r = self.floe("produce", "sessions", "--session-id", bad, stdin=b"x\n")
            self.assertRefused(r, "--session-id", "hex")

    # --- 4. --json ----------------------------------------------------------------------------------

    def test_json_output_always_parses(self):
        self.create("binary")
        # Synthetic payloads: 8 bytes of index (not UTF-8 from 128 on), then 'x'.
        r = self.floe("produce", "binary", "--count", "300", "--size", "16", "--json")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(json_lines(r.out)), 300)
        lines = [b"\xff\xfe\x00bin", b"caf\xc3\xa9", b"\xed\xa0\x80surrogate", b"\xc0\xafoverlong", b"tab\there\"q\""]
        r = self.floe("produce", "binary", stdin=b"\n".join(lines) + b"\n")
        self.assertEqual(r.rc, 0, r)
        r = self.floe("consume", "binary", "--consumer", "j", "--json", "--wait-ms", "300")
        self.assertEqual(r.rc, 0, r)
        got = json_lines(r.out)  # every line: json.loads
        self.assertEqual(len(got), 305)
        payloads = []
        for m in got:
            if m.get("payload_encoding") == "base64":
                payloads.append(base64.b64decode(m["payload"]))
            else:
                self.assertNotIn("payload_encoding", m)
                payloads.append(m["payload"].encode("utf-8"))
        want = [i.to_bytes(8, "little") + b"x" * 8 for i in range(300)] + lines
        self.assertEqual(payloads, want, "each payload comes back exactly")
        self.assertEqual(got[300].get("payload_encoding"), "base64")
        self.assertEqual(got[301]["payload"], "café")
        # `floe log read --json` follows the same rule.
        stream_dir = self.dir.path + "/direct"
        r = run(["log", "append", stream_dir], stdin=b"\xff\n" + b"ok\n")
        self.assertEqual(r.rc, 0, r)
        got = json_lines(run(["log", "read", stream_dir, "--json"]).out)
        self.assertEqual([(m["payload"], m.get("payload_encoding")) for m in got], [("/w==", "base64"), ("ok", None)])

    def test_json_errors_are_objects_on_stdout(self):
        cases = [
            (["stream", "info", "nope", "--json"], "UNKNOWN_STREAM", False, True),
            (["consume", "nope", "--consumer", "c", "--json"], "UNKNOWN_STREAM", False, True),
            (["stream", "create", "x", "--ack-wait-ms", "0", "--json"], "INVALID_ARGUMENT", False, True),
            (["stream", "list", "--json", "--timeout", "300ms", "--server", "127.0.0.1:1"], "UNAVAILABLE", True,
             False),
        ]
        for args, code, retriable, server in cases:
            r = self.floe(*args, server=server)
            self.assertGreater(r.rc, 0, r)
            got = json_lines(r.out)
            self.assertEqual(len(got), 1, r)
            err = got[0]["error"]
            self.assertEqual(err["code"], code, r)
            self.assertEqual(err["retriable"], retriable, r)
            self.assertTrue(err["message"], r)

    # --- 5. error texts -------------------------------------------------------------------------

    def test_too_large_names_the_limit_and_points_to_large(self):
        self.create("small", "--max-message-bytes", "1024")
        r = self.floe("produce", "small", stdin=b"before\n" + b"a" * 2000 + b"\nafter\n")
        self.assertRefused(r, "1024 bytes", "--large")
        self.assertIn(b"1 1\n", r.out)  # the lines around it are stored
        self.assertIn(b"2 2\n", r.out)
        r = self.floe("produce", "small", "--count", "2", "--size", "2K")
        self.assertRefused(r, "1024 bytes", "--large")
        info = json_lines(self.floe("stream", "info", "small", "--json").out)[0]
        self.assertEqual(info["frontier"], 2, "the refused --size sent nothing")

    def test_refused_connection_names_the_addresses_within_the_timeout(self):
        r = run(["stream", "list", "--server", "127.0.0.1:1,127.0.0.1:2", "--timeout", "1s"], timeout=20)
        self.assertRefused(r, "127.0.0.1:1", "127.0.0.1:2", "refused")
        self.assertLess(r.elapsed, 4.0, "gave up after about --timeout, not ~29 s: %r" % r)
        r = run(["produce", "x", "--server", "127.0.0.1:1"], stdin=b"a\n", timeout=20)
        self.assertRefused(r, "127.0.0.1:1")
        self.assertLess(r.elapsed, 9.0, "default timeout is a few seconds: %r" % r)
        r = run(["stream", "list", "--timeout", "0"])
        self.assertRefused(r, "--timeout")

    # --- 6. drain, --version, stream info ------------------------------------------------------------

    def test_node_drain_of_an_unknown_node_is_an_error(self):
        bank = ["--bank", self.node.bank]
        r = run(["node", "drain", "no-such-node"] + bank)
        self.assertRefused(r, "no node no-such-node", "node-1")
        r = run(["cluster", "status", "--json"] + bank)
        self.assertEqual([n["drained"] for n in json_lines(r.out)[0]["nodes"]], [False])
        r = run(["node", "drain", "no-such-node", "--undo"] + bank)
        self.assertRefused(r, "not drained")
        r = run(["node", "drain", "node-1"] + bank)
        self.assertEqual(r.rc, 0, r)
        r = run(["node", "drain", "node-1", "--undo"] + bank)
        self.assertEqual(r.rc, 0, r)

    def test_version(self):
        r = run(["--version"])
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.text, r"floe \d+\.\d+\.\d+ \(\w+ build")
        self.assertIn("protocol: versions 1 to 2", r.text)

    def test_stream_info_labels_its_bytes(self):
        self.create("labels")
        self.assertEqual(self.floe("produce", "labels", stdin=b"x\n").rc, 0)
        r = self.floe("stream", "info", "labels")
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.text, r"on disk +\d+ bytes in segment files \(records with their headers, not payload bytes\)")
        info = json_lines(self.floe("stream", "info", "labels", "--json").out)[0]
        self.assertGreater(info["segment_file_bytes"], 1, "file bytes, more than the payload's one byte")
        self.assertNotIn("bytes", info)

    # --- 7. the node's log ------------------------------------------------------------------------

    def test_json_log_is_one_object_per_line_with_the_events(self):
        """--log-format json: every line the node writes on stderr is one JSON
        object with ts, level, event and msg; leases gained and stream
        recoveries are there with their stream; --log-level warn leaves info out."""
        d = floe_cli.TempDir()
        try:
            def serve_and_stop(*extra):
                node = floe_cli.Node(d.path + "/data", extra=["--log-format", "json"] + list(extra))
                node.start()
                r = run(["stream", "create", "logged", "--server", node.address])
                r = run(["produce", "logged", "--server", node.address], stdin=b"a\nb\n")
                self.assertEqual(r.rc, 0, r)
                node.stop()
                # stdout's lines (listening, stopped) are for scripts; the rest is the log.
                return [json.loads(l) for l in node.output if not l.startswith("floe: node ")]
            first = serve_and_stop()
            self.assertTrue(first, "the node logged something")
            for e in first:
                self.assertTrue({"ts", "level", "event", "msg"} <= set(e), e)
                self.assertIn(e["level"], ["debug", "info", "warn", "error"], e)
            self.assertIn(("lease.gained", "logged"), [(e["event"], e.get("stream")) for e in first], first)
            self.assertIn("node.fd_limit", [e["event"] for e in first])
            # Restarted: the stream's recovery is reported, with its frontier.
            second = serve_and_stop()
            recovered = [e for e in second if e["event"] == "stream.recovered" and "/logged" in e.get("dir", "")]
            self.assertEqual(len(recovered), 1, second)
            self.assertIn("frontier 2", recovered[0]["msg"])
            # warn: no info line at all.
            quiet = serve_and_stop("--log-level", "warn")
            self.assertEqual([e for e in quiet if e["level"] in ("debug", "info")], [], quiet)
        finally:
            d.cleanup()
        r = run(["serve", "--log-level", "loud", "--data", "/nonexistent"])
        self.assertRefused(r, "--log-level", "loud")
        self.assertEqual(r.rc, 2, r)  # refused before anything starts

    def test_config_file_sets_flags_and_refuses_what_it_cannot_take(self):
        """--config: TOML keys are serve's flags (tables prefix them), the
        command line wins, and a bad file is refused before anything starts,
        naming the file and line."""
        d = floe_cli.TempDir()
        try:
            cfg = d.path + "/floe.toml"
            with open(cfg, "w") as f:
                f.write('node-id = "from-file"\nlease-ms = 1500\n[log]\nformat = "json"\nlevel = "info"\n')
            # node-id: the command line's (Node passes --node-id node-1) wins.
            node = floe_cli.Node(d.path + "/data", extra=["--config", cfg])
            node.start()
            try:
                self.assertIn("floe: node node-1 listening", "".join(node.output))
                r = run(["stream", "create", "cfg", "--server", node.address])
                self.assertEqual(r.rc, 0, r)
                r = run(["cluster", "status", "--json", "--bank", node.bank])
                self.assertEqual(r.rc, 0, r)
                self.assertIn('"lease_ms":1500', r.out.decode(), "lease-ms came from the file")
            finally:
                node.stop()
            logged = [l for l in node.output if not l.startswith("floe: node ")]
            self.assertTrue(logged)
            for l in logged:
                self.assertEqual(json.loads(l)["ts"][:2], "20", l)  # [log] format = "json" took effect

            def refused(text, *needles):
                with open(cfg, "w") as f:
                    f.write(text)
                r = run(["serve", "--config", cfg, "--data", d.path + "/never", "--listen", "127.0.0.1:0",
                         "--mqtt-listen", ""], timeout=10)
                self.assertRefused(r, cfg, *needles)
                self.assertEqual(r.rc, 2, r)
                self.assertFalse(os.path.exists(d.path + "/never"), "nothing started")

            refused('listen = "127.0.0.1:0"\nlease-msx = 5\n', ":2:", "lease-msx", "no option of floe serve")
            refused("lease-ms = 5\n", "--lease-ms", "30 ms to 600000 ms")
            refused("lease-ms = 1.5\n", ":1:", "float")
            refused('log-level = "info"\n[log]\nlevel = "warn"\n', ":3:", "log-level is set twice")
            refused("lease-ms = [\n", ":1:")
            refused('[log]\nlevel = "loud"\n', "--log-level", "loud")
            r = run(["serve", "--config", d.path + "/absent.toml", "--data", d.path + "/never"])
            self.assertRefused(r, "absent.toml")
            self.assertEqual(r.rc, 2, r)
        finally:
            d.cleanup()

    def test_shipped_config_starts_a_node(self):
        """packaging/floe.toml is a config serve takes (its paths overridden)."""
        shipped = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../packaging/floe.toml")
        d = floe_cli.TempDir()
        try:
            node = floe_cli.Node(d.path + "/data", extra=["--config", shipped])
            node.start()
            r = run(["stream", "create", "shipped", "--server", node.address])
            node.stop()
            self.assertEqual(r.rc, 0, r)
            logged = [l for l in node.output if not l.startswith("floe: node ")]
            self.assertTrue(logged and all(json.loads(l) for l in logged), logged)  # format = "json"
        finally:
            d.cleanup()

    def test_tells_systemd_it_is_ready_once_listening(self):
        """Type=notify: READY=1 arrives on NOTIFY_SOCKET after the listening
        line, with the node's pid; without the variable nothing is sent."""
        d = floe_cli.TempDir()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            path = d.path + "/notify"
            sock.bind(path)
            sock.settimeout(20)
            env = dict(os.environ, NOTIFY_SOCKET=path)
            proc = subprocess.Popen([floe_cli.BINARY, "serve", "--data", d.path + "/data", "--listen", "127.0.0.1:0",
                                     "--mqtt-listen", "", "--http-listen", ""], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            try:
                msg = sock.recv(4096).decode()
                fields = dict(l.split("=", 1) for l in msg.splitlines() if "=" in l)
                self.assertEqual(fields.get("READY"), "1", msg)
                self.assertEqual(fields.get("MAINPID"), str(proc.pid), msg)
                # Sent after the listeners are bound: the line is already out.
                self.assertIn(b"listening on", proc.stdout.readline())
            finally:
                proc.terminate()
                proc.wait(20)
        finally:
            sock.close()
            d.cleanup()


if __name__ == "__main__":
    if not floe_cli.BINARY:
        sys.exit("set FLOE_BINARY to the floe binary")
    unittest.main(verbosity=2)
