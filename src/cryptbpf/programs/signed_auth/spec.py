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
was lost or reset."""

from __future__ import annotations

from ...errors import CryptbpfError
from ...ports import udp_port
from ..base import Hook, ProgramSpec
from .control import (COUNTERS, DEFAULT_MAX_SKEW_S, HEADER, NSEC, _int, _sum_counters,
                      _trust_option, keys, protected_ports, set_ports, trust)
from .cli import cli, sign_cli


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
