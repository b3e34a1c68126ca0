/* SPDX-License-Identifier: GPL-2.0 */
/* The Internet checksum over frame bytes, from XDP (kernel side only).
 *
 * For programs that rewrite a UDP datagram they pass on and must leave it
 * with a checksum the kernel accepts. Checking the checksum a datagram
 * arrived with is not possible in general: between veth ends (containers,
 * these tests) the sender leaves it to the receiver (CHECKSUM_PARTIAL: the
 * field holds only the pseudo-header sum and the kernel does not check it),
 * and XDP cannot see that state. So a program that commits state for a
 * datagram writes a checksum computed afresh, never one it trusts.
 *
 * The bytes are copied in chunks of XDP_CSUM_CHUNK into map memory and
 * summed with bpf_csum_diff() under bpf_loop() (5.17+), so any length works
 * and the verifier sees one chunk.
 *
 *   sum = xdp_csum_range(ctx, scratch->csum, off, len, pseudo_header_sum);
 *   check = (__u16)~sum ?: 0xffff;     // UDP over IPv4
 */
#pragma once

#include "cryptbpf.bpf.h"

#define XDP_CSUM_CHUNK 512          /* bpf_csum_diff() takes at most 512 bytes */
#define XDP_CSUM_BUF (XDP_CSUM_CHUNK + 4)

struct xdp_csum_io {
	struct xdp_md *ctx;
	__u8 *buf;              /* map memory, XDP_CSUM_BUF bytes */
	__u32 off;
	__u32 len;
	__u64 sum;
};

/* n in [1, XDP_CSUM_CHUNK] as a value the verifier can bound */
static __always_inline __u32 xdp_csum_chunk_len(__u32 n)
{
	__u64 m = n - 1;

	asm volatile("" : "+r"(m));
	return (__u32)(m & (XDP_CSUM_CHUNK - 1)) + 1;
}

/* bpf_loop body: add chunk idx, the last one zero-padded to a multiple of
 * 4 (bpf_csum_diff's unit). Chunks start at even offsets from the region
 * start, so 16-bit words line up across chunks. */
static long xdp_csum_cb(__u64 idx, void *arg)
{
	struct xdp_csum_io *io = arg;
	__u32 pos = idx * XDP_CSUM_CHUNK, n, n4;
	__s64 s;

	n = io->len - pos;
	if (n > XDP_CSUM_CHUNK)
		n = XDP_CSUM_CHUNK;
	n = xdp_csum_chunk_len(n);
	if (bpf_xdp_load_bytes(io->ctx, io->off + pos, io->buf, n))
		return 1;
	n4 = (n + 3) & ~3U;
#pragma clang loop unroll(full)
	for (__u32 k = 0; k < 3; k++)
		if (n + k < n4)
			io->buf[n + k] = 0;
	s = bpf_csum_diff(NULL, 0, (void *)io->buf, n4, 0);
	if (s < 0)
		return 1;
	io->sum += (__u32)s;
	return 0;
}

/* 16-bit one's complement sum (folded, not inverted) of frame bytes
 * [off, off + len), len <= 65535, plus `sum`; -1 on error. Its own frame. */
static __noinline int xdp_csum_range(struct xdp_md *ctx, __u8 *buf, __u32 off, __u32 len,
				     __u32 sum)
{
	struct xdp_csum_io io = { .ctx = ctx, .buf = buf, .off = off, .len = len, .sum = sum };
	__u32 chunks;

	if (!buf || len > 0xffff)
		return -1;
	chunks = (len + XDP_CSUM_CHUNK - 1) / XDP_CSUM_CHUNK;
	if (bpf_loop(chunks, xdp_csum_cb, &io, 0) != chunks)
		return -1;
	io.sum = (io.sum & 0xffff) + (io.sum >> 16);
	io.sum = (io.sum & 0xffff) + (io.sum >> 16);
	io.sum = (io.sum & 0xffff) + (io.sum >> 16);
	return io.sum;
}
