"""`cryptbpf crypto-offload ...` (also `cryptbpf offload ...`): the daemon, the
peer, keys and routing."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Optional

import click

from ...errors import CryptbpfError
from ...ports import udp_port
from . import control
from . import wire as P
from .._cli import PATH, argument, examples as _ex, group, json_option, netns_option, pinned
from .control import NAME, _crossover_text


app = group(help="The crypto-offload service: daemon, peer, keys, routing.")
keys_app = group(help="Provision keys (never shown).")
app.add_command(keys_app, "keys")


@app.command("serve", epilog=_ex("sudo cryptbpf offload serve",
                                 "sudo cryptbpf offload serve --netns blue --address 10.0.0.2"))
@click.option("--address", default="0.0.0.0", metavar="ADDR", help="Address to listen on.")
@click.option("--port", type=int, default=P.DEFAULT_PORT, metavar="PORT",
              help="Service port (the program's udp_port).")
@netns_option("Network namespace to listen in.")
@click.option("--delay-us", type=int, default=0, metavar="N",
              help="Add this many microseconds of latency to every answer (testing routing).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def serve(address: str, port: int, netns: Optional[str], delay_us: int, quiet: bool):
    """Answer the requests XDP passes up; publish latency and a heartbeat."""
    from .daemon import Daemon
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    port = udp_port(port, "--port")
    with pinned(NAME) as h, Daemon(h, address, port, netns, delay_us) as d:
        if not quiet:
            click.echo(f"{NAME} daemon: listening on {address}:{port}"
                       f"{' in ' + netns if netns else ''}", err=True)
        try:
            d.serve(stop=lambda: bool(stopping))
        except KeyboardInterrupt:
            pass
        if not quiet:
            click.echo(f"{NAME} daemon: stopped after {d.served} answers", err=True)


def _read_data(data: Optional[str], hex_: Optional[str], file: Optional[Path]) -> bytes:
    given = [x for x in (data, hex_, file) if x is not None]
    if len(given) > 1:
        raise CryptbpfError("give at most one of --data, --hex, --file")
    if hex_ is not None:
        try:
            return bytes.fromhex(hex_)
        except ValueError:
            raise CryptbpfError("--hex: not hexadecimal") from None
    if file is not None:
        return file.read_bytes()
    return (data or "").encode()


@app.command("request", epilog=_ex("cryptbpf offload request sha256 10.0.0.2 --data 'hello'",
                                   "cryptbpf offload request hmac 10.0.0.2 --key-id 1 --file msg.bin",
                                   "cryptbpf offload request seal 10.0.0.2 --key-id 2 --aad hdr --data secret --json"))
@argument("op", metavar="OP", help="sha256, hmac or seal.")
@argument("server", metavar="SERVER", help="Server address.")
@click.option("--data", metavar="DATA", help="Data as text.")
@click.option("--hex", "hex_", metavar="HEX", help="Data as hex.")
@click.option("--file", type=PATH, metavar="FILE", help="Data from a file.")
@click.option("--key-id", type=int, default=0, metavar="N", help="Key id (hmac, seal).")
@click.option("--nonce", metavar="HEX", help="Seal nonce, 12 bytes hex (default: random).")
@click.option("--aad", default="", show_default=False, metavar="DATA", help="Seal additional data (text).")
@click.option("--port", type=int, default=P.DEFAULT_PORT, metavar="PORT", help="Service port.")
@netns_option("Network namespace to send from.")
@click.option("--timeout", type=float, default=1.0, metavar="SECONDS", help="Seconds to wait for the reply.")
@json_option()
def request(op: str, server: str, data: Optional[str], hex_: Optional[str], file: Optional[Path],
            key_id: int, nonce: Optional[str], aad: str, port: int, netns: Optional[str],
            timeout: float, as_json: bool):
    """Send one request; print the result, who answered and the round trip."""
    import os
    from .client import Client
    if op not in P.OPS:
        raise CryptbpfError(f"op must be one of {', '.join(P.OPS)}, not {op!r}")
    payload = _read_data(data, hex_, file)
    n = b""
    if op == "seal":
        try:
            n = bytes.fromhex(nonce) if nonce else os.urandom(P.NONCE_SIZE)
        except ValueError:
            raise CryptbpfError("--nonce: not hexadecimal") from None
        if len(n) != P.NONCE_SIZE:
            raise CryptbpfError(f"--nonce must be {P.NONCE_SIZE} bytes")
    with Client(server, udp_port(port, "--port"), netns, timeout) as c:
        rep, rtt = c.call(op, payload, key_id=key_id, nonce=n, aad=aad.encode() if op == "seal" else b"")
    out = {"op": op, "status": rep.status_name, "served_by": rep.path,
           "round_trip_us": round(rtt / 1000, 1), "result": rep.result.hex()}
    if op == "seal":
        out["nonce"] = n.hex()
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(f"{rep.result.hex() if rep.ok else rep.status_name}")
        click.echo(f"  served by {rep.path} in {out['round_trip_us']} us"
                   + (f", nonce {n.hex()}" if op == "seal" else ""), err=True)
    if not rep.ok:
        raise click.exceptions.Exit(1)


@app.command("load-gen", epilog=_ex("cryptbpf offload load-gen 10.0.0.2 --op sha256 --size 64 --size 1024",
                                    "cryptbpf offload load-gen 10.0.0.2 --op seal --key-id 2 --count 20000 --json"))
@argument("server", metavar="SERVER", help="Server address.")
@click.option("--op", default="sha256", metavar="OP", help="sha256, hmac or seal.")
@click.option("--size", type=int, multiple=True, default=(64, 512, 1400), metavar="N",
              help="Data size in bytes (repeatable).")
@click.option("--count", type=int, default=2000, metavar="N", help="Requests per size.")
@click.option("--window", type=int, default=8, metavar="N", help="Requests outstanding at once.")
@click.option("--key-id", type=int, default=0, metavar="N", help="Key id (hmac, seal).")
@click.option("--aad-len", type=int, default=0, metavar="N", help="Seal: bytes of additional data.")
@click.option("--port", type=int, default=P.DEFAULT_PORT, metavar="PORT", help="Service port.")
@netns_option("Network namespace to send from.")
@json_option()
def load_gen_cmd(server: str, op: str, size: tuple[int, ...], count: int, window: int, key_id: int,
                 aad_len: int, port: int, netns: Optional[str], as_json: bool):
    """Closed-loop load; latency percentiles per serving path and size."""
    from .client import Client, load_gen
    if op not in P.OPS:
        raise CryptbpfError(f"op must be one of {', '.join(P.OPS)}, not {op!r}")
    for s in size:
        if not 0 <= s <= P.MAX_DATA:
            raise CryptbpfError(f"--size {s}: must be 0..{P.MAX_DATA}")
    with Client(server, udp_port(port, "--port"), netns) as c:
        res = load_gen(c, op, list(size), count, key_id=key_id, aad_len=aad_len, window=max(1, window))
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(f"{'op':<7}{'size':>6}{'req/s':>9}{'err':>5}{'lost':>6}  path     count   p50 us   p90 us   p99 us")
    for r in res:
        first = f"{r['op']:<7}{r['size']:>6}{r['per_second']:>9}{r['errors']:>5}{r['lost']:>6}"
        for i, (path, s) in enumerate(r["paths"].items() or [("-", {"count": 0})]):
            lead = first if i == 0 else " " * len(first)
            click.echo(f"{lead}  {path:<7}{s['count']:>6}" + "".join(
                f"{s.get(k, ''):>9}" for k in ("p50_us", "p90_us", "p99_us")))


@app.command("status", epilog=_ex("sudo cryptbpf offload status", "sudo cryptbpf offload status --json"))
@json_option()
def status(as_json: bool):
    """Routing: estimates per op and size, the crossover, decisions, daemon."""
    with pinned(NAME) as h:
        data = {"config": control.read_config(h), "daemon": control.daemon_state(h),
                "decisions": control.decisions(h), "ops": control.crossover(h)}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    d = data["daemon"]
    click.echo(f"daemon: {'alive' if d['alive'] else 'DOWN'}"
               + (f" (pid {d['pid']}, heartbeat {d['heartbeat_age_ms']} ms ago)" if d["pid"] else ""))
    click.echo("config: " + ", ".join(f"{k}={v}" for k, v in data["config"].items()))
    for op, o in data["ops"].items():
        click.echo(f"\n{op}: {_crossover_text(o['crossover'])}")
        click.echo(f"  {'size':<10}{'kernel ns':>11}{'n':>8}{'daemon ns':>11}{'n':>8}  prefer")
        for b in o["buckets"]:
            seed = "" if b["kernel_samples"] and b["daemon_samples"] else " (seed)"
            click.echo(f"  {b['sizes']:<10}{b['kernel_ns']:>11}{b['kernel_samples']:>8}"
                       f"{b['daemon_ns']:>11}{b['daemon_samples']:>8}  {b['prefer']}{seed}")
    click.echo("\ndecisions (path/reason):")
    for k, v in data["decisions"].items():
        click.echo(f"  {k:<24}{v}")


@app.command("config", epilog=_ex("sudo cryptbpf offload config",
                                  "sudo cryptbpf offload config mode=kernel",
                                  "sudo cryptbpf offload config explore_every=16 refresh_ms=500"))
@argument("settings", nargs=-1, metavar="[NAME=VALUE]...", help="Settings to change.")
def config(settings: tuple[str, ...]):
    """Show or change routing settings (mode auto|kernel|daemon, explore_every,
    sample_every, ewma_shift, heartbeat_timeout_ms, refresh_ms, kernel_max_len)."""
    changes = {}
    for s in settings or []:
        name, sep, val = s.partition("=")
        if not sep:
            raise CryptbpfError(f"settings are NAME=VALUE, got {s!r}")
        changes[name.replace("-", "_")] = val
    with pinned(NAME) as h:
        cur = control.write_config(h, **changes) if changes else control.read_config(h)
    for k, v in cur.items():
        click.echo(f"{k:<22}{v}")


@app.command("samples", epilog=_ex("sudo cryptbpf offload samples --count 20",
                                   "sudo cryptbpf offload samples --seconds 10 --json > decisions.jsonl"))
@click.option("--count", type=int, default=0, metavar="N", help="Stop after this many (0: no limit).")
@click.option("--seconds", type=float, default=0, metavar="SECONDS", help="Stop after this long (0: no limit).")
@json_option("One JSON object per line.")
def samples(count: int, seconds: float, as_json: bool):
    """Print the sampled routing decisions from the ring buffer as they come."""
    from ...bpf.ringbuf import RingBuffer
    seen = []

    def show(raw: bytes):
        if count and len(seen) >= count:
            return 0              # the rest of this poll's batch
        s = control.decode_sample(raw)
        seen.append(1)
        if as_json:
            click.echo(json.dumps(s))
        else:
            click.echo(f"{s['ts_ns']} id {s['req_id']:>10} {s['op']:<6} {s['size']:>5} B -> "
                       f"{s['path']:<6} ({s['reason']}) kernel est {s['kernel_est_ns']} ns, "
                       f"daemon est {s['daemon_est_ns']} ns"
                       + (f", cost {s['cost_ns']} ns" if s["cost_ns"] else ""))
        return 0

    end = time.monotonic() + seconds if seconds else None
    with pinned(NAME) as h, RingBuffer(h.map("offload_samples"), show) as rb:
        try:
            while not (count and len(seen) >= count) and not (end and time.monotonic() > end):
                rb.poll(100)
        except KeyboardInterrupt:
            pass


@keys_app.command("add", epilog=_ex("cryptbpf keys new mac.key && sudo cryptbpf offload keys add 1 hmac mac.key",
                                    "sudo cryptbpf offload keys add 2 aead seal.key"))
@argument("key_id", type=int, metavar="ID", help="Key id (1..2^32-1) requests will name.")
@argument("key_type", type=click.Choice(["hmac", "aead"]), metavar="TYPE",
          help="hmac (16..64 bytes) or aead (32 bytes).")
@argument("key_file", type=PATH, metavar="FILE", help="Key file (mode 0600, raw or hex).")
def keys_add(key_id: int, key_type: str, key_file: Path):
    """Provision (or replace) a key; it is read from the file, never printed."""
    from ...keys import read_key_file
    sizes = tuple(range(16, 65)) if key_type == "hmac" else (32,)
    key = read_key_file(key_file, sizes)
    with pinned(NAME) as h:
        control.install_key(h, key_id, key_type, key)
    click.echo(f"{NAME}: key {key_id} ({key_type}, {len(key)} bytes) installed")


@keys_app.command("remove", epilog=_ex("sudo cryptbpf offload keys remove 1"))
@argument("key_id", type=int, metavar="ID", help="Key id.")
def keys_remove(key_id: int):
    """Remove a key; requests naming it get err_key."""
    with pinned(NAME) as h:
        if not control.remove_key(h, key_id):
            raise CryptbpfError(f"no key {key_id}")
    click.echo(f"{NAME}: key {key_id} removed")


@keys_app.command("list", epilog=_ex("sudo cryptbpf offload keys list"))
def keys_list():
    """Key ids with type and length (never the key)."""
    with pinned(NAME) as h:
        keys = control.list_keys(h)
    for k in keys:
        click.echo(f"{k['key_id']:>10}  {k['type']:<5} {k['bytes']} bytes")
    if not keys:
        click.echo("no keys")
