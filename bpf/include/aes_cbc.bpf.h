/* SPDX-License-Identifier: GPL-2.0 */
/* AES through the kernel's bpf_crypto skcipher (kernel side only).
 *
 * The kernel has only cbc(aes)/ecb(aes) for BPF (see KERNEL_NOTES.md). This
 * header does the three things every caller would otherwise repeat:
 *  - context lifetime: a SYSCALL program creates the context and parks it in a
 *    one-slot-per-key ARRAY map as a kptr (the crypto_sanity selftest pattern);
 *    TC/XDP programs read it back as an RCU pointer, no acquire/release.
 *  - the IV: bpf_crypto_encrypt() overwrites the IV buffer with the last
 *    ciphertext block, so callers pass a per-CPU scratch copy, never the IV
 *    they will send.
 *  - PKCS#7 padding of packet payloads, with a padding check that does not
 *    branch on secret bytes.
 */
#pragma once

#include "kfuncs.bpf.h"
#include "aes_cbc.h"

#ifndef EINVAL
#define EINVAL 22
#define ENOENT 2
#define ENOMEM 12
#define EBADMSG 74
#endif
#ifndef EOPNOTSUPP
#define EOPNOTSUPP 95
#endif

/* 1 when this kernel has what the header needs (bpf_crypto skcipher
 * kfuncs, 6.10; packet dynptrs, 6.4). The kfuncs are __weak: on an older
 * kernel they resolve to 0, the verifier sees a constant and skips the
 * AES code behind `if (!aes_cbc_available()) return ...;`, so an object
 * with an AES path still loads there (its other paths work). */
static __always_inline int aes_cbc_available(void)
{
	return bpf_ksym_exists(bpf_crypto_ctx_create) && bpf_ksym_exists(bpf_crypto_encrypt) &&
	       bpf_ksym_exists(bpf_crypto_decrypt) && bpf_ksym_exists(bpf_dynptr_from_skb);
}

struct aes_ctx_slot {
	struct bpf_crypto_ctx __kptr *ctx;
};

/* A map of `n` AES contexts, indexed by aes_key_setup.slot. */
#define AES_CTX_MAP(name, n)                                                  \
	struct {                                                              \
		__uint(type, BPF_MAP_TYPE_ARRAY);                             \
		__uint(max_entries, n);                                       \
		__type(key, __u32);                                           \
		__type(value, struct aes_ctx_slot);                           \
	} name SEC(".maps")

/* ---- SYSCALL side ---- */

/* Create a context for `args` and install it in `map`; replaces (and
 * releases) any previous one. `params` must be map memory: the struct is 408
 * bytes and would not fit next to anything else on the 512-byte stack. */
static __always_inline int aes_ctx_install(void *map, struct aes_key_setup *args,
					   struct bpf_crypto_params *params)
{
	struct bpf_crypto_ctx *ctx, *old;
	struct aes_ctx_slot *slot;
	__u32 idx = args->slot;
	int err = 0;

	if (args->key_len != 16 && args->key_len != 24 && args->key_len != 32)
		return -EINVAL;
	__builtin_memset(params, 0, sizeof(*params));
	__builtin_memcpy(params->type, "skcipher", sizeof("skcipher"));
	if (args->mode == AES_MODE_ECB)
		__builtin_memcpy(params->algo, "ecb(aes)", sizeof("ecb(aes)"));
	else
		__builtin_memcpy(params->algo, "cbc(aes)", sizeof("cbc(aes)"));
	__builtin_memcpy(params->key, args->key, AES_MAX_KEY_LEN);
	params->key_len = args->key_len;

	slot = bpf_map_lookup_elem(map, &idx);
	if (!slot)
		return -ENOENT;
	ctx = bpf_crypto_ctx_create(params, sizeof(*params), &err);
	/* The key must not linger in map memory after the context has it. */
	__builtin_memset(params->key, 0, sizeof(params->key));
	if (!ctx)
		return err ? err : -EINVAL;
	old = bpf_kptr_xchg(&slot->ctx, ctx);
	if (old)
		bpf_crypto_ctx_release(old);
	return 0;
}

/* ---- data path (TC/XDP) ---- */

/* The context in `slot`, or NULL when no key is installed. The pointer is
 * RCU-protected: valid for the rest of this program run, never stored. */
static __always_inline struct bpf_crypto_ctx *aes_ctx_get(void *map, __u32 slot)
{
	struct aes_ctx_slot *v = bpf_map_lookup_elem(map, &slot);

	return v ? v->ctx : NULL;
}

/* PKCS#7: 1..16 bytes of padding, so the padded length is always > len. */
static __always_inline __u32 aes_pkcs7_pad_len(__u32 len)
{
	return AES_BLOCK_SIZE - (len & (AES_BLOCK_SIZE - 1));
}

/* En/decrypt `len` bytes (a positive multiple of 16) of linear skb data at
 * `off` in place. `iv` is 16 bytes of map memory and is clobbered. */
static __always_inline int aes_cbc_skb(struct bpf_crypto_ctx *ctx,
				       struct __sk_buff *skb, __u32 off,
				       __u32 len, __u8 *iv, bool decrypt)
{
	struct bpf_dynptr pkt, ivp;
	int err;

	if (!len || (len & (AES_BLOCK_SIZE - 1)))
		return -EINVAL;
	/* bpf_crypto needs the bytes contiguous: pull them into the linear part. */
	if (bpf_skb_pull_data(skb, off + len))
		return -ENOMEM;
	if (bpf_dynptr_from_skb(skb, 0, &pkt))
		return -EINVAL;
	if (bpf_dynptr_adjust(&pkt, off, off + len))
		return -EINVAL;
	err = bpf_dynptr_from_mem(iv, AES_BLOCK_SIZE, 0, &ivp);
	if (err)
		return err;
	return decrypt ? bpf_crypto_decrypt(ctx, &pkt, &pkt, &ivp)
		       : bpf_crypto_encrypt(ctx, &pkt, &pkt, &ivp);
}

/* En/decrypt `len` bytes of map memory `buf` in place. */
static __always_inline int aes_cbc_mem(struct bpf_crypto_ctx *ctx, __u8 *buf,
				       __u32 len, __u8 *iv, bool decrypt)
{
	struct bpf_dynptr data, ivp;
	int err;

	if (!len || (len & (AES_BLOCK_SIZE - 1)))
		return -EINVAL;
	err = bpf_dynptr_from_mem(buf, len, 0, &data);
	if (err)
		return err;
	err = bpf_dynptr_from_mem(iv, AES_BLOCK_SIZE, 0, &ivp);
	if (err)
		return err;
	return decrypt ? bpf_crypto_decrypt(ctx, &data, &data, &ivp)
		       : bpf_crypto_encrypt(ctx, &data, &data, &ivp);
}

/* Append PKCS#7 padding to the skb (grows it by 1..16 bytes); returns the
 * pad length or -errno. Lengths in the IP/UDP headers are the caller's job. */
static __always_inline int aes_pkcs7_pad_skb(struct __sk_buff *skb, __u32 plain_len)
{
	__u8 pad[AES_BLOCK_SIZE];
	__u32 n = aes_pkcs7_pad_len(plain_len), end = skb->len;

	__builtin_memset(pad, n, sizeof(pad));
	if (bpf_skb_change_tail(skb, end + n, 0))
		return -ENOMEM;
	/* Verifier: n is in [1, 16] by construction; the mask makes that
	 * provable so the variable-length store from a 16-byte buffer passes. */
	n &= 0x1f;
	if (n < 1 || n > AES_BLOCK_SIZE)
		return -EINVAL;
	if (bpf_skb_store_bytes(skb, end, pad, n, 0))
		return -ENOMEM;
	return n;
}

/* Check PKCS#7 padding of the last block `last` (16 bytes) without branching
 * on its contents. Returns the pad length (1..16) or 0 if invalid. */
static __always_inline __u32 aes_pkcs7_check(const __u8 *last)
{
	__u32 n = last[AES_BLOCK_SIZE - 1];
	__u32 bad = (n - 1) >> 8 | (AES_BLOCK_SIZE - n) >> 8; /* n==0 or n>16 */

#pragma clang loop unroll(full)
	for (__u32 i = 0; i < AES_BLOCK_SIZE; i++) {
		/* in_pad is all-ones when byte i is inside the padding run */
		__u32 in_pad = 0 - ((AES_BLOCK_SIZE - 1 - i - n) >> 31 & 1);
		bad |= in_pad & (last[i] ^ n);
	}
	bad = (bad | (0 - bad)) >> 31; /* 1 if any bit set */
	return n & (bad - 1);
}
