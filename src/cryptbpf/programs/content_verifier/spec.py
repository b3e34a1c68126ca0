"""content-verifier: XDP drops every datagram to the protected UDP port whose
content does not hash (SHA-256, pure BPF) to the id in its header; an
optional allowlist of ids narrows what may pass.

The control plane here manages the allowlist of a loaded instance; the
`cryptbpf cas` commands are its peer (cryptbpf.programs.content_verifier.client): send a file as
content-addressed chunks, receive and reassemble it.
Wire format: bpf/include/content_verifier.h, docs/content_verifier.md."""

from __future__ import annotations

from . import client as cas
from ..base import Hook, ProgramSpec
from .control import NAME, allowlist, enforced
from .cli import app


class ContentVerifier(ProgramSpec):
    def status(self, handle) -> dict:
        return {"stats": self.stats(handle),
                "allowlist": {"ids": len(allowlist(handle)), "enforced": enforced(handle)}}


SPEC = ContentVerifier(
    name=NAME,
    object="content_verifier",
    summary="XDP drops UDP datagrams whose content does not hash to their id (SHA-256)",
    hooks=[Hook("content_verify", "xdp")],
    requires=["xdp", "bpf_loop", "xdp_load_bytes"],
    knobs={"udp_port": f"protected UDP port (default {cas.DEFAULT_PORT})"},
    knob_ranges={"udp_port": (1, 65535)},
    header="content_verifier",
    stats_type="struct content_verifier_stats",
    cli=app,
    commands={"cas": app},
)
