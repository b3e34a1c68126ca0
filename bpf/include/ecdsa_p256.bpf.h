/* SPDX-License-Identifier: GPL-2.0 */
/* ECDSA P-256 signature verification for TC/XDP programs (kernel side).
 *
 *   int ecdsa_p256_verify(__u32 key_id, const __u8 *digest,
 *                         const __u8 *sig, __u32 sig_len);
 *   int ecdsa_p256_verify_table(const struct p256_key_table *kt,
 *                               const __u8 *digest, const __u8 *sig,
 *                               __u32 sig_len);
 *   int ecdsa_p256_verify_pubkey(const __u8 *pubkey, __u32 pubkey_len,
 *                                const __u8 *digest, const __u8 *sig,
 *                                __u32 sig_len);
 *
 * digest: 32-byte SHA-256 of the message (the caller hashes; for other
 * hashes pass the leftmost 32 bytes); sig: IEEE P1363 r || s (64 bytes,
 * big-endian); pubkey: 0x04 || X || Y (65 bytes). All may point to packet
 * memory the caller has bounds-checked for their full length, to map values
 * or to the stack (any alignment).
 *
 * Result: P256_VERIFY_OK (1) means valid; anything else is a rejection:
 * P256_VERIFY_BAD (0) for a wrong signature (including a wrong length or
 * r, s outside [1, n-1]), or a negative P256_VERIFY_E* code (ecdsa_p256.h):
 * ENOKEY (no table under key_id), EBADKEY (verify_pubkey: key not on the
 * curve / bad encoding), EINTERNAL. Test "== P256_VERIFY_OK", never "!= 0".
 *
 * Cost on the project machine (2 vCPU EPYC, JIT, BPF_PROG_TEST_RUN): ~40 us
 * with a registered key table (OpenSSL via pyca/cryptography: ~43 us),
 * ~155 us table-free.
 *
 * Where it can be called: any non-sleepable program type that may use
 * bpf_loop() (5.17+): TC (SEC("tc")), XDP, ... also from inside the caller's
 * own bpf_loop() callback. It is not reentrant on one CPU (per-CPU scratch
 * map p256_scratch, ~2.8 KB per CPU): do not call it from programs that can
 * preempt each other on a CPU (e.g. a tracing program that may fire inside a
 * TC program that also verifies). Stack: the verifier counts the caller's
 * frame plus the deepest callee chain against 512 bytes; measured, a caller
 * may keep ~240 bytes (ecdsa_p256_verify) / ~190 bytes
 * (ecdsa_p256_verify_pubkey) of its own stack live across the call. Linux
 * 6.1 counts stricter (a bpf_loop callback's frame on top of the frame that
 * names it, every frame rounded up to 32 bytes): there ~190 / ~150 bytes
 * (a 169-byte buffer refused verify_pk_tc: "combined stack size of 4 calls
 * is 544"). Keep bigger buffers in map values.
 * Verifier cost: ~24-26k processed instructions per call site (limit 1M).
 *
 * Keys (fast path): ecdsa_p256_verify() looks key_id up in the hash map
 * p256_keys, whose value (struct p256_key_table, 151552 bytes) is computed
 * in userspace by cryptbpf.p256.key_map_entry(key_id, pubkey) and written by
 * the admin path (plain BPF_MAP_UPDATE_ELEM). The BPF side trusts that table:
 * the map is writable only through its fd (root / the loader); p256.py
 * validates the key (length, prefix, coordinates < p, on curve) before
 * building it. The generator's table is compiled in (p256_gen_table.bpf.h,
 * .rodata, same format). Define P256_MAX_KEYS before including to size
 * p256_keys (default 16; memory is preallocated: 148 KB per entry).
 *
 * Table-free path: ecdsa_p256_verify_pubkey() takes the key itself (e.g.
 * from a certificate in the packet), validates it in BPF (prefix, X, Y < p,
 * Y^2 = X^3 - 3X + b) and computes u2*Q with signed 5-bit windows over a
 * 16-entry Jacobian table built per call; u1*G still uses the comb.
 *
 * Algorithm (fast path): u1 = e/s, u2 = r/s (mod n; s^-1 by a binary
 * extended GCD, Montgomery products mod n), then u1*G + u2*Q as a sum of
 * 37 + 37 precomputed affine points (signed 7-bit windows, a fixed-base comb
 * for both G and Q: no doublings). The Jacobian accumulator handles the
 * point at infinity, P + P (falls back to doubling) and P + (-P) at every
 * step; the final check x(R) mod n == r is done projectively (r Z^2 == X,
 * or (r + n) Z^2 == X when r + n < p). Field: 8 x 32-bit limbs, 64-bit
 * column products, Solinas reduction for p. Not constant time: it only
 * handles public data.
 *
 * kfunc dispatch: on kernels with the out-of-tree signature kfuncs
 * (bpf_sig_verify on a "sig" bpf_crypto_ctx, v8 of the series; v1's
 * bpf_ecdsa_verify with -DP256_KFUNC_V1) and a context registered for key_id
 * by the SYSCALL program p256_kfunc_setup, ecdsa_p256_verify() lets the kernel
 * verify; otherwise the pure-BPF path runs. Define P256_NO_KFUNC to compile
 * the pure path only (no syscall program, no kptr map; needed before 6.10,
 * where struct bpf_crypto_ctx does not exist).
 */
#pragma once

#include "cryptbpf.bpf.h"
#include "kfuncs.bpf.h"
#include "ecdsa_p256.h"
#include "p256_field.bpf.h"
#include "p256_scalar.bpf.h"
#include "p256_point.bpf.h"
#include "p256_gen_table.bpf.h"

#ifndef P256_MAX_KEYS
#define P256_MAX_KEYS 16
#endif

/* Upper bound on p256_sc_inv_step() calls (proved bound ~515, seen <= ~210) */
#define P256_INV_MAX_STEPS 600

/* Table-free path (ecdsa_p256_verify_pubkey): u2*Q by signed 5-bit windows */
#define P256_QW_BITS    5
#define P256_QW_WINDOWS 52	/* ceil(257 / 5) */
#define P256_QW_POINTS  16	/* multiples 1..16 of Q, Jacobian */

struct p256_jac {
	struct p256_fe x, y, z;
};

struct p256_verify_state {
	struct p256_pt_state pt;
	struct p256_inv inv;
	struct p256_fe r, s, e, w, u1, u2, t0, t1;
	__u32 carry1, carry2;
	__u32 inv_done, err;
	/* table-free path */
	struct p256_fe qx, qy;
	struct p256_jac qtab[P256_QW_POINTS];
	__s8 dq[64];
	/* dynptr sources for the kfunc paths */
	__u8 kf_sig[P256_SIG_LEN];
	__u8 kf_digest[P256_DIGEST_LEN];
	__u8 kf_key[P256_PUBKEY_LEN + 3];
	char kf_algo[32];
};

CRYPTBPF_PERCPU_SCRATCH(p256_scratch, struct p256_verify_state);

/* key id -> table; with -DP256_KEYS_PIN_BY_NAME libbpf pins it under
 * /sys/fs/bpf/p256_keys (or the object's pin_root_path) so that several
 * objects share the registered keys. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, P256_MAX_KEYS);
	__type(key, __u32);
	__type(value, struct p256_key_table);
#ifdef P256_KEYS_PIN_BY_NAME
	__uint(pinning, LIBBPF_PIN_BY_NAME);
#endif
} p256_keys SEC(".maps");

struct p256_loop_ctx {
	struct p256_verify_state *st;
	const struct p256_key_table *kt;	/* NULL: add the G part only */
};

/* big-endian 32 bytes -> limbs (byte loads: any alignment, any memory) */
static __always_inline void p256_load_be(struct p256_fe *r, const __u8 *b)
{
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++) {
		const __u8 *q = b + 28 - 4 * i;
		r->v[i] = ((__u32)q[0] << 24) | ((__u32)q[1] << 16) |
			  ((__u32)q[2] << 8) | (__u32)q[3];
	}
}

static long p256_inv_cb(__u64 idx, void *ctx)
{
	struct p256_loop_ctx *c = ctx;
	struct p256_verify_state *st = c->st;

	if (p256_sc_inv_step(&st->inv)) {
		st->inv_done = 1;
		return 1;
	}
	return 0;
}

/* Hide x from the optimizer so that a following bounds check or mask is
 * kept for the verifier (clang otherwise proves it redundant and drops it). */
static __always_inline __u32 p256_opaque(__u32 x)
{
	asm volatile("" : "+r"(x));
	return x;
}

/* signed digit of u at bit pos, width bits (<= 7), LSB first; with
 * half = 2^(width-1) the digit is in [-(half-1), half] */
static __always_inline int p256_digit_w(const struct p256_fe *u, __u32 pos,
					__u32 width, __u32 *carry)
{
	__u32 limb = p256_opaque(pos >> 5) & 7, off = pos & 31;
	__u64 w = u->v[limb];

	if (limb < 7)
		w |= (__u64)u->v[(limb + 1) & 7] << 32;
	__u32 v = (__u32)((w >> off) & ((1U << width) - 1)) + *carry;
	if (v > (1U << (width - 1))) {
		*carry = 1;
		return (int)v - (1 << width);
	}
	*carry = 0;
	return (int)v;
}

/* signed 7-bit digit i of u (LSB first), in [-63, 64] */
static __always_inline int p256_digit(const struct p256_fe *u, __u32 i,
				      __u32 *carry)
{
	return p256_digit_w(u, i * P256_WIN_BITS, P256_WIN_BITS, carry);
}

/* acc += d * 2^(7i) * P using the table of P; 0 on success */
static __always_inline int p256_add_digit(struct p256_verify_state *st,
					  const struct p256_affine *tbl,
					  __u32 i, int d)
{
	if (!d)
		return 0;
	__u32 a = d < 0 ? (__u32)-d : (__u32)d;
	__u32 idx = p256_opaque(i * P256_WIN_POINTS + a - 1);
	if (idx >= P256_TABLE_POINTS)
		return -1;
	const struct p256_affine *pt = &tbl[idx];

	p256_fe_copy(&st->pt.x2, &pt->x);
	if (d < 0) {
		p256_fe_copy(&st->t0, &pt->y);
		p256_fe_set_u32(&st->t1, 0);
		p256_fe_sub(&st->pt.y2, &st->t1, &st->t0);
	} else {
		p256_fe_copy(&st->pt.y2, &pt->y);
	}
	p256_pt_madd_full(&st->pt);
	return 0;
}

/* window i of the comb: acc += u1_i G (+ u2_i Q when a key table is given) */
static long p256_win_cb(__u64 idx, void *ctx)
{
	struct p256_loop_ctx *c = ctx;
	struct p256_verify_state *st = c->st;
	const struct p256_key_table *kt = c->kt;
	__u32 i = (__u32)idx;
	int d;

	if (i >= P256_WINDOWS)
		return 1;
	d = p256_digit(&st->u1, i, &st->carry1);
	if (p256_add_digit(st, p256_gen_table, i, d))
		goto fail;
	if (kt) {
		d = p256_digit(&st->u2, i, &st->carry2);
		if (p256_add_digit(st, kt->pt, i, d))
			goto fail;
	}
	return 0;
fail:
	st->err = 1;
	return 1;
}

/* Parse r, s, digest; range checks; u1 = e/s, u2 = r/s mod n.
 * Returns 1 to go on, else the final result. */
static __always_inline int p256_prepare(struct p256_verify_state *st,
					struct p256_loop_ctx *lc,
					const __u8 *digest, const __u8 *sig)
{
	p256_load_be(&st->r, sig);
	p256_load_be(&st->s, sig + 32);
	p256_load_be(&st->e, digest);
	/* 1 <= r, s <= n - 1 */
	if (p256_fe_is_zero(&st->r) || p256_fe_is_zero(&st->s) ||
	    p256_sc_ge_n(&st->r) || p256_sc_ge_n(&st->s))
		return P256_VERIFY_BAD;
	if (p256_sc_ge_n(&st->e))	/* e < 2^256 < 2n */
		p256_sc_sub_n(&st->e);

	/* w = s^-1 mod n */
	p256_inv_init(&st->inv, &st->s);
	st->inv_done = 0;
	bpf_loop(P256_INV_MAX_STEPS, p256_inv_cb, lc, 0);
	if (!st->inv_done)
		return P256_VERIFY_EINTERNAL;

	/* u1 = e w, u2 = r w: mont(e, w R) = e w */
	p256_sc_set_r2(&st->t0);
	p256_sc_mont(&st->w, &st->inv.x1, &st->t0, &st->pt.wide);
	p256_sc_mont(&st->u1, &st->e, &st->w, &st->pt.wide);
	p256_sc_mont(&st->u2, &st->r, &st->w, &st->pt.wide);
	st->carry1 = 0;
	st->carry2 = 0;
	st->err = 0;
	return 1;
}

/* R = (X, Y, Z) in st->pt: x(R) mod n == r ?
 *   X == r Z^2, or (r + n < p and X == (r+n) Z^2) */
static __always_inline int p256_final_check(struct p256_verify_state *st)
{
	if (st->err)
		return P256_VERIFY_EINTERNAL;
	if (st->pt.inf)
		return P256_VERIFY_BAD;
	p256_fe_sqr(&st->t0, &st->pt.z, &st->pt.wide);
	p256_fe_mul(&st->t1, &st->r, &st->t0, &st->pt.wide);
	if (p256_fe_eq(&st->t1, &st->pt.x))
		return P256_VERIFY_OK;
	if (st->r.v[7] | st->r.v[6] | st->r.v[5] | st->r.v[4])
		return P256_VERIFY_BAD;		/* r >= 2^128 > p - n */
	/* r < 2^128, so r + n < 2^256; it is a field element iff < p */
	p256_sc_set_n(&st->t1);
	p256_fe_add(&st->t1, &st->t1, &st->r);	/* (r + n) mod p */
	if (!p256_ge(&st->t1, &st->r))
		return P256_VERIFY_BAD;		/* wrapped: r + n >= p */
	p256_fe_mul(&st->t1, &st->t1, &st->t0, &st->pt.wide);
	if (p256_fe_eq(&st->t1, &st->pt.x))
		return P256_VERIFY_OK;
	return P256_VERIFY_BAD;
}

/* Pure-BPF verification against a precomputed key table. */
static __always_inline int
ecdsa_p256_verify_table(const struct p256_key_table *kt, const __u8 *digest,
			const __u8 *sig, __u32 sig_len)
{
	struct p256_verify_state *st;
	struct p256_loop_ctx lc;
	int ret;

	if (sig_len != P256_SIG_LEN)
		return P256_VERIFY_BAD;
	if (!kt)
		return P256_VERIFY_ENOKEY;
	st = cryptbpf_scratch(&p256_scratch);
	if (!st)
		return P256_VERIFY_EINTERNAL;
	lc.st = st;
	lc.kt = kt;
	ret = p256_prepare(st, &lc, digest, sig);
	if (ret != 1)
		return ret;
	/* R = u1 G + u2 Q */
	st->pt.inf = 1;
	bpf_loop(P256_WINDOWS, p256_win_cb, &lc, 0);
	return p256_final_check(st);
}

/* ---- table-free path: the public key comes with the packet ---- */

static __always_inline int p256_fe_ge_p(const struct p256_fe *a)
{
	__u64 t[8];
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++)
		t[i] = a->v[i];
	return p256_ge_p(t);
}

/* Parse 0x04 || X || Y into st->qx, qy and check X, Y < p and
 * Y^2 == X^3 - 3X + b. P-256 has cofactor 1, so the point then has order n
 * (and cannot be the point at infinity, which has no such encoding). */
static __always_inline int p256_load_pubkey(struct p256_verify_state *st,
					    const __u8 *pk, __u32 len)
{
	struct p256_fe *t2 = &st->pt.t[0];

	if (len != P256_PUBKEY_LEN || pk[0] != 0x04)
		return -1;
	p256_load_be(&st->qx, pk + 1);
	p256_load_be(&st->qy, pk + 33);
	if (p256_fe_ge_p(&st->qx) || p256_fe_ge_p(&st->qy))
		return -1;
	p256_fe_sqr(&st->t0, &st->qy, &st->pt.wide);			/* y^2 */
	p256_fe_sqr(&st->t1, &st->qx, &st->pt.wide);
	p256_fe_mul(&st->t1, &st->t1, &st->qx, &st->pt.wide);		/* x^3 */
	p256_fe_add(t2, &st->qx, &st->qx);
	p256_fe_add(t2, t2, &st->qx);			/* 3x */
	p256_fe_sub(&st->t1, &st->t1, t2);
	t2->v[0] = 0x27d2604b;				/* b */
	t2->v[1] = 0x3bce3c3e;
	t2->v[2] = 0xcc53b0f6;
	t2->v[3] = 0x651d06b0;
	t2->v[4] = 0x769886bc;
	t2->v[5] = 0xb3ebbd55;
	t2->v[6] = 0xaa3a93e7;
	t2->v[7] = 0x5ac635d8;
	p256_fe_add(&st->t1, &st->t1, t2);
	return p256_fe_eq(&st->t0, &st->t1) ? 0 : -1;
}

static __always_inline void p256_jac_store(struct p256_jac *d,
					   const struct p256_pt_state *s)
{
	p256_fe_copy(&d->x, &s->x);
	p256_fe_copy(&d->y, &s->y);
	p256_fe_copy(&d->z, &s->z);
}

/* qtab[i] = (i + 1) Q for i = 1..15, from acc = i Q: acc += Q */
static long p256_qtab_cb(__u64 idx, void *ctx)
{
	struct p256_loop_ctx *c = ctx;
	struct p256_verify_state *st = c->st;
	__u32 i = (__u32)idx + 1;

	if (i >= P256_QW_POINTS)
		return 1;
	p256_fe_copy(&st->pt.x2, &st->qx);
	p256_fe_copy(&st->pt.y2, &st->qy);
	p256_pt_madd_full(&st->pt);
	if (st->pt.inf) {	/* impossible for a point of order n */
		st->err = 1;
		return 1;
	}
	p256_jac_store(&st->qtab[p256_opaque(i) & (P256_QW_POINTS - 1)], &st->pt);
	return 0;
}

/* dq[i] = signed 5-bit digit i of u2 */
static long p256_recode_cb(__u64 idx, void *ctx)
{
	struct p256_loop_ctx *c = ctx;
	struct p256_verify_state *st = c->st;
	__u32 i = (__u32)idx;

	if (i >= P256_QW_WINDOWS)
		return 1;
	st->dq[p256_opaque(i) & 63] =
		(__s8)p256_digit_w(&st->u2, i * P256_QW_BITS, P256_QW_BITS,
				   &st->carry2);
	return 0;
}

/* window i from the top: acc = 32 acc + dq[i] Q */
static long p256_qmul_cb(__u64 idx, void *ctx)
{
	struct p256_loop_ctx *c = ctx;
	struct p256_verify_state *st = c->st;
	__u32 i = P256_QW_WINDOWS - 1 - (__u32)idx;
	int d;

	if (idx >= P256_QW_WINDOWS)
		return 1;
#pragma clang loop unroll(full)
	for (int k = 0; k < P256_QW_BITS; k++)
		p256_pt_dbl(&st->pt);		/* no-op at infinity */
	d = st->dq[p256_opaque(i) & 63];
	if (!d)
		return 0;
	__u32 a = (d < 0 ? (__u32)-d : (__u32)d) - 1;
	const struct p256_jac *q = &st->qtab[p256_opaque(a) & (P256_QW_POINTS - 1)];

	p256_fe_copy(&st->pt.x2, &q->x);
	p256_fe_copy(&st->pt.z2, &q->z);
	if (d < 0) {
		p256_fe_set_u32(&st->t1, 0);
		p256_fe_sub(&st->pt.y2, &st->t1, &q->y);
	} else {
		p256_fe_copy(&st->pt.y2, &q->y);
	}
	p256_pt_add_full(&st->pt);
	return 0;
}

/* Pure-BPF verification with the public key given as 65 bytes 0x04||X||Y
 * (e.g. from a certificate in the packet): no registration, no table.
 * The key is validated (on the curve, coordinates < p); an invalid key gives
 * P256_VERIFY_EBADKEY. About 4x slower than the table path. */
static __always_inline int
ecdsa_p256_verify_pubkey(const __u8 *pubkey, __u32 pubkey_len,
			 const __u8 *digest, const __u8 *sig, __u32 sig_len)
{
	struct p256_verify_state *st;
	struct p256_loop_ctx lc;
	int ret;

	if (sig_len != P256_SIG_LEN)
		return P256_VERIFY_BAD;
	st = cryptbpf_scratch(&p256_scratch);
	if (!st)
		return P256_VERIFY_EINTERNAL;
	if (p256_load_pubkey(st, pubkey, pubkey_len))
		return P256_VERIFY_EBADKEY;
	lc.st = st;
	lc.kt = NULL;
	ret = p256_prepare(st, &lc, digest, sig);
	if (ret != 1)
		return ret;
	/* qtab[i] = (i + 1) Q */
	p256_fe_copy(&st->pt.x, &st->qx);
	p256_fe_copy(&st->pt.y, &st->qy);
	p256_fe_set_u32(&st->pt.z, 1);
	st->pt.inf = 0;
	p256_jac_store(&st->qtab[0], &st->pt);
	bpf_loop(P256_QW_POINTS - 1, p256_qtab_cb, &lc, 0);
	/* digits of u2, then R = u2 Q by windows from the top, then + u1 G */
	bpf_loop(P256_QW_WINDOWS, p256_recode_cb, &lc, 0);
	if (st->err)
		return P256_VERIFY_EINTERNAL;
	st->pt.inf = 1;
	bpf_loop(P256_QW_WINDOWS, p256_qmul_cb, &lc, 0);
	bpf_loop(P256_WINDOWS, p256_win_cb, &lc, 0);
	return p256_final_check(st);
}

#ifndef P256_NO_KFUNC
/* ---- kfunc dispatch (out-of-tree signature kfuncs, see KERNEL_NOTES.md) ----
 * v8: bpf_sig_verify() on a bpf_crypto_ctx of type "sig";
 * v1: bpf_ecdsa_verify() on a struct bpf_ecdsa_ctx.
 * Contexts are created by the SYSCALL program p256_kfunc_setup (sleepable
 * kfuncs) and parked as kptrs in p256_kctxs[key_id]; the data path reads the
 * RCU-protected pointer without acquire/release. Every call is guarded by
 * bpf_ksym_exists(), so on a kernel without these kfuncs the branches are
 * dead code and the pure-BPF path runs.
 *
 * v1 is opt-in (-DP256_KFUNC_V1): its kptr field needs the complete
 * struct bpf_ecdsa_ctx in kernel BTF, i.e. a vmlinux.h from a v1 kernel; with
 * only the forward declaration the kernel rejects the object's BTF. */

/* v1 release kfunc, needed to drop a replaced context (belongs with the other
 * v1 declarations in kfuncs.bpf.h). */
extern void bpf_ecdsa_ctx_release(struct bpf_ecdsa_ctx *ctx) __ksym __weak;

#ifndef P256_KFUNC_ALGO
#define P256_KFUNC_ALGO "p1363(ecdsa-nist-p256)"
#endif

struct p256_kctx {
	struct bpf_crypto_ctx __kptr *sig;	/* v8 */
#ifdef P256_KFUNC_V1
	struct bpf_ecdsa_ctx __kptr *v1;	/* v1 */
#endif
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, P256_MAX_KEYS);
	__type(key, __u32);
	__type(value, struct p256_kctx);
} p256_kctxs SEC(".maps");

/* kernel verification of st->kf_digest / st->kf_sig with a registered
 * context (own subprogram so its dynptrs stay out of the caller's frame) */
static __noinline int p256_kfunc_call(struct p256_verify_state *st,
				      struct p256_kctx *kc)
{
	struct bpf_crypto_ctx *cctx = NULL;
	struct bpf_ecdsa_ctx *ectx = NULL;
	struct bpf_dynptr dm, ds;
	int ret;

	if (!st || !kc)
		return -1;
	if (bpf_ksym_exists(bpf_sig_verify))
		cctx = kc->sig;
#ifdef P256_KFUNC_V1
	if (!cctx && bpf_ksym_exists(bpf_ecdsa_verify))
		ectx = kc->v1;
#endif
	if (!cctx && !ectx)
		return -1;
	bpf_dynptr_from_mem(st->kf_digest, P256_DIGEST_LEN, 0, &dm);
	bpf_dynptr_from_mem(st->kf_sig, P256_SIG_LEN, 0, &ds);
	if (cctx)
		ret = bpf_sig_verify(cctx, &dm, &ds);
	else if (ectx)
		ret = bpf_ecdsa_verify(ectx, &dm, &ds);
	else
		return -1;
	return ret == 0 ? P256_VERIFY_OK : P256_VERIFY_BAD;
}

/* Kernel verification if a context is registered for key_id.
 * Returns 1/0 (valid/invalid) or -1 when no kfunc path is available. */
static __always_inline int p256_kfunc_verify(__u32 key_id, const __u8 *digest,
					     const __u8 *sig)
{
	struct p256_verify_state *st;
	struct p256_kctx *kc;

	if (!bpf_ksym_exists(bpf_sig_verify) && !bpf_ksym_exists(bpf_ecdsa_verify))
		return -1;
	kc = bpf_map_lookup_elem(&p256_kctxs, &key_id);
	if (!kc || !(kc->sig
#ifdef P256_KFUNC_V1
		     || kc->v1
#endif
		     ))
		return -1;
	st = cryptbpf_scratch(&p256_scratch);
	if (!st)
		return -1;
	/* dynptrs need map memory: copy digest and signature */
#pragma clang loop unroll(full)
	for (int i = 0; i < P256_DIGEST_LEN; i++)
		st->kf_digest[i] = digest[i];
#pragma clang loop unroll(full)
	for (int i = 0; i < P256_SIG_LEN; i++)
		st->kf_sig[i] = sig[i];
	return p256_kfunc_call(st, kc);
}

/* SYSCALL program: create a kernel signature context for a key and park it in
 * p256_kctxs[key_id] (v8 "sig" bpf_crypto_ctx preferred, else v1).
 * Run with BPF_PROG_TEST_RUN, ctx_in = struct p256_kfunc_setup_args; the
 * result is in args->err: 0 on success, -EOPNOTSUPP (-95) when the kernel
 * has neither kfunc family (the normal case on released kernels: use the
 * pure-BPF path, which needs only the p256_keys table), -EINVAL for a bad
 * key id, or the kernel's error from context creation. */
SEC("syscall")
int p256_kfunc_setup(struct p256_kfunc_setup_args *args)
{
	struct bpf_crypto_params params = {
		.type = "sig",
		.algo = P256_KFUNC_ALGO,
		.key_len = P256_PUBKEY_LEN,
	};
	struct p256_kctx *kc;
	__u32 key_id = args->key_id;
	int err = -95;	/* EOPNOTSUPP */

	kc = bpf_map_lookup_elem(&p256_kctxs, &key_id);
	if (!kc) {
		args->err = -22;	/* EINVAL: key id out of range */
		return 0;
	}
	if (bpf_ksym_exists(bpf_sig_verify) &&
	    bpf_ksym_exists(bpf_crypto_ctx_create) &&
	    bpf_ksym_exists(bpf_crypto_ctx_release)) {
		struct bpf_crypto_ctx *cctx, *old;

		__builtin_memcpy(params.key, args->pubkey, P256_PUBKEY_LEN);
		err = 0;
		cctx = bpf_crypto_ctx_create(&params, sizeof(params), &err);
		if (cctx) {
			old = bpf_kptr_xchg(&kc->sig, cctx);
			if (old)
				bpf_crypto_ctx_release(old);
			args->err = 0;
			return 0;
		}
		if (!err)
			err = -2;
	}
#ifdef P256_KFUNC_V1
	if (bpf_ksym_exists(bpf_ecdsa_verify) &&
	    bpf_ksym_exists(bpf_ecdsa_ctx_create) &&
	    bpf_ksym_exists(bpf_ecdsa_ctx_release)) {
		struct bpf_ecdsa_ctx *ectx, *eold;
		struct p256_verify_state *st = cryptbpf_scratch(&p256_scratch);
		struct bpf_dynptr dalgo, dkey;
		const char algo[] = P256_KFUNC_ALGO;

		if (!st) {
			args->err = -12;
			return 0;
		}
		_Static_assert(sizeof(algo) <= sizeof(st->kf_algo), "algo name too long");
		/* dynptrs need map memory */
		__builtin_memcpy(st->kf_key, args->pubkey, P256_PUBKEY_LEN);
		__builtin_memcpy(st->kf_algo, algo, sizeof(algo) - 1);
		bpf_dynptr_from_mem(st->kf_key, P256_PUBKEY_LEN, 0, &dkey);
		bpf_dynptr_from_mem(st->kf_algo, sizeof(algo) - 1, 0, &dalgo);
		err = 0;
		ectx = bpf_ecdsa_ctx_create(&dalgo, &dkey, &err);
		if (ectx) {
			eold = bpf_kptr_xchg(&kc->v1, ectx);
			if (eold)
				bpf_ecdsa_ctx_release(eold);
			args->err = 0;
			return 0;
		}
		if (!err)
			err = -2;
	}
#endif
	args->err = err;
	return 0;
}
#endif /* P256_NO_KFUNC */

/* Verify with the key registered under key_id. */
static __always_inline int ecdsa_p256_verify(__u32 key_id, const __u8 *digest,
					     const __u8 *sig, __u32 sig_len)
{
	const struct p256_key_table *kt;

	if (sig_len != P256_SIG_LEN)
		return P256_VERIFY_BAD;
#ifndef P256_NO_KFUNC
	int kr = p256_kfunc_verify(key_id, digest, sig);
	if (kr >= 0)
		return kr;
#endif
	kt = bpf_map_lookup_elem(&p256_keys, &key_id);
	if (!kt)
		return P256_VERIFY_ENOKEY;
	return ecdsa_p256_verify_table(kt, digest, sig, sig_len);
}
