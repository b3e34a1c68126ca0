"""signed-auth's accept rule (bpf/include/signed_auth.h, docs/signed_auth.md):
an IPv4/UDP datagram to a protected port passes only with an 80-byte
trailer signed (ECDSA P-256 over signed_hdr || data) by a trusted, active
key, with a sequence number the replay window has not seen; the rest of
the protected-port traffic is dropped by reason. Budgets are set out of
reach here (the exhaustion tests and test_signed_auth.py bound them)."""

from __future__ import annotations

import random
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from cryptbpf.bpf.headers import Layout
from cryptbpf.crypto import p256_keys
from cryptbpf.programs.signed_auth import SPEC, control as sa

from fuzz.engine import XDP_DROP, XDP_PASS, random_ipv4
from fuzz.frames import UDP, classify
from xdp_frames import udp_frame

KNOBS = {"global_rate": 1_000_000, "global_burst": 1_000_000}
PORT, OPEN, KID, WINDOW, WORDS = 4242, 4243, 5, 960, 16


class Target:
    name = "signed_auth"

    def __init__(self, obj):
        self.obj, self.prog = obj, obj.program("signed_auth_xdp")
        self.key = ec.generate_private_key(ec.SECP256R1())
        sa.set_ports(obj, add=[PORT])
        sa.trust(obj, KID, p256_keys.public_point(self.key.public_key()),
                 rate=1_000_000, burst=1_000_000)
        r = Layout("signed_auth").unpack("struct signed_auth_replay",
                                         obj.map("sa_state").lookup(KID.to_bytes(4, "little"))[8:])
        self.top, self.bits = r["top"], list(r["bits"])
        self.seq, self.sent = self.top, []
        self.sources = [random_ipv4(random.Random(200 + i)) for i in range(4)]

    def _sign(self, src: str, sport: int, seq: int, data: bytes, kid: int = KID) -> bytes:
        hdr = struct.pack(">HBBIQ4s4sHHI", 0x5341, 1, 0, kid, seq, bytes(map(int, src.split("."))),
                          bytes([10, 9, 0, 2]), sport, PORT, len(data))
        r, s = utils.decode_dss_signature(self.key.sign(hdr + data, ec.ECDSA(hashes.SHA256())))
        return data + hdr[:16] + r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def valid(self, rng: random.Random) -> bytes:
        src, r = rng.choice(self.sources), rng.random()
        if r < 0.15:
            return udp_frame(rng.randbytes(rng.randrange(0, 120)), rng.choice((PORT, OPEN)), src=src)
        if r < 0.3 and self.sent:                       # a replay (or a stale one, later)
            return rng.choice(self.sent)
        self.seq += rng.choice((1, 1, 2, 70, 1000))
        seq = self.seq if rng.random() < 0.9 else self.seq - rng.randrange(1, 2000)
        f = udp_frame(self._sign(src, 40000, seq, rng.randbytes(rng.randrange(0, 100))), PORT, src=src)
        self.sent = (self.sent + [f])[-50:]
        return f

    # ---- the model
    def _replay(self, seq: int) -> str:
        if seq > self.top:
            return "fresh"
        if self.top - seq >= WINDOW:
            return "stale"
        return "replayed" if self.bits[(seq >> 6) % WORDS] >> (seq & 63) & 1 else "fresh"

    def _record(self, seq: int) -> None:
        if seq > self.top:
            cur, diff = self.top >> 6, (seq >> 6) - (self.top >> 6)
            for i in range(1, WORDS + 1):
                if i <= diff:
                    self.bits[(cur + i) % WORDS] = 0
            self.top = seq
        self.bits[(seq >> 6) % WORDS] |= 1 << (seq & 63)

    def expect(self, frame: bytes):
        f = classify(frame)
        if f.kind == "bad":
            return XDP_DROP, {"unparsed" if f.why in ("l2", "ext") else "malformed": 1}
        if f.kind == "not_ip" or f.proto != UDP or f.dport != PORT:
            return XDP_PASS, {}
        if f.frag_first:
            return XDP_DROP, {"fragmented": 1}
        if f.kind == "ipv6":
            return XDP_DROP, {"unsupported": 1}
        if f.ip_opts:
            return XDP_DROP, {"ip_options": 1}
        if f.udp_len != f.l3_end - f.l4_off:
            return XDP_DROP, {"malformed": 1}
        off, n = f.payload
        if n < 80:
            return XDP_DROP, {"short_payload": 1}
        data, tr = frame[off:off + n - 80], frame[off + n - 80:off + n]
        magic, version, flags, kid, seq = struct.unpack(">HBBIQ", tr[:16])
        if (magic, version, flags) != (0x5341, 1, 0):
            return XDP_DROP, {"no_trailer": 1}
        if kid != KID:
            return XDP_DROP, {"unknown_key": 1}
        verdict = self._replay(seq)
        if verdict != "fresh":
            return XDP_DROP, {verdict: 1}
        hdr = tr[:16] + f.saddr + f.daddr + struct.pack(">HHI", f.sport, f.dport, len(data))
        sig = utils.encode_dss_signature(int.from_bytes(tr[16:48], "big"), int.from_bytes(tr[48:], "big"))
        try:
            self.key.public_key().verify(sig, hdr + data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return XDP_DROP, {"verifications": 1, "bad_signature": 1}
        self._record(seq)
        return XDP_PASS, {"verifications": 1, "verified": 1}

    def verdict(self, frame: bytes) -> int:
        return self.prog.test_run(data=frame).retval

    def counters(self) -> dict:
        c = SPEC.stats(self.obj)
        c.pop("last_seen_ns", None)     # a clock, not a count
        return c
