"""A CLI killed (SIGKILL) at each step of `load` and `unload` leaves a state
that the next `status` names and the next `load` or `unload` repairs: no
orphan TC filter, XDP program, clsact qdisc, pin, state file, route or
device setting.

The kill comes from lifecycle's test hook (CRYPTBPF_CRASH_AT=STEP[#N]: the
process SIGKILLs itself the Nth time it reaches STEP). encrypted-tunnel is
the program: it has every kind of thing a load makes (an XDP program, TC
filters on ingress and egress with the clsact qdisc they need, device
settings, a route per peer). Slow (a dozen CLI runs per case): host only."""

from __future__ import annotations

import json
import os
import signal

import pytest

from cryptbpf import lifecycle
from cryptbpf.bpf import pins
from cryptbpf.keys import write_key_file
from cryptbpf.netns import VethPair
from cryptbpf.programs.encrypted_tunnel import SPEC

from conftest import require_feature, require_root, run_cli
from test_encrypted_tunnel_netns import device_state

pytestmark = pytest.mark.host_only(reason="a dozen CLI subprocesses per case: minutes under emulation")

# every step once, and the 2nd/3rd hook (XDP, TC ingress, TC egress)
LOAD_CRASHES = [*lifecycle.LOAD_STEPS, "attached#2", "hook-recorded#2", "attached#3"]


@pytest.fixture(scope="module")
def tunnel(tmp_path_factory):
    """(veth pair, key file, load args) for encrypted-tunnel on end a."""
    require_root()
    for f in SPEC.requires:
        require_feature(f)
    pair = VethPair(f"cbcr{os.getpid() % 100000}", subnet=f"10.213.{os.getpid() % 250}")
    pair.create()
    key = tmp_path_factory.mktemp("crash") / "tunnel.key"
    write_key_file(key, os.urandom(32))
    args = ["encrypted-tunnel", pair.dev_a, "--netns", pair.ns_a, "--xdp-mode", "skb",
            "--peer", pair.addr_b, "--key-file", str(key), "--suite", "chacha20-poly1305"]
    try:
        yield pair, args
    finally:
        run_cli("unload", SPEC.name)
        pair.close()


def _killed_at(step: str, *args: str):
    res = run_cli(*args, env={**os.environ, lifecycle.CRASH_ENV: step})
    assert res.returncode == -signal.SIGKILL, (step, res.stdout, res.stderr)


def _status_entry() -> dict | None:
    res = run_cli("status", "--json")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    found = [e for e in json.loads(res.stdout) if e["program"] == SPEC.name]
    return found[0] if found else None


def _nothing_left(pair, before) -> None:
    assert device_state(pair.ns_a, pair.dev_a) == before
    assert not pins.pin_dir(SPEC.name).exists()
    assert not pins.state_path(SPEC.name).exists()


@pytest.mark.parametrize("then", ["unload", "load"])
@pytest.mark.parametrize("step", LOAD_CRASHES)
def test_load_killed_at_a_step_is_repaired_by_the_next_call(tunnel, step, then):
    pair, args = tunnel
    dkey = f"{pair.ns_a}/{pair.dev_a}"
    before = device_state(pair.ns_a, pair.dev_a)
    _killed_at(step, "load", *args)
    entry = _status_entry()
    if step == "recorded":          # the load was complete: nothing to repair
        assert entry["devices"][dkey] and "interrupted" not in entry
    else:
        assert entry["interrupted"] == [dkey] and entry["repair"] == f"cryptbpf unload {SPEC.name}"
    if then == "unload":
        res = run_cli("unload", SPEC.name)
        assert res.returncode == 0 and res.stdout.strip() == f"{SPEC.name}: detached from {dkey}", res
    else:
        res = run_cli("load", *args)
        if step == "recorded":
            assert res.returncode == 1
            assert res.stderr.strip() == f"cryptbpf: {SPEC.name} is already loaded on {dkey}"
        else:
            assert res.returncode == 0, res.stderr
            assert f"an interrupted load or unload of {SPEC.name} on {dkey} was undone" in res.stderr
            entry = _status_entry()
            assert "interrupted" not in entry and len(entry["devices"][dkey]) == 3
        run_cli("unload", SPEC.name, check=True)
    _nothing_left(pair, before)


@pytest.mark.parametrize("then", ["unload", "load"])
@pytest.mark.parametrize("step", lifecycle.UNLOAD_STEPS)
def test_unload_killed_at_a_step_is_repaired_by_the_next_call(tunnel, step, then):
    pair, args = tunnel
    dkey = f"{pair.ns_a}/{pair.dev_a}"
    before = device_state(pair.ns_a, pair.dev_a)
    run_cli("load", *args, check=True)
    _killed_at(step, "unload", SPEC.name)
    assert _status_entry()["interrupted"] == [dkey]
    if then == "unload":
        res = run_cli("unload", SPEC.name)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    else:
        res = run_cli("load", *args)
        assert res.returncode == 0, res.stderr
        assert f"an interrupted load or unload of {SPEC.name} on {dkey} was undone" in res.stderr
        run_cli("unload", SPEC.name, check=True)
    _nothing_left(pair, before)


def test_the_crash_hook_is_inert_unless_set(monkeypatch):
    """Unset, a step is a no-op; set to another step, too."""
    monkeypatch.delenv(lifecycle.CRASH_ENV, raising=False)
    lifecycle._step("attached")
    monkeypatch.setenv(lifecycle.CRASH_ENV, "recorded")
    lifecycle._step("attached")
