"""Peers, keys and counters of a loaded encrypted_tunnel, through its maps.

`handle` is a loaded BpfObject or a `pins.Pinned`: both have .map() and
.program(). Struct layouts come from the shared header (wire.LAYOUT).

Key epochs. Each direction's keys are derived from the peers' shared
secret and a key id (wire.derive). A host sends under one key id (its tx
slot) and accepts two: the one the peer sends under and the next one, so
that when the peer rekeys, its first packets under the new key are already
accepted, while packets under the previous key still in flight are too.
After the peer has moved on, the slot of its old key gets the key after
next, once that slot has been idle for the grace period."""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from dataclasses import dataclass

from ...bpf import kernel
from ...crypto.aes_cbc import AES_FEATURES, install_aes_key
from ...errors import CryptbpfError
from . import wire


L = wire.LAYOUT
MAX_PEERS = wire.C("TUNNEL_MAX_PEERS")
STATS_ROWS = wire.C("TUNNEL_STATS_ROWS")
NO_PEER_ROW = wire.C("TUNNEL_NO_PEER_ROW")
AES_PER_PEER = wire.C("TUNNEL_AES_PER_PEER")

# Kernel features a suite needs beyond the program's own `requires`: the
# AES programs stay loadable without them (their code is skipped, see
# aes_cbc_available() in aes_cbc.bpf.h), but cannot seal or open.
# ProgramSpec.optional (what doctor reports) is built from it.
SUITE_REQUIRES = {wire.CHACHA: [], wire.CBC: AES_FEATURES}


def check_suite_supported(suite: int) -> None:
    """CryptbpfError naming what this kernel lacks for `suite`, if anything."""
    missing = kernel.missing(SUITE_REQUIRES.get(suite, []))
    if missing:
        raise CryptbpfError(f"suite {wire.SUITE_NAMES[suite]} needs {kernel.describe(missing)}, "
                            f"which kernel {kernel.release()} lacks; use chacha20-poly1305")
RX_KEY_SIZE = L.sizeof("struct tunnel_rx_key")


def addr_key(addr: str) -> bytes:
    """Map key of a peer: the IPv4 address as on the wire. Only the
    dotted quad: inet_aton's short forms ("10.1" = 10.0.0.1) are read
    otherwise by `ip` ("10.1" = 10.1.0.0)."""
    try:
        return ipaddress.IPv4Address(addr).packed
    except ValueError:
        raise CryptbpfError(f"{addr!r} is not an IPv4 address") from None


def check_peer_address(addr: str) -> str:
    """`addr` if it can be a tunnel peer -- one remote host's unicast IPv4
    address -- else a CryptbpfError saying what is wrong with it."""
    if "/" in addr:
        raise CryptbpfError(f"peer {addr!r} is a prefix; give one host's IPv4 address "
                            "(the tunnel protects host-to-host traffic)")
    try:
        a = ipaddress.IPv4Address(addr)
    except ValueError:
        try:
            ipaddress.IPv6Address(addr.split("%")[0])
            six = True
        except ValueError:
            six = False
        if six:
            raise CryptbpfError(f"peer {addr} is an IPv6 address; the tunnel is IPv4 only") from None
        raise CryptbpfError(f"peer {addr!r} is not an IPv4 address (four decimal numbers "
                            "0-255 such as 10.0.0.2; names are not resolved)") from None
    for bad, what in ((a.is_unspecified, "the unspecified address, no host"),
                      (a.is_loopback, "a loopback address: traffic to it never leaves this host"),
                      (a.is_multicast, "a multicast address; a peer is one host"),
                      (a == ipaddress.IPv4Address("255.255.255.255"), "the broadcast address"),
                      (a.is_reserved, "in the reserved range 240.0.0.0/4")):
        if bad:
            raise CryptbpfError(f"peer {addr} is {what}")
    return str(a)


def _be32(addr: str) -> int:
    """A __be32 field's value as cffi packs it (host order of wire bytes)."""
    return int.from_bytes(addr_key(addr), "little")


def slot_key(addr: str, slot: int) -> bytes:
    return L.pack("struct tunnel_slot_key", peer=_be32(addr), slot=slot)


@dataclass
class Peer:
    addr: str
    index: int
    local: str
    suite: int
    tx_slot: int


def get_peer(handle, addr: str) -> Peer | None:
    raw = handle.map("peers").lookup(addr_key(addr))
    if raw is None:
        return None
    v = L.unpack("struct tunnel_peer", raw)
    local = socket.inet_ntoa(v["local"].to_bytes(4, "little"))
    return Peer(addr, v["index"], local, v["suite"], v["tx_slot"])


def list_peers(handle) -> list[Peer]:
    out = []
    for k, _ in handle.map("peers").items():
        p = get_peer(handle, socket.inet_ntoa(k))
        if p:
            out.append(p)
    return sorted(out, key=lambda p: p.index)


def _write_peer(handle, p: Peer) -> None:
    handle.map("peers").update(addr_key(p.addr), L.pack(
        "struct tunnel_peer", index=p.index, local=_be32(p.local), suite=p.suite,
        tx_slot=p.tx_slot))


def _aes_index(peer_index: int, rx: bool, slot: int, ecb: bool) -> int:
    return peer_index * AES_PER_PEER + int(rx) * 4 + slot * 2 + int(ecb)


def _mac_state(handle, mac_key: bytes) -> tuple[bytes, bytes]:
    """HMAC-SHA256 pad states, computed in the kernel by tunnel_mac_setup."""
    args = L.pack("struct tunnel_mac_setup", key=mac_key)
    res = L.unpack("struct tunnel_mac_setup", handle.program("tunnel_mac_setup").test_run(ctx=args).ctx)
    if res["err"]:
        raise CryptbpfError(f"HMAC key setup failed: errno {-res['err']}")
    return struct.pack("<8I", *res["istate"]), struct.pack("<8I", *res["ostate"])


def _key_fields(handle, p: Peer, keys: wire.DirectionKeys, rx: bool, slot: int) -> dict:
    fields = {"key_id": keys.key_id}
    if keys.suite == wire.CHACHA:
        fields["key"] = keys.aead
    else:
        install_aes_key(handle, "tunnel_aes_setup", keys.enc, slot=_aes_index(p.index, rx, slot, False))
        install_aes_key(handle, "tunnel_aes_setup", keys.iv, slot=_aes_index(p.index, rx, slot, True),
                        ecb=True)
        fields["mac_istate"], fields["mac_ostate"] = _mac_state(handle, keys.mac)
    return fields


def install_tx(handle, p: Peer, secret: bytes, key_id: int, slot: int) -> None:
    """Sending key `key_id` into tx slot `slot` with counter 0 (a new map
    element: CPUs still on the old one keep their own counter)."""
    keys = wire.derive(secret, p.suite, key_id, p.local, p.addr)
    value = L.pack("struct tunnel_tx_key", counter=0, **_key_fields(handle, p, keys, False, slot))
    handle.map("tx_keys").update(slot_key(p.addr, slot), value)


def install_rx(handle, p: Peer, secret: bytes, key_id: int) -> None:
    """Receiving key `key_id` into slot key_id & 1, with an empty window."""
    slot = key_id & 1
    keys = wire.derive(secret, p.suite, key_id, p.addr, p.local)
    m = handle.map("rx_keys")
    value = L.pack("struct tunnel_rx_key", **_key_fields(handle, p, keys, True, slot))
    m.update(slot_key(p.addr, slot), value + bytes(m.value_size - len(value)))


def add_peer(handle, addr: str, local: str, secret: bytes, suite: int) -> Peer:
    """Configure a peer: send under key id 0, accept 0 and 1."""
    addr_key(addr), addr_key(local)
    if suite not in wire.SUITE_NAMES:
        raise CryptbpfError(f"unknown suite {suite}")
    check_suite_supported(suite)
    if get_peer(handle, addr):
        raise CryptbpfError(f"{addr} is already a peer")
    used = {p.index for p in list_peers(handle)}
    free = [i for i in range(MAX_PEERS) if i not in used]
    if not free:
        raise CryptbpfError(f"at most {MAX_PEERS} peers")
    p = Peer(addr, free[0], local, suite, 0)
    _clear_stats(handle, p.index)
    install_tx(handle, p, secret, 0, 0)
    install_rx(handle, p, secret, 0)
    install_rx(handle, p, secret, 1)
    _write_peer(handle, p)          # last: only now does traffic get sealed
    return p


def remove_peer(handle, addr: str) -> Peer:
    p = get_peer(handle, addr)
    if not p:
        raise CryptbpfError(f"{addr} is not a peer")
    handle.map("peers").delete(addr_key(addr))   # first: its traffic stops at once
    for slot in (0, 1):
        for name in ("tx_keys", "rx_keys"):
            try:
                handle.map(name).delete(slot_key(addr, slot))
            except Exception:
                pass
    return p


def _clear_stats(handle, index: int) -> None:
    m = handle.map("stats")
    m.update(index.to_bytes(4, "little"), [bytes(m.value_size)] * m.ncpus)


# ---- state read back ----

def tx_state(handle, p: Peer) -> dict | None:
    raw = handle.map("tx_keys").lookup(slot_key(p.addr, p.tx_slot))
    if raw is None:
        return None
    v = L.unpack("struct tunnel_tx_key", raw)
    return {"key_id": v["key_id"], "counter": v["counter"]}


def rx_state(handle, p: Peer) -> dict[int, dict]:
    """slot -> {key_id, accepted, top, last_ns} (no key bytes)."""
    out = {}
    for slot in (0, 1):
        raw = handle.map("rx_keys").lookup(slot_key(p.addr, slot))
        if raw is None:
            continue
        k = L.unpack("struct tunnel_rx_key", raw)
        r = L.unpack("struct tunnel_replay", raw[RX_KEY_SIZE:])
        out[slot] = {"key_id": k["key_id"], "accepted": r["accepted"], "top": r["top"],
                     "last_ns": r["last_ns"]}
    return out


def peer_stats(handle, index: int) -> dict[str, int]:
    vals = handle.map("stats").lookup_percpu(index.to_bytes(4, "little")) or []
    total: dict[str, int] = {}
    for raw in vals:
        for k, v in L.unpack("struct tunnel_stats", raw).items():
            total[k] = total.get(k, 0) + v
    return total


def describe(handle) -> list[dict]:
    """Everything `tunnel peers` / `status` show, never key bytes."""
    out = []
    for p in list_peers(handle):
        out.append({"peer": p.addr, "local": p.local, "suite": wire.SUITE_NAMES.get(p.suite, p.suite),
                    "tx": tx_state(handle, p),
                    "rx": {s["key_id"]: {"accepted": s["accepted"]} for s in rx_state(handle, p).values()},
                    "stats": {k: v for k, v in peer_stats(handle, p.index).items() if v}})
    return out


# ---- rekey ----

def _next(key_id: int) -> int:
    return (key_id + 1) & 0xFF


def rekey(handle, addr: str, secret: bytes, grace: float = 2.0) -> dict:
    """Send under the next key id now (the peer already accepts it), and
    keep our receive slots one step ahead of the peer (see module doc)."""
    p = get_peer(handle, addr)
    if not p:
        raise CryptbpfError(f"{addr} is not a peer")
    tx = tx_state(handle, p)
    new = _next(tx["key_id"] if tx else 0)
    install_tx(handle, p, secret, new, new & 1)
    p.tx_slot = new & 1
    _write_peer(handle, p)
    advanced = advance_rx(handle, p, secret, grace)
    return {"peer": addr, "tx_key_id": new, "rx_key_ids": advanced}


def advance_rx(handle, p: Peer, secret: bytes, grace: float) -> list[int]:
    """If the peer sends under the newer of our two receive keys, replace
    the older one by the key after next once it has been idle for `grace`
    seconds (packets under it may still be in flight)."""
    rx = rx_state(handle, p)
    if len(rx) != 2:
        for kid in (0, 1):
            if kid & 1 not in rx:
                install_rx(handle, p, secret, kid)
        return sorted(s["key_id"] for s in rx_state(handle, p).values())
    a, b = rx[0], rx[1]
    newer, older = (a, b) if _next(b["key_id"]) == a["key_id"] else (b, a)
    if newer["accepted"] == 0:
        return sorted([a["key_id"], b["key_id"]])   # peer has not moved yet
    deadline = time.monotonic() + grace + 1
    while older["last_ns"] and time.monotonic_ns() - older["last_ns"] < grace * 1e9:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
        older = rx_state(handle, p)[older["key_id"] & 1]
    install_rx(handle, p, secret, _next(newer["key_id"]))
    return sorted([newer["key_id"], _next(newer["key_id"])])


NAME = "encrypted-tunnel"
DEFAULT_SUITE = "chacha20-poly1305"   # see docs/encrypted_tunnel.md, "Choosing a suite"


def parse_suite(name: str) -> int:
    try:
        return wire.SUITES[name]
    except KeyError:
        raise CryptbpfError(f"unknown suite {name!r}; suites: {', '.join(wire.SUITES)}") from None
