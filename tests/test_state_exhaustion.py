"""State exhaustion: floods from many spoofed IPv4 sources against every map
a sender holding no key can make grow or churn, through BPF_PROG_TEST_RUN
(docs/abuse.md has the map-by-map list and the numbers).

- crypto-ratelimit `buckets` (LRU, POW_MAX_SOURCES): every source to a
  protected port gets a bucket, so a spoofed flood fills the map and evicts
  the least recently used. Shown: a source that keeps sending keeps its
  bucket (and, under attack, its "verified" mark) through a flood of more
  sources than the map holds; an idle one is evicted and starts again (a
  full bucket in normal mode; a new puzzle under attack): the bound.
- zkp-filter `authorized`, `used_challenges`: written only for a valid
  proof. Shown: a flood of HELLOs and forged PROOFs leaves both empty, and a
  legitimate client authorizes during it.
- pki-validator `clients` (LRU, 4096): written for a CERT that verifies up
  to an anchor and carries its source's challenge, so only addresses that
  receive replies count; certificates are public, so such a sender needs
  no key. Shown (the test knows the challenge key, so it plays thousands
  of such addresses): an authorized client keeps its access, a client
  that keeps exchanging completes, an idle half-done exchange is evicted
  and must start again.
- encrypted-tunnel replay windows: moved only after the AEAD tag under the
  peer's key verified. Shown: forged tunnel packets from the peer's address
  with counters far ahead leave the window where it was, and the peer's
  genuine packets still open.
The objects are set up by the fuzzing targets (tests/fuzz/), which hold the
keys and build the valid frames."""

from __future__ import annotations

import ipaddress
import random
import socket

import pytest

from cryptbpf.programs.crypto_ratelimit import SPEC as RL_SPEC, client as pc, control as cr
from cryptbpf.programs.pki_validator import SPEC as PKI_SPEC
from cryptbpf.programs.zkp_filter import SPEC as ZKP_SPEC, client as zc

from conftest import require_feature, require_root
from fuzz import load_target
from fuzz.engine import with_source
from xdp_frames import XDP_DROP, XDP_PASS, XDP_TX, udp_frame

LEGIT = "192.0.2.10"


def spoofed(n: int, seed: int = 1):
    """n distinct addresses in 10.0.0.0/8, in random order."""
    rng = random.Random(seed)
    for i in rng.sample(range(1, 1 << 24), n):
        yield str(ipaddress.IPv4Address((10 << 24) | i))


def _require(spec):
    require_root()
    for f in spec.requires:
        require_feature(f)


def _entries(obj, name: str) -> int:
    return sum(1 for _ in obj.map(name).keys())


@pytest.fixture
def ratelimit():
    _require(RL_SPEC)
    with load_target("crypto_ratelimit") as t:
        # a budget the legitimate source below stays within
        cr.configure_limits(t.obj, rate=100_000, burst=1000, max_challenges=2)
        yield t


def _admit(t, src: str) -> None:
    """Solve a challenge for src (as the real client would)."""
    slot = pc_slot()
    chal = {"difficulty": 4, "slot": slot, "challenge": pc.compute_challenge(t.server_key, src, slot, 4)}
    nonce, _ = pc.solve(chal["challenge"], 4)
    assert t.verdict(udp_frame(pc.solution_message(chal, nonce), 5353, src=src)) == XDP_TX


def pc_slot() -> int:
    from cryptbpf.programs.zkp_filter.control import boot_ns
    return boot_ns() // (30 * 10**9)


@pytest.mark.host_only(reason="70,000 BPF_PROG_TEST_RUN calls: a long flood under emulation")
@pytest.mark.parametrize("under_attack", [0, 1], ids=["normal", "under-attack"])
def test_ratelimit_buckets_flood_keeps_active_sources(ratelimit, under_attack):
    t = ratelimit
    cr.configure_limits(t.obj, under_attack=under_attack)
    size = t.obj.map("buckets").max_entries
    idle = "192.0.2.99"
    for src in (LEGIT, idle):
        _admit(t, src)
    query = udp_frame(b"query", 5353)
    data = lambda src: with_source(query, src)
    assert t.verdict(data(LEGIT)) == t.verdict(data(idle)) == XDP_PASS
    flood, legit_every = size + size // 16, 500
    legit = []
    for i, src in enumerate(spoofed(flood)):
        # spoofed: a full bucket (normal) or a challenge to the spoofed address (under attack)
        t.verdict(data(src))
        if i % legit_every == 0:
            legit.append(t.verdict(data(LEGIT)))
    s = RL_SPEC.stats(t.obj)
    assert legit == [XDP_PASS] * len(legit)               # the active source never noticed
    assert _entries(t.obj, "buckets") <= size             # the LRU bound
    if under_attack:
        assert s["challenged"] >= flood                     # one challenge per spoofed source
        # the idle source lost its entry, and with it its "verified" mark: challenged again
        assert t.verdict(data(idle)) == XDP_TX
        _admit(t, idle)
    assert t.verdict(data(idle)) == XDP_PASS


@pytest.fixture
def zkp():
    _require(ZKP_SPEC)
    with load_target("zkp_filter") as t:
        yield t


def test_zkp_flood_of_hellos_and_forged_proofs_leaves_no_state(zkp):
    t, rng = zkp, random.Random(7)
    flood = 20_000
    hello = udp_frame(zc.pack("hello", client_nonce=rng.randbytes(16)), 7227)
    forged = udp_frame(zc.pack("proof", key_id=7, slot=pc_slot(), client_nonce=rng.randbytes(16),
                               challenge=rng.randbytes(32), proof=rng.randbytes(32)), 7227)
    for src in spoofed(flood, seed=2):
        assert t.verdict(with_source(hello, src)) == XDP_TX
        t.verdict(with_source(forged, src))
    s = ZKP_SPEC.stats(t.obj)
    assert s["hellos"] == flood and s["bad_challenge"] == flood and s["accepted"] == 0
    assert _entries(t.obj, "authorized") == _entries(t.obj, "used_challenges") == 0
    # a legitimate client still gets in
    nonce, slot = rng.randbytes(16), pc_slot()
    chal = {"client_nonce": nonce, "slot": slot,
            "challenge": zc.compute_challenge(t.server_key, LEGIT, slot, nonce)}
    assert t.verdict(udp_frame(zc.proof_message(chal, t.verifier, LEGIT, 7), 7227, src=LEGIT)) == XDP_TX
    assert t.verdict(udp_frame(b"app", 2222, src=LEGIT)) == XDP_PASS
    assert _entries(t.obj, "authorized") == _entries(t.obj, "used_challenges") == 1


@pytest.fixture
def pki():
    _require(PKI_SPEC)
    with load_target("pki_validator") as t:
        yield t


def _pki_step(t, src: str, rng, restart: bool = False) -> int:
    """The next message of src's exchange (tests/fuzz/pki_validator.py's
    sender), through the program."""
    return t.verdict(udp_frame(t.valid_for(src, rng, restart), 7443, src=src))


@pytest.mark.host_only(reason="5000 certificate verifications in BPF: a long flood under emulation")
def test_pki_clients_flood_from_receiving_addresses(pki):
    t, rng = pki, random.Random(3)
    size = t.obj.map("clients").max_entries
    t.paths = [t.paths[0]]                      # intermediate + leaf: a two-step exchange
    done, busy, idle = "192.0.2.1", "192.0.2.2", "192.0.2.3"
    for _ in range(4):                          # HELLO, CA, leaf, PROOF
        assert _pki_step(t, done, rng) == XDP_TX
    for src in (busy, idle):
        for _ in range(2):                      # HELLO, CA: half done
            assert _pki_step(t, src, rng) == XDP_TX
    # the flood: the intermediate's CERT from addresses that got their challenge
    ca = t.paths[0][0].der
    from cryptbpf.programs.zkp_filter.control import boot_ns
    slot, nonce = boot_ns() // (30 * 10**9), bytes(16)
    template = udp_frame(t.msg(3, slot, nonce, bytes(32), flags=1, body=ca), 7443)
    flood, verdicts = size + size // 4, []
    for i, src in enumerate(spoofed(flood, seed=4)):
        f = bytearray(with_source(template, src))
        f[42 + 28:42 + 60] = t.challenge(socket.inet_aton(src), slot, nonce)
        verdicts.append(t.verdict(bytes(f)))
        if i == flood // 2:                     # the busy client sends its leaf mid-flood
            assert _pki_step(t, busy, rng) == XDP_TX
    assert verdicts == [XDP_TX] * flood         # each one a verified chain step
    assert _entries(t.obj, "clients") <= size
    assert _pki_step(t, busy, rng) == XDP_TX                           # PROOF: authorized
    app = lambda src: t.verdict(udp_frame(b"app", 2443, src=src))
    assert app(done) == app(busy) == XDP_PASS
    before = PKI_SPEC.stats(t.obj)["untrusted"]
    assert _pki_step(t, idle, rng) == XDP_DROP                          # its CA step was evicted:
    assert PKI_SPEC.stats(t.obj)["untrusted"] == before + 1             # the leaf has no issuer
    for step in range(4):                                               # and it starts again
        assert _pki_step(t, idle, rng, restart=step == 0) == XDP_TX
    assert app(idle) == XDP_PASS


def test_tunnel_forged_flood_does_not_move_the_replay_window(load_object):
    from scapy.layers.inet import ICMP, IP

    from cryptbpf.programs.encrypted_tunnel import control as ct, wire
    from test_encrypted_tunnel import A, B, TC_OK, TC_SHOT, ingress, py_seal, require_suite
    require_root()
    require_suite(wire.CHACHA)
    obj = load_object("encrypted_tunnel")
    obj.secret, obj.suite = random.Random(5).randbytes(32), wire.CHACHA
    peer = ct.add_peer(obj, B, A, obj.secret, wire.CHACHA)
    pkt = bytes(IP(src=B, dst=A) / ICMP() / b"genuine")
    assert ingress(obj, py_seal(obj, pkt, 7)).retval == TC_OK
    top = ct.rx_state(obj, peer)[0]["top"]
    forged, rng, flood = bytearray(py_seal(obj, pkt, 8)), random.Random(6), 20_000
    for _ in range(flood):                      # counters up to 2^63 ahead, tags that cannot match
        forged[24:32] = rng.getrandbits(63).to_bytes(8, "big")
        assert ingress(obj, bytes(forged)).retval == TC_SHOT
    st = ct.peer_stats(obj, peer.index)
    assert st["auth_failed"] == flood and st["rx_packets"] == 1
    assert ct.rx_state(obj, peer)[0]["top"] == top            # the window did not move
    assert ingress(obj, py_seal(obj, pkt, 9)).retval == TC_OK  # the peer carries on
