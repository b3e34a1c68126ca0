"""Bounded differential fuzzing of the XDP/TC programs: random and mutated
frames through BPF_PROG_TEST_RUN, each verdict and each counter compared
with a small Python model of the program's accept rule (tests/fuzz/<name>.py).

A target is a class with
    name                      the program (bpf/<name>.bpf.c)
    __init__(obj)             the loaded object: install keys, protect ports,
                              and start its model's state
    valid(rng) -> bytes       a frame the program accepts or answers
    noise(rng) -> bytes       another frame worth sending (optional)
    expect(frame) -> (verdict, {counter: increment}), updating the model;
                              {"_one_of": (names...)} besides: exactly one of
                              those counters moves, by one (where the model
                              knows a frame is refused but not the reason)
    verdict(frame) -> int     run the program (default: XDP, test_run)
    counters() -> dict        the program's counters now

`fuzz(target, rng, count=N or until=deadline)` sends valid frames, their
mutations (bytes flipped, truncated, extended, fields swapped, sources
changed) and noise, and returns the disagreements, each with the frame."""

from __future__ import annotations

import random
import struct
import time
from dataclasses import dataclass

from xdp_frames import XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX  # noqa: F401

VERDICTS = {0: "ABORTED", 1: "DROP", 2: "PASS", 3: "TX"}


@dataclass
class Disagreement:
    program: str
    kind: str           # "verdict" | "counters"
    frame: bytes
    expected: object
    got: object
    how: str            # the mutation that made the frame

    def __str__(self):
        return (f"{self.program}: {self.kind} disagrees on a frame made by {self.how}: "
                f"model {self.expected}, BPF {self.got}\n  frame ({len(self.frame)} bytes): "
                f"{self.frame.hex()}")


def icmp_error_rule(f, port: int, authorized) -> tuple[int, dict]:
    """zkp-filter's and pki-validator's rule for ICMP errors
    (docs/fail_closed.md): one quoting a flow of the guarded port whose
    remote end is not an authorized IPv4 source (`authorized(addr)`) is
    dropped (icmp_error); every other one passes."""
    q = f.quoted
    if q.get("proto") not in (6, 17) or q["port"] != port:
        return XDP_PASS, {}
    if f.kind == "ipv4" and authorized(q["peer"]):
        return XDP_PASS, {}
    return XDP_DROP, {"icmp_error": 1}


def random_ipv4(rng: random.Random) -> str:
    return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


# ---- mutations of a valid frame (l3: where the IP header starts)

def _flip(rng, f):
    b = bytearray(f)
    for _ in range(rng.choice((1, 1, 2, 4))):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256)
    return bytes(b)


def _flip_payload(rng, f):
    """A byte after the IP/UDP headers (the headers stay valid)."""
    b = bytearray(f)
    if len(b) > 42:
        b[rng.randrange(42, len(b))] ^= rng.randrange(1, 256)
    return bytes(b)


# BPF_PROG_TEST_RUN takes no packet shorter than an Ethernet header
MIN_FRAME = 14


def _truncate(rng, f):
    return f[:rng.randrange(MIN_FRAME, len(f))] if len(f) > MIN_FRAME else f


def _extend(rng, f):
    return f + rng.randbytes(rng.choice((1, 3, 8, 64)))


def _swap(rng, f):
    """Two aligned 4-byte fields exchanged (addresses, ports, magic...)."""
    if len(f) < 16:
        return f
    b = bytearray(f)
    i, j = (rng.randrange(0, len(b) - 4) & ~3 for _ in range(2))
    b[i:i + 4], b[j:j + 4] = f[j:j + 4], f[i:i + 4]
    return bytes(b)


def fix_ipv4_csum(b: bytearray, l3: int = 14) -> None:
    if len(b) < l3 + 20 or b[l3] >> 4 != 4:
        return
    ihl = (b[l3] & 15) * 4
    if len(b) < l3 + ihl or ihl < 20:
        return
    b[l3 + 10:l3 + 12] = b"\0\0"
    s = sum(struct.unpack(f"!{ihl // 2}H", bytes(b[l3:l3 + ihl])))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    b[l3 + 10:l3 + 12] = struct.pack("!H", ~s & 0xFFFF)


def _header_field(rng, f):
    """An IP header field changed and the checksum fixed: gets past the
    checksum to the length, fragment, protocol and option checks."""
    b = bytearray(f)
    if len(b) < 34 or b[12:14] != b"\x08\x00":
        return _flip(rng, f)
    i = rng.choice((0, 2, 3, 6, 7, 9, 12, 15, 16, 19))
    b[14 + i] = rng.randrange(256) if rng.random() < 0.5 else b[14 + i] ^ (1 << rng.randrange(8))
    fix_ipv4_csum(b)
    return bytes(b)


def _udp_len(rng, f):
    b = bytearray(f)
    if len(b) < 42 or b[12:14] != b"\x08\x00":
        return _flip(rng, f)
    l4 = 14 + (b[14] & 15) * 4
    if len(b) >= l4 + 8:
        n = struct.unpack_from("!H", b, l4 + 4)[0]
        b[l4 + 4:l4 + 6] = struct.pack("!H", max(0, n + rng.choice((-9, -1, 1, 8, 100))) & 0xFFFF)
    return bytes(b)


def _new_source(rng, f):
    return with_source(f, random_ipv4(rng))


def with_source(f: bytes, addr: str) -> bytes:
    """The same untagged IPv4 frame from `addr` (the IP checksum fixed, a
    UDP checksum zeroed: optional in IPv4), built without scapy: floods
    need ~100 ns a frame, not scapy's ~1 ms."""
    b = bytearray(f)
    if len(b) < 34 or b[12:14] != b"\x08\x00":
        return f
    b[26:30] = bytes(int(x) for x in addr.split("."))
    fix_ipv4_csum(b)
    l4 = 14 + (b[14] & 15) * 4
    if b[23] == 17 and len(b) >= l4 + 8:
        b[l4 + 6:l4 + 8] = b"\0\0"
    return bytes(b)


# IPv4 options: NOPs, record route, timestamp, loose/strict source route,
# router alert, and bytes that are not a valid option
IP_OPTIONS = (b"\x01\x01\x01\x01", b"\x07\x07\x04\x00\x00\x00\x00\x00",
              b"\x44\x08\x05\x00\x00\x00\x00\x00", b"\x83\x07\x04\x0a\x00\x00\x01\x00",
              b"\x89\x07\x04\x0a\x00\x00\x01\x00", b"\x94\x04\x00\x00", b"\x07\x01\x00\x00")


def _ip_options(rng, f):
    """IPv4 options inserted (IHL, total length and checksum fixed)."""
    b = bytearray(f)
    if len(b) < 34 or b[12:14] != b"\x08\x00" or b[14] != 0x45:
        return _flip(rng, f)
    opt = rng.choice(IP_OPTIONS)
    b[34:34] = opt
    b[14] = 0x40 | (5 + len(opt) // 4)
    b[16:18] = struct.pack("!H", struct.unpack_from("!H", b, 16)[0] + len(opt))
    fix_ipv4_csum(b)
    return bytes(b)


def _vlan(rng, f):
    """Behind 1-9 VLAN tags (0 or another id)."""
    n = rng.randrange(1, 10)
    tags = b"".join(struct.pack("!HH", rng.choice((0x8100, 0x88A8)), rng.choice((0, 5)))
                    for _ in range(n))
    return f[:12] + tags + f[12:]


MUTATIONS = {"flip": _flip, "flip-payload": _flip_payload, "truncate": _truncate,
             "extend": _extend, "swap": _swap, "header-field": _header_field,
             "udp-length": _udp_len, "new-source": _new_source, "vlan": _vlan,
             "ip-options": _ip_options}


def frames(target, rng: random.Random):
    """Endless (how, frame): valid, mutated (one or two mutations), noise."""
    names = list(MUTATIONS)
    while True:
        r = rng.random()
        if r < 0.25:
            yield "valid", target.valid(rng)
        elif r < 0.9:
            f, how = target.valid(rng), []
            for _ in range(rng.choice((1, 1, 2))):
                how.append(rng.choice(names))
                f = MUTATIONS[how[-1]](rng, f)
            yield "+".join(how), f
        elif hasattr(target, "noise"):
            yield "noise", target.noise(rng)
        else:
            yield "random", rng.randbytes(rng.randrange(MIN_FRAME, 200))


def fuzz(target, rng: random.Random, count: int | None = None,
         until: float | None = None, stop_at: int = 20) -> tuple[int, list[Disagreement]]:
    """(frames sent, disagreements). Stops after `count` frames, at time
    `until`, or after `stop_at` disagreements. The model is resynchronised
    with the program's counters after a disagreement."""
    sent, found = 0, []
    before = target.counters()
    for how, frame in frames(target, rng):
        if (count is not None and sent >= count) or (until is not None and time.time() >= until):
            break
        if len(found) >= stop_at:
            break
        want, delta = target.expect(frame)
        got = target.verdict(frame)
        after = target.counters()
        sent += 1
        moved = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        delta = {k: v for k, v in delta.items() if v}
        one_of = delta.pop("_one_of", ())
        if one_of and len(set(moved) - set(delta)) == 1 and set(moved) - set(delta) <= set(one_of):
            (k,) = set(moved) - set(delta)      # exactly one of the reasons, once
            if moved[k] == 1:
                delta[k] = 1
        if got != want:
            found.append(Disagreement(target.name, "verdict", frame, VERDICTS.get(want, want),
                                      VERDICTS.get(got, got), how))
        elif moved != delta:
            found.append(Disagreement(target.name, "counters", frame, delta, moved, how))
        before = after
    return sent, found
