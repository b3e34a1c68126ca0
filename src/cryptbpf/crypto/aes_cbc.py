"""Userspace side of bpf/include/aes_cbc.bpf.h: hand an AES key to a
program's SYSCALL setup program (aes_ctx_install), which creates the
bpf_crypto context in the kernel."""

from __future__ import annotations

from ..errors import CryptbpfError
from ..bpf.headers import Layout

# kernel.FEATURES that aes_cbc_available() in aes_cbc.bpf.h tests for: the
# bpf_crypto skcipher kfuncs and packet dynptrs. Without them an object's
# AES code is skipped by the verifier and cannot run.
AES_FEATURES = ["bpf_crypto", "dynptr_skb"]


def install_aes_key(handle, program: str, key: bytes, slot: int = 0, ecb: bool = False) -> None:
    """Run the SYSCALL setup `program` of `handle` (a loaded BpfObject or
    Pinned) with `key`; raises if the kernel refused to create the context."""
    layout = Layout("aes_cbc")
    args = layout.pack("struct aes_key_setup", key=key, key_len=len(key), slot=slot,
                       mode=layout.const("AES_MODE_ECB") if ecb else layout.const("AES_MODE_CBC"))
    res = handle.program(program).test_run(ctx=args)
    err = layout.unpack("struct aes_key_setup", res.ctx)["err"]
    if err:
        raise CryptbpfError(f"bpf_crypto refused the AES key: errno {-err}")
