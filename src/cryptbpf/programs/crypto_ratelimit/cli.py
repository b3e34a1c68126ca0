"""`cryptbpf crypto-ratelimit ...` (also `cryptbpf pow ...`): the client and
the administrator's commands."""

from __future__ import annotations

from typing import Optional

import click

from ...netns import inside
from ...ports import udp_port as _port
from .._cli import argument, examples as _ex, group, netns_option, pinned
from .control import (NAME, SETTINGS, configure_limits, protect, protected_ports, read_config,
                      sources, state)


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
