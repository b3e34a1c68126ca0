// SPDX-License-Identifier: GPL-2.0
/* Fixture: a program the verifier must refuse (out-of-bounds stack read),
 * so tests can check that the log reaches the exception. */
#include "cryptbpf.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int reads_out_of_bounds(struct __sk_buff *skb)
{
	volatile __u8 buf[8] = {};
	__u32 i = skb->len; /* unbounded index */

	return buf[i];
}
