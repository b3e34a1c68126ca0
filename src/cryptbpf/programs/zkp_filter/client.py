"""The client end of zkp_filter: prove knowledge of a key to an XDP
filter and get the source address authorized for its protected ports.

    from cryptbpf.programs.zkp_filter.client import connect, connect_zk
    result = connect("10.0.0.2", 7227, secret, key_id=1)        # HMAC key
    key = load_private_key("alice.pem")                          # 0600 PEM
    result = connect_zk("10.0.0.2", 7227, key, key_id=2)        # Schnorr key

Wire format, hash input and proof construction: bpf/include/zkp_filter.h
(read with cffi, never re-typed here). HMAC mode: the verifier a server
stores is `derive_verifier(secret)`. Schnorr mode: the server stores the
public key; the private key never leaves the client, and what goes on the
wire (V, r) is a non-interactive zero-knowledge proof of knowing it
(`schnorr_prove`; `schnorr_verify` is the same check the XDP program makes,
in userspace with pycryptodome's curve arithmetic).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import socket
import time
from dataclasses import dataclass
from hashlib import sha256
from typing import Callable

from cryptography.hazmat.primitives.asymmetric import ec

from ...addresses import bind_local, resolve_ipv4
from ...crypto.p256 import N as P256_N, P as P256_P
from ...crypto.p256_keys import public_point
from ...errors import CryptbpfError
from ...bpf.headers import Layout

VERIFIER_LABEL = b"cryptbpf zkp v1"
CHALLENGE_LABEL = b"cbzkp v1"
SCHNORR_LABEL = b"cbzkp schnorr v1"
DEFAULT_PORT = 7227

_L = Layout("zkp_filter")
MSG = "struct zkp_msg"
MSG_SIZE = _L.sizeof(MSG)
ZK_MSG = "struct zkp_zk_proof"
HASH_INPUT = "struct zkp_zk_hash_input"
G_POINT = public_point(ec.derive_private_key(1, ec.SECP256R1()).public_key())


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


# ---- Schnorr mode (RFC 8235 section 3 on P-256) ----

def _len4(n: int) -> bytes:
    return n.to_bytes(4, "big")


def schnorr_hash_input(v_point: bytes, a_point: bytes, key_id: int, challenge: bytes,
                       client_addr: str, server_addr: str, service_port: int) -> bytes:
    """G || V || A || UserID || OtherInfo, each length-prefixed: struct
    zkp_zk_hash_input (points: 65 bytes 04 || X || Y)."""
    return _L.pack(HASH_INPUT, g_len=_len4(65), g=G_POINT, v_len=_len4(65), v=v_point,
                   a_len=_len4(65), a=a_point, user_id_len=_len4(4), user_id=key_id.to_bytes(4, "big"),
                   other_info_len=_len4(_L.const("ZKP_OTHER_INFO_LEN")),
                   label_len=_len4(len(SCHNORR_LABEL)), label=SCHNORR_LABEL,
                   challenge_len=_len4(32), challenge=challenge,
                   client_addr_len=_len4(4), client_addr=_addr(client_addr),
                   server_addr_len=_len4(4), server_addr=_addr(server_addr),
                   service_len=_len4(2), service=service_port.to_bytes(2, "big"))


def schnorr_challenge(v_point: bytes, a_point: bytes, key_id: int, challenge: bytes,
                      client_addr: str, server_addr: str, service_port: int) -> int:
    """c = SHA-256(hash input) as a big-endian integer, mod n."""
    h = sha256(schnorr_hash_input(v_point, a_point, key_id, challenge, client_addr, server_addr,
                                  service_port)).digest()
    return int.from_bytes(h, "big") % P256_N


def schnorr_prove(key: ec.EllipticCurvePrivateKey, key_id: int, challenge: bytes, client_addr: str,
                  server_addr: str, service_port: int) -> tuple[bytes, int]:
    """(V as 65 bytes 04 || X || Y, r): V = v*G for a fresh random v,
    r = v - a*c mod n (never 0: then a new v is drawn)."""
    a = key.private_numbers().private_value
    a_point = public_point(key.public_key())
    while True:
        v = secrets.randbelow(P256_N - 1) + 1
        v_point = public_point(ec.derive_private_key(v, ec.SECP256R1()).public_key())
        c = schnorr_challenge(v_point, a_point, key_id, challenge, client_addr, server_addr, service_port)
        r = (v - a * c) % P256_N
        if r:
            return v_point, r


def schnorr_verify(a_point: bytes, v_point: bytes, r: int, key_id: int, challenge: bytes,
                   client_addr: str, server_addr: str, service_port: int) -> bool:
    """The check XDP makes, in userspace: V on the curve, 1 <= r < n,
    V == r*G + c*A (pycryptodome's point arithmetic)."""
    from Crypto.PublicKey import ECC

    def point(b: bytes):
        x, y = int.from_bytes(b[1:33], "big"), int.from_bytes(b[33:], "big")
        if len(b) != 65 or b[0] != 4 or x >= P256_P or y >= P256_P:
            raise ValueError("not an uncompressed point")
        return ECC.EccPoint(x, y, "P-256")      # ValueError off the curve; (0, 0): infinity

    try:
        v, a = point(v_point), point(a_point)
    except ValueError:
        return False
    if not 1 <= r < P256_N or v.is_point_at_infinity() or a.is_point_at_infinity():
        return False
    c = schnorr_challenge(v_point, a_point, key_id, challenge, client_addr, server_addr, service_port)
    return point(G_POINT) * r + a * c == v


def zk_pack(**fields) -> bytes:
    """A zkp_zk_proof (type ZK_PROOF); key_id and slot in host order."""
    out = {"magic": _be32(_L.const("ZKP_MAGIC")), "version": _L.const("ZKP_VERSION"),
           "type": _L.const("ZKP_ZK_PROOF")}
    for k, v in fields.items():
        out[k] = _be32(v) if k in ("key_id", "slot", "lifetime_s") else v
    return _L.pack(ZK_MSG, **out)


def zk_proof_message(challenge_msg: dict, key: ec.EllipticCurvePrivateKey, key_id: int,
                     client_addr: str, server_addr: str, service_port: int) -> bytes:
    v_point, r = schnorr_prove(key, key_id, challenge_msg["challenge"], client_addr, server_addr,
                               service_port)
    return zk_pack(key_id=key_id, slot=challenge_msg["slot"], client_nonce=challenge_msg["client_nonce"],
                   challenge=challenge_msg["challenge"], v=v_point[1:], r=r.to_bytes(32, "big"))


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
    """HELLO -> CHALLENGE -> PROOF -> ACCEPT with an HMAC key. Raises
    CryptbpfError when no ACCEPT comes (the server says nothing to a wrong
    proof).

    A lost datagram restarts the whole exchange with a fresh hello: a proof
    is good for one challenge only, so resending it after a lost ACCEPT
    would be refused as a replay."""
    verifier = derive_verifier(secret)
    return _connect(host, port, key_id, timeout, retries, source,
                    lambda chal, client, server: proof_message(chal, verifier, client, key_id))


def connect_zk(host: str, port: int, key: ec.EllipticCurvePrivateKey, key_id: int,
               timeout: float = 1.0, retries: int = 3, source: str | None = None) -> ZkpAccepted:
    """HELLO -> CHALLENGE -> ZK_PROOF -> ACCEPT with a Schnorr key (a P-256
    private key whose public key the server registered under key_id)."""
    return _connect(host, port, key_id, timeout, retries, source,
                    lambda chal, client, server: zk_proof_message(chal, key, key_id, client, server, port))


def _connect(host: str, port: int, key_id: int, timeout: float, retries: int, source: str | None,
             make_proof: Callable[[dict, str, str], bytes]) -> ZkpAccepted:
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
            acc = _exchange(s, make_proof(chal, client_addr, server), "accept", chal["client_nonce"])
            if acc is not None and acc["challenge"] == chal["challenge"]:
                return ZkpAccepted(server, port, client_addr, key_id, acc["lifetime_s"],
                                   (time.monotonic() - t0) * 1000)
    if not challenged:
        raise CryptbpfError(f"no answer from {host}:{port} within {timeout:g}s, {retries} hello(s) "
                            f"sent (is zkp-filter loaded there with control port {port}?)")
    raise CryptbpfError("proof not accepted: wrong secret or key, wrong key id or mode, revoked key, "
                        "budget spent, or the challenge expired")


def _exchange(s: socket.socket, request: bytes, want: str, nonce: bytes | None = None) -> dict | None:
    """Send `request`; the answer of type `want` for the same client nonce,
    or None after the socket's timeout."""
    want_type = _L.const(f"ZKP_{want.upper()}")
    nonce = nonce or unpack(request)["client_nonce"]
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
