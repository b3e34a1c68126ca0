/* SPDX-License-Identifier: GPL-2.0 */
/* Verification budgets: GCRA (the generic cell rate algorithm), one u64 per
 * bucket (kernel side only). signed_auth and zkp_filter charge every
 * expensive signature/proof verification to a per-key and a global bucket,
 * so a flood of bogus ones costs at most the budget.
 *
 * The caller keeps tat in a map value next to a bpf_spin_lock and holds the
 * lock around gcra_take() (no helper calls inside). */
#pragma once

#include "cryptbpf.bpf.h"

/* 1 if a verification may run now: theoretical arrival time tat advances
 * by interval per verification and may run ahead of now by at most
 * (burst - 1) intervals. Caller holds the lock. */
static __always_inline int gcra_take(__u64 *tat, __u64 now, __u64 interval, __u32 burst)
{
	__u64 t = *tat > now ? *tat : now;
	__u64 tau = interval * (burst ? burst - 1 : 0);

	if (t - now > tau)
		return 0;
	*tat = t + interval;
	return 1;
}
