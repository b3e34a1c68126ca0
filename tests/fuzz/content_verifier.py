"""content-verifier's accept rule (bpf/include/content_verifier.h): a UDP
datagram (IPv4 or IPv6, behind up to 6 extension headers) to the port
passes only if its payload is a well-formed cas_hdr whose length is the
rest of the payload exactly and whose id is SHA-256 of that rest (and, with
the allowlist enforced, an id on it); everything else to the port, and
every frame the classifier cannot judge, is dropped by reason."""

from __future__ import annotations

import hashlib
import random
import struct

from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
from scapy.layers.inet import UDP as ScapyUDP
from scapy.layers.l2 import Ether

from cryptbpf.programs.content_verifier import SPEC, client as cc, control as cv

from fuzz.engine import XDP_DROP, XDP_PASS, random_ipv4
from fuzz.frames import UDP, classify
from xdp_frames import CLIENT_MAC, SERVER_MAC, udp_frame

PORT, OPEN, MAX_EXT = 7310, 7311, 6


def udp6_frame(payload: bytes, dport: int, ext: int = 0) -> bytes:
    l3 = IPv6(src="fd00::1", dst="fd00::2")
    for i in range(ext):
        l3 = l3 / (IPv6ExtHdrHopByHop() if i == 0 else IPv6ExtHdrDestOpt())
    return bytes(Ether(src=CLIENT_MAC, dst=SERVER_MAC) / l3 / ScapyUDP(sport=40000, dport=dport) / payload)


class Target:
    name = "content_verifier"

    def __init__(self, obj):
        self.obj, self.prog = obj, obj.program("content_verify")
        self.allowed: set[bytes] = set()
        self.enforce = False

    def _chunk(self, rng: random.Random) -> bytes:
        content = rng.randbytes(rng.choice((0, 1, 31, 200)))
        kind, flags = rng.choice(((cc.DATA, 0), (cc.MANIFEST_T, 0), (cc.MANIFEST_T, cc.F_ROOT)))
        return cc.HDR.pack(magic=0xCA5C, version=1, type=kind, flags=flags, reserved=0,
                           length=len(content), id=cc.content_id(content)) + content

    def valid(self, rng: random.Random) -> bytes:
        if rng.random() < 0.02:         # the allowlist: on or off, some ids on it
            self.enforce = not self.enforce
            cv.set_enforce(self.obj, self.enforce)
        chunk = self._chunk(rng)
        if rng.random() < 0.3:
            cv.allow(self.obj, [chunk[8:40]])
            self.allowed.add(chunk[8:40])
        port = PORT if rng.random() < 0.9 else OPEN
        if rng.random() < 0.25:
            return udp6_frame(chunk, port, ext=rng.choice((0, 1, 4, 6, 7)))
        return udp_frame(chunk, port, src=random_ipv4(rng))

    def expect(self, frame: bytes):
        f = classify(frame, max_ext=MAX_EXT)
        if f.kind == "bad":
            return XDP_DROP, {{"l2": "unparsed", "ext": "unparsed", "hdr": "malformed",
                               "len": "bad_length"}[f.why]: 1}
        if f.kind == "not_ip" or f.proto != UDP or f.dport != PORT:
            return XDP_PASS, {}
        if f.frag_first:
            return XDP_DROP, {"fragment": 1}
        if f.udp_len != f.l3_end - f.l4_off:
            return XDP_DROP, {"bad_length": 1}
        off, n = f.payload
        p = frame[off:off + n]
        if n < 40:
            return XDP_DROP, {"truncated": 1}
        magic, version, kind, flags, reserved, length = struct.unpack(">HBBBBH", p[:8])
        if magic != 0xCA5C or version != 1 or kind not in (1, 2) or flags & ~1 \
                or (flags & 1 and kind != 2) or reserved:
            return XDP_DROP, {"bad_header": 1}
        if length != n - 40:
            return XDP_DROP, {"bad_length": 1}
        if self.enforce and p[8:40] not in self.allowed:
            return XDP_DROP, {"not_allowed": 1}
        if hashlib.sha256(p[40:]).digest() != p[8:40]:
            return XDP_DROP, {"mismatch": 1}
        return XDP_PASS, {"passed": 1, "bytes_verified": length}

    def verdict(self, frame: bytes) -> int:
        return self.prog.test_run(data=frame).retval

    def counters(self) -> dict:
        return SPEC.stats(self.obj)
