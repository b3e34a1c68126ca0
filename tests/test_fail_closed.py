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
the drops are counted; the same against a macvlan and a VLAN sub-interface
on top of B's device. Legitimate traffic behind tags still passes, and
requests XDP answers itself are answered behind them.

Then the "verified but discarded" shapes of signed-auth: a copy of a signed
datagram the kernel will discard (IPv4 version nibble, header checksum,
IHL, options it refuses, wrong UDP checksum), sent ahead of the genuine one,
must not use up its sequence number. Last, the programs that are not port
guards: crypto-offload (answers only what the kernel would deliver), the
tunnel (cleartext from the peer behind any tags, tagged peer traffic in
both directions) and aes-roundtrip (never passes its port's datagrams in
clear). The attack tests fail against the programs as they were before
the shared classifier (CRYPTBPF_ROOT pointed at a build of that tree: 66
of 86 fail there; what passes is legitimate traffic, answers to ICMP
errors by the programs that pass them, and the copies the old code already
refused or the kernel delivers)."""

from __future__ import annotations

import json
import os
import socket
import struct
import time

import pytest
from scapy.layers.inet import IP, UDP, IPOption_RR
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

from cryptbpf.bpf import attach
from cryptbpf.programs.signed_auth import client as signing
from cryptbpf.crypto import p256_keys
from cryptbpf.netns import inside, ip
from cryptbpf.bpf.object import BpfObject
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


def l2_ip(vlans, ip_packet: bytes, mac=(MAC_A, MAC_B)) -> bytes:
    """An IPv4 packet given as bytes, behind Ethernet and vlans."""
    pkt = l2(vlans, *mac)
    pkt.lastlayer().type = 0x0800
    return bytes(pkt) + ip_packet


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
        from cryptbpf.programs.signed_auth import SPEC, control as signed_auth
        self.spec, self.mod = SPEC, signed_auth
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.signer = signing.Signer(self.key, 7)

    def configure(self, obj):
        self.mod.set_ports(obj, add=[self.port])
        self.mod.trust(obj, 7, p256_keys.public_point(self.key.public_key()),
                       rate=1_000_000, burst=1_000_000)

    def signed(self, data: bytes, src=CLIENT, dst=SERVER, sport=40000) -> bytes:
        return self.signer.sign(data, (src, sport), (dst, self.port))

    def legit(self, obj, vlans=()):
        data = b"signed behind tags"
        return udp4(self.signed(data), self.port, vlans), udp4(data, self.port, vlans)


class AuthorizingGuard(Guard):
    """A program that opens its guarded port to an authorized source:
    legitimate traffic is the client's, after one authorization."""

    def legit(self, obj, vlans=()):
        if not getattr(obj, "authorized_once", False):
            self.authorize(obj)
            obj.authorized_once = True
        f = udp4(b"app data behind tags", self.port, vlans)
        return f, f


class Zkp(AuthorizingGuard):
    name, obj_name, xdp = "zkp-filter", "zkp_filter", "zkp_filter"
    attack_reason = "dropped"
    bad = {"l2": "bad_l4", "hdr": "bad_l4", "len": "bad_l4", "ext": "bad_l4"}
    icmp_reason = "icmp_error"

    def __init__(self):
        import test_zkp_filter as tz
        from cryptbpf.programs.zkp_filter import SPEC, control as zkp_filter
        self.tz, self.spec, self.mod = tz, SPEC, zkp_filter
        self.port, self.ctrl = tz.PROTECTED, tz.CTRL

    def configure(self, obj):
        from cryptbpf.programs.zkp_filter import client as zc
        obj.server_key = os.urandom(32)
        self.mod.install_server_key(obj, obj.server_key)
        self.mod.add_key(obj, self.tz.KEY_ID, zc.derive_verifier(self.tz.SECRET))
        self.mod.protect(obj, self.port)

    def authorize(self, obj, src=CLIENT):
        self.tz.authorize(obj, src)

    def control_request(self, vlans=()) -> bytes:
        from cryptbpf.programs.zkp_filter import client as zc
        return udp4(zc.pack("hello", client_nonce=os.urandom(16)), self.ctrl, vlans)


class Ratelimit(Guard):
    name, obj_name, xdp, port = "crypto-ratelimit", "crypto_ratelimit", "crypto_ratelimit", 5353
    attack_verdicts = (XDP_TX,)          # over budget: turned into a challenge for A
    attack_reason = "challenged"
    bad = {"l2": "bad_l4", "hdr": "bad_l4", "len": "bad_l4", "ext": "bad_l4",
           "opts": "bad_l4", "frag": "bad_l4", "frag6": "ipv6_dropped", "v6": "ipv6_dropped"}

    def __init__(self):
        from cryptbpf.programs.crypto_ratelimit import SPEC, control as crypto_ratelimit
        self.spec, self.mod = SPEC, crypto_ratelimit

    def configure(self, obj):
        self.mod.install_server_key(obj, os.urandom(32))
        # under attack: a source that never solved a puzzle is over budget
        self.mod.configure_limits(obj, rate=1, burst=1, min_difficulty=4, max_difficulty=4,
                                  max_challenges=100_000, under_attack=1)
        self.mod.protect(obj, self.port)

    def control_request(self, vlans=()) -> bytes:
        from cryptbpf.programs.crypto_ratelimit import client as pc
        return udp4(pc.pack("request"), self.port, vlans)

    def legit(self, obj, vlans=()):
        self.mod.configure_limits(obj, rate=1000, burst=1000, under_attack=0)
        f = udp4(b"within budget behind tags", self.port, vlans)
        return f, f


class Pki(AuthorizingGuard):
    name, obj_name, xdp = "pki-validator", "pki_validator", "pki_xdp"
    attack_reason = "denied"
    bad = {"l2": "unparsed", "hdr": "unparsed", "len": "unparsed", "ext": "unparsed"}
    icmp_reason = "icmp_error"
    _certs = None

    def __init__(self):
        from cryptbpf.programs.pki_validator import control as admin, ca
        from cryptbpf.programs.pki_validator import SPEC
        import test_pki_validator as tp
        self.tp, self.admin, self.ca, self.spec = tp, admin, ca, SPEC
        self.port, self.ctrl = tp.APP_PORT, tp.CTRL
        if Pki._certs is None:
            root = ca.issue("fail-closed root", ca=True, path_len=1)
            Pki._certs = (root, ca.issue("fail-closed client", root))
        self.root, self.leaf = Pki._certs

    def configure(self, obj):
        self.spec.setup(obj, None, {"protect": [str(self.port)]})
        self.admin.trust(obj, self.root.cert)

    def stats(self, obj) -> dict:
        return {k: v for k, v in self.admin.stats(obj).items() if v}

    def authorize(self, obj, src=CLIENT):
        self.tp.RunPeer(obj.program(self.xdp), src=src).authenticate([], self.leaf.der, self.leaf.key)

    def control_request(self, vlans=()) -> bytes:
        L = self.tp.L
        p = self.tp.RunPeer(self.obj.program(self.xdp))
        p._nonce = os.urandom(L.const("PKI_NONCE_LEN"))
        pad = bytes(L.const("PKI_HELLO_LEN") - L.const("PKI_MSG_LEN"))
        return udp4(p.msg(L.const("PKI_MSG_HELLO"), body=pad), self.ctrl, vlans)


class ContentVerifier(Guard):
    name, obj_name, xdp = "content-verifier", "content_verifier", "content_verify"
    attack_reason = "mismatch"
    bad = {"l2": "unparsed", "hdr": "malformed", "len": "bad_length", "ext": "unparsed",
           "frag": "fragment", "frag6": "fragment"}

    def __init__(self):
        from cryptbpf.programs.content_verifier import client as cas
        from cryptbpf.programs.content_verifier import SPEC
        import test_content_verifier as tc
        self.tc, self.spec, self.port = tc, SPEC, cas.DEFAULT_PORT

    def attack_payload(self) -> bytes:
        return self.tc.hdr(b"A" * 40) + b"B" * 40          # same length, other content

    def legit(self, obj, vlans=()):
        content = os.urandom(300)
        f = udp4(self.tc.hdr(content) + content, self.port, vlans)
        return f, f


GUARDS = {g.name: g for g in (SignedAuth, Zkp, Ratelimit, Pki, ContentVerifier)}


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
        want = guard.attack_verdicts if n <= MAX_TAGS else (XDP_DROP,)
        assert res.retval in want, (n, res.retval)
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


def _l2_len(frame: bytes) -> int:
    off = 14
    while frame[off - 2:off] in (b"\x81\x00", b"\x88\xa8"):
        off += 4
    return off


# only the programs that answer in XDP: the others have nothing to show here
ANSWERING = [n for n, g in GUARDS.items() if hasattr(g, "control_request")]
# only the programs that authorize remote ends (and so drop ICMP errors)
AUTHORIZING = [n for n, g in GUARDS.items() if getattr(g, "icmp_reason", None)]


@pytest.mark.parametrize("guard", ANSWERING, indirect=True)
@pytest.mark.parametrize("n", [1, 3, MAX_TAGS])
def test_control_requests_are_answered_behind_tags(guard, n):
    """The exchanges that XDP answers itself (challenge requests) work
    behind any tags the classifier walks, and the reply carries the
    request's tags back: a client on a VLAN sub-interface gets it."""
    req = guard.control_request(tags(n, vid=7, outer_ad=True))
    res = run(guard, req)
    assert res.retval == XDP_TX, guard.stats(guard.obj)
    l2n = _l2_len(req)
    assert _l2_len(res.data) == l2n
    assert res.data[:6] == req[6:12] and res.data[6:12] == req[:6]     # MACs swapped
    assert res.data[12:l2n] == req[12:l2n]                               # tags kept
    ip_out = IP(res.data[l2n:])
    assert (ip_out.src, ip_out.dst) == (SERVER, CLIENT)
    fresh = IP(bytes(ip_out))
    del fresh.chksum, fresh[UDP].chksum
    fresh = IP(bytes(fresh))
    assert (fresh.chksum, fresh[UDP].chksum) == (ip_out.chksum, ip_out[UDP].chksum)


def icmp_error(quoted_sport: int, quoted_dst: str = CLIENT, vlans=(), v6: bool = False) -> bytes:
    """Destination unreachable (port) from a router, quoting a datagram our
    host sent from quoted_sport to quoted_dst."""
    from scapy.layers.inet import ICMP
    from scapy.layers.inet6 import ICMPv6DestUnreach
    if v6:
        quoted = IPv6(src="fd00::2", dst="fd00::1") / UDP(sport=quoted_sport, dport=40000) / (b"q" * 8)
        return bytes(l2(vlans) / IPv6(src="fd00::fe", dst="fd00::2") / ICMPv6DestUnreach(code=4) / quoted)
    quoted = IP(src=SERVER, dst=quoted_dst) / UDP(sport=quoted_sport, dport=40000) / (b"q" * 8)
    return bytes(l2(vlans) / IP(src="10.9.0.254", dst=SERVER) / ICMP(type=3, code=3) / quoted)


def test_icmp_errors_about_guarded_flows(guard):
    """An ICMP error reaches the socket of the flow it quotes. Programs
    that authorize remote ends drop errors about a protected port's flow
    with an unauthorized one (forged: no such flow was let in) and pass
    those about authorized flows (a router's "fragmentation needed");
    the others pass ICMP errors (they carry no data)."""
    reason = getattr(guard, "icmp_reason", None)
    before = guard.stats(guard.obj)
    unrelated = icmp_error(SENTINEL_PORT, vlans=tags(2))
    assert run(guard, unrelated).retval == XDP_PASS
    verdicts = [run(guard, icmp_error(guard.port, vlans=v)).retval for v in ((), tags(3))]
    v6 = run(guard, icmp_error(guard.port, v6=True)).retval
    moved = {k: v - before.get(k, 0) for k, v in guard.stats(guard.obj).items() if v != before.get(k, 0)}
    if reason is None:
        assert verdicts == [XDP_PASS, XDP_PASS] and v6 == XDP_PASS and not moved
        return
    assert verdicts == [XDP_DROP, XDP_DROP] and v6 == XDP_DROP and moved == {reason: 3}
    guard.authorize(guard.obj)
    assert run(guard, icmp_error(guard.port, vlans=tags(3))).retval == XDP_PASS
    assert run(guard, icmp_error(guard.port, quoted_dst="10.9.0.77")).retval == XDP_DROP


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
                                               UDP(dport=g.port) / g.attack_payload()),
                                         "frag6" if "frag6" in g.bad else "frag")
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
    """The issue's attack: from A, the datagram the program must stop,
    behind 0-9 VLAN tags (id 0: Linux strips them all and delivers to B's
    own stack; id 5; an 802.1ad outer tag). B's socket gets none of them."""
    g, w = wired, wired.wire
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


@pytest.mark.parametrize("guard", AUTHORIZING, indirect=True)
def test_icmp_error_about_a_protected_flow_never_reaches_its_socket(wired):
    """On the wire: B's protected port has a connected UDP socket to A; an
    ICMP "port unreachable" quoting B's datagram to A reaches it
    (ECONNREFUSED) unless A is authorized: programs that authorize remote
    ends drop it. A control error about an unguarded port's flow shows the
    kernel does hand such errors to the socket."""
    g, w = wired, wired.wire
    from scapy.layers.inet import ICMP
    pair = w.pair

    def connected(port: int) -> socket.socket:
        s = w.listen(port)
        s.connect((pair.addr_a, 40000))
        return s

    def error_for(port: int) -> bytes:
        quoted = IP(src=pair.addr_b, dst=pair.addr_a) / UDP(sport=port, dport=40000) / (b"q" * 8)
        return bytes(l2((), *w.mac) / IP(src=pair.addr_a, dst=pair.addr_b) / ICMP(type=3, code=3) / quoted)

    guarded, control = connected(g.port), connected(SENTINEL_PORT + 2)
    before = g.stats(g.obj)
    for frame in (error_for(g.port), l2_ip(tags(3), error_for(g.port)[14:], w.mac), error_for(SENTINEL_PORT + 2)):
        w.send(frame)
    w.settle()
    control.settimeout(1)
    with pytest.raises(ConnectionRefusedError):
        control.recv(100)
    assert nothing_waiting(guarded), "the ICMP error reached the protected port's socket"
    after = g.stats(g.obj)
    assert after.get(g.icmp_reason, 0) - before.get(g.icmp_reason, 0) == 2


UPPERS = {
    # kind: (ip link arguments, VLAN id of the outer tag or None, third octet offset)
    "macvlan": (["type", "macvlan", "mode", "bridge"], None),
    "vlan-5": (["type", "vlan", "id", "5"], 5),
}


@pytest.mark.parametrize("upper", list(UPPERS))
def test_devices_on_top_are_protected_through_the_parent_hook(wired, upper):
    """A VLAN sub-interface or a macvlan on B's device has its own IP stack,
    but its frames cross the parent's XDP hook (tagged, or to another MAC):
    the program applies its policy there too. A control frame with three
    VLAN id 0 tags to an unguarded port shows the upper's stack does get
    such frames."""
    g, w = wired, wired.wire
    pair = w.pair
    args, vid = UPPERS[upper]
    dev = "up" + pair.dev_b[-6:]
    net = "10.215." + pair.addr_b.split(".")[2]
    ip("link", "add", "link", pair.dev_b, "name", dev, *args, netns=pair.ns_b, check=False)
    if dev not in ip("link", "show", netns=pair.ns_b):
        pytest.skip(f"this kernel has no {upper} devices (e.g. CONFIG_VLAN_8021Q off)")
    ip("addr", "add", f"{net}.2/24", "dev", dev, netns=pair.ns_b)
    ip("link", "set", dev, "up", netns=pair.ns_b)
    mac = (w.mac[0], mac_of(pair.ns_b, dev))
    outer = [Dot1Q(vlan=vid)] if vid is not None else []
    src, dst = f"{net}.1", f"{net}.2"
    rx = w.listen(g.port, dst)
    control = w.listen(SENTINEL_PORT + 1, dst)
    w.settle()
    before = g.stats(g.obj)
    sent = 0
    for n in range(MAX_TAGS + 2 - len(outer)):
        w.send(udp4(g.attack_payload(), g.port, outer + tags(n), src, dst, mac=mac))
        sent += 1
    w.send(udp4(b"control", SENTINEL_PORT + 1, outer + tags(3), src, dst, mac=mac))
    w.settle()
    control.settimeout(2)
    assert control.recv(100) == b"control", f"the {upper}'s stack does not get tagged frames"
    assert nothing_waiting(rx), f"an attack frame reached the socket on the {upper}"
    after = g.stats(g.obj)
    moved = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert moved.get(g.attack_reason, 0) == sent - 1 and moved.get(g.bad["l2"], 0) == 1, moved


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


# ---------------------------------------------------------------- crypto-offload

@pytest.fixture
def offload():
    """crypto-offload guards no port: it answers requests in XDP or leaves
    them to the stack (and its daemon). What it cannot classify goes to the
    stack untouched; it never answers a request the kernel would drop."""
    require_root()
    from cryptbpf.programs.crypto_offload import control
    from cryptbpf.programs.crypto_offload import SPEC
    for f in SPEC.requires:
        require_feature(f)
    obj = BpfObject.open(str(bpf_object(SPEC.object))).load()
    control.setup(obj)
    yield obj
    obj.close()


def _offload_request(vlans=(), **ip_kw) -> bytes:
    from cryptbpf.programs.crypto_offload import wire as P
    return udp4(P.request("sha256", b"behind tags" * 10, req_id=77), P.DEFAULT_PORT, vlans, **ip_kw)


@pytest.mark.parametrize("kind", list(TAG_KINDS))
def test_offload_answers_behind_tags_and_leaves_the_rest_to_the_stack(offload, kind):
    import hashlib
    from cryptbpf.programs.crypto_offload import wire as P
    for n in range(MAX_TAGS + 2):
        req = _offload_request(tags(n, **TAG_KINDS[kind]))
        res = offload.program("offload_xdp").test_run(data=req)
        if n > MAX_TAGS:
            assert res.retval == XDP_PASS and res.data == req, n      # not classified: the stack's
            continue
        assert res.retval == XDP_TX, n
        l2n = _l2_len(req)
        assert res.data[12:l2n] == req[12:l2n]                         # tags kept
        ip_out = IP(res.data[l2n:])
        rep = P.parse_reply(bytes(ip_out[UDP].payload))
        assert rep.result == hashlib.sha256(b"behind tags" * 10).digest()


def test_offload_never_answers_what_the_kernel_drops(offload):
    """A request whose IPv4 header the kernel would drop was answered (and
    its cost counted) before the shared classifier: now it goes to the
    stack untouched, which drops it."""
    req = _offload_request()
    for name, f in {"version-nibble": refix_ip(req, 14, vihl=0x55),
                    "ihl-4": refix_ip(req, 14, vihl=0x44),
                    "ip-checksum": req[:24] + bytes([req[24] ^ 0xff]) + req[25:],
                    "ten-tags": _offload_request(tags(MAX_TAGS + 2))}.items():
        res = offload.program("offload_xdp").test_run(data=f)
        assert res.retval == XDP_PASS and res.data == f, name


# ---------------------------------------------------------------- encrypted-tunnel

TC_OK, TC_SHOT, TC_UNSPEC = 0, 2, -1   # TC_ACT_UNSPEC: not ours, the next filter runs


@pytest.fixture
def tun():
    """The tunnel object as host A (test_encrypted_tunnel.A) with peer B,
    chacha20-poly1305."""
    require_root()
    import test_encrypted_tunnel as tt
    from cryptbpf.programs.encrypted_tunnel import control, wire
    tt.require_suite(wire.CHACHA)
    obj = BpfObject.open(str(bpf_object("encrypted_tunnel"))).load()
    obj.secret, obj.suite = os.urandom(32), wire.CHACHA
    control.add_peer(obj, tt.B, tt.A, obj.secret, wire.CHACHA)
    obj.tt, obj.control = tt, control
    yield obj
    obj.close()


def _tun_stats(obj) -> dict:
    """Drops in the peer's row and the no-peer row, together."""
    c = obj.control
    peer, none = c.peer_stats(obj, 0), c.peer_stats(obj, c.NO_PEER_ROW)
    return {k: peer[k] + none[k] for k in peer if peer[k] + none[k]}


@pytest.mark.parametrize("kind", list(TAG_KINDS))
def test_tunnel_cleartext_from_the_peer_behind_any_tags_is_dropped(tun, kind):
    """XDP and TC ingress both: the peer's address is found behind every tag
    the kernel would strip; a 10th tag hides it and is dropped as well."""
    tt = tun.tt
    for n in range(MAX_TAGS + 2):
        clear = bytes(l2(tags(n, **TAG_KINDS[kind])) / IP(src=tt.B, dst=tt.A) /
                      UDP(sport=1, dport=2) / b"cleartext from the peer")
        assert tun.program("tunnel_xdp").test_run(data=clear).retval == XDP_DROP, n
        assert tun.program("tunnel_ingress").test_run(data=clear).retval == TC_SHOT, n
    st = _tun_stats(tun)
    assert st == {"xdp_clear_from_peer": MAX_TAGS + 1, "clear_from_peer": MAX_TAGS + 1,
                  "xdp_unparsed": 1, "unparsed": 1}, st


def test_tunnel_sealed_packets_are_opened_only_as_tc_sees_them_untagged(tun):
    """TC opens an IPv4 header at a fixed offset: what reaches it untagged
    (no tag, or one VLAN id 0 tag, which the kernel moves out of the frame
    before TC). XDP passes exactly those, and drops (counts) the rest."""
    tt = tun.tt
    inner = bytes(IP(src=tt.B, dst=tt.A) / UDP(sport=1, dport=2) / b"sealed")
    sealed = tt.py_seal(tun, inner, 5)
    xdp = tun.program("tunnel_xdp")
    assert xdp.test_run(data=l2_ip((), sealed)).retval == XDP_PASS
    assert xdp.test_run(data=l2_ip(tags(1), sealed)).retval == XDP_PASS
    for vlans in (tags(1, vid=5), tags(2), tags(2, outer_ad=True), tags(MAX_TAGS)):
        assert xdp.test_run(data=l2_ip(vlans, sealed)).retval == XDP_DROP, len(vlans)
        # TC never sees VLAN id 0 tags in the frame on a real device; here
        # it does (BPF_PROG_TEST_RUN), and they are refused as well
        assert tun.program("tunnel_ingress").test_run(data=l2_ip(vlans, sealed)).retval == TC_SHOT
    assert _tun_stats(tun) == {"xdp_tagged": 4, "tagged": 4}
    r = tun.program("tunnel_ingress").test_run(data=l2_ip((), sealed))
    assert r.retval == TC_OK and r.data[14:] == inner


def test_tunnel_egress_never_sends_a_peers_traffic_in_clear_behind_tags(tun):
    """A frame to the peer with its tags still in the frame (a VLAN device
    without reorder_hdr on top of the tunnel device, or raw AF_PACKET)
    cannot be sealed at the fixed offset: dropped and counted, never passed
    (before, skb->protocol 0x8100 made it pass in clear)."""
    from cryptbpf.programs.encrypted_tunnel import wire
    tt = tun.tt
    egress = tun.program("tunnel_egress")
    for kind in TAG_KINDS.values():
        for n in range(MAX_TAGS + 2):
            f = bytes(l2(tags(n, **kind)) / IP(src=tt.A, dst=tt.B) / UDP(sport=1, dport=2) / b"secret")
            r = egress.test_run(data=f)
            if n == 0:
                assert r.retval == TC_OK and r.data[14 + 9] == wire.IPPROTO
            else:
                assert r.retval == TC_SHOT, n
            other = bytes(l2(tags(n, **kind)) / IP(src=tt.A, dst=tt.OTHER) / UDP() / b"not a peer")
            r = egress.test_run(data=other)
            assert r.retval == (TC_SHOT if n > MAX_TAGS else TC_UNSPEC) and (n > MAX_TAGS or r.data == other)
    st = _tun_stats(tun)
    assert (st["tagged"], st["unparsed"]) == (3 * MAX_TAGS, 2 * 3)


@pytest.fixture
def tunnel_b(veth_pair):
    """encrypted-tunnel on B only, with peer A (what A sends is crafted by
    the test, sealed with the Python peer where it should be)."""
    from cryptbpf import lifecycle
    from cryptbpf.bpf import pins
    from cryptbpf.programs.encrypted_tunnel import SPEC
    from cryptbpf.programs.encrypted_tunnel import control, wire
    for f in SPEC.requires + control.SUITE_REQUIRES[wire.CHACHA]:
        require_feature(f)
    secret = os.urandom(32)
    lifecycle.load(SPEC, veth_pair.dev_b, key=secret, netns=veth_pair.ns_b, xdp_mode="skb",
                   options={"peer": [veth_pair.addr_a], "suite": ["chacha20-poly1305"]})
    w = Wire(veth_pair)
    w.secret = secret
    try:
        yield w
    finally:
        w.close()
        if pins.is_loaded(SPEC.name):
            lifecycle.unload(SPEC.name)


def _b_view_of_a(w) -> dict:
    from cryptbpf.bpf import pins
    from cryptbpf.programs.encrypted_tunnel import control
    with pins.Pinned("encrypted-tunnel") as h:
        peer = control.peer_stats(h, control.get_peer(h, w.pair.addr_a).index)
        none = control.peer_stats(h, control.NO_PEER_ROW)
    return {k: peer[k] + none[k] for k in peer if peer[k] + none[k]}


def test_tunnel_on_the_wire_cleartext_from_the_peer_never_arrives(tunnel_b):
    w = tunnel_b
    pair = w.pair
    stranger = pair.addr_a.rsplit(".", 1)[0] + ".3"     # not a peer: its datagrams pass
    rx = w.listen(4242)
    w.settle(src=stranger)
    sent = 0
    for kind in TAG_KINDS.values():
        for n in range(MAX_TAGS + 2):
            w.send(w.udp(b"cleartext from the peer", 4242, tags(n, **kind)))
            sent += 1
    w.settle(src=stranger)
    assert nothing_waiting(rx), "cleartext from the peer reached the socket"
    st = _b_view_of_a(w)
    assert st.get("xdp_clear_from_peer") == sent - 3 and st.get("xdp_unparsed") == 3, st


def test_tunnel_on_the_wire_sealed_packets_behind_a_priority_tag(tunnel_b):
    """The Python peer seals for B; behind one VLAN id 0 tag (a sender on a
    network that adds 802.1p priority tags) the packet is opened and
    delivered, behind two it is dropped and counted, never opened."""
    from cryptbpf.programs.encrypted_tunnel import wire
    w = tunnel_b
    pair = w.pair
    keys = wire.derive(w.secret, wire.CHACHA, 0, pair.addr_a, pair.addr_b)
    rx = w.listen(4243)
    stranger = pair.addr_a.rsplit(".", 1)[0] + ".3"
    w.settle(src=stranger)

    def sealed(payload: bytes, counter: int) -> bytes:
        inner = bytes(IP(src=pair.addr_a, dst=pair.addr_b) / UDP(sport=999, dport=4243) / payload)
        while True:
            try:
                return wire.seal(inner, keys, counter)
            except wire.TunnelError:       # csum_fix impossible for this counter
                counter += 1

    for n, payload in ((0, b"untagged"), (1, b"one priority tag"), (2, b"two tags")):
        w.send(l2_ip(tags(n), sealed(payload, 10 + 10 * n), w.mac))
    w.settle(src=stranger)
    rx.settimeout(1)
    got = [rx.recv(100), rx.recv(100)]
    assert got == [b"untagged", b"one priority tag"]
    assert nothing_waiting(rx)
    st = _b_view_of_a(w)
    assert st.get("rx_packets") == 2 and st.get("xdp_tagged") == 1, st


def test_tunnel_on_the_wire_tagged_frame_to_the_peer_never_leaves_in_clear(tunnel_b):
    """From B (the tunnel host), a raw frame to the peer with a VLAN tag in
    the frame goes through TC egress: dropped and counted; nothing of it is
    seen on A's side. An untagged raw frame to the peer is sealed."""
    from cryptbpf.programs.encrypted_tunnel import traffic, wire
    w = tunnel_b
    pair = w.pair
    marker = b"CRYPTBPF-FAIL-CLOSED-" + os.urandom(4).hex().encode()
    with inside(pair.ns_b):
        raw_b = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)   # through the qdisc layer
    raw_b.bind((pair.dev_b, 0))
    mac_a, mac_b = w.mac
    with raw_b, traffic.Capture(pair.ns_a, pair.dev_a) as cap:
        for vlans in (tags(1), tags(1, vid=5), tags(3), tags(2, outer_ad=True), ()):
            try:
                raw_b.send(bytes(l2(vlans, src=mac_b, dst=mac_a) /
                                 IP(src=pair.addr_b, dst=pair.addr_a) / UDP(sport=7, dport=7) / marker))
            except OSError:      # ENOBUFS: TC egress dropped it
                pass
        time.sleep(0.3)
    assert not any(marker in f for _, f in cap.frames), "the peer's traffic left in clear"
    sealed = [f for _, f in cap.frames if f[12:14] == b"\x08\x00" and f[23] == wire.IPPROTO]
    assert len(sealed) == 1
    from cryptbpf.bpf import pins
    from cryptbpf.programs.encrypted_tunnel import control
    with pins.Pinned("encrypted-tunnel") as h:
        st = control.peer_stats(h, control.get_peer(h, pair.addr_a).index)
    assert (st["tagged"], st["tx_packets"]) == (4, 1)


# ---------------------------------------------------------------- aes-roundtrip

@pytest.mark.parametrize("kind", list(TAG_KINDS))
def test_aes_roundtrip_never_passes_a_datagram_to_its_port_in_clear(kind):
    """aes-roundtrip encrypts UDP payloads to its port at TC egress. A
    datagram with tags left in the frame (a VLAN device on top) used to
    pass in clear; now it is transformed behind them, and what cannot be
    transformed in place is dropped and counted."""
    require_root()
    from cryptbpf.crypto.aes_cbc import install_aes_key
    from cryptbpf.programs.aes_roundtrip import SPEC
    for f in SPEC.requires:
        require_feature(f)
    obj = BpfObject.open(str(bpf_object("aes_roundtrip"))).load()
    try:
        install_aes_key(obj, "aes_setup", os.urandom(32))
        plain = os.urandom(16) + b"a secret behind tags"
        enc, dec = obj.program("aes_encrypt"), obj.program("aes_decrypt")
        for n in range(MAX_TAGS + 2):
            f = udp4(plain, 4242, tags(n, **TAG_KINDS[kind]))
            r = enc.test_run(data=f)
            if n > MAX_TAGS:
                assert r.retval == TC_SHOT
                continue
            assert r.retval == TC_OK and plain[16:] not in r.data, n
            back = dec.test_run(data=r.data)
            assert back.retval == TC_OK and back.data.endswith(plain[16:]), n
        for name, f in {"ipv6": bytes(l2() / IPv6() / UDP(dport=4242) / plain),
                        "first-fragment": udp4(plain, 4242, flags="MF"),
                        "short-udp-length": bytes(l2() / IP(src=CLIENT, dst=SERVER) /
                                                  UDP(dport=4242, len=8 + len(plain) - 1) / plain)}.items():
            assert enc.test_run(data=f).retval == TC_SHOT, name
        st = {k: v for k, v in SPEC.stats(obj).items() if v}
        assert st == {"encrypted": MAX_TAGS + 1, "decrypted": MAX_TAGS + 1, "unsupported": 4}, st
    finally:
        obj.close()
