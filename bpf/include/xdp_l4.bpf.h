/* SPDX-License-Identifier: GPL-2.0 */
/* Which transport port is a frame for? A fail-closed classifier for XDP
 * filters that guard ports (kernel side only).
 *
 *   struct xdp_l4 l4;
 *   switch (xdp_l4_classify(ctx, &l4)) {
 *   case XDP_L4_OTHER: return XDP_PASS;      // not TCP/UDP, or no L4 header here
 *   case XDP_L4_BAD:   ... drop if a guarded port could be hidden in it
 *   case XDP_L4_IPV4:  ... l4.proto, l4.saddr, l4.dport
 *   case XDP_L4_IPV6:  ... l4.proto, l4.dport (l4.saddr unset)
 *   }
 *
 * - Up to two VLAN tags are skipped (traffic for a VLAN sub-interface
 *   crosses the parent's XDP hook tagged).
 * - Fragments: only the first fragment carries the ports; later fragments
 *   are XDP_L4_OTHER (without the first one they never reassemble).
 * - IPv6: up to XDP_L4_MAX_EXT extension headers (hop-by-hop, routing,
 *   destination options, fragment, AH) are walked; more than that is
 *   XDP_L4_BAD, so a chain of options cannot smuggle a packet past a port
 *   check.
 * - A TCP/UDP header cut short, or an IPv4 header with an impossible IHL or
 *   total length, is XDP_L4_BAD.
 */
#pragma once

#include "cryptbpf.bpf.h"
#include "xdp_reply.bpf.h"

#define XDP_L4_BAD   (-1)
#define XDP_L4_OTHER 0
#define XDP_L4_IPV4  4
#define XDP_L4_IPV6  6

#define XDP_L4_MAX_EXT 4

#ifndef IPPROTO_TCP_
#define IPPROTO_TCP_ 6
#endif

struct xdp_l4 {
	__be32 saddr;    /* IPv4 source, network byte order */
	__u16 dport;     /* host byte order */
	__u8 proto;      /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 _pad;
	__u32 l4_off;
};

/* TCP/UDP at l4 (inside the frame up to end): its destination port. */
static __always_inline int xdp_l4_ports(struct xdp_l4 *l4, void *data, void *l4p, void *end)
{
	__be16 *ports = l4p;

	if (l4->proto != IPPROTO_TCP_ && l4->proto != IPPROTO_UDP_)
		return XDP_L4_OTHER;
	/* the whole transport header must be there, not just the ports */
	if (l4p + (l4->proto == IPPROTO_TCP_ ? 20 : 8) > end)
		return XDP_L4_BAD;
	l4->dport = bpf_ntohs(ports[1]);
	l4->l4_off = l4p - data;
	return 1;
}

static __always_inline int xdp_l4_v4(struct xdp_md *ctx, struct xdp_l4 *l4, struct iphdr *ip)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u32 ihl, tot;
	int r;

	if ((void *)(ip + 1) > end || ip->version != 4)
		return XDP_L4_BAD;
	ihl = ip->ihl * 4;
	tot = bpf_ntohs(ip->tot_len);
	/* 6.1's verifier does not bound a byte swap (newer ones know it is
	 * < 65536), so `ip + tot` would be "math between pkt pointer and
	 * register with unbounded min value"; clamp in asm so the bound
	 * stays in the register used for the pointer arithmetic. */
	CRYPTBPF_CLAMP(tot, 0xffff);
	if (ihl < sizeof(*ip) || tot < ihl || (void *)ip + tot > end)
		return XDP_L4_BAD;
	if (bpf_ntohs(ip->frag_off) & 0x1fff)      /* not the first fragment */
		return XDP_L4_OTHER;
	l4->proto = ip->protocol;
	l4->saddr = ip->saddr;
	/* the transport header must fit in the IP datagram */
	if ((l4->proto == IPPROTO_TCP_ && tot < ihl + 20) ||
	    (l4->proto == IPPROTO_UDP_ && tot < ihl + 8))
		return XDP_L4_BAD;
	r = xdp_l4_ports(l4, data, (void *)ip + ihl, end);
	return r == 1 ? XDP_L4_IPV4 : r;
}

static __always_inline int xdp_l4_is_ext(__u8 nexthdr)
{
	return nexthdr == 0 || nexthdr == 43 || nexthdr == 60 || nexthdr == 44 ||
	       nexthdr == 51;
}

static __always_inline int xdp_l4_v6(struct xdp_md *ctx, struct xdp_l4 *l4, struct ipv6hdr *ip6)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	void *p = ip6 + 1;
	__u8 *ext;             /* next header, length, (fragment: offset) */
	__u8 nexthdr;
	int r;

	if (p > end || ip6->version != 6)
		return XDP_L4_BAD;
	nexthdr = ip6->nexthdr;
#pragma clang loop unroll(full)
	for (int i = 0; i < XDP_L4_MAX_EXT; i++) {
		if (!xdp_l4_is_ext(nexthdr))
			break;
		ext = p;
		if ((void *)(ext + 8) > end)           /* every one is >= 8 bytes */
			return XDP_L4_BAD;
		if (nexthdr == 44) {                    /* fragment header */
			if (bpf_ntohs(*(__be16 *)(ext + 2)) & 0xfff8)
				return XDP_L4_OTHER;    /* offset != 0: no L4 header */
			p += 8;
		} else if (nexthdr == 51) {             /* AH: 4-byte units */
			p += ((__u32)ext[1] + 2) * 4;
		} else {
			p += ((__u32)ext[1] + 1) * 8;
		}
		nexthdr = ext[0];
	}
	if (xdp_l4_is_ext(nexthdr))
		return XDP_L4_BAD;                      /* chain too long */
	l4->proto = nexthdr;
	r = xdp_l4_ports(l4, data, p, end);
	return r == 1 ? XDP_L4_IPV6 : r;
}

static __always_inline int xdp_l4_classify(struct xdp_md *ctx, struct xdp_l4 *l4)
{
	__be16 proto;
	void *l3 = xdp_l2(ctx, &proto);

	if (!l3)
		return XDP_L4_OTHER;     /* not even an Ethernet header */
	if (proto == bpf_htons(ETH_P_IP))
		return xdp_l4_v4(ctx, l4, l3);
	if (proto == bpf_htons(ETH_P_IPV6))
		return xdp_l4_v6(ctx, l4, l3);
	return XDP_L4_OTHER;
}
