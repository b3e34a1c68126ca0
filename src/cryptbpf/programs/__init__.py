"""Program packages, one per BPF program and named like its object
(bpf/<name>.bpf.c -> programs/<name>/). Each package's `SPEC` (a
ProgramSpec) is found by `discover()`: adding a program never edits a
central list. Packages and modules whose name starts with "_", and `base`,
are shared machinery, not programs.

A program package holds everything its program has in userspace, under the
same module names in every package (a module exists only where the program
needs it):

    __init__  the program in one line; SPEC
    spec      its ProgramSpec: hooks, requirements, knobs, options, and the
              lifecycle's hooks (setup, status, device settings)
    control   operations on a loaded instance, through its maps
    cli       its `cryptbpf <name> ...` commands (and their short aliases)
    client    the peer: what talks to the program over the network
    wire      the wire or record format, in pure Python
    bench     its benchmarks for `cryptbpf bench` (BENCH_NAME, BENCHMARKS)

plus a few modules of a program's own (encrypted_tunnel: device, traffic;
pki_validator: ca, der; crypto_offload: daemon).
"""

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
