"""The encrypted_tunnel wire format, implemented a second time with pyca
`cryptography` (never with the BPF code): a packet sealed here must be
opened by the BPF ingress, and one sealed by BPF egress must open here.
Constants and struct sizes come from bpf/include/encrypted_tunnel.h; the
format is described byte by byte in docs/encrypted_tunnel.md.

Packets here are IPv4 packets (no Ethernet header), as bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ...errors import CryptbpfError
from ...bpf.headers import Layout

LAYOUT = Layout("encrypted_tunnel")
C = LAYOUT.const
IPPROTO = C("TUNNEL_IPPROTO")
VERSION = C("TUNNEL_VERSION")
CHACHA = C("TUNNEL_SUITE_CHACHA20_POLY1305")
CBC = C("TUNNEL_SUITE_AES256_CBC_HMAC_SHA256")
SUITES = {"chacha20-poly1305": CHACHA, "aes-256-cbc-hmac-sha256": CBC}
SUITE_NAMES = {v: k for k, v in SUITES.items()}
OVERHEAD = {CHACHA: C("TUNNEL_OVERHEAD_CHACHA"), CBC: C("TUNNEL_OVERHEAD_CBC")}
HDR_LEN = C("TUNNEL_HDR_LEN")
TAG_LEN = C("TUNNEL_TAG_LEN")
CSUM_LEN = C("TUNNEL_CSUM_LEN")
IP_HLEN = C("TUNNEL_IP_HLEN")
REPLAY_WINDOW = C("TUNNEL_REPLAY_WINDOW")
COUNTER_LIMIT = C("TUNNEL_COUNTER_LIMIT")

HKDF_SALT = b"cryptbpf encrypted_tunnel v1"


class TunnelError(CryptbpfError):
    """A packet that does not open (malformed, wrong key, forged)."""


@dataclass(frozen=True)
class DirectionKeys:
    """Keys of one direction (src -> dst) under one key id."""
    suite: int
    key_id: int
    aead: bytes = b""   # chacha20-poly1305
    enc: bytes = b""    # aes-256-cbc
    iv: bytes = b""     # aes-256-ecb, derives the CBC IV from the header
    mac: bytes = b""    # hmac-sha256


def derive(secret: bytes, suite: int, key_id: int, src: str, dst: str) -> DirectionKeys:
    """HKDF-SHA256(secret) -> the keys for packets from `src` to `dst`.
    info = "cryptbpf tunnel" || suite || key_id || src || dst, so each
    direction, key id and suite gets independent keys."""
    if suite not in SUITE_NAMES:
        raise CryptbpfError(f"unknown suite {suite}")
    info = (b"cryptbpf tunnel" + bytes([suite, key_id & 0xFF]) +
            socket.inet_aton(src) + socket.inet_aton(dst))
    n = 32 if suite == CHACHA else 96
    okm = HKDF(hashes.SHA256(), n, HKDF_SALT, info).derive(secret)
    if suite == CHACHA:
        return DirectionKeys(suite, key_id & 0xFF, aead=okm)
    return DirectionKeys(suite, key_id & 0xFF, enc=okm[:32], iv=okm[32:64], mac=okm[64:])


def header(suite: int, key_id: int, counter: int) -> bytes:
    """struct tunnel_hdr: version, suite, key_id, flags, be64 counter."""
    return struct.pack("!BBBBQ", VERSION, suite, key_id, 0, counter)


def aad(ip: bytes, hdr: bytes) -> bytes:
    """struct tunnel_aad: saddr, daddr, ip id, frag_off, tunnel_hdr."""
    return ip[12:16] + ip[16:20] + ip[4:6] + ip[6:8] + hdr


def ip_checksum(hdr: bytes) -> int:
    s = sum(struct.unpack("!10H", hdr[:10] + b"\0\0" + hdr[12:20]))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def rewrite_ip(ip: bytes, protocol: int, tot_len: int) -> bytes:
    h = bytearray(ip[:IP_HLEN])
    h[9] = protocol
    h[2:4] = tot_len.to_bytes(2, "big")
    h[10:12] = ip_checksum(bytes(h)).to_bytes(2, "big")
    return bytes(h)


def l4_csum_off(proto: int, length: int) -> int:
    """Offset of the checksum field of a TCP/UDP payload; 0 otherwise."""
    if proto == 6 and length >= 18:
        return 16
    if proto == 17 and length >= 8:
        return 6
    return 0


def _ones_sum(data: bytes) -> int:
    """Folded 16-bit one's complement sum (big-endian words, RFC 1071)."""
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _deferred_csum(region: bytes) -> int:
    """What a deferred checksum over `region` writes: csum_fold ?: 0xffff."""
    return (~_ones_sum(region) & 0xFFFF) or 0xFFFF


def csum_fix(region: bytes, off: int) -> bytes:
    """csum_fix for `region` (sealed bytes || tag || 00 00): the two bytes
    that make _deferred_csum(region) equal the bytes at `off`. Raises when
    impossible (those bytes are 00 00; BPF drops such packets)."""
    c = int.from_bytes(region[off:off + 2], "big")
    if c == 0:
        raise TunnelError("csum_fix impossible (00 00 at the checksum offset)")
    f = (~c & 0xFFFF) + (~_ones_sum(region) & 0xFFFF)
    f = (f & 0xFFFF) + (f >> 16)
    fb = f.to_bytes(2, "big")
    return fb[::-1] if len(region) & 1 else fb   # odd offset: bytes pair the other way


def _check_ip(packet: bytes) -> int:
    if len(packet) < IP_HLEN or packet[0] != 0x45:
        raise TunnelError("not an IPv4 packet without options")
    tot = int.from_bytes(packet[2:4], "big")
    if tot != len(packet):
        raise TunnelError(f"IPv4 total length {tot} != {len(packet)} bytes")
    return tot


def _nonce(counter: int) -> bytes:
    return b"\0" * 4 + counter.to_bytes(8, "big")


def _cbc_iv(keys: DirectionKeys, hdr: bytes) -> bytes:
    ecb = Cipher(algorithms.AES(keys.iv), modes.ECB()).encryptor()
    return ecb.update(hdr + b"\0" * 4) + ecb.finalize()


def _mac(keys: DirectionKeys, a: bytes, ct: bytes) -> bytes:
    return hmac.new(keys.mac, a + ct, hashlib.sha256).digest()[:TAG_LEN]


def seal(packet: bytes, keys: DirectionKeys, counter: int) -> bytes:
    """The tunnel packet for an IPv4 `packet` under `keys` and `counter`."""
    tot = _check_ip(packet)
    if not 0 <= counter < COUNTER_LIMIT:
        raise TunnelError("counter out of range")
    hdr = header(keys.suite, keys.key_id, counter)
    plain = packet[IP_HLEN:tot] + packet[9:10]          # payload || next_proto
    outer_len = tot + HDR_LEN + 1 + TAG_LEN + CSUM_LEN
    if keys.suite == CBC:
        padder = padding.PKCS7(128).padder()
        plain = padder.update(plain) + padder.finalize()
        outer_len = IP_HLEN + HDR_LEN + len(plain) + TAG_LEN + CSUM_LEN
    outer_ip = rewrite_ip(packet, IPPROTO, outer_len)
    a = aad(outer_ip, hdr)
    if keys.suite == CHACHA:
        sealed = ChaCha20Poly1305(keys.aead).encrypt(_nonce(counter), plain, a)
    else:
        enc = Cipher(algorithms.AES(keys.enc), modes.CBC(_cbc_iv(keys, hdr))).encryptor()
        ct = enc.update(plain) + enc.finalize()
        sealed = ct + _mac(keys, a, ct)
    region = sealed + b"\0" * CSUM_LEN
    off = l4_csum_off(packet[9], tot - IP_HLEN)
    if off:
        region = sealed + csum_fix(region, off)
    return outer_ip + hdr + region


def parse(packet: bytes) -> dict:
    """Header fields of a tunnel packet (no cryptography)."""
    _check_ip(packet)
    if packet[9] != IPPROTO or len(packet) < IP_HLEN + HDR_LEN + 1 + TAG_LEN + CSUM_LEN:
        raise TunnelError("not a tunnel packet")
    if ip_checksum(packet) != int.from_bytes(packet[10:12], "big"):
        raise TunnelError("bad IPv4 header checksum")
    version, suite, key_id, flags, counter = struct.unpack(
        "!BBBBQ", packet[IP_HLEN:IP_HLEN + HDR_LEN])
    return {"version": version, "suite": suite, "key_id": key_id, "flags": flags,
            "counter": counter}


def open_packet(packet: bytes, keys: DirectionKeys) -> bytes:
    """The original IPv4 packet, or TunnelError (forged, wrong key, ...)."""
    h = parse(packet)
    if h["version"] != VERSION or h["suite"] != keys.suite or h["key_id"] != keys.key_id:
        raise TunnelError(f"header {h} does not match the key")
    hdr = packet[IP_HLEN:IP_HLEN + HDR_LEN]
    body = packet[IP_HLEN + HDR_LEN:len(packet) - CSUM_LEN]
    a = aad(packet, hdr)
    if keys.suite == CHACHA:
        try:
            plain = ChaCha20Poly1305(keys.aead).decrypt(_nonce(h["counter"]), body, a)
        except InvalidTag:
            raise TunnelError("authentication failed") from None
    else:
        ct, tag = body[:-TAG_LEN], body[-TAG_LEN:]
        if not hmac.compare_digest(_mac(keys, a, ct), tag) or not ct or len(ct) % 16:
            raise TunnelError("authentication failed")
        dec = Cipher(algorithms.AES(keys.enc), modes.CBC(_cbc_iv(keys, hdr))).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            plain = unpadder.update(dec.update(ct) + dec.finalize()) + unpadder.finalize()
        except ValueError:
            raise TunnelError("authentication failed") from None
    payload, proto = plain[:-1], plain[-1]
    region, fix = packet[IP_HLEN + HDR_LEN:], packet[-CSUM_LEN:]
    off = l4_csum_off(proto, len(payload))
    if (_deferred_csum(region) != int.from_bytes(region[off:off + 2], "big") if off
            else fix != b"\0\0"):
        raise TunnelError("csum_fix does not match")
    return rewrite_ip(packet, proto, IP_HLEN + len(payload)) + payload
