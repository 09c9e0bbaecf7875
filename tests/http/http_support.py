"""Test support for the HTTP listener's tests: a real `floe serve` (via
tests/cli/floe_cli.py) with --http-listen on a free port, a workload run
with the real floe CLI, and a strict parser of the Prometheus text format."""

import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))
import floe_cli  # noqa: E402,F401
from floe_cli import run  # noqa: E402,F401


def http_port(node, timeout=10.0):
    """The HTTP port the node printed (it prints it before the listening line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(node.output):
            m = re.search(r"HTTP on [^ ]+:(\d+) ", line)
            if m:
                return int(m.group(1))
        time.sleep(0.05)
    raise AssertionError("the node printed no HTTP line: " + "".join(node.output))


def get(port, path, method="GET", timeout=10.0, data=None):
    """(status, headers, body bytes) of one request; HTTP errors are answers too."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(port, path):
    status, headers, body = get(port, path)
    return status, headers, json.loads(body.decode("utf-8"))


def workload(node, stream, published, consumed, size=64):
    """Creates `stream`, publishes `published` messages of `size` bytes with
    `floe produce`, and consumes (ACKs) `consumed` with durable consumer c1."""
    r = run(["stream", "create", stream, "--server", node.address])
    assert r.rc == 0, r
    r = run(["produce", stream, "--count", str(published), "--size", str(size), "--server", node.address],
            timeout=60)
    assert r.rc == 0, r
    r = run(["consume", stream, "--consumer", "c1", "--max", str(consumed), "--wait-ms", "2000", "--json",
             "--server", node.address], timeout=30)
    assert r.rc == 0, r
    got = [json.loads(line)["seq"] for line in r.out.decode().splitlines() if '"seq"' in line]
    assert got == list(range(1, consumed + 1)), got


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_metrics(text):
    """Parses the text exposition format 0.0.4 strictly: every sample belongs
    to a family announced by # HELP then # TYPE, a family's samples are
    together, no series twice, histogram buckets cumulative with a +Inf one
    equal to _count. Returns ({(name, frozenset(labels)): value}, {family: type})."""
    samples, types, helps = {}, {}, set()
    current, closed = None, set()
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helps, "HELP twice for " + name
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helps, "TYPE before HELP for " + name
            assert name not in types, "TYPE twice for " + name
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            if current:
                closed.add(current)
            types[name], current = kind, name
            continue
        assert not line.startswith("#"), line
        m = _SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels_text, value = m.group(1), m.group(3) or "", m.group(4)
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
                family = name[: -len(suffix)]
        assert family == current, "sample %s outside its family's block (%s)" % (name, current)
        if types[family] == "counter":
            assert name.endswith("_total"), "counter without _total: " + name
        labels, pos = {}, 0
        while pos < len(labels_text):
            lm = _LABEL.match(labels_text, pos)
            assert lm, "bad labels: %r" % labels_text
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
        key = (name, frozenset(labels.items()))
        assert key not in samples, "series twice: " + line
        v = float(value)
        assert not math.isnan(v), line
        samples[key] = v
    # Histograms: cumulative buckets ending at +Inf == _count.
    for family, kind in types.items():
        if kind != "histogram":
            continue
        series = {}
        for (name, labels), v in samples.items():
            if name == family + "_bucket":
                rest = frozenset(kv for kv in labels if kv[0] != "le")
                le = dict(labels)["le"]
                series.setdefault(rest, []).append((float("inf") if le == "+Inf" else float(le), v))
        for rest, buckets in series.items():
            buckets.sort()
            counts = [c for _, c in buckets]
            assert counts == sorted(counts), "%s buckets not cumulative: %s" % (family, buckets)
            assert buckets[-1][0] == float("inf"), family + " has no +Inf bucket"
            assert samples[(family + "_count", rest)] == buckets[-1][1], family + ": _count != +Inf bucket"
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))
