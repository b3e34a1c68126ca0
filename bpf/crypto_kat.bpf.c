// SPDX-License-Identifier: GPL-2.0
/* crypto_kat: the in-kernel crypto primitives exposed one by one to
 * BPF_PROG_TEST_RUN, for `cryptbpf kat` (known-answer tests, Wycheproof
 * files) and `cryptbpf bench`. Not attached to any device.
 *
 * Packet layout of every TC entry point: ethernet header (14 bytes, ignored)
 * followed by the operation's input; results are written back into the
 * packet and the return value is the verdict (KAT_OK / KAT_BAD / -errno). */
#include "cryptbpf.bpf.h"
#include "crypto_kat.h"
#include "aes_cbc.bpf.h"
#include "hmac.bpf.h"
#include "hash_kfunc.bpf.h"
/* The AAD bound is the header's per-program knob (default 256): known-answer
 * files carry longer AAD than any program's header does. */
#define CHACHA20_POLY1305_AAD_MAX KAT_AAD_MAX
#include "chacha20_poly1305.bpf.h"

_Static_assert(KAT_MAX_MSG == CRYPTBPF_MSG_MAX, "kat_msg must satisfy the AEAD's bound");
_Static_assert(sizeof(((struct kat_io *)0)->aad) == CHACHA20_POLY1305_AAD_MAX,
	       "kat_io.aad must hold the AEAD's AAD bound");

char LICENSE[] SEC("license") = "GPL";

AES_CTX_MAP(kat_aes_keys, 2);

struct kat_scratch {
	struct bpf_crypto_params params;
	__u8 iv[AES_BLOCK_SIZE];
	__u8 last[AES_BLOCK_SIZE];
};
CRYPTBPF_PERCPU_SCRATCH(kat_scratch, struct kat_scratch);

#define KAT_DATA_OFF 14 /* after the Ethernet header */

struct kat_io kat_io;
__u8 kat_msg[KAT_MAX_MSG];

union kat_hash_scratch {
	struct cryptbpf_sha256_ctx sha256;
	struct cryptbpf_sha512_ctx sha512;
	struct cryptbpf_hmac_sha256_ctx hmac256;
	struct cryptbpf_hmac_sha512_ctx hmac512;
};
CRYPTBPF_PERCPU_SCRATCH(kat_hash_scratch, union kat_hash_scratch);

/* Message length of a map-memory entry point, clamped so the verifier
 * knows it fits kat_msg (CRYPTBPF_CLAMP: 6.1 cannot follow clang's clamp). */
static __always_inline __u32 kat_msg_len(void)
{
	__u32 len = kat_io.len;

	CRYPTBPF_CLAMP(len, KAT_MAX_MSG);
	return len;
}

static __always_inline __u32 kat_key_len(void)
{
	__u32 len = kat_io.key_len;

	CRYPTBPF_CLAMP(len, sizeof(kat_io.key));
	return len;
}

/* ---- SHA-2: kat_io.alg selects the function; digest -> kat_io.out ---- */

static __always_inline int kat_sha(struct __sk_buff *skb, bool from_skb)
{
	union kat_hash_scratch *s = cryptbpf_scratch(&kat_hash_scratch);
	__u32 off = KAT_DATA_OFF, len;
	int err;

	if (!s)
		return -ENOMEM;
	len = from_skb ? skb->len - off : kat_msg_len();
	if (kat_io.alg == KAT_SHA256) {
		sha256_init(&s->sha256);
		err = from_skb ? sha256_update_skb(&s->sha256, skb, off, len)
			       : sha256_update(&s->sha256, kat_msg, len);
		return err ?: sha256_final(&s->sha256, kat_io.out);
	}
	if (kat_io.alg == KAT_SHA384)
		sha384_init(&s->sha512);
	else if (kat_io.alg == KAT_SHA512)
		sha512_init(&s->sha512);
	else
		return -EINVAL;
	err = from_skb ? sha512_update_skb(&s->sha512, skb, off, len)
		       : sha512_update(&s->sha512, kat_msg, len);
	if (err)
		return err;
	return kat_io.alg == KAT_SHA384 ? sha384_final(&s->sha512, kat_io.out)
					: sha512_final(&s->sha512, kat_io.out);
}

/* message = packet bytes after the Ethernet header */
SEC("tc")
int kat_sha_skb(struct __sk_buff *skb)
{
	return kat_io.rc = kat_sha(skb, true);
}

/* message = kat_msg[0 .. kat_io.len) (map memory) */
SEC("syscall")
int kat_sha_mem(void *ctx)
{
	return kat_io.rc = kat_sha(NULL, false);
}

/* One-shot digest of kat_msg[0 .. len) through hash_kfunc.bpf.h: the hash
 * kfunc where the kernel has one, the pure-BPF code otherwise. */
SEC("syscall")
int kat_sha_oneshot_mem(void *ctx)
{
	union kat_hash_scratch *s = cryptbpf_scratch(&kat_hash_scratch);
	__u32 len = kat_msg_len();

	if (!s)
		return kat_io.rc = -ENOMEM;
	if (kat_io.alg == KAT_SHA256)
		return kat_io.rc = hash_sha256(kat_msg, len, kat_io.out, &s->sha256);
	if (kat_io.alg == KAT_SHA384)
		return kat_io.rc = hash_sha384(kat_msg, len, kat_io.out, &s->sha512);
	if (kat_io.alg == KAT_SHA512)
		return kat_io.rc = hash_sha512(kat_msg, len, kat_io.out, &s->sha512);
	return kat_io.rc = -EINVAL;
}

/* ---- HMAC: key = kat_io.key[key_len]; MAC -> kat_io.out; with tag_len,
 * the verdict of verifying kat_io.tag (KAT_OK valid, KAT_BAD not) ---- */

static __always_inline int kat_hmac256(union kat_hash_scratch *s,
				       struct __sk_buff *skb, bool from_skb)
{
	struct cryptbpf_hmac_sha256_ctx *h = &s->hmac256;
	__u32 off = KAT_DATA_OFF, len = from_skb ? skb->len - off : kat_msg_len();
	__u32 klen = kat_key_len();
	int err;

	err = hmac_sha256_init(h, kat_io.key, klen);
	if (err)
		return err;
	err = from_skb ? hmac_sha256_update_skb(h, skb, off, len)
		       : hmac_sha256_update(h, kat_msg, len);
	if (err)
		return err;
	if (kat_io.tag_len)
		return hmac_sha256_verify(h, kat_io.tag, kat_io.tag_len) ? KAT_OK : KAT_BAD;
	return hmac_sha256_final(h, kat_io.out);
}

static __always_inline int kat_hmac512(union kat_hash_scratch *s,
				       struct __sk_buff *skb, bool from_skb)
{
	struct cryptbpf_hmac_sha512_ctx *h = &s->hmac512;
	__u32 off = KAT_DATA_OFF, len = from_skb ? skb->len - off : kat_msg_len();
	__u32 klen = kat_key_len();
	int err;

	err = hmac_sha512_init(h, kat_io.key, klen);
	if (err)
		return err;
	err = from_skb ? hmac_sha512_update_skb(h, skb, off, len)
		       : hmac_sha512_update(h, kat_msg, len);
	if (err)
		return err;
	if (kat_io.tag_len)
		return hmac_sha512_verify(h, kat_io.tag, kat_io.tag_len) ? KAT_OK : KAT_BAD;
	return hmac_sha512_final(h, kat_io.out);
}

static __always_inline int kat_hmac(struct __sk_buff *skb, bool from_skb)
{
	union kat_hash_scratch *s = cryptbpf_scratch(&kat_hash_scratch);

	if (!s)
		return -ENOMEM;
	if (kat_io.alg == KAT_SHA256)
		return kat_hmac256(s, skb, from_skb);
	if (kat_io.alg == KAT_SHA512)
		return kat_hmac512(s, skb, from_skb);
	return -EINVAL;
}

SEC("tc")
int kat_hmac_skb(struct __sk_buff *skb)
{
	return kat_io.rc = kat_hmac(skb, true);
}

SEC("syscall")
int kat_hmac_mem(void *ctx)
{
	return kat_io.rc = kat_hmac(NULL, false);
}

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

/* ---- ChaCha20-Poly1305 (RFC 8439): key/nonce/aad from kat_io ----
 * skb: seal turns the payload into payload_ct || tag (the packet grows by
 * 16); open turns ct || tag back into the plaintext, or returns KAT_BAD and
 * leaves no plaintext behind. mem: in place in kat_msg, tag in kat_io.out
 * (seal) or read from kat_io.tag (open). */
CRYPTBPF_PERCPU_SCRATCH(kat_aead_scratch, struct chacha20_poly1305_ctx);

static __always_inline __u32 kat_aad_len(void)
{
	return kat_io.aad_len > sizeof(kat_io.aad) ? sizeof(kat_io.aad) : kat_io.aad_len;
}

static __always_inline int kat_open_verdict(int err)
{
	return err == -EBADMSG ? KAT_BAD : err;
}

SEC("tc")
int kat_aead_seal_skb(struct __sk_buff *skb)
{
	struct chacha20_poly1305_ctx *c = cryptbpf_scratch(&kat_aead_scratch);
	__u32 len = skb->len - KAT_DATA_OFF;

	if (!c || bpf_skb_change_tail(skb, skb->len + CHACHA20_POLY1305_TAG_SIZE, 0))
		return kat_io.rc = -ENOMEM;
	return kat_io.rc = chacha20_poly1305_seal_skb(c, kat_io.key, kat_io.nonce, kat_io.aad,
						     kat_aad_len(), skb, KAT_DATA_OFF,
						     KAT_DATA_OFF, len);
}

SEC("tc")
int kat_aead_open_skb(struct __sk_buff *skb)
{
	struct chacha20_poly1305_ctx *c = cryptbpf_scratch(&kat_aead_scratch);
	__u32 len = skb->len - KAT_DATA_OFF - CHACHA20_POLY1305_TAG_SIZE;
	int err;

	if (!c || skb->len < KAT_DATA_OFF + CHACHA20_POLY1305_TAG_SIZE)
		return kat_io.rc = KAT_BAD;
	err = chacha20_poly1305_open_skb(c, kat_io.key, kat_io.nonce, kat_io.aad, kat_aad_len(),
					 skb, KAT_DATA_OFF, KAT_DATA_OFF, len);
	if (!err && bpf_skb_change_tail(skb, skb->len - CHACHA20_POLY1305_TAG_SIZE, 0))
		err = -ENOMEM;
	return kat_io.rc = kat_open_verdict(err);
}

SEC("syscall")
int kat_aead_seal_mem(void *ctx)
{
	struct chacha20_poly1305_ctx *c = cryptbpf_scratch(&kat_aead_scratch);

	if (!c)
		return kat_io.rc = -ENOMEM;
	return kat_io.rc = chacha20_poly1305_seal_mem(c, kat_io.key, kat_io.nonce, kat_io.aad,
						     kat_aad_len(), kat_msg, kat_msg,
						     kat_msg_len(), kat_io.out);
}

SEC("syscall")
int kat_aead_open_mem(void *ctx)
{
	struct chacha20_poly1305_ctx *c = cryptbpf_scratch(&kat_aead_scratch);

	if (!c)
		return kat_io.rc = -ENOMEM;
	return kat_io.rc = kat_open_verdict(
		chacha20_poly1305_open_mem(c, kat_io.key, kat_io.nonce, kat_io.aad, kat_aad_len(),
					   kat_msg, kat_msg, kat_msg_len(), kat_io.tag));
}

/* ---- the parts of the AEAD alone, for `cryptbpf bench` and tests ---- */
union kat_stream_scratch {
	struct chacha20_state chacha;
	struct poly1305_state poly;
};
CRYPTBPF_PERCPU_SCRATCH(kat_stream_scratch, union kat_stream_scratch);

/* payload XOR ChaCha20(kat_io.key, kat_io.nonce, counter 1), in place */
SEC("tc")
int kat_chacha20_skb(struct __sk_buff *skb)
{
	union kat_stream_scratch *s = cryptbpf_scratch(&kat_stream_scratch);

	if (!s)
		return kat_io.rc = -ENOMEM;
	chacha20_init(&s->chacha, kat_io.key, kat_io.nonce, 1);
	return kat_io.rc = chacha20_xor_skb(&s->chacha, skb, KAT_DATA_OFF, KAT_DATA_OFF,
					    skb->len - KAT_DATA_OFF);
}

/* Poly1305(kat_io.key, kat_msg[0..len)) -> kat_io.out. A TC entry point
 * over map memory, so BPF_PROG_TEST_RUN can repeat it. */
SEC("tc")
int kat_poly1305_mem(struct __sk_buff *skb)
{
	union kat_stream_scratch *s = cryptbpf_scratch(&kat_stream_scratch);
	int err;

	if (!s)
		return kat_io.rc = -ENOMEM;
	poly1305_init(&s->poly, kat_io.key);
	err = poly1305_update_mem(&s->poly, kat_msg, kat_msg_len());
	if (!err)
		poly1305_final(&s->poly, kat_io.out);
	return kat_io.rc = err;
}
