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

/* Reads one kernel field through a CO-RE-relocated address; zero on failure
 * (the destination is zeroed first so a failed read never leaks stack). */
#define HF_READ_KERNEL(dst, src)                                                        \
    ({                                                                                  \
        __builtin_memset(&(dst), 0, sizeof(dst));                                       \
        bpf_probe_read_kernel(&(dst), sizeof(dst), __builtin_preserve_access_index(&(src))); \
    })

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
};

struct signal_struct {
    atomic_t live;
    /* CPU time of the group's threads already released (reaped). */
    unsigned long long sum_sched_runtime;
};

struct sched_entity {
    u64 sum_exec_runtime;
};

struct file {
    void *private_data;
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
};

#pragma clang attribute pop

#endif /* HOSTFLOW_CORE_H */
