"""crypto-offload's accept rule (bpf/include/crypto_offload.h,
docs/crypto_offload.md, docs/fail_closed.md): it answers in XDP only IPv4
requests the kernel would deliver to the service port (IPv4 options
included, except those the kernel drops: source routes, unknown or
malformed ones); a request with the
magic and no room for a reply header is dropped (dropped_runt); an invalid
one is answered with the status of the documented validation order; a
valid one is computed in XDP when it fits the kernel path (one unfragmented
frame, size <= kernel_max_len), else it goes to the
daemon, or, with no daemon (as here), is refused with ERR_UNAVAILABLE.
Every other frame is the stack's. No daemon runs: every decision is
deterministic (the reason is daemon_down)."""

from __future__ import annotations

import random
import struct

from cryptbpf.programs.crypto_offload import control as co, wire

from fuzz.engine import XDP_DROP, XDP_PASS, XDP_TX, random_ipv4
from fuzz.frames import UDP, classify
from xdp_frames import udp_frame

PORT, OTHER = 7788, 7789
HMAC_ID, AEAD_ID = 1, 2
KERNEL_MAX_LEN = 1024


class Target:
    name = "crypto_offload"

    def __init__(self, obj):
        self.obj, self.prog = obj, obj.program("offload_xdp")
        co.setup(obj, sample_every=0, kernel_max_len=KERNEL_MAX_LEN)
        co.install_key(obj, HMAC_ID, "hmac", bytes(range(32)))
        co.install_key(obj, AEAD_ID, "aead", bytes(range(32, 64)))
        self.keys = {HMAC_ID: wire.KEY_HMAC, AEAD_ID: wire.KEY_AEAD}

    def valid(self, rng: random.Random) -> bytes:
        op = rng.choice(("sha256", "hmac", "seal"))
        data = rng.randbytes(rng.choice((0, 5, 64, 700, 1100)))
        kid = {"sha256": 0, "hmac": HMAC_ID, "seal": AEAD_ID}[op]
        if rng.random() < 0.1:
            kid = rng.choice((0, HMAC_ID, AEAD_ID, 9))
        msg = wire.request(op, data, req_id=rng.getrandbits(32), key_id=kid,
                           nonce=rng.randbytes(12), aad=rng.randbytes(rng.choice((0, 16, 300))))
        return udp_frame(msg, PORT if rng.random() < 0.9 else OTHER, src=random_ipv4(rng))

    def _status(self, p: bytes) -> str | None:
        """The validation order of crypto_offload.h: None = valid."""
        if len(p) < 16:
            return "length"
        _, version, op, _, kid, dlen, alen = struct.unpack("!HBBIIHH", p[:16])
        if version != 1:
            return "version"
        if op not in (1, 2, 3):
            return "op"
        if dlen > 8192 or alen > 256:
            return "too_big"
        if op != 3 and alen:
            return "length"
        want = 16 + dlen + (12 + alen if op == 3 else 0)
        if op != 3:
            want = max(want, 44)
        if len(p) != want:
            return "length"
        if op == 1:
            return "key" if kid else None
        if kid not in self.keys:
            return "key"
        return None if self.keys[kid] == (wire.KEY_HMAC if op == 2 else wire.KEY_AEAD) else "key_type"

    def expect(self, frame: bytes):
        f = classify(frame)
        if f.kind != "ipv4" or f.proto != UDP or f.dport != PORT or f.udp_len < 8 or f.opts_dropped:
            return XDP_PASS, {}
        if not f.frag_first and f.udp_len != f.l3_end - f.l4_off:
            return XDP_PASS, {}
        off, n = f.payload
        p = frame[off:off + n]
        if n < 12 or len(p) < 8 or p[:2] != b"\xcb\x0f":
            return XDP_DROP, {"dropped_runt": 1}
        if self._status(p):
            return XDP_TX, {"reject/invalid": 1}
        _, _, op, _, _, dlen, alen = struct.unpack("!HBBIIHH", p[:16])
        # the kernel path: one frame (options it delivers are kept in the reply)
        if f.frag_first or dlen + alen > KERNEL_MAX_LEN:
            return XDP_TX, {"reject/daemon_down": 1}
        return XDP_TX, {"kernel/daemon_down": 1}

    def verdict(self, frame: bytes) -> int:
        return self.prog.test_run(data=frame).retval

    def counters(self) -> dict:
        return co.decisions(self.obj)
