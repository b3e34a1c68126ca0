/* SPDX-License-Identifier: GPL-2.0 */
/* Shared (BPF + Python): encrypted_logger's sealed record format, key state
 * and statistics. docs/encrypted_logger.md explains the design.
 *
 * One ring-buffer record (all integers little-endian):
 *
 *     struct elog_hdr   hdr        40 bytes, sent in clear, authenticated (AAD)
 *     ciphertext[hdr.len]          ChaCha20-Poly1305 of the body (elog_exec or elog_mark)
 *     tag[16]                      Poly1305 tag over (hdr, ciphertext)
 *
 * Key:   seal key of epoch e, S(e) = HMAC-SHA256(K(e), "cryptbpf log seal"),
 *        K(0) = HMAC-SHA256(master, "cryptbpf log session" || le64(session)),
 *        K(e+1) = HMAC-SHA256(K(e), "cryptbpf log ratchet").
 * Nonce: le32(cpu) || le64(seq): each CPU's stream counts its own records
 *        from 0, so (cpu, seq) never repeats within a session, and a session
 *        (random 64-bit id, new on every load) has its own K(0).
 *
 * Streams: hdr.seq counts the records of one CPU (the CPU that sealed them),
 * with no holes: a record that could not be sealed or did not fit into the
 * ring buffer still used its number, and hdr.lost (that CPU's running count
 * of such records) lets a reader tell "lost in the kernel" from "removed
 * later". Ring-buffer order is sequence order within a CPU.
 */
#pragma once

#define ELOG_VERSION        1
#define ELOG_TAG_SIZE       16
#define ELOG_KEY_SIZE       32

/* hdr.type */
#define ELOG_TYPE_EXEC      1
#define ELOG_TYPE_MARK      2

/* elog_mark.kind: marks are written on request (BPF_PROG_TEST_RUN of the
 * control program on a chosen CPU) into that CPU's stream. */
#define ELOG_MARK_START     1    /* a recording run begins on this CPU */
#define ELOG_MARK_END       2    /* a recording run ends: nothing of it follows */
#define ELOG_MARK_ROTATE    3    /* the key was ratcheted on request */

/* control program operations: args[0] of its context */
#define ELOG_OP_MARK        1    /* args: op, run_id, kind, cpus[0..3] */
#define ELOG_OP_ROTATE      2    /* ratchet now, then write a ROTATE mark */

/* control program return codes (besides 0) */
#define ELOG_EBUSY          16   /* this CPU is sealing or ratcheting: retry */
#define ELOG_ENOSPC         28   /* ring buffer full */
#define ELOG_EINVAL         22

#define ELOG_COMM_LEN       16
#define ELOG_FILENAME_MAX   256  /* bytes of bprm->filename kept (NUL-terminated) */
#define ELOG_ARGV_MAX       256  /* bytes of argv kept (NUL-separated, as in memory) */
#define ELOG_MAX_CPUS       256  /* size of a mark's CPU set */

/* argv flags */
#define ELOG_ARGV_TRUNCATED 1    /* argv_total > argv_len */
#define ELOG_ARGV_FAULT     2    /* argv pages not readable (nothing kept) */

struct elog_hdr {
	__u16 version;       /* ELOG_VERSION */
	__u16 type;          /* ELOG_TYPE_* */
	__u32 len;           /* body (= ciphertext) length */
	__u64 session;       /* random per load: selects K(0) */
	__u64 seq;           /* this CPU's record number in the session */
	__u64 lost;          /* records of this CPU lost before this one (running count) */
	__u32 epoch;         /* key epoch of the seal */
	__u32 cpu;           /* CPU that sealed it (stream id) */
};

/* Body of ELOG_TYPE_EXEC: one sched_process_exec. */
struct elog_exec {
	__u64 time_ns;       /* CLOCK_REALTIME, ns (boot clock + offset from load time) */
	__u64 boot_ns;       /* CLOCK_BOOTTIME, ns */
	__u64 cgroup_id;     /* cgroup v2 id of the process */
	__u32 pid;           /* tgid */
	__u32 ppid;          /* real parent's tgid */
	__u32 uid;           /* real uid/gid, and effective (setuid programs) */
	__u32 gid;
	__u32 euid;
	__u32 egid;
	__u32 argv_len;      /* bytes of argv[] that are valid */
	__u32 argv_total;    /* bytes of all arguments (arg_end - arg_start) */
	__u32 argv_flags;    /* ELOG_ARGV_* */
	__u32 filename_len;  /* strlen(filename) kept */
	char comm[ELOG_COMM_LEN];
	char filename[ELOG_FILENAME_MAX];
	char argv[ELOG_ARGV_MAX];
};

/* Body of ELOG_TYPE_MARK. */
struct elog_mark {
	__u64 time_ns;
	__u64 boot_ns;
	__u64 run_id;        /* chosen by the recorder (START/END of one run) */
	__u32 kind;          /* ELOG_MARK_* */
	__u32 ncpus;         /* CPUs in cpus[] */
	__u64 cpus[4];       /* the CPUs the run marks: bit c = CPU c */
};

/* Per-CPU stream state (PERCPU_ARRAY elog_cpu). */
struct elog_cpu_state {
	__u64 seq;           /* next record number */
	__u64 lost;          /* records numbered but not delivered */
	__u32 busy;          /* exec program running on this CPU (the control
			      * program, run by IPI, must not interleave) */
	__u32 _pad;
};

/* One epoch's keys. */
struct elog_key_slot {
	__u64 epoch;         /* epoch of these keys; ELOG_SLOT_INVALID while written or wiped */
	__u8 chain[ELOG_KEY_SIZE];   /* K(e) */
	__u8 seal[ELOG_KEY_SIZE];    /* S(e) */
};

#define ELOG_SLOT_INVALID   0xffffffffffffffff

/* The whole key state (ARRAY elog_keys, one slot, shared by all CPUs).
 * slot[e & 1] holds epoch e; the other slot is wiped. Readers copy the seal
 * key seqlock-style (slot.epoch before and after); one writer at a time
 * (lock, cmpxchg) writes the next epoch into the other slot, publishes it,
 * then wipes the old one. */
struct elog_keystate {
	__u64 lock;
	__u64 epoch;             /* current epoch */
	__u64 epoch_start_ns;    /* CLOCK_BOOTTIME at which it began */
	struct elog_key_slot slot[2];
};

struct elog_stats {
	__u64 events;            /* sched_process_exec seen */
	__u64 sealed;            /* records sealed and in the ring buffer */
	__u64 lost_ringbuf;      /* numbered records the ring buffer had no room for */
	__u64 lost_key;          /* numbered records not sealed: key state busy / error */
	__u64 marks;             /* mark records written */
	__u64 ratchets;          /* key epochs advanced */
	__u64 argv_truncated;    /* exec records whose argv was cut at ELOG_ARGV_MAX */
	__u64 read_faults;       /* argv or filename not readable */
};
