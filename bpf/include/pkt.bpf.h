/* SPDX-License-Identifier: GPL-2.0 */
/* Packet parsing and header fix-ups for TC programs (kernel side only).
 *
 * Headers are copied out with bpf_skb_load_bytes() rather than read through
 * direct packet pointers: the programs here resize packets, and copying
 * keeps the bounds reasoning trivial for the verifier and works on 6.1. */
#pragma once

#include "cryptbpf.bpf.h"

#define IPPROTO_UDP_ 17
#define IP_DF_MF_OFF_MASK 0x3fff /* MF flag + fragment offset */

struct udp_loc {
	__u32 l3_off;       /* IPv4 header */
	__u32 l4_off;       /* UDP header */
	__u32 payload_off;  /* first byte after the UDP header */
	__u32 payload_len;  /* UDP length - 8 */
	__u16 sport, dport; /* host byte order */
	__u16 ip_tot_len;   /* host byte order */
	__u16 udp_len;      /* host byte order */
};

/* Locate an unfragmented IPv4/UDP datagram after an Ethernet header whose
 * lengths are consistent with the skb. Returns 0 when found. Untagged
 * frames only: for test fixtures (tests/bpf/cas_mangler.bpf.c). Programs
 * that guard or transform traffic classify it with frame_classify.bpf.h,
 * which sees through VLAN tags and fails closed. */
static __always_inline int pkt_find_udp(struct __sk_buff *skb, struct udp_loc *loc)
{
	struct ethhdr eth;
	struct iphdr ip;
	struct udphdr udp;
	__u32 ihl;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) ||
	    eth.h_proto != bpf_htons(ETH_P_IP))
		return -1;
	if (bpf_skb_load_bytes(skb, sizeof(eth), &ip, sizeof(ip)) ||
	    ip.version != 4 || ip.protocol != IPPROTO_UDP_ ||
	    (bpf_ntohs(ip.frag_off) & IP_DF_MF_OFF_MASK))
		return -1;
	ihl = ip.ihl * 4;
	if (ihl < sizeof(ip))
		return -1;
	loc->l3_off = sizeof(eth);
	loc->l4_off = loc->l3_off + ihl;
	loc->ip_tot_len = bpf_ntohs(ip.tot_len);
	if (loc->l3_off + loc->ip_tot_len != skb->len)
		return -1;
	if (bpf_skb_load_bytes(skb, loc->l4_off, &udp, sizeof(udp)))
		return -1;
	loc->udp_len = bpf_ntohs(udp.len);
	if (loc->udp_len < sizeof(udp) || loc->udp_len != loc->ip_tot_len - ihl)
		return -1;
	loc->sport = bpf_ntohs(udp.source);
	loc->dport = bpf_ntohs(udp.dest);
	loc->payload_off = loc->l4_off + sizeof(udp);
	loc->payload_len = loc->udp_len - sizeof(udp);
	return 0;
}

/* After the skb grew (or shrank) by `delta` bytes at its tail, rewrite IPv4
 * total length (and checksum, incrementally) and UDP length. The UDP checksum
 * is set to 0, "no checksum", which IPv4 allows. */
static __always_inline int pkt_udp_grow(struct __sk_buff *skb,
					const struct udp_loc *loc, int delta)
{
	__be16 old_tot = bpf_htons(loc->ip_tot_len);
	__be16 new_tot = bpf_htons(loc->ip_tot_len + delta);
	__be16 udp_len = bpf_htons(loc->udp_len + delta);
	__u16 zero = 0;

	if (bpf_l3_csum_replace(skb, loc->l3_off + offsetof(struct iphdr, check),
				old_tot, new_tot, sizeof(__u16)))
		return -1;
	if (bpf_skb_store_bytes(skb, loc->l3_off + offsetof(struct iphdr, tot_len),
				&new_tot, sizeof(new_tot), 0) ||
	    bpf_skb_store_bytes(skb, loc->l4_off + offsetof(struct udphdr, len),
				&udp_len, sizeof(udp_len), 0) ||
	    bpf_skb_store_bytes(skb, loc->l4_off + offsetof(struct udphdr, check),
				&zero, sizeof(zero), 0))
		return -1;
	return 0;
}
