// SPDX-License-Identifier: GPL-2.0
/* zkp_filter: challenge-response access control at XDP.
 *
 * Protected ports (TCP and UDP) are invisible to a source until it has
 * proved knowledge of a key: its packets to them are dropped. Each key id
 * has one of two modes (see docs/zkp_filter.md):
 *
 *   HMAC     a hash-based proof of knowledge of a shared secret (not zero-
 *            knowledge); the server holds the verifier HMAC-SHA256(secret,
 *            "cryptbpf zkp v1") as precomputed pad states in zkp_keys, which
 *            is enough to produce proofs: a stolen map opens the port
 *   SCHNORR  a non-interactive Schnorr proof of knowledge of the private key
 *            of a P-256 public key (RFC 8235 section 3, Fiat-Shamir); the
 *            server holds only the public key (zkp_zk_keys, and its table in
 *            p256_keys), from which no accepted proof can be made
 *
 *   HELLO    -> XDP answers with a stateless CHALLENGE (challenge.bpf.h),
 *               bound to the source address, the slot and the client's nonce
 *   PROOF    -> (HMAC key) XDP recomputes the challenge, checks the proof
 *               with the verifier of key_id
 *   ZK_PROOF -> (Schnorr key) cheapest first: key id known, challenge ours
 *               and unused, 1 <= r < n, the key's and the global
 *               verification budget; then V on the curve, c = SHA-256 of
 *               the input in zkp_filter.h, V == r*G + c*A
 *   either   -> the challenge is recorded as used, the source authorized
 *               for auth_ttl_s, the answer is ACCEPT
 *
 * Wire format, hash input and counters: include/zkp_filter.h. */
#include "cryptbpf.bpf.h"
#include "challenge.bpf.h"
/* Schnorr proofs have no kernel kfunc: the pure-BPF path only, which also
 * keeps struct bpf_crypto_ctx (6.10+) out of this object. */
#define P256_NO_KFUNC
#define P256_MAX_KEYS ZKP_MAX_ZK_KEYS
#include "zkp_filter.h"
#include "schnorr_p256.bpf.h"
#include "sha256.bpf.h"
#include "gcra.bpf.h"
#include "frame_classify.bpf.h"
#include "xdp_reply.bpf.h"

char LICENSE[] SEC("license") = "GPL";

_Static_assert(sizeof(struct zkp_msg) == 100, "zkp_msg is a wire format");
_Static_assert(sizeof(struct zkp_zk_proof) == 164, "zkp_zk_proof is a wire format");
_Static_assert(__builtin_offsetof(struct zkp_zk_proof, v) == 68, "zkp_zk_proof starts as a zkp_msg");
_Static_assert(sizeof(struct zkp_zk_hash_input) == 297, "the hash input of zkp_filter.h");
_Static_assert(sizeof(struct zkp_zk_hash_input) - __builtin_offsetof(struct zkp_zk_hash_input, label_len) ==
	       ZKP_OTHER_INFO_LEN, "OtherInfo length");

/* UDP port of the control messages (host byte order). */
const volatile __u16 control_port = 7227;
/* Challenge lifetime unit: a challenge is valid 1..2 slots. */
const volatile __u32 slot_s = 30;
/* How long a valid proof authorizes its source. */
const volatile __u32 auth_ttl_s = 300;
/* Global Schnorr verification budget: at most global_rate verifications per
 * second on average, global_burst back to back (all keys together). */
const volatile __u32 global_rate = 4000;
const volatile __u32 global_burst = 200;

#define NS_PER_S 1000000000ULL
#ifndef ENOENT
#define ENOENT 2
#endif
#ifndef ENOMEM
#define ENOMEM 12
#endif

static const char zkp_label[CHALLENGE_LABEL_LEN] = "cbzkp v1";

#define SEC1_UNCOMPRESSED 0x04
#define BE32(x) { 0, 0, 0, x }

/* The constant parts of the Schnorr hash input (zkp_filter.h); the rest is
 * filled per proof. */
static const struct zkp_zk_hash_input zk_hash_template __attribute__((aligned(8))) = {
	.g_len = BE32(ZKP_POINT_LEN),
	.g = { SEC1_UNCOMPRESSED,
	       0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40, 0xf2,
	       0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2, 0x96,
	       0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e, 0x16,
	       0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5 },
	.v_len = BE32(ZKP_POINT_LEN),
	.v = { SEC1_UNCOMPRESSED },
	.a_len = BE32(ZKP_POINT_LEN),
	.user_id_len = BE32(4),
	.other_info_len = BE32(ZKP_OTHER_INFO_LEN),
	.label_len = BE32(ZKP_SCHNORR_LABEL_LEN),
	.label = "cbzkp schnorr v1",
	.challenge_len = BE32(ZKP_MAC_LEN),
	.client_addr_len = BE32(4),
	.server_addr_len = BE32(4),
	.service_len = BE32(2),
};

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

struct zkp_zk_key_value {
	struct bpf_spin_lock lock;
	__u32 _pad;
	struct zkp_zk_key k;
};
_Static_assert(__builtin_offsetof(struct zkp_zk_key_value, k) == ZKP_ZK_KEY_LOCK_BYTES,
	       "zkp_zk_keys layout is part of the shared header");

/* key_id -> Schnorr public key and its budget (the table: p256_keys) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZKP_MAX_ZK_KEYS);
	__type(key, __u32);
	__type(value, struct zkp_zk_key_value);
} zkp_zk_keys SEC(".maps");

struct zkp_budget_value {
	struct bpf_spin_lock lock;
	__u32 _pad;
	struct zkp_budget b;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct zkp_budget_value);
} zkp_budget SEC(".maps");

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
	struct zkp_msg msg;                /* the request (ZK_PROOF: its first
	                                    * 100 bytes, proof zeroed), then the reply */
	struct zkp_zk_proof zk;            /* a ZK_PROOF request */
	struct zkp_zk_hash_input hin __attribute__((aligned(8)));
	__u8 c[SHA256_DIGEST_SIZE] __attribute__((aligned(8)));
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

enum key_event { KEY_ACCEPTED, KEY_BAD_PROOF, KEY_REPLAYED, KEY_OVER_BUDGET };

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
	else if (what == KEY_REPLAYED)
		__sync_fetch_and_add(&c->replayed, 1);
	else
		__sync_fetch_and_add(&c->over_budget, 1);
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

/* Is s->msg's challenge the one we would issue to u->saddr now (this slot
 * or the previous one)? XDP_PASS means yes, anything else is the verdict. */
static __always_inline int check_challenge(struct zkp_scratch *s, const struct xdp_udp4 *u,
					   const struct challenge_key *key)
{
	struct zkp_msg *m = &s->msg;

	challenge_input_set(&s->cs.in, zkp_label, u->saddr, 0, bpf_ntohl(m->slot), 0);
	copy_words(s->cs.in.nonce, m->client_nonce, ZKP_NONCE_LEN);
	copy_words(s->cs.presented, m->challenge, ZKP_MAC_LEN);
	switch (challenge_check(&s->cs, key, now_slot())) {
	case CHALLENGE_OK:
		return XDP_PASS;
	case CHALLENGE_STALE:
		COUNT(stale);
		return XDP_DROP;
	default:
		COUNT(bad_challenge);
		return XDP_DROP;
	}
}

/* Is s->msg a valid HMAC proof from u->saddr? XDP_PASS means yes (the
 * caller authorizes), anything else is the verdict. */
static __always_inline int check_proof(struct zkp_scratch *s, const struct xdp_udp4 *u,
				       __u32 key_id)
{
	const struct challenge_key *key = challenge_key_get(&zkp_server_key);
	const struct challenge_key *verifier;
	struct zkp_msg *m = &s->msg;
	int verdict;

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
	verdict = check_challenge(s, u, key);
	if (verdict != XDP_PASS)
		return verdict;

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

/* A verified proof for s->msg's challenge: authorization + ACCEPT, in
 * s->msg. key_map: where key_id must still be (zkp_keys or zkp_zk_keys). */
static __always_inline int grant(struct xdp_md *ctx, struct zkp_scratch *s,
				 const struct xdp_udp4 *u, __u32 key_id, void *key_map)
{
	struct zkp_msg *m = &s->msg;
	struct zkp_used used = { .slot = bpf_ntohl(m->slot), .key_id = key_id };
	struct zkp_auth auth = { .key_id = key_id, .slot = used.slot };
	__be32 saddr = u->saddr;

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
	if (!bpf_map_lookup_elem(key_map, &key_id)) {
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

/* PROOF (HMAC key) -> authorization + ACCEPT, in s->msg. */
static __noinline int on_proof(struct xdp_md *ctx, struct zkp_scratch *s,
			       const struct xdp_udp4 *u)
{
	__u32 key_id = bpf_ntohl(s->msg.key_id);
	int verdict = check_proof(s, u, key_id);

	if (verdict != XDP_PASS)
		return verdict;
	return grant(ctx, s, u, key_id, &zkp_keys);
}

/* ---- Schnorr proofs ---- */

static __always_inline int zk_key_budget_take(struct zkp_zk_key_value *k, __u64 now)
{
	int ok;

	bpf_spin_lock(&k->lock);
	ok = gcra_take(&k->k.tat_ns, now, k->k.interval_ns, k->k.burst);
	bpf_spin_unlock(&k->lock);
	return ok;
}

static __always_inline int zk_global_budget_take(__u64 now)
{
	__u32 zero = 0;
	struct zkp_budget_value *b = bpf_map_lookup_elem(&zkp_budget, &zero);
	__u32 rate = global_rate;
	int ok;

	if (!b || !rate)
		return 0;
	bpf_spin_lock(&b->lock);
	ok = gcra_take(&b->b.tat_ns, now, NS_PER_S / rate, global_burst);
	bpf_spin_unlock(&b->lock);
	return ok;
}

/* c = SHA-256(G || V || A || UserID || OtherInfo) into s->c, the input
 * (zkp_filter.h) built in s->hin. */
static __always_inline int zk_challenge_hash(struct zkp_scratch *s, const struct zkp_zk_key *k,
					     const struct xdp_udp4 *u)
{
	struct zkp_zk_hash_input *h = &s->hin;
	__be16 service = bpf_htons(control_port);

	__builtin_memcpy(h, &zk_hash_template, sizeof(*h));
	__builtin_memcpy(h->v + 1, s->zk.v, sizeof(s->zk.v));
	__builtin_memcpy(h->a, k->point, ZKP_POINT_LEN);
	__builtin_memcpy(h->user_id, &s->zk.key_id, 4);
	__builtin_memcpy(h->challenge, s->zk.challenge, ZKP_MAC_LEN);
	__builtin_memcpy(h->client_addr, &u->saddr, 4);
	__builtin_memcpy(h->server_addr, &u->daddr, 4);
	__builtin_memcpy(h->service, &service, 2);
	sha256_init(&s->cs.h.hash);
	if (sha256_update(&s->cs.h.hash, h, sizeof(*h)) || sha256_final(&s->cs.h.hash, s->c))
		return -1;
	return 0;
}

/* ZK_PROOF (Schnorr key), in s->zk and (its zkp_msg part) s->msg ->
 * authorization + ACCEPT. */
static __noinline int on_zk_proof(struct xdp_md *ctx, struct zkp_scratch *s,
				  const struct xdp_udp4 *u)
{
	const struct challenge_key *skey = challenge_key_get(&zkp_server_key);
	__u32 key_id = bpf_ntohl(s->msg.key_id);
	const struct p256_key_table *kt;
	struct zkp_zk_key_value *k;
	__u64 now;
	int ret;

	if (!skey) {
		COUNT(no_key);
		return XDP_DROP;
	}
	/* 1. cheap checks: a Schnorr key, our challenge, not yet answered, r
	 * in range (a replay is caught again, atomically, in grant()) */
	k = bpf_map_lookup_elem(&zkp_zk_keys, &key_id);
	kt = bpf_map_lookup_elem(&p256_keys, &key_id);
	if (!k || !kt) {
		COUNT(unknown_key);
		return XDP_DROP;
	}
	ret = check_challenge(s, u, skey);
	if (ret != XDP_PASS)
		return ret;
	if (bpf_map_lookup_elem(&used_challenges, s->msg.challenge)) {
		COUNT(replayed);
		count_key(key_id, KEY_REPLAYED);
		return XDP_DROP;
	}
	if (!schnorr_p256_r_ok(s->zk.r)) {
		COUNT(bad_scalar);
		count_key(key_id, KEY_BAD_PROOF);
		return XDP_DROP;
	}
	/* 2. the budgets, before any curve math */
	now = bpf_ktime_get_ns();
	if (!zk_key_budget_take(k, now)) {
		COUNT(over_key_budget);
		count_key(key_id, KEY_OVER_BUDGET);
		return XDP_DROP;
	}
	if (!zk_global_budget_take(now)) {
		COUNT(over_global_budget);
		return XDP_DROP;
	}
	/* 3. c from the hash, then V == r*G + c*A (V on the curve first) */
	if (zk_challenge_hash(s, &k->k, u)) {
		COUNT(errors);
		return XDP_DROP;
	}
	COUNT(verifications);
	ret = schnorr_p256_verify_table(kt, s->hin.v, s->zk.r, s->c);
	if (ret != P256_VERIFY_OK) {
		if (ret == SCHNORR_P256_BAD_POINT)
			COUNT(bad_point);
		else if (ret == SCHNORR_P256_BAD_SCALAR)
			COUNT(bad_scalar);
		else if (ret == P256_VERIFY_BAD)
			COUNT(bad_proof);
		else
			COUNT(errors);
		count_key(key_id, KEY_BAD_PROOF);
		return XDP_DROP;
	}
	return grant(ctx, s, u, key_id, &zkp_zk_keys);
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
	if (xdp_udp4_from_frame(family, &s->fi, &u)) {
		COUNT(malformed);
		return XDP_DROP;
	}
	if (u.payload_len == sizeof(struct zkp_zk_proof)) {
		/* a Schnorr proof: its first 68 bytes are a zkp_msg's */
		if (bpf_xdp_load_bytes(ctx, u.payload_off, &s->zk, sizeof(s->zk)) ||
		    s->zk.magic != bpf_htonl(ZKP_MAGIC) || s->zk.version != ZKP_VERSION ||
		    s->zk.reserved || s->zk.type != ZKP_ZK_PROOF || s->zk.lifetime_s) {
			COUNT(malformed);
			return XDP_DROP;
		}
		copy_words(&s->msg, &s->zk, __builtin_offsetof(struct zkp_zk_proof, v));
		__builtin_memset(s->msg.proof, 0, sizeof(s->msg.proof));
		return on_zk_proof(ctx, s, &u);
	}
	if (u.payload_len != sizeof(struct zkp_msg) ||
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
