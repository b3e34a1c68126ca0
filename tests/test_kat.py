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
