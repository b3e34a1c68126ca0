/* SPDX-License-Identifier: GPL-2.0 */
/* Shared (BPF + Python): signed_auth's wire format, map values, counters.
 *
 * Wire format. A signed datagram is an ordinary IPv4/UDP datagram to a
 * protected port whose UDP payload is
 *
 *     data || trailer                      (trailer: the last 80 bytes)
 *
 * struct signed_auth_trailer, all integers big-endian (network order):
 *
 *     offset size field
 *          0    2 magic    0x5341 ("SA")
 *          2    1 version  1
 *          3    1 flags    0 (reserved; anything else is rejected)
 *          4    4 key_id   which trusted key signed it
 *          8    8 seq      per-key sequence number, strictly fresh: by
 *                            specification CLOCK_REALTIME ns at signing,
 *                            max(previous + 1, now) (cryptbpf.signing.Signer)
 *         16   64 sig      ECDSA P-256 signature, IEEE P1363 r || s
 *
 * The signature is over SHA-256 of  signed_hdr || data,  where
 * struct signed_auth_signed_hdr (32 bytes, big-endian) repeats the first
 * 16 trailer bytes and adds what the network could change:
 *
 *          0   16 magic, version, flags, key_id, seq (as in the trailer)
 *         16    4 saddr    IPv4 source address
 *         20    4 daddr    IPv4 destination address
 *         24    2 sport    UDP source port
 *         26    2 dport    UDP destination port
 *         28    4 data_len bytes of data (UDP payload minus the trailer)
 *
 * so a spoofed source, another destination port or address, a changed
 * payload, and a trailer moved to another datagram all fail verification.
 * The receiver removes the trailer: the socket gets exactly `data`.
 *
 * Maps (all keyed by the __u32 key id, host order):
 *   sa_keys    struct signed_auth_key      written by the control plane only
 *   sa_state   8-byte bpf_spin_lock, then struct signed_auth_replay
 *              (SIGNED_AUTH_STATE_LOCK_BYTES); written by BPF, created by
 *              the control plane when a key is trusted with its floor set
 *              (top = (wall-clock ns - max_skew_s) | 63, every bit set), and
 *              raised to that floor, never lowered, on re-trust
 *   key_stats  struct signed_auth_counters, per CPU, per key
 *   stats      struct signed_auth_counters, per CPU, slot 0: all keys
 *   sa_ports   struct signed_auth_ports, slot 0: protected UDP ports
 */
#pragma once

#define SIGNED_AUTH_MAGIC        0x5341
#define SIGNED_AUTH_VERSION      1
#define SIGNED_AUTH_TRAILER_LEN  80
#define SIGNED_AUTH_HDR_LEN      32
#define SIGNED_AUTH_SIG_LEN      64

/* Replay window: a bitmap of SIGNED_AUTH_REPLAY_WORDS 64-bit words over the
 * most recent sequence numbers (RFC 6479 layout); a sequence number more
 * than SIGNED_AUTH_REPLAY_WINDOW below the highest one seen is stale.
 * A new window starts at a floor, not at 0: top = floor | 63 with every bit
 * set, so each number <= top reads as seen (replayed) or stale, and the
 * first number above it slides the window as usual (the word holding top
 * keeps its bits, all of them <= top). */
#define SIGNED_AUTH_REPLAY_WORDS  16
#define SIGNED_AUTH_REPLAY_WINDOW 960   /* (WORDS - 1) * 64 */

/* struct signed_auth_key.state */
#define SIGNED_AUTH_KEY_ACTIVE   1
#define SIGNED_AUTH_KEY_REVOKED  2

/* bytes before struct signed_auth_replay in a sa_state value */
#define SIGNED_AUTH_STATE_LOCK_BYTES 8

#define SIGNED_AUTH_PORT_WORDS 1024    /* 65536 bits */

struct signed_auth_trailer {
	__be16 magic;
	__u8   version;
	__u8   flags;
	__be32 key_id;
	__be64 seq;
	__u8   sig[64];
};

struct signed_auth_signed_hdr {
	__be16 magic;
	__u8   version;
	__u8   flags;
	__be32 key_id;
	__be64 seq;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__be32 data_len;
};

/* Control-plane view of a trusted key (value of sa_keys). */
struct signed_auth_key {
	__u32 state;            /* SIGNED_AUTH_KEY_ACTIVE / _REVOKED */
	__u32 burst;            /* verifications this key may use back to back */
	__u64 interval_ns;      /* one verification per interval_ns on average */
	__u8  fingerprint[32];  /* SHA-256 of the 65-byte public key (public) */
};

/* Per-key replay window and verification budget (GCRA). */
struct signed_auth_replay {
	__u64 top;                               /* highest sequence accepted */
	__u64 bits[SIGNED_AUTH_REPLAY_WORDS];    /* seq s accepted: bit s % 1024 */
	__u64 tat_ns;      /* budget: theoretical arrival time (bpf_ktime_get_ns) */
};

/* Global verification budget (value of sa_budget after its lock word). */
struct signed_auth_budget {
	__u64 tat_ns;
};

struct signed_auth_ports {
	__u64 bits[SIGNED_AUTH_PORT_WORDS];      /* port p: bit p % 64 of word p / 64 */
};

/* Counters: per key (key_stats) and for everything (stats). Reasons that
 * have no trusted key to charge (malformed, no_trailer, unknown_key, ...)
 * are counted in stats only. */
struct signed_auth_counters {
	__u64 verified;           /* valid: trailer removed, passed to the stack */
	__u64 last_seen_ns;       /* bpf_ktime_get_ns() of the last valid one */
	__u64 verifications;      /* ECDSA verifications run (the budgeted work) */
	__u64 bad_signature;      /* dropped: signature invalid */
	__u64 replayed;           /* dropped: sequence already accepted */
	__u64 stale;              /* dropped: sequence below the window */
	__u64 revoked;            /* dropped: key revoked */
	__u64 over_key_budget;    /* dropped: this key's verification budget spent */
	__u64 over_global_budget; /* dropped: the global verification budget spent */
	__u64 unknown_key;        /* dropped: key id not trusted */
	__u64 no_trailer;         /* dropped: no valid magic/version/flags */
	__u64 short_payload;      /* dropped: payload shorter than a trailer */
	__u64 malformed;          /* dropped: IP/UDP header or lengths the kernel drops, or UDP length != IP payload */
	__u64 fragmented;         /* dropped: first fragment (IPv4/IPv6) to a protected port */
	__u64 unsupported;        /* dropped: IPv6 UDP to a protected port (not verified) */
	__u64 unparsed;           /* dropped: more VLAN tags or IPv6 extension headers than the parser walks */
	__u64 ip_options;         /* dropped: IPv4 options other than NOP/EOL to a protected port */
	__u64 errors;             /* dropped: a helper or internal failure */
};
