"""Fail closed: a frame a program cannot classify with certainty never
reaches what it guards, and every drop is counted under a reason.

Linux strips every 802.1Q/802.1ad tag with VLAN id 0 and hands the packet
to the device's own IP stack (a tag with another id goes to that VLAN's
sub-interface); IPv4 options, IPv6 extension headers and fragments hide the
port in other ways. Each program guards its port through the one shared
classifier (bpf/include/frame_classify.bpf.h), which walks up to
FRAME_MAX_TAGS tags of any id and refuses what lies beyond.

The matrix, per program: the datagram the program must stop (no signature,
no proof, no certificate, a content id that does not match, over budget,
cleartext from the tunnel peer) with 0..FRAME_MAX_TAGS + 1 tags of VLAN id
0 and of another id, behind an 802.1ad outer tag, and in the other shapes
(IPv4 header the kernel drops, unknown options, IPv6 extension chains,
fragments, ICMP errors), through BPF_PROG_TEST_RUN and sent on the wire from
namespace A with an AF_PACKET socket: nothing reaches the socket on B, and
the drops are counted. Legitimate traffic behind tags still passes.

Then the "verified but discarded" shapes of signed-auth: a copy of a signed
datagram the kernel will discard (IPv4 version nibble, header checksum,
IHL, options it refuses, wrong UDP checksum), sent ahead of the genuine one,
must not use up its sequence number."""

from __future__ import annotations

import json
import os
import socket
import struct
import time

import pytest
from scapy.layers.inet import IP, UDP, IPOption_NOP, IPOption_RR
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

from cryptbpf import attach, signing
from cryptbpf.netns import inside, ip
from cryptbpf.object import BpfObject
from cryptbpf.paths import bpf_object

from conftest import require_feature, require_root

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX = 0, 1, 2, 3
MAX_TAGS = 8                      # FRAME_MAX_TAGS
CLIENT, SERVER = "10.9.0.1", "10.9.0.2"
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"
SENTINEL_PORT = 5999              # unguarded by every program


# ---------------------------------------------------------------- frames

def tags(n: int, vid: int = 0, outer_ad: bool = False) -> list:
    """n VLAN tags (802.1Q), the outermost 802.1ad when outer_ad."""
    out = [Dot1Q(vlan=vid) for _ in range(n)]
    if outer_ad and n:
        out[0] = Dot1AD(vlan=vid)
    return out


def l2(vlans=(), src=MAC_A, dst=MAC_B):
    pkt = Ether(src=src, dst=dst)
    for v in vlans:
        pkt = pkt / v
    return pkt


def udp4(payload: bytes, dport: int, vlans=(), src=CLIENT, dst=SERVER, sport=40000,
         mac=(MAC_A, MAC_B), **ip_kw) -> bytes:
    return bytes(l2(vlans, *mac) / IP(src=src, dst=dst, **ip_kw) /
                 UDP(sport=sport, dport=dport) / payload)


def refix_ip(frame: bytes, l3: int, **changes) -> bytes:
    """Change IPv4 header bytes at l3 (version, ihl as a raw first byte
    `vihl`, ...) and recompute the header checksum over IHL * 4 bytes
    (at least 20), so that only the change itself is wrong."""
    b = bytearray(frame)
    if "vihl" in changes:
        b[l3] = changes["vihl"]
    hlen = max(20, (b[l3] & 0xf) * 4)
    b[l3 + 10:l3 + 12] = b"\0\0"
    s = sum(struct.unpack(f"!{hlen // 2}H", bytes(b[l3:l3 + hlen])))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    b[l3 + 10:l3 + 12] = struct.pack("!H", ~s & 0xffff)
    return bytes(b)


def counters(spec, handle) -> dict:
    return {k: v for k, v in spec.stats(handle).items() if v}


# ---------------------------------------------------------------- programs

class Guard:
    """What the matrix needs to know about one program."""
    name = ""              # program (ProgramSpec) name
    obj_name = ""          # bpf/<obj_name>.bpf.c
    xdp = ""               # its XDP program
    port = 0               # guarded UDP port
    attack_verdicts = (XDP_DROP,)   # what the attack may become (never PASS)
    attack_reason = ""     # counter of the attack behind readable tags
    bad = {}               # FRAME_BAD_* kind -> counter
    ext_limit = 4          # IPv6 extension headers walked

    def load(self) -> BpfObject:
        for f in self.spec.requires:
            require_feature(f)
        obj = BpfObject.open(str(bpf_object(self.obj_name))).load()
        self.configure(obj)
        return obj

    def configure(self, obj):
        pass

    def attack(self, vlans=(), src=CLIENT, dst=SERVER, **ip_kw) -> bytes:
        return udp4(self.attack_payload(), self.port, vlans, src, dst, **ip_kw)

    def attack_payload(self) -> bytes:
        return b"x" * 200

    def legit(self, obj, vlans=()) -> tuple[bytes, bytes] | None:
        """(frame, what XDP must pass on) for traffic that must get
        through, or None when the program has none to show here."""
        return None

    def stats(self, obj) -> dict:
        return {k: v for k, v in self.spec.stats(obj).items() if v}


class SignedAuth(Guard):
    name, obj_name, xdp, port = "signed-auth", "signed_auth", "signed_auth_xdp", 4242
    attack_reason = "no_trailer"
    bad = {"l2": "unparsed", "hdr": "malformed", "len": "malformed", "ext": "unparsed",
           "opts": "ip_options", "frag": "fragmented", "v6": "unsupported"}

    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptbpf.programs import signed_auth
        self.spec, self.mod = signed_auth.SPEC, signed_auth
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.signer = signing.Signer(self.key, 7)

    def configure(self, obj):
        self.mod.set_ports(obj, add=[self.port])
        self.mod.trust(obj, 7, signing.public_point(self.key.public_key()),
                       rate=1_000_000, burst=1_000_000)

    def signed(self, data: bytes, src=CLIENT, dst=SERVER, sport=40000) -> bytes:
        return self.signer.sign(data, (src, sport), (dst, self.port))

    def legit(self, obj, vlans=()):
        data = b"signed behind tags"
        return udp4(self.signed(data), self.port, vlans), udp4(data, self.port, vlans)


GUARDS = {g.name: g for g in (SignedAuth,)}


@pytest.fixture(params=list(GUARDS))
def guard(request):
    require_root()
    g = GUARDS[request.param]()
    obj = g.load()
    g.obj = obj
    yield g
    obj.close()


def run(g, frame: bytes):
    return g.obj.program(g.xdp).test_run(data=frame)


# ---------------------------------------------------------------- BPF_PROG_TEST_RUN

TAG_KINDS = {"vid0": dict(vid=0), "vid5": dict(vid=5), "802.1ad-outer": dict(vid=0, outer_ad=True)}


@pytest.mark.parametrize("kind", list(TAG_KINDS))
def test_attack_behind_any_number_of_tags_is_stopped(guard, kind):
    """0..FRAME_MAX_TAGS tags: the program sees through them and stops the
    attack for its own reason; one tag more: dropped as unparsed."""
    for n in range(MAX_TAGS + 2):
        res = run(guard, guard.attack(tags(n, **TAG_KINDS[kind])))
        assert res.retval in guard.attack_verdicts, (n, res.retval)
    st = guard.stats(guard.obj)
    assert st.get(guard.attack_reason, 0) == MAX_TAGS + 1, st
    assert st.get(guard.bad["l2"], 0) == 1, st


@pytest.mark.parametrize("kind", list(TAG_KINDS))
def test_legit_traffic_passes_behind_tags(guard, kind):
    for n in (1, 2, MAX_TAGS):
        case = guard.legit(guard.obj, tags(n, **TAG_KINDS[kind]))
        if case is None:
            pytest.skip(f"{guard.name}: no legitimate traffic to show through test runs")
        frame, out = case
        res = run(guard, frame)
        assert res.retval == XDP_PASS and res.data == out, n


def ip_shapes(g) -> dict:
    """name: (frame, counter it must move). Each is the program's attack
    (or its legitimate datagram, where the attack would be refused anyway)
    in a shape the kernel drops or the parser cannot see through."""
    a = g.attack()
    shapes = {
        "version-nibble-5": (refix_ip(a, 14, vihl=0x55), "hdr"),
        "version-nibble-6": (refix_ip(a, 14, vihl=0x65), "hdr"),
        "ihl-4": (refix_ip(a, 14, vihl=0x44), "hdr"),
        "bad-ip-checksum": (a[:24] + bytes([a[24] ^ 0xff]) + a[25:], "hdr"),
        "total-length-beyond-frame": (refix_ip(a[:16] + struct.pack("!H", len(a) - 14 + 1) + a[18:], 14), "len"),
        "truncated-ip-header": (a[:14 + 19], "hdr"),
        "truncated-udp-header": (udp4(b"", g.port)[:14 + 20 + 5], "hdr"),
        "udp-length-beyond-ip": (bytes(l2() / IP(src=CLIENT, dst=SERVER) /
                                       UDP(dport=g.port, len=300) / g.attack_payload()), "len"),
        "ipv6-extension-chain": (bytes(l2() / IPv6() /
                                       IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() /
                                       IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() /
                                       IPv6ExtHdrDestOpt() / UDP(dport=g.port) / g.attack_payload()), "ext"),
    }
    if "opts" in g.bad:
        shapes["ip-option-rr"] = (g.attack(options=[IPOption_RR(routers=["10.0.0.1"])]), "opts")
        shapes["ip-option-lsrr-raw"] = (g.attack(options=b"\x83\x07\x04\x0a\x00\x00\x01\x00"), "opts")
    if "frag" in g.bad:
        shapes["first-fragment"] = (g.attack(flags="MF"), "frag")
        shapes["ipv6-first-fragment"] = (bytes(l2() / IPv6() / IPv6ExtHdrFragment(m=1) /
                                               UDP(dport=g.port) / g.attack_payload()), "frag")
    return shapes


def test_ip_shapes_the_kernel_drops_or_the_parser_cannot_see_through(guard):
    for name, (frame, kind) in ip_shapes(guard).items():
        before = guard.stats(guard.obj)
        res = run(guard, frame)
        assert res.retval == XDP_DROP, name
        after = guard.stats(guard.obj)
        moved = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        assert moved == {guard.bad[kind]: 1}, (name, moved)


# ---------------------------------------------------------------- on the wire

def mac_of(ns: str, dev: str) -> str:
    return json.loads(ip("-j", "link", "show", "dev", dev, netns=ns))[0]["address"]


class Wire:
    """Raw frames from A (AF_PACKET on its veth) to B; sockets on B."""

    def __init__(self, pair):
        self.pair = pair
        self.mac = (mac_of(pair.ns_a, pair.dev_a), mac_of(pair.ns_b, pair.dev_b))
        with inside(pair.ns_a):
            self.raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        self.raw.bind((pair.dev_a, 0))
        self.socks = []

    def listen(self, port: int, addr: str | None = None) -> socket.socket:
        with inside(self.pair.ns_b):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr or self.pair.addr_b, port))
        self.socks.append(s)
        return s

    def send(self, frame: bytes):
        self.raw.send(frame)

    def udp(self, payload: bytes, dport: int, vlans=(), src=None, dst=None, **ip_kw) -> bytes:
        return udp4(payload, dport, vlans, src or self.pair.addr_a, dst or self.pair.addr_b,
                    mac=self.mac, **ip_kw)

    def settle(self, src: str | None = None):
        """Send an untagged datagram to the sentinel port and wait for it:
        frames on one veth are handled in order, so everything sent before
        it has been delivered or dropped by now."""
        s = self.listen(SENTINEL_PORT) if not hasattr(self, "_sentinel") else self._sentinel
        self._sentinel = s
        s.settimeout(3)
        token = os.urandom(8)
        self.send(self.udp(token, SENTINEL_PORT, src=src))
        while s.recv(100) != token:
            pass

    def close(self):
        for s in self.socks + [self.raw]:
            s.close()


def nothing_waiting(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        s.recv(65535)
    except BlockingIOError:
        return True
    finally:
        s.setblocking(True)
    return False


@pytest.fixture
def wired(veth_pair, guard):
    """guard's program (the test-run object, configured) on B's veth,
    generic XDP; a Wire from A."""
    with inside(veth_pair.ns_b):
        prog = guard.obj.program(guard.xdp)
        att = attach.xdp_attach(prog.fd, prog.id, attach.ifindex(veth_pair.dev_b), "skb")
    w = Wire(veth_pair)
    guard.wire = w
    try:
        yield guard
    finally:
        w.close()
        with inside(veth_pair.ns_b):
            attach.xdp_detach(att)


def test_on_the_wire_nothing_reaches_the_socket(wired):
    g, w = wired, wired.wire
    pair = w.pair
    rx = w.listen(g.port)
    w.settle()
    before = g.stats(g.obj)
    sent = 0
    for kind in TAG_KINDS.values():
        for n in range(MAX_TAGS + 2):
            w.send(w.udp(g.attack_payload(), g.port, tags(n, **kind)))
            sent += 1
    w.settle()
    assert nothing_waiting(rx), "an attack frame reached the protected socket"
    after = g.stats(g.obj)
    moved = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert moved.get(g.bad["l2"], 0) == len(TAG_KINDS), moved
    assert moved.get(g.attack_reason, 0) == sent - len(TAG_KINDS), moved
    del pair


# ---------------------------------------------------------------- verified, then discarded

def _udp_checksum_wrong(frame: bytes) -> bytes:
    b = bytearray(frame)
    b[14 + 20 + 6] ^= 0x5a          # non-zero either way: the kernel checks it
    return bytes(b)


def _total_length_short(frame: bytes) -> bytes:
    tot = struct.unpack("!H", frame[16:18])[0]
    return refix_ip(frame[:16] + struct.pack("!H", tot - 1) + frame[18:], 14)


COPIES = {
    # what the kernel does with the copy: drop it (bad version, header
    # checksum, IHL, a source route option, a wrong UDP checksum, a UDP
    # length beyond the trimmed IP payload), or deliver it (RR option)
    "version-0x55": lambda f: refix_ip(f, 14, vihl=0x55),
    "version-0x65": lambda f: refix_ip(f, 14, vihl=0x65),
    "version-0xf5": lambda f: refix_ip(f, 14, vihl=0xF5),
    "version-0x05": lambda f: refix_ip(f, 14, vihl=0x05),
    "ihl-4": lambda f: refix_ip(f, 14, vihl=0x44),
    "ip-header-checksum": lambda f: f[:24] + bytes([f[24] ^ 0x01]) + f[25:],
    "total-length-short": _total_length_short,
    "udp-checksum": _udp_checksum_wrong,
}



OPTION_COPIES = {
    "option-lsrr": b"\x83\x07\x04\x0a\x00\x00\x01\x00",      # loose source route: refused
    "option-rr": [IPOption_RR(routers=["0.0.0.0"])],           # record route: delivered
}



@pytest.mark.parametrize("copy", list(COPIES) + list(OPTION_COPIES))
def test_signed_auth_copy_the_kernel_discards_does_not_use_up_the_sequence(veth_pair, copy):
    """A copy of a signed datagram, changed where the signature does not
    reach, sent ahead of the genuine one: the receiving socket gets the
    data exactly once. Before the fix the copy was verified (its sequence
    number accepted) and then discarded by the kernel, and the genuine
    datagram was dropped as a replay: the data never arrived."""
    require_root()
    g = SignedAuth()
    g.obj = g.load()
    with inside(veth_pair.ns_b):
        prog = g.obj.program(g.xdp)
        att = attach.xdp_attach(prog.fd, prog.id, attach.ifindex(veth_pair.dev_b), "skb")
    w = Wire(veth_pair)
    try:
        rx = w.listen(g.port)
        data = b"pay 10 to bob " + copy.encode()
        genuine = w.udp(g.signed(data, veth_pair.addr_a, veth_pair.addr_b), g.port)
        if copy in COPIES:
            forged = COPIES[copy](genuine)
        else:
            # same signature and sequence, IP options added in front of UDP
            forged = w.udp(genuine[14 + 20 + 8:], g.port, options=OPTION_COPIES[copy])
        w.send(forged)
        w.send(genuine)
        w.settle()
        got = []
        rx.setblocking(False)
        try:
            while True:
                got.append(rx.recv(65535))
        except BlockingIOError:
            pass
        assert got == [data], (copy, g.stats(g.obj))
    finally:
        w.close()
        with inside(veth_pair.ns_b):
            attach.xdp_detach(att)
        g.obj.close()
