// SPDX-License-Identifier: GPL-2.0-only
/* network.bpf.h — inbound TCP (listen, accept) and unconnected UDP sends.
 * Included at the end of hostflow.bpf.c, after privilege.bpf.h
 * (hf_fd_file).
 *
 * - listen: enter parks fd and backlog; exit reads the socket's local
 *   address (after listen's autobind, so an unbound socket shows its real
 *   port) and the result.
 * - accept, accept4: exit only; the returned fd is the new connection,
 *   whose local and peer ends are read from its sock. Failed accepts are
 *   not reported.
 * - sendto, sendmsg, sendmmsg (its first message) with a destination
 *   address on a UDP socket: reported at entry, once per (socket,
 *   destination) — an LRU hash remembers what was already reported; a
 *   repeat is counted as filtered. Sends without an address (connected
 *   sockets) are the connect program's.
 */
#ifndef HOSTFLOW_NETWORK_BPF_H
#define HOSTFLOW_NETWORK_BPF_H

#define HF_SOCK_STREAM 1
#define HF_SOCK_DGRAM 2
#define HF_IPPROTO_TCP 6
#define HF_IPPROTO_UDP 17

struct hf_listen_pending {
    __s64 fd;
    __s32 backlog;
    __u32 pad;
};

HF_PENDING_MAP(hf_listen_pending, struct hf_listen_pending);

/* A destination a UDP socket already sent to. The socket is its sock
 * address plus its inode number, so a new socket reusing a freed sock's
 * memory is not mistaken for the old one. */
struct hf_udp_key {
    __u64 sock;
    __u64 ino;
    __u8 addr[16];
    __u16 port;
    __u16 family;
    __u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct hf_udp_key);
    __type(value, __u8);
} hf_udp_seen SEC(".maps");

/* The inet sock behind `fd` with this protocol, or NULL. */
static __always_inline struct sock___hf *hf_inet_sock(__s64 fd, __u16 protocol, struct file___hf **file_out) {
    struct file___hf *file = hf_fd_file(fd);
    if (!file)
        return NULL;
    void *private_data;
    HF_READ_KERNEL(private_data, file->private_data);
    struct socket___hf *sock = private_data;
    struct file___hf *sock_file;
    HF_READ_KERNEL(sock_file, sock->file);
    if (sock_file != file)
        return NULL; /* not a socket: its private_data is something else */
    struct sock___hf *sk;
    HF_READ_KERNEL(sk, sock->sk);
    if (!sk)
        return NULL;
    unsigned short family;
    __u16 proto;
    HF_READ_KERNEL(family, sk->__sk_common.skc_family);
    HF_READ_KERNEL(proto, sk->sk_protocol);
    if ((family != AF_INET && family != AF_INET6) || proto != protocol)
        return NULL;
    if (file_out)
        *file_out = file;
    return sk;
}

/* The local end of `sk`: address into addr, returns the port (host order). */
static __always_inline __u16 hf_sock_local(struct sock___hf *sk, __u16 family, __u8 *addr) {
    __u16 port;
    HF_READ_KERNEL(port, sk->__sk_common.skc_num);
    if (family == AF_INET)
        bpf_probe_read_kernel(addr, 4, __builtin_preserve_access_index(&sk->__sk_common.skc_rcv_saddr));
    else
        bpf_probe_read_kernel(addr, 16, __builtin_preserve_access_index(&sk->__sk_common.skc_v6_rcv_saddr));
    return port;
}

/* ---- listen ------------------------------------------------------------ */

SEC("tracepoint/syscalls/sys_enter_listen")
int hf_listen_enter(struct hf_tp_sys_enter *ctx) {
    struct hf_listen_pending pending = {.fd = (__s64)ctx->args[0], .backlog = (__s32)ctx->args[1]};
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    bpf_map_update_elem(&hf_listen_pending, &pid_tgid, &pending, BPF_ANY);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_listen")
int hf_listen_exit(struct hf_tp_sys_exit *ctx) {
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    struct hf_listen_pending *pending = bpf_map_lookup_elem(&hf_listen_pending, &pid_tgid);
    if (!pending)
        return 0;
    __s64 fd = pending->fd;
    __s32 backlog = pending->backlog;
    bpf_map_delete_elem(&hf_listen_pending, &pid_tgid);
    struct sock___hf *sk = hf_inet_sock(fd, HF_IPPROTO_TCP, NULL);
    if (!sk) {
        hf_count_filtered(HF_PROG_LISTEN); /* not TCP over IP */
        return 0;
    }
    struct hf_listen record = {};
    HF_READ_KERNEL(record.family, sk->__sk_common.skc_family);
    record.port = hf_sock_local(sk, record.family, record.addr);
    record.backlog = backlog;
    record.ret = (__s32)ctx->ret;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    hf_current_proc(&record.proc, task);
    hf_header_init(&record.header, HF_KIND_LISTEN, sizeof(record));
    hf_submit(&record, sizeof(record), HF_PROG_LISTEN);
    return 0;
}

/* ---- accept ------------------------------------------------------------ */

static __always_inline int hf_accept_exit(struct hf_tp_sys_exit *ctx) {
    if (ctx->ret < 0)
        return 0;
    struct sock___hf *sk = hf_inet_sock(ctx->ret, HF_IPPROTO_TCP, NULL);
    if (!sk) {
        hf_count_filtered(HF_PROG_ACCEPT);
        return 0;
    }
    struct hf_accept record = {};
    HF_READ_KERNEL(record.family, sk->__sk_common.skc_family);
    record.local_port = hf_sock_local(sk, record.family, record.local_addr);
    __u16 dport;
    HF_READ_KERNEL(dport, sk->__sk_common.skc_dport);
    record.peer_port = __builtin_bswap16(dport);
    if (record.family == AF_INET)
        bpf_probe_read_kernel(record.peer_addr, 4, __builtin_preserve_access_index(&sk->__sk_common.skc_daddr));
    else
        bpf_probe_read_kernel(record.peer_addr, 16, __builtin_preserve_access_index(&sk->__sk_common.skc_v6_daddr));
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    hf_current_proc(&record.proc, task);
    hf_header_init(&record.header, HF_KIND_ACCEPT, sizeof(record));
    hf_submit(&record, sizeof(record), HF_PROG_ACCEPT);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int hf_accept_exit_accept(struct hf_tp_sys_exit *ctx) {
    return hf_accept_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int hf_accept4_exit(struct hf_tp_sys_exit *ctx) {
    return hf_accept_exit(ctx);
}

/* ---- unconnected UDP sends -------------------------------------------- */

/* user struct msghdr (x86-64 and arm64 LP64 layout) */
struct hf_user_msghdr {
    __u64 msg_name;
    __u32 msg_namelen;
    __u32 pad;
    __u64 msg_iov;
    __u64 msg_iovlen;
};

struct hf_user_iovec {
    __u64 base;
    __u64 len;
};

#define HF_MAX_IOVECS 8

static __always_inline int hf_udp_send(__s64 fd, const void *uaddr, __u64 bytes) {
    if (!uaddr)
        return 0;
    __u16 family = 0;
    if (bpf_probe_read_user(&family, sizeof(family), uaddr) < 0)
        return 0;
    struct hf_udp_key key = {};
    if (family == AF_INET) {
        struct hf_sockaddr_in sin = {};
        if (bpf_probe_read_user(&sin, sizeof(sin), uaddr) < 0)
            return 0;
        key.port = __builtin_bswap16(sin.port);
        __builtin_memcpy(key.addr, sin.addr, sizeof(sin.addr));
    } else if (family == AF_INET6) {
        struct hf_sockaddr_in6 sin6 = {};
        if (bpf_probe_read_user(&sin6, sizeof(sin6), uaddr) < 0)
            return 0;
        key.port = __builtin_bswap16(sin6.port);
        __builtin_memcpy(key.addr, sin6.addr, sizeof(sin6.addr));
    } else {
        return 0;
    }
    key.family = family;
    struct file___hf *file = NULL;
    struct sock___hf *sk = hf_inet_sock(fd, HF_IPPROTO_UDP, &file);
    if (!sk || !file)
        return 0;
    key.sock = (__u64)sk;
    struct inode___hf *inode;
    HF_READ_KERNEL(inode, file->f_inode);
    HF_READ_KERNEL(key.ino, inode->i_ino);
    if (bpf_map_lookup_elem(&hf_udp_seen, &key)) {
        hf_count_filtered(HF_PROG_UDP_SEND);
        return 0;
    }
    __u8 one = 1;
    bpf_map_update_elem(&hf_udp_seen, &key, &one, BPF_ANY);
    struct hf_udp_send record = {};
    record.family = family;
    record.port = key.port;
    record.bytes = bytes > 0xFFFFFFFFULL ? 0xFFFFFFFFU : (__u32)bytes;
    __builtin_memcpy(record.addr, key.addr, sizeof(record.addr));
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    hf_current_proc(&record.proc, task);
    hf_header_init(&record.header, HF_KIND_UDP_SEND, sizeof(record));
    hf_submit(&record, sizeof(record), HF_PROG_UDP_SEND);
    return 0;
}

/* sendto(fd, buf, len, flags, addr, addrlen) */
SEC("tracepoint/syscalls/sys_enter_sendto")
int hf_sendto(struct hf_tp_sys_enter *ctx) {
    return hf_udp_send((__s64)ctx->args[0], (const void *)ctx->args[4], ctx->args[2]);
}

static __always_inline int hf_udp_sendmsg(__s64 fd, const void *umsg) {
    struct hf_user_msghdr msg = {};
    if (bpf_probe_read_user(&msg, sizeof(msg), umsg) < 0 || !msg.msg_name)
        return 0;
    __u64 bytes = 0;
    for (__u32 i = 0; i < HF_MAX_IOVECS; i++) {
        if (i >= msg.msg_iovlen)
            break;
        struct hf_user_iovec iov = {};
        if (bpf_probe_read_user(&iov, sizeof(iov), (const void *)(msg.msg_iov + i * sizeof(iov))) < 0)
            break;
        bytes += iov.len;
    }
    return hf_udp_send(fd, (const void *)msg.msg_name, bytes);
}

/* sendmsg(fd, msg, flags) */
SEC("tracepoint/syscalls/sys_enter_sendmsg")
int hf_sendmsg(struct hf_tp_sys_enter *ctx) {
    return hf_udp_sendmsg((__s64)ctx->args[0], (const void *)ctx->args[1]);
}

/* sendmmsg(fd, msgvec, vlen, flags): the first message (struct mmsghdr
 * starts with its msghdr). */
SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int hf_sendmmsg(struct hf_tp_sys_enter *ctx) {
    if (ctx->args[2] == 0)
        return 0;
    return hf_udp_sendmsg((__s64)ctx->args[0], (const void *)ctx->args[1]);
}

#endif /* HOSTFLOW_NETWORK_BPF_H */
