"""WireGuard's handshake: Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s, as in the
WireGuard paper (section 5.4) and wireguard-go's noise-protocol.go.

Primitives come from libraries, never written here: BLAKE2s and HMAC from
hashlib/hmac, X25519 and ChaCha20-Poly1305 from pyca `cryptography`.
Message layouts are the C structs of bpf/include/wireguard.h (wire.LAYOUT).

One `Handshake` per peer holds the state between messages
(HandshakeZeroed -> HandshakeInitiationCreated -> HandshakeResponseConsumed
on the initiator; HandshakeZeroed -> HandshakeInitiationConsumed ->
HandshakeResponseCreated on the responder); `begin_session()` turns a
finished one into a Keypair's keys and zeroes it. mac1/mac2 and cookie
replies are cookie.py's; the timers are timers.py's.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import struct
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ...errors import CryptbpfError
from .wire import LAYOUT

C = LAYOUT.const
NoiseConstruction = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
WGIdentifier = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
WGLabelMAC1 = b"mac1----"
WGLabelCookie = b"cookie--"

MessageInitiationType = C("MESSAGE_HANDSHAKE_INITIATION")
MessageResponseType = C("MESSAGE_HANDSHAKE_RESPONSE")
MessageCookieReplyType = C("MESSAGE_HANDSHAKE_COOKIE")
MessageTransportType = C("MESSAGE_DATA")
MessageInitiationSize = C("MESSAGE_INITIATION_LEN")
MessageResponseSize = C("MESSAGE_RESPONSE_LEN")
MessageCookieReplySize = C("MESSAGE_COOKIE_REPLY_LEN")
NoisePublicKeySize = C("NOISE_PUBLIC_KEY_LEN")
NoiseSymmetricKeySize = C("NOISE_SYMMETRIC_KEY_LEN")
TAI64NSize = C("NOISE_TIMESTAMP_LEN")

INITIATION = "struct message_handshake_initiation"
RESPONSE = "struct message_handshake_response"
COOKIE_REPLY = "struct message_handshake_cookie"
for _ctype, _size in ((INITIATION, MessageInitiationSize), (RESPONSE, MessageResponseSize),
                      (COOKIE_REPLY, MessageCookieReplySize)):
    assert LAYOUT.sizeof(_ctype) == _size, _ctype

ZERO_NONCE = bytes(12)
_TAI64N_BASE = 0x400000000000000A
_WHITENER_MASK = 0x1000000 - 1      # wireguard-go: timestamps rounded down to ~16 ms


class HandshakeError(CryptbpfError):
    """A handshake message that is refused (malformed, forged, replayed)."""


class HandshakeState(enum.Enum):
    HandshakeZeroed = 0
    HandshakeInitiationCreated = 1
    HandshakeInitiationConsumed = 2
    HandshakeResponseCreated = 3
    HandshakeResponseConsumed = 4


# ---------------------------------------------------------------- primitives

def HASH(*parts: bytes) -> bytes:
    return hashlib.blake2s(b"".join(parts)).digest()


def MAC(key: bytes, data: bytes) -> bytes:
    """Keyed BLAKE2s with a 16-byte output (mac1, mac2, cookies)."""
    return hashlib.blake2s(data, key=key, digest_size=16).digest()


def HMAC(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2s).digest()


def _kdf(key: bytes, data: bytes, n: int) -> tuple[bytes, ...]:
    t0 = HMAC(key, data)
    out, prev = [], b""
    for i in range(1, n + 1):
        prev = HMAC(t0, prev + bytes([i]))
        out.append(prev)
    return tuple(out)


def KDF1(key: bytes, data: bytes) -> bytes:
    return _kdf(key, data, 1)[0]


def KDF2(key: bytes, data: bytes) -> tuple[bytes, bytes]:
    return _kdf(key, data, 2)       # type: ignore[return-value]


def KDF3(key: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
    return _kdf(key, data, 3)       # type: ignore[return-value]


def AEAD_seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(ZERO_NONCE, plaintext, aad)


def AEAD_open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(ZERO_NONCE, sealed, aad)
    except InvalidTag:
        raise HandshakeError("authentication failed") from None


def DH(private: bytes, public: bytes) -> bytes:
    try:
        shared = X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(public))
    except ValueError:      # an all-zero result (a low-order point)
        raise HandshakeError("invalid public key") from None
    return shared


InitialChainKey = HASH(NoiseConstruction)
InitialHash = HASH(InitialChainKey, WGIdentifier)


# ---------------------------------------------------------------- keys

def generate_private_key() -> bytes:
    """A random X25519 private key, clamped as `wg genkey` writes it."""
    k = bytearray(os.urandom(NoisePublicKeySize))
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    return bytes(k)


def public_key(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def generate_psk() -> bytes:
    return os.urandom(NoiseSymmetricKeySize)


def key_to_base64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def key_from_base64(text: str) -> bytes:
    """A 32-byte key in wg's base64; CryptbpfError otherwise (the key is
    never part of the message)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (ValueError, TypeError):
        raise CryptbpfError("a key must be base64 (as `wg genkey` writes it)") from None
    if len(key) != NoiseSymmetricKeySize:
        raise CryptbpfError(f"a key must be {NoiseSymmetricKeySize} bytes, got {len(key)}")
    return key


def tai64n(unix_time: float | None = None) -> bytes:
    """TAI64N timestamp, nanoseconds whitened as wireguard-go does."""
    ns = time.time_ns() if unix_time is None else int(unix_time * 1e9)
    sec, nano = divmod(ns, 10**9)
    return struct.pack(">QI", _TAI64N_BASE + sec, nano & ~_WHITENER_MASK)


# ---------------------------------------------------------------- messages

def pack_message(ctype: str, mtype: int, **fields) -> bytes:
    """The struct as bytes (macs zero: cookie.py adds them)."""
    obj = LAYOUT.new(ctype, **fields)
    obj.header.type = mtype
    return bytes(LAYOUT.ffi.buffer(obj))


def unpack_message(ctype: str, mtype: int, msg: bytes) -> dict:
    if len(msg) != LAYOUT.sizeof(ctype):
        raise HandshakeError(f"message type {mtype} has {LAYOUT.sizeof(ctype)} bytes, got {len(msg)}")
    m = LAYOUT.unpack(ctype, msg)
    if m["header"]["type"] != mtype:
        raise HandshakeError(f"not a message of type {mtype}")
    return m


def message_type(msg: bytes) -> int:
    """The type of a message (reserved bytes must be zero); 0 if malformed."""
    if len(msg) < 4:
        return C("MESSAGE_INVALID")
    (word,) = struct.unpack_from("<I", msg)
    return word if word <= 0xFF else C("MESSAGE_INVALID")


def receiver_index(msg: bytes) -> int:
    """A response's or cookie reply's receiver index (our sender index)."""
    off = 8 if message_type(msg) == MessageResponseType else 4
    return struct.unpack_from("<I", msg, off)[0]


@dataclass
class StaticIdentity:
    """Our interface's static key pair."""
    private_key: bytes

    def __post_init__(self):
        self.public_key = public_key(self.private_key)


@dataclass
class Session:
    """What a finished handshake gives the data plane."""
    local_index: int
    remote_index: int
    send_key: bytes
    recv_key: bytes
    initiator: bool


class Handshake:
    """One peer's handshake state (wireguard-go's Handshake)."""

    def __init__(self, local: StaticIdentity, remote_static: bytes, preshared_key: bytes | None = None):
        self.local = local
        self.remote_static = remote_static
        self.preshared_key = preshared_key or bytes(NoiseSymmetricKeySize)
        self.precomputed_static_static = DH(local.private_key, remote_static)
        self.state = HandshakeState.HandshakeZeroed
        self.hash = self.chain_key = b""
        self.local_ephemeral = b""
        self.remote_ephemeral = b""
        self.local_index = self.remote_index = 0
        self.last_timestamp = bytes(TAI64NSize)     # greatest initiation timestamp accepted
        self.last_initiation_consumption = None     # clock() of it (flood protection)

    def clear(self) -> None:
        self.state = HandshakeState.HandshakeZeroed
        self.hash = self.chain_key = self.local_ephemeral = self.remote_ephemeral = b""
        self.local_index = self.remote_index = 0

    # ---- initiator ----
    def create_initiation(self, local_index: int, timestamp: bytes | None = None,
                          ephemeral: bytes | None = None) -> bytes:
        """Message 1 (mac1/mac2 zero: CookieGenerator.add_macs fills them)."""
        self.clear()
        h = HASH(InitialHash, self.remote_static)
        ck = InitialChainKey
        e = ephemeral or generate_private_key()
        e_pub = public_key(e)
        h = HASH(h, e_pub)
        ck = KDF1(ck, e_pub)
        ck, k = KDF2(ck, DH(e, self.remote_static))
        enc_static = AEAD_seal(k, self.local.public_key, h)
        h = HASH(h, enc_static)
        ck, k = KDF2(ck, self.precomputed_static_static)
        enc_ts = AEAD_seal(k, timestamp or tai64n(), h)
        h = HASH(h, enc_ts)
        self.hash, self.chain_key, self.local_ephemeral = h, ck, e
        self.local_index = local_index
        self.state = HandshakeState.HandshakeInitiationCreated
        return pack_message(INITIATION, MessageInitiationType, sender_index=local_index,
                            unencrypted_ephemeral=e_pub, encrypted_static=enc_static,
                            encrypted_timestamp=enc_ts)

    def consume_response(self, msg: bytes) -> None:
        """Message 2, for the initiation this handshake created."""
        m = unpack_message(RESPONSE, MessageResponseType, msg)
        if self.state != HandshakeState.HandshakeInitiationCreated or m["receiver_index"] != self.local_index:
            raise HandshakeError("a response to no initiation of ours")
        e_r = m["unencrypted_ephemeral"]
        h = HASH(self.hash, e_r)
        ck = KDF1(self.chain_key, e_r)
        ck = KDF1(ck, DH(self.local_ephemeral, e_r))
        ck = KDF1(ck, DH(self.local.private_key, e_r))
        ck, tau, k = KDF3(ck, self.preshared_key)
        h = HASH(h, tau)
        AEAD_open(k, m["encrypted_nothing"], h)
        h = HASH(h, m["encrypted_nothing"])
        self.hash, self.chain_key = h, ck
        self.remote_index = m["sender_index"]
        self.remote_ephemeral = e_r
        self.state = HandshakeState.HandshakeResponseConsumed

    # ---- responder ----
    def create_response(self, local_index: int, ephemeral: bytes | None = None) -> bytes:
        """Message 2, answering the initiation consume_initiation accepted."""
        if self.state != HandshakeState.HandshakeInitiationConsumed:
            raise HandshakeError("no initiation to respond to")
        e = ephemeral or generate_private_key()
        e_pub = public_key(e)
        h = HASH(self.hash, e_pub)
        ck = KDF1(self.chain_key, e_pub)
        ck = KDF1(ck, DH(e, self.remote_ephemeral))
        ck = KDF1(ck, DH(e, self.remote_static))
        ck, tau, k = KDF3(ck, self.preshared_key)
        h = HASH(h, tau)
        enc_nothing = AEAD_seal(k, b"", h)
        h = HASH(h, enc_nothing)
        self.hash, self.chain_key, self.local_ephemeral = h, ck, e
        self.local_index = local_index
        self.state = HandshakeState.HandshakeResponseCreated
        return pack_message(RESPONSE, MessageResponseType, sender_index=local_index,
                            receiver_index=self.remote_index, unencrypted_ephemeral=e_pub,
                            encrypted_nothing=enc_nothing)

    # ---- both ----
    def begin_session(self) -> Session:
        """Transport keys of the finished handshake; the state is zeroed."""
        if self.state == HandshakeState.HandshakeResponseConsumed:
            initiator = True
        elif self.state == HandshakeState.HandshakeResponseCreated:
            initiator = False
        else:
            raise HandshakeError("the handshake is not finished")
        first, second = KDF2(self.chain_key, b"")
        send, recv = (first, second) if initiator else (second, first)
        s = Session(self.local_index, self.remote_index, send, recv, initiator)
        self.clear()
        return s


@dataclass
class Initiation:
    """An initiation decrypted with our static key, not yet accepted."""
    remote_static: bytes
    sender_index: int
    ephemeral: bytes
    hash: bytes
    chain_key: bytes


def open_initiation(local: StaticIdentity, msg: bytes) -> Initiation:
    """Message 1 up to its initiator's static key (to find the peer)."""
    m = unpack_message(INITIATION, MessageInitiationType, msg)
    h = HASH(InitialHash, local.public_key)
    ck = InitialChainKey
    e_i = m["unencrypted_ephemeral"]
    h = HASH(h, e_i)
    ck = KDF1(ck, e_i)
    ck, k = KDF2(ck, DH(local.private_key, e_i))
    s_i = AEAD_open(k, m["encrypted_static"], h)
    h = HASH(h, m["encrypted_static"])
    return Initiation(s_i, m["sender_index"], e_i, h, ck)


def consume_initiation(hs: Handshake, ini: Initiation, msg: bytes, now: float,
                       handshake_initiation_rate: float) -> None:
    """The rest of message 1 for the peer `hs` belongs to: its timestamp
    must be greater than every one accepted before (replay), and it must
    not come within HandshakeInitationRate of the last one (flood)."""
    m = unpack_message(INITIATION, MessageInitiationType, msg)
    if ini.remote_static != hs.remote_static:
        raise HandshakeError("initiation of another peer")
    ck, k = KDF2(ini.chain_key, hs.precomputed_static_static)
    ts = AEAD_open(k, m["encrypted_timestamp"], ini.hash)
    h = HASH(ini.hash, m["encrypted_timestamp"])
    if ts <= hs.last_timestamp:
        raise HandshakeError("replayed initiation (timestamp not after the last one)")
    if hs.last_initiation_consumption is not None and \
            now - hs.last_initiation_consumption <= handshake_initiation_rate:
        raise HandshakeError("initiation flood (under HandshakeInitationRate)")
    hs.clear()
    hs.hash, hs.chain_key = h, ck
    hs.remote_ephemeral = ini.ephemeral
    hs.remote_index = ini.sender_index
    hs.last_timestamp = ts
    hs.last_initiation_consumption = now
    hs.state = HandshakeState.HandshakeInitiationConsumed
