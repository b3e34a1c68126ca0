// SPDX-License-Identifier: GPL-2.0
/* signed_auth: ECDSA P-256 signed UDP datagrams, verified in XDP.
 *
 * Datagrams to protected UDP ports must end in a signature trailer
 * (wire format: include/signed_auth.h). Per datagram, cheapest first:
 *
 *   1. classify the frame (frame_classify.bpf.h: any number of VLAN tags
 *      up to its bound, IPv4 header as strict as the kernel's); what it
 *      cannot classify is dropped; port not protected -> XDP_PASS,
 *      untouched (IPv6 to a protected port: dropped, unverified)
 *   2. lengths, trailer magic/version/flags, key id trusted and not revoked,
 *      sequence inside the key's replay window (read without the lock)
 *   3. verification budget: the key's token bucket, then the global one
 *      (GCRA; a flood of bogus signatures costs at most the budget)
 *   4. SHA-256(signed_hdr || data) in BPF, ECDSA P-256 verification
 *      (pure BPF, or the kernel's signature kfunc where one exists)
 *   5. replay window updated under the key's lock (authoritative check)
 *   6. trailer removed (bpf_xdp_adjust_tail), IP total length and checksum,
 *      UDP length rewritten, UDP checksum computed afresh -> XDP_PASS
 *
 * Anything that fails is dropped and counted by reason, per key where a
 * trusted key can be charged, and in the global counters.
 */
#include "cryptbpf.bpf.h"
#include "ecdsa_p256.bpf.h"
#include "sha256.bpf.h"
#include "frame_classify.bpf.h"
#include "pkt_csum.bpf.h"
#include "gcra.bpf.h"
#include "signed_auth.h"

char LICENSE[] SEC("license") = "GPL";

/* Global verification budget: at most global_rate verifications per second
 * on average, global_burst back to back (set at load, --set NAME=N). */
const volatile __u32 global_rate = 4000;
const volatile __u32 global_burst = 200;

/* Replay floor allowance, in seconds (--set max_skew_s=N). Read by the
 * control plane only: when it creates a key's replay window (trust, load)
 * it starts the window at wall-clock ns minus this, so a datagram signed
 * before that is refused however often the program is reloaded or the key
 * re-trusted (sequence numbers are CLOCK_REALTIME ns by specification).
 * Declared here so the value lives with the loaded program (.rodata). */
const volatile __u32 max_skew_s = 30;

#define NSEC_PER_SEC 1000000000ULL
#define IPPROTO_UDP_ 17

struct sa_state_value {
	struct bpf_spin_lock lock;
	__u32 _pad;
	struct signed_auth_replay r;
};
_Static_assert(__builtin_offsetof(struct sa_state_value, r) == SIGNED_AUTH_STATE_LOCK_BYTES,
	       "sa_state layout is part of the shared header");

struct sa_budget_value {
	struct bpf_spin_lock lock;
	__u32 _pad;
	struct signed_auth_budget b;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, P256_MAX_KEYS);
	__type(key, __u32);
	__type(value, struct signed_auth_key);
} sa_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, P256_MAX_KEYS);
	__type(key, __u32);
	__type(value, struct sa_state_value);
} sa_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sa_budget_value);
} sa_budget SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct signed_auth_ports);
} sa_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, P256_MAX_KEYS);
	__type(key, __u32);
	__type(value, struct signed_auth_counters);
} key_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct signed_auth_counters);
} stats SEC(".maps");

struct sa_scratch {
	struct cryptbpf_sha256_ctx sha;
	struct signed_auth_trailer tr;
	struct signed_auth_signed_hdr hdr;
	__u8 digest[P256_DIGEST_LEN];
	struct frame_info fi;
	__u8 csum[PKT_CSUM_BUF];
};
CRYPTBPF_PERCPU_SCRATCH(sa_scratch, struct sa_scratch);

/* Where the datagram is, host byte order. */
struct sa_pkt {
	__u32 l3_off;		/* IPv4 header (after 0..FRAME_MAX_TAGS VLAN tags) */
	__u32 l4_off;		/* UDP header */
	__u32 data_off;		/* UDP payload */
	__u32 data_len;		/* UDP payload without the trailer */
	__u32 frame_len;	/* XDP buffer length (may include Ethernet padding) */
	__u32 key_id;
	__u64 seq;
	__u64 now;
};

/* Count in the global counters and, when the key is known, in its own. */
#define COUNT(ks, field)                                                      \
	({                                                                    \
		__u32 _z = 0;                                                 \
		struct signed_auth_counters *_g = bpf_map_lookup_elem(&stats, &_z); \
		if (_g)                                                       \
			_g->field++;                                          \
		if (ks)                                                       \
			((struct signed_auth_counters *)(ks))->field++;       \
	})

#define DROP(ks, field) ({ COUNT(ks, field); XDP_DROP; })

static __always_inline int port_protected(__u16 port)
{
	__u32 zero = 0;
	struct signed_auth_ports *p = bpf_map_lookup_elem(&sa_ports, &zero);

	return p && (p->bits[port >> 6] >> (port & 63)) & 1;
}

/* ---- ones' complement arithmetic on raw (network order) 16-bit words ---- */

static __always_inline __u16 csum_fold64(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* ---- replay window (RFC 6479 layout) ---- */

#define SEQ_FRESH    0
#define SEQ_REPLAYED 1
#define SEQ_STALE    2

static __always_inline int replay_check(const struct signed_auth_replay *r, __u64 seq)
{
	__u64 top = r->top;

	if (seq > top)
		return SEQ_FRESH;
	if (top - seq >= SIGNED_AUTH_REPLAY_WINDOW)
		return SEQ_STALE;
	if ((r->bits[(seq >> 6) & (SIGNED_AUTH_REPLAY_WORDS - 1)] >> (seq & 63)) & 1)
		return SEQ_REPLAYED;
	return SEQ_FRESH;
}

/* Check and record seq; caller holds the lock (no helper calls here). */
static __always_inline int replay_update(struct signed_auth_replay *r, __u64 seq)
{
	int verdict = replay_check(r, seq);

	if (verdict != SEQ_FRESH)
		return verdict;
	if (seq > r->top) {
		__u64 cur = r->top >> 6, diff = (seq >> 6) - cur;

		/* clear the words the window slides over (at most all of them) */
#pragma clang loop unroll(full)
		for (__u64 i = 1; i <= SIGNED_AUTH_REPLAY_WORDS; i++)
			if (i <= diff)
				r->bits[(cur + i) & (SIGNED_AUTH_REPLAY_WORDS - 1)] = 0;
		r->top = seq;
	}
	r->bits[(seq >> 6) & (SIGNED_AUTH_REPLAY_WORDS - 1)] |= 1ULL << (seq & 63);
	return SEQ_FRESH;
}

/* ---- verification budget (gcra.bpf.h) ---- */

static __always_inline int key_budget_take(struct sa_state_value *st,
					   const struct signed_auth_key *k, __u64 now)
{
	int ok;

	bpf_spin_lock(&st->lock);
	ok = gcra_take(&st->r.tat_ns, now, k->interval_ns, k->burst);
	bpf_spin_unlock(&st->lock);
	return ok;
}

static __always_inline int global_budget_take(__u64 now)
{
	__u32 zero = 0;
	struct sa_budget_value *b = bpf_map_lookup_elem(&sa_budget, &zero);
	__u32 rate = global_rate;
	int ok;

	if (!b || !rate)
		return 0;
	bpf_spin_lock(&b->lock);
	ok = gcra_take(&b->b.tat_ns, now, NSEC_PER_SEC / rate, global_burst);
	bpf_spin_unlock(&b->lock);
	return ok;
}

/* ---- parsing ---- */

enum parse_result {
	PARSE_PASS,		/* not ours: pass untouched */
	PARSE_OK,		/* a datagram to a protected port, lengths checked */
	PARSE_UNSUPPORTED,	/* IPv6 UDP to a protected port */
	PARSE_FRAGMENTED,	/* first fragment of a datagram to a protected port */
	PARSE_MALFORMED,	/* headers or lengths the kernel drops, UDP length != IP payload */
	PARSE_SHORT,		/* payload shorter than a trailer */
	PARSE_UNPARSED,		/* VLAN tags or IPv6 extension headers too deep to see the port */
	PARSE_IP_OPTIONS,	/* IPv4 options other than NOP/EOL to a protected port */
};

/* Find an IPv4/UDP datagram to a protected port and fill in pkt and the
 * address part of the signed header. What is verified must be what the
 * kernel delivers: frame_classify.bpf.h refuses frames whose IP header the
 * kernel would drop (version, IHL, checksum, lengths), and options the
 * kernel may act on or refuse are refused here (the UDP checksum is
 * rewritten after verification, see strip_trailer()). Frames the
 * classifier cannot see through are dropped whatever their port: a
 * protected one could hide in them. */
static __always_inline enum parse_result parse(struct xdp_md *ctx, struct sa_pkt *pkt,
					       struct sa_scratch *s)
{
	struct frame_info *fi = &s->fi;
	int r = frame_classify_xdp(ctx, fi);
	__u32 udp_len;

	if (r == FRAME_BAD_L2 || r == FRAME_BAD_EXT)
		return PARSE_UNPARSED;
	if (r < 0)
		return PARSE_MALFORMED;
	/* not UDP, or a later fragment (no port: without its first fragment,
	 * dropped below, the kernel never reassembles it) */
	if (r == FRAME_NOT_IP || fi->proto != IPPROTO_UDP_ || !(fi->flags & FRAME_F_PORTS) ||
	    !port_protected(fi->dport))
		return PARSE_PASS;
	if (fi->flags & FRAME_F_FRAG_FIRST)
		return PARSE_FRAGMENTED;
	if (r == FRAME_IPV6)
		return PARSE_UNSUPPORTED;	/* the signed header carries IPv4 addresses */
	if (fi->flags & FRAME_F_IP_OPTS)
		return PARSE_IP_OPTIONS;
	/* a UDP length short of the IP payload is legal (the kernel trims the
	 * rest), but then the trailer would not be where we look */
	udp_len = fi->udp_len;
	if (udp_len != fi->l3_end - fi->l4_off)
		return PARSE_MALFORMED;
	if (udp_len - sizeof(struct udphdr) < SIGNED_AUTH_TRAILER_LEN)
		return PARSE_SHORT;
	pkt->l3_off = fi->l3_off;
	pkt->l4_off = fi->l4_off;
	pkt->data_off = pkt->l4_off + sizeof(struct udphdr);
	pkt->data_len = udp_len - sizeof(struct udphdr) - SIGNED_AUTH_TRAILER_LEN;
	pkt->frame_len = (long)ctx->data_end - (long)ctx->data;
	s->hdr.saddr = fi->saddr;
	s->hdr.daddr = fi->daddr;
	s->hdr.sport = bpf_htons(fi->sport);
	s->hdr.dport = bpf_htons(fi->dport);
	return PARSE_OK;
}

/* ---- trailer removal ---- */

/* Shrink the frame to end at the data and rewrite the IP and UDP headers:
 * total length and UDP length drop by the trailer. The IP checksum is
 * updated incrementally (RFC 1624: the classifier checked it was right).
 * The UDP checksum, unless 0 ("none", kept), is computed afresh over the
 * datagram the socket gets: the signature covers everything it covers
 * (addresses, ports, length, data), so a verified datagram is intact
 * whatever checksum it arrived with, and the kernel must not drop it after
 * its sequence number was used up (a copy with a wrong checksum sent ahead
 * of the genuine datagram would otherwise make both disappear). XDP cannot
 * check the arriving checksum itself: between veth ends the sender leaves
 * it to the receiver (CHECKSUM_PARTIAL), which XDP cannot see. */
static __always_inline int strip_trailer(struct xdp_md *ctx, const struct sa_pkt *pkt,
					 struct sa_scratch *s)
{
	__u32 new_end = pkt->data_off + pkt->data_len;
	__u32 ulen = pkt->data_len + sizeof(struct udphdr);
	void *data, *end;
	struct iphdr *ip;
	struct udphdr *udp;
	__u16 old_tot, new_tot;
	__u32 pseudo;
	int sum;

	/* also drops Ethernet padding after the IP datagram, if any */
	if (bpf_xdp_adjust_tail(ctx, (int)new_end - (int)pkt->frame_len))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	ip = data + (pkt->l3_off & 63);		/* l3_off <= FRAME_MAX_L3_OFF (46) */
	if ((void *)(ip + 1) > end)
		return -1;
	udp = data + (pkt->l4_off & 127);	/* l4_off <= l3_off + 60 <= 106 */
	if ((void *)(udp + 1) > end)
		return -1;

	old_tot = ip->tot_len;
	new_tot = bpf_htons(bpf_ntohs(old_tot) - SIGNED_AUTH_TRAILER_LEN);
	ip->tot_len = new_tot;
	ip->check = (__u16)~csum_fold64((__u64)(__u16)~ip->check + (__u16)~old_tot + new_tot);

	udp->len = bpf_htons(ulen);
	if (!udp->check)
		return 0;
	udp->check = 0;
	/* pseudo-header words as they sit in memory, like the frame's bytes */
	pseudo = (s->hdr.saddr & 0xffff) + (s->hdr.saddr >> 16) + (s->hdr.daddr & 0xffff) +
		 (s->hdr.daddr >> 16) + bpf_htons(IPPROTO_UDP_) + bpf_htons(ulen);
	sum = pkt_csum_xdp(ctx, s->csum, pkt->l4_off, ulen, pseudo);
	if (sum < 0)
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	udp = data + (pkt->l4_off & 127);
	if ((void *)(udp + 1) > end)
		return -1;
	udp->check = (__u16)~sum ?: 0xffff;
	return 0;
}

/* ---- the program ---- */

SEC("xdp")
int signed_auth_xdp(struct xdp_md *ctx)
{
	struct signed_auth_counters *ks = NULL;
	struct signed_auth_key *key;
	struct sa_state_value *st;
	struct sa_scratch *s;
	struct sa_pkt pkt = {};
	int ret, verdict;

	s = cryptbpf_scratch(&sa_scratch);
	if (!s)
		return XDP_DROP;	/* cannot happen: one-slot array */
	switch (parse(ctx, &pkt, s)) {
	case PARSE_PASS:
		return XDP_PASS;
	case PARSE_OK:
		break;
	case PARSE_UNSUPPORTED:
		return DROP(ks, unsupported);
	case PARSE_FRAGMENTED:
		return DROP(ks, fragmented);
	case PARSE_MALFORMED:
		return DROP(ks, malformed);
	case PARSE_UNPARSED:
		return DROP(ks, unparsed);
	case PARSE_IP_OPTIONS:
		return DROP(ks, ip_options);
	default:
		return DROP(ks, short_payload);
	}

	/* 2. cheap checks on the trailer */
	if (bpf_xdp_load_bytes(ctx, pkt.data_off + pkt.data_len, &s->tr, sizeof(s->tr)))
		return DROP(ks, errors);
	if (s->tr.magic != bpf_htons(SIGNED_AUTH_MAGIC) ||
	    s->tr.version != SIGNED_AUTH_VERSION || s->tr.flags)
		return DROP(ks, no_trailer);
	pkt.key_id = bpf_ntohl(s->tr.key_id);
	pkt.seq = bpf_be64_to_cpu(s->tr.seq);
	key = bpf_map_lookup_elem(&sa_keys, &pkt.key_id);
	if (!key)
		return DROP(ks, unknown_key);
	ks = bpf_map_lookup_elem(&key_stats, &pkt.key_id);
	if (key->state != SIGNED_AUTH_KEY_ACTIVE)
		return DROP(ks, revoked);
	st = bpf_map_lookup_elem(&sa_state, &pkt.key_id);
	if (!st)
		return DROP(ks, errors);	/* trusted without state: control plane bug */
	verdict = replay_check(&st->r, pkt.seq);	/* unlocked read: a hint */
	if (verdict == SEQ_STALE)
		return DROP(ks, stale);
	if (verdict == SEQ_REPLAYED)
		return DROP(ks, replayed);

	/* 3. budget before any expensive work */
	pkt.now = bpf_ktime_get_ns();
	if (!key_budget_take(st, key, pkt.now))
		return DROP(ks, over_key_budget);
	if (!global_budget_take(pkt.now))
		return DROP(ks, over_global_budget);

	/* 4. SHA-256(signed_hdr || data), then ECDSA */
	s->hdr.magic = s->tr.magic;
	s->hdr.version = s->tr.version;
	s->hdr.flags = s->tr.flags;
	s->hdr.key_id = s->tr.key_id;
	s->hdr.seq = s->tr.seq;
	s->hdr.data_len = bpf_htonl(pkt.data_len);
	sha256_init(&s->sha);
	if (sha256_update(&s->sha, &s->hdr, sizeof(s->hdr)) ||
	    sha256_update_xdp(&s->sha, ctx, pkt.data_off, pkt.data_len) ||
	    sha256_final(&s->sha, s->digest))
		return DROP(ks, errors);
	COUNT(ks, verifications);
	ret = ecdsa_p256_verify(pkt.key_id, s->digest, s->tr.sig, SIGNED_AUTH_SIG_LEN);
	if (ret == P256_VERIFY_ENOKEY)
		return DROP(ks, revoked);	/* revoked while we were checking */
	if (ret < 0)
		return DROP(ks, errors);
	if (ret != P256_VERIFY_OK)
		return DROP(ks, bad_signature);

	/* 5. the authoritative replay check: two copies of one datagram
	 * verified at once on two CPUs must not both pass */
	bpf_spin_lock(&st->lock);
	verdict = replay_update(&st->r, pkt.seq);
	bpf_spin_unlock(&st->lock);
	if (verdict == SEQ_STALE)
		return DROP(ks, stale);
	if (verdict == SEQ_REPLAYED)
		return DROP(ks, replayed);

	/* 6. hand the application exactly its data */
	if (strip_trailer(ctx, &pkt, s))
		return DROP(ks, errors);
	COUNT(ks, verified);
	if (ks)
		ks->last_seen_ns = pkt.now;
	return XDP_PASS;
}
