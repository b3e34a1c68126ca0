// SPDX-License-Identifier: GPL-2.0
/* encrypted_logger: process executions, sealed in the kernel.
 *
 * elog_exec (tp_btf/sched_process_exec) builds one record per exec in a
 * per-CPU scratch value, seals it in place with the pure-BPF
 * ChaCha20-Poly1305 (bpf_crypto cannot run in tracing programs) and copies
 * header || ciphertext || tag into the ring buffer: whoever else reads the
 * ring buffer sees ciphertext only.
 *
 * elog_control (raw_tp, never attached) is run with BPF_PROG_TEST_RUN on a
 * chosen CPU (BPF_F_TEST_RUN_ON_CPU, i.e. by IPI on that CPU) to write
 * START/END marks into that CPU's stream, or to ratchet the key on request.
 *
 * Formats, key schedule and nonces: include/encrypted_logger.h.
 *
 * Concurrency, per CPU: the exec program runs with preemption disabled (a
 * tracepoint), so per-CPU state and scratch have one user at a time, except
 * that the control program's IPI may interrupt it; `busy` makes the control
 * program back off (-ELOG_EBUSY, the caller retries) instead of interleaving.
 * Across CPUs: the key state is one shared value; see elog_key_copy() and
 * elog_ratchet(). bpf_spin_lock is not an option: no calls (the HMAC) may be
 * made while holding it.
 */

/* Records are < 640 bytes and the AAD is the 40-byte header: tell the AEAD
 * so, which shrinks the buffers it requires and its verifier bounds. */
#define CRYPTBPF_MSG_MAX 640
#define CHACHA20_POLY1305_AAD_MAX 64

#include "cryptbpf.bpf.h"
#include "chacha20_poly1305.bpf.h"
#include "hmac.bpf.h"
#include "encrypted_logger.h"

char LICENSE[] SEC("license") = "GPL";

/* Key epoch length; 0 = ratchet only on request (`cryptbpf logs rotate`). */
const volatile __u64 epoch_ms = 60000;

/* Set by the loader right after load, before attaching. */
__u64 session;		/* random per load; selects K(0) */
__s64 wall_offset_ns;	/* CLOCK_REALTIME - CLOCK_BOOTTIME at load */
__u64 key_check;	/* 8 bytes of HMAC(master, "cryptbpf log key check"):
			 * lets a reader reject a wrong key file up front */

_Static_assert(sizeof(struct elog_exec) + ELOG_TAG_SIZE <= CRYPTBPF_MSG_MAX, "exec record");
_Static_assert(sizeof(struct elog_hdr) <= CHACHA20_POLY1305_AAD_MAX, "header as AAD");

/* A record under construction: header, then body, then (at body + len) the
 * tag. The body has CRYPTBPF_MSG_MAX bytes of room as the AEAD's map-memory
 * contract requires; the AAD (the header) has the body behind it. */
struct elog_record {
	struct elog_hdr hdr;
	union {
		struct elog_exec exec;
		struct elog_mark mark;
		__u8 bytes[CRYPTBPF_MSG_MAX];
	} body;
};

struct elog_scratch {
	struct elog_record rec;
	struct chacha20_poly1305_ctx aead;
	struct cryptbpf_hmac_sha256_ctx hmac;
	__u8 key[ELOG_KEY_SIZE];	/* seal key, only while sealing */
	__u8 chain[ELOG_KEY_SIZE];	/* chain key, only while ratcheting */
	__u8 label[64];			/* HMAC input (must be map memory) */
	__u8 nonce[16];
};
CRYPTBPF_PERCPU_SCRATCH(elog_scratch, struct elog_scratch);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 512 * 1024);	/* --set ring_kb=N */
} elog_ring SEC(".maps");

/* Named *key*: `cryptbpf map` refuses to dump it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct elog_keystate);
} elog_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct elog_cpu_state);
} elog_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct elog_stats);
} stats SEC(".maps");

static __always_inline void *elog_slot0(void *map)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(map, &zero);
}

/* Atomic reads and writes of shared key state. The atomics are full
 * barriers, which is what the seqlock below needs on weakly ordered CPUs
 * (on x86 plain accesses would do). */
#define ELOG_READ(p)      __sync_fetch_and_or((p), 0)
#define ELOG_WRITE(p, v)  ((void)__sync_lock_test_and_set((p), (v)))

/* ---- key schedule ---- */

/* out = HMAC-SHA256(s->chain, label). label: up to 63 bytes. */
static __always_inline int elog_hmac_chain(struct elog_scratch *s, const char *label,
					   __u32 label_len, __u8 *out)
{
	int err;

	__builtin_memcpy(s->label, label, label_len);
	err = hmac_sha256_init(&s->hmac, s->chain, ELOG_KEY_SIZE);
	if (err)
		return err;
	err = hmac_sha256_update(&s->hmac, s->label, label_len);
	if (err)
		return err;
	return hmac_sha256_final(&s->hmac, out);
}

#define ELOG_LABEL_RATCHET "cryptbpf log ratchet"
#define ELOG_LABEL_SEAL    "cryptbpf log seal"

/* Advance the key by one epoch: K(e+1) = HMAC(K(e), ratchet label),
 * S(e+1) = HMAC(K(e+1), seal label); publish e+1, then wipe every copy of
 * K(e) and S(e) (forward security: from here on, memory holds nothing that
 * opens or forges a record of epoch <= e).
 *
 * One writer at a time (a try-lock: a CPU that loses simply seals under the
 * current key). The new keys go into the other slot, which nobody reads:
 * readers look at slot[epoch & 1] only, and check its epoch around their
 * copy, so a wipe of the old slot that races with a copy is detected. */
static __noinline int elog_ratchet(struct elog_scratch *s, struct elog_stats *st)
{
	struct elog_keystate *ks = elog_slot0(&elog_keys);
	struct elog_key_slot *cur, *nxt;
	__u64 e;
	int err;

	if (!ks || !s || !st)
		return -ELOG_EINVAL;
	if (__sync_val_compare_and_swap(&ks->lock, 0, 1) != 0)
		return -ELOG_EBUSY;
	e = ELOG_READ(&ks->epoch);
	cur = &ks->slot[e & 1];
	nxt = &ks->slot[(e + 1) & 1];
	__builtin_memcpy(s->chain, cur->chain, ELOG_KEY_SIZE);
	err = elog_hmac_chain(s, ELOG_LABEL_RATCHET, sizeof(ELOG_LABEL_RATCHET) - 1, s->chain);
	if (err)
		goto out;
	ELOG_WRITE(&nxt->epoch, ELOG_SLOT_INVALID);
	__builtin_memcpy(nxt->chain, s->chain, ELOG_KEY_SIZE);
	err = elog_hmac_chain(s, ELOG_LABEL_SEAL, sizeof(ELOG_LABEL_SEAL) - 1, nxt->seal);
	if (err)
		goto out;
	ELOG_WRITE(&nxt->epoch, e + 1);
	ELOG_WRITE(&ks->epoch_start_ns, bpf_ktime_get_boot_ns());
	ELOG_WRITE(&ks->epoch, e + 1);
	/* old epoch: invalidate first, so a racing reader notices the wipe */
	ELOG_WRITE(&cur->epoch, ELOG_SLOT_INVALID);
	__builtin_memset(cur->chain, 0, ELOG_KEY_SIZE);
	__builtin_memset(cur->seal, 0, ELOG_KEY_SIZE);
	st->ratchets++;
out:
	__builtin_memset(s->chain, 0, ELOG_KEY_SIZE);
	__builtin_memset(&s->hmac, 0, sizeof(s->hmac));	/* holds K's pad states */
	ELOG_WRITE(&ks->lock, 0);
	return err;
}

/* Ratchet if the current epoch is older than epoch_ms. */
static __always_inline void elog_maybe_ratchet(struct elog_scratch *s, struct elog_stats *st)
{
	struct elog_keystate *ks = elog_slot0(&elog_keys);

	if (!epoch_ms || !ks)
		return;
	if (bpf_ktime_get_boot_ns() - ELOG_READ(&ks->epoch_start_ns) >= epoch_ms * 1000000ULL)
		elog_ratchet(s, st);
}

/* Copy the current seal key into s->key; returns its epoch, or -1 if a
 * ratchet kept invalidating the slot under us (three times in a row). */
static __always_inline __s64 elog_key_copy(struct elog_scratch *s)
{
	struct elog_keystate *ks = elog_slot0(&elog_keys);

	if (!ks)
		return -1;
#pragma unroll
	for (int i = 0; i < 3; i++) {
		__u64 e = ELOG_READ(&ks->epoch);
		struct elog_key_slot *sl = &ks->slot[e & 1];

		if (ELOG_READ(&sl->epoch) != e)
			continue;
		__builtin_memcpy(s->key, sl->seal, ELOG_KEY_SIZE);
		if (ELOG_READ(&sl->epoch) != e)
			continue;
		return e & 0xffffffff;
	}
	return -1;
}

/* ---- sealing ---- */

/* Number, seal and output the body already in s->rec.body (len bytes).
 * Every numbered record is either delivered or counted in cs->lost, so a
 * reader sees each loss as a gap explained by the next record's hdr.lost. */
/* Out of line (verifier, Linux 6.1): 6.1 sums the frames of every call
 * chain, bpf_loop callbacks included, each rounded up to 32 bytes, against
 * the 512-byte stack. Inlined, the AEAD's spills sat in the program's frame
 * on top of the ratchet's HMAC -> SHA-256 chain ("combined stack size of 5
 * calls is 608"); in a frame of their own the two chains are separate. */
static __noinline int elog_emit(struct elog_scratch *s, struct elog_cpu_state *cs,
				struct elog_stats *st, __u16 type, const __u32 len)
{
	struct elog_hdr *h = &s->rec.hdr;
	__u8 *body = s->rec.body.bytes;
	__s64 epoch;
	int err;

	h->version = ELOG_VERSION;
	h->type = type;
	h->len = len;
	h->session = session;
	h->seq = cs->seq++;
	h->lost = cs->lost;
	h->cpu = bpf_get_smp_processor_id();
	epoch = elog_key_copy(s);
	if (epoch < 0) {
		__builtin_memset(s->key, 0, ELOG_KEY_SIZE);	/* a torn copy is still key material */
		__builtin_memset(body, 0, sizeof(s->rec.body));	/* no plaintext left behind (len is not constant out of line) */
		cs->lost++;
		st->lost_key++;
		return -ELOG_EBUSY;
	}
	h->epoch = epoch;
	/* nonce = le32(cpu) || le64(seq): unique within the session */
	__builtin_memcpy(s->nonce, &h->cpu, 4);
	__builtin_memcpy(s->nonce + 4, &h->seq, 8);
	err = chacha20_poly1305_seal_mem(&s->aead, s->key, s->nonce, (const __u8 *)h,
					 sizeof(*h), body, body, len, body + len);
	/* no copy of the seal key outlives the seal */
	__builtin_memset(s->key, 0, ELOG_KEY_SIZE);
	__builtin_memset(&s->aead.cc, 0, sizeof(s->aead.cc));
	if (err) {
		__builtin_memset(body, 0, sizeof(s->rec.body));
		cs->lost++;
		st->lost_key++;
		return err;
	}
	if (bpf_ringbuf_output(&elog_ring, &s->rec, sizeof(*h) + len + ELOG_TAG_SIZE, 0)) {
		cs->lost++;
		st->lost_ringbuf++;
		return -ELOG_ENOSPC;
	}
	st->sealed++;
	return 0;
}

/* ---- sched_process_exec ---- */

static __always_inline void elog_read_argv(struct elog_exec *x, struct task_struct *p,
					   struct elog_stats *st)
{
	unsigned long start = BPF_CORE_READ(p, mm, arg_start);
	unsigned long end = BPF_CORE_READ(p, mm, arg_end);
	__u64 total = end > start ? end - start : 0;
	__u32 len = total < ELOG_ARGV_MAX ? total : ELOG_ARGV_MAX;

	x->argv_total = total;
	x->argv_len = 0;
	x->argv_flags = 0;
	barrier_var(len);
	if (len > ELOG_ARGV_MAX)	/* verifier */
		return;
	if (len && bpf_probe_read_user(x->argv, len, (const void *)start)) {
		x->argv_flags |= ELOG_ARGV_FAULT;
		st->read_faults++;
		return;
	}
	x->argv_len = len;
	if (total > len) {
		x->argv_flags |= ELOG_ARGV_TRUNCATED;
		st->argv_truncated++;
	}
}

static __always_inline void elog_fill_exec(struct elog_exec *x, struct task_struct *p,
					   struct linux_binprm *bprm, struct elog_stats *st)
{
	__u64 ugid = bpf_get_current_uid_gid();
	long n;

	/* fixed-size body: zero what the strings don't cover, so no bytes of
	 * an earlier record's buffer end up in this one */
	__builtin_memset(x, 0, sizeof(*x));
	x->boot_ns = bpf_ktime_get_boot_ns();
	x->time_ns = x->boot_ns + wall_offset_ns;
	x->cgroup_id = bpf_get_current_cgroup_id();
	x->pid = bpf_get_current_pid_tgid() >> 32;
	x->ppid = BPF_CORE_READ(p, real_parent, tgid);
	x->uid = (__u32)ugid;
	x->gid = ugid >> 32;
	x->euid = BPF_CORE_READ(p, cred, euid.val);
	x->egid = BPF_CORE_READ(p, cred, egid.val);
	bpf_get_current_comm(x->comm, sizeof(x->comm));
	n = bpf_probe_read_kernel_str(x->filename, sizeof(x->filename),
				      BPF_CORE_READ(bprm, filename));
	if (n > 0)
		x->filename_len = n - 1;
	else
		st->read_faults++;
	elog_read_argv(x, p, st);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(elog_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct elog_scratch *s = cryptbpf_scratch(&elog_scratch);
	struct elog_cpu_state *cs = elog_slot0(&elog_cpu);
	struct elog_stats *st = elog_slot0(&stats);

	if (!s || !cs || !st)
		return 0;
	cs->busy = 1;
	barrier();
	st->events++;
	elog_maybe_ratchet(s, st);
	elog_fill_exec(&s->rec.body.exec, p, bprm, st);
	elog_emit(s, cs, st, ELOG_TYPE_EXEC, sizeof(struct elog_exec));
	barrier();
	cs->busy = 0;
	return 0;
}

/* ---- control: marks and forced ratchets, run on a chosen CPU ---- */

static __always_inline void elog_fill_mark(struct elog_mark *m, __u64 *args, __u32 kind)
{
	__builtin_memset(m, 0, sizeof(*m));
	m->boot_ns = bpf_ktime_get_boot_ns();
	m->time_ns = m->boot_ns + wall_offset_ns;
	m->run_id = args[1];
	m->kind = kind;
	m->cpus[0] = args[3];
	m->cpus[1] = args[4];
	m->cpus[2] = args[5];
	m->cpus[3] = args[6];
	m->ncpus = __builtin_popcountll(m->cpus[0]) + __builtin_popcountll(m->cpus[1]) +
		   __builtin_popcountll(m->cpus[2]) + __builtin_popcountll(m->cpus[3]);
}

/* ctx->args: [0] op, [1] run_id, [2] mark kind, [3..6] CPU set (7 u64s
 * must be passed: the test run copies only what it is given). Returns the
 * mark's sequence number & 0x7fffffff, or -ELOG_E*. */
SEC("raw_tp")
int elog_control(struct bpf_raw_tracepoint_args *ctx)
{
	struct elog_scratch *s = cryptbpf_scratch(&elog_scratch);
	struct elog_cpu_state *cs = elog_slot0(&elog_cpu);
	struct elog_stats *st = elog_slot0(&stats);
	__u64 args[7];
	__u32 kind;
	int ret;

	if (!s || !cs || !st)
		return -ELOG_EINVAL;
	if (cs->busy)	/* we interrupted elog_exec on this CPU */
		return -ELOG_EBUSY;
	for (int i = 0; i < 7; i++)
		args[i] = ctx->args[i];
	if (args[0] == ELOG_OP_ROTATE) {
		kind = ELOG_MARK_ROTATE;
	} else if (args[0] == ELOG_OP_MARK && args[2] >= ELOG_MARK_START &&
		   args[2] <= ELOG_MARK_END) {
		kind = args[2];
	} else {
		return -ELOG_EINVAL;
	}
	cs->busy = 1;
	barrier();
	if (kind == ELOG_MARK_ROTATE) {
		ret = elog_ratchet(s, st);
		if (ret)
			goto out;
	} else {
		elog_maybe_ratchet(s, st);	/* marks obey the epoch length too */
	}
	elog_fill_mark(&s->rec.body.mark, args, kind);
	ret = elog_emit(s, cs, st, ELOG_TYPE_MARK, sizeof(struct elog_mark));
	if (!ret) {
		st->marks++;
		ret = s->rec.hdr.seq & 0x7fffffff;	/* the caller finds its mark by it */
	}
out:
	barrier();
	cs->busy = 0;
	return ret;
}
