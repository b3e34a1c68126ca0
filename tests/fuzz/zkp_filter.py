"""zkp-filter's accept rule (docs/zkp_filter.md, bpf/include/zkp_filter.h):
protected ports pass only from an IPv4 source authorized by a valid proof
(one proof per challenge), HELLO is answered with the challenge, a PROOF
with ACCEPT; every frame the classifier cannot judge is dropped (bad_l4)."""

from __future__ import annotations

import os
import random

from cryptbpf.programs.zkp_filter import SPEC, client as zc, control as zf

from fuzz.engine import XDP_DROP, XDP_PASS, XDP_TX, icmp_error_rule, random_ipv4
from fuzz.frames import UDP, classify
from xdp_frames import tcp_frame, udp_frame

CTRL, PROTECTED, OPEN = 7227, 2222, 8080
SLOT_NS, TTL_NS = 30 * 10**9, 300 * 10**9
SECRET, KEY_ID = b"fuzzing zkp-filter secret 123456", 7


class Target:
    name = "zkp_filter"

    def __init__(self, obj):
        self.obj, self.prog = obj, obj.program("zkp_filter")
        self.server_key, self.verifier = os.urandom(32), zc.derive_verifier(SECRET)
        zf.install_server_key(obj, self.server_key)
        zf.add_key(obj, KEY_ID, self.verifier)
        zf.protect(obj, PROTECTED)
        self.authorized: dict[bytes, int] = {}    # source -> expires (boot ns)
        self.used: set[bytes] = set()
        self.sources = [random_ipv4(random.Random(i)) for i in range(8)]

    # ---- frames
    def _proof(self, rng, src: str) -> bytes:
        slot = zf.boot_ns() // SLOT_NS - rng.choice((0, 0, 0, 1, 2))
        nonce = rng.randbytes(16)
        chal = {"client_nonce": nonce, "slot": slot,
                "challenge": zc.compute_challenge(self.server_key, src, slot, nonce)}
        kid = KEY_ID if rng.random() < 0.9 else rng.choice((1, 8, 2**32 - 1))
        return zc.proof_message(chal, self.verifier, src, kid)

    def valid(self, rng: random.Random) -> bytes:
        src = rng.choice(self.sources)
        kind = rng.random()
        if kind < 0.3:
            return udp_frame(zc.pack("hello", client_nonce=rng.randbytes(16)), CTRL, src=src)
        if kind < 0.6:
            return udp_frame(self._proof(rng, src), CTRL, src=src)
        if kind < 0.8:
            return udp_frame(b"app data", rng.choice((PROTECTED, OPEN)), src=src)
        return tcp_frame(rng.choice((PROTECTED, OPEN)), src=src)

    # ---- the model
    def _auth_ok(self, addr: bytes, now: int) -> bool:
        return self.authorized.get(addr, 0) > now

    def expect(self, frame: bytes):
        f, now = classify(frame), zf.boot_ns()
        if f.kind == "bad":
            return XDP_DROP, {"bad_l4": 1}
        if f.kind == "not_ip":
            return XDP_PASS, {}
        if f.icmp_err:
            return icmp_error_rule(f, PROTECTED, lambda a: self._auth_ok(a, now))
        if f.dport is None:
            return XDP_PASS, {}
        if f.kind == "ipv4" and f.proto == UDP and f.dport == CTRL:
            return self._control(frame, f, now)
        if f.dport != PROTECTED:
            return XDP_PASS, {}
        if f.kind == "ipv4" and self._auth_ok(f.saddr, now):
            return XDP_PASS, {"passed": 1}
        expired = f.kind == "ipv4" and f.saddr in self.authorized
        return XDP_DROP, {"dropped": 1, "expired": int(expired)}

    def _control(self, frame: bytes, f, now: int):
        off, n = f.payload
        try:
            m = zc.unpack(frame[off:off + n]) if f.udp_exact() else None
        except ValueError:      # size, magic or version
            m = None
        if m is None or m["reserved"] or m["type"] not in (1, 3):
            return XDP_DROP, {"malformed": 1}
        if m["type"] == 1:
            return XDP_TX, {"hellos": 1}
        src = ".".join(str(x) for x in f.saddr)
        slot, kid = m["slot"], m["key_id"]
        if kid != KEY_ID:
            return XDP_DROP, {"unknown_key": 1}
        if slot not in (now // SLOT_NS, now // SLOT_NS - 1):
            return XDP_DROP, {"stale": 1}
        if m["challenge"] != zc.compute_challenge(self.server_key, src, slot, m["client_nonce"]):
            return XDP_DROP, {"bad_challenge": 1}
        if m["proof"] != zc.compute_proof(self.verifier, m["challenge"], src, kid):
            return XDP_DROP, {"bad_proof": 1}
        if m["challenge"] in self.used:
            return XDP_DROP, {"replayed": 1}
        self.used.add(m["challenge"])
        self.authorized[f.saddr] = now + TTL_NS
        return XDP_TX, {"accepted": 1}

    def verdict(self, frame: bytes) -> int:
        return self.prog.test_run(data=frame).retval

    def counters(self) -> dict:
        return SPEC.stats(self.obj)
