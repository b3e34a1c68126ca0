"""zkp_filter's Schnorr mode (RFC 8235 section 3 on P-256, verified in XDP):
proofs from an independent implementation accepted, the client's proofs
checked by it, every attack dropped and counted, the breach test (what the
server stores does not open the port in Schnorr mode, and does in HMAC
mode), and the exchange between two network namespaces with the real CLI.

The independent prover/verifier below uses plain Python integers for the
curve and `cryptography` for key material, and builds the hash input from
the byte table in bpf/include/zkp_filter.h by hand: it shares no code with
the client under test (cryptbpf.programs.zkp_filter.client)."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import secrets
import struct
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cryptbpf import lifecycle, netns
from cryptbpf.bpf.pins import Pinned
from cryptbpf.errors import CryptbpfError
from cryptbpf.programs.zkp_filter import SPEC, client as zc, control as zf

from conftest import require_feature, run_cli, system_snapshot, udp_echo, udp_echo_reachable
from xdp_frames import CLIENT, SERVER, XDP_DROP, XDP_PASS, XDP_TX, check_reply, tcp_frame, udp_frame

CTRL = 7227
PROTECTED = 2222
KEY_ID = 11
OTHER = "10.9.0.66"

# ---------------------------------------------------------------- independent P-256 (FIPS 186-4 D.1.2.3)

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
     0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)


def on_curve(pt) -> bool:
    x, y = pt
    return 0 <= x < P and 0 <= y < P and (y * y - x * x * x + 3 * x - B) % P == 0


def add(p1, p2):
    """Affine addition; None is the identity."""
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % P == 0:
        return None
    if p1 == p2:
        lam = (3 * x1 * x1 - 3) * pow(2 * y1, -1, P) % P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (lam * lam - x1 - x2) % P
    return x3, (lam * (x1 - x3) - y1) % P


def mul(k: int, pt):
    acc = None
    for bit in bin(k)[2:]:
        acc = add(acc, acc)
        if bit == "1":
            acc = add(acc, pt)
    return acc


def sec1(pt) -> bytes:
    return b"\x04" + pt[0].to_bytes(32, "big") + pt[1].to_bytes(32, "big")


def lp(item: bytes) -> bytes:
    """RFC 8235 section 2.2: every item prefixed with its 4-byte length."""
    return struct.pack(">I", len(item)) + item


def ind_c(V, A, key_id, challenge, client, server, port) -> int:
    other = (lp(b"cbzkp schnorr v1") + lp(challenge) + lp(ipaddress.IPv4Address(client).packed) +
             lp(ipaddress.IPv4Address(server).packed) + lp(struct.pack(">H", port)))
    data = lp(sec1(G)) + lp(sec1(V)) + lp(sec1(A)) + lp(struct.pack(">I", key_id)) + lp(other)
    assert len(data) == 297
    return int.from_bytes(hashlib.sha256(data).digest(), "big") % N


def ind_prove(a: int, key_id, challenge, client=CLIENT, server=SERVER, port=CTRL, c_delta=0):
    """(V, r) with V = v*G, r = v - a*c mod n; c_delta tampers with c."""
    A = mul(a, G)
    while True:
        v = secrets.randbelow(N - 1) + 1
        V = mul(v, G)
        r = (v - a * (ind_c(V, A, key_id, challenge, client, server, port) + c_delta)) % N
        if r:
            return V, r


def ind_verify(A, V, r, key_id, challenge, client=CLIENT, server=SERVER, port=CTRL) -> bool:
    if not (on_curve(A) and on_curve(V) and 1 <= r < N):
        return False
    c = ind_c(V, A, key_id, challenge, client, server, port)
    return add(mul(r, G), mul(c, A)) == V


def key_material(key: ec.EllipticCurvePrivateKey):
    """(a, A) from `cryptography`."""
    pub = key.public_key().public_numbers()
    return key.private_numbers().private_value, (pub.x, pub.y)


def zk_msg(chal: dict, V, r: int, key_id=KEY_ID) -> bytes:
    """The 164-byte ZK_PROOF, by hand from the table in zkp_filter.h."""
    raw = (struct.pack(">IBBHIII", 0x435A4B50, 1, 5, 0, key_id, chal["slot"], 0) + chal["client_nonce"] +
           chal["challenge"] + V[0].to_bytes(32, "big") + V[1].to_bytes(32, "big") + r.to_bytes(32, "big"))
    assert len(raw) == 164
    return raw


def test_independent_p256_is_right():
    k = ec.generate_private_key(ec.SECP256R1())
    a, A = key_material(k)
    assert mul(a, G) == A and on_curve(A) and mul(N, G) is None


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def zk(load_object):
    for f in SPEC.requires:
        require_feature(f)
    obj = load_object("zkp_filter")
    zf.install_server_key(obj, os.urandom(32))
    obj.key = ec.generate_private_key(ec.SECP256R1())
    obj.a, obj.A = key_material(obj.key)
    zf.add_zk_key(obj, KEY_ID, sec1(obj.A))
    zf.protect(obj, PROTECTED)
    return obj


def run(obj, frame: bytes):
    return obj.program("zkp_filter").test_run(data=frame)


def nonzero(obj) -> dict:
    return {k: v for k, v in SPEC.stats(obj).items() if v}


def hello(obj, src=CLIENT) -> dict:
    req = udp_frame(zc.pack("hello", client_nonce=os.urandom(16)), CTRL, src=src)
    res = run(obj, req)
    assert res.retval == XDP_TX
    return zc.unpack(check_reply(res.data, req))


def send(obj, chal, V, r, src=CLIENT, key_id=KEY_ID):
    return run(obj, udp_frame(zk_msg(chal, V, r, key_id), CTRL, src=src))


def reaches_protected(obj, src=CLIENT) -> bool:
    return run(obj, tcp_frame(PROTECTED, src)).retval == XDP_PASS


def dropped_with(obj, res, reason: str, verifications: int = 0):
    """res was dropped, counted under `reason` only (plus the hellos and
    the verifications it is expected to have cost)."""
    assert res.retval == XDP_DROP
    got = nonzero(obj)
    got.pop("hellos", None)
    want = {reason: 1}
    if verifications:
        want["verifications"] = verifications
    assert got == want


# ---------------------------------------------------------------- interoperability

def test_independent_proof_is_accepted_and_opens_the_port(zk):
    assert not reaches_protected(zk)
    chal = hello(zk)
    V, r = ind_prove(zk.a, KEY_ID, chal["challenge"])
    req = udp_frame(zk_msg(chal, V, r), CTRL)
    res = run(zk, req)
    assert res.retval == XDP_TX
    acc = zc.unpack(check_reply(res.data, req))
    assert acc["type"] == 4 and acc["key_id"] == KEY_ID and acc["lifetime_s"] == 300
    assert acc["challenge"] == chal["challenge"] and acc["proof"] == bytes(32)
    assert reaches_protected(zk) and not reaches_protected(zk, OTHER)
    assert [(a["source"], a["key_id"]) for a in zf.authorizations(zk)] == [(CLIENT, KEY_ID)]
    assert zf.key_counters(zk)[KEY_ID] == {"accepted": 1, "bad_proof": 0, "replayed": 0, "over_budget": 0}
    assert nonzero(zk) == {"hellos": 1, "verifications": 1, "accepted": 1, "passed": 1, "dropped": 2}


def test_client_proofs_verify_under_the_independent_verifier(zk):
    for _ in range(5):
        chal = hello(zk)
        V65, r = zc.schnorr_prove(zk.key, KEY_ID, chal["challenge"], CLIENT, SERVER, CTRL)
        V = (int.from_bytes(V65[1:33], "big"), int.from_bytes(V65[33:], "big"))
        assert ind_verify(zk.A, V, r, KEY_ID, chal["challenge"])
        # bound to everything in OtherInfo and to the key id
        assert not ind_verify(zk.A, V, r, KEY_ID + 1, chal["challenge"])
        assert not ind_verify(zk.A, V, r, KEY_ID, chal["challenge"], client=OTHER)
        assert not ind_verify(zk.A, V, r, KEY_ID, chal["challenge"], server=OTHER)
        assert not ind_verify(zk.A, V, r, KEY_ID, chal["challenge"], port=CTRL + 1)
        assert not ind_verify(zk.A, V, (r + 1) % N, KEY_ID, chal["challenge"])
    # and the whole message the client sends is accepted by XDP
    chal = hello(zk)
    msg = zc.zk_proof_message(chal, zk.key, KEY_ID, CLIENT, SERVER, CTRL)
    assert run(zk, udp_frame(msg, CTRL)).retval == XDP_TX


def test_client_hash_input_is_the_header_table():
    k = ec.generate_private_key(ec.SECP256R1())
    _, A = key_material(k)
    V, chal = mul(12345, G), os.urandom(32)
    assert zc.schnorr_challenge(sec1(V), sec1(A), 7, chal, CLIENT, SERVER, CTRL) == \
        ind_c(V, A, 7, chal, CLIENT, SERVER, CTRL)


def test_userspace_verifier_agrees_with_the_independent_one(zk):
    chal = hello(zk)
    V, r = ind_prove(zk.a, KEY_ID, chal["challenge"])
    args = (KEY_ID, chal["challenge"], CLIENT, SERVER, CTRL)
    assert zc.schnorr_verify(sec1(zk.A), sec1(V), r, *args)
    for bad_v, bad_r in [(V, (r + 1) % N), ((V[0], P - V[1]), r), (V, 0), (V, N), ((V[0], V[1] ^ 1), r),
                         ((0, 0), r), ((P, V[1]), r), ((V[0], 2**256 - 1), r)]:
        assert not zc.schnorr_verify(sec1(zk.A), sec1(bad_v), bad_r, *args)
        assert not ind_verify(zk.A, bad_v, bad_r, *args)


# ---------------------------------------------------------------- attacks: dropped and counted

def test_replayed_proof_is_dropped_before_verification(zk):
    chal = hello(zk)
    V, r = ind_prove(zk.a, KEY_ID, chal["challenge"])
    assert send(zk, chal, V, r).retval == XDP_TX
    zk.map("authorized").delete(ipaddress.IPv4Address(CLIENT).packed)
    res = send(zk, chal, V, r)
    assert res.retval == XDP_DROP and not reaches_protected(zk)
    s = SPEC.stats(zk)
    assert (s["replayed"], s["verifications"], s["accepted"]) == (1, 1, 1)
    assert zf.key_counters(zk)[KEY_ID]["replayed"] == 1


def test_proof_for_another_challenge_is_dropped(zk):
    old, chal = hello(zk), hello(zk)
    V, r = ind_prove(zk.a, KEY_ID, old["challenge"])
    dropped_with(zk, send(zk, chal, V, r), "bad_proof", verifications=1)
    assert zf.key_counters(zk)[KEY_ID]["bad_proof"] == 1


def test_proof_from_another_address_is_dropped(zk):
    # CLIENT's challenge and proof sent from OTHER: the challenge is not OTHER's
    chal = hello(zk)
    V, r = ind_prove(zk.a, KEY_ID, chal["challenge"])
    dropped_with(zk, send(zk, chal, V, r, src=OTHER), "bad_challenge")
    # OTHER's own challenge, but the proof binds CLIENT's address
    zk.map("stats").update(0, bytes(zk.map("stats").value_size))
    chal = hello(zk, OTHER)
    V, r = ind_prove(zk.a, KEY_ID, chal["challenge"], client=CLIENT)
    dropped_with(zk, send(zk, chal, V, r, src=OTHER), "bad_proof", verifications=1)
    assert not reaches_protected(zk, OTHER)


@pytest.mark.parametrize("bound", ["server", "port"])
def test_proof_for_another_service_is_dropped(zk, bound):
    chal = hello(zk)
    kw = {"server": "10.9.0.77"} if bound == "server" else {"port": CTRL + 1}
    V, r = ind_prove(zk.a, KEY_ID, chal["challenge"], **kw)
    dropped_with(zk, send(zk, chal, V, r), "bad_proof", verifications=1)


def test_proof_for_another_key_id_is_dropped(zk):
    other = ec.generate_private_key(ec.SECP256R1())
    zf.add_zk_key(zk, KEY_ID + 1, sec1(key_material(other)[1]))
    chal = hello(zk)
    V, r = ind_prove(zk.a, KEY_ID, chal["challenge"])          # KEY_ID's proof ...
    dropped_with(zk, send(zk, chal, V, r, key_id=KEY_ID + 1), "bad_proof", verifications=1)
    assert zf.key_counters(zk)[KEY_ID + 1]["bad_proof"] == 1
    # ... and one made with KEY_ID's private key but naming the other id
    V, r = ind_prove(zk.a, KEY_ID + 1, chal["challenge"])
    assert send(zk, chal, V, r, key_id=KEY_ID + 1).retval == XDP_DROP
    assert SPEC.stats(zk)["bad_proof"] == 2


def test_unknown_and_hmac_key_ids_are_dropped_before_verification(zk):
    zf.add_key(zk, 5, zc.derive_verifier(b"an hmac secret of 16+ bytes"))
    chal = hello(zk)
    V, r = ind_prove(zk.a, 5, chal["challenge"])
    res = send(zk, chal, V, r, key_id=5)
    dropped_with(zk, res, "unknown_key")
    assert send(zk, chal, V, r, key_id=999).retval == XDP_DROP
    assert SPEC.stats(zk)["unknown_key"] == 2 and SPEC.stats(zk)["verifications"] == 0


@pytest.mark.parametrize("what", ["r", "c", "V-x", "V-y-negated"])
def test_tampered_proof_is_dropped(zk, what):
    chal = hello(zk)
    if what == "c":         # a prover that answers for another c
        V, r = ind_prove(zk.a, KEY_ID, chal["challenge"], c_delta=1)
        reason = "bad_proof"
    else:
        V, r = ind_prove(zk.a, KEY_ID, chal["challenge"])
        if what == "r":
            r = r ^ (1 << 100)
            reason = "bad_proof"
        elif what == "V-x":
            V = (V[0] ^ 1, V[1])        # almost surely not a point any more
            reason = "bad_point" if not on_curve(V) else "bad_proof"
        else:
            V = (V[0], P - V[1])        # -V: same x, a valid point
            reason = "bad_proof"
    dropped_with(zk, send(zk, chal, V, r), reason, verifications=1)
    assert not reaches_protected(zk)


@pytest.mark.parametrize("V", [(0, 0), (G[0], G[1] ^ 1), (P, G[1]), (G[0], G[1] + P)],
                         ids=["identity-zeros", "off-curve", "x-is-p", "y-above-p"])
def test_v_not_a_curve_point_is_dropped(zk, V):
    chal = hello(zk)
    _, r = ind_prove(zk.a, KEY_ID, chal["challenge"])
    V = (V[0] % 2**256, V[1] % 2**256)
    dropped_with(zk, send(zk, chal, V, r), "bad_point", verifications=1)


@pytest.mark.parametrize("r", [0, N, N + 1, 2**256 - 1], ids=["0", "n", "n+1", "2^256-1"])
def test_r_out_of_range_is_dropped_before_verification(zk, r):
    chal = hello(zk)
    V, _ = ind_prove(zk.a, KEY_ID, chal["challenge"])
    dropped_with(zk, send(zk, chal, V, r), "bad_scalar")
    assert zf.key_counters(zk)[KEY_ID]["bad_proof"] == 1


def test_forged_challenge_is_dropped_before_verification(zk):
    chal = hello(zk)
    chal["challenge"] = os.urandom(32)
    V, r = ind_prove(zk.a, KEY_ID, chal["challenge"])
    dropped_with(zk, send(zk, chal, V, r), "bad_challenge")


def test_truncated_proofs_of_every_length_are_dropped(zk):
    chal = hello(zk)
    V, r = ind_prove(zk.a, KEY_ID, chal["challenge"])
    full = zk_msg(chal, V, r)
    lengths = list(range(len(full))) + [len(full) + 1, len(full) + 36]
    for n in lengths:
        assert run(zk, udp_frame((full * 2)[:n], CTRL)).retval == XDP_DROP, n
    assert nonzero(zk) == {"hellos": 1, "malformed": len(lengths)}
    assert send(zk, chal, V, r).retval == XDP_TX     # the whole proof still works


@pytest.mark.parametrize("field,off,value", [("type", 5, 3), ("version", 4, 2), ("reserved", 6, 1),
                                             ("lifetime", 19, 1), ("magic", 0, 0x44)])
def test_zk_proof_with_bad_header_fields_is_dropped(zk, field, off, value):
    chal = hello(zk)
    raw = bytearray(zk_msg(chal, *ind_prove(zk.a, KEY_ID, chal["challenge"])))
    raw[off] = value
    dropped_with(zk, run(zk, udp_frame(bytes(raw), CTRL)), "malformed")


def _slow_refill(obj, key_id: int, interval_ns: int = 1000 * 10**9) -> None:
    """The key's budget refills once per interval_ns. The CLI's floor is one
    a second, and under emulation (the 6.1 guest) the pure-Python proofs
    of this test take longer than that: a refill made the last assert
    flaky there."""
    from cryptbpf.bpf.headers import Layout
    lay = Layout("zkp_filter")
    keys, kid = obj.map("zkp_zk_keys"), key_id.to_bytes(4, "little")
    raw = bytearray(keys.lookup(kid))
    off = lay.const("ZKP_ZK_KEY_LOCK_BYTES") + dict(
        (n, o) for n, o, _ in lay.fields("struct zkp_zk_key"))["interval_ns"]
    raw[off:off + 8] = interval_ns.to_bytes(8, "little")
    keys.update(kid, bytes(raw))


def test_key_budget_caps_verifications(zk):
    zf.add_zk_key(zk, KEY_ID, sec1(zk.A), rate=1, burst=3)
    _slow_refill(zk, KEY_ID)
    for _ in range(5):
        chal = hello(zk)
        V, r = ind_prove(zk.a, KEY_ID, chal["challenge"])
        send(zk, chal, V, (r + 1) % N or 1)        # bogus proofs
    s = SPEC.stats(zk)
    assert (s["verifications"], s["bad_proof"], s["over_key_budget"]) == (3, 3, 2)
    assert zf.key_counters(zk)[KEY_ID]["over_budget"] == 2
    # an honest proof is refused too until the budget refills: that is the point
    chal = hello(zk)
    assert send(zk, chal, *ind_prove(zk.a, KEY_ID, chal["challenge"])).retval == XDP_DROP


def test_global_budget_caps_verifications(load_object):
    obj = load_object("zkp_filter", global_rate=1, global_burst=2)
    zf.install_server_key(obj, os.urandom(32))
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    for i, k in enumerate(keys):
        zf.add_zk_key(obj, i, sec1(key_material(k)[1]))
    # the proofs first (pure Python, slow under emulation), then the three
    # sends back to back: the budget (one a second) must not refill between
    challenges = [hello(obj) for _ in keys]
    proofs = [ind_prove(key_material(k)[0], i, c["challenge"])
              for i, (k, c) in enumerate(zip(keys, challenges))]
    for i, (c, (V, r)) in enumerate(zip(challenges, proofs)):
        send(obj, c, V, r, key_id=i)
    s = SPEC.stats(obj)
    assert (s["accepted"], s["verifications"], s["over_global_budget"]) == (2, 2, 1)


def test_registration_refuses_points_off_the_curve(zk):
    good = sec1(zk.A)
    bad = [good[:-1] + bytes([good[-1] ^ 1]), b"\x04" + bytes(64), b"\x00", good[:33],
           b"\x04" + P.to_bytes(32, "big") + good[33:]]
    for point in bad:
        with pytest.raises(CryptbpfError, match="invalid public key"):
            zf.add_zk_key(zk, 42, point)
    assert 42 not in zf.key_modes(zk) and zk.map("p256_keys").lookup((42).to_bytes(4, "little")) is None


def test_one_mode_per_key_id(zk):
    zf.add_key(zk, KEY_ID, zc.derive_verifier(b"now an hmac key, 16+ bytes"))
    assert zf.key_modes(zk) == {KEY_ID: "hmac"}
    chal = hello(zk)
    assert send(zk, chal, *ind_prove(zk.a, KEY_ID, chal["challenge"])).retval == XDP_DROP
    assert SPEC.stats(zk)["unknown_key"] == 1
    zf.add_zk_key(zk, KEY_ID, sec1(zk.A))
    assert zf.key_modes(zk) == {KEY_ID: "schnorr"}
    chal = hello(zk)
    assert send(zk, chal, *ind_prove(zk.a, KEY_ID, chal["challenge"])).retval == XDP_TX
    assert zf.revoke(zk, KEY_ID) == 1 and zf.key_modes(zk) == {}
    assert zk.map("p256_keys").lookup(KEY_ID.to_bytes(4, "little")) is None
    assert not reaches_protected(zk)


# ---------------------------------------------------------------- the breach test

SHA256_K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]
SHA256_IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]


def _rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & 0xffffffff


def sha256_from_state(state: list[int], data: bytes, prefix_len: int) -> bytes:
    """SHA-256 continued from a chaining value after prefix_len bytes: the
    attacker's tool for stolen HMAC pad states (hashlib cannot start from
    one). Checked against hashlib in the breach test itself."""
    msg = data + b"\x80" + bytes((55 - len(data) - prefix_len) % 64) + struct.pack(">Q", 8 * (prefix_len + len(data)))
    h = list(state)
    for i in range(0, len(msg), 64):
        w = list(struct.unpack(">16I", msg[i:i + 64]))
        for t in range(16, 64):
            s0 = _rotr(w[t - 15], 7) ^ _rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
            s1 = _rotr(w[t - 2], 17) ^ _rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
            w.append((w[t - 16] + s0 + w[t - 7] + s1) & 0xffffffff)
        a, b, c, d, e, f, g, hh = h
        for t in range(64):
            t1 = (hh + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + ((e & f) ^ (~e & g)) + SHA256_K[t] + w[t])
            t2 = (_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))
            a, b, c, d, e, f, g, hh = (t1 + t2) & 0xffffffff, a, b, c, (d + t1) & 0xffffffff, e, f, g
        h = [(x + y) & 0xffffffff for x, y in zip(h, (a, b, c, d, e, f, g, hh))]
    return struct.pack(">8I", *h)


def dump_every_map(obj) -> dict[str, list[bytes]]:
    """Everything the server stores: every value of every map of the loaded
    program (per-CPU maps: every CPU's copy), keys included."""
    out = {}
    for name in obj.map_names():
        m = obj.map(name)
        blobs = []
        for k, v in m.items():
            blobs.append(k)
            blobs.extend(v if isinstance(v, list) else [v])
        out[name] = blobs
    return out


def forge_from_dump(obj, dump: dict[str, list[bytes]], key_id: int, A) -> bool:
    """Try to open the port from a fresh address with nothing but the dump
    and public information. True if some forged proof was accepted."""
    src = "10.9.0.200"
    blobs = [b for bs in dump.values() for b in bs]
    # 1. stored HMAC pad states (istate, ostate as host-order words) used
    #    as the verifier's: HMAC-SHA256(verifier, challenge || addr || key_id)
    pads = {b[o:o + 64] for b in blobs for o in range(0, len(b) - 63, 8) if len(b) <= 4096}
    for p in pads:
        ist, ost = list(struct.unpack("<8I", p[:32])), list(struct.unpack("<8I", p[32:]))
        chal = hello(obj, src)
        inner = sha256_from_state(ist, chal["challenge"] + ipaddress.IPv4Address(src).packed +
                                  key_id.to_bytes(4, "big"), 64)
        msg = zc.pack("proof", key_id=key_id, slot=chal["slot"], client_nonce=chal["client_nonce"],
                      challenge=chal["challenge"], proof=sha256_from_state(ost, inner, 64))
        if run(obj, udp_frame(msg, CTRL, src=src)).retval == XDP_TX:
            return True
    # 2. every 32-byte window (8-byte steps, both byte orders) as the
    #    private key a of A, checked offline with `cryptography`
    want = ec.EllipticCurvePublicNumbers(A[0], A[1], ec.SECP256R1())
    for b in blobs:
        for o in range(0, len(b) - 31, 8):
            for order in ("big", "little"):
                a = int.from_bytes(b[o:o + 32], order)
                if 0 < a < N and ec.derive_private_key(a, ec.SECP256R1()).public_key().public_numbers() == want:
                    chal = hello(obj, src)
                    V, r = ind_prove(a, key_id, chal["challenge"], client=src)
                    if send(obj, chal, V, r, src=src, key_id=key_id).retval == XDP_TX:
                        return True
    # 3. the generic forgery from public data: pick r and c, V = r*G + c*A
    #    (valid only if the hash happened to give that c)
    chal = hello(obj, src)
    r, c = secrets.randbelow(N - 1) + 1, secrets.randbelow(N)
    V = add(mul(r, G), mul(c, A))
    return send(obj, chal, V, r, src=src, key_id=key_id).retval == XDP_TX


@pytest.mark.parametrize("mode", ["schnorr", "hmac"])
def test_breach_of_everything_the_server_stores(load_object, mode):
    """Schnorr: the dump of every map does not open the port. HMAC: it does
    (the stored verifier is all a prover needs): the difference is proved."""
    data = os.urandom(100)
    assert sha256_from_state(SHA256_IV, data, 0) == hashlib.sha256(data).digest()   # the tool works
    obj = load_object("zkp_filter")
    zf.install_server_key(obj, os.urandom(32))
    zf.protect(obj, PROTECTED)
    key = ec.generate_private_key(ec.SECP256R1())
    a, A = key_material(key)
    secret = os.urandom(32)
    if mode == "schnorr":
        zf.add_zk_key(obj, KEY_ID, sec1(A))
        chal = hello(obj)
        assert send(obj, chal, *ind_prove(a, KEY_ID, chal["challenge"])).retval == XDP_TX
    else:
        zf.add_key(obj, KEY_ID, zc.derive_verifier(secret))
        chal = hello(obj)
        msg = zc.proof_message(chal, zc.derive_verifier(secret), CLIENT, KEY_ID)
        assert run(obj, udp_frame(msg, CTRL)).retval == XDP_TX
    dump = dump_every_map(obj)
    assert {"zkp_keys", "zkp_zk_keys", "p256_keys", "zkp_server_key", "authorized"} <= set(dump)
    assert sum(map(len, (b for bs in dump.values() for b in bs))) > 1000
    # the secret itself is nowhere in the dump (neither mode stores it)
    flat = b"".join(b for bs in dump.values() for b in bs)
    assert secret not in flat and a.to_bytes(32, "big") not in flat and a.to_bytes(32, "little") not in flat
    opened = forge_from_dump(obj, dump, KEY_ID, A)
    if mode == "schnorr":
        assert not opened and not reaches_protected(obj, "10.9.0.200")
        assert SPEC.stats(obj)["accepted"] == 1
    else:
        assert opened and reaches_protected(obj, "10.9.0.200")


# ---------------------------------------------------------------- between namespaces

APP_PORT = 5556


def _app_reachable(ns: str, addr: str) -> bool:
    return udp_echo_reachable(ns, addr, APP_PORT)


def test_schnorr_exchange_between_namespaces_opens_the_port_until_it_expires(veth_pair, tmp_path):
    for f in SPEC.requires:
        require_feature(f)
    v = veth_pair
    before = system_snapshot(v.ns_b, zf.NAME)
    priv, pub = tmp_path / "alice.pem", tmp_path / "alice.pub.pem"
    r = run_cli("keys", "generate", str(priv), "--public", str(pub))
    assert r.returncode == 0, r.stderr
    assert priv.stat().st_mode & 0o777 == 0o600
    lifecycle.load(SPEC, v.dev_b, netns=v.ns_b, xdp_mode="skb", knobs={"auth_ttl_s": 3},
                   options={"protect": [str(APP_PORT)]})
    try:
        with udp_echo(v.ns_b, v.addr_b, APP_PORT):
            assert not _app_reachable(v.ns_a, v.addr_b)
            r = run_cli("zkp", "add-key", "2", "--public-key", str(pub))
            assert r.returncode == 0 and "installed (schnorr" in r.stdout, r.stderr
            # a key the server does not know, under that id: refused
            with netns.inside(v.ns_a):
                with pytest.raises(CryptbpfError, match="proof not accepted"):
                    zc.connect_zk(v.addr_b, CTRL, ec.generate_private_key(ec.SECP256R1()), 2,
                                  timeout=0.3, retries=1)
            assert not _app_reachable(v.ns_a, v.addr_b)
            r = run_cli("zkp", "connect", v.addr_b, str(CTRL), "--key", str(priv), "--key-id", "2",
                        "--netns", v.ns_a)
            assert r.returncode == 0, r.stderr
            assert f"authorized {v.addr_a} at {v.addr_b} for 3 s" in r.stdout
            t0 = time.monotonic()
            assert _app_reachable(v.ns_a, v.addr_b)
            with Pinned(zf.NAME) as h:
                st = SPEC.status(h)
            assert st["stats"]["accepted"] == 1 and st["stats"]["bad_proof"] >= 1
            assert [k["mode"] for k in st["keys"]] == ["schnorr"]
            time.sleep(max(0.0, 3.2 - (time.monotonic() - t0)))
            assert not _app_reachable(v.ns_a, v.addr_b)          # expired
            with Pinned(zf.NAME) as h:
                assert SPEC.stats(h)["expired"] >= 1
    finally:
        lifecycle.unload(zf.NAME)
    assert system_snapshot(v.ns_b, zf.NAME) == before


def test_cli_refuses_a_public_key_off_the_curve_in_one_line(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    der = bytearray(key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    der[-1] ^= 1                                  # Y off by one bit: not on the curve
    pem = tmp_path / "bad.pub.pem"
    pem.write_bytes(b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(bytes(der)) +
                    b"-----END PUBLIC KEY-----\n")
    r = run_cli("zkp", "add-key", "3", "--public-key", str(pem))
    assert r.returncode != 0
    assert r.stderr.startswith("cryptbpf: ") and r.stderr.count("\n") == 1, r.stderr
    assert "public key" in r.stderr
    assert "Traceback" not in r.stderr
