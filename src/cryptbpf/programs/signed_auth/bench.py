"""signed-auth's XDP program through BPF_PROG_TEST_RUN, one CPU: signed
datagrams verified and stripped per second, packets rejected before any
verification per second, and the same verification (SHA-256 + ECDSA P-256)
with `cryptography` in userspace, measured in the same run."""

from __future__ import annotations

import os
import statistics
import struct
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from ...bench import userspace_ns
from . import client as signing
from ...crypto import p256_keys
from ...bpf.object import BpfObject
from ...paths import bpf_object
from . import control as sa

PORT = 4242
SRC, DST = ("10.1.0.1", 999), ("10.1.0.2", PORT)
SIGNED = 200          # distinct datagrams per size (each sequence number verifies once)
REPEAT = 100_000      # for the early rejections, which keep no state
XDP_DROP, XDP_PASS = 1, 2


def _frame(payload: bytes, dport: int = PORT) -> bytes:
    return bytes(Ether() / IP(src=SRC[0], dst=DST[0]) / UDP(sport=SRC[1], dport=dport) / payload)


def _verified(obj, signer, key, size: int) -> dict:
    """Median in-kernel time of SIGNED runs, each on a fresh datagram (a
    repeat of one datagram would be refused as a replay after the first run;
    the median keeps a run preempted on this shared machine from counting)."""
    data = os.urandom(size)
    frames = [_frame(signer.sign(data, SRC, DST)) for _ in range(SIGNED)]
    prog = obj.program("signed_auth_xdp")
    times = []
    for f in frames:
        res = prog.test_run(data=f)
        assert res.retval == XDP_PASS, "signed datagram not verified"
        times.append(res.duration_ns)
    ns = statistics.median(times)
    payload = signer.sign(data, SRC, DST)
    t = signing.parse_trailer(payload)
    msg = signing.message(t["key_id"], t["seq"], SRC, DST, data)
    der = key.sign(msg, ec.ECDSA(hashes.SHA256()))
    pub = key.public_key()
    base = userspace_ns(lambda: pub.verify(der, msg, ec.ECDSA(hashes.SHA256())), min_time=0.6)
    return {"name": f"signed-auth XDP verify + strip, {size} B data", "size": size, "ns": ns,
            "baseline": "cryptography SHA-256 + ECDSA verify", "baseline_ns": base,
            "datagrams_per_s": round(1e9 / ns), "baseline_per_s": round(1e9 / base)}


def _rejected(obj, what: str, frame: bytes, expect: int = XDP_DROP, repeat: int = REPEAT) -> dict:
    res = obj.program("signed_auth_xdp").test_run(data=frame, repeat=repeat)
    assert res.retval == expect, f"{what}: unexpected verdict {res.retval}"
    return {"name": f"signed-auth XDP {what}", "size": len(frame), "ns": res.duration_ns,
            "packets_per_s": round(1e9 / res.duration_ns)}


def signed_auth_xdp(echo) -> list[dict]:
    key = ec.generate_private_key(ec.SECP256R1())
    signer = signing.Signer(key, 7)
    obj = BpfObject.open(str(bpf_object("signed_auth")))
    try:
        obj.set_global("global_rate", 1_000_000_000)
        obj.set_global("global_burst", 1_000_000)
        obj.load()
        sa.set_ports(obj, add=[PORT])
        sa.trust(obj, 7, p256_keys.public_point(key.public_key()), rate=1_000_000_000, burst=1_000_000)
        sa.trust(obj, 8, p256_keys.public_point(ec.generate_private_key(ec.SECP256R1()).public_key()),
                 rate=1, burst=1)
        rows = [_verified(obj, signer, key, n) for n in (64, 1024)]
        trailer = lambda kid, seq: struct.pack(">HBBIQ", 0x5341, 1, 0, kid, seq) + os.urandom(64)
        replayed = signer.sign(b"x" * 64, SRC, DST)
        assert obj.program("signed_auth_xdp").test_run(data=_frame(replayed)).retval == XDP_PASS
        rows += [
            _rejected(obj, "pass-through, unprotected port", _frame(b"x" * 144, PORT + 1), XDP_PASS),
            _rejected(obj, "drop: no trailer", _frame(b"x" * 144)),
            _rejected(obj, "drop: unknown key id", _frame(b"x" * 64 + trailer(99, 1))),
            _rejected(obj, "drop: replayed sequence", _frame(replayed)),
            # key 8 has a budget of 1 verification per second: after the first
            # run every repetition is refused by the token bucket
            _rejected(obj, "drop: over the key's budget", _frame(b"x" * 64 + trailer(8, time.time_ns()))),
        ]
        # A forged signature within budget costs a full verification; with
        # repeat the tables stay in cache (traffic at rate), unlike the
        # one-datagram-per-call runs above (a cold start each time).
        for n in (64, 1024):
            forged = signer.sign(b"y" * n, SRC, DST)
            forged = forged[:-1] + bytes([forged[-1] ^ 1])
            rows.append(_rejected(obj, f"drop: bad signature (full verification, warm), {n} B data",
                                  _frame(forged), repeat=2000))
        rows.append({"name": "signed_auth object",
                     "verified_insns": {n: p.verified_insns for n, p in obj.programs.items()}})
        return rows
    finally:
        obj.close()


# `cryptbpf bench` names these signed_auth.<function> (`--only signed_auth`)
BENCH_NAME = "signed_auth"
BENCHMARKS = [signed_auth_xdp]
