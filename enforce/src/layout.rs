//! The kernel's policy map layouts (`bpf/policy.bpf.h`), mirrored as
//! `#[repr(C)]` structs whose sizes and offsets are asserted here and in
//! the C header, and the encoding of a [`CompiledPolicy`] into them.
//!
//! Per family, one LPM trie entry per prefix: key `{prefixlen, addr}`,
//! value [`RawEntry`] = the prefix's rules in evaluation order (at most
//! [`policy::MAX_RULES_PER_PREFIX`]) with the policy's mode and the
//! install's generation, so every verdict names the policy that made it.
//! Executables and cgroups named by process matchers are resolved before
//! encoding ([`Resolved`]): the kernel compares an inode and a cgroup id.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::maps::lpm_trie::Key;
use policy::{Action, CompiledPolicy, KernelRule, Mode, PrefixEntry, Protocol, MAX_RULES_PER_PREFIX};

use crate::EnforceError;

/// `hf_policy_entry.mode`.
pub const MODE_DRY_RUN: u8 = 1;
pub const MODE_ENFORCE: u8 = 2;
/// `hf_policy_entry.flags`: a rule has an exe matcher.
pub const NEEDS_EXE: u8 = 1;
/// `hf_net_policy.flags`: a deny that was only reported (dry run).
pub const FLAG_DRY_RUN: u8 = 1;
/// The record kind of a verdict (`HF_KIND_NET_POLICY`).
pub const KIND_NET_POLICY: u16 = 15;

/// `struct hf_policy_rule`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawRule {
    pub rule_key: u32,
    pub port_lo: u16,
    pub port_hi: u16,
    /// 0 any, 6 TCP, 17 UDP.
    pub protocol: u8,
    /// 1 allow, 2 deny, 3 audit.
    pub action: u8,
    pub cgroup_level: u16,
    /// The executable's `s_dev` as the kernel encodes it (major << 20 | minor).
    pub exe_dev: u32,
    /// 0: any cgroup.
    pub cgroup_id: u64,
    /// 0: any executable.
    pub exe_ino: u64,
}

/// `struct hf_policy_entry`: one prefix's rules.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawEntry {
    pub count: u8,
    pub mode: u8,
    pub flags: u8,
    pub pad: u8,
    pub generation: u32,
    pub rules: [RawRule; MAX_RULES_PER_PREFIX],
}

/// `struct hf_policy_counters` (one per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawCounters {
    pub allowed: u64,
    pub denied: u64,
    pub audited: u64,
    pub reserve_failures: u64,
}

// SAFETY: plain `#[repr(C)]` integers with no padding (the layout test
// checks sizes equal the sum of the fields), valid for any bit pattern.
unsafe impl aya::Pod for RawRule {}
// SAFETY: as above; `pad` makes the one hole explicit.
unsafe impl aya::Pod for RawEntry {}
// SAFETY: four u64s.
unsafe impl aya::Pod for RawCounters {}

/// An IPv4 trie key (`struct hf_policy_key4`).
pub type Key4 = Key<[u8; 4]>;
/// An IPv6 trie key (`struct hf_policy_key6`).
pub type Key6 = Key<[u8; 16]>;

/// What the process matchers of a policy name, resolved on this host:
/// index `i` of `exes` is `CompiledPolicy::exes[i]` as `(inode, kernel dev)`,
/// of `cgroups` is `CompiledPolicy::cgroups[i]` as `(cgroup id, level)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub exes: Vec<(u64, u32)>,
    pub cgroups: Vec<(u64, u16)>,
}

/// A policy as the kernel's entries.
#[derive(Clone, Default)]
pub struct Encoded {
    pub v4: Vec<(Key4, RawEntry)>,
    pub v6: Vec<(Key6, RawEntry)>,
}

/// The kernel's code of an action.
pub fn action_code(action: Action) -> u8 {
    match action {
        Action::Allow => 1,
        Action::Deny => 2,
        Action::Audit => 3,
    }
}

/// The action of a kernel code (verdict records), if known.
pub fn action_of(code: u8) -> Option<Action> {
    match code {
        1 => Some(Action::Allow),
        2 => Some(Action::Deny),
        3 => Some(Action::Audit),
        _ => None,
    }
}

fn protocol_code(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Any => 0,
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    }
}

/// One rule's kernel form.
pub fn encode_rule(rule: &KernelRule, resolved: &Resolved) -> Result<RawRule, EnforceError> {
    let mut raw = RawRule {
        rule_key: rule.rule_key,
        port_lo: rule.port_lo,
        port_hi: rule.port_hi,
        protocol: protocol_code(rule.protocol),
        action: action_code(rule.action),
        ..RawRule::default()
    };
    if let Some(index) = rule.exe {
        let &(ino, dev) = resolved.exes.get(usize::from(index)).ok_or_else(|| EnforceError::Resolve {
            what: "executable",
            path: format!("#{index}"),
            reason: "the policy names no such executable".into(),
        })?;
        raw.exe_ino = ino;
        raw.exe_dev = dev;
    }
    if let Some(index) = rule.cgroup {
        let &(id, level) = resolved.cgroups.get(usize::from(index)).ok_or_else(|| EnforceError::Resolve {
            what: "cgroup",
            path: format!("#{index}"),
            reason: "the policy names no such cgroup".into(),
        })?;
        raw.cgroup_id = id;
        raw.cgroup_level = level;
    }
    Ok(raw)
}

fn encode_entry<A>(
    entry: &PrefixEntry<A>,
    mode: u8,
    generation: u32,
    resolved: &Resolved,
) -> Result<RawEntry, EnforceError> {
    if entry.rules.is_empty() || entry.rules.len() > MAX_RULES_PER_PREFIX {
        return Err(EnforceError::TooMany {
            family: "rules in one",
            prefixes: entry.rules.len(),
            max: MAX_RULES_PER_PREFIX,
        });
    }
    let mut raw = RawEntry { count: entry.rules.len() as u8, mode, generation, ..RawEntry::default() };
    for (slot, rule) in raw.rules.iter_mut().zip(&entry.rules) {
        *slot = encode_rule(rule, resolved)?;
        if slot.exe_ino != 0 {
            raw.flags |= NEEDS_EXE;
        }
    }
    Ok(raw)
}

/// The kernel's entries for `policy`, written as install `generation`.
pub fn encode(policy: &CompiledPolicy, generation: u32, resolved: &Resolved) -> Result<Encoded, EnforceError> {
    let mode = match policy.mode {
        Mode::DryRun => MODE_DRY_RUN,
        Mode::Enforce => MODE_ENFORCE,
    };
    for (family, count) in [("IPv4", policy.v4.len()), ("IPv6", policy.v6.len())] {
        if count > policy::MAX_PREFIXES {
            return Err(EnforceError::TooMany { family, prefixes: count, max: policy::MAX_PREFIXES });
        }
    }
    let v4 = policy
        .v4
        .iter()
        .map(|entry: &PrefixEntry<Ipv4Addr>| {
            Ok((
                Key::new(u32::from(entry.prefix_len.min(32)), entry.addr.octets()),
                encode_entry(entry, mode, generation, resolved)?,
            ))
        })
        .collect::<Result<Vec<_>, EnforceError>>()?;
    let v6 = policy
        .v6
        .iter()
        .map(|entry: &PrefixEntry<Ipv6Addr>| {
            Ok((
                Key::new(u32::from(entry.prefix_len.min(128)), entry.addr.octets()),
                encode_entry(entry, mode, generation, resolved)?,
            ))
        })
        .collect::<Result<Vec<_>, EnforceError>>()?;
    Ok(Encoded { v4, v6 })
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn layouts_match_bpf_policy_h() {
        // bpf/policy.bpf.h asserts the same sizes on the C side.
        assert_eq!(size_of::<RawRule>(), 32);
        assert_eq!(offset_of!(RawRule, port_lo), 4);
        assert_eq!(offset_of!(RawRule, protocol), 8);
        assert_eq!(offset_of!(RawRule, action), 9);
        assert_eq!(offset_of!(RawRule, cgroup_level), 10);
        assert_eq!(offset_of!(RawRule, exe_dev), 12);
        assert_eq!(offset_of!(RawRule, cgroup_id), 16);
        assert_eq!(offset_of!(RawRule, exe_ino), 24);
        assert_eq!(size_of::<RawEntry>(), 8 + 32 * MAX_RULES_PER_PREFIX);
        assert_eq!(offset_of!(RawEntry, generation), 4);
        assert_eq!(offset_of!(RawEntry, rules), 8);
        assert_eq!(size_of::<RawCounters>(), 32);
        assert_eq!(size_of::<Key4>(), 8);
        assert_eq!(size_of::<Key6>(), 20);
    }

    #[test]
    fn the_c_header_agrees() {
        let header = include_str!("../../bpf/policy.bpf.h");
        for needle in [
            "#define HF_POLICY_MAX_RULES 8 ",
            "#define HF_POLICY_MAX_PREFIXES 131072 ",
            "#define HF_POLICY_MODE_DRY_RUN 1",
            "#define HF_POLICY_MODE_ENFORCE 2",
            "#define HF_POLICY_NEEDS_EXE 1",
            "sizeof(struct hf_policy_rule) == 32",
            "sizeof(struct hf_policy_counters) == 32",
        ] {
            assert!(header.contains(needle), "bpf/policy.bpf.h lost `{needle}`");
        }
        assert_eq!(MAX_RULES_PER_PREFIX, 8);
        assert_eq!(policy::MAX_PREFIXES, 131_072);
        let records = include_str!("../../bpf/records.h");
        assert!(records.contains("#define HF_KIND_NET_POLICY 15"));
        assert!(records.contains("#define HF_POLICY_DRY_RUN 1 "));
    }

    fn rule(id: &str, action: Action, ports: (u16, u16)) -> KernelRule {
        KernelRule {
            rule_key: policy::rule_key(id),
            action,
            priority: 0,
            port_lo: ports.0,
            port_hi: ports.1,
            protocol: Protocol::Tcp,
            exe: None,
            cgroup: None,
        }
    }

    #[test]
    fn a_policy_encodes_in_order_with_mode_and_generation() {
        let mut policy = CompiledPolicy::empty();
        policy.mode = Mode::Enforce;
        let mut exe_rule = rule("b", Action::Allow, (0, 65535));
        exe_rule.exe = Some(0);
        policy.v4.push(PrefixEntry {
            addr: Ipv4Addr::new(10, 0, 0, 0),
            prefix_len: 8,
            rules: vec![exe_rule, rule("a", Action::Deny, (443, 443))],
        });
        policy.v6.push(PrefixEntry {
            addr: Ipv6Addr::LOCALHOST,
            prefix_len: 128,
            rules: vec![rule("c", Action::Audit, (1, 2))],
        });
        let resolved = Resolved { exes: vec![(42, (8 << 20) | 1)], cgroups: Vec::new() };
        let encoded = encode(&policy, 7, &resolved).expect("encodes");
        let (key, entry) = encoded.v4[0];
        assert_eq!((key.prefix_len(), key.data()), (8, [10, 0, 0, 0]));
        assert_eq!((entry.count, entry.mode, entry.flags, entry.generation), (2, MODE_ENFORCE, NEEDS_EXE, 7));
        assert_eq!((entry.rules[0].exe_ino, entry.rules[0].exe_dev, entry.rules[0].action), (42, (8 << 20) | 1, 1));
        assert_eq!(
            (entry.rules[1].rule_key, entry.rules[1].port_lo, entry.rules[1].protocol),
            (policy::rule_key("a"), 443, 6)
        );
        assert_eq!(encoded.v6[0].1.rules[0].action, 3);
        assert_eq!(encoded.v6[0].0.prefix_len(), 128);
        // An exe index the resolution lacks is refused, not encoded as "any".
        assert!(encode(&policy, 7, &Resolved::default()).is_err());
    }
}
