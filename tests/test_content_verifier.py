"""content_verifier: XDP verdicts against hashlib through BPF_PROG_TEST_RUN,
then real transfers between two network namespaces: honest files byte-exact,
tampering in flight and crafted datagrams dropped, counted by reason, and
never seen by the receiving socket."""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether

from cryptbpf.bpf import attach
from cryptbpf.programs.content_verifier import client as cas
from cryptbpf import lifecycle
from cryptbpf.netns import inside, ip
from cryptbpf.bpf.object import BpfObject
from cryptbpf.bpf.pins import Pinned
from cryptbpf.programs.content_verifier import control as cv
from cryptbpf.programs.content_verifier import SPEC

from conftest import TEST_OBJ_DIR, require_feature, run_cli

XDP_DROP, XDP_PASS = 1, 2
PORT = cas.DEFAULT_PORT
CHUNK = cas.chunk_size_for_mtu(1500)   # 1412 content bytes per datagram
SIZES = [0, 1, 55, 56, 63, 64, 65, 119, 120, 512, 1400, CHUNK]
REASONS = ["mismatch", "bad_length", "truncated", "bad_header", "not_allowed",
           "fragment", "malformed", "unparsed", "errors"]


def requires():
    for f in SPEC.requires:
        require_feature(f)


@pytest.fixture
def prog(load_object):
    requires()
    obj = load_object("content_verifier")
    prog = obj.program("content_verify")
    prog.obj = obj
    return prog


def hdr(content: bytes, **over) -> bytes:
    fields = dict(magic=0xCA5C, version=1, type=cas.DATA, flags=0, reserved=0,
                  length=len(content), id=hashlib.sha256(content).digest())
    fields.update(over)
    return cas.HDR.pack(**fields)


def frame(payload: bytes, dport: int = PORT, ip_kw=None, udp_kw=None, l2=None) -> bytes:
    l2 = l2 if l2 is not None else Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return bytes(l2 / IP(src="10.1.0.1", dst="10.1.0.2", **(ip_kw or {})) /
                 UDP(sport=40000, dport=dport, **(udp_kw or {})) / payload)


def valid(content: bytes, **kw) -> bytes:
    return frame(hdr(content) + content, **kw)


def stats(obj) -> dict:
    return SPEC.stats(obj)


def drops(st: dict) -> int:
    return sum(st[r] for r in REASONS)


def verdict(prog, data: bytes) -> int:
    res = prog.test_run(data=data)
    if res.retval == XDP_PASS:
        assert res.data == data   # the program never rewrites a packet
    return res.retval


# ---------------------------------------------------------------- BPF_PROG_TEST_RUN

def test_valid_content_passes(prog):
    total = 0
    for n in SIZES + [3000]:   # 3000: larger than one MTU (jumbo frames)
        content = os.urandom(n)
        assert verdict(prog, valid(content)) == XDP_PASS, n
        total += n
    st = stats(prog.obj)
    assert st["passed"] == len(SIZES) + 1 and st["bytes_verified"] == total
    assert drops(st) == 0


def test_verdicts_agree_with_hashlib(prog):
    """Random contents with the right id or a random one: the program passes
    exactly those whose content hashes (hashlib) to the id."""
    rng = random.Random(6)
    expect_pass = 0
    for _ in range(150):
        content = rng.randbytes(rng.randrange(0, 1500))
        cid = hashlib.sha256(content).digest() if rng.random() < 0.5 else rng.randbytes(32)
        ok = cid == hashlib.sha256(content).digest()
        expect_pass += ok
        assert verdict(prog, frame(hdr(content, id=cid) + content)) == (XDP_PASS if ok else XDP_DROP)
    st = stats(prog.obj)
    assert st["passed"] == expect_pass and st["mismatch"] == 150 - expect_pass


def test_tampered_content_is_dropped(prog):
    dropped = 0
    for n in [s for s in SIZES if s]:
        content = os.urandom(n)
        for pos in sorted({0, n // 2, n - 1}):
            bad = bytearray(content)
            bad[pos] ^= 0x80
            assert verdict(prog, frame(hdr(content) + bytes(bad))) == XDP_DROP, (n, pos)
            dropped += 1
    st = stats(prog.obj)
    assert st["mismatch"] == dropped and st["passed"] == 0


def test_every_byte_of_the_id_is_compared(prog):
    content = os.urandom(200)
    good = hashlib.sha256(content).digest()
    for k in range(32):
        cid = bytearray(good)
        cid[k] ^= 1
        assert verdict(prog, frame(hdr(content, id=bytes(cid)) + content)) == XDP_DROP, k
    assert stats(prog.obj)["mismatch"] == 32


@pytest.mark.parametrize("n,length", [(100, 99), (100, 101), (100, 0), (0, 1), (100, 0xFFFF)])
def test_wrong_length_field_is_dropped(prog, n, length):
    content = os.urandom(n)
    assert verdict(prog, frame(hdr(content, length=length) + content)) == XDP_DROP
    st = stats(prog.obj)
    assert st["bad_length"] == 1 and drops(st) == 1


def test_inconsistent_ip_and_udp_lengths_are_dropped(prog):
    content = os.urandom(300)
    good = valid(content)
    cases = [
        frame(hdr(content) + content, udp_kw={"len": 8 + 40 + 299}),   # stack would trim the last byte
        frame(hdr(content) + content, udp_kw={"len": 8 + 40 + 301}),
        frame(hdr(content) + content, udp_kw={"len": 7}),
        frame(hdr(content) + content, ip_kw={"len": 20 + 8 + 40 + 301}),  # beyond the frame
        frame(hdr(content) + content, ip_kw={"len": 27}),
    ]
    for c in cases:
        assert verdict(prog, c) == XDP_DROP
    st = stats(prog.obj)
    assert st["bad_length"] == len(cases) and drops(st) == len(cases)
    # Ethernet padding after the IP datagram is legal: lengths come from the headers
    assert verdict(prog, good + bytes(20)) == XDP_PASS


def test_truncated_header_of_every_length_is_dropped(prog):
    """UDP payloads of 0..39 bytes, consistent IP/UDP lengths: each a prefix
    of a valid datagram's payload."""
    content = os.urandom(64)
    payload = hdr(content) + content
    for k in range(cas.HDR.size):
        assert verdict(prog, frame(payload[:k])) == XDP_DROP, k
    st = stats(prog.obj)
    assert st["truncated"] == cas.HDR.size and drops(st) == cas.HDR.size


def test_frame_cut_at_every_length_is_never_passed(prog):
    """A valid frame cut anywhere after the Ethernet header (the shortest
    BPF_PROG_TEST_RUN accepts): dropped and counted every time."""
    full = valid(os.urandom(150))
    cuts = range(14, len(full))
    for k in cuts:
        assert verdict(prog, full[:k]) == XDP_DROP, k
    st = stats(prog.obj)
    assert drops(st) == len(cuts) and st["passed"] == 0
    assert st["malformed"] == (14 + 20 + 8) - 14   # cut inside the IPv4 or UDP header
    assert st["bad_length"] == len(cuts) - st["malformed"]


@pytest.mark.parametrize("field,value", [
    ("magic", 0x5CCA), ("magic", 0), ("version", 0), ("version", 2),
    ("type", 0), ("type", cas.WANT_T), ("type", 0xFF),
    ("flags", 0x02), ("flags", 0x80), ("flags", cas.F_ROOT),   # ROOT on a data chunk
    ("reserved", 1),
])
def test_bad_header_fields_are_dropped(prog, field, value):
    content = os.urandom(80)
    assert verdict(prog, frame(hdr(content, **{field: value}) + content)) == XDP_DROP
    st = stats(prog.obj)
    assert st["bad_header"] == 1 and drops(st) == 1


def test_manifests_pass_like_data(prog):
    enc = cas.encode(os.urandom(CHUNK * 50), CHUNK)
    for cid in enc.order:
        assert verdict(prog, frame(enc.chunks[cid].datagram())) == XDP_PASS
    assert stats(prog.obj)["passed"] == len(enc.order)


def test_allowlist(prog):
    obj = prog.obj
    listed, other = os.urandom(100), os.urandom(100)
    # not enforced: anything genuine passes; listed ids count hits
    cv.allow(obj, [hashlib.sha256(listed).digest()])
    assert verdict(prog, valid(other)) == XDP_PASS
    assert verdict(prog, valid(listed)) == XDP_PASS
    cv.set_enforce(obj, True)
    assert cv.enforced(obj)
    assert verdict(prog, valid(other)) == XDP_DROP
    assert verdict(prog, valid(listed)) == XDP_PASS
    # a listed id with forged content is still hashed, and dropped
    assert verdict(prog, frame(hdr(listed) + other)) == XDP_DROP
    assert cv.allowlist(obj) == {hashlib.sha256(listed).digest(): 2}
    assert cv.allow(obj, [hashlib.sha256(listed).digest()]) == 0   # keeps its hits
    assert cv.allowlist(obj)[hashlib.sha256(listed).digest()] == 2
    cv.deny(obj, [hashlib.sha256(listed).digest()])
    assert verdict(prog, valid(listed)) == XDP_DROP
    cv.set_enforce(obj, False)
    assert verdict(prog, valid(other)) == XDP_PASS
    st = stats(obj)
    assert (st["passed"], st["not_allowed"], st["mismatch"]) == (4, 2, 1)


def test_fragments(prog):
    content = os.urandom(100)
    first = valid(content, ip_kw={"flags": "MF"})
    later = frame(hdr(content) + content, ip_kw={"frag": 3})
    assert verdict(prog, first) == XDP_DROP
    # a later fragment has no UDP header; without its first one the stack
    # never reassembles it
    assert verdict(prog, later) == XDP_PASS
    assert verdict(prog, valid(content, ip_kw={"flags": "DF"})) == XDP_PASS
    st = stats(prog.obj)
    assert st["fragment"] == 1 and drops(st) == 1


def test_vlan_tags_and_ip_options_do_not_hide_a_datagram(prog):
    content = os.urandom(90)
    forged = hdr(os.urandom(90)) + content
    eth = lambda: Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for l2 in (eth() / Dot1Q(vlan=7), eth() / Dot1AD(vlan=3) / Dot1Q(vlan=7)):
        assert verdict(prog, valid(content, l2=l2)) == XDP_PASS
        assert verdict(prog, frame(forged, l2=l2)) == XDP_DROP
    opts = {"options": b"\x01\x01\x01\x00"}   # NOP NOP NOP EOL: ihl 6
    assert verdict(prog, valid(content, ip_kw=opts)) == XDP_PASS
    assert verdict(prog, frame(forged, ip_kw=opts)) == XDP_DROP
    st = stats(prog.obj)
    assert st["passed"] == 3 and st["mismatch"] == 3


def test_other_traffic_untouched(prog):
    forged = hdr(b"x" * 10) + b"y" * 10
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for f in (frame(forged, dport=PORT + 1),
              bytes(eth / IP(dst="10.1.0.2") / TCP(dport=PORT) / forged),
              bytes(eth / IPv6(dst="fd00::2") / UDP(dport=PORT + 1) / forged),
              bytes(eth / IPv6(dst="fd00::2") / TCP(dport=PORT) / forged),
              bytes(eth / ARP(pdst="10.1.0.2"))):
        assert verdict(prog, f) == XDP_PASS
    assert not any(stats(prog.obj).values())


def frame6(payload: bytes, ext=(), dport: int = PORT, **ip6) -> bytes:
    pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IPv6(src="fd00::1", dst="fd00::2", **ip6)
    for e in ext:
        pkt = pkt / e
    return bytes(pkt / UDP(sport=40000, dport=dport) / payload)


def ah():   # 24 bytes: payloadlen counts 4-octet units minus 2
    return AH(nh=17, payloadlen=4, spi=1, seq=1, icv=bytes(12))


EXT_CHAINS = {
    "none": [],
    "hop-by-hop": [IPv6ExtHdrHopByHop()],
    "hop+routing+dest": [IPv6ExtHdrHopByHop(), IPv6ExtHdrRouting(), IPv6ExtHdrDestOpt()],
    "dest+ah": [IPv6ExtHdrDestOpt(), ah()],
    "six (the limit)": [IPv6ExtHdrHopByHop()] + [IPv6ExtHdrDestOpt() for _ in range(5)],
}


@pytest.mark.parametrize("chain", list(EXT_CHAINS), ids=list(EXT_CHAINS))
def test_ipv6_datagrams_are_verified_behind_extension_headers(prog, chain):
    content = os.urandom(300)
    ext = EXT_CHAINS[chain]
    assert verdict(prog, frame6(hdr(content) + content, ext)) == XDP_PASS
    assert verdict(prog, frame6(hdr(content) + content[::-1], ext)) == XDP_DROP
    assert verdict(prog, frame6(hdr(content, length=299) + content, ext)) == XDP_DROP
    st = stats(prog.obj)
    assert (st["passed"], st["mismatch"], st["bad_length"], drops(st)) == (1, 1, 1, 2)


def test_ipv6_fragments_lengths_and_long_chains(prog):
    content = os.urandom(100)
    payload = hdr(content) + content
    assert verdict(prog, frame6(payload, [IPv6ExtHdrFragment(m=1, offset=0, id=7)])) == XDP_DROP
    assert verdict(prog, frame6(payload, [IPv6ExtHdrFragment(m=0, offset=0, id=7)])) == XDP_DROP
    assert verdict(prog, frame6(payload, [IPv6ExtHdrFragment(m=0, offset=4, id=7)])) == XDP_PASS  # no port in it
    seven = [IPv6ExtHdrDestOpt() for _ in range(7)]
    assert verdict(prog, frame6(payload, seven)) == XDP_DROP
    assert verdict(prog, frame6(payload, plen=8 + len(payload) + 1) + b"\0") == XDP_DROP   # UDP shorter than IP payload
    assert verdict(prog, frame6(payload, plen=8 + len(payload) + 1)) == XDP_DROP           # beyond the frame
    full = frame6(payload, [IPv6ExtHdrHopByHop()])
    for k in range(14, len(full)):
        assert verdict(prog, full[:k]) == XDP_DROP, k
    st = stats(prog.obj)
    cut = len(full) - 14
    assert (st["fragment"], st["unparsed"], st["bad_length"] - cut + st["malformed"]) == (2, 1, 2)
    assert st["malformed"] == 40 + 8 + 8   # cut inside the IPv6, hop-by-hop or UDP header
    assert st["passed"] == 0


def test_xdp_and_userspace_checks_agree(prog):
    """Random mutations of valid datagrams (a byte changed anywhere, cut,
    extended): the XDP verdict equals the receiver's own check
    (cas.parse_datagram), so the two layers enforce one rule."""
    rng = random.Random(66)
    enc = cas.encode(rng.randbytes(CHUNK * 3), CHUNK)
    dgrams = [enc.chunks[i].datagram() for i in enc.order]
    passed = 0
    for _ in range(300):
        d = bytearray(rng.choice(dgrams))
        kind = rng.randrange(3)
        if kind == 0:
            d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            del d[rng.randrange(len(d)):]
        else:
            d += rng.randbytes(rng.randrange(1, 5))
        try:
            c = cas.parse_datagram(bytes(d))
            ok = c.type != cas.WANT_T
        except ValueError:
            ok = False
        passed += ok
        assert verdict(prog, frame(bytes(d))) == (XDP_PASS if ok else XDP_DROP), (kind, bytes(d[:40]).hex())
    assert stats(prog.obj)["passed"] == passed


def test_port_knob(load_object):
    requires()
    obj = load_object("content_verifier", udp_port=9999)
    p = obj.program("content_verify")
    forged = hdr(b"a" * 10) + b"b" * 10
    assert verdict(p, frame(forged, dport=PORT)) == XDP_PASS
    assert verdict(p, frame(forged, dport=9999)) == XDP_DROP


# ---------------------------------------------------------------- between namespaces

@pytest.fixture
def loaded(veth_pair):
    """content-verifier attached (XDP) to B's end of the veth pair."""
    requires()
    lifecycle.load(SPEC, veth_pair.dev_b, netns=veth_pair.ns_b)
    try:
        with Pinned(SPEC.name) as h:
            yield veth_pair, h
    finally:
        lifecycle.unload(SPEC.name)


def transfer(pair, data: bytes, expect=None, timeout: float = 4.0, addr_b=None):
    """cas.Sender in A -> cas.Receiver in B over real sockets."""
    addr_b = addr_b or pair.addr_b
    with inside(pair.ns_b):
        rx = cas.receive_socket(PORT, addr_b)
    with inside(pair.ns_a):
        tx = socket.socket(rx.family, socket.SOCK_DGRAM)
    with rx, tx:
        tx.connect((addr_b, PORT))
        enc = cas.encode(data, cas.chunk_size_for_mtu(cas.path_mtu(tx)))
        receiver = cas.Receiver(rx, expect=expect, idle=0.2, timeout=timeout)
        t = threading.Thread(target=receiver.run)
        t.start()
        sent = cas.Sender(tx, enc, linger=timeout).run()
        t.join()
    return enc, sent, receiver.report


def test_honest_transfers_are_byte_exact(loaded):
    pair, h = loaded
    datagrams = content_bytes = resent = 0
    for n in (0, 1, CHUNK, CHUNK * 60 + 17):   # 60 chunks: a two-level manifest tree
        data = os.urandom(n)
        enc, sent, got = transfer(pair, data, expect=None)
        assert got.data == data, n
        assert got.root == enc.root and sent.confirmed
        assert got.rejected == {}
        datagrams += sent.datagrams
        resent += sent.resent
        content_bytes += sum(len(enc.chunks[i].content) for i in enc.order)
    st = SPEC.stats(h)
    assert drops(st) == 0
    # every datagram sent once unless the receiver had to ask (UDP loss
    # before XDP, e.g. a full veth ring on a busy machine)
    if not resent:
        assert (st["passed"], st["bytes_verified"]) == (datagrams, content_bytes)
    else:
        assert datagrams - resent <= st["passed"] <= datagrams


def test_ipv6_transfer_and_forgery(loaded):
    """Over IPv6 too: an honest file arrives byte-exact; a forged datagram
    behind a destination-options header never reaches the socket."""
    pair, h = loaded
    a6, b6 = "fd00:cb::1", "fd00:cb::2"
    ip("addr", "add", f"{a6}/64", "dev", pair.dev_a, "nodad", netns=pair.ns_a)
    ip("addr", "add", f"{b6}/64", "dev", pair.dev_b, "nodad", netns=pair.ns_b)
    data = os.urandom(CHUNK * 4 + 3)
    _, sent, got = transfer(pair, data, addr_b=b6)
    assert got.data == data and got.rejected == {} and sent.confirmed

    content = os.urandom(200)
    eth = Ether(src=_mac(pair.dev_a, pair.ns_a), dst=_mac(pair.dev_b, pair.ns_b))
    forged = bytes(eth / IPv6(src=a6, dst=b6) / IPv6ExtHdrDestOpt() /
                   UDP(sport=40000, dport=PORT) / (hdr(content) + content[::-1]))
    genuine = hdr(content) + content
    sentinel = bytes(eth / IPv6(src=a6, dst=b6) / UDP(sport=40000, dport=PORT) / genuine)
    before = SPEC.stats(h)
    with inside(pair.ns_b):
        rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        rx.bind((b6, PORT))
        rx.settimeout(2)
    with inside(pair.ns_a):
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        raw.bind((pair.dev_a, 0))
    with rx, raw:
        raw.send(forged)
        raw.send(sentinel)
        assert rx.recv(65535) == genuine
    st = SPEC.stats(h)
    assert st["mismatch"] - before["mismatch"] == 1 and st["passed"] - before["passed"] == 1


@pytest.fixture
def mangler(veth_pair, request):
    """TC egress on A flipping content bytes of the next `budget` chunks of
    one type (data unless parametrized indirectly with another)."""
    obj = BpfObject.open(str(TEST_OBJ_DIR / "cas_mangler.bpf.o"))
    obj.set_global("only_type", getattr(request, "param", cas.DATA))
    obj.load()
    with inside(veth_pair.ns_a):
        att = attach.tc_attach(obj.program("mangle").fd, attach.ifindex(veth_pair.dev_a), "egress")
    try:
        yield obj
    finally:
        with inside(veth_pair.ns_a):
            attach.tc_detach(att)
        obj.close()


def test_tampering_in_flight_without_verifier_reaches_the_socket(veth_pair, mangler):
    """Control: the mangled datagram is well formed for the kernel (checksum
    fixed), so without XDP the socket gets it -- and the receiver's own
    check rejects it, asks again, and still completes the file."""
    requires()
    mangler.set_global("budget", 1)
    data = os.urandom(CHUNK * 5)
    _, sent, got = transfer(veth_pair, data)
    assert mangler.get_global_int("mangled") == 1
    assert got.rejected == {"content does not hash to its id": 1}
    assert got.data == data and sent.resent >= 1


def test_tampering_in_flight_is_dropped_before_the_socket(loaded, mangler):
    pair, h = loaded
    mangler.set_global("budget", 3)
    data = os.urandom(CHUNK * 8 + 5)
    _, sent, got = transfer(pair, data)
    assert mangler.get_global_int("mangled") == 3
    assert got.rejected == {}                  # nothing forged reached the socket
    assert got.data == data and sent.resent >= 3 and got.requests >= 1
    st = SPEC.stats(h)
    assert st["mismatch"] == 3 and drops(st) == 3
    assert st["passed"] <= sent.datagrams - 3   # (equal unless UDP lost some before XDP)


def _mac(dev: str, netns: str) -> str:
    out = ip("-o", "link", "show", dev, netns=netns)
    return out.split("link/ether ")[1].split()[0]


def test_crafted_datagrams_are_dropped_by_reason(loaded):
    """Raw frames from A's AF_PACKET socket: each attack is dropped and
    counted by its reason, and B's socket sees only the genuine datagrams."""
    pair, h = loaded
    eth = Ether(src=_mac(pair.dev_a, pair.ns_a), dst=_mac(pair.dev_b, pair.ns_b))
    addr = {"src": pair.addr_a, "dst": pair.addr_b}

    def udp(payload, ip_kw=None, udp_kw=None):
        return bytes(eth / IP(**addr, **(ip_kw or {})) / UDP(sport=40000, dport=PORT, **(udp_kw or {})) / payload)

    content = os.urandom(500)
    genuine, unlisted = hdr(content) + content, hdr(b"not listed") + b"not listed"
    attacks = {
        "mismatch": [udp(hdr(content) + content[:-1] + b"!"), udp(hdr(content) + os.urandom(500))],
        "bad_length": [udp(hdr(content, length=499) + content), udp(genuine, udp_kw={"len": 8 + 40 + 499})],
        "truncated": [udp(genuine[:k]) for k in range(cas.HDR.size)],
        "bad_header": [udp(hdr(content, version=9) + content), udp(hdr(content, type=cas.WANT_T) + content)],
        "fragment": [udp(genuine, ip_kw={"flags": "MF"})],
        "not_allowed": [udp(unlisted), udp(hdr(content, id=bytes(32)) + content)],
        "malformed": [udp(genuine)[:14 + 20 + k] for k in range(8)] + [udp(genuine)[:14 + k] for k in range(20)],
    }
    cv.allow(h, [hashlib.sha256(content).digest()])
    cv.set_enforce(h, True)
    with inside(pair.ns_b):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind((pair.addr_b, PORT))
        rx.settimeout(2)
    with inside(pair.ns_a):
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        raw.bind((pair.dev_a, 0))
    with rx, raw:
        for frames in attacks.values():
            for f in frames:
                raw.send(f)
        raw.send(udp(genuine))   # sentinel: everything before it was judged
        assert rx.recv(65535) == genuine
        rx.settimeout(0.3)
        with pytest.raises(socket.timeout):
            rx.recv(65535)
    st = SPEC.stats(h)
    assert st["passed"] == 1
    for reason, frames in attacks.items():
        assert st[reason] == len(frames), reason
    assert st["errors"] == 0
    assert cv.allowlist(h) == {hashlib.sha256(content).digest(): 1}


def wait_bound(netns: str, port: int, timeout: float = 15.0) -> None:
    """Until a UDP socket is bound to `port` in `netns` (the CLI's start-up
    takes a while on a busy machine)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hlun", f"sport = :{port}"],
                             capture_output=True, text=True).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing bound to UDP port {port} in {netns}")


def test_late_receiver_gets_the_root_repeated(veth_pair):
    """The sender starts before anyone listens: it repeats the root until
    the receiver appears, which then asks for everything else."""
    requires()
    pair = veth_pair
    data = os.urandom(CHUNK * 3 + 1)
    enc = cas.encode(data, CHUNK)
    with inside(pair.ns_a):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tx:
        tx.connect((pair.addr_b, PORT))
        sender = cas.Sender(tx, enc, linger=3.0, nudge=0.2)
        t = threading.Thread(target=sender.run)
        t.start()
        time.sleep(0.5)   # everything of the first burst is lost
        with inside(pair.ns_b):
            rx = cas.receive_socket(PORT, pair.addr_b)
        with rx:
            got = cas.Receiver(rx, idle=0.2, timeout=4.0).run()
        t.join()
    assert got.data == data and sender.report.confirmed
    assert sender.report.resent >= len(enc.order)


def test_cli_send_recv_allowlist(veth_pair, tmp_path):
    requires()
    pair = veth_pair
    good, other = tmp_path / "good.bin", tmp_path / "other.bin"
    good.write_bytes(os.urandom(CHUNK * 3 + 99))
    other.write_bytes(os.urandom(700))
    cli = [sys.executable, "-m", "cryptbpf.cli"]
    ns = lambda n: ["ip", "netns", "exec", n]

    def transfer_cli(src, out, recv_timeout="3"):
        rx = subprocess.Popen(ns(pair.ns_b) + cli + ["cas", "recv", str(out), "--bind", pair.addr_b,
                                                     "--timeout", recv_timeout],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_bound(pair.ns_b, PORT)
        tx = subprocess.run(ns(pair.ns_a) + cli + ["cas", "send", str(src), pair.addr_b, str(PORT),
                                                   "--linger", "2"],
                            capture_output=True, text=True)
        out_rx = rx.communicate(timeout=30)
        return tx, rx.returncode, out_rx

    run_cli("load", SPEC.name, pair.dev_b, "--netns", pair.ns_b, check=True)
    try:
        tx, rc, (rx_out, rx_err) = transfer_cli(good, tmp_path / "got.bin")
        assert tx.returncode == 0 and rc == 0, (tx.stderr, rx_err)
        assert (tmp_path / "got.bin").read_bytes() == good.read_bytes()
        root = cas.encode(good.read_bytes(), CHUNK).root.hex()
        assert f"root {root}" in tx.stdout and f"root {root}" in rx_out

        res = run_cli("cas", "allow", "--file", str(good), check=True)
        assert "5 id(s) added" in res.stdout   # 4 data chunks + root manifest
        run_cli("cas", "enforce", "on", check=True)
        tx, rc, (_, rx_err) = transfer_cli(other, tmp_path / "never.bin", recv_timeout="1.5")
        assert rc == 1 and "no root manifest arrived" in rx_err
        assert tx.returncode == 1 and "no confirmation" in tx.stderr
        assert not (tmp_path / "never.bin").exists()
        tx, rc, _ = transfer_cli(good, tmp_path / "again.bin")
        assert rc == 0 and (tmp_path / "again.bin").read_bytes() == good.read_bytes()

        listing = run_cli("cas", "allowlist", check=True).stdout
        assert listing.startswith("allowlist enforced, 5 id(s)")
        assert f"{root} " in listing
        res = run_cli("status", "--json", check=True)
        entry = next(e for e in json.loads(res.stdout) if e["program"] == SPEC.name)
        assert entry["stats"]["not_allowed"] >= 2 and entry["stats"]["mismatch"] == 0
        assert entry["allowlist"] == {"ids": 5, "enforced": True}
    finally:
        run_cli("unload", SPEC.name)
    err = run_cli("cas", "allowlist")
    assert err.returncode == 1 and err.stderr.startswith("cryptbpf: content-verifier is not loaded")


@pytest.mark.parametrize("mangler", [cas.MANIFEST_T], indirect=True, ids=["manifest"])
def test_a_lost_root_is_asked_for_again(loaded, mangler):
    """The root manifest is forged in flight and dropped at XDP: the
    receiver holds the data chunks, asks for the root, completes."""
    pair, h = loaded
    mangler.set_global("budget", 1)
    data = os.urandom(CHUNK * 3)
    enc, sent, got = transfer(pair, data)
    assert mangler.get_global_int("mangled") == 1
    assert got.data == data and got.root == enc.root and got.rejected == {}
    assert sent.resent >= 1 and got.requests >= 1
    assert SPEC.stats(h)["mismatch"] == 1
