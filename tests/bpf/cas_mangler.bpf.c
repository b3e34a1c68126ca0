// SPDX-License-Identifier: GPL-2.0
/* Fixture for tests/test_content_verifier.py: an on-path attacker at the
 * sender's TC egress. It flips two content bytes of the next `budget`
 * content_verifier datagrams of type `only_type` to `port`, and fixes the
 * UDP checksum so that, without the verifier, the receiving socket would
 * accept the tampered datagram (the control half of the test proves it). */
#include "cryptbpf.bpf.h"
#include "pkt.bpf.h"
#include "content_verifier.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u16 port = CAS_DEFAULT_PORT;
const volatile __u8 only_type = CAS_TYPE_DATA;
/* UDP payload offset of the 16-bit word to flip: even, so the checksum
 * update below is word aligned (default: content bytes 4 and 5). */
const volatile __u32 flip_at = sizeof(struct cas_hdr) + 4;

__s64 budget;      /* datagrams still to tamper with */
__u64 mangled;     /* datagrams tampered with */

SEC("tc")
int mangle(struct __sk_buff *skb)
{
	struct udp_loc loc;
	struct cas_hdr h;
	__u16 old, new;
	__u32 off;

	if (pkt_find_udp(skb, &loc) || loc.dport != port ||
	    loc.payload_len < flip_at + sizeof(old) ||
	    bpf_skb_load_bytes(skb, loc.payload_off, &h, sizeof(h)) ||
	    h.type != only_type)
		return TC_ACT_OK;
	if (__sync_fetch_and_add(&budget, -1) <= 0)
		return TC_ACT_OK;
	off = loc.payload_off + flip_at;
	if (bpf_skb_load_bytes(skb, off, &old, sizeof(old)))
		return TC_ACT_OK;
	new = old ^ 0x0101;
	/* in-place store + checksum fix (CHECKSUM_PARTIAL aware; 0 stays "none") */
	if (bpf_skb_store_bytes(skb, off, &new, sizeof(new), 0) ||
	    bpf_l4_csum_replace(skb, loc.l4_off + offsetof(struct udphdr, check), old, new,
				BPF_F_MARK_MANGLED_0 | sizeof(new)))
		return TC_ACT_SHOT;
	__sync_fetch_and_add(&mangled, 1);
	return TC_ACT_OK;
}
