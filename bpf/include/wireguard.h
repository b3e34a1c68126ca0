/* SPDX-License-Identifier: GPL-2.0 */
/* Shared (BPF + Python): WireGuard's wire format and the wireguard
 * program's map layouts. Names follow the WireGuard paper (section 5.4)
 * and the kernel's drivers/net/wireguard/messages.h.
 *
 * Every message starts with a little-endian 32-bit word: the type in its
 * low byte, three reserved zero bytes. All multi-byte integers are
 * little-endian on the wire (__u32/__u64 here hold little-endian values;
 * BPF on x86/arm64 reads them directly).
 *
 * docs/wireguard.md describes each message byte by byte. */
#pragma once

#define MESSAGE_INVALID 0
#define MESSAGE_HANDSHAKE_INITIATION 1
#define MESSAGE_HANDSHAKE_RESPONSE 2
#define MESSAGE_HANDSHAKE_COOKIE 3
#define MESSAGE_DATA 4

#define NOISE_PUBLIC_KEY_LEN 32
#define NOISE_SYMMETRIC_KEY_LEN 32
#define NOISE_TIMESTAMP_LEN 12		/* TAI64N */
#define NOISE_AUTHTAG_LEN 16
#define NOISE_HASH_LEN 32
#define COOKIE_LEN 16
#define COOKIE_NONCE_LEN 24		/* XChaCha20-Poly1305 */
#define MESSAGE_MAC_LEN 16
#define MESSAGE_PADDING_MULTIPLE 16

#define MESSAGE_INITIATION_LEN 148
#define MESSAGE_RESPONSE_LEN 92
#define MESSAGE_COOKIE_REPLY_LEN 64
#define MESSAGE_DATA_HEADER_LEN 16	/* type, receiver index, counter */
#define MESSAGE_DATA_MIN_LEN 32		/* header + tag: a keepalive */

struct message_header {
	__u32 type;			/* MESSAGE_*, little-endian, 3 reserved zero bytes */
};

struct message_macs {
	__u8 mac1[MESSAGE_MAC_LEN];
	__u8 mac2[MESSAGE_MAC_LEN];
};

struct message_handshake_initiation {
	struct message_header header;
	__u32 sender_index;
	__u8 unencrypted_ephemeral[NOISE_PUBLIC_KEY_LEN];
	__u8 encrypted_static[NOISE_PUBLIC_KEY_LEN + NOISE_AUTHTAG_LEN];
	__u8 encrypted_timestamp[NOISE_TIMESTAMP_LEN + NOISE_AUTHTAG_LEN];
	struct message_macs macs;
};

struct message_handshake_response {
	struct message_header header;
	__u32 sender_index;
	__u32 receiver_index;
	__u8 unencrypted_ephemeral[NOISE_PUBLIC_KEY_LEN];
	__u8 encrypted_nothing[NOISE_AUTHTAG_LEN];
	struct message_macs macs;
};

struct message_handshake_cookie {
	struct message_header header;
	__u32 receiver_index;
	__u8 nonce[COOKIE_NONCE_LEN];
	__u8 encrypted_cookie[COOKIE_LEN + NOISE_AUTHTAG_LEN];
};

/* Followed by the sealed, zero-padded inner packet and its 16-byte tag;
 * nonce = 4 zero bytes || counter (LE64), empty AAD. */
struct message_data {
	struct message_header header;
	__u32 key_idx;			/* the receiver's index of this keypair */
	__u64 counter;
};

/* --- the wireguard program's maps: added by the data plane below --- */

/* Limits and constants of the data plane (wireguard-go's and the kernel
 * module's names where they have one). */
#define REJECT_AFTER_MESSAGES 18446744073709543423ULL	/* 2^64 - 2^13 - 1 */
#define REJECT_AFTER_TIME_NS 180000000000ULL		/* REJECT_AFTER_TIME, 180 s */
#define WG_MAX_PEERS 256
#define WG_MAX_KEYPAIRS 768		/* WG_MAX_PEERS x (current, previous, next) */
#define WG_STATS_ROWS 257		/* one per peer id + the no-peer row */
#define WG_NO_PEER_ROW 256
/* Replay window as the kernel module's: 8192 bits, one 64-bit word of them
 * redundant, so 8128 counters behind the highest accepted one are judged
 * exactly; older ones are refused. */
#define COUNTER_BITS_TOTAL 8192
#define COUNTER_WORDS 128		/* COUNTER_BITS_TOTAL / 64 */
#define COUNTER_WINDOW_SIZE 8128	/* COUNTER_BITS_TOTAL - 64 */
#define WG_NEED_HANDSHAKE_INTERVAL_NS 1000000000ULL	/* events per peer: at most 1/s */
#define WG_KEY_NONE 0				/* no keypair in a slot (local indices are never 0) */

/* struct wg_endpoint.family */
#define WG_AF_NONE 0
#define WG_AF_INET 4
#define WG_AF_INET6 6

/* An address of either family: IPv4 in the first 4 bytes, rest zero. */
struct wg_addr {
	__u8 a[16];
};

/* Where a peer's messages go (and come from), and our address towards it. */
struct wg_endpoint {
	__u8 family;			/* WG_AF_*; WG_AF_NONE: no endpoint known */
	__u8 pad;
	__be16 port;			/* the peer's UDP port */
	__u32 ifindex;			/* underlay device the messages leave through */
	struct wg_addr addr;		/* the peer's address */
	struct wg_addr local;		/* ours: source address of what we send */
};

/* keypairs map: local (receiver) index -> keypair. A new keypair is a new
 * hash element (BPF_F_NO_PREALLOC): the send counter and the replay window
 * start with it and are never reset under a key in use. BPF keeps replay
 * state after this part of the value (struct wg_keypair_slot). */
struct wg_keypair {
	__u32 peer_id;
	__u32 remote_index;		/* receiver index of messages we send */
	__u64 send_counter;		/* next counter to send; BPF fetch-adds */
	__u64 created_ns;		/* CLOCK_MONOTONIC when the handshake completed: BPF
					 * refuses the keypair REJECT_AFTER_TIME later, with or
					 * without a daemon */
	__u8 send_key[NOISE_SYMMETRIC_KEY_LEN];
	__u8 recv_key[NOISE_SYMMETRIC_KEY_LEN];
};

/* The receive side's counter state (WireGuard's struct noise_replay_counter). */
struct wg_replay {
	__u64 counter;			/* highest accepted counter + 1; 0 = none */
	__u64 backtrack[COUNTER_WORDS];
};

/* peer_keys map (array, peer id): which keypairs a peer has, by local
 * index (WG_KEY_NONE = none). Userspace installs; BPF promotes `next` to
 * `current` on its first authenticated packet (the responder's rule). */
struct wg_peer_keys {
	__u32 current;
	__u32 previous;
	__u32 next;
	__u32 configured;		/* 1: the peer exists */
};

/* allowed_v4 / allowed_v6 LPM keys -> __u32 peer id */
struct wg_lpm_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct wg_lpm_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* config map (one element): the interface this instance serves. */
struct wg_config {
	__u32 pair_ifindex;		/* the veth end facing the user's interface (wg0's peer) */
	__be16 listen_port;		/* our UDP port */
	__u16 mtu;			/* wg0's: padding stops there (the kernel's
					 * calculate_skb_padding(), wireguard-go's too) */
	__u8 wg_mac[6];			/* wg0's address: destination of opened packets */
	__u8 pair_mac[6];		/* the pair end's: their source */
};

/* NeedHandshake events (ring buffer `events`). */
#define WG_EVENT_NEED_HANDSHAKE 1
struct wg_event {
	__u32 type;			/* WG_EVENT_* */
	__u32 peer_id;
};

/* Per-peer counters (per-CPU array, row = peer id; row WG_NO_PEER_ROW for
 * what belongs to no peer). Byte counts are whole transport messages, as
 * `wg show` counts them; *_ns are bpf_ktime_get_ns() (CLOCK_MONOTONIC),
 * userspace takes the largest over CPUs. Drop names as encrypted_tunnel's. */
struct wg_stats {
	__u64 tx_packets;		/* sealed and sent (keepalives included) */
	__u64 tx_bytes;
	__u64 rx_packets;		/* authenticated and accepted */
	__u64 rx_bytes;
	__u64 last_tx_ns;
	__u64 last_rx_ns;
	__u64 last_data_tx_ns;		/* non-keepalive */
	__u64 last_data_rx_ns;
	__u64 keepalive_tx;
	__u64 keepalive_rx;
	__u64 auth_failed;		/* dropped: tag wrong */
	__u64 replayed;			/* dropped: counter seen or behind the window */
	__u64 unknown_key;		/* dropped: receiver index of no keypair */
	__u64 malformed;		/* dropped: lengths/headers inconsistent, unknown message type */
	__u64 too_big;			/* dropped: sealed packet would exceed the underlay MTU */
	__u64 no_key;			/* dropped on send: no current keypair (NeedHandshake sent) */
	__u64 counter_exhausted;	/* dropped: REJECT_AFTER_MESSAGES reached */
	__u64 key_expired;		/* dropped: keypair older than REJECT_AFTER_TIME */
	__u64 unsupported;		/* dropped: GSO super-packet, not IPv4/IPv6 */
	__u64 not_allowed;		/* dropped: inner source outside the peer's AllowedIPs */
	__u64 no_route;			/* dropped on send: no peer's AllowedIPs hold the destination */
	__u64 no_endpoint;		/* dropped on send: the peer's endpoint is unknown */
	__u64 tagged;			/* dropped: a message to our port with a VLAN id or tags left */
	__u64 unparsed;			/* dropped: a frame the classifier cannot read */
	__u64 errors;			/* dropped: a helper failed */
	__u64 events;			/* NeedHandshake events sent */
	__u64 events_lost;		/* ... that did not fit in the ring buffer */
};
