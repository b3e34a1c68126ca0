/* SPDX-License-Identifier: GPL-2.0 */
/* One-shot SHA-256/384/512 that use the kernel's hash kfuncs when the kernel
 * has them, and the pure-BPF code otherwise.
 *
 * The hash kfuncs come from an unmerged bpf-next series (shared/KERNEL_NOTES.md):
 *   v1: bpf_sha256_hash / bpf_sha384_hash / bpf_sha512_hash(data, out)
 *   v8: bpf_crypto_hash(ctx, data, out) with a "hash" bpf_crypto_ctx
 * They are __weak in kfuncs.bpf.h, so on a kernel without them the test
 * bpf_ksym_exists() is a constant 0 for the verifier and the kfunc branch is
 * dead code: the program loads everywhere, and the pure path runs (it does on
 * 6.18). When a kfunc is present, the pure path is the dead one.
 *
 *   struct cryptbpf_sha256_ctx *scratch = cryptbpf_scratch(&sha_scratch);
 *   err = hash_sha256(buf, len, digest, scratch);   // buf, digest: map memory
 *   err = hash_sha256_dynptr(&data, len, &out, scratch);
 *
 * data is the whole message: the v1 kfuncs hash a dynptr from start to end,
 * so len must be the dynptr's size (narrow it with bpf_dynptr_adjust(), 6.4+,
 * or build it with that size). out must cover the digest size.
 *
 * v8 opt-in: create the context once in a SYSCALL program, as the kernel
 * selftest crypto_sanity does for skciphers, and keep it in a kptr map:
 *
 *   struct hash_ctx_value { struct bpf_crypto_ctx __kptr *ctx; };
 *   SEC("syscall") int setup(void *c) {
 *       struct bpf_crypto_params p = { .type = "hash", .algo = "sha256" };
 *       int err = 0;
 *       struct bpf_crypto_ctx *ctx = bpf_crypto_ctx_create(&p, sizeof(p), &err);
 *       ... ctx = bpf_kptr_xchg(&v->ctx, ctx); if (ctx) bpf_crypto_ctx_release(ctx);
 *   }
 *   // data path (TC/XDP): v = lookup(...); hash_sha256_dynptr_kctx(v->ctx, ...)
 *
 * On 6.18 bpf_crypto_ctx_create() returns -ENOENT for type "hash", the
 * kptr stays NULL and hash_sha256_dynptr_kctx() falls back to the v1 kfunc
 * or the pure code. Nothing here needs kfuncs to load.
 */
#pragma once

#include "cryptbpf.bpf.h"
#include "kfuncs.bpf.h"
#include "sha256.bpf.h"
#include "sha512.bpf.h"

/* Pure-BPF digest of len bytes of data into out (via scratch->buf). */
static __always_inline int hash_sha256_pure(const struct bpf_dynptr *data, __u32 len,
					    const struct bpf_dynptr *out,
					    struct cryptbpf_sha256_ctx *scratch)
{
	int err;

	sha256_init(scratch);
	err = sha256_update_dynptr(scratch, data, 0, len);
	if (err)
		return err;
	sha256_final(scratch, scratch->buf);
	return bpf_dynptr_write(out, 0, scratch->buf, SHA256_DIGEST_SIZE, 0);
}

/* SHA-384 and SHA-512 share the core; digest_size picks IV and length. */
static __always_inline int hash_sha512_pure(const struct bpf_dynptr *data, __u32 len,
					    const struct bpf_dynptr *out,
					    struct cryptbpf_sha512_ctx *scratch,
					    const __u32 digest_size)
{
	int err;

	if (digest_size == SHA384_DIGEST_SIZE)
		sha384_init(scratch);
	else
		sha512_init(scratch);
	err = sha512_update_dynptr(scratch, data, 0, len);
	if (err)
		return err;
	if (digest_size == SHA384_DIGEST_SIZE)
		sha384_final(scratch, scratch->buf);
	else
		sha512_final(scratch, scratch->buf);
	return bpf_dynptr_write(out, 0, scratch->buf, digest_size, 0);
}

static __always_inline int hash_sha256_dynptr(const struct bpf_dynptr *data, __u32 len,
					      const struct bpf_dynptr *out,
					      struct cryptbpf_sha256_ctx *scratch)
{
	if (bpf_ksym_exists(bpf_sha256_hash))
		return bpf_sha256_hash(data, out);
	return hash_sha256_pure(data, len, out, scratch);
}

static __always_inline int hash_sha384_dynptr(const struct bpf_dynptr *data, __u32 len,
					      const struct bpf_dynptr *out,
					      struct cryptbpf_sha512_ctx *scratch)
{
	if (bpf_ksym_exists(bpf_sha384_hash))
		return bpf_sha384_hash(data, out);
	return hash_sha512_pure(data, len, out, scratch, SHA384_DIGEST_SIZE);
}

static __always_inline int hash_sha512_dynptr(const struct bpf_dynptr *data, __u32 len,
					      const struct bpf_dynptr *out,
					      struct cryptbpf_sha512_ctx *scratch)
{
	if (bpf_ksym_exists(bpf_sha512_hash))
		return bpf_sha512_hash(data, out);
	return hash_sha512_pure(data, len, out, scratch, SHA512_DIGEST_SIZE);
}

/* v8 hook: kctx is a "hash" bpf_crypto_ctx for sha256 (from a kptr map
 * value, may be NULL). The ksym test comes first so that kernels without
 * bpf_crypto_hash never look at kctx. */
static __always_inline int hash_sha256_dynptr_kctx(struct bpf_crypto_ctx *kctx,
						   const struct bpf_dynptr *data, __u32 len,
						   const struct bpf_dynptr *out,
						   struct cryptbpf_sha256_ctx *scratch)
{
	if (bpf_ksym_exists(bpf_crypto_hash) && kctx)
		return bpf_crypto_hash(kctx, data, out);
	return hash_sha256_dynptr(data, len, out, scratch);
}

/* Map-memory convenience forms: data[0..len) and out[0..digest size) must be
 * map values (bpf_dynptr_from_mem() accepts nothing else) and the verifier
 * must know len fits. */
#define HASH_MEM_ONESHOT(name, dsize, ctx_type)					\
static __always_inline int name(const void *data, __u32 len, __u8 *out,	\
				ctx_type *scratch)				\
{										\
	struct bpf_dynptr d, o;							\
										\
	if (bpf_dynptr_from_mem((void *)data, len, 0, &d) ||			\
	    bpf_dynptr_from_mem(out, dsize, 0, &o))				\
		return -EINVAL;							\
	return name##_dynptr(&d, len, &o, scratch);				\
}

HASH_MEM_ONESHOT(hash_sha256, SHA256_DIGEST_SIZE, struct cryptbpf_sha256_ctx)
HASH_MEM_ONESHOT(hash_sha384, SHA384_DIGEST_SIZE, struct cryptbpf_sha512_ctx)
HASH_MEM_ONESHOT(hash_sha512, SHA512_DIGEST_SIZE, struct cryptbpf_sha512_ctx)
