/* SPDX-License-Identifier: GPL-2.0 */
/* The Internet checksum over packet bytes, from XDP or TC (kernel side only).
 *
 * The bytes are copied in chunks of PKT_CSUM_CHUNK into map memory (the
 * caller's, PKT_CSUM_BUF bytes) and summed with bpf_csum_diff() under
 * bpf_loop() (5.17+), so any length works and the verifier sees one chunk.
 * One body serves both program types: the loader helper is picked by a
 * constant, so a TC program never contains a call to bpf_xdp_load_bytes
 * (or an XDP program one to bpf_skb_load_bytes).
 *
 *   sum = pkt_csum_xdp(ctx, buf, off, len, pseudo_header_sum);  // XDP
 *   sum = pkt_csum_skb(skb, buf, off, len, 0);                  // TC
 *   check = (__u16)~sum ?: 0xffff;                              // UDP over IPv4
 */
#pragma once

#include "cryptbpf.bpf.h"

#define PKT_CSUM_CHUNK 512          /* bpf_csum_diff() takes at most 512 bytes */
#define PKT_CSUM_BUF (PKT_CSUM_CHUNK + 4)

struct pkt_csum_io {
	void *ctx;              /* struct xdp_md * or struct __sk_buff * */
	__u8 *buf;              /* map memory, PKT_CSUM_BUF bytes */
	__u32 off;
	__u32 len;
	__u64 sum;
};

/* Folded (not inverted) 16-bit one's complement of a 64-bit sum. */
static __always_inline __u32 pkt_csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u32)sum & 0xffff;
}

/* n in [1, PKT_CSUM_CHUNK] as a value the verifier can bound (the empty
 * asm keeps clang from folding the mask away). */
static __always_inline __u32 pkt_csum_chunk_len(__u32 n)
{
	__u64 m = n - 1;

	asm volatile("" : "+r"(m));
	return (__u32)(m & (PKT_CSUM_CHUNK - 1)) + 1;
}

/* Add chunk idx, the last one zero-padded to a multiple of 4 (bpf_csum_diff's
 * unit). Chunks start at even offsets from the region start, so 16-bit
 * words line up across chunks. `xdp` is a constant at every call. */
static __always_inline long pkt_csum_chunk(struct pkt_csum_io *io, __u64 idx, const int xdp)
{
	__u32 pos = idx * PKT_CSUM_CHUNK, n, n4;
	__s64 s;

	n = io->len - pos;
	if (n > PKT_CSUM_CHUNK)
		n = PKT_CSUM_CHUNK;
	n = pkt_csum_chunk_len(n);
	if (xdp ? bpf_xdp_load_bytes(io->ctx, io->off + pos, io->buf, n)
		: bpf_skb_load_bytes(io->ctx, io->off + pos, io->buf, n))
		return 1;
	n4 = (n + 3) & ~3U;
	/* n <= 512 and n4 <= 515 here: the buffer has 516 bytes */
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

static long pkt_csum_xdp_cb(__u64 idx, void *arg)
{
	return pkt_csum_chunk(arg, idx, 1);
}

static long pkt_csum_skb_cb(__u64 idx, void *arg)
{
	return pkt_csum_chunk(arg, idx, 0);
}

/* Folded sum of packet bytes [off, off + len), len <= 65535, plus `sum`;
 * < 0 on error. */
static __always_inline int pkt_csum(void *ctx, __u8 *buf, __u32 off, __u32 len, __u32 sum,
				    const int xdp)
{
	struct pkt_csum_io io = { .ctx = ctx, .buf = buf, .off = off, .len = len, .sum = sum };
	__u32 chunks;

	if (!buf || len > 0xffff)
		return -1;
	chunks = (len + PKT_CSUM_CHUNK - 1) / PKT_CSUM_CHUNK;
	if (bpf_loop(chunks, xdp ? (void *)pkt_csum_xdp_cb : (void *)pkt_csum_skb_cb, &io, 0) != chunks)
		return -1;
	return pkt_csum_fold(io.sum);
}

/* XDP: in a frame of its own (its callers are large; Linux 6.1 adds up
 * the frames of a call chain). `unused`: a static __noinline function
 * is warned about in every object that does not call it. */
static __noinline __attribute__((unused)) int pkt_csum_xdp(struct xdp_md *ctx, __u8 *buf, __u32 off, __u32 len, __u32 sum)
{
	return pkt_csum(ctx, buf, off, len, sum, 1);
}

static __always_inline int pkt_csum_skb(struct __sk_buff *skb, __u8 *buf, __u32 off, __u32 len,
					__u32 sum)
{
	return pkt_csum(skb, buf, off, len, sum, 0);
}
