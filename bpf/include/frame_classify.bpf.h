/* SPDX-License-Identifier: GPL-2.0 */
/* What will the kernel's IP stack make of this Ethernet frame? One
 * fail-closed classifier for every cryptbpf program that filters, verifies
 * or seals IP traffic, from XDP and from TC (kernel side only).
 *
 *   struct frame_info fi;                       // stack or map memory
 *   int r = frame_classify_xdp(ctx, &fi);       // TC: frame_classify_skb(skb, &fi, 0)
 *                                               // L3 only: FRAME_L3_ONLY in opts
 *   if (r < 0)            drop, count under r's reason (FRAME_BAD_*)
 *   if (r == FRAME_NOT_IP) pass: the IP stack never sees it (ARP, LLDP, ...)
 *   r == FRAME_IPV4 / FRAME_IPV6: fi.proto, fi.dport (FRAME_F_PORTS), ...
 *
 * The rule it enforces: a frame is either classified with certainty, or it
 * is FRAME_BAD_* and the caller drops it. Each check mirrors what the
 * kernel would do with the frame after XDP/TC:
 *
 * - VLAN tags. __netif_receive_skb_core() strips every 802.1Q/802.1ad tag
 *   with VLAN id 0 (priority tags), however many, and delivers the inner
 *   packet to the device's own IP stack; a tag with another id goes to that
 *   VLAN's sub-interface (or is dropped when there is none). Both kinds are
 *   walked here, any id, up to FRAME_MAX_TAGS; a deeper stack is
 *   FRAME_BAD_L2. So a policy applies alike to the device and to VLAN
 *   sub-interfaces on top of it (their traffic crosses this hook tagged).
 *   FRAME_F_VLAN_ID says a tag with an id other than 0 was seen. TC
 *   ingress runs after the first tag was moved to skb->vlan_tci (then
 *   skb->protocol is 0x8100 when more tags follow): frame_classify_skb()
 *   counts that tag too (FRAME_F_HW_TAG).
 * - IPv4: version 4, IHL >= 5, the header inside the frame and its
 *   checksum right (ip_rcv_core() drops anything else); total length no
 *   larger than the frame (Ethernet padding after it is fine) and no
 *   smaller than the headers. Options: NOP and EOL are skipped; anything
 *   else sets FRAME_F_IP_OPTS (the kernel acts on some options and drops
 *   packets with others: a caller that commits state for a packet it passes
 *   must refuse them).
 * - IPv6: version 6, payload length inside the frame, up to
 *   FRAME_MAX_EXT extension headers (hop-by-hop, routing, fragment,
 *   destination options, AH) walked to the transport header; a longer
 *   chain is FRAME_BAD_EXT (the kernel would walk it: a port could hide
 *   behind it). A programme may lower the bound by defining FRAME_MAX_EXT
 *   before including this header.
 * - Fragments: a first fragment carries the ports (FRAME_F_FRAG_FIRST);
 *   a later one has none (FRAME_F_FRAG_LATER, no FRAME_F_PORTS). Linux
 *   reassembles before delivering and discards a whole datagram when
 *   fragments overlap, so a later fragment whose first fragment was
 *   dropped never reaches a socket: callers pass later fragments and drop
 *   first fragments to what they guard.
 * - TCP/UDP: the whole transport header inside the frame (else
 *   FRAME_BAD_HDR) and inside the IP datagram (else FRAME_BAD_LEN); for an
 *   unfragmented UDP datagram 8 <= UDP length <= IP payload (the kernel
 *   drops anything else; a shorter UDP length is legal: the kernel trims
 *   the rest). The UDP/TCP checksum is not checked here (it costs a pass
 *   over the payload): a caller that commits state for a datagram it
 *   passes on checks it itself.
 * - ICMP/ICMPv6 errors (destination unreachable, packet too big, time
 *   exceeded, parameter problem, source quench, redirect) are delivered to
 *   the socket of the flow they quote: FRAME_F_ICMP_ERR, and the quoted
 *   flow in quoted_proto (0 when it cannot be read), quoted_port (the
 *   quoted packet's source port: ours) and quoted_peer (its IPv4
 *   destination: the remote end).
 *
 * When a frame is bad, what was read before the check that failed is left
 * in *fi: a caller may still look at fi.family/fi.saddr (FRAME_F_ADDRS)
 * and fi.dport (FRAME_F_PORTS) to decide whose the drop is.
 *
 * Cost: direct packet access, no helper call; the work is in a global
 * function of its own, verified once (not once per path of its caller).
 * Needs bpf-to-bpf calls with a struct pointer argument (Linux 5.6+).
 */
#pragma once

#include "cryptbpf.bpf.h"

#ifndef ETH_P_8021Q
#define ETH_P_8021Q  0x8100
#define ETH_P_8021AD 0x88A8
#endif

#define FRAME_MAX_TAGS 8        /* VLAN tags walked; more: FRAME_BAD_L2 */
#ifndef FRAME_MAX_EXT
#define FRAME_MAX_EXT 4         /* IPv6 extension headers walked; more: FRAME_BAD_EXT */
#endif
#define FRAME_MAX_L3_OFF (14 + 4 * FRAME_MAX_TAGS)   /* 46 */
/* The classifier never looks this far into a frame (46 + IPv6 40 + the
 * extension headers); offsets are clamped to it for the verifier. */
#define FRAME_MAX_OFF 0x3fff

/* Results. */
#define FRAME_NOT_IP   0        /* no IPv4/IPv6 behind the tags: not for the IP stack */
#define FRAME_IPV4     4
#define FRAME_IPV6     6
#define FRAME_BAD_L2   (-1)     /* frame shorter than its Ethernet header or a tag, or more than FRAME_MAX_TAGS tags */
#define FRAME_BAD_HDR  (-2)     /* IP or transport header cut by the end of the frame, IP version/IHL/checksum wrong */
#define FRAME_BAD_LEN  (-3)     /* IP length beyond the frame or short of its headers, UDP length the kernel drops */
#define FRAME_BAD_EXT  (-4)     /* more than FRAME_MAX_EXT IPv6 extension headers */

/* frame_info.flags */
#define FRAME_F_PORTS      0x0001  /* TCP/UDP ports read (not a later fragment) */
#define FRAME_F_FRAG_FIRST 0x0002  /* first fragment of a fragmented datagram (IPv6: or an atomic fragment) */
#define FRAME_F_FRAG_LATER 0x0004  /* not the first fragment: no transport header */
#define FRAME_F_IP_OPTS    0x0008  /* IPv4 options other than NOP/EOL */
#define FRAME_F_VLAN_ID    0x0010  /* a VLAN tag with an id other than 0 */
#define FRAME_F_HW_TAG     0x0020  /* TC: a tag was already taken out (skb->vlan_tci) */
#define FRAME_F_ICMP_ERR   0x0040  /* ICMP/ICMPv6 error: see quoted_* */
#define FRAME_F_ADDRS      0x0080  /* family, saddr, daddr read (a complete IPv4/IPv6 header) */

/* classify_*() options */
#define FRAME_L3_ONLY      1       /* stop after the IP header (TC, where the rest may not be linear) */

struct frame_info {
	__u32 l3_off;          /* IP header (14 + 4 * tags) */
	__u32 l4_off;          /* transport header (IPv6: after the extension headers) */
	__u32 l3_end;          /* end of the IP datagram: l3_off + its total length */
	__be32 saddr, daddr;   /* IPv4 addresses as on the wire (0 for IPv6) */
	__be32 quoted_peer;    /* ICMP error (IPv4): destination of the quoted packet */
	__u16 sport, dport;    /* TCP/UDP ports, host order (FRAME_F_PORTS) */
	__u16 udp_len;         /* UDP length field, host order */
	__u16 flags;           /* FRAME_F_* */
	__u16 quoted_port;     /* ICMP error: source port of the quoted packet (ours) */
	__u8 quoted_proto;     /* ICMP error: its protocol (TCP/UDP), 0 if not readable */
	__u8 proto;            /* transport protocol */
	__u8 family;           /* 4 or 6 once FRAME_F_ADDRS */
	__u8 tags;             /* VLAN tags in the frame before the IP header */
	__u8 ihl;              /* IPv4 header length in bytes */
	__u8 _pad;
};

#define FRAME_IPPROTO_ICMP   1
#define FRAME_IPPROTO_TCP    6
#define FRAME_IPPROTO_UDP    17
#define FRAME_IPPROTO_ICMPV6 58

struct frame_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

static __always_inline int frame_is_tag(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

/* Read a value back from fi (memory the verifier does not track) as an
 * unknown scalar no larger than max: the paths that reached here with
 * different constants (one per number of tags, per extension header kind)
 * become one state, so what follows is verified once, not once per path. */
#define FRAME_RELOAD(field, max) ({					\
	__u64 __x = *(volatile __u32 *)&(field);			\
	CRYPTBPF_CLAMP(__x, max);					\
	__x;								\
})

/* TCP or UDP header at l4 (inside the frame up to end): ports. 0, or
 * FRAME_BAD_HDR when the header is cut; other protocols: 0, no ports. */
static __always_inline int frame_ports(struct frame_info *fi, void *l4, void *end)
{
	struct udphdr *udp = l4;

	if (fi->proto == FRAME_IPPROTO_UDP) {
		if ((void *)(udp + 1) > end)
			return FRAME_BAD_HDR;
		fi->udp_len = bpf_ntohs(udp->len);
	} else if (fi->proto == FRAME_IPPROTO_TCP) {
		if (l4 + 20 > end)          /* the whole header, not just the ports */
			return FRAME_BAD_HDR;
	} else {
		return 0;
	}
	fi->sport = bpf_ntohs(udp->source);
	fi->dport = bpf_ntohs(udp->dest);
	fi->flags |= FRAME_F_PORTS;
	return 0;
}

/* Lengths of the transport part, once the headers were found in the frame:
 * [l4_off, l3_end) must hold the transport header, and an unfragmented
 * UDP datagram's length must be one the kernel keeps. */
static __always_inline int frame_l4_lengths(struct frame_info *fi)
{
	__u32 room = fi->l3_end - fi->l4_off;       /* l4_off <= l3_end checked */

	if (fi->flags & FRAME_F_FRAG_LATER)
		return 0;
	if ((fi->proto == FRAME_IPPROTO_UDP && room < 8) ||
	    (fi->proto == FRAME_IPPROTO_TCP && room < 20) ||
	    ((fi->proto == FRAME_IPPROTO_ICMP || fi->proto == FRAME_IPPROTO_ICMPV6) && room < 8))
		return FRAME_BAD_LEN;
	if (fi->proto == FRAME_IPPROTO_UDP && !(fi->flags & FRAME_F_FRAG_FIRST) &&
	    (fi->udp_len < 8 || fi->udp_len > room))
		return FRAME_BAD_LEN;
	return 0;
}

/* ICMP (v4) error at icmp: the quoted IPv4 header and 8 bytes of its
 * transport header, as icmp_unreach()/icmp_socket_deliver() read them (they
 * ignore an error that quotes less). Sets FRAME_F_ICMP_ERR for error types;
 * quoted_proto stays 0 when the quote is not a TCP/UDP packet we can read. */
static __always_inline void frame_icmp4_quote(struct frame_info *fi, __u8 *icmp, void *end)
{
	struct iphdr *q = (void *)(icmp + 8);
	__u8 type = icmp[0];
	struct udphdr *qu;
	__u32 qihl;

	if (type != 3 && type != 4 && type != 5 && type != 11 && type != 12)
		return;
	fi->flags |= FRAME_F_ICMP_ERR;
	if ((void *)(q + 1) > end || q->version != 4)
		return;
	qihl = q->ihl * 4;
	if (qihl < sizeof(*q) || (q->protocol != FRAME_IPPROTO_TCP && q->protocol != FRAME_IPPROTO_UDP))
		return;
	qu = (void *)q + qihl;
	if ((void *)(qu + 1) > end)
		return;
	fi->quoted_proto = q->protocol;
	fi->quoted_port = bpf_ntohs(qu->source);
	fi->quoted_peer = q->daddr;
}

/* ICMPv6 error (types 1-4): quoted IPv6 header with TCP/UDP right after. */
static __always_inline void frame_icmp6_quote(struct frame_info *fi, __u8 *icmp, void *end)
{
	struct ipv6hdr *q = (void *)(icmp + 8);
	struct udphdr *qu = (void *)(q + 1);

	if (icmp[0] < 1 || icmp[0] > 4)
		return;
	fi->flags |= FRAME_F_ICMP_ERR;
	if ((void *)(qu + 1) > end ||
	    (q->nexthdr != FRAME_IPPROTO_TCP && q->nexthdr != FRAME_IPPROTO_UDP))
		return;
	fi->quoted_proto = q->nexthdr;
	fi->quoted_port = bpf_ntohs(qu->source);
}

/* Sum of the IPv4 header's 16-bit words (options included) and whether its
 * options are only NOP/EOL. ip is inside the frame for 20 bytes. */
static __always_inline int frame_ipv4_header(struct frame_info *fi, struct iphdr *ip, void *end)
{
	__u16 *w = (__u16 *)ip;
	__u32 ihl = fi->ihl, walking = 1;
	__u64 sum = 0;

#pragma clang loop unroll(full)
	for (int i = 0; i < 10; i++)
		sum += w[i];
	if (ihl > 20) {
		/* options, a 32-bit word at a time: summed, and walked as the
		 * kernel would (ip_options_compile()): NOPs are skipped, EOL ends
		 * the list (what follows it is ignored), anything else is an
		 * option the kernel may act on or refuse */
#pragma clang loop unroll(full)
		for (int i = 0; i < 10; i++) {
			__u8 *o = (__u8 *)ip + 20 + 4 * i;

			if (20 + 4 * i >= ihl)
				break;
			if ((void *)(o + 4) > end)
				return FRAME_BAD_HDR;
			sum += ((__u16 *)o)[0] + ((__u16 *)o)[1];
#pragma clang loop unroll(full)
			for (int k = 0; k < 4; k++) {
				if (walking == 1 && o[k] == 0)
					walking = 0;
				else if (walking == 1 && o[k] != 1)
					walking = 2;
			}
		}
		if (walking == 2)
			fi->flags |= FRAME_F_IP_OPTS;
	}
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff ? 0 : FRAME_BAD_HDR;
}

static __always_inline int frame_ipv4(struct frame_info *fi, void *data, void *end,
				      __u32 frame_len, int opts)
{
	__u32 off = FRAME_RELOAD(fi->l3_off, FRAME_MAX_L3_OFF);
	struct iphdr *ip = data + off;
	__u32 tot, frag;
	void *l4;
	int r;

	if ((void *)(ip + 1) > end)
		return FRAME_BAD_HDR;
	fi->family = 4;
	fi->saddr = ip->saddr;
	fi->daddr = ip->daddr;
	fi->proto = ip->protocol;
	fi->flags |= FRAME_F_ADDRS;
	if (ip->version != 4 || ip->ihl < 5)
		return FRAME_BAD_HDR;
	fi->ihl = ip->ihl * 4;
	r = frame_ipv4_header(fi, ip, end);
	if (r)
		return r;
	tot = bpf_ntohs(ip->tot_len);
	/* 6.1's verifier does not bound a byte swap: keep it < 65536 */
	CRYPTBPF_CLAMP(tot, 0xffff);
	fi->l3_end = off + tot;
	fi->l4_off = off + fi->ihl;
	frag = bpf_ntohs(ip->frag_off);
	if (frag & 0x1fff)
		fi->flags |= FRAME_F_FRAG_LATER;
	else if (frag & 0x2000)
		fi->flags |= FRAME_F_FRAG_FIRST;
	if (!(opts & FRAME_L3_ONLY) && !(fi->flags & FRAME_F_FRAG_LATER)) {
		/* the transport header inside the frame first (a cut frame is
		 * FRAME_BAD_HDR), then inside the datagram */
		l4 = (void *)ip + fi->ihl;
		r = frame_ports(fi, l4, end);
		if (r)
			return r;
		if (fi->proto == FRAME_IPPROTO_ICMP) {
			if (l4 + 8 > end)
				return FRAME_BAD_HDR;
			frame_icmp4_quote(fi, l4, end);
		}
	}
	if (tot < fi->ihl || fi->l3_end > frame_len)
		return FRAME_BAD_LEN;
	return opts & FRAME_L3_ONLY ? 0 : frame_l4_lengths(fi);
}

static __always_inline int frame_is_ext(__u8 nexthdr)
{
	return nexthdr == 0 || nexthdr == 43 || nexthdr == 44 || nexthdr == 60 || nexthdr == 51;
}

static __always_inline int frame_ipv6(struct frame_info *fi, void *data, void *end,
				      __u32 frame_len, int opts)
{
	__u32 off = FRAME_RELOAD(fi->l3_off, FRAME_MAX_L3_OFF);
	struct ipv6hdr *ip6 = data + off;
	__u32 plen;
	__u8 next, *ext;
	void *l4;
	int r;

	if ((void *)(ip6 + 1) > end)
		return FRAME_BAD_HDR;
	fi->family = 6;
	fi->flags |= FRAME_F_ADDRS;
	if (ip6->version != 6)
		return FRAME_BAD_HDR;
	plen = bpf_ntohs(ip6->payload_len);
	CRYPTBPF_CLAMP(plen, 0xffff);
	fi->l3_end = off + sizeof(*ip6) + plen;
	fi->l4_off = off + sizeof(*ip6);
	next = ip6->nexthdr;
	if (opts & FRAME_L3_ONLY) {
		fi->proto = next;
		return fi->l3_end > frame_len ? FRAME_BAD_LEN : 0;
	}
#pragma clang loop unroll(full)
	for (int i = 0; i < FRAME_MAX_EXT; i++) {
		if (!frame_is_ext(next))
			break;
		/* one state per iteration, whichever kind came before */
		ext = data + FRAME_RELOAD(fi->l4_off, FRAME_MAX_OFF);
		if ((void *)(ext + 8) > end)        /* every one is >= 8 bytes */
			return FRAME_BAD_HDR;
		if (next == 44) {                   /* fragment header */
			if (bpf_ntohs(*(__be16 *)(ext + 2)) & 0xfff8)
				fi->flags |= FRAME_F_FRAG_LATER;
			else
				fi->flags |= FRAME_F_FRAG_FIRST;
			fi->l4_off += 8;
		} else if (next == 51) {            /* AH: 4-byte units, minus 2 */
			fi->l4_off += ((__u32)ext[1] + 2) * 4;
		} else {                            /* 8-byte units, minus 1 */
			fi->l4_off += ((__u32)ext[1] + 1) * 8;
		}
		next = ext[0];
		if (fi->flags & FRAME_F_FRAG_LATER)
			break;
	}
	fi->proto = next;
	if (fi->flags & FRAME_F_FRAG_LATER)
		return fi->l3_end > frame_len ? FRAME_BAD_LEN : 0;
	if (frame_is_ext(next))
		return FRAME_BAD_EXT;               /* chain too long to see the port */
	l4 = data + FRAME_RELOAD(fi->l4_off, FRAME_MAX_OFF);
	r = frame_ports(fi, l4, end);
	if (r)
		return r;
	if (next == FRAME_IPPROTO_ICMPV6) {
		if (l4 + 8 > end)
			return FRAME_BAD_HDR;
		frame_icmp6_quote(fi, l4, end);
	}
	if (fi->l4_off > fi->l3_end || fi->l3_end > frame_len)
		return FRAME_BAD_LEN;
	return frame_l4_lengths(fi);
}

static __always_inline int frame_classify(struct frame_info *fi, void *data, void *end,
					  __u32 frame_len, int opts)
{
	struct frame_vlan_hdr *v;
	__u32 off = sizeof(struct ethhdr);
	__be16 proto;

	if (data + sizeof(struct ethhdr) > end)
		return FRAME_BAD_L2;
	proto = ((struct ethhdr *)data)->h_proto;
#pragma clang loop unroll(full)
	for (int i = 0; i < FRAME_MAX_TAGS; i++) {
		if (!frame_is_tag(proto))
			break;
		v = data + off;
		if ((void *)(v + 1) > end)
			return FRAME_BAD_L2;
		if (v->tci & bpf_htons(0x0fff))
			fi->flags |= FRAME_F_VLAN_ID;
		proto = v->proto;
		off += sizeof(*v);
		fi->tags++;
	}
	if (frame_is_tag(proto))
		return FRAME_BAD_L2;                /* deeper than we look */
	fi->l3_off = off;
	if (proto == bpf_htons(ETH_P_IP))
		return frame_ipv4(fi, data, end, frame_len, opts) ?: FRAME_IPV4;
	if (proto == bpf_htons(ETH_P_IPV6))
		return frame_ipv6(fi, data, end, frame_len, opts) ?: FRAME_IPV6;
	return FRAME_NOT_IP;
}

/* XDP: classify the frame into *fi (stack or map memory). Global: verified
 * once, with its own stack frame. opts: FRAME_L3_ONLY or 0. */
__noinline int frame_classify_xdp_opts(struct xdp_md *ctx, struct frame_info *fi, int opts)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;

	if (!fi)
		return FRAME_BAD_L2;
	__builtin_memset(fi, 0, sizeof(*fi));
	return frame_classify(fi, data, end, end - data, opts);
}

static __always_inline int frame_classify_xdp(struct xdp_md *ctx, struct frame_info *fi)
{
	return frame_classify_xdp_opts(ctx, fi, 0);
}

/* TC, linear part of the skb (frame_classify_skb() pulls the headers in). */
__noinline int frame_classify_skb_linear(struct __sk_buff *skb, struct frame_info *fi, int opts)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;

	if (!fi)
		return FRAME_BAD_L2;
	__builtin_memset(fi, 0, sizeof(*fi));
	if (skb->vlan_present) {
		fi->flags |= FRAME_F_HW_TAG;
		if (skb->vlan_tci & 0x0fff)
			fi->flags |= FRAME_F_VLAN_ID;
	}
	return frame_classify(fi, data, end, skb->len, opts);
}

/* Headers past the linear part cannot be read directly: pull them in
 * first. Only when needed: bpf_skb_pull_data() may copy a cloned skb's
 * head (every TCP segment on egress is a clone). */
#define FRAME_PULL_LEN 128      /* 14 + 8 tags + IPv4 with options, and more */

static __always_inline int frame_classify_skb(struct __sk_buff *skb, struct frame_info *fi,
					      int opts)
{
	__u32 want = skb->len < FRAME_PULL_LEN ? skb->len : FRAME_PULL_LEN;

	if ((long)skb->data_end - (long)skb->data < want)
		bpf_skb_pull_data(skb, want);
	return frame_classify_skb_linear(skb, fi, opts);
}
