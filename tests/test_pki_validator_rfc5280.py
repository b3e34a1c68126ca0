"""pki_validator against RFC 5280: the false accepts a public path-validation
corpus (x509-limbo-style cases, P-256, verdicts independent of names/EKU)
found, each with certificates made by `cryptography` and judged by the
kernel code through `cryptbpf pki verify` (pki_validator.verify: the
pki_validator object's pki_xdp under BPF_PROG_TEST_RUN at a chosen time).

(a) trust anchors refused at `pki trust` (userspace, profile.check_anchor);
(b) the certificates a client sends (kernel: x509.bpf.h, pki_validator.bpf.c);
(c) invalid CRLs refused by `pki revoke --crl`, failing closed;
path building (client.build_path) and the 8-certificate exchange;
`pki verify` itself: verdicts and reasons, --at, --json, exit codes.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID

from conftest import require_feature, require_root, run_cli
from cryptbpf.errors import CryptbpfError
from cryptbpf.programs.pki_validator import SPEC, ca, control as admin, der
from cryptbpf.programs.pki_validator.client import build_path
from cryptbpf.programs.pki_validator.verify import RunPeer, parse_time, verify

pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number")

DAY = dt.timedelta(days=1)
AIA = "1.3.6.1.5.5.7.1.1"
CA_ISSUERS = "1.3.6.1.5.5.7.48.2"
AD_OK = ca.der_tlv(0x30, ca.der_oid(CA_ISSUERS) + ca.der_tlv(0x82, b"example.com"))
CRITICAL_UNKNOWN = (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55738.666.1"), b""), True)


@pytest.fixture(scope="module", autouse=True)
def _kernel():
    require_root()
    for f in SPEC.requires:
        require_feature(f)


@pytest.fixture(scope="module")
def root():
    return ca.issue("rfc5280 root", ca=True)


def ku(*, digital_signature=False, key_cert_sign=False, crl_sign=False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=key_cert_sign, crl_sign=crl_sign, encipher_only=False,
                         decipher_only=False)


def edited(it: ca.Issued, signer: ca.Issued, edit) -> ca.Issued:
    """`it` re-signed with its extension list passed through edit()."""
    return ca.reissue(it, signer, extensions=edit(ca.extensions_of(it)))


def without(oid) -> callable:
    return lambda exts: [e for e in exts if e[0] != oid.dotted_string]


def critical(oid) -> callable:
    return lambda exts: [(o, True if o == oid.dotted_string else c, v) for o, c, v in exts]


def judge(leaf: ca.Issued, cas=(), anchors=None, at=None):
    """(reason, index of the certificate it concerns) of the kernel's verdict."""
    v = verify(leaf.cert, [c.cert for c in cas], [a.cert for a in anchors], at)
    assert v.accepted == (v.reason == "cert_ok")
    return v.reason, len(v.steps) - 1


# ------------------------------------------------ (b) certificates sent

def test_a_conforming_chain_is_accepted(root):
    inter = ca.issue("ica", root, ca=True, path_len=0)
    leaf = ca.issue("ee", inter)
    assert judge(leaf, [inter], [root]) == ("cert_ok", 1)


def _leaf_cases(root):
    leaf = ca.issue("ee", root)
    dup_san = lambda exts: exts + [e for e in exts if e[0] == ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string]
    unknown = ("1.3.6.1.4.1.55738.666.2", False, b"\x05\x00")
    return {
        # RFC 5280 4.2: no extension twice, whichever it is
        "duplicate subjectAltName": ("malformed", edited(leaf, root, dup_san)),
        "duplicate unknown extension": ("malformed", edited(leaf, root, lambda e: e + [unknown, unknown])),
        "duplicate keyUsage": ("malformed", edited(leaf, root, lambda e: e + [e[1]])),
        # 4.2.1.9 / 4.2.1.3: keyCertSign only with cA; a CA is no end entity
        "leaf with keyCertSign": ("bad_usage", ca.issue("ee kcs", root, key_usage=False, extra_extensions=[
            (ku(digital_signature=True, key_cert_sign=True), False)])),
        "cA=TRUE as the leaf": ("bad_usage", ca.issue("ee ca", root, ca=True)),
        "cA=TRUE without keyUsage as the leaf": ("bad_usage", ca.issue("ee ca nku", root, ca=True,
                                                                        key_usage=False)),
        # 4.2.2.1: AIA is SEQUENCE SIZE (1..MAX) OF AccessDescription, non-critical
        "empty AIA": ("malformed", edited(leaf, root, lambda e: e + [(AIA, False, b"\x30\x00")])),
        "AIA of the wrong type": ("malformed", edited(leaf, root, lambda e: e + [(AIA, False, b"\x04\x00")])),
        "AIA without a GeneralName": ("malformed", edited(leaf, root, lambda e: e + [
            (AIA, False, ca.der_tlv(0x30, ca.der_tlv(0x30, ca.der_oid(CA_ISSUERS))))])),
        "AIA with a second entry broken": ("malformed", edited(leaf, root, lambda e: e + [
            (AIA, False, ca.der_tlv(0x30, AD_OK + ca.der_tlv(0x30, ca.der_oid(CA_ISSUERS) + b"\x05\x00")))])),
        "AIA with a GeneralName too long": ("malformed", edited(leaf, root, lambda e: e + [
            (AIA, False, ca.der_tlv(0x30, AD_OK[:-12] + b"\x82\x0c" + AD_OK[-11:]))])),
        "critical AIA": ("malformed", ca.issue("ee aia crit", root, extra_extensions=[(
            x509.AuthorityInformationAccess([x509.AccessDescription(
                x509.OID_CA_ISSUERS, x509.DNSName("example.com"))]), True)])),
        # 4.2.1.1: every certificate a CA issues has an AKI with a keyIdentifier, non-critical
        "leaf without AKI": ("malformed", edited(leaf, root, without(ExtensionOID.AUTHORITY_KEY_IDENTIFIER))),
        "critical AKI": ("malformed", edited(leaf, root, critical(ExtensionOID.AUTHORITY_KEY_IDENTIFIER))),
        "AKI without keyIdentifier": ("malformed", edited(leaf, root, lambda e: [
            (o, c, b"\x30\x00" if o == ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string else v)
            for o, c, v in e])),
        "critical SKI": ("malformed", edited(leaf, root, critical(ExtensionOID.SUBJECT_KEY_IDENTIFIER))),
        # 4.1.2.2: positive serial numbers only
        "serial 0": ("malformed", ca.reissue(leaf, root, serial=b"\x00")),
        "negative serial": ("malformed", ca.reissue(leaf, root, serial=b"\x80\x01")),
        # 4.1.2.4: the issuer field is a non-empty Name
        "empty issuer": ("malformed", ca.issue("ee empty issuer", root, issuer_name=x509.Name([]))),
        # 4.2: critical extensions that are not enforced are refused
        "unknown critical extension": ("unsupported", ca.issue("ee unknown", root,
                                                               extra_extensions=[CRITICAL_UNKNOWN])),
        "critical extendedKeyUsage": ("unsupported", ca.issue("ee eku", root, extra_extensions=[
            (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), True)])),
        "critical certificatePolicies": ("unsupported", ca.issue("ee pol", root, extra_extensions=[
            (x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier("2.5.29.32.0"), None)]),
             True)])),
    }


def test_rfc5280_violations_in_the_leaf_are_refused_by_reason(root):
    for case, (reason, leaf) in _leaf_cases(root).items():
        assert judge(leaf, [], [root]) == (reason, 0), case


def test_conforming_optional_extensions_are_accepted(root):
    """The same features in their conforming form pass: non-critical
    AIA/EKU/policies (not enforced, and not critical), no keyUsage, no
    basicConstraints in the leaf."""
    ok = {
        "AIA": ca.issue("ee aia", root, extra_extensions=[(x509.AuthorityInformationAccess([
            x509.AccessDescription(x509.OID_CA_ISSUERS, x509.DNSName("example.com")),
            x509.AccessDescription(x509.OID_OCSP, x509.UniformResourceIdentifier("http://ocsp.test/"))]),
            False)]),
        "EKU": ca.issue("ee eku", root, extra_extensions=[
            (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False)]),
        "no keyUsage": ca.issue("ee noku", root, key_usage=False),
        "no basicConstraints": ca.issue("ee nobc", root, ca=None, key_usage=False),
        "AIA of two entries, hand-encoded": edited(ca.issue("ee aia2", root), root, lambda e: e + [
            (AIA, False, ca.der_tlv(0x30, AD_OK + AD_OK))]),
    }
    for case, leaf in ok.items():
        assert judge(leaf, [], [root]) == ("cert_ok", 0), case


def test_rfc5280_violations_in_an_intermediate_are_refused_by_reason(root):
    good = ca.issue("ica", root, ca=True)
    nc_bc = ca.issue("ica nc bc", root, ca=None, key_usage=False, extra_extensions=[
        (x509.BasicConstraints(ca=True, path_length=None), False), (ku(key_cert_sign=True, crl_sign=True), True)])
    cases = {
        "without SKI": ("not_ca", edited(good, root, without(ExtensionOID.SUBJECT_KEY_IDENTIFIER))),
        "without AKI": ("malformed", edited(good, root, without(ExtensionOID.AUTHORITY_KEY_IDENTIFIER))),
        "basicConstraints not critical": ("not_ca", nc_bc),
        "keyUsage without keyCertSign": ("not_ca", ca.issue("ica ku", root, ca=True, key_usage=False,
                                                            extra_extensions=[(ku(crl_sign=True), True)])),
        "cA FALSE": ("not_ca", ca.issue("ica not ca", root, ca=False)),
        "unknown critical extension": ("unsupported", ca.issue("ica unk", root, ca=True,
                                                               extra_extensions=[CRITICAL_UNKNOWN])),
        "critical nameConstraints": ("unsupported", ca.issue("ica nc", root, ca=True, extra_extensions=[
            (x509.NameConstraints([x509.DNSName("example.com")], None), True)])),
        "duplicate basicConstraints": ("malformed", edited(good, root, lambda e: e + [e[0]])),
    }
    for case, (reason, inter) in cases.items():
        leaf = ca.issue("ee", ca.Issued(inter.cert, inter.key))
        assert judge(leaf, [inter], [root]) == (reason, 0), case


def test_empty_subject_ca_is_not_a_ca(root):
    """RFC 5280 4.1.2.6: a CA's subject is a non-empty Name."""
    key = ca.new_key()
    b = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(root.cert.subject)
         .public_key(key.public_key()).serial_number(7)
         .not_valid_before(ca.now() - DAY).not_valid_after(ca.now() + DAY)
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()),
                        critical=False))
    inter = ca.Issued(b.sign(root.key, hashes.SHA256()), key)
    assert judge(ca.issue("ee", inter), [inter], [root]) == ("not_ca", 0)


def _run_peer(*anchors):
    from cryptbpf.bpf.object import BpfObject
    from cryptbpf.paths import bpf_object
    obj = BpfObject.open(str(bpf_object("pki_validator"))).load()
    SPEC.setup(obj, None, {})
    for a in anchors:
        admin.trust(obj, a.cert)

    p = RunPeer(obj.program("pki_xdp"))
    p.obj = obj
    return p


# ------------------------------------------------ path length, long chains

def _chain(root, n: int, path_len=None):
    cas, issuer = [], root
    for i in range(n):
        issuer = ca.issue(f"ica {i}", issuer, ca=True, path_len=path_len)
        cas.append(issuer)
    return cas, ca.issue("ee deep", issuer)


def test_seven_intermediates_pass_eight_do_not(root):
    """PKI_MAX_CERTS is 8: 7 CA certificates + the leaf."""
    cas, leaf = _chain(root, 7)
    assert judge(leaf, list(reversed(cas)), [root]) == ("cert_ok", 7)
    cas, leaf = _chain(root, 8)
    assert judge(leaf, cas, [root]) == ("untrusted", 8)


def test_self_issued_intermediates_do_not_count_against_path_length():
    """RFC 5280 6.1.4 (l): root (pathLen 1) -> ICA -> ICA rolled over
    (self-issued: same Name, new key, signed by the old one) -> leaf is
    valid; a second, not self-issued CA below would not be."""
    root = ca.issue("pl root", ca=True, path_len=1)
    old = ca.issue("rollover ica", root, ca=True)
    new = ca.issue("rollover ica", old, ca=True)
    assert new.cert.subject == new.cert.issuer
    leaf = ca.issue("ee of new", new)
    # the builder tells the two "rollover ica" certificates apart by key
    assert build_path(leaf.cert, [new.cert, old.cert], [root.cert]) == [old.cert, new.cert]
    assert judge(leaf, [new, old], [root]) == ("cert_ok", 2)
    sub = ca.issue("sub ica", new, ca=True)
    leaf2 = ca.issue("ee of sub", sub)
    assert judge(leaf2, [new, old, sub], [root]) == ("not_ca", 2)


# ------------------------------------------------ path building

def test_build_path_stops_at_the_anchor_and_ignores_cross_signed_copies():
    other = ca.issue("other root", ca=True)
    root = ca.issue("xs root", ca=True)
    # the same root Name and key, signed by another root
    xsigned = ca.issue("xs root", other, ca=True, key=root.key)
    inter = ca.issue("xs ica", root, ca=True)
    leaf = ca.issue("xs ee", inter)
    pool = [xsigned.cert, other.cert, inter.cert, root.cert]
    assert build_path(leaf.cert, pool, [root.cert]) == [inter.cert]
    # without anchors: the self-signed copy ends the path, not the cross-signed one
    assert build_path(leaf.cert, pool) == [inter.cert]
    # trusting the other root: the cross-signed copy is the way
    assert build_path(leaf.cert, pool, [other.cert]) == [xsigned.cert, inter.cert]
    assert judge(leaf, [xsigned, other, inter, root], [other]) == ("cert_ok", 2)
    assert judge(leaf, [xsigned, other, inter, root], [root]) == ("cert_ok", 1)


def test_a_copy_of_the_anchor_restarts_the_chain_at_it(root):
    """A client without --trust that holds only a cross-signed copy of the
    server's root sends it (its path ends at the other root); the kernel
    recognizes the anchor by subject Name and key and restarts there,
    trusting nothing of the copy. The same for the root itself, which then
    does not use up path length. A certificate with the anchor's Name but
    another key, or its key under another Name, is no anchor."""
    other = ca.issue("copy other root", ca=True)
    xsigned = ca.issue("rfc5280 root", other, ca=True, key=root.key)
    inter = ca.issue("copy ica", root, ca=True)
    leaf = ca.issue("copy ee", inter)
    path = build_path(leaf.cert, [xsigned.cert, inter.cert, other.cert])
    assert path == [xsigned.cert, inter.cert]
    p = _run_peer(root)
    try:
        s0 = admin.stats(p.obj)
        assert p.authenticate([c.public_bytes(serialization.Encoding.DER) for c in path],
                              leaf.der, leaf.key) > 0
        d = {k: v - s0[k] for k, v in admin.stats(p.obj).items() if v != s0[k]}
        assert d == {"hello": 1, "cert_ok": 3, "authorized": 1}
        # the root itself as the first CA certificate: root (pathLen 1) ->
        # ica -> sub -> leaf is one CA too many, sent with or without it
        tight = ca.issue("tight root", ca=True, path_len=1)
        admin.trust(p.obj, tight.cert)
        i1 = ca.issue("tight ica", tight, ca=True)
        ee1 = ca.issue("tight ee", i1)
        assert p.authenticate([tight.der, i1.der], ee1.der, ee1.key) > 0
        i2 = ca.issue("tight sub", i1, ca=True)
        ee2 = ca.issue("tight ee2", i2)
        p.hello()
        p.send_cert(tight.der, leaf=False)
        p.send_cert(i1.der, leaf=False)
        with pytest.raises(Exception):
            p.send_cert(i2.der, leaf=False)
        # the anchor's Name, another key; the anchor's key, another Name
        fake = ca.issue("rfc5280 root", other, ca=True)
        renamed = ca.issue("not the root", other, ca=True, key=root.key)
        for c in (fake, renamed):
            s0 = admin.stats(p.obj)
            p.hello()
            with pytest.raises(Exception):
                p.send_cert(c.der, leaf=False)
            s1 = admin.stats(p.obj)
            assert s1["untrusted"] == s0["untrusted"] + 1 and s1["cert_ok"] == s0["cert_ok"]
    finally:
        p.obj.close()


def test_build_path_picks_the_issuer_whose_key_signed():
    """Two CAs with one Name (the old order took the last one in the file);
    a dead end is backtracked out of; loops end."""
    root = ca.issue("bp root", ca=True)
    real = ca.issue("bp ica", root, ca=True)
    twin = ca.issue("bp ica", root, ca=True)
    leaf = ca.issue("bp ee", real)
    assert build_path(leaf.cert, [real.cert, twin.cert], [root.cert]) == [real.cert]
    assert build_path(leaf.cert, [twin.cert, real.cert], [root.cert]) == [real.cert]
    assert build_path(leaf.cert, [twin.cert], [root.cert]) is None
    # A and B signed each other (same keys as the real CAs), no anchor
    a = ca.issue("loop a", ca=True)
    b = ca.issue("loop b", a, ca=True)
    a2 = ca.issue("loop a", b, ca=True, key=a.key)
    ee = ca.issue("loop ee", b)
    assert build_path(ee.cert, [a2.cert, b.cert]) == [a2.cert, b.cert]


# ------------------------------------------------ (a) trust anchors

def _anchor_cases():
    good = ca.issue("anchor", ca=True)
    no_bc = ca.issue("anchor nobc", ca=None, key_usage=False, extra_extensions=[(ku(key_cert_sign=True), True)])
    return {
        "unknown critical extension": ca.issue("anchor unk", ca=True, extra_extensions=[CRITICAL_UNKNOWN]),
        "keyUsage without keyCertSign": ca.issue("anchor ku", ca=True, key_usage=False, extra_extensions=[
            (ku(crl_sign=True, digital_signature=True), True)]),
        "basicConstraints not critical": ca.issue("anchor ncbc", ca=None, key_usage=False, extra_extensions=[
            (x509.BasicConstraints(ca=True, path_length=None), False), (ku(key_cert_sign=True), True)]),
        "no basicConstraints": no_bc,
        "not a CA": ca.issue("anchor leaf", ca=False),
        "empty subject": _self_signed_ca(x509.Name([])),
        "critical AKI": edited(good, None, critical(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)),
        "critical SKI": edited(good, None, critical(ExtensionOID.SUBJECT_KEY_IDENTIFIER)),
        "no SKI": edited(good, None, without(ExtensionOID.SUBJECT_KEY_IDENTIFIER)),
        "duplicate extension": edited(good, None, lambda e: e + [e[2]]),
        "critical nameConstraints": ca.issue("anchor nc", ca=True, extra_extensions=[
            (x509.NameConstraints([x509.DNSName("example.com")], None), True)]),
    }


def _self_signed_ca(subject: x509.Name) -> ca.Issued:
    key = ca.new_key()
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
         .public_key(key.public_key()).serial_number(9)
         .not_valid_before(ca.now() - DAY).not_valid_after(ca.now() + DAY)
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    return ca.Issued(b.sign(key, hashes.SHA256()), key)


def test_unusable_trust_anchors_are_refused_with_one_line():
    for case, anchor in _anchor_cases().items():
        leaf = ca.issue("ee", anchor)
        with pytest.raises(CryptbpfError) as e:
            verify(leaf.cert, [], [anchor.cert])
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("trust anchor "), (case, msg)


def test_anchor_refusals_on_the_command_line(tmp_path):
    """`load --trust` refuses before the kernel sees anything, `pki verify
    --trust` the same way: one `cryptbpf: ` line, exit 1."""
    bad = _anchor_cases()["unknown critical extension"]
    (tmp_path / "bad.pem").write_bytes(bad.pem)
    (tmp_path / "ee.pem").write_bytes(ca.issue("ee", bad).pem)
    for args in (["load", "pki-validator", "cbt-no-such-dev", "--trust", str(tmp_path / "bad.pem")],
                 ["pki", "verify", str(tmp_path / "ee.pem"), "--trust", str(tmp_path / "bad.pem")]):
        r = run_cli(*args)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith("cryptbpf: trust anchor ") and "1.3.6.1.4.1.55738.666.1" in r.stderr


def test_a_root_without_aki_is_a_fine_anchor():
    """RFC 5280 4.2.1.1: a self-signed certificate may omit the AKI."""
    root = edited(ca.issue("anchor noaki", ca=True), None, without(ExtensionOID.AUTHORITY_KEY_IDENTIFIER))
    assert judge(ca.issue("ee", root), [], [root]) == ("cert_ok", 0)


# ------------------------------------------------ (c) CRLs fail closed

@pytest.fixture
def server(root):
    p = _run_peer(root)
    yield p
    p.obj.close()


def _send_leaf(p, leaf) -> str:
    s0 = admin.stats(p.obj)
    p.hello()
    try:
        p.send_cert(leaf.der, leaf=True)
    except Exception:
        pass
    s1 = admin.stats(p.obj)
    (moved,) = [k for k in s1 if s1[k] != s0[k] and k != "hello"]
    return moved


@pytest.mark.parametrize("case", ["no CRL number", "critical CRL number", "issuer without cRLSign",
                                  "bad signature"])
def test_invalid_crls_are_refused_and_fail_closed(server, root, case):
    leaf = ca.issue("ee crl", root)
    other = ca.issue("ee crl other", root)
    signer, issuer = root, root.cert
    if case == "issuer without cRLSign":
        # the same Name and key, keyUsage keyCertSign only
        issuer = ca.issue("rfc5280 root", ca=True, key=root.key, key_usage=False, extra_extensions=[
            (ku(key_cert_sign=True), True)]).cert
    if case == "bad signature":
        signer = ca.Issued(root.cert, ca.new_key())
    crl = ca.crl(signer, [leaf.cert.serial_number], number=None if case == "no CRL number" else 1,
                 number_critical=case == "critical CRL number")
    assert _send_leaf(server, other) == "cert_ok"
    with pytest.raises(CryptbpfError) as e:
        admin.revoke_crl(server.obj, crl, issuer)
    assert "refused" in str(e.value) and "\n" not in str(e.value)
    assert admin.revoked_count(server.obj) == 0 and admin.crl_invalid(server.obj) == 1
    # the issuer's revocation status is unknown: none of its certificates pass
    assert _send_leaf(server, other) == "revoked"
    assert _send_leaf(server, leaf) == "revoked"
    # a valid CRL of the same issuer replaces the refusal
    assert admin.revoke_crl(server.obj, ca.crl(root, [leaf.cert.serial_number], number=2), root.cert) == 1
    assert admin.crl_invalid(server.obj) == 0
    assert _send_leaf(server, other) == "cert_ok"
    assert _send_leaf(server, leaf) == "revoked"


def test_a_refused_crl_cuts_authorized_clients_off(server, root):
    leaf = ca.issue("ee authorized", root)
    until = server.authenticate([], leaf.der, leaf.key)
    assert until > 0
    prog = server.obj.program("pki_xdp")
    admin.protect(server.obj, 5000)
    from xdp_frames import XDP_DROP, XDP_PASS, udp_frame
    assert prog.test_run(data=udp_frame(b"x", 5000, src=server.local_ip)).retval == XDP_PASS
    with pytest.raises(CryptbpfError):
        admin.revoke_crl(server.obj, ca.crl(root, [], number=None), root.cert)
    assert prog.test_run(data=udp_frame(b"x", 5000, src=server.local_ip)).retval == XDP_DROP
    assert admin.stats(server.obj)["lost_auth"] == 1


# ------------------------------------------------ pki verify: time, JSON, exit codes

def test_verify_at_a_chosen_time_is_inclusive_to_the_second():
    """Validity [notBefore, notAfter] is inclusive (RFC 5280 4.1.2.5), to the
    second, at the time --at pins; the anchor's own validity counts."""
    t = ca.now()
    root = ca.issue("timed root", ca=True, not_before=t - 30 * DAY, not_after=t + 30 * DAY)
    nb, na = t - 5 * DAY, t + 5 * DAY
    leaf = ca.issue("ee timed", root, not_before=nb, not_after=na)
    ts = lambda d: int(d.timestamp())
    assert judge(leaf, [], [root], ts(nb) - 1) == ("not_yet_valid", 0)
    assert judge(leaf, [], [root], ts(nb)) == ("cert_ok", 0)
    assert judge(leaf, [], [root], ts(na)) == ("cert_ok", 0)
    assert judge(leaf, [], [root], ts(na) + 1) == ("expired", 0)
    long_leaf = ca.issue("ee long", root, not_before=t - 40 * DAY, not_after=t + 40 * DAY)
    assert judge(long_leaf, [], [root], ts(t + 30 * DAY)) == ("cert_ok", 0)
    assert judge(long_leaf, [], [root], ts(t + 30 * DAY) + 1) == ("expired", 0)
    assert judge(long_leaf, [], [root], ts(t - 30 * DAY) - 1) == ("not_yet_valid", 0)


def test_parse_time():
    assert parse_time("1700000000") == 1700000000
    assert parse_time("@1700000000") == 1700000000
    assert parse_time("2023-11-14T22:13:20Z") == 1700000000
    assert parse_time("2023-11-14T23:13:20+01:00") == 1700000000
    assert parse_time("2023-11-14") == 1699920000
    with pytest.raises(CryptbpfError):
        parse_time("next tuesday")


def test_verify_cli_verdicts_reasons_json_and_exit_codes(tmp_path):
    root = ca.issue("cli root", ca=True, path_len=1)
    inter = ca.issue("cli ica", root, ca=True, path_len=0)
    leaf = ca.issue("cli ee", inter, not_after=ca.now() + 10 * DAY)
    for n, it in (("root", root), ("ica", inter), ("ee", leaf)):
        (tmp_path / f"{n}.pem").write_bytes(it.pem)
    (tmp_path / "chain.pem").write_bytes(root.pem + inter.pem)     # root included, any order
    base = ["pki", "verify", str(tmp_path / "ee.pem"), "--trust", str(tmp_path / "root.pem")]
    r = run_cli(*base, "--chain", str(tmp_path / "chain.pem"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == "accepted (cert_ok)"
    assert "ca    CN=cli ica" in lines[1] and "leaf  CN=cli ee" in lines[2]
    # the intermediate left out: the leaf's issuer is no anchor
    r = run_cli(*base, "--json")
    assert r.returncode == 2, r.stderr
    d = json.loads(r.stdout)
    assert (d["accepted"], d["reason"], d["path_complete"]) == (False, "untrusted", False)
    assert [s["result"] for s in d["steps"]] == ["untrusted"]
    # in 20 days the leaf has expired, the intermediate not
    r = run_cli(*base, "--chain", str(tmp_path / "chain.pem"), "--json",
                "--at", (ca.now() + 20 * DAY).isoformat())
    d = json.loads(r.stdout)
    assert r.returncode == 2 and d["reason"] == "expired"
    assert [s["role"] for s in d["steps"]] == ["ca", "leaf"]
    assert [s["result"] for s in d["steps"]] == ["cert_ok", "expired"]
    r = run_cli(*base, "--at", "soon")
    assert r.returncode == 1 and r.stderr.startswith("cryptbpf: --at 'soon'"), r.stderr
    r = run_cli("pki", "verify", str(tmp_path / "ee.pem"))
    assert r.returncode == 1 and "--trust" in r.stderr


def test_verify_leaves_nothing_loaded(root, tmp_path):
    from conftest import system_snapshot
    before = system_snapshot(None, "pki-validator")
    (tmp_path / "root.pem").write_bytes(root.pem)
    (tmp_path / "ee.pem").write_bytes(ca.issue("ee", root).pem)
    assert run_cli("pki", "verify", str(tmp_path / "ee.pem"), "--trust", str(tmp_path / "root.pem")).returncode == 0
    assert system_snapshot(None, "pki-validator") == before
