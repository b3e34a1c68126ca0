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

static __always_inline int xdp_l4_ports(struct xdp_md *ctx, struct xdp_l4 *l4, __u32 off)
{
	__be16 ports[2];

	if (l4->proto != IPPROTO_TCP_ && l4->proto != IPPROTO_UDP_)
		return XDP_L4_OTHER;
	if (bpf_xdp_load_bytes(ctx, off, ports, sizeof(ports)))
		return XDP_L4_BAD;
	/* the rest of the header must be there too */
	if (off + (l4->proto == IPPROTO_TCP_ ? 20 : 8) > ctx->data_end - ctx->data)
		return XDP_L4_BAD;
	l4->dport = bpf_ntohs(ports[1]);
	l4->l4_off = off;
	return 1;
}

static __always_inline int xdp_l4_v4(struct xdp_md *ctx, struct xdp_l4 *l4, __u32 off)
{
	struct iphdr ip;
	__u32 ihl, tot;

	if (bpf_xdp_load_bytes(ctx, off, &ip, sizeof(ip)) || ip.version != 4)
		return XDP_L4_BAD;
	ihl = ip.ihl * 4;
	tot = bpf_ntohs(ip.tot_len);
	if (ihl < sizeof(ip) || tot < ihl || off + tot > ctx->data_end - ctx->data)
		return XDP_L4_BAD;
	if (bpf_ntohs(ip.frag_off) & 0x1fff)       /* not the first fragment */
		return XDP_L4_OTHER;
	l4->proto = ip.protocol;
	l4->saddr = ip.saddr;
	if (l4->proto == IPPROTO_TCP_ || l4->proto == IPPROTO_UDP_) {
		/* the transport header must fit in the IP datagram */
		if (tot < ihl + (l4->proto == IPPROTO_TCP_ ? 20 : 8))
			return XDP_L4_BAD;
	}
	int r = xdp_l4_ports(ctx, l4, off + ihl);
	return r == 1 ? XDP_L4_IPV4 : r;
}

static __always_inline int xdp_l4_v6(struct xdp_md *ctx, struct xdp_l4 *l4, __u32 off)
{
	struct ipv6hdr ip6;
	__u8 ext[2];            /* next header, length */
	__u8 nexthdr;
	__be16 frag;

	if (bpf_xdp_load_bytes(ctx, off, &ip6, sizeof(ip6)) || ip6.version != 6)
		return XDP_L4_BAD;
	nexthdr = ip6.nexthdr;
	off += sizeof(ip6);
#pragma clang loop unroll(full)
	for (int i = 0; i < XDP_L4_MAX_EXT; i++) {
		if (nexthdr != 0 && nexthdr != 43 && nexthdr != 60 &&
		    nexthdr != 44 && nexthdr != 51)
			break;
		if (bpf_xdp_load_bytes(ctx, off, ext, sizeof(ext)))
			return XDP_L4_BAD;
		if (nexthdr == 44) {                    /* fragment header */
			if (bpf_xdp_load_bytes(ctx, off + 2, &frag, sizeof(frag)))
				return XDP_L4_BAD;
			if (bpf_ntohs(frag) & 0xfff8)   /* offset != 0 */
				return XDP_L4_OTHER;
			off += 8;
		} else if (nexthdr == 51) {             /* AH: 4-byte units */
			off += ((__u32)ext[1] + 2) * 4;
		} else {
			off += ((__u32)ext[1] + 1) * 8;
		}
		nexthdr = ext[0];
	}
	if (nexthdr == 0 || nexthdr == 43 || nexthdr == 60 || nexthdr == 44 ||
	    nexthdr == 51)
		return XDP_L4_BAD;                      /* chain too long */
	l4->proto = nexthdr;
	int r = xdp_l4_ports(ctx, l4, off);
	return r == 1 ? XDP_L4_IPV6 : r;
}

static __always_inline int xdp_l4_classify(struct xdp_md *ctx, struct xdp_l4 *l4)
{
	__be16 proto;
	int l2 = xdp_l2_len(ctx, &proto);

	if (l2 < 0)
		return XDP_L4_OTHER;     /* not even an Ethernet header */
	if (proto == bpf_htons(ETH_P_IP))
		return xdp_l4_v4(ctx, l4, l2);
	if (proto == bpf_htons(ETH_P_IPV6))
		return xdp_l4_v6(ctx, l4, l2);
	return XDP_L4_OTHER;
}
