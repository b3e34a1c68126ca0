/* SPDX-License-Identifier: GPL-2.0 */
/* Constant-time comparison for MACs, tags and proofs (kernel side only).
 *
 * The loop always runs over the full length and accumulates differences with
 * OR, so timing does not depend on where (or whether) the inputs differ.
 * `len` must be a compile-time constant at each call site so the loop is
 * fully unrolled and bounded for the verifier.
 */
#pragma once

#include "cryptbpf.bpf.h"

/* Returns 1 when a[0..len) == b[0..len), 0 otherwise. */
static __always_inline int ct_memeq(const __u8 *a, const __u8 *b, __u32 len)
{
	__u8 diff = 0;

#pragma clang loop unroll(full)
	for (__u32 i = 0; i < len; i++)
		diff |= a[i] ^ b[i];
	/* diff == 0 -> 1, else 0, without a data-dependent branch. */
	return (int)(1 & (((__u32)diff - 1) >> 8));
}
