/* SPDX-License-Identifier: GPL-2.0 */
/* ECDSA P-256 verification: layouts shared between BPF and Python.
 *
 * Filled by src/cryptbpf/p256.py (key_table()); read by ecdsa_p256.bpf.h.
 * Field elements are eight 32-bit limbs, least significant first, i.e. the
 * 32-byte little-endian encoding of a canonical value (< p).
 */
#pragma once

#define P256_WIN_BITS      7
#define P256_WIN_POINTS    64     /* 1 << (P256_WIN_BITS - 1) */
#define P256_WINDOWS       37     /* ceil(257 / 7) */
#define P256_TABLE_POINTS  2368   /* P256_WINDOWS * P256_WIN_POINTS */

#define P256_DIGEST_LEN    32
#define P256_SIG_LEN       64     /* IEEE P1363: r || s, big-endian */
#define P256_PUBKEY_LEN    65     /* 0x04 || X || Y */

/* ecdsa_p256_verify*() results */
#define P256_VERIFY_OK         1
#define P256_VERIFY_BAD        0      /* well-formed input, signature invalid */
#define P256_VERIFY_ENOKEY     -2   /* no table registered under the key id */
#define P256_VERIFY_EBADKEY    -3   /* public key invalid (verify_pubkey) */
#define P256_VERIFY_EINTERNAL  -5   /* scratch map lookup/loop failure */

/* 32 bytes */
struct p256_fe {
	__u32 v[8];
};

/* 64 bytes: affine point, never the point at infinity */
struct p256_affine {
	struct p256_fe x;
	struct p256_fe y;
};

/* Value of the p256_keys map (key: __u32 key id). 151552 bytes.
 * pt[i * P256_WIN_POINTS + j] = (j + 1) * 2^(7 i) * Q  (affine).
 */
struct p256_key_table {
	struct p256_affine pt[P256_TABLE_POINTS];
};

/* ctx_in of the SYSCALL program p256_kfunc_setup (kfunc kernels only). */
struct p256_kfunc_setup_args {
	__u32 key_id;
	__s32 err;               /* out: 0, or -errno from ctx creation */
	__u8  pubkey[P256_PUBKEY_LEN];
	__u8  pad[3];
};
