"""wireguard data plane between two namespaces joined by veth, real
sockets on both ends, keys installed directly (static keypairs: the
handshake is the daemon's). Adversarial traffic is injected on the wire
(AF_PACKET on the sender's underlay): replays, bit flips, truncations,
reflections, stale indices, inner sources outside AllowedIPs -- each
dropped and counted, nothing delivered twice or in clear."""

from __future__ import annotations

import ipaddress
import os
import select
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from cryptbpf import netns
from cryptbpf.bpf import pins
from cryptbpf.netns import VethPair
from cryptbpf.programs.wireguard import bpf_dataplane as bdp, wire

from conftest import require_feature, system_snapshot

MARKER = b"cryptbpf-wg-marker-7f3a"
APP_PORT = 7000
PORT_A, PORT_B = 51820, 51821
IDX_A, IDX_B = 0x0A0A0A0A, 0x0B0B0B0B       # each side's local index
K_AB, K_BA = os.urandom(32), os.urandom(32)  # A -> B, B -> A
INNER = {4: ("10.99.0.1", "10.99.0.2"), 6: ("fd99::1", "fd99::2")}
OUTER6 = ("fd00:99::1", "fd00:99::2")
PEER_OF_A, PEER_OF_B = 1, 2                   # A's id for B, B's id for A


class Pair:
    """A (wg0 in ns_a) <-> B (wg0 in ns_b), static keypairs."""

    def __init__(self, outer: int):
        tag = f"wgn{os.getpid() % 100000}"
        self.veth = VethPair(tag, subnet=f"10.218.{os.getpid() % 250}").create()
        v = self.veth
        self.outer = (v.addr_a, v.addr_b)
        if outer == 6:
            for ns, dev, a in ((v.ns_a, v.dev_a, OUTER6[0]), (v.ns_b, v.dev_b, OUTER6[1])):
                netns.ip("addr", "add", f"{a}/64", "dev", dev, "nodad", netns=ns)
            self.outer = OUTER6
        self.a = self.b = None
        self.a = bdp.BpfDataPlane("wg0", PORT_A, [v.dev_a], addresses=["10.99.0.1/24", "fd99::1/64"],
                                      ns=v.ns_a)
        self.b = bdp.BpfDataPlane("wg0", PORT_B, [v.dev_b], addresses=["10.99.0.2/24", "fd99::2/64"],
                                      ns=v.ns_b)
        self.a.set_peer(PEER_OF_A, b"b" * 32, (self.outer[1], PORT_B),
                        [ipaddress.ip_network("10.99.0.2/32"), ipaddress.ip_network("fd99::2/128")])
        self.b.set_peer(PEER_OF_B, b"a" * 32, (self.outer[0], PORT_A),
                        [ipaddress.ip_network("10.99.0.1/32"), ipaddress.ip_network("fd99::1/128")])
        self.a.install_keypair(PEER_OF_A, IDX_A, IDX_B, K_AB, K_BA, initiator=True)
        self.b.install_keypair(PEER_OF_B, IDX_B, IDX_A, K_BA, K_AB, initiator=False)

    def close(self):
        for dp in (self.a, self.b):
            if dp:
                dp.close()
        self.veth.close()


@pytest.fixture(params=[4, 6], ids=["outer4", "outer6"])
def pair(request, root):
    require_feature("bpf_loop")
    p = Pair(request.param)
    try:
        yield p
    finally:
        p.close()


@contextmanager
def udp(ns: str, family: int, addr: str | None = None, port: int = 0):
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        if addr:
            s.bind((addr, port))
        s.settimeout(0.5)
        yield s
    finally:
        s.close()


@contextmanager
def wire_tap(ns: str, dev: str):
    """Every frame on `dev` (AF_PACKET, before TC ingress)."""
    with netns.inside(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((dev, 0))
    s.settimeout(0.2)
    try:
        yield s
    finally:
        s.close()


def drain(tap) -> list[bytes]:
    out = []
    try:
        while True:
            out.append(tap.recv(65535))
    except socket.timeout:
        return out


def messages(frames: list[bytes], dport: int) -> list[bytes]:
    """The type-4 frames to `dport` among captured frames."""
    out = []
    for f in frames:
        e = Ether(f)
        if UDP in e and e[UDP].dport == dport and bytes(e[UDP].payload)[:1] == b"\x04":
            out.append(f)
    return out


def recv_all(s) -> list[bytes]:
    got = []
    try:
        while True:
            got.append(s.recv(65535))
    except socket.timeout:
        return got


def inject(p: Pair, frame: bytes, from_a: bool = True):
    ns, dev = (p.veth.ns_a, p.veth.dev_a) if from_a else (p.veth.ns_b, p.veth.dev_b)
    with netns.inside(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((dev, 0))
        s.send(frame)
    finally:
        s.close()


def with_payload(frame: bytes, message: bytes) -> bytes:
    """`frame` (a captured message) carrying `message` instead."""
    e = Ether(frame)
    sport, dport = e[UDP].sport, e[UDP].dport
    ip = e.payload
    ip.remove_payload()
    if IP in e:
        del ip.len, ip.chksum
    else:
        del ip.plen
    return bytes(Ether(src=e.src, dst=e.dst) / ip / UDP(sport=sport, dport=dport) / message)


@pytest.mark.parametrize("inner", [4, 6])
def test_traffic_both_ways_and_the_wire_never_shows_the_payload(pair, inner):
    a_addr, b_addr = INNER[inner]
    with udp(pair.veth.ns_b, inner, b_addr, APP_PORT) as srv, udp(pair.veth.ns_a, inner) as cli, \
            wire_tap(pair.veth.ns_b, pair.veth.dev_b) as tap:
        sizes = (0, 1, 100, 1000, 1300)
        for n in sizes:
            cli.sendto(MARKER + bytes(n), (b_addr, APP_PORT))
            try:
                data, src = srv.recvfrom(65535)
            except socket.timeout:
                pytest.fail(f"{n}: {pair.a.stats(PEER_OF_A)} {pair.b.stats(PEER_OF_B)} {pair.b.stats(256)}")
            assert data == MARKER + bytes(n) and src[0] == a_addr
            srv.sendto(b"re:" + data, src)
            assert cli.recv(65535) == b"re:" + data
        frames = drain(tap)
    assert all(MARKER not in f for f in frames)
    assert len(messages(frames, PORT_B)) == len(sizes)
    for f in messages(frames, PORT_B):          # each one WireGuard's message, under K_AB
        msg = bytes(Ether(f)[UDP].payload)
        assert wire.open_message(K_AB, msg).plaintext.find(MARKER) >= 0
        if Ether(f).type == 0x86DD:               # the IPv6 UDP checksum is right
            e = Ether(f)
            chk = e[UDP].chksum
            del e[UDP].chksum
            assert Ether(bytes(e))[UDP].chksum == chk
    sa, sb = pair.a.stats(PEER_OF_A), pair.b.stats(PEER_OF_B)
    assert sa["tx_packets"] == sb["rx_packets"] == len(sizes)
    assert sb["tx_packets"] == sa["rx_packets"] == len(sizes)
    # the responder's keypair was promoted by A's first message
    assert pair.b.peer_state(PEER_OF_B).current_index == IDX_B


def test_replays_bit_flips_truncations_are_dropped_and_nothing_arrives_twice(pair):
    a_addr, b_addr = INNER[4]
    with udp(pair.veth.ns_b, 4, b_addr, APP_PORT) as srv, udp(pair.veth.ns_a, 4) as cli, \
            wire_tap(pair.veth.ns_b, pair.veth.dev_b) as tap:
        for i in range(3):
            cli.sendto(MARKER + bytes([i]), (b_addr, APP_PORT))
        assert sorted(recv_all(srv)) == [MARKER + bytes([i]) for i in range(3)]
        captured = messages(drain(tap), PORT_B)
        assert len(captured) == 3
        base = pair.b.stats(PEER_OF_B)
        for f in captured:                                  # replayed
            inject(pair, f)
        msg = bytes(Ether(captured[0])[UDP].payload)
        flips = 0
        for i in range(0, len(msg), 3):                     # bit flips, header to tag
            bad = bytearray(msg)
            bad[i] ^= 0x10
            inject(pair, with_payload(captured[0], bytes(bad)))
            flips += 1
        for n in (0, 15, 16, 31, 32, len(msg) - 1):         # truncated
            inject(pair, with_payload(captured[0], msg[:n]))
        time.sleep(0.2)
        assert recv_all(srv) == []                           # nothing delivered twice
    st, nope = pair.b.stats(PEER_OF_B), pair.b.stats(bdp.NO_PEER_ROW)
    assert st["rx_packets"] == base["rx_packets"] == 3
    # every injected frame dropped, each on one counter: a replay of an
    # accepted counter is refused before any cryptography (also when its
    # other bytes were changed), the rest fail the tag or the header checks
    dropped = st["replayed"] + st["auth_failed"] + nope["malformed"] + nope["unknown_key"]
    assert dropped == 3 + flips + 6
    assert st["replayed"] >= 3 and st["auth_failed"] >= 1 and nope["unknown_key"] >= 1


def test_reflected_stale_and_foreign_messages_are_dropped(pair):
    a_addr, b_addr = INNER[4]
    with udp(pair.veth.ns_b, 4, b_addr, APP_PORT) as srv, udp(pair.veth.ns_a, 4) as cli, \
            udp(pair.veth.ns_a, 4, a_addr, APP_PORT) as srv_a, \
            wire_tap(pair.veth.ns_b, pair.veth.dev_b) as tap:
        cli.sendto(MARKER, (b_addr, APP_PORT))
        assert srv.recv(100) == MARKER
        f = messages(drain(tap), PORT_B)[0]
        e = Ether(f)
        # reflected back to A, as if from B: A has no keypair with B's index
        ip = (IP(src=e[IP].dst, dst=e[IP].src) if IP in e else IPv6(src=e[IPv6].dst, dst=e[IPv6].src))
        back = bytes(Ether(src=e.dst, dst=e.src) / ip / UDP(sport=PORT_B, dport=PORT_A) / e[UDP].payload)
        inject(pair, back, from_a=False)
        assert pair.a.stats(bdp.NO_PEER_ROW)["unknown_key"] == 1
        # sealed with the right key but a source outside A's AllowedIPs at B
        for n, src in enumerate(("10.99.0.77", "10.99.0.2")):
            inner = bytes(IP(src=src, dst=b_addr) / UDP(sport=9, dport=APP_PORT) / MARKER)
            inject(pair, with_payload(f, wire.seal(K_AB, IDX_B, 1000 + n, inner)))
        assert pair.b.stats(PEER_OF_B)["not_allowed"] == 2
        # a stale index: the keypair expired at B
        pair.b.expire_keypair(IDX_B)
        inner = bytes(IP(src=a_addr, dst=b_addr) / UDP(sport=9, dport=APP_PORT) / MARKER)
        inject(pair, with_payload(f, wire.seal(K_AB, IDX_B, 2000, inner)))
        time.sleep(0.2)
        assert recv_all(srv) == [] and recv_all(srv_a) == []
    assert pair.b.stats(bdp.NO_PEER_ROW)["unknown_key"] == 1


def test_without_a_keypair_nothing_leaves_and_the_daemon_is_told(pair):
    pair.a.expire_keypair(IDX_A)
    _, b_addr = INNER[4]
    with udp(pair.veth.ns_a, 4) as cli, wire_tap(pair.veth.ns_b, pair.veth.dev_b) as tap:
        for _ in range(5):
            cli.sendto(MARKER, (b_addr, APP_PORT))
        r, _, _ = select.select([pair.a], [], [], 2)
        assert r, "no NeedHandshake event"
        frames = drain(tap)
    assert [e.peer_id for e in pair.a.events()] == [PEER_OF_A]
    assert all(MARKER not in f for f in frames) and messages(frames, PORT_B) == []
    st = pair.a.stats(PEER_OF_A)
    assert st["no_key"] == 5 and st["events"] == 1


def test_keepalive_through_the_daemons_socket_is_counted_not_delivered(pair):
    ka = pair.a.keepalive(PEER_OF_A)
    assert wire.open_message(K_AB, ka).plaintext == b""
    fam = 4 if ":" not in pair.outer[1] else 6
    with udp(pair.veth.ns_a, fam, pair.outer[0], PORT_A) as daemon_sock:
        daemon_sock.sendto(ka, (pair.outer[1], PORT_B))
        time.sleep(0.2)
    st = pair.b.stats(PEER_OF_B)
    assert st["keepalive_rx"] == 1 and st["last_rx_ns"] > 0 and st["last_data_rx_ns"] == 0
    assert pair.a.peer_state(PEER_OF_A).send_counter == 1


def test_close_restores_everything(root):
    require_feature("bpf_loop")
    with VethPair(f"wgc{os.getpid() % 100000}", subnet="10.217.0") as v:
        before = (system_snapshot(v.ns_a), netns.ip("route", netns=v.ns_a), netns.ip("link", netns=v.ns_a))
        dp = bdp.BpfDataPlane("wg0", PORT_A, [v.dev_a], addresses=["10.99.0.1/24"], ns=v.ns_a)
        dp.set_peer(1, b"x" * 32, (v.addr_b, PORT_B), [ipaddress.ip_network("10.98.0.0/16")])
        assert "10.98.0.0/16 dev wg0" in netns.ip("route", netns=v.ns_a)
        assert pins.is_loaded(dp.instance)
        dp.close()
        assert (system_snapshot(v.ns_a), netns.ip("route", netns=v.ns_a),
                netns.ip("link", netns=v.ns_a)) == before
        assert not pins.is_loaded(dp.instance)


CRASHER = """
import os, sys, ipaddress
from cryptbpf.programs.wireguard import bpf_dataplane as bdp
dp = bdp.BpfDataPlane("wg0", 51820, [sys.argv[2]], addresses=["10.99.0.1/24"], ns=sys.argv[1])
dp.set_peer(1, b"x" * 32, None, [ipaddress.ip_network("10.98.0.0/16")])
print("up", flush=True)
os.kill(os.getpid(), 9)
"""


def test_cleanup_after_a_crash(root):
    require_feature("bpf_loop")
    with VethPair(f"wgk{os.getpid() % 100000}", subnet="10.216.0") as v:
        before = (system_snapshot(v.ns_a), netns.ip("link", netns=v.ns_a))
        res = subprocess.run([sys.executable, "-c", CRASHER, v.ns_a, v.dev_a], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == -signal.SIGKILL and "up" in res.stdout, res.stderr
        inst = bdp.instance_name("wg0", v.ns_a)
        assert pins.is_loaded(inst) and "wg0" in netns.ip("link", netns=v.ns_a)
        bdp.cleanup("wg0", v.ns_a)
        assert (system_snapshot(v.ns_a), netns.ip("link", netns=v.ns_a)) == before
        assert not pins.is_loaded(inst)


def test_open_dataplane_as_the_daemon_calls_it(root):
    """dataplane.open_dataplane(cfg, port) inside the namespace: wg0 with
    the config's address and MTU, wg_open on every underlay device (not on
    wg0 or its pair end, nor on another interface's), cleanup() after."""
    require_feature("bpf_loop")
    from types import SimpleNamespace
    from cryptbpf.programs.wireguard import dataplane
    with VethPair(f"wgo{os.getpid() % 100000}", subnet="10.215.9") as v:
        cfg = SimpleNamespace(name="wg0", mtu=1380, addresses=[ipaddress.ip_interface("10.99.0.1/24")])
        with netns.inside(v.ns_a):
            dp = dataplane.open_dataplane(cfg, PORT_A)
            try:
                dp2 = dataplane.open_dataplane(SimpleNamespace(name="wg1", mtu=1420, addresses=[]), PORT_B)
                second = sorted(d["device"] for d in pins.read_state(dp2.instance)["devices"].values())
                dp2.close()
                assert second == sorted([v.dev_a, "wg1-p"])     # not wg0 nor wg0-p
                devices = sorted(d["device"] for d in pins.read_state(dp.instance)["devices"].values())
                assert devices == sorted([v.dev_a, "wg0-p"])
                assert "mtu 1380" in netns.ip("link", "show", "wg0")
                assert "10.99.0.1/24" in netns.ip("addr", "show", "wg0")
            finally:
                dp.close()
            assert dataplane.cleanup("wg0") is False          # nothing left
            assert "wg0" not in netns.ip("link")
