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
 *
 * Each key id has one mode, fixed when it is registered: ZKP_MODE_HMAC (the
 * PROOF above; the server stores the verifier) or ZKP_MODE_SCHNORR (the
 * server stores only the public key A = a*G). A Schnorr key answers the
 * CHALLENGE with a ZK_PROOF instead of a PROOF: struct zkp_zk_proof, 164
 * bytes, whose first 68 bytes are those of zkp_msg (type ZKP_ZK_PROOF,
 * lifetime_s 0), then
 *
 *    68  64 V              commitment V = v*G: X || Y, 32 bytes each, big-endian
 *   132  32 r              response r = v - a*c mod n, big-endian, 1 <= r <= n-1
 *
 * a non-interactive Schnorr proof of knowledge of a = log_G(A) on P-256,
 * RFC 8235 section 3 (Fiat-Shamir):
 *
 *   c = SHA-256(G || V || A || UserID || OtherInfo)  read as a big-endian
 *       256-bit integer and reduced mod n (the verifier computes c itself;
 *       it is never on the wire)
 *
 * with every item prefixed by its length as 4 bytes big-endian (RFC 8235
 * section 2.2), OtherInfo made of length-prefixed subitems the same way.
 * struct zkp_zk_hash_input is that input, byte for byte (297 bytes):
 *
 *   off len
 *     0   4 00 00 00 41        len(G) = 65
 *     4  65 G                  04 || Gx || Gy (SEC1 uncompressed, big-endian)
 *    69   4 00 00 00 41
 *    73  65 V                  04 || Vx || Vy
 *   138   4 00 00 00 41
 *   142  65 A                  04 || Ax || Ay, the registered public key
 *   207   4 00 00 00 04        len(UserID)
 *   211   4 UserID             key id, big-endian
 *   215   4 00 00 00 4e        len(OtherInfo) = 78
 *   219   4 00 00 00 10        OtherInfo: len(label) = 16
 *   223  16 label              ZKP_SCHNORR_LABEL "cbzkp schnorr v1" (ASCII, no NUL)
 *   239   4 00 00 00 20        len(challenge) = 32
 *   243  32 challenge          the XDP-issued challenge being answered
 *   275   4 00 00 00 04
 *   279   4 client address     IPv4 source of the ZK_PROOF (network order)
 *   283   4 00 00 00 04
 *   287   4 server address     IPv4 destination of the ZK_PROOF (network order)
 *   291   4 00 00 00 02
 *   295   2 service            control port of the filter, big-endian
 *
 * The verifier accepts iff A is a registered key (validated at registration:
 * on the curve, not the identity), V is a point on the curve (64 bytes that
 * satisfy the curve equation: the identity has no such encoding), 1 <= r <=
 * n-1 (r = 0 is refused: an honest prover draws a new v instead, chance
 * 2^-256), and V == r*G + c*A as points (x and y). The ACCEPT is the 100-byte
 * zkp_msg above (the reply is shorter than the request).
 */
#pragma once

#define ZKP_MAGIC   0x435a4b50  /* "CZKP" */
#define ZKP_VERSION 1

#define ZKP_HELLO     1
#define ZKP_CHALLENGE 2
#define ZKP_PROOF     3
#define ZKP_ACCEPT    4
#define ZKP_ZK_PROOF  5

/* key modes */
#define ZKP_MODE_HMAC    1
#define ZKP_MODE_SCHNORR 2

#define ZKP_NONCE_LEN 16
#define ZKP_MAC_LEN   32
#define ZKP_VERIFIER_LEN 32

#define ZKP_MAX_KEYS       1024
#define ZKP_MAX_PORTS      64
#define ZKP_MAX_AUTHORIZED 65536
#define ZKP_MAX_USED       65536
#define ZKP_MAX_ZK_KEYS    16      /* Schnorr keys: 148 KB of table each, preallocated */

#define ZKP_SCHNORR_LABEL_LEN 16   /* "cbzkp schnorr v1" */
#define ZKP_POINT_LEN         65   /* 04 || X || Y */
#define ZKP_SCALAR_LEN        32
#define ZKP_OTHER_INFO_LEN    78
#define ZKP_ZK_KEY_LOCK_BYTES 8    /* bpf_spin_lock (+ pad) before struct zkp_zk_key */

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

/* ZK_PROOF: a Schnorr proof (ZKP_MODE_SCHNORR keys), 164 bytes. */
struct zkp_zk_proof {
	__be32 magic;
	__u8 version;
	__u8 type;
	__be16 reserved;
	__be32 key_id;
	__be32 slot;
	__be32 lifetime_s;
	__u8 client_nonce[16];
	__u8 challenge[32];
	__u8 v[64];            /* V: X || Y */
	__u8 r[32];
};

/* c = SHA-256 of this (layout above; lengths big-endian). Byte arrays
 * only: no padding anywhere. */
struct zkp_zk_hash_input {
	__u8 g_len[4];
	__u8 g[65];
	__u8 v_len[4];
	__u8 v[65];
	__u8 a_len[4];
	__u8 a[65];
	__u8 user_id_len[4];
	__u8 user_id[4];
	__u8 other_info_len[4];
	__u8 label_len[4];
	__u8 label[16];
	__u8 challenge_len[4];
	__u8 challenge[32];
	__u8 client_addr_len[4];
	__u8 client_addr[4];
	__u8 server_addr_len[4];
	__u8 server_addr[4];
	__u8 service_len[4];
	__u8 service[2];
};

/* zkp_zk_keys: key id -> ZKP_ZK_KEY_LOCK_BYTES of bpf_spin_lock, then this.
 * Written whole by the control plane at registration (tat_ns 0); tat_ns is
 * then the key's verification budget, advanced by BPF under the lock. The
 * key's precomputed multiples are in p256_keys (ecdsa_p256.h), same id. */
struct zkp_zk_key {
	__u64 tat_ns;          /* GCRA theoretical arrival time (bpf_ktime_get_ns) */
	__u64 interval_ns;     /* one verification per interval_ns on average */
	__u32 burst;           /* verifications back to back */
	__u32 _pad;
	__u8 point[68];        /* A: 04 || X || Y, then 3 zero bytes */
	__u32 _pad2;
};

/* zkp_budget (slot 0): the global verification budget, after its lock. */
struct zkp_budget {
	__u64 tat_ns;
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
	__u64 over_budget;  /* Schnorr proofs refused: this key's verification budget spent */
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
	__u64 verifications;   /* Schnorr verifications run (the budgeted work) */
	__u64 bad_point;       /* Schnorr: V not a point on the curve (the identity included) */
	__u64 bad_scalar;      /* Schnorr: r = 0 or r >= n */
	__u64 over_key_budget; /* Schnorr: the key's verification budget spent */
	__u64 over_global_budget; /* Schnorr: the global verification budget spent */
};
