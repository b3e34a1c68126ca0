"""content_verifier: datagrams judged per second per core (XDP program,
BPF_PROG_TEST_RUN, whole Ethernet/IPv4/UDP frames), valid and tampered,
next to hashlib's SHA-256 of the same content measured in the same run."""

from __future__ import annotations

import hashlib
import os

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from ...bench import userspace_ns
from . import client as cas
from ...bpf.object import BpfObject
from ...paths import bpf_object

SIZES = (64, 512, 1400)
REPEAT = 20000
XDP_DROP, XDP_PASS = 1, 2


def _frame(content: bytes, forged: bool) -> bytes:
    chunk = cas.Chunk.of(cas.DATA, content)
    dgram = chunk.datagram()
    if forged:   # same length, last content byte changed: the whole content is still hashed
        dgram = dgram[:-1] + bytes([dgram[-1] ^ 1])
    return bytes(Ether() / IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=40000, dport=cas.DEFAULT_PORT) / dgram)


def content_verify(echo) -> list[dict]:
    rows = []
    with BpfObject.open(str(bpf_object("content_verifier"))) as obj:
        obj.load()
        prog = obj.program("content_verify")
        for size in SIZES:
            content = os.urandom(size)
            base = userspace_ns(lambda: hashlib.sha256(content).digest())
            for forged, what, expect in ((False, "valid", XDP_PASS), (True, "tampered", XDP_DROP)):
                res = prog.test_run(data=_frame(content, forged), repeat=REPEAT)
                assert res.retval == expect, f"{what} {size}: verdict {res.retval}"
                rows.append({"name": f"content-verifier XDP, {what} datagram (content bytes)",
                             "size": size, "ns": res.duration_ns,
                             "baseline": "hashlib sha256 of the content", "baseline_ns": base,
                             "packets_per_s": round(1e9 / res.duration_ns)})
        # early rejects cost no hashing: a UDP payload shorter than the header
        short = bytes(Ether() / IP() / UDP(dport=cas.DEFAULT_PORT) / bytes(20))
        res = prog.test_run(data=short, repeat=REPEAT)
        assert res.retval == XDP_DROP
        rows.append({"name": "content-verifier XDP, truncated header (no hashing)", "size": 20,
                     "ns": res.duration_ns, "packets_per_s": round(1e9 / res.duration_ns)})
        rows.append({"name": "content_verifier object",
                     "verified_insns": prog.verified_insns})
    return rows


# `cryptbpf bench` names these content.<function> (`--only content`)
BENCH_NAME = "content"
BENCHMARKS = [content_verify]
