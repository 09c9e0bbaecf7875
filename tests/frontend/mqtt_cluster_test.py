#!/usr/bin/python3
"""MQTT across a cluster (docs/mqtt.md "MQTT in a cluster"): any node accepts an MQTT
client and relays it to the node serving the MQTT stream.

Real `floe serve` processes on loopback share one data directory and SQLite
bank; the clients are Eclipse Paho for Python 1.6.1, mosquitto_pub/sub and raw
sockets. The helpers (Node, Collector, raw packets) come from
mqtt_clients_test.py. Run by ctest:
    mqtt_cluster_test.py FLOE_BINARY [TEST_NAME ...]
"""
import collections
import json
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mqtt_clients_test as base  # noqa: E402  (reads FLOE from sys.argv[1])
from mqtt_clients_test import FLOE, Collector, read_packet, vbi, mstr  # noqa: E402

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

LEASE_MS = "1000"


class Cluster:
    """Nodes n1..nN sharing one data directory; n1 starts first and creates
    the MQTT stream, so it serves it until something moves it."""

    def __init__(self, count, extra=()):
        self.dir = tempfile.mkdtemp(prefix="floe-mqtt-cluster-")
        self.bank = f"sqlite:{self.dir}/bank.db"
        self.nodes = [base.Node(data=self.dir, extra=["--node-id", f"n{i + 1}", "--lease-ms", LEASE_MS] + list(extra))
                      for i in range(count)]

    def start(self):
        self.nodes[0].start()
        c = Collector("creator")
        c.connect(self.nodes[0].port)  # the first CONNECT creates the MQTT stream on n1
        c.close()
        for n in self.nodes[1:]:
            n.start()
        return self

    def ports(self):
        return [n.port for n in self.nodes]

    def node(self, node_id):
        return self.nodes[int(node_id[1:]) - 1]

    def status(self):
        r = subprocess.run([FLOE, "cluster", "status", "--bank", self.bank, "--json"], capture_output=True,
                           timeout=10)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def owner(self, timeout=15):
        """The node serving the MQTT stream (waits for one)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for s in self.status()["streams"]:
                if s["name"] == "mqtt" and s["owner"]:
                    return s["owner"]
            time.sleep(0.1)
        raise AssertionError("no node serves the MQTT stream")

    def wait_owner(self, node_id, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.owner() == node_id:
                return
            time.sleep(0.05)
        raise AssertionError(f"{node_id} does not serve the MQTT stream; {self.owner()} does")

    def output(self):
        return "\n".join(f"---- {n.extra[1]} ----\n" + n.out.decode(errors="replace")[-2500:] for n in self.nodes)

    def cleanup(self):
        for n in self.nodes:
            if n.proc and n.proc.poll() is None:
                n.proc.kill()
                n.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Roamer:
    """A Paho client driven by its own thread: reconnects (round robin over
    `ports`, or to a Server Reference it was given) and resumes its session
    (clean start only the first time; MQTT 5 session expiry set)."""

    def __init__(self, name, ports, version=paho.MQTTv5, topic=None, sub_qos=1, reconnect=True, clean_first=True,
                 expiry=600):
        self.name, self.ports, self.version = name, list(ports), version
        self.topic, self.sub_qos, self.reconnect, self.expiry = topic, sub_qos, reconnect, expiry
        self.clean_first = clean_first
        kw = {"client_id": name, "protocol": version}
        if version != paho.MQTTv5:
            kw["clean_session"] = False
        self.c = paho.Client(**kw)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.subscribed = threading.Event()
        self.cv = threading.Condition()
        self.messages = []     # (payload, qos, dup)
        self.connacks = []     # (port, reason, session present)
        self.disconnects = []  # (reason, Server Reference or None)
        self.reference = None
        self.connected = False
        self.stopping = False
        self.rr = 0
        self._ack = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _on_connect(self, c, u, flags, rc, props=None):
        self._ack = (flags.get("session present", 0), int(rc) if not hasattr(rc, "value") else rc.value)

    def _on_subscribe(self, *args):
        with self.cv:
            self.subscribed.set()
            self.cv.notify_all()

    def _on_disconnect(self, c, u, rc, props=None):
        ref = getattr(props, "ServerReference", None) if props is not None else None
        code = rc.value if hasattr(rc, "value") else rc
        with self.cv:
            self.disconnects.append((code, ref))
            self.connected = False
            if ref:
                self.reference = ref
            self.cv.notify_all()

    def _on_message(self, c, u, m):
        with self.cv:
            self.messages.append((m.payload.decode(), m.qos, bool(m.dup)))
            self.cv.notify_all()

    def _next_port(self):
        if self.reference:
            port, self.reference = int(self.reference.rsplit(":", 1)[1]), None
            return port
        port = self.ports[self.rr % len(self.ports)]
        self.rr += 1
        return port

    def _connect_once(self, port):
        self._ack = None
        try:
            if self.version == paho.MQTTv5:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.expiry
                # (Paho's MQTT_CLEAN_START_FIRST_ONLY counts from each connect() call.)
                clean = self.clean_first and not any(a[1] == 0 for a in self.connacks)
                self.c.connect("127.0.0.1", port, keepalive=10, clean_start=clean, properties=props)
            else:
                self.c.connect("127.0.0.1", port, keepalive=10)
        except OSError:
            return False
        deadline = time.time() + 5
        while self._ack is None and time.time() < deadline and not self.stopping:
            if self.c.loop(0.05) != paho.MQTT_ERR_SUCCESS:
                break
        with self.cv:
            if self._ack is not None:
                self.connacks.append((port, self._ack[1], self._ack[0]))
            ok = self._ack is not None and self._ack[1] == 0
            self.connected = ok
            self.cv.notify_all()
        return ok

    def _run(self):
        while not self.stopping:
            if not self.connected:
                if not self.reconnect and self.connacks:
                    return
                if not self._connect_once(self._next_port()):
                    time.sleep(0.2)
                    continue
                if self.topic and not self.subscribed.is_set():
                    self.c.subscribe(self.topic, self.sub_qos)
            if self.c.loop(0.05) != paho.MQTT_ERR_SUCCESS:
                with self.cv:
                    self.connected = False

    def wait(self, pred, what, timeout=10):
        with self.cv:
            if not self.cv.wait_for(pred, timeout=timeout):
                raise AssertionError(f"{self.name}: timed out waiting for {what}; connacks {self.connacks}, "
                                     f"disconnects {self.disconnects}")

    def wait_connected(self, timeout=10):
        self.wait(lambda: self.connected, "a connection", timeout)

    def payloads(self):
        with self.cv:
            return [m[0] for m in self.messages]

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=5)
        try:
            self.c.disconnect()
        except Exception:
            pass


def acked(info):
    """PUBACK (QoS 1) or PUBCOMP (QoS 2) came. (MQTTMessageInfo.is_published
    raises for a message queued while disconnected, which Paho sends after
    the reconnect: read the flag it sets on the acknowledgement.)"""
    with info._condition:
        return info._published


def publish_all(client, topic, payloads, qos):
    infos = [(p, client.c.publish(topic, p, qos)) for p in payloads]
    deadline = time.time() + 10
    while time.time() < deadline and not all(acked(i) for _, i in infos):
        time.sleep(0.02)
    assert all(acked(i) for _, i in infos), f"{client.name}: not every PUBLISH was acknowledged"


def connect_v5(client_id, clean=True, expiry=0):
    props = b""
    if expiry:
        props = bytes([0x11]) + struct.pack(">I", expiry)  # Session Expiry Interval
    vh = mstr("MQTT") + bytes([5, 0x02 if clean else 0]) + struct.pack(">H", 30) + vbi(len(props)) + props
    body = vh + mstr(client_id)
    return bytes([0x10]) + vbi(len(body)) + body


def connack_properties(body):
    """The MQTT 5 CONNACK's (reason, {property id: value}) for the few string ones the tests read."""
    reason = body[1]
    props, i = {}, 2
    if i >= len(body):
        return reason, props
    n, mult = 0, 1
    while True:
        b = body[i]
        i += 1
        n += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    end = i + n
    while i < end:
        pid = body[i]
        i += 1
        if pid in (0x1C, 0x1F, 0x12):  # Server Reference, Reason String, Assigned Client Identifier
            ln = struct.unpack(">H", body[i:i + 2])[0]
            props[pid] = body[i + 2:i + 2 + ln].decode()
            i += 2 + ln
        elif pid in (0x21, 0x13, 0x22):  # two-byte integers
            props[pid] = struct.unpack(">H", body[i:i + 2])[0]
            i += 2
        elif pid in (0x27, 0x11):  # four-byte integers
            props[pid] = struct.unpack(">I", body[i:i + 4])[0]
            i += 4
        else:  # one-byte ones (Retain Available, Maximum QoS, ...)
            props[pid] = body[i]
            i += 1
    return reason, props


# --- the tests -----------------------------------------------------------------

def test_any_node_takes_mqtt_clients(cl):
    """A client of the node that does not serve the MQTT stream publishes
    QoS 1 and subscribes; what is published through one node reaches a
    subscriber connected through the other, both ways, in both versions."""
    n1, n2 = cl.nodes
    assert cl.owner() == "n1"
    status = {n["id"]: n for n in cl.status()["nodes"]}
    assert status["n2"]["mqtt_address"] == f"127.0.0.1:{n2.port}", status
    assert status["n1"]["mqtt_address"] == f"127.0.0.1:{n1.port}", status

    via2 = Collector("sub-via-n2")
    flags, rc, _ = via2.connect(n2.port)
    assert rc == 0, f"CONNACK {rc} from the node not serving the MQTT stream"
    assert via2.subscribe("any/#", qos=1) == [1] or via2.subacks[-1][0] == 1
    via1 = Collector("sub-via-n1")
    assert via1.connect(n1.port)[1] == 0
    via1.subscribe("any/#", qos=1)
    # `cluster status` counts each node's MQTT connections (heartbeat): n2
    # holds one relay, n1 the relayed session and its own client.
    deadline = time.time() + 10
    counts = {}
    while time.time() < deadline:
        counts = {n["id"]: n["mqtt_connections"] for n in cl.status()["nodes"]}
        if counts.get("n1") == 2 and counts.get("n2") == 1:
            break
        time.sleep(0.2)
    assert counts == {"n1": 2, "n2": 1}, counts
    pub2 = Collector("pub-via-n2")
    assert pub2.connect(n2.port)[1] == 0
    pub1 = Collector("pub-via-n1")
    assert pub1.connect(n1.port)[1] == 0
    for i, pub in enumerate((pub1, pub2)):
        info = pub.c.publish("any/t", f"m{i}", qos=1)
        info.wait_for_publish(10)
        assert info.is_published(), "no PUBACK"
    for sub in (via1, via2):
        sub.wait(lambda: len(sub.messages) >= 2, "both messages")
        assert sorted(m.payload.decode() for m in sub.messages) == ["m0", "m1"]
    # mosquitto 3.1.1 through the relay: QoS 2 published via n2, read via n2.
    msub = subprocess.Popen(["mosquitto_sub", "-p", str(n2.port), "-V", "311", "-q", "2", "-t", "mos/#", "-C", "1",
                             "-W", "10", "-i", "mos-sub"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.7)
    rc, _, err = base.run(["mosquitto_pub", "-p", str(n2.port), "-V", "311", "-q", "2", "-t", "mos/x", "-m",
                           "via-relay", "-i", "mos-pub"])
    assert rc == 0, err
    out, err = msub.communicate(timeout=15)
    assert msub.returncode == 0 and out.decode().strip() == "via-relay", (msub.returncode, out, err)
    for c in (via1, via2, pub1, pub2):
        c.close()


def test_relay_preamble_rules(cl):
    """A relayed CONNECT reaching a node that does not serve the stream is
    answered 0x9C with the owner's address, never relayed again; a bad
    preamble is closed without a word; --mqtt-redirect answers 0x9C with a
    Server Reference instead of relaying."""
    n1, n2 = cl.nodes
    preamble = b"\xffFLOERELAY\x01" + bytes([len(b"10.1.2.3:4567")]) + b"10.1.2.3:4567"
    s = socket.create_connection(("127.0.0.1", n2.port))
    s.sendall(preamble[:5])  # in pieces
    time.sleep(0.1)
    s.sendall(preamble[5:] + connect_v5("relayed-twice"))
    p = read_packet(s)
    assert p and p[0] == 0x20, p
    reason, props = connack_properties(p[1])
    assert reason == 0x9C and props.get(0x1C) == f"127.0.0.1:{n1.port}", (hex(reason), props)
    assert "10.1.2.3:4567" in props.get(0x1F, ""), props
    # The same through the serving node: an ordinary session.
    s = socket.create_connection(("127.0.0.1", n1.port))
    s.sendall(preamble + connect_v5("relayed-once"))
    p = read_packet(s)
    assert p and p[0] == 0x20 and p[1][1] == 0x00, p
    # A preamble that goes wrong is closed without an answer.
    s = socket.create_connection(("127.0.0.1", n2.port))
    s.sendall(b"\xffFLOEXXXXX\x01\x00" + connect_v5("bad"))
    r = base.closed_within(s, 3)
    assert r is not None and r[1] == [], r
    # Redirect mode.
    n3 = base.Node(data=cl.dir, extra=["--node-id", "n3", "--lease-ms", LEASE_MS, "--mqtt-redirect"])
    cl.nodes.append(n3)
    n3.start()
    s = socket.create_connection(("127.0.0.1", n3.port))
    s.sendall(connect_v5("redirected"))
    p = read_packet(s)
    reason, props = connack_properties(p[1])
    assert reason == 0x9C and props.get(0x1C) == f"127.0.0.1:{n1.port}", (hex(reason), props)
    s = socket.create_connection(("127.0.0.1", n3.port))
    s.sendall(base.connect_packet(client_id="redirected311", version=4))
    assert read_packet(s) == (0x20, b"\x00\x03")


def test_no_owner_is_server_unavailable(cl):
    """Right after the serving node dies nobody serves the stream (or the
    owner cannot be reached): CONNACK 0x88 with a reason, 3.1.1 return
    code 3; once another node took over, the CONNECT is served."""
    n1, n2 = cl.nodes
    n1.kill9()
    s = socket.create_connection(("127.0.0.1", n2.port))
    s.sendall(connect_v5("while-nobody-serves"))
    p = read_packet(s)
    reason, props = connack_properties(p[1])
    assert reason == 0x88 and props.get(0x1F), (hex(reason), props)
    s = socket.create_connection(("127.0.0.1", n2.port))
    s.sendall(base.connect_packet(client_id="nobody311", version=4))
    assert read_packet(s) == (0x20, b"\x00\x03")
    deadline = time.time() + 10
    while time.time() < deadline:
        s = socket.create_connection(("127.0.0.1", n2.port))
        s.sendall(connect_v5("after-takeover"))
        p = read_packet(s)
        if p and p[1][1] == 0:
            break
        time.sleep(0.2)
    assert p and p[1][1] == 0, p


def test_takeover_across_nodes(cl):
    """Client id X through the relaying node, then the same id through the
    serving node: the first connection gets DISCONNECT 0x8E (through the
    relay), the second session present 1 with its subscription and the
    messages the first never acknowledged; then back through the relay."""
    n1, n2 = cl.nodes
    x1 = socket.create_connection(("127.0.0.1", n2.port))
    x1.sendall(connect_v5("X", clean=True, expiry=300))
    p = read_packet(x1)
    assert p and p[0] == 0x20 and p[1][1] == 0, p
    sub = bytes([0x82]) + vbi(2 + 1 + 2 + 4 + 1) + struct.pack(">H", 7) + vbi(0) + mstr("tk/x") + bytes([1])
    x1.sendall(sub)
    p = read_packet(x1)
    assert p and p[0] == 0x90 and p[1][3:] == b"\x01", p
    pub = Collector("tk-pub")
    pub.connect(n1.port)
    for i in range(3):
        info = pub.c.publish("tk/x", f"q{i}", qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
    time.sleep(0.5)  # delivered to x1, which does not answer
    x2 = Roamer("X", [n1.port], reconnect=False, clean_first=False, expiry=300).start()
    x2.wait_connected()
    assert x2.connacks[-1][2] == 1, f"session present {x2.connacks}"
    x2.wait(lambda: len(x2.messages) >= 3, "the unacknowledged messages again")
    assert sorted(x2.payloads()) == ["q0", "q1", "q2"], x2.payloads()
    r = base.closed_within(x1, 5)
    assert r is not None, "the first connection stayed open"
    kinds = [(t, b) for t, b in r[1]]
    assert kinds and kinds[-1][0] == 0xE0 and kinds[-1][1][0] == 0x8E, kinds
    info = pub.c.publish("tk/x", "after", qos=1)
    info.wait_for_publish(10)
    x2.wait(lambda: "after" in x2.payloads(), "a message after the takeover (the subscription came along)")
    # Back through the relaying node: x2 (direct) is taken over in turn.
    x3 = Roamer("X", [n2.port], reconnect=False, clean_first=False, expiry=300).start()
    x3.wait_connected()
    assert x3.connacks[-1][2] == 1
    x2.wait(lambda: any(d[0] == 0x8E for d in x2.disconnects), "DISCONNECT 0x8E")
    info = pub.c.publish("tk/x", "third", qos=1)
    info.wait_for_publish(10)
    x3.wait(lambda: "third" in x3.payloads(), "the message through the relay")
    pub.close()
    x2.stop()
    x3.stop()


def test_drain_moves_mqtt5_clients(cl):
    """`floe node drain` of the serving node: its MQTT 5 client gets
    DISCONNECT 0x9C (a Server Reference only if the bank already named the
    new owner, and then the right one), resumes on any node with session
    present 1, and gets every PUBACKed message, the ones queued while it was
    away included."""
    n1, n2 = cl.nodes
    s = Roamer("drained-sub", [n1.port], topic="dr/#", sub_qos=1).start()
    s.wait(lambda: s.subscribed.is_set(), "SUBACK")
    p = Roamer("drain-pub", [n2.port]).start()  # relayed to n1
    p.wait_connected()
    publish_all(p, "dr/a", [f"before{i}" for i in range(10)], 1)
    s.wait(lambda: len(s.messages) >= 10, "the first ten")
    s.reconnect = False  # it reconnects below, by hand, where it was sent
    r = subprocess.run([FLOE, "node", "drain", "n1", "--bank", cl.bank], capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr
    s.wait(lambda: s.disconnects, "DISCONNECT", timeout=10)
    code, ref = s.disconnects[0]
    assert code == 0x9C, s.disconnects
    # (A drained node gives the lease up after its clients let go of the
    # stream, so the new owner is seldom known yet.)
    assert ref in (None, f"127.0.0.1:{n2.port}"), f"Server Reference {ref!r}"
    cl.wait_owner("n2")
    p.wait_connected(timeout=15)  # the publisher, cut with its relay, is back
    publish_all(p, "dr/a", [f"queued{i}" for i in range(10)], 1)
    s2 = Roamer("drained-sub", [n1.port], clean_first=False).start()  # the drained node relays it
    s2.wait_connected()
    assert s2.connacks[-1][2] == 1, s2.connacks
    want = {f"before{i}" for i in range(10)} | {f"queued{i}" for i in range(10)}
    s2.wait(lambda: want <= set(s.payloads()) | set(s2.payloads()), "every PUBACKed message")
    assert set(s.payloads()) | set(s2.payloads()) <= want
    for c in (s, s2, p):
        c.stop()


def test_lost_lease_disconnect_names_the_new_owner(cl):
    """The serving node paused (SIGSTOP) past its lease: another node takes
    the stream; when the first one runs again its MQTT 5 client gets
    DISCONNECT 0x9C with a Server Reference naming the new owner, and
    resumes there with session present 1."""
    n1, n2 = cl.nodes
    s = Roamer("paused-sub", [n1.port], topic="ll/#", sub_qos=1, reconnect=False).start()
    s.wait(lambda: s.subscribed.is_set(), "SUBACK")
    # One delivery and its answer put the consumer's cursor in the bank. (A
    # consumer that never had one is made anew at the new owner's frontier:
    # what was published meanwhile would be skipped. A gap of the core's,
    # not of the move; see the report of this branch.)
    pub = Roamer("ll-pub", [n1.port]).start()
    pub.wait_connected()
    publish_all(pub, "ll/x", ["before"], 1)
    s.wait(lambda: "before" in s.payloads(), "the first message")
    time.sleep(0.3)  # the answer persisted (lazily, within 100 ms)
    n1.proc.send_signal(signal.SIGSTOP)
    try:
        cl.wait_owner("n2")
    finally:
        n1.proc.send_signal(signal.SIGCONT)
    s.wait(lambda: s.disconnects, "DISCONNECT", timeout=10)
    assert s.disconnects[0] == (0x9C, f"127.0.0.1:{n2.port}"), s.disconnects
    pub.wait_connected(timeout=15)  # through n1, relayed to n2 (0x88 until n2 opened the stream)
    publish_all(pub, "ll/x", ["after"], 1)
    s2 = Roamer("paused-sub", [n2.port], clean_first=False).start()
    s2.wait_connected()
    assert s2.connacks[-1][2] == 1, s2.connacks
    s2.wait(lambda: "after" in s2.payloads(), "the message published after the move")
    pub.stop()
    s.stop()
    s2.stop()


def test_kill_9_of_the_serving_node_three_nodes(cl):
    """Three nodes; QoS 1 and 2 publishers and persistent QoS 1 and 2
    subscribers (Paho, MQTT 5 and 3.1.1) roam round robin; the node serving
    the MQTT stream is SIGKILLed and restarted three times. Every PUBACKed
    (QoS 1) or PUBCOMPed (QoS 2) message reaches every subscriber; nothing
    arrives that was never published; duplicates are counted per QoS."""
    ports = cl.ports()
    v5, v3 = paho.MQTTv5, paho.MQTTv311
    subs = [Roamer("k-sub-q1-v5", ports, v5, topic="k/#", sub_qos=1),
            Roamer("k-sub-q2-v311", ports[1:] + ports[:1], v3, topic="k/#", sub_qos=2)]
    for s in subs:
        s.start()
    for s in subs:
        s.wait(lambda s=s: s.subscribed.is_set(), "SUBACK")
    pubs = [(Roamer("k-pub-q1-v5", ports, v5), 1), (Roamer("k-pub-q1-v311", ports[2:] + ports[:2], v3), 1),
            (Roamer("k-pub-q2-v5", ports[1:] + ports[:1], v5), 2), (Roamer("k-pub-q2-v311", ports, v3), 2)]
    sent = {}  # payload -> (qos, MQTTMessageInfo)
    stop = threading.Event()

    def publisher(r, qos):
        r.start()
        i = 0
        while not stop.is_set():
            payload = f"{r.name}/{i}"
            sent[payload] = (qos, r.c.publish(f"k/{r.name}", payload, qos))
            i += 1
            time.sleep(0.04)

    threads = [threading.Thread(target=publisher, args=pr, daemon=True) for pr in pubs]
    for t in threads:
        t.start()
    kills = []
    for rnd in range(3):
        time.sleep(5)
        victim = cl.owner()
        t0 = time.time()
        cl.node(victim).kill9()
        # Another node takes the stream over; then the victim comes back.
        deadline = time.time() + 15
        while cl.owner() == victim and time.time() < deadline:
            time.sleep(0.05)
        heir = cl.owner()
        assert heir != victim, f"{victim} was killed but still owns the MQTT stream"
        kills.append((victim, heir, round(time.time() - t0, 2)))
        cl.node(victim).start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join()
    # Publishers finish their in-flight messages; subscribers catch up.
    deadline = time.time() + 20
    while time.time() < deadline and not all(acked(i) for _, i in sent.values()):
        time.sleep(0.1)
    acked_payloads = {p: q for p, (q, i) in sent.items() if acked(i)}
    deadline = time.time() + 20
    while time.time() < deadline and not all(set(acked_payloads) <= set(s.payloads()) for s in subs):
        time.sleep(0.1)
    report = [f"kills (victim, new owner, seconds until it owned the stream): {kills}",
              f"published {len(sent)}, acknowledged {len(acked_payloads)} "
              f"(QoS 1 {sum(1 for q in acked_payloads.values() if q == 1)}, QoS 2 {sum(1 for q in acked_payloads.values() if q == 2)})"]
    problems = []
    qos2_dups = 0
    for s in subs:
        got = s.payloads()
        counts = collections.Counter(got)
        missing = sorted(set(acked_payloads) - set(counts))
        unknown = sorted(set(counts) - set(sent))
        delivered_qos = {p: min(sent[p][0], s.sub_qos) for p in counts if p in sent}
        dups = {1: 0, 2: 0}
        for p, n in counts.items():
            if n > 1 and p in delivered_qos:
                dups[delivered_qos[p]] = dups.get(delivered_qos[p], 0) + n - 1
        reconnects = len(s.connacks)
        accepted = [a for a in s.connacks if a[1] == 0]
        lost_session = [a for a in accepted[1:] if a[2] == 0]
        report.append(f"{s.name}: received {len(got)}, distinct {len(counts)}, duplicates QoS 1 {dups[1]}, "
                      f"QoS 2 {dups[2]}; CONNACKs {reconnects} ({sum(1 for a in s.connacks if a[1] != 0)} refused)")
        if missing:
            problems.append(f"{s.name}: {len(missing)} acknowledged messages never arrived, e.g. {missing[:5]}")
        if unknown:
            problems.append(f"{s.name}: {len(unknown)} messages that were never published, e.g. {unknown[:5]}")
        if lost_session:
            problems.append(f"{s.name}: resumed without its session: {lost_session}")
        qos2_dups += dups[2]
    for r in subs + [r for r, _ in pubs]:
        # Any node takes the client: refusals are "Server unavailable" while
        # nobody serves the stream, never "use another server" (MQTT 5 tells
        # them apart; 3.1.1 says return code 3 for both).
        sent_away = [a for a in r.connacks if r.version == paho.MQTTv5 and a[1] == 0x9C]
        if sent_away:
            problems.append(f"{r.name}: CONNACK 0x9C (use another server) {len(sent_away)} times")
    for r, _ in pubs:
        report.append(f"{r.name}: CONNACKs {len(r.connacks)} "
                      f"({sum(1 for a in r.connacks if a[1] != 0)} refused), disconnects {len(r.disconnects)}")
    print("\n".join(report), flush=True)
    for r, _ in pubs:
        r.stop()
    for s in subs:
        s.stop()
    assert len(acked_payloads) > 200, "too little got through to prove anything"
    assert not problems, "\n".join(problems)
    # QoS 2 exactly once across the kills: the inbound packet ids and the
    # outbound QoS 2 state live in the session record (docs/mqtt.md "QoS").
    assert qos2_dups == 0, f"{qos2_dups} QoS 2 messages delivered more than once"


TESTS = {
    "test_any_node_takes_mqtt_clients": 2,
    "test_relay_preamble_rules": 2,
    "test_no_owner_is_server_unavailable": 2,
    "test_takeover_across_nodes": 2,
    "test_drain_moves_mqtt5_clients": 2,
    "test_lost_lease_disconnect_names_the_new_owner": 2,
    "test_kill_9_of_the_serving_node_three_nodes": 3,
}


def main():
    names = sys.argv[2:] or list(TESTS)
    passed = failed = 0
    for name in names:
        cl = Cluster(TESTS[name])
        t0 = time.time()
        try:
            cl.start()
            globals()[name](cl)
            print(f"[ OK ] {name} ({time.time() - t0:.1f} s)", flush=True)
            passed += 1
        except Exception:
            print(f"[FAIL] {name}\n{traceback.format_exc()}", flush=True)
            print(cl.output(), flush=True)
            failed += 1
        finally:
            cl.cleanup()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
