/* SPDX-License-Identifier: GPL-2.0 */
/* Pure-BPF SHA-256 (FIPS 180-4), streaming: init / update / final.
 *
 * The state lives in caller-owned map memory (normally a one-slot per-CPU
 * array, see CRYPTBPF_PERCPU_SCRATCH): struct cryptbpf_sha256_ctx is 176 bytes.
 *
 *   struct cryptbpf_sha256_ctx *c = cryptbpf_scratch(&sha_scratch);   // map value
 *   sha256_init(c);
 *   sha256_update(c, buf, len);              // map memory, len bounded
 *   sha256_update_skb(c, skb, off, len);     // TC: bpf_skb_load_bytes
 *   sha256_update_xdp(c, xdp, off, len);     // XDP: bpf_xdp_load_bytes
 *   sha256_update_dynptr(c, &dptr, off, len);// any dynptr
 *   sha256_final(c, out);                    // 32 bytes, stack or map
 *
 * Update calls may be split at any byte boundary and any source offset.
 * Every function returns 0 or a negative errno; after an error the context
 * must be re-initialised. sha256_update() takes map memory only (it wraps it
 * in bpf_dynptr_from_mem()), and the verifier must know len fits the value.
 *
 * Kernel support: XDP, TC, tracepoint and SYSCALL programs; written for
 * kernels >= 6.1 (bpf_loop 5.17, dynptr helpers 5.19, global functions with
 * pointer arguments 5.12, bpf_xdp_load_bytes 5.18); no open-coded iterators,
 * no kfuncs. Compile with -g: the global sha256_compress() needs BTF.
 *
 * Verifier cost: sha256_compress() is checked once per program (~3.9k
 * instructions); each update/final call site adds ~100-300. Stack: 72 bytes
 * in the compression frame plus a small bpf_loop callback frame, below the
 * caller's own frame.
 *
 * Speed (6.18, BPF_PROG_TEST_RUN): ~180 ns per block, ~300 MB/s at 1500 B.
 * The compression function is hand-scheduled BPF assembly (see below)
 * because clang spills the eight working variables and the schedule to the
 * stack and roughly halves the throughput.
 */
#pragma once

#include "cryptbpf.bpf.h"

#define SHA256_BLOCK_SIZE  64
#define SHA256_DIGEST_SIZE 32

#ifndef EINVAL
#define EINVAL 22
#endif
#ifndef EFAULT
#define EFAULT 14
#endif

/* One message block. u32-typed so that the global function below gets an
 * aligned 64-byte memory argument; the bytes are the raw (big-endian) input. */
struct cryptbpf_sha256_block {
	__u32 w[16];
};

struct cryptbpf_sha256_ctx {
	__u32 h[8];        /* chaining value H0..H7 */
	__u64 total;       /* message bytes absorbed so far */
	__u32 buf_len;     /* bytes waiting in buf[0..64), always < 64 */
	__u32 _pad;
	/* Partial block. Only [0,64) holds data; [64,128) is verifier slack:
	 * partial reads write buf[bl .. bl+n) with bl and n each proven only
	 * to be < 64 by masks, so the verifier needs 127 addressable bytes. */
	__u8 buf[2 * SHA256_BLOCK_SIZE];
} __attribute__((aligned(8)));

/* ------------------------------------------------------------------------
 * Where update() reads from. The kind is a compile-time constant at every
 * call site (all callers are __always_inline), so only one branch is emitted:
 * a program never references a helper its type does not have.
 */
#ifndef CRYPTBPF_HASH_SRC
#define CRYPTBPF_HASH_SRC
enum hash_src_kind {
	HASH_SRC_DYNPTR = 0,   /* src is a struct bpf_dynptr * (map memory, ringbuf, ...) */
	HASH_SRC_SKB    = 1,   /* src is a struct __sk_buff * */
	HASH_SRC_XDP    = 2,   /* src is a struct xdp_md * */
};

static __always_inline long hash_src_read(int kind, void *src, __u32 off,
					  void *dst, __u32 n)
{
	if (kind == HASH_SRC_SKB)
		return bpf_skb_load_bytes(src, off, dst, n);
	if (kind == HASH_SRC_XDP)
		return bpf_xdp_load_bytes(src, off, dst, n);
	return bpf_dynptr_read(dst, n, src, off, 0);
}

/* A partial-block length n is in [1, block) at run time, but the verifier
 * must see a non-zero size for bpf_skb_load_bytes/bpf_xdp_load_bytes
 * (ARG_CONST_SIZE) and an upper bound. `n != 0` does not narrow the range on
 * older verifiers, and clang turns `n > 0` into `!= 0`, so map n to
 * [1, block] arithmetically instead (identity for the real values).
 * The empty asm hides n's range from clang, which would otherwise see that
 * the mask is an identity and drop it; the 6.1 verifier then cannot bound
 * n = min(64 - bl, len) and rejects the read ("invalid access to map value"). */
static __always_inline __u32 hash_partial_len(__u32 n, __u32 block)
{
	asm volatile("" : "+r"(n));
	return ((n - 1) & (block - 1)) + 1;
}
#endif /* CRYPTBPF_HASH_SRC */

/* ------------------------------------------------------------------------
 * Compression function: sha256_compress() (global C wrapper, NULL checks)
 * calls sha256_compress_asm() (static, naked, the 64 rounds).
 *
 * Global, because the verifier then checks it once per program rather than
 * at every call site: each call costs a handful of verified instructions.
 * Its pointer arguments are "maybe NULL" memory of sizeof(*ctx) and 64 bytes
 * to the verifier (which also checks that they are writable), hence the
 * NULL checks and the non-const-looking struct type.
 *
 * Hand-written assembly, because BPF has 10 usable registers and no rotate:
 *   - a..h live in r1..r8 for all 64 rounds, r0/r9 are the temporaries; the
 *     "registers" rotate by renaming (16 rounds = 2 full turns).
 *   - a..h are kept in the HIGH half of the 64-bit registers (v << 32):
 *     additions then wrap mod 2^32 for free, and x | x >> 32 puts a copy of
 *     x in both halves, so one right shift of that is a 32-bit rotate in
 *     the low half: Sigma(x) costs 10 instructions instead of 17.
 *   - the message schedule is a rolling 16-word window W[0..15] on this
 *     function's stack (r10-72 .. r10-12), computed in place in rounds
 *     16-63; r10-8 keeps ctx while r1 serves as a working variable.
 * ~3860 instructions, no branches, no helper calls.
 */
#define SHA256_W_0  "-72"
#define SHA256_W_1  "-68"
#define SHA256_W_2  "-64"
#define SHA256_W_3  "-60"
#define SHA256_W_4  "-56"
#define SHA256_W_5  "-52"
#define SHA256_W_6  "-48"
#define SHA256_W_7  "-44"
#define SHA256_W_8  "-40"
#define SHA256_W_9  "-36"
#define SHA256_W_10 "-32"
#define SHA256_W_11 "-28"
#define SHA256_W_12 "-24"
#define SHA256_W_13 "-20"
#define SHA256_W_14 "-16"
#define SHA256_W_15 "-12"
#define SHA256_W(j) "(r10 " SHA256_W_##j ")"

/* Rounds 0-15: r0 = W[j], already loaded and byte-swapped by the prologue. */
#define SHA256_W_LOAD(j, j1, j9, j14)					\
	"r0 = *(u32 *)" SHA256_W(j) "\n"

/* Rounds 16-63: W[j] += s0(W[j+1]) + W[j+9] + s1(W[j+14]) (indices mod 16),
 * left in r0. Works in the low half: x | x << 32 duplicates x, shifts of it
 * give rotates, (x << 32) >> (32 + n) gives the plain shift x >> n. */
#define SHA256_W_SCHED(j, j1, j9, j14)					\
	"r9 = *(u32 *)" SHA256_W(j1) "\n"				\
	"r0 = r9\n" "r0 <<= 32\n" "r9 |= r0\n"				\
	"r0 >>= 35\n"			/* x >> 3 */			\
	"r9 >>= 7\n"  "r0 ^= r9\n"	/* ror 7 */			\
	"r9 >>= 11\n" "r0 ^= r9\n"	/* ror 18 */			\
	"r9 = *(u32 *)" SHA256_W(j) "\n"  "r0 += r9\n"			\
	"r9 = *(u32 *)" SHA256_W(j9) "\n" "r0 += r9\n"			\
	"*(u32 *)" SHA256_W(j) " = r0\n"				\
	"r9 = *(u32 *)" SHA256_W(j14) "\n"				\
	"r0 = r9\n" "r0 <<= 32\n" "r9 |= r0\n"				\
	"r0 >>= 42\n"			/* x >> 10 */			\
	"r9 >>= 17\n" "r0 ^= r9\n"	/* ror 17 */			\
	"r9 >>= 2\n"  "r0 ^= r9\n"	/* ror 19 */			\
	"r9 = *(u32 *)" SHA256_W(j) "\n"  "r0 += r9\n"			\
	"*(u32 *)" SHA256_W(j) " = r0\n"

/* One round; r0 holds W[i] in its low half on entry. Updates d and h.
 * Ordered for latency, since the rounds are a dependency chain: e feeds
 * Sigma1 whose result goes into d (the next e) with one add, and likewise
 * Sigma0(a) is added last to h (the next a). The two shifts of each Sigma
 * that only need y = x:x run in parallel. ~7 cycles per round. */
#define SHA256_ROUND(a, b, c, d, e, f, g, h, k)				\
	"r0 += " #k "\n" "r0 <<= 32\n" #h " += r0\n"	/* h += W + K */	\
	"r9 = " #f "\n" "r9 ^= " #g "\n" "r9 &= " #e "\n" "r9 ^= " #g "\n"	\
	#h " += r9\n"					/* + Ch(e,f,g) */	\
	#d " += " #h "\n"						\
	"r9 = " #e "\n" "r9 >>= 32\n" "r9 |= " #e "\n"				\
	"r0 = r9\n" "r0 >>= 6\n" "r9 >>= 11\n" "r0 ^= r9\n"			\
	"r9 >>= 14\n" "r0 ^= r9\n" "r0 <<= 32\n"				\
	#d " += r0\n"					/* d += T1 */		\
	#h " += r0\n"					/* h = T1 */		\
	"r0 = " #a "\n" "r0 |= " #b "\n" "r0 &= " #c "\n"			\
	"r9 = " #a "\n" "r9 &= " #b "\n" "r0 |= r9\n"				\
	#h " += r0\n"					/* + Maj(a,b,c) */	\
	"r9 = " #a "\n" "r9 >>= 32\n" "r9 |= " #a "\n"				\
	"r0 = r9\n" "r0 >>= 2\n" "r9 >>= 13\n" "r0 ^= r9\n"			\
	"r9 >>= 9\n" "r0 ^= r9\n" "r0 <<= 32\n"				\
	#h " += r0\n"					/* + Sigma0(a) */

#define SHA256_16ROUNDS(KW, k0, k1, k2, k3, k4, k5, k6, k7,		\
			k8, k9, k10, k11, k12, k13, k14, k15)		\
	KW(0, 1, 9, 14)   SHA256_ROUND(r1, r2, r3, r4, r5, r6, r7, r8, k0)	\
	KW(1, 2, 10, 15)  SHA256_ROUND(r8, r1, r2, r3, r4, r5, r6, r7, k1)	\
	KW(2, 3, 11, 0)   SHA256_ROUND(r7, r8, r1, r2, r3, r4, r5, r6, k2)	\
	KW(3, 4, 12, 1)   SHA256_ROUND(r6, r7, r8, r1, r2, r3, r4, r5, k3)	\
	KW(4, 5, 13, 2)   SHA256_ROUND(r5, r6, r7, r8, r1, r2, r3, r4, k4)	\
	KW(5, 6, 14, 3)   SHA256_ROUND(r4, r5, r6, r7, r8, r1, r2, r3, k5)	\
	KW(6, 7, 15, 4)   SHA256_ROUND(r3, r4, r5, r6, r7, r8, r1, r2, k6)	\
	KW(7, 8, 0, 5)    SHA256_ROUND(r2, r3, r4, r5, r6, r7, r8, r1, k7)	\
	KW(8, 9, 1, 6)    SHA256_ROUND(r1, r2, r3, r4, r5, r6, r7, r8, k8)	\
	KW(9, 10, 2, 7)   SHA256_ROUND(r8, r1, r2, r3, r4, r5, r6, r7, k9)	\
	KW(10, 11, 3, 8)  SHA256_ROUND(r7, r8, r1, r2, r3, r4, r5, r6, k10)	\
	KW(11, 12, 4, 9)  SHA256_ROUND(r6, r7, r8, r1, r2, r3, r4, r5, k11)	\
	KW(12, 13, 5, 10) SHA256_ROUND(r5, r6, r7, r8, r1, r2, r3, r4, k12)	\
	KW(13, 14, 6, 11) SHA256_ROUND(r4, r5, r6, r7, r8, r1, r2, r3, k13)	\
	KW(14, 15, 7, 12) SHA256_ROUND(r3, r4, r5, r6, r7, r8, r1, r2, k14)	\
	KW(15, 0, 8, 13)  SHA256_ROUND(r2, r3, r4, r5, r6, r7, r8, r1, k15)

/* Prologue: W[j] = be32(blk[j]). Epilogue: H[k] += reg >> 32. */
#define SHA256_LOAD_W(j, off)						\
	"r0 = *(u32 *)(r2 + " #off ")\n" "r0 = be32 r0\n"		\
	"*(u32 *)" SHA256_W(j) " = r0\n"
#define SHA256_LOAD_H(reg, off)						\
	#reg " = *(u32 *)(r1 + " #off ")\n" #reg " <<= 32\n"
#define SHA256_STORE_H(reg, off)					\
	#reg " >>= 32\n" "r9 = *(u32 *)(r0 + " #off ")\n"		\
	#reg " += r9\n" "*(u32 *)(r0 + " #off ") = " #reg "\n"

/* The rounds. Naked with a (void) prototype: BTF gives naked functions no
 * parameter names and the kernel rejects a BTF FUNC with unnamed arguments,
 * so the arguments arrive in r1 (ctx) and r2 (blk) by convention and the
 * only caller is sha256_compress() below. Static: verified once, from there. */
static __attribute__((naked, noinline, used)) int sha256_compress_asm(void)
{
	asm volatile(
	"*(u64 *)(r10 -8) = r1\n"
	SHA256_LOAD_W(0, 0)   SHA256_LOAD_W(1, 4)   SHA256_LOAD_W(2, 8)
	SHA256_LOAD_W(3, 12)  SHA256_LOAD_W(4, 16)  SHA256_LOAD_W(5, 20)
	SHA256_LOAD_W(6, 24)  SHA256_LOAD_W(7, 28)  SHA256_LOAD_W(8, 32)
	SHA256_LOAD_W(9, 36)  SHA256_LOAD_W(10, 40) SHA256_LOAD_W(11, 44)
	SHA256_LOAD_W(12, 48) SHA256_LOAD_W(13, 52) SHA256_LOAD_W(14, 56)
	SHA256_LOAD_W(15, 60)
	SHA256_LOAD_H(r2, 4)  SHA256_LOAD_H(r3, 8)  SHA256_LOAD_H(r4, 12)
	SHA256_LOAD_H(r5, 16) SHA256_LOAD_H(r6, 20) SHA256_LOAD_H(r7, 24)
	SHA256_LOAD_H(r8, 28) SHA256_LOAD_H(r1, 0)
	SHA256_16ROUNDS(SHA256_W_LOAD,
		0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
		0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
		0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
		0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174)
	SHA256_16ROUNDS(SHA256_W_SCHED,
		0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
		0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
		0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
		0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967)
	SHA256_16ROUNDS(SHA256_W_SCHED,
		0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
		0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
		0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
		0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070)
	SHA256_16ROUNDS(SHA256_W_SCHED,
		0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
		0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
		0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
		0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2)
	"r0 = *(u64 *)(r10 -8)\n"
	SHA256_STORE_H(r1, 0)  SHA256_STORE_H(r2, 4)  SHA256_STORE_H(r3, 8)
	SHA256_STORE_H(r4, 12) SHA256_STORE_H(r5, 16) SHA256_STORE_H(r6, 20)
	SHA256_STORE_H(r7, 24) SHA256_STORE_H(r8, 28)
	"r0 = 0\n"
	"exit\n");
}

/* Compress one 64-byte block into ctx->h. Returns 0, or -EINVAL on NULL.
 * Global, so the verifier checks it (and the rounds) once per program. The
 * call clobbers r0-r5 as any call does; r6-r9 are callee-saved by the JIT. */
__noinline int sha256_compress(struct cryptbpf_sha256_ctx *ctx,
			       const struct cryptbpf_sha256_block *blk)
{
	register void *r1 asm("r1") = ctx;
	register const void *r2 asm("r2") = blk;
	register int r0 asm("r0");

	if (!ctx || !blk)
		return -EINVAL;
	asm volatile("call sha256_compress_asm"
		     : "=r"(r0), "+r"(r1), "+r"(r2)
		     : : "r3", "r4", "r5", "memory");
	return r0;
}

/* ------------------------------------------------------------------------
 * Streaming API.
 */
static __always_inline void sha256_init(struct cryptbpf_sha256_ctx *ctx)
{
	ctx->h[0] = 0x6a09e667; ctx->h[1] = 0xbb67ae85;
	ctx->h[2] = 0x3c6ef372; ctx->h[3] = 0xa54ff53a;
	ctx->h[4] = 0x510e527f; ctx->h[5] = 0x9b05688c;
	ctx->h[6] = 0x1f83d9ab; ctx->h[7] = 0x5be0cd19;
	ctx->total = 0;
	ctx->buf_len = 0;
}

/* bpf_loop() callback context; lives on the caller's stack. */
struct sha256_loop {
	struct cryptbpf_sha256_ctx *ctx;
	void *src;          /* see enum hash_src_kind */
	__u32 off;          /* source offset of the next block */
	int err;
};

/* Absorb the next whole block of the source. Dynptrs over writable memory
 * are hashed in place (bpf_dynptr_data); everything else is copied into
 * ctx->buf first. */
static __always_inline long sha256_absorb_block(struct sha256_loop *l, int kind)
{
	struct cryptbpf_sha256_ctx *ctx = l->ctx;
	const struct cryptbpf_sha256_block *blk = NULL;
	long err;

	if (kind == HASH_SRC_DYNPTR)
		blk = bpf_dynptr_data(l->src, l->off, SHA256_BLOCK_SIZE);
	if (!blk) {
		err = hash_src_read(kind, l->src, l->off, ctx->buf, SHA256_BLOCK_SIZE);
		if (err) {
			l->err = err;
			return 1;           /* stop bpf_loop */
		}
		blk = (const struct cryptbpf_sha256_block *)ctx->buf;
	}
	sha256_compress(ctx, blk);
	l->off += SHA256_BLOCK_SIZE;
	return 0;
}

/* One callback per source kind, so that each only names its own helper. */
static long sha256_loop_dynptr(__u32 i, void *l) { return sha256_absorb_block(l, HASH_SRC_DYNPTR); }
static long sha256_loop_skb(__u32 i, void *l) { return sha256_absorb_block(l, HASH_SRC_SKB); }
static long sha256_loop_xdp(__u32 i, void *l) { return sha256_absorb_block(l, HASH_SRC_XDP); }

static __always_inline int sha256_update_src(struct cryptbpf_sha256_ctx *ctx, int kind,
					     void *src, __u32 off, __u32 len)
{
	struct sha256_loop l = { .ctx = ctx, .src = src };
	__u32 bl = ctx->buf_len & (SHA256_BLOCK_SIZE - 1);   /* mask: bound for the verifier */
	__u32 n, nblocks;
	long err;

	if (!len)
		return 0;
	ctx->total += len;

	/* 1. Top up a partially filled buffer. */
	if (bl) {
		n = SHA256_BLOCK_SIZE - bl;
		if (n > len)
			n = len;
		err = hash_src_read(kind, src, off, ctx->buf + bl, hash_partial_len(n, SHA256_BLOCK_SIZE));
		if (err)
			return err;
		off += n;
		len -= n;
		if (bl + n < SHA256_BLOCK_SIZE) {
			ctx->buf_len = bl + n;
			return 0;
		}
		sha256_compress(ctx, (const struct cryptbpf_sha256_block *)ctx->buf);
	}

	/* 2. Whole blocks, one bpf_loop iteration each: the callback is verified
	 * once whatever len is (a bounded loop would be walked per iteration). */
	nblocks = len / SHA256_BLOCK_SIZE;
	if (nblocks) {
		l.off = off;
		if (kind == HASH_SRC_SKB)
			bpf_loop(nblocks, sha256_loop_skb, &l, 0);
		else if (kind == HASH_SRC_XDP)
			bpf_loop(nblocks, sha256_loop_xdp, &l, 0);
		else
			bpf_loop(nblocks, sha256_loop_dynptr, &l, 0);
		if (l.err)
			return l.err;
		off += nblocks * SHA256_BLOCK_SIZE;
	}

	/* 3. Keep the tail for the next call. */
	n = len & (SHA256_BLOCK_SIZE - 1);
	if (n) {
		err = hash_src_read(kind, src, off, ctx->buf, hash_partial_len(n, SHA256_BLOCK_SIZE));
		if (err)
			return err;
	}
	ctx->buf_len = n;
	return 0;
}

/* Hash len bytes of a dynptr starting at off. */
static __always_inline int sha256_update_dynptr(struct cryptbpf_sha256_ctx *ctx,
						const struct bpf_dynptr *src,
						__u32 off, __u32 len)
{
	return sha256_update_src(ctx, HASH_SRC_DYNPTR, (void *)src, off, len);
}

/* Hash len bytes of map memory (a map value or a global). The verifier must
 * know len <= the bytes left in that value: clamp it before calling.
 * Why a dynptr: inside the bpf_loop callback the verifier cannot bound
 * data + 64 * i against the caller's value size, whatever we mask with;
 * bpf_dynptr_from_mem() checks len once here, bpf_dynptr_data() at run time.
 * Not inlined: see CRYPTBPF_DYNPTR_FRAME in cryptbpf.bpf.h. */
static CRYPTBPF_DYNPTR_FRAME int sha256_update(struct cryptbpf_sha256_ctx *ctx,
					 const void *data, __u32 len)
{
	struct bpf_dynptr d;

	if (bpf_dynptr_from_mem((void *)data, len, 0, &d))
		return -EINVAL;
	return sha256_update_dynptr(ctx, &d, 0, len);
}

/* Hash skb bytes [off, off + len) (TC programs; any kernel >= 6.1). */
static __always_inline int sha256_update_skb(struct cryptbpf_sha256_ctx *ctx,
					     struct __sk_buff *skb,
					     __u32 off, __u32 len)
{
	return sha256_update_src(ctx, HASH_SRC_SKB, skb, off, len);
}

/* Hash XDP packet bytes [off, off + len) (XDP programs, kernel >= 5.18). */
static __always_inline int sha256_update_xdp(struct cryptbpf_sha256_ctx *ctx,
					     struct xdp_md *xdp,
					     __u32 off, __u32 len)
{
	return sha256_update_src(ctx, HASH_SRC_XDP, xdp, off, len);
}

/* Zero buf[bl+1 .. 64) with whole-word stores (bytes past buf_len are stale). */
static __always_inline void sha256_zero_after(struct cryptbpf_sha256_ctx *ctx, __u32 bl)
{
	__u64 *w = (__u64 *)ctx->buf;
	__u32 j0 = (bl >> 3) & 7, k = bl & 7;

	/* keep bytes 0..k of word j0 (little-endian), two shifts avoid << 64 */
	w[j0] &= ~((~0ULL << (8 * k)) << 8);
	/* words above j0: AND with 0 (branch-free; a plain `if` becomes a
	 * variable-length memset that clang then refuses to unroll) */
#pragma clang loop unroll(full)
	for (__s64 j = 0; j < 8; j++)
		w[j] &= ~(((__s64)j0 - j) >> 63);
}

/* Pad, compress the last block(s) and write the 32-byte digest to out
 * (stack or map memory). out may alias ctx->buf. ctx->h is consumed. */
static __always_inline int sha256_final(struct cryptbpf_sha256_ctx *ctx, __u8 *out)
{
	__u32 bl = ctx->buf_len & (SHA256_BLOCK_SIZE - 1);
	__u64 *w = (__u64 *)ctx->buf;

	ctx->buf[bl] = 0x80;
	sha256_zero_after(ctx, bl);
	if (bl >= SHA256_BLOCK_SIZE - 8) {
		sha256_compress(ctx, (const struct cryptbpf_sha256_block *)ctx->buf);
		sha256_zero_after(ctx, 0);
		ctx->buf[0] = 0;
	}
	w[7] = __builtin_bswap64(ctx->total << 3);   /* length in bits, big-endian */
	sha256_compress(ctx, (const struct cryptbpf_sha256_block *)ctx->buf);

	/* digest = big-endian H words: swap in place, one constant-size copy
	 * (see sha512_output() for why not per-byte shifted stores) */
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++)
		ctx->h[i] = __builtin_bswap32(ctx->h[i]);
	asm volatile("" ::: "memory");   /* copy from memory: keeps 8 words from being held live and spilled */
	__builtin_memcpy(out, ctx->h, SHA256_DIGEST_SIZE);
	return 0;
}
