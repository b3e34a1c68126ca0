"""The compiled libbpf binding, its error checks and its log capture.

Every libbpf return value goes through `check_int` (negative → errno) or
`check_ptr` (NULL → errno). libbpf's own messages are captured per call
(`capture_log`) so a failed load can put the verifier log into the exception
instead of printing it; with verbose logging on they also go to stderr.
"""

from __future__ import annotations

import contextlib
import sys
import threading

from ..errors import BpfError, CryptbpfError

try:
    from ._libbpf import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the install
    raise CryptbpfError(
        "cryptbpf's libbpf binding is not built: run `pip install -e .` "
        f"(needs libbpf-dev and a C compiler): {exc}"
    ) from exc

LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2

_state = threading.local()
_verbose = False


def set_verbose(on: bool) -> None:
    """Forward libbpf's messages (info and debug too) to stderr."""
    global _verbose
    _verbose = on


@ffi.def_extern()
def _cryptbpf_log(level, msg):
    text = ffi.string(msg).decode(errors="replace")
    buf = getattr(_state, "buf", None)
    if buf is not None:
        buf.append(text)
    if _verbose:
        sys.stderr.write(text)


lib.cryptbpf_install_print()


@contextlib.contextmanager
def capture_log():
    """Collect libbpf's messages emitted inside the block into a list."""
    prev = getattr(_state, "buf", None)
    _state.buf = []
    try:
        yield _state.buf
    finally:
        _state.buf = prev


def check_int(rc: int, what: str) -> int:
    if rc < 0:
        raise BpfError(what, -rc)
    return rc


def check_ptr(ptr, what: str):
    if ptr == ffi.NULL:
        raise BpfError(what, ffi.errno or 22)
    return ptr


def libbpf_version() -> str:
    return f"{lib.libbpf_major_version()}.{lib.libbpf_minor_version()}"
