#!/usr/bin/python3
"""Streams bound to MQTT topic filters (docs/mqtt.md "Topics onto streams")
with a real `floe serve`, `floe stream create --mqtt-topics`, mosquitto_pub /
mosquitto_sub, Eclipse Paho for Python, and raw packets where a test stops a
client at a chosen step. `floe stream info --json` counts what each stream
holds (its frontier: one seq per stored message). Run by ctest:
    mqtt_topics_test.py FLOE_BINARY [TEST_NAME ...]
"""
import json
import os
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mqtt_clients_test as base  # noqa: E402
from mqtt_clients_test import Collector, Node, run  # noqa: E402
from mqtt_sessions_test import ack5, expect, open5, parse_publish, quiet, subscribe5  # noqa: E402

import paho.mqtt.client as paho  # noqa: E402

# Bindings reach every node's cached view within this (Bindings::kRefreshMs
# and one bank read), so a test waits at most this after creating a stream.
BINDING_WAIT_S = 3


class TopicNode(Node):
    """A Node with the floe CLI at hand (Node.start notes the floe-protocol address)."""

    def cleanup_keep_dir(self):
        """Stops the process (a peer sharing another node's directory)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def floe(self, *args):
        return run([base.FLOE] + list(args) + ["--server", self.server])

    def create(self, name, topics):
        rc, out, err = self.floe("stream", "create", name, "--mqtt-topics", topics)
        assert rc == 0, out + err

    def info(self, name):
        rc, out, err = self.floe("stream", "info", name, "--json")
        assert rc == 0, out + err
        return json.loads(out)

    def count(self, name):
        return self.info(name)["frontier"]


def pub(node, topic, message, qos=1, version="5"):
    rc, _, err = run(["mosquitto_pub", "-p", str(node.port), "-V", version, "-q", str(qos), "-t", topic,
                      "-m", message])
    assert rc == 0, err


def wait_for_bindings(node, expect_stream, topic):
    """Publishes probes on `topic` until one lands in `expect_stream` (the
    node's view caught up); returns how many probes that took."""
    deadline = time.time() + BINDING_WAIT_S
    probes = 0
    while True:
        before = node.count(expect_stream)
        pub(node, topic, f"probe{probes}", qos=1)
        probes += 1
        if node.count(expect_stream) > before:
            return probes
        assert time.time() < deadline, f"{topic} never reached {expect_stream}"
        time.sleep(0.2)


# --- tests -------------------------------------------------------------------

def test_create_info_and_refusals(node):
    """--mqtt-topics is stored with the stream and shown by `stream info`
    (text and JSON); an invalid filter is refused with a clear error."""
    node.create("sensors", "sensors/#,alerts/+")
    info = node.info("sensors")
    assert info["mqtt_topics"] == ["sensors/#", "alerts/+"], info
    # MQTT's delivery settings unless told otherwise (resends only on reconnect).
    assert info["ack_wait_ms"] == 7 * 24 * 3600 * 1000 and info["max_deliveries"] == 0, info
    rc, out, err = node.floe("stream", "info", "sensors")
    assert rc == 0 and "mqtt topics   sensors/#,alerts/+" in out, out
    for bad, why in (("a/#/b", "'#' must be the last level"), ("a+/b", "whole level"), ("$share/g/x", "shared"),
                     ("x,x", "given twice"), ("a,", "")):
        rc, out, err = node.floe("stream", "create", "bad", "--mqtt-topics", bad)
        assert rc != 0 and "InvalidArgument" in out + err and why in out + err, (bad, out, err)
    rc, out, _ = node.floe("stream", "list")
    assert "bad" not in out.split(), out
    # A stream without filters shows none.
    rc, out, err = node.floe("stream", "create", "plain")
    assert rc == 0, out + err
    assert node.info("plain")["mqtt_topics"] == []


def test_publishes_land_in_the_bound_stream_and_the_rest_in_the_default(node):
    node.create("sensors", "sensors/#,alerts/+")
    for qos in (0, 1, 2):
        for version in ("5", "311"):
            pub(node, f"sensors/{version}/q{qos}", "s", qos=qos, version=version)
            pub(node, f"alerts/q{qos}v{version}", "a", qos=qos, version=version)
            pub(node, f"alerts/x/q{qos}v{version}", "deep", qos=qos, version=version)  # '+' is one level
            pub(node, f"other/q{qos}v{version}", "o", qos=qos, version=version)
    # QoS 0 is stored too, though unanswered: counts once each reached.
    deadline = time.time() + 5
    while node.count("sensors") < 12 and time.time() < deadline:
        time.sleep(0.1)
    assert node.count("sensors") == 12, node.info("sensors")  # 6 sensors/... and 6 alerts/<one level>
    assert node.count("mqtt") == 12, node.info("mqtt")        # 6 alerts/x/... and 6 other/...


def test_the_most_specific_binding_wins(node):
    node.create("wide", "t/#")
    node.create("mid", "t/+/x")
    node.create("exact", "t/a/x")
    node.create("twin-b", "u/#")
    node.create("twin-a", "u/#")  # the same filter: the smaller name wins
    pub(node, "v0", "creates the default stream", qos=1)
    streams = ("wide", "mid", "exact", "twin-a", "twin-b", "mqtt")
    cases = {"t/a/x": "exact", "t/b/x": "mid", "t/b/y": "wide", "t": "wide", "u/1": "twin-a", "v": "mqtt",
             "$t/a/x": "mqtt"}
    for topic, stream in cases.items():
        before = {s: node.count(s) for s in streams}
        pub(node, topic, "m", qos=1)
        after = {s: node.count(s) for s in streams}
        grew = [s for s in streams if after[s] > before[s]]
        assert grew == [stream], (topic, grew)


def test_qos1_persistent_subscriber_across_reconnects_gets_every_message(node):
    """A persistent `sensors/#` subscriber at QoS 1 that goes away twice gets
    every PUBACKed message of the bound stream; duplicates only for what was
    in flight at a break."""
    node.create("sensors", "sensors/#")
    sub = Collector("keeper", clean=False, expiry=3600)
    sub.connect(node.port)
    sub.subscribe("sensors/#", 1)
    publisher = Collector("pub", version=paho.MQTTv311)
    publisher.connect(node.port)
    sent = []
    for round_ in range(3):
        for i in range(100):
            body = f"r{round_}-{i}"
            info = publisher.c.publish(f"sensors/{i % 7}/temp", body, qos=1)
            info.wait_for_publish(10)
            assert info.is_published()
            sent.append(body)
        if round_ < 2:
            # Away: the rest of the round's and the next round's messages wait.
            sub.wait(lambda: len(sub.messages) >= 30, "some messages before the break")
            sub.c.disconnect()
            sub.c.loop_stop()
            for i in range(20):
                body = f"away{round_}-{i}"
                info = publisher.c.publish(f"sensors/away/{i}", body, qos=1)
                info.wait_for_publish(10)
                sent.append(body)
            sub.connack = None  # (Collector.wait would see the first CONNACK)
            flags, rc, _ = sub.connect(node.port)
            assert rc == 0 and flags["session present"] == 1, (flags, rc)
    want = set(sent)
    sub.wait(lambda: want <= {m.payload.decode() for m in sub.messages}, "every message", timeout=20)
    got = [m.payload.decode() for m in sub.messages]
    assert all(m.qos == 1 for m in sub.messages)
    dups = len(got) - len(set(got))
    # At most Receive Maximum (Paho: 65535, the node keeps <= 1024 per stream
    # batch) per break; in practice what was on the wire. Never more than sent.
    assert set(got) == want, set(got) ^ want
    assert dups <= 2 * 256, dups
    # Every message went into the bound stream; the default holds none of them.
    assert node.count("sensors") == len(sent)
    assert node.count("mqtt") == 0
    print(f"    {len(sent)} sent, {len(got)} received, {dups} duplicates across 2 reconnects")
    publisher.close()
    sub.close()


def test_one_subscriber_reads_two_streams_and_the_default(node):
    node.create("sensors", "sensors/#")
    node.create("alerts", "alerts/+")
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(node.port), "-V", "5", "-q", "1", "-v", "-t", "#",
                            "-C", "6", "-W", "10", "-i", "all"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.7)
    for t in ("sensors/1", "alerts/fire", "other/x", "sensors/2", "alerts/flood", "other/y"):
        pub(node, t, "m-" + t, qos=1)
    out, err = sub.communicate(timeout=15)
    lines = sorted(out.decode().splitlines())
    assert lines == sorted(f"{t} m-{t}" for t in ("sensors/1", "alerts/fire", "other/x", "sensors/2",
                                                   "alerts/flood", "other/y")), (lines, err)
    assert node.count("sensors") == 2 and node.count("alerts") == 2 and node.count("mqtt") == 2
    # Its consumer is on each stream, under one name (mqtt.<hash>.<generation>).
    names = [c["name"] for c in node.info("sensors")["consumers"]]
    assert names and names == [c["name"] for c in node.info("alerts")["consumers"]], names


def test_qos2_deliveries_of_two_streams_with_the_same_seq_across_a_reconnect(node):
    """Seq 1 of the bound stream and seq 1 of the default stream are two
    deliveries: two packet ids, both resent with DUP and their own ids after
    a reconnect, each completed once (outbound QoS 2 keyed by (stream, seq))."""
    node.create("sensors", "sensors/#")
    s, present = open5(node.port, "q2", clean=True, expiry=3600)
    s.sendall(subscribe5(1, "#", 2))
    expect(s, 0x90)
    pub(node, "sensors/a", "bound", qos=2)
    pub(node, "other/a", "default", qos=2)
    first = {}
    for _ in range(2):
        head, body = expect(s, 0x30)
        p = parse_publish(head, body)
        assert p["qos"] == 2 and not p["dup"], p
        first[p["payload"]] = p["pid"]
    assert set(first) == {b"bound", b"default"}, first
    assert len(set(first.values())) == 2, first  # not one id for both seq 1s
    s.close()  # neither answered
    s, present = open5(node.port, "q2", clean=False, expiry=3600)
    assert present == 1
    again = {}
    for _ in range(2):
        head, body = expect(s, 0x30)
        p = parse_publish(head, body)
        assert p["dup"] and p["qos"] == 2, p
        again[p["payload"]] = p["pid"]
    assert again == first, (first, again)  # the ids the client holds
    # PUBREC one: PUBREL comes; a reconnect now resends PUBREL for it and
    # the PUBLISH for the other.
    s.sendall(ack5(0x50, first[b"bound"]))
    head, body = expect(s, 0x60)
    s.close()
    s, present = open5(node.port, "q2", clean=False, expiry=3600)
    got = []
    for _ in range(2):
        p = base.read_packet(s)
        assert p is not None, "closed"
        got.append((p[0] & 0xF0, p[1]))
    kinds = sorted(k for k, _ in got)
    assert kinds == [0x30, 0x60], got
    for k, body in got:
        if k == 0x60:
            assert int.from_bytes(body[:2], "big") == first[b"bound"]
            s.sendall(ack5(0x70, first[b"bound"]))
        else:
            p = parse_publish(0x34 | 0x08, body)
            assert p["pid"] == first[b"default"] and p["payload"] == b"default"
            s.sendall(ack5(0x50, p["pid"]))
            expect(s, 0x60)
            s.sendall(ack5(0x70, p["pid"]))
    quiet(s, 1.0)
    s.close()
    # Completed: nothing more after another reconnect.
    s, present = open5(node.port, "q2", clean=False, expiry=3600)
    quiet(s, 1.5)
    s.close()


def test_a_stream_bound_after_the_subscription_keeps_the_offline_queue(node):
    """A persistent subscriber of `late/#` is away while the stream `late`
    gets bound to `late/#`: what is published there meanwhile reaches it on
    reconnect (its new consumer starts at the subscription's time)."""
    sub = Collector("late-sub", clean=False, expiry=3600)
    sub.connect(node.port)
    sub.subscribe("late/#", 1)
    pub(node, "late/before", "before", qos=1)  # the default stream, before the binding
    sub.wait(lambda: len(sub.messages) == 1, "the message before the binding")
    sub.c.disconnect()
    sub.c.loop_stop()
    node.create("late", "late/#")
    probes = wait_for_bindings(node, "late", "late/probe")
    pub(node, "late/after", "after", qos=1)
    assert node.count("late") == probes + 1
    sub.connack = None
    flags, rc, _ = sub.connect(node.port)
    assert flags["session present"] == 1
    want = {"before", "after"} | {f"probe{i}" for i in range(probes)}
    sub.wait(lambda: want <= {m.payload.decode() for m in sub.messages}, "what was queued in the new stream")
    sub.close()


def test_a_connected_subscriber_reads_a_stream_bound_while_it_is_connected(node):
    sub = Collector("live", clean=True)
    sub.connect(node.port)
    sub.subscribe("live/#", 1)
    node.create("live", "live/#")
    probes = wait_for_bindings(node, "live", "live/probe")
    pub(node, "live/x", "x", qos=1)
    want = {"x"} | {f"probe{i}" for i in range(probes)}
    sub.wait(lambda: want <= {m.payload.decode() for m in sub.messages}, "messages of the new stream")
    sub.close()


def test_shared_subscription_reads_the_bound_stream(node):
    """$share/g/sensors/#: each message of the bound stream (and of the
    default one) to one member."""
    node.create("sensors", "sensors/#")
    a = Collector("member-a")
    b = Collector("member-b", version=paho.MQTTv311)
    a.connect(node.port)
    b.connect(node.port)
    a.subscribe("$share/g/sensors/#", 1)
    b.subscribe("$share/g/sensors/#", 1)
    time.sleep(0.3)
    sent = [f"s{i}" for i in range(40)]
    for i, body in enumerate(sent):
        pub(node, f"sensors/{i}", body, qos=1)
    got = lambda: [m.payload.decode() for m in a.messages + b.messages]  # noqa: E731
    a.wait(lambda: set(sent) <= set(got()), "every shared message", timeout=15)
    time.sleep(0.5)
    assert sorted(got()) == sorted(sent), got()  # none twice
    assert a.messages and b.messages, "both members took some"
    assert node.count("sensors") == 40
    a.close()
    b.close()


def test_retained_messages_of_bound_topics(node):
    node.create("sensors", "sensors/#")
    rc, _, err = run(["mosquitto_pub", "-p", str(node.port), "-q", "1", "-r", "-t", "sensors/kept", "-m", "r1"])
    assert rc == 0, err
    assert node.count("sensors") == 1
    rc, out, err = run(["mosquitto_sub", "-p", str(node.port), "-q", "1", "-t", "sensors/#", "-C", "1",
                        "-W", "5", "-v"], timeout=10)
    assert rc == 0 and out.strip() == "sensors/kept r1", (out, err)


def owners(node):
    """stream -> owning node id, from `floe cluster status --json` on the bank."""
    rc, out, err = run([base.FLOE, "cluster", "status", "--json", "--bank", f"sqlite:{node.dir}/bank.db"])
    assert rc == 0, out + err
    return {s["name"]: s["owner"] for s in json.loads(out)["streams"]}


def test_bound_streams_are_served_where_the_mqtt_stream_is(node):
    """In a cluster a bound stream is placed with the MQTT stream (docs/
    cluster.md "Placement groups"): one bound while another node serves it is
    given up to the MQTT stream's node, so PUBLISHes through either node's
    MQTT port land in it; plain streams still spread. Before: the bound
    stream stayed where it was made, and PUBLISHes to it were refused (0x80)."""
    pub(node, "warmup/x", "w")  # the default MQTT stream now exists, on this node
    assert owners(node)["mqtt"] == "node-1"
    peer = TopicNode(data=node.dir, extra=["--node-id", "n2"])
    try:
        peer.start()
        for i in range(4):
            rc, out, err = node.floe("stream", "create", f"plain{i}")  # n1: over its share, gives plain ones up
            assert rc == 0, out + err
        peer.create("near", "near/#")  # made on n2: n2 holds it first, and is never over its share
        assert owners(node)["near"] == "n2"
        deadline = time.time() + 5
        while owners(node).get("near") != "node-1":
            assert time.time() < deadline, owners(node)
            time.sleep(0.2)
        wait_for_bindings(peer, "near", "near/probe")
        before = node.count("near")
        for i in range(10):
            pub(peer, f"near/{i}", "via n2")   # relayed to the MQTT stream's node
            pub(node, f"near/{i}", "via n1")
        assert node.count("near") == before + 20, node.info("near")
        # Balancing spreads the plain streams but never splits the group.
        deadline = time.time() + 30
        while "n2" not in owners(node).values():
            assert time.time() < deadline, owners(node)
            time.sleep(0.5)
        o = owners(node)
        assert o["near"] == o["mqtt"] == "node-1", o
    finally:
        peer.cleanup_keep_dir()


TESTS = {name: fn for name, fn in globals().items() if name.startswith("test_")}


def main():
    base.FLOE = sys.argv[1]
    names = sys.argv[2:] or list(TESTS)
    passed = failed = 0
    for name in names:
        node = TopicNode()
        try:
            node.start()
            TESTS[name](node)
            node.stop()
            print(f"[ OK ] {name}", flush=True)
            passed += 1
        except Exception:
            print(f"[FAIL] {name}\n{traceback.format_exc()}", flush=True)
            print(f"---- node output ----\n{node.out.decode(errors='replace')[-3000:]}\n----", flush=True)
            failed += 1
        finally:
            node.cleanup()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
