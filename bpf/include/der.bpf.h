/* SPDX-License-Identifier: GPL-2.0 */
/* Bounded DER (X.690) reading for BPF programs (kernel side only).
 *
 * The input lives in a map value of DER_BUF_SIZE bytes (copied out of the
 * packet first); it is at most DER_MAX_INPUT bytes long. Every byte read is
 * buf[pos & DER_MASK]: with DER_MASK < DER_BUF_SIZE the verifier sees every
 * access in bounds whatever it knows about pos, and because every valid
 * position is < DER_MAX_INPUT <= DER_MASK the mask never changes a real
 * offset. The parsing logic checks every length against its enclosing
 * element's end ("limit"), so out-of-range positions are rejected before
 * they are used; the mask is only the verifier's proof.
 *
 * Keep struct der_tlv values in map memory (e.g. the caller's per-CPU
 * scratch), not on the stack: the verifier does not track what map memory
 * holds, so positions read back from it are plain bounded-by-mask scalars
 * and its states prune. On the stack each position's exact range is kept
 * and propagated as "precise" through the masks, and the extension walk of
 * a certificate alone then exceeded the 1M-instruction limit.
 *
 * Strict DER: definite lengths only, minimal length encodings (0x81 only for
 * 128..255, 0x82 only for 256..65535, nothing longer), single-byte tags
 * (X.509 uses no others). Any violation is a parse error (-1).
 */
#pragma once

#include "cryptbpf.bpf.h"

#define DER_BUF_SIZE   4096
#define DER_MASK       2047
#define DER_MAX_INPUT  2047

#define DER_BOOLEAN    0x01
#define DER_INTEGER    0x02
#define DER_BIT_STRING 0x03
#define DER_OCTET_STR  0x04
#define DER_OID        0x06
#define DER_UTC_TIME   0x17
#define DER_GEN_TIME   0x18
#define DER_SEQUENCE   0x30
#define DER_CTX_0      0xa0    /* [0] constructed (EXPLICIT) */
#define DER_CTX_3      0xa3
#define DER_CTX_1_PRIM 0x81    /* [1] primitive (IMPLICIT BIT STRING) */
#define DER_CTX_2_PRIM 0x82

/* One element: tag at start, content [off, end). */
struct der_tlv {
	__u32 start;
	__u32 off;
	__u32 len;
	__u32 end;
};

static __always_inline __u32 der_byte(const __u8 *buf, __u32 pos)
{
	/* hide pos from clang, which would drop the mask where it can prove
	 * pos < DER_MASK (the verifier cannot) */
	asm volatile("" : "+r"(pos));
	return buf[pos & DER_MASK];
}

/* Tag at pos, or -1 when pos is at or past limit. */
static __always_inline int der_peek(const __u8 *buf, __u32 pos, __u32 limit)
{
	if (pos >= limit)
		return -1;
	return (int)der_byte(buf, pos);
}

/* Read the element at pos, which must have tag `tag` and end at or before
 * limit. 0 on success. */
static __always_inline int der_read(const __u8 *buf, __u32 pos, __u32 limit,
				    __u32 tag, struct der_tlv *t)
{
	__u32 b, len, hdr;

	if (limit > DER_MAX_INPUT || pos >= limit || limit - pos < 2)
		return -1;
	if (der_byte(buf, pos) != tag)
		return -1;
	b = der_byte(buf, pos + 1);
	if (b < 0x80) {
		len = b;
		hdr = 2;
	} else if (b == 0x81) {
		if (limit - pos < 3)
			return -1;
		len = der_byte(buf, pos + 2);
		if (len < 0x80)
			return -1;		/* not minimal */
		hdr = 3;
	} else if (b == 0x82) {
		if (limit - pos < 4)
			return -1;
		len = der_byte(buf, pos + 2) << 8 | der_byte(buf, pos + 3);
		if (len < 0x100)
			return -1;		/* not minimal */
		hdr = 4;
	} else {
		return -1;			/* indefinite or too long */
	}
	if (len > limit - pos - hdr)
		return -1;
	t->start = pos;
	t->off = pos + hdr;
	t->len = len;
	t->end = pos + hdr + len;
	return 0;
}

/* buf[pos .. pos + n) == pat[0 .. n)? n must be a compile-time constant. */
static __always_inline int der_match(const __u8 *buf, __u32 pos,
				     const __u8 *pat, __u32 n)
{
	__u32 diff = 0;

#pragma clang loop unroll(full)
	for (__u32 i = 0; i < n; i++)
		diff |= der_byte(buf, pos + i) ^ pat[i];
	return diff == 0;
}

/* The element at t is exactly the n-byte encoding pat (tag, length and
 * content), e.g. an AlgorithmIdentifier. */
static __always_inline int der_is(const __u8 *buf, const struct der_tlv *t,
				  const __u8 *pat, __u32 n)
{
	return t->end - t->start == n && der_match(buf, t->start, pat, n);
}

/* BOOLEAN content: DER allows only 0x00 and 0xff. 1/0, or -1 if invalid. */
static __always_inline int der_bool(const __u8 *buf, const struct der_tlv *t)
{
	__u32 v;

	if (t->len != 1)
		return -1;
	v = der_byte(buf, t->off);
	if (v == 0xff)
		return 1;
	return v == 0 ? 0 : -1;
}

/* A non-negative INTEGER in minimal encoding, as 32 big-endian bytes
 * (ECDSA r and s). 0 on success. Branch-free copy: the verifier walks one
 * path however long the integer is. */
static __always_inline int der_uint256(const __u8 *buf, const struct der_tlv *t,
				       __u8 *out)
{
	__u32 n = t->len, off = t->off, b0, b1;

	if (n == 0 || n > 33)
		return -1;
	b0 = der_byte(buf, off);
	b1 = der_byte(buf, off + 1);
	if (b0 & 0x80)
		return -1;			/* negative */
	if (n > 1 && b0 == 0 && !(b1 & 0x80))
		return -1;			/* not minimal */
	if (n == 33) {
		if (b0)
			return -1;		/* >= 2^256 */
		off++;
		n--;
	}
#pragma clang loop unroll(full)
	for (int i = 0; i < 32; i++) {
		__s32 j = i - (32 - (__s32)n);
		__u32 keep = ~(__u32)(j >> 31);	/* 0 while j < 0 */

		out[i] = der_byte(buf, off + (__u32)j) & keep;
	}
	return 0;
}

/* Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 5480 / X9.62)
 * filling exactly [pos, limit), as r || s (2 x 32 big-endian bytes) into
 * out. The one decoder of DER ECDSA signatures: x509_parse() (the
 * certificate's signatureValue) and ecdsa_kat's verify_der_tc (Wycheproof
 * EcdsaVerify) both call it. Strict DER through der_read()/der_uint256():
 * wrong tags, indefinite, long-form-under-128 or otherwise non-minimal
 * lengths, lengths past their parent, trailing bytes (inside the SEQUENCE
 * or after it), negative or non-minimal INTEGERs and values >= 2^256 are
 * all -1. r, s in [1, n-1] is checked by ecdsa_p256_verify*(), which
 * every caller runs next (it rejects P1363 input the same way).
 * seq and t: two struct der_tlv slots in map memory; out: 64 bytes. */
static __always_inline int der_ecdsa_sig(const __u8 *buf, __u32 pos, __u32 limit,
					 struct der_tlv *seq, struct der_tlv *t,
					 __u8 *out)
{
	if (der_read(buf, pos, limit, DER_SEQUENCE, seq) || seq->end != limit)
		return -1;
	if (der_read(buf, seq->off, seq->end, DER_INTEGER, t) || der_uint256(buf, t, out))
		return -1;
	if (der_read(buf, t->end, seq->end, DER_INTEGER, t) || t->end != seq->end ||
	    der_uint256(buf, t, out + 32))
		return -1;
	return 0;
}

/* Two decimal digits at pos, or -1. */
static __always_inline int der_2digits(const __u8 *buf, __u32 pos)
{
	__u32 a = der_byte(buf, pos) - '0', b = der_byte(buf, pos + 1) - '0';

	if (a > 9 || b > 9)
		return -1;
	return (int)(a * 10 + b);
}

/* Days since 1970-01-01 of a proleptic Gregorian date, year >= 1600
 * (H. Hinnant's days_from_civil, unsigned because year is never negative). */
static __always_inline __s64 der_days_from_civil(__u32 y, __u32 m, __u32 d)
{
	__u32 era, yoe, doy, doe;

	y -= m <= 2;
	era = y / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (__s64)era * 146097 + (__s64)doe - 719468;
}

static __always_inline __u32 der_days_in_month(__u32 y, __u32 m)
{
	if (m == 2)
		return (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) ? 29 : 28;
	if (m == 4 || m == 6 || m == 9 || m == 11)
		return 30;
	return 31;
}

/* X.509 Time (RFC 5280 4.1.2.5) at pos: UTCTime YYMMDDHHMMSSZ (YY >= 50 is
 * 19YY) or GeneralizedTime YYYYMMDDHHMMSSZ, seconds mandatory, no fraction,
 * 'Z' only. Unix seconds to *out; the element to *t. */
static __always_inline int der_time(const __u8 *buf, __u32 pos, __u32 limit,
				    struct der_tlv *t, __s64 *out)
{
	int yy, cc, mo, dd, hh, mi, ss;
	__u32 year, p;

	if (der_peek(buf, pos, limit) == DER_UTC_TIME) {
		if (der_read(buf, pos, limit, DER_UTC_TIME, t) || t->len != 13)
			return -1;
		yy = der_2digits(buf, t->off);
		if (yy < 0)
			return -1;
		year = yy < 50 ? 2000 + yy : 1900 + yy;
		p = t->off + 2;
	} else {
		if (der_read(buf, pos, limit, DER_GEN_TIME, t) || t->len != 15)
			return -1;
		cc = der_2digits(buf, t->off);
		yy = der_2digits(buf, t->off + 2);
		if (cc < 0 || yy < 0)
			return -1;
		year = cc * 100 + yy;
		if (year < 1950)
			return -1;
		p = t->off + 4;
	}
	mo = der_2digits(buf, p);
	dd = der_2digits(buf, p + 2);
	hh = der_2digits(buf, p + 4);
	mi = der_2digits(buf, p + 6);
	ss = der_2digits(buf, p + 8);
	if (mo < 1 || mo > 12 || dd < 1 || hh < 0 || hh > 23 ||
	    mi < 0 || mi > 59 || ss < 0 || ss > 59 ||
	    der_byte(buf, p + 10) != 'Z')
		return -1;
	if ((__u32)dd > der_days_in_month(year, mo))
		return -1;
	*out = der_days_from_civil(year, mo, dd) * 86400 +
	       hh * 3600 + mi * 60 + ss;
	return 0;
}
