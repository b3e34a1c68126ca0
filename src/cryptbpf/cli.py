"""The `cryptbpf` command line: a thin layer over the library.

Every error the library raises on purpose, and every usage error (a missing
argument, an unknown option, a value of the wrong type), becomes one line,
`cryptbpf: <message>`, and exit status 1; never a traceback.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any, List

import click

from . import lifecycle, programs
from .bpf._ffi import set_verbose
from .errors import CryptbpfError
from .programs._cli import (CONTEXT_SETTINGS, PATH, Group, argument, examples as _examples,
                            json_option)


@click.group(cls=Group, context_settings=CONTEXT_SETTINGS,
             help="Cryptography in the kernel's packet path, as BPF programs.")
@click.option("-v", "--verbose", is_flag=True, help="Show libbpf's messages (and verifier logs).")
@click.version_option(None, "--version", package_name="cryptbpf", prog_name="cryptbpf",
                      message="%(prog)s %(version)s", help="Show the version and exit.")
def app(verbose: bool):
    set_verbose(verbose)


@app.group("keys", cls=Group)
def keys_app():
    """Create and install keys."""


def _parse_knobs(pairs: List[str]) -> dict[str, int]:
    knobs = {}
    for p in pairs:
        name, sep, val = p.partition("=")
        if not sep:
            raise CryptbpfError(f"--set takes NAME=VALUE, got {p!r}")
        try:
            knobs[name] = int(val, 0)
        except ValueError:
            raise CryptbpfError(f"--set {name}: {val!r} is not an integer") from None
    return knobs


def _emit(data, as_json: bool, text) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        text(data)


def _parse_options(args: List[str]) -> dict[str, list[str]]:
    """A program's own load options (ProgramSpec.options): `--name value`
    or `--name=value`, repeatable; the spec checks names and values."""
    opts: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise CryptbpfError(f"unexpected argument {a!r}")
        name, sep, val = a[2:].partition("=")
        if not sep:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise CryptbpfError(f"--{name} needs a value")
            i += 1
            val = args[i]
        opts.setdefault(name.replace("-", "_"), []).append(val)
        i += 1
    return opts


def hook_text(a: dict) -> str:
    """One line for a hook record (load record or `status --json`)."""
    if a["kind"] == "tc":
        return f"tc {a['point']} (handle {a['handle']:#x}, prio {a['priority']})"
    if a["kind"] == "link":
        return f"link {a['section']} ({a['program']}, pinned at {a['pin']})"
    requested = a.get("requested")
    asked = f", requested {requested}" if requested and requested != a.get("mode") else ""
    return f"xdp ({a.get('mode')}{asked}, prog id {a.get('prog_id')})"


def _scalar(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _flat(v: Any) -> bool:
    """Shown on one line: a scalar, or a list of scalars."""
    if isinstance(v, (list, tuple)):
        return all(not isinstance(x, (dict, list, tuple)) for x in v)
    return not isinstance(v, dict)


def _inline(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(map(_scalar, v)) or "none"
    return _scalar(v)


def text_lines(value: Any, indent: int = 0) -> list[str]:
    """Nested dicts and lists as indented `name: value` lines (keys of a
    dict aligned, list items as `- ...`): the text view of JSON data."""
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, dict):
        width = max((len(str(k)) for k, v in value.items() if _flat(v) or not v), default=0) + 1
        for k, v in value.items():
            if _flat(v) or not v:
                out.append(f"{pad}{str(k) + ':':<{width}} {_inline(v) if v != {} else 'none'}".rstrip())
            else:
                out.append(f"{pad}{k}:")
                out += text_lines(v, indent + 2)
    elif isinstance(value, (list, tuple)):
        for item in value:
            sub = text_lines(item, indent + 2) if isinstance(item, (dict, list, tuple)) and item \
                else [f"{pad}  {_scalar(item)}"]
            out.append(f"{pad}- {sub[0].lstrip()}")
            out += sub[1:]
    else:
        out.append(f"{pad}{_scalar(value)}")
    return out


@app.command(epilog=_examples("sudo cryptbpf load aes-roundtrip eth0 --key-file aes.key",
                              "sudo cryptbpf load aes-roundtrip veth0 --netns blue --set udp_port=5000",
                              "sudo cryptbpf load encrypted-tunnel eth0 --key-file t.key --peer 10.0.0.2",
                              "sudo cryptbpf load encrypted-logger --key-file log.key"),
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@argument("program", help="Program name (see `cryptbpf programs`).")
@argument("device", required=False,
          help="Network interface to attach to (none for programs that hook the kernel, "
               "e.g. encrypted-logger).")
@click.option("--key-file", type=PATH, metavar="FILE", help="Key file (mode 0600).")
@click.option("--set", "set_", multiple=True, metavar="NAME=VALUE", help="Setting (repeatable).")
@click.option("--xdp-mode", type=click.Choice(["auto", "skb", "drv", "hw"]), default="auto",
              metavar="MODE", help="XDP mode: auto, skb, drv or hw.")
@click.option("--netns", metavar="NS", help="Network namespace of DEVICE.")
@click.pass_context
def load(ctx: click.Context, program: str, device: str | None, key_file: Path | None,
         set_: tuple[str, ...], xdp_mode: str, netns: str | None):
    """Attach PROGRAM to DEVICE and pin it; it keeps running after exit.

    Programs may take further options of their own, given after the others
    as --NAME VALUE (see `cryptbpf programs`)."""
    from .keys import read_key_file
    from .bpf.pins import pin_dir
    spec = programs.get(program)
    key = read_key_file(key_file, spec.key_sizes) if key_file else None
    state = lifecycle.load(spec, device, _parse_knobs(list(set_)), key, xdp_mode, netns,
                           _parse_options(ctx.args))
    dkey = lifecycle.device_key(device, lifecycle.caller_netns(netns))
    hooks = ", ".join(a["kind"] + (" " + a["point"] if a["kind"] == "tc" else "")
                      + (" " + a["section"] if a["kind"] == "link" else "")
                      for a in state["devices"][dkey]["hooks"])
    click.echo(f"{spec.name}: attached to {dkey} ({hooks}); pinned under {pin_dir(spec.name)}")


@app.command(epilog=_examples("sudo cryptbpf unload aes-roundtrip eth0",
                              "sudo cryptbpf unload aes-roundtrip   # every device"))
@argument("program", help="Program name.")
@argument("device", required=False, help="Detach from this device only (default: every device).")
@click.option("--netns", metavar="NS", help="Network namespace of DEVICE.")
def unload(program: str, device: str | None, netns: str | None):
    """Remove every filter, hook and pin the program's load made."""
    spec = programs.get(program)
    gone = lifecycle.unload(spec.name, device, netns)
    click.echo(f"{spec.name}: detached from {', '.join(gone) or 'nothing'}")


def status_text(entries: list[dict]) -> list[str]:
    """`cryptbpf status` as text, from the same data as `status --json`."""
    if not entries:
        return ["nothing loaded"]
    out = []
    for e in entries:
        out.append(e["program"])
        for dev, hooks in e["devices"].items():
            out.append(f"  {dev}: {'; '.join(hook_text(h) for h in hooks)}")
        rest = {k: v for k, v in e.items() if k not in ("program", "devices", "object")}
        out += text_lines(rest, 2)
    return out


@app.command(epilog=_examples("sudo cryptbpf status", "sudo cryptbpf status --json"))
@json_option()
def status(as_json: bool):
    """What is loaded where, with each program's counters."""
    lifecycle.require_privileges()
    data = lifecycle.status(programs.discover())
    _emit(data, as_json, lambda d: click.echo("\n".join(status_text(d))))


@app.command(epilog=_examples("cryptbpf doctor", "cryptbpf doctor --json | jq .programs"))
@json_option()
def doctor(as_json: bool):
    """Kernel, privileges, features, and whether each program can run here."""
    from .doctor import report
    data = report(programs.discover())

    def text(r):
        k = r["kernel"]
        click.echo(f"kernel      {k['release']} ({k['machine']}), BTF {'yes' if k['btf'] else 'NO'}")
        click.echo(f"libbpf      {r['libbpf']}")
        p = r["privileges"]
        click.echo(f"privileges  {'sufficient' if p['sufficient'] else 'INSUFFICIENT (run as root)'}")
        click.echo(f"bpffs       {r['bpffs']['detail']}")
        click.echo("features")
        for n, f in r["features"].items():
            since = f"Linux {f['since']}+" if f["since"] else "out of tree"
            click.echo(f"  {'yes' if f['available'] else 'no ':<4} {n:<22} {f['what']} [{since}]")
        click.echo("primitives")
        for n, path in r["primitives"].items():
            click.echo(f"  {n:<18} {path}")
        click.echo("programs")
        for n, pr in r["programs"].items():
            ok = {True: "ok", False: "NO", None: "?"}[pr["runnable"]]
            extra = pr.get("reason") or f"loads ({sum(pr.get('verified_insns', {}).values())} insns verified)"
            click.echo(f"  {ok:<3} {n:<18} {extra}")
            for what, why in pr.get("unavailable", {}).items():
                click.echo(f"  {'':<3} {'':<18} not here: {what} ({why})")
    _emit(data, as_json, text)


@app.command("programs")
def list_programs():
    """List the programs cryptbpf knows, with their load options."""
    for name, spec in programs.discover().items():
        click.echo(f"{name:<18} {spec.summary}")
        for opt, text in {**{f"--set {k}=N": v for k, v in spec.knobs.items()},
                          **{f"--{o.replace('_', '-')} V": h for o, h in spec.options.items()}}.items():
            click.echo(f"{'':<20}{opt:<22} {text}")


def may_hold_secrets(map_name: str) -> bool:
    """Maps `cryptbpf map` will not dump: keys and pad states ("*key*"),
    per-CPU working memory ("*scratch*": HMAC states and the expected MACs
    of the last packet), and global variables."""
    return ("key" in map_name or "scratch" in map_name
            or map_name.endswith((".bss", ".data")))


@app.command("map", epilog=_examples("sudo cryptbpf map aes-roundtrip", "sudo cryptbpf map aes-roundtrip stats"))
@argument("program", help="A loaded program.")
@argument("name", metavar="[MAP]", required=False, help="Map to dump (default: list the maps).")
def map_cmd(program: str, name: str | None):
    """List a loaded program's maps, or dump one as hex (key: value)."""
    from .bpf.maps import map_type_name
    from .bpf.pins import Pinned
    spec = programs.get(program)
    with Pinned(spec.name) as h:
        if name is None:
            for n in h.map_names():
                m = h.map(n)
                click.echo(f"{n:<24} {map_type_name(m.type):<16} key {m.key_size:<4} "
                           f"value {m.value_size:<6} max {m.max_entries}")
            return
        if may_hold_secrets(name):
            raise CryptbpfError(f"{name} may hold key material; not dumped")
        m = h.map(name)
        for k, v in m.items():
            vals = v if isinstance(v, list) else [v]
            click.echo(f"{k.hex()}: " + " | ".join(x.hex() for x in vals))


@keys_app.command("new", epilog=_examples("cryptbpf keys new aes.key", "cryptbpf keys new tunnel.key --size 32"))
@argument("path", metavar="FILE", type=PATH, help="Key file to create (never overwritten).")
@click.option("--size", type=int, default=32, metavar="N", help="Key length in bytes.")
def keys_new(path: Path, size: int):
    """Write a fresh random key (from the kernel's CSPRNG) to FILE, mode 0600."""
    from .keys import random_key, write_key_file
    try:
        write_key_file(path, random_key(size))
    except FileExistsError:
        raise CryptbpfError(f"{path} exists; refusing to overwrite a key") from None
    click.echo(f"wrote {size}-byte key to {path} (mode 0600)")


@keys_app.command("install", epilog=_examples("sudo cryptbpf keys install aes-roundtrip --key-file new.key"))
@argument("program", help="A loaded program that takes a key.")
@click.option("--key-file", type=PATH, metavar="FILE", required=True, help="Key file (mode 0600).")
def keys_install(program: str, key_file: Path):
    """Replace the key of a loaded program (takes effect for the next packet)."""
    from .keys import read_key_file
    from .bpf.pins import Pinned
    spec = programs.get(program)
    if not spec.key_sizes:
        raise CryptbpfError(f"{spec.name} takes no key")
    if spec.rekey_hint:
        raise CryptbpfError(f"{spec.name}: `keys install` does not apply; {spec.rekey_hint}")
    key = read_key_file(key_file, spec.key_sizes)
    lifecycle.require_privileges()
    with Pinned(spec.name) as h:
        try:
            spec.install_key(h, key)
        except NotImplementedError as e:
            raise CryptbpfError(str(e)) from None
    click.echo(f"{spec.name}: key installed")


@keys_app.command("generate", epilog=_examples("cryptbpf keys generate alice.pem   # + alice.pub.pem",
                                               "cryptbpf keys generate alice.pem --public /tmp/alice.pub.pem"))
@argument("path", metavar="FILE", type=PATH, help="Private key file to create (mode 0600).")
@click.option("--public", type=PATH, metavar="FILE",
              help="Public key file (default: FILE with .pub.pem).")
def keys_generate(path: Path, public: Path | None):
    """New ECDSA P-256 key pair (signed-auth): private key PEM, mode 0600, and public key PEM."""
    from .crypto.p256_keys import generate_keypair
    pub = public or (path.with_suffix(".pub.pem") if path.suffix == ".pem" else Path(f"{path}.pub.pem"))
    fp = generate_keypair(path, pub)
    click.echo(f"wrote private key {path} (mode 0600) and public key {pub}; fingerprint {fp[:16]}")


@app.command(epilog=_examples("sudo cryptbpf demo"))
def demo():
    """Run real crypto between two network namespaces, then clean up."""
    from .demo import run
    run(click.echo)


@app.command(epilog=_examples("sudo cryptbpf bench", "sudo cryptbpf bench --only aes --out build/bench"))
@click.option("--out", type=PATH, default=Path("build/bench"), metavar="PREFIX",
              help="Results prefix: writes PREFIX.json and PREFIX.md.")
@click.option("--only", multiple=True, metavar="NAME",
              help="Run only benchmarks whose name starts with NAME (repeatable).")
def bench(out: Path, only: tuple[str, ...]):
    """Run the benchmarks; write JSON and a readable table."""
    from .bench import run_all
    lifecycle.require_privileges()
    run_all(out, list(only), click.echo)


@app.command(epilog=_examples("sudo cryptbpf kat tests/vectors/*.json",
                              "sudo cryptbpf kat wycheproof/testvectors_v1/aes_cbc_pkcs5_test.json --json"))
@argument("files", metavar="FILE...", nargs=-1, required=True, type=PATH,
          help="Wycheproof-format JSON vector files.")
@json_option()
def kat(files: tuple[Path, ...], as_json: bool):
    """Run known-answer vectors through the in-kernel crypto; exit status 1
    on any failure."""
    from .kat import require_vectors_ran, run_files
    lifecycle.require_privileges()
    for f in files:
        if not f.is_file():
            raise CryptbpfError(f"{f}: no such file")
    results = run_files(list(files))

    def text(rs):
        for r in rs:
            click.echo(f"{r['path']}: {r['algorithm']}: {r['run']} run, {r['passed']} passed, "
                       f"{len(r['failed'])} failed, {len(r['skipped'])} skipped")
            if r["failed"]:
                click.echo(f"  failed tcIds: {', '.join(map(str, r['failed']))}")
            if r["acceptable"]:
                acc = sum(a["accepted"] for a in r["acceptable"])
                click.echo(f"  acceptable: {len(r['acceptable'])} ({acc} accepted, "
                           f"{len(r['acceptable']) - acc} rejected)")
            reasons = sorted({s["why"] for s in r["skipped"]})
            for why in reasons:
                click.echo(f"  skipped: {why}")
    _emit([r.to_dict() for r in results], as_json, text)
    require_vectors_ran(results)   # a file that checked nothing fails too, saying why
    if any(r.failed for r in results):
        raise click.exceptions.Exit(1)


def _register_program_commands() -> None:
    """Each program's commands under its own name, `cryptbpf <program> ...`
    (ProgramSpec.cli), and under the short names users know
    (ProgramSpec.commands: `cryptbpf tunnel`, `cryptbpf pow`). An alias of
    the program's own group is a copy that shares its commands: the same
    commands by either name, each listed with its own one-line help."""
    for name, spec in programs.discover().items():
        groups = ([(name, spec.cli)] if spec.cli is not None else []) + list(spec.commands.items())
        for command, group in groups:
            if command in app.commands:
                continue
            group.help = group.help or spec.summary
            if command != name:
                # a copy sharing .commands, so the alias's one-line help
                # does not replace the group's own where it is listed too
                # (`cryptbpf signed-auth sign` is also `cryptbpf sign`)
                group = copy.copy(group)
            group.short_help = spec.summary if command == name else f"{spec.summary} ({name})"
            app.add_command(group, command)


def _usage_error(e: click.UsageError) -> str:
    msg = " ".join(e.format_message().split())
    path = e.ctx.command_path if e.ctx is not None else "cryptbpf"
    return f"{msg} (see '{path} -h')"


def main(args: list[str] | None = None) -> None:
    try:
        _register_program_commands()
        rv = app.main(args, prog_name="cryptbpf", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as e:
        # a bare `cryptbpf` or `cryptbpf GROUP`: the help, on stdout
        click.echo(e.ctx.get_help())
        sys.exit(0)
    except click.UsageError as e:
        click.echo(f"cryptbpf: {_usage_error(e)}", err=True)
        sys.exit(1)
    except click.ClickException as e:
        click.echo(f"cryptbpf: {' '.join(e.format_message().split())}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        sys.exit(130)
    except CryptbpfError as e:
        click.echo(f"cryptbpf: {e}", err=True)
        sys.exit(1)
    except (ValueError, KeyError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        click.echo(f"cryptbpf: {msg}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
