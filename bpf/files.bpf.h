// SPDX-License-Identifier: GPL-2.0-only
/* files.bpf.h — file opens and file changes (chmod, unlink, rename, link,
 * symlink), chosen in the kernel by one selection: path prefixes and exact
 * paths in an LPM trie, basenames in a hash. Included at the end of
 * hostflow.bpf.c (it uses hf_submit, hf_current_proc and the scratch maps
 * there).
 *
 * Why an LPM trie: one lookup answers "is any configured prefix a prefix of
 * this path" whatever the number of entries, where the old array of 8
 * prefixes cost a compare loop per entry. An exact path is the same trie
 * entry with its terminating NUL included in the prefix length, so it can
 * only match a path that ends there. A basename ("authorized_keys" under
 * any home) is a second lookup with the bytes after the last '/'.
 *
 * A path that matches nothing never leaves the kernel; it is counted in the
 * program's `filtered` slot. Paths are as passed to the syscall: a relative
 * path is matched as written (its basename still matches).
 *
 * File changes pair enter and exit (the result is the syscall's real
 * return): enter reads and selects the path(s) and parks the record in an
 * LRU hash keyed by pid_tgid; exit completes and submits it.
 */
#ifndef HOSTFLOW_FILES_BPF_H
#define HOSTFLOW_FILES_BPF_H

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, HF_MAX_SELECT_PATHS);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct hf_path_key);
    __type(value, __u32); /* HF_SELECT_PREFIX or HF_SELECT_EXACT */
} hf_select_paths SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, HF_MAX_SELECT_BASENAMES);
    __type(key, struct hf_basename_key);
    __type(value, __u32);
} hf_select_basenames SEC(".maps");

/* The path being selected, laid out as an LPM key (too big for the stack).
 * The slack lets the basename be copied in whole words without a helper
 * call: a word read near the end of the path stays inside the value. */
struct hf_path_scratch {
    struct hf_path_key key;
    char slack[HF_BASENAME_LEN + 4];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct hf_path_scratch);
} hf_path_scratch SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct hf_file_change);
} hf_file_change_scratch SEC(".maps");

/* File changes between enter and exit. LRU: an exit never seen (attached
 * mid-call) ages out. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 1024);
    __type(key, __u64); /* pid_tgid */
    __type(value, struct hf_file_change);
} hf_file_pending SEC(".maps");

/* Counts one call that `prog` saw and did not report. */
static __always_inline void hf_count_filtered(__u32 prog) {
    struct hf_counter *counter = bpf_map_lookup_elem(&hf_counters, &prog);
    if (counter)
        counter->filtered += 1;
}

/* Whether the path in `key` (`len` bytes read, NUL included) is selected.
 * Sets key->prefixlen. */
static __always_inline bool hf_path_selected(struct hf_path_key *key, long len) {
    if (len <= 1 || len > HF_PATH_LEN)
        return false;
    /* A path that filled the buffer may have been cut: its NUL is not its
     * own, so leave it out and exact entries (which include it) cannot
     * match; prefixes still can. */
    __u32 bits = len >= HF_PATH_LEN ? (HF_PATH_LEN - 1) * 8 : (__u32)len * 8;
    key->prefixlen = bits;
    if (bpf_map_lookup_elem(&hf_select_paths, key))
        return true;

    /* Basename: scan back from the end for the last '/', at most
     * HF_BASENAME_LEN + 1 bytes (a longer basename cannot be selected). */
    __u32 end = (__u32)len - 1; /* strlen */
    __u32 start = 0;
    bool found = false;
    for (__u32 i = 1; i <= HF_BASENAME_LEN + 1; i++) {
        if (i > end) {
            found = true; /* no '/': the whole path is the basename */
            break;
        }
        __u32 index = (end - i) & (HF_PATH_LEN - 1);
        if (key->path[index] == '/') {
            start = index + 1;
            found = true;
            break;
        }
    }
    if (!found)
        return false;
    __u32 name_len = end - start;
    asm volatile("" : "+r"(name_len));
    if (name_len == 0 || name_len > HF_BASENAME_LEN)
        return false;
    /* Copied a word at a time (unaligned loads are fine on x86-64 and
     * arm64), bytes past the name zeroed: cheaper than a helper call. */
    __u64 name[HF_BASENAME_LEN / 8];
    const char *from = &key->path[start & (HF_PATH_LEN - 1)];
    for (__u32 w = 0; w < HF_BASENAME_LEN / 8; w++) {
        __u32 at = w * 8;
        __u64 word = 0;
        if (at < name_len) {
            word = *(const __u64 *)(from + at);
            __u32 left = name_len - at;
            if (left < 8)
                word &= (1ULL << (left * 8)) - 1;
        }
        name[w] = word;
    }
    return bpf_map_lookup_elem(&hf_select_basenames, name) != NULL;
}

/* ---- file open -------------------------------------------------------- */

static __always_inline int hf_open_common(const char *upath, __u32 open_flags, __s32 dfd, __u32 syscall) {
    __u32 zero = 0;
    struct hf_path_scratch *scratch = bpf_map_lookup_elem(&hf_path_scratch, &zero);
    if (!scratch)
        return 0;
    struct hf_path_key *key = &scratch->key;
    long len = bpf_probe_read_user_str(key->path, sizeof(key->path), upath);
    if (!hf_path_selected(key, len)) {
        hf_count_filtered(HF_PROG_FILE_OPEN);
        return 0;
    }
    struct hf_open *record = bpf_map_lookup_elem(&hf_open_scratch, &zero);
    if (!record)
        return 0;
    __builtin_memcpy(record->path, key->path, sizeof(record->path));
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

/* ---- file changes ----------------------------------------------------- */

/* Reads `upath` into the tail at `offset`, returns its length (no NUL) and
 * whether it is selected; 0 bytes when unreadable. */
static __always_inline __u32 hf_change_path(struct hf_path_key *key, struct hf_file_change *record, __u32 offset,
                                            const char *upath, bool *selected) {
    long len = bpf_probe_read_user_str(key->path, sizeof(key->path), upath);
    if (len <= 1)
        return 0;
    if (hf_path_selected(key, len))
        *selected = true;
    __u32 bytes = (__u32)(len - 1) & (HF_PATH_LEN - 1);
    bpf_probe_read_kernel(&record->data[offset & (HF_PATH_LEN - 1)], bytes, key->path);
    return bytes;
}

/* Enter half: `upath` is the file acted on (chmod, unlink, rename's source,
 * the new link's name), `utarget` rename's destination or what a link
 * points at (NULL for chmod and unlink). Either one selects. */
static __always_inline int hf_file_change_enter(__u32 op, const char *upath, const char *utarget, __u32 mode) {
    __u32 zero = 0;
    struct hf_path_scratch *scratch = bpf_map_lookup_elem(&hf_path_scratch, &zero);
    struct hf_file_change *record = bpf_map_lookup_elem(&hf_file_change_scratch, &zero);
    if (!scratch || !record)
        return 0;
    struct hf_path_key *key = &scratch->key;
    bool selected = false;
    __u32 path_len = hf_change_path(key, record, 0, upath, &selected);
    __u32 target_len = 0;
    if (utarget)
        target_len = hf_change_path(key, record, path_len, utarget, &selected);
    if (!selected) {
        hf_count_filtered(HF_PROG_FILE_CHANGE);
        return 0;
    }
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    hf_current_proc(&record->proc, task);
    record->op = op;
    record->mode = mode;
    record->ret = 0;
    record->path_len = path_len;
    record->target_len = target_len;
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    bpf_map_update_elem(&hf_file_pending, &pid_tgid, record, BPF_ANY);
    return 0;
}

static __always_inline int hf_file_change_exit(struct hf_tp_sys_exit *ctx) {
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    struct hf_file_change *record = bpf_map_lookup_elem(&hf_file_pending, &pid_tgid);
    if (!record)
        return 0;
    record->ret = (__s32)ctx->ret;
    __u32 path_len = record->path_len & (HF_PATH_LEN - 1);
    __u32 target_len = record->target_len & (HF_PATH_LEN - 1);
    __u32 size = HF_FILE_CHANGE_FIXED_SIZE + path_len + target_len;
    hf_header_init(&record->header, HF_KIND_FILE_CHANGE, size);
    hf_submit(record, size, HF_PROG_FILE_CHANGE);
    bpf_map_delete_elem(&hf_file_pending, &pid_tgid);
    return 0;
}

#define HF_FILE_EXIT(fn, syscall)                                  \
    SEC("tracepoint/syscalls/sys_exit_" #syscall)                  \
    int fn(struct hf_tp_sys_exit *ctx) {                           \
        return hf_file_change_exit(ctx);                           \
    }

/* chmod(path, mode) — x86-64 only */
SEC("tracepoint/syscalls/sys_enter_chmod")
int hf_chmod_enter(struct hf_tp_sys_enter *ctx) {
    return hf_file_change_enter(HF_FILE_CHMOD, (const char *)ctx->args[0], NULL, (__u32)ctx->args[1]);
}
HF_FILE_EXIT(hf_chmod_exit, chmod)

/* fchmodat(dfd, path, mode) */
SEC("tracepoint/syscalls/sys_enter_fchmodat")
int hf_fchmodat_enter(struct hf_tp_sys_enter *ctx) {
    return hf_file_change_enter(HF_FILE_CHMOD, (const char *)ctx->args[1], NULL, (__u32)ctx->args[2]);
}
HF_FILE_EXIT(hf_fchmodat_exit, fchmodat)

/* fchmodat2(dfd, path, mode, flags) — 6.6+ */
SEC("tracepoint/syscalls/sys_enter_fchmodat2")
int hf_fchmodat2_enter(struct hf_tp_sys_enter *ctx) {
    return hf_file_change_enter(HF_FILE_CHMOD, (const char *)ctx->args[1], NULL, (__u32)ctx->args[2]);
}
HF_FILE_EXIT(hf_fchmodat2_exit, fchmodat2)

/* unlink(path) — x86-64 only */
SEC("tracepoint/syscalls/sys_enter_unlink")
int hf_unlink_enter(struct hf_tp_sys_enter *ctx) {
    return hf_file_change_enter(HF_FILE_UNLINK, (const char *)ctx->args[0], NULL, 0);
}
HF_FILE_EXIT(hf_unlink_exit, unlink)

/* unlinkat(dfd, path, flags): rmdir too, with AT_REMOVEDIR */
SEC("tracepoint/syscalls/sys_enter_unlinkat")
int hf_unlinkat_enter(struct hf_tp_sys_enter *ctx) {
    return hf_file_change_enter(HF_FILE_UNLINK, (const char *)ctx->args[1], NULL, 0);
}
HF_FILE_EXIT(hf_unlinkat_exit, unlinkat)

/* rename(old, new) — x86-64 only */
SEC("tracepoint/syscalls/sys_enter_rename")
int hf_rename_enter(struct hf_tp_sys_enter *ctx) {
    return hf_file_change_enter(HF_FILE_RENAME, (const char *)ctx->args[0], (const char *)ctx->args[1], 0);
}
HF_FILE_EXIT(hf_rename_exit, rename)

/* renameat(olddfd, old, newdfd, new) */
SEC("tracepoint/syscalls/sys_enter_renameat")
int hf_renameat_enter(struct hf_tp_sys_enter *ctx) {
    return hf_file_change_enter(HF_FILE_RENAME, (const char *)ctx->args[1], (const char *)ctx->args[3], 0);
}
HF_FILE_EXIT(hf_renameat_exit, renameat)

/* renameat2(olddfd, old, newdfd, new, flags) */
SEC("tracepoint/syscalls/sys_enter_renameat2")
int hf_renameat2_enter(struct hf_tp_sys_enter *ctx) {
    return hf_file_change_enter(HF_FILE_RENAME, (const char *)ctx->args[1], (const char *)ctx->args[3], 0);
}
HF_FILE_EXIT(hf_renameat2_exit, renameat2)

/* link(old, new): the event's path is the new name, its target the old. */
SEC("tracepoint/syscalls/sys_enter_link")
int hf_link_enter(struct hf_tp_sys_enter *ctx) {
    return hf_file_change_enter(HF_FILE_LINK, (const char *)ctx->args[1], (const char *)ctx->args[0], 0);
}
HF_FILE_EXIT(hf_link_exit, link)

/* linkat(olddfd, old, newdfd, new, flags) */
SEC("tracepoint/syscalls/sys_enter_linkat")
int hf_linkat_enter(struct hf_tp_sys_enter *ctx) {
    return hf_file_change_enter(HF_FILE_LINK, (const char *)ctx->args[3], (const char *)ctx->args[1], 0);
}
HF_FILE_EXIT(hf_linkat_exit, linkat)

/* symlink(target, linkpath) */
SEC("tracepoint/syscalls/sys_enter_symlink")
int hf_symlink_enter(struct hf_tp_sys_enter *ctx) {
    return hf_file_change_enter(HF_FILE_SYMLINK, (const char *)ctx->args[1], (const char *)ctx->args[0], 0);
}
HF_FILE_EXIT(hf_symlink_exit, symlink)

/* symlinkat(target, newdfd, linkpath) */
SEC("tracepoint/syscalls/sys_enter_symlinkat")
int hf_symlinkat_enter(struct hf_tp_sys_enter *ctx) {
    return hf_file_change_enter(HF_FILE_SYMLINK, (const char *)ctx->args[2], (const char *)ctx->args[0], 0);
}
HF_FILE_EXIT(hf_symlinkat_exit, symlinkat)

#endif /* HOSTFLOW_FILES_BPF_H */
