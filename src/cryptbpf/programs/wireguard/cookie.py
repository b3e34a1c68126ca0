"""mac1, mac2 and cookie replies (WireGuard paper 5.4.4 and 5.4.7,
wireguard-go's cookie.go).

CookieChecker is the receiving side of our interface: it checks mac1
(keyed with our public key) on every handshake message, and, under load,
mac2 (keyed with a cookie only the source address can have received); it
answers a message without a valid mac2 with a cookie reply, whose cookie
is sealed with XChaCha20-Poly1305 (pycryptodome). CookieGenerator is the
sending side, one per peer: it adds mac1, adds mac2 while it holds a fresh
cookie, and takes the peer's cookie replies.

Times are the daemon's clock() values (seconds), passed in.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import struct

from Crypto.Cipher import ChaCha20_Poly1305

from .noise import (COOKIE_REPLY, HASH, MAC, HandshakeError, MessageCookieReplyType, WGLabelCookie,
                    WGLabelMAC1, pack_message, unpack_message)
from .timers import COOKIE_REFRESH_TIME
from .wire import LAYOUT

CookieNonceSize = LAYOUT.const("COOKIE_NONCE_LEN")
MACSize = LAYOUT.const("MESSAGE_MAC_LEN")


def _mac_offsets(msg: bytes) -> tuple[int, int]:
    smac2 = len(msg) - MACSize
    return smac2 - MACSize, smac2


def source_bytes(addr: tuple) -> bytes:
    """What a cookie is bound to: the source address and port."""
    return ipaddress.ip_address(addr[0].split("%")[0]).packed + struct.pack("<H", addr[1])


def _xaead(key: bytes, nonce: bytes):
    return ChaCha20_Poly1305.new(key=key, nonce=nonce)   # 24-byte nonce: XChaCha20-Poly1305


class CookieChecker:
    """mac1/mac2 checks and cookie replies for messages to us."""

    def __init__(self, our_public: bytes, clock):
        self.mac1_key = HASH(WGLabelMAC1, our_public)
        self.encryption_key = HASH(WGLabelCookie, our_public)
        self.clock = clock
        self._secret = b""
        self._secret_set = None

    def check_mac1(self, msg: bytes) -> bool:
        smac1, smac2 = _mac_offsets(msg)
        return hmac.compare_digest(MAC(self.mac1_key, msg[:smac1]), msg[smac1:smac2])

    def _cookie(self, src: tuple) -> bytes:
        now = self.clock()
        if self._secret_set is None or now - self._secret_set > COOKIE_REFRESH_TIME:
            self._secret, self._secret_set = os.urandom(32), now
        return MAC(self._secret, source_bytes(src))

    def check_mac2(self, msg: bytes, src: tuple) -> bool:
        if self._secret_set is None or self.clock() - self._secret_set > COOKIE_REFRESH_TIME:
            return False
        _, smac2 = _mac_offsets(msg)
        return hmac.compare_digest(MAC(self._cookie(src), msg[:smac2]), msg[smac2:])

    def create_reply(self, msg: bytes, receiver_index: int, src: tuple) -> bytes:
        """The cookie reply (type 3) to `msg` from `src`."""
        smac1, smac2 = _mac_offsets(msg)
        nonce = os.urandom(CookieNonceSize)
        x = _xaead(self.encryption_key, nonce)
        x.update(msg[smac1:smac2])          # AAD: the mac1 of the message answered
        sealed, tag = x.encrypt_and_digest(self._cookie(src))
        return pack_message(COOKIE_REPLY, MessageCookieReplyType, receiver_index=receiver_index,
                            nonce=nonce, encrypted_cookie=sealed + tag)


class CookieGenerator:
    """mac1/mac2 for messages to one peer, and its cookie replies."""

    def __init__(self, peer_public: bytes, clock):
        self.mac1_key = HASH(WGLabelMAC1, peer_public)
        self.encryption_key = HASH(WGLabelCookie, peer_public)
        self.clock = clock
        self.cookie = b""
        self.cookie_set = None
        self.last_mac1 = b""

    def add_macs(self, msg: bytes) -> bytes:
        smac1, smac2 = _mac_offsets(msg)
        mac1 = MAC(self.mac1_key, msg[:smac1])
        self.last_mac1 = mac1
        out = msg[:smac1] + mac1
        fresh = self.cookie_set is not None and self.clock() - self.cookie_set <= COOKIE_REFRESH_TIME
        mac2 = MAC(self.cookie, out) if fresh else bytes(MACSize)
        return out + mac2

    def consume_reply(self, msg: bytes) -> None:
        """Take the cookie of a reply to our last message (HandshakeError
        if it is not one)."""
        m = unpack_message(COOKIE_REPLY, MessageCookieReplyType, msg)
        if not self.last_mac1:
            raise HandshakeError("a cookie reply to nothing we sent")
        x = _xaead(self.encryption_key, m["nonce"])
        x.update(self.last_mac1)
        enc = m["encrypted_cookie"]
        try:
            cookie = x.decrypt_and_verify(enc[:-16], enc[-16:])
        except ValueError:
            raise HandshakeError("cookie reply: authentication failed") from None
        self.cookie, self.cookie_set, self.last_mac1 = cookie, self.clock(), b""
