"""signed-auth's control plane: trusted keys, their budgets and replay floors,
and protected ports of a loaded instance, through its maps."""

from __future__ import annotations

import errno
import hashlib
import struct
import time
from pathlib import Path

from ...crypto import p256
from ...errors import CryptbpfError
from ...ports import udp_port
from ...bpf.headers import Layout


NAME = "signed-auth"
HEADER = "signed_auth"
COUNTERS = "struct signed_auth_counters"
DEFAULT_KEY_RATE = 1000     # verifications per second per key
DEFAULT_KEY_BURST = 100
DEFAULT_MAX_SKEW_S = 30     # keep in step with max_skew_s in bpf/signed_auth.bpf.c
NSEC = 1_000_000_000
BPF_F_LOCK = 4              # map update: copy the value under its bpf_spin_lock
ALL_ONES = 2**64 - 1
# reasons decided before a trusted key is known: never charged to a key
GLOBAL_ONLY = ("unknown_key", "no_trailer", "short_payload", "malformed", "fragmented", "unsupported")


def _layout() -> Layout:
    return Layout(HEADER)


def _kid(key_id: int) -> bytes:
    if not 0 <= key_id < 2**32:
        raise CryptbpfError(f"key id {key_id} does not fit in 32 bits")
    return struct.pack("=I", key_id)


# ---- ports ----

def set_ports(handle, add: list[int] = (), remove: list[int] = ()) -> list[int]:
    """Protect (add) or unprotect (remove) UDP ports; returns the protected set."""
    L = _layout()
    m = handle.map("sa_ports")
    bits = L.unpack("struct signed_auth_ports", m.lookup(0))["bits"]
    for p in list(add) + list(remove):
        udp_port(p)
    for p in add:
        bits[p >> 6] |= 1 << (p & 63)
    for p in remove:
        bits[p >> 6] &= ~(1 << (p & 63))
    m.update(0, L.pack("struct signed_auth_ports", bits=bits))
    return protected_ports(handle)


def protected_ports(handle) -> list[int]:
    bits = _layout().unpack("struct signed_auth_ports", handle.map("sa_ports").lookup(0))["bits"]
    return [w * 64 + b for w, v in enumerate(bits) if v for b in range(64) if v >> b & 1]


# ---- keys ----

def _key_entry(handle, key_id: int) -> dict | None:
    raw = handle.map("sa_keys").lookup(_kid(key_id))
    return _layout().unpack("struct signed_auth_key", raw) if raw else None


def trust(handle, key_id: int, point: bytes, rate: int = DEFAULT_KEY_RATE,
          burst: int = DEFAULT_KEY_BURST) -> str:
    """Trust the 65-byte public point under key_id with a verification
    budget of `rate` per second (`burst` back to back). Re-trusting a
    revoked key id with the same key keeps its replay window (old datagrams
    stay refused); another key under that id starts a new one. Either way
    the window is at least at the replay floor (replay_floor()): nothing
    signed more than max_skew_s before now is accepted. Returns the key's
    fingerprint."""
    L = _layout()
    if not 1 <= rate <= NSEC:
        raise CryptbpfError(f"--rate must be 1..{NSEC} verifications per second")
    if not 1 <= burst <= 1_000_000:
        raise CryptbpfError("--burst must be 1..1000000")
    try:
        k, table = p256.key_map_entry(key_id, point)   # validates the point
    except p256.InvalidKey as e:
        raise CryptbpfError(f"invalid public key: {e}") from None
    except ValueError as e:
        raise CryptbpfError(str(e)) from None
    fp = hashlib.sha256(point).digest()
    old = _key_entry(handle, key_id)
    if old and old["state"] == L.const("SIGNED_AUTH_KEY_ACTIVE") and old["fingerprint"] != fp:
        raise CryptbpfError(f"key id {key_id} is trusted with another key "
                            f"({old['fingerprint'].hex()[:16]}); revoke it first")
    fresh = old is None or old["fingerprint"] != fp
    kid = _kid(key_id)
    try:
        # the window first: no verification can use this key before its
        # table is in p256_keys, so nothing moves the window meanwhile
        _raise_to_floor(handle, kid, replay_floor(handle), fresh)
        if fresh:
            handle.map("key_stats").update(kid, bytes(L.sizeof(COUNTERS)))
        handle.map("p256_keys").update(k, table)
    except CryptbpfError as e:
        if old is None:     # leave nothing behind for an id that is not trusted
            for name in ("p256_keys", "sa_state", "key_stats"):
                handle.map(name).delete(kid)
        if getattr(e, "errno", 0) == errno.E2BIG:
            raise CryptbpfError(f"no room for another key (at most "
                                f"{handle.map('sa_keys').max_entries}); purge a revoked one") from None
        raise
    _kfunc_register(handle, key_id, point)
    handle.map("sa_keys").update(kid, L.pack(
        "struct signed_auth_key", state=L.const("SIGNED_AUTH_KEY_ACTIVE"), burst=burst,
        interval_ns=max(1, NSEC // rate), fingerprint=fp))
    return fp.hex()


def replay_floor(handle) -> int:
    """The lowest sequence number a key's window may accept from now on:
    wall-clock ns minus the loaded program's max_skew_s allowance. A
    sender's clock may lag the receiver's by up to that much."""
    return max(0, time.time_ns() - handle.get_global_int("max_skew_s") * NSEC)


def _raise_to_floor(handle, kid: bytes, floor: int, fresh: bool) -> None:
    """Create (fresh) or raise key kid's replay window so that every
    sequence number <= floor | 63 is refused: top = floor | 63 and all bits
    set (see signed_auth.h). A window already above the floor is left alone;
    the key budget (tat_ns) is kept."""
    L = _layout()
    m = handle.map("sa_state")
    lock = L.const("SIGNED_AUTH_STATE_LOCK_BYTES")
    top = floor | 63
    raw = None if fresh else m.lookup(kid)
    if raw is None:
        tat = 0
    else:
        r = L.unpack("struct signed_auth_replay", raw[lock:])
        if r["top"] >= top:
            return
        tat = r["tat_ns"]
    value = bytes(lock) + L.pack("struct signed_auth_replay", top=top,
                                 bits=[ALL_ONES] * L.const("SIGNED_AUTH_REPLAY_WORDS"), tat_ns=tat)
    m.update(kid, value.ljust(m.value_size, b"\0"), BPF_F_LOCK if raw is not None else 0)


def _kfunc_register(handle, key_id: int, point: bytes) -> bool:
    """On kernels with the signature kfunc, also give the kernel the key
    (ecdsa_p256.bpf.h dispatches to it); -EOPNOTSUPP elsewhere."""
    if key_id >= handle.map("p256_kctxs").max_entries:
        return False
    res = handle.program("p256_kfunc_setup").test_run(ctx=p256.kfunc_setup_args(key_id, point))
    return p256.kfunc_setup_err(res.ctx) == 0


def revoke(handle, key_id: int, purge: bool = False) -> None:
    """Stop trusting key_id now: the next datagram is refused before any
    verification, and one being verified at this moment fails (its table is
    gone). Without purge the id stays listed as revoked, with its counters
    and replay window; purge forgets it entirely (a later trust starts its
    window at the replay floor, so what was signed before stays refused)."""
    L = _layout()
    kid = _kid(key_id)
    entry = _key_entry(handle, key_id)
    if entry is None:
        raise CryptbpfError(f"key id {key_id} is not trusted")
    entry["state"] = L.const("SIGNED_AUTH_KEY_REVOKED")
    handle.map("sa_keys").update(kid, L.pack("struct signed_auth_key", **entry))
    handle.map("p256_keys").delete(kid)
    kctxs = handle.map("p256_kctxs")
    if key_id < kctxs.max_entries:
        # an array update from userspace releases the kptr it held
        kctxs.update(kid, bytes(kctxs.value_size))
    if purge:
        for name in ("sa_keys", "sa_state", "key_stats"):
            handle.map(name).delete(kid)


def _sum_counters(raws: list[bytes]) -> dict[str, int]:
    L = _layout()
    total: dict[str, int] = {}
    for raw in raws:
        for k, v in L.unpack(COUNTERS, raw).items():
            total[k] = max(total.get(k, 0), v) if k == "last_seen_ns" else total.get(k, 0) + v
    return total


def _wall(mono_ns: int) -> str:
    if not mono_ns:
        return "never"
    t = time.time() - (time.clock_gettime_ns(time.CLOCK_MONOTONIC) - mono_ns) / NSEC
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def keys(handle) -> list[dict]:
    """Every key id with its state, budget and counters (no secrets: the
    fingerprint is a hash of the public key)."""
    L = _layout()
    states = {L.const("SIGNED_AUTH_KEY_ACTIVE"): "active", L.const("SIGNED_AUTH_KEY_REVOKED"): "revoked"}
    stats_map, state_map = handle.map("key_stats"), handle.map("sa_state")
    lock = L.const("SIGNED_AUTH_STATE_LOCK_BYTES")
    out = []
    for kid, raw in handle.map("sa_keys").items():
        key_id = struct.unpack("=I", kid)[0]
        e = L.unpack("struct signed_auth_key", raw)
        counters = _sum_counters(stats_map.lookup_percpu(kid) or [])
        for name in GLOBAL_ONLY:
            counters.pop(name, None)
        st = state_map.lookup(kid)
        replay = L.unpack("struct signed_auth_replay", st[lock:]) if st else {"top": 0}
        out.append({"id": key_id, "state": states.get(e["state"], str(e["state"])),
                    "fingerprint": e["fingerprint"].hex(),
                    "rate": NSEC // e["interval_ns"] if e["interval_ns"] else 0,
                    "burst": e["burst"], "highest_seq": replay["top"],
                    "last_seen": _wall(counters.pop("last_seen_ns", 0)), "counters": counters})
    return sorted(out, key=lambda k: k["id"])


def _key_line(k: dict) -> str:
    c = k["counters"]
    rejected = ", ".join(f"{n} {v}" for n, v in c.items() if v and n not in ("verified", "verifications"))
    return (f"{k['state']}, {k['fingerprint'][:16]}, budget {k['rate']}/s burst {k['burst']}; "
            f"verified {c.get('verified', 0)} (last {k['last_seen']}); "
            f"rejected: {rejected or 'none'}")


def _trust_option(spec: str) -> tuple[int, bytes]:
    kid, sep, path = spec.partition("=")
    if not sep:
        raise CryptbpfError(f"--trust takes ID=PUBLIC_KEY.pem, got {spec!r}")
    key_id = _int(kid, "--trust id")
    if not 0 <= key_id < 2**32:
        raise CryptbpfError(f"--trust id {key_id} out of range 0-{2**32 - 1}")
    return key_id, _read_point(Path(path))




def _int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise CryptbpfError(f"{what}: {text!r} is not an integer") from None


def _read_point(path: Path) -> bytes:
    from ...crypto.p256_keys import load_public_key, public_point
    return public_point(load_public_key(path))
