"""encrypted-logger: what sealing every exec in the kernel costs.

- exec of /bin/true with and without the tracepoint attached, alternating
  batches in the same run (posix_spawn + waitpid; best and median batch).
  Wall time of a ~1 ms exec is noisy on a shared machine: the kernel's own
  accounting below is the reliable measure of the overhead;
- the exec program's own time per record (kernel BPF run-time statistics,
  kernel.bpf_stats_enabled switched on for the measurement only): seal +
  ring buffer output, and the records/s one CPU can seal; the baseline is
  pyca/cryptography sealing the same 592-byte body;
- a forced key ratchet (two HMAC-SHA256 in BPF) over a plain mark;
- the reader: parse + authenticate + decrypt + decode one record in Python.
"""

from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ...bench import userspace_ns
from . import wire as auditlog
from ...bpf._ffi import ffi, lib
from ...bpf.object import BpfObject
from ...paths import bpf_object
from ...bpf.program import prog_info
from ...bpf.ringbuf import RingBuffer

BATCH = 100
ROUNDS = 10
STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


@contextmanager
def _bpf_stats():
    """Kernel run-time accounting of BPF programs, on for the block only."""
    old = STATS_SYSCTL.read_text().strip()
    STATS_SYSCTL.write_text("1")
    try:
        yield
    finally:
        STATS_SYSCTL.write_text(old)


def _spawn_true(n: int) -> float:
    """Wall ns per fork+exec+wait of /bin/true."""
    env = {"PATH": "/usr/bin:/bin"}
    t0 = time.perf_counter_ns()
    for _ in range(n):
        pid = os.posix_spawn("/bin/true", ["/bin/true"], env)
        os.waitpid(pid, 0)
    return (time.perf_counter_ns() - t0) / n


def _attached(prog, fn, *args):
    """fn(*args) with elog_exec attached to its tracepoint."""
    link = lib.bpf_program__attach(prog._handle)
    if link == ffi.NULL:
        raise OSError(ffi.errno, "attach elog_exec")
    try:
        return fn(*args)
    finally:
        lib.bpf_link__destroy(link)


def _runtime(prog) -> tuple[int, int]:
    info = prog_info(prog.fd)
    return info.run_time_ns, info.run_cnt


def logger(echo) -> list[dict]:
    from .spec import SPEC, online_cpus, run_on_cpu
    master = os.urandom(32)
    rows: list[dict] = []
    with BpfObject.open(str(bpf_object(SPEC.object))) as obj, _bpf_stats():
        SPEC.configure(obj, {"epoch_ms": 0, "ring_kb": 1024})
        obj.load()
        SPEC.setup(obj, master, {})
        prog = obj.program("elog_exec")
        raws: list[bytes] = []
        off, on = [], []
        with RingBuffer(obj.map("elog_ring"), raws.append) as rb:
            for i in range(ROUNDS):   # alternate the order: drift cancels out
                if i % 2 == 0:
                    off.append(_spawn_true(BATCH))
                on.append(_attached(prog, _spawn_true, BATCH))
                if i % 2 == 1:
                    off.append(_spawn_true(BATCH))
                rb.consume()
        t, n = _runtime(prog)
        sealed = SPEC.stats(obj)
        # best batch of each side: on a shared 2-vCPU machine batch means
        # swing 5x with other load; the fastest batch is the least disturbed
        rows.append({"name": "exec of /bin/true with encrypted-logger (fork+exec+wait, best batch)",
                     "size": auditlog.EXEC_SIZE, "ns": min(on),
                     "baseline": "no logger", "baseline_ns": min(off),
                     "median_ns": statistics.median(on), "median_baseline_ns": statistics.median(off),
                     "overhead_pct_median_of_pairs": round(100 * statistics.median(
                         [a / b - 1 for a, b in zip(on, off)]), 2)})
        body = os.urandom(auditlog.EXEC_SIZE)
        aead = ChaCha20Poly1305(os.urandom(32))
        hdr, nonce = os.urandom(auditlog.HDR_SIZE), os.urandom(12)
        if n:
            rows.append({"name": "elog_exec per record: read fields, seal, ring buffer output",
                         "size": auditlog.EXEC_SIZE, "ns": t / n, "baseline": "cryptography seal",
                         "baseline_ns": userspace_ns(lambda: aead.encrypt(nonce, body, hdr)),
                         "records_per_s_per_cpu": round(1e9 * n / t),
                         "share_of_exec_pct": round(100 * t / n / statistics.median(off), 2)})
        rows += _control_costs(obj, online_cpus()[0], run_on_cpu)
        keys = auditlog.KeyChain(master)
        sample = raws[:200]
        if sample:
            t0 = time.perf_counter_ns()
            for r in sample:
                auditlog.open_record(keys, auditlog.parse(r))
            per = (time.perf_counter_ns() - t0) / len(sample)
            rows.append({"name": "reader (Python): parse + authenticate + decrypt + decode",
                         "size": auditlog.EXEC_SIZE, "ns": per,
                         "records_per_s": round(1e9 / per)})
        rows.append({"name": "encrypted-logger run", "sealed": sealed["sealed"],
                     "lost": sealed["lost_ringbuf"], "execs_per_side": ROUNDS * BATCH})
    return rows


def _control_costs(obj, cpu: int, run_on_cpu) -> list[dict]:
    """Kernel time of a mark (seal of a 64-byte body + output) and of a
    forced ratchet + mark; their difference is the ratchet."""
    from .spec import LAYOUT
    prog = obj.program("elog_control")
    op_mark, op_rotate = LAYOUT.const("ELOG_OP_MARK"), LAYOUT.const("ELOG_OP_ROTATE")
    per = {}
    for name, args in (("mark", [op_mark, 1, auditlog.MARK_START]), ("rotate", [op_rotate])):
        t0, n0 = _runtime(prog)
        for _ in range(200):
            run_on_cpu(prog, cpu, args)
        t1, n1 = _runtime(prog)
        per[name] = (t1 - t0) / max(1, n1 - n0)
    import hashlib
    import hmac
    k = os.urandom(32)
    return [{"name": "key ratchet in BPF (2x HMAC-SHA256, wipe)", "size": 32,
             "ns": max(0.0, per["rotate"] - per["mark"]), "baseline": "hmac (2x)",
             "baseline_ns": userspace_ns(lambda: hmac.new(hmac.new(k, b"r", hashlib.sha256).digest(),
                                                          b"s", hashlib.sha256).digest())},
            {"name": "mark record: seal 64 B + output", "size": auditlog.MARK_SIZE, "ns": per["mark"]}]


# `cryptbpf bench` names these logger.<function> (`--only logger`)
BENCH_NAME = "logger"
BENCHMARKS = [logger]
