"""`cryptbpf content-verifier ...` (also `cryptbpf cas ...`): content-addressed
transfer and the allowlist."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import click

from . import client as cas
from ...errors import CryptbpfError
from ...netns import inside
from ...ports import udp_port
from .._cli import PATH, argument, examples as _examples, group, netns_option, pinned
from .control import NAME, allow, allowlist, deny, enforced, set_enforce


app = group(help="Content-addressed transfer (peer of content-verifier) and the verifier's allowlist.")


def _parse_id(text: str) -> bytes:
    try:
        b = bytes.fromhex(text)
    except ValueError:
        b = b""
    if len(b) != cas.ID_LEN:
        raise CryptbpfError(f"{text!r} is not a content id (64 hex digits)")
    return b


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CryptbpfError(f"{path}: {e.strerror}") from None


@app.command("send", epilog=_examples("cryptbpf cas send report.pdf 10.0.0.2 7310",
                                      "cryptbpf cas send big.iso 10.0.0.2 7310 --mtu 1400 --linger 10",
                                      "sudo cryptbpf cas send report.pdf 10.0.0.2 7310 --netns blue"))
@argument("file", type=PATH, metavar="FILE", help="The file to send.")
@argument("host", metavar="HOST", help="The receiver (address or name).")
@argument("port", type=int, metavar="PORT", help="The receiver's UDP port.")
@click.option("--mtu", type=int, metavar="N", help="Chunk for this MTU (default: the path MTU).")
@click.option("--linger", type=float, default=3.0, metavar="SECONDS",
              help="Seconds to wait for the receiver's requests.")
@netns_option("Network namespace to send from.")
def send(file: Path, host: str, port: int, mtu: Optional[int], linger: float, netns: Optional[str]):
    """Send FILE as content-addressed chunks plus a manifest tree; repeat
    what the receiver asks for. Prints the root id, which names the file."""
    port = udp_port(port)
    data = _read(file)
    with inside(netns):
        r = cas.send_file(data, host, port, mtu, linger)
    click.echo(f"root {r.root.hex()}")
    click.echo(f"sent {r.size} bytes as {r.chunks} chunks in {r.datagrams} datagrams "
               f"({r.resent} resent on request)")
    if not r.confirmed:
        raise CryptbpfError(f"no confirmation from {host}:{port} within {linger:g}s of the last "
                            "datagram (is `cryptbpf cas recv` running there?)")
    click.echo("receiver confirmed the whole file")


@app.command("recv", epilog=_examples("cryptbpf cas recv out.bin",
                                      "cryptbpf cas recv out.bin --port 7310 --expect 3f1c...e9",
                                      "sudo cryptbpf cas recv out.bin --netns blue"))
@argument("out", type=PATH, metavar="FILE", help="Where to write the file.")
@click.option("--port", type=int, default=cas.DEFAULT_PORT, metavar="PORT",
              help="UDP port to receive on (the protected port).")
@click.option("--bind", default="0.0.0.0", metavar="ADDR", help="Address to bind (IPv4, or IPv6 such as ::).")
@click.option("--expect", metavar="ID", help="Root id the file must have.")
@click.option("--timeout", type=float, default=10.0, metavar="SECONDS",
              help="Give up after this many seconds without a new chunk.")
@netns_option("Network namespace to receive in.")
def recv(out: Path, port: int, bind: str, expect: Optional[str], timeout: float, netns: Optional[str]):
    """Receive one file: keep only chunks whose content hashes to their id,
    ask for missing ones, write FILE once the whole tree is there."""
    root = _parse_id(expect) if expect else None
    with inside(netns), cas.receive_socket(udp_port(port, "--port"), bind) as s:
        r = cas.Receiver(s, expect=root, timeout=timeout).run()
    if r.rejected:
        click.echo("rejected in userspace: " + ", ".join(f"{k}: {v}" for k, v in r.rejected.items()))
    if r.data is None:
        if r.root is None:
            raise CryptbpfError(f"no root manifest arrived within {timeout:g}s")
        raise CryptbpfError(f"incomplete after {timeout:g}s without progress: {len(r.missing)} chunk(s) "
                            f"missing, e.g. {', '.join(m.hex()[:16] for m in r.missing[:4])}")
    tmp = out.with_name(f".{out.name}.part")
    tmp.write_bytes(r.data)
    os.replace(tmp, out)
    click.echo(f"root {r.root.hex()}")
    click.echo(f"wrote {len(r.data)} bytes to {out} from {r.verified} verified chunks "
               f"({r.duplicates} duplicates, {r.requests} requests sent)")


@app.command("ids", epilog=_examples("cryptbpf cas ids report.pdf", "cryptbpf cas ids report.pdf --mtu 9000"))
@argument("file", type=PATH, metavar="FILE", help="The file.")
@click.option("--mtu", type=int, default=1500, metavar="N", help="MTU the sender will chunk for.")
def ids(file: Path, mtu: int):
    """Print the root id and every chunk id FILE is sent as."""
    enc = cas.encode(_read(file), cas.chunk_size_for_mtu(mtu))
    click.echo(f"root {enc.root.hex()}")
    for i in enc.order[1:]:
        kind = "manifest" if enc.chunks[i].type == cas.MANIFEST_T else "data"
        click.echo(f"{kind:<8} {i.hex()}")


@app.command("allow", epilog=_examples("sudo cryptbpf cas allow --file report.pdf",
                                       "sudo cryptbpf cas allow 3f1c...e9 77a0...01"))
@argument("ids_", nargs=-1, metavar="[ID]...", help="Content ids (64 hex digits).")
@click.option("--file", type=PATH, multiple=True, metavar="FILE",
              help="Allow every chunk of this file (repeatable).")
@click.option("--mtu", type=int, default=1500, metavar="N", help="MTU the sender chunks FILE for.")
def allow_cmd(ids_: tuple[str, ...], file: tuple[Path, ...], mtu: int):
    """Add ids to the loaded content-verifier's allowlist."""
    wanted = [_parse_id(i) for i in ids_ or []]
    for f in file:
        wanted += list(cas.encode(_read(f), cas.chunk_size_for_mtu(mtu)).chunks)
    if not wanted:
        raise CryptbpfError("nothing to allow: give ids or --file")
    with pinned(NAME) as h:
        new = allow(h, wanted)
        total = len(allowlist(h))
    click.echo(f"{new} id(s) added, {total} on the allowlist")


@app.command("deny", epilog=_examples("sudo cryptbpf cas deny 3f1c...e9", "sudo cryptbpf cas deny --all"))
@argument("ids_", nargs=-1, metavar="[ID]...", help="Content ids (64 hex digits).")
@click.option("--all", "all_", is_flag=True, help="Empty the allowlist.")
def deny_cmd(ids_: tuple[str, ...], all_: bool):
    """Remove ids from the allowlist."""
    if not ids_ and not all_:
        raise CryptbpfError("nothing to remove: give ids or --all")
    wanted = None if all_ else [_parse_id(i) for i in ids_]
    with pinned(NAME) as h:
        n = deny(h, wanted)
    click.echo(f"{n} id(s) removed")


@app.command("allowlist", epilog=_examples("sudo cryptbpf cas allowlist"))
def allowlist_cmd():
    """Show the allowlist (id and verified hits) and whether it is enforced."""
    with pinned(NAME) as h:
        entries, on = allowlist(h), enforced(h)
    click.echo(f"allowlist {'enforced' if on else 'not enforced'}, {len(entries)} id(s)")
    for i, hits in sorted(entries.items()):
        click.echo(f"{i.hex()} {hits}")


@app.command("enforce", epilog=_examples("sudo cryptbpf cas enforce on", "sudo cryptbpf cas enforce off"))
@argument("state", type=click.Choice(["on", "off"]), metavar="on|off", help="on or off.")
def enforce_cmd(state: str):
    """Drop every id not on the allowlist (on), or only forgeries (off)."""
    if state not in ("on", "off"):
        raise CryptbpfError(f"enforce takes on or off, not {state!r}")
    with pinned(NAME) as h:
        set_enforce(h, state == "on")
        n = len(allowlist(h))
    click.echo(f"allowlist {'enforced' if state == 'on' else 'not enforced'} ({n} id(s))")
