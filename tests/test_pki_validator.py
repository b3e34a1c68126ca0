"""pki_validator: X.509 chain access control in XDP.

Network tests: the server (namespace A) runs pki_xdp on its veth and a UDP
echo service on a protected port; the client (namespace B) authenticates
with cryptbpf.programs.pki_validator.client. Every certificate comes from `cryptography`
(cryptbpf.programs.pki_validator.ca) or the `openssl` command. Each rejection is checked by
the one counter it must move. The DER fuzzing runs the same program through
BPF_PROG_TEST_RUN (thousands of frames; a veth round trip each would be
slow)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import TEST_OBJ_DIR, require_feature, run_cli, system_snapshot
from cryptbpf.bpf import attach
from cryptbpf import lifecycle, netns
from cryptbpf.bpf.headers import Layout
from cryptbpf.netns import VethPair
from cryptbpf.bpf.object import BpfObject
from cryptbpf.paths import bpf_object
from cryptbpf.programs.pki_validator import control as admin, ca, der, client as peer
from cryptbpf.programs.pki_validator import SPEC, control as pv
from cryptbpf.programs.pki_validator.verify import RunPeer
from xdp_frames import XDP_DROP, XDP_PASS, XDP_TX, udp_frame

APP_PORT = 5000
CTRL = 7443
L = Layout("pki_validator")
DAY = dt.timedelta(days=1)


def require_all():
    for f in SPEC.requires:
        require_feature(f)


# ---------------------------------------------------------------- the PKI

class Pki:
    """Certificates shared by the tests (issuing costs little, but keeps
    the tests short to read)."""

    def __init__(self):
        t = ca.now()
        self.root = ca.issue("test root", ca=True, path_len=1)
        self.inter = ca.issue("test intermediate", self.root, ca=True, path_len=0)
        self.leaf = ca.issue("client leaf", self.inter)
        self.direct = ca.issue("client under root", self.root)
        self.other_root = ca.issue("untrusted root", ca=True)
        self.expired_leaf = ca.issue("expired", self.root, not_before=t - 10 * DAY, not_after=t - DAY)
        self.future_leaf = ca.issue("future", self.root, not_before=t + DAY, not_after=t + 10 * DAY)
        self.expired_inter = ca.issue("expired intermediate", self.root, ca=True,
                                      not_before=t - 10 * DAY, not_after=t - DAY)
        self.leaf_of_expired = ca.issue("leaf of expired", self.expired_inter)
        self.not_ca = ca.issue("not a CA", self.root, ca=False)
        self.leaf_of_not_ca = ca.issue("leaf of not a CA", self.not_ca)
        self.inter_b = ca.issue("test intermediate B", self.root, ca=True, path_len=0)
        self.leaf_of_b = ca.issue("leaf of B", self.inter_b)
        # same subject Name as `inter`, another key: a leaf it signs must
        # fail the signature check against the real `inter`
        self.impostor = ca.issue("test intermediate", self.root, ca=True, path_len=0)
        self.leaf_of_impostor = ca.issue("leaf of impostor", self.impostor)
        self.untrusted_leaf = ca.issue("leaf of untrusted", self.other_root)


@pytest.fixture(scope="module")
def pki():
    return Pki()


def flip(data: bytes, pos: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= 0x01
    return bytes(b)


# ---------------------------------------------------------------- network

def _echo(ns: str, addr: str, stop: threading.Event) -> threading.Thread:
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, APP_PORT))
    s.settimeout(0.05)

    def run():
        with s:
            while not stop.is_set():
                try:
                    data, src = s.recvfrom(2048)
                except socket.timeout:
                    continue
                s.sendto(data, src)
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def reachable(ns: str, addr: str, tries: int = 2) -> bool:
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.settimeout(0.3)
        for _ in range(tries):
            s.sendto(b"ping", (addr, APP_PORT))
            try:
                return s.recvfrom(64)[0] == b"ping"
            except socket.timeout:
                pass
    return False


class Server:
    def __init__(self, obj, pair: VethPair):
        self.obj, self.v = obj, pair

    def stats(self) -> dict[str, int]:
        return admin.stats(self.obj)

    def reset(self) -> None:
        for name in ("authorized", "clients", "revoked", "crl_invalid"):
            m = self.obj.map(name)
            for k in list(m.keys()):
                m.delete(k)
        admin.set_lifetime(self.obj, 3600)

    def peer(self, timeout: float = 0.4) -> peer.Peer:
        with netns.inside(self.v.ns_b):
            return peer.Peer(self.v.addr_a, CTRL, timeout)

    def reachable(self, tries: int = 2) -> bool:
        return reachable(self.v.ns_b, self.v.addr_a, tries)


@pytest.fixture(scope="module")
def server_mod(pki):
    """pki_xdp (generic XDP) on A's veth, protecting APP_PORT; echo on A."""
    from conftest import require_root
    require_root()
    require_all()
    tag = "cbp" + uuid.uuid4().hex[:5]
    pair = VethPair(tag, subnet=f"10.213.{int(tag[3:5], 16)}").create()
    obj = BpfObject.open(str(bpf_object("pki_validator")))
    stop = threading.Event()
    th = None
    try:
        obj.load()
        SPEC.setup(obj, None, {"protect": [str(APP_PORT)]})
        admin.trust(obj, pki.root.cert)
        with netns.inside(pair.ns_a):
            prog = obj.program("pki_xdp")
            att = attach.xdp_attach(prog.fd, prog.id, attach.ifindex(pair.dev_a), "skb")
        th = _echo(pair.ns_a, pair.addr_a, stop)
        yield Server(obj, pair)
        with netns.inside(pair.ns_a):
            attach.xdp_detach(att)
    finally:
        stop.set()
        if th:
            th.join()
        obj.close()
        pair.close()


@pytest.fixture
def server(server_mod):
    server_mod.reset()
    return server_mod


def delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def test_leaf_under_root_authorizes_and_traffic_flows(server, pki):
    assert not server.reachable()
    s0 = server.stats()
    with server.peer() as p:
        until = p.authenticate([], pki.direct.der, pki.direct.key)
    d = delta(s0, server.stats())
    assert d == {"hello": 1, "cert_ok": 1, "authorized": 1}
    # bounded by the lifetime (3600 s), well before the leaf's notAfter
    assert abs(until - (time.time() + 3600)) < 60
    assert server.reachable()
    assert server.stats()["passed"] > s0["passed"]
    assert [a["client"] for a in admin.authorized(server.obj)] == [server.v.addr_b]


def test_leaf_with_intermediate_authorizes(server, pki):
    s0 = server.stats()
    with server.peer() as p:
        p.authenticate([pki.inter.der], pki.leaf.der, pki.leaf.key)
    assert delta(s0, server.stats()) == {"hello": 1, "cert_ok": 2, "authorized": 1}
    assert server.reachable()
    (a,) = admin.authorized(server.obj)
    assert a["chain"] == 2


def test_authorization_ends_at_the_leafs_not_after(server, pki):
    soon = ca.issue("short-lived", pki.root, not_after=ca.now() + dt.timedelta(seconds=3))
    with server.peer() as p:
        until = p.authenticate([], soon.der, soon.key)
    assert until == int(soon.cert.not_valid_after_utc.timestamp())
    assert server.reachable()
    time.sleep(max(0, until - time.time()) + 1.2)
    s0 = server.stats()
    assert not server.reachable(tries=1)
    d = delta(s0, server.stats())
    assert d["lost_auth"] == 1 and d["denied"] >= 1


def _rejected(server, reason: str, run) -> None:
    s0 = server.stats()
    with server.peer(timeout=0.3) as p:
        with pytest.raises(peer.Rejected):
            run(p)
    d = delta(s0, server.stats())
    assert d.get(reason) == 1, d
    assert d.get("authorized", 0) == 0
    assert not set(d) - {reason, "hello", "cert_ok"}, d
    assert not server.reachable(tries=1)


CASES = {
    # name: (reason, lambda pki: (ca_ders, leaf_der, key))
    "expired leaf": ("expired", lambda k: ([], k.expired_leaf.der, k.expired_leaf.key)),
    "not yet valid leaf": ("not_yet_valid", lambda k: ([], k.future_leaf.der, k.future_leaf.key)),
    "expired intermediate": ("expired", lambda k: ([k.expired_inter.der], k.leaf_of_expired.der,
                                                   k.leaf_of_expired.key)),
    "untrusted root": ("untrusted", lambda k: ([], k.untrusted_leaf.der, k.untrusted_leaf.key)),
    "signature byte flipped": ("bad_signature", lambda k: ([], flip(k.direct.der, len(k.direct.der) - 3),
                                                           k.direct.key)),
    "tbs byte flipped": ("bad_signature", lambda k: ([], flip(k.direct.der, k.direct.der.index(b"client under") + 2),
                                                     k.direct.key)),
    "issuer without CA flag": ("not_ca", lambda k: ([k.not_ca.der], k.leaf_of_not_ca.der,
                                                    k.leaf_of_not_ca.key)),
    "leaf of another intermediate": ("untrusted", lambda k: ([k.inter.der], k.leaf_of_b.der, k.leaf_of_b.key)),
    "leaf signed by impostor key": ("bad_signature", lambda k: ([k.inter.der], k.leaf_of_impostor.der,
                                                                k.leaf_of_impostor.key)),
    "chain out of order": ("untrusted", lambda k: ([k.leaf.der], k.inter.der, k.inter.key)),
    "wrong proof of possession": ("no_pop", lambda k: ([k.inter.der], k.leaf.der, ca.new_key())),
    "copied certificate, own key": ("no_pop", lambda k: ([], k.direct.der, k.leaf.key)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rejections_are_counted_by_reason(server, pki, case):
    reason, build = CASES[case]
    cas, leaf, key = build(pki)
    if case == "chain out of order":
        # leaf first (as a CA cert), then the intermediate
        _rejected(server, reason, lambda p: (p.hello(), p.send_cert(cas[0], leaf=False)))
        return
    _rejected(server, reason, lambda p: p.authenticate(cas, leaf, key))


def test_revoked_leaf_and_intermediate_are_rejected(server, pki):
    admin.revoke(server.obj, der.cert_fields(pki.direct.cert).issuer_hash, [pki.direct.cert.serial_number])
    _rejected(server, "revoked", lambda p: p.authenticate([], pki.direct.der, pki.direct.key))
    crl = ca.crl(pki.root, [pki.inter.cert.serial_number])
    assert admin.revoke_crl(server.obj, crl, pki.root.cert) == 1
    _rejected(server, "revoked", lambda p: p.authenticate([pki.inter.der], pki.leaf.der, pki.leaf.key))


@pytest.mark.parametrize("what", ["leaf", "intermediate (CRL)"])
def test_revocation_cuts_an_authorized_client_off(server, pki, what):
    with server.peer() as p:
        p.authenticate([pki.inter.der], pki.leaf.der, pki.leaf.key)
    assert server.reachable()
    s0 = server.stats()
    if what == "leaf":
        admin.revoke(server.obj, der.cert_fields(pki.leaf.cert).issuer_hash, [pki.leaf.cert.serial_number])
    else:
        admin.revoke_crl(server.obj, ca.crl(pki.root, [pki.inter.cert.serial_number]), pki.root.cert)
    assert not server.reachable(tries=1)
    d = delta(s0, server.stats())
    assert d["lost_auth"] == 1 and d["denied"] >= 1
    assert admin.authorized(server.obj) == []


def test_revoking_an_unrelated_serial_keeps_access(server, pki):
    with server.peer() as p:
        p.authenticate([], pki.direct.der, pki.direct.key)
    admin.revoke(server.obj, der.cert_fields(pki.direct.cert).issuer_hash, [pki.direct.cert.serial_number + 1])
    assert server.reachable()


def test_replayed_authentication_is_refused(server, pki):
    with server.peer() as p:
        p.authenticate([pki.inter.der], pki.leaf.der, pki.leaf.key)
        sent = list(p.sent)
    assert admin.deauthorize(server.obj, server.v.addr_b)
    s0 = server.stats()
    # the recorded datagrams, byte for byte, from the same address
    with server.peer(timeout=0.3) as p:
        for d in sent:
            p.sock.send(d)
            try:
                p.sock.recv(2048)
            except socket.timeout:
                pass
    d = delta(s0, server.stats())
    assert d.get("authorized", 0) == 0
    assert d["replay"] == 3          # both certificates and the proof
    assert not server.reachable(tries=1)


def test_proof_from_another_address_is_refused(server, pki):
    """A challenge and proof lifted to another source address (the server
    answers that address, so this only checks the binding): bad_challenge."""
    with server.peer() as p:
        p.hello()
        p.send_cert(pki.direct.der, leaf=True)
        proof = p.msg(L.const("PKI_MSG_PROOF"),
                      body=peer.pop_signature(pki.direct.key, peer.pop_digest(p.challenge, p.local_ip)))
    ip2 = server.v.addr_b.rsplit(".", 1)[0] + ".77"
    netns.ip("addr", "add", f"{ip2}/24", "dev", server.v.dev_b, netns=server.v.ns_b)
    s0 = server.stats()
    with netns.inside(server.v.ns_b):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.bind((ip2, 0))
        s.sendto(proof, (server.v.addr_a, CTRL))
        time.sleep(0.2)
    assert delta(s0, server.stats()) == {"bad_challenge": 1}


def test_openssl_issued_chain_authorizes(server, tmp_path):
    d = tmp_path

    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    for n in ("root", "int", "leaf"):
        ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{n}.key")
    ossl("req", "-x509", "-new", "-key", "root.key", "-sha256", "-days", "30",
         "-subj", "/O=openssl test/CN=openssl root",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "root.pem")
    (d / "int.ext").write_text("basicConstraints=critical,CA:TRUE,pathlen:0\n"
                               "keyUsage=critical,keyCertSign,cRLSign\n")
    (d / "leaf.ext").write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    for n, issuer, cn in (("int", "root", "openssl intermediate"), ("leaf", "int", "openssl leaf")):
        ossl("req", "-new", "-key", f"{n}.key", "-subj", f"/O=openssl test/CN={cn}", "-out", f"{n}.csr")
        ossl("x509", "-req", "-in", f"{n}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key",
             "-CAcreateserial", "-days", "20", "-sha256", "-extfile", f"{n}.ext", "-out", f"{n}.pem")
    root = der.load_certs(d / "root.pem")[0]
    inter, leaf = der.load_certs(d / "int.pem")[0], der.load_certs(d / "leaf.pem")[0]
    admin.trust(server.obj, root)
    try:
        s0 = server.stats()
        with server.peer() as p:
            p.authenticate([peer.der_of(inter)], peer.der_of(leaf), peer.load_key(d / "leaf.key"))
        assert delta(s0, server.stats()) == {"hello": 1, "cert_ok": 2, "authorized": 1}
        assert server.reachable()
    finally:
        admin.untrust(server.obj, root)
    # untrusting the anchor ends the authorization at once
    assert not server.reachable(tries=1)


def test_unrelated_traffic_is_not_parsed(server):
    """Other ports pass; nothing is counted."""
    with netns.inside(server.v.ns_a):
        srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((server.v.addr_a, 5999))
    srv.settimeout(1)
    s0 = server.stats()
    with netns.inside(server.v.ns_b):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with srv, c:
        c.sendto(b"\x30\x82" + os.urandom(500), (server.v.addr_a, 5999))
        assert len(srv.recvfrom(2048)[0]) == 502
    assert server.stats() == s0


# ------------------------------------------------------- CLI and lifecycle

def test_cli_end_to_end(pki, tmp_path):
    """load with --protect/--trust, connect as the peer (native XDP: the
    client's veth gets a pass-through XDP program so it takes XDP_TX
    frames), revoke from a CRL file, status, unload leaves nothing behind."""
    from conftest import require_root
    require_root()
    require_all()
    r = run_cli("pki", "demo-ca", str(tmp_path / "pki"))
    assert r.returncode == 0, r.stderr
    files = {p.name: p for p in (tmp_path / "pki").iterdir()}
    assert {"root.pem", "intermediate.pem", "chain.pem", "leaf.pem", "leaf.key"} <= set(files)
    assert (files["leaf.key"].stat().st_mode & 0o077) == 0
    tag = "cbq" + uuid.uuid4().hex[:5]
    v = VethPair(tag, subnet=f"10.214.{int(tag[3:5], 16)}").create()
    stop = threading.Event()
    th = None
    passobj = BpfObject.open(str(TEST_OBJ_DIR / "xdp_pass.bpf.o")).load()
    try:
        with netns.inside(v.ns_b):
            attach.xdp_attach(passobj.program("xdp_pass").fd, passobj.program("xdp_pass").id,
                              attach.ifindex(v.dev_b), "drv")
        before = system_snapshot(v.ns_a, pv.NAME)
        r = run_cli("load", pv.NAME, v.dev_a, "--netns", v.ns_a, "--xdp-mode", "drv",
                    "--protect", str(APP_PORT), "--trust", str(files["root.pem"]))
        assert r.returncode == 0, r.stderr
        th = _echo(v.ns_a, v.addr_a, stop)
        assert not reachable(v.ns_b, v.addr_a)
        r = subprocess.run(["ip", "netns", "exec", v.ns_b, sys.executable,
                            "-m", "cryptbpf.cli", "pki", "connect", v.addr_a, str(CTRL),
                            "--cert", str(files["leaf.pem"]), "--chain", str(files["chain.pem"]),
                            "--key", str(files["leaf.key"])], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "authorized by" in r.stdout
        assert reachable(v.ns_b, v.addr_a)
        crl = ca.crl(ca.Issued(der.load_certs(files["intermediate.pem"])[0],
                               peer.load_key(files["intermediate.key"])),
                     [der.load_certs(files["leaf.pem"])[0].serial_number])
        (tmp_path / "int.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        r = run_cli("pki", "revoke", "--crl", str(tmp_path / "int.crl"), "--issuer", str(files["intermediate.pem"]))
        assert r.returncode == 0, r.stderr
        assert not reachable(v.ns_b, v.addr_a, tries=1)
        r = run_cli("pki", "status", "--json")
        assert r.returncode == 0, r.stderr
        import json
        st = json.loads(r.stdout)
        assert st["stats"]["authorized"] == 1 and st["stats"]["lost_auth"] == 1
        assert st["revoked_serials"] == 1 and st["protected_ports"] == [APP_PORT]
        assert st["crl_refused_issuers"] == 0
        # a CRL without cRLNumber: refused in one line, and the issuer fails closed
        inter_ca = ca.Issued(der.load_certs(files["intermediate.pem"])[0],
                             peer.load_key(files["intermediate.key"]))
        (tmp_path / "bad.crl").write_bytes(ca.crl(inter_ca, [], number=None).public_bytes(
            serialization.Encoding.PEM))
        r = run_cli("pki", "revoke", "--crl", str(tmp_path / "bad.crl"), "--issuer", str(files["intermediate.pem"]))
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no cRLNumber" in r.stderr, r.stderr
        st = json.loads(run_cli("pki", "status", "--json", check=True).stdout)
        assert st["crl_refused_issuers"] == 1
        r = run_cli("pki", "revoke", "--serial", "12")
        assert r.returncode == 1 and r.stderr.startswith("cryptbpf: ") and "--issuer" in r.stderr
        r = run_cli("pki", "trust", str(files["leaf.pem"]))
        assert r.returncode == 1 and "must be a CA" in r.stderr
    finally:
        stop.set()
        if th:
            th.join()
        if lifecycle.pins.is_loaded(pv.NAME):
            lifecycle.unload(pv.NAME)
        after = system_snapshot(v.ns_a, pv.NAME)
        passobj.close()
        v.close()
    assert after == before


# ------------------------------------------------- DER fuzzing (test_run)

@pytest.fixture(scope="module")
def bench_obj(pki):
    from conftest import require_root
    require_root()
    require_all()
    obj = BpfObject.open(str(bpf_object("pki_validator"))).load()
    SPEC.setup(obj, None, {"protect": [str(APP_PORT)]})
    admin.trust(obj, pki.root.cert)
    yield obj
    obj.close()


def _try_cert(obj, cert_der: bytes, leaf: bool = True) -> str:
    """Send one CERT; the counter that moved (cert_ok when accepted)."""
    s0 = admin.stats(obj)
    p = RunPeer(obj.program("pki_xdp"))
    p.hello()
    try:
        p.send_cert(cert_der, leaf=leaf)
    except peer.Rejected:
        pass
    d = delta(s0, admin.stats(obj))
    d.pop("hello")
    assert len(d) == 1, d
    return next(iter(d))


def test_test_run_accepts_the_intact_certificate(bench_obj, pki):
    assert _try_cert(bench_obj, pki.direct.der) == "cert_ok"
    p = RunPeer(bench_obj.program("pki_xdp"), src="10.9.0.5")
    until = p.authenticate([pki.inter.der], pki.leaf.der, pki.leaf.key)
    assert until > time.time()
    r = bench_obj.program("pki_xdp").test_run(data=udp_frame(b"x" * 32, APP_PORT, src="10.9.0.5"))
    assert r.retval == XDP_PASS
    r = bench_obj.program("pki_xdp").test_run(data=udp_frame(b"x" * 32, APP_PORT, src="10.9.0.6"))
    assert r.retval == XDP_DROP


def test_every_truncation_is_malformed(bench_obj, pki):
    d = pki.direct.der
    seen = {_try_cert(bench_obj, d[:n]) for n in range(1, len(d))}
    assert seen == {"malformed"}


def _tlv_positions(data: bytes) -> list[tuple[int, int, int]]:
    """(start, content offset, end) of every element, walking constructed
    ones (and BIT/OCTET STRINGs that hold DER) recursively."""
    out = []

    def walk(off, end):
        pos = off
        while pos < end:
            try:
                tag, c, e = der.tlv(data, pos)
            except ValueError:
                return
            out.append((pos, c, e))
            if tag & 0x20:
                walk(c, e)
            elif tag == 0x04 and c < e and data[c] == 0x30:
                walk(c, e)
            elif tag == 0x03 and c + 1 < e and data[c + 1] == 0x30:
                walk(c + 1, e)
            pos = e
    walk(0, len(data))
    return out


def _length_shapes(data: bytes) -> list[tuple[int, bytes]]:
    """(element start, damaged copy): every element's length made one too
    long, one too short, indefinite (0x80), non-minimal (0x81 nn), 4-byte
    long form, and its tag replaced by 0x31/0x00/0xff."""
    out = []
    for start, c, e in _tlv_positions(data):
        hdr = data[start + 1:c]
        n = e - c
        for newlen in (n + 1, n - 1):
            if 0 <= newlen < 0x80 and len(hdr) == 1:
                out.append((start, data[:start + 1] + bytes([newlen]) + data[c:]))
            elif len(hdr) == 2 and 0x80 <= newlen < 0x100:
                out.append((start, data[:start + 1] + bytes([0x81, newlen]) + data[c:]))
            elif len(hdr) == 3 and newlen >= 0x100:
                out.append((start, data[:start + 1] + bytes([0x82]) + newlen.to_bytes(2, "big") + data[c:]))
        out.append((start, data[:start + 1] + b"\x80" + data[c:]))
        if n < 0x80:
            out.append((start, data[:start + 1] + bytes([0x81, n]) + data[c:]))
        out.append((start, data[:start + 1] + b"\x84" + n.to_bytes(4, "big") + data[c:]))
        for tag in (0x31, 0x00, 0xFF):
            if data[start] != tag:
                out.append((start, data[:start] + bytes([tag]) + data[start + 1:]))
    return out


def _opaque_ranges(data: bytes) -> list[tuple[int, int]]:
    """Content ranges of the extension values the kernel does not
    interpret (all but basicConstraints, keyUsage, the key identifiers and
    authorityInfoAccess): damage there is caught by the signature, not by
    the parser."""
    interpreted = {bytes.fromhex("551d13"), bytes.fromhex("551d0f"), bytes.fromhex("551d0e"),
                   bytes.fromhex("551d23"), bytes.fromhex("2b06010505070101")}
    _, off, end = der.tlv(data, 0)
    _, toff, tend = der.tlv(data, off)
    out = []
    for tag, _s, c, e in der.children(data, toff, tend):
        if tag != 0xA3:
            continue
        _, soff, send = der.tlv(data, c)
        for _t, _s2, ec, ee in der.children(data, soff, send):
            parts = der.children(data, ec, ee)
            if data[parts[0][2]:parts[0][3]] not in interpreted:
                out.append((parts[-1][2], parts[-1][3]))
    return out


def test_garbled_der_shapes_are_malformed(bench_obj, pki):
    """Every element's length and tag damaged, one shape at a time, in a
    certificate the server would accept: malformed (Names are checked for
    structure although compared only by hash; a broken algorithm identifier
    is malformed, not "unsupported"), except inside the values of
    extensions the kernel does not interpret, where the signature check
    catches it. Never accepted."""
    for cert in (pki.direct, pki.inter):
        opaque = _opaque_ranges(cert.der)
        assert opaque or cert is pki.inter     # SAN (the leaf)
        shapes = _length_shapes(cert.der)
        assert len(shapes) > 300
        for start, s in shapes:
            r = _try_cert(bench_obj, s, leaf=cert is pki.direct)
            if any(lo <= start < hi for lo, hi in opaque):
                # same size: only the signature notices; inserted bytes
                # break the enclosing lengths
                want = "bad_signature" if len(s) == len(cert.der) else "malformed"
                assert r == want, (start, r)
            else:
                assert r == "malformed", (start, r)


def test_random_byte_garbles_are_never_accepted(bench_obj, pki):
    rng = random.Random(1234)
    d = pki.direct.der
    seen = {}
    for _ in range(300):
        b = bytearray(d)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        if bytes(b) == d:
            continue
        r = _try_cert(bench_obj, bytes(b))
        seen[r] = seen.get(r, 0) + 1
    assert "cert_ok" not in seen, seen
    assert set(seen) <= {"malformed", "unsupported", "untrusted", "bad_signature", "not_yet_valid",
                         "expired"}, seen


def test_unsupported_algorithms_and_critical_extensions(bench_obj, pki, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec as _ec
    from cryptography.hazmat.primitives import hashes
    # P-384 key under the trusted root
    def builder(pub):
        return (x509.CertificateBuilder().subject_name(ca.name("alg")).issuer_name(pki.root.cert.subject)
                .public_key(pub).serial_number(5).not_valid_before(ca.now() - DAY)
                .not_valid_after(ca.now() + DAY))
    k384 = _ec.generate_private_key(_ec.SECP384R1())
    c384 = builder(k384.public_key()).sign(pki.root.key, hashes.SHA256())
    assert _try_cert(bench_obj, peer.der_of(c384)) == "unsupported"
    # ecdsa-with-SHA384 signature
    c_sha384 = builder(ca.new_key().public_key()).sign(pki.root.key, hashes.SHA384())
    assert _try_cert(bench_obj, peer.der_of(c_sha384)) == "unsupported"
    # an unknown critical extension must be refused (RFC 5280 4.2)
    crit = ca.issue("critical ext", pki.root, extra_extensions=[
        (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"), True)])
    assert _try_cert(bench_obj, crit.der) == "unsupported"
    # the same extension, not critical, is fine
    ok = ca.issue("noncritical ext", pki.root, extra_extensions=[
        (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"), False)])
    assert _try_cert(bench_obj, ok.der) == "cert_ok"
    # leaf whose keyUsage lacks digitalSignature
    ku = ca.issue("ku", pki.root, key_usage=False, extra_extensions=[(x509.KeyUsage(
        False, False, True, False, False, False, False, False, False), True)])
    assert _try_cert(bench_obj, ku.der) == "bad_usage"


def test_path_length_constraint(bench_obj, pki):
    """inter has pathLen 0: a CA below it may not issue."""
    sub = ca.issue("sub CA", pki.inter, ca=True)
    leaf = ca.issue("leaf of sub", sub)
    s0 = admin.stats(bench_obj)
    p = RunPeer(bench_obj.program("pki_xdp"), src="10.9.0.7")
    with pytest.raises(peer.Rejected):
        p.authenticate([pki.inter.der, sub.der], leaf.der, leaf.key)
    d = delta(s0, admin.stats(bench_obj))
    assert d == {"hello": 1, "cert_ok": 1, "not_ca": 1}


def test_hello_must_not_be_amplified(bench_obj):
    """A HELLO shorter than the challenge it would get is dropped."""
    s0 = admin.stats(bench_obj)
    p = RunPeer(bench_obj.program("pki_xdp"))
    p._nonce = bytes(16)
    short = p.msg(L.const("PKI_MSG_HELLO"))
    r = bench_obj.program("pki_xdp").test_run(data=udp_frame(short, CTRL))
    assert r.retval == XDP_DROP
    assert delta(s0, admin.stats(bench_obj)) == {"malformed": 1}


def test_guard_sees_through_vlan_and_refuses_ipv6(bench_obj, pki):
    """VLAN-tagged frames to a protected port are judged like untagged ones;
    IPv6 to a protected port is never authorized (authorization is per
    IPv4 address); other ports pass untouched."""
    from scapy.layers.inet6 import IPv6
    from scapy.layers.inet import UDP
    from scapy.layers.l2 import Ether
    prog = bench_obj.program("pki_xdp")
    p = RunPeer(prog, src="10.9.0.9")
    p.authenticate([], pki.direct.der, pki.direct.key)
    for src, want in (("10.9.0.9", XDP_PASS), ("10.9.0.10", XDP_DROP)):
        assert prog.test_run(data=udp_frame(b"x" * 32, APP_PORT, src=src, vlan=7)).retval == want
        assert prog.test_run(data=udp_frame(b"x" * 32, APP_PORT, src=src)).retval == want
    six = bytes(Ether() / IPv6(src="fd00::9", dst="fd00::1") / UDP(sport=1, dport=APP_PORT) / (b"x" * 32))
    assert prog.test_run(data=six).retval == XDP_DROP
    six_other = bytes(Ether() / IPv6(src="fd00::9", dst="fd00::1") / UDP(sport=1, dport=APP_PORT + 1) / (b"x" * 32))
    assert prog.test_run(data=six_other).retval == XDP_PASS


def test_no_certificate_without_a_published_clock(bench_obj, pki):
    """Validity needs Unix time: without the published TAI offset the
    program refuses to judge (errors), it does not fall back to boot time."""
    cfg = admin.config(bench_obj)
    admin._set_config(bench_obj, clock_set=0)
    try:
        assert _try_cert(bench_obj, pki.direct.der) == "errors"
    finally:
        admin._set_config(bench_obj, clock_set=cfg["clock_set"], tai_offset_ns=cfg["tai_offset_ns"])
    assert _try_cert(bench_obj, pki.direct.der) == "cert_ok"
