// SPDX-License-Identifier: GPL-2.0
/* Fixture for tests/test_loader.py: one of each thing the loader handles
 * (globals in every data section, hash/per-CPU/ring buffer maps, TC, XDP
 * and SYSCALL programs). */
#include "cryptbpf.bpf.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 knob = 7;  /* .rodata: settable before load only */
__u32 data_var = 0x1234;        /* .data */
__u64 hits;                     /* .bss */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct syscall_args {
	__u32 in;
	__u32 out;
};

/* Echo the packet length and first byte into the ring buffer; count; XDP_PASS
 * unless the first byte is 0xdd. */
SEC("xdp")
int xdp_echo(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	__u64 *c = bpf_map_lookup_elem(&percpu, &zero);
	__u64 *rec;

	if (data + 1 > end)
		return XDP_ABORTED;
	hits++;
	if (c)
		(*c)++;
	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (rec) {
		*rec = ((__u64)(end - data) << 8) | *(__u8 *)data;
		bpf_ringbuf_submit(rec, 0);
	}
	return *(__u8 *)data == 0xdd ? XDP_DROP : XDP_PASS;
}

/* Return the knob; overwrite the first byte after the Ethernet header. */
SEC("tc")
int tc_mark(struct __sk_buff *skb)
{
	__u8 mark = 0xab;

	bpf_skb_store_bytes(skb, 14, &mark, 1, 0);
	return knob;
}

SEC("syscall")
int syscall_double(struct syscall_args *args)
{
	args->out = args->in * 2 + data_var;
	return 0;
}
