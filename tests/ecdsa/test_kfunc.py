"""kfunc dispatch on a stock kernel: p256_kfunc_setup loads and reports -EOPNOTSUPP (-95) when the
out-of-tree signature kfuncs are absent (or 0 where they exist), -EINVAL for a key id out of range;
verification then runs on the pure-BPF path."""
import os, sys, struct, hashlib, subprocess
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpfh
from cryptbpf.crypto import p256
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives import hashes, serialization

def kernel_has(sym):
    try:
        with open("/proc/kallsyms") as f:
            return any(line.rstrip().endswith(" " + sym) for line in f)
    except OSError:
        return False

def main():
    fails = 0
    priv = ec.generate_private_key(ec.SECP256R1())
    raw = priv.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    has = kernel_has("bpf_sig_verify") or kernel_has("bpf_ecdsa_verify")
    with bpfh.Obj(bpfh.OBJ) as o:
        _, _, out = o.run("p256_kfunc_setup", ctx=p256.kfunc_setup_args(3, raw))
        err = p256.kfunc_setup_err(out)
        exp = 0 if has else -95
        print("kfunc setup err:", err, "(kernel has signature kfuncs:", has, ")")
        fails += err != exp
        _, _, out = o.run("p256_kfunc_setup", ctx=p256.kfunc_setup_args(1000, raw))
        fails += p256.kfunc_setup_err(out) != -22
        k, v = p256.key_map_entry(3, raw)
        o.update("p256_keys", k, v)
        msg = b"hello"
        r, s = utils.decode_dss_signature(priv.sign(msg, ec.ECDSA(hashes.SHA256())))
        data = struct.pack("<II", 3, 64) + hashlib.sha256(msg).digest() + r.to_bytes(32, "big") + s.to_bytes(32, "big")
        rv = o.run("verify_xdp", data)[0] - 100
        fails += rv != p256.VERIFY_OK
        bad = bytearray(data); bad[-1] ^= 1
        fails += o.run("verify_xdp", bytes(bad))[0] - 100 != p256.VERIFY_BAD
    print("kfunc: FAILURES:", fails)
    return 1 if fails else 0

if __name__ == "__main__":
    sys.exit(main())
