/* SPDX-License-Identifier: GPL-2.0 */
/* Pure-BPF SHA-512 and SHA-384 (FIPS 180-4), streaming: init / update / final.
 *
 * Same shape as sha256.bpf.h (read that first): state in caller-owned map
 * memory, struct cryptbpf_sha512_ctx is 336 bytes; SHA-384 is SHA-512 with
 * another IV and a 48-byte output, so both share the context and the core.
 *
 *   sha512_init(c) or sha384_init(c);
 *   sha512_update(c, buf, len);  sha512_update_skb(c, skb, off, len);
 *   sha512_update_xdp(c, xdp, off, len);  sha512_update_dynptr(c, &d, off, len);
 *   sha512_final(c, out64) or sha384_final(c, out48);
 *
 * Messages are limited to 2^61 - 1 bytes (the 128-bit length is built from a
 * 64-bit byte count), far beyond anything BPF can feed.
 *
 * Verifier cost: sha512_compress() is checked once per program (~5.8k
 * instructions). Stack: 136 bytes in the compression frame (the 16-word
 * schedule), below the caller's frame. Speed (6.18): ~310 MB/s at 1500 B.
 */
#pragma once

#include "cryptbpf.bpf.h"
#include "sha256.bpf.h"    /* hash_src_read(), hash_partial_len(), errnos */

#define SHA512_BLOCK_SIZE  128
#define SHA512_DIGEST_SIZE 64
#define SHA384_DIGEST_SIZE 48

struct cryptbpf_sha512_block {
	__u64 w[16];
};

struct cryptbpf_sha512_ctx {
	__u64 h[8];        /* chaining value H0..H7 */
	__u64 total;       /* message bytes absorbed so far */
	__u32 buf_len;     /* bytes waiting in buf[0..128), always < 128 */
	__u32 _pad;
	/* [128,256) is verifier slack, as in struct cryptbpf_sha256_ctx */
	__u8 buf[2 * SHA512_BLOCK_SIZE];
} __attribute__((aligned(8)));

/* ------------------------------------------------------------------------
 * Compression function: same structure as sha256_compress_asm(), with 64-bit
 * words so no high-half trick is needed. A 64-bit rotate is x >> n | x << (64-n);
 * the three right shifts of one Sigma are done as successive shifts of a
 * single copy (14, +4, +23), and likewise the three left shifts, so each
 * Sigma needs only the two temporaries r0/r9 (14 instructions).
 * Stack: W[0..15] at r10-136 .. r10-16, saved ctx pointer at r10-8.
 * ~5800 instructions per 128-byte block.
 */
#define SHA512_W_0  "-136"
#define SHA512_W_1  "-128"
#define SHA512_W_2  "-120"
#define SHA512_W_3  "-112"
#define SHA512_W_4  "-104"
#define SHA512_W_5  "-96"
#define SHA512_W_6  "-88"
#define SHA512_W_7  "-80"
#define SHA512_W_8  "-72"
#define SHA512_W_9  "-64"
#define SHA512_W_10 "-56"
#define SHA512_W_11 "-48"
#define SHA512_W_12 "-40"
#define SHA512_W_13 "-32"
#define SHA512_W_14 "-24"
#define SHA512_W_15 "-16"
#define SHA512_W(j) "(r10 " SHA512_W_##j ")"

#define SHA512_W_LOAD(j, j1, j9, j14)					\
	"r0 = *(u64 *)" SHA512_W(j) "\n"

/* W[j] += s0(W[j+1]) + W[j+9] + s1(W[j+14]); s0 = ror1^ror8^shr7,
 * s1 = ror19^ror61^shr6. Leaves W[j] in r0. */
#define SHA512_W_SCHED(j, j1, j9, j14)					\
	"r9 = *(u64 *)" SHA512_W(j1) "\n"				\
	"r9 >>= 1\n" "r0 = r9\n" "r9 >>= 6\n" "r0 ^= r9\n"		\
	"r9 >>= 1\n" "r0 ^= r9\n"					\
	"r9 = *(u64 *)" SHA512_W(j1) "\n"				\
	"r9 <<= 56\n" "r0 ^= r9\n" "r9 <<= 7\n" "r0 ^= r9\n"		\
	"r9 = *(u64 *)" SHA512_W(j) "\n"  "r0 += r9\n"			\
	"r9 = *(u64 *)" SHA512_W(j9) "\n" "r0 += r9\n"			\
	"*(u64 *)" SHA512_W(j) " = r0\n"				\
	"r9 = *(u64 *)" SHA512_W(j14) "\n"				\
	"r9 >>= 6\n" "r0 = r9\n" "r9 >>= 13\n" "r0 ^= r9\n"		\
	"r9 >>= 42\n" "r0 ^= r9\n"					\
	"r9 = *(u64 *)" SHA512_W(j14) "\n"				\
	"r9 <<= 3\n" "r0 ^= r9\n" "r9 <<= 42\n" "r0 ^= r9\n"		\
	"r9 = *(u64 *)" SHA512_W(j) "\n"  "r0 += r9\n"			\
	"*(u64 *)" SHA512_W(j) " = r0\n"

/* One round; r0 holds W[i] on entry. Updates d and h. */
#define SHA512_ROUND(a, b, c, d, e, f, g, h, k)				\
	"r9 = " #k " ll\n" "r0 += r9\n" #h " += r0\n"	/* h += W + K */	\
	"r9 = " #f "\n" "r9 ^= " #g "\n" "r9 &= " #e "\n" "r9 ^= " #g "\n"	\
	#h " += r9\n"					/* + Ch(e,f,g) */	\
	"r9 = " #e "\n" "r9 >>= 14\n" "r0 = r9\n" "r9 >>= 4\n" "r0 ^= r9\n"	\
	"r9 >>= 23\n" "r0 ^= r9\n"						\
	"r9 = " #e "\n" "r9 <<= 23\n" "r0 ^= r9\n" "r9 <<= 23\n" "r0 ^= r9\n"	\
	"r9 <<= 4\n" "r0 ^= r9\n"						\
	#h " += r0\n"					/* + Sigma1(e) = T1 */	\
	#d " += " #h "\n"				/* d += T1 */		\
	"r9 = " #a "\n" "r9 >>= 28\n" "r0 = r9\n" "r9 >>= 6\n" "r0 ^= r9\n"	\
	"r9 >>= 5\n" "r0 ^= r9\n"						\
	"r9 = " #a "\n" "r9 <<= 25\n" "r0 ^= r9\n" "r9 <<= 5\n" "r0 ^= r9\n"	\
	"r9 <<= 6\n" "r0 ^= r9\n"						\
	#h " += r0\n"					/* + Sigma0(a) */	\
	"r0 = " #a "\n" "r0 |= " #b "\n" "r0 &= " #c "\n"			\
	"r9 = " #a "\n" "r9 &= " #b "\n" "r0 |= r9\n"				\
	#h " += r0\n"					/* + Maj(a,b,c) */

#define SHA512_16ROUNDS(KW, k0, k1, k2, k3, k4, k5, k6, k7,		\
			k8, k9, k10, k11, k12, k13, k14, k15)		\
	KW(0, 1, 9, 14)   SHA512_ROUND(r1, r2, r3, r4, r5, r6, r7, r8, k0)	\
	KW(1, 2, 10, 15)  SHA512_ROUND(r8, r1, r2, r3, r4, r5, r6, r7, k1)	\
	KW(2, 3, 11, 0)   SHA512_ROUND(r7, r8, r1, r2, r3, r4, r5, r6, k2)	\
	KW(3, 4, 12, 1)   SHA512_ROUND(r6, r7, r8, r1, r2, r3, r4, r5, k3)	\
	KW(4, 5, 13, 2)   SHA512_ROUND(r5, r6, r7, r8, r1, r2, r3, r4, k4)	\
	KW(5, 6, 14, 3)   SHA512_ROUND(r4, r5, r6, r7, r8, r1, r2, r3, k5)	\
	KW(6, 7, 15, 4)   SHA512_ROUND(r3, r4, r5, r6, r7, r8, r1, r2, k6)	\
	KW(7, 8, 0, 5)    SHA512_ROUND(r2, r3, r4, r5, r6, r7, r8, r1, k7)	\
	KW(8, 9, 1, 6)    SHA512_ROUND(r1, r2, r3, r4, r5, r6, r7, r8, k8)	\
	KW(9, 10, 2, 7)   SHA512_ROUND(r8, r1, r2, r3, r4, r5, r6, r7, k9)	\
	KW(10, 11, 3, 8)  SHA512_ROUND(r7, r8, r1, r2, r3, r4, r5, r6, k10)	\
	KW(11, 12, 4, 9)  SHA512_ROUND(r6, r7, r8, r1, r2, r3, r4, r5, k11)	\
	KW(12, 13, 5, 10) SHA512_ROUND(r5, r6, r7, r8, r1, r2, r3, r4, k12)	\
	KW(13, 14, 6, 11) SHA512_ROUND(r4, r5, r6, r7, r8, r1, r2, r3, k13)	\
	KW(14, 15, 7, 12) SHA512_ROUND(r3, r4, r5, r6, r7, r8, r1, r2, k14)	\
	KW(15, 0, 8, 13)  SHA512_ROUND(r2, r3, r4, r5, r6, r7, r8, r1, k15)

#define SHA512_LOAD_W(j, off)						\
	"r0 = *(u64 *)(r2 + " #off ")\n" "r0 = be64 r0\n"		\
	"*(u64 *)" SHA512_W(j) " = r0\n"
#define SHA512_LOAD_H(reg, off)						\
	#reg " = *(u64 *)(r1 + " #off ")\n"
#define SHA512_STORE_H(reg, off)					\
	"r9 = *(u64 *)(r0 + " #off ")\n"				\
	#reg " += r9\n" "*(u64 *)(r0 + " #off ") = " #reg "\n"

/* r1 = ctx, r2 = blk; see sha256_compress_asm() for why (void) and naked. */
static __attribute__((naked, noinline, used)) int sha512_compress_asm(void)
{
	asm volatile(
	"*(u64 *)(r10 -8) = r1\n"
	SHA512_LOAD_W(0, 0)    SHA512_LOAD_W(1, 8)    SHA512_LOAD_W(2, 16)
	SHA512_LOAD_W(3, 24)   SHA512_LOAD_W(4, 32)   SHA512_LOAD_W(5, 40)
	SHA512_LOAD_W(6, 48)   SHA512_LOAD_W(7, 56)   SHA512_LOAD_W(8, 64)
	SHA512_LOAD_W(9, 72)   SHA512_LOAD_W(10, 80)  SHA512_LOAD_W(11, 88)
	SHA512_LOAD_W(12, 96)  SHA512_LOAD_W(13, 104) SHA512_LOAD_W(14, 112)
	SHA512_LOAD_W(15, 120)
	SHA512_LOAD_H(r2, 8)   SHA512_LOAD_H(r3, 16)  SHA512_LOAD_H(r4, 24)
	SHA512_LOAD_H(r5, 32)  SHA512_LOAD_H(r6, 40)  SHA512_LOAD_H(r7, 48)
	SHA512_LOAD_H(r8, 56)  SHA512_LOAD_H(r1, 0)
	SHA512_16ROUNDS(SHA512_W_LOAD,
		0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
		0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
		0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
		0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694)
	SHA512_16ROUNDS(SHA512_W_SCHED,
		0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
		0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
		0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
		0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70)
	SHA512_16ROUNDS(SHA512_W_SCHED,
		0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
		0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
		0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
		0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8)
	SHA512_16ROUNDS(SHA512_W_SCHED,
		0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
		0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
		0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
		0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b)
	SHA512_16ROUNDS(SHA512_W_SCHED,
		0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
		0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
		0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
		0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817)
	"r0 = *(u64 *)(r10 -8)\n"
	SHA512_STORE_H(r1, 0)  SHA512_STORE_H(r2, 8)  SHA512_STORE_H(r3, 16)
	SHA512_STORE_H(r4, 24) SHA512_STORE_H(r5, 32) SHA512_STORE_H(r6, 40)
	SHA512_STORE_H(r7, 48) SHA512_STORE_H(r8, 56)
	"r0 = 0\n"
	"exit\n");
}

/* Compress one 128-byte block into ctx->h. Global: verified once. */
__noinline int sha512_compress(struct cryptbpf_sha512_ctx *ctx,
			       const struct cryptbpf_sha512_block *blk)
{
	register void *r1 asm("r1") = ctx;
	register const void *r2 asm("r2") = blk;
	register int r0 asm("r0");

	if (!ctx || !blk)
		return -EINVAL;
	asm volatile("call sha512_compress_asm"
		     : "=r"(r0), "+r"(r1), "+r"(r2)
		     : : "r3", "r4", "r5", "memory");
	return r0;
}

/* ------------------------------------------------------------------------
 * Streaming API (mirrors sha256.bpf.h).
 */
static __always_inline void sha512_init(struct cryptbpf_sha512_ctx *ctx)
{
	ctx->h[0] = 0x6a09e667f3bcc908ULL; ctx->h[1] = 0xbb67ae8584caa73bULL;
	ctx->h[2] = 0x3c6ef372fe94f82bULL; ctx->h[3] = 0xa54ff53a5f1d36f1ULL;
	ctx->h[4] = 0x510e527fade682d1ULL; ctx->h[5] = 0x9b05688c2b3e6c1fULL;
	ctx->h[6] = 0x1f83d9abfb41bd6bULL; ctx->h[7] = 0x5be0cd19137e2179ULL;
	ctx->total = 0;
	ctx->buf_len = 0;
}

static __always_inline void sha384_init(struct cryptbpf_sha512_ctx *ctx)
{
	ctx->h[0] = 0xcbbb9d5dc1059ed8ULL; ctx->h[1] = 0x629a292a367cd507ULL;
	ctx->h[2] = 0x9159015a3070dd17ULL; ctx->h[3] = 0x152fecd8f70e5939ULL;
	ctx->h[4] = 0x67332667ffc00b31ULL; ctx->h[5] = 0x8eb44a8768581511ULL;
	ctx->h[6] = 0xdb0c2e0d64f98fa7ULL; ctx->h[7] = 0x47b5481dbefa4fa4ULL;
	ctx->total = 0;
	ctx->buf_len = 0;
}

struct sha512_loop {
	struct cryptbpf_sha512_ctx *ctx;
	void *src;
	__u32 off;
	int err;
};

static __always_inline long sha512_absorb_block(struct sha512_loop *l, int kind)
{
	struct cryptbpf_sha512_ctx *ctx = l->ctx;
	const struct cryptbpf_sha512_block *blk = NULL;
	long err;

	if (kind == HASH_SRC_DYNPTR)
		blk = bpf_dynptr_data(l->src, l->off, SHA512_BLOCK_SIZE);
	if (!blk) {
		err = hash_src_read(kind, l->src, l->off, ctx->buf, SHA512_BLOCK_SIZE);
		if (err) {
			l->err = err;
			return 1;
		}
		blk = (const struct cryptbpf_sha512_block *)ctx->buf;
	}
	sha512_compress(ctx, blk);
	l->off += SHA512_BLOCK_SIZE;
	return 0;
}

static long sha512_loop_dynptr(__u32 i, void *l) { return sha512_absorb_block(l, HASH_SRC_DYNPTR); }
static long sha512_loop_skb(__u32 i, void *l) { return sha512_absorb_block(l, HASH_SRC_SKB); }
static long sha512_loop_xdp(__u32 i, void *l) { return sha512_absorb_block(l, HASH_SRC_XDP); }

static __always_inline int sha512_update_src(struct cryptbpf_sha512_ctx *ctx, int kind,
					     void *src, __u32 off, __u32 len)
{
	struct sha512_loop l = { .ctx = ctx, .src = src };
	__u32 bl = ctx->buf_len & (SHA512_BLOCK_SIZE - 1);   /* mask: bound for the verifier */
	__u32 n, nblocks;
	long err;

	if (!len)
		return 0;
	ctx->total += len;

	if (bl) {
		n = SHA512_BLOCK_SIZE - bl;
		if (n > len)
			n = len;
		err = hash_src_read(kind, src, off, ctx->buf + bl,
				    hash_partial_len(n, SHA512_BLOCK_SIZE));
		if (err)
			return err;
		off += n;
		len -= n;
		if (bl + n < SHA512_BLOCK_SIZE) {
			ctx->buf_len = bl + n;
			return 0;
		}
		sha512_compress(ctx, (const struct cryptbpf_sha512_block *)ctx->buf);
	}

	nblocks = len / SHA512_BLOCK_SIZE;
	if (nblocks) {
		l.off = off;
		if (kind == HASH_SRC_SKB)
			bpf_loop(nblocks, sha512_loop_skb, &l, 0);
		else if (kind == HASH_SRC_XDP)
			bpf_loop(nblocks, sha512_loop_xdp, &l, 0);
		else
			bpf_loop(nblocks, sha512_loop_dynptr, &l, 0);
		if (l.err)
			return l.err;
		off += nblocks * SHA512_BLOCK_SIZE;
	}

	n = len & (SHA512_BLOCK_SIZE - 1);
	if (n) {
		err = hash_src_read(kind, src, off, ctx->buf,
				    hash_partial_len(n, SHA512_BLOCK_SIZE));
		if (err)
			return err;
	}
	ctx->buf_len = n;
	return 0;
}

static __always_inline int sha512_update_dynptr(struct cryptbpf_sha512_ctx *ctx,
						const struct bpf_dynptr *src,
						__u32 off, __u32 len)
{
	return sha512_update_src(ctx, HASH_SRC_DYNPTR, (void *)src, off, len);
}

/* Map memory; the verifier must know len fits the value (clamp first).
 * Not inlined: see CRYPTBPF_DYNPTR_FRAME in cryptbpf.bpf.h. */
static CRYPTBPF_DYNPTR_FRAME int sha512_update(struct cryptbpf_sha512_ctx *ctx,
					 const void *data, __u32 len)
{
	struct bpf_dynptr d;

	if (bpf_dynptr_from_mem((void *)data, len, 0, &d))
		return -EINVAL;
	return sha512_update_dynptr(ctx, &d, 0, len);
}

static __always_inline int sha512_update_skb(struct cryptbpf_sha512_ctx *ctx,
					     struct __sk_buff *skb,
					     __u32 off, __u32 len)
{
	return sha512_update_src(ctx, HASH_SRC_SKB, skb, off, len);
}

static __always_inline int sha512_update_xdp(struct cryptbpf_sha512_ctx *ctx,
					     struct xdp_md *xdp,
					     __u32 off, __u32 len)
{
	return sha512_update_src(ctx, HASH_SRC_XDP, xdp, off, len);
}

/* Zero buf[bl+1 .. 128), see sha256_zero_after(). */
static __always_inline void sha512_zero_after(struct cryptbpf_sha512_ctx *ctx, __u32 bl)
{
	__u64 *w = (__u64 *)ctx->buf;
	__u32 j0 = (bl >> 3) & 15, k = bl & 7;

	w[j0] &= ~((~0ULL << (8 * k)) << 8);
#pragma clang loop unroll(full)
	for (__s64 j = 0; j < 16; j++)
		w[j] &= ~(((__s64)j0 - j) >> 63);
}

/* Padding and last compression(s); leaves the digest words in ctx->h. */
static __always_inline void sha512_finish(struct cryptbpf_sha512_ctx *ctx)
{
	__u32 bl = ctx->buf_len & (SHA512_BLOCK_SIZE - 1);
	__u64 *w = (__u64 *)ctx->buf;

	ctx->buf[bl] = 0x80;
	sha512_zero_after(ctx, bl);
	if (bl >= SHA512_BLOCK_SIZE - 16) {
		sha512_compress(ctx, (const struct cryptbpf_sha512_block *)ctx->buf);
		sha512_zero_after(ctx, 0);
		ctx->buf[0] = 0;
	}
	/* 128-bit big-endian length in bits */
	w[14] = __builtin_bswap64(ctx->total >> 61);
	w[15] = __builtin_bswap64(ctx->total << 3);
	sha512_compress(ctx, (const struct cryptbpf_sha512_block *)ctx->buf);
}

/* Digest bytes = big-endian H words: swap in place, then one constant-size
 * copy (byte-wise unless clang can see that out is aligned). Stores of
 * shifted bytes instead make clang keep dozens of shift counts live and
 * spill them, which cost ~350 bytes of stack in a program with both finals. */
static __always_inline void sha512_output(struct cryptbpf_sha512_ctx *ctx,
					  __u8 *out, const __u32 len)
{
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++)
		ctx->h[i] = __builtin_bswap64(ctx->h[i]);
	asm volatile("" ::: "memory");   /* copy from memory: keeps 8 words from being held live and spilled */
	__builtin_memcpy(out, ctx->h, len);
}

/* 64-byte digest to out (stack or map memory; may alias ctx->buf). */
static __always_inline int sha512_final(struct cryptbpf_sha512_ctx *ctx, __u8 *out)
{
	sha512_finish(ctx);
	sha512_output(ctx, out, SHA512_DIGEST_SIZE);
	return 0;
}

/* 48-byte digest; ctx must have been set up by sha384_init(). */
static __always_inline int sha384_final(struct cryptbpf_sha512_ctx *ctx, __u8 *out)
{
	sha512_finish(ctx);
	sha512_output(ctx, out, SHA384_DIGEST_SIZE);
	return 0;
}
