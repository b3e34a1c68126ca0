"""`cryptbpf doctor`: what this kernel and machine offer, and for each
program whether it can run here and, if not, exactly why."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

from .bpf import bpffs, kernel
from .bpf._ffi import libbpf_version
from .errors import CryptbpfError, VerifierError
from .bpf.object import BpfObject
from .crypto.kernel_ciphers import primitive_paths
from .paths import PIN_ROOT, bpf_object
from .programs.base import ProgramSpec


def trial_load(spec: ProgramSpec) -> dict[str, Any]:
    """Load the object (no attach) to prove the verifier accepts it here."""
    path = bpf_object(spec.object)
    if not path.exists():
        return {"loads": False, "reason": f"{path} not built (run make)"}
    t0 = time.perf_counter()
    try:
        with BpfObject.open(str(path)) as obj:
            obj.load()
            insns = {n: p.verified_insns for n, p in obj.programs.items()}
    except VerifierError as e:
        return {"loads": False, "reason": "verifier: " + e.tail(3).replace("\n", " | ")}
    except CryptbpfError as e:
        return {"loads": False, "reason": str(e)}
    return {"loads": True, "load_ms": round((time.perf_counter() - t0) * 1e3, 1),
            "verified_insns": insns}


def program_report(spec: ProgramSpec, privileged: bool) -> dict[str, Any]:
    missing = kernel.missing(spec.requires)
    rep: dict[str, Any] = {"summary": spec.summary, "requires": spec.requires}
    if missing:
        rep["runnable"] = False
        rep["reason"] = "missing " + kernel.describe(missing)
        return rep
    if not privileged:
        rep["runnable"] = None
        rep["reason"] = "not checked: needs root to load"
        return rep
    rep.update(trial_load(spec))
    rep["runnable"] = rep["loads"]
    rep["unavailable"] = {what: "missing " + kernel.describe(m)
                          for what, feats in spec.optional.items() if (m := kernel.missing(feats))}
    return rep


def bpffs_report(caps: int) -> dict[str, Any]:
    """Where pins go, and whether `load` can put them there."""
    mount_point = PIN_ROOT.parent
    found, detail = bpffs.locate(mount_point)
    can_mount = bool(caps >> kernel.CAP_SYS_ADMIN & 1)
    if found is None:
        detail += ("; cryptbpf load mounts it" if can_mount
                   else "; mounting it needs CAP_SYS_ADMIN: programs cannot be pinned")
    return {"mount_point": str(mount_point), "mounted": found is not None,
            "pins": str((found or mount_point) / PIN_ROOT.name), "can_mount": can_mount,
            "detail": detail}


def report(specs: dict[str, ProgramSpec]) -> dict[str, Any]:
    priv = kernel.privileged()
    caps = kernel.effective_caps()
    fs = bpffs_report(caps)
    programs = {name: program_report(s, priv) for name, s in specs.items()}
    if not (fs["mounted"] or fs["can_mount"]):
        for rep in programs.values():
            if rep.get("runnable"):
                rep.update(runnable=False, reason="loads, but cannot be pinned: " + fs["detail"])
    return {
        "kernel": {"release": kernel.release(), "machine": platform.machine(),
                   "btf": os.path.exists("/sys/kernel/btf/vmlinux")},
        "libbpf": libbpf_version(),
        "privileges": {"euid": os.geteuid(), "sufficient": priv,
                       **{n: bool(caps >> c & 1) for n, c in (
                           ("CAP_BPF", kernel.CAP_BPF), ("CAP_NET_ADMIN", kernel.CAP_NET_ADMIN),
                           ("CAP_SYS_ADMIN", kernel.CAP_SYS_ADMIN), ("CAP_PERFMON", kernel.CAP_PERFMON))}},
        "features": {n: {"available": kernel.has(n), "since": f.since, "what": f.what}
                     for n, f in kernel.FEATURES.items()},
        "bpffs": fs,
        "primitives": primitive_paths(),
        "programs": programs,
    }
