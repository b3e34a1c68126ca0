"""A loaded program as later CLI calls see it: pins under
/sys/fs/bpf/cryptbpf/<program>/{progs,maps}/ plus a small state record of
what was attached where (/run/cryptbpf/<program>.json; bpffs holds only BPF
objects). Both are removed by unload.

The pin root is resolved through `bpffs`: mounted on first use when it is
missing, and the same directory from `ip netns exec` as from the host."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from . import bpffs
from ._ffi import check_int, lib
from ..errors import CryptbpfError
from .maps import Map
from .object import BpfObject
from ..paths import PIN_ROOT, STATE_ROOT
from .program import Program


def pin_root(mount: bool = False) -> Path | None:
    """The directory holding every program's pins as seen from here; with
    `mount`, bpffs is mounted if missing, else None stands for "not
    mounted" (so nothing can be loaded)."""
    if mount:
        base = bpffs.ensure(PIN_ROOT.parent)
    else:
        base, _ = bpffs.locate(PIN_ROOT.parent)
        if base is None:
            return None
    return base / PIN_ROOT.name


def pin_dir(name: str) -> Path:
    """Where `name`'s pins are (or would be: bpffs not mounted yet)."""
    return (pin_root() or PIN_ROOT) / name


def state_path(name: str) -> Path:
    return STATE_ROOT / f"{name}.json"


def is_loaded(name: str) -> bool:
    return state_path(name).exists() or pin_dir(name).exists()


def loaded_names() -> list[str]:
    names = set()
    if STATE_ROOT.is_dir():
        names |= {p.stem for p in STATE_ROOT.glob("*.json")}
    root = pin_root()
    if root is not None and root.is_dir():
        names |= {p.name for p in root.iterdir() if p.is_dir()}
    return sorted(names)


def read_state(name: str) -> dict:
    try:
        return json.loads(state_path(name).read_text())
    except FileNotFoundError:
        return {"program": name, "devices": {}}


def write_state(name: str, state: dict) -> None:
    STATE_ROOT.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = state_path(name).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, state_path(name))


def pin_name(map_name: str) -> str:
    """bpffs reserves dots (maps.debug, progs.debug): ".bss" maps get "_"."""
    return map_name.replace(".", "_")


def pin_object(name: str, obj: BpfObject) -> None:
    """Pin every program and every map of a loaded object."""
    d = pin_root(mount=True) / name
    (d / "progs").mkdir(parents=True, exist_ok=True)
    (d / "maps").mkdir(parents=True, exist_ok=True)
    for pname, prog in obj.programs.items():
        prog.pin(str(d / "progs" / pname))
    for mname in obj.map_names():
        m = obj.map(mname)
        if m.fd >= 0:
            check_int(lib.bpf_obj_pin(m.fd, str(d / "maps" / pin_name(mname)).encode()), f"pin map {mname}")


def remove_pins(name: str) -> None:
    d = pin_dir(name)
    if d.exists():
        shutil.rmtree(d)  # unlink() on bpffs drops the pin
    root = d.parent
    if root.exists() and not any(root.iterdir()):
        root.rmdir()


def remove_state(name: str) -> None:
    state_path(name).unlink(missing_ok=True)
    if STATE_ROOT.exists() and not any(STATE_ROOT.iterdir()):
        STATE_ROOT.rmdir()


class Pinned:
    """Programs, maps and globals of a pinned instance; same accessors as a
    loaded BpfObject, so program modules can use either."""

    def __init__(self, name: str, object_path: str | None = None):
        self.name = name
        self.dir = pin_dir(name)
        if not self.dir.exists():
            raise CryptbpfError(f"{name} is not loaded (no pins in {self.dir})")
        self.object_path = object_path or read_state(name).get("object")
        self._open: list = []
        self._btf_obj: BpfObject | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for h in self._open:
            h.close()
        self._open.clear()
        if self._btf_obj:
            self._btf_obj.close()
            self._btf_obj = None

    def program(self, name: str) -> Program:
        p = Program.from_pin(str(self.dir / "progs" / name))
        self._open.append(p)
        return p

    def map(self, name: str) -> Map:
        m = Map.from_pin(str(self.dir / "maps" / pin_name(name)))
        self._open.append(m)
        return m

    def map_names(self) -> list[str]:
        return sorted(p.name for p in (self.dir / "maps").iterdir())

    def _var(self, name: str):
        # variable offsets come from the object's BTF; the object is opened,
        # never loaded again
        if self._btf_obj is None:
            self._btf_obj = BpfObject.open(self.object_path)
        return self._btf_obj._var(name)

    def get_global(self, name: str) -> bytes:
        map_name, var = self._var(name)
        raw = self.map(map_name).lookup(0) or b""
        return raw[var.offset:var.offset + var.size]

    def get_global_int(self, name: str, signed: bool = False) -> int:
        return int.from_bytes(self.get_global(name), "little", signed=signed)


def now() -> float:
    return time.time()
