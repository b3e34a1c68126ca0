"""crypto-offload: a UDP crypto service answered in XDP when that is faster.

Requests (SHA-256, HMAC-SHA256 with a provisioned key, ChaCha20-Poly1305
seal) to the service port are computed in XDP and answered with XDP_TX, or
passed to the daemon (`cryptbpf offload serve`); the XDP program picks the
path with the lower measured cost for the request's op and size. Wire
format: bpf/include/crypto_offload.h; userspace: cryptbpf.programs.crypto_offload."""

from __future__ import annotations

from typing import Any, Optional

from ...errors import CryptbpfError
from . import control
from . import wire as P
from ..base import Hook, ProgramSpec
from .control import NAME, _int_option
from .cli import app


class CryptoOffload(ProgramSpec):
    def check_options(self, options: dict[str, list[str]]) -> None:
        _int_option(options, "seed_threshold", control.SEED_THRESHOLD)
        for m in options.get("mode", []):
            if m not in control.MODES:
                raise CryptbpfError(f"--mode must be one of {', '.join(control.MODES)}, not {m!r}")

    def setup(self, handle, key: Optional[bytes], options: dict[str, list[str]]) -> None:
        threshold = _int_option(options, "seed_threshold", control.SEED_THRESHOLD)
        mode = options.get("mode", ["auto"])[-1]
        control.setup(handle, threshold, mode=mode)

    def stats(self, handle) -> dict[str, int]:
        return control.decisions(handle)

    def status(self, handle) -> dict[str, Any]:
        cross = control.crossover(handle)
        return {"stats": self.stats(handle),
                "config": control.read_config(handle),
                "daemon": control.daemon_state(handle),
                # per op: the smallest size from which the daemon is faster
                # (0: at every size; None: the kernel wherever both were measured)
                "crossover": {op: c["crossover"] for op, c in cross.items()},
                "keys": len(control.list_keys(handle))}


SPEC = CryptoOffload(
    name=NAME,
    object="crypto_offload",
    summary="UDP crypto service (SHA-256, HMAC, ChaCha20-Poly1305) answered in XDP or by a daemon, whichever is faster",
    hooks=[Hook("offload_xdp", "xdp")],
    requires=["xdp", "syscall_prog", "bpf_loop", "xdp_load_bytes", "ringbuf", "dynptr_mem"],
    knobs={"udp_port": f"UDP port of the service (default {P.DEFAULT_PORT})"},
    knob_ranges={"udp_port": (1, 65535)},
    header="crypto_offload",
    cli=app,
    commands={"offload": app},
    options={"mode": "routing: auto (default), kernel or daemon",
             "seed_threshold": f"bytes below which the seed estimates prefer the kernel "
                               f"(default {control.SEED_THRESHOLD}); measurements replace them"},
    option_commands={"mode": "cryptbpf offload config mode=M"},
    xdp_tx=True,
)
