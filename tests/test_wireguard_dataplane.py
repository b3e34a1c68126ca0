"""wireguard data plane through BPF_PROG_TEST_RUN: sealing and opening
byte-exact against pyca `cryptography` (wire.py, WireGuard's nonce layout),
and every way a message can be refused, dropped and counted.

The object is loaded without devices; its maps are filled through
bdp.Maps (as the daemon's calls would), the endpoint's device is lo
(ifindex 1, for bpf_check_mtu), and the pair end's ifindex is 1 too: the
programs' verdicts are TC_ACT_REDIRECT (7) where they would forward."""

from __future__ import annotations

import ipaddress
import os
import struct
import time

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from cryptbpf.bpf.ringbuf import RingBuffer
from cryptbpf.programs.wireguard import bpf_dataplane as bdp, wire

from conftest import require_feature

OK, SHOT, REDIRECT = 0, 2, 7
UNSPEC = -1             # TC_ACT_UNSPEC: the next filter runs
PEER, OTHER = 5, 6
LOCAL_IDX, REMOTE_IDX = 0x1234_5678, 0x0bad_cafe
PORT, PEER_PORT = 51820, 40000
WG_MAC, PAIR_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
SEND, RECV = os.urandom(32), os.urandom(32)
MTU = 1420
OUTER = {4: ("192.0.2.1", "192.0.2.2"), 6: ("2001:db8::1", "2001:db8::2")}   # (ours, peer's)
INNER = {4: ("10.8.0.1", "10.8.0.2"), 6: ("fd08::1", "fd08::2")}             # (ours, peer's)


@pytest.fixture
def wg(load_object):
    require_feature("bpf_loop")
    obj = load_object("wireguard")
    m = bdp.Maps(obj)
    m.configure(PORT, 1, WG_MAC, PAIR_MAC, MTU)
    for pid, nets in ((PEER, ["10.8.0.2/32", "10.9.0.0/16", "fd08::2/128"]), (OTHER, ["10.7.0.0/16"])):
        m.add_peer(pid)
        for n in nets:
            m.allow(pid, ipaddress.ip_network(n))
    m.install_keypair(PEER, LOCAL_IDX, REMOTE_IDX, SEND, RECV, initiator=True)
    m.obj = obj
    return m


def set_outer(m, family: int):
    ours, peer = OUTER[family]
    m.set_endpoint(PEER, peer, PEER_PORT, 1, ours)


def inner_packet(family: int, size: int, src: str | None = None, dst: str | None = None) -> bytes:
    ours, peer = INNER[family]
    ip = IP(src=src or ours, dst=dst or peer) if family == 4 else IPv6(src=src or ours, dst=dst or peer)
    return bytes(ip / UDP(sport=1000, dport=2000) / Raw(os.urandom(size)))


def frame(packet: bytes) -> bytes:
    proto = 0x0800 if packet[0] >> 4 == 4 else 0x86DD
    return bytes(Ether(src=str_mac(WG_MAC), dst=str_mac(PAIR_MAC), type=proto)) + packet


def str_mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def from_peer(message: bytes, family: int = 4, dport: int = PORT) -> bytes:
    """The message as the peer's host sends it to us."""
    ours, peer = OUTER[family]
    ip = IP(src=peer, dst=ours) if family == 4 else IPv6(src=peer, dst=ours)
    return bytes(Ether() / ip / UDP(sport=PEER_PORT, dport=dport) / Raw(message))


def seal(m, data: bytes):
    return m.obj.program("wg_seal").test_run(data=data)


def open_(m, data: bytes):
    return m.obj.program("wg_open").test_run(data=data)


def peer_message(packet: bytes, counter: int, key: bytes = RECV, idx: int = LOCAL_IDX) -> bytes:
    return wire.seal(key, idx, counter, packet)


# ---------------------------------------------------------------- sealing

@pytest.mark.parametrize("outer", [4, 6])
@pytest.mark.parametrize("inner", [4, 6])
def test_seal_is_wireguards_message_byte_for_byte(wg, outer, inner):
    set_outer(wg, outer)
    udp_ip = 28 if inner == 4 else 48
    # up to a full-size packet (MTU) and one that pads beyond it (MTU - 1)
    sizes = (0, 1, 15, 16, 17, 100, 555, 1300, MTU - 1 - udp_ip, MTU - udp_ip)
    for ctr, size in enumerate(sizes):
        pkt = inner_packet(inner, size)
        r = seal(wg, frame(pkt))
        assert r.retval == REDIRECT, wg.stats(PEER)
        out = Ether(r.data)
        ip = out.payload
        udp = ip[UDP]
        assert (ip.src, ip.dst) == OUTER[outer]
        assert (udp.sport, udp.dport) == (PORT, PEER_PORT)
        msg = bytes(udp.payload)
        # the independent implementation: same key, counter, nonce layout, padding
        assert msg == wire.seal(SEND, REMOTE_IDX, ctr, pkt, MTU)
        assert len(msg) == 32 + min(len(pkt) + (-len(pkt) % 16), MTU)
        assert ChaCha20Poly1305(SEND).decrypt(wire.nonce(ctr), msg[16:], b"") == wire.padded(pkt, MTU)
        # headers the kernel accepts: lengths, IPv4 header checksum, UDP checksum
        if outer == 4:
            assert ip.len == len(r.data) - 14 and udp.chksum == 0
            again = IP(r.data[14:])
            del again.chksum
            assert IP(bytes(again)).chksum == ip.chksum
        else:
            assert ip.plen == len(r.data) - 14 - 40
            fresh = UDP(sport=udp.sport, dport=udp.dport) / Raw(msg)
            expect = IPv6(bytes(IPv6(src=ip.src, dst=ip.dst) / fresh))[UDP].chksum
            assert udp.chksum == expect
    st = wg.stats(PEER)
    assert st["tx_packets"] == len(sizes) and st["tx_bytes"] == sum(
        32 + min(n + (-n % 16), MTU) for n in (len(inner_packet(inner, s)) for s in sizes))
    assert st["last_data_tx_ns"] > 0 and wg.peer_state(PEER).send_counter == len(sizes)


def test_keepalive_is_an_empty_message_with_the_next_counter(wg):
    set_outer(wg, 4)
    assert seal(wg, frame(inner_packet(4, 10))).retval == REDIRECT        # counter 0
    ka = wg.keepalive(PEER)
    assert ka == wire.seal(SEND, REMOTE_IDX, 1, b"")
    assert len(ka) == wire.MIN_LEN
    st = wg.stats(PEER)
    assert st["keepalive_tx"] == 1 and st["tx_packets"] == 2
    assert wg.keepalive(OTHER) is None                                  # no keypair


def test_cryptokey_routing_picks_the_longest_prefix(wg):
    set_outer(wg, 4)
    wg.add_peer(7)
    wg.allow(7, ipaddress.ip_network("10.9.1.0/24"))
    # 10.9.1.1 belongs to peer 7 (longer prefix), which has no keypair
    assert seal(wg, frame(inner_packet(4, 10, dst="10.9.1.1"))).retval == SHOT
    assert wg.stats(7)["no_key"] == 1
    assert seal(wg, frame(inner_packet(4, 10, dst="10.9.2.1"))).retval == REDIRECT
    assert seal(wg, frame(inner_packet(4, 10, dst="10.10.0.1"))).retval == SHOT
    assert wg.stats(bdp.NO_PEER_ROW)["no_route"] == 1


def test_no_keypair_drops_and_asks_for_a_handshake_once_a_second(wg):
    events = []
    with RingBuffer(wg.obj.map("events"), lambda raw: events.append(bdp.parse_event(raw))) as rb:
        for _ in range(3):
            assert seal(wg, frame(inner_packet(4, 10, dst="10.7.0.9"))).retval == SHOT
        rb.consume()
    assert [e.peer_id for e in events] == [OTHER]
    st = wg.stats(OTHER)
    assert st["no_key"] == 3 and st["events"] == 1 and st["tx_packets"] == 0


def test_what_cannot_be_sealed_never_leaves(wg):
    set_outer(wg, 4)
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.8.0.2"))
    tagged = bytes(Ether() / Dot1Q(vlan=5) / IP(bytes(inner_packet(4, 10))))
    prio = bytes(Ether() / Dot1Q(vlan=0) / IP(bytes(inner_packet(4, 10))))
    for f in (arp, tagged, prio):
        assert seal(wg, f).retval == SHOT
    st = wg.stats(bdp.NO_PEER_ROW)
    assert st["unsupported"] == 1 and st["tagged"] == 2
    # no endpoint: dropped, counted
    wg.forget_peer(PEER)
    wg.add_peer(PEER)
    wg.install_keypair(PEER, 99, 98, SEND, RECV, True)
    assert seal(wg, frame(inner_packet(4, 10))).retval == SHOT
    assert wg.stats(PEER)["no_endpoint"] == 1


def test_send_counter_stops_at_reject_after_messages(wg):
    set_outer(wg, 4)
    wg.set_send_counter(LOCAL_IDX, wire.REJECT_AFTER_MESSAGES - 1)
    r = seal(wg, frame(inner_packet(4, 10)))
    assert r.retval == REDIRECT
    assert bytes(Ether(r.data)[UDP].payload)[8:16] == struct.pack("<Q", wire.REJECT_AFTER_MESSAGES - 1)
    for _ in range(2):
        assert seal(wg, frame(inner_packet(4, 10))).retval == SHOT
        assert wg.keepalive(PEER) is None
    assert wg.stats(PEER)["counter_exhausted"] == 4


def test_a_keypair_is_refused_at_reject_after_time_without_a_daemon(wg):
    """REJECT_AFTER_TIME in BPF: sealing, keepalives and opening stop once
    the keypair is 180 s old, whoever (if anyone) was to expire it."""
    set_outer(wg, 4)
    now = time.monotonic_ns()
    wg.set_created(LOCAL_IDX, now - (wire.REJECT_AFTER_TIME_NS - 30 * 10**9))
    assert seal(wg, frame(inner_packet(4, 10))).retval == REDIRECT        # 150 s old: fine
    assert open_(wg, from_peer(peer_message(inner_packet(4, 10, src=INNER[4][1], dst=INNER[4][0]), 0))
                 ).retval == REDIRECT
    wg.set_created(LOCAL_IDX, now - wire.REJECT_AFTER_TIME_NS)
    assert seal(wg, frame(inner_packet(4, 10))).retval == SHOT
    assert wg.keepalive(PEER) is None
    assert open_(wg, from_peer(peer_message(inner_packet(4, 10, src=INNER[4][1], dst=INNER[4][0]), 1))
                 ).retval == SHOT
    st = wg.stats(PEER)
    assert st["key_expired"] == 2 and st["auth_failed"] == 0 and st["events"] == 1
    # a creation time from the future is no way around it
    wg.set_created(LOCAL_IDX, now + 10**9)
    assert seal(wg, frame(inner_packet(4, 10))).retval == SHOT


# ---------------------------------------------------------------- opening

@pytest.mark.parametrize("outer", [4, 6])
@pytest.mark.parametrize("inner", [4, 6])
def test_open_delivers_the_inner_packet_byte_for_byte(wg, outer, inner):
    for ctr, size in enumerate((0, 1, 15, 16, 100, 1300)):
        pkt = inner_packet(inner, size, src=INNER[inner][1], dst=INNER[inner][0])
        r = open_(wg, from_peer(peer_message(pkt, ctr), outer))
        assert r.retval == REDIRECT, wg.stats(PEER)
        eth = Ether(r.data[:14])
        assert (eth.dst, eth.src) == (str_mac(WG_MAC), str_mac(PAIR_MAC))
        assert eth.type == (0x0800 if inner == 4 else 0x86DD)
        assert r.data[14:] == pkt                   # padding and tag gone
    st = wg.stats(PEER)
    assert st["rx_packets"] == 6 and st["last_data_rx_ns"] > 0
    # roaming: the endpoint is where authenticated messages come from
    assert wg.endpoint(PEER) == (OUTER[outer][1], PEER_PORT)


def test_keepalive_is_consumed_and_counted(wg):
    r = open_(wg, from_peer(peer_message(b"", 0)))
    assert r.retval == SHOT
    st = wg.stats(PEER)
    assert st["keepalive_rx"] == 1 and st["rx_packets"] == 1 and st["last_rx_ns"] > 0
    assert st["last_data_rx_ns"] == 0 and st["auth_failed"] == 0


def test_handshake_messages_pass_to_the_daemon_and_other_traffic_is_untouched(wg):
    for t, n in ((1, 148), (2, 92), (3, 64)):
        assert open_(wg, from_peer(struct.pack("<I", t) + os.urandom(n - 4))).retval == OK
    # not ours (another port: maybe another interface's, whose filter must
    # still run; not UDP): TC_ACT_UNSPEC, the next filter decides
    assert open_(wg, from_peer(peer_message(inner_packet(4, 10), 0), dport=PORT + 1)).retval == UNSPEC
    assert open_(wg, bytes(Ether() / IP(dst="192.0.2.1") / ICMP())).retval == UNSPEC
    # an unknown type to our port: dropped
    assert open_(wg, from_peer(struct.pack("<I", 5) + bytes(60))).retval == SHOT
    assert open_(wg, from_peer(struct.pack("<I", 0x104) + bytes(60))).retval == SHOT
    assert wg.stats(bdp.NO_PEER_ROW)["malformed"] == 2


def test_replays_are_dropped_and_the_window_is_wireguards(wg):
    pkt = inner_packet(4, 10, src="10.8.0.2", dst="10.8.0.1")
    msgs = {c: from_peer(peer_message(pkt, c)) for c in (0, 1, 3, 2, 9000, 1000, 872, 871)}
    verdicts = {c: open_(wg, m).retval for c, m in msgs.items()}
    # 1000 is 8000 behind 9000 (inside the 8128 window), 871 is 8129 behind
    assert verdicts == {0: REDIRECT, 1: REDIRECT, 3: REDIRECT, 2: REDIRECT, 9000: REDIRECT,
                        1000: REDIRECT, 872: REDIRECT, 871: SHOT}
    for c in (0, 1, 2, 3, 9000, 1000, 872):
        assert open_(wg, msgs[c]).retval == SHOT
    st = wg.stats(PEER)
    assert st["replayed"] == 8 and st["rx_packets"] == 7


def test_counter_at_reject_after_messages_is_refused(wg):
    pkt = inner_packet(4, 10, src="10.8.0.2", dst="10.8.0.1")
    c = wire.REJECT_AFTER_MESSAGES
    msg = struct.pack("<IIQ", 4, LOCAL_IDX, c) + ChaCha20Poly1305(RECV).encrypt(
        wire.nonce(c), wire.padded(pkt), b"")
    assert open_(wg, from_peer(msg)).retval == SHOT
    assert open_(wg, from_peer(peer_message(pkt, c - 1))).retval == REDIRECT
    assert wg.stats(PEER)["replayed"] == 1


def test_every_bit_flip_is_dropped(wg):
    pkt = inner_packet(4, 40, src="10.8.0.2", dst="10.8.0.1")
    msg = peer_message(pkt, 7)
    for i in range(len(msg)):
        for bit in (0, 7):
            bad = bytearray(msg)
            bad[i] ^= 1 << bit
            assert open_(wg, from_peer(bytes(bad))).retval != REDIRECT, (i, bit)
    st, nope = wg.stats(PEER), wg.stats(bdp.NO_PEER_ROW)
    # header bits: type (malformed), index (unknown_key); counter and body: the tag
    assert st["rx_packets"] == 0
    assert st["auth_failed"] == 2 * (len(msg) - 8)
    assert nope["malformed"] + nope["unknown_key"] == 16
    assert open_(wg, from_peer(msg)).retval == REDIRECT       # the original still opens once


def test_truncations_are_dropped(wg):
    pkt = inner_packet(4, 40, src="10.8.0.2", dst="10.8.0.1")
    msg = peer_message(pkt, 0)
    for n in range(len(msg)):
        assert open_(wg, from_peer(msg[:n])).retval == SHOT, n
    st, nope = wg.stats(PEER), wg.stats(bdp.NO_PEER_ROW)
    assert st["rx_packets"] == 0
    assert nope["malformed"] == 32 and st["auth_failed"] == len(msg) - 32


def test_wrong_index_and_wrong_key_are_dropped(wg):
    pkt = inner_packet(4, 10, src="10.8.0.2", dst="10.8.0.1")
    assert open_(wg, from_peer(peer_message(pkt, 0, idx=LOCAL_IDX + 1))).retval == SHOT
    assert wg.stats(bdp.NO_PEER_ROW)["unknown_key"] == 1
    assert open_(wg, from_peer(peer_message(pkt, 0, key=SEND))).retval == SHOT
    assert wg.stats(PEER)["auth_failed"] == 1
    # reflected: our own message back to us names the peer's index
    set_outer(wg, 4)
    r = seal(wg, frame(inner_packet(4, 10)))
    reflected = bytes(Ether(r.data)[UDP].payload)
    assert open_(wg, from_peer(reflected)).retval == SHOT
    assert wg.stats(bdp.NO_PEER_ROW)["unknown_key"] == 2
    # an expired keypair: its index is gone
    wg.expire_keypair(LOCAL_IDX)
    assert open_(wg, from_peer(peer_message(pkt, 1))).retval == SHOT
    assert wg.stats(bdp.NO_PEER_ROW)["unknown_key"] == 3


def test_inner_source_outside_allowed_ips_is_dropped(wg):
    for src in ("10.7.0.1", "10.8.0.3", "192.0.2.2"):      # another peer's, nobody's
        pkt = inner_packet(4, 10, src=src, dst="10.8.0.1")
        assert open_(wg, from_peer(peer_message(pkt, 0 if src == "10.7.0.1" else
                                                {"10.8.0.3": 1, "192.0.2.2": 2}[src]))).retval == SHOT
    pkt6 = inner_packet(6, 10, src="fd08::3", dst="fd08::1")
    assert open_(wg, from_peer(peer_message(pkt6, 3))).retval == SHOT
    assert wg.stats(PEER)["not_allowed"] == 4
    # garbage that authenticates (the peer's own bug) is not an IP packet: dropped
    assert open_(wg, from_peer(peer_message(b"\x00" * 40, 4))).retval == SHOT
    assert wg.stats(PEER)["malformed"] == 1


MAX_TAGS = 8        # FRAME_MAX_TAGS
TAG_KINDS = {"vid0": (0, False), "vid5": (5, False), "802.1ad-outer": (0, True)}


def tagged(frame: bytes, n: int, vid: int, outer_ad: bool) -> bytes:
    """`frame` behind n VLAN tags (as TC sees them when left in the frame)."""
    e = Ether(frame[:14])
    pkt = Ether(src=e.src, dst=e.dst)
    for i in range(n):
        pkt = pkt / (Dot1AD(vlan=vid) if outer_ad and i == 0 else Dot1Q(vlan=vid))
    return bytes(pkt / (IP(frame[14:]) if frame[14] >> 4 == 4 else IPv6(frame[14:])))


@pytest.mark.parametrize("kind", TAG_KINDS)
def test_fail_closed_behind_tags_in_both_directions(wg, kind):
    """Up to FRAME_MAX_TAGS tags: seen, dropped (`tagged`); beyond: the
    classifier cannot see, dropped (`unparsed`). Never opened for wg0,
    never sent in clear."""
    set_outer(wg, 4)
    vid, outer_ad = TAG_KINDS[kind]
    pkt = inner_packet(4, 10, src="10.8.0.2", dst="10.8.0.1")
    for n in range(1, MAX_TAGS + 2):
        assert open_(wg, tagged(from_peer(peer_message(pkt, n)), n, vid, outer_ad)).retval == SHOT, n
        assert seal(wg, tagged(frame(inner_packet(4, 10)), n, vid, outer_ad)).retval == SHOT, n
    nope = wg.stats(bdp.NO_PEER_ROW)
    assert nope["tagged"] == 2 * MAX_TAGS and nope["unparsed"] == 2
    st = wg.stats(PEER)
    assert st["rx_packets"] == st["tx_packets"] == 0
    # untagged, the same traffic goes through
    assert open_(wg, from_peer(peer_message(pkt, 0))).retval == REDIRECT


def test_fail_closed_ip_shapes(wg):
    """Outer shapes the classifier refuses, or that cannot be a whole
    message, are never opened."""
    pkt = inner_packet(4, 10, src="10.8.0.2", dst="10.8.0.1")
    good = from_peer(peer_message(pkt, 0))
    ip = IP(good[14:])
    bad_csum = bytes(Ether() / IP(bytes(ip)[:10] + b"\x00\x01" + bytes(ip)[12:]))
    cut = IP(bytes(ip))
    cut.len = 40                    # the message cut short by the IP length
    del cut.chksum
    short = bytes(Ether() / cut)
    first = IP(src=ip.src, dst=ip.dst, flags="MF", proto=17) / bytes(ip.payload)[:64]
    v6_frag = bytes(Ether() / IPv6(src=OUTER[6][1], dst=OUTER[6][0]) / IPv6ExtHdrFragment(m=1) /
                    bytes(UDP(sport=PEER_PORT, dport=PORT) / Raw(peer_message(pkt, 1)))[:64])
    # nothing is opened for wg0 (the only way in is the redirect); a cut
    # message is dropped and counted; a header the kernel refuses and
    # fragments are left to the stack, which drops them or reassembles
    # them for the daemon's socket (that takes handshake messages only;
    # UNSPEC: left to the next filter, then the stack)
    for f in (short, bytes(Ether() / first), v6_frag, bad_csum):
        assert open_(wg, f).retval in (OK, SHOT, UNSPEC)
    assert open_(wg, short).retval == SHOT
    assert wg.stats(PEER)["rx_packets"] == 0
    assert wg.stats(bdp.NO_PEER_ROW)["malformed"] >= 2
    assert open_(wg, good).retval == REDIRECT


def test_responder_keypair_becomes_current_on_first_authenticated_receive(wg):
    set_outer(wg, 4)
    k_send, k_recv = os.urandom(32), os.urandom(32)
    wg.install_keypair(PEER, 777, 888, k_send, k_recv, initiator=False)
    assert wg.slots(PEER)["next"] == 777 and wg.slots(PEER)["current"] == LOCAL_IDX
    # still sending under the current one
    r = seal(wg, frame(inner_packet(4, 10)))
    assert bytes(Ether(r.data)[UDP].payload)[4:8] == struct.pack("<I", REMOTE_IDX)
    # a forgery under 777 promotes nothing
    pkt = inner_packet(4, 10, src="10.8.0.2", dst="10.8.0.1")
    assert open_(wg, from_peer(peer_message(pkt, 0, key=os.urandom(32), idx=777))).retval == SHOT
    assert wg.slots(PEER)["next"] == 777
    assert open_(wg, from_peer(peer_message(pkt, 0, key=k_recv, idx=777))).retval == REDIRECT
    slots = wg.slots(PEER)
    assert (slots["current"], slots["previous"], slots["next"]) == (777, LOCAL_IDX, 0)
    out = inner_packet(4, 10)
    r = seal(wg, frame(out))
    assert bytes(Ether(r.data)[UDP].payload) == wire.seal(k_send, 888, 0, out)
    # the previous keypair still opens (packets in flight)
    assert open_(wg, from_peer(peer_message(pkt, 5))).retval == REDIRECT


def test_initiator_rotation_wipes_what_falls_out(wg):
    wg.install_keypair(PEER, 2, 3, os.urandom(32), os.urandom(32), initiator=True)
    wg.install_keypair(PEER, 4, 5, os.urandom(32), os.urandom(32), initiator=True)
    s = wg.slots(PEER)
    assert (s["current"], s["previous"], s["next"]) == (4, 2, 0)
    assert wg.keypair(LOCAL_IDX) is None and wg.keypair(2) is not None
