// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/* records.h — the byte layout of every record the eBPF programs put in the
 * ring buffer, and of the maps userspace fills or reads. Rust mirrors this
 * file in sources/src/ebpf/records.rs (offsets and sizes are asserted on
 * both sides); change both together and bump HF_RECORD_VERSION.
 *
 * Rules: little-endian (x86-64, arm64), every field naturally aligned with
 * explicit padding, fixed sizes. The one variable part is the exec record's
 * tail (argv, cwd, allow-listed env): only the bytes actually read are sent,
 * so a typical exec costs ~560 bytes of ring space instead of 8.7 KiB.
 */
#ifndef HOSTFLOW_RECORDS_H
#define HOSTFLOW_RECORDS_H

#define HF_RECORD_VERSION 2

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
#define HF_PROG_COUNT 14 /* the last id + 1 (the security programs' ids are at the end) */

/* Bounds. */
#define HF_COMM_LEN 16
#define HF_FILENAME_LEN 256
#define HF_ARGV_LEN 4096 /* bytes of argv (NUL-separated) kept per exec */
#define HF_PATH_LEN 256
#define HF_TTY_LEN 32           /* controlling tty name (the kernel's `pts0`, `tty1`) */
#define HF_CWD_LEN 256          /* bytes of cwd components kept per exec */
#define HF_CWD_MAX_COMPONENTS 32
#define HF_ENV_ENTRY_LEN 256    /* one `NAME=value` entry, NUL included */
#define HF_ENV_LEN 1024         /* all captured entries of one exec */
#define HF_ENV_SCAN_LEN 8192    /* bytes of the environment area scanned */
#define HF_ENV_MAX_ENTRIES 256  /* environment entries looked at */
#define HF_ENV_NAME_LEN 32      /* longest allow-listed variable name */
#define HF_MAX_ENV_NAMES 16
/* The exec record's variable tail: argv, then cwd, then env; sized as a
 * power of two above their sum so that masked offsets stay inside it. */
#define HF_EXEC_DATA_LEN 8192

/* hf_exec.flags */
#define HF_EXEC_ARGV_TRUNCATED (1 << 0)     /* argv was longer than HF_ARGV_LEN */
#define HF_EXEC_ARGV_UNREADABLE (1 << 1)    /* the argument pages could not be read */
#define HF_EXEC_FILENAME_TRUNCATED (1 << 2) /* filename filled HF_FILENAME_LEN */
#define HF_EXEC_FILE_CAPS (1 << 3)          /* non-root, not setuid-root, yet permitted caps beyond ambient */
#define HF_EXEC_MEMFD (1 << 4)              /* no links and a dentry name starting with "memfd:" */
#define HF_EXEC_OVERLAY_UPPER (1 << 5)      /* overlayfs file whose ovl_inode has an upper dentry */
#define HF_EXEC_CWD_TRUNCATED (1 << 6)      /* cwd's top components were cut (bound or depth) */
#define HF_EXEC_CWD_UNREADABLE (1 << 7)     /* no fs_struct: cwd_len is 0 but the cwd is unknown */
#define HF_EXEC_ENV_TRUNCATED (1 << 8)      /* an entry was cut, or the scan stopped early */
#define HF_EXEC_NO_FILE (1 << 9)            /* mm->exe_file unreadable: the file fields are 0 */

/* hf_stdio.kind: what a standard fd is, from its inode's type. */
#define HF_FD_NONE 0
#define HF_FD_FILE 1
#define HF_FD_PIPE 2
#define HF_FD_TTY 3    /* a character device with a tty major (4, 5, 136-143) */
#define HF_FD_SOCKET 4 /* family and protocol say which */
#define HF_FD_OTHER 5  /* any other character device, directory, anon inode ... */

/* hf_connect.flags */
#define HF_CONNECT_NO_RESULT (1 << 0) /* seen before the attempt (cgroup hook): `ret` is meaningless */

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

/* One of a new process's fds 0, 1, 2. */
struct hf_stdio {
    __u8 kind; /* HF_FD_* */
    __u8 pad;
    __u16 family;   /* socket: sk family (AF_UNIX 1, AF_INET 2, AF_INET6 10) */
    __u16 protocol; /* socket: sk_protocol (IPPROTO_TCP 6, IPPROTO_UDP 17) */
    __u16 port;     /* inet socket: peer port, host order (0: not connected) */
    __u8 addr[16];  /* inet socket: peer address, IPv4 in the first 4 bytes */
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
    /* The new credentials (task->cred after the exec committed them). */
    __u32 euid;
    __u32 suid;
    __u32 egid;
    __u32 sgid;
    __u64 cap_effective;
    __u64 cap_permitted;
    /* The executable (mm->exe_file's inode; for a script, its interpreter). */
    __u64 file_ino;
    __u64 file_size;
    __u64 file_mtime_ns;
    __u32 file_dev; /* s_dev: major << 20 | minor */
    __u32 file_mode;
    __u32 file_nlink;
    __u32 loginuid;  /* (u32)-1 when unset or without audit */
    __u32 sessionid; /* (u32)-1 when unset or without audit */
    __u16 cwd_len;   /* bytes of cwd after argv: components leaf first, each NUL-terminated */
    __u16 env_len;   /* bytes of env after cwd: `NAME=value` entries, each NUL-terminated */
    struct hf_stdio stdio[3];
    char tty[HF_TTY_LEN]; /* controlling tty's kernel name, NUL-terminated; empty: none */
    /* argv_len bytes of argv, cwd_len of cwd, env_len of env: only those
     * are sent. */
    char data[HF_EXEC_DATA_LEN];
};
#define HF_EXEC_FIXED_SIZE 520 /* offsetof(struct hf_exec, data) */

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
    __u16 flags;     /* HF_CONNECT_* */
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
    __u64 filtered;  /* calls the program saw and chose not to report (selection, repeats, the agent's own) */
};

/* One allow-listed environment variable, `=` included. */
struct hf_env_name {
    __u32 len; /* bytes of `NAME=`, 2..=HF_ENV_NAME_LEN + 1; 0 = unused slot */
    __u32 pad;
    char bytes[40];
};

/* hf_env_names value (its one entry): the first hf_env_count are used. */
struct hf_env_names {
    struct hf_env_name names[HF_MAX_ENV_NAMES];
};


_Static_assert(sizeof(struct hf_header) == 16, "hf_header");
_Static_assert(sizeof(struct hf_proc) == 16, "hf_proc");
_Static_assert(sizeof(struct hf_stdio) == 24, "hf_stdio");
_Static_assert(__builtin_offsetof(struct hf_exec, euid) == 336, "hf_exec v1 part");
_Static_assert(__builtin_offsetof(struct hf_exec, stdio) == 416, "hf_exec stdio");
_Static_assert(__builtin_offsetof(struct hf_exec, data) == HF_EXEC_FIXED_SIZE, "hf_exec fixed part");
_Static_assert(sizeof(struct hf_exec) == HF_EXEC_FIXED_SIZE + HF_EXEC_DATA_LEN, "hf_exec");
_Static_assert(HF_ARGV_LEN + HF_CWD_LEN + HF_ENV_LEN + 2 * HF_ENV_ENTRY_LEN <= HF_EXEC_DATA_LEN, "hf_exec tail");
_Static_assert(sizeof(struct hf_env_name) == 48, "hf_env_name");
_Static_assert(sizeof(struct hf_env_names) == 48 * HF_MAX_ENV_NAMES, "hf_env_names");
_Static_assert(sizeof(struct hf_exit) == 64, "hf_exit");
_Static_assert(sizeof(struct hf_fork) == 48, "hf_fork");
_Static_assert(sizeof(struct hf_connect) == 64, "hf_connect");
_Static_assert(sizeof(struct hf_open) == 304, "hf_open");
_Static_assert(sizeof(struct hf_counter) == 24, "hf_counter");


/* ---- security programs (issue #13): files, privilege, network ---------- */

/* Record kinds. */
#define HF_KIND_FILE_CHANGE 6
#define HF_KIND_CRED_CHANGE 7
#define HF_KIND_NAMESPACE 8
#define HF_KIND_PTRACE 9
#define HF_KIND_MODULE 10
#define HF_KIND_BPF_LOAD 11
#define HF_KIND_LISTEN 12
#define HF_KIND_ACCEPT 13
#define HF_KIND_UDP_SEND 14

/* Program ids (hf_counters indexes); HF_PROG_COUNT above is the last + 1. */
#define HF_PROG_FILE_CHANGE 5
#define HF_PROG_CREDENTIALS 6
#define HF_PROG_NAMESPACE 7
#define HF_PROG_PTRACE 8
#define HF_PROG_MODULE_LOAD 9
#define HF_PROG_BPF_LOAD 10
#define HF_PROG_LISTEN 11
#define HF_PROG_ACCEPT 12
#define HF_PROG_UDP_SEND 13

/* File selection (opens and file changes): an LPM trie of prefixes and
 * exact paths, a hash of basenames. */
#define HF_MAX_SELECT_PATHS 256     /* prefixes + exact paths */
#define HF_MAX_SELECT_BASENAMES 256
#define HF_BASENAME_LEN 64
#define HF_SELECT_PREFIX 1 /* hf_select_paths value: a prefix (prefixlen = its bytes) */
#define HF_SELECT_EXACT 2  /* an exact path (prefixlen = its bytes and the NUL after them) */
#define HF_MODULE_PARAMS_LEN 128

/* hf_file_change.op */
#define HF_FILE_CHMOD 0
#define HF_FILE_UNLINK 1
#define HF_FILE_RENAME 2
#define HF_FILE_LINK 3
#define HF_FILE_SYMLINK 4

/* hf_cred_change.syscall */
#define HF_CRED_SETUID 0
#define HF_CRED_SETREUID 1
#define HF_CRED_SETRESUID 2
#define HF_CRED_SETFSUID 3
#define HF_CRED_SETGID 4
#define HF_CRED_SETREGID 5
#define HF_CRED_SETRESGID 6
#define HF_CRED_SETFSGID 7
#define HF_CRED_CAPSET 8

/* hf_namespace.syscall, hf_module.syscall */
#define HF_NS_SETNS 0
#define HF_NS_UNSHARE 1
#define HF_MODULE_INIT 0
#define HF_MODULE_FINIT 1

/* hf_select_paths key: LPM trie key, prefixlen in bits. */
struct hf_path_key {
    __u32 prefixlen;
    char path[HF_PATH_LEN];
};

/* hf_select_basenames key: the bytes after the last '/', zero-padded. */
struct hf_basename_key {
    char name[HF_BASENAME_LEN];
};

/* chmod/unlink/rename/link/symlink of a selected path. The tail holds
 * path_len bytes of `path` then target_len bytes of `target` (no NULs);
 * only those are sent. */
struct hf_file_change {
    struct hf_header header;
    struct hf_proc proc;
    __u32 op;   /* HF_FILE_* */
    __u32 mode; /* chmod's new mode, 0 otherwise */
    __s32 ret;  /* the syscall's return */
    __u16 path_len;
    __u16 target_len;
    char data[2 * HF_PATH_LEN];
};
#define HF_FILE_CHANGE_FIXED_SIZE 48 /* offsetof(struct hf_file_change, data) */

/* Ids and capabilities of a task (task->cred). */
struct hf_creds {
    __u32 uid;
    __u32 euid;
    __u32 suid;
    __u32 gid;
    __u32 egid;
    __u32 sgid;
    __u64 cap_effective;
    __u64 cap_permitted;
};

struct hf_cred_change {
    struct hf_header header;
    struct hf_proc proc;
    __u32 syscall; /* HF_CRED_* */
    __s32 ret;
    struct hf_creds old; /* at syscall entry */
    struct hf_creds new; /* at syscall exit */
};

struct hf_namespace {
    struct hf_header header;
    struct hf_proc proc;
    __u32 syscall; /* HF_NS_* */
    __s32 ret;
    __u64 flags; /* unshare: its CLONE_NEW* flags; setns: nstype */
};

struct hf_ptrace {
    struct hf_header header;
    struct hf_proc proc;
    __u64 request;          /* PTRACE_ATTACH (16) or PTRACE_SEIZE (0x4206) */
    struct hf_proc target;  /* tgid: the pid asked for until resolved; start_boottime 0: unresolved */
    __s32 ret;
    __u32 pad;
};

/* init_module / finit_module. Tail: path_len bytes of the file's path
 * (finit_module), then params_len bytes of the parameters. */
struct hf_module {
    struct hf_header header;
    struct hf_proc proc;
    __u32 syscall; /* HF_MODULE_* */
    __s32 ret;
    __u16 path_len;
    __u16 params_len;
    __u32 flags; /* finit_module's flags */
    char data[HF_PATH_LEN + HF_MODULE_PARAMS_LEN];
};
#define HF_MODULE_FIXED_SIZE 48 /* offsetof(struct hf_module, data) */

struct hf_bpf_load {
    struct hf_header header;
    struct hf_proc proc;
    __u32 prog_type;
    __u32 insn_cnt;
    __s32 ret; /* the new program's fd or a negative errno */
    __u32 pad;
    char name[16]; /* bpf_attr.prog_name, NUL-padded */
};

struct hf_listen {
    struct hf_header header;
    struct hf_proc proc;
    __u16 family; /* AF_INET or AF_INET6 */
    __u16 port;   /* local port, host order (after listen's autobind) */
    __s32 backlog;
    __s32 ret;
    __u32 pad;
    __u8 addr[16]; /* local address; IPv4 in the first 4 bytes */
};

struct hf_accept {
    struct hf_header header;
    struct hf_proc proc;
    __u16 family;
    __u16 local_port; /* host order */
    __u16 peer_port;  /* host order */
    __u16 pad;
    __u8 local_addr[16];
    __u8 peer_addr[16];
};

struct hf_udp_send {
    struct hf_header header;
    struct hf_proc proc;
    __u16 family;
    __u16 port;   /* destination, host order */
    __u32 bytes;  /* length asked to send (sendto's len, sendmsg's iovec total) */
    __u8 addr[16];
};

_Static_assert(sizeof(struct hf_path_key) == 260, "hf_path_key");
_Static_assert(sizeof(struct hf_basename_key) == 64, "hf_basename_key");
_Static_assert(__builtin_offsetof(struct hf_file_change, data) == HF_FILE_CHANGE_FIXED_SIZE, "hf_file_change fixed");
_Static_assert(sizeof(struct hf_file_change) == HF_FILE_CHANGE_FIXED_SIZE + 2 * HF_PATH_LEN, "hf_file_change");
_Static_assert(sizeof(struct hf_creds) == 40, "hf_creds");
_Static_assert(sizeof(struct hf_cred_change) == 120, "hf_cred_change");
_Static_assert(sizeof(struct hf_namespace) == 48, "hf_namespace");
_Static_assert(sizeof(struct hf_ptrace) == 64, "hf_ptrace");
_Static_assert(__builtin_offsetof(struct hf_module, data) == HF_MODULE_FIXED_SIZE, "hf_module fixed");
_Static_assert(sizeof(struct hf_module) == HF_MODULE_FIXED_SIZE + HF_PATH_LEN + HF_MODULE_PARAMS_LEN, "hf_module");
_Static_assert(sizeof(struct hf_bpf_load) == 64, "hf_bpf_load");
_Static_assert(sizeof(struct hf_listen) == 64, "hf_listen");
_Static_assert(sizeof(struct hf_accept) == 72, "hf_accept");
_Static_assert(sizeof(struct hf_udp_send) == 56, "hf_udp_send");

/* ---- network enforcement (issue #17) ---------------------------------- */

/* The connect program's verdict on a connect a policy rule matched: every
 * deny and audit (a dry-run deny too: action 2 with HF_POLICY_DRY_RUN, the
 * connect allowed). The policy maps' layouts are in policy.bpf.h. */
#define HF_KIND_NET_POLICY 15
#define HF_POLICY_DRY_RUN 1 /* hf_net_policy.flags: a deny that was only reported */
struct hf_net_policy {
    struct hf_header header;
    struct hf_proc proc;
    __u16 family;    /* AF_INET / AF_INET6 */
    __u16 port;      /* destination port, host order */
    __s16 sock_type; /* SOCK_STREAM 1, SOCK_DGRAM 2 */
    __u8 action;     /* 1 allow, 2 deny, 3 audit (policy::Action) */
    __u8 flags;      /* HF_POLICY_* */
    __u32 rule_key;  /* policy::rule_key(id): FNV-1a 32 of the rule id */
    __u32 generation;/* the policy generation that decided */
    __u64 cgroup_id; /* bpf_get_current_cgroup_id() */
    __u8 addr[16];   /* destination, IPv4 in the first 4 bytes, network order */
};
_Static_assert(sizeof(struct hf_net_policy) == 72, "hf_net_policy");

#endif /* HOSTFLOW_RECORDS_H */
