"""The client end of zkp_filter: prove knowledge of a secret to an XDP
filter and get the source address authorized for its protected ports.

    from cryptbpf.programs.zkp_filter.client import connect
    result = connect("10.0.0.2", 7227, secret, key_id=1)   # ZkpAccepted

Wire format and proof construction: bpf/include/zkp_filter.h (read with
cffi, never re-typed here). The verifier a server stores is
`derive_verifier(secret)`; the secret itself never leaves the client.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
import time
from dataclasses import dataclass
from hashlib import sha256

from ...addresses import bind_local, resolve_ipv4
from ...errors import CryptbpfError
from ...bpf.headers import Layout

VERIFIER_LABEL = b"cryptbpf zkp v1"
CHALLENGE_LABEL = b"cbzkp v1"
DEFAULT_PORT = 7227

_L = Layout("zkp_filter")
MSG = "struct zkp_msg"
MSG_SIZE = _L.sizeof(MSG)


def derive_verifier(secret: bytes) -> bytes:
    """What the server stores instead of the secret."""
    if len(secret) < 16:
        raise CryptbpfError("a zkp secret must be at least 16 bytes")
    return hmac.new(secret, VERIFIER_LABEL, sha256).digest()


def _addr(addr: str) -> bytes:
    return ipaddress.IPv4Address(addr).packed


def compute_proof(verifier: bytes, challenge: bytes, client_addr: str, key_id: int) -> bytes:
    """HMAC-SHA256(verifier, challenge || addr[4] || key_id[4, big-endian])."""
    return hmac.new(verifier, challenge + _addr(client_addr) + key_id.to_bytes(4, "big"),
                    sha256).digest()


def compute_challenge(server_key: bytes, client_addr: str, slot: int, nonce: bytes) -> bytes:
    """The challenge the server would issue (for tests and benchmarks that
    know the server key): HMAC-SHA256(server_key, challenge_input)."""
    msg = (CHALLENGE_LABEL + _addr(client_addr) + b"\0\0" + b"\0\0" +
           slot.to_bytes(4, "big") + b"\0\0\0\0" + nonce)
    return hmac.new(server_key, msg, sha256).digest()


def pack(type_: str, **fields) -> bytes:
    """A zkp_msg; multi-byte integers are given in host order."""
    out = {"magic": _be32(_L.const("ZKP_MAGIC")), "version": _L.const("ZKP_VERSION"),
           "type": _L.const(f"ZKP_{type_.upper()}")}
    for k, v in fields.items():
        out[k] = _be32(v) if k in ("key_id", "slot", "lifetime_s") else v
    return _L.pack(MSG, **out)


def unpack(data: bytes) -> dict:
    """Decode a zkp_msg (integers back to host order); ValueError if it is not one."""
    if len(data) != MSG_SIZE:
        raise ValueError(f"zkp message must be {MSG_SIZE} bytes, got {len(data)}")
    m = _L.unpack(MSG, data)
    for k in ("magic", "key_id", "slot", "lifetime_s"):
        m[k] = _be32(m[k])
    if m["magic"] != _L.const("ZKP_MAGIC") or m["version"] != _L.const("ZKP_VERSION"):
        raise ValueError("not a zkp_filter message")
    return m


def _be32(v: int) -> int:
    """Swap a u32 between host (little-endian) and network order."""
    return int.from_bytes(v.to_bytes(4, "little"), "big")


def proof_message(challenge_msg: dict, verifier: bytes, client_addr: str, key_id: int) -> bytes:
    return pack("proof", key_id=key_id, slot=challenge_msg["slot"],
                client_nonce=challenge_msg["client_nonce"], challenge=challenge_msg["challenge"],
                proof=compute_proof(verifier, challenge_msg["challenge"], client_addr, key_id))


@dataclass
class ZkpAccepted:
    server: str
    port: int
    client_addr: str
    key_id: int
    lifetime_s: int
    rtt_ms: float


def connect(host: str, port: int, secret: bytes, key_id: int, timeout: float = 1.0,
            retries: int = 3, source: str | None = None) -> ZkpAccepted:
    """HELLO -> CHALLENGE -> PROOF -> ACCEPT. Raises CryptbpfError when no
    ACCEPT comes (the server says nothing to a wrong proof).

    A lost datagram restarts the whole exchange with a fresh hello: a proof
    is good for one challenge only, so resending it after a lost ACCEPT
    would be refused as a replay."""
    verifier = derive_verifier(secret)
    server = resolve_ipv4(host)
    challenged = False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        if source:
            bind_local(s, source, 0, "--source")
        s.connect((server, port))
        client_addr = s.getsockname()[0]
        for _ in range(retries):
            t0 = time.monotonic()
            chal = _exchange(s, pack("hello", client_nonce=os.urandom(16)), "challenge")
            if chal is None:
                continue
            challenged = True
            acc = _exchange(s, proof_message(chal, verifier, client_addr, key_id), "accept")
            if acc is not None and acc["challenge"] == chal["challenge"]:
                return ZkpAccepted(server, port, client_addr, key_id, acc["lifetime_s"],
                                   (time.monotonic() - t0) * 1000)
    if not challenged:
        raise CryptbpfError(f"no answer from {host}:{port} within {timeout:g}s, {retries} hello(s) "
                            f"sent (is zkp-filter loaded there with control port {port}?)")
    raise CryptbpfError("proof not accepted: wrong secret or key id, revoked key, "
                        "or the challenge expired")


def _exchange(s: socket.socket, request: bytes, want: str) -> dict | None:
    """Send `request`; the answer of type `want` for the same client nonce,
    or None after the socket's timeout."""
    want_type = _L.const(f"ZKP_{want.upper()}")
    nonce = unpack(request)["client_nonce"]
    s.send(request)
    deadline = time.monotonic() + s.gettimeout()
    while time.monotonic() < deadline:
        try:
            data = s.recv(2048)
        except (socket.timeout, ConnectionRefusedError):
            return None
        try:
            m = unpack(data)
        except ValueError:
            continue
        if m["type"] == want_type and m["client_nonce"] == nonce:
            return m
    return None
