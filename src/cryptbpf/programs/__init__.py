"""Program modules. Each module here defines `SPEC`, a ProgramSpec, and is
found by `discover()`: adding a program never edits a central list."""

from __future__ import annotations

import importlib
import pkgutil

from .base import ProgramSpec


def discover() -> dict[str, ProgramSpec]:
    specs = {}
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("_") or mod.name == "base":
            continue
        spec = getattr(importlib.import_module(f"{__name__}.{mod.name}"), "SPEC", None)
        if isinstance(spec, ProgramSpec):
            specs[spec.name] = spec
    return dict(sorted(specs.items()))


def get(name: str) -> ProgramSpec:
    specs = discover()
    key = name.replace("_", "-")
    if key not in specs:
        from ..errors import CryptbpfError
        raise CryptbpfError(f"unknown program {name!r}; available: {', '.join(specs)}")
    return specs[key]
