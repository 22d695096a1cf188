//! The Sigma front end on the project's own small Sigma rules.

use std::path::Path;
use std::sync::Arc;

use pipeline::{Confidence, EventKind, Field, Severity};

use super::condition::{self, Cond, Pattern};
use super::values::{base64, base64_offsets};
use super::SigmaLoader;
use crate::problem::Problem;
use crate::rule::{Body, Cidr, CmpOp, Expr, KindSet, Match, Pred, Rule, Target, Test, TextOp};
use crate::yaml::{self, Node};

mod correlations;
mod external;
mod fuzz;

/// Loads `files` (path, text) in order and resolves them.
fn load_files(files: &[(&str, &str)]) -> (Vec<Rule>, Vec<Problem>) {
    let mut loader = SigmaLoader::new();
    for (path, text) in files {
        let file: Arc<Path> = Arc::from(Path::new(path));
        let docs = yaml::parse(text).expect("valid YAML");
        for doc in &docs {
            let node = Node::new(doc);
            assert!(SigmaLoader::is_sigma(node), "not Sigma: {text}");
            loader.add_document(&file, node);
        }
    }
    loader.finish()
}

fn load(text: &str) -> (Vec<Rule>, Vec<Problem>) {
    load_files(&[("rules/test.yml", text)])
}

/// The one rule `text` holds, which must load.
fn one(text: &str) -> Rule {
    let (rules, problems) = load(text);
    assert!(problems.is_empty(), "unexpected problems: {problems:#?}");
    assert_eq!(rules.len(), 1, "{rules:#?}");
    rules.into_iter().next().expect("one rule")
}

fn matcher(rule: &Rule) -> &Match {
    match &rule.body {
        Body::Indicator(m) => m,
        other => panic!("not an indicator: {other:?}"),
    }
}

/// A rule of `category` with one selection made of `lines` (each a field
/// entry) and `condition: selection`.
fn rule_with(category: &str, lines: &[&str]) -> String {
    let source = if category == "auditd" { "  service: auditd".to_owned() } else { format!("  category: {category}") };
    let body: String = lines.iter().map(|l| format!("    {l}\n")).collect();
    format!(
        "title: Test rule\nid: hf-test\nlogsource:\n  product: linux\n{source}\ndetection:\n  selection:\n{body}  condition: selection\n"
    )
}

/// The expression of a process_creation rule with one entry.
fn entry(line: &str) -> Expr {
    matcher(&one(&rule_with("process_creation", &[line]))).expr.clone()
}

/// The problems of a rule that must be rejected.
fn rejected(text: &str) -> Vec<Problem> {
    let (rules, problems) = load(text);
    assert!(rules.is_empty(), "loaded: {rules:#?}");
    assert!(!problems.is_empty());
    problems
}

fn assert_rejected(text: &str, line: usize, reason: &str) {
    let problems = rejected(text);
    assert!(
        problems.iter().any(|p| p.line == line && p.message.contains(reason)),
        "no problem at line {line} containing {reason:?}: {problems:#?}"
    );
}

fn pred(field: Field, test: Test) -> Expr {
    Expr::Pred(Pred { target: Target::Field(field), test })
}

fn arc(values: &[&str]) -> Vec<Arc<str>> {
    values.iter().map(|v| Arc::from(*v)).collect()
}

fn text(op: TextOp, values: &[&str]) -> Test {
    Test::Text { op, values: arc(values), all: false, cased: false }
}

fn kinds(list: &[EventKind]) -> KindSet {
    KindSet::of(list)
}

fn kind_check(list: &[&str]) -> Expr {
    pred(Field::Kind, Test::Text { op: TextOp::Equals, values: arc(list), all: false, cased: true })
}

#[test]
fn metadata_level_tags_and_confidence() {
    let rule = one("title: Shell from a web server
id: 6f0c2f4e-0000-4000-8000-000000000001
status: experimental
description: A web server spawned a shell.
author: hostflow
date: 2025-01-01
references: [https://example.org]
falsepositives: [none]
fields: [CommandLine]
license: MIT
related: [{id: x, type: similar}]
level: critical
tags:
  - attack.execution
  - attack.t1059.004
  - attack.T1505
  - cve.2021-0001
logsource: {product: linux, category: process_creation}
detection:
  selection:
    ParentImage|endswith: /nginx
  condition: selection
");
    assert_eq!(&*rule.meta.id, "6f0c2f4e-0000-4000-8000-000000000001");
    assert_eq!(&*rule.meta.title, "Shell from a web server");
    assert_eq!(&*rule.meta.description, "A web server spawned a shell.");
    assert_eq!(rule.meta.severity, Severity::Critical);
    assert_eq!(rule.meta.confidence, Confidence::VeryHigh);
    assert_eq!(rule.meta.attack, arc(&["T1059.004", "T1505"]));
    assert_eq!(rule.meta.tags, arc(&["attack.execution", "cve.2021-0001"]));
    assert!(rule.meta.enabled);
    assert_eq!(rule.origin.line, 1);
    assert_eq!(rule.origin.format, crate::rule::Format::Sigma);
    assert_eq!(rule.body.layer(), pipeline::DetectionLayer::L1);

    let levels = [
        ("informational", Severity::Info, Confidence::Low),
        ("low", Severity::Low, Confidence::Low),
        ("medium", Severity::Medium, Confidence::Medium),
        ("high", Severity::High, Confidence::High),
    ];
    for (level, severity, confidence) in levels {
        let rule = one(&format!("level: {level}\n{}", rule_with("process_creation", &["Image: /bin/sh"])));
        assert_eq!((rule.meta.severity, rule.meta.confidence), (severity, confidence), "{level}");
    }
    // `name` stands in for a missing id; neither is a rejection.
    let text = rule_with("process_creation", &["Image: /bin/sh"]).replace("id: hf-test", "name: shell_exec");
    assert_eq!(&*one(&text).meta.id, "shell_exec");
    let text = rule_with("process_creation", &["Image: /bin/sh"]).replace("id: hf-test\n", "");
    assert_rejected(&text, 1, "without an `id` or a `name`");
    assert_rejected(&format!("level: severe\n{}", rule_with("process_creation", &["Image: x"])), 1, "unknown level");
}

#[test]
fn plain_values_and_wildcards() {
    assert_eq!(entry("Image: /usr/bin/curl"), pred(Field::Exe, text(TextOp::Equals, &["/usr/bin/curl"])));
    assert_eq!(entry("Image: '*/curl'"), pred(Field::Exe, text(TextOp::Suffix, &["/curl"])));
    assert_eq!(entry("Image: '/tmp/*'"), pred(Field::Exe, text(TextOp::Prefix, &["/tmp/"])));
    assert_eq!(entry("CommandLine: '**wget*'"), pred(Field::Cmdline, text(TextOp::Contains, &["wget"])));
    let regex = |p: &str| Test::Regex { patterns: arc(&[p]), all: false };
    assert_eq!(entry("CommandLine: 'a*b'"), pred(Field::Cmdline, regex("(?is)^a.*b$")));
    assert_eq!(entry("CommandLine: 'a?c*'"), pred(Field::Cmdline, regex("(?is)^a(?u:.)c")));
    assert_eq!(entry("CommandLine: '*x.y?'"), pred(Field::Cmdline, regex("(?is)x\\.y(?u:.)$")));
    // Escapes: `\*` and `\?` are literal, `\\` is one backslash, other
    // backslashes stay.
    assert_eq!(entry(r"CommandLine: '*x\*y*'"), pred(Field::Cmdline, text(TextOp::Contains, &["x*y"])));
    assert_eq!(entry(r"CommandLine: 'a\?'"), pred(Field::Cmdline, text(TextOp::Equals, &["a?"])));
    assert_eq!(entry(r"CommandLine: 'a\\*'"), pred(Field::Cmdline, text(TextOp::Prefix, &["a\\"])));
    assert_eq!(entry(r"CommandLine: 'C:\Windows'"), pred(Field::Cmdline, text(TextOp::Equals, &["C:\\Windows"])));
    // A bare `*` is "present"; null is "absent".
    assert_eq!(entry("User: '*'"), pred(Field::CtxUser, Test::Exists(true)));
    assert_eq!(entry("User: null"), pred(Field::CtxUser, Test::Exists(false)));
    // A list is any of them; mixed forms give one predicate per form.
    assert_eq!(
        entry("Image: ['/bin/sh', '/bin/bash', '*/zsh', 'a*b']"),
        Expr::Any(vec![
            pred(Field::Exe, text(TextOp::Equals, &["/bin/sh", "/bin/bash"])),
            pred(Field::Exe, text(TextOp::Suffix, &["/zsh"])),
            pred(Field::Exe, regex("(?is)^a.*b$")),
        ])
    );
    // Numbers and booleans on a text field are their text.
    assert_eq!(entry("CommandLine: 777"), pred(Field::Cmdline, text(TextOp::Equals, &["777"])));
}

#[test]
fn text_modifiers() {
    assert_eq!(entry("CommandLine|contains: [a, b]"), pred(Field::Cmdline, text(TextOp::Contains, &["a", "b"])));
    assert_eq!(entry("CommandLine|startswith: 'sh -c'"), pred(Field::Cmdline, text(TextOp::Prefix, &["sh -c"])));
    assert_eq!(entry("CommandLine|endswith: '.sh'"), pred(Field::Cmdline, text(TextOp::Suffix, &[".sh"])));
    assert_eq!(
        entry("CommandLine|contains|all: [curl, '| sh']"),
        pred(
            Field::Cmdline,
            Test::Text { op: TextOp::Contains, values: arc(&["curl", "| sh"]), all: true, cased: false }
        )
    );
    assert_eq!(
        entry("CommandLine|contains|cased: PATH="),
        pred(Field::Cmdline, Test::Text { op: TextOp::Contains, values: arc(&["PATH="]), all: false, cased: true })
    );
    // A wildcard inside a contains value makes an unanchored regex.
    assert_eq!(
        entry("CommandLine|contains: 'a?b'"),
        pred(Field::Cmdline, Test::Regex { patterns: arc(&["(?is)a(?u:.)b"]), all: false })
    );
    assert_eq!(
        entry("CommandLine|startswith|cased: 'a*b'"),
        pred(Field::Cmdline, Test::Regex { patterns: arc(&["(?s)^a.*b"]), all: false })
    );
    // `all` with a wildcard value: every value must hold, each in its form.
    assert_eq!(
        entry("CommandLine|contains|all: [x, 'a*b']"),
        Expr::All(vec![
            pred(Field::Cmdline, Test::Text { op: TextOp::Contains, values: arc(&["x"]), all: true, cased: false }),
            pred(Field::Cmdline, Test::Regex { patterns: arc(&["(?is)a.*b"]), all: true }),
        ])
    );
    assert_eq!(
        entry("CommandLine|neq: ls"),
        Expr::All(vec![
            pred(Field::Cmdline, Test::Exists(true)),
            Expr::Not(Box::new(pred(Field::Cmdline, text(TextOp::Equals, &["ls"])))),
        ])
    );
}

#[test]
fn regex_modifier_and_flags() {
    let regex = |p: &str| pred(Field::Cmdline, Test::Regex { patterns: arc(&[p]), all: false });
    assert_eq!(entry("CommandLine|re: 'nc\\s+-e'"), regex("nc\\s+-e"));
    assert_eq!(entry("CommandLine|re|i: 'NC'"), regex("(?i)NC"));
    assert_eq!(entry("CommandLine|re|i|m|s: 'x'"), regex("(?ims)x"));
    assert_eq!(
        entry("CommandLine|re|all: [a, b]"),
        pred(Field::Cmdline, Test::Regex { patterns: arc(&["a", "b"]), all: true })
    );
    let text = rule_with("process_creation", &["Image: /bin/sh", "CommandLine|re: '(?<=x)y'"]);
    assert_rejected(&text, 9, "does not compile");
    // Classes are ASCII (as in PCRE); the hint names `(?u)` for Unicode
    // `\w` and friends, which load.
    let unicode = rejected(&rule_with("process_creation", &["Image: /bin/sh", "CommandLine|re: '\\p{L}x'"]));
    assert!(
        unicode.iter().any(|p| p.line == 9
            && p.message.contains("Unicode not allowed")
            && p.hint.as_deref().is_some_and(|h| h.contains("(?u)"))),
        "{unicode:#?}"
    );
    assert_eq!(entry("CommandLine|re: '(?u)\\w+x'"), regex("(?u)\\w+x"));
    assert_rejected(&rule_with("process_creation", &["CommandLine|i: x"]), 8, "flags of `re`");
    assert_rejected(&rule_with("process_creation", &["CommandLine|re|contains: x"]), 8, "do not combine");
}

#[test]
fn numeric_address_and_existence_modifiers() {
    // Outgoing connections only (see `destination_follows_the_direction`).
    let net = |lines: &[&str]| {
        let mut lines = lines.to_vec();
        lines.push("Initiated: 'true'");
        matcher(&one(&rule_with("network_connection", &lines))).expr.clone()
    };
    assert_eq!(net(&["DestinationPort: 4444"]), pred(Field::DstPort, Test::NumIn(vec![4444])));
    assert_eq!(net(&["DestinationPort: ['4444', 22]"]), pred(Field::DstPort, Test::NumIn(vec![4444, 22])));
    assert_eq!(net(&["DestinationPort|gte: 1024"]), pred(Field::DstPort, Test::Num { op: CmpOp::Ge, value: 1024 }));
    assert_eq!(net(&["DestinationPort|lt: 10"]), pred(Field::DstPort, Test::Num { op: CmpOp::Lt, value: 10 }));
    let cidr = |t: &str| Cidr::parse(t).expect("cidr");
    assert_eq!(
        net(&["DestinationIp|cidr: ['10.0.0.0/8', 'fc00::/7']"]),
        pred(Field::DstAddr, Test::Cidr(vec![cidr("10.0.0.0/8"), cidr("fc00::/7")]))
    );
    assert_eq!(
        net(&["DestinationIp: ['127.0.0.1', '::1']"]),
        pred(Field::DstAddr, Test::Cidr(vec![cidr("127.0.0.1"), cidr("::1")]))
    );
    assert_eq!(
        net(&["DestinationIp|startswith: ['192.168.', '10.']"]),
        pred(Field::DstAddr, Test::Cidr(vec![cidr("192.168.0.0/16"), cidr("10.0.0.0/8")]))
    );
    assert_eq!(net(&["DestinationIp: '172.16.*'"]), pred(Field::DstAddr, Test::Cidr(vec![cidr("172.16.0.0/16")])));
    assert_eq!(net(&["Protocol: tcp"]), pred(Field::Protocol, text(TextOp::Equals, &["tcp"])));
    assert_eq!(net(&["User|exists: true"]), pred(Field::CtxUser, Test::Exists(true)));
    assert_eq!(net(&["User|exists: 'false'"]), pred(Field::CtxUser, Test::Exists(false)));
    assert_eq!(net(&["ProcessId: 1"]), pred(Field::Pid, Test::NumIn(vec![1])));

    let reject = |lines: &[&str], reason: &str| assert_rejected(&rule_with("network_connection", lines), 8, reason);
    reject(&["DestinationPort: '44*'"], "not an integer");
    reject(&["DestinationPort|contains: 44"], "text modifiers do not apply");
    reject(&["DestinationIp|contains: '.1.'"], "not compared as text");
    reject(&["DestinationIp: '10.*.1'"], "not an address");
    reject(&["DestinationIp|cidr: '10.0.0.1/8'"], "host bits");
    reject(&["Image|cidr: '10.0.0.0/8'"], "`cidr` applies to addresses");
    reject(&["Image|gt: 3"], "compare numbers");
    reject(&["DestinationPort|gt: x"], "takes an integer");
    reject(&["User|exists: maybe"], "takes true or false");
}

#[test]
fn encoding_modifiers() {
    assert_eq!(base64(b"curl http://x | sh"), "Y3VybCBodHRwOi8veCB8IHNo");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b""), "");
    assert_eq!(base64_offsets("abc"), ["YWJj", "FiY", "hYm"]);
    assert_eq!(base64_offsets("/bin/sh -i"), ["L2Jpbi9zaCAta", "9iaW4vc2ggLW", "vYmluL3NoIC1p"]);
    let cased = |op, values: &[&str]| Test::Text { op, values: arc(values), all: false, cased: true };
    assert_eq!(
        entry("CommandLine|base64offset|contains: '/bin/sh -i'"),
        pred(Field::Cmdline, cased(TextOp::Contains, &["L2Jpbi9zaCAta", "9iaW4vc2ggLW", "vYmluL3NoIC1p"]))
    );
    assert_eq!(entry("CommandLine|base64|contains: ab"), pred(Field::Cmdline, cased(TextOp::Contains, &["YWI="])));
    assert_eq!(entry("CommandLine|base64: ab"), pred(Field::Cmdline, cased(TextOp::Equals, &["YWI="])));
    // windash: a dash or slash that starts a word, in every variant.
    assert_eq!(
        entry("CommandLine|windash|contains: ' -e '"),
        pred(Field::Cmdline, text(TextOp::Contains, &[" -e ", " /e ", " –e ", " —e ", " ―e "]))
    );
    assert_eq!(entry("CommandLine|windash: 'a-b'"), pred(Field::Cmdline, text(TextOp::Equals, &["a-b"])));
    match entry("CommandLine|windash|contains|all: ['-a -b', x]") {
        Expr::All(parts) => {
            assert_eq!(parts.len(), 2);
            assert!(
                matches!(&parts[1], Expr::Pred(Pred { test: Test::Text { values, .. }, .. }) if values.len() == 25)
            );
        }
        other => panic!("{other:?}"),
    }
    let reject = |line: &str, reason: &str| assert_rejected(&rule_with("process_creation", &[line]), 8, reason);
    reject("CommandLine|windash: '-a -b -c -d'", "at most 3 dashes");
    reject("CommandLine|base64offset|startswith: x", "only combines with `contains`");
    reject("CommandLine|base64|contains: 'a*'", "cannot hold wildcards");
    reject("CommandLine|wide|base64offset|contains: x", "UTF-16");
    reject("CommandLine|utf16le|contains: x", "UTF-16");
    reject("CommandLine|utf16: x", "UTF-16");
    reject("CommandLine|expand: '%dirs%'", "placeholders");
    reject("CommandLine|fieldref: Image", "comparing two fields");
    reject("CommandLine|hour: 3", "time modifier");
    reject("CommandLine|bogus: x", "unknown modifier `bogus`");
    reject("CommandLine|contains|endswith: x", "more than one of");
}

#[test]
fn field_mapping_per_category() {
    let field_of = |category: &str, line: &str| match matcher(&one(&rule_with(category, &[line]))).expr.clone() {
        Expr::Pred(p) => p.target,
        other => panic!("{other:?}"),
    };
    let f = Target::Field;
    for (name, field) in [
        ("Image", Field::Exe),
        ("CommandLine", Field::Cmdline),
        ("ParentImage", Field::ParentExe),
        ("ParentCommandLine", Field::ParentCmdline),
        ("User", Field::CtxUser),
        ("CurrentDirectory", Field::CtxCwd),
    ] {
        assert_eq!(field_of("process_creation", &format!("{name}: x")), f(field), "{name}");
    }
    assert_eq!(field_of("process_creation", "ProcessId: 1"), f(Field::Pid));
    assert_eq!(field_of("process_creation", "ParentProcessId: 1"), f(Field::Ppid));
    assert_eq!(field_of("file_event", "TargetFilename: /etc/passwd"), f(Field::Path));
    assert_eq!(field_of("file_event", "Image: /bin/x"), f(Field::CtxExe));
    assert_eq!(field_of("file_event", "User: root"), f(Field::CtxUser));
    assert_eq!(field_of("network_connection", "Image: /bin/x"), f(Field::CtxExe));

    let rule = one(&rule_with("file_event", &["TargetFilename: /etc/passwd"]));
    assert_eq!(matcher(&rule).kinds, kinds(&[EventKind::FileOpen, EventKind::FileChange]));
    let rule = one(&rule_with("process_creation", &["Image: /bin/sh"]));
    assert_eq!(matcher(&rule).kinds, kinds(&[EventKind::ProcessExec]));

    let reject = |category: &str, line: &str, reason: &str| assert_rejected(&rule_with(category, &[line]), 8, reason);
    reject("network_connection", "DestinationHostname|endswith: .example.org", "no DNS names are collected");
    reject("network_connection", "SourceIp: 10.0.0.1", "not collected");
    reject("process_creation", "OriginalFileName: x", "not collected on Linux");
    reject("process_creation", "Hashes|contains: 'SHA256='", "not collected on Linux");
    reject("process_creation", "LogonId: 0x3e7", "no logon id");
    reject("process_creation", "TargetFilename: x", "not part of process_creation");
    reject("file_event", "CommandLine: x", "not part of file_event");
    reject("process_creation", "image: /bin/sh", "field `image`");
}

#[test]
fn destination_follows_the_direction() {
    // Sysmon's destination is the remote end of a connect, but the local
    // end of an accepted connection.
    let both = one(&rule_with("network_connection", &["DestinationPort: 22"]));
    assert_eq!(matcher(&both).kinds, kinds(&[EventKind::NetConnect, EventKind::NetAccept]));
    assert_eq!(
        matcher(&both).expr,
        Expr::Any(vec![
            Expr::All(vec![kind_check(&["net_connect"]), pred(Field::DstPort, Test::NumIn(vec![22]))]),
            Expr::All(vec![kind_check(&["net_accept"]), pred(Field::LocalPort, Test::NumIn(vec![22]))]),
        ])
    );
    let inbound = one(&rule_with("network_connection", &["Initiated: 'false'", "DestinationIp|cidr: 10.0.0.0/8"]));
    assert_eq!(matcher(&inbound).kinds, kinds(&[EventKind::NetAccept]));
    let net = Cidr::parse("10.0.0.0/8").expect("cidr");
    assert_eq!(matcher(&inbound).expr, pred(Field::LocalAddr, Test::Cidr(vec![net])));
    // Under `not`, each direction keeps its own field.
    let text = "title: t\nid: not-local\nlogsource: {product: linux, category: network_connection}\ndetection:\n  \
                sel:\n    Image|endswith: /bash\n  filter:\n    DestinationIp: 127.0.0.1\n  condition: sel and not filter\n";
    let host = Cidr::parse("127.0.0.1").expect("cidr");
    assert_eq!(
        matcher(&one(text)).expr,
        Expr::All(vec![
            pred(Field::CtxExe, text_test(TextOp::Suffix, &["/bash"])),
            Expr::Not(Box::new(Expr::Any(vec![
                Expr::All(vec![kind_check(&["net_connect"]), pred(Field::DstAddr, Test::Cidr(vec![host]))]),
                Expr::All(vec![kind_check(&["net_accept"]), pred(Field::LocalAddr, Test::Cidr(vec![host]))]),
            ]))),
        ])
    );
}

#[test]
fn initiated_narrows_the_kinds() {
    let out = one(&rule_with("network_connection", &["Initiated: 'true'", "DestinationPort: 4444"]));
    assert_eq!(matcher(&out).kinds, kinds(&[EventKind::NetConnect]));
    assert_eq!(matcher(&out).expr, pred(Field::DstPort, Test::NumIn(vec![4444])));
    let inbound = one(&rule_with("network_connection", &["Initiated: false", "User: root"]));
    assert_eq!(matcher(&inbound).kinds, kinds(&[EventKind::NetAccept]));
    let both = one(&rule_with("network_connection", &["Initiated: ['true', 'false']"]));
    assert_eq!(matcher(&both).kinds, kinds(&[EventKind::NetConnect, EventKind::NetAccept]));
    assert_eq!(matcher(&both).expr, Expr::always());
    // Under `or`, the kind check stays where it is.
    let text = "title: t
id: either
logsource: {product: linux, category: network_connection}
detection:
  out:
    Initiated: 'true'
    DestinationPort: 4444
  any:
    User: nobody
  condition: out or any
";
    let rule = one(text);
    assert_eq!(matcher(&rule).kinds, kinds(&[EventKind::NetConnect, EventKind::NetAccept]));
    assert_eq!(
        matcher(&rule).expr,
        Expr::Any(vec![
            Expr::All(vec![kind_check(&["net_connect"]), pred(Field::DstPort, Test::NumIn(vec![4444]))]),
            pred(Field::CtxUser, text_test(TextOp::Equals, &["nobody"])),
        ])
    );
    assert_rejected(&rule_with("network_connection", &["Initiated: maybe"]), 8, "'true' or 'false'");
    assert_rejected(&rule_with("network_connection", &["Initiated|contains: t"]), 8, "no modifiers");
    let never = "title: t\nid: never\nlogsource: {product: linux, category: network_connection}\ndetection:\n  \
                 a:\n    Initiated: 'true'\n  b:\n    Initiated: 'false'\n  condition: a and b\n";
    assert_rejected(never, 9, "can never match");
}

fn text_test(op: TextOp, values: &[&str]) -> Test {
    text(op, values)
}

#[test]
fn auditd_records() {
    let arg = |i: u16, test: Test| Expr::Pred(Pred { target: Target::Arg(i), test });
    let rule = one(&rule_with("auditd", &["type: EXECVE", "a0: getcap", "a1|contains: '-r'"]));
    assert_eq!(matcher(&rule).kinds, kinds(&[EventKind::ProcessExec]));
    assert_eq!(
        matcher(&rule).expr,
        Expr::All(vec![arg(0, text(TextOp::Equals, &["getcap"])), arg(1, text(TextOp::Contains, &["-r"]))])
    );
    // Without `type`, a0…aN still mean an exec's arguments.
    let rule = one(&rule_with("auditd", &["a2|startswith: '--cpu-priority'"]));
    assert_eq!(matcher(&rule).kinds, kinds(&[EventKind::ProcessExec]));
    let rule = one(&rule_with("auditd", &["type: 'path'", "name|endswith: /sysrq"]));
    assert_eq!(matcher(&rule).kinds, kinds(&[EventKind::FileOpen, EventKind::FileChange]));
    assert_eq!(matcher(&rule).expr, pred(Field::Path, text(TextOp::Suffix, &["/sysrq"])));
    let rule = one(&rule_with("auditd", &["type: SYSCALL", "comm: insmod", "exe: /usr/bin/kmod"]));
    assert_eq!(matcher(&rule).kinds, kinds(&[EventKind::ProcessExec]));
    assert_eq!(
        matcher(&rule).expr,
        Expr::All(vec![
            pred(Field::Comm, text(TextOp::Equals, &["insmod"])),
            pred(Field::CtxExe, text(TextOp::Equals, &["/usr/bin/kmod"])),
        ])
    );
    let rule = one(&rule_with("auditd", &["type: SYSCALL", "SYSCALL: [execve, execveat]", "euid: 33", "auid: 1000"]));
    assert_eq!(matcher(&rule).kinds, kinds(&[EventKind::ProcessExec]));
    assert_eq!(
        matcher(&rule).expr,
        Expr::All(vec![pred(Field::CtxEuid, Test::NumIn(vec![33])), pred(Field::CtxLoginuid, Test::NumIn(vec![1000]))])
    );
    let rule = one(&rule_with("auditd", &["type: SYSCALL", "SYSCALL: [setuid, setns]"]));
    assert_eq!(matcher(&rule).kinds, kinds(&[EventKind::CredentialChange, EventKind::NamespaceChange]));
    let syscall = |k: &str, s: &str| {
        Expr::All(vec![
            kind_check(&[k]),
            pred(Field::Syscall, Test::Text { op: TextOp::Equals, values: arc(&[s]), all: false, cased: true }),
        ])
    };
    assert_eq!(
        matcher(&rule).expr,
        Expr::Any(vec![syscall("credential_change", "setuid"), syscall("namespace_change", "setns")])
    );
    // Two records under `1 of`: each keeps its kind check.
    let text = "title: t
id: two-records
logsource: {product: linux, service: auditd}
detection:
  selection_path:
    type: PATH
    name: /etc/login.defs
  selection_exec:
    type: EXECVE
    a0: chage
  condition: 1 of selection_*
";
    let rule = one(text);
    assert_eq!(matcher(&rule).kinds, kinds(&[EventKind::ProcessExec, EventKind::FileOpen, EventKind::FileChange]));
    assert_eq!(
        matcher(&rule).expr,
        Expr::Any(vec![
            Expr::All(vec![
                kind_check(&["file_open", "file_change"]),
                pred(Field::Path, text_test(TextOp::Equals, &["/etc/login.defs"]))
            ]),
            Expr::All(vec![kind_check(&["process_exec"]), arg(0, text_test(TextOp::Equals, &["chage"]))]),
        ])
    );
    let reject = |lines: &[&str], line: usize, reason: &str| assert_rejected(&rule_with("auditd", lines), line, reason);
    reject(&["key: susp_activity"], 8, "audit rule keys");
    reject(&["type: SYSCALL", "a0: 4"], 9, "raw syscall argument");
    reject(&["type: TTY"], 8, "record type `TTY`");
    reject(&["type: SYSCALL", "SYSCALL: memfd_create"], 9, "not observed");
    reject(&["type: PATH", "nametype: CREATE"], 9, "no hostflow counterpart");
    reject(&["type: EXECVE", "comm: x", "name: /x"], 11, "can never match");
}

#[test]
fn condition_grammar() {
    let sel = |n: &str| Cond::Sel(n.into());
    let parse = |t: &str| condition::parse(t).expect(t);
    assert_eq!(
        parse("a or b and not c"),
        Cond::Any(vec![sel("a"), Cond::All(vec![sel("b"), Cond::Not(Box::new(sel("c")))])])
    );
    assert_eq!(parse("not a and b"), Cond::All(vec![Cond::Not(Box::new(sel("a"))), sel("b")]));
    assert_eq!(parse("(a or b) and c"), Cond::All(vec![Cond::Any(vec![sel("a"), sel("b")]), sel("c")]));
    assert_eq!(parse("a and b and c or d"), Cond::Any(vec![Cond::All(vec![sel("a"), sel("b"), sel("c")]), sel("d")]));
    assert_eq!(parse("a or b or c"), Cond::Any(vec![sel("a"), sel("b"), sel("c")]));
    assert_eq!(parse("not not a"), Cond::Not(Box::new(Cond::Not(Box::new(sel("a"))))));
    assert_eq!(parse("A AND NOT b"), Cond::All(vec![sel("A"), Cond::Not(Box::new(sel("b")))]));
    assert_eq!(
        parse("1 of sel_* and not all of them"),
        Cond::All(vec![
            Cond::Of { all: false, pattern: Pattern::Glob("sel_*".into()) },
            Cond::Not(Box::new(Cond::Of { all: true, pattern: Pattern::Them })),
        ])
    );
    assert_eq!(parse("((a))"), sel("a"));
    for bad in ["", "a and", "(a", "a)", "a b", "all a", "of x", "2 of sel*", "x | count() > 5", "a near b", "not"] {
        assert!(condition::parse(bad).is_err(), "{bad:?} parsed");
    }
    let deep = format!("{}a{}", "(".repeat(200), ")".repeat(200));
    assert!(condition::parse(&deep).is_err());
    let nots = format!("{}a", "not ".repeat(200));
    assert!(condition::parse(&nots).is_err());
    assert!(condition::glob("sel_*", "sel_x") && condition::glob("*_x", "a_x") && condition::glob("a*b*c", "abbc"));
    assert!(!condition::glob("sel_*", "filter") && !condition::glob("a", "ab") && !condition::glob("a*c", "ab"));
}

/// A process rule with three selections and `condition`.
fn three(cond: &str) -> String {
    format!(
        "title: t\nid: three\nlogsource: {{product: linux, category: process_creation}}\ndetection:\n  \
         sel_a:\n    Image: a\n  sel_b:\n    Image: b\n  _helper:\n    Image: c\n  condition: {cond}\n"
    )
}

#[test]
fn conditions_resolve_to_expressions() {
    let exe = |v: &str| pred(Field::Exe, text(TextOp::Equals, &[v]));
    let expr = |cond: &str| matcher(&one(&three(cond))).expr.clone();
    assert_eq!(expr("1 of sel_*"), Expr::Any(vec![exe("a"), exe("b")]));
    assert_eq!(expr("all of them"), Expr::All(vec![exe("a"), exe("b")]));
    assert_eq!(expr("1 of them"), Expr::Any(vec![exe("a"), exe("b")]));
    assert_eq!(
        expr("sel_a and not (sel_b or _helper)"),
        Expr::All(vec![exe("a"), Expr::Not(Box::new(Expr::Any(vec![exe("b"), exe("c")])))])
    );
    assert_eq!(expr("all of sel_* or _helper"), Expr::Any(vec![Expr::All(vec![exe("a"), exe("b")]), exe("c")]));
    // A list of conditions is any of them.
    assert_eq!(expr("[sel_a, sel_b]"), Expr::Any(vec![exe("a"), exe("b")]));
    // A selection that is a list of mappings is any of them.
    let text = "title: t\nid: list\nlogsource: {product: linux, category: process_creation}\ndetection:\n  \
                sel:\n    - Image: a\n      User: root\n    - Image: b\n  condition: sel\n";
    assert_eq!(
        matcher(&one(text)).expr,
        Expr::Any(vec![
            Expr::All(vec![exe("a"), pred(Field::CtxUser, text_test(TextOp::Equals, &["root"]))]),
            exe("b")
        ])
    );

    assert_rejected(&three("sel_a and sel_c"), 11, "`sel_c`, which is not a selection");
    assert_rejected(&three("1 of filter_*"), 11, "matches no selection");
    assert_rejected(&three("2 of sel_*"), 11, "`2 of` is not supported");
    assert_rejected(&three("sel_a | count() > 5"), 11, "aggregations");
    let problems = rejected(&three("sel_a | count() > 5"));
    assert!(problems[0].hint.as_deref().unwrap_or_default().contains("correlation"), "{problems:?}");
    assert_rejected(&three("(sel_a and sel_b"), 11, "not closed");
    assert_rejected(&three("sel_a and"), 11, "ends too early");
}

#[test]
fn unsupported_constructs_reject_their_rule_only() {
    let file = "title: good one
id: good-1
logsource: {product: linux, category: process_creation}
detection:
  selection:
    Image|endswith: /nc
  condition: selection
---
title: keywords
id: bad-keywords
logsource: {product: linux, category: process_creation}
detection:
  keywords:
    - 'nc -e'
  condition: keywords
---
title: windows
id: bad-product
logsource: {product: windows, category: process_creation}
detection:
  selection:
    Image: x
  condition: selection
---
title: good two
id: good-2
logsource: {product: linux, category: file_event}
detection:
  selection:
    TargetFilename: /etc/shadow
  filter:
    Image: ['/usr/sbin/unix_chkpwd', '*/passwd']
  condition: selection and not filter
---
title: field-less all
id: bad-all
logsource: {product: linux, service: auditd}
detection:
  selection:
    type: EXECVE
    '|all': [grep, password]
  timeframe: 5m
  condition: selection
---
title: syslog
id: bad-service
logsource: {product: linux, service: syslog}
detection:
  keywords: [x]
  condition: keywords
---
title: dns
id: bad-dns
logsource: {product: linux, category: network_connection}
detection:
  selection:
    Image: /usr/bin/curl
  dns:
    DestinationHostname: evil.example
  condition: selection or dns
";
    let (rules, problems) = load(file);
    let ids: Vec<&str> = rules.iter().map(|r| &*r.meta.id).collect();
    assert_eq!(ids, ["good-1", "good-2"]);
    let expect = [
        (14, "bad-keywords", "keyword search"),
        (19, "bad-product", "product `windows`"),
        (41, "bad-all", "keyword search"),
        (42, "bad-all", "`timeframe`"),
        (47, "bad-service", "log service `syslog`"),
        (59, "bad-dns", "no DNS names are collected"),
    ];
    for (line, id, reason) in expect {
        assert!(
            problems.iter().any(|p| p.line == line
                && p.rule_id.as_deref() == Some(id)
                && p.message.contains(reason)
                && p.file == Path::new("rules/test.yml")),
            "no problem {line} {id} {reason}: {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    let good2 = &rules[1];
    assert_eq!(good2.origin.line, 25);
    assert_eq!(
        matcher(good2).expr,
        Expr::All(vec![
            pred(Field::Path, text(TextOp::Equals, &["/etc/shadow"])),
            Expr::Not(Box::new(Expr::Any(vec![
                pred(Field::CtxExe, text(TextOp::Equals, &["/usr/sbin/unix_chkpwd"])),
                pred(Field::CtxExe, text(TextOp::Suffix, &["/passwd"])),
            ]))),
        ])
    );
    // Structural problems.
    let base = "title: t\nid: s\n";
    assert_rejected(&format!("{base}detection:\n  sel:\n    Image: x\n  condition: sel\n"), 1, "needs a `logsource`");
    assert_rejected(&format!("{base}logsource: {{product: linux}}\ndetection: {{condition: x}}\n"), 3, "no `category`");
    assert_rejected(
        &format!("{base}logsource: {{product: linux, category: dns}}\ndetection: {{condition: x}}\n"),
        3,
        "category `dns`",
    );
    let cat = "logsource: {product: linux, category: process_creation}\n";
    assert_rejected(&format!("{base}{cat}detection:\n  sel:\n    Image: x\n"), 5, "no `condition`");
    assert_rejected(&format!("{base}{cat}detection:\n  sel: {{}}\n  condition: sel\n"), 5, "empty selection");
    assert_rejected(&format!("{base}{cat}detection:\n  sel:\n  condition: sel\n"), 5, "empty selection");
    assert_rejected(&format!("{base}{cat}detection:\n  sel:\n    Image: []\n  condition: sel\n"), 6, "empty list");
    assert_rejected(
        &format!("{base}{cat}detection:\n  sel:\n    Image: {{a: b}}\n  condition: sel\n"),
        6,
        "not a mapping",
    );
    assert_rejected(&format!("{base}{cat}detection:\n  sel:\n    Image: x\n  condition: 3\n"), 7, "must be text");
    assert_rejected(
        &format!("title: [x]\nid: s\n{cat}detection:\n  sel:\n    Image: x\n  condition: sel\n"),
        1,
        "must be text",
    );
}

#[test]
fn non_mapping_and_mixed_documents() {
    let file: Arc<Path> = Arc::from(Path::new("x.yml"));
    let docs = yaml::parse("- a\n- b\n").expect("yaml");
    let mut loader = SigmaLoader::new();
    assert!(!SigmaLoader::is_sigma(Node::new(&docs[0])));
    loader.add_document(&file, Node::new(&docs[0]));
    let docs = yaml::parse("title: x\nid: both\ndetection: {}\ncorrelation: {}\n").expect("yaml");
    loader.add_document(&file, Node::new(&docs[0]));
    let (rules, problems) = loader.finish();
    assert!(rules.is_empty());
    assert!(problems.iter().any(|p| p.message.contains("must be a mapping")));
    assert!(problems.iter().any(|p| p.message.contains("not both")));
}
