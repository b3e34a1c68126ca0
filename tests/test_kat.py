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
