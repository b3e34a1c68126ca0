// SPDX-License-Identifier: GPL-2.0
/* crypto_kat: the in-kernel crypto primitives exposed one by one to
 * BPF_PROG_TEST_RUN, for `cryptbpf kat` (known-answer tests, Wycheproof
 * files) and `cryptbpf bench`. Not attached to any device.
 *
 * Packet layout of every TC entry point: ethernet header (14 bytes, ignored)
 * followed by the operation's input; results are written back into the
 * packet and the return value is the verdict (KAT_OK / KAT_BAD / -errno). */
#include "cryptbpf.bpf.h"
#include "aes_cbc.bpf.h"
#include "crypto_kat.h"

char LICENSE[] SEC("license") = "GPL";

AES_CTX_MAP(kat_aes_keys, 2);

struct kat_scratch {
	struct bpf_crypto_params params;
	__u8 iv[AES_BLOCK_SIZE];
	__u8 last[AES_BLOCK_SIZE];
};
CRYPTBPF_PERCPU_SCRATCH(kat_scratch, struct kat_scratch);

#define KAT_DATA_OFF 14 /* after the Ethernet header */

SEC("syscall")
int kat_aes_setup(struct aes_key_setup *args)
{
	struct kat_scratch *s = cryptbpf_scratch(&kat_scratch);

	if (!s)
		return 0;
	args->err = aes_ctx_install(&kat_aes_keys, args, &s->params);
	return 0;
}

/* Load the IV at KAT_DATA_OFF into scratch; the data follows it. */
static __always_inline struct kat_scratch *aes_prologue(struct __sk_buff *skb)
{
	struct kat_scratch *s = cryptbpf_scratch(&kat_scratch);

	if (!s || bpf_skb_load_bytes(skb, KAT_DATA_OFF, s->iv, AES_BLOCK_SIZE))
		return NULL;
	return s;
}

/* iv[16] || msg  ->  iv[16] || AES-CBC(PKCS#7(msg)) */
SEC("tc")
int kat_aes_cbc_encrypt(struct __sk_buff *skb)
{
	struct bpf_crypto_ctx *ctx = aes_ctx_get(&kat_aes_keys, KAT_AES_SLOT_CBC);
	struct kat_scratch *s = aes_prologue(skb);
	__u32 off = KAT_DATA_OFF + AES_BLOCK_SIZE, len;
	int pad;

	if (!ctx || !s || skb->len < off)
		return -EINVAL;
	len = skb->len - off;
	pad = aes_pkcs7_pad_skb(skb, len);
	if (pad < 0)
		return pad;
	return aes_cbc_skb(ctx, skb, off, len + pad, s->iv, false) ?: KAT_OK;
}

/* iv[16] || ct  ->  iv[16] || msg, or KAT_BAD when the padding is invalid */
SEC("tc")
int kat_aes_cbc_decrypt(struct __sk_buff *skb)
{
	struct bpf_crypto_ctx *ctx = aes_ctx_get(&kat_aes_keys, KAT_AES_SLOT_CBC);
	struct kat_scratch *s = aes_prologue(skb);
	__u32 off = KAT_DATA_OFF + AES_BLOCK_SIZE, len, pad;

	if (!ctx || !s || skb->len < off)
		return -EINVAL;
	len = skb->len - off;
	if (!len || len & (AES_BLOCK_SIZE - 1))
		return KAT_BAD;
	if (aes_cbc_skb(ctx, skb, off, len, s->iv, true))
		return -EINVAL;
	if (bpf_skb_load_bytes(skb, off + len - AES_BLOCK_SIZE, s->last, AES_BLOCK_SIZE))
		return -EINVAL;
	pad = aes_pkcs7_check(s->last);
	if (!pad)
		return KAT_BAD;
	return bpf_skb_change_tail(skb, skb->len - pad, 0) ? -ENOMEM : KAT_OK;
}

/* iv[16] || data (multiple of 16) -> iv[16] || AES-CBC(data), no padding:
 * the packet keeps its size, so BPF_PROG_TEST_RUN's repeat can time it. */
SEC("tc")
int bench_aes_cbc_encrypt(struct __sk_buff *skb)
{
	struct bpf_crypto_ctx *ctx = aes_ctx_get(&kat_aes_keys, KAT_AES_SLOT_CBC);
	struct kat_scratch *s = aes_prologue(skb);
	__u32 off = KAT_DATA_OFF + AES_BLOCK_SIZE;

	if (!ctx || !s || skb->len < off)
		return -EINVAL;
	return aes_cbc_skb(ctx, skb, off, skb->len - off, s->iv, false) ?: KAT_OK;
}
