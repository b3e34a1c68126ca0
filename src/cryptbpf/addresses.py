"""Host names and local addresses given to a peer, checked once, so a bad
one is reported as one line naming it (the socket module's own errors,
such as `[Errno -2] Name or service not known` or `[Errno 99] Cannot assign
requested address`, say neither which name nor which option)."""

from __future__ import annotations

import errno
import ipaddress
import socket

from .errors import CryptbpfError


def resolve_ipv4(host: str, what: str = "host") -> str:
    """`host` (an IPv4 address or a name) as a dotted-quad IPv4 address, or
    a CryptbpfError naming `what` and `host`."""
    if not host or not host.strip():
        raise CryptbpfError(f"{what} is empty")
    if ":" in host and _is_ipv6(host):
        raise CryptbpfError(f"{what} {host} is an IPv6 address; this peer speaks IPv4 only")
    try:
        return socket.gethostbyname(host)
    except socket.gaierror as e:
        raise CryptbpfError(f"cannot resolve {what} {host!r}: {e.strerror}") from None
    except UnicodeError:
        raise CryptbpfError(f"{what} {host!r} is not a valid host name") from None


def resolve(host: str, port: int, what: str = "host", family: int = 0) -> tuple[int, tuple]:
    """(family, sockaddr) of `host` for a UDP socket (IPv4 or IPv6), or a
    CryptbpfError naming `what` and `host`."""
    if not host or not host.strip():
        raise CryptbpfError(f"{what} is empty")
    try:
        fam, _, _, _, addr = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)[0]
    except socket.gaierror as e:
        raise CryptbpfError(f"cannot resolve {what} {host!r}: {e.strerror}") from None
    except UnicodeError:
        raise CryptbpfError(f"{what} {host!r} is not a valid host name") from None
    return fam, addr


def bind_local(sock: socket.socket, addr: str, port: int = 0, what: str = "--source") -> None:
    """Bind `sock` to `addr`:`port`; `addr` must be configured on an
    interface of this host (of the socket's network namespace). Errors
    name `what` and the address."""
    host = addr
    if addr:
        host = _local_literal(addr, sock.family, what)
    try:
        sock.bind((host, port))
    except OSError as e:
        if e.errno == errno.EADDRNOTAVAIL:
            raise CryptbpfError(f"{what} {addr}: not an address of this host (no interface "
                                "has it; `ip -br addr` lists them)") from None
        if e.errno == errno.EADDRINUSE:
            raise CryptbpfError(f"{what} {addr}: port {port} is already in use") from None
        raise CryptbpfError(f"{what} {addr}: cannot bind: {e.strerror}") from None


def check_local(addr: str, what: str = "--local") -> str:
    """`addr` if it is an IPv4 address configured on an interface here
    (in the current network namespace), else a CryptbpfError naming it."""
    try:
        ipaddress.IPv4Address(addr)
    except ValueError:
        raise CryptbpfError(f"{what} {addr!r} is not an IPv4 address") from None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        bind_local(s, addr, 0, what)
    return addr


def _local_literal(addr: str, family: int, what: str) -> str:
    """A numeric address for bind(): names are resolved (in the socket's
    family) with an error naming them."""
    try:
        ipaddress.ip_address(addr.split("%")[0])
        return addr
    except ValueError:
        pass
    if family == socket.AF_INET:
        return resolve_ipv4(addr, what)
    return resolve(addr, 0, what, family)[1][0]


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.split("%")[0])
        return True
    except ValueError:
        return False
