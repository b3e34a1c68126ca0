"""zkp_filter: packets per second one core judges (BPF_PROG_TEST_RUN), next
to Python's hmac doing the same HMACs in the same run.

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


def _udp(payload: bytes, dport: int, src: str) -> bytes:
    return bytes(Ether() / IP(src=src, dst="10.0.0.1") / UDP(sport=40000, dport=dport) / payload)


def _src(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255 or 1}"


def _row(name: str, ns: float, base_ns: float | None = None, base: str = "", **extra) -> dict:
    row = {"name": name, "size": 100, "ns": ns, "packets_per_s": round(1e9 / ns), **extra}
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


# `cryptbpf bench` names these zkp.<function> (`--only zkp`)
BENCH_NAME = "zkp"
BENCHMARKS = [zkp_filter_packets]
