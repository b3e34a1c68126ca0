"""Shared C headers (bpf/include/*.h) read by cffi: wire formats and map
values are defined once, in C, and decoded here -- never re-typed in Python.

The headers use only fixed-width kernel types, integer #defines and
`#pragma once`; cffi's cdef takes them once that pragma is stripped.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from cffi import FFI

from ..paths import include_dir

_PRELUDE = """
typedef uint8_t __u8; typedef uint16_t __u16; typedef uint32_t __u32;
typedef uint64_t __u64; typedef int8_t __s8; typedef int16_t __s16;
typedef int32_t __s32; typedef int64_t __s64;
typedef uint16_t __be16; typedef uint32_t __be32; typedef uint64_t __be64;
"""
_DIRECTIVE = re.compile(r"^\s*#\s*(pragma|include|if|ifdef|ifndef|endif|else)\b.*$", re.M)


_PAREN_INT = re.compile(r"^(\s*#\s*define\s+\w+\s+)\(\s*(-?\s*(?:0x[0-9a-fA-F]+|\d+))\s*\)", re.M)


def header_text(name: str) -> str:
    return (include_dir() / f"{name}.h").read_text()


def _for_cffi(text: str) -> str:
    """Drop preprocessor lines cdef cannot take; `#define X (-2)` -> `-2`."""
    text = _DIRECTIVE.sub("", text)
    return _PAREN_INT.sub(lambda m: m.group(1) + m.group(2).replace(" ", ""), text)


@functools.lru_cache(maxsize=None)
def ffi_for(*names: str) -> FFI:
    """An FFI that knows every struct and #define of the named headers."""
    ffi = FFI()
    ffi.cdef(_PRELUDE)
    for name in names:
        ffi.cdef(_for_cffi(header_text(name)), packed=False)
    return ffi


class Layout:
    """Typed access to one shared header: `Layout("aes_cbc")`."""

    def __init__(self, *names: str):
        self.ffi = ffi_for(*names)

    def const(self, name: str) -> int:
        return getattr(self._lib, name)

    @functools.cached_property
    def _lib(self):
        return self.ffi.dlopen(None)

    def sizeof(self, ctype: str) -> int:
        return self.ffi.sizeof(ctype)

    def new(self, ctype: str, **fields: Any):
        """A zeroed struct with `fields` set; bytes() of it is the C layout."""
        obj = self.ffi.new(ctype + " *")
        for k, v in fields.items():
            if isinstance(v, (bytes, bytearray)):
                dst = getattr(obj, k)
                self.ffi.memmove(dst, v, len(v))
            else:
                setattr(obj, k, v)
        return obj

    def pack(self, ctype: str, **fields: Any) -> bytes:
        return bytes(self.ffi.buffer(self.new(ctype, **fields)))

    def unpack(self, ctype: str, data: bytes) -> dict[str, Any]:
        """Decode `data` into a dict of the struct's fields."""
        n = self.ffi.sizeof(ctype)
        if len(data) < n:
            raise ValueError(f"{ctype} needs {n} bytes, got {len(data)}")
        buf = self.ffi.new(ctype + " *")
        self.ffi.memmove(buf, data[:n], n)
        return self._todict(buf[0])

    def _todict(self, cdata) -> dict[str, Any]:
        out = {}
        for fname, field in self.ffi.typeof(cdata).fields:
            val = getattr(cdata, fname)
            kind = field.type.kind
            if kind == "array":
                val = bytes(self.ffi.buffer(val)) if field.type.item.cname in ("uint8_t", "char") else list(val)
            elif kind == "struct":
                val = self._todict(val)
            out[fname] = val
        return out

    def fields(self, ctype: str) -> list[tuple[str, int, int]]:
        """(name, offset, size) of each member, as cffi lays it out."""
        return [(n, f.offset, self.ffi.sizeof(f.type))
                for n, f in self.ffi.typeof(ctype).fields]
