"""aes-roundtrip: AES-CBC of UDP payloads through the kernel's bpf_crypto.

The smallest real data path (and the foundation's end-to-end proof): TC
egress pads and encrypts `iv || data` payloads to one UDP port in place, TC
ingress decrypts and unpads. Wire format: bpf/include/aes_roundtrip.h.
"""

from __future__ import annotations

from ..errors import CryptbpfError
from ..headers import Layout
from .base import Hook, ProgramSpec


def install_aes_key(handle, program: str, key: bytes, slot: int = 0, ecb: bool = False) -> None:
    """Run a SYSCALL setup program (aes_cbc.bpf.h's aes_ctx_install) with
    `key`; raises if the kernel refused to create the context."""
    layout = Layout("aes_cbc")
    args = layout.pack("struct aes_key_setup", key=key, key_len=len(key), slot=slot,
                       mode=layout.const("AES_MODE_ECB") if ecb else layout.const("AES_MODE_CBC"))
    res = handle.program(program).test_run(ctx=args)
    err = layout.unpack("struct aes_key_setup", res.ctx)["err"]
    if err:
        raise CryptbpfError(f"bpf_crypto refused the AES key: errno {-err}")


class AesRoundtrip(ProgramSpec):
    def install_key(self, handle, key: bytes) -> None:
        install_aes_key(handle, "aes_setup", key)


SPEC = AesRoundtrip(
    name="aes-roundtrip",
    object="aes_roundtrip",
    summary="AES-CBC of UDP payloads with bpf_crypto (egress encrypts, ingress decrypts)",
    hooks=[Hook("aes_encrypt", "tc-egress"), Hook("aes_decrypt", "tc-ingress")],
    requires=["tc_bpf", "syscall_prog", "kptr", "dynptr_skb", "bpf_crypto"],
    knobs={"udp_port": "UDP destination port whose payloads are transformed (default 4242)"},
    key_sizes=(16, 32),
    header="aes_roundtrip",
    stats_type="struct aes_roundtrip_stats",
)
