"""BPF objects: open → set knobs → load → use → close (libbpf-rs's split)."""

from __future__ import annotations

import mmap
import os

from ._ffi import capture_log, check_ptr, ffi, lib
from .btf import Btf, Var
from ..errors import BpfError, VerifierError
from .maps import Map
from .program import Program

DATA_SECTIONS = (".bss", ".data", ".rodata")


class BpfObject:
    """A compiled `.bpf.o`, opened with libbpf. Use as a context manager."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise BpfError(f"open {self.path}", 2, "object file not found (run `make`?)")
        with capture_log() as log:
            ptr = lib.bpf_object__open_file(self.path.encode(), ffi.NULL)
        if ptr == ffi.NULL:
            raise BpfError(f"open {self.path}", ffi.errno or 22, "".join(log).strip()[-2000:])
        self._obj = ptr
        self.loaded = False
        self.programs = {p.name: p for p in self._iter_programs()}
        self._maps = {m: h for m, h in self._iter_maps()}
        self._vars = self._read_datasecs()
        self._mmaps: dict[str, mmap.mmap] = {}

    @classmethod
    def open(cls, path: str) -> "BpfObject":
        return cls(path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        for m in self._mmaps.values():
            m.close()
        self._mmaps.clear()
        if self._obj is not None:
            lib.bpf_object__close(self._obj)
            self._obj = None

    def __repr__(self):
        return f"<BpfObject {self.path} loaded={self.loaded}>"

    # ---- iteration over libbpf's lists ----
    def _iter_programs(self):
        p = lib.bpf_object__next_program(self._obj, ffi.NULL)
        while p != ffi.NULL:
            name = ffi.string(lib.bpf_program__name(p)).decode()
            sec = ffi.string(lib.bpf_program__section_name(p)).decode()
            yield Program(name, lib.bpf_program__type(p), section=sec, handle=p)
            p = lib.bpf_object__next_program(self._obj, p)

    def _iter_maps(self):
        m = lib.bpf_object__next_map(self._obj, ffi.NULL)
        while m != ffi.NULL:
            yield ffi.string(lib.bpf_map__name(m)).decode(), m
            m = lib.bpf_object__next_map(self._obj, m)

    # ---- load ----
    def load(self) -> "BpfObject":
        """Load every program into the kernel. On failure the exception holds
        the verifier log (str() shows its tail, `.log` all of it)."""
        with capture_log() as log:
            rc = lib.bpf_object__load(self._obj)
        if rc < 0:
            text = "".join(log)
            if "BEGIN PROG LOAD LOG" in text or "verifier" in text.lower():
                raise VerifierError(f"load {os.path.basename(self.path)}", -rc, text)
            raise BpfError(f"load {os.path.basename(self.path)}", -rc, text.strip()[-1500:])
        self.loaded = True
        return self

    def set_autoload(self, name: str, on: bool) -> None:
        self._require_open("autoload")
        lib.bpf_program__set_autoload(self.program(name)._handle, on)

    # ---- programs and maps by name ----
    def program(self, name: str) -> Program:
        try:
            return self.programs[name]
        except KeyError:
            raise KeyError(f"no program {name!r} in {self.path}; has {sorted(self.programs)}") from None

    def map_names(self) -> list[str]:
        return list(self._maps)

    def map(self, name: str) -> Map:
        h = self._map_handle(name)
        return Map(lib.bpf_map__fd(h), name, lib.bpf_map__type(h), lib.bpf_map__key_size(h),
                   lib.bpf_map__value_size(h), lib.bpf_map__max_entries(h))

    def _map_handle(self, name: str):
        try:
            return self._maps[name]
        except KeyError:
            raise KeyError(f"no map {name!r} in {self.path}; has {sorted(self._maps)}") from None

    def set_max_entries(self, name: str, n: int) -> None:
        self._require_open("max_entries")
        lib.bpf_map__set_max_entries(self._map_handle(name), n)

    def _require_open(self, what: str) -> None:
        if self.loaded:
            raise BpfError(f"set {what}", 16, "only possible before load()")

    # ---- global variables ----
    def _read_datasecs(self) -> dict[str, tuple[str, Var]]:
        btf_ptr = lib.bpf_object__btf(self._obj)
        if btf_ptr == ffi.NULL:
            return {}
        btf = Btf(btf_ptr, owned=False)
        out = {}
        for sec_map in self._maps:
            # libbpf names internal maps "<obj prefix>.<section>", e.g. "aes_rou.bss"
            sec = "." + sec_map.split(".", 1)[1] if "." in sec_map else None
            if sec is None:
                continue
            for name, var in btf.datasec_vars(sec).items():
                out[name] = (sec_map, var)
        return out

    def globals(self) -> list[str]:
        return sorted(self._vars)

    def _section(self, map_name: str):
        """Writable view of a data section: libbpf's initial image before
        load; after load an mmap of the kernel map itself (libbpf 1.1 remaps
        internal maps only for skeletons, so we map them ourselves)."""
        h = self._map_handle(map_name)
        if not self.loaded:
            size = ffi.new("size_t *")
            base = check_ptr(lib.bpf_map__initial_value(h, size), f"memory of {map_name}")
            return ffi.buffer(base, size[0])
        if map_name not in self._mmaps:
            length = (lib.bpf_map__value_size(h) + mmap.PAGESIZE - 1) & ~(mmap.PAGESIZE - 1)
            ro = map_name.endswith(".rodata")
            prot = mmap.PROT_READ if ro else mmap.PROT_READ | mmap.PROT_WRITE
            self._mmaps[map_name] = mmap.mmap(lib.bpf_map__fd(h), length, mmap.MAP_SHARED, prot)
        return self._mmaps[map_name]

    def _var(self, name: str) -> tuple[str, Var]:
        try:
            return self._vars[name]
        except KeyError:
            raise KeyError(f"no global {name!r} in {self.path}; has {self.globals()}") from None

    def get_global(self, name: str) -> bytes:
        """Read a global variable: the initial image before load, the live
        value (shared with the kernel) after load."""
        map_name, var = self._var(name)
        return bytes(self._section(map_name)[var.offset:var.offset + var.size])

    def get_global_int(self, name: str, signed: bool = False) -> int:
        return int.from_bytes(self.get_global(name), "little", signed=signed)

    def set_global(self, name: str, value: bytes | int) -> None:
        """Write a global. .rodata (`const volatile` knobs) only before load;
        .bss/.data before or after."""
        map_name, var = self._var(name)
        if self.loaded and map_name.endswith(".rodata"):
            raise BpfError(f"set {name}", 30, ".rodata is read-only after load; set it before load()")
        if isinstance(value, int):
            data = value.to_bytes(var.size, "little", signed=value < 0)
        else:
            data = bytes(value)
            if len(data) > var.size:
                raise ValueError(f"{name} holds {var.size} bytes, got {len(data)}")
            data = data.ljust(var.size, b"\0")
        self._section(map_name)[var.offset:var.offset + var.size] = data
