"""crypto-ratelimit's accept rule (bpf/include/crypto_ratelimit.h): per IPv4
source a token bucket (GCRA: burst tokens, rate per second) on protected
UDP ports; over budget, a CHALLENGE in place while the source has
challenges left in the slot; a SOLUTION with enough leading zero bits for
the challenge issued to that source refills the bucket once; frames the
classifier cannot judge, and protected-port datagrams that are not whole,
are dropped (bad_l4)."""

from __future__ import annotations

import os
import random

from cryptbpf.programs.crypto_ratelimit import SPEC, client as pc, control as cr

from fuzz.engine import XDP_DROP, XDP_PASS, XDP_TX, random_ipv4
from fuzz.frames import UDP, classify
from xdp_frames import udp_frame

PORT, OPEN = 5353, 5354
D, RATE, BURST, MAX_CHAL = 4, 1, 3, 2
SLOT_NS, I_NS = 30 * 10**9, 10**9 // RATE
TOL_NS = (BURST - 1) * I_NS
MAGIC = 0x43425057


def _boot_ns() -> int:
    import time
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class Target:
    name = "crypto_ratelimit"

    def __init__(self, obj):
        self.obj, self.prog = obj, obj.program("crypto_ratelimit")
        self.server_key = os.urandom(32)
        cr.install_server_key(obj, self.server_key)
        cr.configure_limits(obj, rate=RATE, burst=BURST, max_challenges=MAX_CHAL,
                            min_difficulty=D, max_difficulty=D)
        cr.protect(obj, PORT)
        self.buckets: dict[bytes, dict] = {}
        self.used: set[bytes] = set()
        self.sources = [random_ipv4(random.Random(100 + i)) for i in range(6)]

    def valid(self, rng: random.Random) -> bytes:
        src, r = rng.choice(self.sources), rng.random()
        if r < 0.5:
            return udp_frame(rng.randbytes(rng.randrange(0, 80)), rng.choice((PORT, PORT, OPEN)), src=src)
        if r < 0.65:
            return udp_frame(pc.pack("request"), PORT, src=src)
        slot = _boot_ns() // SLOT_NS - rng.choice((0, 0, 0, 1, 2))
        chal = {"difficulty": D, "slot": slot,
                "challenge": pc.compute_challenge(self.server_key, src, slot, D)}
        nonce, _ = pc.solve(chal["challenge"], D, start=rng.getrandbits(64))
        return udp_frame(pc.solution_message(chal, nonce), PORT, src=src)

    # ---- the model
    def _bucket(self, src: bytes, now: int) -> dict:
        return self.buckets.setdefault(src, {"tat": now, "slot": 0, "count": 0})

    def _challenge(self, b: dict, now: int, delta: dict):
        slot = now // SLOT_NS
        if b["slot"] != slot:
            b["slot"], b["count"] = slot, 0
        b["count"] += 1
        if b["count"] > MAX_CHAL:
            return XDP_DROP, {**delta, "limited": 1}
        return XDP_TX, {**delta, "challenged": 1}

    def expect(self, frame: bytes):
        f, now = classify(frame), _boot_ns()
        if f.kind == "bad":
            return XDP_DROP, {"bad_l4": 1}
        if f.kind == "not_ip" or f.proto != UDP or f.dport is None or f.dport != PORT:
            return XDP_PASS, {}
        if f.kind == "ipv6":
            return XDP_DROP, {"ipv6_dropped": 1}
        if not f.udp_exact():
            return XDP_DROP, {"bad_l4": 1}
        off, n = f.payload
        payload = frame[off:off + n]
        if n >= 4 and int.from_bytes(payload[:4], "big") == MAGIC:
            return self._control(payload, f, now)
        b = self._bucket(f.saddr, now)
        base = max(b["tat"], now)
        if base - now <= TOL_NS:
            b["tat"] = base + I_NS
            return XDP_PASS, {"passed": 1}
        return self._challenge(b, now, {})

    def _control(self, payload: bytes, f, now: int):
        if len(payload) != 56 or payload[4] != 1 or payload[7] or payload[6] > 32 \
                or payload[5] not in (2, 4):
            return XDP_DROP, {"malformed": 1}
        if payload[5] == 4:
            return self._challenge(self._bucket(f.saddr, now), now, {"requests": 1})
        m = pc.unpack(payload)
        src = ".".join(str(x) for x in f.saddr)
        if m["slot"] not in (now // SLOT_NS, now // SLOT_NS - 1):
            return XDP_DROP, {"stale": 1}
        if m["challenge"] != pc.compute_challenge(self.server_key, src, m["slot"], m["difficulty"]):
            return XDP_DROP, {"bad_challenge": 1}
        digest = pc.pow_digest(m["challenge"], m["nonce"])
        if pc.leading_zero_bits(digest) < m["difficulty"]:
            return XDP_DROP, {"bad_pow": 1}
        if digest in self.used:
            return XDP_DROP, {"replayed": 1}
        self.used.add(digest)
        self._bucket(f.saddr, now)["tat"] = now
        return XDP_TX, {"solved": 1}

    def verdict(self, frame: bytes) -> int:
        return self.prog.test_run(data=frame).retval

    def counters(self) -> dict:
        return SPEC.stats(self.obj)
