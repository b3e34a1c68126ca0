"""zkp_filter: packets per second one core judges (BPF_PROG_TEST_RUN), next
to Python's hmac doing the same HMACs in the same run (HMAC keys), and to a
userspace verification of the same Schnorr proof (pycryptodome's P-256,
Schnorr keys).

A valid proof changes state (its challenge becomes used, its source
authorized) and is turned into the ACCEPT reply in place, so valid proofs
and hellos are timed one packet per run over distinct packets (the
kernel's duration of each single run, averaged: caches are colder than in
a burst of packets); packets that change nothing are timed with `repeat`
(best of 3). The wrong-secret proof is timed both ways, which shows what
the method itself costs.
"""

from __future__ import annotations

import hmac
import os
from hashlib import sha256

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from ...bench import bpf_each_ns, bpf_repeat_ns, userspace_ns
from . import client as zc
from ...bpf.object import BpfObject
from ...paths import bpf_object
from . import control as zf

CTRL, PORT, KEY_ID = 7227, 2222, 1
SECRET = os.urandom(32)
DISTINCT = 3000
REPEAT = 20000


SERVER = "10.0.0.1"
ZK_DISTINCT = 1000


def _udp(payload: bytes, dport: int, src: str) -> bytes:
    return bytes(Ether() / IP(src=src, dst=SERVER) / UDP(sport=40000, dport=dport) / payload)


def _src(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255 or 1}"


def _row(name: str, ns: float, base_ns: float | None = None, base: str = "", size: int = 100,
         **extra) -> dict:
    row = {"name": name, "size": size, "ns": ns, "packets_per_s": round(1e9 / ns), **extra}
    if base_ns:
        row.update(baseline=base, baseline_ns=base_ns)
    return row


def zkp_filter_packets(echo) -> list[dict]:
    obj = BpfObject.open(str(bpf_object("zkp_filter"))).load()
    try:
        prog = obj.program("zkp_filter")
        skey = os.urandom(32)
        zf.install_server_key(obj, skey)
        verifier = zc.derive_verifier(SECRET)
        zf.add_key(obj, KEY_ID, verifier)
        zf.protect(obj, PORT)
        slot = zf.boot_ns() // (30 * 10**9)

        hellos = [_udp(zc.pack("hello", client_nonce=os.urandom(16)), CTRL, _src(i))
                  for i in range(DISTINCT)]
        hello_ns = bpf_each_ns(prog, hellos, 3)

        def proof_frame(i: int, secret_ok: bool = True) -> bytes:
            src, nonce = _src(i), os.urandom(16)
            chal = {"slot": slot, "client_nonce": nonce,
                    "challenge": zc.compute_challenge(skey, src, slot, nonce)}
            v = verifier if secret_ok else zc.derive_verifier(os.urandom(32))
            return _udp(zc.proof_message(chal, v, src, KEY_ID), CTRL, src)

        valid = [proof_frame(i) for i in range(DISTINCT)]
        valid_ns = bpf_each_ns(prog, valid, 3)
        bad_proof_ns = bpf_repeat_ns(prog, proof_frame(1, False), 1, REPEAT)
        bad_single_ns = bpf_each_ns(prog, [proof_frame(i, False) for i in range(DISTINCT)], 1)
        forged = bytearray(proof_frame(2))
        forged[14 + 20 + 8 + 40] ^= 1          # a challenge bit
        forged_ns = bpf_repeat_ns(prog, bytes(forged), 1, REPEAT)
        stale = bytearray(proof_frame(3))
        stale[14 + 20 + 8 + 12:14 + 20 + 8 + 16] = ((slot - 2) % 2**32).to_bytes(4, "big")
        stale_ns = bpf_repeat_ns(prog, bytes(stale), 1, REPEAT)
        # authorized source to a protected port: the filter's fast path
        allowed = bytes(Ether() / IP(src=_src(5), dst="10.0.0.1") / TCP(dport=PORT))
        denied = bytes(Ether() / IP(src="192.0.2.1", dst="10.0.0.1") / TCP(dport=PORT))
        pass_ns = bpf_repeat_ns(prog, allowed, 2, REPEAT)
        drop_ns = bpf_repeat_ns(prog, denied, 1, REPEAT)

        # userspace: the same two HMACs (challenge, then proof) with Python's hmac
        msg = os.urandom(40)
        py_verify = userspace_ns(lambda: hmac.compare_digest(
            hmac.new(verifier, hmac.new(skey, msg, sha256).digest() + msg[:8], sha256).digest(), msg[:32]))
        py_hmac = userspace_ns(lambda: hmac.new(skey, msg, sha256).digest())
    finally:
        obj.close()
    rows = [
        _row("zkp valid proof, one packet per run (2 HMACs, authorize, ACCEPT)", valid_ns, py_verify,
             "python hmac: the two HMACs", sha256_blocks=4),
        _row("zkp wrong-secret proof, one packet per run (2 HMACs, drop)", bad_single_ns, py_verify,
             "python hmac: the two HMACs", sha256_blocks=4),
        _row("zkp wrong-secret proof, repeated (2 HMACs, drop)", bad_proof_ns, py_verify,
             "python hmac: the two HMACs", sha256_blocks=4),
        _row("zkp forged challenge (challenge HMAC, drop)", forged_ns, py_hmac,
             "python hmac: one HMAC", sha256_blocks=2),
        _row("zkp stale challenge (slot check only, drop)", stale_ns, sha256_blocks=0),
        _row("zkp hello -> challenge, one packet per run (HMAC, XDP_TX)", hello_ns, py_hmac, "python hmac: one HMAC",
             sha256_blocks=2),
        _row("zkp protected port, authorized source (pass)", pass_ns),
        _row("zkp protected port, unauthorized source (drop)", drop_ns),
    ]
    for r in rows:
        echo(f"  {r['name']}: {r['ns']:.0f} ns, {r['packets_per_s']:,} packets/s per core")
    return rows


def zkp_schnorr_proofs(echo) -> list[dict]:
    """Schnorr keys: verified proofs per second per core (each proof valid
    and distinct, one per run, budgets out of the way), a bogus proof that
    costs a full verification (repeated), proofs rejected before any curve
    math (repeated), and pycryptodome verifying the same proof."""
    obj = BpfObject.open(str(bpf_object("zkp_filter")))
    obj.set_global("global_rate", 10**9)
    obj.set_global("global_burst", 2**31)
    obj.load()
    try:
        prog = obj.program("zkp_filter")
        skey = os.urandom(32)
        zf.install_server_key(obj, skey)
        key = ec.generate_private_key(ec.SECP256R1())
        a_point = zc.public_point(key.public_key())
        zf.add_zk_key(obj, KEY_ID, a_point, rate=10**9, burst=1_000_000)
        slot = zf.boot_ns() // (30 * 10**9)

        def challenge(i: int) -> dict:
            nonce = os.urandom(16)
            return {"slot": slot, "client_nonce": nonce,
                    "challenge": zc.compute_challenge(skey, _src(i), slot, nonce)}

        def proof(i: int, chal: dict | None = None) -> bytes:
            chal = chal or challenge(i)
            return zc.zk_proof_message(chal, key, KEY_ID, _src(i), SERVER, CTRL)

        valid = [_udp(proof(i), CTRL, _src(i)) for i in range(ZK_DISTINCT)]
        valid_ns = bpf_each_ns(prog, valid, 3)
        # a wrong r under a fresh challenge: the whole verification, then drop
        bogus = bytearray(proof(ZK_DISTINCT + 1))
        bogus[-1] ^= 1
        bogus_ns = bpf_repeat_ns(prog, _udp(bytes(bogus), CTRL, _src(ZK_DISTINCT + 1)), 1, REPEAT // 10)
        early = {}
        forged = bytearray(proof(ZK_DISTINCT + 2))
        forged[40] ^= 1                                    # a challenge bit
        early["forged challenge"] = _udp(bytes(forged), CTRL, _src(ZK_DISTINCT + 2))
        r0 = bytearray(proof(ZK_DISTINCT + 3))
        r0[-32:] = bytes(32)
        early["r = 0"] = _udp(bytes(r0), CTRL, _src(ZK_DISTINCT + 3))
        unknown = bytearray(proof(ZK_DISTINCT + 4))
        unknown[8:12] = (KEY_ID + 1).to_bytes(4, "big")
        early["unknown key id"] = _udp(bytes(unknown), CTRL, _src(ZK_DISTINCT + 4))
        early["replayed"] = valid[0]
        early_ns = {k: bpf_repeat_ns(prog, f, 1, REPEAT) for k, f in early.items()}

        # userspace: the same check on one of the proofs XDP accepted
        i = 7
        chal = challenge(i)
        msg = proof(i, chal)
        m = zc._L.unpack(zc.ZK_MSG, msg)
        v_point, r = b"\x04" + bytes(m["v"]), int.from_bytes(bytes(m["r"]), "big")
        args = (a_point, v_point, r, KEY_ID, chal["challenge"], _src(i), SERVER, CTRL)
        assert zc.schnorr_verify(*args)
        assert prog.test_run(data=_udp(msg, CTRL, _src(i))).retval == 3
        py_ns = userspace_ns(lambda: zc.schnorr_verify(*args))
        # OpenSSL has no Schnorr proof; its ECDSA verification is the same
        # double-scalar multiplication (u1*G + u2*Q), for scale
        sig = key.sign(b"m", ec.ECDSA(hashes.SHA256()))
        ossl_ns = userspace_ns(lambda: key.public_key().verify(sig, b"m", ec.ECDSA(hashes.SHA256())))
    finally:
        obj.close()
    base = "pycryptodome: the same proof"
    rows = [_row("zkp schnorr valid proof, one packet per run (hash, r*G + c*A, authorize, ACCEPT)",
                 valid_ns, py_ns, base, size=164),
            _row("zkp schnorr wrong r, repeated (hash, r*G + c*A, drop)", bogus_ns, ossl_ns,
                 "openssl (cryptography): one ECDSA P-256 verify, same double-scalar work", size=164)]
    rows += [_row(f"zkp schnorr rejected early: {k} (no curve math, drop)", ns, size=164)
             for k, ns in early_ns.items()]
    for r in rows:
        echo(f"  {r['name']}: {r['ns']:.0f} ns, {r['packets_per_s']:,} packets/s per core")
    echo(f"  userspace (pycryptodome) verification of the same proof: {py_ns / 1000:.1f} us, "
         f"{1e9 / py_ns:,.0f}/s; OpenSSL ECDSA P-256 verify: {ossl_ns / 1000:.1f} us")
    return rows


# `cryptbpf bench` names these zkp.<function> (`--only zkp`)
BENCH_NAME = "zkp"
BENCHMARKS = [zkp_filter_packets, zkp_schnorr_proofs]
