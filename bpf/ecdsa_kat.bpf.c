// SPDX-License-Identifier: GPL-2.0
/* ecdsa_kat: ecdsa_p256.bpf.h exposed to BPF_PROG_TEST_RUN for the tests
 * (tests/ecdsa/) and `cryptbpf bench`; not attached to any device.
 * data_in: key_id (u32 LE) | sig_len (u32 LE) | digest (32) | sig (64)
 * retval: ecdsa_p256_verify() result + 100 (so negative codes stay readable). */
#include "ecdsa_p256.bpf.h"

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

SEC("tc")
int verify_pk_tc(struct __sk_buff *skb)
{
	__u8 buf[PKHDR];

	if (bpf_skb_load_bytes(skb, 0, buf, sizeof(buf)))
		return 99;
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
