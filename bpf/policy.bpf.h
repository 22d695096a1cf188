// SPDX-License-Identifier: GPL-2.0-only
/* policy.bpf.h — network enforcement (issue #17): the policy maps and the
 * decision the connect program (connect_cgroup.bpf.h) makes with them, in
 * the same program run that observes the connect (one hook, one cost).
 *
 * Maps (layouts mirrored and asserted by enforce/src/layout.rs):
 * - hf_policy_v4 / hf_policy_v6: ARRAY_OF_MAPS with one slot, holding an
 *   LPM trie (BPF_F_NO_PREALLOC) of CIDR prefix -> hf_policy_entry: the
 *   rules that can apply to a destination whose longest matching prefix is
 *   that one, in evaluation order (the first that matches decides).
 *   Userspace applies a policy by building a *fresh* trie and swapping it
 *   into the slot: one pointer exchange, so a program run sees the old
 *   policy or the new one, never half of one, and no map a program may be
 *   reading is ever modified. Each entry carries its policy's generation
 *   and mode, so a verdict names exactly the policy that made it. An empty
 *   slot (nothing applied yet) costs one inlined array lookup.
 * - hf_policy_counters: per-CPU {allowed, denied, audited, reserve
 *   failures}, added atomically (cgroup programs may be preempted).
 * - Read-only globals set by the loader: hf_enforce (0: enforcement not
 *   configured, and the verifier removes all of this as dead code) and the
 *   enforced cgroup (id and level; level 0, the root, means every process).
 *   The program is attached on the cgroup2 root to observe every connect;
 *   it enforces only for tasks below the configured cgroup.
 *
 * Verdicts: allow -> 1, counted, no record; deny -> 0 (connect(2) fails
 * with EPERM), counted, an hf_net_policy record; audit, or a deny of a
 * dry-run policy -> 1, counted as audited, a record (dry-run: action 2
 * with HF_POLICY_DRY_RUN). No rule matches -> 1, nothing counted.
 */
#ifndef HOSTFLOW_POLICY_BPF_H
#define HOSTFLOW_POLICY_BPF_H

#define BPF_MAP_TYPE_ARRAY_OF_MAPS 12
#define __array(name, val) typeof(val) *name[]

/* 123 in __BPF_FUNC_MAPPER; cgroup sock_addr programs may call it. */
static __u64 (*bpf_get_current_ancestor_cgroup_id)(int ancestor_level) = (void *)123;

#define HF_POLICY_MAX_RULES 8          /* policy::MAX_RULES_PER_PREFIX */
#define HF_POLICY_MAX_PREFIXES 131072  /* policy::MAX_PREFIXES, per family */

/* hf_policy_entry.mode */
#define HF_POLICY_MODE_DRY_RUN 1
#define HF_POLICY_MODE_ENFORCE 2
/* hf_policy_entry.flags */
#define HF_POLICY_NEEDS_EXE 1 /* a rule has an exe matcher: read the task's executable once */
/* hf_policy_rule.action (policy::Action) */
#define HF_ACTION_ALLOW 1
#define HF_ACTION_DENY 2
#define HF_ACTION_AUDIT 3

struct hf_policy_rule {
    __u32 rule_key;     /* policy::rule_key(id) */
    __u16 port_lo;      /* destination port range, host order, inclusive */
    __u16 port_hi;
    __u8 protocol;      /* 0 any, 6 TCP, 17 UDP */
    __u8 action;        /* HF_ACTION_* */
    __u16 cgroup_level; /* level of cgroup_id (root = 0) */
    __u32 exe_dev;      /* the executable's s_dev (major << 20 | minor) */
    __u64 cgroup_id;    /* 0: any; else the task must be in this cgroup or below */
    __u64 exe_ino;      /* 0: any; else mm->exe_file's inode must be (exe_dev, exe_ino) */
};

struct hf_policy_entry {
    __u8 count; /* rules used, 1..=HF_POLICY_MAX_RULES */
    __u8 mode;  /* HF_POLICY_MODE_* of the policy */
    __u8 flags; /* HF_POLICY_NEEDS_EXE */
    __u8 pad;
    __u32 generation; /* the install that wrote this entry */
    struct hf_policy_rule rules[HF_POLICY_MAX_RULES];
};

struct hf_policy_key4 {
    __u32 prefixlen;
    __u8 addr[4]; /* network order */
};

struct hf_policy_key6 {
    __u32 prefixlen;
    __u8 addr[16];
};

struct hf_policy_counters {
    __u64 allowed;
    __u64 denied;
    __u64 audited;
    __u64 reserve_failures;
};

_Static_assert(sizeof(struct hf_policy_rule) == 32, "hf_policy_rule");
_Static_assert(sizeof(struct hf_policy_entry) == 8 + 32 * HF_POLICY_MAX_RULES, "hf_policy_entry");
_Static_assert(sizeof(struct hf_policy_key4) == 8, "hf_policy_key4");
_Static_assert(sizeof(struct hf_policy_key6) == 20, "hf_policy_key6");
_Static_assert(sizeof(struct hf_policy_counters) == 32, "hf_policy_counters");

/* The inner tries' template. Sizes, not `__type`: behind the outer map's
 * pointer clang emits the key and value structs as forward declarations
 * only, whose size a loader cannot read. */
struct hf_policy_trie4 {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, HF_POLICY_MAX_PREFIXES);
    __uint(key_size, sizeof(struct hf_policy_key4));
    __uint(value_size, sizeof(struct hf_policy_entry));
};

struct hf_policy_trie6 {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, HF_POLICY_MAX_PREFIXES);
    __uint(key_size, sizeof(struct hf_policy_key6));
    __uint(value_size, sizeof(struct hf_policy_entry));
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 1);
    __type(key, __u32);
    __array(values, struct hf_policy_trie4);
} hf_policy_v4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 1);
    __type(key, __u32);
    __array(values, struct hf_policy_trie6);
} hf_policy_v6 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct hf_policy_counters);
} hf_policy_counters SEC(".maps");

/* Set by the loader before load; constants to the verifier. */
const volatile __u32 hf_enforce = 0;              /* 1: enforcement configured */
const volatile __u64 hf_enforce_cgroup_id = 0;    /* the enforced cgroup */
const volatile __u32 hf_enforce_cgroup_level = 0; /* its level; 0: the root, every task */

/* The current task's executable (mm->exe_file's inode): what exe matchers
 * compare. Zero when the task has no mm (kernel threads). */
static __always_inline void hf_policy_exe(__u64 *ino, __u32 *dev) {
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct mm_struct *mm;
    struct file *file;
    struct inode *inode;
    struct super_block *sb;
    unsigned long i_ino;
    __u32 s_dev;
    HF_READ_KERNEL(mm, task->mm);
    if (!mm)
        return;
    HF_READ_KERNEL(file, mm->exe_file);
    if (!file)
        return;
    HF_READ_KERNEL(inode, file->f_inode);
    if (!inode)
        return;
    HF_READ_KERNEL(i_ino, inode->i_ino);
    HF_READ_KERNEL(sb, inode->i_sb);
    if (!sb)
        return;
    HF_READ_KERNEL(s_dev, sb->s_dev);
    *ino = i_ino;
    *dev = s_dev;
}

/* A matching rule's verdict: count, report, and say whether the connect
 * goes ahead (1) or fails with EPERM (0). */
static __always_inline int hf_policy_verdict(const struct hf_connect *seen, const struct hf_policy_entry *entry,
                                             const struct hf_policy_rule *rule) {
    __u32 zero = 0;
    struct hf_policy_counters *counters = bpf_map_lookup_elem(&hf_policy_counters, &zero);
    __u8 action = rule->action;
    if (action == HF_ACTION_ALLOW) {
        if (counters)
            __sync_fetch_and_add(&counters->allowed, 1);
        return 1;
    }
    bool enforced = action == HF_ACTION_DENY && entry->mode == HF_POLICY_MODE_ENFORCE;
    struct hf_net_policy record = {};
    record.proc = seen->proc;
    record.family = seen->family;
    record.port = seen->port;
    record.sock_type = seen->sock_type;
    record.action = action;
    record.flags = (action == HF_ACTION_DENY && !enforced) ? HF_POLICY_DRY_RUN : 0;
    record.rule_key = rule->rule_key;
    record.generation = entry->generation;
    record.cgroup_id = bpf_get_current_cgroup_id();
    __builtin_memcpy(record.addr, seen->addr, sizeof(record.addr));
    hf_header_init(&record.header, HF_KIND_NET_POLICY, sizeof(record));
    long err = hf_submit(&record, sizeof(record), HF_PROG_CONNECT);
    if (counters) {
        if (enforced)
            __sync_fetch_and_add(&counters->denied, 1);
        else
            __sync_fetch_and_add(&counters->audited, 1);
        if (err)
            __sync_fetch_and_add(&counters->reserve_failures, 1);
    }
    return enforced ? 0 : 1;
}

/* Walks an entry's rules in order; the first that matches decides. */
static __always_inline int hf_policy_eval(__u32 protocol, const struct hf_connect *seen,
                                          const struct hf_policy_entry *entry) {
    __u16 port = seen->port;
    __u32 count = entry->count;
    __u64 exe_ino = 0;
    __u32 exe_dev = 0;
    if (entry->flags & HF_POLICY_NEEDS_EXE)
        hf_policy_exe(&exe_ino, &exe_dev);
    /* A bounded loop (the verifier walks it; no unrolling needed on 5.3+). */
    for (__u32 i = 0; i < HF_POLICY_MAX_RULES; i++) {
        if (i >= count)
            break;
        const struct hf_policy_rule *rule = &entry->rules[i];
        if (port < rule->port_lo || port > rule->port_hi)
            continue;
        if (rule->protocol && rule->protocol != protocol)
            continue;
        if (rule->exe_ino && (rule->exe_ino != exe_ino || rule->exe_dev != exe_dev))
            continue;
        if (rule->cgroup_id && bpf_get_current_ancestor_cgroup_id(rule->cgroup_level) != rule->cgroup_id)
            continue;
        return hf_policy_verdict(seen, entry, rule);
    }
    return 1;
}

/* The connect program's decision: 1 lets the connect go ahead, 0 refuses
 * it with EPERM. `seen` is the connect as observed (destination, port,
 * socket type, process); `protocol` the socket's (IPPROTO_TCP, _UDP). */
static __always_inline int hf_policy_decide(__u32 protocol, const struct hf_connect *seen, __u16 family) {
    if (!hf_enforce)
        return 1;
    __u32 zero = 0;
    const struct hf_policy_entry *entry;
    /* An IPv4-mapped IPv6 destination (::ffff:a.b.c.d) on an AF_INET6
     * socket reaches IPv4 without connect4 running: the IPv4 rules decide. */
    const __u8 *a = seen->addr;
    bool mapped = family != AF_INET && a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == 0 && a[4] == 0 &&
                  a[5] == 0 && a[6] == 0 && a[7] == 0 && a[8] == 0 && a[9] == 0 && a[10] == 0xff && a[11] == 0xff;
    if (family == AF_INET || mapped) {
        void *trie = bpf_map_lookup_elem(&hf_policy_v4, &zero);
        if (!trie)
            return 1;
        if (hf_enforce_cgroup_level && bpf_get_current_ancestor_cgroup_id(hf_enforce_cgroup_level) != hf_enforce_cgroup_id)
            return 1;
        struct hf_policy_key4 key = {.prefixlen = 32};
        if (mapped)
            __builtin_memcpy(key.addr, seen->addr + 12, sizeof(key.addr));
        else
            __builtin_memcpy(key.addr, seen->addr, sizeof(key.addr));
        entry = bpf_map_lookup_elem(trie, &key);
    } else {
        void *trie = bpf_map_lookup_elem(&hf_policy_v6, &zero);
        if (!trie)
            return 1;
        if (hf_enforce_cgroup_level && bpf_get_current_ancestor_cgroup_id(hf_enforce_cgroup_level) != hf_enforce_cgroup_id)
            return 1;
        struct hf_policy_key6 key = {.prefixlen = 128};
        __builtin_memcpy(key.addr, seen->addr, sizeof(key.addr));
        entry = bpf_map_lookup_elem(trie, &key);
    }
    if (!entry)
        return 1;
    return hf_policy_eval(protocol, seen, entry);
}

#endif /* HOSTFLOW_POLICY_BPF_H */
