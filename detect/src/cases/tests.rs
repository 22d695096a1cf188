//! Tests of the rule-case harness: the case format, its problems and the events it builds.

use std::path::Path;
use std::sync::Arc;

use pipeline::event::{FdKind, Lineage};
use pipeline::{Event, EventKind, Field, FieldValue};

use super::*;

fn one(text: &str) -> Case {
    let (mut cases, problems) = load_text(Path::new("cases/t.yml"), text);
    assert_eq!(problems, Vec::new());
    assert_eq!(cases.len(), 1);
    cases.remove(0)
}

#[test]
fn an_exec_gets_defaults_and_the_context_enrich_would_attach() {
    let case = one(
        "cases:\n  - name: n\n    rule: r\n    expect: fire\n    events:\n      - kind: process_exec\n        exe: /usr/bin/bash\n        argv: [bash, -i]\n        stdin_type: tcp\n      - kind: net_connect\n        dst_port: 4444\n        at: 2.5s\n",
    );
    assert_eq!((case.rule.as_deref(), case.expect, case.line), (Some("r"), Expect::Fire, 2));
    let events = case.events(0, 1_000 * SECOND, 7);
    let Event::ProcessExec(exec) = &events[0] else { panic!("exec") };
    assert_eq!((exec.meta.event_id, exec.meta.ts_ns), (7, 1_000 * SECOND));
    assert_eq!(exec.argv.joined(), "bash -i");
    assert_eq!(&*exec.comm, "bash");
    let attributes = exec.attributes.as_ref().expect("attributes");
    assert_eq!((attributes.stdio[0].kind, attributes.stdio[1].kind), (FdKind::Tcp, FdKind::Tty));
    assert_eq!(attributes.euid, 1000);
    let context = exec.context.as_ref().expect("context");
    let ancestry: Vec<&str> = context.ancestry.iter().map(|a| &*a.exe).collect();
    assert_eq!(ancestry, ["/usr/bin/bash", "/usr/sbin/sshd", "/usr/lib/systemd/systemd"]);
    assert_eq!(context.ancestry.last().map(|a| a.process.pid), Some(1));
    assert_eq!(exec.ppid, context.ancestry[0].process.pid);
    // The connect is the same process: same key, same exe in its context.
    let connect = &events[1];
    assert_eq!(connect.meta().ts_ns, 1_002_500_000_000);
    assert_eq!(connect.meta().event_id, 8);
    assert_eq!(connect.process(), Some(&exec.process));
    assert_eq!(connect.field(Field::CtxExe), Some(FieldValue::Str("/usr/bin/bash")));
    assert_eq!(connect.field(Field::ParentExe), Some(FieldValue::Str("/usr/bin/bash")));
    assert_eq!(connect.field(Field::DstPort), Some(FieldValue::Int(4444)));
    assert_eq!(connect.field(Field::Result), Some(FieldValue::Int(0)));
}

#[test]
fn a_parent_named_by_pid_takes_its_lineage_from_the_table() {
    let case = one(r#"
cases:
  - name: child of curl
    rule: any
    expect: silent
    events:
      - { kind: process_exec, pid: 100, exe: /usr/bin/curl, argv: [curl, -o, /tmp/x, "http://h/x"], parent: { pid: 50, exe: /usr/bin/bash, args: bash }, uid: 0 }
      - { kind: file_open, path: /tmp/x, flags: [O_WRONLY, O_CREAT, O_TRUNC] }
      - { kind: process_exec, pid: 101, exe: /tmp/x, parent: { pid: 100 } }
      - { kind: credential_change, pid: 101, new: { euid: 0 } }
      - { kind: namespace_change, pid: 101, ns_flags: [CLONE_NEWUSER, CLONE_NEWNS] }
"#);
    assert_eq!(case.rule, None);
    let events = case.events(3, 5_000 * SECOND, 1);
    // The file_open has no pid: the default pid, not curl's.
    assert_eq!(events[1].field(Field::Flags), Some(FieldValue::Int(0o1101)));
    let Event::ProcessExec(child) = &events[2] else { panic!("exec") };
    let context = child.context.as_ref().expect("context");
    let ancestry: Vec<(u32, &str, &str)> =
        context.ancestry.iter().map(|a| (a.process.pid, &*a.exe, &*a.args)).collect();
    assert_eq!(
        ancestry,
        [
            (100, "/usr/bin/curl", "curl -o /tmp/x http://h/x"),
            (50, "/usr/bin/bash", "bash"),
            (1, "/usr/lib/systemd/systemd", "/sbin/init splash")
        ]
    );
    assert_eq!(context.uid, 1000, "the child's uid is its own default, not curl's");
    let Event::ProcessExec(curl) = &events[0] else { panic!("exec") };
    assert_eq!(context.ancestry[0].process, curl.process);
    assert_eq!((curl.uid, curl.context.as_ref().map(|c| &*c.user)), (0, Some("root")));
    assert_eq!(events[3].field(Field::Euid), Some(FieldValue::Int(0)));
    assert_eq!(events[3].field(Field::OldEuid), Some(FieldValue::Int(1000)));
    assert_eq!(events[4].field(Field::NsFlags), Some(FieldValue::Int(0x1002_0000)));
}

#[test]
fn repeat_writes_copies_and_varies_numbers() {
    let case = one(
        "cases:\n  - name: scan\n    rule: r\n    expect: fire\n    events:\n      - { kind: process_exec, exe: /usr/bin/nc }\n      - kind: net_connect\n        dst_port: 20\n        repeat: { count: 5, every: 100ms, vary: [dst_port] }\n      - { kind: process_exit }\n",
    );
    let events = case.events(0, 1_000 * SECOND, 1);
    assert_eq!(events.len(), 7);
    let ports: Vec<_> = events[1..6].iter().map(|e| e.field(Field::DstPort)).collect();
    assert_eq!(ports, (20..25).map(|p| Some(FieldValue::Int(p))).collect::<Vec<_>>());
    let times: Vec<u64> = events.iter().map(|e| (e.meta().ts_ns - 1_000 * SECOND) / 1_000_000).collect();
    assert_eq!(times, [0, 1_000, 1_100, 1_200, 1_300, 1_400, 2_400]);
    assert_eq!(events[6].kind(), EventKind::ProcessExit);
    assert_eq!(case.span_ns(), 2_400_000_000);
}

#[test]
fn contexts_can_be_unknown_or_absent_and_attributes_left_out() {
    let case = one(
        "cases:\n  - name: c\n    rule: r\n    expect: silent\n    events:\n      - { kind: process_exec, pid: 5, context: unknown, attributes: 0 }\n      - { kind: file_open, pid: 6, context: none }\n",
    );
    let events = case.events(0, 1_000 * SECOND, 1);
    assert_eq!(events[0].context().map(|c| c.lineage), Some(Lineage::ProcessUnknown));
    assert_eq!(events[0].field(Field::Euid), None);
    assert!(events[1].context().is_none());
}

#[test]
fn problems_carry_their_lines() {
    let text = r#"
cases:
  - name: bad
    rule: r
    expect: maybe
    events:
      - kind: process_bogus
      - kind: net_connect
        dst_addr: not-an-ip
        colour: red
      - kind: process_exec
        stdin_type: carrier-pigeon
        at: soon
      - kind: file_change
        file_op: shred
  - rule: r
    expect: fire
    events: []
  - name: good
    rule: r
    expect: fire
    events: [{ kind: process_exit }]
"#;
    let (cases, problems) = load_text(Path::new("cases/t.yml"), text);
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    for (line, needle) in [
        (3, "unknown expectation `maybe`"),
        (7, "cannot build `process_bogus`"),
        (9, "not an IP address"),
        (10, "unknown key `colour`"),
        (12, "not an fd kind"),
        (13, "not a duration"),
        (15, "file_op"),
        (16, "a case needs `name`"),
        (16, "at least one event"),
    ] {
        assert!(
            problems.iter().any(|p| p.line == line && p.to_string().contains(needle)),
            "no problem at line {line} containing {needle:?}: {shown:#?}"
        );
    }
    assert!(shown[0].starts_with("cases/t.yml:"), "{}", shown[0]);
    assert_eq!(cases.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["good"]);
    let (_, problems) = load_text(Path::new("x.yml"), "cases: [\n");
    assert!(problems[0].message.contains("not valid YAML"), "{problems:?}");
}

#[test]
fn case_events_are_spread_apart_with_unique_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = "cases:\n  - name: a\n    rule: r\n    expect: fire\n    events: [{ kind: process_exec }, { kind: process_exit, at: 30s }]\n  - name: b\n    rule: r\n    expect: silent\n    events: [{ kind: process_exec }]\n";
    std::fs::write(dir.path().join("a.yml"), cases).expect("write");
    std::fs::write(dir.path().join("b.yml"), cases).expect("write");
    let events = case_events(dir.path()).expect("loads");
    assert_eq!(events.len(), 6);
    let ids: Vec<u64> = events.iter().map(|e| e.meta().event_id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    for pair in events.windows(2) {
        assert!(pair[1].meta().ts_ns > pair[0].meta().ts_ns);
    }
    assert_eq!(events[2].meta().ts_ns - events[1].meta().ts_ns, CASE_GAP_NS);
    // Default pids differ between cases, so replays never mix processes.
    assert_ne!(events[0].process(), events[2].process());
    std::fs::write(dir.path().join("c.yml"), "cases:\n  - name: x\n").expect("write");
    let problems = case_events(dir.path()).expect_err("bad file");
    assert!(problems.iter().all(|p| p.file.ends_with("c.yml")), "{problems:?}");
}

#[test]
fn cases_run_against_a_rule_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    let cases = dir.path().join("cases");
    std::fs::create_dir_all(&rules).expect("mkdir");
    std::fs::create_dir_all(&cases).expect("mkdir");
    std::fs::write(
        rules.join("r.yml"),
        "rules:\n  - id: shell-socket\n    title: t\n    severity: high\n    confidence: very_high\n    exceptions: { lineage: [/usr/bin/apt*] }\n    match: { kind: process_exec, exe: { suffix: /bash }, stdin_type: [tcp, udp] }\n",
    )
    .expect("write");
    std::fs::write(
        cases.join("c.yml"),
        r#"
cases:
  - { name: fires, rule: shell-socket, expect: fire, events: [{ kind: process_exec, exe: /bin/bash, stdin_type: tcp }] }
  - { name: quiet, rule: shell-socket, expect: silent, events: [{ kind: process_exec, exe: /bin/bash }] }
  - name: excepted
    rule: any
    expect: silent
    events: [{ kind: process_exec, exe: /bin/bash, stdin_type: tcp, parent: { exe: /usr/bin/apt-get } }]
  - { name: wrong, rule: shell-socket, expect: fire, events: [{ kind: process_exec, exe: /bin/sh }] }
  - { name: unknown rule, rule: nope, expect: silent, events: [{ kind: process_exit }] }
"#,
    )
    .expect("write");
    let loaded = crate::ruleset::load(&rules);
    let set = Arc::new(loaded.set.expect("rules load"));
    let report = run_cases(set, &cases);
    assert!(report.problems.is_empty(), "{report}");
    let failed: Vec<(&str, &str)> =
        report.failures().map(|r| (r.name.as_str(), r.failure.as_deref().unwrap_or_default())).collect();
    assert_eq!(
        failed,
        [("wrong", "expected the rule to fire; it did not"), ("unknown rule", "no rule `nope` in the set")]
    );
    assert_eq!(report.results[0].fired, ["shell-socket"]);
    assert!(!report.passed());
    assert!(report.to_string().ends_with("5 cases, 3 passed, 2 failed, 0 problems"), "{report}");
}
