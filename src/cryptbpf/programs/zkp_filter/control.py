"""zkp-filter's control plane: the server key, verifiers, protected ports and
authorizations of a loaded instance, through its maps."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from ...errors import CryptbpfError
from ...ports import udp_port as _port
from ...bpf.headers import Layout


NAME = "zkp-filter"
SECRET_SIZES = tuple(range(16, 65))
SERVER_KEY_LEN = 32
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


def _check_key_id(key_id: int) -> None:
    if not 0 <= key_id < 2**32:
        raise CryptbpfError(f"key id {key_id} is not a 32-bit unsigned integer")




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
    install_verifier(handle, key_id, verifier)


def revoke(handle, key_id: int) -> int:
    """Remove key_id's verifier and counters, then every authorization it
    granted. Returns the number of sources de-authorized."""
    _check_key_id(key_id)
    kid = key_id.to_bytes(4, "little")
    if not handle.map("zkp_keys").delete(kid):
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
