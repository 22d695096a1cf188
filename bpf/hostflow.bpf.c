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
 * - File opens and file changes are chosen in kernel by path prefix, exact
 *   path and basename (files.bpf.h), so a busy host does not flood the
 *   ring with opens nobody asked for; what is left out is counted. The
 *   path is the one passed to the syscall (relative paths stay relative:
 *   resolving them needs d_path, which tracepoints lack).
 */
#include "hostflow_core.h"
#include "records.h"

#define AF_INET 2
#define AF_INET6 10

HF_LICENSE("GPL");

/* Set by the loader before load (aya's EbpfLoader::override_global); the
 * verifier sees them as constants. */
const volatile __u64 hf_wakeup_bytes = 0; /* 0: wake the reader on every record */

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

/* Writes one record to the ring and counts the outcome for `prog`;
 * returns bpf_ringbuf_output's result (0, or the error of a full ring). */
static __always_inline long hf_submit(void *record, __u64 size, __u32 prog) {
    __u64 flags = 0;
    if (hf_wakeup_bytes > 0) {
        __u64 pending = bpf_ringbuf_query(&hf_events, BPF_RB_AVAIL_DATA);
        flags = pending + size >= hf_wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
    }
    /* Counted before the record becomes visible, so the source can never
     * have read more than `submitted` says (the loss ledger's kernel rows
     * hold at every moment); a refused record moves to `lost`. Per-CPU
     * slot; tracing programs do not nest on one CPU. */
    struct hf_counter *counter = bpf_map_lookup_elem(&hf_counters, &prog);
    if (counter)
        counter->submitted += 1;
    long err = bpf_ringbuf_output(&hf_events, record, size, flags);
    if (counter && err) {
        counter->submitted -= 1;
        counter->lost += 1;
    }
    return err;
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

/* Filled entries of hf_env_names (the source's `exec_env` allow-list); set
 * by the loader before load. 0 skips the environment scan entirely. */
const volatile __u32 hf_env_count = 0;

/* One entry holding every name: one lookup per environment entry, and the
 * loop over names keeps its index in a register (a lookup per name made
 * the verifier see the loop as infinite). */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct hf_env_names);
} hf_env_names SEC(".maps");

/* One environment entry being examined: too large for the stack. */
struct hf_env_entry {
    char bytes[HF_ENV_ENTRY_LEN];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct hf_env_entry);
} hf_env_scratch SEC(".maps");

#define HF_S_IFMT 0170000
#define HF_S_IFSOCK 0140000
#define HF_S_IFREG 0100000
#define HF_S_IFCHR 0020000
#define HF_S_IFIFO 0010000
#define HF_OVERLAYFS_SUPER_MAGIC 0x794c7630UL
#define HF_MINORBITS 20 /* the kernel's dev_t: major << 20 | minor */

/* The tty drivers' character majors: virtual consoles and serial ports (4),
 * /dev/tty, /dev/console and /dev/ptmx (5), Unix98 pty slaves (136-143). */
static __always_inline bool hf_is_tty_major(__u32 major) {
    return major == 4 || major == 5 || (major >= 136 && major <= 143);
}

/* What fd `fd` of the current task is. Read after the exec closed its
 * close-on-exec fds, so this is what the new program starts with. */
static __always_inline void hf_stdio_fill(struct hf_stdio *out, struct file **fds, unsigned int max_fds, __u32 fd) {
    __builtin_memset(out, 0, sizeof(*out));
    if (fd >= max_fds)
        return;
    struct file *file = NULL;
    bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
    if (!file)
        return;
    struct inode *inode;
    unsigned short mode;
    HF_READ_KERNEL(inode, file->f_inode);
    HF_READ_KERNEL(mode, inode->i_mode);
    switch (mode & HF_S_IFMT) {
    case HF_S_IFREG:
        out->kind = HF_FD_FILE;
        return;
    case HF_S_IFIFO:
        out->kind = HF_FD_PIPE;
        return;
    case HF_S_IFCHR: {
        __u32 rdev;
        HF_READ_KERNEL(rdev, inode->i_rdev);
        out->kind = hf_is_tty_major(rdev >> HF_MINORBITS) ? HF_FD_TTY : HF_FD_OTHER;
        return;
    }
    case HF_S_IFSOCK:
        break;
    default:
        out->kind = HF_FD_OTHER;
        return;
    }
    out->kind = HF_FD_SOCKET;
    /* A socket file's private_data is its struct socket. */
    void *private_data;
    struct sock *sk;
    HF_READ_KERNEL(private_data, file->private_data);
    struct socket *sock = private_data;
    HF_READ_KERNEL(sk, sock->sk);
    if (!sk)
        return;
    unsigned short family;
    __u16 protocol, dport;
    HF_READ_KERNEL(family, sk->__sk_common.skc_family);
    HF_READ_KERNEL(protocol, sk->sk_protocol);
    out->family = family;
    out->protocol = protocol;
    if (family == AF_INET) {
        __u32 daddr;
        HF_READ_KERNEL(daddr, sk->__sk_common.skc_daddr);
        HF_READ_KERNEL(dport, sk->__sk_common.skc_dport);
        __builtin_memcpy(out->addr, &daddr, sizeof(daddr));
        out->port = __builtin_bswap16(dport);
    } else if (family == AF_INET6) {
        bpf_probe_read_kernel(out->addr, sizeof(out->addr),
                              __builtin_preserve_access_index(&sk->__sk_common.skc_v6_daddr));
        HF_READ_KERNEL(dport, sk->__sk_common.skc_dport);
        out->port = __builtin_bswap16(dport);
    }
}

/* The executable: mm->exe_file, which begin_new_exec set to the file that
 * was finally loaded (for a script, its interpreter). Returns HF_EXEC_*
 * flags. */
static __always_inline __u32 hf_exec_file(struct hf_exec *record, struct mm_struct *mm) {
    struct file *exe;
    HF_READ_KERNEL(exe, mm->exe_file);
    if (!exe)
        return HF_EXEC_NO_FILE;
    __u32 flags = 0;
    struct inode *inode;
    struct super_block *sb;
    unsigned short mode;
    unsigned long ino, magic;
    long long size;
    HF_READ_KERNEL(inode, exe->f_inode);
    HF_READ_KERNEL(mode, inode->i_mode);
    HF_READ_KERNEL(ino, inode->i_ino);
    HF_READ_KERNEL(size, inode->i_size);
    HF_READ_KERNEL(record->file_nlink, inode->i_nlink);
    HF_READ_KERNEL(sb, inode->i_sb);
    HF_READ_KERNEL(record->file_dev, sb->s_dev);
    HF_READ_KERNEL(magic, sb->s_magic);
    record->file_mode = mode;
    record->file_ino = ino;
    record->file_size = size;
    record->file_mtime_ns = 0;
    if (HF_FIELD_EXISTS(inode->i_mtime_sec)) {
        long long sec;
        __u32 nsec;
        HF_READ_KERNEL(sec, inode->i_mtime_sec);
        HF_READ_KERNEL(nsec, inode->i_mtime_nsec);
        record->file_mtime_ns = sec * 1000000000ULL + nsec;
    }
    /* memfd_create names its file "memfd:<name>" (on the internal shmem or
     * hugetlbfs mount) and it never has a link. Both together: an on-disk
     * file literally named "memfd:..." matches only once deleted. */
    struct dentry *dentry;
    const unsigned char *name;
    char prefix[8] = {};
    HF_READ_KERNEL(dentry, exe->f_path.dentry);
    HF_READ_KERNEL(name, dentry->d_name.name);
    bpf_probe_read_kernel(prefix, 6, name);
    if (record->file_nlink == 0 && prefix[0] == 'm' && prefix[1] == 'e' && prefix[2] == 'm' && prefix[3] == 'f' &&
        prefix[4] == 'd' && prefix[5] == ':')
        flags |= HF_EXEC_MEMFD;
    /* An overlayfs file's inode is embedded in its struct ovl_inode, whose
     * __upperdentry is set when the file exists on the upper layer
     * (created or copied up there, i.e. not as in the image's lower layers).
     * The field check is a load-time constant: with overlayfs built as a
     * module its types are not in vmlinux BTF, and the branch is dropped
     * (overlay_upper stays 0) instead of failing the whole program. */
    if (HF_FIELD_EXISTS(((struct ovl_inode *)0)->__upperdentry) && magic == HF_OVERLAYFS_SUPER_MAGIC) {
        struct ovl_inode *ovl = (void *)inode - HF_FIELD_OFFSET(((struct ovl_inode *)0)->vfs_inode);
        struct dentry *upper;
        HF_READ_KERNEL(upper, ovl->__upperdentry);
        if (upper)
            flags |= HF_EXEC_OVERLAY_UPPER;
    }
    return flags;
}

/* Whether kernel uid `uid` is root in `cred`'s user namespace: what the
 * kernel's exec-time capability rules compare with (make_kuid(ns, 0)).
 * `*known` is cleared when the namespace maps uids through more than the
 * 5 inline extents. */
static __always_inline bool hf_is_ns_root(const struct cred *cred, __u32 uid, bool *known) {
    struct user_namespace *ns;
    int level;
    __u32 nr;
    HF_READ_KERNEL(ns, cred->user_ns);
    HF_READ_KERNEL(level, ns->level);
    if (level == 0)
        return uid == 0;
    HF_READ_KERNEL(nr, ns->uid_map.nr_extents);
    if (nr > 5) {
        *known = false;
        return false;
    }
#pragma unroll
    for (int i = 0; i < 5; i++) {
        __u32 first, lower_first;
        if (i >= nr)
            break;
        HF_READ_KERNEL(first, ns->uid_map.extent[i].first);
        HF_READ_KERNEL(lower_first, ns->uid_map.extent[i].lower_first);
        if (first == 0)
            return uid == lower_first;
    }
    return false; /* no uid maps to 0 in this namespace */
}

/* The cwd as components from the leaf up, each NUL-terminated, into `out`
 * (at most HF_CWD_LEN bytes; userspace reverses them). Crosses mounts
 * upward and stops at the task's root (so a chrooted or containerised
 * process gets the path it sees). Returns the bytes written. */
static __always_inline __u32 hf_exec_cwd(struct task_struct *task, char *out, __u32 *flags) {
    struct fs_struct *fs;
    HF_READ_KERNEL(fs, task->fs);
    if (!fs) {
        *flags |= HF_EXEC_CWD_UNREADABLE;
        return 0;
    }
    struct dentry *dentry, *root_dentry;
    struct vfsmount *vfsmnt, *root_mnt;
    HF_READ_KERNEL(dentry, fs->pwd.dentry);
    HF_READ_KERNEL(vfsmnt, fs->pwd.mnt);
    HF_READ_KERNEL(root_dentry, fs->root.dentry);
    HF_READ_KERNEL(root_mnt, fs->root.mnt);
    __u64 mnt_offset = HF_FIELD_OFFSET(((struct mount *)0)->mnt);
    struct mount *mnt = (void *)vfsmnt - mnt_offset;
    __u32 len = 0;
    bool done = false;
    /* A few more steps than components: crossing a mount takes one. */
    for (int i = 0; i < HF_CWD_MAX_COMPONENTS + 8; i++) {
        if (dentry == root_dentry && vfsmnt == root_mnt) {
            done = true;
            break;
        }
        struct dentry *mnt_root, *parent;
        HF_READ_KERNEL(mnt_root, vfsmnt->mnt_root);
        if (dentry == mnt_root) {
            struct mount *mnt_parent;
            HF_READ_KERNEL(mnt_parent, mnt->mnt_parent);
            if (mnt_parent == mnt || !mnt_parent) {
                done = true; /* the namespace's root mount */
                break;
            }
            HF_READ_KERNEL(dentry, mnt->mnt_mountpoint);
            mnt = mnt_parent;
            vfsmnt = (void *)mnt + mnt_offset;
            continue;
        }
        HF_READ_KERNEL(parent, dentry->d_parent);
        if (dentry == parent || !parent) {
            done = true; /* the root of a tree outside the mount graph */
            break;
        }
        __u32 name_len;
        const unsigned char *name;
        HF_READ_KERNEL(name_len, dentry->d_name.len);
        HF_READ_KERNEL(name, dentry->d_name.name);
        if (name_len == 0 || name_len >= HF_CWD_LEN || len + name_len + 1 > HF_CWD_LEN)
            break;
        __u32 off = len & (HF_CWD_LEN - 1);
        __u32 n = name_len & (HF_CWD_LEN - 1);
        if (bpf_probe_read_kernel(out + off, n, name) < 0)
            break;
        out[(off + n) & (2 * HF_CWD_LEN - 1)] = 0;
        len += name_len + 1;
        dentry = parent;
    }
    if (!done)
        *flags |= HF_EXEC_CWD_TRUNCATED;
    return len;
}

/* True when `entry` starts with `name` (which ends in '='). */
static __always_inline bool hf_env_name_matches(const char *entry, const struct hf_env_name *name) {
    __u32 len = name->len;
    if (len < 2 || len > HF_ENV_NAME_LEN + 1)
        return false;
    for (__u32 i = 0; i < HF_ENV_NAME_LEN + 1; i++) {
        if (i >= len)
            return true;
        if (entry[i] != name->bytes[i])
            return false;
    }
    return true;
}

static __always_inline bool hf_env_selected(const char *entry) {
    __u32 zero = 0;
    struct hf_env_names *names = bpf_map_lookup_elem(&hf_env_names, &zero);
    if (!names)
        return false;
    for (__u32 slot = 0; slot < HF_MAX_ENV_NAMES; slot++) {
        if (slot >= hf_env_count)
            return false;
        if (hf_env_name_matches(entry, &names->names[slot]))
            return true;
    }
    return false;
}

/* State of the environment scan across bpf_loop steps. */
struct hf_env_walk {
    __u64 uaddr; /* next byte of the environment area to read */
    __u64 uend;  /* end of the scanned part */
    __u32 base;  /* offset of the env part in record->data */
    __u32 len;   /* bytes of env written */
    __u32 skipping;  /* inside an entry longer than one read */
    __u32 truncated; /* something was cut */
};

/* One bpf_loop step: reads the entry at walk->uaddr (bpf_probe_read_user_str
 * finds its NUL natively, far cheaper than a byte loop) and copies it when
 * its name is allow-listed. An entry longer than one read is skipped piece
 * by piece, so text inside a long value is never taken for a name. */
static long hf_env_step(__u64 index __attribute__((unused)), void *ctx) {
    struct hf_env_walk *walk = ctx;
    if (walk->uaddr >= walk->uend)
        return 1;
    __u32 zero = 0;
    struct hf_env_entry *entry = bpf_map_lookup_elem(&hf_env_scratch, &zero);
    if (!entry)
        return 1;
    long n = bpf_probe_read_user_str(entry->bytes, sizeof(entry->bytes), (const void *)walk->uaddr);
    if (n <= 0) {
        walk->truncated = 1;
        return 1;
    }
    /* n == sizeof: the read stopped before the NUL (it wrote its own NUL
     * over the last byte, which the next read starts from). */
    bool whole = n < (long)sizeof(entry->bytes);
    walk->uaddr += whole ? n : n - 1;
    if (walk->skipping) {
        walk->skipping = !whole;
        return 0;
    }
    walk->skipping = !whole;
    if (!hf_env_selected(entry->bytes))
        return 0;
    if (!whole)
        walk->truncated = 1;
    __u32 base = walk->base;
    __u32 len = walk->len;
    if (base > HF_ARGV_LEN + HF_CWD_LEN || len > HF_ENV_LEN)
        return 1;
    if (len + n > HF_ENV_LEN) {
        walk->truncated = 1;
        return 0;
    }
    struct hf_exec *record = bpf_map_lookup_elem(&hf_exec_scratch, &zero);
    if (!record)
        return 1;
    __u32 size = n & (2 * HF_ENV_ENTRY_LEN - 1);
    if (bpf_probe_read_kernel(record->data + base + len, size, entry->bytes) < 0)
        return 1;
    walk->len = len + size;
    return 0;
}

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

    /* Credentials: the tracepoint fires after begin_new_exec committed the
     * new ones (setuid bits and file capabilities applied). */
    const struct cred *cred;
    __u64 cap_ambient;
    HF_READ_KERNEL(cred, task->cred);
    HF_READ_KERNEL(record->euid, cred->euid.val);
    HF_READ_KERNEL(record->suid, cred->suid.val);
    HF_READ_KERNEL(record->egid, cred->egid.val);
    HF_READ_KERNEL(record->sgid, cred->sgid.val);
    HF_READ_KERNEL(record->cap_effective, cred->cap_effective);
    HF_READ_KERNEL(record->cap_permitted, cred->cap_permitted);
    HF_READ_KERNEL(cap_ambient, cred->cap_ambient);
    /* File capabilities, from their effect: for an exec where neither the
     * real nor the effective uid is root of the cred's user namespace (so
     * not a root exec, not setuid-root), the new permitted set is the
     * file's permitted (and inheritable) caps plus the ambient set; anything
     * beyond ambient came from the file. Root execs (all caps anyway), a
     * file whose caps the bounding set removed entirely, and namespaces
     * with more than 5 uid-map extents are not flagged. */
    bool ns_known = true;
    if ((record->cap_permitted & ~cap_ambient) != 0 && !hf_is_ns_root(cred, record->uid, &ns_known) &&
        !hf_is_ns_root(cred, record->euid, &ns_known) && ns_known)
        flags |= HF_EXEC_FILE_CAPS;

    struct mm_struct *mm;
    unsigned long arg_start, arg_end, env_start, env_end;
    HF_READ_KERNEL(mm, task->mm);
    HF_READ_KERNEL(arg_start, mm->arg_start);
    HF_READ_KERNEL(arg_end, mm->arg_end);
    HF_READ_KERNEL(env_start, mm->env_start);
    HF_READ_KERNEL(env_end, mm->env_end);
    flags |= hf_exec_file(record, mm);

    /* Audit login uid and session (CONFIG_AUDIT); (u32)-1 = unset. */
    __u32 loginuid = 0xFFFFFFFFU, sessionid = 0xFFFFFFFFU;
    if (HF_FIELD_EXISTS(task->loginuid)) {
        HF_READ_KERNEL(loginuid, task->loginuid.val);
        HF_READ_KERNEL(sessionid, task->sessionid);
    }
    record->loginuid = loginuid;
    record->sessionid = sessionid;

    struct signal_struct *signal;
    struct tty_struct *tty;
    HF_READ_KERNEL(signal, task->signal);
    HF_READ_KERNEL(tty, signal->tty);
    __builtin_memset(record->tty, 0, sizeof(record->tty));
    if (tty)
        bpf_probe_read_kernel_str(record->tty, sizeof(record->tty), __builtin_preserve_access_index(&tty->name));

    struct files_struct *files;
    struct fdtable *fdt;
    unsigned int max_fds = 0;
    struct file **fds = NULL;
    HF_READ_KERNEL(files, task->files);
    HF_READ_KERNEL(fdt, files->fdt);
    HF_READ_KERNEL(max_fds, fdt->max_fds);
    HF_READ_KERNEL(fds, fdt->fd);
    hf_stdio_fill(&record->stdio[0], fds, max_fds, 0);
    hf_stdio_fill(&record->stdio[1], fds, max_fds, 1);
    hf_stdio_fill(&record->stdio[2], fds, max_fds, 2);

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
    if (argv_len > 0 && bpf_probe_read_user(record->data, argv_len, (const void *)arg_start) < 0) {
        argv_len = 0;
        flags |= HF_EXEC_ARGV_UNREADABLE;
    }
    record->argv_len = argv_len;
    record->argv_full_len = full_len > 0xFFFFFFFFULL ? 0xFFFFFFFFU : (__u32)full_len;

    /* The tail goes on after argv: cwd, then env. */
    __u32 cwd_len = hf_exec_cwd(task, record->data + argv_len, &flags);
    asm volatile("" : "+r"(cwd_len));
    if (cwd_len > HF_CWD_LEN)
        cwd_len = 0;

    __u32 env_len = 0;
    if (hf_env_count > 0 && env_end > env_start) {
        struct hf_env_walk walk = {};
        walk.uaddr = env_start;
        walk.uend = env_end - env_start > HF_ENV_SCAN_LEN ? env_start + HF_ENV_SCAN_LEN : env_end;
        walk.base = argv_len + cwd_len;
        bpf_loop(HF_ENV_MAX_ENTRIES, hf_env_step, &walk, 0);
        if (walk.truncated || walk.uaddr < env_end)
            flags |= HF_EXEC_ENV_TRUNCATED;
        env_len = walk.len;
        asm volatile("" : "+r"(env_len));
        if (env_len > HF_ENV_LEN)
            env_len = 0;
    }
    record->cwd_len = cwd_len;
    record->env_len = env_len;
    record->flags = flags;

    __u64 size = HF_EXEC_FIXED_SIZE + (__u64)argv_len + cwd_len + env_len;
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

/* File opens moved to files.bpf.h, next to the selection they share with
 * file changes (included at the end). */

/* The cheap connect hook (cgroup/connect4, connect6). */
#include "policy.bpf.h" /* network enforcement: decided inside the connect hook below */
#include "connect_cgroup.bpf.h"

/* Security programs (issue #13): file opens and changes with their
 * selection, privilege and isolation changes, inbound and unconnected
 * network. */
#include "files.bpf.h"
#include "privilege.bpf.h"
#include "network.bpf.h"
