/* SPDX-License-Identifier: GPL-2.0 */
/* ChaCha20-Poly1305 AEAD (RFC 8439 section 2.8) in pure BPF.
 *
 * Usable from XDP, TC, tracepoint and SYSCALL programs (bpf_loop, 5.17+;
 * the XDP variants need bpf_xdp_{load,store}_bytes, 5.18+). bpf_crypto has
 * no AEAD and cannot be called from tracepoints; this can.
 *
 * The caller provides one per-CPU map value of the context type:
 *
 *     CRYPTBPF_PERCPU_SCRATCH(aead_scratch, struct chacha20_poly1305_ctx);
 *     struct chacha20_poly1305_ctx *c = cryptbpf_scratch(&aead_scratch);
 *
 *     // map memory: ciphertext to dst, 16-byte tag to `tag`
 *     chacha20_poly1305_seal_mem(c, key, nonce, aad, aad_len, src, dst, len, tag);
 *     err = chacha20_poly1305_open_mem(c, key, nonce, aad, aad_len, src, dst, len, tag);
 *
 *     // packets: ciphertext at dst_off, tag right after it (dst_off + len);
 *     // open reads the tag at src_off + len. Make room first (adjust_room).
 *     chacha20_poly1305_seal_skb(c, key, nonce, aad, aad_len, skb, off, off, len);
 *     err = chacha20_poly1305_open_skb(c, key, nonce, aad, aad_len, skb, off, off, len);
 *
 * open returns -EBADMSG (-74) when the tag does not match; the tag is
 * compared in constant time and nothing is decrypted (dst is not written)
 * unless it matches. Other errors: -E2BIG (len > CRYPTBPF_MSG_MAX or aad_len >
 * CHACHA20_POLY1305_AAD_MAX), -EFAULT (packet offsets out of range).
 *
 * Contracts (verifier bounds):
 *  - key (32 B), nonce (12 B): map memory or stack.
 *  - aad: map memory with >= CHACHA20_POLY1305_AAD_MAX readable bytes, even
 *    when aad_len is 0. For a packet header as AAD, bpf_skb_load_bytes() it
 *    into map memory first.
 *  - src/dst of the _mem variants: map memory with >= CRYPTBPF_MSG_MAX bytes.
 *  - NONCE MISUSE IS THE CALLER'S PROBLEM: a (key, nonce) pair must never
 *    seal two different messages (it reveals the Poly1305 key and the XOR of
 *    the plaintexts). Use a per-key counter or 96 random bits per message.
 *  - The context holds key material after a call; it is per-CPU scratch,
 *    never exposed, but callers that care can memset it.
 */
#pragma once

#include "cryptbpf.bpf.h"
#include "ct.bpf.h"
#include "chacha20.bpf.h"
#include "poly1305.bpf.h"

#ifndef CHACHA20_POLY1305_AAD_MAX
#define CHACHA20_POLY1305_AAD_MAX 256
#endif
_Static_assert(CHACHA20_POLY1305_AAD_MAX % 64 == 0, "AAD_MAX: multiple of 64");

#define CHACHA20_POLY1305_TAG_SIZE 16
#define CHACHA20_POLY1305_EBADMSG  74

struct chacha20_poly1305_ctx {
	struct chacha20_state cc;	/* key, nonce, counter, bounce buffer */
	struct poly1305_state mac;
	__u8 tag[16];			/* computed tag */
	__u8 expected[16];		/* received tag (open) */
	__u64 lens[2];			/* final block: le64(aad_len) || le64(len) */
};					/* 480 bytes */
_Static_assert(sizeof(struct chacha20_poly1305_ctx) ==
	       sizeof(struct chacha20_state) + sizeof(struct poly1305_state) + 48, "layout");

/* bpf_loop() context (caller's stack); see struct chacha20_io. */
struct chacha20_poly1305_io {
	struct chacha20_io c;
	struct chacha20_poly1305_ctx *ctx;
};

/* ---- MAC helpers ---- */

/* MAC the first n (1..CHACHA20_PKT_CHUNK) bytes of cc.blk, zero-padded to
 * 16 bytes: full chunks with the 8-block routine; the last chunk in 64-byte
 * blocks, its partial block zero-padded in place. */
static __always_inline void cc20p1305_mac_buf(struct chacha20_poly1305_ctx *ctx, __u32 n)
{
	if (n == CHACHA20_PKT_CHUNK) {	/* every chunk but the last */
		poly1305_blocks_x8(&ctx->mac, ctx->cc.blk);
		poly1305_blocks_x8(&ctx->mac, ctx->cc.blk + 128);
		return;
	}
#pragma unroll
	for (__u32 j = 0; j < CHACHA20_PKT_CHUNK / 64; j++) {
		__u8 *b = ctx->cc.blk + j * 64;
		__u32 m = n - j * 64;

		if (j * 64 >= n)
			break;
		if (m < 64) {
			chacha20_zero_from(b, m);
			poly1305_blocks_upto4(&ctx->mac, b, (m + 15) / 16);
			break;	/* verifier: it cannot tell this was the last one */
		}
		poly1305_blocks_x4(&ctx->mac, b);
	}
}

/* bpf_loop body: MAC 128 bytes of map memory, or one packet chunk. */
static __always_inline long cc20p1305_mac_body(__u64 idx, struct chacha20_poly1305_io *io,
					       int kind)
{
	struct chacha20_poly1305_ctx *ctx = io->ctx;
	__u32 n;

	if (kind == CHACHA20_IO_MEM) {
		__u64 pos = idx * 128;

		barrier_var(pos);
		/* verifier: bound the unknown index (6.1 verifies a
		 * bpf_loop callback once, for any idx) */
		if (pos > CRYPTBPF_MSG_MAX - 128)
			return 1;
		poly1305_blocks_x8(&ctx->mac, io->c.src + pos);
		return 0;
	}
	n = chacha20_pkt_chunk_len(&io->c, idx);
	if (chacha20_io_load(&io->c, kind, idx * CHACHA20_PKT_CHUNK, ctx->cc.blk, n))
		return 1;
	cc20p1305_mac_buf(ctx, n);
	return 0;
}

static long cc20p1305_mac_mem_cb(__u64 idx, void *io)
{
	return cc20p1305_mac_body(idx, io, CHACHA20_IO_MEM);
}

static long cc20p1305_mac_skb_cb(__u64 idx, void *io)
{
	return cc20p1305_mac_body(idx, io, CHACHA20_IO_SKB);
}

static long cc20p1305_mac_xdp_cb(__u64 idx, void *io)
{
	return cc20p1305_mac_body(idx, io, CHACHA20_IO_XDP);
}

/* MAC the last n (1..63) bytes at src (64 readable bytes), zero-padded to
 * 16 bytes: copied to cc.blk with masked words (see chacha20_xor_tail_words). */
static __always_inline void cc20p1305_mac_tail(struct chacha20_poly1305_ctx *ctx,
					       const __u8 *src, __u32 n)
{
#pragma unroll
	for (__u32 k = 0; k < 8; k++)
		((__u64 *)ctx->cc.blk)[k] = ((const __u64 *)src)[k] & chacha20_tail_mask(n, k);
	poly1305_blocks_upto4(&ctx->mac, ctx->cc.blk, (n + 15) / 16);
}

/* Absorb c.len bytes from c.src / c.src_off, zero-padded to 16 bytes. */
static __always_inline int cc20p1305_mac_region(struct chacha20_poly1305_io *io,
						int kind)
{
	struct chacha20_poly1305_ctx *ctx = io->ctx;
	__u32 full = io->c.len / 128, n = io->c.len & 63;
	__u64 pos = (__u64)full * 128;
	long ret;

	if (io->c.len > CRYPTBPF_MSG_MAX)
		return -7;
	if (kind != CHACHA20_IO_MEM) {
		full = (io->c.len + CHACHA20_PKT_CHUNK - 1) / CHACHA20_PKT_CHUNK;
		if (kind == CHACHA20_IO_SKB)
			ret = bpf_loop(full, cc20p1305_mac_skb_cb, io, 0);
		else
			ret = bpf_loop(full, cc20p1305_mac_xdp_cb, io, 0);
		return ret == full ? 0 : -14;
	}
	ret = bpf_loop(full, cc20p1305_mac_mem_cb, io, 0);
	if (ret != full)
		return -14;
	if (io->c.len & 64) {	/* one more 64-byte block */
		barrier_var(pos);
		if (pos > CRYPTBPF_MSG_MAX - 64)	/* verifier */
			return -7;
		poly1305_blocks_x4(&ctx->mac, io->c.src + pos);
		pos += 64;
	}
	if (!n)
		return 0;
	barrier_var(pos);
	if (pos > CRYPTBPF_MSG_MAX - 64)	/* verifier: tail stays inside the buffer */
		return -7;
	cc20p1305_mac_tail(ctx, io->c.src + pos, n);
	return 0;
}

/* ---- seal: encrypt, then MAC the ciphertext, chunk by chunk ---- */

/* 64-byte block `blk` of map memory: encrypt src -> dst, MAC dst. */
static __always_inline int cc20p1305_seal_mem_block(struct chacha20_poly1305_io *io, __u32 blk)
{
	__u64 pos = (__u64)blk * 64;

	barrier_var(pos);
	if (pos > CRYPTBPF_MSG_MAX - 64)	/* verifier, as in chacha20_mem_block */
		return -1;
	chacha20_xor_block(&io->ctx->cc, io->c.ctr + blk, io->c.src + pos, io->c.dst + pos);
	poly1305_blocks_x4(&io->ctx->mac, io->c.dst + pos);
	return 0;
}

/* 128 bytes per call: two blocks, one 8-block MAC call (fewer state round
 * trips; measured ~15% faster than 64 bytes per call). The out-of-line
 * block function keeps caller + callback + callee within 512 bytes. */
static long cc20p1305_seal_mem_cb(__u64 idx, void *ctx)
{
	struct chacha20_poly1305_io *io = ctx;
	__u64 pos = idx * 128;

	barrier_var(pos);
	if (pos > CRYPTBPF_MSG_MAX - 128)
		return 1;
	chacha20_xor_block(&io->ctx->cc, io->c.ctr + 2 * idx, io->c.src + pos, io->c.dst + pos);
	chacha20_xor_block(&io->ctx->cc, io->c.ctr + 2 * idx + 1, io->c.src + pos + 64,
			   io->c.dst + pos + 64);
	poly1305_blocks_x8(&io->ctx->mac, io->c.dst + pos);
	return 0;
}

static __always_inline long cc20p1305_seal_pkt_body(__u64 idx, struct chacha20_poly1305_io *io,
						    int kind)
{
	int n = chacha20_pkt_chunk(&io->c, kind, idx);

	if (n < 0)
		return 1;
	cc20p1305_mac_buf(io->ctx, n);
	return 0;
}

static long cc20p1305_seal_skb_cb(__u64 idx, void *io)
{
	return cc20p1305_seal_pkt_body(idx, io, CHACHA20_IO_SKB);
}

static long cc20p1305_seal_xdp_cb(__u64 idx, void *io)
{
	return cc20p1305_seal_pkt_body(idx, io, CHACHA20_IO_XDP);
}

/* blk = keystream on entry; leaves blk = ciphertext zero-padded past n and
 * merges the n ciphertext bytes into dst. Out of line: its ~160 bytes of
 * mask spills must not sit on the same call chain as chacha20_xor_block. */
static __noinline void cc20p1305_tail_words(__u8 *dst, const __u8 *src, __u8 *blk, __u32 n)
{
	chacha20_xor_tail_words(blk, src, blk, n);
	chacha20_zero_from(blk, n);
	chacha20_merge_tail_words(dst, blk, n);
}

/* Last len % 64 bytes of map memory: encrypt into the bounce buffer, zero
 * what lies past the message (keystream), merge into dst with masked words,
 * MAC the padded blocks. Out of line to keep the caller's frame small
 * (verifier: combined stack of the call chain <= 512 bytes). */
static __noinline int cc20p1305_seal_mem_tail(struct chacha20_poly1305_io *io)
{
	struct chacha20_poly1305_ctx *ctx = io->ctx;
	__u32 full = io->c.len / 64, n = io->c.len & 63;
	__u64 pos = (__u64)full * 64;
	__u8 *blk = ctx->cc.blk;

	if (!n)
		return 0;
	barrier_var(pos);
	if (pos > CRYPTBPF_MSG_MAX - 64)	/* verifier */
		return -7;
	__builtin_memset(blk, 0, 64);
	chacha20_xor_block(&ctx->cc, io->c.ctr + full, blk, blk);
	cc20p1305_tail_words(io->c.dst + pos, io->c.src + pos, blk, n);
	poly1305_blocks_upto4(&ctx->mac, blk, (n + 15) / 16);
	return 0;
}

/* ---- shared steps ---- */

/* Poly1305 key = first 32 bytes of keystream block 0. */
static __noinline void cc20p1305_keysetup(struct chacha20_poly1305_ctx *ctx,
					  const __u8 *key, const __u8 *nonce)
{
	chacha20_init(&ctx->cc, key, nonce, 0);
	__builtin_memset(ctx->cc.blk, 0, 64);
	chacha20_xor_block(&ctx->cc, 0, ctx->cc.blk, ctx->cc.blk);
	poly1305_init(&ctx->mac, ctx->cc.blk);
	ctx->cc.counter = 1;
}

/* MAC the AAD (map memory, len <= CHACHA20_POLY1305_AAD_MAX), zero-padded
 * to 16 bytes. Direct calls, no bpf_loop: the AAD is small and bounded,
 * and a callback would add a frame to the chain. */
static __noinline int cc20p1305_mac_aad(struct chacha20_poly1305_ctx *ctx,
					const __u8 *aad, __u32 len)
{
	__u32 n = len & 63;
	__u64 pos = len & ~63U;

	if (len > CHACHA20_POLY1305_AAD_MAX)
		return -7;
#pragma unroll
	for (__u32 i = 0; i < CHACHA20_POLY1305_AAD_MAX / 64; i++) {
		if (i * 64 + 64 > len)
			break;
		poly1305_blocks_x4(&ctx->mac, aad + i * 64);
	}
	if (!n)
		return 0;
	barrier_var(pos);
	if (pos > CHACHA20_POLY1305_AAD_MAX - 64)	/* verifier: tail inside the AAD buffer */
		return -7;
	cc20p1305_mac_tail(ctx, aad + pos, n);
	return 0;
}

/* Key setup, then the AAD. Verifier (Linux < 6.5 sums the frames of every
 * call chain, bpf_loop callbacks included, against 512 bytes): each step
 * out of line in a small frame of its own, so neither sits on top of the
 * caller's frame plus a bpf_loop callback plus Poly1305's ~170-byte frame. */
static __always_inline int cc20p1305_begin(struct chacha20_poly1305_ctx *ctx,
					   const __u8 *key, const __u8 *nonce,
					   const __u8 *aad, __u32 aad_len)
{
	cc20p1305_keysetup(ctx, key, nonce);
	ctx->lens[0] = aad_len;
	return cc20p1305_mac_aad(ctx, aad, aad_len);
}

/* MAC le64(aad_len) || le64(len) and produce ctx->tag. */
static __always_inline void cc20p1305_finish(struct chacha20_poly1305_ctx *ctx, __u32 len)
{
	ctx->lens[1] = len;
	poly1305_block_x1(&ctx->mac, (const __u8 *)ctx->lens, POLY1305_HIBIT);
	poly1305_final(&ctx->mac, ctx->tag);
}

static __always_inline int cc20p1305_seal(struct chacha20_poly1305_io *io, int kind,
					  const __u8 *key, const __u8 *nonce,
					  const __u8 *aad, __u32 aad_len)
{
	struct chacha20_poly1305_ctx *ctx = io->ctx;
	__u32 n;
	long ret;
	int err;

	if (io->c.len > CRYPTBPF_MSG_MAX)
		return -7;
	err = cc20p1305_begin(ctx, key, nonce, aad, aad_len);
	if (err)
		return err;
	io->c.ctr = 1;
	if (kind == CHACHA20_IO_MEM) {
		n = io->c.len / 128;
		ret = bpf_loop(n, cc20p1305_seal_mem_cb, io, 0);
		if (ret != n)
			return -14;
		if ((io->c.len & 64) && cc20p1305_seal_mem_block(io, 2 * n))
			return -14;
		err = cc20p1305_seal_mem_tail(io);
		if (err)
			return err;
	} else {
		n = (io->c.len + CHACHA20_PKT_CHUNK - 1) / CHACHA20_PKT_CHUNK;
		if (kind == CHACHA20_IO_SKB)
			ret = bpf_loop(n, cc20p1305_seal_skb_cb, io, 0);
		else
			ret = bpf_loop(n, cc20p1305_seal_xdp_cb, io, 0);
		if (ret != n)
			return -14;
	}
	cc20p1305_finish(ctx, io->c.len);
	return 0;
}

/* Verify first (MAC over the ciphertext, constant-time compare), decrypt
 * only on success. ctx->expected must hold the received tag. */
static __always_inline int cc20p1305_open(struct chacha20_poly1305_io *io, int kind,
					  const __u8 *key, const __u8 *nonce,
					  const __u8 *aad, __u32 aad_len)
{
	struct chacha20_poly1305_ctx *ctx = io->ctx;
	int err;

	if (io->c.len > CRYPTBPF_MSG_MAX)
		return -7;
	err = cc20p1305_begin(ctx, key, nonce, aad, aad_len);
	if (err)
		return err;
	err = cc20p1305_mac_region(io, kind);
	if (err)
		return err;
	cc20p1305_finish(ctx, io->c.len);
	if (!ct_memeq(ctx->tag, ctx->expected, CHACHA20_POLY1305_TAG_SIZE)) {
		/* ctx->tag now holds the valid tag for the forged message:
		 * wipe it so no caller can leak it (a forgery oracle). */
		__builtin_memset(ctx->tag, 0, sizeof(ctx->tag));
		return -CHACHA20_POLY1305_EBADMSG;
	}
	return chacha20_xor(&io->c, kind);	/* counter 1 onwards */
}

/* ---- public API ---- */

static __always_inline int
chacha20_poly1305_seal_mem(struct chacha20_poly1305_ctx *ctx, const __u8 *key,
			   const __u8 *nonce, const __u8 *aad, __u32 aad_len,
			   const __u8 *src, __u8 *dst, __u32 len, __u8 *tag)
{
	struct chacha20_poly1305_io io = { .c = { .st = &ctx->cc, .src = src, .dst = dst,
						  .len = len }, .ctx = ctx };
	int err = cc20p1305_seal(&io, CHACHA20_IO_MEM, key, nonce, aad, aad_len);

	if (!err)
		__builtin_memcpy(tag, ctx->tag, 16);
	return err;
}

static __always_inline int
chacha20_poly1305_open_mem(struct chacha20_poly1305_ctx *ctx, const __u8 *key,
			   const __u8 *nonce, const __u8 *aad, __u32 aad_len,
			   const __u8 *src, __u8 *dst, __u32 len, const __u8 *tag)
{
	struct chacha20_poly1305_io io = { .c = { .st = &ctx->cc, .src = src, .dst = dst,
						  .len = len }, .ctx = ctx };

	__builtin_memcpy(ctx->expected, tag, 16);
	return cc20p1305_open(&io, CHACHA20_IO_MEM, key, nonce, aad, aad_len);
}

/* Packet variants: ciphertext at [dst_off, dst_off + len), tag at
 * [dst_off + len, +16) (seal); open reads the tag at src_off + len.
 * On any error the packet bytes are unspecified: drop the packet. */

/* The 16-byte tag to / from the packet, right after the data. */
static __always_inline int cc20p1305_tag_to_pkt(struct chacha20_poly1305_io *io, int kind)
{
	return chacha20_io_store(&io->c, kind, io->c.len, io->ctx->tag, 16) ? -14 : 0;
}

static __always_inline int cc20p1305_tag_from_pkt(struct chacha20_poly1305_io *io, int kind)
{
	return chacha20_io_load(&io->c, kind, io->c.len, io->ctx->expected, 16) ? -14 : 0;
}

static __always_inline int
chacha20_poly1305_seal_skb(struct chacha20_poly1305_ctx *ctx, const __u8 *key,
			   const __u8 *nonce, const __u8 *aad, __u32 aad_len,
			   struct __sk_buff *skb, __u32 src_off, __u32 dst_off, __u32 len)
{
	struct chacha20_poly1305_io io = { .c = { .st = &ctx->cc, .pkt = skb,
		.src_off = src_off, .dst_off = dst_off, .len = len }, .ctx = ctx };

	return cc20p1305_seal(&io, CHACHA20_IO_SKB, key, nonce, aad, aad_len) ?:
	       cc20p1305_tag_to_pkt(&io, CHACHA20_IO_SKB);
}

static __always_inline int
chacha20_poly1305_open_skb(struct chacha20_poly1305_ctx *ctx, const __u8 *key,
			   const __u8 *nonce, const __u8 *aad, __u32 aad_len,
			   struct __sk_buff *skb, __u32 src_off, __u32 dst_off, __u32 len)
{
	struct chacha20_poly1305_io io = { .c = { .st = &ctx->cc, .pkt = skb,
		.src_off = src_off, .dst_off = dst_off, .len = len }, .ctx = ctx };

	return cc20p1305_tag_from_pkt(&io, CHACHA20_IO_SKB) ?:
	       cc20p1305_open(&io, CHACHA20_IO_SKB, key, nonce, aad, aad_len);
}

static __always_inline int
chacha20_poly1305_seal_xdp(struct chacha20_poly1305_ctx *ctx, const __u8 *key,
			   const __u8 *nonce, const __u8 *aad, __u32 aad_len,
			   struct xdp_md *xdp, __u32 src_off, __u32 dst_off, __u32 len)
{
	struct chacha20_poly1305_io io = { .c = { .st = &ctx->cc, .pkt = xdp,
		.src_off = src_off, .dst_off = dst_off, .len = len }, .ctx = ctx };

	return cc20p1305_seal(&io, CHACHA20_IO_XDP, key, nonce, aad, aad_len) ?:
	       cc20p1305_tag_to_pkt(&io, CHACHA20_IO_XDP);
}

static __always_inline int
chacha20_poly1305_open_xdp(struct chacha20_poly1305_ctx *ctx, const __u8 *key,
			   const __u8 *nonce, const __u8 *aad, __u32 aad_len,
			   struct xdp_md *xdp, __u32 src_off, __u32 dst_off, __u32 len)
{
	struct chacha20_poly1305_io io = { .c = { .st = &ctx->cc, .pkt = xdp,
		.src_off = src_off, .dst_off = dst_off, .len = len }, .ctx = ctx };

	return cc20p1305_tag_from_pkt(&io, CHACHA20_IO_XDP) ?:
	       cc20p1305_open(&io, CHACHA20_IO_XDP, key, nonce, aad, aad_len);
}
