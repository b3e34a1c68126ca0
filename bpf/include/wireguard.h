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
