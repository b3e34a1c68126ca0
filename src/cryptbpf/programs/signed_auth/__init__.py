"""signed-auth: ECDSA P-256 signed UDP datagrams, verified in XDP.

Everything this program has in userspace; the modules are named as in
every program package (see cryptbpf.programs)."""

from .spec import SPEC

__all__ = ["SPEC"]
