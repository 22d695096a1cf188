//! Stage 3: a valid [`Policy`] → [`CompiledPolicy`], the entries the
//! kernel's LPM tries hold. The trie returns only the longest prefix that
//! contains a destination, so each prefix's list carries every rule whose
//! CIDR covers it (its own and those of shorter covering prefixes), sorted
//! in evaluation order; the kernel takes the first match.
//!
//! Inheritance copies a broad rule into every narrower prefix inside it.
//! That is kept bounded by construction: prefixes are walked once in sorted
//! order with a stack of the covering ones (at most 33 or 129 deep), and a
//! list longer than [`MAX_RULES_PER_PREFIX`] is a problem naming the
//! prefix and its rules, never a bigger allocation.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use crate::cidr::Cidr;
use crate::parse::{Policy, Rule};
use crate::problem::Problem;
use crate::{rule_key, Action, CompiledPolicy, KernelRule, PrefixEntry, RuleInfo, MAX_PREFIXES, MAX_RULES_PER_PREFIX};

/// Capacity problems beyond this many are summarized in one line: a broad
/// rule over many full prefixes would otherwise print thousands.
const MAX_CAPACITY_PROBLEMS: usize = 20;

/// Hex SHA-256 of canonical bytes.
pub fn digest(canonical: &str) -> String {
    crate::signature::hex(&Sha256::digest(canonical.as_bytes()))
}

/// Compiles `policy`, whose canonical text is `canonical`. Fails only on
/// capacity (every other problem was found before).
pub fn compile(policy: &Policy, canonical: &str, problems: &mut Vec<Problem>) -> Option<CompiledPolicy> {
    let mut rules: Vec<&Rule> = policy.rules.iter().collect();
    rules.sort_by(|a, b| a.id.cmp(&b.id));
    let exes = distinct(rules.iter().filter_map(|rule| rule.exe.as_deref()));
    let cgroups = distinct(rules.iter().filter_map(|rule| rule.cgroup.as_deref()));
    let mut ok = true;
    for (what, list) in [("executables", &exes), ("cgroups", &cgroups)] {
        if list.len() > usize::from(u16::MAX) + 1 {
            ok = false;
            let file = policy.files.first().map_or(std::path::Path::new("<policy>"), |f| f.as_path());
            problems.push(Problem::invalid(
                file,
                0,
                None,
                format!("{} distinct {what} named; at most 65536 fit", list.len()),
            ));
        }
    }
    let index_of = |list: &BTreeMap<&str, u16>, name: Option<&str>| name.and_then(|name| list.get(name).copied());

    // Every kernel rule of a rule, in port order (the last sort key).
    let kernel_rules: Vec<Vec<KernelRule>> = rules
        .iter()
        .map(|rule| {
            let key = rule_key(&rule.id);
            let exe = index_of(&exes, rule.exe.as_deref());
            let cgroup = index_of(&cgroups, rule.cgroup.as_deref());
            rule.ports
                .iter()
                .map(|ports| KernelRule {
                    rule_key: key,
                    action: rule.action,
                    priority: rule.priority,
                    port_lo: ports.lo,
                    port_hi: ports.hi,
                    protocol: rule.protocol,
                    exe,
                    cgroup,
                })
                .collect()
        })
        .collect();

    // (prefix, rule index in id order), sorted: covering prefixes first.
    let mut claims: Vec<(Cidr, u32)> = Vec::with_capacity(rules.len());
    for (index, rule) in rules.iter().enumerate() {
        for &(cidr, _) in &rule.cidrs {
            claims.push((cidr, index as u32));
        }
    }
    claims.sort_unstable();
    claims.dedup();

    let mut walker = Walker { policy, rules: &rules, kernel_rules: &kernel_rules, problems, over_capacity: 0 };
    let v4_claims = claims.partition_point(|(cidr, _)| !cidr.is_v6());
    let v4 = walker.family(&claims[..v4_claims], |cidr| cidr.v4_addr());
    let v6 = walker.family(&claims[v4_claims..], |cidr| cidr.v6_addr());
    if walker.over_capacity > MAX_CAPACITY_PROBLEMS {
        let file = policy.files.first().map_or(std::path::Path::new("<policy>"), |f| f.as_path());
        walker.problems.push(Problem::invalid(
            file,
            0,
            None,
            format!(
                "{} more prefixes exceed {MAX_RULES_PER_PREFIX} rules",
                walker.over_capacity - MAX_CAPACITY_PROBLEMS
            ),
        ));
    }
    let (v4, v6) = (v4?, v6?);
    if !ok || walker.over_capacity > 0 {
        return None;
    }
    Some(CompiledPolicy {
        mode: policy.mode,
        digest: digest(canonical),
        rules: rules
            .iter()
            .map(|rule| RuleInfo {
                id: rule.id.clone(),
                key: rule_key(&rule.id),
                description: rule.description.clone(),
                action: rule.action,
            })
            .collect(),
        v4,
        v6,
        exes: exes.keys().map(|exe| (*exe).to_owned()).collect(),
        cgroups: cgroups.keys().map(|cgroup| (*cgroup).to_owned()).collect(),
    })
}

fn distinct<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, u16> {
    let mut map: BTreeMap<&str, u16> = names.map(|name| (name, 0)).collect();
    for (index, slot) in map.values_mut().enumerate() {
        *slot = u16::try_from(index).unwrap_or(u16::MAX);
    }
    map
}

struct Walker<'a> {
    policy: &'a Policy,
    rules: &'a [&'a Rule],
    kernel_rules: &'a [Vec<KernelRule>],
    problems: &'a mut Vec<Problem>,
    over_capacity: usize,
}

impl Walker<'_> {
    /// One family's entries from its sorted claims. `None` when the family
    /// has more prefixes than the map holds.
    fn family<A>(&mut self, claims: &[(Cidr, u32)], addr: impl Fn(Cidr) -> A) -> Option<Vec<PrefixEntry<A>>> {
        let mut entries = Vec::new();
        // The covering prefixes of the current one, outermost first, each
        // with its own rules (indices into `self.rules`).
        let mut stack: Vec<(Cidr, Vec<u32>)> = Vec::new();
        let mut start = 0;
        let mut n_prefixes = 0usize;
        while start < claims.len() {
            let cidr = claims[start].0;
            let end = start + claims[start..].partition_point(|(c, _)| *c == cidr);
            let own: Vec<u32> = claims[start..end].iter().map(|(_, rule)| *rule).collect();
            start = end;
            n_prefixes += 1;
            while stack.last().is_some_and(|(outer, _)| !outer.contains(cidr)) {
                stack.pop();
            }
            stack.push((cidr, own));
            if n_prefixes <= MAX_PREFIXES {
                if let Some(entry) = self.entry(&stack, &addr) {
                    entries.push(entry);
                }
            }
        }
        if n_prefixes > MAX_PREFIXES {
            let family = if claims.first().is_some_and(|(c, _)| c.is_v6()) { "IPv6" } else { "IPv4" };
            let file = self.policy.files.first().map_or(std::path::Path::new("<policy>"), |f| f.as_path());
            self.problems.push(
                Problem::invalid(
                    file,
                    0,
                    None,
                    format!("{n_prefixes} distinct {family} prefixes; the kernel map holds {MAX_PREFIXES}"),
                )
                .hint("merge adjacent CIDRs into shorter prefixes"),
            );
            return None;
        }
        Some(entries)
    }

    /// The entry of the innermost prefix on `stack`.
    fn entry<A>(&mut self, stack: &[(Cidr, Vec<u32>)], addr: &impl Fn(Cidr) -> A) -> Option<PrefixEntry<A>> {
        let (cidr, _) = *stack.last()?;
        // (rule, length of its longest CIDR covering this prefix), innermost
        // first so a rule listed at two levels keeps its longer one.
        let mut members: Vec<(u32, u8)> = Vec::new();
        let mut n_kernel = 0usize;
        let mut truncated = false;
        'levels: for (covering, own) in stack.iter().rev() {
            for &rule in own {
                if n_kernel > MAX_RULES_PER_PREFIX {
                    // Enough to name the problem; the rest is not needed.
                    truncated = true;
                    break 'levels;
                }
                if !members.iter().any(|(seen, _)| *seen == rule) {
                    members.push((rule, covering.prefix_len()));
                    n_kernel += self.kernel_rules.get(rule as usize).map_or(0, Vec::len);
                }
            }
        }
        if n_kernel > MAX_RULES_PER_PREFIX {
            self.over_capacity += 1;
            if self.over_capacity <= MAX_CAPACITY_PROBLEMS {
                self.capacity_problem(cidr, &members, n_kernel, truncated);
            }
            return None;
        }
        let rank = |action: Action| match action {
            Action::Deny => 0u8,
            Action::Audit => 1,
            Action::Allow => 2,
        };
        members.sort_by(|(a, len_a), (b, len_b)| {
            let (rule_a, rule_b) = (self.rules[*a as usize], self.rules[*b as usize]);
            rule_b
                .priority
                .cmp(&rule_a.priority)
                .then(len_b.cmp(len_a))
                .then(rank(rule_a.action).cmp(&rank(rule_b.action)))
                .then(a.cmp(b))
        });
        let rules = members
            .iter()
            .flat_map(|(rule, _)| self.kernel_rules.get(*rule as usize).into_iter().flatten().copied())
            .collect();
        Some(PrefixEntry { addr: addr(cidr), prefix_len: cidr.prefix_len(), rules })
    }

    fn capacity_problem(&mut self, cidr: Cidr, members: &[(u32, u8)], n_kernel: usize, truncated: bool) {
        let named: Vec<String> = members
            .iter()
            .map(|(rule, len)| {
                let rule = self.rules[*rule as usize];
                let ranges = rule.ports.len();
                let ports = if ranges > 1 { format!(", {ranges} port ranges") } else { String::new() };
                if *len == cidr.prefix_len() {
                    format!("`{}`{ports}", rule.id)
                } else {
                    format!("`{}` (via /{len}{ports})", rule.id)
                }
            })
            .collect();
        // Located at the first rule written for this very prefix.
        let Some(&(own, _)) = members.first() else { return };
        let rule = self.rules[own as usize];
        let line = rule.cidrs.iter().find(|(c, _)| *c == cidr).map_or(rule.origin.line, |(_, line)| *line);
        let more = if truncated { " at least" } else { "" };
        self.problems.push(
            Problem::invalid(
                self.policy.file(rule.origin),
                line as usize,
                Some(&rule.id),
                format!(
                    "prefix {cidr} would hold{more} {n_kernel} kernel rules (limit {MAX_RULES_PER_PREFIX}, counting one per port range, inherited from covering prefixes included): {}",
                    named.join(", ")
                ),
            )
            .hint("merge rules or port ranges, or move rules to narrower or disjoint prefixes"),
        );
    }
}
