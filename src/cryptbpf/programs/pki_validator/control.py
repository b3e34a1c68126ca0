"""The administrator's operations on a loaded pki_validator (a BpfObject
just loaded, or `Pinned("pki-validator")`): challenge key, clock, ports,
trust anchors, revocation, authorizations. Map layouts come from
bpf/include/pki_validator.h through cffi."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import struct
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ...crypto import p256
from ...errors import CryptbpfError
from ...ports import udp_port as _port
from ...bpf.headers import Layout
from . import der, profile


HEADER = "pki_validator"
NSEC = 1_000_000_000


def layout() -> Layout:
    return Layout(HEADER)


def const(name: str) -> int:
    return layout().const(name)


# ---- set-up ----

def install_challenge_key(handle) -> None:
    """A fresh challenge key from the kernel CSPRNG, handed to the SYSCALL
    program pki_key_setup (which keeps only its HMAC pad states)."""
    L = layout()
    args = L.pack("struct pki_key_setup", key=os.urandom(32))
    res = handle.program("pki_key_setup").test_run(ctx=args)
    err = L.unpack("struct pki_key_setup", res.ctx)["err"]
    if err:
        raise CryptbpfError(f"installing the challenge key failed: errno {-err}")


def _config(handle) -> dict:
    return layout().unpack("struct pki_config", handle.map("pki_cfg").lookup(0))


def _set_config(handle, **changes) -> dict:
    cfg = _config(handle)
    cfg.update(changes)
    handle.map("pki_cfg").update(0, layout().pack("struct pki_config", **cfg))
    return cfg


def tai_offset_ns() -> int:
    """CLOCK_TAI - CLOCK_REALTIME (the kernel's TAI offset; 0 until ntpd sets
    it), measured as the median of a few close pairs of readings."""
    diffs = []
    for _ in range(7):
        r0 = time.clock_gettime_ns(time.CLOCK_REALTIME)
        t = time.clock_gettime_ns(time.CLOCK_TAI)
        r1 = time.clock_gettime_ns(time.CLOCK_REALTIME)
        diffs.append(t - (r0 + r1) // 2)
    diffs.sort()
    # whole seconds: the offset is an integer number of seconds by definition
    return round(diffs[len(diffs) // 2] / NSEC) * NSEC


def publish_clock(handle) -> int:
    """Tell the program how to turn bpf_ktime_get_tai_ns() into Unix time."""
    off = tai_offset_ns()
    _set_config(handle, tai_offset_ns=off, clock_set=1)
    return off


def set_lifetime(handle, seconds: int) -> None:
    if not 1 <= seconds <= 10 * 365 * 86400:
        raise CryptbpfError(f"lifetime {seconds} s out of range (1 s .. 10 years)")
    _set_config(handle, lifetime_s=seconds)


def bump_revoke_gen(handle) -> int:
    """Make every authorized client re-check its chain on its next packet."""
    return _set_config(handle, revoke_gen=_config(handle)["revoke_gen"] + 1)["revoke_gen"]


def config(handle) -> dict:
    return _config(handle)


# ---- ports ----



def protect(handle, port, ctrl_port: int | None = None) -> None:
    n = _port(port)
    if ctrl_port is not None and n == ctrl_port:
        raise CryptbpfError(f"port {n} is the control port; it cannot be protected")
    handle.map("protected_ports").update(struct.pack("=H", n), b"\x01")


def unprotect(handle, port) -> bool:
    return handle.map("protected_ports").delete(struct.pack("=H", _port(port)))


def protected(handle) -> list[int]:
    return sorted(struct.unpack("=H", k)[0] for k in handle.map("protected_ports").keys())


# ---- trust anchors ----

def _p256_public(cert: x509.Certificate) -> bytes:
    pub = cert.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != "secp256r1":
        raise CryptbpfError(f"{cert.subject.rfc4514_string()}: not an ECDSA P-256 key")
    return pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _unix(t: dt.datetime) -> int:
    return int(t.timestamp())


def anchors(handle) -> list[dict]:
    L = layout()
    out = []
    for k, v in handle.map("anchors").items():
        a = L.unpack("struct pki_anchor", v)
        a.pop("pad", None)
        a["pubkey"] = a["pubkey"].hex()
        a["subject_hash"] = k.hex()
        out.append(a)
    return out


def trust(handle, cert: x509.Certificate) -> dict:
    """Register a CA certificate as a trust anchor: its key table in
    p256_keys, then its entry in anchors (so the program never sees an
    anchor without its table). The certificate must pass
    profile.check_anchor() (a conforming CA certificate with a P-256 key and
    no critical extension the validator does not enforce); its own
    signature is not checked (it is trusted)."""
    L = layout()
    profile.check_anchor(cert)
    pub = _p256_public(cert)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    f = der.cert_fields(cert)
    amap, kmap = handle.map("anchors"), handle.map("p256_keys")
    used = {a["key_id"] for a in anchors(handle)}
    old = amap.lookup(f.subject_hash)
    free = [k for k in range(1, kmap.max_entries + 1) if k not in used]
    if not free:
        raise CryptbpfError(f"all {kmap.max_entries} trust anchor slots are in use; "
                            "`cryptbpf pki untrust` one first")
    kid = free[0]
    k, v = p256.key_map_entry(kid, pub)
    kmap.update(k, v)
    _kfunc_setup(handle, kid, pub)
    entry = dict(key_id=kid,
                 path_len=const("PKI_PATHLEN_NONE") if bc.path_length is None
                 else min(bc.path_length, const("PKI_PATHLEN_NONE")),
                 not_before=_unix(cert.not_valid_before_utc),
                 not_after=_unix(cert.not_valid_after_utc),
                 pubkey=pub)
    amap.update(f.subject_hash, L.pack("struct pki_anchor", **entry))
    if old is not None:     # replaced: drop the previous key's table
        kmap.delete(struct.pack("<I", L.unpack("struct pki_anchor", old)["key_id"]))
        bump_revoke_gen(handle)
    entry["subject_hash"] = f.subject_hash.hex()
    return entry


def _kfunc_setup(handle, kid: int, pub: bytes) -> None:
    """Kernels with the signature kfuncs verify with them (a kernel context
    per key slot, which then takes precedence over the table); elsewhere the
    setup program reports EOPNOTSUPP and the table is used. Any other
    failure is an error: the slot could keep a previous key's context."""
    try:
        prog = handle.program("p256_kfunc_setup")
    except (KeyError, CryptbpfError, OSError):
        return
    err = p256.kfunc_setup_err(prog.test_run(ctx=p256.kfunc_setup_args(kid, pub)).ctx)
    if err not in (0, -95):
        raise CryptbpfError(f"the kernel refused the anchor's key: errno {-err}")


def untrust(handle, cert: x509.Certificate) -> bool:
    """Remove an anchor; clients authorized under it lose access at once."""
    L = layout()
    h = der.cert_fields(cert).subject_hash
    old = handle.map("anchors").lookup(h)
    if old is None:
        return False
    handle.map("anchors").delete(h)
    bump_revoke_gen(handle)
    handle.map("p256_keys").delete(struct.pack("<I", L.unpack("struct pki_anchor", old)["key_id"]))
    return True


# ---- revocation ----

def serial_ref(issuer_hash: bytes, serial: int) -> bytes:
    s = der.serial_bytes(serial)
    return layout().pack("struct pki_serial_ref", issuer=issuer_hash, serial_len=len(s), serial=s)


def revoke(handle, issuer_hash: bytes, serials: list[int]) -> int:
    """Revoke serials of the CA whose subject Name hashes to issuer_hash;
    takes effect for new exchanges at once and for authorized clients on
    their next packet (revoke_gen is bumped after the entries are in)."""
    m = handle.map("revoked")
    refs = [serial_ref(issuer_hash, s) for s in serials]
    for r in refs:
        m.update(r, b"\x01")
    if refs:
        bump_revoke_gen(handle)
    return len(refs)


def load_crl(path) -> x509.CertificateRevocationList:
    from pathlib import Path
    data = Path(path).read_bytes()
    try:
        return (x509.load_pem_x509_crl(data) if b"-----BEGIN" in data
                else x509.load_der_x509_crl(data))
    except ValueError as e:
        raise CryptbpfError(f"{path}: not a CRL ({e})") from None


def revoke_crl(handle, crl: x509.CertificateRevocationList,
               issuer: x509.Certificate | None = None) -> int:
    """Revoke every serial a CRL lists, under the CRL's issuer Name (as
    encoded in the CRL), after profile.check_crl() (with `issuer`: its
    issuer name, signature and cRLSign too). A CRL refused there fails
    closed: its issuer goes into `crl_invalid`, and every certificate that
    issuer signed is treated as revoked until a valid CRL of it is loaded;
    then the refusal is raised. A valid CRL lifts that."""
    import hashlib
    issuer_hash = hashlib.sha256(der.crl_issuer(crl)).digest()
    try:
        profile.check_crl(crl, issuer)
    except profile.CrlRefused as e:
        handle.map("crl_invalid").update(issuer_hash, b"\x01")
        bump_revoke_gen(handle)
        raise CryptbpfError(f"{e}: refused, and every certificate its issuer signed is refused "
                            "until a valid CRL of it is loaded") from None
    n = revoke(handle, issuer_hash, [r.serial_number for r in crl])
    if handle.map("crl_invalid").delete(issuer_hash):
        bump_revoke_gen(handle)
    return n


def crl_invalid(handle) -> int:
    """Issuers whose CRL was refused (their certificates fail closed)."""
    return sum(1 for _ in handle.map("crl_invalid").keys())


def revoked_count(handle) -> int:
    return sum(1 for _ in handle.map("revoked").keys())


# ---- authorizations ----

def _addr_key(addr: str) -> bytes:
    try:
        return ipaddress.IPv4Address(addr).packed
    except ValueError:
        raise CryptbpfError(f"{addr!r} is not an IPv4 address") from None


def authorized(handle) -> list[dict]:
    L = layout()
    out = []
    for k, v in handle.map("authorized").items():
        a = L.unpack("struct pki_auth", v)
        out.append({"client": str(ipaddress.IPv4Address(k)),
                    "until": a["expires_unix"],
                    "until_utc": dt.datetime.fromtimestamp(a["expires_unix"], dt.timezone.utc).isoformat(),
                    "chain": a["ncerts"]})
    return out


def deauthorize(handle, addr: str) -> bool:
    return handle.map("authorized").delete(_addr_key(addr))


def stats(handle) -> dict[str, int]:
    L = layout()
    m = handle.map("stats")
    total: dict[str, int] = {}
    for raw in m.lookup_percpu(0) or []:
        for k, v in L.unpack("struct pki_validator_stats", raw).items():
            total[k] = total.get(k, 0) + v
    return total


def local_addr_for(host: str) -> str:
    """The source address this host uses to reach `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))
        return s.getsockname()[0]


NAME = "pki-validator"
DEFAULT_LIFETIME = 3600


MAX_LIFETIME = 10 * 365 * 86400     # admin.set_lifetime's bound


def _lifetime(options) -> int:
    life = options.get("lifetime", [str(DEFAULT_LIFETIME)])[-1]
    try:
        n = int(life)
    except ValueError:
        raise CryptbpfError(f"--lifetime {life!r} is not a number of seconds") from None
    if not 1 <= n <= MAX_LIFETIME:
        raise CryptbpfError(f"--lifetime {n} out of range 1-{MAX_LIFETIME} (1 s .. 10 years)")
    return n
