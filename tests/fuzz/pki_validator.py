"""pki-validator's accept rule (bpf/include/pki_validator.h,
docs/pki_validator.md): HELLO gets the challenge bound to the source;
CERTs carrying it build a chain from a trust anchor (CA certificates first,
each issuing the next, then the leaf); a PROOF signed by the leaf key over
the challenge and the source address authorizes the source for its
protected ports (one authorization per challenge).

The model knows the certificates it sends (issuer, CA flag, path length,
key usage, keys) and follows the chain rules exactly for them. A CERT whose
DER is none of them (a mutation) must be refused with exactly one of the
certificate reasons: which one is the X.509 parser's business, tested by
test_pki_validator.py; here only that nothing gets through."""

from __future__ import annotations

import hashlib
import hmac
import random
import socket
import struct

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from cryptbpf.programs.pki_validator import SPEC, ca, control as admin
from cryptbpf.programs.pki_validator.client import POP_CONTEXT, pop_signature

from fuzz.engine import XDP_DROP, XDP_PASS, XDP_TX, icmp_error_rule, random_ipv4
from fuzz.frames import UDP, classify
from xdp_frames import udp_frame

CTRL, APP, OPEN = 7443, 2443, 2444
SLOT_NS = 30 * 10**9
CERT_REASONS = ("malformed", "unsupported", "untrusted", "bad_signature", "not_ca",
                "bad_usage", "expired", "not_yet_valid", "revoked")


def _boot_ns() -> int:
    import time
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class _Cert:
    def __init__(self, issued, issuer_key):
        c = issued.cert
        self.der = c.public_bytes(serialization.Encoding.DER)
        self.key, self.issuer_key = issued.key, issuer_key
        self.subject, self.issuer = c.subject, c.issuer
        bc = c.extensions.get_extension_for_class(x509.BasicConstraints).value
        self.is_ca = bc.ca
        self.path_len = 255 if bc.path_length is None else bc.path_length
        ku = c.extensions.get_extension_for_class(x509.KeyUsage).value
        self.cert_sign, self.digital_sig = ku.key_cert_sign, ku.digital_signature


class Target:
    name = "pki_validator"

    def __init__(self, obj):
        self.obj, self.prog = obj, obj.program("pki_xdp")
        self.chal_key = random.Random(1).randbytes(32)
        L = admin.layout()
        res = obj.program("pki_key_setup").test_run(ctx=L.pack("struct pki_key_setup", key=self.chal_key))
        assert L.unpack("struct pki_key_setup", res.ctx)["err"] == 0
        admin.publish_clock(obj)
        admin.set_lifetime(obj, 3600)
        admin.protect(obj, APP, CTRL)
        root = ca.issue("fuzz root", ca=True, path_len=1)
        inter = ca.issue("fuzz intermediate", root, ca=True, path_len=0)
        leaf, direct = ca.issue("fuzz leaf", inter), ca.issue("fuzz direct", root)
        admin.trust(obj, root.cert)
        self.root = _Cert(root, root.key)
        self.paths = [[_Cert(inter, root.key), _Cert(leaf, inter.key)], [_Cert(direct, root.key)]]
        self.known = {c.der: c for p in self.paths for c in p}
        self.sources = [random_ipv4(random.Random(300 + i)) for i in range(4)]
        self.gen: dict[str, dict] = {}          # the sender's side of each exchange
        self.clients: dict[bytes, dict] = {}     # the model of map `clients`
        self.authorized: set[bytes] = set()
        self.used: set[bytes] = set()

    # ---- frames
    def challenge(self, src: bytes, slot: int, nonce: bytes) -> bytes:
        return hmac.new(self.chal_key, b"cbpki v1" + src + bytes(4) + struct.pack(">II", slot, 0) + nonce,
                        hashlib.sha256).digest()

    @staticmethod
    def msg(mtype: int, slot: int, nonce: bytes, chal: bytes, flags: int = 0, body: bytes = b"") -> bytes:
        return struct.pack(">IBBBBI", 0x43504B49, 1, mtype, flags, 0, slot) + nonce + chal + body

    def valid(self, rng: random.Random) -> bytes:
        src, r = rng.choice(self.sources), rng.random()
        if r < 0.15:
            return udp_frame(b"app", rng.choice((APP, APP, OPEN)), src=src)
        return udp_frame(self.valid_for(src, rng, restart=r < 0.25), CTRL, src=src)

    def valid_for(self, src: str, rng: random.Random, restart: bool = False) -> bytes:
        """The payload of src's next message: HELLO, its CERTs, PROOF,
        then HELLO again."""
        g = self.gen.get(src)
        if g is None or g["i"] > len(g["path"]) or restart:
            slot, nonce = _boot_ns() // SLOT_NS, rng.randbytes(16)
            self.gen[src] = {"slot": slot, "nonce": nonce, "path": rng.choice(self.paths), "i": 0,
                             "chal": self.challenge(socket.inet_aton(src), slot, nonce)}
            return self.msg(1, 0, nonce, bytes(32), body=bytes(4))
        c = (g["slot"], g["nonce"], g["chal"])
        i, g["i"] = g["i"], g["i"] + 1
        if i < len(g["path"]):
            flags = 2 if i == len(g["path"]) - 1 else 1
            return self.msg(3, *c, flags=flags, body=g["path"][i].der)
        digest = hashlib.sha256(POP_CONTEXT + struct.pack(">I", c[0]) + c[1] + c[2] +
                                socket.inet_aton(src)).digest()
        return self.msg(4, *c, body=pop_signature(g["path"][-1].key, digest))

    # ---- the model
    def expect(self, frame: bytes):
        f = classify(frame)
        if f.kind == "bad":
            return XDP_DROP, {"unparsed": 1}
        if f.kind == "not_ip":
            return XDP_PASS, {}
        if f.icmp_err:
            return icmp_error_rule(f, APP, self.authorized.__contains__)
        if f.dport is None:
            return XDP_PASS, {}
        if f.kind == "ipv6":
            return (XDP_DROP, {"denied": 1}) if f.dport == APP else (XDP_PASS, {})
        if f.proto == UDP and f.dport == CTRL:
            if not f.udp_exact():
                return XDP_DROP, {"malformed": 1}
            off, n = f.payload
            return self._control(frame[off:off + n], f.saddr)
        if f.dport == APP:
            return (XDP_PASS, {"passed": 1}) if f.saddr in self.authorized else (XDP_DROP, {"denied": 1})
        return XDP_PASS, {}

    def _control(self, p: bytes, src: bytes):
        if len(p) < 60:
            return XDP_DROP, {"malformed": 1}
        magic, version, mtype, flags, _, slot = struct.unpack(">IBBBBI", p[:12])
        nonce, chal, body = p[12:28], p[28:60], p[60:]
        if (magic, version) != (0x43504B49, 1):
            return XDP_DROP, {"malformed": 1}
        if mtype == 1:
            return (XDP_TX, {"hello": 1}) if len(p) == 64 else (XDP_DROP, {"malformed": 1})
        if mtype == 3 and not (1 <= len(body) <= 1400 and flags in (1, 2)):
            return XDP_DROP, {"malformed": 1}
        if mtype == 4 and len(body) != 64:
            return XDP_DROP, {"malformed": 1}
        if mtype not in (3, 4):
            return XDP_DROP, {"malformed": 1}
        now = _boot_ns() // SLOT_NS
        if slot not in (now, now - 1) or chal != self.challenge(src, slot, nonce):
            return XDP_DROP, {"bad_challenge": 1}
        if chal in self.used:
            return XDP_DROP, {"replay": 1}
        if mtype == 3:
            return self._cert(body, flags, chal, src)
        return self._proof(body, slot, nonce, chal, src)

    def _cert(self, der: bytes, flags: int, chal: bytes, src: bytes):
        c = self.known.get(der)
        if c is None:
            return XDP_DROP, {"_one_of": CERT_REASONS}
        st = self.clients.get(src)
        if st and st["issuer"] and not st["leaf"] and st["chal"] == chal and st["issuer"].subject == c.issuer:
            st, signer = dict(st), st["issuer"]
        elif c.issuer == self.root.subject:
            st, signer = {"chal": chal, "issuer": None, "leaf": None, "n": 0, "path_left": 1}, self.root
        else:
            return XDP_DROP, {"untrusted": 1}
        if signer.key.public_key() != c.issuer_key.public_key():
            return XDP_DROP, {"bad_signature": 1}
        if st["n"] >= 4:
            return XDP_DROP, {"untrusted": 1}
        if flags == 1:
            if not c.is_ca or st["path_left"] == 0 or not c.cert_sign:
                return XDP_DROP, {"not_ca": 1}
            st["path_left"] = min(st["path_left"] - 1, c.path_len)
            st["issuer"] = c
        else:
            if not c.digital_sig:
                return XDP_DROP, {"bad_usage": 1}
            st["leaf"] = c
        st["n"] += 1
        self.clients[src] = st
        return XDP_TX, {"cert_ok": 1}

    def _proof(self, sig: bytes, slot: int, nonce: bytes, chal: bytes, src: bytes):
        st = self.clients.get(src)
        if not st or not st["leaf"] or st["chal"] != chal:
            return XDP_DROP, {"no_pop": 1}
        digest = hashlib.sha256(POP_CONTEXT + struct.pack(">I", slot) + nonce + chal + src).digest()
        try:
            st["leaf"].key.public_key().verify(
                utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
                digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        except InvalidSignature:
            return XDP_DROP, {"no_pop": 1}
        self.used.add(chal)
        self.authorized.add(src)
        del self.clients[src]
        return XDP_TX, {"authorized": 1}

    def verdict(self, frame: bytes) -> int:
        return self.prog.test_run(data=frame).retval

    def counters(self) -> dict:
        return SPEC.stats(self.obj)
