/* SPDX-License-Identifier: GPL-2.0 */
/* Shared (BPF + Python): crypto_offload's wire format, map values, codes.
 *
 * A request is one UDP datagram to the service port (the `udp_port` knob).
 * Every multi-byte field on the wire is big-endian (network byte order).
 *
 *   request  = offload_req_hdr (16 bytes) || body
 *     SHA256: body = data[data_len] || pad          key_id 0, aad_len 0
 *     HMAC:   body = data[data_len] || pad          key_id: an HMAC key, aad_len 0
 *     SEAL:   body = nonce[12] || aad[aad_len] || plaintext[data_len]
 *     pad: zero bytes up to a 44-byte request (the size of the reply) when
 *     16 + data_len is shorter; their value is ignored.
 *   reply    = offload_reply_hdr (12 bytes) || result[result_len]
 *     SHA256, HMAC: the 32-byte digest / MAC
 *     SEAL:         ciphertext[data_len] || tag[16]  (ChaCha20-Poly1305, RFC 8439)
 *     status != OK: no result (result_len 0)
 *
 * No reply is larger than its request, so a spoofed source address gains
 * an attacker no amplification (and XDP never has to grow a frame, which
 * many drivers cannot).
 *
 * Validation order (both paths apply it identically, so a malformed request
 * gets the same status wherever it is answered):
 *   payload < 12 bytes or wrong magic         -> dropped (no reply can be smaller)
 *   payload < 16                              -> ERR_LENGTH
 *   version != OFFLOAD_VERSION                -> ERR_VERSION
 *   op not SHA256/HMAC/SEAL                   -> ERR_OP
 *   data_len > MAX_DATA or aad_len > MAX_AAD  -> ERR_TOO_BIG
 *   aad_len != 0 for SHA256/HMAC              -> ERR_LENGTH
 *   payload != its length above               -> ERR_LENGTH
 *   SHA256 with key_id != 0                   -> ERR_KEY
 *   key_id not provisioned                    -> ERR_KEY
 *   key provisioned for the other operation   -> ERR_KEY_TYPE
 */
#pragma once

#define OFFLOAD_MAGIC        0xCB0F   /* bytes 0xCB 0x0F */
#define OFFLOAD_VERSION      1
#define OFFLOAD_DEFAULT_PORT 7788

/* request op */
#define OFFLOAD_OP_SHA256 1
#define OFFLOAD_OP_HMAC   2   /* HMAC-SHA256 */
#define OFFLOAD_OP_SEAL   3   /* ChaCha20-Poly1305 encrypt */
#define OFFLOAD_NOPS      3   /* map index = op - 1 */

/* reply status */
#define OFFLOAD_OK              0
#define OFFLOAD_ERR_VERSION     1
#define OFFLOAD_ERR_OP          2
#define OFFLOAD_ERR_LENGTH      3   /* lengths disagree with the datagram */
#define OFFLOAD_ERR_TOO_BIG     4   /* beyond the protocol maximum */
#define OFFLOAD_ERR_KEY         5   /* key id not provisioned (or non-zero for SHA256) */
#define OFFLOAD_ERR_KEY_TYPE    6   /* key provisioned for the other operation */
#define OFFLOAD_ERR_UNAVAILABLE 7   /* daemon down, and the kernel cannot serve this */
#define OFFLOAD_ERR_INTERNAL    8

/* reply served_by */
#define OFFLOAD_BY_KERNEL 1
#define OFFLOAD_BY_DAEMON 2

/* protocol limits (both paths) */
#define OFFLOAD_MAX_DATA    8192
#define OFFLOAD_MAX_AAD     256    /* = CHACHA20_POLY1305_AAD_MAX */
#define OFFLOAD_NONCE_SIZE  12
#define OFFLOAD_TAG_SIZE    16
#define OFFLOAD_DIGEST_SIZE 32
#define OFFLOAD_MIN_DIGEST_REQ 44  /* = reply header + digest */
#define OFFLOAD_KEY_MAX     64     /* HMAC keys 16..64 bytes, AEAD keys 32 */
#define OFFLOAD_AEAD_KEY_SIZE 32
#define OFFLOAD_MAX_KEYS    1024

/* kernel path: the request must be one unfragmented frame whose IPv4
 * options (if any) the kernel delivers; config.kernel_max_len lowers the
 * bound further */
#define OFFLOAD_KERNEL_MAX  1472

struct offload_req_hdr {
	__be16 magic;      /* OFFLOAD_MAGIC */
	__u8 version;      /* OFFLOAD_VERSION */
	__u8 op;           /* OFFLOAD_OP_* */
	__be32 req_id;     /* echoed in the reply */
	__be32 key_id;     /* HMAC / SEAL key; 0 for SHA256 */
	__be16 data_len;   /* data / plaintext bytes */
	__be16 aad_len;    /* SEAL only */
};

struct offload_reply_hdr {
	__be16 magic;
	__u8 version;
	__u8 op;           /* echoed */
	__be32 req_id;     /* echoed */
	__u8 status;       /* OFFLOAD_OK / OFFLOAD_ERR_* */
	__u8 served_by;    /* OFFLOAD_BY_KERNEL / OFFLOAD_BY_DAEMON */
	__be16 result_len;
};

/* ---- routing ----
 * Cost estimates per (op, size bucket): index (op - 1) * OFFLOAD_BUCKETS +
 * bucket, bucket = min(size >> OFFLOAD_BUCKET_SHIFT, OFFLOAD_BUCKETS - 1),
 * size = data_len (+ aad_len for SEAL). */
#define OFFLOAD_BUCKET_SHIFT 7       /* 128-byte buckets */
#define OFFLOAD_BUCKETS      16      /* the last one: 1920 bytes and more */
#define OFFLOAD_COST_ENTRIES 48      /* OFFLOAD_NOPS * OFFLOAD_BUCKETS */

/* config.mode */
#define OFFLOAD_MODE_AUTO   0   /* the currently faster path */
#define OFFLOAD_MODE_KERNEL 1   /* kernel whenever it can */
#define OFFLOAD_MODE_DAEMON 2   /* daemon whenever it is alive */

/* decision: path */
#define OFFLOAD_PATH_KERNEL 0   /* computed in XDP, XDP_TX reply */
#define OFFLOAD_PATH_DAEMON 1   /* XDP_PASS to the daemon */
#define OFFLOAD_PATH_REJECT 2   /* error reply from XDP */
#define OFFLOAD_PATH_DROP   3
#define OFFLOAD_NPATHS      4

/* decision: reason */
#define OFFLOAD_REASON_FORCED      0   /* config.mode */
#define OFFLOAD_REASON_FASTER      1   /* lower estimate for this op and size */
#define OFFLOAD_REASON_EXPLORE     2   /* sent to the slower path to keep measuring it */
#define OFFLOAD_REASON_DAEMON_DOWN 3   /* stale heartbeat */
#define OFFLOAD_REASON_BEYOND      4   /* too big or fragmented for XDP */
#define OFFLOAD_REASON_INVALID     5   /* malformed request */
#define OFFLOAD_REASON_FAILED      6   /* kernel computation or rewrite failed */
#define OFFLOAD_NREASONS           7

/* offload_config[0]: written by the control plane, read by XDP */
struct offload_config {
	__u32 mode;                 /* OFFLOAD_MODE_* */
	__u32 explore_every;        /* ~1 in N requests to the slower path (0: never) */
	__u32 sample_every;         /* ~1 in N decisions to the ring buffer (0: none) */
	__u32 ewma_shift;           /* estimate += (sample - estimate) >> shift */
	__u64 heartbeat_timeout_ns; /* daemon considered down after this */
	__u64 refresh_ns;           /* explore a path whose estimate is older (0: off) */
	__u32 kernel_max_len;       /* largest size the kernel computes */
	__u32 _pad;
};

/* kernel_cost[idx] (written by XDP) and daemon_cost[idx] (by the daemon) */
struct offload_cost {
	__u64 ewma_ns;      /* current estimate; a seed while samples == 0 */
	__u64 samples;      /* measurements folded in */
	__u64 updated_ns;   /* CLOCK_MONOTONIC of the last one */
	__u64 explored_ns;  /* kernel_cost only: last exploration of this bucket */
};

/* offload_daemon[0]: the daemon's heartbeat (CLOCK_MONOTONIC, as
 * bpf_ktime_get_ns); 0 = no daemon (a clean exit writes 0) */
struct offload_daemon {
	__u64 heartbeat_ns;
	__u32 pid;
	__u32 _pad;
};

/* offload_keys[key_id]; `key` is the raw key (the daemon computes with
 * it), istate/ostate the HMAC-SHA256 chaining values after K0^ipad and
 * K0^opad (derived in the kernel by offload_key_setup). */
#define OFFLOAD_KEY_HMAC 1
#define OFFLOAD_KEY_AEAD 2

struct offload_key {
	__u32 type;         /* OFFLOAD_KEY_* */
	__u32 len;
	__u8 key[64];
	__u32 istate[8];
	__u32 ostate[8];
};

/* ctx of the SYSCALL program offload_key_setup */
struct offload_key_args {
	__u32 key_id;
	__u32 type;
	__u32 len;
	__s32 err;          /* out: 0 or -errno */
	__u8 key[64];
};

/* offload_stats (per-CPU) */
struct offload_stats {
	__u64 decisions[28];    /* [path * OFFLOAD_NREASONS + reason] */
	__u64 dropped_runt;     /* < 8 bytes or wrong magic */
	__u64 samples_lost;     /* ring buffer full */
};

/* offload_samples ring buffer: about 1 in config.sample_every decisions */
struct offload_sample {
	__u64 ts_ns;
	__u32 req_id;
	__u8 op;
	__u8 path;          /* OFFLOAD_PATH_* */
	__u8 reason;        /* OFFLOAD_REASON_* */
	__u8 bucket;
	__u32 size;
	__u32 cost_ns;      /* kernel path: the measured cost; else 0 */
	__u64 kernel_est_ns;
	__u64 daemon_est_ns;
};
