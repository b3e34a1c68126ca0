"""crypto_ratelimit: token buckets, proof-of-work challenges and their
verification through BPF_PROG_TEST_RUN (replies checked with scapy, puzzles
and challenges with hashlib/hmac), and the real client between two network
namespaces."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from cryptbpf.bpf import attach
from cryptbpf import lifecycle, netns
from cryptbpf.programs.crypto_ratelimit import client as pc
from cryptbpf.bpf.object import BpfObject
from cryptbpf.bpf.pins import Pinned
from cryptbpf.programs.crypto_ratelimit import SPEC, control as cr

from conftest import TEST_OBJ_DIR, require_feature, system_snapshot, udp_echo
from xdp_frames import CLIENT, SERVER, XDP_DROP, XDP_PASS, XDP_TX, check_reply, udp_frame

PORT = 5353
SLOT_S = 30
D = 4          # min = max difficulty in most tests


@pytest.fixture
def rl(load_object):
    for f in SPEC.requires:
        require_feature(f)
    obj = load_object("crypto_ratelimit")
    obj.server_key = os.urandom(32)
    cr.install_server_key(obj, obj.server_key)
    cr.configure_limits(obj, rate=1, burst=3, min_difficulty=D, max_difficulty=D)
    cr.protect(obj, PORT)
    return obj


def run(obj, frame: bytes):
    return obj.program("crypto_ratelimit").test_run(data=frame)


def stats(obj) -> dict:
    return SPEC.stats(obj)


def nonzero(obj) -> dict:
    return {k: v for k, v in stats(obj).items() if v}


def now_slot() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // (SLOT_S * 10**9)


def data(payload=b"query", src=CLIENT) -> bytes:
    return udp_frame(payload, PORT, src=src)


def spend(obj, n: int, src=CLIENT):
    for _ in range(n):
        f = data(src=src)
        res = run(obj, f)
        assert res.retval == XDP_PASS and res.data == f


def challenge(obj, src=CLIENT, payload=b"query") -> dict:
    req = data(payload, src)
    res = run(obj, req)
    assert res.retval == XDP_TX
    m = pc.unpack(check_reply(res.data, req))
    assert m is not None and m["type"] == 1
    return m


def solution(obj, chal: dict, nonce: bytes, src=CLIENT):
    req = udp_frame(pc.solution_message(chal, nonce), PORT, src=src)
    return run(obj, req), req


def nonce_with_exactly(chal: bytes, zeros: int) -> bytes:
    n = int.from_bytes(os.urandom(4), "big")
    while True:
        nonce = n.to_bytes(8, "big")
        if pc.leading_zero_bits(pc.pow_digest(chal, nonce)) == zeros:
            return nonce
        n += 1


def made_challenge(obj, d: int, src=CLIENT, slot=None) -> dict:
    slot = now_slot() if slot is None else slot % 2**32
    return {"slot": slot, "difficulty": d,
            "challenge": pc.compute_challenge(obj.server_key, src, slot, d)}


# ------------------------------------------------------------ buckets

def test_within_budget_passes_untouched_then_challenged(rl):
    spend(rl, 3)
    m = challenge(rl)
    assert m["difficulty"] == D and m["slot"] in (now_slot(), now_slot() - 1)
    assert m["challenge"] == pc.compute_challenge(rl.server_key, CLIENT, m["slot"], D)
    assert m["nonce"] == bytes(8) and m["tokens"] == 0
    assert nonzero(rl) == {"passed": 3, "challenged": 1}


@pytest.mark.parametrize("size", [0, 1, 55, 56, 57, 300, 1400])
def test_challenge_reply_resized_from_any_request_size(rl, size):
    spend(rl, 3)
    req = data(random.Random(size).randbytes(size))   # fixed: a test never skips by chance
    assert req[42:46] != pc.pack("challenge")[:4]       # not a PoW message
    res = run(rl, req)
    assert res.retval == XDP_TX
    m = pc.unpack(check_reply(res.data, req))
    assert m["challenge"] == pc.compute_challenge(rl.server_key, CLIENT, m["slot"], D)


def test_buckets_are_per_source(rl):
    spend(rl, 3, "10.9.0.1")
    spend(rl, 3, "10.9.0.7")
    challenge(rl, "10.9.0.1")


def test_tokens_refill_at_the_configured_rate(rl):
    cr.configure_limits(rl, rate=2, burst=1)
    spend(rl, 1)
    challenge(rl)
    time.sleep(0.55)                 # one token per 500 ms
    spend(rl, 1)
    challenge(rl)


def test_valid_solution_refills_bucket_and_is_admitted(rl):
    spend(rl, 3)
    m = challenge(rl)
    nonce, _ = pc.solve(m["challenge"], m["difficulty"])
    res, req = solution(rl, m, nonce)
    assert res.retval == XDP_TX
    adm = pc.unpack(check_reply(res.data, req))
    assert adm["type"] == 3 and adm["tokens"] == 3 and adm["nonce"] == nonce
    spend(rl, 3)
    challenge(rl)
    assert stats(rl)["solved"] == 1
    assert cr.sources(rl)[0]["solved"] == 1


def test_wrong_pow_is_dropped(rl):
    spend(rl, 3)
    m = challenge(rl)
    res, _ = solution(rl, m, nonce_with_exactly(m["challenge"], 0))
    assert res.retval == XDP_DROP and stats(rl)["bad_pow"] == 1
    challenge(rl)                                   # still over budget


def test_replayed_pow_is_dropped(rl):
    spend(rl, 3)
    m = challenge(rl)
    nonce, _ = pc.solve(m["challenge"], D)
    assert solution(rl, m, nonce)[0].retval == XDP_TX
    spend(rl, 3)
    assert solution(rl, m, nonce)[0].retval == XDP_DROP
    assert stats(rl)["replayed"] == 1
    challenge(rl)


def test_pow_for_another_address_is_dropped(rl):
    spend(rl, 3, "10.9.0.1")
    m = challenge(rl, "10.9.0.1")
    nonce, _ = pc.solve(m["challenge"], D)
    res, _ = solution(rl, m, nonce, src="10.9.0.66")
    assert res.retval == XDP_DROP and stats(rl)["bad_challenge"] == 1


@pytest.mark.parametrize("forge", ["random", "other-key", "lower-difficulty", "other-slot"])
def test_forged_challenge_is_dropped(rl, forge):
    spend(rl, 3)
    m = challenge(rl)
    if forge == "random":
        m["challenge"] = os.urandom(32)
    elif forge == "other-key":
        m["challenge"] = pc.compute_challenge(os.urandom(32), CLIENT, m["slot"], D)
    elif forge == "lower-difficulty":
        m["difficulty"] = 0      # the challenge was issued for D: claim less work
    else:
        m["slot"] = (m["slot"] - 1) % 2**32
    nonce, _ = pc.solve(m["challenge"], m["difficulty"])
    res, _ = solution(rl, m, nonce)
    assert res.retval == XDP_DROP and stats(rl)["bad_challenge"] == 1


def test_stale_challenge_is_dropped(rl):
    for slot in (now_slot() - 2, now_slot() + 3):
        m = made_challenge(rl, D, slot=slot)
        res, _ = solution(rl, m, pc.solve(m["challenge"], D)[0])
        assert res.retval == XDP_DROP
    assert stats(rl)["stale"] == 2
    m = made_challenge(rl, D, slot=now_slot() - 1)       # previous slot: still fine
    assert solution(rl, m, pc.solve(m["challenge"], D)[0])[0].retval == XDP_TX


@pytest.mark.parametrize("d", list(range(1, 15)))
def test_difficulty_boundary_is_exact_in_packets(rl, d):
    m = made_challenge(rl, d)
    res, _ = solution(rl, m, nonce_with_exactly(m["challenge"], d - 1))
    assert res.retval == XDP_DROP and stats(rl)["bad_pow"] == 1
    res, _ = solution(rl, m, nonce_with_exactly(m["challenge"], d))
    assert res.retval == XDP_TX and stats(rl)["solved"] == 1


def test_difficulty_zero_accepts_any_nonce(rl):
    m = made_challenge(rl, 0)
    assert solution(rl, m, nonce_with_exactly(m["challenge"], 0))[0].retval == XDP_TX


def test_difficulty_boundary_is_exact_for_every_difficulty(rl):
    """The data path's test (pow_meets) on digests with exactly k zero bits."""
    layout = cr._L
    prog = rl.program("check_difficulty")

    def meets(digest: bytes, d: int) -> bool:
        args = layout.pack("struct pow_zero_check", digest=digest, difficulty=d)
        return layout.unpack("struct pow_zero_check", prog.test_run(ctx=args).ctx)["ok"] == 1

    for k in list(range(0, 40)) + [255]:
        digest = ((1 << 255) >> k).to_bytes(32, "big")       # exactly k zero bits
        assert pc.leading_zero_bits(digest) == k
        for d in range(0, 33):
            assert meets(digest, d) == (k >= d), (k, d)
    assert meets(bytes(32), 32) and not meets(bytes(32), 33)


# ------------------------------------------------------------ policy

def test_under_attack_every_new_source_is_challenged(rl):
    cr.configure_limits(rl, under_attack=1)
    m = challenge(rl, "10.9.0.20")
    res, _ = solution(rl, m, pc.solve(m["challenge"], D)[0], src="10.9.0.20")
    assert res.retval == XDP_TX
    spend(rl, 3, "10.9.0.20")
    challenge(rl, "10.9.0.20")
    cr.configure_limits(rl, under_attack=0)
    spend(rl, 3, "10.9.0.21")


def test_request_is_answered_with_a_challenge_in_place(rl):
    req = udp_frame(pc.pack("request"), PORT)
    res = run(rl, req)
    assert res.retval == XDP_TX
    m = pc.unpack(check_reply(res.data, req))
    assert m["type"] == 1 and m["challenge"] == pc.compute_challenge(rl.server_key, CLIENT, m["slot"], D)
    assert len(res.data) == len(req)
    assert nonzero(rl) == {"requests": 1, "challenged": 1}


def test_challenges_per_source_are_bounded(rl):
    cr.configure_limits(rl, max_challenges=2)
    spend(rl, 3)
    challenge(rl)
    challenge(rl)
    res = run(rl, data())
    assert res.retval == XDP_DROP
    assert nonzero(rl) == {"passed": 3, "challenged": 2, "limited": 1}


def test_difficulty_adapts_to_load_within_bounds(rl):
    cr.configure_limits(rl, rate=10**6, burst=10**6, min_difficulty=4, max_difficulty=6,
                        load_high=20, load_low=5)
    layout, state_map = cr._L, rl.map("pow_state")

    def window_started(ago_ns: int):
        # the program's window is [window_start_ns, +1 s) of the boot-time
        # clock (track_load); the test, not the wall clock, says where it is
        st = layout.unpack("struct pow_state", state_map.lookup(0))
        st["window_start_ns"] = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - ago_ns
        state_map.update(0, layout.pack("struct pow_state", **st))

    def packet(i=0):
        run(rl, data(src=f"10.9.1.{i % 200 + 1}"))

    def burst(n):
        # every packet inside a window that has just started: however slow
        # the machine (an emulated guest runs 60 test runs for seconds), no
        # window closes during a burst -- only next_window() closes one
        for i in range(n):
            window_started(0)
            packet(i)

    def next_window(n_packets: int):
        # let 1.05 s pass for the program (its window started that long ago)
        # rather than sleeping: a loaded machine may oversleep past two windows
        window_started(1_050_000_000)
        packet()
        burst(n_packets - 1)

    packet()                        # opens the first window (its start was 0)
    assert cr.state(rl)["difficulty"] == 4
    burst(60)
    next_window(1)                  # ~60 packets/s > 20: up
    assert cr.state(rl)["difficulty"] == 5
    assert 50 < cr.state(rl)["load_pps"] < 62
    burst(60)
    next_window(1)
    assert cr.state(rl)["difficulty"] == 6
    burst(60)
    next_window(1)
    assert cr.state(rl)["difficulty"] == 6          # max bound
    next_window(1)                  # ~1 packet/s < 5: down
    assert cr.state(rl)["difficulty"] == 5
    assert cr.state(rl)["load_pps"] < 5
    s = stats(rl)
    assert (s["raised"], s["lowered"]) == (2, 1)
    cr.configure_limits(rl, rate=1, burst=1)
    window_started(0)
    spend(rl, 1, "10.9.9.9")
    window_started(0)
    assert challenge(rl, "10.9.9.9")["difficulty"] == 5   # new challenges ask for it
    # a long silence (more than two windows) counts as quiet
    window_started(5 * 10**9)
    packet()
    assert cr.state(rl)["difficulty"] == 4 and cr.state(rl)["load_pps"] == 0


def test_no_server_key_no_challenge(load_object):
    obj = load_object("crypto_ratelimit")
    cr.configure_limits(obj, rate=1, burst=1)
    cr.protect(obj, PORT)
    spend(obj, 1)
    assert run(obj, data()).retval == XDP_DROP and stats(obj)["no_key"] == 1


# ------------------------------------------------------------ malformed input

def test_pow_messages_of_every_wrong_length_are_dropped(rl):
    good = pc.solution_message(made_challenge(rl, D), bytes(8))
    for n in list(range(4, len(good))) + [len(good) + 1, 100]:
        res = run(rl, udp_frame((good * 2)[:n], PORT))
        assert res.retval == XDP_DROP, n
    assert nonzero(rl) == {"malformed": len(good) - 4 + 2}


@pytest.mark.parametrize("offset,value", [(4, 2), (5, 1), (5, 3), (5, 0), (6, 33), (6, 255), (7, 1)],
                         ids=["version", "type-challenge", "type-admit", "type-0", "difficulty-33",
                              "difficulty-255", "reserved"])
def test_pow_messages_with_bad_fields_are_dropped(rl, offset, value):
    m = made_challenge(rl, D)
    raw = bytearray(pc.solution_message(m, pc.solve(m["challenge"], D)[0]))
    raw[offset] = value
    assert run(rl, udp_frame(bytes(raw), PORT)).retval == XDP_DROP
    assert nonzero(rl) == {"malformed": 1}


@pytest.mark.parametrize("kind", ["data", "solution"])
def test_truncated_frames_of_every_length_are_dropped(rl, kind):
    if kind == "data":
        frame = data(b"x" * 30)
    else:
        m = made_challenge(rl, D)
        frame = udp_frame(pc.solution_message(m, pc.solve(m["challenge"], D)[0]), PORT)
    for n in range(14, len(frame)):
        assert run(rl, frame[:n]).retval == XDP_DROP, n
    assert nonzero(rl) == {"bad_l4": len(frame) - 14}


def test_other_traffic_is_untouched(rl):
    frames = [udp_frame(b"x", 53), bytes(Ether() / IP(src=CLIENT, dst=SERVER) / TCP(dport=PORT)),
              bytes(Ether() / ARP()), bytes(Ether() / IPv6() / UDP(dport=53) / b"v6"),
              bytes(Ether() / IP(src=CLIENT, dst=SERVER, frag=10, proto=17) / bytes(40))]
    for _ in range(5):                  # well over the burst
        for f in frames:
            res = run(rl, f)
            assert res.retval == XDP_PASS and res.data == f
    assert not any(stats(rl).values())


def test_ipv6_to_protected_port_is_dropped(rl):
    assert run(rl, bytes(Ether() / IPv6() / UDP(dport=PORT) / b"q")).retval == XDP_DROP
    assert nonzero(rl) == {"ipv6_dropped": 1}


# ------------------------------------------------------------ between namespaces

@pytest.fixture
def rl_between(veth_pair, request):
    for f in SPEC.requires:
        require_feature(f)
    mode = veth_pair.mode = request.param
    before = system_snapshot(veth_pair.ns_b, cr.NAME)
    peer = None
    if mode == "drv":
        peer = BpfObject.open(str(TEST_OBJ_DIR / "xdp_pass.bpf.o")).load()
        with netns.inside(veth_pair.ns_a):
            attach.xdp_attach(peer.program("xdp_pass").fd, peer.program("xdp_pass").id,
                              attach.ifindex(veth_pair.dev_a), "drv")
    lifecycle.load(SPEC, veth_pair.dev_b, netns=veth_pair.ns_b, xdp_mode=mode,
                   options={"protect": [str(PORT)], "rate": ["1"], "burst": ["2"],
                            "min_difficulty": ["10"], "max_difficulty": ["10"]})
    try:
        with udp_echo(veth_pair.ns_b, veth_pair.addr_b, PORT):
            yield veth_pair
    finally:
        lifecycle.unload(cr.NAME)
        if peer:
            peer.close()
    assert system_snapshot(veth_pair.ns_b, cr.NAME) == before


@pytest.mark.parametrize("rl_between", ["skb", "drv"], indirect=True)
def test_client_pays_transparently_between_namespaces(rl_between):
    v = rl_between
    with netns.inside(v.ns_a):
        c = pc.PowClient(v.addr_b, PORT, timeout=1.0)
    with c:
        replies = [c.request(f"q{i}".encode()) for i in range(5)]
    assert replies == [f"echo:q{i}".encode() for i in range(5)]
    assert c.stats.challenges >= 1 and c.stats.admitted == c.stats.challenges
    assert set(c.stats.difficulties) == {10}
    with Pinned(cr.NAME) as h:
        st = SPEC.status(h)
    # Where native XDP on veth has no tailroom (6.18), a 2-byte datagram
    # cannot grow into a challenge: XDP counts no_room and the client asks
    # for one explicitly; where it has room (6.1) XDP answers directly.
    grows = st["stats"]["no_room"] == 0
    if not grows:
        assert c.stats.requests >= 1
    if v.mode == "skb":
        assert grows
    assert st["difficulty"] == 10 and st["stats"]["solved"] == c.stats.challenges
    assert st["stats"]["passed"] == 5
    # a plain client that does not pay is cut off after its burst
    with netns.inside(v.ns_a):
        plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with plain:
        plain.settimeout(0.3)
        got = []
        for i in range(4):
            plain.sendto(b"free?", (v.addr_b, PORT))
            try:
                got.append(plain.recv(100))
            except socket.timeout:
                got.append(None)
    # the last answer is a challenge, not the service (or, where a 5-byte
    # datagram cannot grow into one, nothing)
    assert pc.unpack(got[-1])["type"] == 1 if grows else got[-1] is None
    # the CLI, in the client's namespace
    r = subprocess.run(["ip", "netns", "exec", v.ns_a, sys.executable, "-m", "cryptbpf.cli", "pow",
                        "send", v.addr_b, str(PORT), "hello", "--count", "4"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "sent 4, replies 4" in r.stdout and "solved difficulty 10 in" in r.stdout
