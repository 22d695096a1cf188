//! Compilation: prefix entries with inherited rules in evaluation order,
//! one kernel rule per port range, process matcher indexes, and a digest
//! of the canonical bytes that ignores formatting and changes with meaning.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use policy::{compile_str, rule_key, Action, CompiledPolicy, Mode, Protocol, ValidationContext};

fn compile(text: &str) -> CompiledPolicy {
    compile_str(text, Path::new("p.toml"), &ValidationContext::default())
        .unwrap_or_else(|problems| panic!("{problems}"))
}

const POLICY: &str = r#"
[policy]
mode = "enforce"
description = "example"

[[rule]]
id = "deny-10"
action = "deny"
cidrs = ["10.0.0.0/8"]

[[rule]]
id = "allow-web"
description = "the web tier"
action = "allow"
cidrs = ["10.1.0.0/16", "2001:db8::/32"]
ports = [443, "8000-8100", 80]
protocol = "tcp"
priority = 10
exe = "/usr/bin/curl"

[[rule]]
id = "audit-10-1"
action = "audit"
cidrs = ["10.1.0.0/16"]
cgroup = "/system.slice/app.service/"

[[rule]]
id = "allow-10-1"
action = "allow"
cidrs = ["10.1.0.0/16"]
ports = [22]
"#;

#[test]
fn prefixes_inherit_covering_rules_in_evaluation_order() {
    let compiled = compile(POLICY);
    assert_eq!(compiled.mode, Mode::Enforce);
    assert_eq!(compiled.exes, ["/usr/bin/curl"]);
    assert_eq!(compiled.cgroups, ["/system.slice/app.service"]);
    let ids: Vec<&str> = compiled.rules.iter().map(|rule| rule.id.as_str()).collect();
    assert_eq!(ids, ["allow-10-1", "allow-web", "audit-10-1", "deny-10"]);
    assert_eq!(compiled.rule_id(rule_key("deny-10")), Some("deny-10"));

    assert_eq!(compiled.v4.len(), 2);
    let broad = &compiled.v4[0];
    assert_eq!((broad.addr, broad.prefix_len), (Ipv4Addr::new(10, 0, 0, 0), 8));
    assert_eq!(broad.rules.len(), 1);
    assert_eq!(broad.rules[0].rule_key, rule_key("deny-10"));
    assert_eq!((broad.rules[0].port_lo, broad.rules[0].port_hi), (0, 65535));

    let narrow = &compiled.v4[1];
    assert_eq!((narrow.addr, narrow.prefix_len), (Ipv4Addr::new(10, 1, 0, 0), 16));
    let order: Vec<(u32, Action, u16, u16)> =
        narrow.rules.iter().map(|r| (r.rule_key, r.action, r.port_lo, r.port_hi)).collect();
    assert_eq!(
        order,
        [
            // priority 10 first, its three port ranges in port order
            (rule_key("allow-web"), Action::Allow, 80, 80),
            (rule_key("allow-web"), Action::Allow, 443, 443),
            (rule_key("allow-web"), Action::Allow, 8000, 8100),
            // priority 0, the /16's own: audit before allow
            (rule_key("audit-10-1"), Action::Audit, 0, 65535),
            (rule_key("allow-10-1"), Action::Allow, 22, 22),
            // priority 0, inherited from the /8 (shorter prefix last)
            (rule_key("deny-10"), Action::Deny, 0, 65535),
        ]
    );
    assert_eq!(narrow.rules[0].protocol, Protocol::Tcp);
    assert_eq!(narrow.rules[0].exe, Some(0));
    assert_eq!(narrow.rules[3].cgroup, Some(0));
    assert_eq!(narrow.rules[5].exe, None);

    assert_eq!(compiled.v6.len(), 1);
    assert_eq!(compiled.v6[0].addr, "2001:db8::".parse::<Ipv6Addr>().expect("v6"));
    assert_eq!(compiled.v6[0].prefix_len, 32);
    assert_eq!(compiled.v6[0].rules.len(), 3);
}

#[test]
fn digest_ignores_formatting_and_follows_meaning() {
    let base = compile(POLICY).digest;
    assert_eq!(base.len(), 64);
    // Reordered rules and keys, comments, other spacing, an unnormalized
    // cgroup, a split port list and duplicate CIDRs: the same policy.
    let reformatted = r#"
# comment
[[rule]]
action = "allow"
id = "allow-10-1"
ports = [ 22 ]
cidrs = ["10.1.0.0/16"]

[[rule]]
id = "audit-10-1"
action = "audit"
cgroup = "/system.slice/app.service"
cidrs = ["10.1.0.0/16", "10.1.0.0/16"]

[[rule]]
id = "allow-web"
description = "the web tier"
action = "allow"
cidrs = ["2001:DB8::/32", "10.1.0.0/16"]
ports = ["8000-8050", 80, "8051-8100", 443]
protocol = "tcp"
priority = 10
exe = "/usr/bin/curl"

[[rule]]
id = "deny-10"
action = "deny"
cidrs = ["10.0.0.0/8"]
ports = ["0-65535"]
protocol = "any"
force = false

[policy]
description = "example"
mode = "enforce"
"#;
    assert_eq!(compile(reformatted).digest, base);
    assert_ne!(compile(&POLICY.replace("ports = [22]", "ports = [23]")).digest, base);
    assert_ne!(compile(&POLICY.replace("mode = \"enforce\"", "mode = \"dry_run\"")).digest, base);
    assert_ne!(compile(&POLICY.replace("the web tier", "the web tier.")).digest, base);
}

#[test]
fn canonical_text_is_a_policy_with_the_same_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.toml");
    std::fs::write(&path, POLICY).expect("write");
    let checked = policy::check_path(&path, &ValidationContext::default()).expect("valid");
    assert!(checked.canonical.starts_with(policy::canonical::HEADER));
    let again = compile(&checked.canonical);
    assert_eq!(again, checked.compiled);
    let with_quotes = compile(&POLICY.replace("the web tier", "quote \\\" back\\\\slash \\u0001 tab\\t é"));
    let reparsed = policy::check_files(
        &[policy::SourceFile::new(
            "x.toml",
            POLICY.replace("the web tier", "quote \\\" back\\\\slash \\u0001 tab\\t é"),
        )],
        &ValidationContext::default(),
    )
    .expect("valid");
    assert_eq!(compile(&reparsed.canonical).digest, with_quotes.digest);
}

#[test]
fn empty_policy_is_a_dry_run_with_no_entries() {
    let compiled = compile("");
    assert_eq!(compiled.mode, Mode::DryRun);
    assert!(compiled.v4.is_empty() && compiled.v6.is_empty() && compiled.rules.is_empty());
    assert_eq!(compiled.digest.len(), 64);
}

#[test]
fn many_rules_compile_fast_and_bounded() {
    let mut text = String::from("[[rule]]\nid = \"broad\"\naction = \"deny\"\ncidrs = [\"10.0.0.0/8\"]\n");
    for index in 0..20_000u32 {
        let [_, b, c, d] = (0x0a00_0000u32 | index).to_be_bytes();
        text.push_str(&format!(
            "[[rule]]\nid = \"r{index}\"\naction = \"allow\"\ncidrs = [\"10.{b}.{c}.{d}/32\"]\nports = [443]\npriority = 1\n"
        ));
    }
    let started = std::time::Instant::now();
    let compiled = compile(&text);
    assert!(started.elapsed().as_secs() < 5, "took {:?}", started.elapsed());
    assert_eq!(compiled.v4.len(), 20_001);
    assert!(compiled.v4.iter().all(|entry| entry.rules.len() <= policy::MAX_RULES_PER_PREFIX));
    let host = &compiled.v4[1];
    assert_eq!(host.rules.len(), 2, "own allow then the inherited deny");
    assert_eq!(host.rules[1].rule_key, rule_key("broad"));
}
