// SPDX-License-Identifier: GPL-2.0
/* encrypted_tunnel: authenticated, replay-protected IPv4 host-to-host
 * encryption in TC, with early drops in XDP.
 *
 *   tunnel_egress  (TC egress)   packets to a peer -> tail call to the
 *                                peer suite's seal program
 *   tunnel_ingress (TC ingress)  tunnel packets from a peer -> tail call
 *                                to the open program; clear from a peer: drop
 *   tunnel_xdp     (XDP)         drops what is cheap to reject
 *   tunnel_{seal,open}_{chacha,cbc}  the suites, one verifier budget each
 *   tunnel_aes_setup, tunnel_mac_setup (SYSCALL)  key installation
 *
 * Wire format and map layout: include/encrypted_tunnel.h. Anything that
 * cannot be protected is dropped and counted, never sent in clear.
 *
 * Which frames are the peer's: all three hooks classify with
 * frame_classify.bpf.h (VLAN tags of any id up to its bound, the IPv4
 * header as the kernel checks it), so a peer's address is found behind any
 * tags the kernel would strip. The seal and open programs work on an IPv4
 * header at a fixed offset (TUNNEL_L3_OFF): a tunnel packet to or from a
 * peer is handled only when TC sees it untagged, which is the case for
 * untagged frames and for one VLAN id 0 tag (moved to skb->vlan_tci before
 * TC ingress; kept there on egress). Any other tagging of a peer's traffic
 * (tags left in the frame, a VLAN id other than 0: a VLAN sub-interface on
 * top of this device) is dropped and counted (`tagged`), in both
 * directions: never sent in clear, never opened for a stack that may not
 * get it. Cleartext from a peer is dropped behind any tags. */
#include "cryptbpf.bpf.h"
#include "kfuncs.bpf.h"
#include "aes_cbc.bpf.h"
#include "hmac.bpf.h"
#include "chacha20_poly1305.bpf.h"
#include "encrypted_tunnel.h"
#include "tunnel_pkt.bpf.h"
#include "tunnel_replay.bpf.h"
#include "frame_classify.bpf.h"

char LICENSE[] SEC("license") = "GPL";

_Static_assert(sizeof(struct tunnel_hdr) == TUNNEL_HDR_LEN, "tunnel_hdr");
_Static_assert(sizeof(struct tunnel_aad) == TUNNEL_AAD_LEN, "tunnel_aad");
_Static_assert(TUNNEL_MAX_PEERS * TUNNEL_AES_PER_PEER == TUNNEL_AES_CTXS, "aes table");

/* Result of the last SYSCALL setup run, for status and tests. */
__s32 setup_status = -ENOENT;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TUNNEL_MAX_PEERS);
	__type(key, __be32);
	__type(value, struct tunnel_peer);
} peers SEC(".maps");

/* No preallocation: a replaced element stays valid for CPUs still using it
 * (RCU) instead of being recycled at once, see struct tunnel_tx_key. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TUNNEL_MAX_PEERS * 2);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tunnel_slot_key);
	__type(value, struct tunnel_tx_key);
} tx_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TUNNEL_MAX_PEERS * 2);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tunnel_slot_key);
	__type(value, struct tunnel_rx_slot);
} rx_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TUNNEL_STATS_ROWS);
	__type(key, __u32);
	__type(value, struct tunnel_stats);
} stats SEC(".maps");

/* cbc(aes) and ecb(aes) contexts, TUNNEL_AES_PER_PEER per peer index. */
AES_CTX_MAP(aes_keys, TUNNEL_AES_CTXS);

struct tunnel_scratch {
	struct chacha20_poly1305_ctx aead;
	struct cryptbpf_hmac_sha256_ctx hmac;
	union {				/* the AEAD reads AAD_MAX bytes */
		struct tunnel_aad aad;
		__u8 aad_buf[CHACHA20_POLY1305_AAD_MAX];
	};
	__u8 csum[PKT_CSUM_BUF];
	__u8 iv[AES_BLOCK_SIZE];		/* clobbered by bpf_crypto */
	__u8 ivblk[AES_BLOCK_SIZE];
	__u8 last[AES_BLOCK_SIZE];
	__u8 mac[HMAC_SHA256_SIZE];
	__u8 key[TUNNEL_KEY_LEN];
	__u8 nonce[CHACHA20_NONCE_SIZE];
	__u16 rx_fix;				/* open: csum_fix as received */
	__u16 rx_c[2];				/* open: the bytes at region offsets 6, 16 */
	__u32 rx_sum;				/* open: folded sum of the region */
	struct bpf_crypto_params params;
};
/* "key" in the name: `cryptbpf map` never dumps it (the AEAD and HMAC
 * states hold key material after a packet) */
CRYPTBPF_PERCPU_SCRATCH(key_scratch, struct tunnel_scratch);

static __always_inline struct tunnel_stats *stats_row(__u32 row)
{
	return bpf_map_lookup_elem(&stats, &row);
}

#define COUNT CRYPTBPF_COUNT

/* ---------------------------------------------------------------- SYSCALL */

SEC("syscall")
int tunnel_aes_setup(struct aes_key_setup *args)
{
	struct tunnel_scratch *s = cryptbpf_scratch(&key_scratch);

	if (!s)
		return 0;
	if (!aes_cbc_available()) {
		args->err = -EOPNOTSUPP;
		return 0;
	}
	args->err = aes_ctx_install(&aes_keys, args, &s->params);
	setup_status = args->err;
	return 0;
}

/* HMAC-SHA256 key -> the two pad states tx_keys/rx_keys hold, so packets
 * pay no key setup. The key passes through scratch and is wiped. */
SEC("syscall")
int tunnel_mac_setup(struct tunnel_mac_setup *args)
{
	struct tunnel_scratch *s = cryptbpf_scratch(&key_scratch);

	if (!s)
		return 0;
	__builtin_memcpy(s->key, args->key, TUNNEL_KEY_LEN);
	args->err = hmac_sha256_init(&s->hmac, s->key, TUNNEL_KEY_LEN);
	__builtin_memcpy(args->istate, s->hmac.key.istate, sizeof(args->istate));
	__builtin_memcpy(args->ostate, s->hmac.key.ostate, sizeof(args->ostate));
	__builtin_memset(s->key, 0, sizeof(s->key));
	__builtin_memset(&s->hmac, 0, sizeof(s->hmac));
	setup_status = args->err;
	return 0;
}

/* ---------------------------------------------------------------- seal */

/* Lives on the caller's stack (it holds map pointers, which cannot be
 * stored in map memory); kept small: the caller's frame plus the AEAD's
 * deepest call chain must fit in 512 bytes. */
struct seal_ctx {
	struct tunnel_stats *st;
	struct tunnel_tx_key *tx;
	__u32 index, slot;
	__u32 len;			/* original IP payload length */
	__u32 proto;			/* original IP protocol */
};

/* Checks, counter, inner checksum, then the new header in front: IPv4
 * (protocol TUNNEL_IPPROTO, total length + grow) and tunnel_hdr; the tail
 * grows by grow - TUNNEL_HDR_LEN and next_proto is written after the
 * payload. s->aad is filled. Returns TC_ACT_OK to go on, or a verdict. */
static __noinline int seal_begin(struct __sk_buff *skb, struct seal_ctx *c,
				      struct tunnel_scratch *s, __u8 suite, __u32 grow)
{
	struct tunnel_aad *aad = &s->aad;
	struct tunnel_partial p;
	struct tunnel_peer *peer;
	struct tunnel_slot_key k;
	__u32 tot, mtu = 0;
	struct iphdr ip;
	__u64 ctr;

	if (bpf_skb_load_bytes(skb, TUNNEL_L3_OFF, &ip, sizeof(ip)))
		return TC_ACT_SHOT;
	peer = bpf_map_lookup_elem(&peers, &ip.daddr);
	if (!peer)
		return TC_ACT_SHOT;	/* removed since the dispatcher looked */
	c->index = peer->index;
	c->slot = peer->tx_slot & 1;
	c->st = stats_row(c->index);
	if (ip.ihl != 5 || skb->gso_size) {
		COUNT(c->st, unsupported);
		return TC_ACT_SHOT;
	}
	tot = bpf_ntohs(ip.tot_len);
	if (ip.version != 4 || tot < TUNNEL_IP_HLEN || tot + TUNNEL_L3_OFF != skb->len) {
		COUNT(c->st, malformed);
		return TC_ACT_SHOT;
	}
	c->len = tot - TUNNEL_IP_HLEN;
	c->proto = ip.protocol;
	if (bpf_check_mtu(skb, 0, &mtu, grow, 0)) {
		COUNT(c->st, too_big);
		return TC_ACT_SHOT;
	}
	k.peer = ip.daddr;
	k.slot = c->slot;
	c->tx = bpf_map_lookup_elem(&tx_keys, &k);
	if (!c->tx) {
		COUNT(c->st, no_key);
		return TC_ACT_SHOT;
	}
	ctr = __sync_fetch_and_add(&c->tx->counter, 1);
	if (ctr >= TUNNEL_COUNTER_LIMIT) {
		COUNT(c->st, counter_exhausted);
		return TC_ACT_SHOT;
	}

	switch (tunnel_get_partial(skb, &p)) {
	case TUNNEL_CSUM_PARTIAL: {
		__u32 off = tunnel_l4_csum_off(c->proto, c->len);

		if (!off || p.start != TUNNEL_HDR_OFF || p.field != TUNNEL_HDR_OFF + off) {
			COUNT(c->st, unsupported);
			return TC_ACT_SHOT;
		}
		if (tunnel_finish_inner_csum(skb, s->csum, &p, TUNNEL_HDR_OFF + c->len))
			goto err;
		break;
	}
	case TUNNEL_CSUM_UNKNOWN:
		if (tunnel_recompute_l4_csum(skb, s->csum, &ip, c->len))
			goto err;
		break;
	}

	aad->saddr = ip.saddr;
	aad->daddr = ip.daddr;
	aad->ip_id = ip.id;
	aad->frag_off = ip.frag_off;
	aad->hdr.version = TUNNEL_VERSION;
	aad->hdr.suite = suite;
	aad->hdr.key_id = c->tx->key_id;
	aad->hdr.flags = 0;
	aad->hdr.counter_hi = bpf_htonl(ctr >> 32);
	aad->hdr.counter_lo = bpf_htonl((__u32)ctr);

	/* Room after the Ethernet header, then the IPv4 header in front of
	 * it: bytes from offset 14 on keep their place in memory, so the
	 * payload (and a deferred checksum's csum_start) stay put. */
	if (bpf_skb_adjust_room(skb, TUNNEL_HDR_LEN, BPF_ADJ_ROOM_MAC, 0) ||
	    tunnel_store_ip(skb, &ip, TUNNEL_IPPROTO, tot + grow) ||
	    bpf_skb_store_bytes(skb, TUNNEL_HDR_OFF, &aad->hdr, TUNNEL_HDR_LEN, 0) ||
	    bpf_skb_change_tail(skb, TUNNEL_L3_OFF + tot + grow, 0) ||
	    bpf_skb_store_bytes(skb, TUNNEL_DATA_OFF + c->len, &ip.protocol, 1, 0))
		goto err;
	return TC_ACT_OK;
err:
	COUNT(c->st, errors);
	return TC_ACT_SHOT;
}

/* csum_fix (TCP and UDP, whether or not the checksum was deferred: then
 * receivers can check it), counters. */
static __noinline int seal_finish(struct __sk_buff *skb, struct seal_ctx *c,
				       struct tunnel_scratch *s)
{
	__u32 off = tunnel_l4_csum_off(c->proto, c->len);

	if (off) {
		int r = tunnel_set_csum_fix(skb, s->csum, TUNNEL_DATA_OFF, TUNNEL_DATA_OFF + off,
					    skb->len);

		if (r) {
			if (r > 0)
				COUNT(c->st, csum_collision);
			else
				COUNT(c->st, errors);
			return TC_ACT_SHOT;
		}
	}
	if (c->st) {
		c->st->tx_packets++;
		c->st->tx_bytes += c->len;
	}
	return TC_ACT_OK;
}

/* nonce = 32 zero bits || 64-bit counter, big-endian, as in the header */
static __always_inline void tunnel_nonce(struct tunnel_scratch *s)
{
	const struct tunnel_hdr *h = &s->aad.hdr;

	__builtin_memset(s->nonce, 0, 4);
	__builtin_memcpy(s->nonce + 4, &h->counter_hi, 8);
}

SEC("tc")
int tunnel_seal_chacha(struct __sk_buff *skb)
{
	struct tunnel_scratch *s = cryptbpf_scratch(&key_scratch);
	struct seal_ctx c;
	int v;

	if (!s)
		return TC_ACT_SHOT;
	v = seal_begin(skb, &c, s, TUNNEL_SUITE_CHACHA20_POLY1305, TUNNEL_OVERHEAD_CHACHA);
	if (v != TC_ACT_OK)
		return v;
	tunnel_nonce(s);
	if (chacha20_poly1305_seal_skb(&s->aead, c.tx->key, s->nonce, s->aad_buf, TUNNEL_AAD_LEN,
				       skb, TUNNEL_DATA_OFF, TUNNEL_DATA_OFF, c.len + 1)) {
		COUNT(c.st, errors);
		return TC_ACT_SHOT;
	}
	return seal_finish(skb, &c, s);
}

/* One AES block of map memory in place with an ecb(aes) context. */
static __always_inline int tunnel_aes_block(struct bpf_crypto_ctx *ctx, __u8 *blk)
{
	struct bpf_dynptr d;

	if (bpf_dynptr_from_mem(blk, AES_BLOCK_SIZE, 0, &d))
		return -EINVAL;
	return bpf_crypto_encrypt(ctx, &d, &d, NULL);
}

/* CBC IV = AES-ECB(iv key, tunnel_hdr || 0^32): unpredictable without the
 * key, never repeats under it (the counter is in the block). Left in s->iv
 * (which bpf_crypto then clobbers). */
static __always_inline int tunnel_cbc_iv(struct bpf_crypto_ctx *ecb, struct tunnel_scratch *s)
{
	__builtin_memset(s->ivblk, 0, AES_BLOCK_SIZE);
	__builtin_memcpy(s->ivblk, &s->aad.hdr, TUNNEL_HDR_LEN);
	if (tunnel_aes_block(ecb, s->ivblk))
		return -1;
	__builtin_memcpy(s->iv, s->ivblk, AES_BLOCK_SIZE);
	return 0;
}

static __always_inline __u32 aes_index(__u32 peer, __u32 dir, __u32 slot, __u32 ecb)
{
	return peer * TUNNEL_AES_PER_PEER + dir * 4 + slot * 2 + ecb;
}

/* HMAC-SHA256(aad || sealed bytes at [TUNNEL_DATA_OFF, + len)) into s->mac. */
static __always_inline int tunnel_mac(struct __sk_buff *skb, struct tunnel_scratch *s,
				      const __u32 *istate, __u32 len)
{
	hmac_sha256_start(&s->hmac, (const struct cryptbpf_hmac_sha256_key *)istate);
	if (hmac_sha256_update(&s->hmac, s->aad_buf, TUNNEL_AAD_LEN) ||
	    hmac_sha256_update_skb(&s->hmac, skb, TUNNEL_DATA_OFF, len))
		return -1;
	return 0;
}

SEC("tc")
int tunnel_seal_cbc(struct __sk_buff *skb)
{
	struct tunnel_scratch *s = cryptbpf_scratch(&key_scratch);
	struct bpf_crypto_ctx *cbc, *ecb;
	struct seal_ctx c;
	__u8 pad[AES_BLOCK_SIZE];
	__u32 len, npad, sealed;
	__be16 tot;
	int v;

	if (!s)
		return TC_ACT_SHOT;
	if (!aes_cbc_available())	/* the control plane refuses such peers */
		return TC_ACT_SHOT;
	/* padding depends on the payload length: peek at it first */
	if (bpf_skb_load_bytes(skb, TUNNEL_L3_OFF + offsetof(struct iphdr, tot_len), &tot, 2))
		return TC_ACT_SHOT;
	len = bpf_ntohs(tot) - TUNNEL_IP_HLEN;
	npad = AES_BLOCK_SIZE - ((len + TUNNEL_NEXT_LEN) & (AES_BLOCK_SIZE - 1));
	v = seal_begin(skb, &c, s, TUNNEL_SUITE_AES256_CBC_HMAC_SHA256,
		       TUNNEL_FIXED_OVERHEAD + TUNNEL_NEXT_LEN + npad);
	if (v != TC_ACT_OK)
		return v;
	sealed = c.len + TUNNEL_NEXT_LEN + npad;
	npad &= 0x1f;	/* verifier: [1, 16] by construction */
	if (npad < 1 || npad > AES_BLOCK_SIZE)
		goto err;
	__builtin_memset(pad, npad, sizeof(pad));
	if (bpf_skb_store_bytes(skb, TUNNEL_DATA_OFF + c.len + TUNNEL_NEXT_LEN, pad, npad, 0))
		goto err;
	cbc = aes_ctx_get(&aes_keys, aes_index(c.index, 0, c.slot, 0));
	ecb = aes_ctx_get(&aes_keys, aes_index(c.index, 0, c.slot, 1));
	if (!cbc || !ecb) {
		COUNT(c.st, no_key);
		return TC_ACT_SHOT;
	}
	if (tunnel_cbc_iv(ecb, s) ||
	    aes_cbc_skb(cbc, skb, TUNNEL_DATA_OFF, sealed, s->iv, false) ||
	    tunnel_mac(skb, s, c.tx->mac_istate, sealed))
		goto err;
	hmac_sha256_final(&s->hmac, s->mac);
	if (bpf_skb_store_bytes(skb, TUNNEL_DATA_OFF + sealed, s->mac, TUNNEL_TAG_LEN, 0))
		goto err;
	return seal_finish(skb, &c, s);
err:
	COUNT(c.st, errors);
	return TC_ACT_SHOT;
}

/* ---------------------------------------------------------------- open */

struct open_ctx {
	struct iphdr ip;
	struct tunnel_stats *st;
	struct tunnel_rx_slot *rx;
	__u32 index, slot;
	__u32 sealed;			/* sealed bytes (after the header, before the tag) */
	__u64 ctr;
};

/* Header checks, key slot, replay pre-check; fills s->aad. */
static __noinline int open_begin(struct __sk_buff *skb, struct open_ctx *c,
				      struct tunnel_scratch *s, __u8 suite)
{
	struct tunnel_aad *aad = &s->aad;
	struct tunnel_peer *peer;
	struct tunnel_slot_key k;
	__u32 tot;
	int v;

	if (bpf_skb_load_bytes(skb, TUNNEL_L3_OFF, &c->ip, sizeof(c->ip)))
		return TC_ACT_SHOT;
	peer = bpf_map_lookup_elem(&peers, &c->ip.saddr);
	if (!peer)
		return TC_ACT_SHOT;
	c->index = peer->index;
	c->st = stats_row(c->index);
	tot = bpf_ntohs(c->ip.tot_len);
	if (c->ip.version != 4 || c->ip.ihl != 5 || c->ip.protocol != TUNNEL_IPPROTO ||
	    tunnel_ip_csum(&c->ip) != c->ip.check ||
	    tot + TUNNEL_L3_OFF != skb->len ||
	    tot < TUNNEL_IP_HLEN + TUNNEL_FIXED_OVERHEAD + TUNNEL_NEXT_LEN ||
	    bpf_skb_load_bytes(skb, TUNNEL_HDR_OFF, &aad->hdr, TUNNEL_HDR_LEN) ||
	    aad->hdr.version != TUNNEL_VERSION) {
		COUNT(c->st, malformed);
		return TC_ACT_SHOT;
	}
	c->sealed = tot - TUNNEL_IP_HLEN - TUNNEL_FIXED_OVERHEAD;
	c->slot = aad->hdr.key_id & 1;
	k.peer = c->ip.saddr;
	k.slot = c->slot;
	c->rx = bpf_map_lookup_elem(&rx_keys, &k);
	if (aad->hdr.suite != suite || !c->rx || c->rx->key.key_id != aad->hdr.key_id) {
		COUNT(c->st, unknown_key);
		return TC_ACT_SHOT;
	}
	c->ctr = (__u64)bpf_ntohl(aad->hdr.counter_hi) << 32 | bpf_ntohl(aad->hdr.counter_lo);
	if (replay_refused(&c->rx->replay, c->ctr)) {
		COUNT(c->st, replayed);
		return TC_ACT_SHOT;
	}
	aad->saddr = c->ip.saddr;
	aad->daddr = c->ip.daddr;
	aad->ip_id = c->ip.id;
	aad->frag_off = c->ip.frag_off;
	/* csum_fix is checked once the inner protocol is known (open_finish) */
	v = pkt_csum_skb(skb, s->csum, TUNNEL_DATA_OFF, skb->len - TUNNEL_DATA_OFF, 0);
	if (v < 0 ||
	    bpf_skb_load_bytes(skb, TUNNEL_DATA_OFF + 6, &s->rx_c[0], 2) ||
	    bpf_skb_load_bytes(skb, TUNNEL_DATA_OFF + 16, &s->rx_c[1], 2) ||
	    bpf_skb_load_bytes(skb, skb->len - TUNNEL_CSUM_LEN, &s->rx_fix, 2)) {
		COUNT(c->st, errors);
		return TC_ACT_SHOT;
	}
	s->rx_sum = v;
	return TC_ACT_OK;
}

/* Authenticated: accept the counter once, then restore the original
 * packet: IPv4 header (next_proto, length, checksum) where it was, the
 * tunnel header and everything after the payload removed. */
static __noinline int open_finish(struct __sk_buff *skb, struct open_ctx *c,
				       struct tunnel_scratch *s, __u32 inner)
{
	__u32 off;
	__u8 next;

	if (bpf_skb_load_bytes(skb, TUNNEL_DATA_OFF + inner, &next, 1)) {
		COUNT(c->st, errors);
		return TC_ACT_SHOT;
	}
	/* the one field outside the tag: it must be what the sender computes */
	off = tunnel_l4_csum_off(next, inner);
	if (off ? tunnel_csum_final(s->rx_sum) != s->rx_c[off == 16] : s->rx_fix != 0) {
		COUNT(c->st, malformed);
		return TC_ACT_SHOT;
	}
	if (!replay_commit(c->rx, c->ctr, bpf_ktime_get_ns())) {
		COUNT(c->st, replayed);
		return TC_ACT_SHOT;
	}
	if (bpf_skb_adjust_room(skb, -TUNNEL_HDR_LEN, BPF_ADJ_ROOM_MAC, 0) ||
	    tunnel_store_ip(skb, &c->ip, next, TUNNEL_IP_HLEN + inner) ||
	    bpf_skb_change_tail(skb, TUNNEL_HDR_OFF + inner, 0)) {
		COUNT(c->st, errors);
		return TC_ACT_SHOT;
	}
	if (c->st) {
		c->st->rx_packets++;
		c->st->rx_bytes += inner;
	}
	return TC_ACT_OK;
}

SEC("tc")
int tunnel_open_chacha(struct __sk_buff *skb)
{
	struct tunnel_scratch *s = cryptbpf_scratch(&key_scratch);
	struct open_ctx c;
	int v;

	if (!s)
		return TC_ACT_SHOT;
	v = open_begin(skb, &c, s, TUNNEL_SUITE_CHACHA20_POLY1305);
	if (v != TC_ACT_OK)
		return v;
	tunnel_nonce(s);
	v = chacha20_poly1305_open_skb(&s->aead, c.rx->key.key, s->nonce, s->aad_buf, TUNNEL_AAD_LEN,
				       skb, TUNNEL_DATA_OFF, TUNNEL_DATA_OFF, c.sealed);
	if (v) {
		if (v == -CHACHA20_POLY1305_EBADMSG)
			COUNT(c.st, auth_failed);
		else
			COUNT(c.st, errors);
		return TC_ACT_SHOT;
	}
	return open_finish(skb, &c, s, c.sealed - TUNNEL_NEXT_LEN);
}

SEC("tc")
int tunnel_open_cbc(struct __sk_buff *skb)
{
	struct tunnel_scratch *s = cryptbpf_scratch(&key_scratch);
	struct bpf_crypto_ctx *cbc, *ecb;
	struct open_ctx c;
	__u32 npad;
	int v;

	if (!s)
		return TC_ACT_SHOT;
	if (!aes_cbc_available())	/* the control plane refuses such peers */
		return TC_ACT_SHOT;
	v = open_begin(skb, &c, s, TUNNEL_SUITE_AES256_CBC_HMAC_SHA256);
	if (v != TC_ACT_OK)
		return v;
	if (c.sealed < AES_BLOCK_SIZE || (c.sealed & (AES_BLOCK_SIZE - 1))) {
		COUNT(c.st, malformed);
		return TC_ACT_SHOT;
	}
	/* encrypt-then-MAC: verify (constant time) before touching the CBC */
	if (tunnel_mac(skb, s, c.rx->key.mac_istate, c.sealed))
		goto err;
	if (!hmac_sha256_verify_skb(&s->hmac, skb, TUNNEL_DATA_OFF + c.sealed, TUNNEL_TAG_LEN)) {
		COUNT(c.st, auth_failed);
		return TC_ACT_SHOT;
	}
	cbc = aes_ctx_get(&aes_keys, aes_index(c.index, 1, c.slot, 0));
	ecb = aes_ctx_get(&aes_keys, aes_index(c.index, 1, c.slot, 1));
	if (!cbc || !ecb) {
		COUNT(c.st, unknown_key);
		return TC_ACT_SHOT;
	}
	if (tunnel_cbc_iv(ecb, s) ||
	    aes_cbc_skb(cbc, skb, TUNNEL_DATA_OFF, c.sealed, s->iv, true) ||
	    bpf_skb_load_bytes(skb, TUNNEL_DATA_OFF + c.sealed - AES_BLOCK_SIZE, s->last,
			       AES_BLOCK_SIZE))
		goto err;
	/* Only the peer can produce a valid MAC, so bad padding means a
	 * broken peer; it is counted and dropped like a forgery, on the
	 * same counter, and nothing about it is observable from outside. */
	npad = aes_pkcs7_check(s->last);
	if (!npad || npad + TUNNEL_NEXT_LEN > c.sealed) {
		COUNT(c.st, auth_failed);
		return TC_ACT_SHOT;
	}
	return open_finish(skb, &c, s, c.sealed - npad - TUNNEL_NEXT_LEN);
err:
	COUNT(c.st, errors);
	return TC_ACT_SHOT;
}

/* ---------------------------------------------------------------- dispatch */

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, TUNNEL_PROG_SLOTS);
	__type(key, __u32);
	__array(values, int (void *));
} tunnel_progs SEC(".maps") = {
	.values = {
		[TUNNEL_SUITE_CHACHA20_POLY1305 * 2 + TUNNEL_DIR_SEAL] = (void *)&tunnel_seal_chacha,
		[TUNNEL_SUITE_CHACHA20_POLY1305 * 2 + TUNNEL_DIR_OPEN] = (void *)&tunnel_open_chacha,
		[TUNNEL_SUITE_AES256_CBC_HMAC_SHA256 * 2 + TUNNEL_DIR_SEAL] = (void *)&tunnel_seal_cbc,
		[TUNNEL_SUITE_AES256_CBC_HMAC_SHA256 * 2 + TUNNEL_DIR_OPEN] = (void *)&tunnel_open_cbc,
	},
};

static __always_inline __u32 suite_prog(const struct tunnel_peer *peer, __u32 dir)
{
	return (peer->suite & 3) * 2 + dir;
}

/* Where the hooks classify frames: map memory, not the stack. A global
 * function writing into its caller's stack is not tracked by older
 * verifiers (Linux 6.1 refuses uninitialised stack as its argument, and
 * would keep believing the values an initialised one had before the call);
 * map memory is always read as unknown. */
CRYPTBPF_PERCPU_SCRATCH(frame_scratch, struct frame_info);

/* A peer's traffic as the seal/open programs need it: no tag left in the
 * frame, and no VLAN id other than 0 in skb->vlan_tci. */
static __always_inline int tunnel_untagged(const struct frame_info *fi)
{
	return !fi->tags && !(fi->flags & FRAME_F_VLAN_ID);
}

SEC("tc")
int tunnel_egress(struct __sk_buff *skb)
{
	struct frame_info *fi = cryptbpf_scratch(&frame_scratch);
	struct tunnel_peer *peer;
	int r;

	if (!fi)
		return TC_ACT_SHOT;
	/* by what the frame holds, not skb->protocol (0x8100 when a VLAN
	 * device on top of us left its tag in the frame) */
	r = frame_classify_skb(skb, fi, FRAME_L3_ONLY);
	if (r == FRAME_BAD_L2) {
		/* more tags than we walk: the destination cannot be seen */
		COUNT(stats_row(TUNNEL_NO_PEER_ROW), unparsed);
		return TC_ACT_SHOT;
	}
	/* Not ours: TC_ACT_UNSPEC, so the filters after this one (another
	 * program's, on the same device) still run; TC_ACT_OK would end
	 * the chain. With none after it, the packet goes on as with OK. */
	if (!(fi->flags & FRAME_F_ADDRS) || fi->family != 4)
		return TC_ACT_UNSPEC;	/* no IPv4 header to protect */
	peer = bpf_map_lookup_elem(&peers, &fi->daddr);
	if (!peer)
		return TC_ACT_UNSPEC;	/* not a peer: untouched */
	if (!tunnel_untagged(fi)) {
		COUNT(stats_row(peer->index), tagged);
		return TC_ACT_SHOT;
	}
	bpf_tail_call(skb, &tunnel_progs, suite_prog(peer, TUNNEL_DIR_SEAL));
	COUNT(stats_row(peer->index), errors);	/* no program for the suite */
	return TC_ACT_SHOT;
}

SEC("tc")
int tunnel_ingress(struct __sk_buff *skb)
{
	struct frame_info *fi = cryptbpf_scratch(&frame_scratch);
	struct tunnel_peer *peer;
	int r;

	if (!fi)
		return TC_ACT_SHOT;
	r = frame_classify_skb(skb, fi, FRAME_L3_ONLY);
	if (r == FRAME_BAD_L2) {
		/* the kernel strips VLAN id 0 tags however many: a peer's
		 * cleartext could hide behind more than we walk */
		COUNT(stats_row(TUNNEL_NO_PEER_ROW), unparsed);
		return TC_ACT_SHOT;
	}
	/* not ours: TC_ACT_UNSPEC, as on egress */
	if (!(fi->flags & FRAME_F_ADDRS) || fi->family != 4)
		return TC_ACT_UNSPEC;	/* not IPv4 (or no header the kernel takes) */
	peer = bpf_map_lookup_elem(&peers, &fi->saddr);
	if (fi->proto != TUNNEL_IPPROTO) {
		if (!peer)
			return TC_ACT_UNSPEC;	/* not a peer: untouched */
		COUNT(stats_row(peer->index), clear_from_peer);
		return TC_ACT_SHOT;
	}
	if (!peer) {
		COUNT(stats_row(TUNNEL_NO_PEER_ROW), not_peer);
		return TC_ACT_SHOT;
	}
	if (!tunnel_untagged(fi)) {
		COUNT(stats_row(peer->index), tagged);
		return TC_ACT_SHOT;
	}
	bpf_tail_call(skb, &tunnel_progs, suite_prog(peer, TUNNEL_DIR_OPEN));
	COUNT(stats_row(peer->index), errors);
	return TC_ACT_SHOT;
}

/* ---------------------------------------------------------------- XDP */

SEC("xdp")
int tunnel_xdp(struct xdp_md *ctx)
{
	struct tunnel_slot_key k;
	struct tunnel_rx_slot *rx;
	struct tunnel_stats *st;
	struct tunnel_peer *peer;
	struct frame_info *fi = cryptbpf_scratch(&frame_scratch);
	struct tunnel_hdr *h;
	__u64 ctr, top, off;
	void *data, *end;
	__u32 tot;
	int r;

	if (!fi)
		return XDP_DROP;
	r = frame_classify_xdp_opts(ctx, fi, FRAME_L3_ONLY);
	if (r == FRAME_BAD_L2) {
		COUNT(stats_row(TUNNEL_NO_PEER_ROW), xdp_unparsed);
		return XDP_DROP;
	}
	if (!(fi->flags & FRAME_F_ADDRS) || fi->family != 4)
		return XDP_PASS;
	peer = bpf_map_lookup_elem(&peers, &fi->saddr);
	if (fi->proto != TUNNEL_IPPROTO) {
		if (!peer)
			return XDP_PASS;
		COUNT(stats_row(peer->index), xdp_clear_from_peer);
		return XDP_DROP;
	}
	if (!peer) {
		COUNT(stats_row(TUNNEL_NO_PEER_ROW), xdp_not_peer);
		return XDP_DROP;
	}
	st = stats_row(peer->index);
	/* TC ingress opens what reaches it untagged: no tag, or one VLAN id
	 * 0 tag (moved out of the frame before TC) */
	if (fi->tags > 1 || (fi->flags & FRAME_F_VLAN_ID)) {
		COUNT(st, xdp_tagged);
		return XDP_DROP;
	}
	tot = fi->l3_end - fi->l3_off;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	off = fi->l3_off + TUNNEL_IP_HLEN;
	CRYPTBPF_CLAMP(off, FRAME_MAX_L3_OFF + TUNNEL_IP_HLEN);
	h = data + off;
	/* header checksum, version and lengths checked by the classifier */
	if (r < 0 || fi->ihl != TUNNEL_IP_HLEN ||
	    tot < TUNNEL_IP_HLEN + TUNNEL_FIXED_OVERHEAD + TUNNEL_NEXT_LEN ||
	    fi->l3_end != end - data || (void *)(h + 1) > end ||
	    h->version != TUNNEL_VERSION) {
		COUNT(st, xdp_malformed);
		return XDP_DROP;
	}
	k.peer = fi->saddr;
	k.slot = h->key_id & 1;
	rx = bpf_map_lookup_elem(&rx_keys, &k);
	if (h->suite != peer->suite || !rx || rx->key.key_id != h->key_id) {
		COUNT(st, xdp_unknown_key);
		return XDP_DROP;
	}
	ctr = (__u64)bpf_ntohl(h->counter_hi) << 32 | bpf_ntohl(h->counter_lo);
	top = READ_ONCE(rx->replay.top);
	if (top > ctr && top - ctr > TUNNEL_REPLAY_WINDOW) {
		COUNT(st, xdp_stale);
		return XDP_DROP;
	}
	return XDP_PASS;
}
