"""bpf_crypto cbc(aes) encryption of packet data in place (crypto_kat's
bench entry point), next to `cryptography` and pycryptodome in the same run."""

from __future__ import annotations

import os

from Crypto.Cipher import AES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import userspace_ns
from ..kat import KatObject

SIZES = (64, 256, 1504)  # multiples of 16; 1504 ~ a full 1500-byte MTU
REPEAT = 20000


def aes_cbc_encrypt(echo) -> list[dict]:
    key, iv = os.urandom(32), os.urandom(16)
    rows = []
    with KatObject() as kat:
        kat.aes_key(key)
        prog = kat.obj.program("bench_aes_cbc_encrypt")
        for size in SIZES:
            msg = os.urandom(size)
            ns = prog.test_run(data=kat.frame(iv + msg), repeat=REPEAT).duration_ns
            c = Cipher(algorithms.AES(key), modes.CBC(iv))
            base = userspace_ns(lambda: c.encryptor().update(msg))
            pyc = userspace_ns(lambda: AES.new(key, AES.MODE_CBC, iv).encrypt(msg))
            rows.append({"name": "aes-256-cbc encrypt (bpf_crypto)", "size": size, "ns": ns,
                         "baseline": "cryptography (OpenSSL)", "baseline_ns": base,
                         "pycryptodome_ns": pyc})
        rows.append(kat.load_report())
    return rows


BENCHMARKS = [aes_cbc_encrypt]
