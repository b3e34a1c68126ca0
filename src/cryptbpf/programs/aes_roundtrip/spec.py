"""aes-roundtrip: AES-CBC of UDP payloads through the kernel's bpf_crypto.

The smallest real data path (and the foundation's end-to-end proof): TC
egress pads and encrypts `iv || data` payloads to one UDP port in place, TC
ingress decrypts and unpads. Wire format: bpf/include/aes_roundtrip.h.
"""

from __future__ import annotations

from ...crypto.aes_cbc import install_aes_key
from ..base import Hook, ProgramSpec


class AesRoundtrip(ProgramSpec):
    def install_key(self, handle, key: bytes) -> None:
        install_aes_key(handle, "aes_setup", key)


SPEC = AesRoundtrip(
    name="aes-roundtrip",
    object="aes_roundtrip",
    summary="AES-CBC of UDP payloads with bpf_crypto (egress encrypts, ingress decrypts)",
    hooks=[Hook("aes_encrypt", "tc-egress"), Hook("aes_decrypt", "tc-ingress")],
    requires=["tc_bpf", "syscall_prog", "kptr", "dynptr_skb", "bpf_crypto", "dynptr_mem"],
    knobs={"udp_port": "UDP destination port whose payloads are transformed (default 4242)"},
    knob_ranges={"udp_port": (1, 65535)},
    key_sizes=(16, 32),
    header="aes_roundtrip",
    stats_type="struct aes_roundtrip_stats",
)
