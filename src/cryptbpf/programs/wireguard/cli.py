"""`cryptbpf wireguard ...` (also `cryptbpf wg ...`): WireGuard interfaces
from wg-quick files, as wg-quick and wg do it."""

from __future__ import annotations

import sys
import time
from typing import Optional

import click

from ...errors import CryptbpfError
from ...netns import inside
from .._cli import PATH, argument, examples as _ex, group, netns_option

cli = group(help="wireguard: WireGuard interfaces (handshake daemon, data plane in BPF).")


@cli.command("up", epilog=_ex("sudo cryptbpf wg up /etc/wireguard/wg0.conf",
                              "sudo cryptbpf wg up wg1.conf --netns blue"))
@argument("config", type=PATH, metavar="CONFIG", help="wg-quick file (mode 0600); the interface is named after it.")
@click.option("--foreground", is_flag=True, help="Run the daemon here instead of in the background.")
@netns_option("Network namespace to make the interface in.")
def up_cmd(config, foreground: bool, netns: Optional[str]):
    """Bring up the interface of a wg-quick file: the data plane and the
    handshake daemon (in the background; state under /run/cryptbpf/wg)."""
    from . import daemon
    with inside(netns):
        if foreground:
            daemon.run_foreground(str(config))
            return
        name = daemon.up(str(config), netns)
        click.echo(f"{name}: up (pid {daemon.daemon_pid(name)})")


@cli.command("down", epilog=_ex("sudo cryptbpf wg down wg0", "sudo cryptbpf wg down /etc/wireguard/wg0.conf",
                                "sudo cryptbpf wg down wg1 --netns blue"))
@argument("name", metavar="NAME|CONFIG", help="Interface name, or its wg-quick file.")
@netns_option("Network namespace of the interface.")
def down_cmd(name: str, netns: Optional[str]):
    """Stop the interface's daemon and remove everything it made (also
    after the daemon was killed)."""
    from . import daemon
    with inside(netns):
        done = daemon.down(name)
    click.echo(f"{daemon.interface_name(name)}: down ({'; '.join(done)})")


@cli.command("show", epilog=_ex("sudo cryptbpf wg show", "sudo cryptbpf wg show wg0",
                                "sudo cryptbpf wg show wg0 dump", "sudo cryptbpf wg show all dump",
                                "sudo cryptbpf wg show wg0 --json"))
@argument("name", required=False, metavar="[NAME]", help="Interface (default: all).")
@argument("mode", required=False, type=click.Choice(["dump"]), metavar="[dump]",
          help="Tab-separated, one line per interface and peer, as `wg show dump`.")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object: {"interfaces": [...]} with public keys, ports, peers (no private keys).')
@netns_option("Network namespace of the interfaces.")
def show_cmd(name: Optional[str], mode: Optional[str], as_json: bool, netns: Optional[str]):
    """Interfaces and peers as `wg show` prints them (keys other than
    public ones hidden), or as JSON."""
    import json

    from . import daemon, show
    if name == "dump" and mode is None:
        name, mode = None, "dump"
    if as_json and mode == "dump":
        raise CryptbpfError("wg show: dump or --json, not both")
    with inside(netns):
        names = [name] if name not in (None, "all") else daemon.names()
        statuses = [daemon.status(n) for n in names]
    now = time.time()
    if as_json:
        click.echo(json.dumps(show.json_doc(statuses), indent=2))
        return
    if mode == "dump":
        lines = show.dump(statuses, prefix=name in (None, "all"))
    else:
        lines = show.text(statuses, now)
    if lines:
        click.echo("\n".join(lines))


@cli.command("genkey", epilog=_ex("cryptbpf wg genkey > wg0.key"))
def genkey_cmd():
    """A new private key, base64, on stdout (as `wg genkey`)."""
    from . import noise
    click.echo(noise.key_to_base64(noise.generate_private_key()))


@cli.command("pubkey", epilog=_ex("cryptbpf wg genkey | cryptbpf wg pubkey"))
def pubkey_cmd():
    """The public key of the private key on stdin (as `wg pubkey`)."""
    from . import noise
    try:
        priv = noise.key_from_base64(sys.stdin.read())
    except CryptbpfError as e:
        raise CryptbpfError(f"pubkey: stdin: {e}") from None
    click.echo(noise.key_to_base64(noise.public_key(priv)))


@cli.command("genpsk", epilog=_ex("cryptbpf wg genpsk > wg0.psk"))
def genpsk_cmd():
    """A new preshared key, base64, on stdout (as `wg genpsk`)."""
    from . import noise
    click.echo(noise.key_to_base64(noise.generate_psk()))
