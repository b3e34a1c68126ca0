"""signed_auth: ECDSA P-256 signed datagrams verified in XDP.

Through BPF_PROG_TEST_RUN: valid datagrams come out byte-exact without
their trailer (checked against frames scapy builds from the bare data,
checksums included); every attack is dropped and counted under its reason,
globally and per key; the replay window's edges; the verification budgets
under a flood. Between two namespaces, with real sockets: the receiving
socket gets exactly the signed data, attacks on the wire never reach it,
and legitimate traffic gets through a flood of bogus signatures.

Signatures are checked against pyca/cryptography over a message the test
packs itself from the documented wire format (not with cryptbpf.programs.signed_auth.client)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from scapy.layers.inet import IP, UDP, IPOption_NOP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

from cryptbpf import lifecycle
from cryptbpf.programs.signed_auth import client as signing
from cryptbpf.crypto import p256_keys
from cryptbpf.bpf import pins
from cryptbpf.errors import CryptbpfError
from cryptbpf.bpf.headers import Layout
from cryptbpf.netns import inside, ip
from cryptbpf.bpf.object import BpfObject
from cryptbpf.paths import bpf_object
from cryptbpf.bpf.pins import Pinned
from cryptbpf.programs.signed_auth import control as sa
from cryptbpf.programs.signed_auth import SPEC

from conftest import require_feature, require_root, run_cli, system_snapshot

XDP_DROP, XDP_PASS = 1, 2
PORT = 4242
SRC, DST = ("10.1.0.1", 999), ("10.1.0.2", PORT)
L = Layout("signed_auth")
TRAILER = L.const("SIGNED_AUTH_TRAILER_LEN")
WINDOW = L.const("SIGNED_AUTH_REPLAY_WINDOW")
ALICE, BOB = 7, 8
LENGTHS = [0, 1, 2, 3, 55, 56, 63, 64, 65, 100, 1000, 1401]


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def point(key) -> bytes:
    return p256_keys.public_point(key.public_key())


KEYS = {"alice": new_key(), "bob": new_key(), "mallory": new_key()}


def load(**knobs) -> BpfObject:
    for f in SPEC.requires:
        require_feature(f)
    obj = BpfObject.open(str(bpf_object("signed_auth")))
    for k, v in knobs.items():
        obj.set_global(k, v)
    obj.load()
    sa.set_ports(obj, add=[PORT, PORT + 1])
    return obj


@pytest.fixture(scope="module")
def obj():
    require_root()
    o = load(global_rate=1_000_000, global_burst=1_000_000)
    yield o
    o.close()


@pytest.fixture
def xdp(obj):
    """The module's object with no keys, zero counters and budgets."""
    for name in ("sa_keys", "sa_state", "key_stats", "p256_keys"):
        m = obj.map(name)
        for k in list(m.keys()):
            m.delete(k)
    obj.map("stats").update(0, bytes(obj.map("stats").value_size))
    obj.map("sa_budget").update(0, bytes(obj.map("sa_budget").value_size))
    sa.trust(obj, ALICE, point(KEYS["alice"]), rate=1_000_000, burst=1_000_000)
    return obj


# ---- building datagrams independently of cryptbpf.programs.signed_auth.client ----

def pack_hdr(kid, seq, src, dst, data_len, magic=0x5341, version=1, flags=0) -> bytes:
    """signed_hdr exactly as docs/signed_auth.md describes it, big-endian."""
    return struct.pack(">HBBIQ4s4sHHI", magic, version, flags, kid, seq,
                       socket.inet_aton(src[0]), socket.inet_aton(dst[0]), src[1], dst[1], data_len)


def sign_payload(key, kid, seq, data, src=SRC, dst=DST, magic=0x5341, version=1, flags=0) -> bytes:
    der = key.sign(pack_hdr(kid, seq, src, dst, len(data), magic, version, flags) + data,
                   ec.ECDSA(hashes.SHA256()))
    r, s = utils.decode_dss_signature(der)
    return data + struct.pack(">HBBIQ", magic, version, flags, kid, seq) + \
        r.to_bytes(32, "big") + s.to_bytes(32, "big")


def frame(payload: bytes, src=SRC, dst=DST, vlans=(), **ip_kw) -> bytes:
    l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for v in vlans:
        l2 = l2 / v
    return bytes(l2 / IP(src=src[0], dst=dst[0], id=1234, **ip_kw) / UDP(sport=src[1], dport=dst[1]) / payload)


SEQ = [0]


def fresh_seq() -> int:
    """Sequence numbers as the specification has them: wall-clock ns,
    strictly increasing (a window refuses anything below its replay floor)."""
    SEQ[0] = max(SEQ[0] + 1, time.time_ns())
    return SEQ[0]


def run(o, data: bytes):
    res = o.program("signed_auth_xdp").test_run(data=data)
    return res.retval, res.data


def counters(o) -> dict:
    return SPEC.stats(o)


def key_counters(o, kid) -> dict:
    return {k["id"]: k["counters"] for k in sa.keys(o)}[kid]


def nonzero(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}


# ---- valid datagrams ----

def test_signed_datagrams_pass_byte_exact_without_trailer(xdp):
    for n in LENGTHS:
        data = os.urandom(n)
        ret, out = run(xdp, frame(sign_payload(KEYS["alice"], ALICE, fresh_seq(), data)))
        assert ret == XDP_PASS, n
        # scapy's frame of the bare data: lengths and both checksums recomputed
        assert out == frame(data), n
    assert nonzero(counters(xdp)) == {"verified": len(LENGTHS), "verifications": len(LENGTHS)}
    kc = key_counters(xdp, ALICE)
    assert kc["verified"] == len(LENGTHS) and kc["bad_signature"] == 0


def test_ip_options_padding_and_no_udp_checksum(xdp):
    data = b"odd length payload!"
    opts = dict(options=[IPOption_NOP()] * 4)
    src = ("10.1.0.1", 999)
    ret, out = run(xdp, frame(sign_payload(KEYS["alice"], ALICE, fresh_seq(), data), **opts))
    assert ret == XDP_PASS and out == frame(data, **opts)
    # Ethernet padding after the IP datagram is removed with the trailer
    ret, out = run(xdp, frame(sign_payload(KEYS["alice"], ALICE, fresh_seq(), data)) + bytes(7))
    assert ret == XDP_PASS and out == frame(data)
    # behind VLAN tags (802.1ad outer, 802.1Q inner): the tags stay
    for vlans in ([Dot1Q(vlan=5)], [Dot1AD(vlan=6), Dot1Q(vlan=7)]):
        ret, out = run(xdp, frame(sign_payload(KEYS["alice"], ALICE, fresh_seq(), data), vlans=vlans))
        assert ret == XDP_PASS and out == frame(data, vlans=vlans)
    # UDP checksum 0 ("none", IPv4) stays 0
    f = Ether(frame(sign_payload(KEYS["alice"], ALICE, fresh_seq(), data, src=src)))
    f[UDP].chksum = 0
    ret, out = run(xdp, bytes(f))
    assert ret == XDP_PASS and Ether(out)[UDP].chksum == 0 and bytes(Ether(out)[UDP].payload) == data


def test_signer_output_verifies_with_cryptography_over_documented_message(xdp):
    first = fresh_seq()
    signer = signing.Signer(KEYS["alice"], ALICE, seq=first)
    data = b"from the Python API"
    payload = signer.sign(data, SRC, DST)
    kid, seq = struct.unpack(">4xIQ", payload[-TRAILER:-64])
    assert payload[:-TRAILER] == data and (kid, seq) == (ALICE, first)
    assert payload[-TRAILER:-TRAILER + 4] == b"SA\x01\x00"
    sig = payload[-64:]
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    KEYS["alice"].public_key().verify(der, pack_hdr(ALICE, seq, SRC, DST, len(data)) + data,
                                      ec.ECDSA(hashes.SHA256()))
    ret, out = run(xdp, frame(payload))
    assert ret == XDP_PASS and out == frame(data)


# ---- attacks: dropped, counted under the right reason ----

def _flip(b: bytes, i: int) -> bytes:
    return b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1:]


def attack_frames():
    data = b"transfer 100 to bob"
    good = lambda seq: sign_payload(KEYS["alice"], ALICE, seq, data)
    n = len(data)
    return {
        # name: (function seq -> frame, reason, charged to alice?)
        "wrong_key": (lambda s: frame(sign_payload(KEYS["mallory"], ALICE, s, data)), "bad_signature", True),
        "unknown_id": (lambda s: frame(sign_payload(KEYS["mallory"], 99, s, data)), "unknown_key", False),
        "flip_payload": (lambda s: frame(_flip(good(s), 3)), "bad_signature", True),
        "flip_signature": (lambda s: frame(_flip(good(s), n + 16 + 40)), "bad_signature", True),
        "flip_sequence": (lambda s: frame(_flip(good(s), n + 15)), "bad_signature", True),
        "spoofed_source": (lambda s: frame(good(s), src=("10.1.0.66", SRC[1])), "bad_signature", True),
        "other_source_port": (lambda s: frame(good(s), src=(SRC[0], 1000)), "bad_signature", True),
        "other_destination_port": (lambda s: frame(good(s), dst=(DST[0], PORT + 1)), "bad_signature", True),
        "other_destination": (lambda s: frame(good(s), dst=("10.1.0.3", PORT)), "bad_signature", True),
        "unsigned": (lambda s: frame(b"x" * 200), "no_trailer", False),
        "unsigned_short": (lambda s: frame(b"hello"), "short_payload", False),
        "bad_version": (lambda s: frame(sign_payload(KEYS["alice"], ALICE, s, data, version=2)), "no_trailer", False),
        "bad_flags": (lambda s: frame(sign_payload(KEYS["alice"], ALICE, s, data, flags=1)), "no_trailer", False),
        "bad_magic": (lambda s: frame(sign_payload(KEYS["alice"], ALICE, s, data, magic=0x5342)), "no_trailer", False),
        "udp_length_lies": (lambda s: bytes(Ether() / IP(src=SRC[0], dst=DST[0]) /
                                            UDP(sport=SRC[1], dport=PORT, len=300) / good(s)), "malformed", False),
        "vlan_unsigned": (lambda s: frame(b"x" * 200, vlans=[Dot1Q(vlan=5)]), "no_trailer", False),
        "vlan_spoofed": (lambda s: frame(good(s), src=("10.1.0.66", SRC[1]), vlans=[Dot1Q(vlan=5)]),
                         "bad_signature", True),
        "ipv6": (lambda s: bytes(Ether() / IPv6() / UDP(dport=PORT) / good(s)), "unsupported", False),
        "ipv6_behind_extension_headers": (lambda s: bytes(Ether() / Dot1Q() / IPv6() / IPv6ExtHdrHopByHop() /
                                                          UDP(dport=PORT) / good(s)), "unsupported", False),
        "ipv6_first_fragment": (lambda s: bytes(Ether() / IPv6() / IPv6ExtHdrFragment(m=1) /
                                                UDP(dport=PORT) / good(s)), "fragmented", False),
        "first_fragment": (lambda s: frame(good(s), flags="MF"), "fragmented", False),
    }


@pytest.mark.parametrize("name", list(attack_frames()))
def test_attack_dropped_and_counted(xdp, name):
    make, reason, charged = attack_frames()[name]
    ret, _ = run(xdp, make(fresh_seq()))
    assert ret == XDP_DROP
    assert nonzero(counters(xdp)) == {reason: 1} | ({"verifications": 1} if reason == "bad_signature" else {})
    kc = nonzero(key_counters(xdp, ALICE))
    assert kc == ({reason: 1} | ({"verifications": 1} if reason == "bad_signature" else {}) if charged else {})


def test_replay_of_a_captured_datagram(xdp):
    f = frame(sign_payload(KEYS["alice"], ALICE, fresh_seq(), b"once"))
    assert run(xdp, f)[0] == XDP_PASS
    for _ in range(3):
        assert run(xdp, f)[0] == XDP_DROP
    c = key_counters(xdp, ALICE)
    # refused by the window before spending a verification
    assert (c["verified"], c["replayed"], c["verifications"]) == (1, 3, 1)


def test_replay_window_edges(xdp):
    top = fresh_seq() + 5000
    send = lambda seq: run(xdp, frame(sign_payload(KEYS["alice"], ALICE, seq, b"w")))[0]
    assert send(top) == XDP_PASS
    assert send(top - WINDOW + 1) == XDP_PASS      # oldest still inside the window
    assert send(top - WINDOW) == XDP_DROP          # one below: stale
    assert send(top - 10) == XDP_PASS              # out of order, inside
    assert send(top - 10) == XDP_DROP              # ... once
    assert send(top + 64 * 3 + 5) == XDP_PASS      # window slides
    assert send(top) == XDP_DROP                   # still remembered after the slide
    assert send(top + 5000) == XDP_PASS            # jump beyond the whole bitmap
    assert send(top + 4999) == XDP_PASS            # its bits were cleared
    assert send(top + 64 * 3 + 5) == XDP_DROP      # now stale
    c = key_counters(xdp, ALICE)
    assert (c["verified"], c["stale"], c["replayed"]) == (6, 2, 2)


@pytest.mark.parametrize("cut", range(1, TRAILER + 1))
def test_truncated_trailer(xdp, cut):
    data = b"\x00" * 40
    payload = sign_payload(KEYS["alice"], ALICE, fresh_seq(), data)[:-cut]
    ret, _ = run(xdp, frame(payload))
    assert ret == XDP_DROP
    reason = "short_payload" if len(payload) < TRAILER else "no_trailer"
    assert nonzero(counters(xdp)) == {reason: 1}


def test_unprotected_traffic_untouched(xdp):
    signed = sign_payload(KEYS["alice"], ALICE, fresh_seq(), b"data")
    frames = [frame(b"plain", dst=(DST[0], 53)), frame(signed, dst=(DST[0], 5353)),
              bytes(Ether() / IP(dst=DST[0]) / TCP(dport=PORT) / signed),
              bytes(Ether() / IPv6() / UDP(dport=53) / b"v6"),
              frame(b"x" * 40, frag=100),                         # later fragment: no port
              bytes(Ether() / IPv6() / IPv6ExtHdrFragment(offset=100) / (b"y" * 40)),
              bytes(Ether(type=0x0806) / (b"\x00" * 28))]
    for f in frames:
        ret, out = run(xdp, f)
        assert ret == XDP_PASS and out == f
    assert not nonzero(counters(xdp))


# ---- keys: validation, revocation ----

def test_invalid_keys_refused(xdp):
    bad = bytearray(point(KEYS["bob"]))
    bad[40] ^= 1                                   # off the curve
    with pytest.raises(CryptbpfError, match="not on the P-256 curve"):
        sa.trust(xdp, BOB, bytes(bad))
    with pytest.raises(CryptbpfError, match="65 bytes"):
        sa.trust(xdp, BOB, point(KEYS["bob"])[:33])
    with pytest.raises(CryptbpfError, match="trusted with another key"):
        sa.trust(xdp, ALICE, point(KEYS["bob"]))
    assert [k["id"] for k in sa.keys(xdp)] == [ALICE]


def test_revocation_is_immediate_and_keeps_the_window(xdp):
    sign = lambda seq: frame(sign_payload(KEYS["alice"], ALICE, seq, b"r"))
    old = sign(fresh_seq())
    assert run(xdp, old)[0] == XDP_PASS
    sa.revoke(xdp, ALICE)
    assert xdp.map("p256_keys").lookup(struct.pack("=I", ALICE)) is None
    assert run(xdp, sign(fresh_seq()))[0] == XDP_DROP
    assert key_counters(xdp, ALICE)["revoked"] == 1
    assert {k["id"]: k["state"] for k in sa.keys(xdp)} == {ALICE: "revoked"}
    # trusting the same key again keeps its replay window
    sa.trust(xdp, ALICE, point(KEYS["alice"]), rate=1_000_000, burst=1_000_000)
    assert run(xdp, old)[0] == XDP_DROP
    assert run(xdp, sign(fresh_seq()))[0] == XDP_PASS
    sa.revoke(xdp, ALICE, purge=True)
    assert sa.keys(xdp) == []
    assert run(xdp, sign(fresh_seq()))[0] == XDP_DROP
    assert counters(xdp)["unknown_key"] == 1


# ---- replay across reloads and re-trusts: the replay floor ----

MINUTE = 60 * 10**9


def a_minute_later(monkeypatch):
    """Every wall clock read from here on (receiver's floor and sender's
    Signer alike) is a minute ahead: the reload happens a minute after the
    capture, without waiting for it."""
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() + MINUTE)


def test_signer_sequence_is_max_of_previous_plus_one_and_wall_clock(monkeypatch):
    clock = [10**18]
    monkeypatch.setattr(time, "time_ns", lambda: clock[0])
    s = signing.Signer(KEYS["alice"], ALICE)
    assert (s.next_seq(), s.next_seq()) == (10**18, 10**18 + 1)   # same ns: counts up
    clock[0] += MINUTE                         # idle a minute: follows the clock,
    assert s.next_seq() == 10**18 + MINUTE     # so a receiver's floor never passes it
    clock[0] -= 3600 * 10**9                   # clock stepped back: never goes back
    assert s.next_seq() == 10**18 + MINUTE + 1
    e = signing.Signer(KEYS["alice"], ALICE, seq=5)
    assert (e.next_seq(), e.next_seq()) == (5, clock[0])           # explicit first, as given


@pytest.mark.parametrize("max_skew_s", [None, 120])
def test_captured_datagram_after_unload_and_load(monkeypatch, max_skew_s):
    """Unload + load loses every map; the new window starts at the floor
    (wall clock - max_skew_s): a datagram captured a minute before is stale
    with the default 30 s, and (the documented residual) accepted once when
    the allowance is larger than its age."""
    require_root()
    knobs = {} if max_skew_s is None else {"max_skew_s": max_skew_s}
    signer = signing.Signer(KEYS["alice"], ALICE)
    o = load(**knobs)
    try:
        sa.trust(o, ALICE, point(KEYS["alice"]))
        captured = frame(signer.sign(b"captured", SRC, DST))
        assert run(o, captured)[0] == XDP_PASS
    finally:
        o.close()
    a_minute_later(monkeypatch)
    o = load(**knobs)
    try:
        sa.trust(o, ALICE, point(KEYS["alice"]))
        if max_skew_s is None:
            assert run(o, captured)[0] == XDP_DROP
        else:
            assert run(o, captured)[0] == XDP_PASS
            assert run(o, captured)[0] == XDP_DROP
        assert run(o, frame(signer.sign(b"fresh", SRC, DST)))[0] == XDP_PASS
        c = key_counters(o, ALICE)
        if max_skew_s is None:   # refused before any verification
            assert (c["stale"], c["replayed"], c["verified"], c["verifications"]) == (1, 0, 1, 1)
        else:
            assert (c["stale"], c["replayed"], c["verified"], c["verifications"]) == (0, 1, 2, 2)
    finally:
        o.close()


def test_captured_datagram_refused_after_purge_and_retrust(xdp, monkeypatch):
    signer = signing.Signer(KEYS["alice"], ALICE)
    captured = frame(signer.sign(b"captured", SRC, DST))
    assert run(xdp, captured)[0] == XDP_PASS
    sa.revoke(xdp, ALICE, purge=True)
    a_minute_later(monkeypatch)
    before = time.time_ns()
    sa.trust(xdp, ALICE, point(KEYS["alice"]), rate=1_000_000, burst=1_000_000)
    floor = [(t - 30 * 10**9) | 63 for t in (before, time.time_ns())]
    (k,) = sa.keys(xdp)
    assert floor[0] <= k["highest_seq"] <= floor[1]     # default max_skew_s: 30 s
    assert run(xdp, captured)[0] == XDP_DROP
    assert run(xdp, frame(signer.sign(b"fresh", SRC, DST)))[0] == XDP_PASS
    c = key_counters(xdp, ALICE)
    assert (c["stale"], c["verified"], c["verifications"]) == (1, 1, 1)


def test_retrust_raises_a_kept_window_to_the_floor(xdp, monkeypatch):
    """Re-trusting the same key keeps its window but lifts it to the floor:
    what was signed while the key was revoked (never accepted, captured on
    the way) is stale when the key comes back a minute later."""
    signer = signing.Signer(KEYS["alice"], ALICE)
    assert run(xdp, frame(signer.sign(b"before", SRC, DST)))[0] == XDP_PASS
    sa.revoke(xdp, ALICE)
    while_revoked = frame(signer.sign(b"while revoked", SRC, DST))
    assert run(xdp, while_revoked)[0] == XDP_DROP
    a_minute_later(monkeypatch)
    sa.trust(xdp, ALICE, point(KEYS["alice"]), rate=1_000_000, burst=1_000_000)
    assert run(xdp, while_revoked)[0] == XDP_DROP
    assert run(xdp, frame(signer.sign(b"back", SRC, DST)))[0] == XDP_PASS
    c = key_counters(xdp, ALICE)
    assert (c["revoked"], c["stale"], c["verified"]) == (1, 1, 2)


def test_key_verified_through_ecdsa_map_only(xdp):
    """Deleting only the P-256 table (a revoke racing a packet) refuses."""
    xdp.map("p256_keys").delete(struct.pack("=I", ALICE))
    ret, _ = run(xdp, frame(sign_payload(KEYS["alice"], ALICE, fresh_seq(), b"race")))
    assert ret == XDP_DROP and key_counters(xdp, ALICE)["revoked"] == 1


# ---- verification budget ----

def bogus(kid, seq, data=b"flood", src=SRC, dst=DST) -> bytes:
    """A well-formed trailer with a random signature: passes every cheap check."""
    return frame(data + struct.pack(">HBBIQ", 0x5341, 1, 0, kid, seq) + os.urandom(64), src, dst)


def test_key_budget_bounds_verifications_under_flood(xdp):
    sa.trust(xdp, BOB, point(KEYS["bob"]), rate=1, burst=3)
    t0 = time.monotonic()
    res = xdp.program("signed_auth_xdp").test_run(data=bogus(BOB, fresh_seq()), repeat=2000)
    elapsed = time.monotonic() - t0
    assert res.retval == XDP_DROP
    c = key_counters(xdp, BOB)
    assert 3 <= c["verifications"] <= 3 + int(elapsed) + 1
    assert c["bad_signature"] == c["verifications"]
    assert c["over_key_budget"] == 2000 - c["verifications"]
    # alice's own budget is untouched: her traffic still verifies
    ret, _ = run(xdp, frame(sign_payload(KEYS["alice"], ALICE, fresh_seq(), b"still here")))
    assert ret == XDP_PASS


def test_global_budget_bounds_all_keys_together():
    require_root()
    o = load(global_rate=1, global_burst=5)
    try:
        for kid, name in ((ALICE, "alice"), (BOB, "bob")):
            sa.trust(o, kid, point(KEYS[name]), rate=1_000_000, burst=1_000_000)
        t0 = time.monotonic()
        for kid in (ALICE, BOB):
            o.program("signed_auth_xdp").test_run(data=bogus(kid, fresh_seq()), repeat=500)
        elapsed = time.monotonic() - t0
        c = counters(o)
        assert 5 <= c["verifications"] <= 5 + int(elapsed) + 1
        assert c["over_global_budget"] == 1000 - c["verifications"]
    finally:
        o.close()


# ---- between two namespaces, real sockets ----

class Peers:
    """Sockets for a veth pair: rx (B, protected port), rx_plain (B,
    unprotected port), tx (A, connected to B's protected port)."""

    def __init__(self, pair):
        self.pair = pair
        with inside(pair.ns_b):
            self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.rx.bind((pair.addr_b, PORT))
            self.rx_plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.rx_plain.bind((pair.addr_b, 5353))
        for s in (self.rx, self.rx_plain):
            s.settimeout(3)
        self.tx = self.socket_a()
        self.tx.connect((pair.addr_b, PORT))

    def socket_a(self, addr: str | None = None) -> socket.socket:
        with inside(self.pair.ns_a):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((addr or self.pair.addr_a, 0))
        return s

    def recv(self) -> bytes:
        return self.rx.recv(65535)

    def close(self):
        for s in (self.rx, self.rx_plain, self.tx):
            s.close()


@pytest.fixture
def peers(veth_pair):
    for f in SPEC.requires:
        require_feature(f)
    p = Peers(veth_pair)
    yield p
    p.close()
    if pins.is_loaded(SPEC.name):
        lifecycle.unload(SPEC.name)


def test_between_namespaces_socket_gets_exact_data_and_attacks_never_arrive(peers, tmp_path):
    pair = peers.pair
    before = system_snapshot(pair.ns_b, SPEC.name)
    pem = tmp_path / "alice.pub.pem"
    pem.write_bytes(KEYS["alice"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    lifecycle.load(SPEC, pair.dev_b, netns=pair.ns_b,
                   options={"port": [str(PORT)], "trust": [f"{ALICE}={pem}"]})
    alice = signing.Signer(KEYS["alice"], ALICE)
    mallory = signing.Signer(KEYS["mallory"], ALICE)
    src = peers.tx.getsockname()
    dst = (pair.addr_b, PORT)

    # 1392 = 1500 (MTU) - 20 (IP) - 8 (UDP) - 80 (trailer): the largest unfragmented
    for data in (b"", b"hello, B", os.urandom(1000), os.urandom(1392)):
        alice.send(peers.tx, data)
        assert peers.recv() == data

    captured = alice.sign(b"pay 10", src, dst)
    peers.tx.send(captured)
    assert peers.recv() == b"pay 10"
    ip("addr", "add", f"{pair.addr_a[:-1]}3/24", "dev", pair.dev_a, netns=pair.ns_a)
    spoofer = peers.socket_a(f"{pair.addr_a[:-1]}3")
    attacks = [
        captured,                                         # replay
        _flip(alice.sign(b"pay 10", src, dst), 2),        # payload changed
        mallory.sign(b"pay 10", src, dst),                # wrong key
        b"unsigned datagram to a protected port",
        alice.sign(b"pay 10", src, dst)[:-1],             # truncated trailer
    ]
    for a in attacks:
        peers.tx.send(a)
    alice.send(peers.tx, os.urandom(1393))                # fragmented: refused
    spoofer.sendto(alice.sign(b"pay 10", src, dst), dst)  # signed for A's address
    spoofer.close()
    # datagrams on one veth arrive in order: the next one B's socket gets
    # is the next valid one, so every attack above was dropped
    alice.send(peers.tx, b"after the attacks")
    assert peers.recv() == b"after the attacks"

    with inside(pair.ns_a), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(captured, (pair.addr_b, 5353))           # unprotected port: untouched
    assert peers.rx_plain.recv(65535) == captured

    with Pinned(SPEC.name) as h:
        sa.revoke(h, ALICE)
        alice.send(peers.tx, b"after revocation")
        sa.trust(h, ALICE, point(KEYS["alice"]))
        alice.send(peers.tx, b"trusted again")
        assert peers.recv() == b"trusted again"
        k = {k["id"]: k for k in sa.keys(h)}[ALICE]
    assert nonzero(k["counters"]) == {"verified": 7, "verifications": 10, "replayed": 1,
                                      "bad_signature": 3, "revoked": 1}
    assert k["last_seen"] != "never"
    entry = {e["program"]: e for e in lifecycle.status({SPEC.name: SPEC})}[SPEC.name]
    assert nonzero(entry["stats"]) == {"verified": 7, "verifications": 10, "replayed": 1,
                                       "bad_signature": 3, "revoked": 1, "no_trailer": 1,
                                       "short_payload": 1, "fragmented": 1}
    assert entry["ports"] == [PORT] and {k["id"]: k["state"] for k in entry["keys"]}[ALICE] == "active"
    lifecycle.unload(SPEC.name)
    assert system_snapshot(pair.ns_b, SPEC.name) == before


def test_budget_holds_under_a_flood_and_legitimate_traffic_gets_through(peers):
    pair = peers.pair
    lifecycle.load(SPEC, pair.dev_b, netns=pair.ns_b, knobs={"global_rate": 200, "global_burst": 50},
                   options={"port": [str(PORT)]})
    with Pinned(SPEC.name) as h:
        sa.trust(h, ALICE, point(KEYS["alice"]), rate=20, burst=10)
        sa.trust(h, BOB, point(KEYS["bob"]), rate=20, burst=10)
    bob = signing.Signer(KEYS["bob"], BOB)
    flood, every = 3000, 300
    seq0 = time.time_ns()
    t0 = time.monotonic()
    for i in range(flood):
        # a well-formed trailer under alice's id with a random signature
        peers.tx.send(b"flood" + struct.pack(">HBBIQ", 0x5341, 1, 0, ALICE, seq0 + i) + os.urandom(64))
        if i % every == 0:
            bob.send(peers.tx, b"legit %d" % i)
    got = [peers.recv() for _ in range(flood // every)]
    elapsed = time.monotonic() - t0
    assert got == [b"legit %d" % i for i in range(0, flood, every)]
    with Pinned(SPEC.name) as h:
        ks = {k["id"]: k["counters"] for k in sa.keys(h)}
        total = SPEC.stats(h)
    a = ks[ALICE]
    # alice's bucket: 10 at once, then 20 per second
    assert 10 <= a["verifications"] <= 10 + 20 * elapsed + 1
    assert a["bad_signature"] == a["verifications"]
    assert a["over_key_budget"] == flood - a["verifications"]
    assert ks[BOB]["verified"] == flood // every
    assert total["verifications"] <= 50 + 200 * elapsed + 1


def test_cli_generate_trust_send_status_revoke(peers, tmp_path):
    import sys
    pair = peers.pair
    priv, pub = tmp_path / "alice.pem", tmp_path / "alice.pub.pem"
    out = run_cli("keys", "generate", str(priv), check=True).stdout
    assert (priv.stat().st_mode & 0o777, pub.exists()) == (0o600, True)
    assert "fingerprint" in out and "PRIVATE" not in out
    assert run_cli("keys", "generate", str(priv)).returncode == 1      # never overwritten
    run_cli("load", SPEC.name, pair.dev_b, "--netns", pair.ns_b, "--port", str(PORT), check=True)
    bad = run_cli("signed-auth", "trust", str(priv.parent / "missing.pem"), "--id", "7")
    assert bad.returncode == 1 and bad.stderr.startswith("cryptbpf: ") and "Traceback" not in bad.stderr
    run_cli("signed-auth", "trust", str(pub), "--id", "7", check=True)

    def send(text: str):
        r = subprocess.run(["ip", "netns", "exec", pair.ns_a, sys.executable, "-m", "cryptbpf.cli",
                            "sign", "send", "--key", str(priv), "--id", "7", pair.addr_b, str(PORT), "-"],
                           input=text.encode(), capture_output=True)
        assert r.returncode == 0, r.stderr
    send("hello from the cli")
    assert peers.recv() == b"hello from the cli"
    import json
    import re
    status = run_cli("status", check=True).stdout
    entry = next(e for e in json.loads(run_cli("status", "--json", check=True).stdout)
                 if e["program"] == SPEC.name)
    (key7,) = [k for k in entry["keys"] if k["id"] == 7]
    assert entry["ports"] == [PORT] and key7["state"] == "active" and key7["counters"]["verified"] == 1
    # the text view of the same data: key 7 active, verified 1, port 4242
    assert re.search(r"^ {4}- id: +7\n {6}state: +active\n", status, re.M), status
    assert re.search(r"^ {6}counters:\n {8}verified: +1\n", status, re.M), status
    assert re.search(r"^  ports: +4242$", status, re.M), status
    assert priv.read_text().splitlines()[1] not in status               # no key material
    run_cli("signed-auth", "revoke", "--id", "7", check=True)
    send("after revocation")
    keys = json.loads(run_cli("signed-auth", "keys", "--json", check=True).stdout)
    assert [(k["id"], k["state"], k["counters"]["revoked"]) for k in keys] == [(7, "revoked", 1)]
    run_cli("unload", SPEC.name, check=True)


def test_kfunc_dispatch_registers_only_where_the_kernel_has_it(xdp):
    """trust() hands the key to p256_kfunc_setup too; on a kernel without the
    signature kfuncs that reports -EOPNOTSUPP and the pure-BPF path verifies
    (every other test here); with them, the kernel context is registered."""
    from cryptbpf.bpf import kernel
    has = kernel.has("kfunc_sig_verify_v8") or kernel.has("kfunc_ecdsa_v1")
    assert sa._kfunc_register(xdp, BOB, point(KEYS["bob"])) == has
    assert sa._kfunc_register(xdp, 1000, point(KEYS["bob"])) is False   # beyond p256_kctxs


def test_key_table_full_is_a_clear_error_and_leaves_nothing_behind(xdp):
    slots = xdp.map("sa_keys").max_entries
    for kid in range(100, 100 + slots - 1):                  # alice holds one slot
        sa.trust(xdp, kid, point(KEYS["bob"]))
    sa.revoke(xdp, 100)                                      # a tombstone still holds its slot
    with pytest.raises(CryptbpfError, match="no room for another key"):
        sa.trust(xdp, 999, point(KEYS["bob"]))
    kid = struct.pack("=I", 999)
    assert all(xdp.map(m).lookup_raw(kid) is None for m in ("p256_keys", "sa_state", "key_stats", "sa_keys"))
    sa.revoke(xdp, 100, purge=True)
    sa.trust(xdp, 999, point(KEYS["bob"]))
    ret, _ = run(xdp, frame(sign_payload(KEYS["bob"], 999, fresh_seq(), b"fits now")))
    assert ret == XDP_PASS
