/* SPDX-License-Identifier: GPL-2.0 */
/* Shared (BPF + Python): zkp_filter's wire format, maps and statistics.
 *
 * Control messages are UDP datagrams to the control port whose payload is
 * exactly one struct zkp_msg (100 bytes; multi-byte fields big-endian):
 *
 *   off len field
 *     0   4 magic          ZKP_MAGIC ("CZKP")
 *     4   1 version        ZKP_VERSION
 *     5   1 type           ZKP_HELLO / ZKP_CHALLENGE / ZKP_PROOF / ZKP_ACCEPT
 *     6   2 reserved       0
 *     8   4 key_id         PROOF, ACCEPT: which secret
 *    12   4 slot           CHALLENGE, PROOF, ACCEPT: time slot of the challenge
 *    16   4 lifetime_s     ACCEPT: seconds the source stays authorized
 *    20  16 client_nonce   chosen by the client in HELLO, echoed after
 *    36  32 challenge      CHALLENGE, PROOF, ACCEPT
 *    68  32 proof          PROOF
 *
 * Exchange (every answer is sent by XDP itself, XDP_TX, same length as the
 * request, so the server never amplifies a spoofed request):
 *   client -> HELLO     {client_nonce}
 *   server -> CHALLENGE {client_nonce, slot, challenge}
 *             challenge = HMAC-SHA256(server_key, challenge_input{
 *                 "cbzkp v1", client addr, 0, slot, 0, client_nonce})
 *   client -> PROOF     {key_id, client_nonce, slot, challenge, proof}
 *             proof = HMAC-SHA256(verifier, challenge || addr[4] || key_id[4])
 *             verifier = HMAC-SHA256(secret, "cryptbpf zkp v1")
 *   server -> ACCEPT    {key_id, slot, lifetime_s, client_nonce, challenge}
 *             (only for a valid proof; anything else is dropped silently)
 */
#pragma once

#define ZKP_MAGIC   0x435a4b50  /* "CZKP" */
#define ZKP_VERSION 1

#define ZKP_HELLO     1
#define ZKP_CHALLENGE 2
#define ZKP_PROOF     3
#define ZKP_ACCEPT    4

#define ZKP_NONCE_LEN 16
#define ZKP_MAC_LEN   32
#define ZKP_VERIFIER_LEN 32

#define ZKP_MAX_KEYS       1024
#define ZKP_MAX_PORTS      64
#define ZKP_MAX_AUTHORIZED 65536
#define ZKP_MAX_USED       65536

struct zkp_msg {
	__be32 magic;
	__u8 version;
	__u8 type;
	__be16 reserved;
	__be32 key_id;
	__be32 slot;
	__be32 lifetime_s;
	__u8 client_nonce[16];
	__u8 challenge[32];
	__u8 proof[32];
};

/* authorized: IPv4 source (network byte order) -> who authorized it until when */
struct zkp_auth {
	__u64 expires_ns;      /* bpf_ktime_get_boot_ns() clock */
	__u32 key_id;
	__u32 slot;            /* slot of the challenge that was answered */
};

/* used_challenges: challenge (32 bytes) -> slot it belongs to. Entries of
 * slots older than the previous one are dead (a stale challenge is refused
 * before this map is consulted) and age out of the LRU. */
struct zkp_used {
	__u32 slot;
	__u32 key_id;
};

/* per_id_counters: key_id -> counters of that key; created when the key is
 * added, deleted when it is revoked. */
struct zkp_key_counters {
	__u64 accepted;     /* valid proofs */
	__u64 bad_proof;    /* proofs that did not verify */
	__u64 replayed;     /* valid proofs for an already answered challenge */
};

/* install_key (SYSCALL) argument: ZKP_SLOT_SERVER installs the challenge
 * key (any length 16..64), ZKP_SLOT_VERIFIER the 32-byte verifier of key_id. */
#define ZKP_SLOT_SERVER   0
#define ZKP_SLOT_VERIFIER 1

struct zkp_key_setup {
	__u32 which;
	__u32 key_id;
	__u32 len;
	__s32 err;          /* out: 0 or -errno */
	__u8 key[64];
};

struct zkp_filter_stats {
	__u64 passed;          /* protected-port packets from authorized sources */
	__u64 dropped;         /* protected-port packets from others */
	__u64 hellos;          /* challenges sent */
	__u64 accepted;        /* valid proofs: source authorized */
	__u64 bad_proof;       /* proof did not verify (wrong secret, other address) */
	__u64 bad_challenge;   /* challenge in the proof was not ours for this source */
	__u64 stale;           /* challenge older than the previous slot */
	__u64 replayed;        /* challenge already answered */
	__u64 unknown_key;     /* no verifier for key_id (or revoked) */
	__u64 malformed;       /* control-port datagram of the wrong size/magic/type, fragment, IP options */
	__u64 bad_l4;          /* any port: frame not classified (more VLAN tags or IPv6
	                        * extension headers than walked), or an IP/L4 header the
	                        * kernel drops (truncated, inconsistent, bad checksum) */
	__u64 expired;         /* protected-port packets whose authorization expired */
	__u64 no_key;          /* hello/proof before the server key was installed */
	__u64 errors;          /* helper failures (frame could not be resized...) */
	__u64 icmp_error;      /* ICMP errors quoting a protected port's flow with an
	                        * unauthorized remote end: dropped */
};
