"""pki_validator: X.509 chain validations per second on one core, next to
the same validation in userspace with `cryptography` in the same run.

The XDP program runs the real exchange through BPF_PROG_TEST_RUN, one
datagram per run (it rewrites each frame into its reply, so `repeat` cannot
be used); the figure is the sum of the kernel-measured run times of the
datagrams of one validation, averaged over ROUNDS validations.
Userspace: cryptography's RFC 5280 path validation (x509.verification
client verifier: parse, signatures, validity, CA flags, path length) plus
the proof-of-possession ECDSA verify, as the kernel does.
"""

from __future__ import annotations

import datetime as dt
import socket
import struct
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.verification import PolicyBuilder, Store

from ...bench import userspace_ns
from ...bpf.headers import Layout
from ...bpf.object import BpfObject
from ...paths import bpf_object
from . import control as admin, ca, client as peer
from .spec import SPEC

ROUNDS = 150
XDP_TX = 3


def _frame(payload: bytes, src: str, dst: str = "10.9.0.2", dport: int = 7443) -> bytes:
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 1, 0x4000, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    s = sum(struct.unpack("!10H", ip))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    ip = ip[:10] + struct.pack("!H", ~s & 0xFFFF) + ip[12:]
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + udp + payload


class _TimedPeer(peer.Peer):
    """The client protocol over test runs; kernel time per message type."""

    def __init__(self, prog, src: str):
        self.L, self.prog, self.local_ip = Layout("pki_validator"), prog, src
        self.host, self.port, self.challenge, self.sent = "test_run", 7443, None, []
        self.ns: dict[str, int] = {}

    def _exchange(self, payload, what):
        r = self.prog.test_run(data=_frame(payload, self.local_ip))
        if r.retval != XDP_TX:
            raise RuntimeError(f"bench: {what} rejected (retval {r.retval})")
        self.ns[what] = self.ns.get(what, 0) + r.duration_ns
        data = r.data[42:]
        m = self.L.unpack("struct pki_msg", data)
        m["body"] = data[self.L.const("PKI_MSG_LEN"):]
        return m


def _userspace(root, cas, leaf, key) -> float:
    """ns per validation: path validation + proof-of-possession verify."""
    store = Store([root.cert])
    ders = [c.der for c in cas]
    digest = peer.pop_digest(peer.Challenge(1, bytes(16), bytes(32)), "10.9.0.1")
    der_sig = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    prehashed = ec.ECDSA(utils.Prehashed(hashes.SHA256()))

    def once():
        leaf_c = x509.load_der_x509_certificate(leaf.der)
        chain = [x509.load_der_x509_certificate(d) for d in ders]
        v = (PolicyBuilder().store(store).time(dt.datetime.now(dt.timezone.utc))
             .build_client_verifier())
        v.verify(leaf_c, chain)
        leaf_c.public_key().verify(der_sig, digest, prehashed)
    once()
    return userspace_ns(once)


def pki_chain_validation(echo) -> list[dict]:
    root = ca.issue("bench root", ca=True, path_len=1)
    inter = ca.issue("bench intermediate", root, ca=True, path_len=0)
    leaf = ca.issue("bench leaf", inter)
    direct = ca.issue("bench direct leaf", root)
    obj = BpfObject.open(str(bpf_object("pki_validator")))
    try:
        obj.load()
        SPEC.setup(obj, None, {})
        admin.trust(obj, root.cert)
        prog = obj.program("pki_xdp")
        rows = []
        for what, cas, lf in (("leaf under root", [], direct),
                              ("leaf + intermediate", [inter], leaf)):
            total: dict[str, int] = {}
            for i in range(ROUNDS):
                p = _TimedPeer(prog, f"10.9.{1 + i // 250}.{1 + i % 250}")
                p.authenticate([c.der for c in cas], lf.der, lf.key)
                for k, v in p.ns.items():
                    total[k] = total.get(k, 0) + v
            per = {k: v / ROUNDS for k, v in total.items()}
            ns_chain = sum(v for k, v in per.items() if k != "proof of possession")
            ns_all = sum(per.values())
            base = _userspace(root, cas, lf, lf.key)
            rows.append({"name": f"pki validation, {what} (certs + proof of possession)",
                         "size": sum(len(c.der) for c in cas) + len(lf.der),
                         "ns": ns_all, "baseline": "cryptography path validation + PoP verify",
                         "baseline_ns": base,
                         "validations_per_s": round(1e9 / ns_all),
                         "baseline_per_s": round(1e9 / base),
                         "per_message_ns": {k: round(v) for k, v in per.items()},
                         "certificates_only_ns": round(ns_chain)})
        rows.append({"name": "pki_validator object",
                     "verified_insns": {n: p.verified_insns for n, p in obj.programs.items()}})
        return rows
    finally:
        obj.close()


# `cryptbpf bench` names these pki.<function> (`--only pki`)
BENCH_NAME = "pki"
BENCHMARKS = [pki_chain_validation]
