"""The `cryptbpf` command line: a thin layer over the library.

Every error the library raises on purpose becomes one line,
`cryptbpf: <message>`, and exit status 1; never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import lifecycle, programs
from ._ffi import set_verbose
from .errors import CryptbpfError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Cryptography in the kernel's packet path, as BPF programs.")
keys_app = typer.Typer(no_args_is_help=True, help="Create and install keys.")
app.add_typer(keys_app, name="keys")


def _examples(*lines: str) -> str:
    return "Examples:\n\n" + "\n\n".join(f"  {l}" for l in lines)


@app.callback()
def _main(verbose: bool = typer.Option(False, "-v", "--verbose",
                                       help="Show libbpf's messages (and verifier logs).")):
    set_verbose(verbose)


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
        typer.echo(json.dumps(data, indent=2, default=str))
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


@app.command(epilog=_examples("sudo cryptbpf load aes-roundtrip eth0 --key-file aes.key",
                              "sudo cryptbpf load aes-roundtrip veth0 --netns blue --set udp_port=5000",
                              "sudo cryptbpf load encrypted-logger --key-file log.key"),
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def load(ctx: typer.Context, program: str = typer.Argument(..., help="Program name (see `cryptbpf programs`)."),
         device: Optional[str] = typer.Argument(None, help="Network interface to attach to "
                                                 "(none for programs that hook the kernel, e.g. encrypted-logger)."),
         key_file: Optional[Path] = typer.Option(None, help="Key file (mode 0600)."),
         set_: List[str] = typer.Option([], "--set", help="Setting NAME=VALUE (repeatable)."),
         xdp_mode: str = typer.Option("auto", help="XDP mode: auto, skb, drv, hw."),
         netns: Optional[str] = typer.Option(None, help="Network namespace of DEVICE.")):
    """Attach a program to DEVICE and pin it; it keeps running after exit.
    Programs may take further options of their own (see `cryptbpf programs`)."""
    from .keys import read_key_file
    spec = programs.get(program)
    key = read_key_file(key_file, spec.key_sizes) if key_file else None
    state = lifecycle.load(spec, device, _parse_knobs(set_), key, xdp_mode, netns,
                           _parse_options(ctx.args))
    dkey = lifecycle.device_key(device, lifecycle.caller_netns(netns))
    hooks = ", ".join(a["kind"] + (" " + a["point"] if a["kind"] == "tc" else "")
                      + (" " + a["section"] if a["kind"] == "link" else "")
                      for a in state["devices"][dkey]["hooks"])
    from .pins import pin_dir
    typer.echo(f"{spec.name}: attached to {dkey} ({hooks}); pinned under {pin_dir(spec.name)}")


@app.command(epilog=_examples("sudo cryptbpf unload aes-roundtrip eth0",
                              "sudo cryptbpf unload aes-roundtrip   # every device"))
def unload(program: str, device: Optional[str] = typer.Argument(None),
           netns: Optional[str] = typer.Option(None, help="Network namespace of DEVICE.")):
    """Remove every filter, hook and pin the program's load made."""
    spec = programs.get(program)
    gone = lifecycle.unload(spec.name, device, netns)
    typer.echo(f"{spec.name}: detached from {', '.join(gone) or 'nothing'}")


@app.command(epilog=_examples("sudo cryptbpf status", "sudo cryptbpf status --json"))
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """What is loaded where, with each program's counters."""
    lifecycle.require_privileges()
    data = lifecycle.status(programs.discover())

    def text(entries):
        if not entries:
            typer.echo("nothing loaded")
        for e in entries:
            typer.echo(f"{e['program']}")
            for dev, hooks in e["devices"].items():
                typer.echo(f"  {dev}: {'; '.join(hooks)}")
            for k, v in e.get("stats", {}).items():
                typer.echo(f"  {k:<24} {v}")
            for k, v in e.items():
                if k not in ("program", "devices", "stats", "object"):
                    typer.echo(f"  {k}: {v}")
    _emit(data, as_json, text)


@app.command(epilog=_examples("cryptbpf doctor", "cryptbpf doctor --json | jq .programs"))
def doctor(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """Kernel, privileges, features, and whether each program can run here."""
    from .doctor import report
    data = report(programs.discover())

    def text(r):
        k = r["kernel"]
        typer.echo(f"kernel      {k['release']} ({k['machine']}), BTF {'yes' if k['btf'] else 'NO'}")
        typer.echo(f"libbpf      {r['libbpf']}")
        p = r["privileges"]
        typer.echo(f"privileges  {'sufficient' if p['sufficient'] else 'INSUFFICIENT (run as root)'}")
        typer.echo(f"bpffs       {r['bpffs']['detail']}")
        typer.echo("features")
        for n, f in r["features"].items():
            since = f"Linux {f['since']}+" if f["since"] else "out of tree"
            typer.echo(f"  {'yes' if f['available'] else 'no ':<4} {n:<22} {f['what']} [{since}]")
        typer.echo("primitives")
        for n, path in r["primitives"].items():
            typer.echo(f"  {n:<18} {path}")
        typer.echo("programs")
        for n, pr in r["programs"].items():
            ok = {True: "ok", False: "NO", None: "?"}[pr["runnable"]]
            extra = pr.get("reason") or f"loads ({sum(pr.get('verified_insns', {}).values())} insns verified)"
            typer.echo(f"  {ok:<3} {n:<18} {extra}")
            for what, why in pr.get("unavailable", {}).items():
                typer.echo(f"  {'':<3} {'':<18} not here: {what} ({why})")
    _emit(data, as_json, text)


@app.command("programs")
def list_programs():
    """List the programs cryptbpf knows."""
    for name, spec in programs.discover().items():
        typer.echo(f"{name:<18} {spec.summary}")
        for opt, text in {**{f"--set {k}=N": v for k, v in spec.knobs.items()},
                          **{f"--{o.replace('_', '-')} V": h for o, h in spec.options.items()}}.items():
            typer.echo(f"{'':<20}{opt:<22} {text}")


def may_hold_secrets(map_name: str) -> bool:
    """Maps `cryptbpf map` will not dump: keys and pad states ("*key*"),
    per-CPU working memory ("*scratch*": HMAC states and the expected MACs
    of the last packet), and global variables."""
    return ("key" in map_name or "scratch" in map_name
            or map_name.endswith((".bss", ".data")))


@app.command("map", epilog=_examples("sudo cryptbpf map aes-roundtrip", "sudo cryptbpf map aes-roundtrip stats"))
def map_cmd(program: str, name: Optional[str] = typer.Argument(None, help="Map to dump.")):
    """List a loaded program's maps, or dump one as hex (key: value)."""
    from .pins import Pinned
    spec = programs.get(program)
    with Pinned(spec.name) as h:
        if name is None:
            for n in h.map_names():
                m = h.map(n)
                typer.echo(f"{n:<24} type {m.type:<3} key {m.key_size:<4} value {m.value_size:<6} max {m.max_entries}")
            return
        if may_hold_secrets(name):
            raise CryptbpfError(f"{name} may hold key material; not dumped")
        m = h.map(name)
        for k, v in m.items():
            vals = v if isinstance(v, list) else [v]
            typer.echo(f"{k.hex()}: " + " | ".join(x.hex() for x in vals))


@keys_app.command("new", epilog=_examples("cryptbpf keys new aes.key", "cryptbpf keys new tunnel.key --size 32"))
def keys_new(path: Path, size: int = typer.Option(32, help="Key length in bytes.")):
    """Write a fresh random key (from the kernel's CSPRNG) to PATH, mode 0600."""
    from .keys import random_key, write_key_file
    try:
        write_key_file(path, random_key(size))
    except FileExistsError:
        raise CryptbpfError(f"{path} exists; refusing to overwrite a key") from None
    typer.echo(f"wrote {size}-byte key to {path} (mode 0600)")


@keys_app.command("install", epilog=_examples("sudo cryptbpf keys install aes-roundtrip --key-file new.key"))
def keys_install(program: str, key_file: Path = typer.Option(..., help="Key file (mode 0600).")):
    """Replace the key of a loaded program (takes effect for the next packet)."""
    from .keys import read_key_file
    from .pins import Pinned
    spec = programs.get(program)
    if not spec.key_sizes:
        raise CryptbpfError(f"{spec.name} takes no key")
    key = read_key_file(key_file, spec.key_sizes)
    lifecycle.require_privileges()
    with Pinned(spec.name) as h:
        spec.install_key(h, key)
    typer.echo(f"{spec.name}: key installed")


@keys_app.command("generate", epilog=_examples("cryptbpf keys generate alice.pem   # + alice.pub.pem",
                                               "cryptbpf keys generate alice.pem --public /tmp/alice.pub.pem"))
def keys_generate(path: Path = typer.Argument(..., help="Private key file to create (mode 0600)."),
                  public: Optional[Path] = typer.Option(None, help="Public key file (default: PATH as .pub.pem).")):
    """New ECDSA P-256 key pair (signed-auth): private key PEM, mode 0600, and public key PEM."""
    from .signing import generate_keypair
    pub = public or (path.with_suffix(".pub.pem") if path.suffix == ".pem" else Path(f"{path}.pub.pem"))
    fp = generate_keypair(path, pub)
    typer.echo(f"wrote private key {path} (mode 0600) and public key {pub}; fingerprint {fp[:16]}")


@app.command(epilog=_examples("sudo cryptbpf demo"))
def demo():
    """Run real crypto between two network namespaces, then clean up."""
    from .demo import run
    run(typer.echo)


@app.command(epilog=_examples("sudo cryptbpf bench", "sudo cryptbpf bench --only aes --out build/bench"))
def bench(out: Path = typer.Option(Path("build/bench"), help="Results prefix: writes OUT.json and OUT.md."),
          only: List[str] = typer.Option([], help="Run only benchmarks whose name starts with this.")):
    """Run the benchmarks; write JSON and a readable table."""
    from .bench import run_all
    lifecycle.require_privileges()
    run_all(out, only, typer.echo)


@app.command(epilog=_examples("sudo cryptbpf kat tests/vectors/*.json",
                              "sudo cryptbpf kat wycheproof/testvectors_v1/aes_cbc_pkcs5_test.json --json"))
def kat(files: List[Path] = typer.Argument(..., help="Wycheproof-format JSON vector files."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """Run known-answer vectors through the in-kernel crypto; non-zero exit on any failure."""
    from .kat import require_vectors_ran, run_files
    lifecycle.require_privileges()
    for f in files:
        if not f.is_file():
            raise CryptbpfError(f"{f}: no such file")
    results = run_files(files)

    def text(rs):
        for r in rs:
            typer.echo(f"{r['path']}: {r['algorithm']}: {r['run']} run, {r['passed']} passed, "
                       f"{len(r['failed'])} failed, {len(r['skipped'])} skipped")
            if r["failed"]:
                typer.echo(f"  failed tcIds: {', '.join(map(str, r['failed']))}")
            if r["acceptable"]:
                acc = sum(a["accepted"] for a in r["acceptable"])
                typer.echo(f"  acceptable: {len(r['acceptable'])} ({acc} accepted, "
                           f"{len(r['acceptable']) - acc} rejected)")
            reasons = sorted({s["why"] for s in r["skipped"]})
            for why in reasons:
                typer.echo(f"  skipped: {why}")
    _emit([r.to_dict() for r in results], as_json, text)
    require_vectors_ran(results)   # a file that checked nothing fails too, saying why
    if any(r.failed for r in results):
        raise typer.Exit(1)


def _register_program_commands() -> None:
    for name, spec in programs.discover().items():
        if spec.cli is not None:
            app.add_typer(spec.cli, name=name, help=spec.summary)
        for command, sub in spec.commands.items():
            app.add_typer(sub, name=command, help=f"{spec.summary} ({name})")


def main() -> None:
    try:
        _register_program_commands()
        app()
    except CryptbpfError as e:
        typer.echo(f"cryptbpf: {e}", err=True)
        sys.exit(1)
    except (ValueError, KeyError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        typer.echo(f"cryptbpf: {msg}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
