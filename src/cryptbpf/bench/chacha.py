"""Pure-BPF ChaCha20, Poly1305 and ChaCha20-Poly1305 seal (crypto_kat),
next to `cryptography` (OpenSSL) measured in the same run."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.poly1305 import Poly1305

from . import userspace_ns
from ..kat import KatObject

SIZES = (64, 256, 1500)
REPEAT = 20000


def chacha(echo) -> list[dict]:
    key, nonce = os.urandom(32), os.urandom(12)
    rows = []
    with KatObject() as kat:
        prog = kat.obj.program
        for size in SIZES:
            msg = os.urandom(size)
            kat.io(key=key, nonce=nonce)
            ns = prog("kat_chacha20_skb").test_run(data=kat.frame(msg), repeat=REPEAT).duration_ns
            c = Cipher(algorithms.ChaCha20(key, bytes(4) + nonce), None)
            rows.append({"name": "chacha20 (pure BPF, packet in place)", "size": size, "ns": ns,
                         "baseline": "cryptography", "baseline_ns": userspace_ns(lambda: c.encryptor().update(msg))})
            kat.io(key=key, len=size)
            kat.obj.set_global("kat_msg", msg)
            ns = prog("kat_poly1305_mem").test_run(data=kat.frame(b""), repeat=REPEAT).duration_ns
            rows.append({"name": "poly1305 (pure BPF, map memory)", "size": size, "ns": ns,
                         "baseline": "cryptography", "baseline_ns": userspace_ns(lambda: Poly1305.generate_tag(key, msg))})
        aead = ChaCha20Poly1305(key)
        for size in SIZES:
            msg = os.urandom(size)
            kat.io(key=key, nonce=nonce, aad=bytes(8), aad_len=8)
            # seal grows the packet by its tag, so every repeat seals a longer
            # packet; time single runs instead (the kernel times the program only)
            runs = [prog("kat_aead_seal_skb").test_run(data=kat.frame(msg)).duration_ns for _ in range(200)]
            rows.append({"name": "chacha20-poly1305 seal (pure BPF, packet)", "size": size, "ns": sorted(runs)[len(runs) // 2],
                         "baseline": "cryptography",
                         "baseline_ns": userspace_ns(lambda: aead.encrypt(nonce, msg, bytes(8)))})
        rows.append(kat.load_report())
    return rows


BENCHMARKS = [chacha]
