"""Pure-BPF ChaCha20, Poly1305 and ChaCha20-Poly1305 (RFC 8439) against
pyca/cryptography, from packet (skb) and map-memory sources."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.poly1305 import Poly1305


BOUNDARIES = sorted({n + d for n in range(64, 3400, 320) for d in (-1, 0, 1)})



@pytest.mark.parametrize("source", ["skb", "mem"])
def test_seal_and_open_every_length(kat, source):
    for n in list(range(301)) + BOUNDARIES:
        key, nonce, aad, msg = os.urandom(32), os.urandom(12), os.urandom(n % 67), os.urandom(n)
        ref = ChaCha20Poly1305(key).encrypt(nonce, msg, aad)
        assert kat.seal(key, nonce, aad, msg, source) == ref, n
        assert kat.open(key, nonce, aad, ref, source) == msg, n


@pytest.mark.parametrize("source", ["skb", "mem"])
def test_tampering_is_rejected_and_releases_no_plaintext(kat, source):
    key, nonce, aad, msg = os.urandom(32), os.urandom(12), b"header", os.urandom(200)
    ref = ChaCha20Poly1305(key).encrypt(nonce, msg, aad)
    for i in (0, 100, 199, 200, 215):            # ciphertext bytes and tag bytes
        bad = bytearray(ref)
        bad[i] ^= 0x04
        assert kat.open(key, nonce, aad, bytes(bad), source) is None, i
    assert kat.open(key, nonce, b"Header", ref, source) is None        # AAD
    assert kat.open(key, os.urandom(12), aad, ref, source) is None     # nonce
    assert kat.open(os.urandom(32), nonce, aad, ref, source) is None   # key
    if source == "mem":  # open failed in place: the buffer must not hold plaintext
        assert msg[:32] not in kat.obj.get_global("kat_msg")


def test_aad_lengths(kat):
    key, nonce, msg = os.urandom(32), os.urandom(12), os.urandom(100)
    for alen in (0, 1, 15, 16, 17, 63, 64, 65, 255, 256):
        aad = os.urandom(alen)
        assert kat.seal(key, nonce, aad, msg) == ChaCha20Poly1305(key).encrypt(nonce, msg, aad), alen


def test_chacha20_and_poly1305_alone(kat):
    key, nonce = os.urandom(32), os.urandom(12)
    for n in (0, 1, 63, 64, 65, 255, 256, 1500, 3000):
        msg = os.urandom(n)
        kat.io(key=key, nonce=nonce)
        _, out = kat.run("kat_chacha20_skb", msg)
        ref = Cipher(algorithms.ChaCha20(key, (1).to_bytes(4, "little") + nonce), None).encryptor().update(msg)
        assert out == ref, n
        kat.io(key=key, len=n)
        kat.obj.set_global("kat_msg", msg)
        kat.obj.program("kat_poly1305_mem").test_run(data=kat.frame(b""))
        assert kat.result()["out"][:16] == Poly1305.generate_tag(key, msg), n
