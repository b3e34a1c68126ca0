"""Ring buffer consumption: each record is handed to a Python callback."""

from __future__ import annotations

from typing import Callable, Optional

from ._ffi import check_int, check_ptr, ffi, lib
from ..errors import CryptbpfError
from .maps import MAP_TYPE_RINGBUF, Map


@ffi.def_extern()
def _cryptbpf_ringbuf_sample(ctx, data, size):
    rb = ffi.from_handle(ctx)
    try:
        rc = rb._callback(bytes(ffi.buffer(data, size)))
    except BaseException as exc:  # surface after poll() returns
        rb._error = exc
        return -1
    return int(rc or 0)


class RingBuffer:
    """Poll a BPF_MAP_TYPE_RINGBUF map; `callback(record: bytes)` runs for
    every record (return non-zero to stop the current poll early)."""

    def __init__(self, rb_map: Map, callback: Callable[[bytes], Optional[int]]):
        if rb_map.type != MAP_TYPE_RINGBUF:
            raise CryptbpfError(f"{rb_map.name} is not a ring buffer")
        self._callback = callback
        self._error: BaseException | None = None
        self._handle = ffi.new_handle(self)
        self._rb = check_ptr(lib.cryptbpf_ring_buffer_new(rb_map.fd, self._handle),
                             f"ring buffer on {rb_map.name}")

    def poll(self, timeout_ms: int = 100) -> int:
        """Wait up to `timeout_ms` for records; returns how many were read."""
        n = lib.ring_buffer__poll(self._rb, timeout_ms)
        self._reraise()
        return check_int(n, "ring buffer poll") if n != -4 else 0  # EINTR

    def consume(self) -> int:
        """Read whatever is available without waiting."""
        n = lib.ring_buffer__consume(self._rb)
        self._reraise()
        return check_int(n, "ring buffer consume")

    def fileno(self) -> int:
        return lib.ring_buffer__epoll_fd(self._rb)

    def _reraise(self):
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def close(self) -> None:
        if self._rb is not None:
            lib.ring_buffer__free(self._rb)
            self._rb = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
