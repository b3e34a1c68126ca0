/* SPDX-License-Identifier: GPL-2.0 */
/* Schnorr proof of knowledge of a discrete logarithm on P-256 (RFC 8235
 * section 3), verified in TC/XDP programs (kernel side).
 *
 *   int schnorr_p256_r_ok(const __u8 *r);
 *   int schnorr_p256_verify_table(const struct p256_key_table *kt,
 *                                 const __u8 *v_point, const __u8 *r,
 *                                 const __u8 *c);
 *
 * The prover knows a with A = a*G, commits V = v*G, derives c from a hash
 * (the caller computes it: the hash input is protocol-specific) and sends
 * (V, r = v - a*c mod n). The verifier accepts iff V is a point on the curve
 * and V == r*G + c*A. kt: the precomputed table of A (p256_keys, built in
 * userspace from a key validated there: on the curve, not the identity);
 * v_point: 65 bytes 04 || X || Y; r, c: 32 bytes big-endian each, any memory
 * the caller has bounds-checked, any alignment. c may be any 256-bit value:
 * it is reduced mod n here (one subtraction: 2^256 < 2n).
 *
 * Results: P256_VERIFY_OK (1) for a valid proof; P256_VERIFY_BAD (0) when
 * V != r*G + c*A; SCHNORR_P256_BAD_POINT (V not on the curve, coordinates
 * >= p, bad prefix: the identity has no 04 || X || Y encoding, so it lands
 * here too), SCHNORR_P256_BAD_SCALAR (r = 0 or r >= n), P256_VERIFY_EINTERNAL.
 * Test "== P256_VERIFY_OK".
 *
 * Algorithm: r*G + c*A with the same fixed-base combs as ECDSA's u1*G + u2*Q
 * (ecdsa_p256.bpf.h: 37 + 37 affine additions, no doublings, no inversion),
 * then the full point compare, projectively: X == Vx Z^2 and Y == Vy Z^3
 * (y matters: -V has the same x). Not constant time: only public data.
 * Cost and stack: as ecdsa_p256_verify_table() without the scalar inversion
 * (same callbacks, same per-CPU scratch p256_scratch, not reentrant).
 */
#pragma once

#include "ecdsa_p256.bpf.h"

#define SCHNORR_P256_BAD_POINT  (-6)
#define SCHNORR_P256_BAD_SCALAR (-7)

static __always_inline int schnorr_p256_scalar_ok(const struct p256_fe *r)
{
	return !p256_fe_is_zero(r) && !p256_sc_ge_n(r);
}

/* 1 if 1 <= r <= n - 1 (r: 32 bytes big-endian): no curve math. */
static __always_inline int schnorr_p256_r_ok(const __u8 *r)
{
	struct p256_verify_state *st = cryptbpf_scratch(&p256_scratch);

	if (!st)
		return 0;
	p256_load_be(&st->r, r);
	return schnorr_p256_scalar_ok(&st->r);
}

static __always_inline int
schnorr_p256_verify_table(const struct p256_key_table *kt, const __u8 *v_point,
			  const __u8 *r, const __u8 *c)
{
	struct p256_verify_state *st;
	struct p256_loop_ctx lc;

	if (!kt)
		return P256_VERIFY_ENOKEY;
	st = cryptbpf_scratch(&p256_scratch);
	if (!st)
		return P256_VERIFY_EINTERNAL;
	/* V into st->qx, st->qy: prefix, X, Y < p, on the curve */
	if (p256_load_pubkey(st, v_point, P256_PUBKEY_LEN))
		return SCHNORR_P256_BAD_POINT;
	p256_load_be(&st->u1, r);
	if (!schnorr_p256_scalar_ok(&st->u1))
		return SCHNORR_P256_BAD_SCALAR;
	p256_load_be(&st->u2, c);
	if (p256_sc_ge_n(&st->u2))
		p256_sc_sub_n(&st->u2);

	/* R = r G + c A */
	lc.st = st;
	lc.kt = kt;
	st->carry1 = 0;
	st->carry2 = 0;
	st->err = 0;
	st->pt.inf = 1;
	bpf_loop(P256_WINDOWS, p256_win_cb, &lc, 0);
	if (st->err)
		return P256_VERIFY_EINTERNAL;
	if (st->pt.inf)
		return P256_VERIFY_BAD;		/* V is never the identity */

	/* (X / Z^2, Y / Z^3) == (Vx, Vy) */
	p256_fe_sqr(&st->t0, &st->pt.z, &st->pt.wide);
	p256_fe_mul(&st->t1, &st->qx, &st->t0, &st->pt.wide);
	if (!p256_fe_eq(&st->t1, &st->pt.x))
		return P256_VERIFY_BAD;
	p256_fe_mul(&st->t0, &st->t0, &st->pt.z, &st->pt.wide);
	p256_fe_mul(&st->t1, &st->qy, &st->t0, &st->pt.wide);
	return p256_fe_eq(&st->t1, &st->pt.y) ? P256_VERIFY_OK : P256_VERIFY_BAD;
}
