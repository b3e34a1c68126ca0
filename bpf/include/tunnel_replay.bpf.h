/* SPDX-License-Identifier: GPL-2.0 */
/* encrypted_tunnel: receive key slots and the anti-replay window (kernel
 * side only). RFC 6479's scheme: a bitmap indexed by counter modulo its
 * size, cleared a 64-bit word at a time as the highest counter advances.
 * With 4096 bits and a 2048-packet window, clearing whole words never
 * loses a bit that is still inside the window. */
#pragma once

#include "cryptbpf.bpf.h"
#include "encrypted_tunnel.h"

#ifndef READ_ONCE
#define READ_ONCE(x) (*(const volatile typeof(x) *)&(x))
#endif

#define TUNNEL_REPLAY_BITS (TUNNEL_REPLAY_WORDS * 64)
_Static_assert(TUNNEL_REPLAY_BITS >= TUNNEL_REPLAY_WINDOW + 64, "window vs bitmap");

/* rx_keys map value: the key userspace installs (a fresh element per key,
 * so the window starts empty with it) plus state only BPF writes. */
struct tunnel_rx_slot {
	struct tunnel_rx_key key;
	struct tunnel_replay replay;
	struct bpf_spin_lock lock;
	__u32 pad;
};

static __always_inline int replay_bit(const struct tunnel_replay *r, __u64 ctr)
{
	return (r->bitmap[(ctr / 64) % TUNNEL_REPLAY_WORDS] >> (ctr % 64)) & 1;
}

/* Lock-free pre-check before any cryptography (a racing CPU may still
 * accept the same counter first: replay_commit decides). 1 = refuse. */
static __always_inline int replay_refused(const struct tunnel_replay *r, __u64 ctr)
{
	__u64 top = READ_ONCE(r->top);

	if (ctr >= top)
		return 0;
	if (top - ctr > TUNNEL_REPLAY_WINDOW)
		return 1;
	return replay_bit(r, ctr);
}

/* After authentication: accept ctr exactly once. Returns 1 if accepted. */
static __always_inline int replay_commit(struct tunnel_rx_slot *s, __u64 ctr, __u64 now)
{
	struct tunnel_replay *r = &s->replay;
	int ok = 0;

	bpf_spin_lock(&s->lock);
	if (ctr >= r->top) {
		if (r->top) {
			/* clear the words of the counters we skip over */
			__u64 from = (r->top - 1) / 64 + 1, to = ctr / 64;

			for (__u32 i = 0; i < TUNNEL_REPLAY_WORDS; i++)
				if (from + i <= to)
					r->bitmap[(from + i) % TUNNEL_REPLAY_WORDS] = 0;
		}
		r->top = ctr + 1;
		ok = 1;
	} else if (r->top - ctr <= TUNNEL_REPLAY_WINDOW && !replay_bit(r, ctr)) {
		ok = 1;
	}
	if (ok) {
		r->bitmap[(ctr / 64) % TUNNEL_REPLAY_WORDS] |= 1ULL << (ctr % 64);
		r->accepted++;
		r->last_ns = now;
	}
	bpf_spin_unlock(&s->lock);
	return ok;
}
