//! The canonical bytes of a policy: what is signed, hashed into its digest
//! and kept in history. A fixed serialization of the parsed policy (rules
//! sorted by id, CIDRs normalized and sorted, port ranges merged, every
//! default written out), so formatting, comments, key order and the split
//! into files change nothing, while any change of meaning changes the
//! bytes.
//!
//! The canonical text is itself a valid policy file (it parses back to the
//! same policy), which is what lets history store it and rollback compile
//! it again. Strings are escaped here rather than by the toml crate's
//! writer, so a toml upgrade can never change a digest.

use std::fmt::Write as _;

use crate::parse::{Policy, PortRange, Rule};
use crate::{Action, Mode, Protocol};

/// First line of every canonical text: names the format, so a signature
/// over it cannot be taken for a signature over anything else.
pub const HEADER: &str = "# hostflow network policy, canonical form v1\n";

/// The canonical text of `policy`.
pub fn canonical(policy: &Policy) -> String {
    let mut out = String::with_capacity(64 + policy.rules.len() * 200);
    out.push_str(HEADER);
    out.push_str("[policy]\n");
    let mode = match policy.mode {
        Mode::DryRun => "dry_run",
        Mode::Enforce => "enforce",
    };
    let _ = writeln!(out, "mode = \"{mode}\"");
    out.push_str("description = ");
    quote(&mut out, &policy.description);
    out.push('\n');
    let mut order: Vec<&Rule> = policy.rules.iter().collect();
    order.sort_by(|a, b| a.id.cmp(&b.id));
    for rule in order {
        write_rule(&mut out, rule);
    }
    out
}

fn write_rule(out: &mut String, rule: &Rule) {
    out.push_str("\n[[rule]]\nid = ");
    quote(out, &rule.id);
    out.push_str("\ndescription = ");
    quote(out, &rule.description);
    let _ = write!(out, "\naction = \"{}\"\ncidrs = [", rule.action.as_str());
    let mut cidrs: Vec<_> = rule.cidrs.iter().map(|(cidr, _)| *cidr).collect();
    cidrs.sort();
    cidrs.dedup();
    for (index, cidr) in cidrs.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "\"{cidr}\"");
    }
    out.push_str("]\nports = [");
    for (index, PortRange { lo, hi }) in rule.ports.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        if lo == hi {
            let _ = write!(out, "{lo}");
        } else {
            let _ = write!(out, "\"{lo}-{hi}\"");
        }
    }
    let protocol = match rule.protocol {
        Protocol::Any => "any",
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    let _ = write!(out, "]\nprotocol = \"{protocol}\"\npriority = {}\n", rule.priority);
    // TOML has no null: an absent matcher is an absent key.
    if let Some(exe) = &rule.exe {
        out.push_str("exe = ");
        quote(out, exe);
        out.push('\n');
    }
    if let Some(cgroup) = &rule.cgroup {
        out.push_str("cgroup = ");
        quote(out, cgroup);
        out.push('\n');
    }
    let _ = writeln!(out, "force = {}", rule.force);
}

/// A TOML basic string: `"` and `\` escaped, control characters as
/// `\uXXXX`, everything else as is.
fn quote(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            ch if ch.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(ch));
            }
            ch => out.push(ch),
        }
    }
    out.push('"');
}

/// The same policy without its deny rules: what `clear --emergency`
/// switches to. Allows and audits stay, so observation goes on.
pub fn without_denies(policy: &Policy) -> Policy {
    Policy {
        mode: policy.mode,
        description: policy.description.clone(),
        rules: policy.rules.iter().filter(|rule| rule.action != Action::Deny).cloned().collect(),
        files: policy.files.clone(),
    }
}
