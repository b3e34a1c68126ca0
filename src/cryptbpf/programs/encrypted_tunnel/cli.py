"""`cryptbpf encrypted-tunnel ...` (also `cryptbpf tunnel ...`): peers,
counters and rekeying of the loaded tunnel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from ...bpf import pins
from ...errors import CryptbpfError
from ...netns import inside
from . import control, device as devmod, wire
from .._cli import PATH, argument, examples as _examples, group, json_option
from .control import DEFAULT_SUITE, NAME, parse_suite


app = group(help="Manage the loaded encrypted tunnel.")


def _secret(key_file: Path) -> bytes:
    from ...keys import read_key_file
    return read_key_file(key_file, (32,))


def _devices() -> list[tuple[str, dict]]:
    state = pins.read_state(NAME)
    if not state["devices"]:
        raise CryptbpfError(f"{NAME} is not loaded")
    return list(state["devices"].items())


def _require_root():
    from ...lifecycle import require_privileges
    require_privileges()


@app.command("peers", epilog=_examples("sudo cryptbpf tunnel peers", "sudo cryptbpf tunnel peers --json"))
@json_option()
def peers_cmd(as_json: bool):
    """List peers: suite, key ids, counters (never keys)."""
    _require_root()
    with pins.Pinned(NAME) as h:
        data = control.describe(h)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for p in data:
        tx = p["tx"] or {}
        rx = ", ".join(f"{k} ({v['accepted']} pkts)" for k, v in sorted(p["rx"].items()))
        click.echo(f"{p['peer']:<16} {p['suite']:<24} local {p['local']}  "
                   f"tx key {tx.get('key_id')} (counter {tx.get('counter')})  rx keys {rx}")


@app.command("stats", epilog=_examples("sudo cryptbpf tunnel stats"))
@json_option()
def stats_cmd(as_json: bool):
    """Per-peer counters: packets/bytes each way, drops by reason."""
    _require_root()
    with pins.Pinned(NAME) as h:
        data = {p.addr: control.peer_stats(h, p.index) for p in control.list_peers(h)}
        data["(no peer)"] = control.peer_stats(h, control.NO_PEER_ROW)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for peer, st in data.items():
        nonzero = {k: v for k, v in st.items() if v}
        click.echo(f"{peer}")
        for k, v in (nonzero or {"(all zero)": ""}).items():
            click.echo(f"  {k:<20} {v}")


def add_peer(addr: str, secret: bytes, suite: int, local: Optional[str] = None) -> dict:
    """Add a peer to the loaded tunnel on whichever of its devices routes
    to `addr` (route with the tunnel MTU, keys, then the peer entry)."""
    control.check_peer_address(addr)     # once, not per device tried
    state = pins.read_state(NAME)
    errors = []
    for dkey, entry in _devices():
        try:
            with inside(entry["netns"]):
                rec = devmod.add_peer_route(addr, entry["device"], wire.OVERHEAD[suite], local)
                try:
                    with pins.Pinned(NAME) as h:
                        control.add_peer(h, addr, local or rec["local"], secret, suite)
                except BaseException:
                    devmod.remove_peer_route(rec, entry["device"])
                    raise
        except CryptbpfError as e:
            errors.append(f"{dkey}: {e}")
            continue
        state["devices"][dkey].setdefault("device_settings", {}).setdefault("routes", []).append(rec)
        pins.write_state(NAME, state)
        return {"device": dkey, **rec}
    raise CryptbpfError("; ".join(errors))


def remove_peer(addr: str) -> None:
    with pins.Pinned(NAME) as h:
        control.remove_peer(h, addr)
    state = pins.read_state(NAME)
    for entry in state["devices"].values():
        routes = entry.get("device_settings", {}).get("routes", [])
        for rec in [r for r in routes if r["peer"] == addr]:
            with inside(entry["netns"]):
                devmod.remove_peer_route(rec, entry["device"])
            routes.remove(rec)
    pins.write_state(NAME, state)


@app.command("add-peer", epilog=_examples(
    "sudo cryptbpf tunnel add-peer 10.0.0.3 --key-file peer3.key",
    "sudo cryptbpf tunnel add-peer 10.0.0.4 --key-file p4.key --suite aes-256-cbc-hmac-sha256"))
@argument("addr", metavar="ADDR", help="The peer's IPv4 address.")
@click.option("--key-file", type=PATH, metavar="FILE", required=True,
              help="Shared secret with this peer (32 bytes, mode 0600).")
@click.option("--suite", default=DEFAULT_SUITE, metavar="SUITE", help=f"One of: {', '.join(wire.SUITES)}.")
@click.option("--local", metavar="ADDR", help="Our address towards the peer (default: the route's source).")
def add_peer_cmd(addr: str, key_file: Path, suite: str, local: Optional[str]):
    """Protect traffic with one more peer."""
    _require_root()
    sid = parse_suite(suite)
    r = add_peer(addr, _secret(key_file), sid, local)
    click.echo(f"{NAME}: peer {addr} added on {r['device']} ({suite}, tunnel MTU {r['mtu']})")


@app.command("remove-peer", epilog=_examples("sudo cryptbpf tunnel remove-peer 10.0.0.3"))
@argument("addr", metavar="ADDR", help="The peer's IPv4 address.")
def remove_peer_cmd(addr: str):
    """Stop protecting traffic with a peer (its traffic then flows in clear)."""
    _require_root()
    remove_peer(addr)
    click.echo(f"{NAME}: peer {addr} removed")


@app.command("rekey", epilog=_examples(
    "sudo cryptbpf tunnel rekey --key-file tunnel.key",
    "sudo cryptbpf tunnel rekey --key-file tunnel.key --peer 10.0.0.2 --grace 5"))
@click.option("--key-file", type=PATH, metavar="FILE", required=True, help="The shared secret (mode 0600).")
@click.option("--peer", multiple=True, metavar="ADDR", help="Only this peer (repeatable; default all).")
@click.option("--grace", type=float, default=2.0, metavar="SECONDS",
              help="Seconds the peer's previous key stays accepted after last use.")
def rekey_cmd(key_file: Path, peer: tuple[str, ...], grace: float):
    """Send under the next key id now; run it on both hosts. No packet is
    lost: the peer already accepts the next key, and ours keep accepting
    the peer's previous key while it is in use."""
    _require_root()
    secret = _secret(key_file)
    with pins.Pinned(NAME) as h:
        targets = peer or [p.addr for p in control.list_peers(h)]
        for addr in targets:
            r = control.rekey(h, addr, secret, grace)
            click.echo(f"{NAME}: {addr}: sending under key id {r['tx_key_id']}, "
                       f"accepting {', '.join(map(str, r['rx_key_ids']))}")
