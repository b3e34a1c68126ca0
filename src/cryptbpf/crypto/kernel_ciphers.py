"""Which implementation each crypto primitive takes on the running kernel,
and which kernel driver stands behind bpf_crypto (`doctor`, `bench`).

bpf_crypto's only type, "skcipher", allocates with crypto_alloc_lskcipher()
(docs/kernel_compat.md, "ChaCha20 through bpf_crypto"): it reaches what the
kernel registers as an lskcipher -- the cbc/ecb templates over the single-
block `aes` cipher (aes-aesni where that module is loaded) -- and none of
the skcipher drivers (chacha20-simd, chacha20-generic, cbc-aes-aesni).
bpf/crypto_probe.bpf.c asks bpf_crypto_ctx_create() for an algorithm and
returns its errno, so what is reported here is what the kernel answered,
not what its version suggests.
"""

from __future__ import annotations

import errno
import functools
from pathlib import Path

from ..bpf import kernel
from ..bpf.object import BpfObject
from ..errors import CryptbpfError
from ..paths import bpf_object

PROC_CRYPTO = Path("/proc/crypto")


@functools.lru_cache(maxsize=None)
def bpf_crypto_errno(algo: str, key_len: int) -> int:
    """bpf_crypto_ctx_create("skcipher", algo) on this kernel: 0 or -errno
    (-ENOSYS without bpf_crypto, -EPERM when the probe cannot load)."""
    if not kernel.has("bpf_crypto"):
        return -errno.ENOSYS
    try:
        with BpfObject.open(str(bpf_object("crypto_probe"))) as obj:
            obj.set_global("probe_algo", algo.encode())
            obj.set_global("probe_key_len", key_len)
            obj.load()
            return obj.program("crypto_probe").test_run().retval
    except CryptbpfError:
        return -errno.EPERM


def proc_crypto(name: str) -> list[dict[str, str]]:
    """/proc/crypto's entries named `name`, highest priority first."""
    if not PROC_CRYPTO.exists():
        return []
    entries = []
    for block in PROC_CRYPTO.read_text().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            entry[key.strip()] = value.strip()
        if entry.get("name") == name:
            entries.append(entry)
    return sorted(entries, key=lambda e: -int(e.get("priority", "0")))


def bpf_crypto_driver(algo: str) -> str | None:
    """The driver bpf_crypto gets for `algo`: the best lskcipher of that name
    (the kernel instantiates it on first allocation, so probe first)."""
    for entry in proc_crypto(algo):
        if entry.get("type") == "lskcipher":
            return entry.get("driver")
    return None


def _errno_name(err: int) -> str:
    if -err == errno.EOPNOTSUPP:    # errorcode says ENOTSUP, the same number
        return "EOPNOTSUPP"
    return errno.errorcode.get(-err, str(err))


def aes_cbc_path() -> str:
    if not kernel.has("bpf_crypto"):
        return "unavailable (no bpf_crypto kfuncs)"
    err = bpf_crypto_errno("cbc(aes)", 32)
    if err:
        return f"unavailable (bpf_crypto_ctx_create(cbc(aes)) = -{_errno_name(err)})"
    driver = bpf_crypto_driver("cbc(aes)") or "driver not listed in /proc/crypto"
    return f"kfunc bpf_crypto_encrypt/decrypt: cbc(aes) = {driver}"


def chacha20_path() -> str:
    """Pure BPF unless a kernel gives bpf_crypto a chacha20 lskcipher (none
    does up to 6.18). If one ever does, this says so, and the probe test
    (tests/test_bpf_crypto_algos.py) fails until the programs use it."""
    if not kernel.has("bpf_crypto"):
        return "pure BPF (no bpf_crypto kfuncs)"
    err = bpf_crypto_errno("chacha20", 32)
    if err == 0:
        return ("pure BPF; NOTE: this kernel's bpf_crypto can allocate chacha20 "
                f"({bpf_crypto_driver('chacha20')}), which cryptbpf does not use yet")
    have = ", ".join(e.get("driver", "?") for e in proc_crypto("chacha20"))
    why = f"the kernel's chacha20 ({have}) is an skcipher only" if have else "no chacha20 in this kernel"
    return f"pure BPF (bpf_crypto_ctx_create(chacha20) = -{_errno_name(err)}: {why})"


def primitive_paths() -> dict[str, str]:
    """Which implementation each crypto primitive takes on this kernel."""
    def first(*choices: tuple[str, str]) -> str:
        for feature, label in choices:
            if feature == "" or kernel.has(feature):
                return label
        return "unavailable"

    def sha(bits: int) -> str:
        return first((f"kfunc_sha{bits}_v1", f"kfunc bpf_sha{bits}_hash (v1)"),
                     ("kfunc_crypto_hash_v8", "kfunc bpf_crypto_hash (v8)"),
                     ("", "pure BPF"))
    return {
        "sha256": sha(256), "sha384": sha(384), "sha512": sha(512),
        "hmac-sha256": "HMAC in BPF over " + sha(256),
        "hmac-sha512": "HMAC in BPF over " + sha(512),
        "chacha20-poly1305": chacha20_path(),
        "aes-cbc": aes_cbc_path(),
        "ecdsa-p256": first(("kfunc_ecdsa_v1", "kfunc bpf_ecdsa_verify (v1)"),
                            ("kfunc_sig_verify_v8", "kfunc bpf_sig_verify (v8)"),
                            ("", "pure BPF")),
    }
