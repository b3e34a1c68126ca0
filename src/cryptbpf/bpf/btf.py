"""Just enough BTF reading for globals, layout checks and kernel probes."""

from __future__ import annotations

from dataclasses import dataclass

from ._ffi import check_ptr, ffi, lib


@dataclass(frozen=True)
class Var:
    """A global variable inside a data section (.bss, .data, .rodata)."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class Field:
    name: str
    offset: int  # bytes
    size: int


class Btf:
    """A parsed BTF blob: borrowed from an object, or owned (file/vmlinux)."""

    def __init__(self, ptr, owned: bool):
        self._ptr = ptr
        self._owned = owned

    @classmethod
    def from_file(cls, path: str) -> "Btf":
        ptr = check_ptr(lib.btf__parse(path.encode(), ffi.NULL), f"parse BTF of {path}")
        return cls(ptr, owned=True)

    @classmethod
    def vmlinux(cls) -> "Btf":
        return cls(check_ptr(lib.btf__load_vmlinux_btf(), "load vmlinux BTF"), owned=True)

    def close(self) -> None:
        if self._owned and self._ptr != ffi.NULL:
            lib.btf__free(self._ptr)
        self._ptr = ffi.NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _name(self, off: int) -> str:
        return ffi.string(lib.btf__name_by_offset(self._ptr, off)).decode()

    def find(self, name: str, kind: int) -> int:
        """Type id of `name` of BTF kind `kind`, or -1."""
        return lib.btf__find_by_name_kind(self._ptr, name.encode(), kind)

    def has_func(self, name: str) -> bool:
        return self.find(name, lib.BTF_KIND_FUNC) > 0

    def has_struct(self, name: str) -> bool:
        return self.find(name, lib.BTF_KIND_STRUCT) > 0

    def datasec_vars(self, section: str) -> dict[str, Var]:
        sec_id = self.find(section, lib.BTF_KIND_DATASEC)
        if sec_id < 0:
            return {}
        sec = lib.btf__type_by_id(self._ptr, sec_id)
        infos = lib.btf_var_secinfos(sec)
        out = {}
        for i in range(lib.btf_vlen(sec)):
            var = lib.btf__type_by_id(self._ptr, infos[i].type)
            name = self._name(var.name_off)
            out[name] = Var(name, infos[i].offset, infos[i].size)
        return out

    def struct_fields(self, name: str) -> tuple[int, list[Field]]:
        """(sizeof, fields) of `struct name`, as the compiler laid it out."""
        tid = self.find(name, lib.BTF_KIND_STRUCT)
        if tid < 0:
            raise KeyError(f"struct {name} not in BTF")
        t = lib.btf__type_by_id(self._ptr, tid)
        members = lib.btf_members(t)
        fields = []
        for i in range(lib.btf_vlen(t)):
            m = members[i]
            size = lib.btf__resolve_size(self._ptr, m.type)
            bit_off = lib.btf_member_bit_offset(t, i)
            fields.append(Field(self._name(m.name_off), bit_off // 8, size))
        return t.size, fields
