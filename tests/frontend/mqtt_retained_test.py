#!/usr/bin/python3
"""MQTT retained messages with real clients (docs/mqtt.md "Retained messages").

Each test starts a real `floe serve` (the Node of mqtt_clients_test.py) and
talks to it with mosquitto_pub / mosquitto_sub (-V 5 and -V 311), Eclipse
Paho for Python, or raw packets. Run by ctest:
    mqtt_retained_test.py FLOE_BINARY [TEST_NAME ...]
"""
import json
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mqtt_clients_test as base  # noqa: E402  (reads FLOE from sys.argv[1] too)
from mqtt_clients_test import Collector, Node, connect_packet, mstr, read_packet, run, run_tests, vbi  # noqa: E402

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402
from paho.mqtt.subscribeoptions import SubscribeOptions  # noqa: E402

FLOE = sys.argv[1]


def publish(node, topic, payload, qos=1, retain=True, version=paho.MQTTv5, expiry=None, cid="retain-pub"):
    """Publishes with Paho and waits for the PUBACK / PUBCOMP (QoS 1 / 2)."""
    p = Collector(cid, version=version)
    p.connect(node.port)
    props = None
    if expiry is not None:
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = expiry
    info = p.c.publish(topic, payload, qos=qos, retain=retain, properties=props)
    if qos > 0:
        info.wait_for_publish(10)
        assert info.is_published(), f"{topic}: not acknowledged"
    else:
        time.sleep(0.3)
    p.close()


def subscribe_and_collect(node, topic, qos=1, version=paho.MQTTv5, options=None, settle=0.7, cid="retain-sub",
                          expect=None, collector=None):
    """Subscribes; returns what arrived once `expect` messages came (or `settle` s of quiet)."""
    c = collector
    if c is None:
        c = Collector(cid, version=version)
        c.connect(node.port)
    n = len(c.subacks)
    before = len(c.messages)
    if options is not None:
        c.c.subscribe(topic, options=options)
    else:
        c.c.subscribe(topic, qos)
    c.wait(lambda: len(c.subacks) > n, "SUBACK")
    if expect is not None:
        c.wait(lambda: len(c.messages) - before >= expect, f"{expect} retained messages")
    time.sleep(settle)
    got = c.messages[before:]
    if collector is None:
        c.close()
    return got


def mosquitto_sub(node, version, topic, count, wait=5):
    """mosquitto_sub printing 'RETAIN QOS TOPIC PAYLOAD' per message."""
    rc, out, err = run(["mosquitto_sub", "-p", str(node.port), "-V", version, "-q", "2", "-t", topic,
                        "-F", "%r %q %t %p", "-C", str(count), "-W", str(wait)], timeout=wait + 5)
    return rc, out.splitlines(), err


# --- the tests -----------------------------------------------------------------

def test_retained_delivered_on_subscribe_both_versions(node):
    """A retained message (published in MQTT 5 and in 3.1.1, by Paho and by
    mosquitto_pub) is sent to a later subscriber with RETAIN 1 [MQTT-3.3.1-8],
    in both versions, at min(its QoS, the granted QoS)."""
    publish(node, "r/v5", "five", qos=1, version=paho.MQTTv5)
    publish(node, "r/v311", "three", qos=2, version=paho.MQTTv311)
    rc, _, err = run(["mosquitto_pub", "-p", str(node.port), "-V", "311", "-q", "0", "-r", "-t", "r/mosq", "-m", "m"])
    assert rc == 0, err
    for version in ("5", "311"):
        rc, lines, err = mosquitto_sub(node, version, "r/#", 3)
        assert rc == 0, (version, rc, lines, err)
        assert sorted(lines) == ["1 0 r/mosq m", "1 1 r/v5 five", "1 2 r/v311 three"], (version, lines)
    for version in (paho.MQTTv5, paho.MQTTv311):
        got = subscribe_and_collect(node, "r/v311", qos=1, version=version, expect=1)
        assert [(m.topic, m.payload, m.retain, m.qos) for m in got] == [("r/v311", b"three", 1, 1)], got


def test_a_later_retain_replaces_and_an_empty_one_clears(node):
    """The second retained message of a topic replaces the first; an empty
    retained payload removes it [MQTT-3.3.1-6] and still reaches current
    subscribers [MQTT-3.3.1-7]."""
    publish(node, "rep/t", "first")
    publish(node, "rep/t", "second")
    got = subscribe_and_collect(node, "rep/t", expect=1)
    assert [m.payload for m in got] == [b"second"], [m.payload for m in got]
    live = Collector("live")
    live.connect(node.port)
    subscribe_and_collect(node, "rep/t", collector=live, expect=1)
    publish(node, "rep/t", "")
    live.wait(lambda: any(m.payload == b"" for m in live.messages), "the empty message, live")
    live.close()
    got = subscribe_and_collect(node, "rep/t", settle=1.0)
    assert got == [], [(m.topic, m.payload) for m in got]
    rc, out, err = run([FLOE, "mqtt", "retained", "--json", "--bank", f"sqlite:{node.dir}/bank.db"])
    assert rc == 0 and json.loads(out) == [], (rc, out, err)


def test_wildcards_match_as_live_delivery_does(node):
    """'#' gets every matching retained message but none of a '$' topic;
    '+' one level; '$SYS/#' the '$' one [MQTT-4.7.2-1]."""
    for t in ("w/a/1", "w/b/1", "w/a/2", "$SYS/up"):
        publish(node, t, t)
    got = subscribe_and_collect(node, "#", expect=3)
    assert sorted(m.topic for m in got) == ["w/a/1", "w/a/2", "w/b/1"], [m.topic for m in got]
    got = subscribe_and_collect(node, "w/+/1", expect=2)
    assert sorted(m.topic for m in got) == ["w/a/1", "w/b/1"], [m.topic for m in got]
    got = subscribe_and_collect(node, "$SYS/#", expect=1)
    assert [m.topic for m in got] == ["$SYS/up"], [m.topic for m in got]
    got = subscribe_and_collect(node, "w/a/2", expect=1)
    assert [m.topic for m in got] == ["w/a/2"], [m.topic for m in got]


def test_retain_handling(node):
    """Retain Handling 0 sends at every SUBSCRIBE [MQTT-3.3.1-9], 1 only when
    the subscription is new [MQTT-3.3.1-10], 2 never [MQTT-3.3.1-11]."""
    publish(node, "rh/t", "kept")
    c = Collector("rh")
    c.connect(node.port)
    once = subscribe_and_collect(node, "rh/t", options=SubscribeOptions(qos=1, retainHandling=1), collector=c,
                                 expect=1)
    assert [m.payload for m in once] == [b"kept"], once
    again = subscribe_and_collect(node, "rh/t", options=SubscribeOptions(qos=1, retainHandling=1), collector=c)
    assert again == [], "Retain Handling 1 sent retained messages for an existing subscription"
    never = subscribe_and_collect(node, "rh/#", options=SubscribeOptions(qos=1, retainHandling=2), collector=c)
    assert never == [], "Retain Handling 2 sent retained messages"
    always = subscribe_and_collect(node, "rh/t", options=SubscribeOptions(qos=1, retainHandling=0), collector=c,
                                   expect=1)
    assert [m.payload for m in always] == [b"kept"], always
    c.close()


def test_retain_as_published_on_live_deliveries(node):
    """A live delivery has RETAIN 0 [MQTT-3.3.1-12], or the flag as published
    with Retain As Published [MQTT-3.3.1-13]."""
    plain = Collector("rap-0")
    plain.connect(node.port)
    subscribe_and_collect(node, "rap/#", options=SubscribeOptions(qos=1), collector=plain, settle=0)
    kept = Collector("rap-1")
    kept.connect(node.port)
    subscribe_and_collect(node, "rap/#", options=SubscribeOptions(qos=1, retainAsPublished=True), collector=kept,
                          settle=0)
    publish(node, "rap/t", "flagged", retain=True)
    publish(node, "rap/u", "plain", retain=False)
    for c in (plain, kept):
        c.wait(lambda: len(c.messages) >= 2, "two live messages")
    assert sorted((m.topic, m.retain) for m in plain.messages) == [("rap/t", 0), ("rap/u", 0)], plain.messages
    assert sorted((m.topic, m.retain) for m in kept.messages) == [("rap/t", 1), ("rap/u", 0)], kept.messages
    plain.close()
    kept.close()


def test_an_expired_retained_message_is_not_sent(node):
    """Past its Message Expiry Interval a retained message is not sent
    [MQTT-3.3.2-5]; one still alive carries what remains of its interval."""
    publish(node, "ex/short", "gone", expiry=1)
    publish(node, "ex/long", "alive", expiry=120)
    time.sleep(2.2)
    got = subscribe_and_collect(node, "ex/#", expect=1, settle=1.0)
    assert [m.payload for m in got] == [b"alive"], [m.payload for m in got]
    left = got[0].properties.MessageExpiryInterval
    assert 100 <= left <= 120, left


def test_a_retained_qos_is_the_lower_of_the_two_and_receive_maximum_holds(node):
    """QoS = min(the message's, the granted); a client with Receive Maximum 1
    still gets every retained QoS 1 message, one at a time, and answering
    them acknowledges nothing in its consumer's cursor (its live message
    still comes)."""
    publish(node, "q/two", "2", qos=2)
    publish(node, "q/zero", "0", qos=0)
    for i in range(5):
        publish(node, f"q/many/{i}", f"m{i}", qos=1)
    got = subscribe_and_collect(node, "q/two", qos=1, expect=1)
    assert [(m.qos, m.retain) for m in got] == [(1, 1)], got
    got = subscribe_and_collect(node, "q/zero", qos=2, expect=1)
    assert [(m.qos, m.retain) for m in got] == [(0, 1)], got
    c = paho.Client(client_id="narrow", protocol=paho.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = 1
    got = []
    c.on_message = lambda cl, u, m: got.append(m)
    c.connect("127.0.0.1", node.port, properties=props)
    c.loop_start()
    c.subscribe("q/many/#", 1)
    deadline = time.time() + 10
    while len(got) < 5 and time.time() < deadline:
        time.sleep(0.05)
    assert sorted(m.payload for m in got) == [f"m{i}".encode() for i in range(5)], [m.payload for m in got]
    publish(node, "q/many/live", "live", retain=False)
    deadline = time.time() + 10
    while len(got) < 6 and time.time() < deadline:
        time.sleep(0.05)
    assert [(m.payload, m.retain) for m in got[5:]] == [(b"live", 0)], [m.payload for m in got]
    c.disconnect()
    c.loop_stop()


def test_a_pubacked_retained_message_survives_kill_9(node):
    """Once PUBACKed (3.1.1 QoS 1, MQTT 5 QoS 2), a retained message is kept
    through kill -9 of the node."""
    publish(node, "dur/a", "acked-1", qos=1, version=paho.MQTTv311)
    publish(node, "dur/b", "acked-2", qos=2)
    node.kill9()
    node.start()
    deadline = time.time() + 30
    while True:  # the restarted node serves the MQTT stream once its old lease lapsed
        c = Collector("after")
        _, rc, _ = c.connect(node.port)
        if rc == 0 or time.time() > deadline:
            break
        c.close()
        time.sleep(0.3)
    assert rc == 0, rc
    got = subscribe_and_collect(node, "dur/#", collector=c, expect=2)
    assert sorted((m.topic, m.payload, m.retain) for m in got) == [("dur/a", b"acked-1", 1), ("dur/b", b"acked-2", 1)]
    c.close()


def test_a_will_with_will_retain_becomes_retained(node):
    """A will with Will Retain, sent at an abnormal close, is its topic's
    retained message [MQTT-3.1.2-15]; MQTT 5 and 3.1.1."""
    for level, topic in ((5, "will/5"), (4, "will/311")):
        vh = mstr("MQTT") + bytes([level, 0x02 | 0x04 | 0x08 | 0x20]) + struct.pack(">H", 30)  # will QoS 1, retain
        if level == 5:
            vh += vbi(0)
        payload = mstr(f"willer{level}") + (vbi(0) if level == 5 else b"") + mstr(topic) + mstr(f"bye{level}")
        s = socket.create_connection(("127.0.0.1", node.port))
        s.sendall(bytes([0x10]) + vbi(len(vh + payload)) + vh + payload)
        p = read_packet(s)
        assert p and p[0] == 0x20 and p[1][1] == 0, p
        s.close()  # no DISCONNECT: the will goes
    time.sleep(0.5)
    got = subscribe_and_collect(node, "will/#", expect=2)
    assert sorted((m.topic, m.payload, m.retain) for m in got) == [("will/311", b"bye4", 1), ("will/5", b"bye5", 1)]


def test_cli_lists_retained_messages_and_sessions(node):
    """`floe mqtt retained --json` shows each topic's bytes, QoS and stored-at
    seq; `floe mqtt sessions --json` a persistent session's subscriptions,
    expiry and offline queue depth (frontier minus its ack floor)."""
    publish(node, "cli/a", "12345", qos=1)
    publish(node, "cli/b", "xy", qos=2)
    away = Collector("away", clean=False, expiry=900)
    away.connect(node.port)
    subscribe_and_collect(node, "cli/#", qos=2, collector=away, expect=2)
    subscribe_and_collect(node, "other/+", qos=0, collector=away, settle=0)
    away.close()
    time.sleep(0.3)
    for i in range(3):
        publish(node, f"cli/q{i}", f"q{i}", retain=False)
    time.sleep(0.3)  # cursors are persisted lazily, within 100 ms
    bank = f"sqlite:{node.dir}/bank.db"
    rc, out, err = run([FLOE, "mqtt", "retained", "--json", "--bank", bank])
    assert rc == 0, (out, err)
    rows = json.loads(out)
    assert [(r["topic"], r["bytes"], r["qos"]) for r in rows] == [("cli/a", 5, 1), ("cli/b", 2, 2)], rows
    assert 0 < rows[0]["seq"] < rows[1]["seq"], rows
    rc, out, err = run([FLOE, "mqtt", "sessions", "--json", "--bank", bank])
    assert rc == 0, (out, err)
    doc = json.loads(out)
    mine = [s for s in doc["sessions"] if s["client_id"] == "away"]
    assert len(mine) == 1, doc
    s = mine[0]
    assert s["session_expiry_s"] == 900, s
    assert [(x["filter"], x["qos"]) for x in s["subscriptions"]] == [("cli/#", 2), ("other/+", 0)], s
    assert s["queue"] == 3 and s["pending"] == 0, s
    assert doc["frontier"] == s["ack_floor"] + 3, doc
    rc, out, err = run([FLOE, "mqtt", "sessions", "--bank", bank])
    assert rc == 0 and "away" in out and "cli/# (QoS 2)" in out, (out, err)


TESTS = {name: fn for name, fn in globals().items() if name.startswith("test_")}


def main():
    run_tests(TESTS)


if __name__ == "__main__":
    main()
