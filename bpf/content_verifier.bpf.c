// SPDX-License-Identifier: GPL-2.0
/* content_verifier: content-addressed UDP datagrams, checked at XDP.
 *
 * Every datagram to the protected port carries struct cas_hdr and content;
 * the program hashes the content with the pure-BPF SHA-256 and passes the
 * datagram only if the digest equals the id in the header (constant-time
 * compare). Every packet is hashed: nothing is cached, the allowlist only
 * narrows what may pass and counts hits. Anything else aimed at the port
 * (wrong lengths, truncated or unknown headers, fragments) is dropped and
 * counted by reason, and so is, whatever its port, a frame the shared
 * classifier cannot see through (frame_classify.bpf.h: VLAN tags and IPv6
 * extension headers beyond its bounds) or whose headers the kernel drops.
 * Wire format: include/content_verifier.h. */
#include "cryptbpf.bpf.h"
#include "sha256.bpf.h"
#include "ct.bpf.h"
#include "content_verifier.h"
#define FRAME_MAX_EXT CV_IPV6_MAX_EXT
#include "frame_classify.bpf.h"

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
	struct frame_info fi;
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

struct cv_loc {
	__u32 payload_off;   /* first byte after the UDP header */
	__u32 payload_len;   /* UDP length - 8 */
};

/* Find the UDP payload of a datagram to the protected port, with IP and UDP
 * lengths that agree with each other and with the frame (IPv4 or IPv6,
 * behind any VLAN tags, IPv4 options or IPv6 extension headers the
 * classifier walks). */
static __always_inline int cv_locate(struct xdp_md *xdp, struct cv_scratch *s,
				     struct cv_loc *loc)
{
	struct frame_info *fi = &s->fi;
	int r = frame_classify_xdp(xdp, fi);

	switch (r) {
	case FRAME_BAD_L2:
	case FRAME_BAD_EXT:
		return CV_UNPARSED;      /* the port could hide behind them */
	case FRAME_BAD_HDR:
		return CV_MALFORMED;     /* an IP or UDP header cut short, or refused */
	case FRAME_BAD_LEN:
		return CV_BAD_LENGTH;    /* lengths the kernel drops */
	case FRAME_NOT_IP:
		return CV_NOT_OURS;
	}
	/* not UDP, or a later fragment: no port. Without its first fragment
	 * (dropped below) the stack never reassembles it. */
	if (fi->proto != IPPROTO_UDP_ || !(fi->flags & FRAME_F_PORTS) || fi->dport != udp_port)
		return CV_NOT_OURS;
	if (fi->flags & FRAME_F_FRAG_FIRST)
		return CV_FRAGMENT;
	/* UDP length must cover the IP payload exactly: the stack would trim
	 * extra bytes, and what is hashed must be exactly what the socket
	 * receives. The frame may be longer (Ethernet padding). */
	if (fi->udp_len != fi->l3_end - fi->l4_off)
		return CV_BAD_LENGTH;
	loc->payload_off = fi->l4_off + sizeof(struct udphdr);
	loc->payload_len = fi->udp_len - sizeof(struct udphdr);
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
	struct cv_scratch *s = cryptbpf_scratch(&scratch);
	struct cv_loc loc = {};
	__u32 content_len = 0;
	int verdict;

	if (!s)
		return cv_count(CV_ERROR, 0);
	verdict = cv_locate(xdp, s, &loc);
	if (verdict == CV_PASS)
		verdict = cv_judge(xdp, &loc, s, &content_len);
	return cv_count(verdict, content_len);
}
