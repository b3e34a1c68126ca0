"""Port numbers given on the command line or to a peer, checked once."""

from __future__ import annotations

from .errors import CryptbpfError


def udp_port(value: int | str, what: str = "port") -> int:
    """value as a port number 1..65535, or a CryptbpfError naming `what`
    (a socket would otherwise raise OverflowError for 65536 and up, or
    silently use an ephemeral port for 0)."""
    try:
        n = int(value)
    except ValueError:
        raise CryptbpfError(f"{what} {value!r} is not a number") from None
    if not 1 <= n <= 65535:
        raise CryptbpfError(f"{what} {n} out of range 1-65535")
    return n
