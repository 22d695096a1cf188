// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/* records.h — the byte layout of every record the eBPF programs put in the
 * ring buffer, and of the maps userspace fills or reads. Rust mirrors this
 * file in sources/src/ebpf/records.rs (offsets and sizes are asserted on
 * both sides); change both together and bump HF_RECORD_VERSION.
 *
 * Rules: little-endian (x86-64, arm64), every field naturally aligned with
 * explicit padding, fixed sizes. The one variable part is the exec record's
 * argv tail: only the bytes actually read are sent, so a typical exec costs
 * ~400 bytes of ring space instead of 4.4 KiB.
 */
#ifndef HOSTFLOW_RECORDS_H
#define HOSTFLOW_RECORDS_H

#define HF_RECORD_VERSION 1

/* Record kinds (hf_header.kind). */
#define HF_KIND_EXEC 1
#define HF_KIND_EXIT 2
#define HF_KIND_FORK 3
#define HF_KIND_CONNECT 4
#define HF_KIND_OPEN 5

/* Program ids: the index into hf_counters, one per logical program (a
 * program made of several BPF functions, such as connect's enter and exit,
 * shares one id). */
#define HF_PROG_EXEC 0
#define HF_PROG_EXIT 1
#define HF_PROG_FORK 2
#define HF_PROG_CONNECT 3
#define HF_PROG_FILE_OPEN 4
#define HF_PROG_COUNT 5

/* Bounds. */
#define HF_COMM_LEN 16
#define HF_FILENAME_LEN 256
#define HF_ARGV_LEN 4096 /* bytes of argv (NUL-separated) kept per exec */
#define HF_PATH_LEN 256
#define HF_PREFIX_LEN 64
#define HF_MAX_PREFIXES 8

/* hf_exec.flags */
#define HF_EXEC_ARGV_TRUNCATED (1 << 0)     /* argv was longer than HF_ARGV_LEN */
#define HF_EXEC_ARGV_UNREADABLE (1 << 1)    /* the argument pages could not be read */
#define HF_EXEC_FILENAME_TRUNCATED (1 << 2) /* filename filled HF_FILENAME_LEN */

/* hf_open.syscall */
#define HF_OPEN_OPENAT 0
#define HF_OPEN_OPENAT2 1
#define HF_OPEN_OPEN 2

/* Every record starts with this. */
struct hf_header {
    __u16 kind;    /* HF_KIND_* */
    __u16 version; /* HF_RECORD_VERSION */
    __u32 size;    /* bytes of the whole record, header included */
    __u64 ts_ns;   /* CLOCK_BOOTTIME (bpf_ktime_get_boot_ns) */
};

/* A process (thread group) and the thread that acted. */
struct hf_proc {
    __u32 tgid;
    __u32 pid;            /* thread id */
    __u64 start_boottime; /* group leader's start, ns since boot, not rounded */
};

struct hf_exec {
    struct hf_header header;
    struct hf_proc proc;
    __u32 ppid; /* real_parent->tgid */
    __u32 uid;
    __u32 gid;
    __u32 flags; /* HF_EXEC_* */
    __u64 cgroup_id;
    __u32 argv_len;      /* bytes of argv[] that follow (<= HF_ARGV_LEN) */
    __u32 argv_full_len; /* the whole argument area's length */
    char comm[HF_COMM_LEN];
    char filename[HF_FILENAME_LEN]; /* as passed to execve, NUL-terminated */
    char argv[HF_ARGV_LEN];         /* only argv_len bytes are sent */
};
#define HF_EXEC_FIXED_SIZE 336 /* offsetof(struct hf_exec, argv) */

struct hf_exit {
    struct hf_header header;
    struct hf_proc proc;
    __s32 exit_code; /* task->exit_code, raw: status << 8 | signal */
    __u32 pad;
    __u64 cpu_ns; /* scheduler runtime of the whole group */
    char comm[HF_COMM_LEN];
};

struct hf_fork {
    struct hf_header header;
    struct hf_proc parent;
    struct hf_proc child;
};

struct hf_connect {
    struct hf_header header;
    struct hf_proc proc;
    __u16 family;    /* AF_INET (2) or AF_INET6 (10) */
    __u16 port;      /* destination port, host byte order */
    __s16 sock_type; /* SOCK_STREAM (1), SOCK_DGRAM (2), 0 when unknown */
    __u16 pad;
    __s32 ret; /* connect(2)'s return: 0, -EINPROGRESS, -ECONNREFUSED, ... */
    __u32 pad2;
    __u8 addr[16]; /* IPv4 in the first 4 bytes, network order */
};

struct hf_open {
    struct hf_header header;
    struct hf_proc proc;
    __u32 flags;    /* open flags as passed */
    __u32 path_len; /* bytes of path before its NUL */
    __s32 dfd;
    __u32 syscall; /* HF_OPEN_* */
    char path[HF_PATH_LEN];
};

/* hf_counters value, per CPU and program. */
struct hf_counter {
    __u64 submitted; /* records the ring buffer accepted */
    __u64 lost;      /* records it refused (full) */
};

/* hf_prefixes value. */
struct hf_prefix {
    __u32 len; /* 1..=HF_PREFIX_LEN; 0 = unused slot */
    __u32 pad;
    char bytes[HF_PREFIX_LEN];
};

_Static_assert(sizeof(struct hf_header) == 16, "hf_header");
_Static_assert(sizeof(struct hf_proc) == 16, "hf_proc");
_Static_assert(__builtin_offsetof(struct hf_exec, argv) == HF_EXEC_FIXED_SIZE, "hf_exec fixed part");
_Static_assert(sizeof(struct hf_exec) == HF_EXEC_FIXED_SIZE + HF_ARGV_LEN, "hf_exec");
_Static_assert(sizeof(struct hf_exit) == 64, "hf_exit");
_Static_assert(sizeof(struct hf_fork) == 48, "hf_fork");
_Static_assert(sizeof(struct hf_connect) == 64, "hf_connect");
_Static_assert(sizeof(struct hf_open) == 304, "hf_open");
_Static_assert(sizeof(struct hf_counter) == 16, "hf_counter");
_Static_assert(sizeof(struct hf_prefix) == 72, "hf_prefix");

#endif /* HOSTFLOW_RECORDS_H */
