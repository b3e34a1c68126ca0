"""The small harness interface the ECDSA test scripts use, implemented on
cryptbpf's own loader (the scripts were first written against ctypes)."""

from __future__ import annotations

from cryptbpf.bpf.object import BpfObject
from cryptbpf.paths import bpf_object
from cryptbpf.bpf.program import prog_info

OBJ = str(bpf_object("ecdsa_kat"))


class Obj:
    def __init__(self, path: str = OBJ):
        self.o = BpfObject.open(path)
        self.o.load()

    def close(self):
        self.o.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def prog_fd(self, name: str) -> int:
        return self.o.program(name).fd

    def update(self, name: str, key: bytes, value: bytes) -> None:
        self.o.map(name).update(key, value)

    def delete(self, name: str, key: bytes) -> bool:
        return self.o.map(name).delete(key)

    def run(self, prog: str, data: bytes = b"", repeat: int = 0, ctx: bytes | None = None):
        """(retval, duration_ns, ctx after the run)"""
        r = self.o.program(prog).test_run(data=data or None, ctx=ctx, repeat=repeat)
        return r.retval, r.duration_ns, (r.ctx if ctx is not None else None)


def verified_insns(prog_fd: int) -> int:
    return prog_info(prog_fd).verified_insns
