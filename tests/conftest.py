"""Fixtures: loaded objects, namespaces joined by veth, privilege and
feature gates, and a leak check for file descriptors."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import sys
import uuid
from pathlib import Path

import pytest

# Each run of the suite pins and records under roots of its own, so two runs
# on one machine (or a run beside a user's loaded programs) never meet. Set
# before cryptbpf is imported: cryptbpf.paths reads them once.
RUN_TAG = f"test-{os.getpid()}"
os.environ.setdefault("CRYPTBPF_PIN_ROOT", f"/sys/fs/bpf/cryptbpf-{RUN_TAG}")
os.environ.setdefault("CRYPTBPF_STATE_ROOT", f"/run/cryptbpf-{RUN_TAG}")

from cryptbpf.bpf import kernel, pins  # noqa: E402
from cryptbpf.netns import VethPair  # noqa: E402
from cryptbpf.bpf.object import BpfObject  # noqa: E402
from cryptbpf.paths import ROOT, STATE_ROOT, bpf_object  # noqa: E402

TEST_OBJ_DIR = ROOT / "build" / "tests"


def require_root():
    if not kernel.privileged():
        pytest.skip("needs root (CAP_BPF/CAP_SYS_ADMIN and CAP_NET_ADMIN) to load BPF programs")


def require_feature(name: str):
    """Skip when the kernel lacks `name`; fail when it is new enough to have
    it, so a broken probe cannot hide behind a skip."""
    if kernel.has(name):
        return
    f = kernel.FEATURES[name]
    if kernel.should_have(name):
        pytest.fail(f"probe for {name} says no, but Linux {kernel.release()} >= {f.since} has it")
    pytest.skip(f"kernel {kernel.release()} lacks {f.what} (Linux {f.since}+)")


@pytest.fixture
def root():
    require_root()


@pytest.fixture
def load_object(root):
    """load_object(path_or_name, **globals_before_load) -> loaded BpfObject."""
    opened = []

    def _load(name: str, **knobs):
        path = Path(name) if "/" in name else bpf_object(name)
        if not path.exists():
            path = TEST_OBJ_DIR / f"{name}.bpf.o"
        obj = BpfObject.open(str(path))
        opened.append(obj)
        for k, v in knobs.items():
            obj.set_global(k, v)
        return obj.load()

    yield _load
    for obj in opened:
        obj.close()


@pytest.fixture(scope="module")
def kat():
    """crypto_kat.bpf.o loaded once per test module (cryptbpf.kat.KatObject)."""
    require_root()
    require_feature("bpf_loop")
    from cryptbpf.kat import KatObject
    with KatObject() as k:
        yield k


@pytest.fixture(scope="module")
def ecdsa_kat():
    """ecdsa_kat.bpf.o loaded once per test module (cryptbpf.kat.EcdsaKat)."""
    require_root()
    require_feature("bpf_loop")
    from cryptbpf.kat import EcdsaKat
    e = EcdsaKat()
    yield e
    e.close()


@pytest.fixture
def veth_pair(root):
    """Namespaces <id>-a and <id>-b joined by veth (10.212.x.1 <-> .2),
    removed afterwards even when the test fails."""
    tag = "cbt" + uuid.uuid4().hex[:5]
    pair = VethPair(tag, subnet=f"10.212.{int(tag[3:5], 16)}")
    pair.create()
    try:
        yield pair
    finally:
        pair.close()


@contextlib.contextmanager
def udp_echo(ns: str, addr: str, port: int):
    """A UDP service in namespace `ns` at addr:port answering b"echo:" +
    data, stopped (and its socket closed) when the block ends."""
    from cryptbpf import netns
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    s.settimeout(0.1)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                data, peer = s.recvfrom(2048)
                s.sendto(b"echo:" + data, peer)
            except socket.timeout:
                pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        s.close()


def udp_echo_reachable(ns: str, addr: str, port: int, timeout: float = 0.3) -> bool:
    """Does a udp_echo() service at addr:port answer a datagram sent from
    namespace `ns` within `timeout` seconds?"""
    from cryptbpf import netns
    with netns.inside(ns):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with c:
        c.settimeout(timeout)
        c.sendto(b"ping", (addr, port))
        try:
            return c.recv(100) == b"echo:ping"
        except socket.timeout:
            return False


def run_cli(*args: str, check: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run the real `cryptbpf` entry point in a subprocess."""
    res = subprocess.run([sys.executable, "-m", "cryptbpf.cli", *args],
                         capture_output=True, text=True, **kw)
    if check and res.returncode:
        raise AssertionError(f"cryptbpf {' '.join(args)} failed: {res.stderr}")
    return res


def system_snapshot(netns: str | None = None, program: str = "") -> dict:
    """What load/unload must leave exactly as it found it. `program` limits
    the pins compared to that program's directory, so programs loaded by
    other tests (or other users) at the same time don't disturb the check."""
    pre = ["ip", "netns", "exec", netns] if netns else []

    def sh(*cmd):
        return subprocess.run(pre + list(cmd), capture_output=True, text=True).stdout

    pin_root = pins.pin_dir(program) if program else pins.pin_root() or Path("/nonexistent")
    links = sh("ip", "-d", "link", "show")
    devs = [l.split(":")[1].strip().split("@")[0] for l in links.splitlines() if l[:1].isdigit()]
    return {
        "filters": {d: sh("tc", "filter", "show", "dev", d, "ingress") + sh("tc", "filter", "show", "dev", d, "egress")
                    for d in devs},
        "qdiscs": sh("tc", "qdisc", "show"),
        "xdp": [l for l in links.splitlines() if "xdp" in l],
        "pins": sorted(str(p) for p in pin_root.rglob("*")) if pin_root.exists() else None,
    }


@pytest.fixture(scope="session", autouse=True)
def nothing_left_loaded():
    """Every test unloads what it loads: this run's pin and state roots are
    gone at the end (unload removes them when they become empty)."""
    yield
    left = [str(p) for p in (pins.pin_root(), STATE_ROOT) if p is not None and p.exists()]
    assert not left, f"the suite left loaded programs behind: {left}"


@pytest.fixture(scope="session", autouse=True)
def no_leaked_fds():
    before = set(os.listdir("/proc/self/fd"))
    yield
    leaked = set(os.listdir("/proc/self/fd")) - before
    # the cffi module, pyroute2 and pytest may legitimately keep a few
    assert len(leaked) < 8, f"file descriptors leaked by the suite: {sorted(leaked)}"


# --vm-kernel, --results-json and the host_only marker (docs/kernel_compat.md)
from vmrun import (pytest_addoption, pytest_cmdline_main,  # noqa: E402,F401
                   pytest_collection_modifyitems, pytest_configure)
