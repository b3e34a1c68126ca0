"""Pins on a machine where bpffs is not mounted, and from `ip netns exec`.

A fresh machine has nothing on /sys/fs/bpf; `load` must mount it (like
bpftool), `status` and `unload` must then find the pins. Each scenario runs
in a private mount namespace *and* a private PID namespace (`unshare -m -p
--mount-proc`): /sys/fs/bpf can be unmounted there without touching the
host, and /proc/1 is the scenario's own shell, so "init's mount namespace"
is the private one too.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, run_cli

# host_only: mount and namespace handling of the CLI, kernel-independent;
# each test starts the CLI several times (~15 s each in the emulated guest)
pytestmark = [pytest.mark.net, pytest.mark.host_only]

PROG = "content-verifier"   # XDP only, no key: the smallest real load


def in_fresh_mount_ns(script: str) -> subprocess.CompletedProcess:
    """Run `script` (bash) with bpffs unmounted in a private mount and PID
    namespace; `$CB` is the cryptbpf CLI. State goes to a private root."""
    env = {**os.environ, "CRYPTBPF_STATE_ROOT": "/run/cryptbpf-bpffs-test",
           "CRYPTBPF_PIN_ROOT": "/sys/fs/bpf/cryptbpf"}
    prelude = (f"CB={shlex.quote(sys.executable)}' -m cryptbpf.cli'; cd {shlex.quote(str(ROOT))}; "
               "umount /sys/fs/bpf 2>/dev/null; "
               "grep -q ' /sys/fs/bpf ' /proc/self/mountinfo && { echo 'bpffs still mounted'; exit 99; }; ")
    return subprocess.run(["unshare", "-m", "-p", "-f", "--mount-proc", "--propagation", "private",
                           "bash", "-c", prelude + script],
                          capture_output=True, text=True, env=env, timeout=120)


def test_load_status_unload_from_an_unmounted_bpffs(veth_pair):
    ns, dev = veth_pair.ns_b, veth_pair.dev_b
    res = in_fresh_mount_ns(f"""
        $CB doctor --json > /tmp/cb-doctor-before.json || exit 10
        python3 -c 'import json,sys; d=json.load(open("/tmp/cb-doctor-before.json")); print("DOCTOR", json.dumps(d["bpffs"]))'
        $CB load {PROG} {dev} --netns {ns} || exit 11
        grep ' /sys/fs/bpf ' /proc/self/mountinfo | grep -q ' - bpf ' && echo MOUNTED
        ls /sys/fs/bpf/cryptbpf/{PROG}/maps | grep -q stats && echo PINNED
        $CB status --json > /tmp/cb-status.json || exit 12
        python3 -c 'import json; print("STATUS", json.dumps([e["program"] for e in json.load(open("/tmp/cb-status.json"))]))'
        $CB unload {PROG} || exit 13
        test -e /sys/fs/bpf/cryptbpf || echo UNPINNED
        test -e /run/cryptbpf-bpffs-test || echo NO_STATE
        ip -n {ns} -d link show {dev} | grep -q xdp || echo NO_XDP
    """)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    out = res.stdout
    doctor = json.loads(next(l for l in out.splitlines() if l.startswith("DOCTOR "))[7:])
    assert doctor["mounted"] is False and doctor["can_mount"] is True
    assert "cryptbpf load mounts it" in doctor["detail"]
    for word in ("MOUNTED", "PINNED", "UNPINNED", "NO_STATE", "NO_XDP"):
        assert word in out.split(), (word, out, res.stderr)
    assert f'STATUS ["{PROG}"]' in out


def test_ip_netns_exec_and_netns_option_share_pins(veth_pair):
    """Loaded from `ip netns exec NS`, unloaded with `--netns NS`, and the
    other way round: the same device key, the same pins, nothing left."""
    ns, dev = veth_pair.ns_b, veth_pair.dev_b
    res = in_fresh_mount_ns(f"""
        ip netns exec {ns} $CB load {PROG} {dev} || exit 11
        $CB status --json | grep -q '"{ns}/{dev}"' && echo SAME_KEY
        $CB unload {PROG} {dev} --netns {ns} || exit 12
        test -e /sys/fs/bpf/cryptbpf || echo UNPINNED_1
        $CB load {PROG} {dev} --netns {ns} || exit 13
        ip netns exec {ns} $CB status --json | grep -q '"{ns}/{dev}"' && echo SEEN_INSIDE
        ip netns exec {ns} $CB unload {PROG} {dev} || exit 14
        test -e /sys/fs/bpf/cryptbpf || echo UNPINNED_2
        ip -n {ns} -d link show {dev} | grep -q xdp || echo NO_XDP
    """)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    for word in ("SAME_KEY", "UNPINNED_1", "SEEN_INSIDE", "UNPINNED_2", "NO_XDP"):
        assert word in res.stdout.split(), (word, res.stdout, res.stderr)


def test_ip_netns_exec_from_this_host(veth_pair):
    """Straight from this host's namespaces: where init's mount namespace
    can be read, `ip netns exec` works like `--netns`; where it cannot (a
    sandbox hiding /proc/1), load, status and unload refuse up front with one
    line naming `--netns`, leaving nothing behind."""
    ns, dev = veth_pair.ns_b, veth_pair.dev_b
    cb = [sys.executable, "-m", "cryptbpf.cli"]
    init_readable = os.access("/proc/1/root", os.R_OK | os.X_OK) and _listable("/proc/1/root")
    load = subprocess.run(["ip", "netns", "exec", ns, *cb, "load", PROG, dev],
                          capture_output=True, text=True, cwd=ROOT)
    if init_readable:
        assert load.returncode == 0, load.stderr
        st = run_cli("status", "--json", check=True)
        assert f"{ns}/{dev}" in st.stdout
        run_cli("unload", PROG, dev, "--netns", ns, check=True)
        return
    for res in (load,
                subprocess.run(["ip", "netns", "exec", ns, *cb, "status"], capture_output=True, text=True),
                subprocess.run(["ip", "netns", "exec", ns, *cb, "unload", PROG, dev],
                               capture_output=True, text=True)):
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and len(lines) == 1, res.stderr
        assert lines[0].startswith("cryptbpf: ") and f"--netns {ns}" in lines[0], lines[0]
    assert PROG not in run_cli("status", "--json", check=True).stdout
    links = subprocess.run(["ip", "-n", ns, "-d", "link", "show", dev], capture_output=True, text=True)
    assert "xdp" not in links.stdout


def _listable(path: str) -> bool:
    try:
        os.listdir(path)
        return True
    except OSError:
        return False
