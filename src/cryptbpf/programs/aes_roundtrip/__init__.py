"""aes-roundtrip: AES-CBC of UDP payloads through the kernel's bpf_crypto.

Everything this program has in userspace; the modules are named as in
every program package (see cryptbpf.programs)."""

from .spec import SPEC

__all__ = ["SPEC"]
