// SPDX-License-Identifier: GPL-2.0
/* Fixture: a program the verifier refuses only at its end, after a few
 * hundred instructions, so its log is far longer than one 4 KB line
 * buffer: the error at the tail must still reach the exception. */
#include "cryptbpf.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int rejects_after_long_path(struct __sk_buff *skb)
{
	volatile __u64 acc = skb->len;
	volatile __u8 buf[8] = {};

#pragma unroll
	for (int i = 0; i < 200; i++)
		acc = acc * 31 + i;
	return buf[acc]; /* unbounded index: refused here, at the end */
}
