#!/usr/bin/python3
"""MQTT front end tests with real clients no one here wrote (docs/mqtt.md).

Each test starts a real `floe serve` on loopback and talks to it with the
Debian packages' mosquitto_pub / mosquitto_sub (both -V 5 and -V 311), Eclipse
Paho for Python (python3-paho-mqtt, MQTT 5 and 3.1.1), or raw packets where a
client library would refuse to send what a test needs. Run by ctest:
    mqtt_clients_test.py FLOE_BINARY [TEST_NAME ...]
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

FLOE = sys.argv[1]


class Node:
    """A real `floe serve` with MQTT on a free loopback port."""

    def __init__(self, data=None, extra=()):
        self.dir = data or tempfile.mkdtemp(prefix="floe-mqtt-")
        self.extra = list(extra)
        self.proc = None
        self.port = 0
        self.out = b""

    def start(self):
        self.proc = subprocess.Popen(
            [FLOE, "serve", "--data", self.dir, "--listen", "127.0.0.1:0",
             "--mqtt-listen", f"127.0.0.1:{self.port}", "--http-listen", "127.0.0.1:0"] + self.extra,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        lines = []
        while time.time() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace")
            if not line:
                break
            lines.append(line)
            if " MQTT on " in line:
                self.port = int(line.split(" MQTT on ")[1].split()[0].rsplit(":", 1)[1])
            if " listening on " in line:
                self.server = line.split(" listening on ")[1].split()[0]  # the floe protocol's, for the CLI
                threading.Thread(target=self._drain, daemon=True).start()
                assert self.port, "no MQTT line before the listening line:\n" + "".join(lines)
                return self
        raise AssertionError("floe serve did not start:\n" + "".join(lines))

    def _drain(self):
        for chunk in iter(lambda: self.proc.stdout.read1(4096), b""):
            self.out += chunk

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=30) == 0, "floe serve did not stop cleanly"

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def run(args, timeout=10, input_bytes=None):
    r = subprocess.run(args, capture_output=True, timeout=timeout, input=input_bytes)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


class Collector:
    """A Paho client that records what it receives and its disconnect reason."""

    def __init__(self, client_id, version=paho.MQTTv5, clean=True, expiry=None):
        self.version = version
        kw = {"client_id": client_id, "protocol": version}
        if version != paho.MQTTv5:
            kw["clean_session"] = clean
        self.c = paho.Client(**kw)
        self.clean = clean
        self.expiry = expiry
        self.messages = []
        self.connack = None
        self.disconnect_rc = None
        self.subacks = []
        self.lock = threading.Condition()
        self.c.on_message = self._msg
        self.c.on_connect = self._conn
        self.c.on_disconnect = self._disc
        self.c.on_subscribe = self._sub

    def _msg(self, c, u, m):
        with self.lock:
            self.messages.append(m)
            self.lock.notify_all()

    def _conn(self, c, u, flags, rc, props=None):
        with self.lock:
            self.connack = (flags, rc, props)
            self.lock.notify_all()

    def _disc(self, c, u, rc, props=None):
        with self.lock:
            self.disconnect_rc = rc
            self.lock.notify_all()

    def _sub(self, c, u, mid, granted, props=None):
        with self.lock:
            self.subacks.append(granted)
            self.lock.notify_all()

    def connect(self, port):
        if self.version == paho.MQTTv5:
            props = None
            if self.expiry is not None:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.expiry
            self.c.connect("127.0.0.1", port, keepalive=30, clean_start=self.clean, properties=props)
        else:
            self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")
        return self.connack

    def wait(self, pred, what, timeout=10):
        with self.lock:
            if not self.lock.wait_for(pred, timeout=timeout):
                raise AssertionError(f"timed out waiting for {what}")

    def subscribe(self, topic, qos=1, props=None):
        n = len(self.subacks)
        if props is not None:
            self.c.subscribe(topic, qos, properties=props)
        else:
            self.c.subscribe(topic, qos)
        self.wait(lambda: len(self.subacks) > n, "SUBACK")
        return self.subacks[-1]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


# --- raw packets -------------------------------------------------------------

def vbi(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def connect_packet(client_id="raw", version=5, keep_alive=30, clean=True):
    flags = 0x02 if clean else 0
    vh = mstr("MQTT") + bytes([version, flags]) + struct.pack(">H", keep_alive)
    if version == 5:
        vh += vbi(0)  # no properties
    body = vh + mstr(client_id)
    return bytes([0x10]) + vbi(len(body)) + body


def read_packet(sock, timeout=5):
    sock.settimeout(timeout)
    head = sock.recv(1)
    if not head:
        return None
    mult, n = 1, 0
    while True:
        b = sock.recv(1)[0]
        n += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            break
        body += chunk
    return head[0], body


def raw_connect(port, **kw):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(connect_packet(**kw))
    p = read_packet(s)
    assert p and p[0] == 0x20, f"expected CONNACK, got {p}"
    return s, p


def closed_within(sock, seconds):
    """Reads until EOF; returns (seconds taken, packets read) or None if still open."""
    start = time.time()
    got = []
    sock.settimeout(seconds)
    try:
        while True:
            p = read_packet(sock, timeout=max(0.1, seconds - (time.time() - start)))
            if p is None:
                return time.time() - start, got
            got.append(p)
    except (socket.timeout, TimeoutError):
        return None
    except (ConnectionResetError, IndexError):
        return time.time() - start, got


# --- the tests -----------------------------------------------------------------

def test_mosquitto_clients_both_versions_and_every_qos(node):
    """mosquitto_sub receives what mosquitto_pub sends, at QoS 0, 1 and 2,
    in MQTT 5 and 3.1.1, through '+' and '#'; '#' does not match '$' topics."""
    for version in ("5", "311"):
        sub = subprocess.Popen(["mosquitto_sub", "-p", str(node.port), "-V", version, "-q", "2", "-v",
                                "-t", "plant/+/temp", "-t", "#", "-C", "6", "-W", "10", "-i", f"sub{version}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)
        for qos in (0, 1, 2):
            rc, _, err = run(["mosquitto_pub", "-p", str(node.port), "-V", version, "-q", str(qos),
                              "-t", f"plant/{version}q{qos}/temp", "-m", f"t{qos}"])
            assert rc == 0, err
        rc, _, err = run(["mosquitto_pub", "-p", str(node.port), "-V", version, "-t", "$SYS/x", "-m", "hidden"])
        assert rc == 0, err
        out, err = sub.communicate(timeout=15)
        lines = out.decode().splitlines()
        # Each message matches both filters: MQTT sends it once per
        # overlapping subscription or once in all; floe sends one copy.
        assert sorted(set(lines)) == sorted(f"plant/{version}q{q}/temp t{q}" for q in (0, 1, 2)), lines
        assert not any("hidden" in l for l in lines), "'#' matched a '$' topic"


def test_puback_means_durable_across_kill_9(node):
    """Every QoS 1 PUBACK survives kill -9: a persistent subscriber gets all."""
    sub = Collector("keeper", clean=False, expiry=3600)
    sub.connect(node.port)
    sub.subscribe("d/#", 1)
    sub.close()
    pub = Collector("pub", version=paho.MQTTv311)
    pub.connect(node.port)
    acked = []
    infos = [pub.c.publish(f"d/{i}", f"m{i}", qos=1) for i in range(200)]
    for i, info in enumerate(infos):
        info.wait_for_publish(10)
        assert info.is_published(), f"message {i} not PUBACKed"
        acked.append(f"m{i}")
    node.kill9()
    node.start()
    pub.c.loop_stop()
    # The restarted node serves the MQTT stream once it has it back (its
    # old lease lapses first): until then CONNECT is refused, and retried.
    deadline = time.time() + 30
    while True:
        again = Collector("keeper", clean=False, expiry=3600)
        flags, rc, _ = again.connect(node.port)
        if rc == 0 or time.time() > deadline:
            break
        again.close()
        time.sleep(0.3)
    assert rc == 0, rc
    assert flags.get("session present") == 1, flags
    again.wait(lambda: len(again.messages) >= len(acked), "every PUBACKed message", timeout=20)
    got = sorted(set(m.payload.decode() for m in again.messages))
    assert got == sorted(acked), (len(got), len(acked))
    again.close()


def test_persistent_session_offline_queue_and_clean_start(node):
    """A persistent session keeps its subscriptions and queues QoS 1 while
    away (session present 1); a clean start discards both."""
    for version in (paho.MQTTv5, paho.MQTTv311):
        cid = f"away-{version}"
        a = Collector(cid, version=version, clean=False, expiry=600)
        a.connect(node.port)
        a.subscribe("away/#", 1)
        a.close()
        rc, _, err = run(["mosquitto_pub", "-p", str(node.port), "-q", "1", "-t", "away/1", "-m", "while-away"])
        assert rc == 0, err
        b = Collector(cid, version=version, clean=False, expiry=600)
        flags, _, _ = b.connect(node.port)
        assert flags.get("session present") == 1, flags
        b.wait(lambda: any(m.payload == b"while-away" for m in b.messages), "the queued message")
        b.close()
        rc, _, err = run(["mosquitto_pub", "-p", str(node.port), "-q", "1", "-t", "away/2", "-m", "dropped"])
        assert rc == 0, err
        c = Collector(cid, version=version, clean=True)
        flags, _, _ = c.connect(node.port)
        assert flags.get("session present") == 0, flags
        time.sleep(1)
        assert not c.messages, [m.payload for m in c.messages]
        c.close()


def test_takeover_disconnects_the_old_connection(node):
    """The same client id connecting again takes the session over: the old
    connection gets DISCONNECT 0x8E (Session taken over)."""
    old = Collector("twin", clean=False, expiry=600)
    old.connect(node.port)
    old.subscribe("twin/#", 1)
    new = Collector("twin", clean=False, expiry=600)
    flags, _, _ = new.connect(node.port)
    assert flags.get("session present") == 1
    old.wait(lambda: old.disconnect_rc is not None, "the old connection's DISCONNECT")
    assert old.disconnect_rc == 0x8E, old.disconnect_rc
    rc, _, err = run(["mosquitto_pub", "-p", str(node.port), "-q", "1", "-t", "twin/x", "-m", "to-new"])
    assert rc == 0, err
    new.wait(lambda: any(m.payload == b"to-new" for m in new.messages), "delivery to the new connection")
    old.c.loop_stop()
    new.close()


def test_properties_are_carried_to_subscribers(node):
    """User properties, content type, response topic and correlation data
    reach the subscriber; subscription identifiers of overlapping
    subscriptions come in one delivery at the highest granted QoS."""
    sub = Collector("props")
    sub.connect(node.port)
    p1 = Properties(PacketTypes.SUBSCRIBE)
    p1.SubscriptionIdentifier = 7
    sub.subscribe("req/#", 0, p1)
    p2 = Properties(PacketTypes.SUBSCRIBE)
    p2.SubscriptionIdentifier = 9
    sub.subscribe("req/+", 1, p2)
    pub = Collector("props-pub")
    pub.connect(node.port)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("k1", "v1"), ("k2", "v2")]
    props.ContentType = "text/plain"
    props.ResponseTopic = "resp/1"
    props.CorrelationData = b"\x01\x02"
    props.MessageExpiryInterval = 60
    pub.c.publish("req/a", "body", qos=1, properties=props).wait_for_publish(10)
    sub.wait(lambda: sub.messages, "the delivery")
    time.sleep(0.5)
    assert len(sub.messages) == 1, "one delivery for overlapping subscriptions"
    m = sub.messages[0]
    assert m.qos == 1, m.qos
    mp = m.properties
    assert sorted(mp.SubscriptionIdentifier) == [7, 9], mp.SubscriptionIdentifier
    assert mp.UserProperty == [("k1", "v1"), ("k2", "v2")], mp.UserProperty
    assert mp.ContentType == "text/plain"
    assert mp.ResponseTopic == "resp/1"
    assert mp.CorrelationData == b"\x01\x02"
    assert 0 < mp.MessageExpiryInterval <= 60
    sub.close()
    pub.close()


def test_will_on_abnormal_close_not_on_disconnect(node):
    """The will is published when the connection ends without DISCONNECT,
    never after a normal DISCONNECT."""
    watcher = Collector("watcher")
    watcher.connect(node.port)
    watcher.subscribe("wills/#", 1)
    for name, clean in (("polite", True), ("crashed", False)):
        c = paho.Client(client_id=name, protocol=paho.MQTTv311)
        c.will_set(f"wills/{name}", f"{name} is gone", qos=1)
        c.connect("127.0.0.1", node.port)
        c.loop_start()
        time.sleep(0.3)
        if clean:
            c.disconnect()
            c.loop_stop()
        else:
            c.loop_stop()
            c.socket().close()  # no DISCONNECT
    watcher.wait(lambda: any(m.topic == "wills/crashed" for m in watcher.messages), "the will")
    time.sleep(0.5)
    assert [m.topic for m in watcher.messages] == ["wills/crashed"], [m.topic for m in watcher.messages]
    watcher.close()


def test_assigned_client_identifier(node):
    """MQTT 5 with an empty client id gets one assigned in CONNACK; 3.1.1
    with an empty id and CleanSession 0 is refused (return code 2)."""
    c = Collector("")
    _, rc, props = c.connect(node.port)
    assert rc == 0
    assert props.AssignedClientIdentifier.startswith("floe-"), props
    c.close()
    s = socket.create_connection(("127.0.0.1", node.port))
    s.sendall(connect_packet(client_id="", version=4, clean=False))
    p = read_packet(s)
    assert p == (0x20, b"\x00\x02"), p


def test_bad_input_is_refused_and_the_node_keeps_serving(node):
    """An unsupported protocol level gets CONNACK 0x84 (3.1.1: return code 1);
    a malformed packet DISCONNECT 0x81; a packet before CONNECT a close; the
    node serves the next client."""
    s = socket.create_connection(("127.0.0.1", node.port))
    body = mstr("MQTT") + bytes([9, 2]) + struct.pack(">H", 30) + mstr("x")
    s.sendall(bytes([0x10]) + vbi(len(body)) + body)
    p = read_packet(s)
    assert p is not None and p[0] == 0x20 and p[1][1] == 0x01, p
    s, _ = raw_connect(node.port, client_id="bad")
    s.sendall(bytes([0x30, 0x02, 0x00, 0x05]))  # PUBLISH whose topic length runs past the packet
    r = closed_within(s, 5)
    assert r is not None, "the connection stayed open"
    assert r[1] and r[1][0][0] == 0xE0 and r[1][0][1][0] == 0x81, r
    s = socket.create_connection(("127.0.0.1", node.port))
    s.sendall(bytes([0xC0, 0x00]))  # PINGREQ first
    assert closed_within(s, 5) is not None
    s = socket.create_connection(("127.0.0.1", node.port))
    s.sendall(bytes([0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]))  # a Remaining Length of five bytes
    assert closed_within(s, 5) is not None
    rc, _, err = run(["mosquitto_pub", "-p", str(node.port), "-q", "1", "-t", "still/here", "-m", "ok"])
    assert rc == 0, err


def test_keep_alive_closes_a_silent_client(node):
    """A client silent past 1.5 × its keep alive gets DISCONNECT 0x8D and is closed."""
    s, _ = raw_connect(node.port, client_id="silent", keep_alive=1)
    r = closed_within(s, 4)
    assert r is not None, "still open after 4 s with a 1 s keep alive"
    assert 1.2 <= r[0] <= 3.5, r[0]
    assert r[1] and r[1][0][0] == 0xE0 and r[1][0][1][0] == 0x8D, r
    s, _ = raw_connect(node.port, client_id="pinger", keep_alive=1)
    for _ in range(4):
        time.sleep(0.5)
        s.sendall(bytes([0xC0, 0x00]))
        p = read_packet(s)
        assert p == (0xD0, b""), p
    s.close()


def test_receive_maximum_exceeded(node):
    """More unacknowledged QoS 1 PUBLISHes than the Receive Maximum the node
    announced: DISCONNECT 0x93."""
    s, (_, connack) = raw_connect(node.port, client_id="flood")
    burst = bytearray()
    for i in range(1, 5001):
        vh = mstr("flood/x") + struct.pack(">H", i) + vbi(0)
        body = vh + b"p"
        burst += bytes([0x32]) + vbi(len(body)) + body
    s.sendall(bytes(burst))
    s.settimeout(10)
    seen = set()
    try:
        while True:
            p = read_packet(s, timeout=10)
            if p is None:
                break
            seen.add(p[0] if p[0] != 0xE0 else (0xE0, p[1][0]))
    except (socket.timeout, TimeoutError, ConnectionResetError):
        pass
    assert (0xE0, 0x93) in seen, seen


def test_a_clean_session_starts_empty(node):
    """A session that ended (CleanSession 1) and connects again clean gets
    nothing published while it was away, even after it subscribes again."""
    for version in (paho.MQTTv311, paho.MQTTv5):
        cid = f"fresh-{version}"
        a = Collector(cid, version=version, clean=True)
        a.connect(node.port)
        a.subscribe("fresh/#", 1)
        a.close()
        time.sleep(0.3)
        rc, _, err = run(["mosquitto_pub", "-p", str(node.port), "-q", "1", "-t", "fresh/1", "-m", "old"])
        assert rc == 0, err
        b = Collector(cid, version=version, clean=True)
        flags, _, _ = b.connect(node.port)
        assert flags.get("session present") == 0
        b.subscribe("fresh/#", 1)
        time.sleep(1)
        assert not b.messages, [m.payload for m in b.messages]
        b.close()


def test_a_subscription_gets_only_what_follows_it(node):
    """Messages stored between CONNECT and SUBSCRIBE are not the new
    subscription's."""
    c = Collector("late")
    c.connect(node.port)
    rc, _, err = run(["mosquitto_pub", "-p", str(node.port), "-q", "1", "-t", "late/1", "-m", "before"])
    assert rc == 0, err
    c.subscribe("late/#", 1)
    rc, _, err = run(["mosquitto_pub", "-p", str(node.port), "-q", "1", "-t", "late/2", "-m", "after"])
    assert rc == 0, err
    c.wait(lambda: c.messages, "the message after SUBSCRIBE")
    time.sleep(0.5)
    assert [m.payload for m in c.messages] == [b"after"], [m.payload for m in c.messages]
    c.close()


def test_qos2_resend_while_writing_is_stored_once(node):
    """A QoS 2 PUBLISH resent (DUP) before its PUBREC is stored once; a
    PUBREL for an id the connection does not know is completed (3.1.1 too)."""
    watcher = Collector("q2watch")
    watcher.connect(node.port)
    watcher.subscribe("q2/#", 2)
    for version in (5, 4):
        s, _ = raw_connect(node.port, client_id=f"q2raw{version}", version=version)
        props = vbi(0) if version == 5 else b""
        body = mstr(f"q2/{version}") + struct.pack(">H", 7) + props + b"once"
        s.sendall(bytes([0x34]) + vbi(len(body)) + body + bytes([0x3C]) + vbi(len(body)) + body)
        p = read_packet(s)
        assert p and p[0] == 0x50, p  # PUBREC
        rel_props = b""
        s.sendall(bytes([0x62, 0x02]) + struct.pack(">H", 7) + rel_props)
        p = read_packet(s)
        assert p and p[0] == 0x70, p  # PUBCOMP
        s.sendall(bytes([0x62, 0x02]) + struct.pack(">H", 999))  # unknown id: still completed
        p = read_packet(s)
        assert p and p[0] == 0x70 and p[1][:2] == struct.pack(">H", 999), p
        s.close()
    time.sleep(1)
    got = sorted(m.topic for m in watcher.messages)
    assert got == ["q2/4", "q2/5"], got
    watcher.close()


def test_expired_messages_are_not_delivered(node):
    """A message past its Message Expiry Interval while the session was away
    is not delivered [MQTT-3.3.2-5]; one without expiry is."""
    a = Collector("expiring", clean=False, expiry=600)
    a.connect(node.port)
    a.subscribe("exp/#", 1)
    a.close()
    pub = Collector("exp-pub")
    pub.connect(node.port)
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 1
    pub.c.publish("exp/short", "gone", qos=1, properties=props).wait_for_publish(10)
    pub.c.publish("exp/kept", "kept", qos=1).wait_for_publish(10)
    pub.close()
    time.sleep(2.5)
    b = Collector("expiring", clean=False, expiry=600)
    b.connect(node.port)
    b.wait(lambda: any(m.payload == b"kept" for m in b.messages), "the message without expiry")
    time.sleep(0.5)
    assert [m.payload for m in b.messages] == [b"kept"], [m.payload for m in b.messages]
    b.close()


def test_retain_is_accepted_and_announced(node):
    """MQTT 5: CONNACK says Retain Available 1, a PUBLISH with RETAIN gets
    PUBACK 0 (no DISCONNECT 0x9A), and a will with Will Retain CONNACK 0
    (no 0x9A). Retained messages themselves: mqtt_retained_test.py."""
    s, (_, connack) = raw_connect(node.port, client_id="retainer")
    assert b"\x25\x01" in connack[2:], connack  # Retain Available 1
    body = mstr("ret/x") + struct.pack(">H", 1) + vbi(0) + b"keep me"
    s.sendall(bytes([0x33]) + vbi(len(body)) + body)  # QoS 1, RETAIN
    p = read_packet(s)
    assert p and p[0] == 0x40 and p[1][:2] == b"\x00\x01" and (len(p[1]) == 2 or p[1][2] == 0), p
    vh = mstr("MQTT") + bytes([5, 0x02 | 0x04 | 0x20]) + struct.pack(">H", 30) + vbi(0)  # will, will retain
    payload = mstr("willer") + vbi(0) + mstr("will/t") + mstr("bye")
    s = socket.create_connection(("127.0.0.1", node.port))
    s.sendall(bytes([0x10]) + vbi(len(vh + payload)) + vh + payload)
    p = read_packet(s)
    assert p and p[0] == 0x20 and p[1][1] == 0x00, p


def test_a_node_not_serving_the_mqtt_stream_says_use_another_server(node):
    """In a cluster the MQTT stream has one serving node: with
    --mqtt-redirect a CONNECT to another gets CONNACK 0x9C (MQTT 5, naming
    the serving node) or return code 3 (3.1.1). (Without it the CONNECT is
    relayed: mqtt_cluster_test.py.)"""
    c = Collector("first")
    c.connect(node.port)  # creates the MQTT stream on this node
    c.close()
    other = Node(data=node.dir, extra=["--node-id", "node-2", "--mqtt-redirect"])
    try:
        other.start()
        s = socket.create_connection(("127.0.0.1", other.port))
        s.sendall(connect_packet(client_id="elsewhere5", version=5))
        p = read_packet(s)
        assert p and p[0] == 0x20 and p[1][1] == 0x9C, p
        assert f"127.0.0.1:{node.port}".encode() in p[1], p  # the Server Reference
        s = socket.create_connection(("127.0.0.1", other.port))
        s.sendall(connect_packet(client_id="elsewhere311", version=4))
        p = read_packet(s)
        assert p == (0x20, b"\x00\x03"), p
        other.stop()
    finally:
        if other.proc and other.proc.poll() is None:
            other.proc.kill()
            other.proc.wait()


TESTS = {name: fn for name, fn in globals().items() if name.startswith("test_")}


def run_tests(tests):
    """Runs the named tests (argv[2:], else all), each on a fresh node;
    exits 1 if any failed."""
    names = sys.argv[2:] or list(tests)
    passed = failed = 0
    for name in names:
        node = Node()
        try:
            node.start()
            tests[name](node)
            node.stop()
            print(f"[ OK ] {name}", flush=True)
            passed += 1
        except Exception:
            print(f"[FAIL] {name}\n{traceback.format_exc()}", flush=True)
            tail = node.out.decode(errors="replace")[-3000:]
            print(f"---- node output ----\n{tail}\n----", flush=True)
            failed += 1
        finally:
            node.cleanup()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def main():
    run_tests(TESTS)


if __name__ == "__main__":
    main()
