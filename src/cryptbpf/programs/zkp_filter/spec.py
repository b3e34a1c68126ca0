"""zkp-filter: challenge-response access control at XDP.

Protected ports are dropped at XDP for every source that has not proved
knowledge of a key. Per key id, one mode: Schnorr (a non-interactive
zero-knowledge proof of knowledge of a P-256 private key, RFC 8235; the
server stores only the public key) or HMAC (HMAC-SHA256 challenge-response,
a proof of knowledge of a shared secret, not zero-knowledge; the server
stores the verifier HMAC-SHA256(secret, "cryptbpf zkp v1"), which is enough
to prove). Wire format: bpf/include/zkp_filter.h; the client is
cryptbpf.programs.zkp_filter.client."""

from __future__ import annotations

from typing import Any, Optional

from ...ports import udp_port as _port
from ...keys import random_key
from ..base import Hook, ProgramSpec
from .control import (NAME, SERVER_KEY_LEN, authorizations, install_server_key, key_counters,
                      key_modes, protect, protected_ports)
from .cli import cli


class ZkpFilter(ProgramSpec):
    def check_options(self, options: dict[str, list[str]]) -> None:
        for p in options.get("protect", []):
            _port(p, "--protect")

    def setup(self, handle, key: Optional[bytes], options: dict[str, list[str]]) -> None:
        # The challenge key never leaves the kernel: fresh from the CSPRNG.
        install_server_key(handle, random_key(SERVER_KEY_LEN))
        for p in options.get("protect", []):
            protect(handle, _port(p))

    def status(self, handle) -> dict[str, Any]:
        modes = key_modes(handle)
        return {"stats": self.stats(handle), "protected_ports": protected_ports(handle),
                "global_budget": {"rate": handle.get_global_int("global_rate"),
                                  "burst": handle.get_global_int("global_burst")},
                "keys": [{"key_id": k, "mode": modes.get(k), **c}
                         for k, c in key_counters(handle).items()],
                "authorized": authorizations(handle)}


SPEC = ZkpFilter(
    name=NAME,
    object="zkp_filter",
    summary="port access after a zero-knowledge (Schnorr P-256) or HMAC proof, verified at XDP",
    hooks=[Hook("zkp_filter", "xdp")],
    requires=["xdp", "syscall_prog", "bpf_loop", "xdp_load_bytes", "dynptr_mem"],
    knobs={"control_port": "UDP port of the hello/proof exchange (default 7227)",
           "slot_s": "challenge time slot in seconds; a challenge lives 1-2 slots (default 30)",
           "auth_ttl_s": "seconds a valid proof authorizes its source (default 300)",
           "global_rate": "Schnorr verifications per second, all keys together (default 4000)",
           "global_burst": "Schnorr verifications back to back, all keys together (default 200)"},
    # global_rate: the BPF side divides a second by it
    knob_ranges={"control_port": (1, 65535), "slot_s": (1, 86400), "auth_ttl_s": (1, 2**32 - 1),
                 "global_rate": (1, 10**9), "global_burst": (1, 2**32 - 1)},
    header="zkp_filter",
    stats_type="struct zkp_filter_stats",
    cli=cli,
    commands={"zkp": cli},
    options={"protect": "port to guard (TCP and UDP), repeatable"},
    option_commands={"protect": "cryptbpf zkp protect PORT"},
    xdp_tx=True,
)
