/* SPDX-License-Identifier: GPL-2.0 */
/* Shared (BPF + Python): crypto_kat.bpf.c's verdicts, selectors and the
 * global argument block its entry points read and write. */
#pragma once

#define KAT_OK  0   /* operation done / tag valid */
#define KAT_BAD 1   /* input rejected: bad tag, bad padding */

#define KAT_AES_SLOT_CBC 0

#define KAT_MAX_MSG 9216  /* map-memory message buffer (kat_msg); = CRYPTBPF_MSG_MAX */
/* AEAD additional data: crypto_kat.bpf.c sets CHACHA20_POLY1305_AAD_MAX to
 * this. Wycheproof's chacha20_poly1305_test.json goes up to 513 bytes. */
#define KAT_AAD_MAX 1024

/* kat_io.alg */
#define KAT_SHA256 256
#define KAT_SHA384 384
#define KAT_SHA512 512

/* The argument block (global `kat_io`, .bss): Python fills the inputs, runs
 * an entry point, reads the outputs. The message comes from the packet
 * (*_skb entry points) or from the global kat_msg[len] (*_mem entry points,
 * map memory). */
struct kat_io {
	__u32 alg;        /* KAT_SHA256 / KAT_SHA384 / KAT_SHA512 */
	__u32 len;        /* message length (map-memory entry points) */
	__u32 key_len;    /* HMAC key length */
	__u32 tag_len;    /* 0: compute only; else verify the first tag_len bytes */
	__u32 aad_len;    /* AEAD additional data length (in kat_io.aad) */
	__s32 rc;         /* out: KAT_OK / KAT_BAD / -errno */
	__u8 key[128];    /* HMAC/AEAD key */
	__u8 nonce[16];   /* AEAD nonce (12 bytes used) */
	__u8 aad[KAT_AAD_MAX]; /* AEAD additional data */
	__u8 out[64];     /* out: digest or MAC */
	__u8 tag[64];     /* expected tag (verify) */
};
