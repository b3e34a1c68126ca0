"""`cryptbpf zkp-filter ...` (also `cryptbpf zkp ...`): proving, verifiers and
the administrator's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ...errors import CryptbpfError
from ...netns import inside
from ...ports import udp_port as _port
from ...keys import read_key_file
from .._cli import PATH, argument, examples as _ex, group, netns_option, pinned
from .control import (DEFAULT_KEY_BURST, DEFAULT_KEY_RATE, NAME, SECRET_SIZES, add_key, add_zk_key,
                      authorizations, key_counters, key_modes, protect, protected_ports, revoke)


cli = group(help="zkp-filter: prove knowledge of a key (Schnorr zero-knowledge proof, or HMAC) to open ports.")


def _secret(path: Path) -> bytes:
    return read_key_file(path, SECRET_SIZES)


@cli.command("connect", epilog=_ex("cryptbpf zkp connect 10.0.0.2 7227 --key alice.pem --key-id 2",
                                   "cryptbpf zkp connect 10.0.0.2 7227 --secret-file alice.secret --key-id 1",
                                   "sudo cryptbpf zkp connect 10.0.0.2 --netns blue --key a.pem --key-id 2"))
@argument("host", metavar="HOST", help="The server (IPv4 address or name).")
@argument("port", type=int, default=7227, metavar="[PORT]", help="Control port of the filter.")
@click.option("--key", "key_file", type=PATH, metavar="FILE",
              help="P-256 private key PEM (mode 0600, `cryptbpf keys generate`): Schnorr mode.")
@click.option("--secret-file", type=PATH, metavar="FILE",
              help="Or the shared secret (mode 0600, 16-64 bytes): HMAC mode.")
@click.option("--key-id", type=int, required=True, metavar="N", help="Key id the server registered the key under.")
@click.option("--timeout", type=float, default=1.0, metavar="SECONDS", help="Seconds to wait for each answer.")
@click.option("--source", metavar="ADDR", help="Local address to send from.")
@netns_option("Network namespace to connect from.")
def connect(host: str, port: int, key_file: Optional[Path], secret_file: Optional[Path], key_id: int,
            timeout: float, source: Optional[str], netns: Optional[str]):
    """Prove knowledge of the key; on success this address may reach the
    protected ports (for the lifetime the server grants)."""
    from .client import connect as do_connect, connect_zk
    if (key_file is None) == (secret_file is None):
        raise CryptbpfError("give exactly one of --key (Schnorr) and --secret-file (HMAC)")
    port = _port(port)
    if key_file:
        from ...crypto.p256_keys import load_private_key
        key = load_private_key(key_file)
        with inside(netns):
            r = connect_zk(host, port, key, key_id, timeout=timeout, source=source)
    else:
        secret = _secret(secret_file)
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


@cli.command("add-key", epilog=_ex("sudo cryptbpf zkp add-key 2 --public-key alice.pub.pem",
                                   "sudo cryptbpf zkp add-key 3 --public-key bob.pub.pem --rate 10 --burst 5",
                                   "sudo cryptbpf zkp add-key 1 --verifier-file carol.verifier"))
@argument("key_id", type=int, metavar="ID", help="Key id clients will name.")
@click.option("--public-key", type=PATH, metavar="FILE",
              help="P-256 public key PEM: Schnorr mode (the server stores only this).")
@click.option("--verifier-file", type=PATH, metavar="FILE", help="Or HMAC mode: verifier from `cryptbpf zkp verifier`.")
@click.option("--secret-file", type=PATH, metavar="FILE", help="Or HMAC mode: the secret (only its verifier is stored).")
@click.option("--rate", type=int, default=DEFAULT_KEY_RATE, metavar="N",
              help="Schnorr: verifications per second for this key.")
@click.option("--burst", type=int, default=DEFAULT_KEY_BURST, metavar="N", help="Schnorr: verifications back to back.")
def add_key_cmd(key_id: int, public_key: Optional[Path], verifier_file: Optional[Path],
                secret_file: Optional[Path], rate: int, burst: int):
    """Register (or replace) key ID in the loaded filter; its mode follows
    the option (one mode per key id)."""
    from .client import derive_verifier
    if sum(x is not None for x in (public_key, verifier_file, secret_file)) != 1:
        raise CryptbpfError("give exactly one of --public-key, --verifier-file and --secret-file")
    if public_key:
        from ...crypto.p256_keys import load_public_key, public_point
        point = public_point(load_public_key(public_key))
        with pinned(NAME) as h:
            fp = add_zk_key(h, key_id, point, rate, burst)
        click.echo(f"{NAME}: key {key_id} installed (schnorr, fingerprint {fp[:16]})")
        return
    v = read_key_file(verifier_file, (32,)) if verifier_file else derive_verifier(_secret(secret_file))
    with pinned(NAME) as h:
        add_key(h, key_id, v)
    click.echo(f"{NAME}: key {key_id} installed (hmac)")


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
        modes = key_modes(h)
        for kid, c in key_counters(h).items():
            click.echo(f"key {kid} ({modes.get(kid, '?')}): " + ", ".join(f"{k} {v}" for k, v in c.items()))
        for a in authorizations(h):
            click.echo(f"authorized {a['source']} (key {a['key_id']}, {a['expires_in_s']} s left)")
