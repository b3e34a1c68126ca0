"""crypto-ratelimit: per-source token buckets with proof-of-work admission.

Everything this program has in userspace; the modules are named as in
every program package (see cryptbpf.programs)."""

from .spec import SPEC

__all__ = ["SPEC"]
