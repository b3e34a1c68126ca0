/* SPDX-License-Identifier: GPL-2.0 */
/* Every kfunc cryptbpf may call, declared once (kernel side only).
 *
 * bpftool's vmlinux.h carries no kfunc prototypes, so they are declared here.
 * All are __weak: a kfunc this kernel lacks resolves to NULL at load time
 * instead of failing the load, and code guards each optional call with
 * bpf_ksym_exists() so the verifier drops the dead branch.
 */
#pragma once

#include "cryptbpf.bpf.h"

/* ---- bpf_crypto (6.10+): skcipher contexts, used for cbc(aes)/ecb(aes) ---- */
extern struct bpf_crypto_ctx *
bpf_crypto_ctx_create(const struct bpf_crypto_params *params, u32 params__sz,
		      int *err) __ksym __weak;
extern struct bpf_crypto_ctx *
bpf_crypto_ctx_acquire(struct bpf_crypto_ctx *ctx) __ksym __weak;
extern void bpf_crypto_ctx_release(struct bpf_crypto_ctx *ctx) __ksym __weak;
extern int bpf_crypto_encrypt(struct bpf_crypto_ctx *ctx,
			      const struct bpf_dynptr *src,
			      const struct bpf_dynptr *dst,
			      const struct bpf_dynptr *siv__nullable) __ksym __weak;
extern int bpf_crypto_decrypt(struct bpf_crypto_ctx *ctx,
			      const struct bpf_dynptr *src,
			      const struct bpf_dynptr *dst,
			      const struct bpf_dynptr *siv__nullable) __ksym __weak;

/* ---- the kernel's sk_buff behind a TC context (6.3+), read-only: used to
 * see CHECKSUM_PARTIAL (ip_summed, csum_start, csum_offset) ---- */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

/* ---- dynptrs over packets (6.4+) ---- */
extern int bpf_dynptr_from_skb(struct __sk_buff *skb, u64 flags,
			       struct bpf_dynptr *ptr__uninit) __ksym __weak;
extern int bpf_dynptr_from_xdp(struct xdp_md *xdp, u64 flags,
			       struct bpf_dynptr *ptr__uninit) __ksym __weak;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *ptr, u32 offset,
			      void *buffer__opt, u32 buffer__szk) __ksym __weak;
extern void *bpf_dynptr_slice_rdwr(const struct bpf_dynptr *ptr, u32 offset,
				   void *buffer__opt, u32 buffer__szk) __ksym __weak;
extern int bpf_dynptr_adjust(const struct bpf_dynptr *ptr, u32 start,
			     u32 end) __ksym __weak;

/* ---- open-coded numeric iterator (6.4+); prefer bpf_loop() for 6.1 ---- */
extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym __weak;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym __weak;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym __weak;

/* ---- out-of-tree hash/signature kfuncs (bpf-next series, not merged) ----
 * No released kernel has these; see shared/KERNEL_NOTES.md. Used when present.
 */
struct bpf_ecdsa_ctx;

/* v1 of the series */
extern int bpf_sha256_hash(const struct bpf_dynptr *data,
			   const struct bpf_dynptr *out) __ksym __weak;
extern int bpf_sha384_hash(const struct bpf_dynptr *data,
			   const struct bpf_dynptr *out) __ksym __weak;
extern int bpf_sha512_hash(const struct bpf_dynptr *data,
			   const struct bpf_dynptr *out) __ksym __weak;
extern struct bpf_ecdsa_ctx *
bpf_ecdsa_ctx_create(const struct bpf_dynptr *algo_name,
		     const struct bpf_dynptr *public_key, int *err) __ksym __weak;
extern int bpf_ecdsa_verify(struct bpf_ecdsa_ctx *ctx,
			    const struct bpf_dynptr *message,
			    const struct bpf_dynptr *signature) __ksym __weak;

/* v8 of the series: "hash" and "sig" types of bpf_crypto_ctx */
extern int bpf_crypto_hash(struct bpf_crypto_ctx *ctx,
			   const struct bpf_dynptr *data,
			   const struct bpf_dynptr *out) __ksym __weak;
extern int bpf_sig_verify(struct bpf_crypto_ctx *ctx,
			  const struct bpf_dynptr *message,
			  const struct bpf_dynptr *signature) __ksym __weak;
