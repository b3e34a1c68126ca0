"""crypto-ratelimit: per-source token buckets with proof-of-work admission.

UDP datagrams to protected ports spend their IPv4 source's tokens; over
budget, XDP answers with a stateless SHA-256 puzzle (difficulty adapted to
the load, within bounds) and a solution refills the bucket. Wire format:
bpf/include/crypto_ratelimit.h; the client is cryptbpf.programs.crypto_ratelimit.client.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any, Optional

import click

from ...errors import CryptbpfError
from ...netns import inside
from ...ports import udp_port as _port
from ...bpf.headers import Layout
from ...keys import random_key
from ..base import Hook, ProgramSpec
from .._cli import argument, examples as _ex, group, netns_option, pinned

NAME = "crypto-ratelimit"
_L = Layout("crypto_ratelimit")
MAX_D = _L.const("POW_MAX_DIFFICULTY")

# name -> (default, low, high, help): the runtime configuration (pow_config)
SETTINGS = {
    "rate": (100, 1, 10**9, "tokens per second per source"),
    "burst": (20, 1, 10**6, "bucket size: datagrams a source may send at once"),
    "min_difficulty": (8, 0, MAX_D, "lowest puzzle difficulty (leading zero bits)"),
    "max_difficulty": (20, 0, MAX_D, "highest puzzle difficulty"),
    "load_high": (10000, 0, 2**32 - 1, "packets/s to protected ports above which difficulty rises"),
    "load_low": (1000, 0, 2**32 - 1, "packets/s below which difficulty falls"),
    "max_challenges": (8, 1, 2**32 - 1, "challenges per source per slot (bounds reflection)"),
    "under_attack": (0, 0, 1, "1: every source must solve a puzzle before its first datagram"),
}


def install_server_key(handle, key: bytes) -> None:
    args = _L.pack("struct pow_key_setup", len=len(key), key=key)
    res = handle.program("install_key").test_run(ctx=args)
    err = _L.unpack("struct pow_key_setup", res.ctx)["err"]
    if err:
        raise CryptbpfError(f"crypto-ratelimit refused the key: errno {-err}")


def _int(name: str, value) -> int:
    lo, hi = SETTINGS[name][1:3]
    try:
        v = int(value, 0) if isinstance(value, str) else int(value)
    except ValueError:
        raise CryptbpfError(f"--{name.replace('_', '-')}: {value!r} is not an integer") from None
    if not lo <= v <= hi:
        raise CryptbpfError(f"--{name.replace('_', '-')}: {v} out of range {lo}-{hi}")
    return v


def read_config(handle) -> dict[str, int]:
    c = _L.unpack("struct pow_config", handle.map("pow_config").lookup(0))
    interval = c["interval_ns"] or 1
    return {"rate": round(1e9 / interval), "burst": c["burst"],
            "min_difficulty": c["min_difficulty"], "max_difficulty": c["max_difficulty"],
            "load_high": c["load_high_pps"], "load_low": c["load_low_pps"],
            "max_challenges": c["max_challenges"], "under_attack": c["under_attack"]}


def configure_limits(handle, **changes) -> dict[str, int]:
    """Change some settings of a loaded (or just loaded) instance; the rest
    keep their values (defaults on a fresh instance)."""
    raw = handle.map("pow_config").lookup(0)
    cur = read_config(handle) if _L.unpack("struct pow_config", raw)["interval_ns"] else \
        {k: v[0] for k, v in SETTINGS.items()}
    for k, v in changes.items():
        if k not in SETTINGS:
            raise CryptbpfError(f"unknown setting {k}")
        if v is not None:
            cur[k] = _int(k, v)
    if cur["min_difficulty"] > cur["max_difficulty"]:
        raise CryptbpfError("min difficulty above max difficulty")
    interval = max(1, 10**9 // cur["rate"])
    handle.map("pow_config").update(0, _L.pack(
        "struct pow_config", interval_ns=interval, tolerance_ns=(cur["burst"] - 1) * interval,
        burst=cur["burst"], max_challenges=cur["max_challenges"],
        load_high_pps=cur["load_high"], load_low_pps=cur["load_low"],
        min_difficulty=cur["min_difficulty"], max_difficulty=cur["max_difficulty"],
        under_attack=cur["under_attack"]))
    return cur




def protect(handle, port, on: bool = True) -> None:
    key = _port(port).to_bytes(2, "little")
    m = handle.map("protected_ports")
    m.update(key, b"\x01") if on else m.delete(key)


def protected_ports(handle) -> list[int]:
    return sorted(int.from_bytes(k, "little") for k in handle.map("protected_ports").keys())


def state(handle) -> dict[str, int]:
    s = _L.unpack("struct pow_state", handle.map("pow_state").lookup(0))
    cfg = read_config(handle)
    d = min(max(s["difficulty"], cfg["min_difficulty"]), cfg["max_difficulty"])
    return {"difficulty": d, "load_pps": s["last_pps"]}


def sources(handle, limit: int = 20) -> list[dict[str, Any]]:
    """Sources with a bucket (most recently seen first is not known to BPF's
    LRU; sorted by address), with their tokens left now."""
    cfg = _L.unpack("struct pow_config", handle.map("pow_config").lookup(0))
    now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    out = []
    for addr, raw in handle.map("buckets").items():
        b = _L.unpack("struct pow_bucket", raw)
        debt = max(0, b["tat_ns"] - now)
        tokens = max(0, (cfg["tolerance_ns"] - debt) // max(1, cfg["interval_ns"]) + 1) \
            if debt <= cfg["tolerance_ns"] else 0
        out.append({"source": str(ipaddress.IPv4Address(addr)), "tokens": int(tokens),
                    "solved": b["solved"], "verified": bool(b["verified"])})
    out.sort(key=lambda s: ipaddress.IPv4Address(s["source"]))
    return out[:limit]


class CryptoRatelimit(ProgramSpec):
    def check_options(self, options: dict[str, list[str]]) -> None:
        for p in options.get("protect", []):
            _port(p, "--protect")
        for k in SETTINGS:
            for v in options.get(k, []):
                _int(k, v)

    def setup(self, handle, key: Optional[bytes], options: dict[str, list[str]]) -> None:
        install_server_key(handle, random_key(32))   # never leaves the kernel
        configure_limits(handle, **{k: v[-1] for k, v in options.items() if k in SETTINGS})
        for p in options.get("protect", []):
            protect(handle, p)

    def status(self, handle) -> dict[str, Any]:
        return {"stats": self.stats(handle), **state(handle), "config": read_config(handle),
                "protected_ports": protected_ports(handle),
                "sources": len(list(handle.map("buckets").keys()))}


# ---------------------------------------------------------------- CLI

cli = group(help="crypto-ratelimit: proof-of-work admission for UDP services.")


@cli.command("send", epilog=_ex("cryptbpf pow send 10.0.0.2 5353 'hello'",
                                "cryptbpf pow send 10.0.0.2 5353 ping --count 100 --no-reply",
                                "sudo cryptbpf pow send 10.0.0.2 5353 'hello' --netns blue"))
@argument("host", metavar="HOST", help="The server (address or name).")
@argument("port", type=int, metavar="PORT", help="The service's UDP port.")
@argument("message", metavar="MESSAGE", help="The datagram's payload (text).")
@click.option("--count", type=int, default=1, metavar="N", help="Send the message this many times.")
@click.option("--timeout", type=float, default=1.0, metavar="SECONDS", help="Seconds to wait for each answer.")
@click.option("--reply/--no-reply", default=True, help="Wait for the service's reply to each datagram.")
@click.option("--source", metavar="ADDR", help="Local address to send from.")
@netns_option("Network namespace to send from.")
def send(host: str, port: int, message: str, count: int, timeout: float, reply: bool,
         source: Optional[str], netns: Optional[str]):
    """Send MESSAGE over UDP; when the server's XDP asks for proof of work,
    solve it, get admitted and resend. Prints replies and solve times."""
    from .client import PowClient
    answered = 0
    with inside(netns), PowClient(host, _port(port), timeout=timeout, source=source) as c:
        for i in range(count):
            r = c.request(message.encode(), expect_reply=reply)
            if r is not None:
                answered += 1
                if count == 1:
                    click.echo(f"reply: {r[:200]!r}")
        c.require_answer()
        st = c.stats
    click.echo(f"sent {count}, replies {answered}, challenges {st.challenges}, admitted {st.admitted}")
    for d, t in zip(st.difficulties, st.solve_times):
        click.echo(f"  solved difficulty {d} in {t * 1000:.1f} ms")


def _setting(name: str):
    return click.option(f"--{name.replace('_', '-')}", type=int, metavar="N", help=SETTINGS[name][3])


@cli.command("config", epilog=_ex("sudo cryptbpf pow config --rate 50 --burst 10",
                                  "sudo cryptbpf pow config --under-attack 1 --min-difficulty 16"))
@_setting("rate")
@_setting("burst")
@_setting("min_difficulty")
@_setting("max_difficulty")
@_setting("load_high")
@_setting("load_low")
@_setting("max_challenges")
@_setting("under_attack")
def config(rate: Optional[int], burst: Optional[int], min_difficulty: Optional[int],
           max_difficulty: Optional[int], load_high: Optional[int], load_low: Optional[int],
           max_challenges: Optional[int], under_attack: Optional[int]):
    """Show or change the limits of the loaded program (takes effect at once)."""
    changes = dict(rate=rate, burst=burst, min_difficulty=min_difficulty,
                   max_difficulty=max_difficulty, load_high=load_high, load_low=load_low,
                   max_challenges=max_challenges, under_attack=under_attack)
    with pinned(NAME) as h:
        cur = configure_limits(h, **changes) if any(v is not None for v in changes.values()) \
            else read_config(h)
        cur.update(state(h))
    for k, v in cur.items():
        click.echo(f"{k:<16} {v}")


@cli.command("protect", epilog=_ex("sudo cryptbpf pow protect 53 5353"))
@argument("ports", nargs=-1, required=True, metavar="PORT...", help="UDP ports.")
def protect_cmd(ports: tuple[str, ...]):
    """Rate-limit UDP PORTS."""
    with pinned(NAME) as h:
        for p in ports:
            protect(h, p)
        click.echo(f"{NAME}: protected ports {protected_ports(h)}")


@cli.command("unprotect", epilog=_ex("sudo cryptbpf pow unprotect 5353"))
@argument("ports", nargs=-1, required=True, metavar="PORT...", help="UDP ports.")
def unprotect_cmd(ports: tuple[str, ...]):
    """Stop rate-limiting UDP PORTS."""
    with pinned(NAME) as h:
        for p in ports:
            protect(h, p, on=False)
        click.echo(f"{NAME}: protected ports {protected_ports(h)}")


@cli.command("sources", epilog=_ex("sudo cryptbpf pow sources"))
@click.option("--limit", type=int, default=20, metavar="N", help="Show at most this many.")
def sources_cmd(limit: int):
    """Sources with a bucket: tokens left, puzzles solved."""
    with pinned(NAME) as h:
        for s in sources(h, limit):
            click.echo(f"{s['source']:<16} tokens {s['tokens']:<6} solved {s['solved']}"
                       f"{'' if s['verified'] else ' (never solved)'}")


SPEC = CryptoRatelimit(
    name=NAME,
    object="crypto_ratelimit",
    summary="per-source token buckets with proof-of-work admission, at XDP",
    hooks=[Hook("crypto_ratelimit", "xdp")],
    requires=["xdp", "syscall_prog", "bpf_loop", "xdp_load_bytes", "dynptr_mem"],
    knobs={"slot_s": "challenge time slot in seconds; a challenge lives 1-2 slots (default 30)"},
    knob_ranges={"slot_s": (1, 86400)},
    header="crypto_ratelimit",
    stats_type="struct crypto_ratelimit_stats",
    commands={"pow": cli},
    options={"protect": "UDP port to rate-limit, repeatable",
             **{k: f"{v[3]} (default {v[0]})" for k, v in SETTINGS.items()}},
    option_commands={"protect": "cryptbpf pow protect PORT",
                     **{k: f"cryptbpf pow config --{k.replace('_', '-')} N" for k in SETTINGS}},
    xdp_tx=True,
)
