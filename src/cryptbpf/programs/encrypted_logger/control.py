"""encrypted-logger's control program (markers, rotation, run on a chosen CPU)
and the readers that follow the ring buffer or record it to a file."""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any, Callable

from . import wire as auditlog
from ...bpf._ffi import check_int, ffi, lib
from .wire import LAYOUT, AuthError, KeyChain, LogWriter, StreamTracker
from ...errors import CryptbpfError
from ...bpf.ringbuf import RingBuffer


NAME = "encrypted-logger"
KEY_SIZE = LAYOUT.const("ELOG_KEY_SIZE")
BPF_F_TEST_RUN_ON_CPU = 1 << 0
EBUSY, ENOSPC = LAYOUT.const("ELOG_EBUSY"), LAYOUT.const("ELOG_ENOSPC")
SEQ_MASK = 0x7FFFFFFF        # the control program returns seq & this
DEFAULT_RING_KB = 512


def boottime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def online_cpus() -> list[int]:
    text = Path("/sys/devices/system/cpu/online").read_text().strip()
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus += range(int(lo), int(hi or lo) + 1)
    return cpus




# ---------------------------------------------------------------- the control program

def run_on_cpu(prog, cpu: int, args: list[int]) -> int:
    """BPF_PROG_TEST_RUN of the raw_tp control program on `cpu` (the kernel
    runs it there by IPI). Returns the program's return value."""
    opts = ffi.new("struct bpf_test_run_opts *")
    opts.sz = ffi.sizeof("struct bpf_test_run_opts")
    ctx = ffi.new("__u64[8]", [a & 0xFFFFFFFFFFFFFFFF for a in args] + [0] * (8 - len(args)))
    opts.ctx_in, opts.ctx_size_in = ctx, ffi.sizeof(ctx)
    opts.flags, opts.cpu = BPF_F_TEST_RUN_ON_CPU, cpu
    check_int(lib.bpf_prog_test_run_opts(prog.fd, opts), f"run {prog.name} on cpu {cpu}")
    ret = opts.retval
    return ret - (1 << 32) if ret >= 1 << 31 else ret


def _cpu_words(cpus: list[int]) -> list[int]:
    words = [0, 0, 0, 0]
    for c in cpus:
        if c >= LAYOUT.const("ELOG_MAX_CPUS"):
            raise CryptbpfError(f"cpu {c}: marks cover CPUs below {LAYOUT.const('ELOG_MAX_CPUS')}")
        words[c // 64] |= 1 << (c % 64)
    return words


def control(handle, cpu: int, op: int, run_id: int = 0, kind: int = 0,
            cpus: list[int] | None = None, drain: Callable[[], Any] | None = None) -> int:
    """Run one control operation on `cpu`; retries while the CPU is busy
    sealing (or, with `drain`, while the ring buffer is full). Returns the
    sequence number (& SEQ_MASK) of the mark it wrote."""
    prog = handle.program("elog_control")
    args = [op, run_id, kind] + _cpu_words(cpus or [])
    for _ in range(200):
        ret = run_on_cpu(prog, cpu, args)
        if ret >= 0:
            return ret
        if ret == -ENOSPC and drain:
            drain()
        elif ret != -EBUSY:
            raise CryptbpfError(f"{NAME} control on cpu {cpu} failed: {os.strerror(-ret)}")
        time.sleep(0.002)
    raise CryptbpfError(f"{NAME} control on cpu {cpu}: still busy after 200 tries")


def mark_all(handle, kind: int, run_id: int, cpus: list[int], drain=None) -> dict[int, int]:
    return {c: control(handle, c, LAYOUT.const("ELOG_OP_MARK"), run_id, kind, cpus, drain)
            for c in cpus}


def rotate(handle) -> int:
    """Ratchet the key now (from the current CPU); returns the new epoch."""
    cpu = online_cpus()[0]
    control(handle, cpu, LAYOUT.const("ELOG_OP_ROTATE"))
    return LAYOUT.unpack("struct elog_keystate", handle.map("elog_keys").lookup(0))["epoch"]


# ---------------------------------------------------------------- readers

class _Stop:
    """Stop on SIGINT/SIGTERM, a duration or a count (checked between polls)."""

    def __init__(self, duration: float | None = None, count: int | None = None):
        self.flag = False
        self.deadline = time.monotonic() + duration if duration else None
        self.count = count
        self.seen = 0
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._set)
            except ValueError:  # not the main thread: rely on duration/count
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _set(self, *_):
        self.flag = True

    def __call__(self) -> bool:
        return (self.flag or (self.deadline is not None and time.monotonic() >= self.deadline)
                or (self.count is not None and self.seen >= self.count))


def follow(handle, master: bytes, emit: Callable[[dict], None], stop: _Stop) -> int:
    """Decrypt and verify records live; gaps and forgeries are emitted as
    records of type "gap" / "alert". Returns the number of records shown."""
    keys = KeyChain(master)
    if handle.get_global_int("key_check") != keys.check:
        raise CryptbpfError(f"wrong key: {NAME} was loaded with another key file")
    tracker = StreamTracker()
    shown = 0

    def on(raw: bytes):
        nonlocal shown
        rec = auditlog.parse(raw)
        gap = tracker.feed(rec)
        if gap:
            emit({"type": "gap", "cpu": gap.cpu, "first_seq": gap.first, "count": gap.count,
                  "kernel_lost": gap.kernel_lost, "joined": gap.joined, "message": gap.describe()})
        try:
            body = auditlog.open_record(keys, rec)
        except AuthError as exc:
            emit({"type": "alert", "cpu": rec.hdr["cpu"], "seq": rec.seq, "message": str(exc)})
            return
        emit(body)
        shown += 1
        stop.seen += body["type"] == "exec"
        return 1 if stop() else 0

    with RingBuffer(handle.map("elog_ring"), on) as rb:
        while not stop():
            rb.poll(200)
    return shown


def record(handle, path: Path, stop: _Stop, echo: Callable[[str], None]) -> dict[str, int]:
    """Append sealed records to `path` (no key needed). The run is framed by
    START and END marks on every online CPU, so `logs verify` can tell a
    complete file from a truncated one. Backlog already in the ring buffer
    is kept when it continues a stream (from seq 0, or from the file's last
    record); otherwise a stream is taken from its START mark on."""
    writer = LogWriter(path, handle.get_global_int("key_check"))
    session = handle.get_global_int("session")
    cpus = online_cpus()
    run_id = int.from_bytes(secrets.token_bytes(8), "little")
    anchored: set[tuple[int, int]] = set()
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    ended: set[int] = set()
    counts = {"written": 0, "skipped": 0, "after_end": 0}

    def on(raw: bytes):
        rec = auditlog.parse(raw)
        cpu, low = rec.hdr["cpu"], rec.seq & SEQ_MASK
        own_mark = rec.type == auditlog.TYPE_MARK and rec.hdr["session"] == session
        if cpu in ended and rec.hdr["session"] == session:
            counts["after_end"] += 1    # the run is over on this CPU
            return 0
        if rec.stream not in anchored:
            last = writer.last.get(rec.stream)
            if rec.seq == 0 or (last is not None and rec.seq == last + 1) \
                    or (own_mark and starts.get(cpu) == low):
                anchored.add(rec.stream)
            else:
                counts["skipped"] += 1
                return 0
        writer.append(raw)
        writer.last[rec.stream] = rec.seq
        counts["written"] += 1
        if own_mark and ends.get(cpu) == low:
            ended.add(cpu)
        stop.seen += rec.type == auditlog.TYPE_EXEC
        return 0

    try:
        with RingBuffer(handle.map("elog_ring"), on) as rb:
            rb.consume()                        # backlog first
            starts.update(mark_all(handle, auditlog.MARK_START, run_id, cpus, rb.consume))
            last_flush = time.monotonic()
            while not stop():
                rb.poll(200)
                if time.monotonic() - last_flush >= 1:
                    writer.flush()
                    last_flush = time.monotonic()
            ends.update(mark_all(handle, auditlog.MARK_END, run_id, cpus, rb.consume))
            deadline = time.monotonic() + 5
            while ended != set(cpus) and time.monotonic() < deadline:
                rb.poll(100)
        if ended != set(cpus):
            echo(f"warning: END marks of cpu {sorted(set(cpus) - ended)} not seen; "
                 "the file will verify as truncated")
    finally:
        writer.close()
    return {**counts, "run_id": run_id}
