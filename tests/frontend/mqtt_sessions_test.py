#!/usr/bin/python3
"""MQTT session state that outlives a connection and a node (docs/mqtt.md
"Sessions", "Wills and session expiry", "QoS"): the Will Delay Interval,
wills of sessions whose node died, Session Expiry enforced by time, and QoS 2
exactly once across a reconnect and a kill -9 — with a real `floe serve`,
Eclipse Paho for Python, and raw packets where a test needs to stop a client
at a chosen step of a QoS 2 exchange. Run by ctest:
    mqtt_sessions_test.py FLOE_BINARY [TEST_NAME ...]
"""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mqtt_clients_test import Collector, Node, mstr, read_packet, run, run_tests, vbi  # noqa: E402

import paho.mqtt.client as paho  # noqa: E402


# --- raw MQTT 5 packets --------------------------------------------------------

def props(*pairs):
    """Properties: (identifier, bytes) pairs."""
    body = b"".join(bytes([i]) + v for i, v in pairs)
    return vbi(len(body)) + body


def u32(v):
    return struct.pack(">I", v)


def connect5(client_id, clean=True, expiry=0, will=None, keep_alive=30, will_props=(), connect_props=()):
    """will = (topic, payload, qos, delay_s); *_props: extra (identifier, bytes)."""
    flags = 0x02 if clean else 0
    payload = mstr(client_id)
    if will:
        topic, body, qos, delay = will
        flags |= 0x04 | (qos << 3)
        payload += props((0x18, u32(delay)), *will_props) + mstr(topic) + mstr(body)
    vh = mstr("MQTT") + bytes([5, flags]) + struct.pack(">H", keep_alive) + props((0x11, u32(expiry)),
                                                                                   *connect_props)
    body = vh + payload
    return bytes([0x10]) + vbi(len(body)) + body


def open5(port, client_id, **kw):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(connect5(client_id, **kw))
    p = read_packet(s)
    assert p and p[0] == 0x20 and p[1][1] == 0, f"expected CONNACK success, got {p}"
    return s, p[1][0] & 1  # the socket, session present


def publish5(topic, payload, qos, pid, dup=False):
    body = mstr(topic) + (struct.pack(">H", pid) if qos else b"") + vbi(0) + payload
    return bytes([0x30 | (0x08 if dup else 0) | (qos << 1)]) + vbi(len(body)) + body


def ack5(kind, pid):
    """PUBACK 0x40, PUBREC 0x50, PUBREL 0x62, PUBCOMP 0x70 (reason Success)."""
    return bytes([kind, 2]) + struct.pack(">H", pid)


def subscribe5(pid, topic, qos):
    body = struct.pack(">H", pid) + vbi(0) + mstr(topic) + bytes([qos])
    return bytes([0x82]) + vbi(len(body)) + body


def parse_publish(head, body):
    qos = (head >> 1) & 3
    n = struct.unpack(">H", body[:2])[0]
    topic = body[2:2 + n].decode()
    i = 2 + n
    pid = None
    if qos:
        pid = struct.unpack(">H", body[i:i + 2])[0]
        i += 2
    # properties: a VBI length then the bytes
    plen, mult = 0, 1
    while True:
        b = body[i]
        i += 1
        plen += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return {"topic": topic, "qos": qos, "pid": pid, "dup": bool(head & 0x08), "payload": body[i + plen:]}


def expect(sock, kind, timeout=5):
    p = read_packet(sock, timeout=timeout)
    assert p is not None, f"connection closed, expected packet type {kind:#x}"
    assert p[0] & 0xF0 == kind & 0xF0, f"expected packet type {kind:#x}, got {p[0]:#x} {p[1]!r}"
    return p


def quiet(sock, seconds):
    """Nothing arrives within `seconds`."""
    try:
        p = read_packet(sock, timeout=seconds)
    except (socket.timeout, TimeoutError):
        return
    raise AssertionError(f"expected nothing, got {p}")


def payloads(collector):
    with collector.lock:
        return [m.payload.decode() for m in collector.messages]


def restart(node):
    node.kill9()
    node.start()  # the same data directory and MQTT port


# --- the tests -----------------------------------------------------------------

def test_will_waits_its_delay_and_a_reconnect_in_time_cancels_it(node):
    """[MQTT-3.1.3-9] the will goes after the Will Delay Interval; a client
    back before it has no will sent."""
    sub = Collector("will-watcher", clean=False, expiry=3600)
    sub.connect(node.port)
    sub.subscribe("will/#", 1)
    s, _ = open5(node.port, "delayed", clean=True, expiry=60, will=("will/delayed", b"first", 1, 3))
    s.close()  # no DISCONNECT: abnormal
    time.sleep(1.0)
    s, present = open5(node.port, "delayed", clean=False, expiry=60, will=("will/delayed", b"second", 1, 3))
    assert present == 1
    left = time.time()
    s.close()
    sub.wait(lambda: sub.messages, "the second will", timeout=10)
    took = time.time() - left
    assert took >= 2.5, f"the will came {took:.2f} s after the close, before its 3 s delay"
    time.sleep(1.0)
    assert payloads(sub) == ["second"], payloads(sub)
    sub.close()


def test_will_goes_when_the_session_ends_before_its_delay(node):
    """The session expires (2 s) before the will delay (60 s): the will is
    sent at the session's end, and the session is gone."""
    sub = Collector("end-watcher", clean=False, expiry=3600)
    sub.connect(node.port)
    sub.subscribe("will/#", 1)
    s, _ = open5(node.port, "short", clean=True, expiry=2, will=("will/short", b"bye", 1, 60))
    s.close()
    left = time.time()
    sub.wait(lambda: sub.messages, "the will", timeout=10)
    assert time.time() - left >= 1.5, "the will came before the session ended"
    assert payloads(sub) == ["bye"]
    time.sleep(0.5)
    s, present = open5(node.port, "short", clean=False, expiry=60)
    assert present == 0, "the expired session was still there"
    s.close()
    sub.close()


def test_a_session_expires_after_its_interval(node):
    """[MQTT-4.1.0-2] a session left for longer than its Session Expiry
    Interval is discarded: a later CONNECT finds no session (and no queue)."""
    c = Collector("expiring", clean=False, expiry=2)
    c.connect(node.port)
    c.subscribe("exp/#", 1)
    c.close()
    c2 = Collector("keeps", clean=False, expiry=3600)
    c2.connect(node.port)
    c2.subscribe("exp/#", 1)
    c2.close()
    time.sleep(4.0)
    rc, _, err = run(["mosquitto_pub", "-p", str(node.port), "-V", "5", "-q", "1", "-t", "exp/a", "-m", "m"])
    assert rc == 0, err
    back = Collector("expiring", clean=False, expiry=60)
    flags, rc, _ = back.connect(node.port)
    assert flags["session present"] == 0, "the session outlived its expiry interval"
    time.sleep(1.0)
    assert payloads(back) == [], "an expired session's queue was delivered"
    back.close()
    kept = Collector("keeps", clean=False, expiry=3600)
    flags, rc, _ = kept.connect(node.port)
    assert flags["session present"] == 1
    kept.wait(lambda: kept.messages, "the message queued for the live session")
    kept.close()


def test_the_will_of_a_client_whose_node_died_is_sent(node):
    """kill -9 of the node serving a client with a will: the node that serves
    the MQTT stream next (here the same one, restarted) finds the session held
    by no live connection and sends its will, once."""
    sub = Collector("death-watcher", clean=False, expiry=3600)
    sub.connect(node.port)
    sub.subscribe("will/#", 1)
    sub.close()
    s, _ = open5(node.port, "doomed", clean=True, expiry=60, will=("will/doomed", b"it died", 1, 0))
    restart(node)
    s.close()
    back = Collector("death-watcher", clean=False, expiry=3600)
    back.connect(node.port)
    back.wait(lambda: back.messages, "the will of the client of the dead node", timeout=20)
    time.sleep(1.0)
    assert payloads(back) == ["it died"], payloads(back)
    back.close()


def test_qos2_resend_after_kill_9_is_stored_once(node):
    """[MQTT-4.3.3] exactly once across the node's death: PUBLISH QoS 2 was
    PUBRECed, the node is SIGKILLed, the client reconnects and resends it
    (DUP) as the spec requires; it is answered and stored once."""
    sub = Collector("q2-watcher", clean=False, expiry=3600)
    sub.connect(node.port)
    sub.subscribe("q2/#", 2)
    sub.close()
    s, _ = open5(node.port, "q2pub", clean=True, expiry=3600)
    s.sendall(publish5("q2/x", b"once", 2, 7))
    expect(s, 0x50)  # PUBREC: durable
    restart(node)
    s.close()
    s, present = open5(node.port, "q2pub", clean=False, expiry=3600)
    assert present == 1
    s.sendall(publish5("q2/x", b"once", 2, 7, dup=True))
    expect(s, 0x50)
    s.sendall(ack5(0x62, 7))
    expect(s, 0x70)  # PUBCOMP
    # After PUBCOMP the id is free: a new message with it is a new message.
    s.sendall(publish5("q2/x", b"next", 2, 7))
    expect(s, 0x50)
    s.sendall(ack5(0x62, 7))
    expect(s, 0x70)
    s.close()
    back = Collector("q2-watcher", clean=False, expiry=3600)
    back.connect(node.port)
    back.wait(lambda: len(back.messages) >= 2, "the QoS 2 messages")
    time.sleep(1.5)
    assert payloads(back) == ["once", "next"], payloads(back)
    back.close()


def test_outbound_qos2_state_survives_a_reconnect(node):
    """[MQTT-4.4.0-1] after a reconnect the server resends PUBREL for a
    delivery the client PUBRECed, and the unanswered PUBLISH with DUP and its
    original packet id: the client can tell them from new messages."""
    s, _ = open5(node.port, "q2sub", clean=True, expiry=3600)
    s.sendall(subscribe5(1, "q2o/#", 2))
    expect(s, 0x90)
    for m in ("a", "b", "c"):
        rc, _, err = run(["mosquitto_pub", "-p", str(node.port), "-V", "5", "-q", "2", "-t", "q2o/t", "-m", m])
        assert rc == 0, err
    got = {}
    for _ in range(3):
        p = parse_publish(*expect(s, 0x30))
        got[p["payload"].decode()] = p
        assert p["qos"] == 2
    pa, pb, pc = got["a"]["pid"], got["b"]["pid"], got["c"]["pid"]
    s.sendall(ack5(0x50, pa))
    assert expect(s, 0x62)[1][:2] == struct.pack(">H", pa)
    s.sendall(ack5(0x70, pa))  # a: done
    s.sendall(ack5(0x50, pb))
    assert expect(s, 0x62)[1][:2] == struct.pack(">H", pb)  # b: PUBREL, left without PUBCOMP
    s.close()  # c: never answered
    time.sleep(0.5)
    s, present = open5(node.port, "q2sub", clean=False, expiry=3600)
    assert present == 1
    p = expect(s, 0x62)
    assert p[1][:2] == struct.pack(">H", pb), f"expected PUBREL {pb}, got {p}"
    p = parse_publish(*expect(s, 0x30))
    assert p["payload"] == b"c" and p["dup"] and p["pid"] == pc, p
    s.sendall(ack5(0x70, pb))
    s.sendall(ack5(0x50, pc))
    expect(s, 0x62)
    s.sendall(ack5(0x70, pc))
    quiet(s, 1.0)  # nothing else: a was never sent again
    s.close()


def watcher(node, name, topic="will/#"):
    sub = Collector(name, clean=False, expiry=3600)
    sub.connect(node.port)
    sub.subscribe(topic, 1)
    return sub


def test_disconnect_with_an_error_reason_keeps_the_will(node):
    """[MQTT-3.14.4-3] only DISCONNECT 0x00 discards the will: 0x80
    (Unspecified error) from the client leaves it to be published."""
    sub = watcher(node, "err-watcher")
    s, _ = open5(node.port, "erring", clean=True, expiry=0, will=("will/erring", b"err", 1, 0))
    s.sendall(bytes([0xE0, 1, 0x80]))  # DISCONNECT, reason 0x80
    sub.wait(lambda: sub.messages, "the will after DISCONNECT 0x80")
    s.close()
    s, _ = open5(node.port, "polite", clean=True, expiry=0, will=("will/polite", b"no", 1, 0))
    s.sendall(bytes([0xE0, 0]))  # DISCONNECT 0x00
    s.close()
    time.sleep(1.5)
    assert payloads(sub) == ["err"], payloads(sub)
    sub.close()


def test_the_will_of_a_taken_over_connection_is_sent(node):
    """[MQTT-3.1.4-3] a connection taken over (0x8E) by a new one with the
    same client identifier has its will (no delay) published."""
    sub = watcher(node, "takeover-watcher")
    old, _ = open5(node.port, "twice", clean=False, expiry=60, will=("will/twice", b"old one", 1, 0))
    new, present = open5(node.port, "twice", clean=False, expiry=60)
    p = expect(old, 0xE0)
    assert p[1][0] == 0x8E, p
    sub.wait(lambda: sub.messages, "the taken-over connection's will")
    time.sleep(1.0)
    assert payloads(sub) == ["old one"], payloads(sub)
    new.close()
    old.close()
    sub.close()


def test_will_properties_reach_the_subscriber(node):
    """Will Properties (Content Type, User Property, Message Expiry) travel
    with the will as a PUBLISH's do [MQTT-3.1.3-10]."""
    sub = watcher(node, "props-watcher")
    user = bytes([0x26]) + mstr("origin") + mstr("sensor-7")
    s, _ = open5(node.port, "propful", clean=True, expiry=0, will=("will/props", b"p", 1, 0),
                 will_props=((0x03, mstr("text/plain")), (user[0], user[1:])))
    s.close()
    sub.wait(lambda: sub.messages, "the will")
    m = sub.messages[0]
    assert m.properties.ContentType == "text/plain", m.properties
    assert ("origin", "sensor-7") in m.properties.UserProperty, m.properties
    sub.close()


def test_a_malformed_311_connect_is_closed_without_connack(node):
    """3.1.1 [MQTT-3.2.2-6]: a CONNECT refused for a reason with no return
    code (here the reserved flag set, malformed) gets no CONNACK at all."""
    vh = mstr("MQTT") + bytes([4, 0x03]) + struct.pack(">H", 30)  # bit 0 reserved
    body = vh + mstr("bad311")
    s = socket.create_connection(("127.0.0.1", node.port))
    s.sendall(bytes([0x10]) + vbi(len(body)) + body)
    assert read_packet(s) is None, "a CONNACK was sent for a malformed 3.1.1 CONNECT"
    s.close()


def test_enhanced_authentication_is_refused_clearly(node):
    """CONNECT with an Authentication Method floe does not support gets
    CONNACK 0x8C; AUTH on a connection without one is a Protocol Error."""
    s = socket.create_connection(("127.0.0.1", node.port))
    s.sendall(connect5("authy", connect_props=((0x15, mstr("SCRAM-SHA-1")),)))
    p = read_packet(s)
    assert p and p[0] == 0x20 and p[1][1] == 0x8C, p
    s.close()
    s, _ = open5(node.port, "plain")
    s.sendall(bytes([0xF0, 0]))  # AUTH, reason 0x00, no properties
    p = expect(s, 0xE0)
    assert p[1][0] == 0x82, p
    s.close()


def publish_all(node, topic, n, qos=1):
    pub = Collector("shared-pub")
    pub.connect(node.port)
    for i in range(n):
        pub.c.publish(topic, f"m{i}", qos=qos).wait_for_publish(5)
    pub.close()


def test_a_shared_subscription_gives_each_message_to_one_member(node):
    """[MQTT-4.8.2] $share/GROUP/filter: every message to one member of the
    group, none twice; a plain subscription beside it gets every message."""
    a, b = Collector("member-a"), Collector("member-b", version=paho.MQTTv311)
    plain = Collector("plain")
    for c in (a, b, plain):
        c.connect(node.port)
    assert a.subscribe("$share/workers/job/#", 1) == [1] or a.subacks[-1][0].value == 1, a.subacks
    b.subscribe("$share/workers/job/#", 1)
    plain.subscribe("job/#", 1)
    publish_all(node, "job/x", 20)
    everything = {f"m{i}" for i in range(20)}
    plain.wait(lambda: len(plain.messages) >= 20, "every message for the plain subscriber")
    a.wait(lambda: len(a.messages) + len(b.messages) >= 20, "every message for the group", timeout=10)
    time.sleep(1.0)
    pa, pb = payloads(a), payloads(b)
    assert set(pa) | set(pb) == everything, (pa, pb)
    assert not set(pa) & set(pb) and len(pa) + len(pb) == 20, f"a message went to two members: {pa} {pb}"
    assert pa and pb, f"one member got everything: {pa} {pb}"
    assert sorted(payloads(plain)) == sorted(everything)
    for c in (a, b, plain):
        c.close()


def test_unanswered_shared_deliveries_go_to_another_member(node):
    """A member that goes without answering its deliveries has them
    released: the other member gets every message."""
    s, _ = open5(node.port, "silent-member")
    s.sendall(subscribe5(1, "$share/pool/w/#", 1))
    p = expect(s, 0x90)
    assert p[1][-1] == 1, f"SUBACK {p}"
    b = Collector("answering-member")
    b.connect(node.port)
    publish_all(node, "w/t", 10)
    got = 0
    try:
        while got < 3:
            pk = read_packet(s, timeout=3)
            if pk and pk[0] & 0xF0 == 0x30:
                got += 1  # held: never PUBACKed
    except (socket.timeout, TimeoutError):
        pass
    b.subscribe("$share/pool/w/#", 1)
    s.close()
    b.wait(lambda: len(set(payloads(b))) >= 10, "every message at the answering member", timeout=15)
    assert set(payloads(b)) == {f"m{i}" for i in range(10)}
    b.close()


def test_a_shared_subscription_queues_while_no_member_is_there(node):
    """The group's consumer is durable: messages published while its only
    member is away reach it when it comes back."""
    m = Collector("lone-member", clean=False, expiry=3600)
    m.connect(node.port)
    m.subscribe("$share/solo/q/#", 1)
    m.close()
    publish_all(node, "q/t", 5)
    back = Collector("lone-member", clean=False, expiry=3600)
    flags, _, _ = back.connect(node.port)
    assert flags["session present"] == 1
    back.wait(lambda: len(back.messages) >= 5, "the group's queue")
    assert sorted(payloads(back)) == [f"m{i}" for i in range(5)]
    back.close()


def test_a_will_due_when_the_client_comes_back_at_once_is_sent(node):
    """[MQTT-3.1.2-8] a reconnect cancels a will only while its delay runs:
    a will with no delay, whose connection broke, is published even when the
    client is back at once (the reconnecting connection publishes it)."""
    sub = watcher(node, "quick-watcher")
    for i in range(5):
        s, _ = open5(node.port, f"quick{i}", clean=True, expiry=60, will=(f"will/quick{i}", b"gone", 1, 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST: no DISCONNECT
        s2, _ = open5(node.port, f"quick{i}", clean=False, expiry=60)
        s2.sendall(bytes([0xE0, 0]))
        s2.close()
    sub.wait(lambda: len(sub.messages) >= 5, "every will", timeout=10)
    time.sleep(1.0)
    assert sorted(m.topic for m in sub.messages) == [f"will/quick{i}" for i in range(5)], \
        [m.topic for m in sub.messages]
    sub.close()


def test_pubrel_is_resent_for_shared_and_retained_qos2(node):
    """[MQTT-4.4.0-1] PUBREL comes again after a reconnect for a QoS 2
    delivery the client PUBRECed — also one of a shared subscription and a
    retained message sent on SUBSCRIBE, which are in no cursor of the
    session; the next QoS 2 delivery gets another packet id."""
    def publish_q2(topic, body, retain=False):
        s, _ = open5(node.port, "pub-" + topic.replace("/", "_") + body.decode())
        pkt = bytearray(publish5(topic, body, 2, 7))
        if retain:
            pkt[0] |= 1
        s.sendall(bytes(pkt))
        expect(s, 0x50)
        s.sendall(ack5(0x62, 7))
        expect(s, 0x70)
        s.close()

    for cid, filt, topic, retained in (("c-shared", "$share/g/sh/t", "sh/t", False),
                                       ("c-ret", "ret/t", "ret/t", True)):
        s, _ = open5(node.port, cid, clean=True, expiry=3600)
        if retained:
            publish_q2(topic, b"R", retain=True)
        s.sendall(subscribe5(1, filt, 2))
        expect(s, 0x90)
        if not retained:
            time.sleep(0.3)
            publish_q2(topic, b"M")
        p = parse_publish(*expect(s, 0x30))
        s.sendall(ack5(0x50, p["pid"]))  # PUBREC; PUBREL / PUBCOMP never completed
        assert expect(s, 0x62)[1][:2] == struct.pack(">H", p["pid"])
        s.close()
        time.sleep(0.3)
        s2, present = open5(node.port, cid, clean=False, expiry=3600)
        assert present == 1
        again = expect(s2, 0x62)
        assert again[1][:2] == struct.pack(">H", p["pid"]), f"{filt}: PUBREL {p['pid']} not resent: {again}"
        publish_q2(topic, b"N")  # while the client still holds the first id
        q = parse_publish(*expect(s2, 0x30))
        assert q["payload"] == b"N" and q["pid"] != p["pid"], q
        s2.sendall(ack5(0x70, p["pid"]))
        s2.close()


TESTS = {name: fn for name, fn in globals().items() if name.startswith("test_")}


def main():
    run_tests(TESTS)


if __name__ == "__main__":
    main()
