// SPDX-License-Identifier: GPL-2.0
/* ecdsa_kat: ecdsa_p256.bpf.h exposed to BPF_PROG_TEST_RUN for the tests
 * (tests/ecdsa/) and `cryptbpf bench`; not attached to any device.
 * data_in: key_id (u32 LE) | sig_len (u32 LE) | digest (32) | sig (64)
 * retval: ecdsa_p256_verify() result + 100 (so negative codes stay readable). */
#include "ecdsa_p256.bpf.h"
#include "sha256.bpf.h"

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
