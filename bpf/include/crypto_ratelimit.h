/* SPDX-License-Identifier: GPL-2.0 */
/* Shared (BPF + Python): crypto_ratelimit's wire format, configuration,
 * state and statistics.
 *
 * Protected UDP ports: every IPv4 source has a token bucket (burst tokens,
 * refilled at rate per second). A datagram within budget passes; one over
 * budget (or any datagram from a source that has not solved a puzzle yet,
 * in under-attack mode) is answered by XDP with a CHALLENGE. The client
 * solves it and sends a SOLUTION to the same port; a valid one refills the
 * bucket and is answered with ADMIT; the client then resends its data.
 *
 * Control messages are UDP payloads of exactly one struct pow_msg (56
 * bytes; multi-byte fields big-endian) to a protected port. A payload that
 * starts with POW_MAGIC but is not a well-formed SOLUTION or REQUEST is
 * dropped.
 *
 * The challenge replaces the datagram that triggered it, resized to 56
 * bytes of payload. Where the driver cannot grow a shorter datagram (native
 * XDP on veth), the client asks with a REQUEST (any fields, 56 bytes) and
 * gets the CHALLENGE in its place. Challenges per source and slot are
 * bounded (max_challenges), which bounds what a spoofed source can reflect.
 *
 *   off len field
 *     0   4 magic        POW_MAGIC ("CBPW")
 *     4   1 version      POW_VERSION
 *     5   1 type         POW_CHALLENGE / POW_SOLUTION / POW_ADMIT / POW_REQUEST
 *     6   1 difficulty   leading zero bits required, 0..32
 *     7   1 reserved     0
 *     8   4 slot         time slot the challenge was issued in
 *    12   4 tokens       ADMIT: tokens granted (the burst)
 *    16  32 challenge    HMAC-SHA256(server_key, challenge_input{"cbpow v1",
 *                        client addr, 0, slot, difficulty, 0...})
 *    48   8 nonce        SOLUTION, ADMIT: the client's answer
 *
 * A solution is valid when SHA-256(challenge || nonce) (40 bytes) starts
 * with at least `difficulty` zero bits, the challenge is the one the server
 * issues to that source address for that slot and difficulty, the slot is
 * the current or the previous one, and that exact (challenge, nonce) has
 * not been accepted before.
 */
#pragma once

#define POW_MAGIC   0x43425057  /* "CBPW" */
#define POW_VERSION 1

#define POW_CHALLENGE 1
#define POW_SOLUTION  2
#define POW_ADMIT     3
#define POW_REQUEST   4

#define POW_MAX_DIFFICULTY 32
#define POW_WINDOW_NS 1000000000ULL   /* load is measured over 1 s windows */

#define POW_MAX_PORTS   64
#define POW_MAX_SOURCES 65536
#define POW_MAX_USED    65536

struct pow_msg {
	__be32 magic;
	__u8 version;
	__u8 type;
	__u8 difficulty;
	__u8 reserved;
	__be32 slot;
	__be32 tokens;
	__u8 challenge[32];
	__u8 nonce[8];
};

/* pow_config[0]: written by userspace, read per packet. */
struct pow_config {
	__u64 interval_ns;      /* 1e9 / rate: one token per interval */
	__u64 tolerance_ns;     /* (burst - 1) * interval_ns */
	__u32 burst;            /* bucket size (tokens) */
	__u32 max_challenges;   /* challenges per source per slot (reflection bound) */
	__u32 load_high_pps;    /* raise difficulty when a window sees more packets/s */
	__u32 load_low_pps;     /* lower it when a window sees fewer */
	__u8 min_difficulty;
	__u8 max_difficulty;
	__u8 under_attack;      /* 1: sources that never solved a puzzle are challenged */
	__u8 _pad[5];
};

/* pow_state[0]: shared by all CPUs. */
struct pow_state {
	__u64 window_start_ns;  /* bpf_ktime_get_boot_ns() clock */
	__u64 window_packets;   /* packets to protected ports in this window */
	__u64 last_pps;         /* packets/s of the last complete window */
	__u32 difficulty;       /* what new challenges ask for */
	__u32 _pad;
};

/* buckets: IPv4 source (network byte order) -> its bucket (GCRA form of a
 * token bucket: the bucket is full when tat_ns <= now, empty when
 * tat_ns - now > tolerance_ns). */
struct pow_bucket {
	__u64 tat_ns;           /* theoretical arrival time of the next packet */
	__u32 chal_slot;        /* slot of the challenges counted in chal_count */
	__u32 chal_count;
	__u32 solved;           /* puzzles this source solved */
	__u32 verified;         /* 1 once it solved one (under-attack mode) */
};

/* used_solutions: SHA-256(challenge || nonce) -> slot of the challenge */
struct pow_used {
	__u32 slot;
	__u32 _pad;
};

/* install_key (SYSCALL) argument: the server's challenge key. */
struct pow_key_setup {
	__u32 len;
	__s32 err;              /* out: 0 or -errno */
	__u8 key[64];
};

/* check_difficulty (SYSCALL): the data path's leading-zero test on a digest. */
struct pow_zero_check {
	__u8 digest[32];
	__u32 difficulty;
	__s32 ok;               /* out: 1 meets the difficulty, 0 not */
};

struct crypto_ratelimit_stats {
	__u64 passed;           /* datagrams within their source's budget */
	__u64 challenged;       /* over budget (or unverified, under attack): challenge sent */
	__u64 limited;          /* over budget and out of challenges for this slot: dropped */
	__u64 solved;           /* valid solutions: bucket refilled, ADMIT sent */
	__u64 bad_pow;          /* too few leading zero bits */
	__u64 bad_challenge;    /* challenge not ours for this source and difficulty */
	__u64 stale;            /* challenge older than the previous slot */
	__u64 replayed;         /* solution already accepted */
	__u64 malformed;        /* POW_MAGIC payload that is not a well-formed SOLUTION */
	__u64 bad_l4;           /* any port: frame not classified (more VLAN tags or IPv6
	                         * extension headers than walked) or an IP/UDP header the
	                         * kernel drops; protected port: first fragment, IP
	                         * options, UDP length != IP payload */
	__u64 ipv6_dropped;     /* IPv6 datagrams to protected ports (no IPv6 buckets) */
	__u64 no_key;           /* no server key installed: dropped */
	__u64 requests;         /* REQUEST messages answered */
	__u64 no_room;          /* datagram too short to become a challenge here: dropped */
	__u64 raised;           /* difficulty steps up */
	__u64 lowered;          /* difficulty steps down */
	__u64 errors;           /* helper failures */
};
