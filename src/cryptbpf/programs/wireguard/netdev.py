"""The devices of a WireGuard interface as the BPF data plane builds it.
Run inside the interface's namespace (netns.inside).

    wg0 (the user's: Address, MTU, routes for AllowedIPs)
     |  veth; wg0: NOARP, checksum offload and TSO off, GSO on, so the
     |  stack segments in software on wg0's transmit; GRO on (receive)
    wg0-p (TC ingress: wg_seal -> bpf_redirect_neigh to the underlay)

    underlay (TC ingress: wg_open -> bpf_redirect into wg0-p's egress, so
    the inner packet arrives on wg0 as received there; GRO at wg0)

Everything here is undone by deleting wg0 (the pair and its routes go
with it); the underlay keeps its own settings (only a TC filter is added
there, removed by the lifecycle's record).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess

from ...errors import CryptbpfError
from ...netns import run

# wg0: the stack segments (GSO) before the sealer; checksums in software
# (no CHECKSUM_PARTIAL reaches the sealer, which seals the bytes as they are).
# GRO on: veth then receives through NAPI and merges the opened segments
# (measured +15-25% TCP in two A/B runs, docs/wireguard.md)
WG_FEATURES = ("tx", "off", "tso", "off", "gso", "on", "gro", "on")
PAIR_FEATURES = ("gro", "off")


def pair_name(name: str) -> str:
    """The data-plane end of `name`'s veth pair (IFNAMSIZ: 15 characters)."""
    return f"{name[:13]}-p"


def exists(dev: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", dev], capture_output=True).returncode == 0


def devices() -> list[dict]:
    return json.loads(run("ip", "-d", "-j", "link", "show"))


def link(dev: str) -> dict:
    return json.loads(run("ip", "-d", "-j", "link", "show", "dev", dev))[0]


def create_pair(name: str, mtu: int) -> str:
    """wg0 and its pair end, both up; returns the pair end's name."""
    pair = pair_name(name)
    if exists(name):
        raise CryptbpfError(f"a device named {name} exists already")
    run("ip", "link", "add", name, "mtu", str(mtu), "type", "veth", "peer", "name", pair,
        "mtu", str(mtu))
    try:
        for dev in (name, pair):
            # no ARP/ND (the sealer gets only IP), no link-local address
            run("ip", "link", "set", "dev", dev, "arp", "off", "addrgenmode", "none")
        run("ethtool", "-K", name, *WG_FEATURES)
        run("ethtool", "-K", pair, *PAIR_FEATURES, check=False)
        for dev in (pair, name):
            run("ip", "link", "set", "dev", dev, "up")
    except BaseException:
        delete(name)
        raise
    return pair


def delete(name: str) -> None:
    """Remove wg0 (its pair end and its routes go with it)."""
    run("ip", "link", "del", "dev", name, check=False)


def add_address(name: str, address: str) -> None:
    run("ip", "address", "add", address, "dev", name)


def route_cmd(prefix: ipaddress.IPv4Network | ipaddress.IPv6Network, name: str, verb: str) -> None:
    fam = "-6" if prefix.version == 6 else "-4"
    run("ip", fam, "route", verb, str(prefix), "dev", name, check=verb != "del")


def route_to(addr: str) -> tuple[int, str]:
    """(ifindex, our source address) of the route to an endpoint address."""
    try:
        got = json.loads(run("ip", "-j", "route", "get", addr))[0]
    except CryptbpfError as e:
        raise CryptbpfError(f"no route to endpoint {addr} ({e})") from None
    if got.get("type") == "local":
        raise CryptbpfError(f"endpoint {addr} is an address of this host")
    if "prefsrc" not in got:
        raise CryptbpfError(f"the route to endpoint {addr} has no source address")
    return link(got["dev"])["ifindex"], got["prefsrc"]
