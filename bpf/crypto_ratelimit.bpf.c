// SPDX-License-Identifier: GPL-2.0
/* crypto_ratelimit: per-source token buckets with proof-of-work admission,
 * at XDP.
 *
 * UDP datagrams to protected ports spend their IPv4 source's tokens. Over
 * budget, XDP answers with a stateless challenge (challenge.bpf.h) carrying
 * a difficulty d; a SOLUTION whose SHA-256(challenge || nonce) starts with
 * d zero bits refills the bucket. The challenge is recomputed from the
 * packet's source, slot and d (never trusted), each solution is accepted
 * once, and d follows the load on the protected ports within configured
 * bounds. Wire format, configuration and counters: include/crypto_ratelimit.h. */
#include "cryptbpf.bpf.h"
#include "challenge.bpf.h"
#include "frame_classify.bpf.h"
#include "xdp_reply.bpf.h"
#include "crypto_ratelimit.h"

char LICENSE[] SEC("license") = "GPL";

_Static_assert(sizeof(struct pow_msg) == 56, "pow_msg is a wire format");

#ifndef ENOENT
#define ENOENT 2
#endif
#ifndef ENOMEM
#define ENOMEM 12
#endif

#define NS_PER_S 1000000000ULL

/* Challenge lifetime unit: a challenge is valid 1..2 slots. */
const volatile __u32 slot_s = 30;

static const char pow_label[CHALLENGE_LABEL_LEN] = "cbpow v1";

CHALLENGE_KEY_MAP(pow_server_key);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pow_config);
} pow_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pow_state);
} pow_state SEC(".maps");

/* UDP port (host byte order) -> 1 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, POW_MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} protected_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, POW_MAX_SOURCES);
	__type(key, __be32);
	__type(value, struct pow_bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, POW_MAX_USED);
	__type(key, __u8[32]);
	__type(value, struct pow_used);
} used_solutions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct crypto_ratelimit_stats);
} stats SEC(".maps");

struct pow_scratch {
	struct challenge_scratch cs;
	struct pow_msg msg;                 /* the request, then the reply */
	struct challenge_key key;           /* install_key: the value to store */
	__u8 raw[64];                       /* install_key: the raw key */
	struct frame_info fi;               /* the frame, classified */
} __attribute__((aligned(8)));
CRYPTBPF_PERCPU_SCRATCH(pow_scratch, struct pow_scratch);

#define COUNT(field)                                                          \
	({                                                                    \
		__u32 _z = 0;                                                 \
		struct crypto_ratelimit_stats *_s = bpf_map_lookup_elem(&stats, &_z); \
		if (_s)                                                       \
			_s->field++;                                          \
	})

static __always_inline __u32 now_slot(void)
{
	return challenge_slot((__u64)slot_s * NS_PER_S);
}

/* Does a digest whose first 32 bits (big-endian) are h0 start with at
 * least d zero bits? Exact for every d in 0..32. */
static __always_inline int pow_meets(__u32 h0, __u32 d)
{
	if (d == 0)
		return 1;
	if (d > POW_MAX_DIFFICULTY)
		return 0;
	return (h0 >> (32 - d)) == 0;          /* shift 0..31 */
}

/* SHA-256(challenge || nonce): 40 bytes, one block, one compression. The
 * digest is left in s->h as host-order words (h[0] = first 4 bytes). */
static __always_inline void pow_hash(struct cryptbpf_sha256_ctx *s, const struct pow_msg *m)
{
	__u64 *w = (__u64 *)s->buf;

	copy_words(s->buf, m->challenge, 32);
	copy_words(s->buf + 32, m->nonce, 8);
	w[5] = 0x80;                                 /* byte 40 */
	w[6] = 0;
	w[7] = __builtin_bswap64(40 * 8);
	sha256_init(s);
	sha256_compress(s, (const struct cryptbpf_sha256_block *)s->buf);
}

/* ---------------------------------------------------------------- load */

/* Count a packet; once per window, one CPU moves the difficulty one step
 * toward the load (up above load_high_pps, down below load_low_pps) and
 * clamps it into [min, max]. Returns the difficulty to use now. */
static __always_inline __u32 track_load(const struct pow_config *c, __u64 now)
{
	__u32 zero = 0;
	struct pow_state *st = bpf_map_lookup_elem(&pow_state, &zero);
	__u64 start, elapsed, pkts, pps;
	__u32 d;

	if (!st)
		return c->max_difficulty;
	__sync_fetch_and_add(&st->window_packets, 1);
	start = st->window_start_ns;
	elapsed = now - start;
	if (elapsed >= POW_WINDOW_NS &&
	    __sync_val_compare_and_swap(&st->window_start_ns, start, now) == start) {
		pkts = __sync_lock_test_and_set(&st->window_packets, 0);
		/* an idle gap of several windows counts as one quiet window */
		pps = elapsed > 2 * POW_WINDOW_NS ? 0 : pkts * NS_PER_S / elapsed;
		st->last_pps = pps;
		d = st->difficulty;
		if (d < c->min_difficulty)      /* the bounds may have changed */
			d = c->min_difficulty;
		if (d > c->max_difficulty)
			d = c->max_difficulty;
		if (pps > c->load_high_pps && d < c->max_difficulty) {
			d++;
			COUNT(raised);
		} else if (pps < c->load_low_pps && d > c->min_difficulty) {
			d--;
			COUNT(lowered);
		}
		st->difficulty = d;
	}
	d = st->difficulty;
	if (d < c->min_difficulty)
		d = c->min_difficulty;
	if (d > c->max_difficulty)
		d = c->max_difficulty;
	return d > POW_MAX_DIFFICULTY ? POW_MAX_DIFFICULTY : d;
}

/* ---------------------------------------------------------------- buckets */

/* Take one token (GCRA): 1 = within budget. A compare-and-swap makes
 * concurrent packets of one source on several CPUs each pay. */
static __always_inline int take_token(struct pow_bucket *b, const struct pow_config *c,
				      __u64 now)
{
#pragma clang loop unroll(full)
	for (int i = 0; i < 3; i++) {
		__u64 tat = b->tat_ns;
		__u64 base = tat > now ? tat : now;

		if (base - now > c->tolerance_ns)
			return 0;
		if (__sync_val_compare_and_swap(&b->tat_ns, tat, base + c->interval_ns) == tat)
			return 1;
	}
	return 0;   /* lost the race three times: treat as over budget */
}

static __always_inline struct pow_bucket *bucket_of(__be32 saddr, const struct pow_config *c,
						    __u64 now)
{
	struct pow_bucket *b = bpf_map_lookup_elem(&buckets, &saddr);
	struct pow_bucket fresh = { .tat_ns = now };

	if (b)
		return b;
	/* A new source starts with a full bucket, or, under attack, an empty
	 * one that must be bought with a solution. */
	if (c->under_attack)
		fresh.tat_ns = now + c->tolerance_ns + c->interval_ns;
	bpf_map_update_elem(&buckets, &saddr, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&buckets, &saddr);
}

/* May this source get another challenge in this slot? */
static __always_inline int challenge_allowed(struct pow_bucket *b, const struct pow_config *c,
					     __u32 slot)
{
	if (b->chal_slot != slot) {
		b->chal_slot = slot;
		b->chal_count = 0;
	}
	return __sync_fetch_and_add(&b->chal_count, 1) < c->max_challenges;
}

/* ---------------------------------------------------------------- packets */

/* Over budget: turn the datagram into a CHALLENGE for its sender. */
static __noinline int send_challenge(struct xdp_md *ctx, const struct xdp_udp4 *u, __u32 d)
{
	struct pow_scratch *s = cryptbpf_scratch(&pow_scratch);
	const struct challenge_key *key = challenge_key_get(&pow_server_key);
	struct pow_msg *m;
	__u32 slot = now_slot();

	if (!s)
		return XDP_DROP;
	if (!key) {
		COUNT(no_key);
		return XDP_DROP;
	}
	m = &s->msg;
	__builtin_memset(m, 0, sizeof(*m));
	challenge_input_set(&s->cs.in, pow_label, u->saddr, 0, slot, d);
	__builtin_memset(s->cs.in.nonce, 0, CHALLENGE_NONCE_LEN);
	challenge_compute(&s->cs, key, m->challenge);
	m->magic = bpf_htonl(POW_MAGIC);
	m->version = POW_VERSION;
	m->type = POW_CHALLENGE;
	m->difficulty = d;
	m->slot = bpf_htonl(slot);
	switch (xdp_udp4_reply(ctx, u, m, sizeof(*m))) {
	case 0:
		break;
	case XDP_REPLY_NO_ROOM:
		/* a datagram shorter than the challenge, and the driver has no
		 * tailroom to grow it: the client must send a REQUEST */
		COUNT(no_room);
		return XDP_DROP;
	default:
		COUNT(errors);
		return XDP_DROP;
	}
	COUNT(challenged);
	return XDP_TX;
}

/* A SOLUTION (in s->msg, checked for form): verify, refill the bucket,
 * answer ADMIT. */
static __noinline int on_solution(struct xdp_md *ctx, const struct xdp_udp4 *u,
				  const struct pow_config *c, __u64 now)
{
	struct pow_scratch *s = cryptbpf_scratch(&pow_scratch);
	const struct challenge_key *key = challenge_key_get(&pow_server_key);
	struct pow_bucket *b, fresh = { .tat_ns = now, .verified = 1, .solved = 1 };
	struct pow_used used = {};
	struct pow_msg *m;
	__be32 saddr = u->saddr;
	__u32 d;

	if (!s)
		return XDP_DROP;
	m = &s->msg;
	if (!key) {
		COUNT(no_key);
		return XDP_DROP;
	}
	d = m->difficulty;
	used.slot = bpf_ntohl(m->slot);

	/* 1. the challenge is the one we issue to this address, slot and d */
	challenge_input_set(&s->cs.in, pow_label, saddr, 0, used.slot, d);
	__builtin_memset(s->cs.in.nonce, 0, CHALLENGE_NONCE_LEN);
	copy_words(s->cs.presented, m->challenge, 32);
	switch (challenge_check(&s->cs, key, now_slot())) {
	case CHALLENGE_OK:
		break;
	case CHALLENGE_STALE:
		COUNT(stale);
		return XDP_DROP;
	default:
		COUNT(bad_challenge);
		return XDP_DROP;
	}

	/* 2. the work: SHA-256(challenge || nonce) has d leading zero bits */
	pow_hash(&s->cs.h.hash, m);
	if (!pow_meets(s->cs.h.hash.h[0], d)) {
		COUNT(bad_pow);
		return XDP_DROP;
	}

	/* 3. once only (the digest names the (challenge, nonce) pair) */
	if (bpf_map_update_elem(&used_solutions, s->cs.h.hash.h, &used, BPF_NOEXIST)) {
		COUNT(replayed);
		return XDP_DROP;
	}

	/* 4. a full bucket */
	b = bpf_map_lookup_elem(&buckets, &saddr);
	if (b) {
		b->tat_ns = now;
		b->verified = 1;
		__sync_fetch_and_add(&b->solved, 1);
	} else if (bpf_map_update_elem(&buckets, &saddr, &fresh, BPF_ANY)) {
		COUNT(errors);
		return XDP_DROP;
	}
	COUNT(solved);

	m->type = POW_ADMIT;
	m->tokens = bpf_htonl(c->burst);
	if (xdp_udp4_reply(ctx, u, m, sizeof(*m))) {
		COUNT(errors);
		return XDP_DROP;    /* admitted all the same: the data will pass */
	}
	return XDP_TX;
}

/* Challenge the sender of u, if it has challenges left in this slot. */
static __always_inline int challenge_source(struct xdp_md *ctx, const struct xdp_udp4 *u,
					    struct pow_bucket *b, const struct pow_config *c,
					    __u32 d)
{
	int verdict;

	if (!challenge_allowed(b, c, now_slot())) {
		COUNT(limited);
		return XDP_DROP;
	}
	verdict = send_challenge(ctx, u, d);
	if (verdict != XDP_TX)       /* nothing was sent: not a reflection */
		__sync_fetch_and_sub(&b->chal_count, 1);
	return verdict;
}

/* A payload that starts with POW_MAGIC: exactly one well-formed pow_msg,
 * a SOLUTION or a REQUEST, or dropped. */
static __noinline int on_control(struct xdp_md *ctx, const struct xdp_udp4 *u,
				 const struct pow_config *c, __u64 now, __u32 d)
{
	struct pow_scratch *s = cryptbpf_scratch(&pow_scratch);
	struct pow_bucket *b;
	struct pow_msg *m;

	if (!s)
		return XDP_DROP;
	m = &s->msg;
	if (u->payload_len != sizeof(*m) ||
	    bpf_xdp_load_bytes(ctx, u->payload_off, m, sizeof(*m)) ||
	    m->version != POW_VERSION || m->reserved ||
	    m->difficulty > POW_MAX_DIFFICULTY ||
	    (m->type != POW_SOLUTION && m->type != POW_REQUEST)) {
		COUNT(malformed);
		return XDP_DROP;
	}
	if (m->type == POW_SOLUTION)
		return on_solution(ctx, u, c, now);
	/* REQUEST: a challenge in place, same size, whatever the budget */
	b = bucket_of(u->saddr, c, now);
	if (!b) {
		COUNT(errors);
		return XDP_DROP;
	}
	COUNT(requests);
	return challenge_source(ctx, u, b, c, d);
}

/* A datagram to a protected port. Tokens are spent only on datagrams the
 * kernel delivers whole: a first fragment, IPv4 options other than NOP/EOL
 * (the kernel acts on or refuses them) or a UDP length short of the IP
 * payload leave no verdict possible. */
static __always_inline int on_protected(struct xdp_md *ctx, int family,
					const struct frame_info *fi)
{
	struct pow_config *c;
	struct pow_bucket *b;
	struct xdp_udp4 u;
	__be32 magic;
	__u32 zero = 0, d;
	__u64 now;

	if (xdp_udp4_from_frame(family, fi, &u)) {
		COUNT(bad_l4);
		return XDP_DROP;
	}
	c = bpf_map_lookup_elem(&pow_config, &zero);
	if (!c)
		return XDP_DROP;
	now = bpf_ktime_get_boot_ns();
	d = track_load(c, now);

	if (u.payload_len >= sizeof(magic) &&
	    !bpf_xdp_load_bytes(ctx, u.payload_off, &magic, sizeof(magic)) &&
	    magic == bpf_htonl(POW_MAGIC))
		return on_control(ctx, &u, c, now, d);

	b = bucket_of(u.saddr, c, now);
	if (!b) {
		COUNT(errors);
		return XDP_DROP;
	}
	if ((!c->under_attack || b->verified) && take_token(b, c, now)) {
		COUNT(passed);
		return XDP_PASS;
	}
	return challenge_source(ctx, &u, b, c, d);
}

SEC("xdp")
int crypto_ratelimit(struct xdp_md *ctx)
{
	struct pow_scratch *s = cryptbpf_scratch(&pow_scratch);
	struct frame_info *fi;
	__u16 port;
	int family;

	if (!s)
		return XDP_DROP;
	fi = &s->fi;
	family = frame_classify_xdp(ctx, fi);
	if (family < 0) {
		/* cannot tell the port, or the kernel would drop it: a
		 * protected one could hide in it */
		COUNT(bad_l4);
		return XDP_DROP;
	}
	/* not UDP, or a later fragment (no port; its first fragment, if to a
	 * protected port, is dropped below and the datagram never completes).
	 * ICMP errors quoting a protected port carry no data: passed. */
	if (family == FRAME_NOT_IP || fi->proto != IPPROTO_UDP_ || !(fi->flags & FRAME_F_PORTS))
		return XDP_PASS;
	port = fi->dport;
	if (!bpf_map_lookup_elem(&protected_ports, &port))
		return XDP_PASS;
	if (family == FRAME_IPV6) {
		COUNT(ipv6_dropped);   /* buckets are per IPv4 source: fail closed */
		return XDP_DROP;
	}
	return on_protected(ctx, family, fi);
}

/* The server's challenge key (BPF_PROG_TEST_RUN, ctx = struct pow_key_setup):
 * only the HMAC pad states are stored; the raw bytes are wiped. */
SEC("syscall")
int install_key(struct pow_key_setup *args)
{
	struct pow_scratch *s = cryptbpf_scratch(&pow_scratch);
	__u32 zero = 0, len = args->len;
	struct challenge_key *dst;
	int err;

	if (!s)
		return args->err = -ENOMEM;
	if (len < 16 || len > sizeof(s->raw))
		return args->err = -EINVAL;
	/* Already checked, but clang clamps a 32-bit copy of len, and 6.1's
	 * verifier does not carry the compare's bound to the copy passed to
	 * hmac_sha256_init(); CRYPTBPF_CLAMP keeps both in one register. */
	CRYPTBPF_CLAMP(len, sizeof(s->raw));
	dst = bpf_map_lookup_elem(&pow_server_key, &zero);
	if (!dst)
		return args->err = -ENOENT;
	__builtin_memcpy(s->raw, args->key, sizeof(s->raw));
	err = challenge_key_install(&s->cs.h, s->raw, len, &s->key);
	__builtin_memset(s->raw, 0, sizeof(s->raw));
	if (!err)
		__builtin_memcpy(dst, &s->key, sizeof(s->key));
	__builtin_memset(&s->key, 0, sizeof(s->key));
	return args->err = err;
}

/* The data path's difficulty test, exposed for exact boundary tests. */
SEC("syscall")
int check_difficulty(struct pow_zero_check *args)
{
	__u32 h0 = ((__u32)args->digest[0] << 24) | ((__u32)args->digest[1] << 16) |
		   ((__u32)args->digest[2] << 8) | args->digest[3];

	args->ok = pow_meets(h0, args->difficulty);
	return 0;
}
