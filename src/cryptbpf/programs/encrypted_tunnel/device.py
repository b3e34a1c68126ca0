"""Device settings the tunnel needs while it is loaded, each recorded so
unload puts back exactly what was there. Run inside the device's namespace.

- Offloads off (ethtool): TC must see every packet as it goes on the wire.
  GRO would merge received packets, TSO/GSO hand TC 64 KB super-packets,
  and checksum offload lets a NIC parse a protocol it does not know.
- gso_max_segs 1: since Linux 5.19 TCP builds GSO packets even when the
  device has GSO off (they are split after TC, too late to seal each
  segment); with gso_max_segs 1 every TCP skb is one segment.
- A /32 route to each peer with `mtu lock` = device MTU - tunnel overhead:
  TCP's MSS, ping's and UDP's fragmentation and PMTU all follow it, so
  every sealed packet fits the device MTU. The device MTU itself stays (a
  lower MTU on a receiving veth would drop full-size sealed packets), and
  traffic to other hosts keeps the full MTU.
"""

from __future__ import annotations

import json

from ...errors import CryptbpfError
from ...netns import run as _run

# turned off in this order, turned back on in the reverse order
OFFLOADS = [
    "rx-gro-list", "rx-udp-gro-forwarding", "generic-receive-offload", "large-receive-offload",
    "tx-udp-segmentation", "tx-tcp-segmentation", "tx-tcp-ecn-segmentation",
    "tx-tcp-mangleid-segmentation", "tx-tcp6-segmentation", "generic-segmentation-offload",
    "tx-checksum-ipv4", "tx-checksum-ip-generic", "tx-checksum-ipv6", "tx-checksum-sctp",
]


def offloads(dev: str) -> dict[str, tuple[bool, bool]]:
    """feature -> (on, fixed) from `ethtool -k`."""
    out = {}
    for line in _run("ethtool", "-k", dev).splitlines()[1:]:
        name, _, rest = line.strip().partition(": ")
        if rest:
            out[name] = (rest.startswith("on"), "[fixed]" in rest)
    return out


def offloads_off(dev: str) -> dict[str, bool]:
    """Turn OFFLOADS off. Returns every changeable feature's state before,
    since turning one off can turn off others that depend on it."""
    before = {f: on for f, (on, fixed) in offloads(dev).items() if not fixed}
    todo = [f for f in OFFLOADS if before.get(f)]
    if todo:
        _run("ethtool", "-K", dev, *[x for f in todo for x in (f, "off")])
    left = [f for f in todo if offloads(dev)[f][0]]
    if left:
        restore_offloads(dev, before)
        raise CryptbpfError(f"{dev}: could not turn off {', '.join(left)}")
    return before


def restore_offloads(dev: str, before: dict[str, bool]) -> None:
    """Set every feature back to its state in `before`; features that
    depend on others (TSO on checksumming) may need a second pass."""
    for _ in range(3):
        now = offloads(dev)
        diff = [f for f, on in before.items() if f in now and now[f][0] != on]
        if not diff:
            return
        # checksums first: segmentation offloads depend on them
        diff.sort(key=lambda f: not f.startswith("tx-checksum"))
        for f in diff:
            _run("ethtool", "-K", dev, f, "on" if before[f] else "off", check=False)


def link(dev: str) -> dict:
    return json.loads(_run("ip", "-d", "-j", "link", "show", "dev", dev))[0]


def set_gso_max_segs(dev: str, segs: int) -> int:
    """Set gso_max_segs; returns the previous value."""
    old = link(dev)["gso_max_segs"]
    _run("ip", "link", "set", "dev", dev, "gso_max_segs", str(segs))
    return old


def add_peer_route(peer: str, dev: str, overhead: int, local: str | None = None) -> dict:
    """Route PEER/32 through `dev` with the tunnel's MTU; returns a record
    for remove_peer_route (the previous /32 route, if any, and the local
    address the kernel uses towards the peer). The peer address is checked
    before `ip` sees it, and `local` (the user's --local), if given, must
    be an address of this host (of the namespace this runs in)."""
    from ...addresses import check_local
    from .control import check_peer_address
    check_peer_address(peer)
    try:
        got = json.loads(_run("ip", "-j", "route", "get", peer))[0]
    except CryptbpfError as e:
        raise CryptbpfError(f"no route to peer {peer} ({e})") from None
    if got.get("type") == "local":
        raise CryptbpfError(f"peer {peer} is an address of this host (here it is reached "
                            f"through {got.get('dev')}, not {dev})")
    if got.get("dev") != dev:
        raise CryptbpfError(f"{peer} is reached through {got.get('dev')}, not {dev}")
    if local is not None:
        check_local(local, "--local")
    previous = _run("ip", "route", "show", "exact", f"{peer}/32").strip() or None
    mtu = link(dev)["mtu"] - overhead
    cmd = ["ip", "route", "replace", f"{peer}/32"]
    if got.get("gateway"):
        cmd += ["via", got["gateway"]]
    cmd += ["dev", dev, "mtu", "lock", str(mtu)]
    if got.get("prefsrc"):
        cmd += ["src", got["prefsrc"]]
    _run(*cmd)
    return {"peer": peer, "previous": previous, "local": got.get("prefsrc"), "mtu": mtu}


def remove_peer_route(rec: dict, dev: str) -> None:
    _run("ip", "route", "del", f"{rec['peer']}/32", "dev", dev, check=False)
    if rec.get("previous"):
        _run("ip", "route", "replace", *rec["previous"].split(), check=False)
