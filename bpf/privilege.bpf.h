// SPDX-License-Identifier: GPL-2.0-only
/* privilege.bpf.h — privilege and isolation changes: the setuid family and
 * capset (ids and capabilities before and after), setns and unshare,
 * ptrace attach (with the tracee's identity), kernel module loads and BPF
 * program loads by anyone but the agent. Included at the end of
 * hostflow.bpf.c, after files.bpf.h (hf_count_filtered).
 *
 * Every one pairs the syscall's enter and exit tracepoints through an LRU
 * hash keyed by pid_tgid: enter captures what only it can see (the
 * arguments, the credentials before), exit adds the real return and what
 * the call changed.
 */
#ifndef HOSTFLOW_PRIVILEGE_BPF_H
#define HOSTFLOW_PRIVILEGE_BPF_H

#define HF_PTRACE_ATTACH 16
#define HF_PTRACE_SEIZE 0x4206
#define HF_BPF_PROG_LOAD 5
/* CLONE_NEWTIME | NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET */
#define HF_CLONE_NEW_MASK 0x7E020080ULL

/* The agent's own thread-group id: its BPF loads are not reported. Set by
 * the loader. */
const volatile __u32 hf_agent_tgid = 0;

#define HF_PENDING_MAP(name, value_type)               \
    struct {                                           \
        __uint(type, BPF_MAP_TYPE_LRU_HASH);           \
        __uint(max_entries, 1024);                     \
        __type(key, __u64); /* pid_tgid */             \
        __type(value, value_type);                     \
    } name SEC(".maps")

HF_PENDING_MAP(hf_cred_pending, struct hf_cred_change);
HF_PENDING_MAP(hf_ns_pending, struct hf_namespace);
HF_PENDING_MAP(hf_ptrace_pending, struct hf_ptrace);
HF_PENDING_MAP(hf_module_pending, struct hf_module);
HF_PENDING_MAP(hf_bpf_pending, struct hf_bpf_load);

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct hf_module);
} hf_module_scratch SEC(".maps");

/* Completes the record parked at enter with the syscall's return and
 * submits it. `fill` may add what exit sees. */
#define HF_PAIR_EXIT(map, type, kind, prog, fill)                           \
    ({                                                                      \
        __u64 pid_tgid = bpf_get_current_pid_tgid();                        \
        type *record = bpf_map_lookup_elem(&map, &pid_tgid);                \
        if (record) {                                                       \
            record->ret = (__s32)ctx->ret;                                  \
            fill;                                                           \
            hf_header_init(&record->header, kind, sizeof(*record));         \
            hf_submit(record, sizeof(*record), prog);                       \
            bpf_map_delete_elem(&map, &pid_tgid);                           \
        }                                                                   \
        0;                                                                  \
    })

/* ---- credentials ------------------------------------------------------ */

static __always_inline void hf_read_creds(struct hf_creds *out) {
    struct task_struct___hf *task = (struct task_struct___hf *)bpf_get_current_task();
    struct cred___hf *cred;
    HF_READ_KERNEL(cred, task->cred);
    HF_READ_KERNEL(out->uid, cred->uid.val);
    HF_READ_KERNEL(out->euid, cred->euid.val);
    HF_READ_KERNEL(out->suid, cred->suid.val);
    HF_READ_KERNEL(out->gid, cred->gid.val);
    HF_READ_KERNEL(out->egid, cred->egid.val);
    HF_READ_KERNEL(out->sgid, cred->sgid.val);
    HF_READ_KERNEL(out->cap_effective, cred->cap_effective.val);
    HF_READ_KERNEL(out->cap_permitted, cred->cap_permitted.val);
}

static __always_inline int hf_cred_enter(__u32 syscall) {
    struct hf_cred_change record = {};
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    hf_current_proc(&record.proc, task);
    record.syscall = syscall;
    hf_read_creds(&record.old);
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    bpf_map_update_elem(&hf_cred_pending, &pid_tgid, &record, BPF_ANY);
    return 0;
}

#define HF_CRED_PAIR(syscall, id)                                                                      \
    SEC("tracepoint/syscalls/sys_enter_" #syscall)                                                     \
    int hf_##syscall##_enter(struct hf_tp_sys_enter *ctx __attribute__((unused))) {                    \
        return hf_cred_enter(id);                                                                      \
    }                                                                                                  \
    SEC("tracepoint/syscalls/sys_exit_" #syscall)                                                      \
    int hf_##syscall##_exit(struct hf_tp_sys_exit *ctx) {                                              \
        return HF_PAIR_EXIT(hf_cred_pending, struct hf_cred_change, HF_KIND_CRED_CHANGE,               \
                            HF_PROG_CREDENTIALS, hf_read_creds(&record->new));                         \
    }

HF_CRED_PAIR(setuid, HF_CRED_SETUID)
HF_CRED_PAIR(setreuid, HF_CRED_SETREUID)
HF_CRED_PAIR(setresuid, HF_CRED_SETRESUID)
HF_CRED_PAIR(setfsuid, HF_CRED_SETFSUID)
HF_CRED_PAIR(setgid, HF_CRED_SETGID)
HF_CRED_PAIR(setregid, HF_CRED_SETREGID)
HF_CRED_PAIR(setresgid, HF_CRED_SETRESGID)
HF_CRED_PAIR(setfsgid, HF_CRED_SETFSGID)
HF_CRED_PAIR(capset, HF_CRED_CAPSET)

/* ---- namespaces ------------------------------------------------------- */

static __always_inline int hf_ns_enter(__u32 syscall, __u64 flags) {
    struct hf_namespace record = {};
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    hf_current_proc(&record.proc, task);
    record.syscall = syscall;
    record.flags = flags;
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    bpf_map_update_elem(&hf_ns_pending, &pid_tgid, &record, BPF_ANY);
    return 0;
}

/* setns(fd, nstype): every call (nstype 0 = any kind) */
SEC("tracepoint/syscalls/sys_enter_setns")
int hf_setns_enter(struct hf_tp_sys_enter *ctx) {
    return hf_ns_enter(HF_NS_SETNS, ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_setns")
int hf_setns_exit(struct hf_tp_sys_exit *ctx) {
    return HF_PAIR_EXIT(hf_ns_pending, struct hf_namespace, HF_KIND_NAMESPACE, HF_PROG_NAMESPACE, (void)0);
}

/* unshare(flags): only calls that ask for a namespace (CLONE_FILES alone
 * is not an isolation change); its other flags are dropped. */
SEC("tracepoint/syscalls/sys_enter_unshare")
int hf_unshare_enter(struct hf_tp_sys_enter *ctx) {
    __u64 flags = ctx->args[0] & HF_CLONE_NEW_MASK;
    if (!flags) {
        hf_count_filtered(HF_PROG_NAMESPACE);
        return 0;
    }
    return hf_ns_enter(HF_NS_UNSHARE, flags);
}

SEC("tracepoint/syscalls/sys_exit_unshare")
int hf_unshare_exit(struct hf_tp_sys_exit *ctx) {
    return HF_PAIR_EXIT(hf_ns_pending, struct hf_namespace, HF_KIND_NAMESPACE, HF_PROG_NAMESPACE, (void)0);
}

/* ---- ptrace ----------------------------------------------------------- */

/* ptrace(request, pid, addr, data): attach and seize only. */
SEC("tracepoint/syscalls/sys_enter_ptrace")
int hf_ptrace_enter(struct hf_tp_sys_enter *ctx) {
    __u64 request = ctx->args[0];
    if (request != HF_PTRACE_ATTACH && request != HF_PTRACE_SEIZE) {
        hf_count_filtered(HF_PROG_PTRACE);
        return 0;
    }
    struct hf_ptrace record = {};
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    hf_current_proc(&record.proc, task);
    record.request = request;
    record.target.tgid = (__u32)ctx->args[1];
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    bpf_map_update_elem(&hf_ptrace_pending, &pid_tgid, &record, BPF_ANY);
    return 0;
}

/* After a successful attach the tracee is the newest entry of this
 * thread's `ptraced` list (ptrace_link adds at the head, and only this
 * thread adds to its own list): its identity comes from there, not from
 * the pid, which is only meaningful in the tracer's pid namespace. */
static __always_inline void hf_ptrace_target(struct hf_ptrace *record) {
    if (record->ret != 0)
        return;
    struct task_struct___hf *task = (struct task_struct___hf *)bpf_get_current_task();
    struct list_head___hf *next;
    HF_READ_KERNEL(next, task->ptraced.next);
    if (!next)
        return;
    __u64 offset = HF_FIELD_OFFSET(((struct task_struct___hf *)0)->ptrace_entry);
    struct task_struct___hf *tracee = (struct task_struct___hf *)((char *)next - offset);
    pid_t tgid;
    HF_READ_KERNEL(tgid, tracee->tgid);
    record->target.tgid = tgid;
    HF_READ_KERNEL(record->target.pid, tracee->pid);
    record->target.start_boottime = hf_group_start((struct task_struct *)tracee);
}

SEC("tracepoint/syscalls/sys_exit_ptrace")
int hf_ptrace_exit(struct hf_tp_sys_exit *ctx) {
    return HF_PAIR_EXIT(hf_ptrace_pending, struct hf_ptrace, HF_KIND_PTRACE, HF_PROG_PTRACE, hf_ptrace_target(record));
}

/* ---- kernel modules --------------------------------------------------- */

#define HF_PATH_DEPTH 16 /* a power of two (masked indexes) */

/* The path of an open file, built from its dentries up to the root of the
 * mount tree (crossing mounts), into data[0..]; returns its length. Deeper
 * than HF_PATH_DEPTH components: the top ones are left out; longer than
 * HF_PATH_LEN - 1 bytes, or a component of 128 bytes or more: cut. */
static __always_inline __u32 hf_file_path(struct file___hf *file, char *data) {
    const unsigned char *names[HF_PATH_DEPTH];
    struct dentry___hf *dentry;
    struct vfsmount___hf *vfsmnt;
    HF_READ_KERNEL(dentry, file->f_path.dentry);
    HF_READ_KERNEL(vfsmnt, file->f_path.mnt);
    __u64 mnt_offset = HF_FIELD_OFFSET(((struct mount___hf *)0)->mnt);
    struct mount___hf *mnt = (struct mount___hf *)((char *)vfsmnt - mnt_offset);
    __u32 depth = 0;
    for (__u32 i = 0; i < HF_PATH_DEPTH + 8; i++) {
        struct dentry___hf *root, *parent;
        HF_READ_KERNEL(root, mnt->mnt.mnt_root);
        if (dentry == root) {
            struct mount___hf *up;
            HF_READ_KERNEL(up, mnt->mnt_parent);
            if (up == mnt || !up)
                break;
            HF_READ_KERNEL(dentry, mnt->mnt_mountpoint);
            mnt = up;
            continue;
        }
        HF_READ_KERNEL(parent, dentry->d_parent);
        if (parent == dentry || !parent || depth >= HF_PATH_DEPTH)
            break;
        HF_READ_KERNEL(names[depth & (HF_PATH_DEPTH - 1)], dentry->d_name.name);
        depth++;
        dentry = parent;
    }
    __u32 len = 0;
    for (__u32 i = 0; i < HF_PATH_DEPTH; i++) {
        if (i >= depth)
            break;
        __u32 at = len & (HF_PATH_LEN - 1);
        if (len >= HF_PATH_LEN - 1)
            break;
        data[at] = '/';
        at = (at + 1) & (HF_PATH_LEN - 1);
        long n = bpf_probe_read_kernel_str(&data[at], HF_MODULE_PARAMS_LEN, names[(depth - 1 - i) & (HF_PATH_DEPTH - 1)]);
        if (n <= 1)
            break;
        len += n; /* the '/' and the name */
    }
    return len >= HF_PATH_LEN ? HF_PATH_LEN - 1 : len;
}

static __always_inline struct file___hf *hf_fd_file(__s64 fd) {
    struct task_struct___hf *task = (struct task_struct___hf *)bpf_get_current_task();
    struct files_struct___hf *files;
    struct fdtable___hf *fdt;
    unsigned int max_fds;
    struct file___hf **fds;
    struct file___hf *file = NULL;
    HF_READ_KERNEL(files, task->files);
    HF_READ_KERNEL(fdt, files->fdt);
    HF_READ_KERNEL(max_fds, fdt->max_fds);
    if (fd < 0 || fd >= max_fds)
        return NULL;
    HF_READ_KERNEL(fds, fdt->fd);
    bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
    return file;
}

static __always_inline int hf_module_enter(__u32 syscall, __s64 fd, const char *uparams, __u32 flags) {
    __u32 zero = 0;
    struct hf_module *record = bpf_map_lookup_elem(&hf_module_scratch, &zero);
    if (!record)
        return 0;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    hf_current_proc(&record->proc, task);
    record->syscall = syscall;
    record->flags = flags;
    record->ret = 0;
    __u32 path_len = 0;
    if (fd >= 0) {
        struct file___hf *file = hf_fd_file(fd);
        if (file)
            path_len = hf_file_path(file, record->data) & (HF_PATH_LEN - 1);
    }
    __u32 params_len = 0;
    long n = bpf_probe_read_user_str(&record->data[path_len], HF_MODULE_PARAMS_LEN, uparams);
    if (n > 1)
        params_len = (__u32)(n - 1) & (HF_MODULE_PARAMS_LEN - 1);
    record->path_len = path_len;
    record->params_len = params_len;
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    bpf_map_update_elem(&hf_module_pending, &pid_tgid, record, BPF_ANY);
    return 0;
}

/* init_module(image, len, params): an image in memory, no file. */
SEC("tracepoint/syscalls/sys_enter_init_module")
int hf_init_module_enter(struct hf_tp_sys_enter *ctx) {
    return hf_module_enter(HF_MODULE_INIT, -1, (const char *)ctx->args[2], 0);
}

/* finit_module(fd, params, flags) */
SEC("tracepoint/syscalls/sys_enter_finit_module")
int hf_finit_module_enter(struct hf_tp_sys_enter *ctx) {
    return hf_module_enter(HF_MODULE_FINIT, (__s64)ctx->args[0], (const char *)ctx->args[1], (__u32)ctx->args[2]);
}

static __always_inline int hf_module_exit(struct hf_tp_sys_exit *ctx) {
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    struct hf_module *record = bpf_map_lookup_elem(&hf_module_pending, &pid_tgid);
    if (!record)
        return 0;
    record->ret = (__s32)ctx->ret;
    __u32 size = HF_MODULE_FIXED_SIZE + (record->path_len & (HF_PATH_LEN - 1)) +
                 (record->params_len & (HF_MODULE_PARAMS_LEN - 1));
    hf_header_init(&record->header, HF_KIND_MODULE, size);
    hf_submit(record, size, HF_PROG_MODULE_LOAD);
    bpf_map_delete_elem(&hf_module_pending, &pid_tgid);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_init_module")
int hf_init_module_exit(struct hf_tp_sys_exit *ctx) {
    return hf_module_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_finit_module")
int hf_finit_module_exit(struct hf_tp_sys_exit *ctx) {
    return hf_module_exit(ctx);
}

/* ---- BPF program loads ------------------------------------------------ */

/* union bpf_attr for BPF_PROG_LOAD, up to prog_name (uapi, stable). */
struct hf_bpf_prog_load_attr {
    __u32 prog_type;
    __u32 insn_cnt;
    __u64 insns;
    __u64 license;
    __u32 log_level;
    __u32 log_size;
    __u64 log_buf;
    __u32 kern_version;
    __u32 prog_flags;
    char prog_name[16];
};

/* bpf(cmd, attr, size): BPF_PROG_LOAD by any process but the agent. */
SEC("tracepoint/syscalls/sys_enter_bpf")
int hf_bpf_enter(struct hf_tp_sys_enter *ctx) {
    if (ctx->args[0] != HF_BPF_PROG_LOAD)
        return 0;
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    if (hf_agent_tgid != 0 && (__u32)(pid_tgid >> 32) == hf_agent_tgid) {
        hf_count_filtered(HF_PROG_BPF_LOAD);
        return 0;
    }
    struct hf_bpf_prog_load_attr attr = {};
    __u64 size = ctx->args[2];
    const void *uattr = (const void *)ctx->args[1];
    if (size >= sizeof(attr))
        bpf_probe_read_user(&attr, sizeof(attr), uattr);
    else
        bpf_probe_read_user(&attr, 8, uattr); /* type and count; no name */
    struct hf_bpf_load record = {};
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    hf_current_proc(&record.proc, task);
    record.prog_type = attr.prog_type;
    record.insn_cnt = attr.insn_cnt;
    __builtin_memcpy(record.name, attr.prog_name, sizeof(record.name));
    bpf_map_update_elem(&hf_bpf_pending, &pid_tgid, &record, BPF_ANY);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_bpf")
int hf_bpf_exit(struct hf_tp_sys_exit *ctx) {
    return HF_PAIR_EXIT(hf_bpf_pending, struct hf_bpf_load, HF_KIND_BPF_LOAD, HF_PROG_BPF_LOAD, (void)0);
}

#endif /* HOSTFLOW_PRIVILEGE_BPF_H */
