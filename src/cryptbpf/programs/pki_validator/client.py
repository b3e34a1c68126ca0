"""The client side of pki_validator's authentication exchange
(bpf/include/pki_validator.h): HELLO, one CERT per certificate, PROOF.

    peer = Peer("10.0.0.1")                      # control port 7443
    until = peer.authenticate([inter_der], leaf_der, leaf_key)

The server answers only what it accepts; a rejected message gets no reply,
so a rejection shows up here as a timeout (the server counts the reason).
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from ...addresses import resolve_ipv4
from ...errors import CryptbpfError
from ...bpf.headers import Layout
from . import der

POP_CONTEXT = b"cryptbpf-pki-po1"    # PKI_POP_CONTEXT


class Rejected(CryptbpfError):
    """The server did not answer a message: it was rejected (or lost)."""


@dataclass
class Challenge:
    slot: int
    nonce: bytes
    mac: bytes


def _L() -> Layout:
    return Layout("pki_validator")


MAX_PATH = 16      # CA certificates a path may hold (the server's own limit is lower)


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Did `issuer` sign `cert`? Its subject Name is cert's issuer Name
    byte for byte (as the kernel compares them) and its key verifies cert's
    signature."""
    if der.cert_fields(cert).issuer != der.cert_fields(issuer).subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def self_signed(cert: x509.Certificate) -> bool:
    return issued_by(cert, cert)


def build_path(leaf: x509.Certificate, pool: list[x509.Certificate],
               anchors: list[x509.Certificate] = ()) -> list[x509.Certificate] | None:
    """The CA certificates that lead from the leaf to a trust anchor, in the
    order the server needs them (the one the anchor issued first), like a
    path builder (RFC 4158): each step goes to a certificate of `pool`
    whose subject and key issued the previous one (the signature is
    checked, so several certificates with one Name -- a key rollover, a
    cross-signed copy -- are told apart), never twice to the same one, and
    the search backtracks out of dead ends. Shortest path first.

    With `anchors`: the path ends where an anchor issued the last
    certificate; it never goes past one (a cross-signed copy of the anchor
    is not followed to the root that signed it). Self-issued intermediates
    (same Name, another key) are ordinary steps and are kept. None when no
    path reaches an anchor.
    Without: the path ends at a self-signed certificate (left out: the
    server has it) or where `pool` holds no issuer of the last one (its
    issuer is taken to be the server's anchor). Never None."""
    seen: dict[bytes, x509.Certificate] = {}
    for c in pool:
        seen.setdefault(der_of(c), c)
    cands = list(seen.values())

    def search(cur, path, depth):
        if anchors and any(issued_by(cur, a) for a in anchors):
            return path
        if not anchors and self_signed(cur):
            return path[1:]         # cur is the root: the server has it
        on_path = {der_of(c) for c in path} | {der_of(cur)}
        nxt = [c for c in cands if der_of(c) not in on_path and issued_by(cur, c)]
        if not anchors and not nxt:
            return path             # the server is taken to hold cur's issuer
        if depth == 0:
            return None
        if not anchors:             # a self-signed issuer ends the path: try it first
            nxt.sort(key=lambda c: not self_signed(c))
        for c in nxt:
            found = search(c, [c] + path, depth - 1)
            if found is not None:
                return found
        return None

    for depth in range(MAX_PATH + 1):
        found = search(leaf, [], depth)
        if found is not None:
            return found
    return None if anchors else []


def pop_digest(c: Challenge, client_ip: str) -> bytes:
    """What the leaf key signs:
    SHA-256(PKI_POP_CONTEXT || slot || nonce || challenge || client IPv4)."""
    return hashlib.sha256(POP_CONTEXT + c.slot.to_bytes(4, "big") + c.nonce + c.mac +
                          socket.inet_aton(client_ip)).digest()


def pop_signature(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    r, s = utils.decode_dss_signature(key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256()))))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class Peer:
    """One UDP socket to the server's control port."""

    def __init__(self, host: str, port: int | None = None, timeout: float = 2.0):
        self.L = _L()
        self.port = port or self.L.const("PKI_CTRL_PORT")
        self.host = host
        addr = resolve_ipv4(host)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)
        self.sock.connect((addr, self.port))
        self.local_ip = self.sock.getsockname()[0]
        self.challenge: Challenge | None = None
        self.sent: list[bytes] = []     # every datagram sent (tests replay them)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- messages ----
    def msg(self, mtype: int, flags: int = 0, body: bytes = b"") -> bytes:
        c = self.challenge or Challenge(0, self._nonce, bytes(32))
        hdr = self.L.pack("struct pki_msg", magic=socket.htonl(self.L.const("PKI_MAGIC")),
                          version=self.L.const("PKI_VERSION"), type=mtype, flags=flags,
                          slot=socket.htonl(c.slot), nonce=c.nonce, challenge=c.mac)
        return hdr + body

    def _exchange(self, payload: bytes, what: str) -> dict:
        self.sent.append(payload)
        try:
            self.sock.send(payload)
            data = self.sock.recv(2048)
        except socket.timeout:
            raise Rejected(f"{what}: no answer from {self.host}:{self.port} (rejected; "
                           "the server's `cryptbpf pki status` counts the reason)") from None
        except ConnectionRefusedError:
            raise CryptbpfError(f"{what}: no answer from {self.host}:{self.port} (port unreachable: "
                                "is pki-validator loaded there with this control port?)") from None
        if len(data) < self.L.const("PKI_MSG_LEN"):
            raise CryptbpfError(f"{what}: short reply ({len(data)} bytes)")
        m = self.L.unpack("struct pki_msg", data)
        m["body"] = data[self.L.const("PKI_MSG_LEN"):]
        return m

    def hello(self) -> Challenge:
        self.challenge = None
        self._nonce = os.urandom(self.L.const("PKI_NONCE_LEN"))
        pad = self.L.const("PKI_HELLO_LEN") - self.L.const("PKI_MSG_LEN")
        m = self._exchange(self.msg(self.L.const("PKI_MSG_HELLO"), body=bytes(pad)), "hello")
        if m["type"] != self.L.const("PKI_MSG_CHALLENGE"):
            raise CryptbpfError(f"hello: unexpected reply type {m['type']}")
        if m["nonce"] != self._nonce:
            raise CryptbpfError("hello: the challenge is for another hello (nonce differs)")
        self.challenge = Challenge(socket.ntohl(m["slot"]), m["nonce"], m["challenge"])
        return self.challenge

    def send_cert(self, cert_der: bytes, leaf: bool) -> int:
        if len(cert_der) > self.L.const("PKI_CERT_MAX"):
            raise CryptbpfError(f"certificate of {len(cert_der)} bytes exceeds "
                                f"{self.L.const('PKI_CERT_MAX')} (one datagram)")
        flags = self.L.const("PKI_CERT_LEAF" if leaf else "PKI_CERT_CA")
        what = "leaf certificate" if leaf else "CA certificate"
        m = self._exchange(self.msg(self.L.const("PKI_MSG_CERT"), flags, cert_der), what)
        if m["type"] != self.L.const("PKI_MSG_ACK"):
            raise CryptbpfError(f"{what}: unexpected reply type {m['type']}")
        return m["status"]

    def proof(self, key: ec.EllipticCurvePrivateKey, sig: bytes | None = None) -> int:
        """Sign the challenge with the leaf key; returns authorized-until
        (Unix seconds)."""
        c = self.challenge
        if c is None:
            raise CryptbpfError("no challenge: call hello() first")
        if sig is None:
            sig = pop_signature(key, pop_digest(c, self.local_ip))
        m = self._exchange(self.msg(self.L.const("PKI_MSG_PROOF"), body=sig), "proof of possession")
        if m["status"] != self.L.const("PKI_ACK_AUTHORIZED"):
            raise CryptbpfError(f"proof: unexpected reply status {m['status']}")
        return int.from_bytes(m["body"][:8], "big")

    def authenticate(self, ca_ders: list[bytes], leaf_der: bytes,
                     key: ec.EllipticCurvePrivateKey) -> int:
        self.hello()
        for d in ca_ders:
            self.send_cert(d, leaf=False)
        self.send_cert(leaf_der, leaf=True)
        return self.proof(key)


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def load_key(path) -> ec.EllipticCurvePrivateKey:
    """The leaf's P-256 private key from a PEM file only its owner can read
    (the same rules as a signed-auth signing key)."""
    from ...crypto.p256_keys import load_private_key
    return load_private_key(path)
