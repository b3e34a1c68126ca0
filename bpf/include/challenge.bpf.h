/* SPDX-License-Identifier: GPL-2.0 */
/* Stateless challenges: an HMAC-SHA256, under a server key, of the client's
 * address and a time slot (kernel side only).
 *
 * A program that must challenge a client before trusting it (zkp_filter,
 * crypto_ratelimit, ...) keeps no per-client state until the client has
 * answered: the challenge is recomputed from the packet when the answer
 * arrives, so a flood of hellos cannot fill any map.
 *
 *   challenge = HMAC-SHA256(server_key, struct challenge_input)
 *
 * struct challenge_input (40 bytes, all multi-byte fields big-endian):
 *   label[8]   purpose and version, e.g. "cbzkp v1": domain separation, so
 *              one program's challenge is never valid for another
 *   addr       client IPv4 address (network byte order, as on the wire)
 *   port       client UDP port, or 0 when the challenge is not bound to one
 *   zero       0
 *   slot       time slot: bpf_ktime_get_boot_ns() / slot_ns
 *   extra      program-defined (crypto_ratelimit: the PoW difficulty)
 *   nonce[16]  program-defined (zkp_filter: the client's hello nonce)
 *
 * Time: issuing and checking both happen in this kernel, so the slot uses
 * the boot clock (monotonic, counts suspend, never stepped by NTP); it is
 * never compared with wall-clock time. A challenge is accepted for the slot
 * it was issued in and the next one: it lives between 1 and 2 slot lengths.
 * The packet carries the slot number; challenge_check() first requires it to
 * be the current or the previous slot (else CHALLENGE_STALE), then
 * recomputes the MAC for that slot only and compares it in constant time
 * (else CHALLENGE_FORGED). That is what "recompute for the current and the
 * previous slot and compare both" decides, at half the cost.
 *
 * Cost: the key's pad states are precomputed (struct cryptbpf_hmac_sha256_key,
 * stored in a map by a SYSCALL program, see challenge_key_install()), and the
 * 40-byte input fits one block, so a challenge is exactly two SHA-256
 * compressions (hmac_sha256_short(), ~0.4 us).
 *
 *   CHALLENGE_KEY_MAP(server_key);                 // one slot, pad states
 *   struct challenge_scratch *cs = ...;            // per-CPU map value
 *   challenge_input_set(&cs->in, label, addr, 0, slot, extra);  // + cs->in.nonce
 *   challenge_compute(cs, key, out);               // out: 32 bytes
 *   rc = challenge_check(cs, key, presented, now_slot);   // CHALLENGE_*
 *
 * The key map holds key-equivalent material: name it "*key*" so `cryptbpf
 * map` refuses to dump it.
 */
#pragma once

#include "cryptbpf.bpf.h"
#include "hmac.bpf.h"

#define CHALLENGE_SIZE      32
#define CHALLENGE_LABEL_LEN 8
#define CHALLENGE_NONCE_LEN 16

/* challenge_check() results */
#define CHALLENGE_OK     0
#define CHALLENGE_STALE  1   /* slot neither the current nor the previous one */
#define CHALLENGE_FORGED 2   /* MAC does not match (or no key installed) */

struct challenge_input {
	__u8 label[CHALLENGE_LABEL_LEN];
	__be32 addr;
	__be16 port;
	__u16 zero;
	__be32 slot;
	__be32 extra;
	__u8 nonce[CHALLENGE_NONCE_LEN];
} __attribute__((aligned(8)));
_Static_assert(sizeof(struct challenge_input) == 40, "challenge_input is a wire format");

/* Per-CPU working memory: HMAC state, the MAC input, the expected MAC. */
struct challenge_scratch {
	struct cryptbpf_hmac_sha256_ctx h;
	struct challenge_input in;
	__u8 mac[CHALLENGE_SIZE] __attribute__((aligned(8)));
	__u8 presented[CHALLENGE_SIZE] __attribute__((aligned(8))); /* the packet's */
} __attribute__((aligned(8)));

/* A one-slot array of pad states (slot 0 = the key in use). */
#define CHALLENGE_KEY_MAP(name)                                               \
	struct {                                                              \
		__uint(type, BPF_MAP_TYPE_ARRAY);                             \
		__uint(max_entries, 1);                                       \
		__type(key, __u32);                                           \
		__type(value, struct challenge_key);                          \
	} name SEC(".maps")

/* installed = 0 until a key was installed: an all-zero key never verifies
 * anything, the program answers no hello. */
struct challenge_key {
	struct cryptbpf_hmac_sha256_key pads;
	__u32 installed;
	__u32 _pad;
};

/* Time slot of now; slot_ns > 0. Wraps after 2^32 slots (136 years of 1 s). */
static __always_inline __u32 challenge_slot(__u64 slot_ns)
{
	return (__u32)(bpf_ktime_get_boot_ns() / slot_ns);
}

static __always_inline void challenge_input_set(struct challenge_input *in,
						const char label[CHALLENGE_LABEL_LEN],
						__be32 addr, __be16 port,
						__u32 slot, __u32 extra)
{
	__builtin_memcpy(in->label, label, CHALLENGE_LABEL_LEN);
	in->addr = addr;
	in->port = port;
	in->zero = 0;
	in->slot = bpf_htonl(slot);
	in->extra = bpf_htonl(extra);
}

/* The installed key, or NULL when there is none. */
static __always_inline const struct challenge_key *challenge_key_get(void *key_map)
{
	__u32 zero = 0;
	const struct challenge_key *k = bpf_map_lookup_elem(key_map, &zero);

	return k && k->installed ? k : NULL;
}

/* Copy n bytes (a multiple of 4) between 4-byte aligned buffers, a word at a
 * time: clang copies u8 arrays byte by byte and, next to the hash code,
 * spills the bytes to the stack (hundreds of bytes of frame). */
static __always_inline void copy_words(void *dst, const void *src, const __u32 n)
{
	__u32 *d = dst;
	const __u32 *s = src;

#pragma clang loop unroll(full)
	for (__u32 i = 0; i < n / 4; i++)
		d[i] = s[i];
}

/* HMAC-SHA256 of a message of at most 48 bytes under precomputed pad
 * states: exactly two compressions, no streaming bookkeeping. msg: len
 * bytes, 8-byte aligned, len a compile-time multiple of 8 (copied in words:
 * a byte-wise copy of unknown alignment makes clang spill ~40 registers);
 * s: scratch hash state (map memory), msg must not live in s->buf; out: 32
 * bytes, 4-byte aligned, stack or map memory. */
static __always_inline void hmac_sha256_short(struct cryptbpf_sha256_ctx *s,
					      const struct cryptbpf_hmac_sha256_key *k,
					      const void *msg, const __u32 len, __u8 *out)
{
	const struct cryptbpf_sha256_block *blk = (const void *)s->buf;
	__u64 *w = (__u64 *)s->buf;
	__u32 *d = (__u32 *)s->buf;

	const __u64 *m = msg;

	/* inner: H(istate, msg || 0x80 || 0... || bitlen(ipad block + msg)) */
#pragma clang loop unroll(full)
	for (int j = 0; j < 8; j++)
		w[j] = j < len / 8 ? m[j] : 0;
	w[len / 8 & 7] = 0x80;       /* len <= 48 and len % 8 == 0 */
	w[7] = __builtin_bswap64((__u64)(SHA256_BLOCK_SIZE + len) * 8);
	__builtin_memcpy(s->h, k->istate, sizeof(s->h));
	sha256_compress(s, blk);
	/* outer: H(ostate, inner digest || 0x80 || 0... || bitlen(64 + 32)) */
#pragma clang loop unroll(full)
	for (int j = 0; j < 8; j++)
		d[j] = __builtin_bswap32(s->h[j]);
	w[4] = 0x80;                 /* byte 32 = 0x80 (little-endian word) */
	w[5] = 0;
	w[6] = 0;
	w[7] = __builtin_bswap64((__u64)(SHA256_BLOCK_SIZE + SHA256_DIGEST_SIZE) * 8);
	__builtin_memcpy(s->h, k->ostate, sizeof(s->h));
	sha256_compress(s, blk);
#pragma clang loop unroll(full)
	for (int j = 0; j < 8; j++)
		s->h[j] = __builtin_bswap32(s->h[j]);
	copy_words(out, s->h, SHA256_DIGEST_SIZE);
}

/* 1 if a[0..32) == b[0..32), else 0; both 8-byte aligned. Constant time:
 * every word is compared and the result is computed without branches. */
static __always_inline int ct_eq32(const void *a, const void *b)
{
	const __u64 *x = a, *y = b;
	__u64 diff = (x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]);

	return (int)(1 ^ ((diff | -diff) >> 63));
}

/* MAC of cs->in into out[0..32) (stack or map memory). */
static __always_inline void challenge_compute(struct challenge_scratch *cs,
					      const struct challenge_key *key,
					      __u8 *out)
{
	hmac_sha256_short(&cs->h.hash, &key->pads, &cs->in, sizeof(cs->in), out);
}

/* Is cs->presented the challenge for cs->in (whose slot field holds the
 * packet's slot)? now_slot = challenge_slot(slot_ns). */
static __always_inline int challenge_check(struct challenge_scratch *cs,
					   const struct challenge_key *key,
					   __u32 now_slot)
{
	__u32 slot = bpf_ntohl(cs->in.slot);

	if (slot != now_slot && slot + 1 != now_slot)
		return CHALLENGE_STALE;
	challenge_compute(cs, key, cs->mac);
	return ct_eq32(cs->mac, cs->presented) ? CHALLENGE_OK : CHALLENGE_FORGED;
}

/* From a SYSCALL program: derive the pad states of raw[0..len) (map memory,
 * len <= 64 known to the verifier) into *dst; the raw key is not kept.
 * h is scratch (map memory), left all zero. Returns 0 or -errno. */
static __always_inline int challenge_key_install(struct cryptbpf_hmac_sha256_ctx *h,
						 const void *raw, __u32 len,
						 struct challenge_key *dst)
{
	int err = hmac_sha256_init(h, raw, len);

	if (err)
		return err;
	__builtin_memcpy(&dst->pads, &h->key, sizeof(dst->pads));
	/* all of h, not just h->key: hmac_sha256_init() leaves the inner pad
	 * state in the running hash (h->hash.h) as well */
	__builtin_memset(h, 0, sizeof(*h));
	dst->installed = 1;
	return 0;
}
