"""crypto-ratelimit: per-source token buckets with proof-of-work admission.

UDP datagrams to protected ports spend their IPv4 source's tokens; over
budget, XDP answers with a stateless SHA-256 puzzle (difficulty adapted to
the load, within bounds) and a solution refills the bucket. Wire format:
bpf/include/crypto_ratelimit.h; the client is cryptbpf.programs.crypto_ratelimit.client."""

from __future__ import annotations

from typing import Any, Optional

from ...ports import udp_port as _port
from ...keys import random_key
from ..base import Hook, ProgramSpec
from .control import (NAME, SETTINGS, _int, configure_limits, install_server_key, protect,
                      protected_ports, read_config, state)
from .cli import cli


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
    cli=cli,
    commands={"pow": cli},
    options={"protect": "UDP port to rate-limit, repeatable",
             **{k: f"{v[3]} (default {v[0]})" for k, v in SETTINGS.items()}},
    option_commands={"protect": "cryptbpf pow protect PORT",
                     **{k: f"cryptbpf pow config --{k.replace('_', '-')} N" for k in SETTINGS}},
    xdp_tx=True,
)
