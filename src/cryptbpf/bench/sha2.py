"""Pure-BPF SHA-2 and HMAC over packet data (crypto_kat, skb source), next
to hashlib/hmac (OpenSSL) measured in the same run."""

from __future__ import annotations

import hashlib
import hmac
import os

from . import userspace_ns
from ..kat import KatObject

SIZES = (64, 256, 1500)
REPEAT = 20000
HASHES = {256: hashlib.sha256, 384: hashlib.sha384, 512: hashlib.sha512}


def _bpf_ns(kat: KatObject, entry: str, msg: bytes) -> int:
    return kat.obj.program(entry).test_run(data=kat.frame(msg), repeat=REPEAT).duration_ns


def sha2(echo) -> list[dict]:
    rows = []
    with KatObject() as kat:
        for alg in (256, 512):
            kat.io(alg=alg)
            for size in SIZES:
                msg = os.urandom(size)
                fn = HASHES[alg]
                rows.append({"name": f"sha{alg} (pure BPF)", "size": size, "ns": _bpf_ns(kat, "kat_sha_skb", msg),
                             "baseline": "hashlib", "baseline_ns": userspace_ns(lambda: fn(msg).digest())})
        key = os.urandom(32)
        for alg in (256, 512):
            kat.io(alg=alg, key=key, key_len=len(key))
            for size in SIZES:
                msg = os.urandom(size)
                fn = HASHES[alg]
                rows.append({"name": f"hmac-sha{alg} incl. key setup (pure BPF)", "size": size,
                             "ns": _bpf_ns(kat, "kat_hmac_skb", msg), "baseline": "hmac",
                             "baseline_ns": userspace_ns(lambda: hmac.new(key, msg, fn).digest())})
        rows.append(kat.load_report())
    return rows


BENCHMARKS = [sha2]
