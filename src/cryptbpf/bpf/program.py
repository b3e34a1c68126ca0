"""BPF programs: BPF_PROG_TEST_RUN, pinning, program info."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ._ffi import check_int, ffi, lib
from ..errors import BpfError

# enum bpf_prog_type values cryptbpf cares about
PROG_TYPE_SCHED_CLS = 3
PROG_TYPE_SCHED_ACT = 4
PROG_TYPE_TRACEPOINT = 5
PROG_TYPE_XDP = 6
PROG_TYPE_SYSCALL = 31

ETH_HLEN = 14
# Largest linear packet BPF_PROG_TEST_RUN accepts: one page minus the
# headroom and skb_shared_info the kernel reserves (measured: 3000 B works,
# 4096 B fails with EINVAL on 6.18).
MAX_TEST_PACKET = {PROG_TYPE_SCHED_CLS: 3700, PROG_TYPE_SCHED_ACT: 3700,
                   PROG_TYPE_XDP: 3500}
# Output buffer: room for programs that grow the packet (bpf_skb_change_tail).
OUT_HEADROOM = 512


@dataclass
class TestRunResult:
    retval: int
    data: bytes
    ctx: bytes
    duration_ns: int


class Program:
    """A program of a loaded object, or one opened from a pin (`from_pin`)."""

    def __init__(self, name: str, prog_type: int, fd: int = -1,
                 section: str = "", handle=None, owned: bool = False):
        self.name = name
        self.type = prog_type
        self.section = section
        self._fd = fd
        self._handle = handle  # struct bpf_program * when from an object
        self._owned = owned

    @classmethod
    def from_pin(cls, path: str) -> "Program":
        fd = check_int(lib.bpf_obj_get(path.encode()), f"open pinned program {path}")
        info = prog_info(fd)
        return cls(ffi.string(info.name).decode(), info.type, fd, owned=True)

    @property
    def fd(self) -> int:
        fd = lib.bpf_program__fd(self._handle) if self._handle is not None else self._fd
        if fd < 0:
            raise BpfError(f"program {self.name}", 9, "not loaded yet")
        return fd

    def close(self) -> None:
        if self._owned and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __repr__(self):
        return f"<Program {self.name} type={self.type}>"

    @property
    def info(self):
        return prog_info(self.fd)

    @property
    def verified_insns(self) -> int:
        return self.info.verified_insns

    @property
    def id(self) -> int:
        return self.info.id

    def pin(self, path: str) -> None:
        check_int(lib.bpf_obj_pin(self.fd, path.encode()), f"pin {self.name} at {path}")

    def test_run(self, data: bytes | None = None, ctx: bytes | None = None,
                 repeat: int = 0, data_out_size: int | None = None,
                 ctx_out: bool = True) -> TestRunResult:
        """Run the program once (or `repeat` times) on `data`/`ctx` with
        BPF_PROG_TEST_RUN; `duration_ns` is the kernel's per-run average."""
        _check_test_run_args(self, data, ctx, repeat)
        opts = ffi.new("struct bpf_test_run_opts *")
        opts.sz = ffi.sizeof("struct bpf_test_run_opts")
        keep = []  # keep cffi buffers alive for the call
        out = None
        if data is not None:
            din = ffi.from_buffer(bytes(data))
            out = ffi.new("char[]", data_out_size or len(data) + OUT_HEADROOM)
            keep += [din, out]
            opts.data_in, opts.data_size_in = din, len(data)
            opts.data_out, opts.data_size_out = out, len(out)
        cout = cin = None
        if ctx is not None:
            # A SYSCALL program's ctx is copied back into ctx_in: writable copy.
            cin = ffi.new("char[]", bytes(ctx))
            keep.append(cin)
            opts.ctx_in, opts.ctx_size_in = cin, len(ctx)
            if ctx_out and self.type != PROG_TYPE_SYSCALL:
                cout = ffi.new("char[]", len(ctx))
                opts.ctx_out, opts.ctx_size_out = cout, len(cout)
        opts.repeat = repeat
        rc = lib.bpf_prog_test_run_opts(self.fd, opts)
        check_int(rc, f"test run of {self.name}")
        return TestRunResult(
            retval=_signed32(opts.retval),
            data=bytes(ffi.buffer(out, opts.data_size_out)) if out is not None else b"",
            ctx=_ctx_result(self, cin, cout, opts),
            duration_ns=opts.duration,
        )


def _ctx_result(prog: Program, cin, cout, opts) -> bytes:
    if prog.type == PROG_TYPE_SYSCALL and cin is not None:
        return bytes(ffi.buffer(cin))
    if cout is not None:
        return bytes(ffi.buffer(cout, opts.ctx_size_out))
    return b""


def _signed32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def _check_test_run_args(prog: Program, data, ctx, repeat) -> None:
    """The kernel answers bad test-run arguments with a bare EINVAL; say why."""
    if prog.type == PROG_TYPE_SYSCALL:
        if data is not None:
            raise ValueError(f"{prog.name}: SYSCALL programs take no packet data, only ctx")
        if repeat:
            raise ValueError(f"{prog.name}: SYSCALL programs cannot be repeated (repeat must be 0)")
        return
    limit = MAX_TEST_PACKET.get(prog.type)
    if limit is not None:
        if data is None or len(data) < ETH_HLEN:
            raise ValueError(f"{prog.name}: packet programs need data of at least {ETH_HLEN} bytes (an Ethernet header)")
        if len(data) > limit:
            raise ValueError(f"{prog.name}: test packets are limited to {limit} bytes by BPF_PROG_TEST_RUN, got {len(data)}")
    if repeat < 0:
        raise ValueError("repeat must be >= 0")


def prog_info(fd: int):
    info = ffi.new("struct bpf_prog_info *")
    n = ffi.new("__u32 *", ffi.sizeof("struct bpf_prog_info"))
    check_int(lib.bpf_obj_get_info_by_fd(fd, info, n), "program info")
    return info
