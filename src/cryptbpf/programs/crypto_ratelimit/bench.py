"""crypto_ratelimit: packets per second one core judges (BPF_PROG_TEST_RUN),
and the proof-of-work asymmetry: the client's solve time per difficulty
(Python hashlib, the `cryptbpf pow` client) next to the server's verify
cost measured in the same run.

Valid solutions and challenges change state or turn the packet into the
reply in place, so they are timed one packet per run over distinct packets
(kernel duration of each run, averaged; colder caches than a burst);
everything else with `repeat` (best of 3).
"""

from __future__ import annotations

import os
import time

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from ...bench import bpf_each_ns, bpf_repeat_ns
from . import client as pc
from ...bpf.object import BpfObject
from ...paths import bpf_object
from . import control as cr

PORT = 5353
DISTINCT = 2000
REPEAT = 20000
SOLVE_TRIALS = {0: 50, 4: 50, 8: 30, 12: 10, 16: 4, 20: 2}


def _udp(payload: bytes, src: str) -> bytes:
    return bytes(Ether() / IP(src=src, dst="10.0.0.1") / UDP(sport=40000, dport=PORT) / payload)


def _src(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def _row(name: str, ns: float, size: int = 56, **extra) -> dict:
    return {"name": name, "size": size, "ns": ns, "packets_per_s": round(1e9 / ns), **extra}


def ratelimit_packets(echo) -> list[dict]:
    obj = BpfObject.open(str(bpf_object("crypto_ratelimit"))).load()
    try:
        prog = obj.program("crypto_ratelimit")
        skey = os.urandom(32)
        cr.install_server_key(obj, skey)
        cr.configure_limits(obj, rate=10**9, burst=10**6, min_difficulty=4, max_difficulty=4,
                            max_challenges=10**6, load_high=2**32 - 1, load_low=0)
        cr.protect(obj, PORT)
        slot = time.clock_gettime_ns(time.CLOCK_BOOTTIME) // (30 * 10**9)

        def chal(src: str, d: int) -> dict:
            return {"slot": slot, "difficulty": d, "challenge": pc.compute_challenge(skey, src, slot, d)}

        # verification costs the same whatever d is (one SHA-256 block)
        valid = []
        for i in range(DISTINCT):
            m = chal(_src(i), 4)
            valid.append(_udp(pc.solution_message(m, pc.solve(m["challenge"], 4)[0]), _src(i)))
        valid_ns = bpf_each_ns(prog, valid, 3)

        m = chal(_src(1), 16)
        nonce = os.urandom(8)
        while pc.leading_zero_bits(pc.pow_digest(m["challenge"], nonce)) >= 16:
            nonce = os.urandom(8)
        bad_pow_ns = bpf_repeat_ns(prog, _udp(pc.solution_message(m, nonce), _src(1)), 1, REPEAT)
        forged = {**m, "challenge": os.urandom(32)}
        forged_ns = bpf_repeat_ns(prog, _udp(pc.solution_message(forged, nonce), _src(1)), 1, REPEAT)
        pass_ns = bpf_repeat_ns(prog, _udp(b"q" * 56, "192.0.2.7"), 2, REPEAT)

        cr.configure_limits(obj, rate=1, burst=1)
        over = [_udp(b"q" * 56, _src(50000 + i)) for i in range(DISTINCT)]
        for f in over:                       # spend each source's one token
            assert prog.test_run(data=f).retval == 2
        challenge_ns = bpf_each_ns(prog, over, 3)
    finally:
        obj.close()

    rows = [
        _row("pow valid solution, one packet per run (HMAC + 1 block, refill, ADMIT)", valid_ns,
             sha256_blocks=3),
        _row("pow wrong solution, repeated (HMAC + 1 block, drop)", bad_pow_ns, sha256_blocks=3),
        _row("pow forged challenge, repeated (HMAC, drop)", forged_ns, sha256_blocks=2),
        _row("pow datagram within budget (pass)", pass_ns),
        _row("pow datagram over budget -> challenge, one packet per run (HMAC, XDP_TX)",
             challenge_ns, sha256_blocks=2),
    ]
    # the asymmetry: client work per difficulty next to the server's check
    for d, trials in SOLVE_TRIALS.items():
        t_total, hashes = 0.0, 0
        for _ in range(trials):
            c = os.urandom(32)
            t0 = time.perf_counter_ns()
            _, n = pc.solve(c, d)
            t_total += time.perf_counter_ns() - t0
            hashes += n
        solve_ns = t_total / trials
        rows.append(_row(f"pow difficulty {d}: server verify (BPF) vs client solve", valid_ns,
                         baseline="client solve, python hashlib (mean of %d)" % trials,
                         baseline_ns=solve_ns, difficulty=d, mean_hashes=round(hashes / trials),
                         expected_hashes=2 ** d, solve_ms=round(solve_ns / 1e6, 3),
                         asymmetry=round(solve_ns / valid_ns, 1)))
    for r in rows:
        extra = f", client solve {r['solve_ms']} ms" if "solve_ms" in r else ""
        echo(f"  {r['name']}: {r['ns']:.0f} ns{extra}")
    return rows


# `cryptbpf bench` names these ratelimit.<function> (`--only ratelimit`)
BENCH_NAME = "ratelimit"
BENCHMARKS = [ratelimit_packets]
