"""Pure-BPF ECDSA P-256 verification (ecdsa_kat) per core, next to
`cryptography`'s verify of the same digest measured in the same run."""

from __future__ import annotations

import hashlib
import os
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from . import userspace_ns
from ..kat import EcdsaKat

REPEAT = 2000


def ecdsa_p256_verify(echo) -> list[dict]:
    priv = ec.generate_private_key(ec.SECP256R1())
    pubkey = priv.public_key()
    pub = pubkey.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    digest = hashlib.sha256(os.urandom(100)).digest()
    der = priv.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    r, s = utils.decode_dss_signature(der)
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    t0 = time.perf_counter()
    e = EcdsaKat()
    load_ms = (time.perf_counter() - t0) * 1e3
    try:
        kid = e.register(pub)
        base = userspace_ns(lambda: pubkey.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256()))))
        rows = []
        for prog, data, what in (
                ("verify_tc", kid.to_bytes(4, "little") + (64).to_bytes(4, "little") + digest + sig + bytes(14),
                 "registered key table, TC"),
                ("verify_xdp", kid.to_bytes(4, "little") + (64).to_bytes(4, "little") + digest + sig,
                 "registered key table, XDP"),
                ("verify_pk_xdp", (65).to_bytes(4, "little") + (64).to_bytes(4, "little") + digest + sig + pub,
                 "key in the packet (no table), XDP")):
            res = e.obj.program(prog).test_run(data=data, repeat=REPEAT)
            assert res.retval == 101, f"{prog} did not verify ({res.retval - 100})"
            rows.append({"name": f"ecdsa-p256 verify, {what}", "size": 32, "ns": res.duration_ns,
                         "baseline": "cryptography verify (prehashed)", "baseline_ns": base,
                         "verifications_per_s": round(1e9 / res.duration_ns),
                         "baseline_per_s": round(1e9 / base)})
        rows.append({"name": "ecdsa_kat object", "load_ms": round(load_ms, 1),
                     "verified_insns": {n: p.verified_insns for n, p in e.obj.programs.items()}})
        return rows
    finally:
        e.close()


BENCHMARKS = [ecdsa_p256_verify]
