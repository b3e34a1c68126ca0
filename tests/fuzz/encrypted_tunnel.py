"""encrypted-tunnel's XDP accept rule (bpf/encrypted_tunnel.bpf.c tunnel_xdp,
docs/encrypted_tunnel.md): the early drops in front of TC. From a peer,
only tunnel packets (IP protocol 253) pass, untagged or behind one VLAN id
0 tag, with a 20-byte IPv4 header, a sane length, version 1, the peer's
suite and a key id it accepts, and a counter inside the replay window; a
tunnel packet from a non-peer is dropped; other traffic of non-peers is
not the tunnel's. The AEAD itself is TC's (test_encrypted_tunnel*.py):
this model covers the XDP program only."""

from __future__ import annotations

import os
import random
import struct

from scapy.layers.inet import IP
from scapy.layers.l2 import Ether

from cryptbpf.programs.encrypted_tunnel import control as ct, wire

from fuzz.engine import XDP_DROP, XDP_PASS, random_ipv4
from fuzz.frames import classify
from xdp_frames import CLIENT_MAC, SERVER_MAC, udp_frame

PEER, LOCAL, OTHER_PEER = "10.9.0.1", "10.9.0.2", "10.9.0.7"
NO_PEER_ROW, WINDOW = 64, 2048
PROGRAM = "tunnel_xdp"


class Target:
    name = "encrypted_tunnel"

    def __init__(self, obj):
        self.obj, self.prog = obj, obj.program(PROGRAM)
        self.peers = {}
        for addr in (PEER, OTHER_PEER):
            p = ct.add_peer(obj, addr, LOCAL, os.urandom(32), wire.CHACHA)
            self.peers[bytes(map(int, addr.split(".")))] = p.index
        self.counter = 0

    def valid(self, rng: random.Random) -> bytes:
        src = rng.choice((PEER, PEER, OTHER_PEER, random_ipv4(rng)))
        if rng.random() < 0.25:
            return udp_frame(b"clear", 4000, src=src)
        self.counter += rng.choice((1, 1, 5, 3000))
        key_id = 0 if rng.random() < 0.8 else rng.choice((1, 2, 3))
        suite = wire.CHACHA if rng.random() < 0.9 else wire.CBC
        body = wire.header(suite, key_id, self.counter) + rng.randbytes(rng.choice((1, 40, 300))) + bytes(18)
        return bytes(Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP(src=src, dst=LOCAL, proto=253) / body)

    def expect(self, frame: bytes):
        f = classify(frame, l3_only=True)
        if f.kind == "bad" and f.why == "l2":
            return XDP_DROP, {f"{NO_PEER_ROW}:xdp_unparsed": 1}
        if f.family != 4:       # not IP, IPv6, or no complete IPv4 header
            return XDP_PASS, {}
        row = self.peers.get(f.saddr)
        if f.proto != 253:
            return (XDP_PASS, {}) if row is None else (XDP_DROP, {f"{row}:xdp_clear_from_peer": 1})
        if row is None:
            return XDP_DROP, {f"{NO_PEER_ROW}:xdp_not_peer": 1}
        if f.tags > 1 or f.vlan_id:
            return XDP_DROP, {f"{row}:xdp_tagged": 1}
        h = f.l3_off + 20
        if f.kind == "bad" or f.ihl != 20 or f.l3_end - f.l3_off < 20 + 12 + 16 + 2 + 1 \
                or f.l3_end != len(frame) or len(frame) < h + 12 or frame[h] != 1:
            return XDP_DROP, {f"{row}:xdp_malformed": 1}
        _, suite, key_id, _, hi, lo = struct.unpack(">BBBBII", frame[h:h + 12])
        if suite != wire.CHACHA or key_id not in (0, 1):     # add_peer: rx keys 0 and 1
            return XDP_DROP, {f"{row}:xdp_unknown_key": 1}
        return XDP_PASS, {}     # top is 0: TC never opened anything here, nothing is stale

    def verdict(self, frame: bytes) -> int:
        return self.prog.test_run(data=frame).retval

    def counters(self) -> dict:
        out = {}
        for row in list(self.peers.values()) + [NO_PEER_ROW]:
            for k, v in ct.peer_stats(self.obj, row).items():
                if v:
                    out[f"{row}:{k}"] = v
        return out
