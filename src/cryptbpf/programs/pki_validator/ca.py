"""Issue ECDSA P-256 / SHA-256 certificates with `cryptography`: the demo
PKI of `cryptbpf pki demo-ca` and the certificates of the tests."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ...errors import CryptbpfError

DAY = dt.timedelta(days=1)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cryptbpf demo"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _dns(cn: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in cn.lower()) + ".cryptbpf.test"


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def issue(cn: str, issuer: Issued | None = None, *, ca: bool | None = False,
          path_len: int | None = None, not_before: dt.datetime | None = None,
          not_after: dt.datetime | None = None, serial: int | None = None,
          key: ec.EllipticCurvePrivateKey | None = None,
          key_usage: bool = True, issuer_name: x509.Name | None = None,
          extra_extensions: list[tuple[x509.ExtensionType, bool]] = ()) -> Issued:
    """A certificate for `cn`, signed by `issuer` (self-signed when None).
    ca: True/False sets basicConstraints (critical), None leaves it out.
    key_usage: keyCertSign+cRLSign for CAs, digitalSignature otherwise."""
    key = key or new_key()
    t = now()
    b = (x509.CertificateBuilder()
         .subject_name(name(cn))
         .issuer_name(issuer_name if issuer_name is not None
                      else issuer.cert.subject if issuer else name(cn))
         .public_key(key.public_key())
         .serial_number(serial if serial is not None else x509.random_serial_number())
         .not_valid_before(not_before or t - DAY)
         .not_valid_after(not_after or t + 30 * DAY))
    if ca is not None:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=path_len if ca else None),
                            critical=True)
    if key_usage:
        b = b.add_extension(x509.KeyUsage(
            digital_signature=not ca, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=bool(ca),
            crl_sign=bool(ca), encipher_only=False, decipher_only=False), critical=True)
    b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    signer_pub = issuer.key.public_key() if issuer else key.public_key()
    b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_pub), critical=False)
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(_dns(cn))]), critical=False)
    for ext, critical in extra_extensions:
        b = b.add_extension(ext, critical=critical)
    signer = issuer.key if issuer else key
    return Issued(b.sign(signer, hashes.SHA256()), key)


def crl(issuer: Issued, serials: list[int], *, number: int | None = 1,
        number_critical: bool = False) -> x509.CertificateRevocationList:
    """A v2 CRL as RFC 5280 5.2 has it: cRLNumber (`number`, None leaves it
    out) and the issuer's key identifier, both non-critical by default."""
    t = now()
    b = (x509.CertificateRevocationListBuilder().issuer_name(issuer.cert.subject)
         .last_update(t - DAY).next_update(t + 7 * DAY)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                        critical=False))
    if number is not None:
        b = b.add_extension(x509.CRLNumber(number), critical=number_critical)
    for s in serials:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(s).revocation_date(t - DAY).build())
    return b.sign(issuer.key, hashes.SHA256())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    if private:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)   # O_CREAT's mode does not apply to an existing file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def demo_ca(directory: Path) -> dict[str, Path]:
    """root (CA, pathLen 1) -> intermediate (CA, pathLen 0) -> leaf, and a
    leaf issued by the root directly. Keys are written mode 0600."""
    directory.mkdir(parents=True, exist_ok=True)
    existing = [p for p in ("root.pem", "root.key") if (directory / p).exists()]
    if existing:
        raise CryptbpfError(f"{directory} already holds a demo CA ({', '.join(existing)}); "
                            "choose another directory")
    root = issue("cryptbpf demo root", ca=True, path_len=1, not_after=now() + 3650 * DAY)
    inter = issue("cryptbpf demo intermediate", root, ca=True, path_len=0,
                  not_after=now() + 730 * DAY)
    leaf = issue("client via intermediate", inter, ca=False, not_after=now() + 90 * DAY)
    direct = issue("client under root", root, ca=False, not_after=now() + 90 * DAY)
    out = {}
    for stem, it in (("root", root), ("intermediate", inter), ("leaf", leaf), ("direct", direct)):
        out[f"{stem}.pem"] = directory / f"{stem}.pem"
        out[f"{stem}.key"] = directory / f"{stem}.key"
        _write(out[f"{stem}.pem"], it.pem)
        _write(out[f"{stem}.key"], it.key_pem, private=True)
    out["chain.pem"] = directory / "chain.pem"
    _write(out["chain.pem"], inter.pem)
    return out


# ---- certificates cryptography's builder refuses to make ----
# (duplicate extensions, a serial of 0, a critical key identifier): the
# tests' malformed-but-signed inputs, re-encoded here and signed with
# `cryptography` like any other.

Ext = tuple  # (OID dotted string, critical, extnValue content octets)
ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")


def der_tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        hdr = bytes([n])
    elif n < 0x100:
        hdr = bytes([0x81, n])
    else:
        hdr = bytes([0x82]) + n.to_bytes(2, "big")
    return bytes([tag]) + hdr + content


def der_oid(dotted: str) -> bytes:
    arcs = [int(x) for x in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for n in arcs[2:]:
        enc = [n & 0x7F]
        n >>= 7
        while n:
            enc.append(0x80 | (n & 0x7F))
            n >>= 7
        body += bytes(reversed(enc))
    return der_tlv(0x06, bytes(body))


def extensions_of(it: Issued) -> list[Ext]:
    """(OID, critical, value) of each extension, in certificate order."""
    from . import der
    tbs = it.cert.tbs_certificate_bytes
    _, off, end = der.tlv(tbs, 0)
    a3 = [c for c in der.children(tbs, off, end) if c[0] == 0xA3][0]
    _, soff, send = der.tlv(tbs, a3[2])
    raw = der.children(tbs, soff, send)
    out = []
    for e, (_t, _s, c, end_) in zip(it.cert.extensions, raw):
        val = der.children(tbs, c, end_)[-1]
        out.append((e.oid.dotted_string, e.critical, tbs[val[2]:val[3]]))
    return out


def reissue(it: Issued, signer: Issued | None, *, serial: bytes | None = None,
            extensions: list[Ext] | None = None) -> Issued:
    """`it` with its serial INTEGER content octets and/or its extensions
    replaced as given (no checks at all), signed again by `signer` (itself
    when None) with ecdsa-with-SHA256."""
    from . import der
    tbs = it.cert.tbs_certificate_bytes
    _, off, end = der.tlv(tbs, 0)
    parts = [tbs[s:e] for _t, s, _c, e in der.children(tbs, off, end)]
    if serial is not None:
        parts[1] = der_tlv(0x02, serial)
    if extensions is not None:
        body = b"".join(der_tlv(0x30, der_oid(o) + (b"\x01\x01\xff" if crit else b"") +
                                der_tlv(0x04, v)) for o, crit, v in extensions)
        parts[-1] = der_tlv(0xA3, der_tlv(0x30, body))
    new_tbs = der_tlv(0x30, b"".join(parts))
    key = (signer or it).key
    sig = key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    raw = der_tlv(0x30, new_tbs + ECDSA_WITH_SHA256 + der_tlv(0x03, b"\x00" + sig))
    return Issued(x509.load_der_x509_certificate(raw), it.key)
