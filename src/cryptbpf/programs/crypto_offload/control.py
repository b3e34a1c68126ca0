"""Control plane of a loaded crypto_offload instance (a BpfObject or
`Pinned("crypto-offload")`): keys, routing configuration, cost seeds,
decision counters and the crossover the estimates imply."""

from __future__ import annotations

import time
from typing import Any, Optional

from ...errors import CryptbpfError
from . import wire as P


L, C = P.L, P.C

MODES = {"auto": C("OFFLOAD_MODE_AUTO"), "kernel": C("OFFLOAD_MODE_KERNEL"),
         "daemon": C("OFFLOAD_MODE_DAEMON")}
MODE_NAMES = {v: k for k, v in MODES.items()}
PATHS = ["kernel", "daemon", "reject", "drop"]
REASONS = ["forced", "faster", "explore", "daemon_down", "beyond", "invalid", "failed"]
assert len(PATHS) == C("OFFLOAD_NPATHS") and len(REASONS) == C("OFFLOAD_NREASONS")

DEFAULT_CONFIG = {
    "mode": "auto",
    "explore_every": 32,            # ~3% of requests measure the slower path
    "sample_every": 64,             # ~1.5% of decisions to the ring buffer
    "ewma_shift": 3,                # weight 1/8
    "heartbeat_timeout_ms": 1000,
    "refresh_ms": 2000,             # and at least one measurement per 2 s
    "kernel_max_len": P.KERNEL_MAX,
}
SEED_THRESHOLD = 1024   # bytes: below it the seeds prefer the kernel

_U32, _U64_MS = 2**32 - 1, (2**64 - 1) // 1_000_000
# Each integer setting's bounds, from struct offload_config and how
# crypto_offload.bpf.c uses it: (lowest, highest, what the bound is).
CONFIG_LIMITS = {
    "explore_every": (0, _U32, "a __u32; 0: never explore"),
    "sample_every": (0, _U32, "a __u32; 0: no samples"),
    "ewma_shift": (0, 15, "the program shifts by ewma_shift & 15"),
    # the daemon beats every 100 ms (daemon.HEARTBEAT_S): a shorter timeout
    # than two beats would declare a live daemon down between them
    "heartbeat_timeout_ms": (200, _U64_MS, "at least two daemon heartbeats (100 ms apart); "
                                           "a __u64 of ns"),
    "refresh_ms": (0, _U64_MS, "a __u64 of ns; 0: off"),
    "kernel_max_len": (0, P.KERNEL_MAX, "OFFLOAD_KERNEL_MAX: one unfragmented 1500-byte "
                                        "frame, IPv4 without options"),
}

# Seed model, from the measured costs in KERNEL_NOTES.md / `make bench`
# (pure BPF: SHA-256 ~2.9 ns/B, HMAC two more blocks, ChaCha20-Poly1305
# ~3.2 ns/B): only the starting point, replaced by the first measurement.
_KERNEL_MODEL = {P.OP_SHA256: (600, 2.9), P.OP_HMAC: (900, 2.9), P.OP_SEAL: (1500, 3.2)}


def now_ns() -> int:
    """CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns()."""
    return time.monotonic_ns()


# ---------------------------------------------------------------- keys

def install_key(handle, key_id: int, key_type: str, key: bytes) -> None:
    """Provision `key` under `key_id` through offload_key_setup (which
    derives the HMAC pad states in the kernel)."""
    if key_type not in P.KEY_TYPES:
        raise CryptbpfError(f"key type must be one of {', '.join(P.KEY_TYPES)}, not {key_type!r}")
    if not 0 < key_id < 2**32:
        raise CryptbpfError(f"key id must be 1..{2**32 - 1}")
    if key_type == "hmac" and not 16 <= len(key) <= C("OFFLOAD_KEY_MAX"):
        raise CryptbpfError(f"HMAC keys are 16..64 bytes, got {len(key)}")
    if key_type == "aead" and len(key) != C("OFFLOAD_AEAD_KEY_SIZE"):
        raise CryptbpfError(f"ChaCha20-Poly1305 keys are 32 bytes, got {len(key)}")
    args = L.pack("struct offload_key_args", key_id=key_id, type=P.KEY_TYPES[key_type],
                  len=len(key), key=key)
    res = handle.program("offload_key_setup").test_run(ctx=args)
    err = L.unpack("struct offload_key_args", res.ctx)["err"]
    if err:
        raise CryptbpfError(f"the kernel refused key {key_id}: errno {-err}")


def remove_key(handle, key_id: int) -> bool:
    return handle.map("offload_keys").delete(key_id.to_bytes(4, "little"))


def list_keys(handle) -> list[dict[str, Any]]:
    """Key ids with type and length -- never the key bytes."""
    names = {v: k for k, v in P.KEY_TYPES.items()}
    out = []
    for k, v in handle.map("offload_keys").items():
        e = L.unpack("struct offload_key", v)
        out.append({"key_id": int.from_bytes(k, "little"),
                    "type": names.get(e["type"], str(e["type"])), "bytes": e["len"]})
    return sorted(out, key=lambda e: e["key_id"])


def key_lookup(keys_map, key_id: int) -> tuple[int, bytes] | None:
    """(type, raw key) for the daemon, or None."""
    raw = keys_map.lookup(key_id.to_bytes(4, "little"))
    if raw is None:
        return None
    e = L.unpack("struct offload_key", raw)
    return e["type"], e["key"][:e["len"]]


# ---------------------------------------------------------------- config

def read_config(handle) -> dict[str, Any]:
    c = L.unpack("struct offload_config", handle.map("offload_config").lookup(0))
    return {"mode": MODE_NAMES.get(c["mode"], str(c["mode"])),
            "explore_every": c["explore_every"], "sample_every": c["sample_every"],
            "ewma_shift": c["ewma_shift"],
            "heartbeat_timeout_ms": c["heartbeat_timeout_ns"] // 1_000_000,
            "refresh_ms": c["refresh_ns"] // 1_000_000,
            "kernel_max_len": c["kernel_max_len"]}


def _parse_int(text: str) -> int:
    """Decimal (leading zeros allowed) or 0x/0o/0b-prefixed."""
    try:
        return int(text)
    except ValueError:
        return int(text, 0)


def write_config(handle, **changes: Any) -> dict[str, Any]:
    """Change some settings (names as in DEFAULT_CONFIG); returns the new ones."""
    unknown = set(changes) - set(DEFAULT_CONFIG)
    if unknown:
        raise CryptbpfError(f"unknown setting {', '.join(sorted(unknown))}; "
                            f"settings: {', '.join(DEFAULT_CONFIG)}")
    cur = read_config(handle) if handle.map("offload_config").lookup(0) else {}
    if not cur or cur["heartbeat_timeout_ms"] == 0:
        cur = dict(DEFAULT_CONFIG)
    cur.update(changes)
    if cur["mode"] not in MODES:
        raise CryptbpfError(f"mode must be one of {', '.join(MODES)}, not {cur['mode']!r}")
    for k, (lo, hi, why) in CONFIG_LIMITS.items():
        v = cur[k]
        try:
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise ValueError
            v = _parse_int(v) if isinstance(v, str) else int(v)
        except (TypeError, ValueError):
            raise CryptbpfError(f"{k} must be an integer, not {cur[k]!r}") from None
        if not lo <= v <= hi:
            raise CryptbpfError(f"{k}={v} out of range {lo}..{hi} ({why})")
        cur[k] = v
    handle.map("offload_config").update(0, L.pack(
        "struct offload_config", mode=MODES[cur["mode"]], explore_every=cur["explore_every"],
        sample_every=cur["sample_every"], ewma_shift=cur["ewma_shift"],
        heartbeat_timeout_ns=cur["heartbeat_timeout_ms"] * 1_000_000,
        refresh_ns=cur["refresh_ms"] * 1_000_000, kernel_max_len=cur["kernel_max_len"]))
    return cur


# ---------------------------------------------------------------- costs

def _bucket_mid(b: int) -> int:
    return (b << P.BUCKET_SHIFT) + (1 << (P.BUCKET_SHIFT - 1))


def seed_costs(handle, threshold: int = SEED_THRESHOLD) -> None:
    """Starting estimates (samples = 0): the kernel model per op, and a
    flat daemon estimate equal to the kernel's at `threshold` bytes, so
    that smaller requests start in the kernel and larger ones in the
    daemon. The first real measurement replaces each seed."""
    kmap, dmap = handle.map("kernel_cost"), handle.map("daemon_cost")
    for op, (base, per_byte) in _KERNEL_MODEL.items():
        daemon = int(base + per_byte * threshold)
        for b in range(P.BUCKETS):
            idx = (op - 1) * P.BUCKETS + b
            write_cost(kmap, idx, int(base + per_byte * _bucket_mid(b)), samples=0)
            write_cost(dmap, idx, daemon, samples=0)


def write_cost(cost_map, idx: int, ewma_ns: int, samples: int, updated_ns: int = 0) -> None:
    """Set one estimate of `cost_map` (kernel_cost or daemon_cost)."""
    cost_map.update(idx, L.pack("struct offload_cost", ewma_ns=ewma_ns,
                                samples=samples, updated_ns=updated_ns))


def read_costs(handle, map_name: str) -> list[dict[str, int]]:
    m = handle.map(map_name)
    return [L.unpack("struct offload_cost", m.lookup(i)) for i in range(C("OFFLOAD_COST_ENTRIES"))]


def crossover(handle) -> dict[str, dict[str, Any]]:
    """Per op: the estimates per size bucket, which path each prefers,
    and the crossover: the smallest size from which the daemon's measured
    estimate is lower (None: the kernel wins wherever both were measured).
    Buckets still on a seed route by it but do not count for the crossover."""
    kc, dc = read_costs(handle, "kernel_cost"), read_costs(handle, "daemon_cost")
    kmax = read_config(handle)["kernel_max_len"]
    out = {}
    for name, op in P.OPS.items():
        rows, cross = [], None
        for b in range(P.BUCKETS):
            if (b << P.BUCKET_SHIFT) > kmax:
                break
            k, d = kc[(op - 1) * P.BUCKETS + b], dc[(op - 1) * P.BUCKETS + b]
            prefer = "kernel" if k["ewma_ns"] <= d["ewma_ns"] else "daemon"
            measured = bool(k["samples"] and d["samples"])
            if prefer == "daemon" and measured and cross is None:
                cross = b << P.BUCKET_SHIFT
            rows.append({"sizes": P.bucket_range(b), "kernel_ns": k["ewma_ns"],
                         "kernel_samples": k["samples"], "daemon_ns": d["ewma_ns"],
                         "daemon_samples": d["samples"], "prefer": prefer})
        out[name] = {"crossover": cross, "buckets": rows}
    return out


# ---------------------------------------------------------------- daemon

def daemon_state(handle) -> dict[str, Any]:
    d = L.unpack("struct offload_daemon", handle.map("offload_daemon").lookup(0))
    timeout = read_config(handle)["heartbeat_timeout_ms"] * 1_000_000
    age = now_ns() - d["heartbeat_ns"] if d["heartbeat_ns"] else None
    return {"pid": d["pid"] or None, "heartbeat_age_ms": None if age is None else age // 1_000_000,
            "alive": age is not None and age < timeout}


# ---------------------------------------------------------------- counters

def decisions(handle) -> dict[str, int]:
    """Decision counters summed over CPUs, as "path/reason" -> count (zeros
    left out), plus dropped_runt and samples_lost."""
    m = handle.map("offload_stats")
    total: dict[str, int] = {}
    for raw in m.lookup_percpu(0) or []:
        s = L.unpack("struct offload_stats", raw)
        for i, n in enumerate(s["decisions"]):
            key = f"{PATHS[i // len(REASONS)]}/{REASONS[i % len(REASONS)]}"
            total[key] = total.get(key, 0) + n
        for k in ("dropped_runt", "samples_lost"):
            total[k] = total.get(k, 0) + s[k]
    return {k: v for k, v in total.items() if v or "/" not in k}


def decode_sample(raw: bytes) -> dict[str, Any]:
    s = L.unpack("struct offload_sample", raw)
    s["op"] = P.OP_NAMES.get(s["op"], s["op"])
    s["path"] = PATHS[s["path"]] if s["path"] < len(PATHS) else s["path"]
    s["reason"] = REASONS[s["reason"]] if s["reason"] < len(REASONS) else s["reason"]
    return s


def setup(handle, threshold: int = SEED_THRESHOLD, **config: Any) -> None:
    """Fresh instance: default configuration, seeded estimates, no daemon."""
    write_config(handle, **{**DEFAULT_CONFIG, **config})
    seed_costs(handle, threshold)


NAME = "crypto-offload"


SEED_THRESHOLD_RANGE = (0, 65535)   # bytes; requests are smaller than a datagram




def _int_option(options: dict[str, list[str]], name: str, default: int) -> int:
    if name not in options:
        return default
    try:
        n = int(options[name][-1], 0)
    except ValueError:
        raise CryptbpfError(f"--{name.replace('_', '-')} takes an integer") from None
    lo, hi = SEED_THRESHOLD_RANGE
    if not lo <= n <= hi:
        raise CryptbpfError(f"--{name.replace('_', '-')} {n} out of range {lo}-{hi}")
    return n


def _crossover_text(cross: Optional[int]) -> str:
    if cross is None:
        return "kernel faster wherever both paths were measured"
    return "daemon faster at every size" if cross == 0 else f"daemon from {cross} B"
