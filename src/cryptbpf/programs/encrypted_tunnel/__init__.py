"""encrypted-tunnel: authenticated, replay-protected IPv4 host-to-host encryption.

Everything this program has in userspace; the modules are named as in
every program package (see cryptbpf.programs)."""

from .spec import SPEC

__all__ = ["SPEC"]
