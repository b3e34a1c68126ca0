// SPDX-License-Identifier: GPL-2.0
/* ecdsa_kat: ecdsa_p256.bpf.h exposed to BPF_PROG_TEST_RUN for the tests
 * (tests/ecdsa/) and `cryptbpf bench`; not attached to any device.
 * data_in: key_id (u32 LE) | sig_len (u32 LE) | digest (32) | sig (64)
 * retval: ecdsa_p256_verify() result + 100 (so negative codes stay readable).
 * verify_msg_tc / verify_der_tc (below): the message hashed in BPF too, with
 * a P1363 or a DER signature (`cryptbpf kat`). */
#include "ecdsa_p256.bpf.h"
#include "sha256.bpf.h"
#include "der.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define HDR (8 + P256_DIGEST_LEN + P256_SIG_LEN)

SEC("tc")
int verify_tc(struct __sk_buff *skb)
{
	__u8 buf[HDR];

	if (bpf_skb_load_bytes(skb, 0, buf, sizeof(buf)))
		return 99;
	__u32 key_id = *(__u32 *)buf;
	__u32 sig_len = *(__u32 *)(buf + 4);
	return 100 + ecdsa_p256_verify(key_id, buf + 8, buf + 8 + P256_DIGEST_LEN, sig_len);
}

SEC("xdp")
int verify_xdp(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *end = (void *)(long)ctx->data_end;

	if (data + HDR > end)
		return 99;
	__u32 key_id = *(__u32 *)data;
	__u32 sig_len = *(__u32 *)(data + 4);
	return 100 + ecdsa_p256_verify(key_id, data + 8, data + 8 + P256_DIGEST_LEN, sig_len);
}

/* data_in: pk_len (u32 LE) | sig_len (u32 LE) | digest (32) | sig (64) | pubkey (65) */
#define PKHDR (HDR + P256_PUBKEY_LEN)

/* The packet is copied to map memory, not the stack: 169 bytes of stack
 * plus the verifier's deepest chain exceed 512 bytes on Linux 6.1 (see
 * "Stack" in ecdsa_p256.bpf.h). */
struct pk_buf { __u8 b[PKHDR]; };
CRYPTBPF_PERCPU_SCRATCH(pk_buf_scratch, struct pk_buf);

SEC("tc")
int verify_pk_tc(struct __sk_buff *skb)
{
	struct pk_buf *pb = cryptbpf_scratch(&pk_buf_scratch);
	__u8 *buf;

	if (!pb || bpf_skb_load_bytes(skb, 0, pb->b, sizeof(pb->b)))
		return 99;
	buf = pb->b;
	__u32 pk_len = *(__u32 *)buf;
	__u32 sig_len = *(__u32 *)(buf + 4);
	return 100 + ecdsa_p256_verify_pubkey(buf + HDR, pk_len, buf + 8,
					      buf + 8 + P256_DIGEST_LEN, sig_len);
}

SEC("xdp")
int verify_pk_xdp(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *end = (void *)(long)ctx->data_end;

	if (data + PKHDR > end)
		return 99;
	__u32 pk_len = *(__u32 *)data;
	__u32 sig_len = *(__u32 *)(data + 4);
	return 100 + ecdsa_p256_verify_pubkey(data + HDR, pk_len, data + 8,
					      data + 8 + P256_DIGEST_LEN, sig_len);
}

/* The whole ECDSA-with-SHA-256 verification in the kernel, for `cryptbpf kat`
 * (EcdsaP1363Verify) and the differential tests:
 * data_in: ethernet (14, ignored) | key_id (u32 LE) | sig_len (u32 LE) |
 *          sig (64) | message (rest, hashed here with SHA-256)
 * retval: ecdsa_p256_verify() result + 100. */
struct ecdsa_msg_scratch {
	struct cryptbpf_sha256_ctx sha;
	__u8 digest[P256_DIGEST_LEN];
	__u32 key_id;
	__u32 sig_len;
	__u8 sig[P256_SIG_LEN];
};
CRYPTBPF_PERCPU_SCRATCH(ecdsa_msg_scratch, struct ecdsa_msg_scratch);

#define MSG_HDR (14 + 8 + P256_SIG_LEN)

SEC("tc")
int verify_msg_tc(struct __sk_buff *skb)
{
	struct ecdsa_msg_scratch *s = cryptbpf_scratch(&ecdsa_msg_scratch);

	if (!s || skb->len < MSG_HDR)
		return 99;
	if (bpf_skb_load_bytes(skb, 14, &s->key_id, 8 + P256_SIG_LEN))
		return 99;
	sha256_init(&s->sha);
	if (sha256_update_skb(&s->sha, skb, MSG_HDR, skb->len - MSG_HDR) ||
	    sha256_final(&s->sha, s->digest))
		return 99;
	return 100 + ecdsa_p256_verify(s->key_id, s->digest, s->sig, s->sig_len);
}

/* The same with a DER signature, for `cryptbpf kat` (Wycheproof EcdsaVerify):
 * data_in: ethernet (14, ignored) | key_id (u32 LE) | sig_len (u32 LE) |
 *          sig (sig_len bytes, DER) | message (rest, hashed here)
 * The signature is decoded by der_ecdsa_sig(), pki-validator's decoder of
 * certificate signatures. A sig_len of 0 or over DER_MAX_INPUT (the
 * decoder's input limit, which no ECDSA-Sig-Value comes near) is refused
 * unread. retval: ecdsa_p256_verify() result + 100; DER_REJECTED when the
 * signature is not a strict-DER Ecdsa-Sig-Value; 99 packet or hash error. */
#define DER_REJECTED 98

struct ecdsa_der_scratch {
	struct cryptbpf_sha256_ctx sha;
	__u8 digest[P256_DIGEST_LEN];
	__u32 key_id;
	__u32 sig_len;
	__u8 sig[P256_SIG_LEN];
	struct der_tlv t[2];
	__u8 der[DER_BUF_SIZE];
};
CRYPTBPF_PERCPU_SCRATCH(ecdsa_der_scratch, struct ecdsa_der_scratch);

#define DER_HDR (14 + 8)

SEC("tc")
int verify_der_tc(struct __sk_buff *skb)
{
	struct ecdsa_der_scratch *s = cryptbpf_scratch(&ecdsa_der_scratch);
	__u32 sig_len, n, off;

	if (!s || skb->len < DER_HDR)
		return 99;
	if (bpf_skb_load_bytes(skb, 14, &s->key_id, 8))
		return 99;
	sig_len = s->sig_len;
	if (sig_len == 0 || sig_len > DER_MAX_INPUT)
		return DER_REJECTED;
	if (sig_len > skb->len - DER_HDR)
		return 99;
	/* 1 <= sig_len <= DER_MAX_INPUT, as the verifier must see it: 6.1
	 * learns no lower bound from "!= 0", so clamp sig_len - 1 and add 1 */
	n = sig_len - 1;
	CRYPTBPF_CLAMP(n, DER_MAX_INPUT - 1);
	if (bpf_skb_load_bytes(skb, DER_HDR, s->der, n + 1))
		return 99;
	if (der_ecdsa_sig(s->der, 0, sig_len, &s->t[0], &s->t[1], s->sig))
		return DER_REJECTED;
	off = DER_HDR + sig_len;
	sha256_init(&s->sha);
	if (sha256_update_skb(&s->sha, skb, off, skb->len - off) ||
	    sha256_final(&s->sha, s->digest))
		return 99;
	return 100 + ecdsa_p256_verify(s->key_id, s->digest, s->sig, P256_SIG_LEN);
}
