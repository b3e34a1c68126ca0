/* SPDX-License-Identifier: GPL-2.0 */
/* P-256 point arithmetic in Jacobian coordinates (kernel side).
 *
 * (X, Y, Z) represents the affine point (X/Z^2, Y/Z^3); the point at infinity
 * is carried as an explicit flag. The curve has a = -3.
 *
 * p256_pt_madd() adds an affine point (x2, y2) to the accumulator,
 * p256_pt_add() a Jacobian one (x2, y2, z2); both handle every special case:
 * accumulator at infinity, acc == pt (falls back to doubling) and
 * acc == -pt (result is infinity). When acc == pt they return 1 and leave
 * acc unchanged: the caller then calls p256_pt_dbl() (p256_pt_madd_full() /
 * p256_pt_add_full() do both); this keeps the call chain, and so the combined
 * stack of the caller plus callees, one frame shorter.
 * The addend is never the point at infinity
 * (callers skip zero digits). All functions operate in place on a
 * struct p256_pt_state that lives in map memory.
 */
#pragma once

#include "p256_field.bpf.h"

struct p256_pt_state {
	struct p256_fe x, y, z;		/* accumulator (Jacobian) */
	struct p256_fe x2, y2;		/* addend: affine for madd, */
	struct p256_fe z2;		/* Jacobian (x2, y2, z2) for add */
	struct p256_fe t[6];		/* temporaries */
	struct p256_wide wide;		/* multiplier scratch */
	__u32 inf;			/* accumulator is the point at infinity */
	__u32 pad;
};

/* acc = 2 * acc  (dbl-2001-b, a = -3: 3M + 5S) */
__noinline int p256_pt_dbl(struct p256_pt_state *s)
{
	if (!s)
		return 0;
	if (s->inf)
		return 0;
	if (p256_fe_is_zero(&s->y)) {	/* 2-torsion: impossible on P-256 */
		s->inf = 1;
		return 0;
	}
	struct p256_fe *delta = &s->t[0], *gamma = &s->t[1], *beta = &s->t[2];
	struct p256_fe *alpha = &s->t[3], *t4 = &s->t[4], *t5 = &s->t[5];

	p256_fe_sqr(delta, &s->z, &s->wide);
	p256_fe_sqr(gamma, &s->y, &s->wide);
	p256_fe_mul(beta, &s->x, gamma, &s->wide);
	p256_fe_sub_i(alpha, &s->x, delta);
	p256_fe_add_i(t4, &s->x, delta);
	p256_fe_mul(alpha, alpha, t4, &s->wide);
	p256_fe_mulk(alpha, alpha, 3);		/* alpha = 3 (X - d)(X + d) */
	/* Z3 = (Y + Z)^2 - gamma - delta */
	p256_fe_add_i(t4, &s->y, &s->z);
	p256_fe_sqr(t4, t4, &s->wide);
	p256_fe_sub_i(t4, t4, gamma);
	p256_fe_sub_i(&s->z, t4, delta);
	/* X3 = alpha^2 - 8 beta */
	p256_fe_mulk(beta, beta, 4);		/* beta = 4 beta */
	p256_fe_sqr(t4, alpha, &s->wide);
	p256_fe_add_i(t5, beta, beta);
	p256_fe_sub_i(&s->x, t4, t5);
	/* Y3 = alpha (4 beta - X3) - 8 gamma^2 */
	p256_fe_sub_i(t5, beta, &s->x);
	p256_fe_mul(t5, alpha, t5, &s->wide);
	p256_fe_sqr(gamma, gamma, &s->wide);
	p256_fe_mulk(gamma, gamma, 8);
	p256_fe_sub_i(&s->y, t5, gamma);
	return 0;
}

/* acc = acc + (x2, y2)  (mixed addition: 8M + 3S); 1: caller must double */
__noinline int p256_pt_madd(struct p256_pt_state *s)
{
	if (!s)
		return 0;
	if (s->inf) {
		p256_fe_copy(&s->x, &s->x2);
		p256_fe_copy(&s->y, &s->y2);
		p256_fe_set_u32(&s->z, 1);
		s->inf = 0;
		return 0;
	}
	struct p256_fe *t0 = &s->t[0], *h = &s->t[1], *hh = &s->t[2];
	struct p256_fe *hhh = &s->t[3], *t4 = &s->t[4], *r = &s->t[5];

	p256_fe_sqr(t0, &s->z, &s->wide);			/* Z1^2 */
	p256_fe_mul(h, &s->x2, t0, &s->wide);		/* U2 */
	p256_fe_mul(t0, t0, &s->z, &s->wide);		/* Z1^3 */
	p256_fe_mul(r, &s->y2, t0, &s->wide);		/* S2 */
	p256_fe_sub_i(h, h, &s->x);		/* H = U2 - X1 */
	p256_fe_sub_i(r, r, &s->y);		/* R = S2 - Y1 */
	if (p256_fe_is_zero(h)) {
		if (p256_fe_is_zero(r))
			return 1;	/* acc == pt: caller doubles */
		s->inf = 1;			/* acc == -pt */
		return 0;
	}
	p256_fe_sqr(hh, h, &s->wide);			/* H^2 */
	p256_fe_mul(hhh, h, hh, &s->wide);		/* H^3 */
	p256_fe_mul(hh, &s->x, hh, &s->wide);		/* V = X1 H^2 */
	p256_fe_mul(&s->z, &s->z, h, &s->wide);		/* Z3 = Z1 H */
	p256_fe_sqr(t4, r, &s->wide);
	p256_fe_sub_i(t4, t4, hhh);
	p256_fe_sub_i(t4, t4, hh);
	p256_fe_sub_i(&s->x, t4, hh);		/* X3 = R^2 - H^3 - 2V */
	p256_fe_sub_i(t4, hh, &s->x);
	p256_fe_mul(t4, r, t4, &s->wide);
	p256_fe_mul(hhh, &s->y, hhh, &s->wide);
	p256_fe_sub_i(&s->y, t4, hhh);		/* Y3 = R (V - X3) - Y1 H^3 */
	return 0;
}

/* acc = acc + (x2, y2, z2)  (add-2007-bl without the Z-trick: 12M + 4S);
 * 1: caller must double */
__noinline int p256_pt_add(struct p256_pt_state *s)
{
	if (!s)
		return 0;
	if (s->inf) {
		p256_fe_copy(&s->x, &s->x2);
		p256_fe_copy(&s->y, &s->y2);
		p256_fe_copy(&s->z, &s->z2);
		s->inf = 0;
		return 0;
	}
	struct p256_fe *t0 = &s->t[0], *u1 = &s->t[1], *s1 = &s->t[2];
	struct p256_fe *r = &s->t[3], *h = &s->t[4], *t5 = &s->t[5];

	p256_fe_sqr(t0, &s->z2, &s->wide);		/* Z2^2 */
	p256_fe_mul(u1, &s->x, t0, &s->wide);		/* U1 = X1 Z2^2 */
	p256_fe_mul(t0, &s->z2, t0, &s->wide);		/* Z2^3 */
	p256_fe_mul(s1, &s->y, t0, &s->wide);		/* S1 = Y1 Z2^3 */
	p256_fe_sqr(t0, &s->z, &s->wide);			/* Z1^2 */
	p256_fe_mul(h, &s->x2, t0, &s->wide);		/* U2 = X2 Z1^2 */
	p256_fe_mul(t0, &s->z, t0, &s->wide);		/* Z1^3 */
	p256_fe_mul(r, &s->y2, t0, &s->wide);		/* S2 = Y2 Z1^3 */
	p256_fe_sub_i(h, h, u1);			/* H = U2 - U1 */
	p256_fe_sub_i(r, r, s1);			/* R = S2 - S1 */
	if (p256_fe_is_zero(h)) {
		if (p256_fe_is_zero(r))
			return 1;	/* acc == pt: caller doubles */
		s->inf = 1;			/* acc == -pt */
		return 0;
	}
	p256_fe_mul(&s->z, &s->z, &s->z2, &s->wide);
	p256_fe_mul(&s->z, &s->z, h, &s->wide);		/* Z3 = Z1 Z2 H */
	p256_fe_sqr(t5, h, &s->wide);			/* H^2 */
	p256_fe_mul(h, h, t5, &s->wide);			/* H^3 */
	p256_fe_mul(u1, u1, t5, &s->wide);		/* V = U1 H^2 */
	p256_fe_sqr(t5, r, &s->wide);
	p256_fe_sub_i(t5, t5, h);
	p256_fe_sub_i(t5, t5, u1);
	p256_fe_sub_i(&s->x, t5, u1);		/* X3 = R^2 - H^3 - 2V */
	p256_fe_sub_i(t5, u1, &s->x);
	p256_fe_mul(t5, r, t5, &s->wide);
	p256_fe_mul(s1, s1, h, &s->wide);
	p256_fe_sub_i(&s->y, t5, s1);		/* Y3 = R (V - X3) - S1 H^3 */
	return 0;
}

static __always_inline void p256_pt_madd_full(struct p256_pt_state *s)
{
	if (p256_pt_madd(s) == 1)
		p256_pt_dbl(s);
}

static __always_inline void p256_pt_add_full(struct p256_pt_state *s)
{
	if (p256_pt_add(s) == 1)
		p256_pt_dbl(s);
}
