"""wireguard's ProgramSpec: what `cryptbpf doctor`, `programs` and the CLI
discovery need. The program is not loaded with `cryptbpf load`: one
instance per interface, made by the handshake daemon (`cryptbpf wg up`),
which owns its data plane (bpf_dataplane.BpfDataPlane)."""

from __future__ import annotations

from ...errors import CryptbpfError
from ..base import Hook, ProgramSpec
from .cli import cli


class WireGuard(ProgramSpec):
    def check_knobs(self, knobs: dict[str, int]) -> None:
        raise CryptbpfError("wireguard is not loaded with `cryptbpf load`: "
                            "run `cryptbpf wg up CONFIG` (a wg-quick file)")


SPEC = WireGuard(
    name="wireguard",
    object="wireguard",
    summary="WireGuard interfaces: transport data sealed/opened in BPF, handshake daemon in userspace",
    hooks=[Hook("wg_seal", "tc-ingress"), Hook("wg_open", "tc-ingress")],
    requires=["tc_bpf", "bpf_loop", "ringbuf"],
    cli=cli,
    commands={"wg": cli},
)
