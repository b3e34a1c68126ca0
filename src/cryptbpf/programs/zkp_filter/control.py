"""zkp-filter's control plane: the server key, verifiers, protected ports and
authorizations of a loaded instance, through its maps."""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import time
from typing import Any

from ...crypto import p256
from ...errors import CryptbpfError
from ...ports import udp_port as _port
from ...bpf.headers import Layout


NAME = "zkp-filter"
SECRET_SIZES = tuple(range(16, 65))
SERVER_KEY_LEN = 32
DEFAULT_KEY_RATE = 100      # Schnorr verifications per second per key
DEFAULT_KEY_BURST = 20
NSEC = 1_000_000_000
_L = Layout("zkp_filter")


def install_server_key(handle, key: bytes) -> None:
    _install(handle, _L.const("ZKP_SLOT_SERVER"), 0, key)


def install_verifier(handle, key_id: int, verifier: bytes) -> None:
    if len(verifier) != _L.const("ZKP_VERIFIER_LEN"):
        raise CryptbpfError(f"a verifier is {_L.const('ZKP_VERIFIER_LEN')} bytes")
    _check_key_id(key_id)
    _install(handle, _L.const("ZKP_SLOT_VERIFIER"), key_id, verifier)


def _install(handle, which: int, key_id: int, key: bytes) -> None:
    args = _L.pack("struct zkp_key_setup", which=which, key_id=key_id, len=len(key), key=key)
    res = handle.program("install_key").test_run(ctx=args)
    err = _L.unpack("struct zkp_key_setup", res.ctx)["err"]
    if err:
        raise CryptbpfError(f"zkp-filter refused the key: errno {-err}")


def _check_key_id(key_id: int) -> bytes:
    if not 0 <= key_id < 2**32:
        raise CryptbpfError(f"key id {key_id} is not a 32-bit unsigned integer")
    return key_id.to_bytes(4, "little")


def protect(handle, port: int, on: bool = True) -> None:
    m = handle.map("protected_ports")
    key = _port(port).to_bytes(2, "little")
    if on:
        m.update(key, b"\x01")
    else:
        m.delete(key)


def protected_ports(handle) -> list[int]:
    return sorted(int.from_bytes(k, "little") for k in handle.map("protected_ports").keys())


def add_key(handle, key_id: int, verifier: bytes) -> None:
    """Register key_id in HMAC mode (a Schnorr key under that id is dropped
    first: one mode per key id)."""
    kid = _check_key_id(key_id)
    _drop_zk_key(handle, kid)
    install_verifier(handle, key_id, verifier)


def add_zk_key(handle, key_id: int, point: bytes, rate: int = DEFAULT_KEY_RATE,
               burst: int = DEFAULT_KEY_BURST) -> str:
    """Register key_id in Schnorr mode with the 65-byte public point A
    (validated: on the curve, not the identity) and a verification budget
    of `rate` per second, `burst` back to back. Only A and its table of
    multiples are stored. An HMAC verifier under that id is removed first.
    Returns the key's fingerprint (SHA-256 of the point)."""
    kid = _check_key_id(key_id)
    if not 1 <= rate <= NSEC:
        raise CryptbpfError(f"--rate must be 1..{NSEC} verifications per second")
    if not 1 <= burst <= 1_000_000:
        raise CryptbpfError("--burst must be 1..1000000")
    try:
        _, table = p256.key_map_entry(key_id, point)      # validates the point
    except p256.InvalidKey as e:
        raise CryptbpfError(f"invalid public key: {e}") from None
    handle.map("zkp_keys").delete(kid)
    lock = _L.const("ZKP_ZK_KEY_LOCK_BYTES")
    value = bytes(lock) + _L.pack("struct zkp_zk_key", interval_ns=max(1, NSEC // rate), burst=burst,
                                  point=bytes(point))
    keys = handle.map("zkp_zk_keys")
    try:
        # the table first: the data path needs both, and looks for both
        handle.map("p256_keys").update(kid, table)
        keys.update(kid, value.ljust(keys.value_size, b"\0"))
    except CryptbpfError as e:
        handle.map("p256_keys").delete(kid)
        if getattr(e, "errno", 0) == errno.E2BIG:
            raise CryptbpfError(f"no room for another Schnorr key (at most {keys.max_entries}); "
                                "revoke one") from None
        raise
    counters = handle.map("per_id_counters")
    if counters.lookup(kid) is None:        # a replaced key keeps its counters
        counters.update(kid, bytes(_L.sizeof("struct zkp_key_counters")))
    return hashlib.sha256(point).hexdigest()


def _drop_zk_key(handle, kid: bytes) -> bool:
    gone = handle.map("zkp_zk_keys").delete(kid)
    handle.map("p256_keys").delete(kid)
    return bool(gone)


def key_modes(handle) -> dict[int, str]:
    """key id -> "hmac" or "schnorr"."""
    out = {int.from_bytes(k, "little"): "hmac" for k in handle.map("zkp_keys").keys()}
    out.update({int.from_bytes(k, "little"): "schnorr" for k in handle.map("zkp_zk_keys").keys()})
    return dict(sorted(out.items()))


def revoke(handle, key_id: int) -> int:
    """Remove key_id (either mode) and its counters, then every
    authorization it granted. Returns the number of sources de-authorized."""
    kid = _check_key_id(key_id)
    hmac_gone = handle.map("zkp_keys").delete(kid)
    if not (_drop_zk_key(handle, kid) or hmac_gone):
        raise CryptbpfError(f"no key with id {key_id}")
    handle.map("per_id_counters").delete(kid)
    auth = handle.map("authorized")
    gone = 0
    # twice: a proof being checked while the key was deleted re-checks the
    # key after authorizing and removes itself, but scan again to be sure
    for _ in range(2):
        for addr, raw in list(auth.items()):
            if _L.unpack("struct zkp_auth", raw)["key_id"] == key_id and auth.delete(addr):
                gone += 1
    return gone


def boot_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def authorizations(handle) -> list[dict[str, Any]]:
    now = boot_ns()
    out = []
    for addr, raw in handle.map("authorized").items():
        a = _L.unpack("struct zkp_auth", raw)
        left = (a["expires_ns"] - now) / 1e9
        if left > 0:
            out.append({"source": str(ipaddress.IPv4Address(addr)), "key_id": a["key_id"],
                        "expires_in_s": round(left, 1)})
    return sorted(out, key=lambda a: a["source"])


def key_counters(handle) -> dict[int, dict[str, int]]:
    out = {}
    for k, raw in handle.map("per_id_counters").items():
        out[int.from_bytes(k, "little")] = _L.unpack("struct zkp_key_counters", raw)
    return dict(sorted(out.items()))
