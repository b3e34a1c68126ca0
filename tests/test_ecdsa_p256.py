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
