"""`cryptbpf signed-auth ...` (the receiver's keys and ports) and `cryptbpf
sign ...` (the sending side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from ...netns import inside
from ...ports import udp_port
from .._cli import PATH, argument, examples as _examples, group, json_option, netns_option, pinned
from .control import (DEFAULT_KEY_BURST, DEFAULT_KEY_RATE, NAME, _key_line, _read_point, keys, revoke,
                      set_ports, trust)


cli = group()


@cli.command("trust", epilog=_examples("sudo cryptbpf signed-auth trust alice.pub.pem --id 7",
                                       "sudo cryptbpf signed-auth trust bob.pub.pem --id 8 --rate 50 --burst 10"))
@argument("public_key", type=PATH, metavar="FILE", help="PEM public key (P-256).")
@click.option("--id", "key_id", type=int, required=True, metavar="N", help="Key id senders put in their trailer.")
@click.option("--rate", type=int, default=DEFAULT_KEY_RATE, metavar="N", help="Verifications per second for this key.")
@click.option("--burst", type=int, default=DEFAULT_KEY_BURST, metavar="N", help="Verifications back to back.")
def trust_cmd(public_key: Path, key_id: int, rate: int, burst: int):
    """Trust a public key under an id (validated first; takes effect at once)."""
    point = _read_point(public_key)
    with pinned(NAME) as h:
        fp = trust(h, key_id, point, rate, burst)
    click.echo(f"signed-auth: key {key_id} trusted, fingerprint {fp[:16]}")


@cli.command("revoke", epilog=_examples("sudo cryptbpf signed-auth revoke --id 7",
                                        "sudo cryptbpf signed-auth revoke --id 7 --purge"))
@click.option("--id", "key_id", type=int, required=True, metavar="N", help="Key id to revoke.")
@click.option("--purge/--no-purge", default=False, help="Forget the id (counters, replay window) too.")
def revoke_cmd(key_id: int, purge: bool):
    """Stop trusting a key id immediately."""
    with pinned(NAME) as h:
        revoke(h, key_id, purge)
    click.echo(f"signed-auth: key {key_id} {'purged' if purge else 'revoked'}")


@cli.command("keys", epilog=_examples("sudo cryptbpf signed-auth keys", "sudo cryptbpf signed-auth keys --json"))
@json_option()
def keys_cmd(as_json: bool):
    """Trusted and revoked keys with their per-reason counters."""
    with pinned(NAME) as h:
        ks = keys(h)
    if as_json:
        click.echo(json.dumps(ks, indent=2))
        return
    if not ks:
        click.echo("no keys trusted")
    for k in ks:
        click.echo(f"key {k['id']}: {_key_line(k)}")


@cli.command("protect", epilog=_examples("sudo cryptbpf signed-auth protect 5000 5001"))
@argument("ports", type=int, nargs=-1, required=True, metavar="PORT...", help="UDP ports.")
def protect_cmd(ports: tuple[int, ...]):
    """Require signatures on more UDP ports."""
    with pinned(NAME) as h:
        now = set_ports(h, add=ports)
    click.echo(f"signed-auth: protected ports {', '.join(map(str, now))}")


@cli.command("unprotect", epilog=_examples("sudo cryptbpf signed-auth unprotect 5001"))
@argument("ports", type=int, nargs=-1, required=True, metavar="PORT...", help="UDP ports.")
def unprotect_cmd(ports: tuple[int, ...]):
    """Stop requiring signatures on UDP ports."""
    with pinned(NAME) as h:
        now = set_ports(h, remove=ports)
    click.echo(f"signed-auth: protected ports {', '.join(map(str, now)) or 'none'}")


# ---- CLI: cryptbpf sign ... (the sending side; needs no BPF) ----

sign_cli = group(help="Send signed datagrams (signed-auth peer).")


@sign_cli.command("send", epilog=_examples(
    "cryptbpf sign send --key alice.pem --id 7 10.0.0.2 4242 'hello'",
    "echo -n payload | cryptbpf sign send --key alice.pem --id 7 10.0.0.2 4242 -",
    "sudo cryptbpf sign send --netns blue --key a.pem --id 7 10.0.0.2 4242 hello"))
@argument("host", metavar="HOST", help="Receiver (IPv4 address or name).")
@argument("port", type=int, metavar="PORT", help="Receiver's UDP port.")
@argument("data", default="-", metavar="[DATA]", help="Payload, or - to read it from stdin.")
@click.option("--key", type=PATH, required=True, metavar="FILE", help="Private key PEM (mode 0600).")
@click.option("--id", "key_id", type=int, required=True, metavar="N", help="Key id the receiver trusts it under.")
@click.option("--source-port", type=int, default=0, metavar="PORT", help="Local UDP port (0: ephemeral).")
@click.option("--seq", type=int, metavar="N", help="Sequence number (default: wall clock in ns; "
                                                   "the receiver refuses one older than its max_skew_s).")
@netns_option("Network namespace to send from.")
def sign_send(host: str, port: int, data: str, key: Path, key_id: int, source_port: int,
              seq: Optional[int], netns: Optional[str]):
    """Sign DATA (or stdin) for this host's address and port and send it."""
    import socket
    import sys
    from ...addresses import resolve_ipv4
    from .client import Signer
    port = udp_port(port)
    if source_port:
        udp_port(source_port, "--source-port")
    payload = sys.stdin.buffer.read() if data == "-" else data.encode()
    signer = Signer.from_pem_file(key, key_id, seq)
    with inside(netns), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        if source_port:
            s.bind(("0.0.0.0", source_port))
        s.connect((resolve_ipv4(host), port))
        n = signer.send(s, payload)
        src = s.getsockname()
    click.echo(f"sent {len(payload)} bytes (+{n - len(payload)} trailer) from {src[0]}:{src[1]} "
               f"to {host}:{port}, key {key_id}")


# the sending side under the program's own name too: `cryptbpf signed-auth sign send`
cli.add_command(sign_cli, "sign")
