// SPDX-License-Identifier: GPL-2.0-only
/* hostflow.bpf.c — the kernel half of the `ebpf` source: process exec,
 * exit and fork, outbound connects and file opens, each written as one
 * fixed-layout record (records.h) into one ring buffer.
 *
 * Built by sources/build.rs (clang -O2 -g -target bpf), embedded in the
 * binary and loaded with aya; every program is loaded and attached on its
 * own, so one that the kernel refuses does not take the others down.
 *
 * Design points:
 * - Classic tracepoints (they need tracefs for their ids, which the loader
 *   mounts), except fork: sched_process_fork's classic form carries only the
 *   child's pid, and the child's start time (half of its identity) is only
 *   reachable through its task_struct, which the raw tracepoint passes.
 * - Everything about a process is captured at exec time, in kernel: argv is
 *   read from the new mm's argument area right after the exec, never from
 *   /proc later.
 * - Wake-ups dominate the cost of a ring buffer, so records are submitted
 *   with BPF_RB_NO_WAKEUP until hf_wakeup_bytes are pending; the reader also
 *   drains on a timer.
 * - Every submission is counted per CPU and program: accepted or lost (ring
 *   full). Userspace sums them; received + lost = attempted, exactly.
 * - File opens are filtered in kernel by up to HF_MAX_PREFIXES path
 *   prefixes, so a busy host does not flood the ring with opens nobody
 *   asked for. The path is the one passed to the syscall (relative paths
 *   stay relative: resolving them needs d_path, which tracepoints lack).
 */
#include "hostflow_core.h"
#include "records.h"

#define AF_INET 2
#define AF_INET6 10

HF_LICENSE("GPL");

/* Set by the loader before load (aya's EbpfLoader::override_global); the
 * verifier sees them as constants. */
const volatile __u64 hf_wakeup_bytes = 0; /* 0: wake the reader on every record */
const volatile __u32 hf_prefix_count = 0; /* filled entries of hf_prefixes */

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4 << 20); /* overridden by the loader */
} hf_events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, HF_PROG_COUNT);
    __type(key, __u32);
    __type(value, struct hf_counter);
} hf_counters SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, HF_MAX_PREFIXES);
    __type(key, __u32);
    __type(value, struct hf_prefix);
} hf_prefixes SEC(".maps");

/* What sys_enter_connect saw, until sys_exit_connect gives the result. LRU
 * so that entries whose exit was never seen (attached mid-call) age out. */
struct hf_connect_pending {
    __u16 family;
    __u16 port;
    __s16 sock_type;
    __u16 pad;
    __u8 addr[16];
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64); /* pid_tgid */
    __type(value, struct hf_connect_pending);
} hf_connects SEC(".maps");

/* Per-CPU scratch for the two records too large for the 512-byte stack. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct hf_exec);
} hf_exec_scratch SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct hf_open);
} hf_open_scratch SEC(".maps");

/* ---- shared pieces ---------------------------------------------------- */

static __always_inline void hf_header_init(struct hf_header *header, __u16 kind, __u32 size) {
    header->kind = kind;
    header->version = HF_RECORD_VERSION;
    header->size = size;
    header->ts_ns = bpf_ktime_get_boot_ns();
}

/* Writes one record to the ring and counts the outcome for `prog`. */
static __always_inline void hf_submit(void *record, __u64 size, __u32 prog) {
    __u64 flags = 0;
    if (hf_wakeup_bytes > 0) {
        __u64 pending = bpf_ringbuf_query(&hf_events, BPF_RB_AVAIL_DATA);
        flags = pending + size >= hf_wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
    }
    long err = bpf_ringbuf_output(&hf_events, record, size, flags);
    struct hf_counter *counter = bpf_map_lookup_elem(&hf_counters, &prog);
    if (counter) {
        /* Per-CPU slot; tracing programs do not nest on one CPU. */
        if (err)
            counter->lost += 1;
        else
            counter->submitted += 1;
    }
}

static __always_inline __u64 hf_group_start(struct task_struct *task) {
    struct task_struct *leader;
    __u64 start;
    HF_READ_KERNEL(leader, task->group_leader);
    HF_READ_KERNEL(start, leader->start_boottime);
    return start;
}

static __always_inline void hf_current_proc(struct hf_proc *proc, struct task_struct *task) {
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    proc->tgid = pid_tgid >> 32;
    proc->pid = (__u32)pid_tgid;
    proc->start_boottime = hf_group_start(task);
}

/* ---- exec ------------------------------------------------------------- */

SEC("tracepoint/sched/sched_process_exec")
int hf_exec(struct hf_tp_sched_process_exec *ctx) {
    __u32 zero = 0;
    struct hf_exec *record = bpf_map_lookup_elem(&hf_exec_scratch, &zero);
    if (!record)
        return 0;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    hf_current_proc(&record->proc, task);

    struct task_struct *parent;
    HF_READ_KERNEL(parent, task->real_parent);
    pid_t ppid;
    HF_READ_KERNEL(ppid, parent->tgid);
    record->ppid = ppid;
    __u64 uid_gid = bpf_get_current_uid_gid();
    record->uid = (__u32)uid_gid;
    record->gid = uid_gid >> 32;
    record->cgroup_id = bpf_get_current_cgroup_id();
    __u32 flags = 0;

    __builtin_memset(record->comm, 0, sizeof(record->comm));
    bpf_get_current_comm(record->comm, sizeof(record->comm));
    __u32 filename_offset = ctx->filename_loc & 0xFFFF;
    long filename_len = bpf_probe_read_kernel_str(record->filename, sizeof(record->filename),
                                                  (void *)ctx + filename_offset);
    if (filename_len <= 0)
        record->filename[0] = 0;
    else if (filename_len >= (long)sizeof(record->filename))
        flags |= HF_EXEC_FILENAME_TRUNCATED;

    struct mm_struct *mm;
    unsigned long arg_start, arg_end;
    HF_READ_KERNEL(mm, task->mm);
    HF_READ_KERNEL(arg_start, mm->arg_start);
    HF_READ_KERNEL(arg_end, mm->arg_end);
    __u64 full_len = arg_end > arg_start ? arg_end - arg_start : 0;
    __u32 argv_len = full_len;
    if (full_len > HF_ARGV_LEN) {
        argv_len = HF_ARGV_LEN;
        flags |= HF_EXEC_ARGV_TRUNCATED;
    }
    /* Keeps the bound visible to the verifier whatever clang makes of the
     * branch above. */
    asm volatile("" : "+r"(argv_len));
    if (argv_len > HF_ARGV_LEN)
        argv_len = 0;
    if (argv_len > 0 && bpf_probe_read_user(record->argv, argv_len, (const void *)arg_start) < 0) {
        argv_len = 0;
        flags |= HF_EXEC_ARGV_UNREADABLE;
    }
    record->argv_len = argv_len;
    record->argv_full_len = full_len > 0xFFFFFFFFULL ? 0xFFFFFFFFU : (__u32)full_len;
    record->flags = flags;

    __u64 size = HF_EXEC_FIXED_SIZE + (__u64)argv_len;
    hf_header_init(&record->header, HF_KIND_EXEC, size);
    hf_submit(record, size, HF_PROG_EXEC);
    return 0;
}

/* ---- exit ------------------------------------------------------------- */

/* Runs for every exiting thread; reports only the last one of its group
 * (signal->live has reached 0), so one process = one exit record. */
SEC("tracepoint/sched/sched_process_exit")
int hf_exit(void *ctx __attribute__((unused))) {
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct signal_struct *signal;
    atomic_t live;
    HF_READ_KERNEL(signal, task->signal);
    HF_READ_KERNEL(live, signal->live);
    if (live.counter != 0)
        return 0;

    struct hf_exit record = {};
    hf_current_proc(&record.proc, task);
    int exit_code;
    HF_READ_KERNEL(exit_code, task->exit_code);
    record.exit_code = exit_code;

    /* CPU time of the whole group, in ns of scheduler runtime (exact, unlike
     * the tick-sampled utime/stime, which are 0 for most short processes):
     * threads already reaped are summed in the signal struct; add this
     * thread, and the leader when it exited earlier (it stays a zombie,
     * unreaped, until the group is dead). A thread exiting at this very
     * moment on another CPU may not have been summed yet. */
    struct task_struct *leader;
    u64 reaped_ns, own_ns, leader_ns = 0;
    HF_READ_KERNEL(reaped_ns, signal->sum_sched_runtime);
    HF_READ_KERNEL(own_ns, task->se.sum_exec_runtime);
    HF_READ_KERNEL(leader, task->group_leader);
    if (leader != task)
        HF_READ_KERNEL(leader_ns, leader->se.sum_exec_runtime);
    record.cpu_ns = reaped_ns + own_ns + leader_ns;
    bpf_get_current_comm(record.comm, sizeof(record.comm));
    hf_header_init(&record.header, HF_KIND_EXIT, sizeof(record));
    hf_submit(&record, sizeof(record), HF_PROG_EXIT);
    return 0;
}

/* ---- fork ------------------------------------------------------------- */

/* raw_tracepoint: args are (struct task_struct *parent, struct task_struct *child). */
SEC("raw_tracepoint/sched_process_fork")
int hf_fork(struct bpf_raw_tracepoint_args *ctx) {
    struct task_struct *parent = (struct task_struct *)ctx->args[0];
    struct task_struct *child = (struct task_struct *)ctx->args[1];
    pid_t child_pid, child_tgid;
    HF_READ_KERNEL(child_pid, child->pid);
    HF_READ_KERNEL(child_tgid, child->tgid);
    if (child_pid != child_tgid)
        return 0; /* a new thread, not a new process */

    struct hf_fork record = {};
    pid_t parent_pid, parent_tgid;
    HF_READ_KERNEL(parent_pid, parent->pid);
    HF_READ_KERNEL(parent_tgid, parent->tgid);
    record.parent.tgid = parent_tgid;
    record.parent.pid = parent_pid;
    record.parent.start_boottime = hf_group_start(parent);
    record.child.tgid = child_tgid;
    record.child.pid = child_pid;
    HF_READ_KERNEL(record.child.start_boottime, child->start_boottime);
    hf_header_init(&record.header, HF_KIND_FORK, sizeof(record));
    hf_submit(&record, sizeof(record), HF_PROG_FORK);
    return 0;
}

/* ---- connect ---------------------------------------------------------- */

/* SOCK_STREAM / SOCK_DGRAM of the socket behind `fd` in the current task,
 * 0 when it cannot be read. */
static __always_inline __s16 hf_socket_type(__s64 fd) {
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct files_struct *files;
    struct fdtable *fdt;
    unsigned int max_fds;
    struct file **fds;
    struct file *file = NULL;
    void *private_data;
    short type;
    HF_READ_KERNEL(files, task->files);
    HF_READ_KERNEL(fdt, files->fdt);
    HF_READ_KERNEL(max_fds, fdt->max_fds);
    if (fd < 0 || fd >= max_fds)
        return 0;
    HF_READ_KERNEL(fds, fdt->fd);
    bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
    if (!file)
        return 0;
    HF_READ_KERNEL(private_data, file->private_data);
    struct socket *sock = private_data;
    HF_READ_KERNEL(type, sock->type);
    return type;
}

struct hf_sockaddr_in {
    __u16 family;
    __u16 port; /* network order */
    __u8 addr[4];
};

struct hf_sockaddr_in6 {
    __u16 family;
    __u16 port; /* network order */
    __u32 flowinfo;
    __u8 addr[16];
};

SEC("tracepoint/syscalls/sys_enter_connect")
int hf_connect_enter(struct hf_tp_sys_enter *ctx) {
    const void *uaddr = (const void *)ctx->args[1];
    __u16 family = 0;
    if (bpf_probe_read_user(&family, sizeof(family), uaddr) < 0)
        return 0;
    struct hf_connect_pending pending = {};
    if (family == AF_INET) {
        struct hf_sockaddr_in sin = {};
        if (bpf_probe_read_user(&sin, sizeof(sin), uaddr) < 0)
            return 0;
        pending.port = __builtin_bswap16(sin.port);
        __builtin_memcpy(pending.addr, sin.addr, sizeof(sin.addr));
    } else if (family == AF_INET6) {
        struct hf_sockaddr_in6 sin6 = {};
        if (bpf_probe_read_user(&sin6, sizeof(sin6), uaddr) < 0)
            return 0;
        pending.port = __builtin_bswap16(sin6.port);
        __builtin_memcpy(pending.addr, sin6.addr, sizeof(sin6.addr));
    } else {
        return 0;
    }
    pending.family = family;
    pending.sock_type = hf_socket_type((__s64)ctx->args[0]);
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    bpf_map_update_elem(&hf_connects, &pid_tgid, &pending, BPF_ANY);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int hf_connect_exit(struct hf_tp_sys_exit *ctx) {
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    struct hf_connect_pending *pending = bpf_map_lookup_elem(&hf_connects, &pid_tgid);
    if (!pending)
        return 0;
    struct hf_connect record = {};
    record.family = pending->family;
    record.port = pending->port;
    record.sock_type = pending->sock_type;
    __builtin_memcpy(record.addr, pending->addr, sizeof(record.addr));
    bpf_map_delete_elem(&hf_connects, &pid_tgid);
    record.ret = (__s32)ctx->ret;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    hf_current_proc(&record.proc, task);
    hf_header_init(&record.header, HF_KIND_CONNECT, sizeof(record));
    hf_submit(&record, sizeof(record), HF_PROG_CONNECT);
    return 0;
}

/* ---- file open -------------------------------------------------------- */

static __always_inline bool hf_prefix_matches(const char *path, const struct hf_prefix *prefix) {
    __u32 len = prefix->len;
    if (len == 0 || len > HF_PREFIX_LEN)
        return false;
    for (__u32 i = 0; i < HF_PREFIX_LEN; i++) {
        if (i >= len)
            return true;
        if (path[i] != prefix->bytes[i])
            return false;
    }
    return true;
}

static __always_inline bool hf_path_selected(const char *path) {
    for (__u32 slot = 0; slot < HF_MAX_PREFIXES; slot++) {
        if (slot >= hf_prefix_count)
            return false;
        struct hf_prefix *prefix = bpf_map_lookup_elem(&hf_prefixes, &slot);
        if (!prefix)
            return false;
        if (hf_prefix_matches(path, prefix))
            return true;
    }
    return false;
}

static __always_inline int hf_open_common(const char *upath, __u32 open_flags, __s32 dfd, __u32 syscall) {
    if (hf_prefix_count == 0)
        return 0;
    __u32 zero = 0;
    struct hf_open *record = bpf_map_lookup_elem(&hf_open_scratch, &zero);
    if (!record)
        return 0;
    long len = bpf_probe_read_user_str(record->path, sizeof(record->path), upath);
    if (len <= 0)
        return 0;
    if (!hf_path_selected(record->path))
        return 0;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    hf_current_proc(&record->proc, task);
    record->flags = open_flags;
    record->path_len = len - 1;
    record->dfd = dfd;
    record->syscall = syscall;
    hf_header_init(&record->header, HF_KIND_OPEN, sizeof(*record));
    hf_submit(record, sizeof(*record), HF_PROG_FILE_OPEN);
    return 0;
}

/* openat(dfd, filename, flags, mode) */
SEC("tracepoint/syscalls/sys_enter_openat")
int hf_openat(struct hf_tp_sys_enter *ctx) {
    return hf_open_common((const char *)ctx->args[1], (__u32)ctx->args[2], (__s32)ctx->args[0], HF_OPEN_OPENAT);
}

/* openat2(dfd, filename, how, usize) */
SEC("tracepoint/syscalls/sys_enter_openat2")
int hf_openat2(struct hf_tp_sys_enter *ctx) {
    struct hf_open_how how = {};
    if (bpf_probe_read_user(&how, sizeof(how.flags), (const void *)ctx->args[2]) < 0)
        return 0;
    return hf_open_common((const char *)ctx->args[1], (__u32)how.flags, (__s32)ctx->args[0], HF_OPEN_OPENAT2);
}

/* open(filename, flags, mode): x86-64 only (arm64 has no open(2)). */
SEC("tracepoint/syscalls/sys_enter_open")
int hf_open(struct hf_tp_sys_enter *ctx) {
    return hf_open_common((const char *)ctx->args[0], (__u32)ctx->args[1], -100 /* AT_FDCWD */, HF_OPEN_OPEN);
}
