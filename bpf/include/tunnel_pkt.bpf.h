/* SPDX-License-Identifier: GPL-2.0 */
/* encrypted_tunnel: packet layout, IPv4 header rewriting and the Internet
 * checksum work that CHECKSUM_PARTIAL packets need (kernel side only).
 *
 * Offsets are relative to the start of the frame (the Ethernet header) as
 * TC sees it; only IPv4 headers without options are handled, so every
 * offset is a constant:
 *
 *   14: IPv4 header   34: tunnel_hdr   46: sealed bytes
 */
#pragma once

#include "cryptbpf.bpf.h"
#include "kfuncs.bpf.h"
#include "encrypted_tunnel.h"
#include "pkt_csum.bpf.h"

#define TUNNEL_L3_OFF   14
#define TUNNEL_HDR_OFF  (TUNNEL_L3_OFF + TUNNEL_IP_HLEN)	/* 34 */
#define TUNNEL_DATA_OFF (TUNNEL_HDR_OFF + TUNNEL_HDR_LEN)	/* 46 */
/* sealed packets: the fixed part of what follows the IPv4 header */
#define TUNNEL_FIXED_OVERHEAD (TUNNEL_HDR_LEN + TUNNEL_TAG_LEN + TUNNEL_CSUM_LEN)


#ifndef CHECKSUM_PARTIAL
#define CHECKSUM_PARTIAL 3
#endif

/* Fold a sum of 16-bit words to 16 bits (end-around carry), not inverted. */
/* One's complement a + b (16-bit values). */
static __always_inline __u32 tunnel_csum_add(__u32 a, __u32 b)
{
	return pkt_csum_fold((__u64)a + b);
}

/* Header checksum of a 20-byte IPv4 header (its check field is ignored). */
static __always_inline __u16 tunnel_ip_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < TUNNEL_IP_HLEN / 2; i++)
		if (i != 5)	/* the check field */
			sum += w[i];
	return ~pkt_csum_fold(sum) & 0xffff;
}

/* Store a rewritten copy of `ip` (protocol, total length) at offset 14
 * with a fresh header checksum. */
static __always_inline int tunnel_store_ip(struct __sk_buff *skb, const struct iphdr *ip,
					   __u8 protocol, __u32 tot_len)
{
	struct iphdr out = *ip;

	out.protocol = protocol;
	out.tot_len = bpf_htons(tot_len);
	out.check = tunnel_ip_csum(&out);
	return bpf_skb_store_bytes(skb, TUNNEL_L3_OFF, &out, sizeof(out), 0);
}

/* ---- CHECKSUM_PARTIAL ----
 * Locally generated TCP (and offloaded UDP) leaves the L4 checksum to the
 * device: the field holds only the pseudo-header sum, and after TC either
 * the NIC or skb_checksum_help() (device without checksum offload) writes
 * ~sum(bytes from csum_start to the end) at csum_start + csum_offset. BPF
 * cannot clear that request, and those positions are inside our sealed
 * bytes after encryption. So the sender (1) finishes the inner checksum
 * itself before sealing, exactly as skb_checksum_help() would, and (2)
 * after sealing sets csum_fix so that the deferred computation writes back
 * the two bytes that are already there. */

struct tunnel_partial {
	__u32 start;	/* csum_start, as an offset from the frame start */
	__u32 field;	/* csum_start + csum_offset */
};

#define TUNNEL_CSUM_DONE    0	/* complete, or none to finish */
#define TUNNEL_CSUM_PARTIAL 1	/* deferred: p is filled */
#define TUNNEL_CSUM_UNKNOWN 2	/* this kernel cannot tell (< 6.2) */

/* Whether the skb carries a deferred checksum: TUNNEL_CSUM_*. */
static __always_inline int tunnel_get_partial(struct __sk_buff *skb, struct tunnel_partial *p)
{
	struct sk_buff *k;

	if (!bpf_ksym_exists(bpf_cast_to_kern_ctx))
		return TUNNEL_CSUM_UNKNOWN;
	k = bpf_cast_to_kern_ctx(skb);
	if (BPF_CORE_READ_BITFIELD(k, ip_summed) != CHECKSUM_PARTIAL)
		return TUNNEL_CSUM_DONE;
	p->start = k->csum_start - (__u32)(k->data - k->head);
	p->field = p->start + k->csum_offset;
	return TUNNEL_CSUM_PARTIAL;
}

/* Offset of the L4 checksum field in an IP payload of `len` bytes, for
 * the protocols whose checksum may be deferred (TCP, UDP); 0 otherwise. */
static __always_inline __u32 tunnel_l4_csum_off(__u32 proto, __u32 len)
{
	if (proto == 6 && len >= 18)
		return 16;
	if (proto == 17 && len >= 8)
		return 6;
	return 0;
}

/* What skb_checksum_help() writes: csum_fold(sum) ?: CSUM_MANGLED_0. */
static __always_inline __u16 tunnel_csum_final(__u32 folded)
{
	__u16 v = ~folded & 0xffff;

	return v ? v : 0xffff;
}

/* (1) Finish the inner L4 checksum over [p->start, end) in place. */
static __always_inline int tunnel_finish_inner_csum(struct __sk_buff *skb, __u8 *buf,
						    const struct tunnel_partial *p, __u32 end)
{
	int sum = pkt_csum_skb(skb, buf, p->start, end - p->start, 0);
	__u16 v;

	if (sum < 0)
		return -1;
	v = tunnel_csum_final(sum);
	return bpf_skb_store_bytes(skb, p->field, &v, sizeof(v), 0);
}

/* (1') Where the kernel cannot tell (no bpf_cast_to_kern_ctx, Linux < 6.2):
 * recompute the L4 checksum of an unfragmented TCP or UDP packet from
 * scratch, field zeroed and pseudo-header added. A complete checksum comes
 * out the same, a deferred one finished; a UDP datagram sent without one
 * gets one. Fragments are never deferred (IP finishes the checksum before
 * fragmenting) and cannot be summed alone: left as they are. The sums use
 * 16-bit words as they sit in memory, like pkt_csum_skb. */
static __always_inline int tunnel_recompute_l4_csum(struct __sk_buff *skb, __u8 *buf,
						    const struct iphdr *ip, __u32 len)
{
	__u32 off = tunnel_l4_csum_off(ip->protocol, len);
	const __u16 *addr = (const __u16 *)&ip->saddr;	/* saddr, daddr */
	__u16 zero = 0, v;
	__u64 sum;
	int l4;

	if (!off || (ip->frag_off & bpf_htons(0x3fff)))	/* MF or an offset */
		return 0;
	if (bpf_skb_store_bytes(skb, TUNNEL_HDR_OFF + off, &zero, sizeof(zero), 0))
		return -1;
	l4 = pkt_csum_skb(skb, buf, TUNNEL_HDR_OFF, len, 0);
	if (l4 < 0)
		return -1;
	sum = (__u64)l4 + addr[0] + addr[1] + addr[2] + addr[3] +
	      bpf_htons((__u16)ip->protocol) + bpf_htons((__u16)len);
	v = tunnel_csum_final(pkt_csum_fold(sum));
	return bpf_skb_store_bytes(skb, TUNNEL_HDR_OFF + off, &v, sizeof(v), 0);
}

/* (2) csum_fix for the sealed packet: region [start, end) with csum_fix
 * (its last two bytes) still zero; C = the two bytes at `field`. The
 * deferred computation writes ~fold(S + F) at field; we need that to be C,
 * so F = ~C - S in one's complement. F's bytes sit at an odd distance from
 * start when the region length is odd: then they pair the other way round.
 * Returns 1 when no F works (C == 0: the kernel would write 0xffff). */
static __always_inline int tunnel_set_csum_fix(struct __sk_buff *skb, __u8 *buf,
					       __u32 start, __u32 field, __u32 end)
{
	int sum = pkt_csum_skb(skb, buf, start, end - start, 0);
	__u16 c, fix;

	if (sum < 0 || bpf_skb_load_bytes(skb, field, &c, sizeof(c)))
		return -1;
	if (c == 0)
		return 1;
	fix = tunnel_csum_add(~c & 0xffff, ~sum & 0xffff);
	if ((end - start) & 1)
		fix = __builtin_bswap16(fix);
	return bpf_skb_store_bytes(skb, end - TUNNEL_CSUM_LEN, &fix, sizeof(fix), 0) ? -1 : 0;
}
