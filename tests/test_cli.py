"""The `cryptbpf` command as a user runs it: JSON output, load/status/
unload leaving the system exactly as before, one-line errors."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from cryptbpf.bpf import kernel
from cryptbpf.programs import discover

from conftest import require_feature, require_root, run_cli, system_snapshot


def test_doctor_json_is_valid_and_complete():
    res = run_cli("doctor", "--json", check=True)
    data = json.loads(res.stdout)
    assert data["kernel"]["release"] == kernel.release()
    assert set(data["programs"]) == set(discover())
    assert data["primitives"]["sha256"]
    for name, feat in data["features"].items():
        assert feat["available"] == kernel.has(name)
    if kernel.privileged():
        for name, prog in data["programs"].items():
            missing = [f for f in prog["requires"] if not kernel.has(f)]
            assert prog["runnable"] == (not missing and prog.get("loads", False)), name


def test_doctor_text_names_each_program():
    out = run_cli("doctor", check=True).stdout
    for name in discover():
        assert name in out


def test_programs_lists_every_module():
    out = run_cli("programs", check=True).stdout
    assert all(name in out for name in discover())


@pytest.mark.parametrize("args,message", [
    (["load", "no-such-prog", "lo"], "unknown program 'no-such-prog'"),
    (["unload", "aes-roundtrip"], "aes-roundtrip is not loaded"),
    (["load", "aes-roundtrip", "nonexistent0"], "needs a key"),
    (["load", "aes-roundtrip", "lo", "--set", "bogus=1", "--key-file", "/dev/null"], "not a regular file"),
])
def test_errors_are_one_line_with_nonzero_exit(args, message):
    require_root()
    res = run_cli(*args)
    assert res.returncode == 1
    assert res.stderr.startswith("cryptbpf: ") and message in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_world_readable_key_file_refused(tmp_path):
    require_root()
    key = tmp_path / "k"
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    res = run_cli("load", "aes-roundtrip", "lo", "--key-file", str(key))
    assert res.returncode == 1 and "chmod 600" in res.stderr


def test_keys_new_writes_private_key(tmp_path):
    path = tmp_path / "new.key"
    run_cli("keys", "new", str(path), "--size", "16", check=True)
    assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_bytes()) == 16
    again = run_cli("keys", "new", str(path))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr


def test_not_root_gets_a_clear_message():
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to drop to an unprivileged user")
    import subprocess
    import sys
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, "-m", "cryptbpf.cli", "status"],
                         capture_output=True, text=True, env={**os.environ, "HOME": "/tmp"})
    assert res.returncode == 1
    assert "needs root" in res.stderr and "Traceback" not in res.stderr


def test_load_status_unload_leaves_no_trace(veth_pair, tmp_path):
    spec = discover()["aes-roundtrip"]
    for f in spec.requires:
        require_feature(f)
    ns, dev = veth_pair.ns_a, veth_pair.dev_a
    before = system_snapshot(ns, "aes-roundtrip"), system_snapshot(program="aes-roundtrip")
    key = tmp_path / "k"
    run_cli("keys", "new", str(key), check=True)
    out = run_cli("load", "aes-roundtrip", dev, "--netns", ns, "--key-file", str(key),
                  "--set", "udp_port=5000", check=True).stdout
    assert "attached to" in out and "tc egress" in out and "tc ingress" in out
    try:
        assert system_snapshot(ns) != before[0]
        st = json.loads(run_cli("status", "--json", check=True).stdout)
        (entry,) = [e for e in st if e["program"] == "aes-roundtrip"]
        assert f"{ns}/{dev}" in entry["devices"]
        assert entry["stats"] == {k: 0 for k in entry["stats"]} and "encrypted" in entry["stats"]
        text = run_cli("status", check=True).stdout
        assert key.read_bytes().hex() not in text + json.dumps(st)
        dup = run_cli("load", "aes-roundtrip", dev, "--netns", ns)
        assert dup.returncode == 1 and "already loaded" in dup.stderr
        assert "aes_keys" in run_cli("map", "aes-roundtrip", check=True).stdout
        refused = run_cli("map", "aes-roundtrip", "aes_keys")
        assert refused.returncode == 1 and "key material" in refused.stderr
    finally:
        run_cli("unload", "aes-roundtrip", dev, "--netns", ns, check=True)
    assert (system_snapshot(ns, "aes-roundtrip"), system_snapshot(program="aes-roundtrip")) == before
