// SPDX-License-Identifier: GPL-2.0
/* content_verifier: content-addressed UDP datagrams, checked at XDP.
 *
 * Every datagram to the protected port carries struct cas_hdr and content;
 * the program hashes the content with the pure-BPF SHA-256 and passes the
 * datagram only if the digest equals the id in the header (constant-time
 * compare). Every packet is hashed: nothing is cached, the allowlist only
 * narrows what may pass and counts hits. Anything else aimed at the port
 * (wrong lengths, truncated or unknown headers, fragments) is dropped and
 * counted by reason. Wire format: include/content_verifier.h. */
#include "cryptbpf.bpf.h"
#include "sha256.bpf.h"
#include "ct.bpf.h"
#include "content_verifier.h"

char LICENSE[] SEC("license") = "GPL";

_Static_assert(sizeof(struct cas_hdr) == 40, "cas_hdr is 40 bytes on the wire");
_Static_assert(sizeof(struct cas_manifest) == 16, "cas_manifest is 16 bytes on the wire");
_Static_assert(sizeof(struct cas_want) == 8, "cas_want is 8 bytes on the wire");
_Static_assert(CAS_ID_LEN == SHA256_DIGEST_SIZE, "ids are SHA-256 digests");

/* UDP destination port that is protected (host byte order). */
const volatile __u16 udp_port = CAS_DEFAULT_PORT;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cas_config);
} cas_config SEC(".maps");

struct cas_id_key {
	__u8 id[CAS_ID_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CAS_ALLOWLIST_MAX);
	__type(key, struct cas_id_key);
	__type(value, struct cas_allow_entry);
} allowlist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct content_verifier_stats);
} stats SEC(".maps");

/* Hash state, the header copy and the digest live in map memory: the SHA-256
 * context is 176 bytes and ct_memeq() reads both sides byte by byte. */
struct cv_scratch {
	struct cryptbpf_sha256_ctx sha;
	struct cas_hdr hdr;
	__u8 digest[SHA256_DIGEST_SIZE];
};
CRYPTBPF_PERCPU_SCRATCH(scratch, struct cv_scratch);

/* Verdicts; each but CV_NOT_OURS has a counter in content_verifier_stats. */
enum cv_verdict {
	CV_NOT_OURS,
	CV_PASS,
	CV_MISMATCH,
	CV_BAD_LENGTH,
	CV_TRUNCATED,
	CV_BAD_HEADER,
	CV_NOT_ALLOWED,
	CV_FRAGMENT,
	CV_MALFORMED,
	CV_UNPARSED,
	CV_ERROR,
};

#define IPPROTO_UDP_   17
#define IP_MF_         0x2000
#define IP_OFFSET_     0x1fff
#define ETH_P_8021Q_   0x8100
#define ETH_P_8021AD_  0x88A8
#define IP6_OFFSET_    0xfff8
#define NEXTHDR_HOP_       0
#define NEXTHDR_ROUTING_  43
#define NEXTHDR_FRAGMENT_ 44
#define NEXTHDR_AUTH_     51
#define NEXTHDR_DEST_     60

struct cv_loc {
	__u32 payload_off;   /* first byte after the UDP header */
	__u32 payload_len;   /* UDP length - 8 */
};

/* Skip up to two VLAN tags (802.1Q / 802.1ad) after the MAC addresses, so
 * tagged traffic cannot walk around the check. Returns the ethertype and
 * advances *off to the network header; 0 if the frame is too short. */
static __always_inline __be16 cv_ethertype(struct xdp_md *xdp, __u32 *off)
{
	struct { __be16 tci; __be16 proto; } tag;
	__be16 proto;

	if (bpf_xdp_load_bytes(xdp, 12, &proto, sizeof(proto)))
		return 0;
	*off = sizeof(struct ethhdr);
#pragma clang loop unroll(full)
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q_) && proto != bpf_htons(ETH_P_8021AD_))
			break;
		if (bpf_xdp_load_bytes(xdp, *off, &tag, sizeof(tag)))
			return 0;
		proto = tag.proto;
		*off += 4;
	}
	return proto;
}

/* Where an IP datagram's UDP header is, and where the datagram ends
 * according to its IP header (frame offsets). */
struct cv_l3 {
	__u32 l4_off;
	__u32 l3_end;
	bool first_frag;   /* first fragment of a fragmented datagram */
};

/* IPv4: any frame too short for its IPv4 header (or, for UDP, its UDP
 * header) can never be delivered -- the IP layer discards it -- so it is
 * dropped here already: no truncation of a datagram to the port passes. */
static __always_inline int cv_ipv4(struct xdp_md *xdp, __u32 off, struct cv_l3 *l3)
{
	struct iphdr ip;
	__u16 frag;

	if (bpf_xdp_load_bytes(xdp, off, &ip, sizeof(ip)) || ip.version != 4 || ip.ihl < 5)
		return CV_MALFORMED;
	if (ip.protocol != IPPROTO_UDP_)
		return CV_NOT_OURS;
	frag = bpf_ntohs(ip.frag_off);
	/* Later fragments carry no UDP header, so no port: let them by. The
	 * first fragment of a datagram to the port is dropped, so such a
	 * datagram is never reassembled. */
	if (frag & IP_OFFSET_)
		return CV_NOT_OURS;
	l3->first_frag = frag & IP_MF_;
	l3->l4_off = off + ip.ihl * 4;
	l3->l3_end = off + bpf_ntohs(ip.tot_len);
	return CV_PASS;
}

/* IPv6: walk up to CV_IPV6_MAX_EXT extension headers to the UDP header.
 * A longer chain hides the port, so it is dropped (counted as unparsed)
 * rather than let through unverified. */
static __always_inline int cv_ipv6(struct xdp_md *xdp, __u32 off, struct cv_l3 *l3)
{
	struct ipv6hdr ip6;
	struct frag_hdr fh;
	struct ipv6_opt_hdr opt;
	__u32 hoff = off + sizeof(ip6);
	__u8 next;

	if (bpf_xdp_load_bytes(xdp, off, &ip6, sizeof(ip6)) || ip6.version != 6)
		return CV_MALFORMED;
	next = ip6.nexthdr;
	l3->first_frag = false;
#pragma clang loop unroll(full)
	for (int i = 0; i < CV_IPV6_MAX_EXT; i++) {
		if (next == IPPROTO_UDP_)
			break;
		if (next == NEXTHDR_FRAGMENT_) {
			if (bpf_xdp_load_bytes(xdp, hoff, &fh, sizeof(fh)))
				return CV_MALFORMED;
			if (bpf_ntohs(fh.frag_off) & IP6_OFFSET_)
				return CV_NOT_OURS;        /* later fragment, as for IPv4 */
			l3->first_frag = true;   /* (an atomic fragment, M=0, too: no reason to send one) */
			next = fh.nexthdr;
			hoff += sizeof(fh);
		} else if (next == NEXTHDR_HOP_ || next == NEXTHDR_ROUTING_ ||
			   next == NEXTHDR_DEST_ || next == NEXTHDR_AUTH_) {
			if (bpf_xdp_load_bytes(xdp, hoff, &opt, sizeof(opt)))
				return CV_MALFORMED;
			if (next == NEXTHDR_AUTH_)   /* AH counts 4-octet units, minus 2 */
				hoff += (opt.hdrlen + 2) * 4;
			else                         /* the others 8-octet units, minus 1 */
				hoff += (opt.hdrlen + 1) * 8;
			next = opt.nexthdr;
		} else {
			return CV_NOT_OURS;        /* TCP, ICMPv6, ESP, ... */
		}
	}
	if (next != IPPROTO_UDP_)
		return CV_UNPARSED;
	l3->l4_off = hoff;
	l3->l3_end = off + sizeof(ip6) + bpf_ntohs(ip6.payload_len);
	return CV_PASS;
}

/* Find the UDP payload of a datagram to the protected port, with IP and UDP
 * lengths that agree with each other and with the frame. Headers are copied
 * with bpf_xdp_load_bytes(), so variable offsets (IP options, extension
 * headers) need no packet-pointer gymnastics. */
static __always_inline int cv_locate(struct xdp_md *xdp, struct cv_loc *loc)
{
	__u32 off, frame_len = bpf_xdp_get_buff_len(xdp);
	struct cv_l3 l3 = {};
	struct udphdr udp;
	__be16 proto;
	int r;

	proto = cv_ethertype(xdp, &off);
	if (proto == bpf_htons(ETH_P_IP))
		r = cv_ipv4(xdp, off, &l3);
	else if (proto == bpf_htons(ETH_P_IPV6))
		r = cv_ipv6(xdp, off, &l3);
	else
		return CV_NOT_OURS;
	if (r != CV_PASS)
		return r;
	if (bpf_xdp_load_bytes(xdp, l3.l4_off, &udp, sizeof(udp)))
		return CV_MALFORMED;
	if (udp.dest != bpf_htons(udp_port))
		return CV_NOT_OURS;
	if (l3.first_frag)
		return CV_FRAGMENT;
	/* The frame may be longer (Ethernet padding), never shorter. UDP length
	 * must cover the IP payload exactly: the stack would trim extra bytes,
	 * and what is hashed must be exactly what the socket receives. (The
	 * u32 offsets are < 2^17, so the sums cannot wrap.) */
	if (l3.l3_end > frame_len || l3.l3_end < l3.l4_off + sizeof(udp) ||
	    bpf_ntohs(udp.len) != l3.l3_end - l3.l4_off)
		return CV_BAD_LENGTH;
	loc->payload_off = l3.l4_off + sizeof(udp);
	loc->payload_len = bpf_ntohs(udp.len) - sizeof(udp);
	return CV_PASS;
}

static __always_inline int cv_header_ok(const struct cas_hdr *h)
{
	return h->magic == bpf_htons(CAS_MAGIC) && h->version == CAS_VERSION &&
	       (h->type == CAS_TYPE_DATA || h->type == CAS_TYPE_MANIFEST) &&
	       !(h->flags & ~CAS_F_ALL) &&
	       (!(h->flags & CAS_F_ROOT) || h->type == CAS_TYPE_MANIFEST) &&
	       !h->reserved;
}

/* The verdict on a datagram to the port whose payload is at loc. */
static __always_inline int cv_judge(struct xdp_md *xdp, const struct cv_loc *loc,
				    struct cv_scratch *s, __u32 *content_len)
{
	struct cas_allow_entry *allowed;
	struct cas_config *cfg;
	__u32 zero = 0, len;

	if (loc->payload_len < sizeof(struct cas_hdr))
		return CV_TRUNCATED;
	if (bpf_xdp_load_bytes(xdp, loc->payload_off, &s->hdr, sizeof(s->hdr)))
		return CV_ERROR;
	if (!cv_header_ok(&s->hdr))
		return CV_BAD_HEADER;
	len = loc->payload_len - sizeof(struct cas_hdr);
	if (bpf_ntohs(s->hdr.length) != len)
		return CV_BAD_LENGTH;

	/* The key is map memory (the scratch value): allowed for lookups. */
	allowed = bpf_map_lookup_elem(&allowlist, s->hdr.id);
	cfg = bpf_map_lookup_elem(&cas_config, &zero);
	if (!allowed && cfg && cfg->enforce_allowlist)
		return CV_NOT_ALLOWED;

	sha256_init(&s->sha);
	if (sha256_update_xdp(&s->sha, xdp, loc->payload_off + sizeof(struct cas_hdr), len) ||
	    sha256_final(&s->sha, s->digest))
		return CV_ERROR;
	if (!ct_memeq(s->digest, s->hdr.id, CAS_ID_LEN))
		return CV_MISMATCH;
	if (allowed)
		__sync_fetch_and_add(&allowed->hits, 1);
	*content_len = len;
	return CV_PASS;
}

static __always_inline int cv_count(int verdict, __u32 content_len)
{
	struct content_verifier_stats *st;
	__u32 zero = 0;

	if (verdict == CV_NOT_OURS)
		return XDP_PASS;
	st = bpf_map_lookup_elem(&stats, &zero);
	if (!st)
		return verdict == CV_PASS ? XDP_PASS : XDP_DROP;
	switch (verdict) {
	case CV_PASS:
		st->passed++;
		st->bytes_verified += content_len;
		return XDP_PASS;
	case CV_MISMATCH:    st->mismatch++;    break;
	case CV_BAD_LENGTH:  st->bad_length++;  break;
	case CV_TRUNCATED:   st->truncated++;   break;
	case CV_BAD_HEADER:  st->bad_header++;  break;
	case CV_NOT_ALLOWED: st->not_allowed++; break;
	case CV_FRAGMENT:    st->fragment++;    break;
	case CV_MALFORMED:   st->malformed++;   break;
	case CV_UNPARSED:    st->unparsed++;    break;
	default:             st->errors++;      break;
	}
	return XDP_DROP;
}

SEC("xdp")
int content_verify(struct xdp_md *xdp)
{
	struct cv_scratch *s;
	struct cv_loc loc = {};
	__u32 content_len = 0;
	int verdict;

	verdict = cv_locate(xdp, &loc);
	if (verdict == CV_PASS) {
		s = cryptbpf_scratch(&scratch);
		verdict = s ? cv_judge(xdp, &loc, s, &content_len) : CV_ERROR;
	}
	return cv_count(verdict, content_len);
}
