/* SPDX-License-Identifier: GPL-2.0 */
/* P-256 scalar arithmetic mod the group order n (kernel side).
 *
 *   n = ffffffff 00000000 ffffffff ffffffff bce6faad a7179e84 f3b9cac2 fc632551
 *
 * Same limb format as p256_field.bpf.h (struct p256_fe). Provides:
 *  - p256_sc_mont(): Montgomery product a*b*2^-256 mod n (R = 2^256),
 *  - p256_sc_inv_step(): one step of a binary extended GCD computing a^-1 mod n,
 *    to be driven by bpf_loop() (see ecdsa_p256.bpf.h). Variable time, which is
 *    fine for signature verification (s is public).
 */
#pragma once

#include "p256_field.bpf.h"

#define P256_N0 0xfc632551U
#define P256_N1 0xf3b9cac2U
#define P256_N2 0xa7179e84U
#define P256_N3 0xbce6faadU
#define P256_N4 0xffffffffU
#define P256_N5 0xffffffffU
#define P256_N6 0x00000000U
#define P256_N7 0xffffffffU
#define P256_NPRIME 0xee00bc4fULL	/* -n^-1 mod 2^32 */

static __always_inline __u64 p256_n_limb(int i)
{
	switch (i) {
	case 0: return P256_N0;
	case 1: return P256_N1;
	case 2: return P256_N2;
	case 3: return P256_N3;
	case 4: return P256_N4;
	case 5: return P256_N5;
	case 6: return P256_N6;
	default: return P256_N7;
	}
}

static __always_inline void p256_sc_set_n(struct p256_fe *r)
{
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++)
		r->v[i] = (__u32)p256_n_limb(i);
}

/* R^2 mod n, to enter the Montgomery domain */
static __always_inline void p256_sc_set_r2(struct p256_fe *r)
{
	r->v[0] = 0xbe79eea2;
	r->v[1] = 0x83244c95;
	r->v[2] = 0x49bd6fa6;
	r->v[3] = 0x4699799c;
	r->v[4] = 0x2b6bec59;
	r->v[5] = 0x2845b239;
	r->v[6] = 0xf3d95620;
	r->v[7] = 0x66e12d94;
}

/* a (< 2^256) >= n ? */
static __always_inline int p256_sc_ge_n(const struct p256_fe *a)
{
#pragma clang loop unroll(full)
	for (int i = 7; i >= 0; i--) {
		if (a->v[i] != (__u32)p256_n_limb(i))
			return a->v[i] > (__u32)p256_n_limb(i);
	}
	return 1;
}

/* a -= n, a given as 8 words in u64 slots plus an extra top word */
static __always_inline void p256_sc_sub_n_words(__u64 *t)
{
	__s64 c = 0;
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++) {
		c += (__s64)t[i] - (__s64)p256_n_limb(i);
		t[i] = (__u64)c & P256_M32;
		c >>= 32;
	}
}

static __always_inline void p256_sc_sub_n(struct p256_fe *a)
{
	__u64 t[8];
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++)
		t[i] = a->v[i];
	p256_sc_sub_n_words(t);
	p256_store(a, t);
}

/* r = a * b * 2^-256 mod n; requires a < 2^256, b < n. Output < n.
 * lz: scratch.
 * Only used a few times per verification: written for stack size, not speed. */
__noinline int p256_sc_mont(struct p256_fe *r, const struct p256_fe *a,
			    const struct p256_fe *b, struct p256_wide *lz)
{
	volatile __u64 *T;
	__u64 t[8];
	__u64 top = 0, cy0 = 0;

	if (!r || !a || !b || !lz)
		return 0;
	T = lz->w;
	p256_mul_512(lz->w, a, b);
	/* normalize the lazy columns to 32-bit words, in place */
#pragma clang loop unroll(full)
	for (int k = 0; k < 16; k++) {
		cy0 += T[k];
		T[k] = cy0 & P256_M32;
		cy0 >>= 32;
	}
	/* word-by-word Montgomery reduction */
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++) {
		__u64 m = (T[i] * P256_NPRIME) & P256_M32;
		__u64 cy = 0;
#pragma clang loop unroll(full)
		for (int j = 0; j < 8; j++) {
			/* < 2^32 + (2^32-1)^2 + 2^32 <= 2^64 - 1 */
			__u64 s = T[i + j] + m * p256_n_limb(j) + cy;
			T[i + j] = s & P256_M32;
			cy = s >> 32;
		}
		__u64 s = T[i + 8] + cy + top;
		T[i + 8] = s & P256_M32;
		top = s >> 32;
	}
	/* result = T[8..15] + top*2^256 < 2n */
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++)
		t[i] = T[8 + i];
	int ge = top != 0;
	if (!ge) {
		ge = 1;
#pragma clang loop unroll(full)
		for (int i = 7; i >= 0; i--) {
			if (t[i] != p256_n_limb(i)) {
				ge = t[i] > p256_n_limb(i);
				break;
			}
		}
	}
	if (ge)
		p256_sc_sub_n_words(t);
	p256_store(r, t);
	return 0;
}

/* Binary extended GCD state for a^-1 mod n.
 * Invariants: u == x1 * a, v == x2 * a (mod n); u, v odd except transiently. */
struct p256_inv {
	struct p256_fe u, v, x1, x2;
};

static __always_inline void p256_inv_init(struct p256_inv *st,
					  const struct p256_fe *a)
{
	p256_fe_copy(&st->u, a);
	p256_sc_set_n(&st->v);
	p256_fe_set_u32(&st->x1, 1);
	p256_fe_set_u32(&st->x2, 0);
}

static __always_inline __u32 p256_ctz32(__u32 x)
{
	__u32 k = 0;

	if (!(x & 0xffff)) { k += 16; x >>= 16; }
	if (!(x & 0xff)) { k += 8; x >>= 8; }
	if (!(x & 0xf)) { k += 4; x >>= 4; }
	if (!(x & 0x3)) { k += 2; x >>= 2; }
	if (!(x & 0x1)) { k += 1; }
	return k;	/* 31 for x == 0 */
}

/* a /= 2^k exactly (a even, 1 <= k <= 31) and x = x / 2^k mod n (x < n) */
static __always_inline void p256_inv_strip(struct p256_fe *a,
					   struct p256_fe *x)
{
	__u32 k = p256_ctz32(a->v[0]);
	if (k == 0 || k > 31)
		return;
	__u32 kc = 32 - k;

#pragma clang loop unroll(full)
	for (int i = 0; i < 7; i++)
		a->v[i] = (a->v[i] >> k) | (__u32)((__u64)a->v[i + 1] << kc);
	a->v[7] = a->v[7] >> k;

	/* x + m*n with m = -x * n^-1 mod 2^k is divisible by 2^k */
	__u64 mask = (1ULL << k) - 1;
	__u64 m = ((__u64)x->v[0] * P256_NPRIME) & mask;
	__u64 t[9];
	__u64 c = 0;
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++) {
		__u64 s = (__u64)x->v[i] + m * p256_n_limb(i) + c;
		t[i] = s & P256_M32;
		c = s >> 32;
	}
	t[8] = c;
	/* shift the 288-bit value right by k; result < 2n */
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++)
		t[i] = ((t[i] >> k) | (t[i + 1] << kc)) & P256_M32;
	t[8] >>= k;
	int ge = t[8] != 0;
	if (!ge) {
		ge = 1;
#pragma clang loop unroll(full)
		for (int i = 7; i >= 0; i--) {
			if (t[i] != p256_n_limb(i)) {
				ge = t[i] > p256_n_limb(i);
				break;
			}
		}
	}
	if (ge)
		p256_sc_sub_n_words(t);
	p256_store(x, t);
}

static __always_inline int p256_is_one(const struct p256_fe *a)
{
	return a->v[0] == 1 && (a->v[1] | a->v[2] | a->v[3] | a->v[4] |
				a->v[5] | a->v[6] | a->v[7]) == 0;
}

/* a >= b (plain 256-bit compare) */
static __always_inline int p256_ge(const struct p256_fe *a,
				   const struct p256_fe *b)
{
#pragma clang loop unroll(full)
	for (int i = 7; i >= 0; i--) {
		if (a->v[i] != b->v[i])
			return a->v[i] > b->v[i];
	}
	return 1;
}

/* a -= b (a >= b, plain) */
static __always_inline void p256_sub_plain(struct p256_fe *a,
					   const struct p256_fe *b)
{
	__s64 c = 0;
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++) {
		c += (__s64)a->v[i] - (__s64)b->v[i];
		a->v[i] = (__u32)c;
		c >>= 32;
	}
}

/* x = x - y mod n (x, y < n) */
static __always_inline void p256_sc_sub_mod(struct p256_fe *x,
					    const struct p256_fe *y)
{
	__s64 c = 0;
	__u64 t[8];
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++) {
		c += (__s64)x->v[i] - (__s64)y->v[i];
		t[i] = (__u64)c & P256_M32;
		c >>= 32;
	}
	if (c) {
		__u64 cc = 0;
#pragma clang loop unroll(full)
		for (int i = 0; i < 8; i++) {
			cc += t[i] + p256_n_limb(i);
			t[i] = cc & P256_M32;
			cc >>= 32;
		}
	}
	p256_store(x, t);
}

/* One step. Returns 0 to continue, 1 when done: then x1 = a^-1 mod n.
 * Every step but the last strips at least one bit off u or v, and
 * log2(u) + log2(v) <= 512 at the start, so at most ~515 steps are needed
 * for 1 <= a < n (about 130 on average). */
__noinline int p256_sc_inv_step(struct p256_inv *st)
{
	if (!st)
		return 1;
	if (!(st->u.v[0] & 1)) {
		p256_inv_strip(&st->u, &st->x1);
		return 0;
	}
	if (!(st->v.v[0] & 1)) {
		p256_inv_strip(&st->v, &st->x2);
		return 0;
	}
	if (p256_is_one(&st->u))
		return 1;
	if (p256_is_one(&st->v)) {
		p256_fe_copy(&st->x1, &st->x2);
		return 1;
	}
	/* both odd and != 1, and u != v (gcd is 1): the difference is even and
	 * nonzero, strip it right away */
	if (p256_ge(&st->u, &st->v)) {
		p256_sub_plain(&st->u, &st->v);
		p256_sc_sub_mod(&st->x1, &st->x2);
		p256_inv_strip(&st->u, &st->x1);
	} else {
		p256_sub_plain(&st->v, &st->u);
		p256_sc_sub_mod(&st->x2, &st->x1);
		p256_inv_strip(&st->v, &st->x2);
	}
	return 0;
}
