"""RFC 5280 checks of what the administrator hands to pki-validator in
userspace, with `cryptography`: trust anchors (`pki trust`, `load --trust`)
and CRLs (`pki revoke --crl`). The certificates clients send are checked in
the kernel (bpf/include/x509.bpf.h, bpf/pki_validator.bpf.c); an anchor is
never sent, so its profile is checked here, once, before it is trusted.

Each check raises CryptbpfError with one line saying what is wrong.
Extensions the validator does not enforce (name constraints, policies,
extended key usage, ...) are refused when critical: RFC 5280 4.2 requires a
validator to reject a certificate with a critical extension it does not
process, and ignoring it would be a silent accept.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID

from ...errors import CryptbpfError

# critical extensions an anchor may carry: the validator enforces them
ANCHOR_CRITICAL_OK = {ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE}
# CRL extensions the revocation code processes (RFC 5280 5.2)
CRL_KNOWN = {ExtensionOID.CRL_NUMBER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER}


def _ext_name(ext: x509.Extension) -> str:
    name = getattr(ext.oid, "_name", None)
    return f"{name} ({ext.oid.dotted_string})" if name and name != "Unknown OID" \
        else ext.oid.dotted_string


def _extensions(obj, what: str) -> x509.Extensions:
    try:
        return obj.extensions
    except (ValueError, x509.DuplicateExtension) as e:
        # duplicates (RFC 5280 4.2) and undecodable known extensions
        raise CryptbpfError(f"{what}: its extensions are invalid ({e})") from None


def check_anchor(cert: x509.Certificate) -> None:
    """A trust anchor the kernel can use and RFC 5280 allows: v3, ECDSA
    P-256, non-empty subject, basicConstraints critical with cA, keyUsage
    (if present) with keyCertSign, a non-critical subjectKeyIdentifier, a
    non-critical authorityKeyIdentifier if any, no other critical
    extension, no extension twice."""
    what = f"trust anchor {cert.subject.rfc4514_string() or '(empty subject)'}"
    if cert.version != x509.Version.v3:
        raise CryptbpfError(f"{what}: not an X.509 v3 certificate")
    pub = cert.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != "secp256r1":
        raise CryptbpfError(f"{what}: not an ECDSA P-256 key")
    if not len(cert.subject):
        raise CryptbpfError(f"{what}: a CA's subject must not be empty (RFC 5280 4.1.2.6)")
    exts = _extensions(cert, what)
    try:
        bc = exts.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        raise CryptbpfError(f"{what}: a trust anchor must be a CA certificate (no basicConstraints)") from None
    if not bc.value.ca:
        raise CryptbpfError(f"{what}: a trust anchor must be a CA certificate (basicConstraints cA is false)")
    if not bc.critical:
        raise CryptbpfError(f"{what}: basicConstraints must be critical in a CA certificate (RFC 5280 4.2.1.9)")
    for e in exts:
        if isinstance(e.value, x509.KeyUsage) and not e.value.key_cert_sign:
            raise CryptbpfError(f"{what}: its keyUsage lacks keyCertSign (RFC 5280 4.2.1.3)")
        if isinstance(e.value, (x509.SubjectKeyIdentifier, x509.AuthorityKeyIdentifier)) and e.critical:
            raise CryptbpfError(f"{what}: {_ext_name(e)} must not be critical (RFC 5280 4.2.1.1/4.2.1.2)")
        if e.critical and e.oid not in ANCHOR_CRITICAL_OK:
            raise CryptbpfError(f"{what}: critical extension {_ext_name(e)} is not enforced by "
                                "pki-validator; refused rather than ignored (RFC 5280 4.2)")
    try:
        exts.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        raise CryptbpfError(f"{what}: a CA certificate must have a subjectKeyIdentifier "
                            "(RFC 5280 4.2.1.2)") from None


class CrlRefused(CryptbpfError):
    """A CRL of a known issuer that must not be applied: revocation under
    that issuer is unknown, so pki-validator fails closed for it."""


def check_crl(crl: x509.CertificateRevocationList, issuer: x509.Certificate | None) -> None:
    """RFC 5280 5.2/6.3 checks before a CRL's serials are applied: v2 with a
    non-critical cRLNumber, no other critical extension (delta CRLs,
    issuing distribution points and indirect CRLs are not processed), no
    critical entry extension; with `issuer`: same Name, signature, and the
    issuer's keyUsage with cRLSign."""
    if issuer is not None and crl.issuer != issuer.subject:
        raise CryptbpfError("the CRL was not issued by that CA (issuer name differs)")
    what = f"CRL of {crl.issuer.rfc4514_string()}"
    exts = _extensions(crl, what)
    try:
        num = exts.get_extension_for_class(x509.CRLNumber)
    except x509.ExtensionNotFound:
        raise CrlRefused(f"{what}: no cRLNumber (RFC 5280 5.2.3: conforming CRLs MUST have one)") from None
    if num.critical:
        raise CrlRefused(f"{what}: cRLNumber must not be critical (RFC 5280 5.2.3)")
    for e in exts:
        if e.critical and e.oid not in CRL_KNOWN:
            raise CrlRefused(f"{what}: critical extension {_ext_name(e)} is not processed")
        if e.oid == ExtensionOID.AUTHORITY_KEY_IDENTIFIER and e.critical:
            raise CrlRefused(f"{what}: authorityKeyIdentifier must not be critical (RFC 5280 5.2.1)")
    for r in crl:
        for e in _extensions(r, f"{what}, entry {r.serial_number:#x}"):
            if e.critical:
                raise CrlRefused(f"{what}: entry {r.serial_number:#x} has critical extension "
                                 f"{_ext_name(e)} (indirect CRLs are not processed)")
    if issuer is None:
        return
    try:
        ok = crl.is_signature_valid(issuer.public_key())
    except (InvalidSignature, TypeError, ValueError):
        ok = False
    if not ok:
        raise CrlRefused(f"{what}: its signature does not verify with the CA's key")
    try:
        ku = _extensions(issuer, "the CRL's issuer").get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return      # 6.3.3 (f) checks cRLSign only where there is a keyUsage
    if not ku.crl_sign:
        raise CrlRefused(f"{what}: the issuer's keyUsage lacks cRLSign (RFC 5280 6.3.3 (f))")
