"""pki-validator: X.509 certificate-chain access control in XDP.

Everything this program has in userspace; the modules are named as in
every program package (see cryptbpf.programs)."""

from .spec import SPEC

__all__ = ["SPEC"]
