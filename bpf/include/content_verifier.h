/* SPDX-License-Identifier: GPL-2.0 */
/* Shared (BPF + Python): content_verifier's wire format, map values and
 * statistics.
 *
 * Wire format: one UDP datagram (IPv4 or IPv6) per chunk, to the protected
 * port, whose payload is
 *     struct cas_hdr (40 bytes) || content[length]
 * with every multi-byte field big-endian (network order) and
 * id = SHA-256(content). The XDP program drops the datagram unless the
 * header is well formed, length equals the bytes that follow the header
 * exactly, and SHA-256 of those bytes equals id (compared in constant time).
 * The type and flags are not covered by the hash: the receiver interprets a
 * chunk by where its id appears in the manifest tree, never by its type.
 *
 * A file is sent as data chunks plus a tree of manifest chunks; each
 * manifest's content is struct cas_manifest || id[count][32]. Level-0
 * manifests list data chunks in file order, a level-n manifest lists
 * level-(n-1) manifests; the one manifest at the top is sent with
 * CAS_F_ROOT. The receiver asks for what it misses with CAS_TYPE_WANT
 * datagrams (content: struct cas_want || id[count][32]) sent to the sender's
 * address; these never go to the protected port. */
#pragma once

#define CAS_MAGIC       0xCA5C
#define CAS_VERSION     1
#define CAS_ID_LEN      32     /* SHA-256 */
#define CAS_DEFAULT_PORT 7310

/* cas_hdr.type */
#define CAS_TYPE_DATA     1    /* a piece of a file */
#define CAS_TYPE_MANIFEST 2    /* struct cas_manifest || ids */
#define CAS_TYPE_WANT     3    /* receiver -> sender: struct cas_want || ids */

/* cas_hdr.flags */
#define CAS_F_ROOT      0x01   /* the top manifest of a transfer */
#define CAS_F_ALL       0x01

struct cas_hdr {
	__be16 magic;      /* CAS_MAGIC */
	__u8   version;    /* CAS_VERSION */
	__u8   type;       /* CAS_TYPE_* */
	__u8   flags;      /* CAS_F_*; ROOT only on manifests */
	__u8   reserved;   /* 0 */
	__be16 length;     /* content bytes after this header, exactly */
	__u8   id[32];     /* SHA-256(content) */
};

struct cas_manifest {
	__be64 size;       /* bytes of file data under this manifest */
	__be32 count;      /* ids that follow */
	__u8   level;      /* 0: ids of data chunks; n: ids of level n-1 manifests */
	__u8   reserved[3];
};

/* cas_want.flags */
#define CAS_WANT_ROOT   0x01   /* send the root manifest again */
#define CAS_WANT_DONE   0x02   /* everything arrived: the sender may stop */

struct cas_want {
	__be32 count;      /* ids that follow */
	__u8   flags;      /* CAS_WANT_* */
	__u8   reserved[3];
};

/* Map `cas_config` (ARRAY, one slot), written by `cryptbpf cas enforce`. */
struct cas_config {
	__u32 enforce_allowlist;   /* 1: drop ids not in `allowlist` */
	__u32 reserved;
};

/* Map `allowlist` (HASH): key = id[32], value = this. Lookups never skip
 * hashing; they only count. */
#define CAS_ALLOWLIST_MAX 65536

struct cas_allow_entry {
	__u64 hits;        /* verified datagrams carrying this id */
};

/* IPv6 extension headers (hop-by-hop, routing, fragment, destination
 * options, AH) walked to find the UDP header; a longer chain is dropped. */
#define CV_IPV6_MAX_EXT 6

/* Per-CPU statistics (map `stats`): one counter per verdict. */
struct content_verifier_stats {
	__u64 passed;          /* verified: content hashes to its id */
	__u64 mismatch;        /* dropped: SHA-256(content) != id */
	__u64 bad_length;      /* dropped: length field, UDP or IP lengths inconsistent (any
	                        * port: lengths the kernel drops) */
	__u64 truncated;       /* dropped: UDP payload shorter than struct cas_hdr */
	__u64 bad_header;      /* dropped: magic, version, type, flags or reserved wrong */
	__u64 not_allowed;     /* dropped: allowlist enforced and id not on it */
	__u64 fragment;        /* dropped: first fragment of a datagram to the port */
	__u64 malformed;       /* dropped, any port: IP or UDP header cut by the end of the
	                        * frame, or one the kernel drops (version, IHL, checksum) */
	__u64 unparsed;        /* dropped, any port: more VLAN tags (8) or IPv6 extension
	                        * headers (CV_IPV6_MAX_EXT) than walked: the port could hide */
	__u64 errors;          /* dropped: a helper failed */
	__u64 bytes_verified;  /* content bytes of passed datagrams */
};
