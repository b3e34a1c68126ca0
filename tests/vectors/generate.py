#!/usr/bin/env python3
"""Generate cryptbpf's own vector files in the Wycheproof JSON format.

Expected values come from independent implementations (`cryptography`,
i.e. OpenSSL); the inputs come from a seeded PRNG so the files are
reproducible: `python3 tests/vectors/generate.py` rewrites them identically.
"""

from __future__ import annotations

import hashlib
import hmac
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
    for key_size in (128, 256, 192):
        if key_size == 192:
            # added later, with a PRNG of its own so every other file stays as it was
            rng = random.Random(0xC0FFEE + 192)
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


# Published answers, checked against hashlib when generating.
FIPS180 = {  # FIPS 180-2 appendix examples
    "SHA-256": {b"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq":
                    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    "SHA-384": {b"abc": "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
                        "8086072ba1e7cc2358baeca134c825a7"},
    "SHA-512": {b"abc": "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
}
RFC4231 = [  # (key, data, HMAC-SHA256, HMAC-SHA512): test cases 1 and 2
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
     "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
     "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", None),
]
FIPS180_LONG = b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
HASHES = {"SHA-256": hashlib.sha256, "SHA-384": hashlib.sha384, "SHA-512": hashlib.sha512}
LENGTHS = list(range(0, 130)) + [191, 192, 255, 256, 257, 511, 512, 513, 1000, 1500, 2048, 3000]


def sha(rng: random.Random, name: str) -> dict:
    fn, tests = HASHES[name], []
    published = dict(FIPS180[name])
    if name != "SHA-256":
        published[FIPS180_LONG] = None
    for msg, digest in published.items():
        assert digest is None or fn(msg).hexdigest() == digest, (name, msg)
        tests.append({"tcId": len(tests) + 1, "comment": "FIPS 180-2 example", "flags": ["Published"],
                      "msg": msg.hex(), "digest": digest or fn(msg).hexdigest(), "result": "valid"})
    for n in LENGTHS:
        msg = rng.randbytes(n)
        tests.append({"tcId": len(tests) + 1, "comment": f"{n}-byte message", "flags": [],
                      "msg": msg.hex(), "digest": fn(msg).hexdigest(), "result": "valid"})
    return wycheproof(name, [{"type": "HashTest", "tests": tests}], "hashlib (OpenSSL)")


def hmac_file(rng: random.Random, bits: int) -> dict:
    fn = hashlib.sha256 if bits == 256 else hashlib.sha512
    groups, tc = [], 0
    for tag_bits in (bits, 128):
        tests = []
        if tag_bits == bits:
            for key, data, t256, t512 in RFC4231:
                want = t256 if bits == 256 else t512
                got = hmac.new(key, data, fn).hexdigest()
                assert want is None or got == want
                tc += 1
                tests.append({"tcId": tc, "comment": "RFC 4231", "flags": ["Published"], "key": key.hex(),
                              "msg": data.hex(), "tag": got, "result": "valid"})
        for n, klen in [(n, k) for n in (0, 1, 63, 64, 65, 127, 128, 129, 300, 1500)
                        for k in (0, 1, 16, 32, 64, 65, 100, 128)]:
            tc += 1
            key, msg = rng.randbytes(klen), rng.randbytes(n)
            tag = hmac.new(key, msg, fn).digest()[:tag_bits // 8]
            tests.append({"tcId": tc, "comment": f"{n}-byte message, {klen}-byte key", "flags": [],
                          "key": key.hex(), "msg": msg.hex(), "tag": tag.hex(), "result": "valid"})
        for comment, mutate in [("flipped first bit", lambda t: bytes([t[0] ^ 0x80]) + t[1:]),
                                ("flipped last bit", lambda t: t[:-1] + bytes([t[-1] ^ 1])),
                                ("all zero tag", lambda t: bytes(len(t))),
                                ("truncated by one byte", lambda t: t[:-1])]:
            tc += 1
            key, msg = rng.randbytes(32), rng.randbytes(100)
            tag = hmac.new(key, msg, fn).digest()[:tag_bits // 8]
            tests.append({"tcId": tc, "comment": comment, "flags": ["ModifiedTag"], "key": key.hex(),
                          "msg": msg.hex(), "tag": mutate(tag).hex(), "result": "invalid"})
        groups.append({"type": "MacTest", "keySize": 256, "tagSize": tag_bits, "tests": tests})
    return wycheproof(f"HMACSHA{bits}", groups, "Python hmac/hashlib (OpenSSL)")


SUNSCREEN = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip "
             b"for the future, sunscreen would be it.")


def chacha20_poly1305(rng: random.Random) -> dict:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    tests = []

    def add(comment, key, nonce, aad, msg, ct_tag=None, result="valid", flags=()):
        if ct_tag is None:
            ct_tag = ChaCha20Poly1305(key).encrypt(nonce, msg, aad)
        tests.append({"tcId": len(tests) + 1, "comment": comment, "flags": list(flags), "key": key.hex(),
                      "iv": nonce.hex(), "aad": aad.hex(), "msg": msg.hex(), "ct": ct_tag[:-16].hex(),
                      "tag": ct_tag[-16:].hex(), "result": result})

    # RFC 8439 section 2.8.2, checked against the published ciphertext start and tag
    k, n, a = (bytes.fromhex(x) for x in ("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
                                          "070000004041424344454647", "50515253c0c1c2c3c4c5c6c7"))
    sealed = ChaCha20Poly1305(k).encrypt(n, SUNSCREEN, a)
    assert sealed[:16].hex() == "d31a8d34648e60db7b86afbc53ef7ec2"
    assert sealed[-16:].hex() == "1ae10b594f09e26a7e902ecbd0600691"
    add("RFC 8439 2.8.2", k, n, a, SUNSCREEN, flags=["Published"])
    for n_len in list(range(0, 130)) + [255, 256, 257, 1000, 1500, 2048, 3000]:
        add(f"{n_len}-byte message", rng.randbytes(32), rng.randbytes(12),
            rng.randbytes(rng.choice([0, 1, 12, 16, 17, 64, 200])), rng.randbytes(n_len))
    for comment, mutate in [("modified tag", lambda c: c[:-1] + bytes([c[-1] ^ 1])),
                            ("modified ciphertext", lambda c: bytes([c[0] ^ 0x80]) + c[1:]),
                            ("tag of zeros", lambda c: c[:-16] + bytes(16)),
                            ("truncated tag", lambda c: c[:-1])]:
        key, nonce, aad, msg = rng.randbytes(32), rng.randbytes(12), rng.randbytes(20), rng.randbytes(50)
        add(comment, key, nonce, aad, msg, mutate(ChaCha20Poly1305(key).encrypt(nonce, msg, aad)),
            "invalid", ["ModifiedTag"])
    key, nonce, msg = rng.randbytes(32), rng.randbytes(12), rng.randbytes(50)
    add("modified AAD", key, nonce, b"other aad", msg, ChaCha20Poly1305(key).encrypt(nonce, msg, b"aad"),
        "invalid", ["ModifiedAad"])
    ok = ChaCha20Poly1305(key).encrypt(nonce, msg, b"")
    add("wrong nonce", key, rng.randbytes(12), b"", msg, ok, "invalid", ["ModifiedNonce"])
    for bad_len in (8, 16):
        add(f"{bad_len * 8}-bit nonce", key, rng.randbytes(bad_len), b"", msg, ok, "invalid", ["InvalidNonceSize"])
    return wycheproof("CHACHA20-POLY1305", [{"type": "AeadTest", "ivSize": 96, "keySize": 256,
                                              "tagSize": 128, "tests": tests}],
                      "cryptography (OpenSSL) ChaCha20Poly1305; RFC 8439 2.8.2 checked")


def ecdsa_p256(rng: random.Random) -> dict:
    """EcdsaP1363Verify groups. Keys come from seeded private scalars; the
    signatures from cryptography (OpenSSL), so they are random, not seeded:
    rerunning the generator changes them, never their validity."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    b32 = lambda x: x.to_bytes(32, "big")  # noqa: E731
    groups, tc = [], 0

    def test(comment, msg, sig, result, flags=()):
        nonlocal tc
        tc += 1
        return {"tcId": tc, "comment": comment, "flags": list(flags), "msg": msg.hex(),
                "sig": sig.hex(), "result": result}

    for _ in range(6):
        priv = ec.derive_private_key(rng.randrange(1, n), ec.SECP256R1())
        pub = priv.public_key().public_bytes(serialization.Encoding.X962,
                                             serialization.PublicFormat.UncompressedPoint)
        tests = []
        for m_len in (0, 1, 32, 64, 100, 1000):
            msg = rng.randbytes(m_len)
            r, s = utils.decode_dss_signature(priv.sign(msg, ec.ECDSA(hashes.SHA256())))
            tests += [test(f"{m_len}-byte message", msg, b32(r) + b32(s), "valid"),
                      test("s replaced by n - s", msg, b32(r) + b32(n - s), "valid", ["MalleableS"]),
                      test("modified message", msg + b"\0", b32(r) + b32(s), "invalid"),
                      test("r + 1", msg, b32((r + 1) % n) + b32(s), "invalid", ["ModifiedSignature"]),
                      test("s xor 1", msg, b32(r) + b32(s ^ 1), "invalid", ["ModifiedSignature"])]
        msg = b"edge cases"
        r, s = utils.decode_dss_signature(priv.sign(msg, ec.ECDSA(hashes.SHA256())))
        for comment, rr, ss in (("r = 0", 0, s), ("s = 0", r, 0), ("r = n", n, s), ("s = n", r, n),
                                ("r + n", r + n, s), ("s + n", r, s + n)):
            if rr < 2**256 and ss < 2**256:
                tests.append(test(comment, msg, b32(rr) + b32(ss), "invalid", ["ArithmeticError"]))
        tests.append(test("signature too short", msg, (b32(r) + b32(s))[:63], "invalid", ["SignatureSize"]))
        tests.append(test("signature too long", msg, b32(r) + b32(s) + b"\0", "invalid", ["SignatureSize"]))
        groups.append({"type": "EcdsaP1363Verify", "sha": "SHA-256",
                       "publicKey": {"type": "EcPublicKey", "curve": "secp256r1", "keySize": 256,
                                     "uncompressed": pub.hex()}, "tests": tests})
    # keys that registration must refuse: every signature is then invalid
    for comment, pub in (("point off the curve", b"\x04" + b32(1) + b32(2)),
                         ("x >= p", b"\x04" + b"\xff" * 64)):
        groups.append({"type": "EcdsaP1363Verify", "sha": "SHA-256",
                       "publicKey": {"type": "EcPublicKey", "curve": "secp256r1", "keySize": 256,
                                     "uncompressed": pub.hex()},
                       "tests": [test(f"invalid public key: {comment}", b"m", b32(1) + b32(1), "invalid",
                                      ["InvalidPublicKey"])]})
    return wycheproof("ECDSA", groups, "cryptography (OpenSSL) ECDSA P-256/SHA-256")


def main() -> None:
    rng = random.Random(0xC0FFEE)
    files = {"aes_cbc_pkcs5_cryptography.json": aes_cbc(rng),
             "sha256_hashlib.json": sha(rng, "SHA-256"),
             "sha384_hashlib.json": sha(rng, "SHA-384"),
             "sha512_hashlib.json": sha(rng, "SHA-512"),
             "hmac_sha256_hashlib.json": hmac_file(rng, 256),
             "hmac_sha512_hashlib.json": hmac_file(rng, 512),
             "chacha20_poly1305_cryptography.json": chacha20_poly1305(rng),
             "ecdsa_secp256r1_sha256_p1363_cryptography.json": ecdsa_p256(rng)}
    for name, content in files.items():
        (HERE / name).write_text(json.dumps(content, indent=1) + "\n")
        print(f"wrote {name}: {content['numberOfTests']} tests")


if __name__ == "__main__":
    main()
