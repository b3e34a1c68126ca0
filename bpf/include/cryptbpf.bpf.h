/* SPDX-License-Identifier: GPL-2.0 */
/* Common prelude for every cryptbpf BPF program (kernel side only).
 *
 * Include this first: it pulls in the bundled vmlinux.h (CO-RE types), the
 * libbpf helper headers, and fills in the few macros that Debian's libbpf 1.1
 * headers do not have yet.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

/* libbpf >= 1.2 ships this; 1.1 does not. A weak __ksym that the kernel lacks
 * resolves to 0, and the verifier prunes the branch that would call it. */
#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym) ({                                               \
	_Static_assert(!__builtin_constant_p(!!sym), #sym " should be marked as __weak"); \
	!!sym;                                                                \
})
#endif

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#ifndef __noinline
#define __noinline __attribute__((noinline))
#endif

/* For a function that wraps map memory in a local dynptr: its own call
 * frame, because Linux 6.1/6.2 refuse to create a dynptr in a stack slot
 * that already holds one ("Dynptr has to be an uninitialized dynptr";
 * allowed since 6.3), and clang gives the dynptrs of two inlined calls in
 * one function the same slot. A callee's frame starts empty at every call.
 * `unused`: a header's static function need not be called by every object. */
#define CRYPTBPF_DYNPTR_FRAME __attribute__((noinline, unused))

/* v = min(v, max) in one register the verifier sees bounded. Written in C,
 * clang may copy v, compare the original and clamp the copy; a 32-bit move
 * drops the link between the two on verifiers before ~6.8, so Linux 6.1
 * sees an unbounded length ("R2 unbounded memory access"). */
#define CRYPTBPF_CLAMP(v, max) ({					\
	__u64 __v = (v);	/* zero-extended: a 64-bit compare is exact */	\
	asm volatile("if %0 <= %1 goto +1; %0 = %1" : "+r"(__v) : "i"(max));	\
	(v) = __v;							\
})

#ifndef likely
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

/* Packet-path return codes that vmlinux.h does not carry as macros. */
#ifndef TC_ACT_OK
#define TC_ACT_UNSPEC     (-1)
#define TC_ACT_OK         0
#define TC_ACT_SHOT       2
#define TC_ACT_STOLEN     4
#define TC_ACT_REDIRECT   7
#endif

#ifndef ETH_P_IP
#define ETH_P_IP   0x0800
#define ETH_P_IPV6 0x86DD
#endif

/* A one-slot per-CPU array used as scratch memory: the BPF stack is 512 bytes,
 * and bpf_dynptr_from_mem() only accepts map memory. */
#define CRYPTBPF_PERCPU_SCRATCH(name, value_type)                                   \
	struct {                                                              \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                      \
		__uint(max_entries, 1);                                       \
		__type(key, __u32);                                           \
		__type(value, value_type);                                        \
	} name SEC(".maps")

/* Count one event in a statistics row (a map value pointer) that may be
 * NULL: then nothing is counted. */
#define CRYPTBPF_COUNT(row, field) do {                                      \
		typeof(row) _r = (row);                                     \
		if (_r)                                                     \
			_r->field++;                                        \
	} while (0)

static __always_inline void *cryptbpf_scratch(void *map)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(map, &zero);
}
