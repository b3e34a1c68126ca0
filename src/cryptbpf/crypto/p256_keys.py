"""ECDSA P-256 key pairs in PEM files: created (`cryptbpf keys generate`),
read with their permissions checked, and the public point and fingerprint
the kernel side keys on. Used by signed-auth and pki-validator."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import CryptbpfError
from ..keys import refuse_if_readable_by_others


def generate_keypair(private_path: str | os.PathLike, public_path: str | os.PathLike) -> str:
    """A fresh P-256 key pair: private key as PKCS#8 PEM (mode 0600, never
    overwritten), public key as SubjectPublicKeyInfo PEM. Returns the
    public key's fingerprint."""
    key = ec.generate_private_key(ec.SECP256R1())
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    if Path(private_path).absolute() == Path(public_path).absolute():
        raise CryptbpfError(f"the private and the public key would both be {private_path}")
    for p in (private_path, public_path):
        if Path(p).exists() or Path(p).is_symlink():
            raise CryptbpfError(f"{p} exists; refusing to overwrite a key")
        parent = Path(p).absolute().parent
        if not parent.is_dir():
            raise CryptbpfError(f"cannot create {p}: directory {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise CryptbpfError(f"cannot create {p}: directory {parent} is not writable")
    written = []
    try:
        for p, data, mode in ((private_path, priv, 0o600), (public_path, pub, 0o644)):
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            written.append(p)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except BaseException as e:
        for p in written:       # never half a key pair
            os.unlink(p)
        if isinstance(e, OSError):
            raise CryptbpfError(f"cannot write {e.filename or p}: {e.strerror}; "
                                "no key file left behind") from None
        raise
    return fingerprint(public_point(key.public_key()))


def load_private_key(path: str | os.PathLike) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from a PEM file that only its owner can read."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise CryptbpfError(f"key file {p} does not exist") from None
    refuse_if_readable_by_others(p, st)
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise CryptbpfError(f"{p}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CryptbpfError(f"{p}: not an ECDSA P-256 key")
    return key


def load_public_key(path: str | os.PathLike) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from a PEM file (SubjectPublicKeyInfo; a private
    key PEM also works, its public half is taken)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise CryptbpfError(f"public key file {p} does not exist") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError):
            raise CryptbpfError(f"{p}: not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CryptbpfError(f"{p}: not an ECDSA P-256 public key")
    return key


def public_point(key: ec.EllipticCurvePublicKey) -> bytes:
    """The 65-byte uncompressed point 0x04 || X || Y."""
    return key.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint)


def fingerprint(point: bytes) -> str:
    """SHA-256 of the 65-byte public point, hex (what status shows)."""
    return hashlib.sha256(point).hexdigest()
