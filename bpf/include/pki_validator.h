/* SPDX-License-Identifier: GPL-2.0 */
/* Shared (BPF + Python): pki_validator's wire format, map values, statistics.
 *
 * Authentication exchange: IPv4/UDP datagrams to the control port
 * (PKI_CTRL_PORT unless loaded with --set ctrl_port=N). Every payload starts
 * with struct pki_msg (40 bytes); multi-byte integers are big-endian.
 *
 *   client                                   server XDP
 *   HELLO     hdr (challenge zero)      ->
 *                                       <-   CHALLENGE hdr (challenge set)
 *   CERT      hdr + DER (flags=CA)      ->   verified against a trust anchor
 *                                       <-   ACK (status PKI_ACK_CA)
 *   CERT      hdr + DER (flags=LEAF)    ->   verified against the anchor or
 *                                            the previous CA certificate
 *                                       <-   ACK (status PKI_ACK_LEAF)
 *   PROOF     hdr + r||s (64)           ->   leaf key's ECDSA P-256 signature
 *                                            over SHA-256(PKI_POP_CONTEXT ||
 *                                            slot (4) || nonce (16) ||
 *                                            challenge (32) || client IPv4 (4))
 *                                       <-   ACK (status PKI_ACK_AUTHORIZED)
 *                                            + __be64 authorized-until (Unix s)
 *
 * CERT datagrams carry one certificate each, intermediates first (the one
 * issued by the anchor first), the leaf last; zero CA certificates for a
 * leaf issued by the anchor itself. A CA certificate with an anchor's
 * subject Name and key (the anchor itself, or a cross-signed copy of it
 * sent by a client that does not know which root the server trusts) is
 * acknowledged and restarts the chain at that anchor; nothing of it is
 * used. The challenge is challenge.bpf.h's
 *     HMAC-SHA256(server key, "cbpki v1" || client IPv4 || port 0 || 0 ||
 *                 slot || extra 0 || nonce)
 * (struct challenge_input), where slot counts PKI_SLOT_SECONDS periods of
 * the server's boot clock and nonce is 16 random bytes the client put in
 * its HELLO; both travel in every message (pki_msg.slot, .nonce) so the
 * server keeps no state for a HELLO. A challenge is accepted in its own and
 * the following slot and authorizes at most once (map used_chal). Every
 * CERT and PROOF carries it. Replies (CHALLENGE, ACK) are the request
 * rewritten in place (xdp_reply.bpf.h: addresses and ports swapped, UDP
 * checksum computed, XDP_TX), never larger than the request, so the
 * exchange cannot be used for amplification: HELLO must be padded to
 * PKI_HELLO_LEN bytes of payload. Failures are dropped without a reply and
 * counted by reason (struct pki_validator_stats).
 */
#pragma once

#define PKI_CTRL_PORT      7443
#define PKI_MAGIC          0x43504b49   /* "CPKI" */
#define PKI_VERSION        1

#define PKI_MSG_HELLO      1
#define PKI_MSG_CHALLENGE  2
#define PKI_MSG_CERT       3
#define PKI_MSG_PROOF      4
#define PKI_MSG_ACK        5

/* pki_msg.flags of a CERT */
#define PKI_CERT_CA        1    /* an intermediate: must be a CA */
#define PKI_CERT_LEAF      2    /* the client's own certificate */

/* pki_msg.status of an ACK */
#define PKI_ACK_CA         1
#define PKI_ACK_LEAF       2
#define PKI_ACK_AUTHORIZED 3

#define PKI_CHAL_LEN       32
#define PKI_SLOT_SECONDS   30
#define PKI_NONCE_LEN      16
#define PKI_MSG_LEN        60
#define PKI_HELLO_LEN      64   /* HELLO payload size (zero padded) */
#define PKI_ACK_LEN        68   /* pki_msg + __be64 authorized-until */
#define PKI_SIG_LEN        64   /* PROOF: r || s, 32 bytes each */
#define PKI_CERT_MAX       1400 /* largest DER certificate in one CERT */
#define PKI_MAX_CERTS      8    /* certificates per exchange (CA ones + leaf); a power of 2 */
#define PKI_SERIAL_MAX     20   /* RFC 5280 4.1.2.2: at most 20 octets */
#define PKI_NAME_HASH_LEN  32   /* SHA-256 of a Name's DER */
#define PKI_PUBKEY_LEN     65   /* 0x04 || X || Y */
#define PKI_PATHLEN_NONE   255  /* no pathLenConstraint */

/* Domain separation of the proof of possession: PKI_POP_CONTEXT is the 16
 * ASCII bytes "cryptbpf-pki-po1" (no terminator); the challenge's label is
 * the 8 bytes "cbpki v1". Defined as strings in pki_validator.bpf.c and
 * programs/pki_validator.py (cffi reads only integer #defines). */
#define PKI_CONTEXT_LEN    16

/* Every datagram's payload starts with this. */
struct pki_msg {
	__be32 magic;                  /* PKI_MAGIC */
	__u8   version;                /* PKI_VERSION */
	__u8   type;                   /* PKI_MSG_* */
	__u8   flags;                  /* CERT: PKI_CERT_CA / PKI_CERT_LEAF */
	__u8   status;                 /* ACK: PKI_ACK_* */
	__be32 slot;                   /* the challenge's time slot */
	__u8   nonce[PKI_NONCE_LEN];   /* chosen by the client in its HELLO */
	__u8   challenge[PKI_CHAL_LEN];
};

/* One certificate's place in revocation: the key of map `revoked`.
 * issuer = SHA-256 of the issuer Name's DER, serial = the INTEGER's content
 * octets exactly as DER encodes them (minimal, leading 0x00 when the top
 * bit is set), zero padded. */
struct pki_serial_ref {
	__u8 issuer[PKI_NAME_HASH_LEN];
	__u8 serial_len;
	__u8 serial[PKI_SERIAL_MAX];
	__u8 pad[3];
};

/* Value of map `anchors` (key: SHA-256 of the anchor's subject Name DER),
 * written by `cryptbpf pki trust`; the key's comb table is p256_keys[key_id]. */
struct pki_anchor {
	__u32 key_id;
	__u32 path_len;                /* pathLenConstraint or PKI_PATHLEN_NONE */
	__s64 not_before;              /* Unix seconds */
	__s64 not_after;
	__u8  pubkey[PKI_PUBKEY_LEN];  /* 0x04 || X || Y: recognizes copies of the anchor */
	__u8  pad[7];
};

/* Value of the LRU map `clients` (key: client IPv4, network order):
 * an exchange in progress. */
struct pki_client {
	__u8  challenge[PKI_CHAL_LEN];  /* the exchange is bound to it */
	__u32 ncerts;                   /* certificates accepted so far */
	__u32 have_issuer;              /* issuer_* holds a verified CA cert */
	__u32 have_leaf;
	__u32 path_left;                /* CA certs that may still follow */
	__s64 not_after;                /* min notAfter over the chain */
	__u8  anchor[PKI_NAME_HASH_LEN];
	__u8  issuer_name[PKI_NAME_HASH_LEN];
	__u8  issuer_key[PKI_PUBKEY_LEN];
	__u8  leaf_key[PKI_PUBKEY_LEN];
	__u8  pad[6];
	struct pki_serial_ref chain[PKI_MAX_CERTS];
};

/* Value of map `authorized` (key: client IPv4, network order). */
struct pki_auth {
	__u64 expires_tai_ns;           /* bpf_ktime_get_tai_ns() deadline */
	__s64 expires_unix;             /* the same deadline, Unix seconds */
	__u64 revoke_gen;               /* revoke_gen when the chain was checked */
	__u32 ncerts;
	__u32 pad;
	__u8  anchor[PKI_NAME_HASH_LEN];
	struct pki_serial_ref chain[PKI_MAX_CERTS];
};

/* Value of the one-slot array `pki_cfg`, written by userspace. */
struct pki_config {
	__s64 tai_offset_ns;    /* CLOCK_TAI - CLOCK_REALTIME, measured at load / `pki clock` */
	__u64 revoke_gen;       /* bumped after every revocation / untrust */
	__u64 lifetime_s;       /* authorization lifetime (bounded by notAfter) */
	__u32 clock_set;        /* tai_offset_ns is valid */
	__u32 pad;
};

/* ctx_in of the SYSCALL program pki_key_setup: the challenge key (from the
 * kernel CSPRNG at load); its HMAC pad states go to map chal_key. */
struct pki_key_setup {
	__u8  key[32];
	__s32 err;             /* out: 0 or -errno */
	__u32 pad;
};

/* Counters (per-CPU array `stats`, one slot). Rejections by reason.
 * PKI_R_x is the index (in __u64s) of field x, used by the BPF side. */
#define PKI_R_HELLO          0
#define PKI_R_CERT_OK        1
#define PKI_R_AUTHORIZED     2
#define PKI_R_PASSED         3
#define PKI_R_DENIED         4
#define PKI_R_EXPIRED        5
#define PKI_R_NOT_YET_VALID  6
#define PKI_R_REVOKED        7
#define PKI_R_UNTRUSTED      8
#define PKI_R_BAD_SIGNATURE  9
#define PKI_R_NOT_CA         10
#define PKI_R_MALFORMED      11
#define PKI_R_NO_POP         12
#define PKI_R_BAD_CHALLENGE  13
#define PKI_R_REPLAY         14
#define PKI_R_UNSUPPORTED    15
#define PKI_R_BAD_USAGE      16
#define PKI_R_LOST_AUTH      17
#define PKI_R_ERRORS         18
#define PKI_R_UNPARSED       19
#define PKI_R_ICMP_ERROR     20
#define PKI_R_COUNT          21

struct pki_validator_stats {
	__u64 hello;           /* challenges issued */
	__u64 cert_ok;         /* certificates accepted */
	__u64 authorized;      /* exchanges completed: client authorized */
	__u64 passed;          /* protected-port packets from authorized clients */
	__u64 denied;          /* protected-port packets dropped: not authorized */
	__u64 expired;         /* certificate (or anchor) past notAfter */
	__u64 not_yet_valid;   /* before notBefore */
	__u64 revoked;         /* a serial of the chain is revoked, or its issuer's
	                        * CRL was refused (map crl_invalid) */
	__u64 untrusted;       /* issuer neither an anchor nor the previous CA cert */
	__u64 bad_signature;   /* certificate signature does not verify */
	__u64 not_ca;          /* CA certificate without cA in a critical basicConstraints,
	                        * keyCertSign, subject key id or subject; path length */
	__u64 malformed;       /* DER or message that does not parse; RFC 5280 profile
	                        * violations (duplicate extension, critical AKI/SKI/AIA,
	                        * no AKI, serial not positive, empty issuer) */
	__u64 no_pop;          /* proof of possession missing or wrong */
	__u64 bad_challenge;   /* challenge forged, for another address, or stale */
	__u64 replay;          /* challenge already used for an authorization */
	__u64 unsupported;     /* not ECDSA P-256/SHA-256, unknown critical ext. */
	__u64 bad_usage;       /* leaf: keyUsage without digitalSignature or with
	                        * keyCertSign, or cA TRUE */
	__u64 lost_auth;       /* authorizations dropped: revoked or expired */
	__u64 errors;          /* internal: helper or map failure */
	__u64 unparsed;        /* any port: frame not classified (more VLAN tags or IPv6
	                        * extension headers than walked) or an IP/L4 header the
	                        * kernel drops */
	__u64 icmp_error;      /* ICMP errors quoting a protected port's flow with an
	                        * unauthorized remote end */
};
