"""`cryptbpf demo`: the encrypted tunnel between two network namespaces.

Two hosts joined by veth; encrypted-tunnel loaded on both (chacha20-poly1305,
a fresh secret from the kernel CSPRNG); a ping and a TCP transfer through
it; what an AF_PACKET capture on the wire saw (ciphertext, and the same
packet opened by the independent Python implementation of the format);
the tunnel's counters; unload restoring everything.
"""

from __future__ import annotations

import hashlib
import os
import socket

from . import lifecycle, programs
from .bpf import pins
from .errors import CryptbpfError
from .netns import VethPair, inside
from .programs.encrypted_tunnel import control, traffic, wire

PORT = 4242
MARKER = b"attack at dawn"


def exchange(pair: VethPair, payload: bytes, port: int = PORT) -> bytes:
    """Send one UDP datagram from A to B; return what B's socket receives."""
    with inside(pair.ns_b):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind((pair.addr_b, port))
        rx.settimeout(3)
    with inside(pair.ns_a):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        tx.sendto(payload, (pair.addr_b, port))
        try:
            return rx.recv(65535)
        except socket.timeout:
            raise CryptbpfError("no datagram arrived at B (dropped?)") from None


def _up(pair: VethPair, secret: bytes, suite: int) -> None:
    from .programs.encrypted_tunnel import SPEC, cli as et
    # generic XDP: native XDP on one veth end changes the other end's offloads
    lifecycle.load(SPEC, pair.dev_a, key=secret, netns=pair.ns_a, xdp_mode="skb",
                   options={"peer": [pair.addr_b], "suite": [wire.SUITE_NAMES[suite]]})
    lifecycle.load(SPEC, pair.dev_b, netns=pair.ns_b, xdp_mode="skb")
    et.add_peer(pair.addr_a, secret, suite)


def _show_packet(echo, pkt: bytes, keys: wire.DirectionKeys) -> None:
    h = wire.parse(pkt)
    src, dst = socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20])
    body = pkt[20 + wire.HDR_LEN:]
    echo(f"   {src} > {dst} proto {pkt[9]} len {len(pkt)} key {h['key_id']} "
         f"counter {h['counter']}: {body[:24].hex()}...")
    inner = wire.open_packet(pkt, keys)
    echo(f"     opened by the Python peer: proto {inner[9]}, {len(inner)} bytes, "
         f"payload {inner[28:28 + 24]!r}...")


def run(echo) -> None:
    spec = programs.get("encrypted-tunnel")
    lifecycle.require_privileges()
    lifecycle.check_runnable(spec)
    if pins.is_loaded(spec.name):
        raise CryptbpfError(f"{spec.name} is already loaded here; unload it first")
    secret, suite = os.urandom(32), wire.CHACHA
    with VethPair("cbdemo") as pair:
        echo(f"hosts: {pair.ns_a} {pair.addr_a} <-veth-> {pair.ns_b} {pair.addr_b}")
        try:
            _up(pair, secret, suite)
            mtu = 1500 - wire.OVERHEAD[suite]
            echo(f"\n1. tunnel up on both hosts: {wire.SUITE_NAMES[suite]}, per-direction keys "
                 "derived with HKDF from a 32-byte secret (kernel CSPRNG, never printed)")
            echo(f"   TC egress seals, XDP + TC ingress verify and open; offloads off, "
                 f"route MTU to the peer {mtu}")
            data = (MARKER + b" ") * 300_000
            with traffic.Capture(pair.ns_a, pair.dev_a) as cap:
                with traffic.Pinger(pair.ns_a, pair.addr_b) as ping:
                    ok = sum(ping.echo(MARKER * 4) for _ in range(5))
                echo(f"\n2. ping A -> B through the tunnel: {ok}/5 replies")
                digest = traffic.tcp_transfer(pair.ns_a, pair.ns_b, pair.addr_b, data)
                same = digest == hashlib.sha256(data).digest()
                echo(f"\n3. TCP transfer A -> B: {len(data) / 2**20:.1f} MiB, "
                     f"received sha256 equals sent: {same}")
            between = cap.ipv4_between(pair.addr_a, pair.addr_b)
            clear = [p for p in between if p[9] != wire.IPPROTO]
            seen = any(MARKER in f for _, f in cap.frames)
            echo(f"\n4. AF_PACKET capture on A's device: {len(between)} packets between the hosts, "
                 f"{len(clear)} in clear, payload text on the wire: {seen}")
            a_to_b = wire.derive(secret, suite, 0, pair.addr_a, pair.addr_b)
            first = [p for p in between if p[12:16] == socket.inet_aton(pair.addr_a)][:2]
            for pkt in first:
                _show_packet(echo, pkt, a_to_b)
            echo("\n5. counters (cryptbpf tunnel stats):")
            with pins.Pinned(spec.name) as h:
                for peer in control.list_peers(h):
                    st = {k: v for k, v in control.peer_stats(h, peer.index).items() if v}
                    echo(f"   {peer.local} -> peer {peer.addr}: {st}")
            if ok != 5 or not same or clear or seen:
                raise CryptbpfError("demo failed: lost packets, corrupt data or clear text on the wire")
        finally:
            # only what a load made is undone (and said to be): a failed
            # first load has already undone itself
            if pins.is_loaded(spec.name):
                lifecycle.unload(spec.name)
                echo(f"\nunloaded {spec.name}: TC filters, XDP, offloads, gso_max_segs, routes "
                     "and pins restored")
