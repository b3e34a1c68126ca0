"""Network namespaces: run netlink/socket work inside a named namespace
(`ip netns` style, /run/netns/NAME) and build veth test topologies."""

from __future__ import annotations

import contextlib
import os
import subprocess

from pyroute2 import netns as _netns

from .errors import CryptbpfError


@contextlib.contextmanager
def inside(name: str | None):
    """Switch this thread into netns `name` (or INIT_NETNS) for the block
    (no-op for None).
    Sockets created inside stay in that namespace after the block."""
    if not name:
        yield
        return
    if name != INIT_NETNS and name not in _netns.listnetns():
        raise CryptbpfError(f"network namespace {name!r} does not exist")
    _netns.pushns(name)
    try:
        yield
    finally:
        _netns.popns()


NETNS_RUN_DIR = "/run/netns"
# init's network namespace, for inside(): where a device recorded without a
# namespace lives, whichever namespace the caller runs in
INIT_NETNS = "/proc/1/ns/net"


def current_name() -> str | None:
    """The `ip netns` name of the network namespace this process is in
    (`ip netns exec NS ...`), None when it is in none of them. Found by
    comparing namespace inodes with /run/netns/*, which needs no access to
    /proc/1 (some sandboxes hide it)."""
    try:
        here = os.stat("/proc/self/ns/net")
        names = os.listdir(NETNS_RUN_DIR)
    except OSError:
        return None
    for name in sorted(names):
        try:
            st = os.stat(os.path.join(NETNS_RUN_DIR, name))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino):
            return name
    return None


def run(*cmd: str, check: bool = True) -> str:
    """A device tool (ip, ethtool) in this thread's namespace: its stdout,
    or a CryptbpfError with its message (and one for a missing tool)."""
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True)
    except FileNotFoundError:
        raise CryptbpfError(f"{cmd[0]} is not installed (scripts/setup installs it)") from None
    if check and res.returncode:
        raise CryptbpfError(f"{' '.join(cmd)}: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    cmd = ["ip"] + (["-n", netns] if netns else []) + list(args)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if check and res.returncode:
        raise CryptbpfError(f"{' '.join(cmd)}: {res.stderr.strip()}")
    return res.stdout


class VethPair:
    """Two namespaces joined by a veth pair with IPv4 addresses:
    ns_a/dev_a/addr_a <-> ns_b/dev_b/addr_b. Always torn down by close()."""

    def __init__(self, prefix: str, subnet: str = "10.211.0", mtu: int = 1500):
        self.ns_a, self.ns_b = f"{prefix}-a", f"{prefix}-b"
        self.dev_a, self.dev_b = f"{prefix[:9]}a", f"{prefix[:9]}b"
        self.addr_a, self.addr_b = f"{subnet}.1", f"{subnet}.2"
        self.mtu = mtu

    def create(self) -> "VethPair":
        self.close()  # leftovers of an interrupted run
        try:
            for ns in (self.ns_a, self.ns_b):
                ip("netns", "add", ns)
                ip("link", "set", "lo", "up", netns=ns)
            ip("link", "add", self.dev_a, "mtu", str(self.mtu), "netns", self.ns_a, "type", "veth",
               "peer", "name", self.dev_b, "mtu", str(self.mtu), "netns", self.ns_b)
            for ns, dev, addr in ((self.ns_a, self.dev_a, self.addr_a),
                                  (self.ns_b, self.dev_b, self.addr_b)):
                ip("addr", "add", f"{addr}/24", "dev", dev, netns=ns)
                ip("link", "set", dev, "up", netns=ns)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for ns in (self.ns_a, self.ns_b):
            ip("netns", "del", ns, check=False)

    def __enter__(self):
        return self.create()

    def __exit__(self, *exc):
        self.close()
