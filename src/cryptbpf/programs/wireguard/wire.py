"""WireGuard's transport data message (type 4), implemented a second time
with pyca `cryptography` (never with the BPF code): a message sealed here
must open in the BPF data plane, one sealed there must open here.

    type (LE32: 4, three zero bytes) | receiver index (LE32) | counter (LE64)
    | ChaCha20-Poly1305(key, nonce = 0^32 || counter LE64, plaintext
      zero-padded to a multiple of 16, AAD empty) with its 16-byte tag

A keepalive is a message with an empty plaintext (32 bytes in all).
Constants come from bpf/include/wireguard.h; docs/wireguard.md shows the
format byte by byte.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ...bpf.headers import Layout
from ...errors import CryptbpfError

LAYOUT = Layout("wireguard")
C = LAYOUT.const
MESSAGE_DATA = C("MESSAGE_DATA")
HEADER_LEN = C("MESSAGE_DATA_HEADER_LEN")
MIN_LEN = C("MESSAGE_DATA_MIN_LEN")
TAG_LEN = C("NOISE_AUTHTAG_LEN")
PADDING = C("MESSAGE_PADDING_MULTIPLE")
REJECT_AFTER_MESSAGES = C("REJECT_AFTER_MESSAGES")
REJECT_AFTER_TIME_NS = C("REJECT_AFTER_TIME_NS")

_HEADER = struct.Struct("<IIQ")


class MessageError(CryptbpfError):
    """A message that does not open (malformed, wrong key, forged)."""


@dataclass(frozen=True)
class DataMessage:
    receiver_index: int
    counter: int
    plaintext: bytes        # as sealed: zero padding included


def nonce(counter: int) -> bytes:
    return b"\0" * 4 + struct.pack("<Q", counter)


def padded(packet: bytes, mtu: int | None = None) -> bytes:
    """Zero padding to a multiple of 16, never beyond `mtu` (the sending
    interface's; the kernel's calculate_skb_padding())."""
    n = len(packet) + (-len(packet) % PADDING)
    if mtu is not None and len(packet) <= mtu < n:
        n = mtu
    return packet.ljust(n, b"\0")


def seal(key: bytes, receiver_index: int, counter: int, packet: bytes, mtu: int | None = None) -> bytes:
    """The type-4 message carrying `packet` (b"" for a keepalive) from an
    interface with `mtu`."""
    if not 0 <= counter < REJECT_AFTER_MESSAGES:
        raise MessageError(f"counter {counter} is past REJECT_AFTER_MESSAGES")
    head = _HEADER.pack(MESSAGE_DATA, receiver_index, counter)
    return head + ChaCha20Poly1305(key).encrypt(nonce(counter), padded(packet, mtu), b"")


def parse(message: bytes) -> tuple[int, int]:
    """(receiver index, counter) of a type-4 message."""
    if len(message) < MIN_LEN:
        raise MessageError(f"a data message has at least {MIN_LEN} bytes, got {len(message)}")
    mtype, idx, ctr = _HEADER.unpack_from(message)
    if mtype != MESSAGE_DATA:
        raise MessageError(f"message type {mtype:#x} is not {MESSAGE_DATA} (transport data)")
    return idx, ctr


def open_message(key: bytes, message: bytes) -> DataMessage:
    idx, ctr = parse(message)
    try:
        plain = ChaCha20Poly1305(key).decrypt(nonce(ctr), message[HEADER_LEN:], b"")
    except InvalidTag:
        raise MessageError("authentication failed") from None
    return DataMessage(idx, ctr, plain)
