// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/* hostflow_core.h — everything the eBPF programs need from the outside
 * world, declared here so the build needs nothing but clang: fixed-width
 * types, section/licence macros, the BPF helpers we call (by helper id), the
 * map-definition macros, the tracepoint context layouts, and the few kernel
 * types we read, marked for CO-RE relocation.
 *
 * CO-RE: every struct below is compiled with preserve_access_index, so clang
 * records "field X of struct Y" rather than a byte offset; the loader (aya)
 * rewrites each access against the running kernel's BTF
 * (/sys/kernel/btf/vmlinux). Only the fields we touch are declared; their
 * order and the padding here do not matter, their names and types do.
 * Fields nested in an anonymous struct in the kernel (mm_struct's arg_start)
 * are found by name through it.
 *
 * No #include of system headers, on purpose: CI machines only get clang.
 */
#ifndef HOSTFLOW_CORE_H
#define HOSTFLOW_CORE_H

/* ---- fixed-width types ------------------------------------------------ */
typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __s32 pid_t;
typedef __u64 u64;
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

/* ---- sections, inlining, licence -------------------------------------- */
#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))
#define HF_LICENSE(text) char _license[] SEC("license") = text

/* ---- BTF-defined maps (the `.maps` section aya reads) ----------------- */
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

/* Map types and flags used below (uapi/linux/bpf.h values). */
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_RINGBUF 27
#define BPF_MAP_TYPE_LPM_TRIE 11 /* security programs: file selection */
#define BPF_F_NO_PREALLOC (1U << 0) /* required by LPM tries */
#define BPF_ANY 0
#define BPF_RB_NO_WAKEUP (1ULL << 0)
#define BPF_RB_FORCE_WAKEUP (1ULL << 1)
#define BPF_RB_AVAIL_DATA 0

/* ---- helpers, by id (uapi/linux/bpf.h __BPF_FUNC_MAPPER order) -------- */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static __u64 (*bpf_get_current_uid_gid)(void) = (void *)15;
static long (*bpf_get_current_comm)(void *buf, __u32 size_of_buf) = (void *)16;
static __u64 (*bpf_get_current_task)(void) = (void *)35;
static __u64 (*bpf_get_current_cgroup_id)(void) = (void *)80;
static long (*bpf_probe_read_user)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)112;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)113;
static long (*bpf_probe_read_user_str)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)114;
static long (*bpf_probe_read_kernel_str)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)115;
static __u64 (*bpf_ktime_get_boot_ns)(void) = (void *)125;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size, __u64 flags) = (void *)130;
static __u64 (*bpf_ringbuf_query)(void *ringbuf, __u64 flags) = (void *)134;
/* 5.17+: calls `callback(index, ctx)` up to nr_loops times (it returns 1 to
 * stop); the verifier checks the callback once, not once per iteration. */
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx, __u64 flags) = (void *)181;

/* Reads one kernel field through a CO-RE-relocated address; zero on failure
 * (the destination is zeroed first so a failed read never leaks stack). */
#define HF_READ_KERNEL(dst, src)                                                        \
    ({                                                                                  \
        __builtin_memset(&(dst), 0, sizeof(dst));                                       \
        bpf_probe_read_kernel(&(dst), sizeof(dst), __builtin_preserve_access_index(&(src))); \
    })

/* CO-RE field facts (clang's __builtin_preserve_field_info kinds): whether
 * the running kernel has a field (config-dependent ones such as
 * task_struct.loginuid), and its byte offset (container_of on a relocated
 * type). */
#define HF_FIELD_EXISTS(field) __builtin_preserve_field_info(field, 2)
#define HF_FIELD_OFFSET(field) __builtin_preserve_field_info(field, 0)

/* ---- tracepoint contexts (tracefs events/.../format, stable layouts) -- */

/* Every classic tracepoint record starts with these 8 bytes. */
struct hf_tp_common {
    __u16 common_type;
    __u8 common_flags;
    __u8 common_preempt_count;
    __s32 common_pid;
};

/* sched/sched_process_exec */
struct hf_tp_sched_process_exec {
    struct hf_tp_common common;
    __u32 filename_loc; /* __data_loc char[]: offset in the low 16 bits, length in the high 16 */
    pid_t pid;
    pid_t old_pid;
};

/* syscalls/sys_enter_*: six arguments, each widened to 8 bytes, at offset 16. */
struct hf_tp_sys_enter {
    struct hf_tp_common common;
    __s32 syscall_nr;
    __u32 pad;
    __u64 args[6];
};

/* syscalls/sys_exit_* */
struct hf_tp_sys_exit {
    struct hf_tp_common common;
    __s32 syscall_nr;
    __u32 pad;
    __s64 ret;
};

/* openat2(2)'s argument (uapi/linux/openat2.h): read from user memory, so
 * it is a fixed ABI rather than a relocated kernel type. */
struct hf_open_how {
    __u64 flags;
    __u64 mode;
    __u64 resolve;
};

/* Raw tracepoints get the tracepoint's C arguments as u64s. */
struct bpf_raw_tracepoint_args {
    __u64 args[0];
};

/* ---- kernel types read through CO-RE ---------------------------------- */
#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

typedef struct {
    int counter;
} atomic_t;

struct mm_struct {
    unsigned long arg_start;
    unsigned long arg_end;
    unsigned long env_start;
    unsigned long env_end;
    struct file *exe_file;
};

struct signal_struct {
    atomic_t live;
    struct tty_struct *tty;
    /* CPU time of the group's threads already released (reaped). */
    unsigned long long sum_sched_runtime;
};

struct sched_entity {
    u64 sum_exec_runtime;
};

/* ---- exec attributes (hf_exec) ---- */

typedef struct {
    __u32 val;
} kuid_t;

typedef struct {
    __u32 val;
} kgid_t;

/* 6.3+: a struct around one u64; before, two u32s. Either way 8 bytes,
 * low capability bits first, so it is read whole. */
typedef struct {
    __u64 val;
} kernel_cap_t;

/* A user namespace's uid map: up to 5 extents inline (more use
 * forward/reverse arrays, which the exec program does not follow). The
 * extents hold kernel uids in lower_first. */
struct uid_gid_extent {
    __u32 first;
    __u32 lower_first;
    __u32 count;
};

struct uid_gid_map {
    struct uid_gid_extent extent[5];
    __u32 nr_extents;
};

struct user_namespace {
    struct uid_gid_map uid_map;
    int level; /* 0: the initial namespace */
};

struct cred {
    struct user_namespace *user_ns;
    kuid_t uid;
    kuid_t suid;
    kgid_t sgid;
    kuid_t euid;
    kgid_t egid;
    kernel_cap_t cap_permitted;
    kernel_cap_t cap_effective;
    kernel_cap_t cap_ambient;
};

struct super_block {
    __u32 s_dev;
    unsigned long s_magic;
};

struct inode {
    unsigned short i_mode;
    struct super_block *i_sb;
    unsigned long i_ino;
    unsigned int i_nlink;
    __u32 i_rdev;
    long long i_size;
    /* 6.11+ (before: a struct timespec64 i_mtime); read only when present. */
    long long i_mtime_sec;
    __u32 i_mtime_nsec;
};

struct qstr {
    __u32 len;
    const unsigned char *name;
};

struct dentry {
    struct dentry *d_parent;
    struct qstr d_name;
    struct inode *d_inode;
};

struct vfsmount {
    struct dentry *mnt_root;
};

/* fs/mount.h: the vfsmount is embedded; the walk climbs mounts through it. */
struct mount {
    struct mount *mnt_parent;
    struct dentry *mnt_mountpoint;
    struct vfsmount mnt;
};

struct path {
    struct vfsmount *mnt;
    struct dentry *dentry;
};

struct fs_struct {
    struct path root;
    struct path pwd;
};

/* fs/overlayfs/ovl_entry.h (overlayfs built in, so in vmlinux BTF): a
 * non-NULL __upperdentry means the file exists on the upper layer. */
struct ovl_inode {
    struct inode vfs_inode;
    struct dentry *__upperdentry;
};

struct tty_struct {
    char name[64];
};

struct in6_addr {
    __u8 s6_addr[16];
};

struct sock_common {
    __u32 skc_daddr; /* network order */
    __u16 skc_dport; /* network order */
    unsigned short skc_family;
    struct in6_addr skc_v6_daddr;
};

struct sock {
    struct sock_common __sk_common;
    __u16 sk_protocol;
    __u16 sk_type;
};

struct file {
    void *private_data;
    struct inode *f_inode;
    struct path f_path;
};

struct fdtable {
    unsigned int max_fds;
    struct file **fd;
};

struct files_struct {
    struct fdtable *fdt;
};

struct socket {
    short type;
    struct sock *sk;
};

struct task_struct {
    int exit_code;
    pid_t pid;
    pid_t tgid;
    struct task_struct *real_parent;
    struct task_struct *group_leader;
    struct sched_entity se;
    u64 start_boottime;
    struct mm_struct *mm;
    struct files_struct *files;
    struct signal_struct *signal;
    const struct cred *cred; /* the subjective credentials */
    struct fs_struct *fs;
    kuid_t loginuid;        /* CONFIG_AUDIT */
    unsigned int sessionid; /* CONFIG_AUDIT */
};


/* ---- security programs (issue #13: files, privilege, network) ----
 * Own names with a CO-RE flavor suffix (`___hf`: the relocation matches
 * `struct cred___hf` against the kernel's `struct cred`), so these
 * declarations never collide with the ones above. */

typedef struct {
    __u32 val;
} hf_kid_t; /* kuid_t, kgid_t */

typedef struct {
    __u64 val;
} hf_kcap_t; /* kernel_cap_t (6.3+; read through .val: aya did not relocate one of two whole-struct reads) */

struct cred___hf {
    hf_kid_t uid;
    hf_kid_t gid;
    hf_kid_t suid;
    hf_kid_t sgid;
    hf_kid_t euid;
    hf_kid_t egid;
    hf_kcap_t cap_permitted;
    hf_kcap_t cap_effective;
};

struct list_head___hf {
    struct list_head___hf *next;
};

struct qstr___hf {
    const unsigned char *name;
};

struct dentry___hf {
    struct dentry___hf *d_parent;
    struct qstr___hf d_name;
};

struct vfsmount___hf {
    struct dentry___hf *mnt_root;
};

/* fs/mount.h: wraps the vfsmount a file points at. */
struct mount___hf {
    struct mount___hf *mnt_parent;
    struct dentry___hf *mnt_mountpoint;
    struct vfsmount___hf mnt;
};

struct path___hf {
    struct vfsmount___hf *mnt;
    struct dentry___hf *dentry;
};

struct inode___hf {
    unsigned long i_ino;
};

struct file___hf {
    struct path___hf f_path;
    struct inode___hf *f_inode;
    void *private_data;
};

struct fdtable___hf {
    unsigned int max_fds;
    struct file___hf **fd;
};

struct files_struct___hf {
    struct fdtable___hf *fdt;
};

struct in6_addr___hf {
    __u8 bytes[16];
};

/* Fields inside anonymous unions/structs of sock_common are found by name. */
struct sock_common___hf {
    unsigned short skc_family;
    __u16 skc_num;   /* local port, host order */
    __u16 skc_dport; /* peer port, network order */
    __u32 skc_rcv_saddr;
    __u32 skc_daddr;
    struct in6_addr___hf skc_v6_rcv_saddr;
    struct in6_addr___hf skc_v6_daddr;
};

struct sock___hf {
    struct sock_common___hf __sk_common;
    __u16 sk_protocol;
};

struct socket___hf {
    short type;
    struct file___hf *file;
    struct sock___hf *sk;
};

struct task_struct___hf {
    pid_t pid;
    pid_t tgid;
    struct cred___hf *cred;
    struct list_head___hf ptraced;
    struct list_head___hf ptrace_entry;
    struct files_struct___hf *files;
};

#pragma clang attribute pop

#endif /* HOSTFLOW_CORE_H */
