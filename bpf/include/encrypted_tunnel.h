/* SPDX-License-Identifier: GPL-2.0 */
/* Shared (BPF + Python): encrypted_tunnel's wire format, map keys and
 * values, and statistics. docs/encrypted_tunnel.md describes the format
 * byte by byte; src/cryptbpf/tunnel/wire.py implements it a second time.
 *
 * Transport mode between two hosts. The original IPv4 header stays in
 * front (addresses, id, fragment fields, TOS, TTL); its protocol becomes
 * TUNNEL_IPPROTO and total length and checksum are rewritten:
 *
 *   IPv4 header (20) | tunnel_hdr (12) | sealed | tag (16) | csum_fix (2)
 *
 *   sealed, chacha20-poly1305:  ChaCha20(IP payload || next_proto)
 *   sealed, aes-256-cbc-hmac:   AES-256-CBC(IP payload || next_proto || PKCS#7)
 *
 * All multi-byte fields are big-endian (network order). The tag
 * authenticates tunnel_aad (the outer fields that matter + the tunnel
 * header) and the sealed bytes; csum_fix is not authenticated (see
 * TUNNEL_CSUM_LEN). */
#pragma once

#define TUNNEL_IPPROTO 253		/* RFC 3692: for experimentation */
#define TUNNEL_VERSION 1

#define TUNNEL_SUITE_CHACHA20_POLY1305 1
#define TUNNEL_SUITE_AES256_CBC_HMAC_SHA256 2
#define TUNNEL_PROG_SLOTS 8		/* tail-call table: suite * 2 + direction */
#define TUNNEL_DIR_SEAL 0
#define TUNNEL_DIR_OPEN 1

#define TUNNEL_IP_HLEN 20		/* IPv4 without options (others: dropped) */
#define TUNNEL_HDR_LEN 12
#define TUNNEL_AAD_LEN 24
#define TUNNEL_NEXT_LEN 1		/* next_proto: the original IP protocol */
#define TUNNEL_TAG_LEN 16		/* Poly1305 tag; HMAC-SHA256 truncated to 128 bits */
/* csum_fix: 2 bytes after the tag. For an inner TCP (UDP) packet it is
 * chosen so that ~(one's complement sum of the bytes from the sealed data
 * to the end) equals the two bytes at sealed offset 16 (6): the kernel's
 * or a NIC's deferred CHECKSUM_PARTIAL computation, which writes exactly
 * that there, then rewrites what is already there. 0 for other protocols.
 * Outside the tag, so receivers check the rule instead. */
#define TUNNEL_CSUM_LEN 2
#define TUNNEL_OVERHEAD_CHACHA 31	/* hdr + next + tag + csum_fix */
#define TUNNEL_OVERHEAD_CBC 47		/* + 1..16 bytes of PKCS#7 padding */
#define TUNNEL_AES_BLOCK 16

#define TUNNEL_KEY_LEN 32
/* Replay window: counters more than 2048 behind the highest accepted one
 * are refused; the bitmap has 4096 bits so word-wise clearing never drops
 * a bit inside the window. */
#define TUNNEL_REPLAY_WINDOW 2048	/* packets, per peer, direction and key */
#define TUNNEL_REPLAY_WORDS 64
/* Senders stop (drop, count counter_exhausted) at 2^60 packets under one
 * key: a counter never wraps, so a (key, nonce) pair never repeats. */
#define TUNNEL_COUNTER_LIMIT 1152921504606846976

#define TUNNEL_MAX_PEERS 64
#define TUNNEL_STATS_ROWS 65		/* one per peer index + row 64: no peer */
#define TUNNEL_NO_PEER_ROW 64
/* AES contexts per peer: {tx, rx} x {slot 0, 1} x {cbc, ecb} */
#define TUNNEL_AES_PER_PEER 8
#define TUNNEL_AES_CTXS 512

/* On the wire right after the IPv4 header. */
struct tunnel_hdr {
	__u8 version;		/* TUNNEL_VERSION */
	__u8 suite;		/* TUNNEL_SUITE_* */
	__u8 key_id;		/* key epoch; receivers look it up in slot key_id & 1 */
	__u8 flags;		/* 0 */
	__be32 counter_hi;	/* 64-bit per-key packet counter, big-endian */
	__be32 counter_lo;
};

/* Authenticated, never sent as such: the AEAD's AAD / first HMAC input. */
struct tunnel_aad {
	__be32 saddr;
	__be32 daddr;
	__be16 ip_id;
	__be16 frag_off;	/* flags + fragment offset of the outer header */
	struct tunnel_hdr hdr;
};

/* Key of the per-key maps: a peer (IPv4 address as on the wire) + slot. */
struct tunnel_slot_key {
	__be32 peer;
	__u32 slot;		/* 0 or 1 */
};

/* peers map: IPv4 address (as on the wire) -> configuration. Written by
 * userspace only; holds no counters, so rewriting it never loses one. */
struct tunnel_peer {
	__u32 index;		/* row in stats, block in the AES context table */
	__be32 local;		/* our address towards this peer (key derivation) */
	__u8 suite;		/* TUNNEL_SUITE_* */
	__u8 tx_slot;		/* slot of the key we send with */
	__u8 pad[2];
};

/* tx_keys map value. A new key is a new hash element (the map is
 * BPF_F_NO_PREALLOC): a CPU still holding the old element keeps counting
 * in it, so a counter is never reset under a key in use. */
struct tunnel_tx_key {
	__u64 counter;		/* next counter to use; BPF fetch-adds */
	__u8 key_id;
	__u8 pad[7];
	__u8 key[32];		/* chacha20-poly1305 key (unused for CBC) */
	__u32 mac_istate[8];	/* HMAC-SHA256 key as pad states (CBC) */
	__u32 mac_ostate[8];
};

/* rx_keys map value, first part (the replay state and a lock follow it in
 * the map value; see struct tunnel_rx_slot in the BPF program). */
struct tunnel_rx_key {
	__u8 key_id;
	__u8 pad[7];
	__u8 key[32];
	__u32 mac_istate[8];
	__u32 mac_ostate[8];
};

struct tunnel_replay {
	__u64 top;		/* highest accepted counter + 1; 0 = none yet */
	__u64 accepted;		/* packets accepted under this key */
	__u64 last_ns;		/* bpf_ktime_get_ns() of the last one */
	__u64 bitmap[64];	/* bit c % 4096 set: counter c seen */
};

/* SYSCALL program tunnel_mac_setup: raw HMAC key in, pad states out. */
struct tunnel_mac_setup {
	__u8 key[32];
	__u32 istate[8];
	__u32 ostate[8];
	__s32 err;
	__u32 pad;
};

/* Per-peer counters (per-CPU array, row = tunnel_peer.index). */
struct tunnel_stats {
	__u64 tx_packets;	/* sealed and sent */
	__u64 tx_bytes;		/* IP payload bytes sealed */
	__u64 rx_packets;	/* opened and delivered */
	__u64 rx_bytes;
	__u64 auth_failed;	/* dropped: tag/MAC (or, after it, CBC padding) wrong */
	__u64 replayed;		/* dropped: counter seen or older than the window */
	__u64 unknown_key;	/* dropped: no key for key_id (or wrong suite) */
	__u64 malformed;	/* dropped: lengths/header inconsistent */
	__u64 too_big;		/* dropped: sealed packet would exceed the MTU */
	__u64 no_key;		/* dropped on send: no sending key installed */
	__u64 counter_exhausted;/* dropped on send: counter limit, rekey needed */
	__u64 csum_collision;	/* dropped on send: deferred checksum unfixable (2^-16) */
	__u64 unsupported;	/* dropped: GSO super-packet, IP options */
	__u64 clear_from_peer;	/* dropped: unencrypted packet from a peer */
	__u64 not_peer;		/* dropped: tunnel packet from an unknown address */
	__u64 errors;		/* dropped: a helper or kfunc failed */
	__u64 xdp_not_peer;	/* XDP drops, before an skb exists: */
	__u64 xdp_malformed;
	__u64 xdp_unknown_key;
	__u64 xdp_stale;	/* counter behind the replay window */
	__u64 xdp_clear_from_peer;
	__u64 tagged;		/* dropped: a peer's traffic with a VLAN tag left in the
				 * frame or a VLAN id other than 0 (never sealed/opened) */
	__u64 unparsed;		/* dropped (no-peer row): more VLAN tags than walked,
				 * the address cannot be seen */
	__u64 xdp_tagged;
	__u64 xdp_unparsed;
};
