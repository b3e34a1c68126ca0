// SPDX-License-Identifier: GPL-2.0
/* crypto_offload: a UDP crypto service (SHA-256, HMAC-SHA256,
 * ChaCha20-Poly1305 seal) answered in XDP when that is faster, by the
 * userspace daemon (`cryptbpf offload serve`) otherwise.
 *
 * offload_xdp parses a request (wire format: include/crypto_offload.h),
 * validates it, and either computes the answer here and sends it back with
 * XDP_TX, or returns XDP_PASS so that the daemon's socket receives it.
 *
 * Routing per (op, 128-byte size bucket): the kernel keeps an EWMA of its
 * own cost (bpf_ktime_get_ns around compute + reply) in kernel_cost; the
 * daemon publishes the EWMA of its latency (receive timestamp to reply
 * sent) in daemon_cost and a heartbeat in offload_daemon. A request goes to
 * the lower estimate. About 1 in config.explore_every requests, and the
 * first request after an estimate is older than config.refresh_ns, go to
 * the slower path instead: that path's estimate keeps being measured, so
 * routing can move back when it got faster (or the other path slower).
 * Without the heartbeat the kernel serves what it can and answers the rest
 * with OFFLOAD_ERR_UNAVAILABLE.
 *
 * offload_key_setup (SYSCALL) provisions keys: it derives the HMAC pad
 * states in the kernel so that no request pays for the key schedule. */
#include "cryptbpf.bpf.h"
#include "hmac.bpf.h"
#include "chacha20_poly1305.bpf.h"
#include "frame_classify.bpf.h"
#include "crypto_offload.h"

char LICENSE[] SEC("license") = "GPL";

_Static_assert(OFFLOAD_MAX_AAD == CHACHA20_POLY1305_AAD_MAX, "AAD bound");
_Static_assert(OFFLOAD_KERNEL_MAX <= CRYPTBPF_MSG_MAX, "kernel bound");
_Static_assert(OFFLOAD_COST_ENTRIES == OFFLOAD_NOPS * OFFLOAD_BUCKETS, "cost map size");
_Static_assert(sizeof(((struct offload_stats *)0)->decisions) ==
	       8 * OFFLOAD_NPATHS * OFFLOAD_NREASONS, "decision counters");
_Static_assert(sizeof(struct offload_req_hdr) == 16 && sizeof(struct offload_reply_hdr) == 12,
	       "wire headers");

/* Never used: they make clang emit BTF for the wire and ring buffer types,
 * which tests/test_layout.py compares with cffi's reading of the header. */
struct offload_req_hdr *btf_req_hdr __attribute__((unused));
struct offload_reply_hdr *btf_reply_hdr __attribute__((unused));
struct offload_sample *btf_sample __attribute__((unused));

/* UDP destination port of the service (host byte order). */
const volatile __u16 udp_port = OFFLOAD_DEFAULT_PORT;

#define ARRAY_MAP(name, n, value_type)                                        \
	struct {                                                              \
		__uint(type, BPF_MAP_TYPE_ARRAY);                             \
		__uint(max_entries, n);                                       \
		__type(key, __u32);                                           \
		__type(value, value_type);                                    \
	} name SEC(".maps")

ARRAY_MAP(offload_config, 1, struct offload_config);
ARRAY_MAP(offload_daemon, 1, struct offload_daemon);
/* Shared across CPUs on purpose: one estimate per bucket. Concurrent
 * read-modify-write may lose an update; for an average that is harmless. */
ARRAY_MAP(kernel_cost, OFFLOAD_COST_ENTRIES, struct offload_cost);
ARRAY_MAP(daemon_cost, OFFLOAD_COST_ENTRIES, struct offload_cost);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OFFLOAD_MAX_KEYS);
	__type(key, __u32);
	__type(value, struct offload_key);
} offload_keys SEC(".maps");

/* The key id by value, so the lookup's key is a stack slot. The request
 * (struct oreq) lives in per-CPU scratch and reaches the __noinline serve
 * functions as a plain `mem` argument; Linux 6.1 accepts map keys only on
 * the stack, in a packet or in map memory ("R2 type=mem expected=fp, ..."),
 * so &r->key_id cannot be passed there. */
static __always_inline struct offload_key *offload_key_get(__u32 key_id)
{
	return bpf_map_lookup_elem(&offload_keys, &key_id);
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct offload_stats);
} offload_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} offload_samples SEC(".maps");

/* A request as offload_xdp sees it. Offsets are in the frame. */
struct oreq {
	__u32 l3_off, l4_off, pl_off;
	__u32 pl_len;       /* UDP payload length per the UDP header */
	__u32 frag;         /* 1: first fragment of a fragmented datagram */
	__u32 size;         /* data_len (+ aad_len): what the cost depends on */
	__u32 idx;          /* cost map index */
	__u32 req_id;       /* host order */
	__u32 key_id;
	__u16 data_len, aad_len;
	__u8 op, version, bucket;
	struct frame_info fi;   /* the frame, classified */
	__u8 opts[64];          /* IPv4 options (40 at most), when there are some */
};

/* Per-CPU working memory: hash/MAC state, AEAD state, the nonce and AAD
 * copied out of the packet (the AEAD reads AAD from map memory only), the
 * digest, and a bounce buffer for the UDP checksum. */
struct offload_scratch {
	struct oreq req;    /* not on the stack: the AEAD's call chain needs most of its 512 bytes */
	union {
		struct cryptbpf_sha256_ctx sha;
		struct cryptbpf_hmac_sha256_ctx hmac;
		struct chacha20_poly1305_ctx aead;
	};
	__u8 nonce[16];
	__u8 aad[OFFLOAD_MAX_AAD];
	__u8 digest[OFFLOAD_DIGEST_SIZE];
	__u8 csum_buf[256];
};
CRYPTBPF_PERCPU_SCRATCH(offload_scratch, struct offload_scratch);

struct key_scratch {
	struct cryptbpf_hmac_sha256_ctx hmac;
	struct offload_key entry;
	__u8 raw[OFFLOAD_KEY_MAX];
};
CRYPTBPF_PERCPU_SCRATCH(key_scratch, struct key_scratch);

#define IPPROTO_UDP_ 17
#define ETH_ALEN_    6
#define IP_MF        0x2000
#define IP_OFFSET    0x1fff
#define IP_DF        0x4000
#define REPLY_TTL    64

/* ------------------------------------------------------------ bookkeeping */

static __always_inline void count_decision(__u32 path, __u32 reason)
{
	__u32 zero = 0, i = path * OFFLOAD_NREASONS + reason;
	struct offload_stats *s = bpf_map_lookup_elem(&offload_stats, &zero);

	if (s && i < OFFLOAD_NPATHS * OFFLOAD_NREASONS)
		s->decisions[i]++;
}

static __always_inline void count_runt(void)
{
	__u32 zero = 0;
	struct offload_stats *s = bpf_map_lookup_elem(&offload_stats, &zero);

	if (s)
		s->dropped_runt++;
}

static __always_inline __u64 estimate(void *map, __u32 idx)
{
	struct offload_cost *c = bpf_map_lookup_elem(map, &idx);

	return c ? c->ewma_ns : 0;
}

/* Count the decision; send about 1 in sample_every to the ring buffer.
 * Global: verified once, not at each of its call sites. */
__noinline int offload_decided(const struct oreq *r, __u32 path, __u32 reason,
			       __u64 cost_ns, __u32 sample_every)
{
	struct offload_sample *s;

	if (!r)
		return 0;
	count_decision(path, reason);
	if (!sample_every || bpf_get_prandom_u32() % sample_every)
		return 0;
	s = bpf_ringbuf_reserve(&offload_samples, sizeof(*s), 0);
	if (!s) {
		__u32 zero = 0;
		struct offload_stats *st = bpf_map_lookup_elem(&offload_stats, &zero);

		if (st)
			st->samples_lost++;
		return 0;
	}
	s->ts_ns = bpf_ktime_get_ns();
	s->req_id = r->req_id;
	s->op = r->op;
	s->path = path;
	s->reason = reason;
	s->bucket = r->bucket;
	s->size = r->size;
	s->cost_ns = cost_ns > 0xffffffff ? 0xffffffff : cost_ns;
	s->kernel_est_ns = estimate(&kernel_cost, r->idx);
	s->daemon_est_ns = estimate(&daemon_cost, r->idx);
	bpf_ringbuf_submit(s, 0);
	return 0;
}

#define decided(cfg, r, path, reason, cost) \
	offload_decided(r, path, reason, cost, (cfg)->sample_every)

/* Fold one measurement into the kernel's estimate. The first measurement
 * replaces the seed; after that, an EWMA with weight 1/2^shift. */
static __always_inline void kernel_cost_update(const struct offload_config *cfg,
					       __u32 idx, __u64 ns, __u64 now)
{
	struct offload_cost *c = bpf_map_lookup_elem(&kernel_cost, &idx);
	__s64 diff;

	if (!c)
		return;
	if (!c->samples) {
		c->ewma_ns = ns;
	} else {
		diff = (__s64)ns - (__s64)c->ewma_ns;
		c->ewma_ns += diff >> (cfg->ewma_shift & 15);   /* arithmetic shift */
	}
	c->samples++;
	c->updated_ns = now;
}

/* ------------------------------------------------------------ parsing */

/* The walk over the options, one option per bpf_loop() turn. */
struct opts_walk {
	const __u8 *o;      /* the options, copied to scratch */
	__u32 n;            /* their length, 4..40 */
	__u32 i;            /* the next option's offset */
	int delivered;
};

/* Record route (7), timestamp (0x44) and router alert (0x94) with sane
 * lengths and pointers: what ip_options_compile() lets through. */
static __always_inline int opt_delivered(__u32 type, __u32 len, __u32 ptr)
{
	if (type == 7)
		return len >= 3 && ptr >= 4 && !(ptr <= len && ptr + 3 > len);
	if (type == 0x44)
		return len >= 4 && ptr >= 5;
	return type == 0x94 && len == 4;
}

/* Verifier: a bpf_loop() callback, not an unrolled loop. The verifier
 * checks it once (6.1) or until its state converges (6.8+); the same walk
 * written as a 40-turn bounded loop made 6.1 explore every option
 * sequence and give up at a million instructions. */
static long opts_walk_step(__u64 turn, void *ctx)
{
	struct opts_walk *w = ctx;
	const __u8 *o = w->o;
	__u32 i = w->i, n = w->n, type, len;

	if (i >= n)
		return 1;
	type = o[i & 63];
	if (type == 0)                  /* EOL: the rest is padding */
		return 1;
	if (type == 1) {                /* NOP */
		w->i = i + 1;
		return 0;
	}
	len = i + 1 < n ? o[(i + 1) & 63] : 0;
	if (len < 2 || i + len > n || !opt_delivered(type, len, o[(i + 2) & 63])) {
		w->delivered = 0;
		return 1;
	}
	w->i = i + len;
	return 0;
}

/* IPv4 options (the classifier saw some other than NOP/EOL): 1 if XDP may
 * answer, i.e. the kernel would deliver the request. Record route,
 * timestamp and router alert with sane lengths and pointers are delivered
 * (and kept in the reply). Source routes are dropped by the kernel unless
 * accept_source_route is set, and so are options with a wrong length or
 * pointer (ip_options_compile()): those, and any other option (security,
 * CIPSO, unknown ones, which XDP does not judge), are left to the stack,
 * which drops or delivers them to the daemon's socket. */
static __always_inline int ip_opts_delivered(struct xdp_md *ctx, struct oreq *r)
{
	const struct frame_info *fi = &r->fi;
	struct opts_walk w = { .o = r->opts, .n = fi->ihl - 20, .delivered = 1 };
	__u32 n = w.n;

	/* Verifier (6.1): two tests on the same register, kept apart by
	 * barrier_var(); clang would otherwise fold them into one test of
	 * n - 4 in another register, and 6.1 never learns n's lower bound
	 * (the helper's size would then be allowed to be 0). */
	if (n > 40)
		return 0;
	barrier_var(n);
	if (n < 4 || bpf_xdp_load_bytes(ctx, fi->l3_off + 20, r->opts, n))
		return 0;
	/* an option takes at least one byte: n turns are enough */
	if (bpf_loop(40, opts_walk_step, &w, 0) < 0)
		return 0;
	return w.delivered;
}

/* An IPv4/UDP datagram to udp_port, possibly the first fragment of a
 * larger one, as the shared classifier sees it (any VLAN tags, the IPv4
 * header as strict as the kernel's). 0 = ours; -1 = anything else: the
 * stack handles it. crypto-offload guards nothing, so what the classifier
 * cannot see through (FRAME_BAD_*) goes to the stack too, which drops what
 * it would drop and delivers the rest to the daemon's socket, where the
 * daemon validates it; XDP only answers requests the kernel would deliver. */
static __always_inline int parse_udp(struct xdp_md *ctx, struct oreq *r)
{
	struct frame_info *fi = &r->fi;
	int f = frame_classify_xdp(ctx, fi);

	if (f != FRAME_IPV4 || fi->proto != IPPROTO_UDP_ || !(fi->flags & FRAME_F_PORTS) ||
	    fi->dport != udp_port || fi->udp_len < sizeof(struct udphdr))
		return -1;
	if ((fi->flags & FRAME_F_IP_OPTS) && !ip_opts_delivered(ctx, r))
		return -1;
	r->frag = !!(fi->flags & FRAME_F_FRAG_FIRST);
	/* unfragmented: the UDP length must match IP's (a shorter one is
	 * legal, the stack trims the rest: left to it); a first fragment
	 * carries the whole datagram's UDP length */
	if (!r->frag && fi->udp_len != fi->l3_end - fi->l4_off)
		return -1;
	r->l3_off = fi->l3_off;
	r->l4_off = fi->l4_off;
	r->pl_off = r->l4_off + sizeof(struct udphdr);
	r->pl_len = fi->udp_len - sizeof(struct udphdr);
	return 0;
}

/* The request header: 0 = has a request id to answer, -1 = drop. */
static __always_inline int parse_hdr(struct xdp_md *ctx, struct oreq *r)
{
	struct offload_req_hdr h = {};

	if (r->pl_len < sizeof(struct offload_reply_hdr) || bpf_xdp_load_bytes(ctx, r->pl_off, &h, 8) ||
	    h.magic != bpf_htons(OFFLOAD_MAGIC))
		return -1;
	if (r->pl_len >= sizeof(h) && bpf_xdp_load_bytes(ctx, r->pl_off, &h, sizeof(h)))
		return -1;
	r->version = h.version;
	r->op = h.op;
	r->req_id = bpf_ntohl(h.req_id);
	r->key_id = bpf_ntohl(h.key_id);
	r->data_len = bpf_ntohs(h.data_len);
	r->aad_len = bpf_ntohs(h.aad_len);
	r->size = r->data_len + r->aad_len;
	r->bucket = r->size >> OFFLOAD_BUCKET_SHIFT;
	if (r->bucket >= OFFLOAD_BUCKETS)
		r->bucket = OFFLOAD_BUCKETS - 1;
	r->idx = r->op >= 1 && r->op <= OFFLOAD_NOPS ?
		 (r->op - 1) * OFFLOAD_BUCKETS + r->bucket : 0;
	return 0;
}

/* Parse into r (map memory). Global, so that the header copies live in
 * its own stack frame, not under the AEAD's deep call chain.
 * 0 = a request; 1 = not ours (pass); 2 = ours but no request id (drop). */
__noinline int offload_parse(struct xdp_md *ctx, struct oreq *r)
{
	if (!r)
		return 1;
	__builtin_memset(r, 0, sizeof(*r));
	if (parse_udp(ctx, r))
		return 1;
	return parse_hdr(ctx, r) ? 2 : 0;
}

/* The length a well-formed request of this op and sizes has. */
static __always_inline __u32 request_len(const struct oreq *r)
{
	__u32 len = sizeof(struct offload_req_hdr) + r->data_len;

	if (r->op == OFFLOAD_OP_SEAL)
		return len + OFFLOAD_NONCE_SIZE + r->aad_len;
	return len < OFFLOAD_MIN_DIGEST_REQ ? OFFLOAD_MIN_DIGEST_REQ : len;
}

/* The validation order of crypto_offload.h. Returns an OFFLOAD_* status. */
static __always_inline int validate(const struct oreq *r)
{
	struct offload_key *k;
	__u32 want_type;

	if (r->pl_len < sizeof(struct offload_req_hdr))
		return OFFLOAD_ERR_LENGTH;
	if (r->version != OFFLOAD_VERSION)
		return OFFLOAD_ERR_VERSION;
	if (r->op < OFFLOAD_OP_SHA256 || r->op > OFFLOAD_OP_SEAL)
		return OFFLOAD_ERR_OP;
	if (r->data_len > OFFLOAD_MAX_DATA || r->aad_len > OFFLOAD_MAX_AAD)
		return OFFLOAD_ERR_TOO_BIG;
	if (r->op != OFFLOAD_OP_SEAL && r->aad_len)
		return OFFLOAD_ERR_LENGTH;
	if (r->pl_len != request_len(r))
		return OFFLOAD_ERR_LENGTH;
	if (r->op == OFFLOAD_OP_SHA256)
		return r->key_id ? OFFLOAD_ERR_KEY : OFFLOAD_OK;
	k = offload_key_get(r->key_id);
	if (!k)
		return OFFLOAD_ERR_KEY;
	want_type = r->op == OFFLOAD_OP_HMAC ? OFFLOAD_KEY_HMAC : OFFLOAD_KEY_AEAD;
	return k->type == want_type ? OFFLOAD_OK : OFFLOAD_ERR_KEY_TYPE;
}

/* ------------------------------------------------------------ the reply */

static __always_inline __u32 csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum & 0xffff;
}

/* Ones' complement sum of frame bytes [off, off + len), len <= 1536, in
 * 256-byte chunks through map memory (bpf_csum_diff() reads memory, 4-byte
 * multiples; the last chunk is zero-padded, which is how UDP pads too). */
static __always_inline __s64 csum_frame(struct xdp_md *ctx, struct offload_scratch *s,
					__u32 off, __u32 len, __s64 sum)
{
#pragma clang loop unroll(full)
	for (__u32 i = 0; i < 6; i++) {
		__u32 pos = i * 256, n, last;

		if (pos >= len || sum < 0)
			break;
		n = len - pos;
		if (n > 256)
			n = 256;
		last = ((n - 1) >> 2) & 63;    /* index of the last 4-byte word */
		*(__u32 *)(s->csum_buf + last * 4) = 0;
		if (bpf_xdp_load_bytes(ctx, off + pos, s->csum_buf, hash_partial_len(n, 256)))
			return -1;
		sum = bpf_csum_diff(NULL, 0, (__be32 *)s->csum_buf, (last + 1) * 4, (__wsum)sum);
	}
	return sum;
}

struct csum_hdr {                /* pseudo-header + UDP header */
	__be32 saddr, daddr;
	__u8 zero, proto;
	__be16 udp_len;
	struct udphdr udp;
};

/* Turn the request frame into the reply: its UDP payload is now
 * [pl_off, pl_off + reply_len) (already written). Trim the frame, swap
 * Ethernet/IP addresses and UDP ports, rewrite lengths, clear the fragment
 * bits, and compute the IPv4 and UDP checksums in full. 0 = send it. */
__noinline int offload_reply_finish(struct xdp_md *ctx, const struct oreq *r, __u32 reply_len)
{
	struct offload_scratch *s = cryptbpf_scratch(&offload_scratch);
	struct ethhdr eth;
	struct iphdr ip;
	struct csum_hdr ph = {};
	__u8 mac[ETH_ALEN_];
	__be32 addr;
	__u32 ihl;
	int delta;
	__s64 sum;

	if (!s || !r || reply_len > OFFLOAD_KERNEL_MAX + 64)
		return -1;
	ihl = r->l4_off - r->l3_off;
	delta = (int)(r->pl_off + reply_len) - (int)bpf_xdp_get_buff_len(ctx);
	if (delta && bpf_xdp_adjust_tail(ctx, delta))
		return -1;
	if (bpf_xdp_load_bytes(ctx, 0, &eth, sizeof(eth)))
		return -1;
	__builtin_memcpy(mac, eth.h_dest, ETH_ALEN_);
	__builtin_memcpy(eth.h_dest, eth.h_source, ETH_ALEN_);
	__builtin_memcpy(eth.h_source, mac, ETH_ALEN_);
	if (bpf_xdp_store_bytes(ctx, 0, &eth, sizeof(eth)))
		return -1;

	/* IPv4 header without options first; options (rare) are summed in
	 * from the frame after the fixed part has been written back. */
	if (bpf_xdp_load_bytes(ctx, r->l3_off, &ip, sizeof(ip)))
		return -1;
	addr = ip.saddr;
	ip.saddr = ip.daddr;
	ip.daddr = addr;
	ip.tot_len = bpf_htons(ihl + sizeof(struct udphdr) + reply_len);
	ip.frag_off &= bpf_htons(IP_DF);
	ip.ttl = REPLY_TTL;
	ip.check = 0;
	if (bpf_xdp_store_bytes(ctx, r->l3_off, &ip, sizeof(ip)))
		return -1;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&ip, sizeof(ip), 0);
	if (ihl > sizeof(ip))
		sum = csum_frame(ctx, s, r->l3_off + sizeof(ip), ihl - sizeof(ip), sum);
	if (sum < 0)
		return -1;
	ip.check = ~csum_fold(sum);
	if (bpf_xdp_store_bytes(ctx, r->l3_off + offsetof(struct iphdr, check),
				&ip.check, sizeof(ip.check)))
		return -1;

	/* UDP: ports swapped, length, checksum over pseudo-header, header
	 * and payload (never 0: that would mean "no checksum"). */
	ph.saddr = ip.saddr;
	ph.daddr = ip.daddr;
	ph.proto = IPPROTO_UDP_;
	ph.udp_len = bpf_htons(sizeof(struct udphdr) + reply_len);
	if (bpf_xdp_load_bytes(ctx, r->l4_off, &ph.udp, sizeof(ph.udp)))
		return -1;
	addr = ph.udp.source;
	ph.udp.source = ph.udp.dest;
	ph.udp.dest = addr;
	ph.udp.len = ph.udp_len;
	ph.udp.check = 0;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
	sum = csum_frame(ctx, s, r->pl_off, reply_len, sum);
	if (sum < 0)
		return -1;
	ph.udp.check = ~csum_fold(sum);
	if (!ph.udp.check)
		ph.udp.check = 0xffff;
	return bpf_xdp_store_bytes(ctx, r->l4_off, &ph.udp, sizeof(ph.udp)) ? -1 : 0;
}

static __always_inline int write_reply_hdr(struct xdp_md *ctx, const struct oreq *r,
					   __u8 status, __u16 result_len)
{
	struct offload_reply_hdr h = {
		.magic = bpf_htons(OFFLOAD_MAGIC),
		.version = OFFLOAD_VERSION,
		.op = r->op,
		.req_id = bpf_htonl(r->req_id),
		.status = status,
		.served_by = OFFLOAD_BY_KERNEL,
		.result_len = bpf_htons(result_len),
	};

	return bpf_xdp_store_bytes(ctx, r->pl_off, &h, sizeof(h)) ? -1 : 0;
}

/* An error reply (no result). Frames of any size, first fragments too:
 * the reply is cut down to the reply header. */
__noinline int offload_reject(struct xdp_md *ctx, const struct oreq *r, __u32 status)
{
	int delta;

	if (!r)
		return XDP_DROP;
	delta = (int)(r->pl_off + sizeof(struct offload_reply_hdr)) - (int)bpf_xdp_get_buff_len(ctx);
	/* requests are >= 12 bytes: this only ever shrinks the frame */
	if (delta && bpf_xdp_adjust_tail(ctx, delta))
		return XDP_DROP;
	if (write_reply_hdr(ctx, r, status, 0) ||
	    offload_reply_finish(ctx, r, sizeof(struct offload_reply_hdr)))
		return XDP_DROP;
	return XDP_TX;
}

/* ------------------------------------------------------------ computing */

/* SHA-256 or HMAC-SHA256 of the request data into s->digest. Reads the
 * packet only: on failure the frame is untouched. */
static __always_inline int compute_digest(struct xdp_md *ctx, struct offload_scratch *s,
					  const struct oreq *r)
{
	__u32 off = r->pl_off + sizeof(struct offload_req_hdr);
	struct offload_key *k;
	int err;

	if (r->op == OFFLOAD_OP_SHA256) {
		sha256_init(&s->sha);
		err = sha256_update_xdp(&s->sha, ctx, off, r->data_len);
		return err ?: sha256_final(&s->sha, s->digest);
	}
	k = offload_key_get(r->key_id);
	if (!k || k->type != OFFLOAD_KEY_HMAC)
		return -1;
	hmac_sha256_start(&s->hmac, (const struct cryptbpf_hmac_sha256_key *)k->istate);
	err = hmac_sha256_update_xdp(&s->hmac, ctx, off, r->data_len) ?:
	      hmac_sha256_final(&s->hmac, s->digest);
	/* the pad states are as good as the key: leave none in scratch,
	 * which `cryptbpf map` could dump */
	__builtin_memset(&s->hmac, 0, sizeof(s->hmac));
	return err;
}

/* Failure before / after the frame was modified. */
#define SERVE_UNTOUCHED (-1)
#define SERVE_TOUCHED   (-2)

/* Digest reply: header || digest (44 bytes, requests are padded to at
 * least that, so the frame only shrinks). */
__noinline int offload_serve_digest(struct xdp_md *ctx, const struct oreq *r)
{
	struct offload_scratch *s = cryptbpf_scratch(&offload_scratch);
	int delta;

	if (!s || !r || compute_digest(ctx, s, r))
		return SERVE_UNTOUCHED;
	delta = (int)(r->pl_off + sizeof(struct offload_reply_hdr) + OFFLOAD_DIGEST_SIZE) -
		(int)bpf_xdp_get_buff_len(ctx);
	if (delta && bpf_xdp_adjust_tail(ctx, delta))
		return SERVE_UNTOUCHED;
	if (write_reply_hdr(ctx, r, OFFLOAD_OK, OFFLOAD_DIGEST_SIZE) ||
	    bpf_xdp_store_bytes(ctx, r->pl_off + sizeof(struct offload_reply_hdr),
				s->digest, OFFLOAD_DIGEST_SIZE) ||
	    offload_reply_finish(ctx, r, sizeof(struct offload_reply_hdr) + OFFLOAD_DIGEST_SIZE))
		return SERVE_TOUCHED;
	return 0;
}

/* Seal reply: header || ciphertext || tag, written in place over the
 * request. The ciphertext starts 16 + aad_len bytes before the plaintext,
 * and the AEAD stores each 256-byte chunk only after loading it, so the
 * writes never overtake the reads. Nonce and AAD are copied out first. */
__noinline int offload_serve_seal(struct xdp_md *ctx, const struct oreq *r)
{
	struct offload_scratch *s = cryptbpf_scratch(&offload_scratch);
	struct offload_key *k;
	__u32 body, out, aad_len, len;
	int err;

	if (!s || !r)
		return SERVE_UNTOUCHED;
	body = r->pl_off + sizeof(struct offload_req_hdr);
	out = r->pl_off + sizeof(struct offload_reply_hdr);
	aad_len = r->aad_len;
	len = r->data_len;
	k = offload_key_get(r->key_id);
	if (!k || k->type != OFFLOAD_KEY_AEAD || aad_len > OFFLOAD_MAX_AAD)
		return SERVE_UNTOUCHED;
	if (bpf_xdp_load_bytes(ctx, body, s->nonce, OFFLOAD_NONCE_SIZE))
		return SERVE_UNTOUCHED;
	if (aad_len && bpf_xdp_load_bytes(ctx, body + OFFLOAD_NONCE_SIZE, s->aad,
					  hash_partial_len(aad_len, OFFLOAD_MAX_AAD)))
		return SERVE_UNTOUCHED;
	err = chacha20_poly1305_seal_xdp(&s->aead, k->key, s->nonce, s->aad, aad_len, ctx,
					 body + OFFLOAD_NONCE_SIZE + aad_len, out, len);
	__builtin_memset(&s->aead, 0, sizeof(s->aead));   /* key words, Poly1305 key */
	if (err)
		return SERVE_TOUCHED;
	len += sizeof(struct offload_reply_hdr) + OFFLOAD_TAG_SIZE;
	if (bpf_xdp_adjust_tail(ctx, (int)(r->pl_off + len) - (int)bpf_xdp_get_buff_len(ctx)) ||
	    write_reply_hdr(ctx, r, OFFLOAD_OK, r->data_len + OFFLOAD_TAG_SIZE) ||
	    offload_reply_finish(ctx, r, len))
		return SERVE_TOUCHED;
	return 0;
}

/* Compute and answer in XDP; the cost goes into kernel_cost. Returns the
 * XDP verdict: XDP_TX, or (computation failed before the frame was
 * touched) XDP_PASS to the daemon when it is alive, else XDP_DROP. */
static __always_inline int serve_kernel(struct xdp_md *ctx, const struct offload_config *cfg,
					const struct oreq *r, __u32 reason, bool alive)
{
	__u64 t0, t1;
	int err;

	t0 = bpf_ktime_get_ns();
	err = r->op == OFFLOAD_OP_SEAL ? offload_serve_seal(ctx, r)
				       : offload_serve_digest(ctx, r);
	t1 = bpf_ktime_get_ns();
	if (err) {
		if (err == SERVE_UNTOUCHED && alive) {
			decided(cfg, r, OFFLOAD_PATH_DAEMON, OFFLOAD_REASON_FAILED, 0);
			return XDP_PASS;
		}
		decided(cfg, r, OFFLOAD_PATH_DROP, OFFLOAD_REASON_FAILED, 0);
		return XDP_DROP;
	}
	kernel_cost_update(cfg, r->idx, t1 - t0, t1);
	decided(cfg, r, OFFLOAD_PATH_KERNEL, reason, t1 - t0);
	return XDP_TX;
}

/* ------------------------------------------------------------ routing */

static __always_inline bool daemon_alive(const struct offload_config *cfg, __u64 now)
{
	__u32 zero = 0;
	struct offload_daemon *d = bpf_map_lookup_elem(&offload_daemon, &zero);

	return d && d->heartbeat_ns && now - d->heartbeat_ns < cfg->heartbeat_timeout_ns;
}

/* Auto mode: the path with the lower estimate, except for explorations of
 * the slower one (random ~1/explore_every, or its estimate is stale).
 * Returns OFFLOAD_PATH_KERNEL or OFFLOAD_PATH_DAEMON; *reason is set. */
static __always_inline __u32 choose(const struct offload_config *cfg, const struct oreq *r,
				    __u64 now, __u32 *reason)
{
	__u32 idx = r->idx;
	struct offload_cost *k = bpf_map_lookup_elem(&kernel_cost, &idx);
	struct offload_cost *d = bpf_map_lookup_elem(&daemon_cost, &idx);
	bool kernel_faster, explore;
	__u64 slower_seen;

	*reason = OFFLOAD_REASON_FASTER;
	if (!k || !d)
		return OFFLOAD_PATH_KERNEL;
	kernel_faster = k->ewma_ns <= d->ewma_ns;
	explore = cfg->explore_every && bpf_get_prandom_u32() % cfg->explore_every == 0;
	/* a stale estimate: explore at most once per refresh interval */
	slower_seen = kernel_faster ? d->updated_ns : k->updated_ns;
	if (k->explored_ns > slower_seen)
		slower_seen = k->explored_ns;
	if (cfg->refresh_ns && now - slower_seen > cfg->refresh_ns)
		explore = true;
	if (explore) {
		k->explored_ns = now;
		*reason = OFFLOAD_REASON_EXPLORE;
		kernel_faster = !kernel_faster;
	}
	return kernel_faster ? OFFLOAD_PATH_KERNEL : OFFLOAD_PATH_DAEMON;
}

SEC("xdp")
int offload_xdp(struct xdp_md *ctx)
{
	struct offload_scratch *s = cryptbpf_scratch(&offload_scratch);
	struct offload_config *cfg;
	struct oreq *r;
	__u32 zero = 0, reason, status;
	__u64 now;
	bool alive, kernel_can;

	if (!s)
		return XDP_PASS;
	r = &s->req;
	switch (offload_parse(ctx, r)) {
	case 0:
		break;
	case 2:
		count_runt();
		return XDP_DROP;
	default:
		return XDP_PASS;
	}
	cfg = bpf_map_lookup_elem(&offload_config, &zero);
	if (!cfg)
		return XDP_PASS;
	now = bpf_ktime_get_ns();
	alive = daemon_alive(cfg, now);

	/* forced to the daemon: everything, malformed requests too, so that
	 * its own validation is exercised */
	if (cfg->mode == OFFLOAD_MODE_DAEMON && alive) {
		decided(cfg, r, OFFLOAD_PATH_DAEMON, OFFLOAD_REASON_FORCED, 0);
		return XDP_PASS;
	}
	status = validate(r);
	if (status != OFFLOAD_OK) {
		decided(cfg, r, OFFLOAD_PATH_REJECT, OFFLOAD_REASON_INVALID, 0);
		return offload_reject(ctx, r, status);
	}
	kernel_can = !r->frag && r->size <= cfg->kernel_max_len && r->size <= OFFLOAD_KERNEL_MAX;
	if (!kernel_can) {
		if (alive) {
			decided(cfg, r, OFFLOAD_PATH_DAEMON, OFFLOAD_REASON_BEYOND, 0);
			return XDP_PASS;
		}
		decided(cfg, r, OFFLOAD_PATH_REJECT, OFFLOAD_REASON_DAEMON_DOWN, 0);
		return offload_reject(ctx, r, OFFLOAD_ERR_UNAVAILABLE);
	}
	if (!alive) {
		reason = OFFLOAD_REASON_DAEMON_DOWN;
	} else if (cfg->mode == OFFLOAD_MODE_KERNEL) {
		reason = OFFLOAD_REASON_FORCED;
	} else if (choose(cfg, r, now, &reason) == OFFLOAD_PATH_DAEMON) {
		decided(cfg, r, OFFLOAD_PATH_DAEMON, reason, 0);
		return XDP_PASS;
	}
	return serve_kernel(ctx, cfg, r, reason, alive);
}

/* ------------------------------------------------------------ keys */

/* Provision key args->key_id: HMAC keys (16..64 bytes) get their pad
 * states derived here; AEAD keys are 32 bytes. The scratch copies of the
 * key are wiped before returning. */
SEC("syscall")
int offload_key_setup(struct offload_key_args *args)
{
	struct key_scratch *s = cryptbpf_scratch(&key_scratch);
	__u32 len = args->len, type = args->type, id = args->key_id;
	int err = 0;

	if (!s)
		return 0;
	if (!(type == OFFLOAD_KEY_HMAC && len >= 16 && len <= OFFLOAD_KEY_MAX) &&
	    !(type == OFFLOAD_KEY_AEAD && len == OFFLOAD_AEAD_KEY_SIZE)) {
		args->err = -EINVAL;
		return 0;
	}
	__builtin_memcpy(s->raw, args->key, OFFLOAD_KEY_MAX);
	__builtin_memset(&s->entry, 0, sizeof(s->entry));
	s->entry.type = type;
	s->entry.len = len;
	__builtin_memcpy(s->entry.key, s->raw, OFFLOAD_KEY_MAX);
	if (type == OFFLOAD_KEY_HMAC) {
		__u32 key_len = len;

		/* verifier: bound it again in the register passed. Linux 6.1
		 * forgets the bounds of a scalar spilled in 4 bytes (clang
		 * spills `len` across the copies above), and the callee's
		 * bpf_dynptr_from_mem() needs key_len <= sizeof(s->raw). */
		CRYPTBPF_CLAMP(key_len, OFFLOAD_KEY_MAX);
		err = hmac_sha256_init(&s->hmac, s->raw, key_len);
		if (!err) {
			__builtin_memcpy(s->entry.istate, s->hmac.key.istate, 32);
			__builtin_memcpy(s->entry.ostate, s->hmac.key.ostate, 32);
		}
	}
	if (!err)
		err = bpf_map_update_elem(&offload_keys, &id, &s->entry, BPF_ANY);
	__builtin_memset(s, 0, sizeof(*s));
	args->err = err;
	return 0;
}
