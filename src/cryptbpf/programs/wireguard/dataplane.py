"""The boundary between the handshake daemon and the BPF data plane.

The daemon (device.py) owns the Noise handshake and WireGuard's timers; the
data plane owns transport data messages (type 4) in BPF: sealing, opening,
the send counter, the replay window, cryptokey routing. This module is the
one interface between the two; the daemon never touches a map directly.

Implemented in BPF by bpf_dataplane.BpfDataPlane; the daemon gets one
through open_dataplane() and undoes a dead daemon's with cleanup().
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Protocol

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Endpoint = tuple[str, int]  # (address, UDP port); IPv4 or IPv6


@dataclass(frozen=True)
class PeerState:
    """What the data plane knows about a peer (for timers and `wg show`)."""
    rx_bytes: int            # transport payload bytes accepted
    tx_bytes: int            # transport payload bytes sent
    last_rx_ns: int          # CLOCK_MONOTONIC (bpf_ktime_get_ns) of the last authenticated packet, 0 = never
    last_tx_ns: int          # ... of the last packet sent (data or keepalive)
    last_data_tx_ns: int     # ... of the last non-keepalive packet sent
    last_data_rx_ns: int     # ... of the last non-keepalive packet received
    send_counter: int        # next counter of the current sending keypair (REKEY_AFTER_MESSAGES)
    current_index: int       # local index of the current keypair, 0 = none
    endpoint: Endpoint | None  # learned from the last authenticated packet (roaming)


@dataclass(frozen=True)
class NeedHandshake:
    """Egress had a packet for the peer and no usable sending keypair."""
    peer_id: int


class DataPlane(Protocol):
    """One WireGuard interface's data plane (one per `cryptbpf wg up`)."""

    def set_peer(self, peer_id: int, public_key: bytes, endpoint: Endpoint | None,
                 allowed_ips: Iterable[IPNetwork]) -> None:
        """Add or update a peer: its endpoint and its AllowedIPs (LPM)."""

    def remove_peer(self, peer_id: int) -> None:
        """Forget a peer: routes, keypairs (keys wiped), endpoint."""

    def install_keypair(self, peer_id: int, local_index: int, remote_index: int,
                        send_key: bytes, recv_key: bytes, initiator: bool) -> None:
        """A fresh keypair from a completed handshake.

        initiator=True: usable for sending at once (becomes current; the
        old current becomes previous). initiator=False (responder): held as
        `next` and promoted to current by the data plane on the first
        authenticated data packet received under it (WireGuard's rule).
        """

    def expire_keypair(self, local_index: int) -> None:
        """Wipe a keypair (REJECT_AFTER_TIME, or replaced)."""

    def peer_state(self, peer_id: int) -> PeerState:
        ...

    def keepalive(self, peer_id: int) -> bytes | None:
        """A sealed keepalive (type 4, empty plaintext) under the current
        keypair with a counter taken from the data plane, ready for the
        daemon's UDP socket; None if there is no current keypair."""

    def events(self) -> Iterable[NeedHandshake]:
        """Pending events (non-blocking); fileno() for select()."""

    def fileno(self) -> int:
        ...

    def close(self) -> None:
        """Undo everything the data plane made (programs, devices, routes)."""


def open_dataplane(cfg, listen_port: int) -> DataPlane:
    """The BPF data plane for a wg-quick interface config (config.py's
    InterfaceConfig: name, addresses, mtu), receiving at `listen_port` on
    every underlay device of this namespace (bpf_dataplane.underlay_devices)."""
    from .bpf_dataplane import BpfDataPlane, underlay_devices
    return BpfDataPlane(cfg.name, listen_port, underlay_devices(), mtu=cfg.mtu,
                        addresses=[str(a) for a in cfg.addresses])


def cleanup(name: str) -> bool:
    """Undo what the data plane of interface `name` (in this namespace)
    left behind when its daemon died; True if there was anything."""
    from .bpf_dataplane import cleanup as _cleanup
    return _cleanup(name)
