"""crypto-offload: a UDP crypto service answered in XDP when that is faster.

Everything this program has in userspace; the modules are named as in
every program package (see cryptbpf.programs)."""

from .spec import SPEC

__all__ = ["SPEC"]
