"""zkp-filter: challenge-response access control at XDP.

Protected ports are dropped at XDP for every source that has not proved
knowledge of a secret (HMAC-SHA256 challenge-response; a hash-based proof
of knowledge, not a zero-knowledge proof). The server stores per key id only
the verifier HMAC-SHA256(secret, "cryptbpf zkp v1"). Wire format:
bpf/include/zkp_filter.h; the client is cryptbpf.programs.zkp_filter.client.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any, Optional

import click

from ...errors import CryptbpfError
from ...netns import inside
from ...ports import udp_port as _port
from ...bpf.headers import Layout
from ...keys import random_key, read_key_file
from ..base import Hook, ProgramSpec
from .._cli import PATH, argument, examples as _ex, group, netns_option, pinned

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


class ZkpFilter(ProgramSpec):
    def check_options(self, options: dict[str, list[str]]) -> None:
        for p in options.get("protect", []):
            _port(p, "--protect")

    def setup(self, handle, key: Optional[bytes], options: dict[str, list[str]]) -> None:
        # The challenge key never leaves the kernel: fresh from the CSPRNG.
        install_server_key(handle, random_key(SERVER_KEY_LEN))
        for p in options.get("protect", []):
            protect(handle, _port(p))

    def status(self, handle) -> dict[str, Any]:
        return {"stats": self.stats(handle), "protected_ports": protected_ports(handle),
                "keys": [{"key_id": k, **c} for k, c in key_counters(handle).items()],
                "authorized": authorizations(handle)}


# ---------------------------------------------------------------- CLI

cli = group(help="zkp-filter: prove knowledge of a secret to open ports.")


def _secret(path: Path) -> bytes:
    return read_key_file(path, SECRET_SIZES)


@cli.command("connect", epilog=_ex("cryptbpf zkp connect 10.0.0.2 7227 --secret-file alice.secret --key-id 1",
                                   "sudo cryptbpf zkp connect 10.0.0.2 --netns blue --secret-file a.secret --key-id 1"))
@argument("host", metavar="HOST", help="The server (IPv4 address or name).")
@argument("port", type=int, default=7227, metavar="[PORT]", help="Control port of the filter.")
@click.option("--secret-file", type=PATH, required=True, metavar="FILE",
              help="The shared secret (mode 0600, 16-64 bytes).")
@click.option("--key-id", type=int, required=True, metavar="N", help="Key id the server registered this secret under.")
@click.option("--timeout", type=float, default=1.0, metavar="SECONDS", help="Seconds to wait for each answer.")
@click.option("--source", metavar="ADDR", help="Local address to send from.")
@netns_option("Network namespace to connect from.")
def connect(host: str, port: int, secret_file: Path, key_id: int, timeout: float, source: Optional[str],
            netns: Optional[str]):
    """Prove knowledge of the secret; on success this address may reach the
    protected ports (for the lifetime the server grants)."""
    from .client import connect as do_connect
    port, secret = _port(port), _secret(secret_file)
    with inside(netns):
        r = do_connect(host, port, secret, key_id, timeout=timeout, source=source)
    click.echo(f"authorized {r.client_addr} at {r.server} for {r.lifetime_s} s "
               f"(key id {r.key_id}, {r.rtt_ms:.1f} ms)")


@cli.command("verifier", epilog=_ex("cryptbpf zkp verifier --secret-file alice.secret --out alice.verifier"))
@click.option("--secret-file", type=PATH, required=True, metavar="FILE", help="The shared secret (mode 0600).")
@click.option("--out", type=PATH, required=True, metavar="FILE",
              help="Where to write the 32-byte verifier (mode 0600).")
def verifier(secret_file: Path, out: Path):
    """Derive the verifier a server stores (so the secret need not go there)."""
    from ...keys import write_key_file
    from .client import derive_verifier
    try:
        write_key_file(out, derive_verifier(_secret(secret_file)))
    except FileExistsError:
        raise CryptbpfError(f"{out} exists; refusing to overwrite") from None
    click.echo(f"wrote verifier to {out} (mode 0600)")


@cli.command("add-key", epilog=_ex("sudo cryptbpf zkp add-key 1 --verifier-file alice.verifier",
                                   "sudo cryptbpf zkp add-key 2 --secret-file bob.secret"))
@argument("key_id", type=int, metavar="ID", help="Key id clients will name.")
@click.option("--verifier-file", type=PATH, metavar="FILE", help="Verifier from `cryptbpf zkp verifier`.")
@click.option("--secret-file", type=PATH, metavar="FILE", help="Or the secret: only its verifier is stored.")
def add_key_cmd(key_id: int, verifier_file: Optional[Path], secret_file: Optional[Path]):
    """Register (or replace) the verifier of key ID in the loaded filter."""
    from .client import derive_verifier
    if (verifier_file is None) == (secret_file is None):
        raise CryptbpfError("give exactly one of --verifier-file and --secret-file")
    v = read_key_file(verifier_file, (32,)) if verifier_file else derive_verifier(_secret(secret_file))
    with pinned(NAME) as h:
        add_key(h, key_id, v)
    click.echo(f"{NAME}: key {key_id} installed")


@cli.command("revoke", epilog=_ex("sudo cryptbpf zkp revoke 1"))
@argument("key_id", type=int, metavar="ID", help="Key id.")
def revoke_cmd(key_id: int):
    """Remove key ID and every authorization it granted."""
    with pinned(NAME) as h:
        n = revoke(h, key_id)
    click.echo(f"{NAME}: key {key_id} revoked, {n} source(s) de-authorized")


@cli.command("protect", epilog=_ex("sudo cryptbpf zkp protect 22 8080"))
@argument("ports", nargs=-1, required=True, metavar="PORT...", help="TCP/UDP ports.")
def protect_cmd(ports: tuple[str, ...]):
    """Drop traffic to PORTs (TCP and UDP) from unauthorized sources."""
    with pinned(NAME) as h:
        for p in ports:
            protect(h, _port(p))
        click.echo(f"{NAME}: protected ports {protected_ports(h)}")


@cli.command("unprotect", epilog=_ex("sudo cryptbpf zkp unprotect 8080"))
@argument("ports", nargs=-1, required=True, metavar="PORT...", help="TCP/UDP ports.")
def unprotect_cmd(ports: tuple[str, ...]):
    """Stop guarding PORTs."""
    with pinned(NAME) as h:
        for p in ports:
            protect(h, _port(p), on=False)
        click.echo(f"{NAME}: protected ports {protected_ports(h)}")


@cli.command("list", epilog=_ex("sudo cryptbpf zkp list"))
def list_cmd():
    """Protected ports, keys with their counters, authorized sources."""
    with pinned(NAME) as h:
        click.echo(f"protected ports: {', '.join(map(str, protected_ports(h))) or 'none'}")
        for kid, c in key_counters(h).items():
            click.echo(f"key {kid}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
        for a in authorizations(h):
            click.echo(f"authorized {a['source']} (key {a['key_id']}, {a['expires_in_s']} s left)")


SPEC = ZkpFilter(
    name=NAME,
    object="zkp_filter",
    summary="challenge-response (HMAC) access control for ports, at XDP",
    hooks=[Hook("zkp_filter", "xdp")],
    requires=["xdp", "syscall_prog", "bpf_loop", "xdp_load_bytes", "dynptr_mem"],
    knobs={"control_port": "UDP port of the hello/proof exchange (default 7227)",
           "slot_s": "challenge time slot in seconds; a challenge lives 1-2 slots (default 30)",
           "auth_ttl_s": "seconds a valid proof authorizes its source (default 300)"},
    knob_ranges={"control_port": (1, 65535), "slot_s": (1, 86400), "auth_ttl_s": (1, 2**32 - 1)},
    header="zkp_filter",
    stats_type="struct zkp_filter_stats",
    commands={"zkp": cli},
    options={"protect": "port to guard (TCP and UDP), repeatable"},
    option_commands={"protect": "cryptbpf zkp protect PORT"},
    xdp_tx=True,
)
