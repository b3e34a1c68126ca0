// SPDX-License-Identifier: GPL-2.0
/* xdp_pass: passes every frame. Tests attach it to the peer of a veth whose
 * other end answers with XDP_TX: the kernel's veth delivers XDP_TX frames
 * (ndo_xdp_xmit) only to a peer that has an XDP program of its own. */
#include "cryptbpf.bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
