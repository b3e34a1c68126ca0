"""The crypto_offload wire format (bpf/include/crypto_offload.h), the
validation both paths apply in the same order, and the reference answers
(hashlib, hmac, `cryptography`) the daemon serves."""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Optional

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ...errors import CryptbpfError
from ...bpf.headers import Layout

L = Layout("crypto_offload")
C = L.const

MAGIC, VERSION = C("OFFLOAD_MAGIC"), C("OFFLOAD_VERSION")
DEFAULT_PORT = C("OFFLOAD_DEFAULT_PORT")
OP_SHA256, OP_HMAC, OP_SEAL = C("OFFLOAD_OP_SHA256"), C("OFFLOAD_OP_HMAC"), C("OFFLOAD_OP_SEAL")
OPS = {"sha256": OP_SHA256, "hmac": OP_HMAC, "seal": OP_SEAL}
OP_NAMES = {v: k for k, v in OPS.items()}
BY_KERNEL, BY_DAEMON = C("OFFLOAD_BY_KERNEL"), C("OFFLOAD_BY_DAEMON")
SERVED_BY = {BY_KERNEL: "kernel", BY_DAEMON: "daemon"}
KEY_HMAC, KEY_AEAD = C("OFFLOAD_KEY_HMAC"), C("OFFLOAD_KEY_AEAD")
KEY_TYPES = {"hmac": KEY_HMAC, "aead": KEY_AEAD}

MAX_DATA, MAX_AAD = C("OFFLOAD_MAX_DATA"), C("OFFLOAD_MAX_AAD")
NONCE_SIZE, TAG_SIZE, DIGEST_SIZE = C("OFFLOAD_NONCE_SIZE"), C("OFFLOAD_TAG_SIZE"), C("OFFLOAD_DIGEST_SIZE")
KERNEL_MAX = C("OFFLOAD_KERNEL_MAX")
MIN_DIGEST_REQ = C("OFFLOAD_MIN_DIGEST_REQ")
BUCKET_SHIFT, BUCKETS = C("OFFLOAD_BUCKET_SHIFT"), C("OFFLOAD_BUCKETS")

STATUS = {C(n): n[len("OFFLOAD_"):].lower() for n in (
    "OFFLOAD_OK", "OFFLOAD_ERR_VERSION", "OFFLOAD_ERR_OP", "OFFLOAD_ERR_LENGTH",
    "OFFLOAD_ERR_TOO_BIG", "OFFLOAD_ERR_KEY", "OFFLOAD_ERR_KEY_TYPE",
    "OFFLOAD_ERR_UNAVAILABLE", "OFFLOAD_ERR_INTERNAL")}
OK = C("OFFLOAD_OK")
ERR = {v: k for k, v in STATUS.items()}   # "err_length" -> 3

REQ_HDR = L.sizeof("struct offload_req_hdr")      # 16
REPLY_HDR = L.sizeof("struct offload_reply_hdr")  # 12
# Both headers are big-endian on the wire; cffi knows the layout, struct
# does the byte order (the layout test checks they agree).
_REQ = struct.Struct("!HBBIIHH")
_REPLY = struct.Struct("!HBBIBBH")
assert _REQ.size == REQ_HDR and _REPLY.size == REPLY_HDR


def size_of(op: int, data_len: int, aad_len: int) -> int:
    """What the cost depends on: data (+ AAD) bytes."""
    return data_len + aad_len


def bucket_of(size: int) -> int:
    return min(size >> BUCKET_SHIFT, BUCKETS - 1)


def cost_index(op: int, size: int) -> int:
    return (op - 1) * BUCKETS + bucket_of(size)


def bucket_range(b: int) -> str:
    lo = b << BUCKET_SHIFT
    return f"{lo}+" if b == BUCKETS - 1 else f"{lo}-{lo + (1 << BUCKET_SHIFT) - 1}"


# ---------------------------------------------------------------- requests

def request(op: int | str, data: bytes = b"", *, req_id: int = 0, key_id: int = 0,
            nonce: bytes = b"", aad: bytes = b"") -> bytes:
    """A request datagram payload. No checks: tests build malformed ones
    by passing inconsistent arguments to `raw_request`."""
    op = OPS[op] if isinstance(op, str) else op
    body = nonce + aad + data if op == OP_SEAL else data
    msg = raw_request(op, req_id=req_id, key_id=key_id, data_len=len(data),
                      aad_len=len(aad) if op == OP_SEAL else 0) + body
    if op != OP_SEAL:   # padded to the reply's size: no amplification
        msg += bytes(max(0, MIN_DIGEST_REQ - len(msg)))
    return msg


def raw_request(op: int, *, req_id: int = 0, key_id: int = 0, data_len: int = 0,
                aad_len: int = 0, magic: int = MAGIC, version: int = VERSION) -> bytes:
    return _REQ.pack(magic, version, op, req_id, key_id, data_len, aad_len)


@dataclass
class Request:
    op: int
    req_id: int
    key_id: int
    data: bytes
    nonce: bytes
    aad: bytes


@dataclass
class Reply:
    op: int
    req_id: int
    status: int
    served_by: int
    result: bytes

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def status_name(self) -> str:
        return STATUS.get(self.status, f"status {self.status}")

    @property
    def path(self) -> str:
        return SERVED_BY.get(self.served_by, f"served_by {self.served_by}")


def reply(op: int, req_id: int, status: int, served_by: int, result: bytes = b"") -> bytes:
    return _REPLY.pack(MAGIC, VERSION, op & 0xff, req_id, status, served_by, len(result)) + result


def parse_reply(payload: bytes) -> Reply:
    if len(payload) < REPLY_HDR:
        raise CryptbpfError(f"reply of {len(payload)} bytes is shorter than its header")
    magic, version, op, req_id, status, by, rlen = _REPLY.unpack_from(payload)
    if magic != MAGIC or version != VERSION:
        raise CryptbpfError(f"not a crypto_offload reply (magic {magic:#x}, version {version})")
    if len(payload) != REPLY_HDR + rlen:
        raise CryptbpfError(f"reply says {rlen} result bytes, carries {len(payload) - REPLY_HDR}")
    return Reply(op, req_id, status, by, payload[REPLY_HDR:])


def parse_request(payload: bytes, key_type) -> tuple[Optional[Request], int]:
    """Validate like the kernel (crypto_offload.h's order). Returns
    (request, OK), (partial request, error status), or (None, -1) when the
    datagram has no request id to answer (drop it). `key_type(key_id)`
    gives a provisioned key's type or None."""
    if len(payload) < REPLY_HDR:
        return None, -1
    magic, version, op, req_id = struct.unpack_from("!HBBI", payload)
    if magic != MAGIC:
        return None, -1
    partial = Request(op, req_id, 0, b"", b"", b"")
    if len(payload) < REQ_HDR:
        return partial, ERR["err_length"]
    _, _, _, _, key_id, data_len, aad_len = _REQ.unpack_from(payload)
    partial.key_id = key_id
    if version != VERSION:
        return partial, ERR["err_version"]
    if op not in OP_NAMES:
        return partial, ERR["err_op"]
    if data_len > MAX_DATA or aad_len > MAX_AAD:
        return partial, ERR["err_too_big"]
    if op != OP_SEAL and aad_len:
        return partial, ERR["err_length"]
    prefix = REQ_HDR + (NONCE_SIZE + aad_len if op == OP_SEAL else 0)
    if len(payload) != request_len(op, data_len, aad_len):
        return partial, ERR["err_length"]
    if op == OP_SHA256:
        if key_id:
            return partial, ERR["err_key"]
    else:
        kt = key_type(key_id)
        if kt is None:
            return partial, ERR["err_key"]
        if kt != (KEY_HMAC if op == OP_HMAC else KEY_AEAD):
            return partial, ERR["err_key_type"]
    if op == OP_SEAL:
        nonce = payload[REQ_HDR:REQ_HDR + NONCE_SIZE]
        aad = payload[REQ_HDR + NONCE_SIZE:prefix]
        return Request(op, req_id, key_id, payload[prefix:], nonce, aad), OK
    return Request(op, req_id, key_id, payload[REQ_HDR:REQ_HDR + data_len], b"", b""), OK


def request_len(op: int, data_len: int, aad_len: int = 0) -> int:
    """The payload length a well-formed request has."""
    if op == OP_SEAL:
        return REQ_HDR + NONCE_SIZE + aad_len + data_len
    return max(REQ_HDR + data_len, MIN_DIGEST_REQ)


def answer(req: Request, key: bytes | None) -> bytes:
    """The result bytes, computed with the standard libraries."""
    if req.op == OP_SHA256:
        return hashlib.sha256(req.data).digest()
    if req.op == OP_HMAC:
        return hmac.new(key, req.data, hashlib.sha256).digest()
    return ChaCha20Poly1305(key).encrypt(req.nonce, req.data, req.aad)
