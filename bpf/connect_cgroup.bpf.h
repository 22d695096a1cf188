// SPDX-License-Identifier: GPL-2.0-only
/* connect_cgroup.bpf.h — the cheap connect hook: `cgroup/connect4` and
 * `cgroup/connect6` programs attached to the cgroup v2 root, so every
 * process's connect(2) (TCP and UDP, IPv4 and IPv6) passes through them.
 *
 * Why a second hook for the same event: the syscall tracepoint pair costs
 * 0.4–0.6 µs per connect (enter reads the sockaddr and fills a hash, exit
 * looks it up), plus the slow syscall path any sys_enter/sys_exit
 * tracepoint turns on; a TCP connect storm ran 1.13× slower (BENCHMARKS.md,
 * "eBPF storms"). The cgroup hook runs once, inside connect, with the
 * address already copied and checked by the kernel: no user-memory read,
 * no map. Its price: it runs *before* the connection is attempted, so the
 * result is unknown (the record says so with HF_CONNECT_NO_RESULT, and the
 * event's `result` is None). Network enforcement (issue #17) decides in
 * this same program (policy.bpf.h), so observing and enforcing cost one
 * hook: every connect is reported, then the policy maps decide.
 *
 * Returns 1 (allow) unless an enforcing policy denies the connect (0: the
 * caller gets EPERM); without enforcement configured the decision is dead
 * code the verifier removes.
 */
#ifndef HOSTFLOW_CONNECT_CGROUP_BPF_H
#define HOSTFLOW_CONNECT_CGROUP_BPF_H

/* uapi/linux/bpf.h `struct bpf_sock_addr`: a context the verifier rewrites
 * field by field, so its layout is the uapi one, not CO-RE-relocated. Only
 * the fields up to `protocol` are read. */
struct bpf_sock_addr {
    __u32 user_family;
    __u32 user_ip4;    /* network order */
    __u32 user_ip6[4]; /* network order */
    __u32 user_port;   /* network order, in the low 16 bits */
    __u32 family;
    __u32 type;
    __u32 protocol;
    __u32 msg_src_ip4;
    __u32 msg_src_ip6[4];
    __u64 sk; /* __bpf_md_ptr(struct bpf_sock *, sk) */
};

static __always_inline int hf_connect_cgroup(struct bpf_sock_addr *ctx, __u16 family) {
    struct hf_connect record = {};
    record.family = family;
    record.port = __builtin_bswap16((__u16)ctx->user_port);
    record.sock_type = (__s16)ctx->type;
    record.flags = HF_CONNECT_NO_RESULT;
    if (family == AF_INET) {
        __u32 ip4 = ctx->user_ip4;
        __builtin_memcpy(record.addr, &ip4, sizeof(ip4));
    } else {
        __u32 ip6[4];
        ip6[0] = ctx->user_ip6[0];
        ip6[1] = ctx->user_ip6[1];
        ip6[2] = ctx->user_ip6[2];
        ip6[3] = ctx->user_ip6[3];
        __builtin_memcpy(record.addr, ip6, sizeof(ip6));
    }
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    hf_current_proc(&record.proc, task);
    hf_header_init(&record.header, HF_KIND_CONNECT, sizeof(record));
    hf_submit(&record, sizeof(record), HF_PROG_CONNECT);
    return hf_policy_decide(ctx->protocol, &record, family);
}

SEC("cgroup/connect4")
int hf_connect4(struct bpf_sock_addr *ctx) {
    return hf_connect_cgroup(ctx, AF_INET);
}

SEC("cgroup/connect6")
int hf_connect6(struct bpf_sock_addr *ctx) {
    return hf_connect_cgroup(ctx, AF_INET6);
}

#endif /* HOSTFLOW_CONNECT_CGROUP_BPF_H */
