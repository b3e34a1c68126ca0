"""Every struct in a shared header (bpf/include/*.h) must have the same
size and field offsets in cffi (Python side) as in the BTF that clang wrote
for the BPF objects using it -- the cheap version of bpf2go's generated types."""

from __future__ import annotations

import re

import pytest

from cryptbpf.bpf.btf import Btf
from cryptbpf.bpf.headers import Layout, header_text
from cryptbpf.paths import include_dir, object_dir


def shared_headers():
    return sorted(p.stem for p in include_dir().glob("*.h") if not p.name.endswith(".bpf.h"))


def structs_in(header: str) -> list[str]:
    return re.findall(r"^struct (\w+) \{", header_text(header), re.M)


def objects_using(header: str):
    for src in sorted(include_dir().parent.glob("*.bpf.c")):
        obj = object_dir() / (src.name[:-2] + ".o")
        if f'"{header}.h"' in src.read_text() or _includes_transitively(src.read_text(), header):
            yield obj


def _includes_transitively(text: str, header: str) -> bool:
    for inc in re.findall(r'#include "([\w.]+)\.bpf\.h"', text):
        p = include_dir() / f"{inc}.bpf.h"
        if p.exists() and f'"{header}.h"' in p.read_text():
            return True
    return False


CASES = [(h, s) for h in shared_headers() for s in structs_in(h)]


@pytest.mark.parametrize("header,struct", CASES, ids=[f"{h}:{s}" for h, s in CASES])
def test_struct_layout_matches_btf(header, struct):
    layout = Layout(header)
    objs = [o for o in objects_using(header) if o.exists()]
    checked = 0
    for obj in objs:
        with Btf.from_file(str(obj)) as btf:
            if not btf.has_struct(struct):
                continue
            size, fields = btf.struct_fields(struct)
            assert layout.sizeof(f"struct {struct}") == size, f"{obj.name}: sizeof(struct {struct})"
            assert [(n, o, s) for n, o, s in layout.fields(f"struct {struct}")] == \
                   [(f.name, f.offset, f.size) for f in fields], f"{obj.name}: struct {struct} fields"
            checked += 1
    if not checked:
        pytest.skip(f"struct {struct} is not (yet) used by a compiled object")


def test_every_shared_header_is_cffi_clean():
    for h in shared_headers():
        Layout(h)  # raises on anything cffi's cdef cannot take
