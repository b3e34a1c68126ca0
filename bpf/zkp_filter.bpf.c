// SPDX-License-Identifier: GPL-2.0
/* zkp_filter: challenge-response access control at XDP.
 *
 * Protected ports (TCP and UDP) are invisible to a source until it has
 * proved knowledge of a shared secret: its packets to them are dropped.
 * The proof is a hash-based challenge-response (HMAC-SHA256), not a
 * zero-knowledge proof in the cryptographic sense; see docs/zkp_filter.md.
 *
 *   HELLO  -> XDP answers with a stateless CHALLENGE (challenge.bpf.h),
 *             bound to the source address, the slot and the client's nonce
 *   PROOF  -> XDP recomputes the challenge, checks the proof with the
 *             verifier of key_id, records the challenge as used, authorizes
 *             the source for auth_ttl_s and answers ACCEPT
 *
 * The server holds the verifier (HMAC-SHA256(secret, "cryptbpf zkp v1")) as
 * precomputed HMAC pad states in zkp_keys, never the secret. Wire format and
 * counters: include/zkp_filter.h. */
#include "cryptbpf.bpf.h"
#include "challenge.bpf.h"
#include "frame_classify.bpf.h"
#include "xdp_reply.bpf.h"
#include "zkp_filter.h"

char LICENSE[] SEC("license") = "GPL";

_Static_assert(sizeof(struct zkp_msg) == 100, "zkp_msg is a wire format");

/* UDP port of the control messages (host byte order). */
const volatile __u16 control_port = 7227;
/* Challenge lifetime unit: a challenge is valid 1..2 slots. */
const volatile __u32 slot_s = 30;
/* How long a valid proof authorizes its source. */
const volatile __u32 auth_ttl_s = 300;

#define NS_PER_S 1000000000ULL
#ifndef ENOENT
#define ENOENT 2
#endif
#ifndef ENOMEM
#define ENOMEM 12
#endif

static const char zkp_label[CHALLENGE_LABEL_LEN] = "cbzkp v1";

CHALLENGE_KEY_MAP(zkp_server_key);

/* key_id -> pad states of that key's verifier */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZKP_MAX_KEYS);
	__type(key, __u32);
	__type(value, struct challenge_key);
} zkp_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZKP_MAX_KEYS);
	__type(key, __u32);
	__type(value, struct zkp_key_counters);
} per_id_counters SEC(".maps");

/* port (host byte order) -> 1 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZKP_MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} protected_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ZKP_MAX_AUTHORIZED);
	__type(key, __be32);
	__type(value, struct zkp_auth);
} authorized SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ZKP_MAX_USED);
	__type(key, __u8[ZKP_MAC_LEN]);
	__type(value, struct zkp_used);
} used_challenges SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct zkp_filter_stats);
} stats SEC(".maps");

/* The proof's MAC input: challenge || addr || key_id (40 bytes). */
struct zkp_proof_input {
	__u8 challenge[ZKP_MAC_LEN];
	__be32 addr;
	__be32 key_id;
} __attribute__((aligned(8)));
_Static_assert(sizeof(struct zkp_proof_input) == 40, "hmac_sha256_short takes whole words");

struct zkp_scratch {
	struct challenge_scratch cs;
	struct zkp_msg msg;                /* the request, then the reply */
	struct zkp_proof_input proof_in;
	struct challenge_key verifier;     /* install_key: the value to store */
	__u8 raw[64];                      /* install_key: the raw key */
	struct frame_info fi;              /* the frame, classified */
};
CRYPTBPF_PERCPU_SCRATCH(zkp_scratch, struct zkp_scratch);

#define COUNT(field)                                                          \
	({                                                                    \
		__u32 _z = 0;                                                 \
		struct zkp_filter_stats *_s = bpf_map_lookup_elem(&stats, &_z); \
		if (_s)                                                       \
			_s->field++;                                          \
	})

enum key_event { KEY_ACCEPTED, KEY_BAD_PROOF, KEY_REPLAYED };

/* Per-key counters are shared by all CPUs: atomic adds. */
static __always_inline void count_key(__u32 key_id, enum key_event what)
{
	struct zkp_key_counters *c = bpf_map_lookup_elem(&per_id_counters, &key_id);

	if (!c)
		return;
	if (what == KEY_ACCEPTED)
		__sync_fetch_and_add(&c->accepted, 1);
	else if (what == KEY_BAD_PROOF)
		__sync_fetch_and_add(&c->bad_proof, 1);
	else
		__sync_fetch_and_add(&c->replayed, 1);
}

static __always_inline __u32 now_slot(void)
{
	return challenge_slot((__u64)slot_s * NS_PER_S);
}

/* HELLO -> CHALLENGE, in s->msg. */
static __noinline int on_hello(struct xdp_md *ctx, struct zkp_scratch *s,
				    const struct xdp_udp4 *u)
{
	const struct challenge_key *key = challenge_key_get(&zkp_server_key);
	struct zkp_msg *m = &s->msg;
	__u32 slot = now_slot();

	if (!key) {
		COUNT(no_key);
		return XDP_DROP;
	}
	challenge_input_set(&s->cs.in, zkp_label, u->saddr, 0, slot, 0);
	copy_words(s->cs.in.nonce, m->client_nonce, ZKP_NONCE_LEN);
	challenge_compute(&s->cs, key, m->challenge);
	m->type = ZKP_CHALLENGE;
	m->key_id = 0;
	m->slot = bpf_htonl(slot);
	m->lifetime_s = 0;
	__builtin_memset(m->proof, 0, sizeof(m->proof));
	if (xdp_udp4_reply(ctx, u, m, sizeof(*m))) {
		COUNT(errors);
		return XDP_DROP;
	}
	COUNT(hellos);
	return XDP_TX;
}

/* Is s->msg a valid proof from u->saddr? XDP_PASS means yes (the caller
 * authorizes), anything else is the verdict. */
static __always_inline int check_proof(struct zkp_scratch *s, const struct xdp_udp4 *u,
				       __u32 key_id)
{
	const struct challenge_key *key = challenge_key_get(&zkp_server_key);
	const struct challenge_key *verifier;
	struct zkp_msg *m = &s->msg;

	if (!key) {
		COUNT(no_key);
		return XDP_DROP;
	}
	verifier = bpf_map_lookup_elem(&zkp_keys, &key_id);
	if (!verifier || !verifier->installed) {
		COUNT(unknown_key);
		return XDP_DROP;
	}

	/* 1. the challenge is the one we would issue to this address now */
	challenge_input_set(&s->cs.in, zkp_label, u->saddr, 0, bpf_ntohl(m->slot), 0);
	copy_words(s->cs.in.nonce, m->client_nonce, ZKP_NONCE_LEN);
	copy_words(s->cs.presented, m->challenge, ZKP_MAC_LEN);
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

	/* 2. proof = HMAC(verifier, challenge || addr || key_id), constant time */
	copy_words(s->proof_in.challenge, m->challenge, ZKP_MAC_LEN);
	s->proof_in.addr = u->saddr;
	s->proof_in.key_id = m->key_id;
	copy_words(s->cs.presented, m->proof, ZKP_MAC_LEN);
	hmac_sha256_short(&s->cs.h.hash, &verifier->pads, &s->proof_in,
			  sizeof(s->proof_in), s->cs.mac);
	if (!ct_eq32(s->cs.mac, s->cs.presented)) {
		COUNT(bad_proof);
		count_key(key_id, KEY_BAD_PROOF);
		return XDP_DROP;
	}
	return XDP_PASS;
}

/* PROOF -> authorization + ACCEPT, in s->msg. */
static __noinline int on_proof(struct xdp_md *ctx, struct zkp_scratch *s,
				    const struct xdp_udp4 *u)
{
	struct zkp_msg *m = &s->msg;
	__u32 key_id = bpf_ntohl(m->key_id);
	struct zkp_used used = { .slot = bpf_ntohl(m->slot), .key_id = key_id };
	struct zkp_auth auth = { .key_id = key_id, .slot = used.slot };
	__be32 saddr = u->saddr;
	int verdict = check_proof(s, u, key_id);

	if (verdict != XDP_PASS)
		return verdict;
	/* 3. single use: only the first valid proof for a challenge counts
	 * (BPF_NOEXIST is atomic, so two copies racing on two CPUs cannot both
	 * win) */
	if (bpf_map_update_elem(&used_challenges, m->challenge, &used, BPF_NOEXIST)) {
		COUNT(replayed);
		count_key(key_id, KEY_REPLAYED);
		return XDP_DROP;
	}
	auth.expires_ns = bpf_ktime_get_boot_ns() + (__u64)auth_ttl_s * NS_PER_S;
	if (bpf_map_update_elem(&authorized, &saddr, &auth, BPF_ANY)) {
		COUNT(errors);
		return XDP_DROP;
	}
	/* Revocation deletes the key, then the authorizations it granted; a
	 * proof checked just before the delete must not leave one behind. */
	if (!bpf_map_lookup_elem(&zkp_keys, &key_id)) {
		bpf_map_delete_elem(&authorized, &saddr);
		COUNT(unknown_key);
		return XDP_DROP;
	}
	COUNT(accepted);
	count_key(key_id, KEY_ACCEPTED);

	m->type = ZKP_ACCEPT;
	m->lifetime_s = bpf_htonl(auth_ttl_s);
	__builtin_memset(m->proof, 0, sizeof(m->proof));
	if (xdp_udp4_reply(ctx, u, m, sizeof(*m))) {
		COUNT(errors);
		return XDP_DROP;   /* authorized all the same */
	}
	return XDP_TX;
}

/* A datagram to the control port: exactly one zkp_msg, or dropped. Its own
 * frame (noinline): the reply helpers and the filter path together would not
 * fit in one 512-byte stack frame. */
static __noinline int on_control(struct xdp_md *ctx, int family)
{
	struct zkp_scratch *s = cryptbpf_scratch(&zkp_scratch);
	struct xdp_udp4 u;

	if (!s)
		return XDP_DROP;
	if (xdp_udp4_from_frame(family, &s->fi, &u) || u.payload_len != sizeof(struct zkp_msg) ||
	    bpf_xdp_load_bytes(ctx, u.payload_off, &s->msg, sizeof(s->msg)) ||
	    s->msg.magic != bpf_htonl(ZKP_MAGIC) || s->msg.version != ZKP_VERSION ||
	    s->msg.reserved) {
		COUNT(malformed);
		return XDP_DROP;
	}
	if (s->msg.type == ZKP_HELLO)
		return on_hello(ctx, s, &u);
	if (s->msg.type == ZKP_PROOF)
		return on_proof(ctx, s, &u);
	COUNT(malformed);
	return XDP_DROP;
}

/* Protected port: only authorized IPv4 sources, until their time is up. */
static __always_inline int on_protected(__be32 saddr, int family)
{
	struct zkp_auth *a;

	if (family == FRAME_IPV4) {
		a = bpf_map_lookup_elem(&authorized, &saddr);
		if (a && a->expires_ns > bpf_ktime_get_boot_ns()) {
			COUNT(passed);
			return XDP_PASS;
		}
		if (a)
			COUNT(expired);
	}
	/* IPv6 sources cannot authorize (yet): fail closed */
	COUNT(dropped);
	return XDP_DROP;
}

/* An ICMP error is handed to the socket of the flow it quotes: one from a
 * protected port of ours to a remote end that is not authorized cannot
 * belong to a flow we let in (it is forged or stale), and could reset or
 * slow down the flows of those that are. Errors about authorized flows
 * pass, whoever sends them (a router on the path, for "fragmentation
 * needed"). Quotes we cannot read are ignored by the kernel too. */
static __always_inline int on_icmp_error(const struct frame_info *fi, int family)
{
	struct zkp_auth *a;
	__be32 peer = fi->quoted_peer;
	__u16 port = fi->quoted_port;

	if ((fi->quoted_proto != FRAME_IPPROTO_TCP && fi->quoted_proto != FRAME_IPPROTO_UDP) ||
	    !bpf_map_lookup_elem(&protected_ports, &port))
		return XDP_PASS;
	if (family == FRAME_IPV4) {
		a = bpf_map_lookup_elem(&authorized, &peer);
		if (a && a->expires_ns > bpf_ktime_get_boot_ns())
			return XDP_PASS;
	}
	COUNT(icmp_error);
	return XDP_DROP;
}

SEC("xdp")
int zkp_filter(struct xdp_md *ctx)
{
	struct zkp_scratch *s = cryptbpf_scratch(&zkp_scratch);
	struct frame_info *fi;
	__u16 port;
	int family;

	if (!s)
		return XDP_DROP;
	fi = &s->fi;
	family = frame_classify_xdp(ctx, fi);
	if (family < 0) {
		/* cannot tell the port, or the kernel would drop it: a
		 * protected port could hide in it */
		COUNT(bad_l4);
		return XDP_DROP;
	}
	if (family == FRAME_NOT_IP)
		return XDP_PASS;
	if (fi->flags & FRAME_F_ICMP_ERR)
		return on_icmp_error(fi, family);
	/* not TCP/UDP, or a later fragment: no port (a fragmented datagram to
	 * a protected port lost its first fragment here and never completes) */
	if (!(fi->flags & FRAME_F_PORTS))
		return XDP_PASS;
	port = fi->dport;
	if (family == FRAME_IPV4 && fi->proto == IPPROTO_UDP_ && port == control_port)
		return on_control(ctx, family);
	if (!bpf_map_lookup_elem(&protected_ports, &port))
		return XDP_PASS;
	return on_protected(fi->saddr, family);
}

/* Keys from userspace (BPF_PROG_TEST_RUN with ctx = struct zkp_key_setup):
 * the server's challenge key, or a key id's verifier. Only the HMAC pad
 * states are stored; the raw bytes are wiped from the scratch. */
SEC("syscall")
int install_key(struct zkp_key_setup *args)
{
	struct zkp_scratch *s = cryptbpf_scratch(&zkp_scratch);
	struct zkp_key_counters zero = {};
	__u32 slot0 = 0, len = args->len;
	__u32 key_id = args->key_id;
	void *dst;
	int err;

	if (!s)
		return args->err = -ENOMEM;
	if (len < 16 || len > sizeof(s->raw) ||
	    (args->which == ZKP_SLOT_VERIFIER && len != ZKP_VERIFIER_LEN))
		return args->err = -EINVAL;
	/* Already checked, but clang clamps a 32-bit copy of len, and 6.1's
	 * verifier does not carry the compare's bound to the copy passed to
	 * hmac_sha256_init(); CRYPTBPF_CLAMP keeps both in one register. */
	CRYPTBPF_CLAMP(len, sizeof(s->raw));
	__builtin_memcpy(s->raw, args->key, sizeof(s->raw));
	__builtin_memset(&s->verifier, 0, sizeof(s->verifier));
	err = challenge_key_install(&s->cs.h, s->raw, len, &s->verifier);
	__builtin_memset(s->raw, 0, sizeof(s->raw));
	if (err)
		return args->err = err;
	if (args->which == ZKP_SLOT_SERVER) {
		dst = bpf_map_lookup_elem(&zkp_server_key, &slot0);
		if (!dst)
			return args->err = -ENOENT;
		__builtin_memcpy(dst, &s->verifier, sizeof(s->verifier));
	} else if (args->which == ZKP_SLOT_VERIFIER) {
		err = bpf_map_update_elem(&zkp_keys, &key_id, &s->verifier, BPF_ANY);
		if (err)
			return args->err = err;
		/* a replaced key keeps its counters */
		bpf_map_update_elem(&per_id_counters, &key_id, &zero, BPF_NOEXIST);
	} else {
		return args->err = -EINVAL;
	}
	__builtin_memset(&s->verifier, 0, sizeof(s->verifier));
	return args->err = 0;
}
