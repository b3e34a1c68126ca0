"""Pure-BPF SHA-256/384/512 and HMAC against hashlib/hmac on random inputs,
from packet (skb) and map-memory sources."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest


HASHES = {256: hashlib.sha256, 384: hashlib.sha384, 512: hashlib.sha512}
BOUNDARIES = sorted({n + d for b in (64, 128) for n in range(b, 3400, b * 5) for d in (-1, 0, 1)})



@pytest.mark.parametrize("source", ["skb", "mem"])
@pytest.mark.parametrize("alg", [256, 384, 512])
def test_every_length_0_to_300(kat, alg, source):
    for n in range(301):
        msg = os.urandom(n)
        assert kat.digest(alg, msg, source) == HASHES[alg](msg).digest(), n


@pytest.mark.parametrize("source", ["skb", "mem"])
@pytest.mark.parametrize("alg", [256, 512])
def test_block_boundaries_up_to_max(kat, alg, source):
    for n in BOUNDARIES:
        if source == "mem" and n > 4096:
            continue
        msg = os.urandom(n)
        assert kat.digest(alg, msg, source) == HASHES[alg](msg).digest(), n


@pytest.mark.parametrize("source", ["skb", "mem"])
@pytest.mark.parametrize("alg", [256, 512])
def test_hmac_random_keys_and_messages(kat, alg, source):
    fn = HASHES[alg]
    for klen in (0, 1, 31, 32, 64, 65, 127, 128):
        for n in (0, 1, 55, 56, 64, 111, 112, 128, 300, 1499):
            key, msg = os.urandom(klen), os.urandom(n)
            want = hmac.new(key, msg, fn).digest()
            assert kat.hmac(alg, key, msg, source) == want, (klen, n)


@pytest.mark.parametrize("alg", [256, 512])
def test_hmac_verify_rejects_forgeries(kat, alg):
    key, msg = os.urandom(32), os.urandom(200)
    tag = hmac.new(key, msg, HASHES[alg]).digest()
    assert kat.hmac_verify(alg, key, msg, tag)
    assert kat.hmac_verify(alg, key, msg, tag[:16])          # truncated tag
    for i in (0, 7, 15, len(tag) - 1):
        forged = bytearray(tag)
        forged[i] ^= 0x01
        assert not kat.hmac_verify(alg, key, msg, bytes(forged)), i
    assert not kat.hmac_verify(alg, key, msg + b"x", tag)    # tampered message
    assert not kat.hmac_verify(alg, os.urandom(32), msg, tag)  # wrong key
    assert not kat.hmac_verify(alg, key, msg, tag[:9])       # under 80 bits: refused


@pytest.mark.parametrize("alg", [256, 384, 512])
def test_one_shot_dispatch_matches_hashlib(kat, alg):
    """hash_kfunc.bpf.h: the kfunc path where the kernel has one (none does
    yet), the pure-BPF path otherwise -- same answer either way."""
    for n in (0, 1, 111, 112, 127, 128, 129, 1000, 4096):
        msg = os.urandom(n)
        r = kat.call("kat_sha_oneshot", msg, "mem", alg=alg)
        assert r["rc"] == 0 and r["out"][:alg // 8] == HASHES[alg](msg).digest(), n
