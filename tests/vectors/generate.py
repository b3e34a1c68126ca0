#!/usr/bin/env python3
"""Generate cryptbpf's own vector files in the Wycheproof JSON format.

Expected values come from independent implementations (`cryptography`,
i.e. OpenSSL); the inputs come from a seeded PRNG so the files are
reproducible: `python3 tests/vectors/generate.py` rewrites them identically.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HERE = Path(__file__).parent


def wycheproof(algorithm: str, groups: list[dict], source: str) -> dict:
    return {"algorithm": algorithm, "generatorVersion": "cryptbpf tests/vectors/generate.py",
            "header": [f"Generated with {source} from a seeded PRNG; see generate.py."],
            "numberOfTests": sum(len(g["tests"]) for g in groups), "testGroups": groups}


def aes_cbc(rng: random.Random) -> dict:
    groups, tc = [], 0
    for key_size in (128, 256):
        tests = []
        for n in list(range(0, 50)) + [63, 64, 65, 255, 256, 1000, 1400, 2048]:
            tc += 1
            key, iv, msg = rng.randbytes(key_size // 8), rng.randbytes(16), rng.randbytes(n)
            p = padding.PKCS7(128).padder()
            enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
            ct = enc.update(p.update(msg) + p.finalize()) + enc.finalize()
            tests.append({"tcId": tc, "comment": f"{n}-byte message", "flags": [], "key": key.hex(),
                          "iv": iv.hex(), "msg": msg.hex(), "ct": ct.hex(), "result": "valid"})
        for comment, last in [("pad byte 0", b"\x00"), ("pad byte 17", b"\x11"),
                              ("pad byte 0xff", b"\xff"), ("inconsistent run", b"\x03\x03\x02"),
                              ("claims 16, 15 match", b"\x10" * 15 + b"\x0f"[:0] + b"\x10")]:
            tc += 1
            key, iv = rng.randbytes(key_size // 8), rng.randbytes(16)
            block = (rng.randbytes(16) + last)[-16:]
            if comment == "claims 16, 15 match":
                block = b"\x11" + b"\x10" * 15
            enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
            ct = enc.update(rng.randbytes(16) + block) + enc.finalize()
            tests.append({"tcId": tc, "comment": f"invalid padding: {comment}", "flags": ["BadPadding"],
                          "key": key.hex(), "iv": iv.hex(), "msg": "", "ct": ct.hex(), "result": "invalid"})
        groups.append({"type": "IndCpaTest", "keySize": key_size, "ivSize": 128, "tests": tests})
    return wycheproof("AES-CBC-PKCS5", groups, "cryptography (OpenSSL) AES-CBC + PKCS7")


def main() -> None:
    rng = random.Random(0xC0FFEE)
    files = {"aes_cbc_pkcs5_cryptography.json": aes_cbc(rng)}
    for name, content in files.items():
        (HERE / name).write_text(json.dumps(content, indent=1) + "\n")
        print(f"wrote {name}: {content['numberOfTests']} tests")


if __name__ == "__main__":
    main()
