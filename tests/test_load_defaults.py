"""`cryptbpf load` with its defaults, where users load: a veth end in a
network namespace (containers, every test here).

- `--xdp-mode auto` picks a mode that works for the device and the program:
  the four programs answering with XDP_TX answer their clients; the
  tunnel leaves the peer end's offloads as it found them; the load record
  holds the mode the kernel reports and the one asked for; an explicit mode
  with a known cost loads with a one-line warning.
- A second load (another device) refuses program options, valid or not,
  with one line naming the admin command that changes them.
- Every knob value outside its range is one `cryptbpf:` line, nothing
  loaded, nothing left behind.
- An XDP attach the kernel refuses names the device and the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from cryptbpf.bpf import attach, pins
from cryptbpf import lifecycle, netns
from cryptbpf.errors import CryptbpfError
from cryptbpf.keys import write_key_file
from cryptbpf.bpf.object import BpfObject
from cryptbpf.paths import bpf_object
from cryptbpf.programs import discover

from conftest import TEST_OBJ_DIR, require_feature, run_cli, system_snapshot, udp_echo

SPECS = discover()
APP_PORT = 5353


def requires(name: str) -> None:
    for f in SPECS[name].requires:
        require_feature(f)


def cli_in(ns: str, *args: str) -> subprocess.CompletedProcess:
    """The real CLI run inside namespace `ns` (a client on host A)."""
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "cryptbpf.cli", *args],
                          capture_output=True, text=True)


def one_error_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cryptbpf: "), res.stderr
    return lines[0]


def xdp_hook(name: str, dkey: str) -> dict:
    (hook,) = [h for h in pins.read_state(name)["devices"][dkey]["hooks"] if h["kind"] == "xdp"]
    return hook


def link_xdp(ns: str, dev: str) -> str:
    """What the kernel says is attached: xdp / xdpgeneric / xdpoffload."""
    out = subprocess.run(["ip", "-n", ns, "link", "show", "dev", dev],
                         capture_output=True, text=True).stdout
    return next((w for w in out.split() if w.startswith("xdp")), "")


@pytest.fixture
def echo_b(veth_pair):
    """A UDP echo service on B (APP_PORT), answering b"echo:" + data."""
    with udp_echo(veth_pair.ns_b, veth_pair.addr_b, APP_PORT):
        yield


@pytest.fixture
def loaded_on_b(veth_pair):
    """load(PROGRAM, *options) with the CLI's defaults on B's veth end;
    checks the mode taken (generic, no warning), unloads afterwards and
    checks nothing is left behind."""
    v = veth_pair
    loaded = []

    def load(name: str, *options: str):
        requires(name)
        loaded.append((name, system_snapshot(v.ns_b, name)))
        r = run_cli("load", name, v.dev_b, "--netns", v.ns_b, *options)
        assert r.returncode == 0, r.stderr
        assert r.stderr == "", r.stderr       # the default has no cost to warn about
        hook = xdp_hook(name, f"{v.ns_b}/{v.dev_b}")
        assert (hook["mode"], hook["requested"]) == ("skb", "auto")
        assert link_xdp(v.ns_b, v.dev_b) == "xdpgeneric"
        return r

    yield load
    for name, before in loaded:
        if pins.is_loaded(name):
            run_cli("unload", name, check=True)
        assert system_snapshot(v.ns_b, name) == before


# ------------------------------------------ 1. XDP_TX answers on veth

def test_zkp_filter_answers_with_the_defaults(veth_pair, loaded_on_b, tmp_path):
    v = veth_pair
    loaded_on_b("zkp-filter", "--protect", "8080")
    secret = tmp_path / "alice.secret"
    write_key_file(secret, os.urandom(32))
    run_cli("zkp", "add-key", "1", "--secret-file", str(secret), check=True)
    r = cli_in(v.ns_a, "zkp", "connect", v.addr_b, "7227", "--secret-file", str(secret),
               "--key-id", "1")
    assert r.returncode == 0, r.stderr            # was: "no challenge from the server"
    assert f"authorized {v.addr_a} at {v.addr_b}" in r.stdout


def test_crypto_ratelimit_answers_with_the_defaults(veth_pair, loaded_on_b, echo_b):
    v = veth_pair
    # under attack: every source solves a puzzle before its first datagram
    loaded_on_b("crypto-ratelimit", "--protect", str(APP_PORT), "--under-attack", "1")
    r = cli_in(v.ns_a, "pow", "send", v.addr_b, str(APP_PORT), "hello")
    assert r.returncode == 0, r.stderr
    assert "reply: b'echo:hello'" in r.stdout
    assert "sent 1, replies 1, challenges 1, admitted 1" in r.stdout
    with pins.Pinned("crypto-ratelimit") as h:
        st = SPECS["crypto-ratelimit"].status(h)
    assert st["stats"]["no_room"] == 0 and st["stats"]["solved"] == 1


def test_pki_validator_answers_with_the_defaults(veth_pair, loaded_on_b, tmp_path):
    v = veth_pair
    run_cli("pki", "demo-ca", str(tmp_path / "pki"), check=True)
    f = {p.name: str(p) for p in (tmp_path / "pki").iterdir()}
    loaded_on_b("pki-validator", "--protect", str(APP_PORT), "--trust", f["root.pem"])
    r = cli_in(v.ns_a, "pki", "connect", v.addr_b, "7443", "--cert", f["leaf.pem"],
               "--chain", f["chain.pem"], "--key", f["leaf.key"])
    assert r.returncode == 0, r.stderr            # was: "no answer from ..."
    assert f"authorized by {v.addr_b}" in r.stdout


def test_crypto_offload_answers_with_the_defaults(veth_pair, loaded_on_b):
    v = veth_pair
    loaded_on_b("crypto-offload")
    r = run_cli("offload", "request", "sha256", v.addr_b, "--data", "hello", "--netns", v.ns_a,
                "--json")
    assert r.returncode == 0, r.stderr            # was: "no reply"
    out = json.loads(r.stdout)
    assert out["served_by"] == "kernel" and out["result"] == hashlib.sha256(b"hello").hexdigest()


def ethtool_k(ns: str, dev: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-k", dev],
                          capture_output=True, text=True, check=True).stdout


def test_tunnel_defaults_leave_both_ends_offloads_as_they_were(veth_pair, tmp_path):
    """The tunnel on both ends of a veth pair (two hosts), loaded with the
    defaults and unloaded: `ethtool -k` of each end is what it was (native
    XDP on one end turned the other end's TSO off for good)."""
    requires("encrypted-tunnel")
    v = veth_pair
    key = tmp_path / "tunnel.key"
    write_key_file(key, os.urandom(32))
    ends = ((v.ns_a, v.dev_a), (v.ns_b, v.dev_b))
    before = {ns: ethtool_k(ns, dev) for ns, dev in ends}
    try:
        r = run_cli("load", "encrypted-tunnel", v.dev_a, "--netns", v.ns_a, "--peer", v.addr_b,
                    "--key-file", str(key), check=True)
        assert r.stderr == ""
        run_cli("load", "encrypted-tunnel", v.dev_b, "--netns", v.ns_b, check=True)
        run_cli("tunnel", "add-peer", v.addr_a, "--key-file", str(key), check=True)
        for ns, dev in ends:
            hook = xdp_hook("encrypted-tunnel", f"{ns}/{dev}")
            assert (hook["mode"], hook["requested"]) == ("skb", "auto")
        ping = subprocess.run(["ip", "netns", "exec", v.ns_a, "ping", "-c", "2", "-W", "1", v.addr_b],
                              capture_output=True, text=True)
        assert ping.returncode == 0, ping.stdout
    finally:
        run_cli("unload", "encrypted-tunnel")
    after = {ns: ethtool_k(ns, dev) for ns, dev in ends}
    assert after == before


def test_auto_records_the_mode_the_kernel_took(veth_pair):
    """On a device whose driver has no native XDP (lo), auto is the
    kernel's choice, and the record says which one it made."""
    requires("content-verifier")
    v = veth_pair
    try:
        run_cli("load", "content-verifier", "lo", "--netns", v.ns_b, check=True)
        hook = xdp_hook("content-verifier", f"{v.ns_b}/lo")
        assert (hook["mode"], hook["requested"]) == ("skb", "auto")
    finally:
        run_cli("unload", "content-verifier")


def test_native_mode_on_veth_warns_in_one_line(veth_pair):
    requires("zkp-filter")
    v = veth_pair
    before = system_snapshot(v.ns_b, "zkp-filter")
    try:
        r = run_cli("load", "zkp-filter", v.dev_b, "--netns", v.ns_b, "--xdp-mode", "drv")
        assert r.returncode == 0, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cryptbpf: warning: native XDP on veth"), r.stderr
        assert "XDP_TX answers are dropped unless the peer end has an XDP program" in lines[0]
        assert "offload" in lines[0]
        hook = xdp_hook("zkp-filter", f"{v.ns_b}/{v.dev_b}")
        assert (hook["mode"], hook["requested"]) == ("drv", "drv")
        assert link_xdp(v.ns_b, v.dev_b) == "xdp"
    finally:
        run_cli("unload", "zkp-filter")
    assert system_snapshot(v.ns_b, "zkp-filter") == before
    # a program that never answers with XDP_TX: only the offload cost
    requires("content-verifier")
    try:
        r = run_cli("load", "content-verifier", v.dev_b, "--netns", v.ns_b, "--xdp-mode", "drv")
        assert r.returncode == 0, r.stderr
        assert "warning" in r.stderr and "XDP_TX" not in r.stderr
    finally:
        run_cli("unload", "content-verifier")


# ------------------------------------- 2. options on a second load

SECOND_LOAD = {
    # program: (first load's options, second load's options, expected text)
    "zkp-filter": ([], ["--protect", "8080"], "`cryptbpf zkp protect PORT`"),
    "crypto-ratelimit": ([], ["--rate", "5"], "`cryptbpf pow config --rate N`"),
    "pki-validator": ([], ["--protect", "22"], "`cryptbpf pki protect PORT`"),
    "signed-auth": (["--port", "5000"], ["--port", "5001"], "`cryptbpf signed-auth protect PORT`"),
    "crypto-offload": ([], ["--mode", "kernel"], "`cryptbpf offload config mode=M`"),
}
INVALID = {
    "zkp-filter": (["--protect", "99999"], "--protect 99999 out of range 1-65535"),
    "crypto-ratelimit": (["--rate", "0"], "--rate: 0 out of range"),
    "pki-validator": (["--protect", "99999"], "--protect 99999 out of range 1-65535"),
    "signed-auth": (["--port", "70000"], "--port 70000 out of range 1-65535"),
    "crypto-offload": (["--mode", "bogus"], "--mode must be one of auto, kernel, daemon"),
}


@pytest.mark.parametrize("name", sorted(SECOND_LOAD))
def test_second_load_refuses_options(veth_pair, name):
    requires(name)
    v = veth_pair
    first, second, how = SECOND_LOAD[name]
    before = system_snapshot(v.ns_a, name)
    try:
        run_cli("load", name, v.dev_b, "--netns", v.ns_b, *first, check=True)
        state = pins.read_state(name)
        for opts, expect in ((second, how), INVALID[name]):
            line = one_error_line(run_cli("load", name, v.dev_a, "--netns", v.ns_a, *opts))
            assert expect in line, line
            assert pins.read_state(name) == state        # not loaded on A, nothing changed
        line = one_error_line(run_cli("load", name, v.dev_a, "--netns", v.ns_a, *second))
        assert "options of that load apply" in line and f"attach without {second[0]}" in line
        assert system_snapshot(v.ns_a, name) | {"pins": None} == before   # A untouched
        # without options it attaches
        run_cli("load", name, v.dev_a, "--netns", v.ns_a, check=True)
    finally:
        run_cli("unload", name)
    assert system_snapshot(v.ns_a, name) == before


def test_second_load_option_without_a_command_says_reload(veth_pair):
    requires("pki-validator")
    v = veth_pair
    try:
        run_cli("load", "pki-validator", v.dev_b, "--netns", v.ns_b, check=True)
        line = one_error_line(run_cli("load", "pki-validator", v.dev_a, "--netns", v.ns_a,
                                      "--lifetime", "60", "--protect", "22"))
        assert "--lifetime: unload and load again" in line and "`cryptbpf pki protect PORT`" in line
        line = one_error_line(run_cli("load", "pki-validator", v.dev_a, "--netns", v.ns_a,
                                      "--lifetime", "0"))
        assert "--lifetime 0 out of range" in line
    finally:
        run_cli("unload", "pki-validator")


# ------------------------------------------------- 3. knob ranges

def knob_cases():
    for name, spec in SPECS.items():
        for knob, (lo, hi) in spec.knob_ranges.items():
            for value in (lo - 1, hi + 1):
                yield pytest.param(name, knob, value, id=f"{name}-{knob}={value}")
    for name, knob in (("content-verifier", "udp_port"), ("crypto-offload", "udp_port"),
                       ("aes-roundtrip", "udp_port"), ("pki-validator", "ctrl_port")):
        for value in (70000, -1):
            yield pytest.param(name, knob, value, id=f"{name}-{knob}={value}")


def test_every_knob_has_a_range_within_its_c_type():
    for name, spec in SPECS.items():
        assert set(spec.knob_ranges) == set(spec.knobs), name
        with BpfObject.open(str(bpf_object(spec.object))) as obj:
            for knob, (lo, hi) in spec.knob_ranges.items():
                assert lo <= hi, (name, knob)
                if knob not in obj.globals():
                    continue                     # not a global (encrypted-logger's ring_kb)
                size = obj._var(knob)[1].size
                assert 0 <= lo and hi < 2 ** (8 * size), (name, knob, size)


@pytest.mark.parametrize("name,knob,value", list(knob_cases()))
def test_knob_out_of_range_is_one_line_and_leaves_nothing(veth_pair, name, knob, value):
    requires(name)
    v = veth_pair
    spec = SPECS[name]
    where = [] if all(h.point == "link" for h in spec.hooks) else [v.dev_b, "--netns", v.ns_b]
    before = system_snapshot(v.ns_b, name), system_snapshot(program=name)
    try:
        line = one_error_line(run_cli("load", name, *where, "--set", f"{knob}={value}"))
        lo, hi = spec.knob_ranges[knob]
        assert f"--set {knob}: {value} out of range {lo}-{hi}" in line, line
        assert not pins.is_loaded(name)
        assert (system_snapshot(v.ns_b, name), system_snapshot(program=name)) == before
    finally:
        if pins.is_loaded(name):            # a value that slipped through (udp_port=-1 did)
            run_cli("unload", name)


# ------------------------------------------------- 4. attach errors

def test_unknown_xdp_mode_lists_the_modes(veth_pair):
    requires("zkp-filter")
    v = veth_pair
    line = one_error_line(run_cli("load", "zkp-filter", v.dev_b, "--netns", v.ns_b,
                                  "--xdp-mode", "bogus"))
    assert "bogus" in line and ("--xdp-mode" in line or "XDP mode" in line), line
    for mode in ("auto", "skb", "drv", "hw"):
        assert mode in line.replace("bogus", ""), line
    assert not pins.is_loaded("zkp-filter")
    # the library says so too, before loading anything
    with pytest.raises(CryptbpfError, match=r"unknown XDP mode 'bogus'; modes: auto \(.*skb.*drv.*hw"):
        lifecycle.load(SPECS["zkp-filter"], v.dev_b, xdp_mode="bogus", netns=v.ns_b)
    assert not pins.is_loaded("zkp-filter")


def test_attach_refused_names_the_device_and_the_program_there(veth_pair):
    requires("zkp-filter")
    v = veth_pair
    other = BpfObject.open(str(TEST_OBJ_DIR / "xdp_pass.bpf.o")).load()
    try:
        prog = other.program("xdp_pass")
        with netns.inside(v.ns_b):
            att = attach.xdp_attach(prog.fd, prog.id, attach.ifindex(v.dev_b), "drv")
        def snapshot():      # the link's carrier flag may still change: only programs
            snap = system_snapshot(v.ns_b, "zkp-filter")
            return snap | {"xdp": [l for l in snap["xdp"] if "prog/xdp" in l]}

        before = snapshot()
        for mode in ("auto", "drv"):
            line = one_error_line(run_cli("load", "zkp-filter", v.dev_b, "--netns", v.ns_b,
                                          "--xdp-mode", mode))
            assert f"on {v.dev_b} (ifindex " in line, line
            assert f"program xdp_pass (prog id {prog.id}) is attached there in drv mode" in line, line
            assert "is another XDP program attached?" not in line
            assert not pins.is_loaded("zkp-filter")
            assert snapshot() == before
        with netns.inside(v.ns_b):
            attach.xdp_detach(att)
        # no program in the way: the errno's text (veth offloads nothing)
        line = one_error_line(run_cli("load", "zkp-filter", v.dev_b, "--netns", v.ns_b,
                                      "--xdp-mode", "hw"))
        assert f"attach XDP (hw) on {v.dev_b}" in line and "Invalid argument" in line, line
        assert "attached there" not in line
        assert not pins.is_loaded("zkp-filter")
    finally:
        other.close()
