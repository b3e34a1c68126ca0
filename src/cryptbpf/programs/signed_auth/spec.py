"""signed-auth: ECDSA P-256 signed UDP datagrams, verified in XDP.

The receiving host loads the program on its interface with the ports to
protect and trusts public keys under key ids; senders sign with
`cryptbpf.programs.signed_auth.client` (or `cryptbpf sign send`). Wire format, maps and
counters: bpf/include/signed_auth.h; design and limits: docs/signed_auth.md.

Control plane (this module) and data plane split the maps: sa_keys and
p256_keys are written here only, sa_state (replay window, key budget) by BPF
once this module created it; here it is only ever raised (re-trust, under
the element's lock), so no update here can roll a replay window back.

Replay across reloads: sequence numbers are wall-clock (CLOCK_REALTIME) ns
by specification, and every window this module creates or re-opens starts
at a floor of wall-clock ns minus `max_skew_s` (a .rodata knob, default
30 s). A datagram captured earlier than that before a load, a re-trust or a
`revoke --purge` + trust is refused as stale, although the window itself
was lost or reset.
"""

from __future__ import annotations

import errno
import hashlib
import json
import struct
import time
from pathlib import Path
from typing import Optional

import click

from ...crypto import p256
from ...errors import CryptbpfError
from ...netns import inside
from ...ports import udp_port
from ...bpf.headers import Layout
from ..base import Hook, ProgramSpec
from .._cli import PATH, argument, examples as _examples, group, json_option, netns_option, pinned

HEADER = "signed_auth"
COUNTERS = "struct signed_auth_counters"
DEFAULT_KEY_RATE = 1000     # verifications per second per key
DEFAULT_KEY_BURST = 100
DEFAULT_MAX_SKEW_S = 30     # keep in step with max_skew_s in bpf/signed_auth.bpf.c
NSEC = 1_000_000_000
BPF_F_LOCK = 4              # map update: copy the value under its bpf_spin_lock
ALL_ONES = 2**64 - 1
# reasons decided before a trusted key is known: never charged to a key
GLOBAL_ONLY = ("unknown_key", "no_trailer", "short_payload", "malformed", "fragmented", "unsupported")


def _layout() -> Layout:
    return Layout(HEADER)


def _kid(key_id: int) -> bytes:
    if not 0 <= key_id < 2**32:
        raise CryptbpfError(f"key id {key_id} does not fit in 32 bits")
    return struct.pack("=I", key_id)


# ---- ports ----

def set_ports(handle, add: list[int] = (), remove: list[int] = ()) -> list[int]:
    """Protect (add) or unprotect (remove) UDP ports; returns the protected set."""
    L = _layout()
    m = handle.map("sa_ports")
    bits = L.unpack("struct signed_auth_ports", m.lookup(0))["bits"]
    for p in list(add) + list(remove):
        udp_port(p)
    for p in add:
        bits[p >> 6] |= 1 << (p & 63)
    for p in remove:
        bits[p >> 6] &= ~(1 << (p & 63))
    m.update(0, L.pack("struct signed_auth_ports", bits=bits))
    return protected_ports(handle)


def protected_ports(handle) -> list[int]:
    bits = _layout().unpack("struct signed_auth_ports", handle.map("sa_ports").lookup(0))["bits"]
    return [w * 64 + b for w, v in enumerate(bits) if v for b in range(64) if v >> b & 1]


# ---- keys ----

def _key_entry(handle, key_id: int) -> dict | None:
    raw = handle.map("sa_keys").lookup(_kid(key_id))
    return _layout().unpack("struct signed_auth_key", raw) if raw else None


def trust(handle, key_id: int, point: bytes, rate: int = DEFAULT_KEY_RATE,
          burst: int = DEFAULT_KEY_BURST) -> str:
    """Trust the 65-byte public point under key_id with a verification
    budget of `rate` per second (`burst` back to back). Re-trusting a
    revoked key id with the same key keeps its replay window (old datagrams
    stay refused); another key under that id starts a new one. Either way
    the window is at least at the replay floor (replay_floor()): nothing
    signed more than max_skew_s before now is accepted. Returns the key's
    fingerprint."""
    L = _layout()
    if not 1 <= rate <= NSEC:
        raise CryptbpfError(f"--rate must be 1..{NSEC} verifications per second")
    if not 1 <= burst <= 1_000_000:
        raise CryptbpfError("--burst must be 1..1000000")
    try:
        k, table = p256.key_map_entry(key_id, point)   # validates the point
    except p256.InvalidKey as e:
        raise CryptbpfError(f"invalid public key: {e}") from None
    except ValueError as e:
        raise CryptbpfError(str(e)) from None
    fp = hashlib.sha256(point).digest()
    old = _key_entry(handle, key_id)
    if old and old["state"] == L.const("SIGNED_AUTH_KEY_ACTIVE") and old["fingerprint"] != fp:
        raise CryptbpfError(f"key id {key_id} is trusted with another key "
                            f"({old['fingerprint'].hex()[:16]}); revoke it first")
    fresh = old is None or old["fingerprint"] != fp
    kid = _kid(key_id)
    try:
        # the window first: no verification can use this key before its
        # table is in p256_keys, so nothing moves the window meanwhile
        _raise_to_floor(handle, kid, replay_floor(handle), fresh)
        if fresh:
            handle.map("key_stats").update(kid, bytes(L.sizeof(COUNTERS)))
        handle.map("p256_keys").update(k, table)
    except CryptbpfError as e:
        if old is None:     # leave nothing behind for an id that is not trusted
            for name in ("p256_keys", "sa_state", "key_stats"):
                handle.map(name).delete(kid)
        if getattr(e, "errno", 0) == errno.E2BIG:
            raise CryptbpfError(f"no room for another key (at most "
                                f"{handle.map('sa_keys').max_entries}); purge a revoked one") from None
        raise
    _kfunc_register(handle, key_id, point)
    handle.map("sa_keys").update(kid, L.pack(
        "struct signed_auth_key", state=L.const("SIGNED_AUTH_KEY_ACTIVE"), burst=burst,
        interval_ns=max(1, NSEC // rate), fingerprint=fp))
    return fp.hex()


def replay_floor(handle) -> int:
    """The lowest sequence number a key's window may accept from now on:
    wall-clock ns minus the loaded program's max_skew_s allowance. A
    sender's clock may lag the receiver's by up to that much."""
    return max(0, time.time_ns() - handle.get_global_int("max_skew_s") * NSEC)


def _raise_to_floor(handle, kid: bytes, floor: int, fresh: bool) -> None:
    """Create (fresh) or raise key kid's replay window so that every
    sequence number <= floor | 63 is refused: top = floor | 63 and all bits
    set (see signed_auth.h). A window already above the floor is left alone;
    the key budget (tat_ns) is kept."""
    L = _layout()
    m = handle.map("sa_state")
    lock = L.const("SIGNED_AUTH_STATE_LOCK_BYTES")
    top = floor | 63
    raw = None if fresh else m.lookup(kid)
    if raw is None:
        tat = 0
    else:
        r = L.unpack("struct signed_auth_replay", raw[lock:])
        if r["top"] >= top:
            return
        tat = r["tat_ns"]
    value = bytes(lock) + L.pack("struct signed_auth_replay", top=top,
                                 bits=[ALL_ONES] * L.const("SIGNED_AUTH_REPLAY_WORDS"), tat_ns=tat)
    m.update(kid, value.ljust(m.value_size, b"\0"), BPF_F_LOCK if raw is not None else 0)


def _kfunc_register(handle, key_id: int, point: bytes) -> bool:
    """On kernels with the signature kfunc, also give the kernel the key
    (ecdsa_p256.bpf.h dispatches to it); -EOPNOTSUPP elsewhere."""
    if key_id >= handle.map("p256_kctxs").max_entries:
        return False
    res = handle.program("p256_kfunc_setup").test_run(ctx=p256.kfunc_setup_args(key_id, point))
    return p256.kfunc_setup_err(res.ctx) == 0


def revoke(handle, key_id: int, purge: bool = False) -> None:
    """Stop trusting key_id now: the next datagram is refused before any
    verification, and one being verified at this moment fails (its table is
    gone). Without purge the id stays listed as revoked, with its counters
    and replay window; purge forgets it entirely (a later trust starts its
    window at the replay floor, so what was signed before stays refused)."""
    L = _layout()
    kid = _kid(key_id)
    entry = _key_entry(handle, key_id)
    if entry is None:
        raise CryptbpfError(f"key id {key_id} is not trusted")
    entry["state"] = L.const("SIGNED_AUTH_KEY_REVOKED")
    handle.map("sa_keys").update(kid, L.pack("struct signed_auth_key", **entry))
    handle.map("p256_keys").delete(kid)
    kctxs = handle.map("p256_kctxs")
    if key_id < kctxs.max_entries:
        # an array update from userspace releases the kptr it held
        kctxs.update(kid, bytes(kctxs.value_size))
    if purge:
        for name in ("sa_keys", "sa_state", "key_stats"):
            handle.map(name).delete(kid)


def _sum_counters(raws: list[bytes]) -> dict[str, int]:
    L = _layout()
    total: dict[str, int] = {}
    for raw in raws:
        for k, v in L.unpack(COUNTERS, raw).items():
            total[k] = max(total.get(k, 0), v) if k == "last_seen_ns" else total.get(k, 0) + v
    return total


def _wall(mono_ns: int) -> str:
    if not mono_ns:
        return "never"
    t = time.time() - (time.clock_gettime_ns(time.CLOCK_MONOTONIC) - mono_ns) / NSEC
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def keys(handle) -> list[dict]:
    """Every key id with its state, budget and counters (no secrets: the
    fingerprint is a hash of the public key)."""
    L = _layout()
    states = {L.const("SIGNED_AUTH_KEY_ACTIVE"): "active", L.const("SIGNED_AUTH_KEY_REVOKED"): "revoked"}
    stats_map, state_map = handle.map("key_stats"), handle.map("sa_state")
    lock = L.const("SIGNED_AUTH_STATE_LOCK_BYTES")
    out = []
    for kid, raw in handle.map("sa_keys").items():
        key_id = struct.unpack("=I", kid)[0]
        e = L.unpack("struct signed_auth_key", raw)
        counters = _sum_counters(stats_map.lookup_percpu(kid) or [])
        for name in GLOBAL_ONLY:
            counters.pop(name, None)
        st = state_map.lookup(kid)
        replay = L.unpack("struct signed_auth_replay", st[lock:]) if st else {"top": 0}
        out.append({"id": key_id, "state": states.get(e["state"], str(e["state"])),
                    "fingerprint": e["fingerprint"].hex(),
                    "rate": NSEC // e["interval_ns"] if e["interval_ns"] else 0,
                    "burst": e["burst"], "highest_seq": replay["top"],
                    "last_seen": _wall(counters.pop("last_seen_ns", 0)), "counters": counters})
    return sorted(out, key=lambda k: k["id"])


def _key_line(k: dict) -> str:
    c = k["counters"]
    rejected = ", ".join(f"{n} {v}" for n, v in c.items() if v and n not in ("verified", "verifications"))
    return (f"{k['state']}, {k['fingerprint'][:16]}, budget {k['rate']}/s burst {k['burst']}; "
            f"verified {c.get('verified', 0)} (last {k['last_seen']}); "
            f"rejected: {rejected or 'none'}")


def _trust_option(spec: str) -> tuple[int, bytes]:
    kid, sep, path = spec.partition("=")
    if not sep:
        raise CryptbpfError(f"--trust takes ID=PUBLIC_KEY.pem, got {spec!r}")
    key_id = _int(kid, "--trust id")
    if not 0 <= key_id < 2**32:
        raise CryptbpfError(f"--trust id {key_id} out of range 0-{2**32 - 1}")
    return key_id, _read_point(Path(path))


class SignedAuth(ProgramSpec):
    def check_options(self, options: dict[str, list[str]]) -> None:
        for p in options.get("port", []):
            udp_port(_int(p, "--port"), "--port")
        for spec in options.get("trust", []):
            _trust_option(spec)

    def setup(self, handle, key, options: dict[str, list[str]]) -> None:
        ports = [_int(p, "--port") for p in options.get("port", [])]
        if not ports:
            raise CryptbpfError("signed-auth needs at least one --port to protect")
        set_ports(handle, add=ports)
        for spec in options.get("trust", []):
            trust(handle, *_trust_option(spec))

    def stats(self, handle) -> dict[str, int]:
        total = _sum_counters(handle.map("stats").lookup_percpu(0) or [])
        total.pop("last_seen_ns", None)
        return total

    def status(self, handle) -> dict:
        return {"stats": self.stats(handle),
                "ports": protected_ports(handle),
                "global_budget": {"rate": handle.get_global_int("global_rate"),
                                  "burst": handle.get_global_int("global_burst")},
                "keys": keys(handle)}


def _int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise CryptbpfError(f"{what}: {text!r} is not an integer") from None


def _read_point(path: Path) -> bytes:
    from ...crypto.p256_keys import load_public_key, public_point
    return public_point(load_public_key(path))


# ---- CLI: cryptbpf signed-auth ... ----

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
    with pinned(SPEC.name) as h:
        fp = trust(h, key_id, point, rate, burst)
    click.echo(f"signed-auth: key {key_id} trusted, fingerprint {fp[:16]}")


@cli.command("revoke", epilog=_examples("sudo cryptbpf signed-auth revoke --id 7",
                                        "sudo cryptbpf signed-auth revoke --id 7 --purge"))
@click.option("--id", "key_id", type=int, required=True, metavar="N", help="Key id to revoke.")
@click.option("--purge/--no-purge", default=False, help="Forget the id (counters, replay window) too.")
def revoke_cmd(key_id: int, purge: bool):
    """Stop trusting a key id immediately."""
    with pinned(SPEC.name) as h:
        revoke(h, key_id, purge)
    click.echo(f"signed-auth: key {key_id} {'purged' if purge else 'revoked'}")


@cli.command("keys", epilog=_examples("sudo cryptbpf signed-auth keys", "sudo cryptbpf signed-auth keys --json"))
@json_option()
def keys_cmd(as_json: bool):
    """Trusted and revoked keys with their per-reason counters."""
    with pinned(SPEC.name) as h:
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
    with pinned(SPEC.name) as h:
        now = set_ports(h, add=ports)
    click.echo(f"signed-auth: protected ports {', '.join(map(str, now))}")


@cli.command("unprotect", epilog=_examples("sudo cryptbpf signed-auth unprotect 5001"))
@argument("ports", type=int, nargs=-1, required=True, metavar="PORT...", help="UDP ports.")
def unprotect_cmd(ports: tuple[int, ...]):
    """Stop requiring signatures on UDP ports."""
    with pinned(SPEC.name) as h:
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


SPEC = SignedAuth(
    name="signed-auth",
    object="signed_auth",
    summary="ECDSA P-256 signed UDP datagrams verified in XDP (replay window, verification budget)",
    hooks=[Hook("signed_auth_xdp", "xdp")],
    requires=["xdp", "bpf_loop", "xdp_load_bytes", "syscall_prog", "kptr", "dynptr_mem"],
    knobs={"global_rate": "verifications per second, all keys together (default 4000)",
           "global_burst": "verifications back to back, all keys together (default 200)",
           "max_skew_s": "replay floor allowance: a key's window (trust, load) refuses sequence "
                         f"numbers below wall-clock ns minus this many seconds (default {DEFAULT_MAX_SKEW_S})"},
    # global_rate: the BPF side divides a second by it (a rate above 10^9/s
    # would be an interval of 0 ns)
    knob_ranges={"global_rate": (1, NSEC), "global_burst": (1, 2**32 - 1),
                 "max_skew_s": (1, 2**32 - 1)},
    header=HEADER,
    stats_type=COUNTERS,
    cli=cli,
    commands={"sign": sign_cli},
    options={"port": "UDP port that requires signatures (repeatable, at least one)",
             "trust": "ID=PUBLIC_KEY.pem: trust a key at load (repeatable)"},
    option_commands={"port": "cryptbpf signed-auth protect PORT",
                     "trust": "cryptbpf signed-auth trust PUB.pem --id ID"},
)
