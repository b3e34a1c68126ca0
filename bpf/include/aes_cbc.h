/* SPDX-License-Identifier: GPL-2.0 */
/* Shared (BPF + Python): the argument block of a bpf_crypto AES key setup.
 * Passed as the ctx of a SYSCALL program run with BPF_PROG_TEST_RUN; the
 * kernel copies the ctx back, so `err` carries the result to userspace. */
#pragma once

#define AES_BLOCK_SIZE 16
#define AES_MAX_KEY_LEN 32

struct aes_key_setup {
	__u8 key[32];   /* AES-128/192/256 key (key_len bytes used) */
	__u32 key_len;  /* 16, 24 or 32; programs' key_sizes may narrow it */
	__u32 slot;     /* index into the program's context map */
	__u32 mode;     /* AES_MODE_CBC or AES_MODE_ECB */
	__s32 err;      /* out: 0 or -errno from bpf_crypto_ctx_create() */
};

#define AES_MODE_CBC 0
#define AES_MODE_ECB 1
