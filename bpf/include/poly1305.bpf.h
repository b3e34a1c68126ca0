/* SPDX-License-Identifier: GPL-2.0 */
/* Poly1305 one-time authenticator (RFC 8439 section 2.5) in pure BPF.
 *
 * 130-bit arithmetic in five 26-bit limbs with 64-bit products (the
 * "donna-32" layout): a block costs 25 multiplies, no 128-bit emulation.
 * Usable from XDP, TC, tracepoint and SYSCALL programs (bpf_loop, 5.17+).
 *
 * The caller provides the state in a per-CPU map value:
 *
 *     CRYPTBPF_PERCPU_SCRATCH(mac_scratch, struct poly1305_state);
 *     struct poly1305_state *st = cryptbpf_scratch(&mac_scratch);
 *     poly1305_init(st, key);                 // 32-byte one-time key
 *     poly1305_update_mem(st, msg, len);      // any number of times
 *     poly1305_final(st, tag);                // 16-byte tag -> map memory
 *
 * A key must authenticate ONE message only (the AEAD derives it per nonce).
 * `msg` must point into a map value with at least CRYPTBPF_MSG_MAX readable
 * bytes from the pointer; len <= CRYPTBPF_MSG_MAX per call.
 * Compare tags with ct_memeq() from ct.bpf.h, never memcmp.
 *
 * Cost: ~100 BPF insns per 16-byte block. The bulk runs 128 bytes per
 * bpf_loop iteration (state loaded and stored once), two blocks at a time
 * with r^2 (h = (h + m1) r^2 + m2 r: two independent products, half the
 * serial multiply-carry chain). Measured on the project VM at 1500 bytes:
 * ~1.7-1.8 GB/s (one block at a time: ~1.4; 64 bytes per iteration: ~1.4).
 */
#pragma once

#include "cryptbpf.bpf.h"

#ifndef CRYPTBPF_MSG_MAX
#define CRYPTBPF_MSG_MAX 9216
#endif

#define POLY1305_KEY_SIZE   32
#define POLY1305_TAG_SIZE   16
#define POLY1305_BLOCK_SIZE 16
#define POLY1305_LIMB_MASK  0x3ffffffULL
#define POLY1305_HIBIT      (1ULL << 24)	/* the 2^128 bit, in limb 4 */

struct poly1305_state {
	__u32 r[5];		/* clamped r, 26-bit limbs */
	__u32 s[4];		/* 5 * r[1..4] (reduction by 2^130 = 5) */
	__u32 h[5];		/* accumulator, 26-bit limbs (partially carried) */
	__u32 pad[4];		/* s half of the key, added at the end */
	__u8 buf[16];		/* pending partial block of a streaming update */
	__u32 buf_len;
	__u32 rr[5];		/* r^2 mod p, 26-bit limbs: two blocks at a time */
	__u32 ss[4];		/* 5 * rr[1..4] */
};				/* 128 bytes */
_Static_assert(sizeof(struct poly1305_state) == 128, "layout");

static __always_inline __u64 poly1305_le64(const __u8 *p)
{
	return *(const __u64 *)p;	/* little-endian host, unaligned ok */
}

/* d += a * r mod 2^130 - 5 (schoolbook 5x5 limbs; s = 5 * r folds the
 * limbs above 2^130 back in). a < 2^27, r < 2^26, s < 2^29 per limb: each
 * sum of five products < 2^58.4, two sums < 2^59.4, so u64 never overflows. */
static __always_inline void poly1305_mul_add(__u64 d[5], const __u64 a[5],
					     const __u64 r[5], const __u64 s[5])
{
	d[0] += a[0] * r[0] + a[1] * s[4] + a[2] * s[3] + a[3] * s[2] + a[4] * s[1];
	d[1] += a[0] * r[1] + a[1] * r[0] + a[2] * s[4] + a[3] * s[3] + a[4] * s[2];
	d[2] += a[0] * r[2] + a[1] * r[1] + a[2] * r[0] + a[3] * s[4] + a[4] * s[3];
	d[3] += a[0] * r[3] + a[1] * r[2] + a[2] * r[1] + a[3] * r[0] + a[4] * s[4];
	d[4] += a[0] * r[4] + a[1] * r[3] + a[2] * r[2] + a[3] * r[1] + a[4] * r[0];
}

/* h = d partially carried: every limb < 2^26 except h[1] < 2^26 + 2^8. */
static __always_inline void poly1305_carry(__u64 h[5], __u64 d[5])
{
	__u64 c;

	c = d[0] >> 26; h[0] = d[0] & POLY1305_LIMB_MASK; d[1] += c;
	c = d[1] >> 26; h[1] = d[1] & POLY1305_LIMB_MASK; d[2] += c;
	c = d[2] >> 26; h[2] = d[2] & POLY1305_LIMB_MASK; d[3] += c;
	c = d[3] >> 26; h[3] = d[3] & POLY1305_LIMB_MASK; d[4] += c;
	c = d[4] >> 26; h[4] = d[4] & POLY1305_LIMB_MASK;
	h[0] += c * 5;
	c = h[0] >> 26; h[0] &= POLY1305_LIMB_MASK; h[1] += c;
}

/* One 16-byte block as limbs (hibit: the 2^128 bit, 0 for a padded block). */
static __always_inline void poly1305_load(__u64 t[5], const __u8 *m, __u64 hibit)
{
	__u64 lo = *(const __u64 *)m, hi = *(const __u64 *)(m + 8);

	t[0] = lo & POLY1305_LIMB_MASK;
	t[1] = (lo >> 26) & POLY1305_LIMB_MASK;
	t[2] = ((lo >> 52) | (hi << 12)) & POLY1305_LIMB_MASK;
	t[3] = (hi >> 14) & POLY1305_LIMB_MASK;
	t[4] = (hi >> 40) | hibit;
}

/* Clamp r and load both key halves. */
static __always_inline void poly1305_init(struct poly1305_state *st, const __u8 *key)
{
	__u64 lo = poly1305_le64(key), hi = poly1305_le64(key + 8);
	__u32 r0, r1, r2, r3, r4;

	r0 = lo & 0x3ffffff;
	r1 = (lo >> 26) & 0x3ffff03;
	r2 = ((lo >> 52) | (hi << 12)) & 0x3ffc0ff;
	r3 = (hi >> 14) & 0x3f03fff;
	r4 = (hi >> 40) & 0x00fffff;
	st->r[0] = r0; st->r[1] = r1; st->r[2] = r2; st->r[3] = r3; st->r[4] = r4;
	st->s[0] = r1 * 5; st->s[1] = r2 * 5; st->s[2] = r3 * 5; st->s[3] = r4 * 5;
	__builtin_memset(st->h, 0, sizeof(st->h));
	__builtin_memcpy(st->pad, key + 16, 16);
	st->buf_len = 0;
	{	/* r^2 for the two-block steps */
		__u64 r[5] = { r0, r1, r2, r3, r4 };
		__u64 s5[5] = { 0, r1 * 5, r2 * 5, r3 * 5, r4 * 5 };
		__u64 d[5] = { 0, 0, 0, 0, 0 }, rr[5];

		poly1305_mul_add(d, r, r, s5);
		poly1305_carry(rr, d);
		for (int i = 0; i < 5; i++)
			st->rr[i] = rr[i];
		for (int i = 1; i < 5; i++)
			st->ss[i - 1] = rr[i] * 5;
	}
}

/* h = (h + m) * r mod 2^130 - 5 for `nblocks` consecutive 16-byte blocks
 * at m; nblocks must be a compile-time constant (fully unrolled). The state
 * is loaded into locals once and stored once per call: 4 blocks (64 bytes)
 * per call keeps the map-memory round trip off the per-block path.
 * hibit is POLY1305_HIBIT for full blocks, 0 for the padded final block. */
static __always_inline void poly1305_blocks(struct poly1305_state *st, const __u8 *m,
					    int nblocks, __u64 hibit)
{
	const __u64 r0 = st->r[0], r1 = st->r[1], r2 = st->r[2], r3 = st->r[3], r4 = st->r[4];
	const __u64 s1 = st->s[0], s2 = st->s[1], s3 = st->s[2], s4 = st->s[3];
	__u64 h0 = st->h[0], h1 = st->h[1], h2 = st->h[2], h3 = st->h[3], h4 = st->h[4];
	__u64 d0, d1, d2, d3, d4, c;

#pragma unroll
	for (int b = 0; b < nblocks; b++, m += 16) {
		__u64 lo = poly1305_le64(m), hi = poly1305_le64(m + 8);

		h0 += lo & POLY1305_LIMB_MASK;
		h1 += (lo >> 26) & POLY1305_LIMB_MASK;
		h2 += ((lo >> 52) | (hi << 12)) & POLY1305_LIMB_MASK;
		h3 += (hi >> 14) & POLY1305_LIMB_MASK;
		h4 += (hi >> 40) | hibit;

		/* limbs < 2^27, r < 2^26, s < 2^29: each sum < 2^59 */
		d0 = h0 * r0 + h1 * s4 + h2 * s3 + h3 * s2 + h4 * s1;
		d1 = h0 * r1 + h1 * r0 + h2 * s4 + h3 * s3 + h4 * s2;
		d2 = h0 * r2 + h1 * r1 + h2 * r0 + h3 * s4 + h4 * s3;
		d3 = h0 * r3 + h1 * r2 + h2 * r1 + h3 * r0 + h4 * s4;
		d4 = h0 * r4 + h1 * r3 + h2 * r2 + h3 * r1 + h4 * r0;

		/* partial carry: h1 may end up slightly above 2^26, which the
		 * bounds above allow for */
		c = d0 >> 26; h0 = d0 & POLY1305_LIMB_MASK; d1 += c;
		c = d1 >> 26; h1 = d1 & POLY1305_LIMB_MASK; d2 += c;
		c = d2 >> 26; h2 = d2 & POLY1305_LIMB_MASK; d3 += c;
		c = d3 >> 26; h3 = d3 & POLY1305_LIMB_MASK; d4 += c;
		c = d4 >> 26; h4 = d4 & POLY1305_LIMB_MASK;
		h0 += c * 5;
		c = h0 >> 26; h0 &= POLY1305_LIMB_MASK; h1 += c;
	}
	st->h[0] = h0; st->h[1] = h1; st->h[2] = h2; st->h[3] = h3; st->h[4] = h4;
}

/* Like poly1305_blocks for 2 * npairs full blocks, two at a time:
 * h = (h + m1) * r^2 + m2 * r. The two products are independent, so the
 * serial chain through h (multiply, carry) is half as long per block. */
static __always_inline void poly1305_block_pairs(struct poly1305_state *st, const __u8 *m,
						 int npairs)
{
	__u64 h[5] = { st->h[0], st->h[1], st->h[2], st->h[3], st->h[4] };

#pragma clang loop unroll(disable)
	for (int p = 0; p < npairs; p++, m += 32) {
		const struct poly1305_state *k = st;
		__u64 t[5], d[5] = { 0, 0, 0, 0, 0 };

		/* Stack: re-read the key limbs from map memory each pair (L1
		 * hits) instead of letting clang hoist all 18 into stack
		 * spills: 144 instead of 224 bytes of frame, ~8% slower. The
		 * pair loop is rolled for the same reason (unrolled: > 512). */
		barrier_var(k);
		const __u64 r[5] = { k->r[0], k->r[1], k->r[2], k->r[3], k->r[4] };
		const __u64 s[5] = { 0, k->s[0], k->s[1], k->s[2], k->s[3] };
		const __u64 rr[5] = { k->rr[0], k->rr[1], k->rr[2], k->rr[3], k->rr[4] };
		const __u64 ss[5] = { 0, k->ss[0], k->ss[1], k->ss[2], k->ss[3] };

		poly1305_load(t, m, POLY1305_HIBIT);
#pragma unroll
		for (int i = 0; i < 5; i++)
			h[i] += t[i];
		poly1305_mul_add(d, h, rr, ss);
		poly1305_load(t, m + 16, POLY1305_HIBIT);
		poly1305_mul_add(d, t, r, s);
		poly1305_carry(h, d);
	}
#pragma unroll
	for (int i = 0; i < 5; i++)
		st->h[i] = h[i];
}

/* Out-of-line versions used by every caller. Verifier: as separate
 * bpf-to-bpf functions their ~150 bytes of spills live in their own frame
 * (not in the caller's or in a bpf_loop callback's), which keeps
 * main + callback + callee under the combined 512-byte stack limit. */
static __noinline void poly1305_blocks_x4(struct poly1305_state *st, const __u8 *m)
{
	poly1305_block_pairs(st, m, 2);
}

static __noinline void poly1305_blocks_x8(struct poly1305_state *st, const __u8 *m)
{
	poly1305_block_pairs(st, m, 4);
}

static __noinline void poly1305_block_x1(struct poly1305_state *st, const __u8 *m,
					 __u64 hibit)
{
	poly1305_blocks(st, m, 1, hibit);
}

/* 1..4 full blocks, count known only at run time (tails). */
static __always_inline void poly1305_blocks_upto4(struct poly1305_state *st,
						  const __u8 *m, __u32 nblocks)
{
#pragma unroll
	for (int b = 0; b < 4; b++)
		if (b < nblocks)
			poly1305_block_x1(st, m + b * 16, POLY1305_HIBIT);
}

/* buf[at + k] = src[k] for k < n (n <= 15, at + n <= 16). Clang would turn
 * a plain byte loop into a variable-length memcpy, which BPF cannot call;
 * the empty asm with a memory clobber keeps it a loop. Left rolled (clang
 * cannot fully unroll it): the verifier walks at most 15 iterations.
 * Verifier: the index is masked to stay inside buf[16]. */
static __always_inline void poly1305_copy_upto15(__u8 *buf, __u32 at,
						 const __u8 *src, __u32 n)
{
#pragma clang loop unroll(disable)
	for (__u32 k = 0; k < 15; k++) {
		if (k >= n)
			break;
		buf[(at + k) & 15] = src[k];
		asm volatile("" ::: "memory");
	}
}

/* ---- streaming update over map memory ---- */

struct poly1305_io {
	struct poly1305_state *st;
	const __u8 *m;
	__u32 start;		/* first byte of the 128-byte chunks */
};

static long poly1305_mem_cb(__u64 idx, void *ctx)
{
	struct poly1305_io *io = ctx;
	__u64 pos = io->start + (__u32)idx * 128;

	/* Verifier: pos is unknown here; bound it by the buffer contract. */
	barrier_var(pos);
	if (pos > CRYPTBPF_MSG_MAX - 128)
		return 1;
	poly1305_blocks_x8(io->st, io->m + pos);
	return 0;
}

/* Absorb len bytes of map memory at m. Returns 0 or -E2BIG / -EFAULT. */
static __always_inline int poly1305_update_mem(struct poly1305_state *st,
					       const __u8 *m, __u32 len)
{
	struct poly1305_io io = { .st = st, .m = m };
	__u32 used = 0, nchunks, nblocks, rest;
	__u64 pos;	/* verifier: 64-bit so the bound check and the pointer
			 * arithmetic use the same register (no zext copy) */
	__u32 have = st->buf_len & 15;	/* verifier: index into buf[16] */

	if (len > CRYPTBPF_MSG_MAX)
		return -7;
	if (have) {		/* top up the pending partial block first */
		__u32 take = 16 - have;

		if (take > len)
			take = len;
		poly1305_copy_upto15(st->buf, have, m, take);
		used = take;
		if (have + take < 16) {
			st->buf_len = have + take;
			return 0;
		}
		poly1305_block_x1(st, st->buf, POLY1305_HIBIT);
		st->buf_len = 0;
	}
	io.start = used;
	nchunks = (len - used) / 128;
	if (bpf_loop(nchunks, poly1305_mem_cb, &io, 0) != nchunks)
		return -14;
	pos = used + nchunks * 128;
	rest = (len - used) & 127;	/* == len - pos; the mask bounds it for the verifier */
	if (!rest) {
		st->buf_len = 0;
		return 0;
	}
	/* Verifier: pos <= MSG_MAX - 64 makes the (< 128 bytes) rest in range. */
	barrier_var(pos);
	if (pos > CRYPTBPF_MSG_MAX - 64)
		return -7;
	if (rest >= 64) {
		poly1305_blocks_x4(st, m + pos);
		pos += 64;
		rest -= 64;
		barrier_var(pos);
		if (pos > CRYPTBPF_MSG_MAX - 64)
			return -7;
	}
	nblocks = rest / 16;
	poly1305_blocks_upto4(st, m + pos, nblocks);
	pos += nblocks * 16;
	rest &= 15;
	/* Verifier: re-check the final position (see barrier_var in
	 * chacha20_mem_block: clang must not re-derive pos after the check). */
	barrier_var(pos);
	if (pos > CRYPTBPF_MSG_MAX - 16)
		return -7;
	poly1305_copy_upto15(st->buf, 0, m + pos, rest);	/* keep the partial block */
	st->buf_len = rest;
	return 0;
}

/* Finish: pad a pending partial block with 0x01 0x00..., reduce fully mod
 * 2^130 - 5, add the pad mod 2^128, write the 16-byte tag. Constant time.
 * Out of line to keep its temporaries out of the caller's stack frame. */
static __noinline void poly1305_final_impl(struct poly1305_state *st, __u8 *tag)
{
	__u64 h0, h1, h2, h3, h4, g0, g1, g2, g3, g4, c, mask, f;
	__u32 have = st->buf_len & 15;

	if (have) {
		__u64 *w = (__u64 *)st->buf;

		/* 0x01 after the data, zeros after that: masks per 8-byte word */
		st->buf[have] = 1;
		if (have < 8) {
			__u64 r = (have + 1) * 4;	/* two shifts: have = 7 shifts by 64 */

			w[0] &= ((1ULL << r) << r) - 1;
			w[1] = 0;
		} else if (have < 15) {
			w[1] &= (1ULL << ((have - 7) * 8)) - 1;
		}
		poly1305_block_x1(st, st->buf, 0);
		st->buf_len = 0;
	}
	h0 = st->h[0]; h1 = st->h[1]; h2 = st->h[2]; h3 = st->h[3]; h4 = st->h[4];

	c = h1 >> 26; h1 &= POLY1305_LIMB_MASK; h2 += c;
	c = h2 >> 26; h2 &= POLY1305_LIMB_MASK; h3 += c;
	c = h3 >> 26; h3 &= POLY1305_LIMB_MASK; h4 += c;
	c = h4 >> 26; h4 &= POLY1305_LIMB_MASK; h0 += c * 5;
	c = h0 >> 26; h0 &= POLY1305_LIMB_MASK; h1 += c;

	/* g = h + 5 - 2^130; use g if it did not borrow (h >= p) */
	g0 = h0 + 5; c = g0 >> 26; g0 &= POLY1305_LIMB_MASK;
	g1 = h1 + c; c = g1 >> 26; g1 &= POLY1305_LIMB_MASK;
	g2 = h2 + c; c = g2 >> 26; g2 &= POLY1305_LIMB_MASK;
	g3 = h3 + c; c = g3 >> 26; g3 &= POLY1305_LIMB_MASK;
	g4 = h4 + c - (1ULL << 26);
	mask = (g4 >> 63) - 1;		/* all ones when h >= p */
	h0 = (h0 & ~mask) | (g0 & mask);
	h1 = (h1 & ~mask) | (g1 & mask);
	h2 = (h2 & ~mask) | (g2 & mask);
	h3 = (h3 & ~mask) | (g3 & mask);
	h4 = (h4 & ~mask) | (g4 & mask);

	/* to 4 x 32 bits, then + pad mod 2^128 */
	h0 = (h0 | (h1 << 26)) & 0xffffffff;
	h1 = ((h1 >> 6) | (h2 << 20)) & 0xffffffff;
	h2 = ((h2 >> 12) | (h3 << 14)) & 0xffffffff;
	h3 = ((h3 >> 18) | (h4 << 8)) & 0xffffffff;
	f = h0 + st->pad[0];            ((__u32 *)tag)[0] = f;
	f = h1 + st->pad[1] + (f >> 32); ((__u32 *)tag)[1] = f;
	f = h2 + st->pad[2] + (f >> 32); ((__u32 *)tag)[2] = f;
	f = h3 + st->pad[3] + (f >> 32); ((__u32 *)tag)[3] = f;
}

/* The public name is an inline wrapper so a program that includes this
 * header without calling it gets no -Wunused-function error. */
static __always_inline void poly1305_final(struct poly1305_state *st, __u8 *tag)
{
	poly1305_final_impl(st, tag);
}
