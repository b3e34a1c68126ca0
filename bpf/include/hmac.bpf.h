/* SPDX-License-Identifier: GPL-2.0 */
/* HMAC-SHA256 and HMAC-SHA512 (RFC 2104) on the pure-BPF hashes.
 *
 * State: struct cryptbpf_hmac_sha256_ctx (240 bytes) / cryptbpf_hmac_sha512_ctx
 * (464 bytes), in caller-owned map memory (per-CPU scratch). It holds the
 * running hash plus the two pre-hashed pad blocks (the "key"), so one keyed
 * context MACs any number of messages: hmac_*_reset() restarts it for free,
 * while hmac_*_init() costs two extra block compressions (three when the key
 * is longer than a block and gets hashed first).
 *
 *   hmac_sha256_init(h, key, key_len);       // key: map memory, any length
 *   hmac_sha256_update(h, buf, len);         // or _skb / _xdp / _dynptr
 *   hmac_sha256_final(h, mac);               // 32 bytes
 *   ok = hmac_sha256_verify(h, tag, tag_len);        // tag: 32 readable bytes
 *   ok = hmac_sha256_verify_skb(h, skb, off, tag_len); // tag in the packet
 *   hmac_sha256_reset(h);                    // next message, same key
 *
 * verify compares only the first tag_len bytes (truncated tags, RFC 2104 §5)
 * in constant time with ct_memeq(); tag_len outside
 * [HMAC_MIN_TAG_LEN, digest size] never verifies. Returns 1 = valid, 0 = not.
 * A pre-derived key (h->key) can be stored in any map and loaded with
 * hmac_*_start(h, &key) to skip the key setup per packet on every CPU.
 */
#pragma once

#include "cryptbpf.bpf.h"
#include "ct.bpf.h"
#include "sha256.bpf.h"
#include "sha512.bpf.h"

#define HMAC_SHA256_SIZE SHA256_DIGEST_SIZE
#define HMAC_SHA512_SIZE SHA512_DIGEST_SIZE
#ifndef HMAC_MIN_TAG_LEN
#define HMAC_MIN_TAG_LEN 10    /* RFC 2104 §5: at least 80 bits */
#endif

#define HMAC_IPAD 0x3636363636363636ULL
#define HMAC_OPAD 0x5c5c5c5c5c5c5c5cULL

/* Chaining values after compressing K0 ^ ipad and K0 ^ opad. */
struct cryptbpf_hmac_sha256_key {
	__u32 istate[8];
	__u32 ostate[8];
};

struct cryptbpf_hmac_sha256_ctx {
	struct cryptbpf_sha256_ctx hash;      /* inner, then outer hash */
	struct cryptbpf_hmac_sha256_key key;
};

struct cryptbpf_hmac_sha512_key {
	__u64 istate[8];
	__u64 ostate[8];
};

struct cryptbpf_hmac_sha512_ctx {
	struct cryptbpf_sha512_ctx hash;
	struct cryptbpf_hmac_sha512_key key;
};

/* tag_len range check and the masked constant-time compare shared by both.
 * mac and expected are len-byte, 8-byte aligned buffers in map memory; bytes
 * at or past tag_len are masked to zero on both sides, so that ct_memeq()
 * (which needs a constant length) covers truncated tags. */
static __always_inline int hmac_tag_len_ok(__u32 tag_len, __u32 digest_size)
{
	return tag_len >= HMAC_MIN_TAG_LEN && tag_len <= digest_size;
}

/* Mask keeping the first n bytes of a little-endian u64 (any n, branch-free). */
static __always_inline __u64 hmac_keep_bytes(__s64 n)
{
	__u64 all = ~(__u64)((n - 8) >> 63);                 /* n >= 8 */
	__u64 some = ((1ULL << (8 * (n & 7))) - 1) &
		     ~(__u64)(n >> 63);                       /* 0 < n < 8 */

	return all | some;
}

static __always_inline int hmac_masked_eq(__u8 *mac, __u8 *expected,
					  __u32 tag_len, const __u32 len)
{
	__u64 *a = (__u64 *)mac, *b = (__u64 *)expected;

	/* Word-wise: per-byte masks made clang keep 64 masks live and spill. */
#pragma clang loop unroll(full)
	for (__u32 j = 0; j < len / 8; j++) {
		__u64 m = hmac_keep_bytes((__s64)tag_len - 8 * j);

		a[j] &= m;
		b[j] &= m;
	}
	/* make ct_memeq() re-read the buffers instead of the words above */
	asm volatile("" ::: "memory");
	/* ct_memeq() in 8-byte pieces: over 64 bytes at once clang computes all
	 * 64 xors before or-ing them and spills them (~450 bytes of stack).
	 * The empty asm pins `eq` between pieces; `&=` keeps it branch-free. */
	int eq = 1;
#pragma clang loop unroll(full)
	for (__u32 j = 0; j < len / 8; j++) {
		eq &= ct_memeq(mac + 8 * j, expected + 8 * j, 8);
		asm volatile("" : "+r"(eq));
	}
	return eq;
}

/* ---------------------------------------------------------------- SHA-256 */

/* Restart the message with the key already in h->key. */
static __always_inline void hmac_sha256_reset(struct cryptbpf_hmac_sha256_ctx *h)
{
	__builtin_memcpy(h->hash.h, h->key.istate, sizeof(h->key.istate));
	h->hash.total = SHA256_BLOCK_SIZE;     /* the ipad block */
	h->hash.buf_len = 0;
}

/* Load a pre-derived key (e.g. from a shared map) and start a message. */
static __always_inline void hmac_sha256_start(struct cryptbpf_hmac_sha256_ctx *h,
					      const struct cryptbpf_hmac_sha256_key *key)
{
	__builtin_memcpy(&h->key, key, sizeof(*key));
	hmac_sha256_reset(h);
}

/* H(IV, buf ^ pad) into state; buf holds K0 (already xored with prev_pad). */
static __always_inline void hmac_sha256_pad_state(struct cryptbpf_sha256_ctx *s,
						  __u64 xor, __u32 *state)
{
	__u64 *w = (__u64 *)s->buf;

#pragma clang loop unroll(full)
	for (int j = 0; j < SHA256_BLOCK_SIZE / 8; j++)
		w[j] ^= xor;
	sha256_init(s);
	sha256_compress(s, (const struct cryptbpf_sha256_block *)s->buf);
	__builtin_memcpy(state, s->h, sizeof(s->h));
}

/* Derive the key from len bytes of a dynptr and start a message. */
static __always_inline int hmac_sha256_init_dynptr(struct cryptbpf_hmac_sha256_ctx *h,
						   const struct bpf_dynptr *key,
						   __u32 key_len)
{
	struct cryptbpf_sha256_ctx *s = &h->hash;
	__u64 *w = (__u64 *)s->buf;
	int err = 0;

	/* K0 in s->buf[0..64): the key zero-padded, or its hash if longer. */
	if (key_len > SHA256_BLOCK_SIZE) {
		sha256_init(s);
		err = sha256_update_dynptr(s, key, 0, key_len);
		if (err)
			return err;
		sha256_final(s, s->buf);
		w[4] = w[5] = w[6] = w[7] = 0;
	} else {
#pragma clang loop unroll(full)
		for (int j = 0; j < SHA256_BLOCK_SIZE / 8; j++)
			w[j] = 0;
		/* key_len <= 64 here, which bounds the write for the verifier */
		if (key_len)
			err = bpf_dynptr_read(s->buf, key_len, key, 0, 0);
		if (err)
			return err;
	}
	hmac_sha256_pad_state(s, HMAC_IPAD, h->key.istate);
	hmac_sha256_pad_state(s, HMAC_IPAD ^ HMAC_OPAD, h->key.ostate);
#pragma clang loop unroll(full)
	for (int j = 0; j < SHA256_BLOCK_SIZE / 8; j++)
		w[j] = 0;                      /* do not leave K0 ^ opad around */
	hmac_sha256_reset(h);
	return 0;
}

/* Key in map memory; the verifier must know key_len fits (clamp first).
 * Not inlined: see CRYPTBPF_DYNPTR_FRAME in cryptbpf.bpf.h. */
static CRYPTBPF_DYNPTR_FRAME int hmac_sha256_init(struct cryptbpf_hmac_sha256_ctx *h,
					    const void *key, __u32 key_len)
{
	struct bpf_dynptr d;

	if (bpf_dynptr_from_mem((void *)key, key_len, 0, &d))
		return -EINVAL;
	return hmac_sha256_init_dynptr(h, &d, key_len);
}

static __always_inline int hmac_sha256_update(struct cryptbpf_hmac_sha256_ctx *h,
					      const void *data, __u32 len)
{
	return sha256_update(&h->hash, data, len);
}

static __always_inline int hmac_sha256_update_dynptr(struct cryptbpf_hmac_sha256_ctx *h,
						     const struct bpf_dynptr *src,
						     __u32 off, __u32 len)
{
	return sha256_update_dynptr(&h->hash, src, off, len);
}

static __always_inline int hmac_sha256_update_skb(struct cryptbpf_hmac_sha256_ctx *h,
						  struct __sk_buff *skb,
						  __u32 off, __u32 len)
{
	return sha256_update_skb(&h->hash, skb, off, len);
}

static __always_inline int hmac_sha256_update_xdp(struct cryptbpf_hmac_sha256_ctx *h,
						  struct xdp_md *xdp,
						  __u32 off, __u32 len)
{
	return sha256_update_xdp(&h->hash, xdp, off, len);
}

/* 32-byte MAC to out (stack or map memory; may be h->hash.buf). */
static __always_inline int hmac_sha256_final(struct cryptbpf_hmac_sha256_ctx *h, __u8 *out)
{
	struct cryptbpf_sha256_ctx *s = &h->hash;

	sha256_final(s, s->buf);               /* inner digest -> buf[0..32) */
	__builtin_memcpy(s->h, h->key.ostate, sizeof(s->h));
	s->total = SHA256_BLOCK_SIZE + SHA256_DIGEST_SIZE;
	s->buf_len = SHA256_DIGEST_SIZE;
	return sha256_final(s, out);
}

/* MAC into buf[0..32); the expected tag goes to buf[64..96) (slack half). */
#define HMAC_SHA256_EXPECTED(h) ((h)->hash.buf + SHA256_BLOCK_SIZE)

static __always_inline int hmac_sha256_check(struct cryptbpf_hmac_sha256_ctx *h, __u32 tag_len)
{
	return hmac_masked_eq(h->hash.buf, HMAC_SHA256_EXPECTED(h), tag_len,
			      HMAC_SHA256_SIZE);
}

/* tag: HMAC_SHA256_SIZE readable bytes (stack/map); first tag_len compared. */
static __always_inline int hmac_sha256_verify(struct cryptbpf_hmac_sha256_ctx *h,
					      const __u8 *tag, __u32 tag_len)
{
	if (!hmac_tag_len_ok(tag_len, HMAC_SHA256_SIZE))
		return 0;
	hmac_sha256_final(h, h->hash.buf);
	__builtin_memcpy(HMAC_SHA256_EXPECTED(h), tag, HMAC_SHA256_SIZE);
	return hmac_sha256_check(h, tag_len);
}

/* Tag read from skb bytes [off, off + tag_len). */
static __always_inline int hmac_sha256_verify_skb(struct cryptbpf_hmac_sha256_ctx *h,
						  struct __sk_buff *skb,
						  __u32 off, __u32 tag_len)
{
	if (!hmac_tag_len_ok(tag_len, HMAC_SHA256_SIZE))
		return 0;
	hmac_sha256_final(h, h->hash.buf);
	if (bpf_skb_load_bytes(skb, off, HMAC_SHA256_EXPECTED(h),
			       hash_partial_len(tag_len, 64)))
		return 0;
	return hmac_sha256_check(h, tag_len);
}

static __always_inline int hmac_sha256_verify_xdp(struct cryptbpf_hmac_sha256_ctx *h,
						  struct xdp_md *xdp,
						  __u32 off, __u32 tag_len)
{
	if (!hmac_tag_len_ok(tag_len, HMAC_SHA256_SIZE))
		return 0;
	hmac_sha256_final(h, h->hash.buf);
	if (bpf_xdp_load_bytes(xdp, off, HMAC_SHA256_EXPECTED(h),
			       hash_partial_len(tag_len, 64)))
		return 0;
	return hmac_sha256_check(h, tag_len);
}

/* ---------------------------------------------------------------- SHA-512 */

static __always_inline void hmac_sha512_reset(struct cryptbpf_hmac_sha512_ctx *h)
{
	__builtin_memcpy(h->hash.h, h->key.istate, sizeof(h->key.istate));
	h->hash.total = SHA512_BLOCK_SIZE;
	h->hash.buf_len = 0;
}

static __always_inline void hmac_sha512_start(struct cryptbpf_hmac_sha512_ctx *h,
					      const struct cryptbpf_hmac_sha512_key *key)
{
	__builtin_memcpy(&h->key, key, sizeof(*key));
	hmac_sha512_reset(h);
}

static __always_inline void hmac_sha512_pad_state(struct cryptbpf_sha512_ctx *s,
						  __u64 xor, __u64 *state)
{
	__u64 *w = (__u64 *)s->buf;

#pragma clang loop unroll(full)
	for (int j = 0; j < SHA512_BLOCK_SIZE / 8; j++)
		w[j] ^= xor;
	sha512_init(s);
	sha512_compress(s, (const struct cryptbpf_sha512_block *)s->buf);
	__builtin_memcpy(state, s->h, sizeof(s->h));
}

static __always_inline int hmac_sha512_init_dynptr(struct cryptbpf_hmac_sha512_ctx *h,
						   const struct bpf_dynptr *key,
						   __u32 key_len)
{
	struct cryptbpf_sha512_ctx *s = &h->hash;
	__u64 *w = (__u64 *)s->buf;
	int err = 0;

	if (key_len > SHA512_BLOCK_SIZE) {
		sha512_init(s);
		err = sha512_update_dynptr(s, key, 0, key_len);
		if (err)
			return err;
		sha512_final(s, s->buf);
#pragma clang loop unroll(full)
		for (int j = 8; j < 16; j++)
			w[j] = 0;
	} else {
#pragma clang loop unroll(full)
		for (int j = 0; j < SHA512_BLOCK_SIZE / 8; j++)
			w[j] = 0;
		if (key_len)
			err = bpf_dynptr_read(s->buf, key_len, key, 0, 0);
		if (err)
			return err;
	}
	hmac_sha512_pad_state(s, HMAC_IPAD, h->key.istate);
	hmac_sha512_pad_state(s, HMAC_IPAD ^ HMAC_OPAD, h->key.ostate);
#pragma clang loop unroll(full)
	for (int j = 0; j < SHA512_BLOCK_SIZE / 8; j++)
		w[j] = 0;
	hmac_sha512_reset(h);
	return 0;
}

static CRYPTBPF_DYNPTR_FRAME int hmac_sha512_init(struct cryptbpf_hmac_sha512_ctx *h,
						   const void *key, __u32 key_len)
{
	struct bpf_dynptr d;

	if (bpf_dynptr_from_mem((void *)key, key_len, 0, &d))
		return -EINVAL;
	return hmac_sha512_init_dynptr(h, &d, key_len);
}

static __always_inline int hmac_sha512_update(struct cryptbpf_hmac_sha512_ctx *h,
					      const void *data, __u32 len)
{
	return sha512_update(&h->hash, data, len);
}

static __always_inline int hmac_sha512_update_dynptr(struct cryptbpf_hmac_sha512_ctx *h,
						     const struct bpf_dynptr *src,
						     __u32 off, __u32 len)
{
	return sha512_update_dynptr(&h->hash, src, off, len);
}

static __always_inline int hmac_sha512_update_skb(struct cryptbpf_hmac_sha512_ctx *h,
						  struct __sk_buff *skb,
						  __u32 off, __u32 len)
{
	return sha512_update_skb(&h->hash, skb, off, len);
}

static __always_inline int hmac_sha512_update_xdp(struct cryptbpf_hmac_sha512_ctx *h,
						  struct xdp_md *xdp,
						  __u32 off, __u32 len)
{
	return sha512_update_xdp(&h->hash, xdp, off, len);
}

/* 64-byte MAC to out (stack or map memory; may be h->hash.buf). */
static __always_inline int hmac_sha512_final(struct cryptbpf_hmac_sha512_ctx *h, __u8 *out)
{
	struct cryptbpf_sha512_ctx *s = &h->hash;

	sha512_final(s, s->buf);
	__builtin_memcpy(s->h, h->key.ostate, sizeof(s->h));
	s->total = SHA512_BLOCK_SIZE + SHA512_DIGEST_SIZE;
	s->buf_len = SHA512_DIGEST_SIZE;
	return sha512_final(s, out);
}

#define HMAC_SHA512_EXPECTED(h) ((h)->hash.buf + SHA512_BLOCK_SIZE)

static __always_inline int hmac_sha512_check(struct cryptbpf_hmac_sha512_ctx *h, __u32 tag_len)
{
	return hmac_masked_eq(h->hash.buf, HMAC_SHA512_EXPECTED(h), tag_len,
			      HMAC_SHA512_SIZE);
}

/* tag: HMAC_SHA512_SIZE readable bytes (stack/map); first tag_len compared. */
static __always_inline int hmac_sha512_verify(struct cryptbpf_hmac_sha512_ctx *h,
					      const __u8 *tag, __u32 tag_len)
{
	if (!hmac_tag_len_ok(tag_len, HMAC_SHA512_SIZE))
		return 0;
	hmac_sha512_final(h, h->hash.buf);
	__builtin_memcpy(HMAC_SHA512_EXPECTED(h), tag, HMAC_SHA512_SIZE);
	return hmac_sha512_check(h, tag_len);
}

static __always_inline int hmac_sha512_verify_skb(struct cryptbpf_hmac_sha512_ctx *h,
						  struct __sk_buff *skb,
						  __u32 off, __u32 tag_len)
{
	if (!hmac_tag_len_ok(tag_len, HMAC_SHA512_SIZE))
		return 0;
	hmac_sha512_final(h, h->hash.buf);
	if (bpf_skb_load_bytes(skb, off, HMAC_SHA512_EXPECTED(h),
			       hash_partial_len(tag_len, 128)))
		return 0;
	return hmac_sha512_check(h, tag_len);
}

static __always_inline int hmac_sha512_verify_xdp(struct cryptbpf_hmac_sha512_ctx *h,
						  struct xdp_md *xdp,
						  __u32 off, __u32 tag_len)
{
	if (!hmac_tag_len_ok(tag_len, HMAC_SHA512_SIZE))
		return 0;
	hmac_sha512_final(h, h->hash.buf);
	if (bpf_xdp_load_bytes(xdp, off, HMAC_SHA512_EXPECTED(h),
			       hash_partial_len(tag_len, 128)))
		return 0;
	return hmac_sha512_check(h, tag_len);
}
