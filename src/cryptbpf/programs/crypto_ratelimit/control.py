"""crypto-ratelimit's control plane: the server key, limits, protected ports
and sources of a loaded instance, through its maps."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from ...errors import CryptbpfError
from ...ports import udp_port as _port
from ...bpf.headers import Layout


NAME = "crypto-ratelimit"
_L = Layout("crypto_ratelimit")
MAX_D = _L.const("POW_MAX_DIFFICULTY")

# name -> (default, low, high, help): the runtime configuration (pow_config)
SETTINGS = {
    "rate": (100, 1, 10**9, "tokens per second per source"),
    "burst": (20, 1, 10**6, "bucket size: datagrams a source may send at once"),
    "min_difficulty": (8, 0, MAX_D, "lowest puzzle difficulty (leading zero bits)"),
    "max_difficulty": (20, 0, MAX_D, "highest puzzle difficulty"),
    "load_high": (10000, 0, 2**32 - 1, "packets/s to protected ports above which difficulty rises"),
    "load_low": (1000, 0, 2**32 - 1, "packets/s below which difficulty falls"),
    "max_challenges": (8, 1, 2**32 - 1, "challenges per source per slot (bounds reflection)"),
    "under_attack": (0, 0, 1, "1: every source must solve a puzzle before its first datagram"),
}


def install_server_key(handle, key: bytes) -> None:
    args = _L.pack("struct pow_key_setup", len=len(key), key=key)
    res = handle.program("install_key").test_run(ctx=args)
    err = _L.unpack("struct pow_key_setup", res.ctx)["err"]
    if err:
        raise CryptbpfError(f"crypto-ratelimit refused the key: errno {-err}")


def _int(name: str, value) -> int:
    lo, hi = SETTINGS[name][1:3]
    try:
        v = int(value, 0) if isinstance(value, str) else int(value)
    except ValueError:
        raise CryptbpfError(f"--{name.replace('_', '-')}: {value!r} is not an integer") from None
    if not lo <= v <= hi:
        raise CryptbpfError(f"--{name.replace('_', '-')}: {v} out of range {lo}-{hi}")
    return v


def read_config(handle) -> dict[str, int]:
    c = _L.unpack("struct pow_config", handle.map("pow_config").lookup(0))
    interval = c["interval_ns"] or 1
    return {"rate": round(1e9 / interval), "burst": c["burst"],
            "min_difficulty": c["min_difficulty"], "max_difficulty": c["max_difficulty"],
            "load_high": c["load_high_pps"], "load_low": c["load_low_pps"],
            "max_challenges": c["max_challenges"], "under_attack": c["under_attack"]}


def configure_limits(handle, **changes) -> dict[str, int]:
    """Change some settings of a loaded (or just loaded) instance; the rest
    keep their values (defaults on a fresh instance)."""
    raw = handle.map("pow_config").lookup(0)
    cur = read_config(handle) if _L.unpack("struct pow_config", raw)["interval_ns"] else \
        {k: v[0] for k, v in SETTINGS.items()}
    for k, v in changes.items():
        if k not in SETTINGS:
            raise CryptbpfError(f"unknown setting {k}")
        if v is not None:
            cur[k] = _int(k, v)
    if cur["min_difficulty"] > cur["max_difficulty"]:
        raise CryptbpfError("min difficulty above max difficulty")
    interval = max(1, 10**9 // cur["rate"])
    handle.map("pow_config").update(0, _L.pack(
        "struct pow_config", interval_ns=interval, tolerance_ns=(cur["burst"] - 1) * interval,
        burst=cur["burst"], max_challenges=cur["max_challenges"],
        load_high_pps=cur["load_high"], load_low_pps=cur["load_low"],
        min_difficulty=cur["min_difficulty"], max_difficulty=cur["max_difficulty"],
        under_attack=cur["under_attack"]))
    return cur




def protect(handle, port, on: bool = True) -> None:
    key = _port(port).to_bytes(2, "little")
    m = handle.map("protected_ports")
    m.update(key, b"\x01") if on else m.delete(key)


def protected_ports(handle) -> list[int]:
    return sorted(int.from_bytes(k, "little") for k in handle.map("protected_ports").keys())


def state(handle) -> dict[str, int]:
    s = _L.unpack("struct pow_state", handle.map("pow_state").lookup(0))
    cfg = read_config(handle)
    d = min(max(s["difficulty"], cfg["min_difficulty"]), cfg["max_difficulty"])
    return {"difficulty": d, "load_pps": s["last_pps"]}


def sources(handle, limit: int = 20) -> list[dict[str, Any]]:
    """Sources with a bucket (most recently seen first is not known to BPF's
    LRU; sorted by address), with their tokens left now."""
    cfg = _L.unpack("struct pow_config", handle.map("pow_config").lookup(0))
    now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    out = []
    for addr, raw in handle.map("buckets").items():
        b = _L.unpack("struct pow_bucket", raw)
        debt = max(0, b["tat_ns"] - now)
        tokens = max(0, (cfg["tolerance_ns"] - debt) // max(1, cfg["interval_ns"]) + 1) \
            if debt <= cfg["tolerance_ns"] else 0
        out.append({"source": str(ipaddress.IPv4Address(addr)), "tokens": int(tokens),
                    "solved": b["solved"], "verified": bool(b["verified"])})
    out.sort(key=lambda s: ipaddress.IPv4Address(s["source"]))
    return out[:limit]
