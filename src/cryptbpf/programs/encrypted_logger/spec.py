"""encrypted-logger: process executions, sealed in the kernel.

A tp_btf/sched_process_exec program records every exec (time, pid, ppid,
uid/gid, cgroup, comm, filename, the first 256 bytes of argv) and seals it
with the pure-BPF ChaCha20-Poly1305 before it enters the ring buffer; the
key evolves every epoch (forward security) and only the holder of the
master key can read or verify the records. `cryptbpf load encrypted-logger
--key-file K` (no device), then `cryptbpf logs follow|record|verify|rotate`.
Formats and design: bpf/include/encrypted_logger.h, docs/encrypted_logger.md.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any, Callable, Optional

import click

from . import wire as auditlog
from ...bpf._ffi import check_int, ffi, lib
from .wire import LAYOUT, AuthError, KeyChain, LogWriter, StreamTracker
from ...errors import CryptbpfError
from ...bpf.pins import Pinned
from ...bpf.ringbuf import RingBuffer
from ..base import Hook, ProgramSpec
from .._cli import PATH, argument, examples as _ex, group, json_option

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


class EncryptedLogger(ProgramSpec):
    def check_knobs(self, knobs: dict[str, int]) -> None:
        super().check_knobs(knobs)
        ring_kb = knobs.get("ring_kb", DEFAULT_RING_KB)
        if ring_kb & (ring_kb - 1):
            raise CryptbpfError(f"ring_kb={ring_kb}: the ring buffer size must be a power of two >= 4 (KiB)")

    def configure(self, obj, knobs: dict[str, int]) -> None:
        knobs = dict(knobs)
        ring_kb = knobs.pop("ring_kb", DEFAULT_RING_KB)
        if ring_kb < 4 or ring_kb & (ring_kb - 1):
            raise CryptbpfError(f"ring_kb={ring_kb}: the ring buffer size must be a power of two >= 4 (KiB)")
        obj.set_max_entries("elog_ring", ring_kb * 1024)
        super().configure(obj, knobs)

    def setup(self, handle, key: Optional[bytes], options: dict[str, list[str]]) -> None:
        """A fresh session: random id, K(0) derived from the master key (the
        master never enters the kernel), epoch 0 starting now."""
        if key is None or len(key) != KEY_SIZE:
            raise CryptbpfError(f"{NAME} needs a {KEY_SIZE}-byte key (--key-file)")
        session = int.from_bytes(secrets.token_bytes(8), "little")
        k0 = auditlog.session_key(key, session)
        ks = LAYOUT.new("struct elog_keystate", epoch=0, epoch_start_ns=boottime_ns())
        ks.slot[0].epoch = 0
        LAYOUT.ffi.memmove(ks.slot[0].chain, k0, KEY_SIZE)
        LAYOUT.ffi.memmove(ks.slot[0].seal, auditlog.seal_key(k0), KEY_SIZE)
        ks.slot[1].epoch = LAYOUT.const("ELOG_SLOT_INVALID")
        handle.map("elog_keys").update(0, bytes(LAYOUT.ffi.buffer(ks)))
        handle.set_global("session", session)
        handle.set_global("wall_offset_ns", time.time_ns() - boottime_ns())
        handle.set_global("key_check", auditlog.key_check(key))

    def status(self, handle) -> dict[str, Any]:
        raw = handle.map("elog_keys").lookup(0)
        epoch = LAYOUT.unpack("struct elog_keystate", raw)["epoch"] if raw else None
        ring = handle.map("elog_ring")
        return {"stats": self.stats(handle), "session": f"{handle.get_global_int('session'):016x}",
                "epoch": epoch, "epoch_ms": handle.get_global_int("epoch_ms"),
                "ring_bytes": ring.max_entries}


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


# ---------------------------------------------------------------- CLI: cryptbpf logs ...

logs_app = group(help="Read, record and verify encrypted-logger's sealed exec log.")


def _master(key_file: Path) -> bytes:
    from ...keys import read_key_file
    return read_key_file(key_file, (KEY_SIZE,))


def _pinned() -> Pinned:
    from ...lifecycle import require_privileges
    require_privileges()
    return Pinned(NAME)


@logs_app.command("follow", epilog=_ex("sudo cryptbpf logs follow --key-file log.key",
                                       "sudo cryptbpf logs follow --key-file log.key --json | jq .argv"))
@click.option("--key-file", type=PATH, required=True, metavar="FILE", help="Master key file (mode 0600).")
@json_option("One JSON object per line.")
@click.option("--count", type=int, metavar="N", help="Stop after this many exec records.")
@click.option("--duration", type=float, metavar="SECONDS", help="Stop after this many seconds.")
def follow_cmd(key_file: Path, as_json: bool, count: Optional[int], duration: Optional[float]):
    """Decrypt and verify the live log; gaps and forgeries are shown, never skipped.
    Only one reader (follow or record) should consume the log at a time."""
    master = _master(key_file)

    def emit(r: dict):
        if as_json:
            click.echo(json.dumps(r), nl=True)
        elif r["type"] in ("gap", "alert"):
            click.echo(f"-- {r['type']}: {r['message']}")
        else:
            click.echo(auditlog.format_text(r))

    with _pinned() as h, _Stop(duration, count) as stop:
        follow(h, master, emit, stop)


@logs_app.command("record", epilog=_ex("sudo cryptbpf logs record /var/log/exec.clog",
                                       "sudo cryptbpf logs record exec.clog --duration 60"))
@argument("path", type=PATH, metavar="FILE", help="Log file (created mode 0600, or appended to).")
@click.option("--duration", type=float, metavar="SECONDS",
              help="Stop after this many seconds (default: until SIGINT/SIGTERM).")
@click.option("--count", type=int, metavar="N", help="Stop after this many exec records.")
def record_cmd(path: Path, duration: Optional[float], count: Optional[int]):
    """Append the sealed records to FILE as they come (no key needed)."""
    with _pinned() as h, _Stop(duration, count) as stop:
        res = record(h, path, stop, lambda m: click.echo(m, err=True))
    click.echo(f"{path}: {res['written']} records appended (run {res['run_id']:016x})"
               + (f", {res['skipped']} backlog records skipped (not continuous with the file)"
                  if res["skipped"] else ""))


@logs_app.command("verify", epilog=_ex("cryptbpf logs verify exec.clog --key-file log.key",
                                       "cryptbpf logs verify exec.clog --key-file log.key --json"))
@argument("path", type=PATH, metavar="FILE", help="Log file written by `cryptbpf logs record`.")
@click.option("--key-file", type=PATH, required=True, metavar="FILE", help="Master key file (mode 0600).")
@json_option("Machine-readable report.")
def verify_cmd(path: Path, key_file: Path, as_json: bool):
    """Prove FILE intact, or report each modified, reordered, dropped or
    truncated record by position. Exit status 1 if anything is wrong."""
    if not path.is_file():
        raise CryptbpfError(f"{path}: no such file")
    rep = auditlog.verify_file(path, _master(key_file))
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2))
    else:
        click.echo(f"{path}: {rep.records} records ({rep.exec_records} exec, {rep.marks} marks), "
                   f"{rep.authentic} authentic, {rep.first_time or '-'} .. {rep.last_time or '-'}")
        for n in rep.notes:
            click.echo(f"  note: {n.message}")
        for p in rep.problems:
            click.echo(f"  {p.kind.upper()}: {p.message}")
        click.echo("intact" if rep.intact else f"NOT intact: {len(rep.problems)} problem(s)")
    if not rep.intact:
        raise click.exceptions.Exit(1)


@logs_app.command("show", epilog=_ex("cryptbpf logs show exec.clog --key-file log.key --json"))
@argument("path", type=PATH, metavar="FILE", help="Log file.")
@click.option("--key-file", type=PATH, required=True, metavar="FILE", help="Master key file (mode 0600).")
@json_option("One JSON object per line.")
def show_cmd(path: Path, key_file: Path, as_json: bool):
    """Decrypt a log file (each record authenticated; use `verify` for completeness)."""
    if not path.is_file():
        raise CryptbpfError(f"{path}: no such file")
    for r in auditlog.read_file(path, _master(key_file)):
        click.echo(json.dumps(r) if as_json else auditlog.format_text(r))


@logs_app.command("rotate", epilog=_ex("sudo cryptbpf logs rotate"))
def rotate_cmd():
    """Advance the in-kernel key to the next epoch now (and wipe the old one)."""
    with _pinned() as h:
        epoch = rotate(h)
    click.echo(f"{NAME}: key ratcheted, epoch {epoch}")


SPEC = EncryptedLogger(
    name=NAME,
    object="encrypted_logger",
    summary="exec audit log sealed in the kernel (ChaCha20-Poly1305, forward-secure key epochs)",
    hooks=[Hook("elog_exec", "link")],
    requires=["btf", "tracepoint", "ringbuf", "bpf_loop", "dynptr_mem"],
    knobs={"epoch_ms": "key epoch length in ms (default 60000; 0 = only `cryptbpf logs rotate`)",
           "ring_kb": f"ring buffer size in KiB, a power of two (default {DEFAULT_RING_KB})"},
    # epoch_ms: the BPF side compares nanoseconds (epoch_ms * 10^6, a u64);
    # ring_kb: the ring's max_entries (u32 bytes, a power of two)
    knob_ranges={"epoch_ms": (0, (2**64 - 1) // 10**6), "ring_kb": (4, 2**21)},
    key_sizes=(KEY_SIZE,),
    header="encrypted_logger",
    stats_type="struct elog_stats",
    commands={"logs": logs_app},
    rekey_hint="its key ratchets by itself every epoch_ms (now: `cryptbpf logs rotate`); for a new "
               "master key, `cryptbpf unload encrypted-logger` and load it again with --key-file F "
               "(a new session)",
)
