// SPDX-License-Identifier: GPL-2.0
/* wireguard: WireGuard's transport data messages (type 4) in TC, pure BPF
 * ChaCha20-Poly1305; the handshake is the daemon's (userspace).
 *
 *   wg_seal      TC ingress of the pair end: the user's interface (wg0)
 *                is one end of a veth pair; what the stack sends there,
 *                already segmented (wg0: TSO and checksum offload off, GSO
 *                on), arrives here. Cryptokey routing (LPM over the
 *                peers' AllowedIPs) picks the peer; the inner packet is
 *                sealed into UDP to the peer's endpoint and redirected to
 *                the underlay (bpf_redirect_neigh).
 *   wg_open      TC ingress of the underlay: type-4 messages to the listen
 *                port are opened and redirected into the pair, so the
 *                inner packet arrives on wg0; handshake messages (types
 *                1-3) pass to the daemon's socket untouched.
 *   wg_keepalive BPF_PROG_TEST_RUN only: a keepalive under the current
 *                keypair with a counter from the data plane.
 *
 * Wire format and map layouts: include/wireguard.h, docs/wireguard.md.
 * Nothing leaves wg_seal in clear: any packet that cannot be sealed is
 * dropped and counted. Nothing reaches wg0 unless it was authenticated,
 * is not a replay and its inner source is in the sender's AllowedIPs. */
#include "cryptbpf.bpf.h"
#include "chacha20_poly1305.bpf.h"
#include "frame_classify.bpf.h"
#include "pkt_csum.bpf.h"
#include "wireguard.h"

char LICENSE[] SEC("license") = "GPL";

_Static_assert(sizeof(struct message_data) == MESSAGE_DATA_HEADER_LEN, "message_data");
_Static_assert(WG_MAX_KEYPAIRS == WG_MAX_PEERS * 3, "WG_MAX_KEYPAIRS");
_Static_assert(WG_STATS_ROWS == WG_MAX_PEERS + 1 && WG_NO_PEER_ROW == WG_MAX_PEERS, "stats rows");
_Static_assert(COUNTER_WORDS * 64 == COUNTER_BITS_TOTAL, "COUNTER_WORDS");
_Static_assert(COUNTER_WINDOW_SIZE == COUNTER_BITS_TOTAL - 64, "COUNTER_WINDOW_SIZE");
_Static_assert((COUNTER_WORDS & (COUNTER_WORDS - 1)) == 0, "COUNTER_WORDS: power of two");

#define WG_L3_OFF 14		/* after the Ethernet header, as TC sees frames */
#define WG_UDP_HLEN 8
#define WG_IP4_HLEN 20
#define WG_IP6_HLEN 40
/* Encapsulation in front of the sealed data: outer IP + UDP + message header */
#define WG_ENCAP4 (WG_IP4_HLEN + WG_UDP_HLEN + MESSAGE_DATA_HEADER_LEN)	/* 44 */
#define WG_ENCAP6 (WG_IP6_HLEN + WG_UDP_HLEN + MESSAGE_DATA_HEADER_LEN)	/* 64 */
#define WG_MAX_INNER (CRYPTBPF_MSG_MAX - MESSAGE_PADDING_MULTIPLE)

#ifndef READ_ONCE
#define READ_ONCE(x) (*(const volatile typeof(x) *)&(x))
#endif
#define ETH_ALEN 6

#ifndef AF_INET
#define AF_INET 2
#define AF_INET6 10
#endif

/* keypairs map value: the userspace part, then what only BPF writes. */
struct wg_keypair_slot {
	struct wg_keypair kp;
	struct wg_replay replay;
	struct bpf_spin_lock lock;
	__u32 pad;
};

/* peer_keys / endpoints values: userspace's part and a lock, so BPF's
 * promotion (responder rule) and roaming never tear a value. */
struct wg_peer_keys_slot {
	struct wg_peer_keys k;
	struct bpf_spin_lock lock;
	__u32 pad;
};

struct wg_endpoint_slot {
	struct wg_endpoint e;
	struct bpf_spin_lock lock;
	__u32 pad;
};

/* Hash, no preallocation: an expired keypair's element stays valid for a
 * CPU still using it (RCU) instead of being recycled at once. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WG_MAX_KEYPAIRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct wg_keypair_slot);
} keypairs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WG_MAX_PEERS);
	__type(key, __u32);
	__type(value, struct wg_peer_keys_slot);
} peer_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WG_MAX_PEERS);
	__type(key, __u32);
	__type(value, struct wg_endpoint_slot);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct wg_lpm_v4);
	__type(value, __u32);
} allowed_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct wg_lpm_v6);
	__type(value, __u32);
} allowed_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wg_config);
} wg_config_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WG_STATS_ROWS);
	__type(key, __u32);
	__type(value, struct wg_stats);
} stats SEC(".maps");

/* bpf_ktime_get_ns() of each peer's last NeedHandshake event */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WG_MAX_PEERS);
	__type(key, __u32);
	__type(value, __u64);
} event_times SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct wg_scratch {
	struct chacha20_poly1305_ctx aead;
	__u8 aad[CHACHA20_POLY1305_AAD_MAX];	/* the AEAD reads this much; WireGuard's AAD is empty */
	__u8 csum[PKT_CSUM_BUF];
	__u8 nonce[CHACHA20_NONCE_SIZE];
	__u8 zero[MESSAGE_PADDING_MULTIPLE];
	__u8 key[NOISE_SYMMETRIC_KEY_LEN];	/* copied out of the keypair */
	struct wg_endpoint ep;			/* copied out under its lock */
	struct message_data hdr;
	__u8 ip[WG_IP6_HLEN];		/* the outer IP header being built */
};
/* "key" in the name: `cryptbpf map` never dumps it (the AEAD state holds
 * key material after a packet) */
CRYPTBPF_PERCPU_SCRATCH(key_scratch, struct wg_scratch);

/* Where the hooks classify frames: map memory (see encrypted_tunnel.bpf.c:
 * 6.1 does not track a global function's writes into its caller's stack). */
CRYPTBPF_PERCPU_SCRATCH(frame_scratch, struct frame_info);

static __always_inline struct wg_stats *stats_row(__u32 row)
{
	return bpf_map_lookup_elem(&stats, &row);
}

#define COUNT CRYPTBPF_COUNT

static __always_inline struct wg_config *wg_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&wg_config_map, &zero);
}

/* ---------------------------------------------------------------- keys */

/* The keypair in `peer`'s current slot, or NULL. */
static __always_inline struct wg_keypair_slot *current_keypair(__u32 peer)
{
	struct wg_peer_keys_slot *pk = bpf_map_lookup_elem(&peer_keys, &peer);
	__u32 idx;

	if (!pk)
		return NULL;
	idx = READ_ONCE(pk->k.current);
	if (idx == WG_KEY_NONE)
		return NULL;
	return bpf_map_lookup_elem(&keypairs, &idx);
}

/* Tell the daemon (at most once a second per peer) that `peer` needs a
 * handshake. */
static __noinline void need_handshake(__u32 peer, struct wg_stats *st)
{
	__u64 now = bpf_ktime_get_ns(), last;
	struct wg_event *ev;
	__u64 *t;

	t = bpf_map_lookup_elem(&event_times, &peer);
	if (!t)
		return;
	last = READ_ONCE(*t);
	if (last && now - last < WG_NEED_HANDSHAKE_INTERVAL_NS)
		return;
	if (__sync_val_compare_and_swap(t, last, now) != last)
		return;		/* another CPU is sending it */
	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		COUNT(st, events_lost);
		return;
	}
	ev->type = WG_EVENT_NEED_HANDSHAKE;
	ev->peer_id = peer;
	bpf_ringbuf_submit(ev, 0);
	COUNT(st, events);
}

/* REJECT_AFTER_TIME, checked here so that keys stop on time even when
 * the daemon, which also expires them, is gone. created_ns comes from
 * userspace's CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns(); a value
 * from the future wraps to "expired". */
static __always_inline int keypair_expired(const struct wg_keypair_slot *kp)
{
	return bpf_ktime_get_ns() - READ_ONCE(kp->kp.created_ns) >= REJECT_AFTER_TIME_NS;
}

/* The next send counter of a keypair, or -1 once REJECT_AFTER_MESSAGES
 * is reached (the counter keeps growing, so it never comes back). */
static __always_inline __s64 take_counter(struct wg_keypair_slot *kp, __u64 *ctr)
{
	*ctr = __sync_fetch_and_add(&kp->kp.send_counter, 1);
	return *ctr >= REJECT_AFTER_MESSAGES ? -1 : 0;
}

/* nonce = 32 zero bits || counter, little-endian (as on the wire) */
static __always_inline void wg_nonce(struct wg_scratch *s, __u64 ctr)
{
	__builtin_memset(s->nonce, 0, 4);
	__builtin_memcpy(s->nonce + 4, &ctr, 8);
}

/* ------------------------------------------------------------- replay */

/* WireGuard's counter_validate() (drivers/net/wireguard/receive.c), in two
 * steps: a lock-free look before any cryptography, the decision after
 * authentication under the keypair's lock. */
static __always_inline int replay_refused(const struct wg_replay *r, __u64 ctr)
{
	__u64 top = READ_ONCE(r->counter), c = ctr + 1;

	if (ctr >= REJECT_AFTER_MESSAGES)
		return 1;
	if (c > top)
		return 0;
	if (c + COUNTER_WINDOW_SIZE < top)
		return 1;
	return (r->backtrack[(c / 64) & (COUNTER_WORDS - 1)] >> (c & 63)) & 1;
}

/* 1 if ctr is accepted (exactly once). */
static __always_inline int replay_commit(struct wg_keypair_slot *kp, __u64 ctr)
{
	struct wg_replay *r = &kp->replay;
	__u64 c = ctr + 1, index, cur, top, bit;
	int ok = 0;

	bpf_spin_lock(&kp->lock);
	if (c + COUNTER_WINDOW_SIZE < r->counter)
		goto out;
	index = c / 64;
	if (c > r->counter) {
		cur = r->counter / 64;
		top = index - cur;
		if (top > COUNTER_WORDS)
			top = COUNTER_WORDS;
		for (__u32 i = 1; i <= COUNTER_WORDS; i++) {
			if (i > top)
				break;
			r->backtrack[(cur + i) & (COUNTER_WORDS - 1)] = 0;
		}
		r->counter = c;
	}
	bit = 1ULL << (c & 63);
	index &= COUNTER_WORDS - 1;
	ok = !(r->backtrack[index] & bit);
	r->backtrack[index] |= bit;
out:
	bpf_spin_unlock(&kp->lock);
	return ok;
}

/* ------------------------------------------------------- packet shape */

static __always_inline __be16 eth_proto(int family)
{
	return bpf_htons(family == 6 ? ETH_P_IPV6 : ETH_P_IP);
}

/* Change the bytes between the Ethernet header and the packet behind
 * them by `delta` (> 0: room for a new outer header; < 0: an outer header
 * removed) and skb->protocol from family `from` to `to`.
 * bpf_skb_change_proto() adds (4 -> 6) or removes (6 -> 4) 20 bytes right
 * after the Ethernet header, so it runs where those 20 bytes are room. */
static __noinline int wg_reshape(struct __sk_buff *skb, int from, int to, int delta)
{
	const int d = WG_IP6_HLEN - WG_IP4_HLEN;

	if (from == to)
		return bpf_skb_adjust_room(skb, delta, BPF_ADJ_ROOM_MAC, 0);
	if (to == 6)
		return bpf_skb_change_proto(skb, bpf_htons(ETH_P_IPV6), 0) ?:
		       bpf_skb_adjust_room(skb, delta - d, BPF_ADJ_ROOM_MAC, 0);
	return bpf_skb_adjust_room(skb, delta + d, BPF_ADJ_ROOM_MAC, 0) ?:
	       bpf_skb_change_proto(skb, bpf_htons(ETH_P_IP), 0);
}

static __always_inline __u16 ip4_csum(const __u8 *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < WG_IP4_HLEN / 2; i++)
		sum += w[i];
	return ~pkt_csum_fold(sum) & 0xffff;
}

/* ---------------------------------------------------------------- seal */

/* Lives on the caller's stack; small (the AEAD's call chain sits on top). */
struct seal_ctx {
	struct wg_stats *st;
	struct wg_keypair_slot *kp;
	__u64 ctr;
	__u32 peer;
	__u32 inner;		/* inner packet length */
	__u32 padded;		/* ... zero-padded to a multiple of 16 */
	__u32 encap;		/* WG_ENCAP4/6 */
};

/* The peer for the inner destination (LPM), or -1. */
static __always_inline __s64 route_inner(struct __sk_buff *skb, const struct frame_info *fi)
{
	struct wg_lpm_v6 k6 = { .prefixlen = 128 };
	struct wg_lpm_v4 k4 = { .prefixlen = 32 };
	__u32 *peer;

	if (fi->family == 4) {
		__builtin_memcpy(k4.addr, &fi->daddr, 4);
		peer = bpf_map_lookup_elem(&allowed_v4, &k4);
	} else {
		if (bpf_skb_load_bytes(skb, WG_L3_OFF + offsetof(struct ipv6hdr, daddr), k6.addr, 16))
			return -1;
		peer = bpf_map_lookup_elem(&allowed_v6, &k6);
	}
	return peer && *peer < WG_MAX_PEERS ? (__s64)*peer : -1;
}

/* Checks, peer, keypair, endpoint, counter; then the room for the outer
 * headers in front and the padding and tag behind. Returns TC_ACT_OK to
 * go on (the plaintext then sits at WG_L3_OFF + c->encap), or a verdict. */
static __noinline int seal_begin(struct __sk_buff *skb, struct seal_ctx *c, struct wg_scratch *s,
				 __u32 mtu_cap)
{
	struct frame_info *fi = cryptbpf_scratch(&frame_scratch);
	struct wg_endpoint_slot *ep;
	__u64 pad;
	__u32 mtu = 0;
	__s64 peer;
	int r;

	c->st = stats_row(WG_NO_PEER_ROW);
	if (!fi)
		return TC_ACT_SHOT;
	r = frame_classify_skb(skb, fi, FRAME_L3_ONLY);
	if (r == FRAME_BAD_L2) {
		COUNT(c->st, unparsed);
		return TC_ACT_SHOT;
	}
	if (!(fi->flags & FRAME_F_ADDRS)) {	/* ARP, or anything not IP: never leaves */
		COUNT(c->st, unsupported);
		return TC_ACT_SHOT;
	}
	if (fi->tags || (fi->flags & FRAME_F_VLAN_ID)) {
		COUNT(c->st, tagged);
		return TC_ACT_SHOT;
	}
	if (r < 0 || fi->l3_off != WG_L3_OFF || fi->l3_end > skb->len) {
		COUNT(c->st, malformed);
		return TC_ACT_SHOT;
	}
	peer = route_inner(skb, fi);
	if (peer < 0) {
		COUNT(c->st, no_route);
		return TC_ACT_SHOT;
	}
	c->peer = peer;
	c->st = stats_row(c->peer);
	if (skb->gso_size) {		/* wg0 segments: none expected */
		COUNT(c->st, unsupported);
		return TC_ACT_SHOT;
	}
	c->inner = fi->l3_end - WG_L3_OFF;
	if (c->inner > WG_MAX_INNER) {
		COUNT(c->st, too_big);
		return TC_ACT_SHOT;
	}
	/* zero padding to a multiple of 16, but never beyond wg0's MTU: a
	 * full-size packet stays full-size (1420 + 80 = 1500 over IPv6) */
	c->padded = (c->inner + MESSAGE_PADDING_MULTIPLE - 1) & ~(MESSAGE_PADDING_MULTIPLE - 1);
	if (c->padded > mtu_cap && c->inner <= mtu_cap)
		c->padded = mtu_cap;
	c->kp = current_keypair(c->peer);
	if (!c->kp) {
		COUNT(c->st, no_key);
		need_handshake(c->peer, c->st);
		return TC_ACT_SHOT;
	}
	if (keypair_expired(c->kp)) {
		COUNT(c->st, key_expired);
		need_handshake(c->peer, c->st);
		return TC_ACT_SHOT;
	}
	ep = bpf_map_lookup_elem(&endpoints, &c->peer);
	if (!ep)
		return TC_ACT_SHOT;
	/* no lock: a copy torn by a concurrent roaming update can only send
	 * this one packet to a mix of the old and the new endpoint (it is
	 * sealed either way); the lock orders the writers */
	s->ep = ep->e;
	if (s->ep.family != WG_AF_INET && s->ep.family != WG_AF_INET6) {
		COUNT(c->st, no_endpoint);
		return TC_ACT_SHOT;
	}
	c->encap = s->ep.family == WG_AF_INET ? WG_ENCAP4 : WG_ENCAP6;
	/* growth: from the frame as it is to the sealed one */
	if (bpf_check_mtu(skb, s->ep.ifindex, &mtu,
			  (__s32)(WG_L3_OFF + c->encap + c->padded + NOISE_AUTHTAG_LEN) - (__s32)skb->len, 0)) {
		COUNT(c->st, too_big);
		return TC_ACT_SHOT;
	}
	if (take_counter(c->kp, &c->ctr)) {
		COUNT(c->st, counter_exhausted);
		need_handshake(c->peer, c->st);
		return TC_ACT_SHOT;
	}
	if (wg_reshape(skb, fi->family, s->ep.family, c->encap) ||
	    bpf_skb_change_tail(skb, WG_L3_OFF + c->encap + c->padded + NOISE_AUTHTAG_LEN, 0))
		goto err;
	/* zero padding: bpf_skb_change_tail() does not clear what it adds */
	pad = c->padded - c->inner;
	if (pad) {
		/* [1, 16] as the verifier sees it in the register the helper
		 * gets (the empty asm keeps clang from folding the mask away:
		 * pkt_csum_chunk_len's trick) */
		pad -= 1;
		asm volatile("" : "+r"(pad));
		pad = (pad & (MESSAGE_PADDING_MULTIPLE - 1)) + 1;
		if (bpf_skb_store_bytes(skb, WG_L3_OFF + c->encap + c->inner, s->zero, pad, 0))
			goto err;
	}
	return TC_ACT_OK;
err:
	COUNT(c->st, errors);
	return TC_ACT_SHOT;
}

/* Outer IPv4/IPv6 + UDP + message header in front of the sealed bytes. */
static __noinline int seal_headers(struct __sk_buff *skb, struct seal_ctx *c, struct wg_scratch *s,
				   __be16 sport)
{
	const struct wg_endpoint *e = &s->ep;
	__u32 udp_len = WG_UDP_HLEN + MESSAGE_DATA_HEADER_LEN + c->padded + NOISE_AUTHTAG_LEN;
	__u32 ip_hlen = e->family == WG_AF_INET ? WG_IP4_HLEN : WG_IP6_HLEN;
	__be16 proto = eth_proto(e->family);
	struct udphdr udp = {
		.source = sport, .dest = e->port, .len = bpf_htons(udp_len), .check = 0,
	};
	int sum;

	s->hdr.header.type = MESSAGE_DATA;
	s->hdr.key_idx = c->kp->kp.remote_index;
	s->hdr.counter = c->ctr;
	if (bpf_skb_store_bytes(skb, 12, &proto, 2, 0) ||
	    bpf_skb_store_bytes(skb, WG_L3_OFF + ip_hlen, &udp, sizeof(udp), 0) ||
	    bpf_skb_store_bytes(skb, WG_L3_OFF + ip_hlen + WG_UDP_HLEN, &s->hdr, sizeof(s->hdr), 0))
		return -1;
	__builtin_memset(s->ip, 0, sizeof(s->ip));
	if (e->family == WG_AF_INET) {
		/* byte by byte in map memory: a designated initializer of the
		 * stack struct iphdr (bitfields) went out with its first 8 bytes
		 * zero (clang 14, -mcpu=v3; seen on the wire) */
		s->ip[0] = 0x45;
		*(__be16 *)&s->ip[2] = bpf_htons(WG_IP4_HLEN + udp_len);
		s->ip[8] = 64;
		s->ip[9] = IPPROTO_UDP;
		__builtin_memcpy(&s->ip[12], e->local.a, 4);
		__builtin_memcpy(&s->ip[16], e->addr.a, 4);
		*(__u16 *)&s->ip[10] = ip4_csum(s->ip);
		/* UDP over IPv4: checksum 0 (none), as the kernel module sends */
		return bpf_skb_store_bytes(skb, WG_L3_OFF, s->ip, WG_IP4_HLEN, 0);
	}
	/* IPv6: the UDP checksum is mandatory; the pseudo header first */
	s->ip[0] = 0x60;
	*(__be16 *)&s->ip[4] = bpf_htons(udp_len);
	s->ip[6] = IPPROTO_UDP;
	s->ip[7] = 64;
	__builtin_memcpy(&s->ip[8], e->local.a, 16);
	__builtin_memcpy(&s->ip[24], e->addr.a, 16);
	if (bpf_skb_store_bytes(skb, WG_L3_OFF, s->ip, sizeof(s->ip), 0))
		return -1;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&s->ip[8], 32, 0);
	sum = pkt_csum_fold((__u64)(__u32)sum + bpf_htons(udp_len) + bpf_htons(IPPROTO_UDP));
	sum = pkt_csum_skb(skb, s->csum, WG_L3_OFF + WG_IP6_HLEN, udp_len, sum);
	if (sum < 0)
		return -1;
	udp.check = ~sum & 0xffff ?: 0xffff;
	return bpf_skb_store_bytes(skb, WG_L3_OFF + WG_IP6_HLEN + offsetof(struct udphdr, check),
				  &udp.check, 2, 0);
}

static __always_inline void count_tx(struct wg_stats *st, __u32 msg_len, int data)
{
	__u64 now = bpf_ktime_get_ns();

	if (!st)
		return;
	st->tx_packets++;
	st->tx_bytes += msg_len;
	st->last_tx_ns = now;
	if (data)
		st->last_data_tx_ns = now;
	else
		st->keepalive_tx++;
}

/* Seal `len` bytes at `off` in place, tag behind them, under c->kp/c->ctr. */
static __always_inline int seal_at(struct __sk_buff *skb, struct seal_ctx *c, struct wg_scratch *s,
				   __u32 off, __u32 len)
{
	__builtin_memcpy(s->key, c->kp->kp.send_key, sizeof(s->key));
	wg_nonce(s, c->ctr);
	return chacha20_poly1305_seal_skb(&s->aead, s->key, s->nonce, s->aad, 0, skb, off, off, len);
}

SEC("tc")
int wg_seal(struct __sk_buff *skb)
{
	struct wg_scratch *s = cryptbpf_scratch(&key_scratch);
	struct wg_config *cfg = wg_config();
	struct seal_ctx c;
	int v;

	if (!s || !cfg)
		return TC_ACT_SHOT;
	v = seal_begin(skb, &c, s, cfg->mtu);
	if (v != TC_ACT_OK)
		return v;
	if (seal_at(skb, &c, s, WG_L3_OFF + c.encap, c.padded) ||
	    seal_headers(skb, &c, s, cfg->listen_port)) {
		COUNT(c.st, errors);
		return TC_ACT_SHOT;
	}
	count_tx(c.st, MESSAGE_DATA_HEADER_LEN + c.padded + NOISE_AUTHTAG_LEN, 1);
	return bpf_redirect_neigh(s->ep.ifindex, NULL, 0, 0);
}

/* BPF_PROG_TEST_RUN: in, an Ethernet header and MESSAGE_DATA_MIN_LEN
 * bytes starting with the peer id (LE32); out, the keepalive message in
 * their place. TC_ACT_OK when it was sealed, TC_ACT_SHOT otherwise. */
SEC("tc")
int wg_keepalive(struct __sk_buff *skb)
{
	struct wg_scratch *s = cryptbpf_scratch(&key_scratch);
	struct seal_ctx c = {};

	if (!s || skb->len != WG_L3_OFF + MESSAGE_DATA_MIN_LEN ||
	    bpf_skb_load_bytes(skb, WG_L3_OFF, &c.peer, 4) || c.peer >= WG_MAX_PEERS)
		return TC_ACT_SHOT;
	c.st = stats_row(c.peer);
	c.kp = current_keypair(c.peer);
	if (!c.kp || keypair_expired(c.kp))
		return TC_ACT_SHOT;
	if (take_counter(c.kp, &c.ctr)) {
		COUNT(c.st, counter_exhausted);
		return TC_ACT_SHOT;
	}
	s->hdr.header.type = MESSAGE_DATA;
	s->hdr.key_idx = c.kp->kp.remote_index;
	s->hdr.counter = c.ctr;
	if (bpf_skb_store_bytes(skb, WG_L3_OFF, &s->hdr, sizeof(s->hdr), 0) ||
	    seal_at(skb, &c, s, WG_L3_OFF + MESSAGE_DATA_HEADER_LEN, 0)) {
		COUNT(c.st, errors);
		return TC_ACT_SHOT;
	}
	count_tx(c.st, MESSAGE_DATA_MIN_LEN, 0);
	return TC_ACT_OK;
}

/* ---------------------------------------------------------------- open */

struct open_ctx {
	struct wg_stats *st;
	struct wg_keypair_slot *kp;
	__u64 ctr;
	__u32 idx;		/* receiver index */
	__u32 peer;
	__u32 msg_off;		/* message header */
	__u32 msg_len;
	__u32 outer_len;	/* Ethernet header to message: what opening removes */
	__u32 inner;		/* inner packet length */
	__u8 family;		/* outer */
	__u8 inner_family;
	__be16 sport;
	__u32 ifindex;
};

/* Lengths, header, keypair, replay look; s->hdr filled. */
static __noinline int open_begin(struct __sk_buff *skb, struct open_ctx *c, struct wg_scratch *s,
				 const struct frame_info *fi)
{
	__u32 udp_len;
	__be16 ul;

	c->st = stats_row(WG_NO_PEER_ROW);
	c->family = fi->family;
	c->msg_off = fi->l4_off + WG_UDP_HLEN;
	if (bpf_skb_load_bytes(skb, fi->l4_off + offsetof(struct udphdr, len), &ul, 2) ||
	    bpf_skb_load_bytes(skb, fi->l4_off, &c->sport, 2))
		goto bad;
	udp_len = bpf_ntohs(ul);
	if (fi->l3_end > skb->len || udp_len != fi->l3_end - fi->l4_off ||
	    udp_len < WG_UDP_HLEN + MESSAGE_DATA_MIN_LEN ||
	    udp_len - WG_UDP_HLEN - MESSAGE_DATA_MIN_LEN > WG_MAX_INNER + MESSAGE_PADDING_MULTIPLE ||
	    bpf_skb_load_bytes(skb, c->msg_off, &s->hdr, sizeof(s->hdr)) ||
	    s->hdr.header.type != MESSAGE_DATA)
		goto bad;
	c->msg_len = udp_len - WG_UDP_HLEN;
	c->outer_len = c->msg_off + MESSAGE_DATA_HEADER_LEN - WG_L3_OFF;
	c->idx = s->hdr.key_idx;
	c->ctr = s->hdr.counter;
	c->kp = bpf_map_lookup_elem(&keypairs, &c->idx);
	if (!c->kp) {
		COUNT(c->st, unknown_key);
		return TC_ACT_SHOT;
	}
	c->peer = c->kp->kp.peer_id;
	if (c->peer >= WG_MAX_PEERS)
		return TC_ACT_SHOT;
	c->st = stats_row(c->peer);
	if (keypair_expired(c->kp)) {
		COUNT(c->st, key_expired);
		return TC_ACT_SHOT;
	}
	if (replay_refused(&c->kp->replay, c->ctr)) {
		COUNT(c->st, replayed);
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
bad:
	COUNT(c->st, malformed);
	return TC_ACT_SHOT;
}

/* Authenticated and accepted: the keypair becomes current if it was
 * `next` (the responder's rule: the initiator has confirmed it). */
static __always_inline void promote(__u32 peer, __u32 idx)
{
	struct wg_peer_keys_slot *pk = bpf_map_lookup_elem(&peer_keys, &peer);

	if (!pk || READ_ONCE(pk->k.next) != idx)
		return;
	bpf_spin_lock(&pk->lock);
	if (pk->k.next == idx) {
		pk->k.previous = pk->k.current;
		pk->k.current = idx;
		pk->k.next = WG_KEY_NONE;
	}
	bpf_spin_unlock(&pk->lock);
}

static __always_inline int wg_addr_eq(const struct wg_addr *a, const struct wg_addr *b)
{
	const __u64 *x = (const __u64 *)a->a, *y = (const __u64 *)b->a;

	return READ_ONCE(x[0]) == y[0] && READ_ONCE(x[1]) == y[1];
}

/* Endpoint roaming: where authenticated packets come from is where the
 * peer is; the address they were sent to is ours towards it. */
static __noinline int roam(struct __sk_buff *skb, struct open_ctx *c, struct wg_scratch *s)
{
	struct wg_endpoint_slot *ep = bpf_map_lookup_elem(&endpoints, &c->peer);
	struct wg_endpoint *e = &s->ep;

	if (!ep)
		return -1;
	__builtin_memset(e, 0, sizeof(*e));
	e->family = c->family;
	e->port = c->sport;
	e->ifindex = c->ifindex;
	if (c->family == 4) {
		if (bpf_skb_load_bytes(skb, WG_L3_OFF + offsetof(struct iphdr, saddr), e->addr.a, 4) ||
		    bpf_skb_load_bytes(skb, WG_L3_OFF + offsetof(struct iphdr, daddr), e->local.a, 4))
			return -1;
	} else if (bpf_skb_load_bytes(skb, WG_L3_OFF + offsetof(struct ipv6hdr, saddr), e->addr.a, 16) ||
		   bpf_skb_load_bytes(skb, WG_L3_OFF + offsetof(struct ipv6hdr, daddr), e->local.a, 16)) {
		return -1;
	}
	/* unchanged (the usual case): no lock, no write to a shared line */
	if (READ_ONCE(ep->e.port) == e->port && READ_ONCE(ep->e.family) == e->family &&
	    READ_ONCE(ep->e.ifindex) == e->ifindex && wg_addr_eq(&ep->e.addr, &e->addr) &&
	    wg_addr_eq(&ep->e.local, &e->local))
		return 0;
	bpf_spin_lock(&ep->lock);
	ep->e = *e;
	bpf_spin_unlock(&ep->lock);
	return 0;
}

/* The inner packet: its length from its own header (the rest is padding)
 * and its source inside the sending peer's AllowedIPs. 0, or a verdict. */
static __noinline int open_inner(struct __sk_buff *skb, struct open_ctx *c)
{
	__u32 off = c->msg_off + MESSAGE_DATA_HEADER_LEN, plain = c->msg_len - MESSAGE_DATA_MIN_LEN;
	struct wg_lpm_v6 k6 = { .prefixlen = 128 };
	struct wg_lpm_v4 k4 = { .prefixlen = 32 };
	__u8 v;
	__be16 len;
	__u32 *peer;

	if (bpf_skb_load_bytes(skb, off, &v, 1))
		goto bad;
	if ((v >> 4) == 4) {
		if (plain < WG_IP4_HLEN ||
		    bpf_skb_load_bytes(skb, off + offsetof(struct iphdr, tot_len), &len, 2) ||
		    bpf_skb_load_bytes(skb, off + offsetof(struct iphdr, saddr), k4.addr, 4))
			goto bad;
		c->inner = bpf_ntohs(len);
		c->inner_family = 4;
		if (c->inner < WG_IP4_HLEN)
			goto bad;
		peer = bpf_map_lookup_elem(&allowed_v4, &k4);
	} else if ((v >> 4) == 6) {
		if (plain < WG_IP6_HLEN ||
		    bpf_skb_load_bytes(skb, off + offsetof(struct ipv6hdr, payload_len), &len, 2) ||
		    bpf_skb_load_bytes(skb, off + offsetof(struct ipv6hdr, saddr), k6.addr, 16))
			goto bad;
		c->inner = WG_IP6_HLEN + bpf_ntohs(len);
		c->inner_family = 6;
		peer = bpf_map_lookup_elem(&allowed_v6, &k6);
	} else {
		goto bad;
	}
	if (c->inner > plain)
		goto bad;
	if (!peer || *peer != c->peer) {
		COUNT(c->st, not_allowed);
		return TC_ACT_SHOT;
	}
	return 0;
bad:
	COUNT(c->st, malformed);
	return TC_ACT_SHOT;
}

/* Outer headers off, padding and tag off, an Ethernet header for wg0. */
static __noinline int open_strip(struct __sk_buff *skb, struct open_ctx *c, const struct wg_config *cfg)
{
	struct ethhdr eth;

	__builtin_memcpy(eth.h_dest, cfg->wg_mac, ETH_ALEN);
	__builtin_memcpy(eth.h_source, cfg->pair_mac, ETH_ALEN);
	eth.h_proto = eth_proto(c->inner_family);
	if (wg_reshape(skb, c->family, c->inner_family, -(int)c->outer_len) ||
	    bpf_skb_change_tail(skb, WG_L3_OFF + c->inner, 0) ||
	    bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0))
		return -1;
	return 0;
}

static __always_inline void count_rx(struct wg_stats *st, __u32 msg_len, int data)
{
	__u64 now = bpf_ktime_get_ns();

	if (!st)
		return;
	st->rx_packets++;
	st->rx_bytes += msg_len;
	st->last_rx_ns = now;
	if (data)
		st->last_data_rx_ns = now;
	else
		st->keepalive_rx++;
}

/* A type-4 message to our port: open it and hand the inner packet to wg0. */
static __always_inline int open_message(struct __sk_buff *skb, const struct frame_info *fi,
					const struct wg_config *cfg)
{
	struct wg_scratch *s = cryptbpf_scratch(&key_scratch);
	struct open_ctx c = {};
	__u32 plain;
	int v;

	if (!s)
		return TC_ACT_SHOT;
	v = open_begin(skb, &c, s, fi);
	if (v != TC_ACT_OK)
		return v;
	c.ifindex = skb->ifindex;
	plain = c.msg_len - MESSAGE_DATA_MIN_LEN;
	__builtin_memcpy(s->key, c.kp->kp.recv_key, sizeof(s->key));
	wg_nonce(s, c.ctr);
	v = chacha20_poly1305_open_skb(&s->aead, s->key, s->nonce, s->aad, 0, skb,
				       c.msg_off + MESSAGE_DATA_HEADER_LEN,
				       c.msg_off + MESSAGE_DATA_HEADER_LEN, plain);
	if (v) {
		if (v == -CHACHA20_POLY1305_EBADMSG)
			COUNT(c.st, auth_failed);
		else
			COUNT(c.st, errors);
		return TC_ACT_SHOT;
	}
	if (!replay_commit(c.kp, c.ctr)) {
		COUNT(c.st, replayed);
		return TC_ACT_SHOT;
	}
	/* authenticated and new: counts for the timers, keepalive or not */
	promote(c.peer, c.idx);
	if (roam(skb, &c, s))
		COUNT(c.st, errors);
	if (!plain) {
		count_rx(c.st, c.msg_len, 0);
		return TC_ACT_SHOT;	/* a keepalive: consumed */
	}
	v = open_inner(skb, &c);
	if (v)
		return v;
	if (open_strip(skb, &c, cfg)) {
		COUNT(c.st, errors);
		return TC_ACT_SHOT;
	}
	count_rx(c.st, c.msg_len, 1);
	return bpf_redirect(cfg->pair_ifindex, 0);
}

SEC("tc")
int wg_open(struct __sk_buff *skb)
{
	struct frame_info *fi = cryptbpf_scratch(&frame_scratch);
	struct wg_config *cfg = wg_config();
	__be16 dport;
	__u32 type;
	int r;

	if (!fi || !cfg)
		return TC_ACT_SHOT;
	r = frame_classify_skb(skb, fi, FRAME_L3_ONLY);
	if (r == FRAME_BAD_L2) {
		/* the kernel strips VLAN id 0 tags however many: a message
		 * could hide behind more than we walk */
		COUNT(stats_row(WG_NO_PEER_ROW), unparsed);
		return TC_ACT_SHOT;
	}
	if (!(fi->flags & FRAME_F_ADDRS) || fi->proto != IPPROTO_UDP ||
	    (fi->flags & FRAME_F_FRAG_LATER))
		return TC_ACT_UNSPEC;	/* not UDP (or no port to see): not ours */
	if (r < 0)
		return TC_ACT_UNSPEC;	/* an IP header the kernel drops: nothing to open */
	/* Not our port: TC_ACT_UNSPEC, so the next filter on this underlay
	 * runs (another interface's wg_open: the kernel picks a lower
	 * priority for each later filter, so the last attached runs first,
	 * and TC_ACT_OK would end the chain before the other saw its own) */
	if (bpf_skb_load_bytes(skb, fi->l4_off + offsetof(struct udphdr, dest), &dport, 2) ||
	    dport != cfg->listen_port)
		return TC_ACT_UNSPEC;
	if (fi->tags || (fi->flags & FRAME_F_VLAN_ID)) {
		COUNT(stats_row(WG_NO_PEER_ROW), tagged);
		return TC_ACT_SHOT;
	}
	if (fi->l3_off != WG_L3_OFF ||
	    bpf_skb_load_bytes(skb, fi->l4_off + WG_UDP_HLEN, &type, 4)) {
		COUNT(stats_row(WG_NO_PEER_ROW), malformed);
		return TC_ACT_SHOT;
	}
	switch (type) {
	case MESSAGE_HANDSHAKE_INITIATION:
	case MESSAGE_HANDSHAKE_RESPONSE:
	case MESSAGE_HANDSHAKE_COOKIE:
		return TC_ACT_OK;	/* the daemon's */
	case MESSAGE_DATA:
		return open_message(skb, fi, cfg);
	}
	COUNT(stats_row(WG_NO_PEER_ROW), malformed);
	return TC_ACT_SHOT;
}
