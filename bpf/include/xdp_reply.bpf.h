/* SPDX-License-Identifier: GPL-2.0 */
/* Answer a UDP datagram from XDP: take a received IPv4/UDP frame classified
 * by frame_classify.bpf.h, then turn it into the reply in place and return
 * XDP_TX (kernel side only).
 *
 *   int r = frame_classify_xdp(ctx, &fi);
 *   struct xdp_udp4 u;
 *   if (xdp_udp4_from_frame(r, &fi, &u))    // 0: an unfragmented IPv4/UDP datagram
 *       return XDP_DROP;                     //    whose UDP length is its IP payload
 *   ... read the request: bpf_xdp_load_bytes(ctx, u.payload_off, buf, n) ...
 *   if (xdp_udp4_reply(ctx, &u, reply, sizeof(*reply)))  // reply: map memory
 *       return XDP_DROP;
 *   return XDP_TX;
 *
 * xdp_udp4_reply() swaps the Ethernet addresses, the IPv4 addresses and the
 * UDP ports, resizes the frame with bpf_xdp_adjust_tail() so that the UDP
 * payload is exactly `len` bytes, writes the payload, sets IP total length,
 * TTL (64) and UDP length, and recomputes the IPv4 header checksum (options
 * included) and the UDP checksum (pseudo-header, header and payload) in
 * full. VLAN tags (as many as the classifier walks) are kept, so the reply
 * leaves on the VLAN the request came in on.
 *
 * Reflection: a spoofed request makes XDP send the reply to the spoofed
 * address. Callers should not answer with more bytes than they received
 * (zkp_filter's hello is as long as its challenge) or must bound how many
 * replies one address can cause (crypto_ratelimit).
 *
 * The reply copies headers with bpf_xdp_load_bytes()/bpf_xdp_store_bytes(),
 * which keeps the bounds reasoning trivial after the resize. Kernel >= 5.18
 * (bpf_xdp_load_bytes); bpf_xdp_adjust_tail() can grow a frame only into
 * the driver's tailroom (veth and generic XDP have plenty; some drivers have
 * little), so replies should be small.
 */
#pragma once

#include "cryptbpf.bpf.h"
#include "frame_classify.bpf.h"

#ifndef IPPROTO_UDP_
#define IPPROTO_UDP_ 17
#endif
#ifndef IP_DF_MF_OFF_MASK
#define IP_DF_MF_OFF_MASK 0x3fff /* MF flag + fragment offset */
#endif

#ifndef ETH_ALEN
#define ETH_ALEN 6
#endif

#define XDP_REPLY_MAX_PAYLOAD 512   /* bpf_csum_diff() takes at most 512 bytes */
#define XDP_REPLY_TTL 64
#define XDP_REPLY_NO_ROOM (-2)      /* the frame could not grow (no tailroom) */

struct xdp_udp4 {
	__u32 l3_off;        /* IPv4 header (14, or 18... behind VLAN tags) */
	__u32 l4_off;        /* UDP header */
	__u32 payload_off;   /* first payload byte */
	__u32 payload_len;   /* UDP length - 8 */
	__u32 ihl;           /* IPv4 header length in bytes, 20..60 */
	__be32 saddr, daddr; /* network byte order, as on the wire */
	__be16 sport, dport; /* network byte order */
};

/* Length of the frame (XDP programs without the frags flag only ever see
 * linear frames). The casts keep the pointers 64-bit: a 32-bit copy of a
 * packet pointer that clang spills is refused by the verifier. */
static __always_inline __u32 xdp_frame_len(struct xdp_md *ctx)
{
	return (void *)(long)ctx->data_end - (void *)(long)ctx->data;
}

/* The request as a reply needs it: frame_classify_xdp() said r (IPv4) and
 * fi is a UDP datagram, not fragmented, with IPv4 options NOP/EOL only (a
 * reply carries the request's options back) and a UDP length covering the
 * IP payload exactly (trailing Ethernet padding allowed). 0 = yes, u
 * filled; -1 = anything else. */
static __always_inline int xdp_udp4_from_frame(int r, const struct frame_info *fi,
					       struct xdp_udp4 *u)
{
	if (r != FRAME_IPV4 || fi->proto != IPPROTO_UDP_ ||
	    (fi->flags & (FRAME_F_FRAG_FIRST | FRAME_F_FRAG_LATER | FRAME_F_IP_OPTS)) ||
	    fi->udp_len != fi->l3_end - fi->l4_off)
		return -1;
	u->l3_off = fi->l3_off;
	u->ihl = fi->ihl;
	u->l4_off = fi->l4_off;
	u->saddr = fi->saddr;
	u->daddr = fi->daddr;
	u->sport = bpf_htons(fi->sport);
	u->dport = bpf_htons(fi->dport);
	u->payload_off = u->l4_off + sizeof(struct udphdr);
	u->payload_len = fi->udp_len - sizeof(struct udphdr);
	return 0;
}

static __always_inline __u16 xdp_csum_fold(__s64 sum)
{
	__u32 s = (__u32)sum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* Pseudo-header and UDP header, summed together for the UDP checksum. */
struct xdp_udp4_csum_hdr {
	__be32 saddr, daddr;
	__u8 zero, proto;
	__be16 udp_len;
	struct udphdr udp;      /* with check = 0 */
};

/* The reply's header buffers live in a per-CPU map, not on the stack: the
 * callers (crypto work plus SHA-256's own frame) need the stack themselves,
 * and bpf_csum_diff()/bpf_xdp_load_bytes() take map memory of variable
 * length without the verifier's uninitialised-stack rules. */
struct xdp_reply_scratch {
	__u8 iph[60];                  /* IPv4 header with options */
	__u8 _pad[4];
	struct xdp_udp4_csum_hdr ph;
	struct ethhdr eth;
	__u8 mac[ETH_ALEN];
};
CRYPTBPF_PERCPU_SCRATCH(xdp_reply_scratch, struct xdp_reply_scratch);

/* Turn the request described by u into a reply to its sender whose UDP
 * payload is payload[0 .. len). payload: map memory (bpf_csum_diff() reads
 * it), with round_up(len, 4) readable bytes of which those past len are
 * zero. len: 1..XDP_REPLY_MAX_PAYLOAD, best a compile-time constant.
 * Returns 0 (return XDP_TX next), XDP_REPLY_NO_ROOM when the frame could not
 * be resized (growing needs tailroom: generic XDP and most NIC drivers have
 * plenty, native XDP on veth has next to none for small skbs), or -1.
 * A subprogram of its own (static, so the verifier still checks it with the
 * caller's argument values). */
static __noinline int xdp_udp4_reply(struct xdp_md *ctx, const struct xdp_udp4 *u,
				     const void *payload, __u32 len)
{
	struct xdp_reply_scratch *x = cryptbpf_scratch(&xdp_reply_scratch);
	__u32 padded = (len + 3) & ~3U;
	struct xdp_udp4_csum_hdr *ph;
	struct iphdr *ip;
	__u32 ihl = u->ihl;
	int delta;
	__s64 sum;

	if (!x || len == 0 || len > XDP_REPLY_MAX_PAYLOAD || ihl < 20 || ihl > 60)
		return -1;
	/* Again, in asm: clang tests 20 <= ihl <= 60 as (ihl - 20) <= 40 on a
	 * copy, and 6.1's verifier does not carry that bound back to ihl, so
	 * bpf_xdp_load_bytes(.., x->iph, ihl) was refused (size may be 0 or
	 * past the map value). Bounding the register itself proves 20..60. */
	{
		__u64 b = ihl;

		asm volatile("if %0 >= 20 goto +1; %0 = 20;"
			     "if %0 <= 60 goto +1; %0 = 60" : "+r"(b));
		ihl = b;
	}
	ph = &x->ph;
	ip = (struct iphdr *)x->iph;
	delta = (int)(u->payload_off + len) - (int)xdp_frame_len(ctx);
	if (delta && bpf_xdp_adjust_tail(ctx, delta))
		return XDP_REPLY_NO_ROOM;

	/* Ethernet: back to the sender. */
	if (bpf_xdp_load_bytes(ctx, 0, &x->eth, sizeof(x->eth)))
		return -1;
	__builtin_memcpy(x->mac, x->eth.h_dest, ETH_ALEN);
	__builtin_memcpy(x->eth.h_dest, x->eth.h_source, ETH_ALEN);
	__builtin_memcpy(x->eth.h_source, x->mac, ETH_ALEN);
	if (bpf_xdp_store_bytes(ctx, 0, &x->eth, sizeof(x->eth)))
		return -1;

	/* IPv4: swap addresses, new length and TTL, checksum over ihl bytes
	 * (ihl is a multiple of 4 in 20..60, as bpf_csum_diff() requires). */
	if (bpf_xdp_load_bytes(ctx, u->l3_off, x->iph, ihl))
		return -1;
	ip->saddr = u->daddr;
	ip->daddr = u->saddr;
	ip->tot_len = bpf_htons(ihl + sizeof(struct udphdr) + len);
	ip->ttl = XDP_REPLY_TTL;
	ip->check = 0;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)x->iph, ihl, 0);
	if (sum < 0)
		return -1;
	ip->check = xdp_csum_fold(sum);
	if (bpf_xdp_store_bytes(ctx, u->l3_off, x->iph, ihl))
		return -1;

	/* UDP: swapped ports, length, payload, checksum. */
	ph->saddr = u->daddr;
	ph->daddr = u->saddr;
	ph->zero = 0;
	ph->proto = IPPROTO_UDP_;
	ph->udp_len = bpf_htons(sizeof(struct udphdr) + len);
	ph->udp.source = u->dport;
	ph->udp.dest = u->sport;
	ph->udp.len = ph->udp_len;
	ph->udp.check = 0;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)ph, sizeof(*ph), 0);
	if (sum < 0)
		return -1;
	/* len and padded were checked at the top, but clang may spill them
	 * as 32-bit values, whose bounds the verifier does not keep: bound
	 * them again in the registers the calls take */
	padded = (len + 3) & ~3U;
	CRYPTBPF_CLAMP(padded, XDP_REPLY_MAX_PAYLOAD);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)payload, padded, (__wsum)sum);
	if (sum < 0)
		return -1;
	ph->udp.check = xdp_csum_fold(sum);
	if (!ph->udp.check)
		ph->udp.check = 0xffff;  /* 0 means "no checksum" in IPv4 UDP */
	if (bpf_xdp_store_bytes(ctx, u->l4_off, &ph->udp, sizeof(ph->udp)))
		return -1;
	{
		__u64 b = len;

		asm volatile("if %0 >= 1 goto +1; %0 = 1;"
			     "if %0 <= %1 goto +1; %0 = %1" : "+r"(b) : "i"(XDP_REPLY_MAX_PAYLOAD));
		if (bpf_xdp_store_bytes(ctx, u->payload_off, (void *)payload, b))
			return -1;
	}
	return 0;
}
