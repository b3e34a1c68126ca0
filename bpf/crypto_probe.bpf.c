// SPDX-License-Identifier: GPL-2.0
/* crypto_probe: can bpf_crypto's "skcipher" type allocate `probe_algo`?
 * src/cryptbpf/crypto/kernel_ciphers.py (doctor, bench) and
 * tests/test_bpf_crypto_algos.py set the algorithm name and key length,
 * run this SYSCALL program once (BPF_PROG_TEST_RUN) and reads back the
 * errno from bpf_crypto_ctx_create(): 0 when the kernel has an lskcipher of
 * that name (the context is released at once), -ENOENT when it has none. */
#include "kfuncs.bpf.h"

char LICENSE[] SEC("license") = "GPL";

char probe_algo[128];                   /* in: e.g. "cbc(aes)", "chacha20" */
__u32 probe_key_len;                    /* in: an all-zero key of this length */
int probe_err;                          /* out: 0 or -errno */
struct bpf_crypto_params probe_params;  /* 408 bytes: map memory, not stack */

SEC("syscall")
int crypto_probe(void *ctx)
{
	struct bpf_crypto_ctx *c;
	int err = 0;

	/* __weak kfuncs: on a kernel before 6.10 the object still loads. */
	if (!bpf_ksym_exists(bpf_crypto_ctx_create) || !bpf_ksym_exists(bpf_crypto_ctx_release))
		return probe_err = -38; /* -ENOSYS */
	__builtin_memset(&probe_params, 0, sizeof(probe_params));
	__builtin_memcpy(probe_params.type, "skcipher", sizeof("skcipher"));
	__builtin_memcpy(probe_params.algo, probe_algo, sizeof(probe_algo));
	probe_params.algo[sizeof(probe_params.algo) - 1] = 0;
	probe_params.key_len = probe_key_len;
	c = bpf_crypto_ctx_create(&probe_params, sizeof(probe_params), &err);
	if (c) {
		bpf_crypto_ctx_release(c);
		err = 0;
	} else if (!err) {
		err = -22; /* -EINVAL */
	}
	return probe_err = err;
}
