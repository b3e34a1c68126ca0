"""`cryptbpf encrypted-logger ...` (also `cryptbpf logs ...`): follow, record,
verify and show the sealed exec log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from . import wire as auditlog
from ...errors import CryptbpfError
from ...bpf.pins import Pinned
from .._cli import PATH, argument, examples as _ex, group, json_option
from .control import KEY_SIZE, NAME, _Stop, follow, record, rotate


logs_app = group(help="Read, record and verify encrypted-logger's sealed exec log.")


def _master(key_file: Path) -> bytes:
    from ...keys import read_key_file
    return read_key_file(key_file, (KEY_SIZE,))


def _pinned() -> Pinned:
    from ...lifecycle import require_privileges
    require_privileges()
    return Pinned(NAME)


@logs_app.command("follow", epilog=_ex("sudo cryptbpf logs follow --key-file log.key",
                                       "sudo cryptbpf logs follow --key-file log.key --json | jq .argv"))
@click.option("--key-file", type=PATH, required=True, metavar="FILE", help="Master key file (mode 0600).")
@json_option("One JSON object per line.")
@click.option("--count", type=int, metavar="N", help="Stop after this many exec records.")
@click.option("--duration", type=float, metavar="SECONDS", help="Stop after this many seconds.")
def follow_cmd(key_file: Path, as_json: bool, count: Optional[int], duration: Optional[float]):
    """Decrypt and verify the live log; gaps and forgeries are shown, never skipped.
    Only one reader (follow or record) should consume the log at a time."""
    master = _master(key_file)

    def emit(r: dict):
        if as_json:
            click.echo(json.dumps(r), nl=True)
        elif r["type"] in ("gap", "alert"):
            click.echo(f"-- {r['type']}: {r['message']}")
        else:
            click.echo(auditlog.format_text(r))

    with _pinned() as h, _Stop(duration, count) as stop:
        follow(h, master, emit, stop)


@logs_app.command("record", epilog=_ex("sudo cryptbpf logs record /var/log/exec.clog",
                                       "sudo cryptbpf logs record exec.clog --duration 60"))
@argument("path", type=PATH, metavar="FILE", help="Log file (created mode 0600, or appended to).")
@click.option("--duration", type=float, metavar="SECONDS",
              help="Stop after this many seconds (default: until SIGINT/SIGTERM).")
@click.option("--count", type=int, metavar="N", help="Stop after this many exec records.")
def record_cmd(path: Path, duration: Optional[float], count: Optional[int]):
    """Append the sealed records to FILE as they come (no key needed)."""
    with _pinned() as h, _Stop(duration, count) as stop:
        res = record(h, path, stop, lambda m: click.echo(m, err=True))
    click.echo(f"{path}: {res['written']} records appended (run {res['run_id']:016x})"
               + (f", {res['skipped']} backlog records skipped (not continuous with the file)"
                  if res["skipped"] else ""))


@logs_app.command("verify", epilog=_ex("cryptbpf logs verify exec.clog --key-file log.key",
                                       "cryptbpf logs verify exec.clog --key-file log.key --json"))
@argument("path", type=PATH, metavar="FILE", help="Log file written by `cryptbpf logs record`.")
@click.option("--key-file", type=PATH, required=True, metavar="FILE", help="Master key file (mode 0600).")
@json_option("Machine-readable report.")
def verify_cmd(path: Path, key_file: Path, as_json: bool):
    """Prove FILE intact, or report each modified, reordered, dropped or
    truncated record by position. Exit status 1 if anything is wrong."""
    if not path.is_file():
        raise CryptbpfError(f"{path}: no such file")
    rep = auditlog.verify_file(path, _master(key_file))
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2))
    else:
        click.echo(f"{path}: {rep.records} records ({rep.exec_records} exec, {rep.marks} marks), "
                   f"{rep.authentic} authentic, {rep.first_time or '-'} .. {rep.last_time or '-'}")
        for n in rep.notes:
            click.echo(f"  note: {n.message}")
        for p in rep.problems:
            click.echo(f"  {p.kind.upper()}: {p.message}")
        click.echo("intact" if rep.intact else f"NOT intact: {len(rep.problems)} problem(s)")
    if not rep.intact:
        raise click.exceptions.Exit(1)


@logs_app.command("show", epilog=_ex("cryptbpf logs show exec.clog --key-file log.key --json"))
@argument("path", type=PATH, metavar="FILE", help="Log file.")
@click.option("--key-file", type=PATH, required=True, metavar="FILE", help="Master key file (mode 0600).")
@json_option("One JSON object per line.")
def show_cmd(path: Path, key_file: Path, as_json: bool):
    """Decrypt a log file (each record authenticated; use `verify` for completeness)."""
    if not path.is_file():
        raise CryptbpfError(f"{path}: no such file")
    for r in auditlog.read_file(path, _master(key_file)):
        click.echo(json.dumps(r) if as_json else auditlog.format_text(r))


@logs_app.command("rotate", epilog=_ex("sudo cryptbpf logs rotate"))
def rotate_cmd():
    """Advance the in-kernel key to the next epoch now (and wipe the old one)."""
    with _pinned() as h:
        epoch = rotate(h)
    click.echo(f"{NAME}: key ratcheted, epoch {epoch}")
