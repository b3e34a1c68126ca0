"""BPF maps: lookup/update/delete/iterate, per-CPU values, pinned maps."""

from __future__ import annotations

import os
from typing import Iterator, Sequence, Union

from ._ffi import check_int, ffi, lib
from ..errors import BpfError

Key = Union[bytes, int]
Value = Union[bytes, int]

BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2

# enum bpf_map_type values that hold one value per possible CPU
_PERCPU_TYPES = {
    5,   # PERCPU_HASH
    6,   # PERCPU_ARRAY
    10,  # LRU_PERCPU_HASH
    21,  # PERCPU_CGROUP_STORAGE
}
MAP_TYPE_RINGBUF = 27

# enum bpf_map_type, by value (include/uapi/linux/bpf.h)
MAP_TYPE_NAMES = (
    "unspec", "hash", "array", "prog_array", "perf_event_array", "percpu_hash",
    "percpu_array", "stack_trace", "cgroup_array", "lru_hash", "lru_percpu_hash",
    "lpm_trie", "array_of_maps", "hash_of_maps", "devmap", "sockmap", "cpumap",
    "xskmap", "sockhash", "cgroup_storage", "reuseport_sockarray",
    "percpu_cgroup_storage", "queue", "stack", "sk_storage", "devmap_hash",
    "struct_ops", "ringbuf", "inode_storage", "task_storage", "bloom_filter",
    "user_ringbuf", "cgrp_storage", "arena",
)


def map_type_name(map_type: int) -> str:
    """bpftool's name for a map type ("hash", "percpu_array", ...); the
    number for types newer than this table."""
    if 0 <= map_type < len(MAP_TYPE_NAMES):
        return MAP_TYPE_NAMES[map_type]
    return f"type {map_type}"


def _pack(v: Value, size: int, what: str) -> bytes:
    if isinstance(v, int):
        return v.to_bytes(size, "little")
    b = bytes(v)
    if len(b) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(b)}")
    return b


class Map:
    """A map, addressed by fd. Keys and values are bytes (ints are packed
    little-endian to the map's size); decode them with `cryptbpf.bpf.headers`."""

    def __init__(self, fd: int, name: str, map_type: int, key_size: int,
                 value_size: int, max_entries: int, owned: bool = False):
        self.fd = fd
        self.name = name
        self.type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self._owned = owned

    @classmethod
    def from_fd(cls, fd: int, owned: bool = False) -> "Map":
        info = ffi.new("struct bpf_map_info *")
        n = ffi.new("__u32 *", ffi.sizeof("struct bpf_map_info"))
        check_int(lib.bpf_obj_get_info_by_fd(fd, info, n), "map info")
        return cls(fd, ffi.string(info.name).decode(), info.type, info.key_size,
                   info.value_size, info.max_entries, owned)

    @classmethod
    def from_pin(cls, path: str) -> "Map":
        fd = check_int(lib.bpf_obj_get(path.encode()), f"open pinned map {path}")
        return cls.from_fd(fd, owned=True)

    def close(self) -> None:
        if self._owned and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<Map {self.name} type={self.type} fd={self.fd}>"

    @property
    def percpu(self) -> bool:
        return self.type in _PERCPU_TYPES

    @property
    def ncpus(self) -> int:
        return lib.libbpf_num_possible_cpus() if self.percpu else 1

    @property
    def _slot(self) -> int:
        # per-CPU values are laid out at 8-byte strides, one per possible CPU
        return (self.value_size + 7) & ~7 if self.percpu else self.value_size

    def _need_fd(self):
        if self.fd < 0:
            raise BpfError(f"map {self.name}", 9, "not loaded yet")

    def _key(self, key: Key):
        return ffi.from_buffer(_pack(key, self.key_size, f"{self.name} key"))

    def lookup_raw(self, key: Key) -> bytes | None:
        """The value as bytes (all CPUs' slots concatenated for per-CPU maps)."""
        self._need_fd()
        buf = ffi.new("char[]", self._slot * self.ncpus)
        rc = lib.bpf_map_lookup_elem(self.fd, self._key(key), buf)
        if rc == -2:  # ENOENT
            return None
        check_int(rc, f"lookup in {self.name}")
        return bytes(ffi.buffer(buf))

    def lookup(self, key: Key) -> bytes | None:
        raw = self.lookup_raw(key)
        if raw is None or not self.percpu:
            return raw
        raise TypeError(f"{self.name} is per-CPU: use lookup_percpu()")

    def lookup_percpu(self, key: Key) -> list[bytes] | None:
        raw = self.lookup_raw(key)
        if raw is None:
            return None
        s = self._slot
        return [raw[i * s:i * s + self.value_size] for i in range(self.ncpus)]

    def update(self, key: Key, value: Value | Sequence[bytes],
               flags: int = BPF_ANY) -> None:
        """Set a value. For per-CPU maps pass one value (copied to every CPU)
        or a sequence with one value per possible CPU."""
        self._need_fd()
        if self.percpu:
            vals = [value] * self.ncpus if isinstance(value, (bytes, bytearray, int)) else list(value)
            if len(vals) != self.ncpus:
                raise ValueError(f"{self.name}: need {self.ncpus} per-CPU values")
            pad = b"\0" * (self._slot - self.value_size)
            blob = b"".join(_pack(v, self.value_size, f"{self.name} value") + pad for v in vals)
        else:
            blob = _pack(value, self.value_size, f"{self.name} value")
        check_int(lib.bpf_map_update_elem(self.fd, self._key(key), ffi.from_buffer(blob), flags),
                  f"update {self.name}")

    def delete(self, key: Key) -> bool:
        """Delete a key; False if it was not there."""
        self._need_fd()
        rc = lib.bpf_map_delete_elem(self.fd, self._key(key))
        if rc == -2:
            return False
        check_int(rc, f"delete from {self.name}")
        return True

    def keys(self) -> Iterator[bytes]:
        self._need_fd()
        cur = ffi.NULL
        nxt = ffi.new("char[]", self.key_size)
        while True:
            rc = lib.bpf_map_get_next_key(self.fd, cur, nxt)
            if rc == -2:
                return
            check_int(rc, f"iterate {self.name}")
            key = bytes(ffi.buffer(nxt))
            yield key
            cur = ffi.from_buffer(key)

    def items(self) -> Iterator[tuple[bytes, bytes | list[bytes]]]:
        for k in self.keys():
            v = self.lookup_percpu(k) if self.percpu else self.lookup(k)
            if v is not None:
                yield k, v

    def sum_percpu_u64(self, key: Key, count: int | None = None) -> list[int]:
        """Sum an array of u64 counters across CPUs (the usual stats map)."""
        vals = self.lookup_percpu(key) if self.percpu else [self.lookup(key)]
        n = count or self.value_size // 8
        tot = [0] * n
        for v in vals or []:
            for i in range(n):
                tot[i] += int.from_bytes(v[i * 8:i * 8 + 8], "little")
        return tot
