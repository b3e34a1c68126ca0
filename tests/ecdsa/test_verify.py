"""End-to-end tests of ecdsa_p256.bpf.h via BPF_PROG_TEST_RUN (TC and XDP).
Reference: pyca/cryptography (keys, signatures) and the curve math in p256.py.
Run: python3 test_verify.py [quick]"""
import os, sys, hashlib, random, struct
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpfh
from cryptbpf.crypto import p256
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives import hashes
from cryptography.exceptions import InvalidSignature

N, P = p256.N, p256.P
OBJ = bpfh.OBJ
OK, BAD, ENOKEY = 1, 0, -2

def b32(x): return x.to_bytes(32, "big")

class Harness:
    def __init__(self, obj):
        self.o = obj; self.next_id = 1; self.ids = {}
    def key_id(self, pub):
        if pub not in self.ids:
            kid = self.next_id; self.next_id += 1
            if kid > 16:  # map full: recycle
                self.o.delete("p256_keys", struct.pack("<I", self.ids.pop(next(iter(self.ids)))))
            self.o.update("p256_keys", struct.pack("<I", kid), p256.table_bytes(pub))
            self.ids[pub] = kid
        return self.ids[pub]
    def verify(self, pub, digest, sig, prog="verify_tc", sig_len=None, kid=None, pkbytes=None):
        sl = len(sig) if sig_len is None else sig_len
        sigb = (sig + bytes(64))[:64]
        if PK:
            prog = {"verify_tc": "verify_pk_tc", "verify_xdp": "verify_pk_xdp"}[prog]
            pk = p256.encode_public_key(pub) if pkbytes is None else pkbytes
            data = struct.pack("<II", len(pk), sl) + digest + sigb + (pk + bytes(65))[:65]
        else:
            kid = self.key_id(pub) if kid is None else kid
            data = struct.pack("<II", kid, sl) + digest + sigb
        r, _, _ = self.o.run(prog, data)
        return r - 100

def ref_verify(pub, digest, sig):
    try:
        key = ec.EllipticCurvePublicNumbers(pub[0], pub[1], ec.SECP256R1()).public_key()
        r = int.from_bytes(sig[:32], "big"); s = int.from_bytes(sig[32:], "big")
        key.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        return OK
    except (InvalidSignature, ValueError):
        return BAD

def sign_with(d, digest, k):
    """Raw ECDSA with chosen nonce k (for constructed edge cases)."""
    R = p256.scalar_mult(k, p256.G); r = R[0] % N
    e = int.from_bytes(digest, "big") % N
    s = pow(k, -1, N) * (e + r * d) % N
    return r, s

PK = "pk" in sys.argv  # table-free path: ecdsa_p256_verify_pubkey()
fails = 0
def check(name, got, exp):
    global fails
    if got != exp:
        fails += 1
        print(f"FAIL {name}: got {got} expected {exp}")

def main():
    quick = "quick" in sys.argv
    rng = random.Random(1234)
    with bpfh.Obj(OBJ) as o:
        h = Harness(o)
        print("verified_insns:", {n: bpfh.verified_insns(o.prog_fd(n)) for n in ("verify_tc", "verify_xdp")})
        # 1. random keys / messages signed by cryptography
        nkeys = 4 if quick else 12
        count = 0
        for ki in range(nkeys):
            priv = ec.generate_private_key(ec.SECP256R1())
            pn = priv.public_key().public_numbers(); pub = (pn.x, pn.y)
            for mi in range(5 if quick else 15):
                msg = os.urandom(rng.randrange(0, 200))
                digest = hashlib.sha256(msg).digest()
                r, s = utils.decode_dss_signature(priv.sign(msg, ec.ECDSA(hashes.SHA256())))
                sig = b32(r) + b32(s)
                for prog in ("verify_tc", "verify_xdp"):
                    check(f"valid k{ki} m{mi} {prog}", h.verify(pub, digest, sig, prog), OK)
                # flipped bits
                bit = rng.randrange(256)
                check("flip r", h.verify(pub, digest, b32(r ^ (1 << bit)) + b32(s)), ref_verify(pub, digest, b32(r ^ (1 << bit)) + b32(s)))
                check("flip s", h.verify(pub, digest, b32(r) + b32(s ^ (1 << bit))), ref_verify(pub, digest, b32(r) + b32(s ^ (1 << bit))))
                dflip = bytearray(digest); dflip[rng.randrange(32)] ^= 1 << rng.randrange(8)
                check("flip digest", h.verify(pub, bytes(dflip), sig), BAD)
                # low-s / high-s: both valid in ECDSA
                check("s -> n-s", h.verify(pub, digest, b32(r) + b32(N - s)), OK)
                count += 6
            # wrong key (another valid key)
            other = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
            check("wrong key", h.verify((other.x, other.y), digest, sig), BAD)
            # key with a flipped bit that is still on the curve is rare; use -Q (valid point, wrong key)
            check("negated key", h.verify(p256.point_neg(pub), digest, sig), BAD)
            # range checks
            for (rr, ss, nm) in ((0, s, "r=0"), (r, 0, "s=0"), (N, s, "r=n"), (r, N, "s=n"),
                                 (r + N if r + N < 2**256 else 2**256 - 1, s, "r>n"), (r, 2**256 - 1, "s=2^256-1"),
                                 (2**256 - 1, s, "r=2^256-1"), (N - 1, s, "r=n-1 (invalid)")):
                check(nm, h.verify(pub, digest, b32(rr) + b32(ss)), BAD)
            # wrong signature lengths
            for ln in (0, 63, 65, 72):
                check(f"sig_len {ln}", h.verify(pub, digest, sig, sig_len=ln), BAD)
        print(f"random: {count} checks")
        if not PK:
            # unknown key id
            check("unknown key id", h.verify(p256.G, bytes(32), bytes(64), kid=999), ENOKEY)
            check("unknown key id xdp", h.verify(p256.G, bytes(32), b32(1) + b32(1), prog="verify_xdp", kid=998), ENOKEY)
        else:
            # invalid public keys in the packet -> EBADKEY (-3), never valid
            priv = ec.generate_private_key(ec.SECP256R1())
            pn = priv.public_key().public_numbers(); pub = (pn.x, pn.y)
            digest = hashlib.sha256(b"m").digest()
            r, s = utils.decode_dss_signature(priv.sign(b"m", ec.ECDSA(hashes.SHA256())))
            sig = b32(r) + b32(s)
            good = p256.encode_public_key(pub)
            check("pk good", h.verify(pub, digest, sig, pkbytes=good), OK)
            bads = [b"\x04" + bytes(64), b"\x02" + good[1:], b"\x03" + good[1:], b"\x00" + good[1:],
                    b"\x04" + p256.P.to_bytes(32, "big") + good[33:], good[:33] + p256.P.to_bytes(32, "big"),
                    b"\x04" + b"\xff" * 64, good[:64] + bytes([good[64] ^ 1]), good[:5] + bytes([good[5] ^ 0x10]) + good[6:]]
            if pn.y + p256.P < 2**256:
                bads.append(good[:33] + b32(pn.y + p256.P))
            for i, bk in enumerate(bads):
                for prog in ("verify_tc", "verify_xdp"):
                    check(f"bad pk {i} {prog}", h.verify(pub, digest, sig, prog=prog, pkbytes=bk), -3)
            for ln in (64, 33, 0):
                d = struct.pack("<II", ln, 64) + digest + sig + good
                check(f"pk_len {ln}", o.run("verify_pk_xdp", d)[0] - 100, -3)

        # 2. constructed edge cases with known private keys
        Gpt = p256.G
        # d = 1 (Q = G), e = r: u1 == u2 -> every window adds the same point twice: doubling path
        for k in (2, 3, 12345, rng.randrange(1, N)):
            r = p256.scalar_mult(k, Gpt)[0] % N
            digest = b32(r)
            r2, s = sign_with(1, digest, k)
            sig = b32(r2) + b32(s)
            assert p256.verify_model(Gpt, digest, sig)
            check(f"doubling d=1 k={k}", h.verify(Gpt, digest, sig), OK)
            check("doubling ref", ref_verify(Gpt, digest, sig), OK)
        # d = n-1 (Q = -G), u1 - u2 = k: window 0 cancels to infinity, then continues
        negG = p256.point_neg(Gpt)
        for k in (128, 1 << 14, 3 << 7, 1, 64, 127, 129):
            for _ in range(3):
                digest = os.urandom(32)
                r, s = sign_with(N - 1, digest, k)
                sig = b32(r) + b32(s)
                check(f"intermediate infinity Q=-G k={k}", h.verify(negG, digest, sig), OK)
                check("ref", ref_verify(negG, digest, sig), OK)
        # final result at infinity: e = -r d (mod n) with arbitrary s -> u1 G + u2 Q = O -> invalid
        for d in (1, N - 1, 7, rng.randrange(1, N)):
            Q = p256.scalar_mult(d, Gpt)
            for _ in range(3):
                r = rng.randrange(1, N); s = rng.randrange(1, N)
                e = (-r * d) % N
                check(f"final infinity d={d}", h.verify(Q, b32(e), b32(r) + b32(s)), BAD)
        # Q = -G and e = r: every window cancels (acc returns to infinity 37 times) -> invalid
        r = rng.randrange(1, N)
        check("always infinity", h.verify(negG, b32(r), b32(r) + b32(rng.randrange(1, N))), BAD)
        # digest >= n (e reduced mod n)
        priv = ec.generate_private_key(ec.SECP256R1())
        d = priv.private_numbers().private_value
        pn = priv.public_key().public_numbers(); pub = (pn.x, pn.y)
        for digest in (b"\xff" * 32, b32(N), b32(N + 5), b32(0), b32(N - 1)):
            sig = priv.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
            r, s = utils.decode_dss_signature(sig)
            check(f"digest {digest.hex()[:8]}", h.verify(pub, digest, b32(r) + b32(s)), OK)
        # x(R) >= n: r = x - n case. Construct: find k with x(kG) >= n (probability ~2^-128: impossible
        # to hit by search), so instead test the r+n branch with a forged-equivalent: x(R) mod n == r
        # where the Jacobian compare needs (r+n). Use the model: choose r small so r + n < p, and
        # check that a signature with r' = r + n (out of range) is rejected.
        if r + N < 2**256:
            check("r+n out of range", h.verify(pub, digest, b32(r + N) + b32(s)), BAD)
        # small scalars: u1 or u2 tiny / zero digits
        for (u1, u2) in ((1, 1), (1, 2), (2, 1), (0, 5), (5, 0), (N - 1, 1), (1, N - 1), (2**252, 3), (64, 64), (65, 63)):
            # pick s, then r and e from u1, u2: u1 = e/s, u2 = r/s -> e = u1 s, r = u2 s
            s = rng.randrange(1, N)
            rr = u2 * s % N
            e = u1 * s % N
            if rr == 0:
                continue
            Rpt = p256.point_add(p256.scalar_mult(u1, Gpt), p256.scalar_mult(u2, pub))
            exp = OK if (Rpt is not None and Rpt[0] % N == rr) else BAD
            check(f"u1={u1} u2={u2}", h.verify(pub, b32(e), b32(rr) + b32(s)), exp)
            # now make it valid: r := x(R) mod n requires solving; instead check with r from R
            if Rpt is not None:
                r3 = Rpt[0] % N
                # choose s3 so that u2 = r3/s3 and u1 = e3/s3 for the same R: s3 = r3/u2, e3 = u1*s3
                if u2 % N:
                    s3 = r3 * pow(u2, -1, N) % N; e3 = u1 * s3 % N
                    sig3 = b32(r3) + b32(s3)
                    check(f"valid u1={u1} u2={u2}", h.verify(pub, b32(e3), sig3), ref_verify(pub, b32(e3), sig3))
                    check(f"valid u1={u1} u2={u2} is OK", ref_verify(pub, b32(e3), sig3), OK)
        # constructed (d, u1, u2): Q = dG, R = u1 G + u2 Q, r = x(R) mod n, s = r / u2, e = u1 s.
        # Hits acc == pt (doubling) and acc == -pt (infinity mid-way) in both the comb (key table)
        # and the windowed table-free path.
        for (dq, u1, u2, why) in ((1, 5, 5, "doubling: 5G + 5G"), (2, 2, 1, "doubling: Q=2G, 2G + 2G"),
                                  (N - 1, 133, 5, "-5G + 5G = O mid-way, then +128G"),
                                  (N - 1, 5 + (7 << 7), 5, "O after window 0"),
                                  (1, 1, N - 2, "u1 + u2 = n - 1"), (N - 1, 2, 1, "2G - G"),
                                  (3, 3 << 140, 1 << 140, "doubling at window 20")):
            Q = p256.scalar_mult(dq, Gpt)
            Rpt = p256.point_add(p256.scalar_mult(u1, Gpt), p256.scalar_mult(u2, Q))
            r = Rpt[0] % N; s = r * pow(u2, -1, N) % N; e = u1 * s % N
            sig = b32(r) + b32(s)
            check(f"ref {why}", ref_verify(Q, b32(e), sig), OK)
            for prog in ("verify_tc", "verify_xdp"):
                check(f"{why} {prog}", h.verify(Q, b32(e), sig, prog), OK)
                check(f"{why} {prog} tampered", h.verify(Q, b32(e ^ 1), sig, prog), BAD)
        # final infinity with u1 = 2, u2 = 1, Q = -2G (any s)
        Q = p256.scalar_mult(N - 2, Gpt)
        s = rng.randrange(1, N); r = s; e = 2 * s % N
        check("final O: 2G + (-2G)", h.verify(Q, b32(e), b32(r) + b32(s)), BAD)
    print("FAILURES:", fails)
    return 1 if fails else 0

if __name__ == "__main__":
    sys.exit(main())
