"""Fuzz-style test of every `floe` subcommand: each option of each command run
with boundary and random values (negative, zero, huge, just past the range,
empty, non-numeric, non-UTF-8, random bytes, random valid ones), against a
real `floe serve` node. Every run must end by itself within RUN_TIMEOUT s
(killed after it: failure), never by a signal (abort, segfault), with exit
code 0, 1 or 2; a non-zero exit must say why (the option's name, for a value
refused while parsing), and under --json stdout must be JSON lines.

Random valid values are drawn from a cheap part of each range (a valid
`--messages 10000000` is a long benchmark, not a bug); invalid values from
anywhere. `bench failover|rebalance` start clusters of their own: only their
refusals run. The seed is printed; FLOE_FUZZ_SEED repeats a run, and
FLOE_FUZZ_ROUNDS sets how many random values each option gets (default 3).

Run by ctest (FLOE_BINARY is the build's floe): python3 cli_fuzz_test.py"""

import json
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import floe_cli  # noqa: E402
from floe_cli import run  # noqa: E402

RUN_TIMEOUT = 10.0
SUITE_BUDGET = 100.0  # seconds: the whole fuzz stays well inside ctest's timeout

# Values that are wrong for every number, duration and size option.
BAD_NUMBERS = [b"-1", b"-5", b"-9223372036854775808", b"18446744073709551616", b"99999999999999999999999999",
               b"", b"abc", b"1.5", b"0x10", b"1e9", b" 7", b"7 ", b"+3", b"\xff\xfe", b"caf\xc3\xa9", b"--",
               b"5xyz", b"-0"]
BAD_NAMES = [b"", b".hidden", b"a/b", b"sp ace", b"x" * 129, b"\xff\xfe", b"caf\xc3\xa9", b"..", b"-", b"a\nb"]
BAD_SESSIONS = [b"0", b"", b"xyz", b"12345678901234567", b"-1", b"\xff", b"0x12", b" 12"]
BAD_FROM = [b"", b"garbage", b"0", b"-5", b"-0s", b"-99999999d", b"2026-13-01T00:00:00Z", b"2026-02-30",
            b"2026-12-01T10:00:00", b"2999-01-01T00:00:00Z", b"1969-12-31T23:59:59Z", b"18446744073709551616",
            b"99999999999999999999us", b"\xff", b"first ", b"NEW"]
BAD_SERVERS = [b"", b"nohost", b"127.0.0.1:0", b"127.0.0.1:65536", b"127.0.0.1:-1", b":7650", b"\xff:1",
               b"127.0.0.1:abc", b",,,"]


def random_bytes(rng):
    n = rng.randint(0, 24)
    return bytes(rng.randint(1, 255) for _ in range(n))  # argv cannot hold NUL


class Opt:
    """One option: its name (None: a positional), the values known bad for
    it, a generator of random bad ones, and one of cheap valid ones (None:
    none, e.g. for a command whose valid runs are long benchmarks)."""

    def __init__(self, name, bad, cheap=None, base=None, random_bad=random_bytes):
        self.name = name
        self.bad = bad
        self.cheap = cheap or (lambda rng: None)
        self.random_bad = random_bad
        self.base = base  # replaces the command's base arguments when fuzzing this option


def number(name, lo, hi, cheap_hi=None, unit=b""):
    """A number, duration or size option accepting lo..hi (in its base unit)."""
    edges = [str(lo - 1).encode() if lo > 0 else b"-1", str(hi + 1).encode(), str(hi).encode() + b"0"]
    if lo > 0:
        edges.append(b"0")

    def random_bad(rng):
        choice = rng.randint(0, 3)
        if choice == 0:
            return str(rng.randint(-(1 << 64), -1)).encode()
        if choice == 1:
            return str(rng.randint(hi + 1, max(hi + 1, 1 << 80))).encode()
        if choice == 2:
            return str(rng.randint(0, 1 << 20)).encode() + rng.choice([b"x", b"kb", b"us", b"s1", b" ", b"\xff"])
        return random_bytes(rng)

    if cheap_hi == 0:
        cheap = None
    else:
        top = hi if cheap_hi is None else min(hi, cheap_hi)
        cheap = lambda rng: str(rng.randint(lo, top)).encode() + unit  # noqa: E731
    return Opt(name, BAD_NUMBERS + edges, cheap, random_bad=random_bad)


def name_opt(name, valid):
    return Opt(name, BAD_NAMES, lambda rng: valid)


class Fuzz:
    def __init__(self):
        self.seed = int(os.environ.get("FLOE_FUZZ_SEED", str(int(time.time()))))
        self.rounds = int(os.environ.get("FLOE_FUZZ_ROUNDS", "3"))
        self.rng = random.Random(self.seed)
        self.failures = []
        self.runs = 0
        self.started = time.monotonic()

    def check(self, label, args, r, json_mode, opt_name):
        self.runs += 1
        problems = []
        if r.timed_out:
            problems.append("did not end within %.0f s" % RUN_TIMEOUT)
        elif r.rc < 0:
            problems.append("killed by signal %d" % -r.rc)
        elif r.rc not in (0, 1, 2):
            problems.append("exit code %d" % r.rc)
        text = r.text
        for crash in ["terminate called", "what():", "Aborted", "Segmentation", "AddressSanitizer"]:
            if crash in text:
                problems.append("crash text %r" % crash)
        if not r.timed_out and r.rc > 0:
            if not text.strip():
                problems.append("failed without a word")
            if r.rc == 2 and opt_name and opt_name.startswith("-") and opt_name not in text:
                problems.append("refusal does not name %s" % opt_name)
        if json_mode and not r.timed_out:
            try:
                for line in r.out.decode("utf-8").splitlines():
                    json.loads(line)
            except (UnicodeDecodeError, ValueError) as e:
                problems.append("stdout is not JSON lines: %s" % e)
        if problems:
            self.failures.append("%s: %s\n  argv: %r\n  %r" % (label, "; ".join(problems), args, r))

    def over_budget(self):
        return time.monotonic() - self.started > SUITE_BUDGET


def main():
    if not floe_cli.BINARY:
        sys.exit("set FLOE_BINARY to the floe binary")
    tmp = floe_cli.TempDir("floe-cli-fuzz-")
    node = floe_cli.Node(tmp.path + "/data")
    node.start()
    fz = Fuzz()
    print("seed %d, %d random values per option" % (fz.seed, fz.rounds))
    server = ["--server", node.address]
    bank = ["--bank", node.bank]
    try:
        setup = [["stream", "create", "fz"] + server, ["produce", "fz", "--count", "20", "--size", "16"] + server,
                 ["stream", "create", "gone"] + server]
        for args in setup:
            r = run(args)
            assert r.rc == 0, r
        log_dir = tmp.path + "/log-stream"
        r = run(["log", "append", log_dir], stdin=b"one\ntwo\n")
        assert r.rc == 0, r
        large = tmp.path + "/large.bin"
        with open(large, "wb") as f:
            f.write(os.urandom(3000))
        serve_data = tmp.path + "/serve"

        counter = [0]

        def fresh(prefix="c"):
            counter[0] += 1
            return "%s%d" % (prefix, counter[0])

        timeout_opt = number("--timeout", 100, 3600000, 2000, unit=b"ms")
        servers_opt = Opt("--server", BAD_SERVERS + [b"127.0.0.1:1"], lambda rng: node.address.encode())
        client = [servers_opt, timeout_opt]

        # Each command: (label, base arguments, options). A base is valid and
        # cheap; each option's value replaces (or adds to) it.
        commands = [
            ("stream create", lambda: ["stream", "create", fresh("s")] + server, [
                number("--retention-bytes", 0, 1 << 50),
                number("--retention-age-ms", 1000, 100 * 365 * 86400 * 1000),
                number("--max-message-bytes", 1, 16 << 20),
                number("--ack-wait-ms", 100, 7 * 86400 * 1000),
                number("--max-deliveries", 0, 10000),
                Opt("--sync", [b"", b"fsync", b"\xff", b"NONE"], lambda rng: rng.choice([b"none", b"fdatasync"])),
                name_opt("--dead-letter", b"fz"),
                Opt(None, BAD_NAMES, lambda rng: fresh("p").encode(), base=["stream", "create"] + server),
            ] + client),
            ("stream delete", lambda: ["stream", "delete", "no-such-stream"] + server, [
                Opt(None, BAD_NAMES + [b"no-such"], lambda rng: b"no-such-stream", base=["stream", "delete"] + server)] + client),
            ("stream list", lambda: ["stream", "list"] + server, client),
            ("stream info", lambda: ["stream", "info", "fz"] + server, [
                Opt(None, BAD_NAMES, lambda rng: b"fz", base=["stream", "info"] + server)] + client),
            ("produce", lambda: ["produce", "fz", "--count", "2", "--size", "16"] + server, [
                number("--count", 1, 1000000000, 50),
                number("--size", 8, 16 << 20, 4096),
                number("--inflight", 1, 100000),
                Opt("--session-id", BAD_SESSIONS, lambda rng: b"%x" % rng.randint(1, 1 << 64 - 1)),
                Opt("--large", [b"", b"/nonexistent", tmp.path.encode(), b"\xff\xfe"], lambda rng: large.encode(),
                    base=["produce", "fz"] + server),
                Opt(None, BAD_NAMES + [b"no-such"], lambda rng: b"fz",
                    base=["produce", "--count", "1"] + server),
            ] + client),
            ("consume", lambda: ["consume", "fz", "--consumer", fresh(), "--max", "1", "--wait-ms", "200"] + server, [
                number("--max", 1, 1 << 53, 30),
                number("--wait-ms", 0, 3600000),
                Opt("--from", BAD_FROM, lambda rng: rng.choice(
                    [b"first", b"last", b"new", b"1", b"21", b"-5m", b"-1d", b"2020-01-01T00:00:00Z",
                     b"2020-01-01", b"1000000us"])),
                Opt("--session-id", BAD_SESSIONS, lambda rng: b"%x" % rng.randint(1, 1 << 64 - 1)),
                Opt("--consumer", BAD_NAMES, lambda rng: fresh().encode()),
                Opt("--save-large", [b"", b"/nonexistent", large.encode(), b"\xff"], lambda rng: tmp.path.encode()),
            ] + client),
            ("bench publish", lambda: ["bench", "publish", "--stream", "fzb", "--messages", "50"] + server, [
                number("--messages", 1, 10000000, 200),
                number("--size", 8, 16 << 20, 1024),
                number("--inflight", 1, 100000),
                number("--connections", 1, 64, 4),
                number("--warmup", 0, 1000000, 10),
                number("--linger-us", 0, 1000000, 1000),
                name_opt("--stream", b"fzb"),
            ] + client),
            ("bench consume", lambda: ["bench", "consume", "--stream", "fz", "--messages", "20"] + server, [
                number("--messages", 1, 10000000, 20),
                number("--size", 8, 16 << 20),
                number("--batch", 1, 10000),
                name_opt("--stream", b"fz"),
                name_opt("--consumer", b"bench-fz"),
            ] + client),
            ("bench log", lambda: ["bench", "log", "--messages", "100", "--dir", tmp.path], [
                number("--messages", 1, 10000000, 500),
                number("--size", 8, 16 << 20, 1024),
                number("--inflight", 1, 100000),
                number("--batch", 1, 10000, 100),
                number("--cache-mb", 0, 16384, 64),
                Opt("--dir", [b"", b"/proc/forbidden", b"\xff\xfe"], lambda rng: tmp.path.encode()),
            ]),
            ("bench failover", lambda: ["bench", "failover"], [
                number("--lease-ms", 30, 600000, 0), number("--runs", 1, 100, 0), number("--base-port", 1024, 65534, 0),
            ]),
            ("bench rebalance", lambda: ["bench", "rebalance"], [
                number("--lease-ms", 30, 600000, 0), number("--seconds", 1, 600, 0),
                number("--base-port", 1024, 65534, 0),
            ]),
            ("log read", lambda: ["log", "read", log_dir], [
                number("--from", 1, (1 << 64) - 2), number("--max", 1, 1 << 53),
                Opt(None, [b"", b"/nonexistent", b"\xff"], lambda rng: log_dir.encode(), base=["log", "read"]),
            ]),
            ("log info", lambda: ["log", "info"], [Opt(None, [b"", b"/nonexistent", b"\xff"],
                                                       lambda rng: log_dir.encode())]),
            ("log verify", lambda: ["log", "verify"], [Opt(None, [b"", b"/nonexistent", b"\xff"],
                                                           lambda rng: log_dir.encode())]),
            ("cluster status", lambda: ["cluster", "status"] + bank, [
                Opt("--bank", [b"", b"sqlite:/nonexistent/x.db", b"\xff", b"etcd://"], lambda rng: node.bank.encode()),
                Opt("--bank-prefix", [b"", b"\xff", b"nope"], lambda rng: None),
            ]),
            ("node drain", lambda: ["node", "drain"] + bank, [
                Opt(None, BAD_NAMES + [b"no-such-node"], lambda rng: None),
            ]),
            ("session show", lambda: ["session", "show"] + bank, [Opt(None, BAD_SESSIONS, lambda rng: b"1234abcd")]),
            ("session list", lambda: ["session", "list"] + bank, [
                Opt("--bank", [b"", b"sqlite:/nonexistent/x.db", b"\xff"], lambda rng: node.bank.encode())]),
            ("serve", lambda: ["serve", "--data", serve_data, "--listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"], [
                number("--io-threads", 1, 64, 4),
                number("--max-connections", 1, 1000000),
                number("--max-message-bytes", 1024, 16 << 20),
                number("--lease-ms", 30, 600000, 5000),
                number("--session-ttl-ms", 1000, 365 * 86400 * 1000),
                Opt("--listen", BAD_SERVERS[:2] + [b"127.0.0.1:65536", b"127.0.0.1:x", b"\xff:0"],
                    lambda rng: b"127.0.0.1:0", base=["serve", "--data", serve_data, "--mqtt-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]),
                Opt("--mqtt-listen", [b"nohost", b"127.0.0.1:65536", b"127.0.0.1:x", b"\xff:0"],
                    lambda rng: b"127.0.0.1:0", base=["serve", "--data", serve_data, "--listen", "127.0.0.1:0",
                                                      "--http-listen", "127.0.0.1:0"]),
                Opt("--advertise", BAD_SERVERS, lambda rng: b"127.0.0.1:9"),
                Opt("--mqtt-advertise", BAD_SERVERS, lambda rng: b"127.0.0.1:9"),
                Opt("--node-id", BAD_NAMES, lambda rng: fresh("n").encode()),
            ]),
        ]
        # Their valid runs start clusters and take many seconds: refusals only.
        refusals_only = {"bench failover", "bench rebalance"}
        json_commands = {"stream create", "stream delete", "stream list", "stream info", "produce", "consume",
                         "bench publish", "bench consume", "bench log", "bench failover", "log read", "log info",
                         "cluster status", "session show", "session list"}

        for label, base, options in commands:
            for opt in options:
                values = list(opt.bad)
                if label not in refusals_only:
                    values += [opt.random_bad(fz.rng) for _ in range(fz.rounds)]
                    cheap = [opt.cheap(fz.rng) for _ in range(fz.rounds)]
                    values += [v for v in cheap if v is not None]
                for value in values:
                    if fz.over_budget():
                        break
                    args = list(opt.base) if opt.base is not None else base()
                    args += [opt.name, value] if opt.name else [value]
                    json_mode = label in json_commands and fz.rng.random() < 0.5
                    if json_mode:
                        args.append("--json")
                    if label == "serve":
                        r = run_serve(args)
                    else:
                        r = run(args, stdin=b"line\n", timeout=RUN_TIMEOUT)
                    fz.check("%s %s" % (label, opt.name or "<positional>"), args, r, json_mode, opt.name)
        # Bare commands and unknown options.
        for args in [[], ["stream"], ["bench"], ["produce"], ["consume", "fz"], ["nope"], ["--nope"],
                     ["produce", "fz", "--count"], ["stream", "create", "x", "--json", "--bogus"]]:
            r = run(args + (server if args[:1] in (["produce"], ["consume"]) else []), timeout=RUN_TIMEOUT)
            fz.check("bare %r" % args, args, r, "--json" in args, None)
    finally:
        node.stop()
        tmp.cleanup()
    took = time.monotonic() - fz.started
    print("%d runs in %.1f s (seed %d)" % (fz.runs, took, fz.seed))
    if fz.over_budget():
        print("note: stopped early at the %.0f s budget" % SUITE_BUDGET)
    if fz.failures:
        print("%d FAILURES:" % len(fz.failures))
        for f in fz.failures[:int(os.environ.get("FLOE_FUZZ_SHOW", "40"))]:
            print(f)
        sys.exit(1)
    print("OK")


def run_serve(args):
    """`floe serve` runs until stopped: success is its listening line, then a
    SIGTERM and a clean exit; a refusal is an exit by itself."""
    argv = [os.fsencode(floe_cli.BINARY)] + [a if isinstance(a, bytes) else os.fsencode(a) for a in args]
    start = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    out = b""
    deadline = start + RUN_TIMEOUT
    os.set_blocking(p.stdout.fileno(), False)
    while time.monotonic() < deadline and p.poll() is None and b"listening on" not in out:
        time.sleep(0.02)
        try:
            out += p.stdout.read() or b""
        except (BlockingIOError, TypeError):
            pass
    timed_out = False
    if p.poll() is None:
        if b"listening on" in out:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    rest_out, err = p.communicate()
    return floe_cli.Result(p.returncode, out + (rest_out or b""), err, time.monotonic() - start, timed_out)


if __name__ == "__main__":
    main()
