// SPDX-License-Identifier: GPL-2.0
/* pki_validator: X.509 certificate-chain access control in XDP.
 *
 * A client earns access to the protected ports by an exchange on the UDP
 * control port (wire format: include/pki_validator.h): it fetches a
 * challenge, sends its certificates one per datagram, each verified here
 * (DER parsed by x509.bpf.h, ECDSA P-256/SHA-256 by ecdsa_p256.bpf.h)
 * against a trust anchor registered by the administrator or the CA
 * certificate it sent just before, and proves possession of the leaf key by
 * signing the challenge. Its IPv4 address is then authorized until the
 * configured lifetime or the chain's earliest notAfter, whichever is first.
 * Packets to protected ports (TCP and UDP) from anyone else are dropped;
 * everything else is passed without being looked at.
 *
 * Time: certificate validity needs Unix time, which BPF does not have.
 * bpf_ktime_get_tai_ns() (CLOCK_TAI, 6.1+) follows clock steps like
 * CLOCK_REALTIME and differs from it by the kernel's TAI offset, which
 * userspace measures and publishes in pki_cfg.tai_offset_ns at load (and on
 * `cryptbpf pki clock`): unix = tai - offset. Challenge slots use the boot
 * clock, which never jumps.
 *
 * Revocation: the (issuer, serial) pairs of an authorized client's chain are
 * kept in its authorization. `cryptbpf pki revoke` adds pairs to `revoked`
 * and then bumps pki_cfg.revoke_gen; the first packet of each authorized
 * client that sees a new generation re-checks its chain (and that its anchor
 * is still trusted) and loses access if anything is revoked. The generation
 * is read before the checks, so a revocation racing a check is caught by the
 * next packet.
 */
#define P256_MAX_KEYS 8		/* trust anchors; 148 KB of table each */
#include "ecdsa_p256.bpf.h"
#include "ct.bpf.h"
#include "challenge.bpf.h"
#include "frame_classify.bpf.h"
#include "xdp_reply.bpf.h"
#include "x509.bpf.h"
#include "pki_validator.h"

char LICENSE[] SEC("license") = "GPL";

_Static_assert(PKI_CERT_MAX <= DER_MAX_INPUT, "certificate buffer");
_Static_assert(PKI_PATHLEN_NONE == X509_PATHLEN_NONE, "path length");
_Static_assert(PKI_SERIAL_MAX == X509_SERIAL_MAX, "serial length");
_Static_assert((PKI_MAX_CERTS & (PKI_MAX_CERTS - 1)) == 0, "chain index mask");
_Static_assert(sizeof(struct pki_validator_stats) == PKI_R_COUNT * 8, "stats");
_Static_assert(sizeof(struct pki_msg) == PKI_MSG_LEN, "wire format");
_Static_assert(PKI_NONCE_LEN == CHALLENGE_NONCE_LEN, "nonce");

#define NSEC_PER_SEC 1000000000ULL
#define PKI_SLOT_NS  (PKI_SLOT_SECONDS * NSEC_PER_SEC)
#define PKI_REPLY_MAX 128
_Static_assert(PKI_HELLO_LEN <= PKI_REPLY_MAX && PKI_ACK_LEN <= PKI_REPLY_MAX, "reply");

/* UDP port of the authentication exchange (host byte order). */
const volatile __u16 ctrl_port = PKI_CTRL_PORT;

static const char pki_chal_label[CHALLENGE_LABEL_LEN] = "cbpki v1";
static const char pki_pop_context[PKI_CONTEXT_LEN] = "cryptbpf-pki-po1";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pki_validator_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pki_config);
} pki_cfg SEC(".maps");

/* the challenge key's HMAC pad states (pki_key_setup) */
CHALLENGE_KEY_MAP(chal_key);

/* SHA-256(subject Name DER) of each trust anchor -> its key table id */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, P256_MAX_KEYS);
	__type(key, __u8[PKI_NAME_HASH_LEN]);
	__type(value, struct pki_anchor);
} anchors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pki_serial_ref);
	__type(value, __u8);
} revoked SEC(".maps");

/* SHA-256(issuer Name DER) of each CA whose CRL `pki revoke --crl` refused
 * (no CRL number, bad signature, ...): its revocation status is unknown, so
 * every certificate it issued is treated as revoked until a valid CRL of
 * it is loaded (fail closed) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u8[PKI_NAME_HASH_LEN]);
	__type(value, __u8);
} crl_invalid SEC(".maps");

/* exchanges in progress, by client IPv4 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __be32);
	__type(value, struct pki_client);
} clients SEC(".maps");

/* authorized clients, by IPv4 (least recently used evicted when full) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __be32);
	__type(value, struct pki_auth);
} authorized SEC(".maps");

/* challenges that completed an authorization (a challenge lives at most
 * two slots, so the LRU only has to remember the last minute's) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u8[PKI_CHAL_LEN]);
	__type(value, __u64);
} used_chal SEC(".maps");

/* destination ports (host order) that need an authorization, TCP and UDP */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} protected_ports SEC(".maps");

struct pki_scratch {
	struct x509_scratch x;
	struct challenge_scratch cs;
	struct frame_info fi;                 /* the frame, classified */
	struct xdp_udp4 u;                    /* a control request: where it is */
	__be32 saddr;                         /* the request's source */
	__u32 plen;                           /* and UDP payload length */
	struct pki_msg msg;                   /* the request's header */
	__u8 reply[PKI_REPLY_MAX];            /* the reply's payload */
	__u8 pop_in[PKI_CONTEXT_LEN + 4 + PKI_NONCE_LEN + PKI_CHAL_LEN + 4];
	__u8 digest[SHA256_DIGEST_SIZE];
	__u8 sig[PKI_SIG_LEN];
	__u8 vkey[PKI_PUBKEY_LEN];            /* pki_verify(): key in the packet, */
	__u8 vtable;                          /* or 1: registered key table key_id */
	__u8 _pad[2];
	__u32 key_id;
	struct pki_serial_ref ref;
	struct pki_client cl;
	struct pki_auth auth;
	__s64 now_unix;
	__u64 now_tai;
	__s64 until_unix;
	__u8 raw_key[32];                     /* pki_key_setup only, wiped */
};
CRYPTBPF_PERCPU_SCRATCH(scratch, struct pki_scratch);

static __always_inline void count(__u32 reason)
{
	__u32 zero = 0;
	__u64 *s = bpf_map_lookup_elem(&stats, &zero);

	if (s && reason < PKI_R_COUNT)
		s[reason]++;
}

static __always_inline struct pki_config *pki_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&pki_cfg, &zero);
}

/* Unix seconds now, from CLOCK_TAI and the published offset; -1 if the
 * offset was never published (then no certificate can be checked). */
static __always_inline int pki_now(struct pki_scratch *s)
{
	struct pki_config *cfg = pki_config();
	__u64 tai = bpf_ktime_get_tai_ns();

	if (!cfg || !cfg->clock_set || (__s64)tai <= cfg->tai_offset_ns)
		return -1;
	s->now_tai = tai;
	s->now_unix = (__s64)((tai - (__u64)cfg->tai_offset_ns) / NSEC_PER_SEC);
	return 0;
}

static __always_inline void put_be64(__u8 *p, __u64 v)
{
#pragma clang loop unroll(full)
	for (int i = 0; i < 8; i++)
		p[i] = v >> (56 - 8 * i);
}

/* SYSCALL, run once at load: the challenge key's pad states into chal_key.
 * The raw key is not kept anywhere. */
SEC("syscall")
int pki_key_setup(struct pki_key_setup *args)
{
	struct pki_scratch *s = cryptbpf_scratch(&scratch);
	__u32 zero = 0;
	struct challenge_key *k = bpf_map_lookup_elem(&chal_key, &zero);

	if (!s || !k) {
		args->err = -12;	/* ENOMEM */
		return 0;
	}
	__builtin_memcpy(s->raw_key, args->key, sizeof(s->raw_key));
	args->err = challenge_key_install(&s->cs.h, s->raw_key, sizeof(s->raw_key), k);
	__builtin_memset(s->raw_key, 0, sizeof(s->raw_key));
	return 0;
}

/* cs->in for saddr, slot and the client's nonce (challenge.bpf.h) */
static __always_inline void pki_chal_input(struct pki_scratch *s, __be32 saddr,
					   __u32 slot)
{
	challenge_input_set(&s->cs.in, pki_chal_label, saddr, 0, slot, 0);
	__builtin_memcpy(s->cs.in.nonce, s->msg.nonce, sizeof(s->cs.in.nonce));
}

/* The challenge in s->msg: issued to saddr in this slot or the previous one,
 * and not used yet? Returns 0, or the reason to reject. */
static __noinline int pki_chal_check(struct pki_scratch *s, __be32 saddr)
{
	const struct challenge_key *k = challenge_key_get(&chal_key);

	if (!k)
		return PKI_R_ERRORS;
	pki_chal_input(s, saddr, bpf_ntohl(s->msg.slot));
	__builtin_memcpy(s->cs.presented, s->msg.challenge, PKI_CHAL_LEN);
	if (challenge_check(&s->cs, k, challenge_slot(PKI_SLOT_NS)) != CHALLENGE_OK)
		return PKI_R_BAD_CHALLENGE;
	if (bpf_map_lookup_elem(&used_chal, s->msg.challenge))
		return PKI_R_REPLAY;
	return 0;
}

/* A fresh challenge for saddr into s->msg. */
static __noinline int pki_chal_issue(struct pki_scratch *s, __be32 saddr)
{
	const struct challenge_key *k = challenge_key_get(&chal_key);
	__u32 slot = challenge_slot(PKI_SLOT_NS);

	if (!k)
		return -1;
	pki_chal_input(s, saddr, slot);
	s->msg.slot = bpf_htonl(slot);
	challenge_compute(&s->cs, k, s->msg.challenge);
	return 0;
}

/* s->ref = (SHA-256 of the issuer Name, serial) of the parsed certificate */
static __always_inline void pki_make_ref(struct pki_scratch *s)
{
	struct x509_cert *c = &s->x.c;
	__u32 n = c->serial_len;

	__builtin_memset(&s->ref, 0, sizeof(s->ref));
	__builtin_memcpy(s->ref.issuer, c->issuer_hash, PKI_NAME_HASH_LEN);
	s->ref.serial_len = n;
#pragma clang loop unroll(full)
	for (__u32 i = 0; i < PKI_SERIAL_MAX; i++)
		if (i < n)
			s->ref.serial[i] = der_byte(s->x.der, c->serial_off + i);
}

/* Is any certificate of the chain revoked (or its issuer's CRL refused),
 * or its anchor no longer trusted? (A pki_serial_ref starts with the issuer
 * hash, crl_invalid's key.) */
static __always_inline int pki_chain_revoked(const __u8 *anchor,
					     const struct pki_serial_ref *chain,
					     __u32 n)
{
	if (!bpf_map_lookup_elem(&anchors, anchor))
		return PKI_R_UNTRUSTED;
#pragma clang loop unroll(full)
	for (__u32 i = 0; i < PKI_MAX_CERTS; i++)
		if (i < n && (bpf_map_lookup_elem(&revoked, &chain[i]) ||
			      bpf_map_lookup_elem(&crl_invalid, chain[i].issuer)))
			return PKI_R_REVOKED;
	return 0;
}

/* validity of [not_before, not_after] at s->now_unix (RFC 5280: inclusive) */
static __always_inline int pki_validity(struct pki_scratch *s, __s64 nb, __s64 na)
{
	if (s->now_unix < nb)
		return PKI_R_NOT_YET_VALID;
	if (s->now_unix > na)
		return PKI_R_EXPIRED;
	return 0;
}

/* ---- signature checks ----
 * One subprogram verifies for both CERT and PROOF, called from the top
 * level: the pure-BPF verifier needs most of the 512-byte stack for its own
 * frames, so the checks around it run in separate subprograms
 * (prepare / pki_verify / finish) instead of wrapping it. */

/* s->digest, s->sig against key table s->key_id (s->vtable) or s->vkey */
static __noinline int pki_verify(struct pki_scratch *s)
{
	if (s->vtable)
		return ecdsa_p256_verify(s->key_id, s->digest, s->sig, PKI_SIG_LEN);
	return ecdsa_p256_verify_pubkey(s->vkey, PKI_PUBKEY_LEN, s->digest,
					s->sig, PKI_SIG_LEN);
}

static __always_inline int pki_verify_reason(int v, int bad)
{
	if (v == P256_VERIFY_OK)
		return 0;
	if (v == P256_VERIFY_BAD || v == P256_VERIFY_EBADKEY)
		return bad;
	return PKI_R_ERRORS;
}

/* ---- CERT ---- */

#define PKI_IS_ANCHOR (-1)

/* Two public keys equal? (Public: no constant time needed.) A plain
 * bounded loop: unrolled, the 65 compares made pki_cert_prepare's frame
 * spill to 416 bytes and the call chain through x509_parse exceed the
 * 512-byte stack. */
static __always_inline int pki_same_key(const __u8 *a, const __u8 *b)
{
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < PKI_PUBKEY_LEN; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

/* Parse the certificate in s->x (already copied from the packet), find its
 * issuer and stage the signature check. The new state of saddr's exchange
 * is built in s->cl. Returns 0, the rejection reason, or PKI_IS_ANCHOR.
 * Issuer: the CA certificate this exchange verified last (same challenge),
 * else a trust anchor, which starts the chain afresh.
 * PKI_IS_ANCHOR: a CA certificate with a trust anchor's subject Name and
 * key is that anchor (itself, or a cross-signed copy: a client that does
 * not know which root the server trusts sends the path up to another
 * root). A path ends at its trust anchor (RFC 5280 6.1: the anchor is an
 * input, not a certificate of the path), so the exchange restarts there;
 * nothing of this certificate is trusted or used: not its signature,
 * issuer, validity or extensions. */
static __noinline int pki_cert_prepare(struct pki_scratch *s, __be32 saddr,
				       __u32 flags)
{
	struct x509_cert *c = &s->x.c;
	struct pki_client *cl, *st = &s->cl;
	struct pki_anchor *an;
	int r;

	r = x509_parse(&s->x);
	if (r == X509_MALFORMED)
		return PKI_R_MALFORMED;
	if (r != X509_OK)
		return PKI_R_UNSUPPORTED;
	/* RFC 5280 4.2.1.1: every certificate a CA issues names its issuer's
	 * key; only a self-signed one (an anchor: never sent) may omit it */
	if (!c->has_aki)
		return PKI_R_MALFORMED;
	if (x509_hash(&s->x) || pki_now(s))
		return PKI_R_ERRORS;
	if (flags == PKI_CERT_CA) {
		an = bpf_map_lookup_elem(&anchors, c->subject_hash);
		if (an && pki_same_key(an->pubkey, c->pubkey))
			return PKI_IS_ANCHOR;
	}
	__builtin_memcpy(s->digest, c->tbs_digest, sizeof(s->digest));
	__builtin_memcpy(s->sig, c->sig, sizeof(s->sig));

	cl = bpf_map_lookup_elem(&clients, &saddr);
	if (cl && cl->have_issuer && !cl->have_leaf &&
	    ct_memeq(cl->challenge, s->msg.challenge, PKI_CHAL_LEN) &&
	    ct_memeq(cl->issuer_name, c->issuer_hash, PKI_NAME_HASH_LEN)) {
		__builtin_memcpy(st, cl, sizeof(*st));
		__builtin_memcpy(s->vkey, st->issuer_key, PKI_PUBKEY_LEN);
		s->vtable = 0;
		return 0;
	}
	an = bpf_map_lookup_elem(&anchors, c->issuer_hash);
	if (!an)
		return PKI_R_UNTRUSTED;
	__builtin_memset(st, 0, sizeof(*st));
	__builtin_memcpy(st->challenge, s->msg.challenge, PKI_CHAL_LEN);
	__builtin_memcpy(st->anchor, c->issuer_hash, PKI_NAME_HASH_LEN);
	st->path_left = an->path_len;
	st->not_after = an->not_after;
	s->key_id = an->key_id;
	s->vtable = 1;
	return pki_validity(s, an->not_before, an->not_after);
}

/* After a good signature: validity, revocation, the certificate's role;
 * then store the exchange. Checks run after the signature, so a counter
 * only says "expired" or "revoked" about a certificate its issuer signed. */
static __noinline int pki_cert_finish(struct pki_scratch *s, __be32 saddr, __u32 flags)
{
	struct x509_cert *c = &s->x.c;
	struct pki_client *st = &s->cl;
	int r;

	r = pki_validity(s, c->not_before, c->not_after);
	if (r)
		return r;
	pki_make_ref(s);
	if (bpf_map_lookup_elem(&revoked, &s->ref) ||
	    bpf_map_lookup_elem(&crl_invalid, s->ref.issuer))
		return PKI_R_REVOKED;
	if (st->ncerts >= PKI_MAX_CERTS)
		return PKI_R_UNTRUSTED;		/* chain longer than we keep */

	if (flags == PKI_CERT_CA) {
		/* it will issue the next certificate: CA flag in a critical
		 * basicConstraints (4.2.1.9), keyCertSign, a subject key id
		 * (4.2.1.2) and a subject Name (4.1.2.6), and room under the
		 * path length constraints above it */
		if (!c->is_ca || !c->bc_critical || !c->has_ski ||
		    c->subject_total <= 2 ||
		    (c->has_key_usage && !(c->key_usage & X509_KU_KEY_CERT_SIGN)))
			return PKI_R_NOT_CA;
		/* RFC 5280 6.1.4 (l), (m): a self-issued certificate (a key
		 * rollover: issuer Name = subject Name) does not count */
		if (!ct_memeq(c->issuer_hash, c->subject_hash, PKI_NAME_HASH_LEN)) {
			if (st->path_left == 0)
				return PKI_R_NOT_CA;
			st->path_left--;
		}
		if (c->path_len < st->path_left)
			st->path_left = c->path_len;
		st->have_issuer = 1;
		__builtin_memcpy(st->issuer_name, c->subject_hash, PKI_NAME_HASH_LEN);
		__builtin_memcpy(st->issuer_key, c->pubkey, PKI_PUBKEY_LEN);
	} else {
		/* the leaf signs the proof, and is not a CA: a cA=TRUE
		 * certificate or keyCertSign (4.2.1.3: only with cA) is no
		 * end-entity certificate */
		if (c->is_ca ||
		    (c->has_key_usage && !(c->key_usage & X509_KU_DIGITAL_SIGNATURE)) ||
		    (c->has_key_usage && (c->key_usage & X509_KU_KEY_CERT_SIGN)))
			return PKI_R_BAD_USAGE;
		st->have_leaf = 1;
		__builtin_memcpy(st->leaf_key, c->pubkey, PKI_PUBKEY_LEN);
	}
	if (c->not_after < st->not_after)
		st->not_after = c->not_after;
	__builtin_memcpy(&st->chain[st->ncerts & (PKI_MAX_CERTS - 1)], &s->ref,
			 sizeof(s->ref));
	st->ncerts++;
	if (bpf_map_update_elem(&clients, &saddr, st, BPF_ANY))
		return PKI_R_ERRORS;
	return 0;
}

/* ---- PROOF ---- */

/* s->sig holds the proof: stage its check against saddr's leaf key. */
static __noinline int pki_proof_prepare(struct pki_scratch *s, __be32 saddr)
{
	struct pki_client *cl = bpf_map_lookup_elem(&clients, &saddr);

	if (!cl || !cl->have_leaf ||
	    !ct_memeq(cl->challenge, s->msg.challenge, PKI_CHAL_LEN))
		return PKI_R_NO_POP;
	__builtin_memcpy(&s->cl, cl, sizeof(s->cl));
	/* the leaf key signed
	 * PKI_POP_CONTEXT || slot || nonce || challenge || client address */
	__builtin_memcpy(s->pop_in, pki_pop_context, PKI_CONTEXT_LEN);
	__builtin_memcpy(s->pop_in + PKI_CONTEXT_LEN, &s->msg.slot, 4);
	__builtin_memcpy(s->pop_in + PKI_CONTEXT_LEN + 4, s->msg.nonce, PKI_NONCE_LEN);
	__builtin_memcpy(s->pop_in + PKI_CONTEXT_LEN + 4 + PKI_NONCE_LEN,
			 s->msg.challenge, PKI_CHAL_LEN);
	__builtin_memcpy(s->pop_in + PKI_CONTEXT_LEN + 4 + PKI_NONCE_LEN + PKI_CHAL_LEN,
			 &saddr, 4);
	sha256_init(&s->x.sha);
	if (sha256_update(&s->x.sha, s->pop_in, sizeof(s->pop_in)) ||
	    sha256_final(&s->x.sha, s->digest))
		return PKI_R_ERRORS;
	__builtin_memcpy(s->vkey, s->cl.leaf_key, PKI_PUBKEY_LEN);
	s->vtable = 0;
	return 0;
}

/* After a good proof: authorize saddr (s->until_unix set). */
static __noinline int pki_proof_finish(struct pki_scratch *s, __be32 saddr)
{
	struct pki_config *cfg = pki_config();
	struct pki_auth *a = &s->auth;
	__u64 gen, life;
	int r;

	if (!cfg || pki_now(s))
		return PKI_R_ERRORS;
	/* revocations since the certificates were checked */
	gen = *(volatile __u64 *)&cfg->revoke_gen;
	r = pki_chain_revoked(s->cl.anchor, s->cl.chain, s->cl.ncerts);
	if (r)
		return r;
	if (s->now_unix > s->cl.not_after)
		return PKI_R_EXPIRED;
	/* one authorization per challenge: the first CPU to get here wins */
	if (bpf_map_update_elem(&used_chal, s->msg.challenge, &s->now_tai, BPF_NOEXIST))
		return PKI_R_REPLAY;

	life = cfg->lifetime_s;
	if ((__u64)(s->cl.not_after - s->now_unix) < life)
		life = s->cl.not_after - s->now_unix;
	__builtin_memset(a, 0, sizeof(*a));
	a->expires_tai_ns = s->now_tai + life * NSEC_PER_SEC;
	a->expires_unix = s->now_unix + life;
	a->revoke_gen = gen;
	a->ncerts = s->cl.ncerts;
	__builtin_memcpy(a->anchor, s->cl.anchor, PKI_NAME_HASH_LEN);
	__builtin_memcpy(a->chain, s->cl.chain, sizeof(a->chain));
	if (bpf_map_update_elem(&authorized, &saddr, a, BPF_ANY))
		return PKI_R_ERRORS;
	bpf_map_delete_elem(&clients, &saddr);
	s->until_unix = a->expires_unix;
	return 0;
}

/* ---- replies ---- */

/* Turn the request (s->u: any VLAN tags, IPv4 without options other than
 * NOP/EOL, UDP) into a reply to its sender carrying s->reply[0 .. plen)
 * and send it back out (XDP_TX), tags kept, checksums computed
 * (xdp_reply.bpf.h). plen is a constant at each call and never exceeds the
 * request's payload: a reply is never larger than what caused it. */
static __always_inline int pki_reply(struct xdp_md *ctx, struct pki_scratch *s,
				     const __u32 plen)
{
	if (s->plen < plen)
		return XDP_DROP;
	if (xdp_udp4_reply(ctx, &s->u, s->reply, plen))
		return XDP_DROP;
	return XDP_TX;
}

/* Own subprograms: the rewrite must not add to the verifier's frames */
static __noinline int pki_send_challenge(struct xdp_md *ctx, struct pki_scratch *s)
{
	return pki_reply(ctx, s, PKI_HELLO_LEN);
}

static __noinline int pki_send_ack(struct xdp_md *ctx, struct pki_scratch *s)
{
	return pki_reply(ctx, s, PKI_ACK_LEN);
}

static __always_inline void pki_reply_hdr(struct pki_scratch *s, __u8 type,
					  __u8 status)
{
	struct pki_msg *m = (struct pki_msg *)s->reply;

	__builtin_memset(s->reply, 0, sizeof(s->reply));
	m->magic = bpf_htonl(PKI_MAGIC);
	m->version = PKI_VERSION;
	m->type = type;
	m->status = status;
	m->slot = s->msg.slot;
	__builtin_memcpy(m->nonce, s->msg.nonce, PKI_NONCE_LEN);
	__builtin_memcpy(m->challenge, s->msg.challenge, PKI_CHAL_LEN);
}

/* ---- the control port ---- */

static __always_inline int drop(__u32 reason)
{
	count(reason);
	return XDP_DROP;
}

static __always_inline int pki_control(struct xdp_md *ctx, struct pki_scratch *s)
{
	__u32 off = s->u.payload_off, plen = s->plen;
	__be32 saddr = s->saddr;
	int r;

	if (plen < PKI_MSG_LEN || bpf_xdp_load_bytes(ctx, off, &s->msg, PKI_MSG_LEN) ||
	    s->msg.magic != bpf_htonl(PKI_MAGIC) || s->msg.version != PKI_VERSION)
		return drop(PKI_R_MALFORMED);

	switch (s->msg.type) {
	case PKI_MSG_HELLO:
		if (plen != PKI_HELLO_LEN)
			return drop(PKI_R_MALFORMED);
		if (pki_chal_issue(s, saddr))
			return drop(PKI_R_ERRORS);
		pki_reply_hdr(s, PKI_MSG_CHALLENGE, 0);
		count(PKI_R_HELLO);
		return pki_send_challenge(ctx, s);
	case PKI_MSG_CERT: {
		__u32 len = plen - PKI_MSG_LEN;
		__u32 flags = s->msg.flags;

		if (!len || len > PKI_CERT_MAX ||
		    (flags != PKI_CERT_CA && flags != PKI_CERT_LEAF))
			return drop(PKI_R_MALFORMED);
		r = pki_chal_check(s, saddr);
		if (r)
			return drop(r);
		/* length in [1, DER_MASK + 1] for the verifier (identity here) */
		if (bpf_xdp_load_bytes(ctx, off + PKI_MSG_LEN, s->x.der,
				       ((len - 1) & DER_MASK) + 1))
			return drop(PKI_R_MALFORMED);
		s->x.len = len;
		r = pki_cert_prepare(s, saddr, flags);
		if (r == PKI_IS_ANCHOR) {
			/* the chain restarts at the anchor: as if no CA
			 * certificate had been sent yet */
			bpf_map_delete_elem(&clients, &s->saddr);
			r = 0;
		} else {
			if (!r)
				r = pki_verify_reason(pki_verify(s), PKI_R_BAD_SIGNATURE);
			if (!r)
				r = pki_cert_finish(s, saddr, flags);
		}
		if (r)
			return drop(r);
		count(PKI_R_CERT_OK);
		pki_reply_hdr(s, PKI_MSG_ACK, flags == PKI_CERT_CA ? PKI_ACK_CA : PKI_ACK_LEAF);
		return pki_send_ack(ctx, s);
	}
	case PKI_MSG_PROOF:
		if (plen != PKI_MSG_LEN + PKI_SIG_LEN)
			return drop(PKI_R_MALFORMED);
		r = pki_chal_check(s, saddr);
		if (r)
			return drop(r);
		if (bpf_xdp_load_bytes(ctx, off + PKI_MSG_LEN, s->sig, PKI_SIG_LEN))
			return drop(PKI_R_MALFORMED);
		r = pki_proof_prepare(s, saddr);
		if (!r)
			r = pki_verify_reason(pki_verify(s), PKI_R_NO_POP);
		if (!r)
			r = pki_proof_finish(s, saddr);
		if (r)
			return drop(r);
		count(PKI_R_AUTHORIZED);
		pki_reply_hdr(s, PKI_MSG_ACK, PKI_ACK_AUTHORIZED);
		put_be64(s->reply + PKI_MSG_LEN, s->until_unix);
		return pki_send_ack(ctx, s);
	}
	return drop(PKI_R_MALFORMED);
}

/* ---- protected ports ---- */

/* saddr: map memory (the classified frame), a map key as it is */
static __always_inline int pki_guard(const __be32 *saddr)
{
	struct pki_config *cfg = pki_config();
	struct pki_auth *a = bpf_map_lookup_elem(&authorized, saddr);
	__u64 gen;

	if (!a || !cfg)
		return drop(PKI_R_DENIED);
	if (bpf_ktime_get_tai_ns() >= a->expires_tai_ns)
		goto lost;
	gen = *(volatile __u64 *)&cfg->revoke_gen;
	if (a->revoke_gen != gen) {
		if (pki_chain_revoked(a->anchor, a->chain, a->ncerts))
			goto lost;
		a->revoke_gen = gen;
	}
	count(PKI_R_PASSED);
	return XDP_PASS;
lost:
	bpf_map_delete_elem(&authorized, saddr);
	count(PKI_R_LOST_AUTH);
	return drop(PKI_R_DENIED);
}

/* port: map memory (the classified frame) */
static __always_inline int is_protected(const __u16 *port)
{
	return bpf_map_lookup_elem(&protected_ports, port) != NULL;
}

/* An ICMP error is handed to the socket of the flow it quotes: one about a
 * protected port's flow with a remote end that is not authorized cannot
 * belong to a flow we let in, and could reset or slow down those that are
 * (errors about authorized flows pass, whoever sends them: a router on
 * the path, for "fragmentation needed"). Quotes that cannot be read are
 * ignored by the kernel too. */
static __always_inline int pki_icmp_error(const struct frame_info *fi, int family)
{
	struct pki_auth *a;

	if ((fi->quoted_proto != FRAME_IPPROTO_TCP && fi->quoted_proto != FRAME_IPPROTO_UDP) ||
	    !is_protected(&fi->quoted_port))
		return XDP_PASS;
	if (family == FRAME_IPV4) {
		a = bpf_map_lookup_elem(&authorized, &fi->quoted_peer);
		if (a && bpf_ktime_get_tai_ns() < a->expires_tai_ns)
			return XDP_PASS;
	}
	return drop(PKI_R_ICMP_ERROR);
}

SEC("xdp")
int pki_xdp(struct xdp_md *ctx)
{
	struct pki_scratch *s = cryptbpf_scratch(&scratch);
	struct frame_info *fi;
	int family;

	if (!s)
		return drop(PKI_R_ERRORS);
	fi = &s->fi;
	family = frame_classify_xdp(ctx, fi);
	if (family < 0)
		/* cannot tell the port, or the kernel would drop it: a
		 * protected one could hide in it */
		return drop(PKI_R_UNPARSED);
	if (family == FRAME_NOT_IP)
		return XDP_PASS;
	if (fi->flags & FRAME_F_ICMP_ERR)
		return pki_icmp_error(fi, family);
	/* not TCP/UDP, or a later fragment: no port (a fragmented datagram to
	 * a protected port lost its first fragment here and never completes) */
	if (!(fi->flags & FRAME_F_PORTS))
		return XDP_PASS;
	if (family == FRAME_IPV6)
		/* authorization is per IPv4 address */
		return is_protected(&fi->dport) ? drop(PKI_R_DENIED) : XDP_PASS;
	if (fi->proto == FRAME_IPPROTO_UDP && fi->dport == ctrl_port) {
		/* exactly one unfragmented datagram, no IP options but NOP/EOL */
		if (xdp_udp4_from_frame(family, fi, &s->u))
			return drop(PKI_R_MALFORMED);
		s->saddr = s->u.saddr;
		s->plen = s->u.payload_len;
		return pki_control(ctx, s);
	}
	if (is_protected(&fi->dport))
		return pki_guard(&fi->saddr);
	return XDP_PASS;
}
