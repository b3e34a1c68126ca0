"""encrypted_tunnel through BPF_PROG_TEST_RUN: the BPF programs against the
independent Python peer (pyca cryptography), byte for byte, and every way a
packet must be refused. The object plays host A (10.1.0.1) with peer B
(10.1.0.2); live traffic is in test_encrypted_tunnel_netns.py."""

from __future__ import annotations

import os
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from cryptbpf.programs.encrypted_tunnel import SPEC
from cryptbpf.programs.encrypted_tunnel import control, wire

from conftest import require_feature

A, B, OTHER = "10.1.0.1", "10.1.0.2", "10.1.0.9"
ETH = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x800))
TC_OK, TC_SHOT = 0, 2
TC_UNSPEC = -1            # TC_ACT_UNSPEC: the next filter runs
XDP_DROP, XDP_PASS = 1, 2
SUITES = [wire.CHACHA, wire.CBC]
SUITE_IDS = ["chacha20-poly1305", "aes-256-cbc-hmac-sha256"]


def require_suite(suite: int):
    """Skip (with the reason) unless this kernel runs the program and `suite`."""
    for f in SPEC.requires + control.SUITE_REQUIRES[suite]:
        require_feature(f)


@pytest.fixture(params=SUITES, ids=SUITE_IDS)
def suite(request):
    return request.param


@pytest.fixture
def tun(load_object, suite):
    require_suite(suite)
    obj = load_object("encrypted_tunnel")
    secret = os.urandom(32)
    control.add_peer(obj, B, A, secret, suite)
    obj.secret, obj.suite = secret, suite
    return obj


def stats(obj, row: int = 0) -> dict:
    return control.peer_stats(obj, row)


def drops(st: dict) -> int:
    return sum(v for k, v in st.items() if not k.startswith(("tx_", "rx_")))


def egress(obj, pkt: bytes):
    """BPF seals pkt; retried once on the 2^-16 csum_fix collision drop."""
    for _ in range(2):
        before = stats(obj)["csum_collision"]
        r = obj.program("tunnel_egress").test_run(data=ETH + pkt)
        if r.retval == TC_OK or stats(obj)["csum_collision"] == before:
            return r
    return r


def py_seal(obj, pkt: bytes, counter: int, key_id: int = 0, src: str = B, dst: str = A):
    """Python seals pkt from B to A; skips counters whose csum_fix is impossible."""
    keys = wire.derive(obj.secret, obj.suite, key_id, src, dst)
    while True:
        try:
            return wire.seal(pkt, keys, counter)
        except wire.TunnelError:
            counter += 1


def ingress(obj, tunnel_pkt: bytes):
    return obj.program("tunnel_ingress").test_run(data=ETH + tunnel_pkt)


def packets(src: str, dst: str):
    """IPv4 packets of every kind the tunnel must carry unchanged."""
    out = []
    for n in (0, 1, 7, 15, 16, 17, 63, 64, 100, 255, 1000, 1400):
        out.append(IP(src=src, dst=dst, id=n) / UDP(sport=4000, dport=53) / os.urandom(n))
        out.append(IP(src=src, dst=dst, id=n) / ICMP(id=9, seq=n) / os.urandom(n))
    out.append(IP(src=src, dst=dst, flags="DF", ttl=3, tos=0x10) /
               TCP(sport=1234, dport=80, flags="PA", seq=77) / b"GET / HTTP/1.0\r\n\r\n")
    out.append(IP(src=src, dst=dst, proto=47) / os.urandom(40))      # any protocol
    out.append(IP(src=src, dst=dst, flags="MF", frag=0, proto=17) / os.urandom(64))  # a fragment
    return [bytes(p) for p in out]


def test_bpf_sealed_packets_open_in_python(tun):
    keys = wire.derive(tun.secret, tun.suite, 0, A, B)
    counters = []
    for pkt in packets(A, B):
        r = egress(tun, pkt)
        assert r.retval == TC_OK
        out = r.data[14:]
        h = wire.parse(out)              # also checks the outer IP checksum
        assert (h["version"], h["suite"], h["key_id"], h["flags"]) == (1, tun.suite, 0, 0)
        assert out[9] == wire.IPPROTO and int.from_bytes(out[2:4], "big") == len(out)
        assert out[:2] + out[4:9] + out[12:20] == pkt[:2] + pkt[4:9] + pkt[12:20]
        assert len(out) - len(pkt) <= wire.OVERHEAD[tun.suite]
        assert wire.open_packet(out, keys) == pkt
        counters.append(h["counter"])
    assert counters == sorted(set(counters))           # never repeats
    st = stats(tun)
    assert st["tx_packets"] == len(counters) and drops(st) == st["csum_collision"]


def test_python_sealed_packets_open_in_bpf(tun):
    for i, pkt in enumerate(packets(B, A)):
        r = ingress(tun, py_seal(tun, pkt, 1000 + 3 * i))
        assert r.retval == TC_OK, stats(tun)
        assert r.data[14:] == pkt            # byte-exact: header, checksums, lengths
    assert stats(tun)["rx_packets"] == len(packets(B, A))


def test_every_udp_payload_size(tun):
    """0..1441 bytes (the largest that fits a 1500-byte MTU with chacha),
    sealed by BPF and opened by Python, and back."""
    keys = wire.derive(tun.secret, tun.suite, 0, A, B)
    top = 1500 - 28 - wire.OVERHEAD[tun.suite]
    sizes = range(top + 1) if tun.suite == wire.CHACHA else list(range(0, 80)) + list(range(top - 40, top + 1))
    for n in sizes:
        pkt = bytes(IP(src=A, dst=B) / UDP(sport=1, dport=2) / os.urandom(n))
        r = egress(tun, pkt)
        assert r.retval == TC_OK and wire.open_packet(r.data[14:], keys) == pkt, n
        back = bytes(IP(src=B, dst=A) / UDP(sport=2, dport=1) / os.urandom(n))
        r = ingress(tun, py_seal(tun, back, 10 * n))
        assert r.retval == TC_OK and r.data[14:] == back, n


def test_bit_flip_anywhere_is_dropped_and_counted(tun):
    pkt = bytes(IP(src=B, dst=A, id=4) / UDP(sport=5, dport=6) / (b"flip me" * 9))
    sealed = py_seal(tun, pkt, 5)
    flips = 0
    for bit in range(len(sealed) * 8):
        bad = bytearray(sealed)
        bad[bit // 8] ^= 1 << (bit % 8)
        r = ingress(tun, bytes(bad))
        assert r.retval == TC_SHOT, f"flip of bit {bit} accepted"
        flips += 1
    st = {k: stats(tun)[k] + stats(tun, control.NO_PEER_ROW)[k] for k in stats(tun)}
    assert st["rx_packets"] == 0 and drops(st) == flips
    assert st["auth_failed"] > 0 and st["malformed"] > 0
    # the genuine packet still opens: no flip used up its counter
    assert ingress(tun, sealed).retval == TC_OK


def test_replay_and_window(tun):
    mk = lambda c: py_seal(tun, bytes(IP(src=B, dst=A) / ICMP() / b"r"), c)
    first = mk(5000)
    assert ingress(tun, first).retval == TC_OK
    assert ingress(tun, first).retval == TC_SHOT                   # replay
    assert stats(tun)["replayed"] == 1
    assert ingress(tun, mk(4000)).retval == TC_OK                  # late but inside the window
    top = wire.parse(first)["counter"]
    old = wire.parse(mk(top - wire.REPLAY_WINDOW - 1))["counter"]
    if top - old > wire.REPLAY_WINDOW:
        assert ingress(tun, mk(old)).retval == TC_SHOT              # behind the window
    assert ingress(tun, mk(top - wire.REPLAY_WINDOW + 5)).retval == TC_OK
    far = mk(10 ** 9)
    assert ingress(tun, far).retval == TC_OK                       # window jumps ahead
    assert ingress(tun, first).retval == TC_SHOT
    assert ingress(tun, far).retval == TC_SHOT
    st = stats(tun)
    assert st["rx_packets"] == 4 and st["replayed"] >= 3


def test_unknown_key_id_dropped_next_key_accepted(tun):
    pkt = bytes(IP(src=B, dst=A) / ICMP() / b"k")
    assert ingress(tun, py_seal(tun, pkt, 1, key_id=7)).retval == TC_SHOT
    assert ingress(tun, py_seal(tun, pkt, 1, key_id=2)).retval == TC_SHOT   # slot 0 holds 0
    assert stats(tun)["unknown_key"] == 2
    assert ingress(tun, py_seal(tun, pkt, 1, key_id=1)).retval == TC_OK     # pre-installed next
    # a key for another direction does not open
    assert ingress(tun, py_seal(tun, pkt, 2, src=A, dst=B)).retval == TC_SHOT
    assert stats(tun)["auth_failed"] == 1


def test_other_traffic_untouched_and_clear_from_peer_dropped(tun):
    frames = [ETH + bytes(IP(src=A, dst=OTHER) / UDP() / (b"x" * 30)),
              bytes(Ether() / ARP(pdst=B)),
              bytes(Ether(type=0x86DD)) + bytes(40)]
    for f in frames:
        for prog in ("tunnel_egress", "tunnel_ingress"):
            r = tun.program(prog).test_run(data=f)
            assert r.retval == TC_UNSPEC and r.data == f
    clear = ETH + bytes(IP(src=B, dst=A) / UDP() / (b"x" * 30))
    assert tun.program("tunnel_ingress").test_run(data=clear).retval == TC_SHOT
    assert stats(tun)["clear_from_peer"] == 1
    stranger = py_seal(tun, bytes(IP(src=OTHER, dst=A) / ICMP()), 1, src=OTHER)
    assert ingress(tun, stranger).retval == TC_SHOT
    assert stats(tun, control.NO_PEER_ROW)["not_peer"] == 1


def test_never_sent_in_clear(tun):
    pkt = bytes(IP(src=A, dst=B) / UDP() / (b"secret" * 5))
    opts = bytes(IP(src=A, dst=B, options=b"\x01\x01\x01\x00") / UDP() / b"secret")
    assert egress(tun, opts).retval == TC_SHOT and stats(tun)["unsupported"] == 1
    # counter at the limit: refuse rather than wrap
    m = tun.map("tx_keys")
    k = control.slot_key(B, 0)
    raw = bytearray(m.lookup(k))
    raw[:8] = struct.pack("<Q", wire.COUNTER_LIMIT)
    m.update(k, bytes(raw))
    assert egress(tun, pkt).retval == TC_SHOT and stats(tun)["counter_exhausted"] == 1
    m.delete(k)
    assert egress(tun, pkt).retval == TC_SHOT and stats(tun)["no_key"] == 1
    assert stats(tun)["tx_packets"] == 0


def test_xdp_early_drops(tun):
    xdp = tun.program("tunnel_xdp")
    good = py_seal(tun, bytes(IP(src=B, dst=A) / ICMP() / b"x"), 3000)
    assert xdp.test_run(data=ETH + good).retval == XDP_PASS
    assert xdp.test_run(data=ETH + bytes(IP(src=A, dst=OTHER) / UDP())).retval == XDP_PASS
    stranger = py_seal(tun, bytes(IP(src=OTHER, dst=A) / ICMP()), 1, src=OTHER)
    bad_len = good[:2] + (len(good) + 4).to_bytes(2, "big") + good[4:]
    cases = {
        "xdp_not_peer": stranger,
        "xdp_malformed": bad_len,
        "xdp_unknown_key": py_seal(tun, bytes(IP(src=B, dst=A) / ICMP()), 1, key_id=9),
        "xdp_clear_from_peer": bytes(IP(src=B, dst=A) / ICMP()),
    }
    for counter, pkt in cases.items():
        assert xdp.test_run(data=ETH + pkt).retval == XDP_DROP, counter
    assert ingress(tun, good).retval == TC_OK                   # window now at 3000
    stale = py_seal(tun, bytes(IP(src=B, dst=A) / ICMP()), 3000 - wire.REPLAY_WINDOW - 10)
    assert xdp.test_run(data=ETH + stale).retval == XDP_DROP
    st = {k: stats(tun)[k] + stats(tun, control.NO_PEER_ROW)[k] for k in stats(tun)}
    for counter in (*cases, "xdp_stale"):
        assert st[counter] == 1, counter


def test_cbc_bad_padding_counts_as_forgery(load_object):
    """A correctly MACed CBC packet whose padding is wrong (only a broken
    peer can make one) takes the forgery path: same counter, same drop."""
    require_suite(wire.CBC)
    obj = load_object("encrypted_tunnel")
    secret = os.urandom(32)
    control.add_peer(obj, B, A, secret, wire.CBC)
    keys = wire.derive(secret, wire.CBC, 0, B, A)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    inner = bytes(IP(src=B, dst=A) / ICMP() / (b"p" * 13))
    plain = inner[20:] + b"\x01" + b"\x00" * 2        # 'padding' of zeros: invalid
    plain += b"\x00" * (-len(plain) % 16)
    hdr = wire.header(wire.CBC, 0, 42)
    outer = wire.rewrite_ip(inner, wire.IPPROTO, 20 + 12 + len(plain) + 16 + 2)
    enc = Cipher(algorithms.AES(keys.enc), modes.CBC(wire._cbc_iv(keys, hdr))).encryptor()
    ct = enc.update(plain) + enc.finalize()
    pkt = outer + hdr + ct + wire._mac(keys, wire.aad(outer, hdr), ct) + b"\0\0"
    assert ingress(obj, pkt).retval == TC_SHOT
    st = stats(obj)
    assert st["auth_failed"] == 1 and drops(st) == 1


def test_several_peers_each_with_its_suite_and_counters(load_object):
    require_suite(wire.CBC)
    obj = load_object("encrypted_tunnel")
    peers = {"10.1.0.2": (os.urandom(32), wire.CHACHA), "10.1.0.3": (os.urandom(32), wire.CBC),
             "10.1.0.4": (os.urandom(32), wire.CHACHA)}
    for addr, (secret, suite) in peers.items():
        control.add_peer(obj, addr, A, secret, suite)
    for round_ in range(3):
        for addr, (secret, suite) in peers.items():
            pkt = bytes(IP(src=A, dst=addr) / UDP(sport=1, dport=2) / os.urandom(50 + round_))
            r = egress(obj, pkt)
            assert r.retval == TC_OK and wire.parse(r.data[14:])["suite"] == suite
            assert wire.open_packet(r.data[14:], wire.derive(secret, suite, 0, A, addr)) == pkt
            # a peer's keys open nothing of another's
            other = next(a for a in peers if a != addr)
            with pytest.raises(wire.TunnelError):
                wire.open_packet(r.data[14:], wire.derive(peers[other][0], suite, 0, A, addr))
    for p in control.list_peers(obj):
        assert stats(obj, p.index)["tx_packets"] == 3
    control.remove_peer(obj, "10.1.0.3")
    frame = ETH + bytes(IP(src=A, dst="10.1.0.3") / UDP() / b"now clear")
    assert obj.program("tunnel_egress").test_run(data=frame).data == frame   # no longer a peer


def test_aes_suite_refused_where_the_kernel_lacks_it(load_object, monkeypatch):
    """On a kernel without bpf_crypto (or packet dynptrs) the object still
    loads, for chacha20-poly1305; an AES peer is refused with the reason
    and nothing is configured. Off such a kernel, the check is made to see
    one (kernel.has answers "no" for bpf_crypto)."""
    from cryptbpf.bpf import kernel
    from cryptbpf.errors import CryptbpfError
    require_suite(wire.CHACHA)
    if not kernel.missing(control.SUITE_REQUIRES[wire.CBC]):
        real_has = kernel.has
        monkeypatch.setattr(kernel, "has", lambda n: n != "bpf_crypto" and real_has(n))
    obj = load_object("encrypted_tunnel")
    with pytest.raises(CryptbpfError, match="needs .*Linux 6.*lacks; use chacha20-poly1305"):
        control.add_peer(obj, B, A, os.urandom(32), wire.CBC)
    assert control.list_peers(obj) == []


def test_aes_programs_drop_everything_where_aes_is_missing(load_object):
    """The AES programs load without bpf_crypto (their AES code skipped by
    the verifier) and must then drop, never pass a packet in the clear,
    even for a peer written into the map behind the control plane's back."""
    from cryptbpf.bpf import kernel
    missing = kernel.missing(control.SUITE_REQUIRES[wire.CBC])
    if not missing:
        pytest.skip(f"kernel {kernel.release()} has AES: the AES suite's own tests cover these programs")
    require_suite(wire.CHACHA)
    obj = load_object("encrypted_tunnel")
    control.add_peer(obj, B, A, os.urandom(32), wire.CHACHA)
    inner = bytes(IP(src=A, dst=B) / UDP(sport=1, dport=2) / b"secret")
    for prog in ("tunnel_seal_cbc", "tunnel_open_cbc"):
        assert obj.program(prog).test_run(data=ETH + inner).retval == TC_SHOT, prog
    from cryptbpf.crypto.aes_cbc import install_aes_key
    from cryptbpf.errors import CryptbpfError
    with pytest.raises(CryptbpfError, match="errno 95"):          # EOPNOTSUPP
        install_aes_key(obj, "tunnel_aes_setup", os.urandom(32), slot=0)
