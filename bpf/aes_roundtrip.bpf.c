// SPDX-License-Identifier: GPL-2.0
/* aes_roundtrip: the smallest real bpf_crypto data path.
 *
 * aes_setup (SYSCALL) installs a cbc(aes) context from a key handed in by
 * userspace; aes_encrypt (TC egress) and aes_decrypt (TC ingress) transform
 * UDP payloads to one port in place. Wire format: include/aes_roundtrip.h.
 *
 * Datagrams are found with the shared classifier (frame_classify.bpf.h), so
 * VLAN tags left in the frame (a VLAN device on top, or TC ingress with
 * more than one tag) do not make a datagram to the port pass untouched; one
 * that cannot be transformed in place (IPv6, a first fragment, Ethernet
 * padding, a UDP length short of the IP payload, more tags or IPv6
 * extension headers than the classifier walks) is dropped and counted. */
#include "cryptbpf.bpf.h"
#include "aes_cbc.bpf.h"
#include "pkt.bpf.h"
#include "frame_classify.bpf.h"
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
	struct frame_info fi;   /* map memory: see encrypted_tunnel's frame_scratch */
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

/* 1: a datagram to transform, loc filled; 0: not ours, passed untouched
 * (other traffic, headers the kernel drops, a payload too short to hold
 * the IV); -1: a datagram to the port that cannot be transformed in place,
 * or a frame the port could hide in: dropped and counted. */
static __always_inline int match(struct __sk_buff *skb, struct udp_loc *loc)
{
	struct aes_rt_scratch *s = cryptbpf_scratch(&scratch);
	struct frame_info *f;
	int r;

	if (!s)
		return -1;
	f = &s->fi;
	r = frame_classify_skb(skb, f, 0);

	if (r == FRAME_BAD_L2 || r == FRAME_BAD_EXT)
		return -1;
	if (r <= 0 || f->proto != IPPROTO_UDP_ || !(f->flags & FRAME_F_PORTS) ||
	    f->dport != udp_port)
		return 0;
	if (r != FRAME_IPV4 || (f->flags & FRAME_F_FRAG_FIRST) || f->l3_end != skb->len ||
	    f->udp_len != f->l3_end - f->l4_off)
		return -1;
	if (f->udp_len - sizeof(struct udphdr) < AES_RT_IV_LEN)
		return 0;
	loc->l3_off = f->l3_off;
	loc->l4_off = f->l4_off;
	loc->payload_off = f->l4_off + sizeof(struct udphdr);
	loc->payload_len = f->udp_len - sizeof(struct udphdr);
	loc->sport = f->sport;
	loc->dport = f->dport;
	loc->ip_tot_len = f->l3_end - f->l3_off;
	loc->udp_len = f->udp_len;
	return 1;
}

SEC("tc")
int aes_encrypt(struct __sk_buff *skb)
{
	struct bpf_crypto_ctx *ctx;
	struct aes_rt_scratch *s;
	struct udp_loc loc;
	__u32 data_off, plain_len;
	int pad;

	switch (match(skb, &loc)) {
	case 0:
		return TC_ACT_OK;
	case -1:
		COUNT(unsupported);     /* never sent in clear */
		return TC_ACT_SHOT;
	}
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

	switch (match(skb, &loc)) {
	case 0:
		return TC_ACT_OK;
	case -1:
		COUNT(unsupported);
		return TC_ACT_SHOT;
	}
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
