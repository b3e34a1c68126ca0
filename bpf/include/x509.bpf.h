/* SPDX-License-Identifier: GPL-2.0 */
/* X.509 v3 certificate parsing for BPF programs (kernel side only).
 *
 *   struct x509_scratch *s = ...;          // map value (per-CPU scratch)
 *   copy the DER into s->der, its length into s->len (<= DER_MAX_INPUT)
 *   ret = x509_parse(s);                   // X509_OK / X509_MALFORMED / X509_UNSUPPORTED
 *   x509_hash(s);                          // SHA-256 of TBSCertificate, issuer, subject
 *
 * What it extracts (RFC 5280 4.1) into s->c: the TBSCertificate's position
 * (its SHA-256 is what the issuer signed), the serial number, the issuer and
 * subject Names (as positions; compared by the SHA-256 of their DER), the
 * validity period in Unix seconds, the subject's P-256 public key, the
 * basicConstraints CA flag and pathLenConstraint, the keyUsage bits, and the
 * signature as r || s.
 *
 * Only what cryptbpf verifies is accepted ("unsupported" otherwise): version
 * 3, signature algorithm ecdsa-with-SHA256 (RFC 5758: no parameters) in both
 * places, subject key id-ecPublicKey on prime256v1 as an uncompressed point.
 * An unknown extension marked critical is unsupported (RFC 5280 4.2: it must
 * be rejected). Understood: basicConstraints, keyUsage, and (structure and
 * criticality only, RFC 5280 4.2.1.1/2 and 4.2.2.1: they MUST be
 * non-critical) authorityKeyIdentifier, subjectKeyIdentifier and
 * authorityInfoAccess; their presence is reported (has_aki, has_ski,
 * bc_critical) for the caller's role checks. Profile violations are
 * malformed: any extension twice (RFC 5280 4.2), a critical AKI/SKI/AIA, a
 * pathLenConstraint without cA, a serial number that is not positive
 * (4.1.2.2), an empty issuer Name (4.1.2.4). Everything the grammar does not allow -- wrong tags,
 * lengths past their parent, trailing bytes, non-minimal INTEGERs, BOOLEANs
 * other than 0xff, bad dates -- is malformed. Issuer/subject unique IDs are
 * skipped; a Name's attributes are not interpreted (Names are compared by
 * hash), but its structure (SET of SEQUENCE { OID, string }) is checked.
 * A different algorithm or key type is "unsupported" only if its
 * AlgorithmIdentifier / SubjectPublicKeyInfo is well-formed, else malformed.
 *
 * Bounded for the verifier: straight-line code except the extension list,
 * walked by bpf_loop() (at most X509_MAX_EXTS entries).
 */
#pragma once

#include "cryptbpf.bpf.h"
#include "der.bpf.h"
#include "sha256.bpf.h"

#define X509_OK          0
#define X509_MALFORMED   1
#define X509_UNSUPPORTED 2

#define X509_MAX_EXTS    24
#define X509_EXT_SLOTS   32      /* X509_MAX_EXTS rounded up to a power of 2 */
#define X509_OID_FP_BYTES 32     /* OID octets an extension fingerprint covers */
#define X509_MAX_AIA     16      /* AccessDescriptions in one authorityInfoAccess */
#define X509_MAX_ATVS    32      /* attributes in one Name */
#define X509_SERIAL_MAX  20      /* RFC 5280 4.1.2.2 */
#define X509_PUBKEY_LEN  65
#define X509_PATHLEN_NONE 255

/* keyUsage bits, first content octet of the BIT STRING */
#define X509_KU_DIGITAL_SIGNATURE 0x80
#define X509_KU_KEY_CERT_SIGN     0x04

struct x509_cert {
	__u32 tbs_start, tbs_total;        /* whole TBSCertificate TLV */
	__u32 serial_off, serial_len;      /* INTEGER content octets */
	__u32 issuer_start, issuer_total;  /* whole Name TLV */
	__u32 subject_start, subject_total;
	__s64 not_before, not_after;       /* Unix seconds */
	__u32 is_ca;
	__u32 path_len;                    /* X509_PATHLEN_NONE if absent */
	__u32 has_key_usage;
	__u32 key_usage;                   /* X509_KU_* bits */
	__u32 bc_critical;                 /* basicConstraints marked critical */
	__u32 has_aki, has_ski;            /* authority/subject key identifier */
	__u8  pubkey[X509_PUBKEY_LEN + 7]; /* 0x04 || X || Y */
	__u8  sig[64];                     /* r || s */
	__u8  tbs_digest[32];
	__u8  issuer_hash[32];
	__u8  subject_hash[32];
};

/* TLV slots of the parse, in map memory (see der.bpf.h for why) */
enum { X509_T_CERT, X509_T_TBS, X509_T_CUR, X509_T_AUX, X509_T_EXT, X509_T_OID,
       X509_T_VAL, X509_T_IN, X509_T_RDN, X509_T_AD, X509_T_SLOTS };

struct x509_scratch {
	__u8  der[DER_BUF_SIZE];
	__u32 len;
	__u32 ext_pos, ext_end;           /* extension walk */
	__u32 ext_count;
	__s32 ext_err;
	__u64 ext_fp[X509_EXT_SLOTS];     /* fingerprints of the OIDs seen */
	__u32 aia_pos, aia_end;           /* authorityInfoAccess walk */
	__s32 aia_err;
	__u32 _pad;
	__u32 name_pos, name_end;         /* Name walk */
	__s32 name_err;
	struct der_tlv t[X509_T_SLOTS];
	struct x509_cert c;
	struct cryptbpf_sha256_ctx sha;
};

/* 1.2.840.10045.4.3.2 ecdsa-with-SHA256, parameters absent */
static const __u8 x509_alg_ecdsa_sha256[12] = {
	0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
};
/* SubjectPublicKeyInfo up to the point: id-ecPublicKey, prime256v1,
 * BIT STRING of 66 bytes with 0 unused bits */
static const __u8 x509_spki_p256[26] = {
	0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
	0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03,
	0x42, 0x00,
};
#define X509_SPKI_LEN 91
static const __u8 x509_v3[5] = { 0xa0, 0x03, 0x02, 0x01, 0x02 };
static const __u8 x509_oid_basic_constraints[5] = { 0x06, 0x03, 0x55, 0x1d, 0x13 };
static const __u8 x509_oid_key_usage[5] = { 0x06, 0x03, 0x55, 0x1d, 0x0f };
static const __u8 x509_oid_ski[5] = { 0x06, 0x03, 0x55, 0x1d, 0x0e };
static const __u8 x509_oid_aki[5] = { 0x06, 0x03, 0x55, 0x1d, 0x23 };
/* 1.3.6.1.5.5.7.1.1 id-pe-authorityInfoAccess */
static const __u8 x509_oid_aia[10] = { 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01 };

/* basicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE,
 *                                 pathLenConstraint INTEGER (0..MAX) OPTIONAL } */
static __always_inline int x509_basic_constraints(struct x509_scratch *s)
{
	const __u8 *buf = s->der;
	struct der_tlv *val = &s->t[X509_T_VAL], *bc = &s->t[X509_T_IN],
		       *t = &s->t[X509_T_AUX];
	__u32 b0, b1;

	if (der_read(buf, val->off, val->end, DER_SEQUENCE, bc) || bc->end != val->end)
		return -1;
	t->end = bc->off;
	if (der_peek(buf, t->end, bc->end) == DER_BOOLEAN) {
		/* DER omits a DEFAULT value: an encoded cA must be TRUE */
		if (der_read(buf, t->end, bc->end, DER_BOOLEAN, t) || der_bool(buf, t) != 1)
			return -1;
		s->c.is_ca = 1;
	}
	if (der_peek(buf, t->end, bc->end) == DER_INTEGER) {
		/* RFC 5280 4.2.1.9: no pathLenConstraint unless cA is asserted */
		if (!s->c.is_ca ||
		    der_read(buf, t->end, bc->end, DER_INTEGER, t) || t->len == 0)
			return -1;
		b0 = der_byte(buf, t->off);
		b1 = der_byte(buf, t->off + 1);
		if (b0 & 0x80)
			return -1;				/* negative */
		if (t->len > 1 && b0 == 0 && !(b1 & 0x80))
			return -1;				/* not minimal */
		if (t->len == 1)
			s->c.path_len = b0;
		else if (t->len == 2 && b0 == 0 && b1 < X509_PATHLEN_NONE)
			s->c.path_len = b1;
		else
			s->c.path_len = X509_PATHLEN_NONE;	/* >= 255: no limit here */
	}
	return t->end == bc->end ? 0 : -1;
}

/* SEQUENCE { OID, one element } at pos, ending by limit, into seq (the
 * element into t): an AttributeTypeAndValue, an AccessDescription. Returns
 * the element's tag for the caller to judge, or -1 if the shape is wrong. */
static __always_inline int x509_oid_and_value(struct x509_scratch *s, __u32 pos, __u32 limit,
					      struct der_tlv *seq, struct der_tlv *t)
{
	const __u8 *buf = s->der;
	int tag;

	if (der_read(buf, pos, limit, DER_SEQUENCE, seq) ||
	    der_read(buf, seq->off, seq->end, DER_OID, t) || t->len == 0)
		return -1;
	tag = der_peek(buf, t->end, seq->end);
	if (tag < 0 || der_read(buf, t->end, seq->end, tag, t) || t->end != seq->end)
		return -1;
	return tag;
}

/* The extension's value (s->t[X509_T_VAL]) is exactly one non-empty
 * element with this tag; into t. */
static __always_inline int x509_ext_value(struct x509_scratch *s, __u32 tag,
					  struct der_tlv *t)
{
	const struct der_tlv *val = &s->t[X509_T_VAL];

	if (der_read(s->der, val->off, val->end, tag, t) || t->end != val->end ||
	    t->len == 0)
		return -1;
	return 0;
}

/* keyUsage ::= BIT STRING; only the first octet's bits matter here */
static __always_inline int x509_key_usage(struct x509_scratch *s)
{
	const __u8 *buf = s->der;
	struct der_tlv *t = &s->t[X509_T_IN];

	if (x509_ext_value(s, DER_BIT_STRING, t) || t->len > 3 ||
	    der_byte(buf, t->off) > 7)
		return -1;
	s->c.has_key_usage = 1;
	s->c.key_usage = t->len >= 2 ? der_byte(buf, t->off + 1) : 0;
	return 0;
}

/* SubjectKeyIdentifier ::= OCTET STRING (non-empty) */
static __always_inline int x509_ski(struct x509_scratch *s)
{
	if (x509_ext_value(s, DER_OCTET_STR, &s->t[X509_T_IN]))
		return -1;
	s->c.has_ski = 1;
	return 0;
}

/* AuthorityKeyIdentifier ::= SEQUENCE {
 *     keyIdentifier             [0] IMPLICIT OCTET STRING OPTIONAL,
 *     authorityCertIssuer       [1] IMPLICIT GeneralNames OPTIONAL,
 *     authorityCertSerialNumber [2] IMPLICIT INTEGER OPTIONAL }
 * in order, filling the value. 4.2.1.1: keyIdentifier MUST be there; one
 * without it counts as no AKI. (The fields are not used otherwise: issuers
 * are found by Name and confirmed by the signature.) */
static __always_inline int x509_aki(struct x509_scratch *s)
{
	const __u8 *buf = s->der;
	struct der_tlv *seq = &s->t[X509_T_IN], *t = &s->t[X509_T_AD];
	__u32 has_kid = 0;

	if (x509_ext_value(s, DER_SEQUENCE, seq))
		return -1;
	t->end = seq->off;
	if (der_peek(buf, t->end, seq->end) == 0x80) {
		if (der_read(buf, t->end, seq->end, 0x80, t) || t->len == 0)
			return -1;
		has_kid = 1;
	}
	if (der_peek(buf, t->end, seq->end) == 0xa1 &&
	    (der_read(buf, t->end, seq->end, 0xa1, t) || t->len == 0))
		return -1;
	if (der_peek(buf, t->end, seq->end) == 0x82 &&
	    (der_read(buf, t->end, seq->end, 0x82, t) || t->len == 0))
		return -1;
	if (t->end != seq->end)
		return -1;
	s->c.has_aki = has_kid;
	return 0;
}

/* GeneralName tags: [0] otherName, [3] x400Address, [4] directoryName,
 * [5] ediPartyName constructed; [1] rfc822Name, [2] dNSName, [6] URI,
 * [7] iPAddress, [8] registeredID primitive */
static __always_inline int x509_general_name_tag(int tag)
{
	return tag == 0xa0 || tag == 0xa3 || tag == 0xa4 || tag == 0xa5 ||
	       tag == 0x81 || tag == 0x82 || tag == 0x86 || tag == 0x87 || tag == 0x88;
}

/* AccessDescription ::= SEQUENCE { accessMethod OID, accessLocation GeneralName },
 * one per bpf_loop() iteration */
static long x509_aia_cb(__u64 i, void *ctx)
{
	struct x509_scratch *s = *(struct x509_scratch **)ctx;
	struct der_tlv *ad = &s->t[X509_T_AD], *t = &s->t[X509_T_AUX];
	int tag;

	if (s->aia_pos >= s->aia_end)
		return 1;
	tag = x509_oid_and_value(s, s->aia_pos, s->aia_end, ad, t);
	if (tag < 0 || !x509_general_name_tag(tag))
		goto malformed;
	s->aia_pos = ad->end;
	return 0;
malformed:
	s->aia_err = 1;
	return 1;
}

/* AuthorityInfoAccessSyntax ::= SEQUENCE SIZE (1..MAX) OF AccessDescription.
 * Not used (cryptbpf fetches nothing), but a broken one is a broken
 * certificate. 0, -1 malformed, or X509_UNSUPPORTED (too many entries). */
static __always_inline int x509_aia(struct x509_scratch *s)
{
	struct der_tlv *seq = &s->t[X509_T_IN];

	if (x509_ext_value(s, DER_SEQUENCE, seq))
		return -1;
	s->aia_pos = seq->off;
	s->aia_end = seq->end;
	s->aia_err = 0;
	bpf_loop(X509_MAX_AIA, x509_aia_cb, &s, 0);
	if (s->aia_err)
		return -1;
	return s->aia_pos == s->aia_end ? 0 : X509_UNSUPPORTED;
}

/* A fingerprint of an extension's OID (its length and first
 * X509_OID_FP_BYTES content octets): equal OIDs always give equal
 * fingerprints, so no duplicate goes unnoticed; two different OIDs that
 * collide are refused as duplicates (fail closed, never an accept).
 * Branch-free: bytes past the OID are masked to 0. */
static __always_inline __u64 x509_oid_fp(const __u8 *buf, const struct der_tlv *oid)
{
	__u64 h = 0xcbf29ce484222325ULL ^ oid->len;	/* FNV-1a basis */

#pragma clang loop unroll(full)
	for (__s32 i = 0; i < X509_OID_FP_BYTES; i++) {
		__s32 d = i - (__s32)oid->len;
		__u32 keep;

		/* Verifier: without the barriers clang turns the shift and the
		 * mask back into a compare and a branch, 32 of them in a row,
		 * and 6.1 walks every combination (pki_xdp: a million
		 * instructions) */
		barrier_var(d);
		keep = (__u32)(d >> 31);			/* ~0 while i < len */
		barrier_var(keep);

		h ^= der_byte(buf, oid->off + i) & keep;
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Was this OID seen before in the certificate? Records it otherwise. */
static __always_inline int x509_ext_duplicate(struct x509_scratch *s, __u64 fp)
{
	__u32 n = s->ext_count;
	int dup = 0;

#pragma clang loop unroll(full)
	for (__u32 j = 0; j < X509_MAX_EXTS; j++)
		if (j < n && s->ext_fp[j] == fp)
			dup = 1;
	s->ext_fp[n & (X509_EXT_SLOTS - 1)] = fp;
	s->ext_count = n + 1;
	return dup;
}

/* Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE,
 *                          extnValue OCTET STRING }
 * One per bpf_loop() iteration; ctx is the scratch pointer. */
static long x509_ext_cb(__u64 i, void *ctx)
{
	struct x509_scratch *s = *(struct x509_scratch **)ctx;
	const __u8 *buf = s->der;
	struct der_tlv *ext = &s->t[X509_T_EXT], *oid = &s->t[X509_T_OID],
		       *t = &s->t[X509_T_AUX], *val = &s->t[X509_T_VAL];
	__u32 critical = 0;
	int r;

	if (s->ext_pos >= s->ext_end)
		return 1;
	if (der_read(buf, s->ext_pos, s->ext_end, DER_SEQUENCE, ext) ||
	    der_read(buf, ext->off, ext->end, DER_OID, oid))
		goto malformed;
	t->end = oid->end;
	if (der_peek(buf, t->end, ext->end) == DER_BOOLEAN) {
		if (der_read(buf, t->end, ext->end, DER_BOOLEAN, t) || der_bool(buf, t) != 1)
			goto malformed;
		critical = 1;
	}
	if (der_read(buf, t->end, ext->end, DER_OCTET_STR, val) || val->end != ext->end)
		goto malformed;
	/* RFC 5280 4.2: at most one instance of any extension */
	if (x509_ext_duplicate(s, x509_oid_fp(buf, oid)))
		goto malformed;
	if (der_is(buf, oid, x509_oid_basic_constraints, sizeof(x509_oid_basic_constraints))) {
		if (x509_basic_constraints(s))
			goto malformed;
		s->c.bc_critical = critical;
	} else if (der_is(buf, oid, x509_oid_key_usage, sizeof(x509_oid_key_usage))) {
		if (x509_key_usage(s))
			goto malformed;
	} else if (der_is(buf, oid, x509_oid_ski, sizeof(x509_oid_ski))) {
		/* 4.2.1.2: MUST be non-critical */
		if (critical || x509_ski(s))
			goto malformed;
	} else if (der_is(buf, oid, x509_oid_aki, sizeof(x509_oid_aki))) {
		/* 4.2.1.1: MUST be non-critical */
		if (critical || x509_aki(s))
			goto malformed;
	} else if (der_is(buf, oid, x509_oid_aia, sizeof(x509_oid_aia))) {
		/* 4.2.2.1: MUST be non-critical */
		if (critical)
			goto malformed;
		r = x509_aia(s);
		if (r < 0)
			goto malformed;
		if (r) {
			s->ext_err = X509_UNSUPPORTED;
			return 1;
		}
	} else if (critical) {
		s->ext_err = X509_UNSUPPORTED;
		return 1;
	}
	s->ext_pos = ext->end;
	return 0;
malformed:
	s->ext_err = X509_MALFORMED;
	return 1;
}

/* Name ::= SEQUENCE OF RelativeDistinguishedName (SET SIZE (1..MAX) OF
 * AttributeTypeAndValue ::= SEQUENCE { type OID, value <a string type> }).
 * Names are compared by hash, never interpreted, but their structure is
 * checked so that damage inside one is reported as malformed. One
 * AttributeTypeAndValue per bpf_loop() iteration. */
static __always_inline int x509_string_tag(__u32 tag)
{
	/* UTF8String, NumericString, PrintableString, TeletexString,
	 * IA5String, UniversalString, BMPString */
	return tag == 0x0c || tag == 0x12 || tag == 0x13 || tag == 0x14 ||
	       tag == 0x16 || tag == 0x1c || tag == 0x1e;
}

static long x509_atv_cb(__u64 i, void *ctx)
{
	struct x509_scratch *s = *(struct x509_scratch **)ctx;
	const __u8 *buf = s->der;
	struct der_tlv *rdn = &s->t[X509_T_RDN], *atv = &s->t[X509_T_IN],
		       *t = &s->t[X509_T_AUX];
	__u32 tag;

	if (s->name_pos >= s->name_end && s->name_pos >= rdn->end)
		return 1;
	if (s->name_pos >= rdn->end) {		/* next RDN */
		if (der_read(buf, s->name_pos, s->name_end, 0x31, rdn) || rdn->len == 0)
			goto malformed;
		s->name_pos = rdn->off;
	}
	tag = x509_oid_and_value(s, s->name_pos, rdn->end, atv, t);
	if (tag < 0 || !x509_string_tag(tag))
		goto malformed;
	s->name_pos = atv->end;
	return 0;
malformed:
	s->name_err = 1;
	return 1;
}

/* The Name at tlv n is well-formed? (An empty Name is.) */
static __always_inline int x509_name_ok(struct x509_scratch *s, const struct der_tlv *n)
{
	s->name_pos = n->off;
	s->name_end = n->end;
	s->name_err = 0;
	s->t[X509_T_RDN].end = 0;
	bpf_loop(X509_MAX_ATVS, x509_atv_cb, &s, 0);
	return !s->name_err && s->name_pos == s->name_end;
}

/* A different AlgorithmIdentifier is unsupported if it is one
 * (SEQUENCE { OID, optional parameters }), malformed otherwise. */
static __always_inline int x509_algid_class(struct x509_scratch *s, const struct der_tlv *a)
{
	const __u8 *buf = s->der;
	struct der_tlv *t = &s->t[X509_T_IN];
	int tag;

	if (der_read(buf, a->start, a->end, DER_SEQUENCE, t) ||
	    der_read(buf, a->off, a->end, DER_OID, t) || t->len == 0)
		return X509_MALFORMED;
	if (t->end == a->end)
		return X509_UNSUPPORTED;
	/* parameters: NULL, a named curve OID or explicit ones (SEQUENCE) */
	tag = der_peek(buf, t->end, a->end);
	if ((tag != 0x05 && tag != DER_OID && tag != DER_SEQUENCE) ||
	    der_read(buf, t->end, a->end, tag, t) || t->end != a->end)
		return X509_MALFORMED;
	return X509_UNSUPPORTED;
}

/* Likewise for SubjectPublicKeyInfo ::= SEQUENCE { AlgorithmIdentifier,
 * BIT STRING } */
static __always_inline int x509_spki_class(struct x509_scratch *s, const struct der_tlv *k)
{
	const __u8 *buf = s->der;
	struct der_tlv *alg = &s->t[X509_T_VAL], *t = &s->t[X509_T_AUX];

	if (der_read(buf, k->off, k->end, DER_SEQUENCE, alg) ||
	    x509_algid_class(s, alg) == X509_MALFORMED ||
	    der_read(buf, alg->end, k->end, DER_BIT_STRING, t) || t->end != k->end ||
	    t->len == 0 || der_byte(buf, t->off) > 7)
		return X509_MALFORMED;
	return X509_UNSUPPORTED;
}

/* [3] EXPLICIT Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension, at the
 * position in s->t[X509_T_CUR].end; leaves that at the end of [3]. */
static __always_inline int x509_extensions(struct x509_scratch *s)
{
	struct der_tlv *cur = &s->t[X509_T_CUR], *seq = &s->t[X509_T_IN];
	__u32 limit = s->t[X509_T_TBS].end;

	if (der_read(s->der, cur->end, limit, DER_CTX_3, cur) ||
	    der_read(s->der, cur->off, cur->end, DER_SEQUENCE, seq) ||
	    seq->end != cur->end || seq->len == 0)
		return X509_MALFORMED;
	s->ext_pos = seq->off;
	s->ext_end = seq->end;
	s->ext_count = 0;
	s->ext_err = 0;
	bpf_loop(X509_MAX_EXTS, x509_ext_cb, &s, 0);
	if (s->ext_err)
		return s->ext_err;
	if (s->ext_pos != s->ext_end)
		return X509_UNSUPPORTED;	/* more than X509_MAX_EXTS */
	return X509_OK;
}

/* Skip an optional element with this tag at cur->end. */
static __always_inline int x509_skip_optional(struct x509_scratch *s, __u32 tag)
{
	struct der_tlv *cur = &s->t[X509_T_CUR];
	__u32 limit = s->t[X509_T_TBS].end;

	if (der_peek(s->der, cur->end, limit) != (int)tag)
		return 0;
	return der_read(s->der, cur->end, limit, tag, cur);
}

/* Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
 * Own subprogram: verified once, at its single call site. The TBSCertificate
 * fields are read in order, each starting at the end of the previous one
 * (s->t[X509_T_CUR]). */
static __noinline int x509_parse(struct x509_scratch *s)
{
	const __u8 *buf = s->der;
	struct x509_cert *c = &s->c;
	struct der_tlv *cert = &s->t[X509_T_CERT], *tbs = &s->t[X509_T_TBS],
		       *cur = &s->t[X509_T_CUR], *aux = &s->t[X509_T_AUX];
	int r;

	__builtin_memset(c, 0, sizeof(*c));
	c->path_len = X509_PATHLEN_NONE;
	if (der_read(buf, 0, s->len, DER_SEQUENCE, cert) || cert->end != s->len ||
	    der_read(buf, cert->off, cert->end, DER_SEQUENCE, tbs))
		return X509_MALFORMED;
	c->tbs_start = tbs->start;
	c->tbs_total = tbs->end - tbs->start;

	/* version [0] EXPLICIT: v3 only (v1/v2 have no extensions, so no CA flag) */
	if (der_peek(buf, tbs->off, tbs->end) == DER_INTEGER)
		return X509_UNSUPPORTED;		/* v1: version omitted */
	if (der_read(buf, tbs->off, tbs->end, DER_CTX_0, cur) ||
	    der_read(buf, cur->off, cur->end, DER_INTEGER, aux) || aux->end != cur->end ||
	    aux->len == 0)
		return X509_MALFORMED;
	if (!der_is(buf, cur, x509_v3, sizeof(x509_v3)))
		return X509_UNSUPPORTED;

	/* serialNumber: minimal, at most 20 octets, positive (4.1.2.2) */
	if (der_read(buf, cur->end, tbs->end, DER_INTEGER, cur) ||
	    cur->len == 0 || cur->len > X509_SERIAL_MAX)
		return X509_MALFORMED;
	if (cur->len > 1 && der_byte(buf, cur->off) == 0 && !(der_byte(buf, cur->off + 1) & 0x80))
		return X509_MALFORMED;
	if ((der_byte(buf, cur->off) & 0x80) ||			/* negative */
	    (cur->len == 1 && der_byte(buf, cur->off) == 0))	/* zero */
		return X509_MALFORMED;
	c->serial_off = cur->off;
	c->serial_len = cur->len;

	/* signature AlgorithmIdentifier */
	if (der_read(buf, cur->end, tbs->end, DER_SEQUENCE, cur))
		return X509_MALFORMED;
	if (!der_is(buf, cur, x509_alg_ecdsa_sha256, sizeof(x509_alg_ecdsa_sha256)))
		return x509_algid_class(s, cur);

	/* issuer: a non-empty Name (4.1.2.4) */
	if (der_read(buf, cur->end, tbs->end, DER_SEQUENCE, cur) || cur->len == 0 ||
	    !x509_name_ok(s, cur))
		return X509_MALFORMED;
	c->issuer_start = cur->start;
	c->issuer_total = cur->end - cur->start;

	/* validity */
	if (der_read(buf, cur->end, tbs->end, DER_SEQUENCE, cur) ||
	    der_time(buf, cur->off, cur->end, aux, &c->not_before) ||
	    der_time(buf, aux->end, cur->end, aux, &c->not_after) ||
	    aux->end != cur->end)
		return X509_MALFORMED;

	/* subject */
	if (der_read(buf, cur->end, tbs->end, DER_SEQUENCE, cur) || !x509_name_ok(s, cur))
		return X509_MALFORMED;
	c->subject_start = cur->start;
	c->subject_total = cur->end - cur->start;

	/* subjectPublicKeyInfo: P-256, uncompressed */
	if (der_read(buf, cur->end, tbs->end, DER_SEQUENCE, cur))
		return X509_MALFORMED;
	if (cur->end - cur->start != X509_SPKI_LEN ||
	    !der_match(buf, cur->start, x509_spki_p256, sizeof(x509_spki_p256)))
		return x509_spki_class(s, cur);
	__u32 key = cur->start + sizeof(x509_spki_p256);
#pragma clang loop unroll(full)
	for (int i = 0; i < X509_PUBKEY_LEN; i++)
		c->pubkey[i] = der_byte(buf, key + i);

	/* issuerUniqueID [1], subjectUniqueID [2]: skipped */
	if (x509_skip_optional(s, DER_CTX_1_PRIM) || x509_skip_optional(s, DER_CTX_2_PRIM))
		return X509_MALFORMED;
	if (der_peek(buf, cur->end, tbs->end) == DER_CTX_3) {
		r = x509_extensions(s);
		if (r != X509_OK)
			return r;
	}
	if (cur->end != tbs->end)
		return X509_MALFORMED;

	/* signatureAlgorithm, then signatureValue BIT STRING (0 unused bits)
	 * holding Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } */
	if (der_read(buf, tbs->end, cert->end, DER_SEQUENCE, cur))
		return X509_MALFORMED;
	if (!der_is(buf, cur, x509_alg_ecdsa_sha256, sizeof(x509_alg_ecdsa_sha256)))
		return x509_algid_class(s, cur);
	if (der_read(buf, cur->end, cert->end, DER_BIT_STRING, cur) || cur->end != cert->end ||
	    cur->len < 1 || der_byte(buf, cur->off) != 0)
		return X509_MALFORMED;
	if (der_ecdsa_sig(buf, cur->off + 1, cur->end, aux, cur, c->sig))
		return X509_MALFORMED;
	return X509_OK;
}

/* SHA-256 of s->der[start, start + len) into out (map memory). The masks
 * bound offset and length for bpf_dynptr_from_mem(); real values are below
 * them already (x509_parse checked everything against s->len). */
static __always_inline int x509_sha256(struct x509_scratch *s, __u32 start,
				       __u32 len, __u8 *out)
{
	sha256_init(&s->sha);
	if (sha256_update(&s->sha, s->der + (start & DER_MASK), len & DER_MASK))
		return -1;
	return sha256_final(&s->sha, out);
}

/* After x509_parse() == X509_OK: the digests the checks need. */
static __noinline int x509_hash(struct x509_scratch *s)
{
	struct x509_cert *c = &s->c;

	if (x509_sha256(s, c->tbs_start, c->tbs_total, c->tbs_digest) ||
	    x509_sha256(s, c->issuer_start, c->issuer_total, c->issuer_hash) ||
	    x509_sha256(s, c->subject_start, c->subject_total, c->subject_hash))
		return -1;
	return 0;
}
