/* SPDX-License-Identifier: GPL-2.0 */
/* P-256 field arithmetic mod p = 2^256 - 2^224 + 2^192 + 2^96 - 1 (kernel side).
 *
 * Elements: struct p256_fe, eight 32-bit limbs, least significant first,
 * always canonical (< p) on input and output. Products use 64-bit registers
 * (BPF has only a 64x64->64 multiply): per column, the 32x32 products are
 * summed mod 2^64 together with the sum of their high halves, which gives
 * the exact low and high sums without masking each product (6 BPF
 * instructions per product, in an asm block that stops clang from hoisting
 * all 64 products and spilling them). Columns stay "lazy" (up to 36 bits,
 * no carry chain); the NIST/Solinas identity for p reduces them in signed
 * 64-bit arithmetic, followed by two short carry folds. fe_mul is ~770 BPF
 * instructions, ~50 ns JIT-compiled on the project machine.
 *
 * The heavy functions are BPF global functions (non-static, __noinline): the
 * verifier checks each body once, not once per call site, which keeps the
 * verified-instruction count of the callers small. Global function pointer
 * arguments may be NULL as far as the verifier knows, hence the NULL checks.
 * Being global, they would clash if two objects that include this header
 * were linked into one (bpftool gen object); include it in one .bpf.c only.
 *
 * Not constant time: ECDSA *verification* only handles public data.
 *
 * With P256_HOSTED defined (host unit tests) this compiles as plain C.
 */
#pragma once

#ifndef P256_HOSTED
#include "cryptbpf.bpf.h"
#endif
#include "ecdsa_p256.h"

#define P256_M32 0xffffffffULL

/* 512-bit intermediate (16 lazy 64-bit columns). Lives in map memory and is
 * passed to the multipliers, which keeps their stack frames (and so the
 * combined stack of the caller's call chain) small. */
struct p256_wide {
	__u64 w[16];
};

/* p, least significant limb first */
#define P256_P0 0xffffffffU
#define P256_P1 0xffffffffU
#define P256_P2 0xffffffffU
#define P256_P3 0x00000000U
#define P256_P4 0x00000000U
#define P256_P5 0x00000000U
#define P256_P6 0x00000001U
#define P256_P7 0xffffffffU

static __always_inline int p256_fe_is_zero(const struct p256_fe *a)
{
	/* volatile loads: read memory, do not keep the writer's registers live */
	const volatile __u32 *v = a->v;

	return (v[0] | v[1] | v[2] | v[3] | v[4] | v[5] | v[6] | v[7]) == 0;
}

static __always_inline int p256_fe_eq(const struct p256_fe *a,
				      const struct p256_fe *b)
{
	return ((a->v[0] ^ b->v[0]) | (a->v[1] ^ b->v[1]) |
		(a->v[2] ^ b->v[2]) | (a->v[3] ^ b->v[3]) |
		(a->v[4] ^ b->v[4]) | (a->v[5] ^ b->v[5]) |
		(a->v[6] ^ b->v[6]) | (a->v[7] ^ b->v[7])) == 0;
}

static __always_inline void p256_fe_copy(struct p256_fe *r,
					 const struct p256_fe *a)
{
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++)
		r->v[i] = a->v[i];
}

static __always_inline void p256_fe_set_u32(struct p256_fe *r, __u32 x)
{
	r->v[0] = x;
#pragma clang loop unroll(full)
	for (int i = 1; i < 8; i++)
		r->v[i] = 0;
}

/* t (8 words of 32 bits held in u64) >= p ? */
static __always_inline int p256_ge_p(const __u64 *t)
{
	if (t[7] != P256_M32)
		return 0;
	if (t[6] != 1)
		return t[6] > 1;
	if (t[5] | t[4] | t[3])
		return 1;
	return (t[2] & t[1] & t[0]) == P256_M32;
}

/* t += k * (2^256 - p) (mod 2^256) where 2^256 - p = 2^224 - 2^192 - 2^96 + 1,
 * i.e. t -= k*p when the caller drops the 2^256 carry; t[] are 32-bit words
 * in signed 64-bit slots. Returns the signed carry out of word 7. */
static __always_inline __s64 p256_fold(__s64 *t, __s64 k)
{
	t[0] += k;
	t[3] -= k;
	t[6] -= k;
	t[7] += k;
#pragma clang loop unroll(full)
	for (int i = 0; i < 7; i++) {
		t[i + 1] += t[i] >> 32;
		t[i] &= (__s64)P256_M32;
	}
	__s64 c = t[7] >> 32;
	t[7] &= (__s64)P256_M32;
	return c;
}

static __always_inline void p256_store(struct p256_fe *r, const __u64 *t)
{
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++)
		r->v[i] = (__u32)t[i];
}

/* Reduce c = sum c[k] 2^(32k) mod p into r. The columns are "lazy": each
 * c[k] may hold up to 36 bits (the multipliers do not propagate carries), so
 * the Solinas sums below stay under 2^40 in magnitude. */
static __always_inline void p256_reduce(struct p256_fe *r, const __u64 *cw)
{
	__s64 t[8];

#define C(i) (cw[i])
	t[0] = (__s64)(C(0) + C(8) + C(9)) - (__s64)(C(11) + C(12) + C(13) + C(14));
	t[1] = (__s64)(C(1) + C(9) + C(10)) - (__s64)(C(12) + C(13) + C(14) + C(15));
	t[2] = (__s64)(C(2) + C(10) + C(11)) - (__s64)(C(13) + C(14) + C(15));
	t[3] = (__s64)(C(3) + 2 * (C(11) + C(12)) + C(13)) - (__s64)(C(15) + C(8) + C(9));
	t[4] = (__s64)(C(4) + 2 * (C(12) + C(13)) + C(14)) - (__s64)(C(9) + C(10));
	t[5] = (__s64)(C(5) + 2 * (C(13) + C(14)) + C(15)) - (__s64)(C(10) + C(11));
	t[6] = (__s64)(C(6) + 3 * C(14) + 2 * C(15) + C(13)) - (__s64)(C(8) + C(9));
	t[7] = (__s64)(C(7) + 3 * C(15) + C(8)) - (__s64)(C(10) + C(11) + C(12) + C(13));
#undef C

	/* propagate (carry out |k| < 2^10), fold k 2^256 back in, whose carry is
	 * then -1, 0 or 1, and fold that: the last fold cannot carry again */
	__s64 k = p256_fold(t, 0);
	k = p256_fold(t, k);
	if (k)
		p256_fold(t, k);
	if (p256_ge_p((const __u64 *)t))
		p256_fold(t, 1);
	p256_store(r, (const __u64 *)t);
}

/* volatile 32-bit load: forces a fresh load (keeps register pressure low) */
#define P256_LD(p) ((__u64)*(const volatile __u32 *)(p))
/* volatile 32-bit store: the value dies here instead of being kept live */
#define P256_ST(p, x) (*(volatile __u32 *)(p) = (__u32)(x))

static __always_inline __u64 p256_p_limb(int i)
{
	switch (i) {
	case 0: case 1: case 2: case 7: return 0xffffffffULL;
	case 6: return 1;
	default: return 0;
	}
}

/* r (in memory, canonical or < 2^256) >= p ? */
static __always_inline int p256_fe_ge_p_mem(const struct p256_fe *r)
{
	if (P256_LD(&r->v[7]) != 0xffffffff)
		return 0;
	__u64 w6 = P256_LD(&r->v[6]);
	if (w6 != 1)
		return w6 > 1;
	if (P256_LD(&r->v[5]) | P256_LD(&r->v[4]) | P256_LD(&r->v[3]))
		return 1;
	return (P256_LD(&r->v[2]) & P256_LD(&r->v[1]) & P256_LD(&r->v[0])) == 0xffffffff;
}

/* r = a + b mod p. Streams limbs through memory (stores truncate to 32
 * bits for free) and keeps register pressure low, so that it can be inlined
 * into the point functions without growing their stack frames. r may alias
 * a or b. */
static __always_inline void p256_fe_add_i(struct p256_fe *r,
					  const struct p256_fe *a,
					  const struct p256_fe *b)
{
	__u64 c = 0;

#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++) {
		c += P256_LD(&a->v[i]) + P256_LD(&b->v[i]);
		P256_ST(&r->v[i], c);
		c >>= 32;
	}
	if (c || p256_fe_ge_p_mem(r)) {		/* subtract p once */
		__s64 d = 0;
#pragma clang loop unroll(full)
		for (int i = 0; i < 8; i++) {
			d += (__s64)P256_LD(&r->v[i]) - (__s64)p256_p_limb(i);
			P256_ST(&r->v[i], d);
			d >>= 32;
		}
	}
}

/* r = a - b mod p (same streaming style; r may alias a or b) */
static __always_inline void p256_fe_sub_i(struct p256_fe *r,
					  const struct p256_fe *a,
					  const struct p256_fe *b)
{
	__s64 c = 0;

#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++) {
		c += (__s64)P256_LD(&a->v[i]) - (__s64)P256_LD(&b->v[i]);
		P256_ST(&r->v[i], c);
		c >>= 32;
	}
	if (c) {				/* borrow: add p once */
		__u64 d = 0;
#pragma clang loop unroll(full)
		for (int i = 0; i < 8; i++) {
			d += P256_LD(&r->v[i]) + p256_p_limb(i);
			P256_ST(&r->v[i], d);
			d >>= 32;
		}
	}
}

/* r = a + b mod p (callable) */
__noinline int p256_fe_add(struct p256_fe *r, const struct p256_fe *a,
			   const struct p256_fe *b)
{
	if (!r || !a || !b)
		return 0;
	p256_fe_add_i(r, a, b);
	return 0;
}

/* r = a - b mod p (callable) */
__noinline int p256_fe_sub(struct p256_fe *r, const struct p256_fe *a,
			   const struct p256_fe *b)
{
	if (!r || !a || !b)
		return 0;
	p256_fe_sub_i(r, a, b);
	return 0;
}

/* Multiply-accumulate of one 32x32 product into a column:
 * acc += x*y (mod 2^64) and hi += (x*y) >> 32. The exact sum of the low
 * halves of a column is then acc - (hi << 32) (< 2^35), and hi (< 2^35)
 * belongs to the next column. On BPF this is an asm block so that clang
 * keeps one product live at a time (left alone, it hoists all 64 products
 * and spills them past the 512-byte stack); x is consumed (multiplied in
 * place), so it must be a fresh copy. */
#ifdef P256_HOSTED
#define P256_MAC(acc, hi, x, y) do {					\
	__u64 _t = (__u64)(x) * (y);					\
	(acc) += _t;							\
	(hi) += _t >> 32;						\
} while (0)
#else
#define P256_MAC(acc, hi, x, y) do {					\
	__u64 _x = (x);							\
	asm volatile("%[a] *= %[b]\n\t"					\
		     "%[s] += %[a]\n\t"					\
		     "%[a] >>= 32\n\t"					\
		     "%[h] += %[a]"					\
		     : [s] "+r"(acc), [h] "+r"(hi), [a] "+r"(_x)	\
		     : [b] "r"((__u64)(y)));				\
} while (0)
#endif

/* pin v in a register at this point (orders the column ends) */
static __always_inline void p256_pin(__u64 *v)
{
#ifndef P256_HOSTED
	asm volatile("" : "+r"(*v));
#endif
}

/* 512-bit product a*b as 16 lazy columns (each < 2^36) */
static __always_inline void p256_mul_512(__u64 *c, const struct p256_fe *a,
					 const struct p256_fe *b)
{
	__u64 hprev = 0;

#pragma clang loop unroll(full)
	for (int k = 0; k < 15; k++) {
		__u64 acc = 0, hi = 0;
#pragma clang loop unroll(full)
		for (int i = 0; i < 8; i++) {
			int j = k - i;
			if (j < 0 || j > 7)
				continue;
			P256_MAC(acc, hi, P256_LD(&a->v[i]), P256_LD(&b->v[j]));
		}
		__u64 col = acc - (hi << 32) + hprev;

		hprev = hi;
		p256_pin(&col);
		p256_pin(&hprev);
		c[k] = col;
	}
	c[15] = hprev;
}

/* r = k * a mod p for a small constant k (< 2^16) */
__noinline int p256_fe_mulk(struct p256_fe *r, const struct p256_fe *a, __u32 k)
{
	__s64 t[8];
	__u64 c = 0;

	if (!r || !a)
		return 0;
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++) {
		c += (__u64)a->v[i] * (k & 0xffff);
		t[i] = (__s64)(c & P256_M32);
		c >>= 32;
	}
	/* t + c 2^256 == t + c (2^256 - p): carry 0 or 1, then none */
	__s64 k2 = p256_fold(t, (__s64)c);
	if (k2)
		p256_fold(t, k2);
	if (p256_ge_p((const __u64 *)t))
		p256_fold(t, 1);
	p256_store(r, (const __u64 *)t);
	return 0;
}

/* r = a * b mod p; c: scratch */
__noinline int p256_fe_mul(struct p256_fe *r, const struct p256_fe *a,
			   const struct p256_fe *b, struct p256_wide *c)
{
	if (!r || !a || !b || !c)
		return 0;
	p256_mul_512(c->w, a, b);
	p256_reduce(r, c->w);
	return 0;
}

/* r = a^2 mod p; cw: scratch */
__noinline int p256_fe_sqr(struct p256_fe *r, const struct p256_fe *a,
			   struct p256_wide *cw)
{
	__u64 hprev = 0;

	if (!r || !a || !cw)
		return 0;
	__u64 *c = cw->w;
#pragma clang loop unroll(full)
	for (int k = 0; k < 15; k++) {
		__u64 acc = 0, hi = 0;
#pragma clang loop unroll(full)
		for (int i = 0; i < 8; i++) {
			int j = k - i;
			if (j <= i || j > 7)
				continue;
			P256_MAC(acc, hi, P256_LD(&a->v[i]), P256_LD(&a->v[j]));
		}
		/* cross products count twice: low sums < 2^34, so exact */
		__u64 col = ((acc - (hi << 32)) << 1) + hprev;
		hprev = hi << 1;
		if ((k & 1) == 0) {
			__u64 sq = 0, sh = 0;
			P256_MAC(sq, sh, P256_LD(&a->v[k / 2]), P256_LD(&a->v[k / 2]));
			col += sq - (sh << 32);
			hprev += sh;
		}
		p256_pin(&col);
		p256_pin(&hprev);
		c[k] = col;
	}
	c[15] = hprev;
	p256_reduce(r, c);
	return 0;
}
