// SPDX-License-Identifier: GPL-2.0
/* aes_roundtrip: the smallest real bpf_crypto data path.
 *
 * aes_setup (SYSCALL) installs a cbc(aes) context from a key handed in by
 * userspace; aes_encrypt (TC egress) and aes_decrypt (TC ingress) transform
 * UDP payloads to one port in place. Wire format: include/aes_roundtrip.h. */
#include "cryptbpf.bpf.h"
#include "aes_cbc.bpf.h"
#include "pkt.bpf.h"
#include "aes_roundtrip.h"

char LICENSE[] SEC("license") = "GPL";

/* UDP destination port the programs act on (host byte order). */
const volatile __u16 udp_port = 4242;

/* Result of the last aes_setup run, for status and tests. */
__s32 setup_status = -ENOENT;

AES_CTX_MAP(aes_keys, 1);

struct aes_rt_scratch {
	struct bpf_crypto_params params;
	__u8 iv[AES_RT_IV_LEN];
	__u8 last[AES_BLOCK_SIZE];
};
CRYPTBPF_PERCPU_SCRATCH(scratch, struct aes_rt_scratch);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct aes_roundtrip_stats);
} stats SEC(".maps");

#define COUNT(field)                                                          \
	({                                                                    \
		__u32 _z = 0;                                                 \
		struct aes_roundtrip_stats *_s = bpf_map_lookup_elem(&stats, &_z); \
		if (_s)                                                       \
			_s->field++;                                          \
	})

SEC("syscall")
int aes_setup(struct aes_key_setup *args)
{
	struct aes_rt_scratch *s = cryptbpf_scratch(&scratch);

	if (!s)
		return 0;
	args->err = aes_ctx_install(&aes_keys, args, &s->params);
	setup_status = args->err;
	return 0;
}

/* Offsets of the IV and data inside a matching datagram; 0 if no match. */
static __always_inline int match(struct __sk_buff *skb, struct udp_loc *loc)
{
	if (pkt_find_udp(skb, loc))
		return 0;
	return loc->dport == udp_port &&
	       loc->payload_len >= AES_RT_IV_LEN;
}

SEC("tc")
int aes_encrypt(struct __sk_buff *skb)
{
	struct bpf_crypto_ctx *ctx;
	struct aes_rt_scratch *s;
	struct udp_loc loc;
	__u32 data_off, plain_len;
	int pad;

	if (!match(skb, &loc))
		return TC_ACT_OK;
	s = cryptbpf_scratch(&scratch);
	if (!s)
		return TC_ACT_SHOT;
	/* Never send in clear: no key means drop. */
	ctx = aes_ctx_get(&aes_keys, 0);
	if (!ctx) {
		COUNT(no_key);
		return TC_ACT_SHOT;
	}
	data_off = loc.payload_off + AES_RT_IV_LEN;
	plain_len = loc.payload_len - AES_RT_IV_LEN;
	/* Copy the IV before encrypting: bpf_crypto overwrites its IV buffer. */
	if (bpf_skb_load_bytes(skb, loc.payload_off, s->iv, AES_RT_IV_LEN))
		goto err;
	pad = aes_pkcs7_pad_skb(skb, plain_len);
	if (pad < 0)
		goto err;
	if (aes_cbc_skb(ctx, skb, data_off, plain_len + pad, s->iv, false))
		goto err;
	if (pkt_udp_grow(skb, &loc, pad))
		goto err;
	COUNT(encrypted);
	return TC_ACT_OK;
err:
	COUNT(errors);
	return TC_ACT_SHOT;
}

SEC("tc")
int aes_decrypt(struct __sk_buff *skb)
{
	struct bpf_crypto_ctx *ctx;
	struct aes_rt_scratch *s;
	struct udp_loc loc;
	__u32 data_off, ct_len, pad;

	if (!match(skb, &loc))
		return TC_ACT_OK;
	data_off = loc.payload_off + AES_RT_IV_LEN;
	ct_len = loc.payload_len - AES_RT_IV_LEN;
	if (!ct_len || (ct_len & (AES_BLOCK_SIZE - 1))) {
		COUNT(malformed);
		return TC_ACT_SHOT;
	}
	s = cryptbpf_scratch(&scratch);
	if (!s)
		return TC_ACT_SHOT;
	ctx = aes_ctx_get(&aes_keys, 0);
	if (!ctx) {
		COUNT(no_key);
		return TC_ACT_SHOT;
	}
	if (bpf_skb_load_bytes(skb, loc.payload_off, s->iv, AES_RT_IV_LEN))
		goto err;
	if (aes_cbc_skb(ctx, skb, data_off, ct_len, s->iv, true))
		goto err;
	if (bpf_skb_load_bytes(skb, data_off + ct_len - AES_BLOCK_SIZE, s->last,
			       AES_BLOCK_SIZE))
		goto err;
	pad = aes_pkcs7_check(s->last);
	if (!pad) {
		COUNT(bad_padding);
		return TC_ACT_SHOT;
	}
	if (bpf_skb_change_tail(skb, skb->len - pad, 0))
		goto err;
	if (pkt_udp_grow(skb, &loc, -(int)pad))
		goto err;
	COUNT(decrypted);
	return TC_ACT_OK;
err:
	COUNT(errors);
	return TC_ACT_SHOT;
}
