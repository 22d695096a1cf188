//! Stage 2: the checks that need more than one field — what keeps a bad
//! policy from ever reaching the kernel. Duplicate ids and rule-key
//! collisions (events name rules by key), denies that could lock the host
//! out (everything, loopback, the agent's own sinks) unless forced, and
//! rules that contradict each other at the same priority.
//!
//! Everything here is linear in the number of rules, or bounded per CIDR:
//! the pairwise conflict check only runs on CIDRs holding few enough rules
//! to fit the kernel's list (larger groups are already a capacity problem).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::cidr::Cidr;
use crate::parse::{Policy, Rule};
use crate::problem::Problem;
use crate::{rule_key, Action, Protocol, MAX_RULES_PER_PREFIX};

/// A destination the agent itself needs (a Kafka broker, the OTLP
/// endpoint): a deny covering it needs `force = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    pub addr: IpAddr,
    /// `None`: every port of `addr`.
    pub port: Option<u16>,
    /// What it is, for the message (e.g. "kafka sink `events` broker").
    pub what: String,
}

/// What validation needs to know about the host it runs for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationContext {
    pub protected: Vec<Protected>,
}

/// Runs every check, appending to `problems`.
pub fn check(policy: &Policy, context: &ValidationContext, problems: &mut Vec<Problem>) {
    unique_ids_and_keys(policy, problems);
    for rule in &policy.rules {
        if rule.action == Action::Deny && !rule.force {
            lockout(policy, rule, context, problems);
        }
    }
    conflicts(policy, problems);
}

fn problem(policy: &Policy, rule: &Rule, line: u32, message: String, hint: &str) -> Problem {
    Problem::invalid(policy.file(rule.origin), line as usize, Some(&rule.id), message).hint(hint)
}

fn unique_ids_and_keys(policy: &Policy, problems: &mut Vec<Problem>) {
    let mut ids: HashMap<&str, &Rule> = HashMap::with_capacity(policy.rules.len());
    let mut keys: HashMap<u32, &Rule> = HashMap::with_capacity(policy.rules.len());
    for rule in &policy.rules {
        if let Some(first) = ids.get(rule.id.as_str()) {
            problems.push(problem(
                policy,
                rule,
                rule.origin.line,
                format!("duplicate rule id; first defined at {}", policy.at(first.origin)),
                "give every rule its own id (ids are unique across all files of a policy)",
            ));
            continue;
        }
        ids.insert(&rule.id, rule);
        let key = rule_key(&rule.id);
        match keys.get(&key) {
            Some(first) => problems.push(problem(
                policy,
                rule,
                rule.origin.line,
                format!(
                    "rule key {key:#010x} collides with rule `{}` at {} (events name rules by this hash of the id)",
                    first.id,
                    policy.at(first.origin)
                ),
                "rename one of the two rules",
            )),
            None => {
                keys.insert(key, rule);
            }
        }
    }
}

/// Denies that could cut the host off, or the agent from its own sinks.
fn lockout(policy: &Policy, rule: &Rule, context: &ValidationContext, problems: &mut Vec<Problem>) {
    const FORCE: &str = "narrow the CIDR, or add `force = true` to the rule if this is really meant";
    for &(cidr, line) in &rule.cidrs {
        if cidr.prefix_len() == 0 {
            problems.push(problem(
                policy,
                rule,
                line,
                format!("denies every {} destination ({cidr})", if cidr.is_v6() { "IPv6" } else { "IPv4" }),
                FORCE,
            ));
            continue;
        }
        for loopback in Cidr::loopback() {
            if cidr.overlaps(loopback) {
                problems.push(problem(policy, rule, line, format!("{cidr} overlaps loopback ({loopback})"), FORCE));
            }
        }
        for protected in &context.protected {
            if !cidr.contains(Cidr::host(protected.addr)) {
                continue;
            }
            let port_hit = match protected.port {
                None => true,
                Some(port) => rule.ports.iter().any(|range| range.lo <= port && port <= range.hi),
            };
            if port_hit {
                let destination = match protected.port {
                    Some(port) if protected.addr.is_ipv6() => format!("[{}]:{port}", protected.addr),
                    Some(port) => format!("{}:{port}", protected.addr),
                    None => protected.addr.to_string(),
                };
                problems.push(problem(
                    policy,
                    rule,
                    line,
                    format!("{cidr} covers {destination}, the agent's {}", protected.what),
                    FORCE,
                ));
            }
        }
    }
}

/// Same CIDR, overlapping ports and protocol, same process matcher, same
/// priority, different actions: which one wins would depend on a
/// tie-break the operator did not write.
fn conflicts(policy: &Policy, problems: &mut Vec<Problem>) {
    let mut by_cidr: HashMap<Cidr, Vec<(usize, u32)>> = HashMap::new();
    for (index, rule) in policy.rules.iter().enumerate() {
        for &(cidr, line) in &rule.cidrs {
            by_cidr.entry(cidr).or_default().push((index, line));
        }
    }
    let mut found: Vec<(usize, usize, Cidr, u32)> = Vec::new();
    for (cidr, members) in &by_cidr {
        if members.len() < 2 || members.len() > MAX_RULES_PER_PREFIX {
            continue;
        }
        for (position, &(a, _)) in members.iter().enumerate() {
            for &(b, line_b) in &members[position + 1..] {
                let (rule_a, rule_b) = (&policy.rules[a], &policy.rules[b]);
                if a != b && rules_conflict(rule_a, rule_b) {
                    found.push((a, b, *cidr, line_b));
                }
            }
        }
    }
    found.sort();
    for (a, b, cidr, line) in found {
        let (first, second) = (&policy.rules[a], &policy.rules[b]);
        problems.push(problem(
            policy,
            second,
            line,
            format!(
                "conflicts with rule `{}` at {}: both match {cidr} on overlapping ports at priority {}, one says {} and the other {}",
                first.id,
                policy.at(first.origin),
                second.priority,
                first.action.as_str(),
                second.action.as_str()
            ),
            "give the rule that should win a higher `priority`, or make their ports or protocols disjoint",
        ));
    }
}

fn rules_conflict(a: &Rule, b: &Rule) -> bool {
    a.action != b.action
        && a.priority == b.priority
        && a.exe == b.exe
        && a.cgroup == b.cgroup
        && (a.protocol == b.protocol || a.protocol == Protocol::Any || b.protocol == Protocol::Any)
        && a.ports.iter().any(|pa| b.ports.iter().any(|pb| pa.overlaps(*pb)))
}
