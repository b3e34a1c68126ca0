"""The exact DER bytes the kernel compares: issuer/subject Names (by the
SHA-256 of their encoding) and serial numbers (INTEGER content octets).

`cryptography` re-encodes Names when asked for them; the kernel hashes the
bytes as they appear in the certificate, so they are cut out of the
TBSCertificate here with a minimal DER walker instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509

from ...errors import CryptbpfError


def tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content offset, end) of the element at pos (definite lengths)."""
    if pos + 2 > len(data):
        raise ValueError("DER truncated")
    tag, b = data[pos], data[pos + 1]
    if b < 0x80:
        off, n = pos + 2, b
    else:
        k = b & 0x7F
        if k == 0 or k > 3 or pos + 2 + k > len(data):
            raise ValueError("unsupported DER length")
        off, n = pos + 2 + k, int.from_bytes(data[pos + 2:pos + 2 + k], "big")
    if off + n > len(data):
        raise ValueError("DER element past its end")
    return tag, off, off + n


def children(data: bytes, off: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, start, content offset, end) of each element in [off, end)."""
    out, pos = [], off
    while pos < end:
        tag, c, e = tlv(data, pos)
        out.append((tag, pos, c, e))
        pos = e
    return out


@dataclass(frozen=True)
class CertFields:
    serial: bytes        # INTEGER content octets
    issuer: bytes        # Name DER (whole TLV)
    subject: bytes

    @property
    def issuer_hash(self) -> bytes:
        return hashlib.sha256(self.issuer).digest()

    @property
    def subject_hash(self) -> bytes:
        return hashlib.sha256(self.subject).digest()


def cert_fields(cert: x509.Certificate) -> CertFields:
    tbs = cert.tbs_certificate_bytes
    _, off, end = tlv(tbs, 0)
    f = children(tbs, off, end)
    if f and f[0][0] == 0xA0:       # version
        f = f[1:]
    serial, _alg, issuer, _validity, subject = f[:5]
    return CertFields(serial=tbs[serial[2]:serial[3]], issuer=tbs[issuer[1]:issuer[3]],
                      subject=tbs[subject[1]:subject[3]])


def crl_issuer(crl: x509.CertificateRevocationList) -> bytes:
    """Issuer Name DER of a CRL, as encoded in it."""
    tbs = crl.tbs_certlist_bytes
    _, off, end = tlv(tbs, 0)
    f = children(tbs, off, end)
    if f and f[0][0] == 0x02:       # version
        f = f[1:]
    return tbs[f[1][1]:f[1][3]]


def serial_bytes(serial: int) -> bytes:
    """DER INTEGER content octets of a serial number (minimal two's
    complement, as a conforming certificate encodes it)."""
    if serial < 0:
        raise CryptbpfError("serial numbers are positive (RFC 5280 4.1.2.2)")
    out = serial.to_bytes(serial.bit_length() // 8 + 1, "big")
    if len(out) > 20:
        raise CryptbpfError(f"serial {serial:#x} is longer than 20 octets (RFC 5280 4.1.2.2)")
    return out


def load_certs(path) -> list[x509.Certificate]:
    """Every certificate of a PEM (or single DER) file, in file order."""
    from pathlib import Path
    data = Path(path).read_bytes()
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise CryptbpfError(f"{path}: not a certificate file ({e})") from None
    if not certs:
        raise CryptbpfError(f"{path}: no certificate in it")
    return certs
