"""Differential fuzzing of the packet programs: engine.py (frames, mutations,
the comparison), frames.py (what the kernel would do with a frame) and one
model per program. `make fuzz SECONDS=N` runs them for N seconds each
(run.py); tests/test_fuzz.py runs a fixed seed and count in the suite."""
from __future__ import annotations

import contextlib
import importlib

# program -> module of tests/fuzz holding its Target
TARGETS = ["zkp_filter", "crypto_ratelimit", "signed_auth", "content_verifier",
           "pki_validator", "crypto_offload", "encrypted_tunnel"]


@contextlib.contextmanager
def load_target(name: str):
    """The program's object loaded from build/bpf, wrapped in its Target."""
    from cryptbpf.bpf.object import BpfObject
    from cryptbpf.paths import bpf_object
    mod = importlib.import_module(f"fuzz.{name}")
    with BpfObject.open(str(bpf_object(name))) as obj:
        for k, v in getattr(mod, "KNOBS", {}).items():   # .rodata, before the load
            obj.set_global(k, v)
        obj.load()
        yield mod.Target(obj)
