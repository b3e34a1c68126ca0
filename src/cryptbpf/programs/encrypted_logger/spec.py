"""encrypted-logger: process executions, sealed in the kernel.

A tp_btf/sched_process_exec program records every exec (time, pid, ppid,
uid/gid, cgroup, comm, filename, the first 256 bytes of argv) and seals it
with the pure-BPF ChaCha20-Poly1305 before it enters the ring buffer; the
key evolves every epoch (forward security) and only the holder of the
master key can read or verify the records. `cryptbpf load encrypted-logger
--key-file K` (no device), then `cryptbpf logs follow|record|verify|rotate`.
Formats and design: bpf/include/encrypted_logger.h, docs/encrypted_logger.md."""

from __future__ import annotations

import secrets
import time
from typing import Any, Optional

from . import wire as auditlog
from .wire import LAYOUT
from ...errors import CryptbpfError
from ..base import Hook, ProgramSpec
from .control import DEFAULT_RING_KB, KEY_SIZE, NAME, boottime_ns
from .cli import logs_app


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
    cli=logs_app,
    commands={"logs": logs_app},
    rekey_hint="its key ratchets by itself every epoch_ms (now: `cryptbpf logs rotate`); for a new "
               "master key, `cryptbpf unload encrypted-logger` and load it again with --key-file F "
               "(a new session)",
)
