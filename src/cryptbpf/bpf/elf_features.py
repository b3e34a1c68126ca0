"""Which kernel features a compiled BPF object uses, read from its ELF:
program sections, helper calls and kfunc symbols, mapped to
kernel.FEATURES. The compatibility tables (scripts/compat-table) and the
test that every ProgramSpec declares what its object needs both use it.
Only features with a probe are listed."""

from __future__ import annotations

import struct
from pathlib import Path

from . import kernel

SECTION_FEATURES = {"tc": "tc_bpf", "classifier": "tc_bpf", "xdp": "xdp",
                    "tracepoint": "tracepoint", "tp/": "tracepoint", "raw_tp": "tracepoint",
                    "syscall": "syscall_prog"}
HELPER_FEATURES = {kernel.FUNC_LOOP: "bpf_loop", kernel.FUNC_XDP_LOAD_BYTES: "xdp_load_bytes",
                   kernel.FUNC_KPTR_XCHG: "kptr", kernel.FUNC_DYNPTR_FROM_MEM: "dynptr_mem",
                   130: "ringbuf", 131: "ringbuf", 132: "ringbuf"}
KFUNC_FEATURES = {"bpf_dynptr_from_skb": "dynptr_skb", "bpf_dynptr_from_xdp": "dynptr_skb",
                  "bpf_iter_num_new": "iter_num", "bpf_crypto_encrypt": "bpf_crypto",
                  "bpf_crypto_decrypt": "bpf_crypto", "bpf_crypto_ctx_create": "bpf_crypto"}


def object_features(path: Path) -> tuple[set[str], set[str]]:
    """(features the object needs, features it uses only if present: weak kfuncs)."""
    b = path.read_bytes()
    shoff, = struct.unpack_from("<Q", b, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", b, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", b, shoff + i * shentsize) for i in range(shnum)]
    strtab = secs[shstrndx]

    def name(off: int, tab) -> str:
        start = tab[4] + off
        return b[start:b.index(b"\0", start)].decode()

    need, optional = set(), set()
    for sec in secs:
        sname, stype, flags, off, size = name(sec[0], strtab), sec[1], sec[2], sec[4], sec[5]
        if flags & 0x4 and size:                                 # SHF_EXECINSTR
            for prefix, feat in SECTION_FEATURES.items():
                if sname.startswith(prefix):
                    need.add(feat)
            for i in range(off, off + size, 8):
                code, regs, _, imm = struct.unpack_from("<BBhi", b, i)
                if code == 0x85 and regs >> 4 == 0 and imm in HELPER_FEATURES:
                    need.add(HELPER_FEATURES[imm])
        if stype == 2:                                           # SHT_SYMTAB
            names = secs[sec[6]]
            for j in range(off, off + size, 24):
                st_name, info, _, shndx = struct.unpack_from("<IBBH", b, j)
                sym = name(st_name, names) if st_name else ""
                if shndx == 0 and sym in KFUNC_FEATURES:
                    (optional if info >> 4 == 2 else need).add(KFUNC_FEATURES[sym])
    return need, optional - need
