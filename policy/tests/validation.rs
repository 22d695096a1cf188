//! Validation through the public entry points: every problem of a policy
//! at once, each asserted by file, line, rule id and message.

use std::net::IpAddr;
use std::path::Path;

use policy::{compile_path, compile_str, Problem, Protected, ValidationContext};

fn problems(text: &str) -> Vec<Problem> {
    problems_with(text, &ValidationContext::default())
}

fn problems_with(text: &str, context: &ValidationContext) -> Vec<Problem> {
    match compile_str(text, Path::new("p.toml"), context) {
        Ok(compiled) => panic!("expected problems, compiled {} rules", compiled.rules.len()),
        Err(problems) => problems.0,
    }
}

/// (line, rule, fragment of the message) for each problem, in order.
fn check(found: &[Problem], expected: &[(usize, Option<&str>, &str)]) {
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), expected.len(), "problems:\n{}", shown.join("\n"));
    for (problem, (line, rule, fragment)) in found.iter().zip(expected) {
        assert_eq!(problem.file, Path::new("p.toml"), "{problem}");
        assert_eq!(problem.line, *line, "{problem}");
        assert_eq!(problem.rule.as_deref(), *rule, "{problem}");
        assert!(problem.message.contains(fragment), "`{problem}` should say `{fragment}`");
        assert!(problem.hint.is_some(), "`{problem}` has a hint");
    }
}

#[test]
fn reports_every_field_problem_with_its_line() {
    let text = r#"[policy]
mode = "enforced"

[[rule]]
id = "bad-cidrs"
action = "deny"
cidrs = ["10.0.0.1/8", "10.0.0/8", "2001:db8::1/32"]

[[rule]]
id = "bad-ports"
action = "dney"
cidrs = ["192.0.2.0/24"]
ports = [80, "9000-8000", 70000]
protocl = "tcp"
"#;
    let found = problems(text);
    check(
        &found,
        &[
            (2, None, "unknown mode `enforced`"),
            (7, Some("bad-cidrs"), "CIDR `10.0.0.1/8` has host bits set"),
            (7, Some("bad-cidrs"), "CIDR `10.0.0/8` does not parse"),
            (7, Some("bad-cidrs"), "CIDR `2001:db8::1/32` has host bits set"),
            (11, Some("bad-ports"), "unknown action `dney`"),
            (13, Some("bad-ports"), "port range `9000-8000` is backwards"),
            (13, Some("bad-ports"), "port `70000` is not from 0 to 65535"),
            (14, Some("bad-ports"), "unknown key `protocl`"),
        ],
    );
    assert_eq!(found[0].hint.as_deref(), Some("did you mean \"enforce\"?"));
    assert_eq!(found[1].hint.as_deref(), Some("write the network, 10.0.0.0/8"));
    assert_eq!(found[3].hint.as_deref(), Some("write the network, 2001:db8::/32"));
    assert_eq!(found[4].hint.as_deref(), Some("did you mean \"deny\"?"));
    assert_eq!(found[7].hint.as_deref(), Some("did you mean `protocol`?"));
    assert_eq!(
        found[4].to_string(),
        "p.toml:11: rule `bad-ports`: unknown action `dney` (hint: did you mean \"deny\"?)"
    );
}

#[test]
fn missing_fields_and_bad_ids() {
    let text = r#"
[[rule]]
action = "allow"
cidrs = ["10.0.0.0/8"]

[[rule]]
id = "no action"
cidrs = ["10.0.0.0/8"]

[[rule]]
id = "no-cidrs"
action = "audit"
"#;
    check(
        &problems(text),
        &[
            (2, None, "rule has no `id`"),
            (6, None, "rule has no `action`"),
            (7, None, "rule id `no action` is not valid"),
            (10, Some("no-cidrs"), "rule has no `cidrs`"),
        ],
    );
}

#[test]
fn lockout_denies_need_force() {
    let text = r#"
[[rule]]
id = "all-v4"
action = "deny"
cidrs = ["0.0.0.0/0"]

[[rule]]
id = "all-v6"
action = "deny"
cidrs = ["::/0"]

[[rule]]
id = "loop"
action = "deny"
cidrs = [
  "127.0.0.2/32",
  "::1/128",
]

[[rule]]
id = "broker"
action = "deny"
cidrs = ["192.0.2.0/24"]
ports = ["9000-9100"]

[[rule]]
id = "broker-other-port"
action = "deny"
cidrs = ["192.0.2.0/25"]
ports = [80]

[[rule]]
id = "forced"
action = "deny"
cidrs = ["0.0.0.0/0", "127.0.0.0/8"]
priority = 1
force = true

[[rule]]
id = "audit-all"
action = "audit"
cidrs = ["0.0.0.0/0"]
priority = 2
"#;
    let context = ValidationContext {
        protected: vec![Protected {
            addr: "192.0.2.10".parse::<IpAddr>().expect("addr"),
            port: Some(9092),
            what: "kafka sink `events` broker".to_owned(),
        }],
    };
    let found = problems_with(text, &context);
    check(
        &found,
        &[
            (5, Some("all-v4"), "denies every IPv4 destination (0.0.0.0/0)"),
            (10, Some("all-v6"), "denies every IPv6 destination (::/0)"),
            (16, Some("loop"), "127.0.0.2/32 overlaps loopback (127.0.0.0/8)"),
            (17, Some("loop"), "::1/128 overlaps loopback (::1/128)"),
            (23, Some("broker"), "192.0.2.0/24 covers 192.0.2.10:9092, the agent's kafka sink `events` broker"),
        ],
    );
    assert!(found[0].hint.as_deref().is_some_and(|hint| hint.contains("force = true")));
}

#[test]
fn duplicates_conflicts_and_capacity() {
    let text = r#"
[[rule]]
id = "a"
action = "deny"
cidrs = ["10.1.0.0/16"]
ports = ["1-100"]

[[rule]]
id = "b"
action = "allow"
cidrs = ["10.1.0.0/16"]
ports = [50]
protocol = "tcp"

[[rule]]
id = "c"
action = "allow"
cidrs = ["10.1.0.0/16"]
ports = [50]
priority = 5

[[rule]]
id = "a"
action = "deny"
cidrs = ["10.2.0.0/16"]
"#;
    check(
        &problems(text),
        &[
            (11, Some("b"), "conflicts with rule `a` at p.toml:2"),
            (22, Some("a"), "duplicate rule id; first defined at p.toml:2"),
        ],
    );

    // A broad rule inherited into a narrower prefix that is already full.
    let mut text = String::from("[[rule]]\nid = \"broad\"\naction = \"deny\"\ncidrs = [\"10.0.0.0/8\"]\n");
    text.push_str("\n[[rule]]\nid = \"narrow\"\naction = \"allow\"\ncidrs = [\"10.9.9.0/24\"]\npriority = 9\n");
    text.push_str("ports = [1, 3, 5, 7, 9, 11, 13, 15]\n");
    let found = problems(&text);
    check(&found, &[(9, Some("narrow"), "prefix 10.9.9.0/24 would hold 9 kernel rules (limit 8")]);
    assert!(found[0].message.contains("`narrow`, 8 port ranges, `broad` (via /8)"), "{}", found[0]);
}

#[test]
fn rule_key_collisions_are_refused() {
    // FNV-1a 32 of both ids is 0x6fbed7e2.
    assert_eq!(policy::rule_key("r66999"), policy::rule_key("r916676"));
    let text = "[[rule]]\nid = \"r66999\"\naction = \"allow\"\ncidrs = [\"192.0.2.0/24\"]\n\n[[rule]]\nid = \"r916676\"\naction = \"allow\"\ncidrs = [\"198.51.100.0/24\"]\n";
    check(&problems(text), &[(6, Some("r916676"), "rule key 0x6fbed7e2 collides with rule `r66999` at p.toml:1")]);
}

#[test]
fn directories_merge_and_name_both_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first =
        "[policy]\nmode = \"enforce\"\n\n[[rule]]\nid = \"web\"\naction = \"allow\"\ncidrs = [\"10.0.0.0/8\"]\n";
    let second =
        "[policy]\nmode = \"dry_run\"\n\n[[rule]]\nid = \"web\"\naction = \"deny\"\ncidrs = [\"192.0.2.0/24\"]\n";
    std::fs::write(dir.path().join("10-base.toml"), first).expect("write");
    std::fs::write(dir.path().join("20-more.toml"), second).expect("write");
    std::fs::write(dir.path().join(".hidden.toml"), "not toml [").expect("write");
    std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
    let problems = compile_path(dir.path(), &ValidationContext::default()).expect_err("two problems").0;
    let base = dir.path().join("10-base.toml");
    let more = dir.path().join("20-more.toml");
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            format!("{}:1: [policy] is already set at {}:1 (hint: set `mode` and `description` in one file of the directory)", more.display(), base.display()),
            format!("{}:4: rule `web`: duplicate rule id; first defined at {}:4 (hint: give every rule its own id (ids are unique across all files of a policy))", more.display(), base.display()),
        ]
    );
}

#[test]
fn unreadable_is_told_apart_from_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = compile_path(&dir.path().join("absent.toml"), &ValidationContext::default()).expect_err("absent");
    assert!(missing.is_unreadable());
    let empty = compile_path(dir.path(), &ValidationContext::default()).expect_err("empty dir");
    assert!(empty.is_unreadable(), "{empty}");
    let syntax = compile_str("[[rule]\nid=", Path::new("p.toml"), &ValidationContext::default()).expect_err("syntax");
    assert!(!syntax.is_unreadable());
    assert!(syntax.0[0].to_string().starts_with("p.toml:1: TOML syntax"), "{syntax}");
}
