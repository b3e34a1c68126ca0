"""NIST P-256 helpers for the pure-BPF ECDSA verifier (userspace side).

The BPF verifier (bpf/include/ecdsa_p256.bpf.h) computes u1*G + u2*Q as a
sum of precomputed affine points, one per 7-bit signed window of each scalar
("fixed-base comb" for both G and the public key Q). This module:

* parses and validates uncompressed public keys (0x04 || X || Y),
* builds the per-key table that an admin registers in the BPF map
  ``p256_keys`` (layout: ``struct p256_key_table`` in bpf/include/ecdsa_p256.h),
* generates bpf/include/p256_gen_table.bpf.h (the same table for the generator),
* holds a pure-Python model of the verifier, used by the tests.

Table layout (shared with BPF): ``P256_WINDOWS`` (37) windows of
``P256_WIN_POINTS`` (64) affine points; entry ``[i][j]`` is
``(j + 1) * 2**(7*i) * Q``. A point is ``x`` then ``y``, each eight 32-bit
little-endian limbs, i.e. the 32-byte little-endian encoding of the
coordinate (canonical, < p). Total 37 * 64 * 64 = 151552 bytes.

No imports from the rest of cryptbpf: stdlib only.
"""

from __future__ import annotations

import struct

# ---- curve constants (FIPS 186-4, D.1.2.3) ----
P = 2**256 - 2**224 + 2**192 + 2**96 - 1
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
A = P - 3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
G = (GX, GY)

WIN_BITS = 7
WIN_POINTS = 1 << (WIN_BITS - 1)        # 64: signed digits in [-63, 64]
WINDOWS = (256 + 1 + WIN_BITS - 1) // WIN_BITS  # 37 (one spare bit for the carry)
POINT_SIZE = 64
TABLE_SIZE = WINDOWS * WIN_POINTS * POINT_SIZE  # 151552

KEY_LEN = 65
SIG_LEN = 64
DIGEST_LEN = 32
KFUNC_SETUP_ARGS_SIZE = 76  # struct p256_kfunc_setup_args

# results of ecdsa_p256_verify*() (bpf/include/ecdsa_p256.h); only VERIFY_OK means valid
VERIFY_OK = 1
VERIFY_BAD = 0
VERIFY_ENOKEY = -2
VERIFY_EBADKEY = -3
VERIFY_EINTERNAL = -5

Point = tuple[int, int] | None  # None is the point at infinity


class InvalidKey(ValueError):
    """The bytes are not a valid uncompressed P-256 public key."""


# ---- affine arithmetic (variable time; public data only) ----

def on_curve(pt: Point) -> bool:
    if pt is None:
        return False
    x, y = pt
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def point_neg(pt: Point) -> Point:
    if pt is None:
        return None
    return (pt[0], (-pt[1]) % P)


def point_add(p1: Point, p2: Point) -> Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    x1, y1 = p1
    x2, y2 = p2
    if x1 == x2:
        if (y1 + y2) % P == 0:
            return None
        lam = (3 * x1 * x1 + A) * pow(2 * y1, -1, P) % P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (lam * lam - x1 - x2) % P
    return (x3, (lam * (x1 - x3) - y1) % P)


def _jac_double(X, Y, Z):
    if Z == 0 or Y == 0:
        return (1, 1, 0)
    s = 4 * X * Y * Y % P
    m = (3 * X * X + A * pow(Z, 4, P)) % P
    X3 = (m * m - 2 * s) % P
    Y3 = (m * (s - X3) - 8 * pow(Y, 4, P)) % P
    return (X3, Y3, 2 * Y * Z % P)


def _jac_add_affine(X1, Y1, Z1, x2, y2):
    if Z1 == 0:
        return (x2, y2, 1)
    z2 = Z1 * Z1 % P
    h = (x2 * z2 - X1) % P
    r = (y2 * z2 * Z1 - Y1) % P
    if h == 0:
        return _jac_double(X1, Y1, Z1) if r == 0 else (1, 1, 0)
    hh = h * h % P
    hhh = h * hh % P
    v = X1 * hh % P
    X3 = (r * r - hhh - 2 * v) % P
    Y3 = (r * (v - X3) - Y1 * hhh) % P
    return (X3, Y3, Z1 * h % P)


def _to_affine(X, Y, Z) -> Point:
    if Z == 0:
        return None
    zi = pow(Z, -1, P)
    return (X * zi * zi % P, Y * zi * zi * zi % P)


def scalar_mult(k: int, pt: Point) -> Point:
    k %= N
    acc = (1, 1, 0)
    if pt is None or k == 0:
        return None
    for bit in bin(k)[2:]:
        acc = _jac_double(*acc)
        if bit == "1":
            acc = _jac_add_affine(*acc, *pt)
    return _to_affine(*acc)


# ---- public keys ----

def parse_public_key(data: bytes) -> tuple[int, int]:
    """Parse and validate 0x04 || X || Y; raise InvalidKey if it is not a
    point of P-256 (wrong length/prefix, coordinate >= p, off curve).
    The point at infinity has no uncompressed encoding and is rejected;
    P-256 has cofactor 1, so an on-curve point has order n."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidKey("public key must be bytes")
    data = bytes(data)
    if len(data) != KEY_LEN:
        raise InvalidKey(f"public key must be {KEY_LEN} bytes, got {len(data)}")
    if data[0] != 0x04:
        raise InvalidKey("public key must be uncompressed (prefix 0x04)")
    x = int.from_bytes(data[1:33], "big")
    y = int.from_bytes(data[33:65], "big")
    if x >= P or y >= P:
        raise InvalidKey("public key coordinate >= p")
    if x == 0 and y == 0:
        raise InvalidKey("public key is the point at infinity encoding")
    if not on_curve((x, y)):
        raise InvalidKey("public key is not on the P-256 curve")
    return (x, y)


def encode_public_key(pt: tuple[int, int]) -> bytes:
    return b"\x04" + pt[0].to_bytes(32, "big") + pt[1].to_bytes(32, "big")


# ---- tables ----

def _fe_le(v: int) -> bytes:
    return v.to_bytes(32, "little")


def _batch_to_affine(jacs):
    """Montgomery's trick: one inversion for many Jacobian points (Z != 0)."""
    prefix = []
    acc = 1
    for (_, _, z) in jacs:
        prefix.append(acc)
        acc = acc * z % P
    inv = pow(acc, -1, P)
    out = [None] * len(jacs)
    for i in range(len(jacs) - 1, -1, -1):
        X, Y, Z = jacs[i]
        zi = inv * prefix[i] % P
        inv = inv * Z % P
        zi2 = zi * zi % P
        out[i] = (X * zi2 % P, Y * zi2 * zi % P)
    return out


def table_points(pt: tuple[int, int]) -> list[tuple[int, int]]:
    """All WINDOWS*WIN_POINTS affine points, entry i*64+j = (j+1)*2^(7i)*pt."""
    if not on_curve(pt):
        raise InvalidKey("point is not on the curve")
    jacs = []
    base = (pt[0], pt[1], 1)
    for _ in range(WINDOWS):
        bx, by = _to_affine(*base)
        cur = (bx, by, 1)
        row = [cur]
        for _ in range(WIN_POINTS - 1):
            cur = _jac_add_affine(*cur, bx, by)
            row.append(cur)
        jacs.extend(row)
        # next base = 2^7 * base
        b = base
        for _ in range(WIN_BITS):
            b = _jac_double(*b)
        base = b
    for (_, _, z) in jacs:
        if z == 0:  # impossible for a prime-order point, kept as a guard
            raise InvalidKey("table point at infinity")
    return _batch_to_affine(jacs)


def table_bytes(pt: tuple[int, int]) -> bytes:
    """The struct p256_key_table value for point pt (TABLE_SIZE bytes)."""
    out = bytearray()
    for (x, y) in table_points(pt):
        out += _fe_le(x) + _fe_le(y)
    assert len(out) == TABLE_SIZE
    return bytes(out)


def key_table(public_key: bytes) -> bytes:
    """Validate a 65-byte public key and return its map value bytes."""
    return table_bytes(parse_public_key(public_key))


def key_map_entry(key_id: int, public_key: bytes) -> tuple[bytes, bytes]:
    """(key, value) bytes for the BPF hash map ``p256_keys``: the key id as
    a little-endian u32 and the validated key's table (TABLE_SIZE bytes)."""
    if not 0 <= key_id < 2**32:
        raise ValueError("key id must fit in a u32")
    return struct.pack("<I", key_id), key_table(public_key)


def kfunc_setup_args(key_id: int, public_key: bytes) -> bytes:
    """ctx_in for the SYSCALL program p256_kfunc_setup (struct
    p256_kfunc_setup_args); after the run, read ``err`` back with
    :func:`kfunc_setup_err`."""
    parse_public_key(public_key)
    out = struct.pack("<Ii", key_id, 0) + bytes(public_key) + bytes(3)
    assert len(out) == KFUNC_SETUP_ARGS_SIZE
    return out


def kfunc_setup_err(ctx_out: bytes) -> int:
    """The err field of struct p256_kfunc_setup_args (0: kernel context
    registered; -95: kernel lacks the signature kfuncs, use the table)."""
    return struct.unpack_from("<i", ctx_out, 4)[0]


def der_to_p1363(der: bytes) -> bytes:
    """DER ECDSA-Sig-Value -> r || s (64 bytes); for callers whose
    signatures come from X.509/TLS-style encoders."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    r, s = decode_dss_signature(der)
    if not (0 <= r < 2**256 and 0 <= s < 2**256):
        raise ValueError("r or s does not fit in 32 bytes")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def gen_table_header() -> str:
    """C source of bpf/include/p256_gen_table.bpf.h (the generator's table)."""
    words = struct.unpack(f"<{TABLE_SIZE // 4}I", table_bytes(G))
    lines = [
        "/* SPDX-License-Identifier: GPL-2.0 */",
        "/* GENERATED FILE - do not edit.",
        " * Regenerate with:",
        " *   PYTHONPATH=src python3 -m cryptbpf.crypto.p256 --gen-header > bpf/include/p256_gen_table.bpf.h",
        " * Entry [i*64 + j] = (j+1) * 2^(7*i) * G for i < 37, j < 64, affine,",
        " * x then y as eight little-endian 32-bit limbs (struct p256_affine).",
        " */",
        "#pragma once",
        "",
        '#include "ecdsa_p256.h"',
        "",
        "static const struct p256_affine p256_gen_table[P256_TABLE_POINTS] = {",
    ]
    for i in range(0, len(words), 16):
        w = words[i:i + 16]
        xs = ",".join(f"0x{v:08x}" for v in w[:8])
        ys = ",".join(f"0x{v:08x}" for v in w[8:])
        lines.append(f"\t{{{{{{{xs}}}}},{{{{{ys}}}}}}},")
    lines.append("};")
    return "\n".join(lines) + "\n"


# ---- pure-Python model of the BPF verifier (for tests) ----

def recode(u: int) -> list[int]:
    """Signed 7-bit digits, LSB first, in [-63, 64]; sum d_i 2^(7i) == u."""
    digits = []
    carry = 0
    for i in range(WINDOWS):
        v = ((u >> (WIN_BITS * i)) & ((1 << WIN_BITS) - 1)) + carry
        if v > WIN_POINTS:
            digits.append(v - (1 << WIN_BITS))
            carry = 1
        else:
            digits.append(v)
            carry = 0
    assert carry == 0
    return digits


def verify_model(pub: tuple[int, int], digest: bytes, sig: bytes) -> bool:
    """Same algorithm as the BPF code, on Python ints."""
    if len(sig) != SIG_LEN or len(digest) != DIGEST_LEN:
        return False
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    if not (1 <= r < N and 1 <= s < N):
        return False
    e = int.from_bytes(digest, "big") % N
    w = pow(s, -1, N)
    u1, u2 = e * w % N, r * w % N
    acc = (1, 1, 0)
    gt = [G]
    for _ in range(WINDOWS - 1):
        gt.append(scalar_mult(1 << WIN_BITS, gt[-1]))
    qt = [pub]
    for _ in range(WINDOWS - 1):
        qt.append(scalar_mult(1 << WIN_BITS, qt[-1]))
    for i, (d1, d2) in enumerate(zip(recode(u1), recode(u2))):
        for d, base in ((d1, gt[i]), (d2, qt[i])):
            if d:
                pt = scalar_mult(abs(d), base)
                if d < 0:
                    pt = point_neg(pt)
                acc = _jac_add_affine(*acc, *pt)
    X, _, Z = acc
    if Z == 0:
        return False
    z2 = Z * Z % P
    if r * z2 % P == X:
        return True
    return r + N < P and (r + N) * z2 % P == X


def main(argv=None) -> int:
    import sys
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--gen-header"]:
        sys.stdout.write(gen_table_header())
        return 0
    sys.stderr.write("usage: python3 -m cryptbpf.crypto.p256 --gen-header\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
