"""The sending side of signed-auth: signed datagrams (key files: crypto.p256_keys).

An application signs its UDP datagrams with a private key whose public half
the receiver trusts (`cryptbpf signed-auth trust`); the receiver's XDP
program verifies each one and strips the trailer, so the receiving socket
sees exactly what was signed. Wire format: bpf/include/signed_auth.h.

    from cryptbpf.programs.signed_auth.client import Signer
    signer = Signer.from_pem_file("alice.pem", key_id=7)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("10.0.0.2", 4242))
    signer.send(sock, b"hello")          # data || trailer, signed for this 4-tuple

The signature covers the source and destination address and port, so the
addresses must be the ones the receiver sees: NAT between the two ends
breaks every signature (that is the anti-spoofing property).

Sequence numbers: each datagram carries a fresh one; the receiver accepts a
number once, within a window below the highest it has seen. By
specification a sequence number is the signing time in CLOCK_REALTIME
nanoseconds: a Signer uses max(previous + 1, time.time_ns()), so a
restarted sender continues above the numbers it used before (as long as the
clock does not go back across the restart), and the receiver can refuse
anything signed more than its `max_skew_s` (default 30 s) before it
(re)created the key's window: a datagram captured earlier cannot be
replayed after the receiver reloads or re-trusts the key. Sender and
receiver clocks must agree to within max_skew_s (NTP).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from ...crypto.p256_keys import load_private_key
from ...errors import CryptbpfError
from ...bpf.headers import Layout

_LAYOUT = Layout("signed_auth")
MAGIC = _LAYOUT.const("SIGNED_AUTH_MAGIC")
VERSION = _LAYOUT.const("SIGNED_AUTH_VERSION")
TRAILER_LEN = _LAYOUT.const("SIGNED_AUTH_TRAILER_LEN")
HDR_LEN = _LAYOUT.const("SIGNED_AUTH_HDR_LEN")
SIG_LEN = _LAYOUT.const("SIGNED_AUTH_SIG_LEN")

Addr = tuple[str, int]   # (IPv4 address, UDP port)


def _net(value: int, size: int) -> int:
    """An integer whose in-memory bytes (host order, as cffi stores a struct
    field) are `value` in network order: the header's __be fields."""
    return int.from_bytes(value.to_bytes(size, "big"), sys.byteorder)


def _host(value: int, size: int) -> int:
    return int.from_bytes(value.to_bytes(size, sys.byteorder), "big")


def _ipv4(addr: str) -> int:
    try:
        return int(ipaddress.IPv4Address(addr))
    except ValueError:
        raise CryptbpfError(f"{addr!r} is not an IPv4 address (signed-auth is IPv4 only)") from None


def signed_header(key_id: int, seq: int, src: Addr, dst: Addr, data_len: int) -> bytes:
    """struct signed_auth_signed_hdr: what is signed before the data."""
    return _LAYOUT.pack("struct signed_auth_signed_hdr",
                        magic=_net(MAGIC, 2), version=VERSION, flags=0,
                        key_id=_net(key_id, 4), seq=_net(seq, 8),
                        saddr=_net(_ipv4(src[0]), 4), daddr=_net(_ipv4(dst[0]), 4),
                        sport=_net(src[1], 2), dport=_net(dst[1], 2),
                        data_len=_net(data_len, 4))


def trailer(key_id: int, seq: int, sig: bytes) -> bytes:
    """struct signed_auth_trailer for a P1363 signature r || s."""
    if len(sig) != SIG_LEN:
        raise ValueError(f"signature must be {SIG_LEN} bytes (P1363 r || s)")
    return _LAYOUT.pack("struct signed_auth_trailer", magic=_net(MAGIC, 2), version=VERSION,
                        flags=0, key_id=_net(key_id, 4), seq=_net(seq, 8), sig=sig)


def parse_trailer(payload: bytes) -> dict:
    """The trailer fields of a signed payload (integers in host order), and
    `data`, the payload without it."""
    if len(payload) < TRAILER_LEN:
        raise ValueError(f"payload shorter than a trailer ({TRAILER_LEN} bytes)")
    t = _LAYOUT.unpack("struct signed_auth_trailer", payload[-TRAILER_LEN:])
    return {"magic": _host(t["magic"], 2), "version": t["version"], "flags": t["flags"],
            "key_id": _host(t["key_id"], 4), "seq": _host(t["seq"], 8), "sig": t["sig"],
            "data": payload[:-TRAILER_LEN]}


def message(key_id: int, seq: int, src: Addr, dst: Addr, data: bytes) -> bytes:
    """The bytes whose SHA-256 is signed."""
    return signed_header(key_id, seq, src, dst, len(data)) + data


def _p1363(der: bytes) -> bytes:
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class Signer:
    """Signs datagrams for one key id; thread-safe."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, key_id: int,
                 seq: int | None = None):
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or \
                not isinstance(private_key.curve, ec.SECP256R1):
            raise CryptbpfError("signed-auth keys are ECDSA P-256 (secp256r1) keys")
        if not 0 <= key_id < 2**32:
            raise CryptbpfError(f"key id {key_id} does not fit in 32 bits")
        self.key = private_key
        self.key_id = key_id
        self._first = seq       # an explicit first sequence number, used as is
        self._last = -1
        self._lock = threading.Lock()

    @classmethod
    def from_pem_file(cls, path: str | os.PathLike, key_id: int, seq: int | None = None) -> "Signer":
        return cls(load_private_key(path), key_id, seq)

    def next_seq(self) -> int:
        """max(previous + 1, wall clock ns): strictly increasing, and never
        behind the clock, so the receiver's replay floor (wall clock minus
        max_skew_s at its last reload/re-trust) never catches up with a
        sender that is idle for a while."""
        with self._lock:
            if self._first is not None:
                seq, self._first = self._first, None
            else:
                seq = max(self._last + 1, time.time_ns())
            self._last = seq
        if seq >= 2**64:
            raise CryptbpfError("sequence numbers exhausted for this key")
        return seq

    def sign(self, data: bytes, src: Addr, dst: Addr, seq: int | None = None) -> bytes:
        """data || trailer, for a datagram from src to dst."""
        seq = self.next_seq() if seq is None else seq
        der = self.key.sign(message(self.key_id, seq, src, dst, data), ec.ECDSA(hashes.SHA256()))
        return bytes(data) + trailer(self.key_id, seq, _p1363(der))

    def send(self, sock: socket.socket, data: bytes, dst: Addr | None = None) -> int:
        """Sign `data` for `sock`'s addresses and send it: to `dst`, or to
        the peer of a connected socket. Binds an unbound socket to an
        ephemeral port first (the source port is signed)."""
        connected = dst is None
        if connected:
            dst = sock.getpeername()
        dst = (socket.gethostbyname(dst[0]), int(dst[1]))
        host, port = sock.getsockname()[:2]
        if port == 0:
            sock.bind(("0.0.0.0", 0))
            host, port = sock.getsockname()[:2]
        if host == "0.0.0.0":
            host = source_address(dst[0])
        datagram = self.sign(data, (host, port), dst)
        return sock.send(datagram) if connected else sock.sendto(datagram, dst)


def source_address(dst: str) -> str:
    """The local IPv4 address the routing table picks to reach dst."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((dst, 9))
        return s.getsockname()[0]


def verify(public_key: ec.EllipticCurvePublicKey, payload: bytes, src: Addr, dst: Addr) -> dict:
    """Userspace reference check of a signed payload (as the XDP program
    does it, minus the replay window); raises CryptbpfError if invalid.
    Returns parse_trailer()'s fields."""
    t = parse_trailer(payload)
    if (t["magic"], t["version"], t["flags"]) != (MAGIC, VERSION, 0):
        raise CryptbpfError("no signed-auth trailer")
    r, s = int.from_bytes(t["sig"][:32], "big"), int.from_bytes(t["sig"][32:], "big")
    try:
        public_key.verify(utils.encode_dss_signature(r, s),
                          message(t["key_id"], t["seq"], src, dst, t["data"]),
                          ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise CryptbpfError("signature invalid") from None
    return t
