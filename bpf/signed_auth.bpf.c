// SPDX-License-Identifier: GPL-2.0
/* signed_auth: ECDSA P-256 signed UDP datagrams, verified in XDP.
 *
 * Datagrams to protected UDP ports must end in a signature trailer
 * (wire format: include/signed_auth.h). Per datagram, cheapest first:
 *
 *   1. parse Ethernet (0-2 VLAN tags)/IPv4/UDP; port not protected ->
 *      XDP_PASS, untouched (IPv6 to a protected port: dropped, unverified)
 *   2. lengths, trailer magic/version/flags, key id trusted and not revoked,
 *      sequence inside the key's replay window (read without the lock)
 *   3. verification budget: the key's token bucket, then the global one
 *      (GCRA; a flood of bogus signatures costs at most the budget)
 *   4. SHA-256(signed_hdr || data) in BPF, ECDSA P-256 verification
 *      (pure BPF, or the kernel's signature kfunc where one exists)
 *   5. replay window updated under the key's lock (authoritative check)
 *   6. trailer removed (bpf_xdp_adjust_tail), IP total length and checksum,
 *      UDP length and checksum rewritten -> XDP_PASS
 *
 * Anything that fails is dropped and counted by reason, per key where a
 * trusted key can be charged, and in the global counters.
 */
#include "cryptbpf.bpf.h"
#include "ecdsa_p256.bpf.h"
#include "sha256.bpf.h"
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
#define IP_MF_OFFSET 0x3fff	/* MF flag + fragment offset */
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
};
CRYPTBPF_PERCPU_SCRATCH(sa_scratch, struct sa_scratch);

/* Where the datagram is, host byte order. */
struct sa_pkt {
	__u32 l3_off;		/* IPv4 header (after 0-2 VLAN tags) */
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

/* Ones' complement sum of the 80 trailer bytes, as 16-bit words. */
static __always_inline __u16 trailer_sum(const struct signed_auth_trailer *tr)
{
	const __u32 *w = (const __u32 *)tr;
	__u64 s = 0;

#pragma clang loop unroll(full)
	for (int i = 0; i < SIGNED_AUTH_TRAILER_LEN / 4; i++)
		s += w[i];
	return csum_fold64(s);
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

/* ---- verification budget: GCRA, one u64 per bucket ---- */

/* 1 if a verification may run now: theoretical arrival time tat advances
 * by interval per verification and may run ahead of now by at most
 * (burst - 1) intervals. Caller holds the lock. */
static __always_inline int gcra_take(__u64 *tat, __u64 now, __u64 interval, __u32 burst)
{
	__u64 t = *tat > now ? *tat : now;
	__u64 tau = interval * (burst ? burst - 1 : 0);

	if (t - now > tau)
		return 0;
	*tat = t + interval;
	return 1;
}

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
	PARSE_MALFORMED,	/* IP/UDP lengths inconsistent */
	PARSE_SHORT,		/* payload shorter than a trailer */
};

#define ETH_P_8021Q_  0x8100
#define ETH_P_8021AD_ 0x88a8
#define VLAN_MAX_TAGS 2
#define IPV6_MAX_EXT  4		/* extension headers walked before UDP */

struct vlan_hdr_ {
	__be16 tci;
	__be16 proto;
};

/* IPv6 is not verified (the signed header carries IPv4 addresses), but it
 * must not be a way around the check: UDP to a protected port behind at
 * most IPV6_MAX_EXT hop-by-hop/routing/destination/fragment headers is
 * refused. Later fragments carry no port and pass (they cannot be
 * reassembled without their first fragment). */
static __always_inline enum parse_result parse_ipv6(struct xdp_md *ctx, __u32 off)
{
	struct ipv6hdr ip6;
	struct udphdr udp;
	__u8 ext[8], nexthdr;
	int frag = 0;

	if (bpf_xdp_load_bytes(ctx, off, &ip6, sizeof(ip6)))
		return PARSE_PASS;
	nexthdr = ip6.nexthdr;
	off += sizeof(ip6);
#pragma clang loop unroll(full)
	for (int i = 0; i < IPV6_MAX_EXT; i++) {
		if (nexthdr != 0 && nexthdr != 43 && nexthdr != 44 && nexthdr != 60)
			break;
		if (bpf_xdp_load_bytes(ctx, off, ext, sizeof(ext)))
			return PARSE_PASS;
		if (nexthdr == 44) {		/* fragment header: 8 bytes */
			if ((ext[2] << 8 | ext[3]) & 0xfff8)
				return PARSE_PASS;	/* not the first fragment */
			frag = 1;
			off += 8;
		} else {
			off += (ext[1] + 1) * 8;
		}
		nexthdr = ext[0];
	}
	if (nexthdr != IPPROTO_UDP_ || bpf_xdp_load_bytes(ctx, off, &udp, sizeof(udp)) ||
	    !port_protected(bpf_ntohs(udp.dest)))
		return PARSE_PASS;
	return frag ? PARSE_FRAGMENTED : PARSE_UNSUPPORTED;
}

/* Find an IPv4/UDP datagram to a protected port (behind up to two VLAN
 * tags) and fill in pkt and the address part of the signed header. */
static __always_inline enum parse_result parse(struct xdp_md *ctx, struct sa_pkt *pkt,
					       struct signed_auth_signed_hdr *hdr)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	__u32 l3_off = sizeof(*eth), ihl, tot_len, udp_len;
	__be16 proto;

	if ((void *)(eth + 1) > end)
		return PARSE_PASS;
	proto = eth->h_proto;
#pragma clang loop unroll(full)
	for (int i = 0; i < VLAN_MAX_TAGS; i++) {
		struct vlan_hdr_ *vh = data + l3_off;

		if (proto != bpf_htons(ETH_P_8021Q_) && proto != bpf_htons(ETH_P_8021AD_))
			break;
		if ((void *)(vh + 1) > end)
			return PARSE_PASS;
		proto = vh->proto;
		l3_off += sizeof(*vh);
	}
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(ctx, l3_off);
	if (proto != bpf_htons(ETH_P_IP))
		return PARSE_PASS;
	ip = data + l3_off;
	if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP_)
		return PARSE_PASS;
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return PARSE_PASS;	/* not IPv4 the stack accepts */
	udp = (void *)ip + ihl;
	if ((void *)(udp + 1) > end)
		return PARSE_PASS;	/* no UDP header: a later fragment, or the stack drops it */
	if (bpf_ntohs(ip->frag_off) & IP_MF_OFFSET) {
		/* Only a first fragment carries the port. Later fragments
		 * cannot be reassembled without it (the kernel refuses
		 * overlapping fragments), so passing them lets nothing in. */
		if ((bpf_ntohs(ip->frag_off) & 0x1fff) || !port_protected(bpf_ntohs(udp->dest)))
			return PARSE_PASS;
		return PARSE_FRAGMENTED;
	}
	if (!port_protected(bpf_ntohs(udp->dest)))
		return PARSE_PASS;

	tot_len = bpf_ntohs(ip->tot_len);
	udp_len = bpf_ntohs(udp->len);
	if (l3_off + tot_len > (__u32)(end - data) || tot_len < ihl ||
	    udp_len != tot_len - ihl || udp_len < sizeof(*udp))
		return PARSE_MALFORMED;
	if (udp_len - sizeof(*udp) < SIGNED_AUTH_TRAILER_LEN)
		return PARSE_SHORT;
	pkt->l3_off = l3_off;
	pkt->l4_off = l3_off + ihl;
	pkt->data_off = pkt->l4_off + sizeof(*udp);
	pkt->data_len = udp_len - sizeof(*udp) - SIGNED_AUTH_TRAILER_LEN;
	pkt->frame_len = end - data;
	hdr->saddr = ip->saddr;
	hdr->daddr = ip->daddr;
	hdr->sport = udp->source;
	hdr->dport = udp->dest;
	return PARSE_OK;
}

/* ---- trailer removal ---- */

/* Shrink the frame to end at the data and rewrite the IP and UDP headers:
 * total length and UDP length drop by the trailer; both checksums are
 * updated incrementally (RFC 1624), so a datagram that arrived with a
 * wrong checksum still has one; a UDP checksum of 0 (none) stays 0. */
static __always_inline int strip_trailer(struct xdp_md *ctx, const struct sa_pkt *pkt,
					 const struct signed_auth_trailer *tr)
{
	__u32 new_end = pkt->data_off + pkt->data_len;
	void *data, *end;
	struct iphdr *ip;
	struct udphdr *udp;
	__u16 old_tot, new_tot, old_ulen, new_ulen, tsum;
	__u64 s;

	/* also drops Ethernet padding after the IP datagram, if any */
	if (bpf_xdp_adjust_tail(ctx, (int)new_end - (int)pkt->frame_len))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	ip = data + (pkt->l3_off & 31);		/* l3_off <= 14 + 2 * 4 */
	if ((void *)(ip + 1) > end)
		return -1;
	udp = data + (pkt->l4_off & 127);	/* l4_off <= l3_off + 60 */
	if ((void *)(udp + 1) > end)
		return -1;

	old_tot = ip->tot_len;
	new_tot = bpf_htons(bpf_ntohs(old_tot) - SIGNED_AUTH_TRAILER_LEN);
	ip->tot_len = new_tot;
	ip->check = (__u16)~csum_fold64((__u64)(__u16)~ip->check + (__u16)~old_tot + new_tot);

	old_ulen = udp->len;
	new_ulen = bpf_htons(bpf_ntohs(old_ulen) - SIGNED_AUTH_TRAILER_LEN);
	udp->len = new_ulen;
	if (udp->check) {
		/* the length is summed twice: pseudo-header and UDP header */
		tsum = trailer_sum(tr);
		if (pkt->data_len & 1)	/* trailer started on an odd byte */
			tsum = (__u16)((tsum << 8) | (tsum >> 8));
		s = (__u64)(__u16)~udp->check + 2 * (__u64)(__u16)~old_ulen +
		    2 * (__u64)new_ulen + (__u16)~tsum;
		udp->check = (__u16)~csum_fold64(s) ?: 0xffff;
	}
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
	switch (parse(ctx, &pkt, &s->hdr)) {
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
	if (strip_trailer(ctx, &pkt, &s->tr))
		return DROP(ks, errors);
	COUNT(ks, verified);
	if (ks)
		ks->last_seen_ns = pkt.now;
	return XDP_PASS;
}
