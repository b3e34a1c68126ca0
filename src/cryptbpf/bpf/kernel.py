"""What this kernel offers cryptbpf: feature probes, each recording the
kernel release that introduced the feature (so a test can tell a missing
feature from a broken probe, cilium/ebpf style)."""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import dataclass
from typing import Callable

from ._ffi import ffi, lib
from .btf import Btf

# enum values from include/uapi/linux/bpf.h
PROG_SCHED_CLS, PROG_XDP, PROG_TRACEPOINT, PROG_SYSCALL = 3, 6, 5, 31
MAP_RINGBUF, MAP_LRU_HASH = 27, 9
FUNC_LOOP, FUNC_XDP_LOAD_BYTES, FUNC_KPTR_XCHG, FUNC_DYNPTR_FROM_MEM = 181, 189, 194, 197


@dataclass(frozen=True)
class Feature:
    name: str
    since: str | None        # mainline release that added it; None: out of tree
    what: str
    probe: Callable[[], bool]


@functools.lru_cache(maxsize=1)
def vmlinux_btf() -> Btf | None:
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return None
    try:
        return Btf.vmlinux()
    except Exception:
        return None


def _kfunc(name: str) -> Callable[[], bool]:
    def probe() -> bool:
        btf = vmlinux_btf()
        return bool(btf and btf.has_func(name))
    return probe


def _helper(func_id: int, prog_type: int = PROG_SCHED_CLS) -> Callable[[], bool]:
    return lambda: lib.libbpf_probe_bpf_helper(prog_type, func_id, _null()) == 1


def _null():
    return ffi.NULL


def _prog(prog_type: int) -> Callable[[], bool]:
    return lambda: lib.libbpf_probe_bpf_prog_type(prog_type, _null()) == 1


def _map(map_type: int) -> Callable[[], bool]:
    return lambda: lib.libbpf_probe_bpf_map_type(map_type, _null()) == 1


FEATURES = {f.name: f for f in [
    Feature("btf", "5.4", "kernel BTF at /sys/kernel/btf/vmlinux (CO-RE)",
            lambda: os.path.exists("/sys/kernel/btf/vmlinux")),
    Feature("tc_bpf", "4.1", "TC clsact BPF classifiers", _prog(PROG_SCHED_CLS)),
    Feature("xdp", "4.8", "XDP programs", _prog(PROG_XDP)),
    Feature("tracepoint", "4.7", "tracepoint programs", _prog(PROG_TRACEPOINT)),
    Feature("syscall_prog", "5.14", "SYSCALL programs (BPF_PROG_TEST_RUN setup code)",
            _prog(PROG_SYSCALL)),
    Feature("ringbuf", "5.8", "BPF ring buffer maps", _map(MAP_RINGBUF)),
    Feature("bpf_loop", "5.17", "bpf_loop() helper", _helper(FUNC_LOOP)),
    Feature("xdp_load_bytes", "5.18", "bpf_xdp_load_bytes() helper",
            _helper(FUNC_XDP_LOAD_BYTES, PROG_XDP)),
    Feature("kptr", "5.19", "kptrs in map values (bpf_kptr_xchg)", _helper(FUNC_KPTR_XCHG)),
    # sha*_update()/hmac_*_init() wrap map memory in one (bpf/include/sha256.bpf.h)
    Feature("dynptr_mem", "5.19", "bpf_dynptr_from_mem() helper (hashing map memory)",
            _helper(FUNC_DYNPTR_FROM_MEM)),
    Feature("dynptr_skb", "6.4", "packet dynptrs (bpf_dynptr_from_skb/xdp)",
            _kfunc("bpf_dynptr_from_skb")),
    Feature("iter_num", "6.4", "open-coded iterators (bpf_for)", _kfunc("bpf_iter_num_new")),
    Feature("bpf_crypto", "6.10", "bpf_crypto skcipher kfuncs (cbc(aes), ecb(aes))",
            _kfunc("bpf_crypto_encrypt")),
    # Out-of-tree kfuncs (bpf-next series, not merged): used when present.
    Feature("kfunc_sha256_v1", None, "bpf_sha256_hash kfunc (v1 series)", _kfunc("bpf_sha256_hash")),
    Feature("kfunc_sha384_v1", None, "bpf_sha384_hash kfunc (v1 series)", _kfunc("bpf_sha384_hash")),
    Feature("kfunc_sha512_v1", None, "bpf_sha512_hash kfunc (v1 series)", _kfunc("bpf_sha512_hash")),
    Feature("kfunc_crypto_hash_v8", None, "bpf_crypto_hash kfunc (v8 series)", _kfunc("bpf_crypto_hash")),
    Feature("kfunc_ecdsa_v1", None, "bpf_ecdsa_verify kfunc (v1 series)", _kfunc("bpf_ecdsa_verify")),
    Feature("kfunc_sig_verify_v8", None, "bpf_sig_verify kfunc (v8 series)", _kfunc("bpf_sig_verify")),
]}


@functools.lru_cache(maxsize=None)
def has(name: str) -> bool:
    try:
        return bool(FEATURES[name].probe())
    except Exception:
        return False


def release() -> str:
    return platform.release()


def version_tuple(rel: str | None = None) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", rel or release())
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def should_have(name: str) -> bool:
    """True if this kernel's version is at least the feature's mainline
    release: a probe that then says no is a bug, not a missing feature."""
    since = FEATURES[name].since
    if since is None:
        return False
    maj, mnr = (int(x) for x in since.split("."))
    return version_tuple() >= (maj, mnr)


# Capabilities (include/uapi/linux/capability.h)
CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 12, 21, 38, 39


def effective_caps() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def has_cap(cap: int) -> bool:
    return bool(effective_caps() >> cap & 1)


def privileged() -> bool:
    """Enough to load programs and attach them to interfaces."""
    caps = effective_caps()
    bpf_ok = caps >> CAP_BPF & 1 or caps >> CAP_SYS_ADMIN & 1
    return bool(bpf_ok and caps >> CAP_NET_ADMIN & 1)


def missing(names: list[str]) -> list[str]:
    """The features among `names` this kernel lacks."""
    return [n for n in names if not has(n)]


def describe(names: list[str]) -> str:
    """Human-readable list of features, with the release that added each."""
    return "; ".join(f"{FEATURES[n].what} (Linux {FEATURES[n].since}+)" for n in names)
