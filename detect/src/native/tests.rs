//! Tests of the native rule front end: every body, and every problem at once with its line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::yaml::{parse, Node, Problems};

fn load(text: &str) -> (Loaded, Vec<crate::Problem>) {
    let path = PathBuf::from("rules/test.yml");
    let file: Arc<Path> = Arc::from(path.as_path());
    let docs = parse(text).expect("yaml");
    let mut problems = Problems::new(&path);
    let loaded = load_document(&file, Node::new(&docs[0]), &mut problems);
    (loaded, problems.list)
}

const GOOD: &str = r#"
rules:
  - id: hf-test-shell-from-tmp
    title: Shell started from /tmp
    description: a test rule
    severity: high
    confidence: very_high
    attack: [t1059.004]
    tags: [execution]
    exceptions:
      exe: [/usr/bin/ok]
      lineage: [/usr/bin/apt*]
    match:
      kind: process_exec
      exe: { prefix: /tmp/, suffix: [sh, bash] }
      any:
        - cmdline: { contains: [curl, wget], cased: false }
        - stdin_type: tcp
      not:
        uid: 0
  - id: hf-test-count
    title: Many ports
    severity: medium
    confidence: medium
    count:
      match: { kind: net_connect, dst_addr: { cidr: [10.0.0.0/8] } }
      distinct: dst_port
      more_than: 50
      within: 10s
  - id: hf-test-seq
    title: Download then run
    severity: high
    confidence: high
    sequence:
      within: 30s
      group_by: [lineage]
      steps:
        - match: { kind: file_open, path: { prefix: /tmp/ } }
        - match: { kind: process_exec, exe: { prefix: /tmp/ } }
          relation: descendant
"#;

#[test]
fn a_good_file_loads_every_body() {
    let (loaded, problems) = load(GOOD);
    assert_eq!(problems, Vec::new());
    assert_eq!(loaded.rules.len(), 3);
    let first = &loaded.rules[0];
    assert_eq!(&*first.meta.id, "hf-test-shell-from-tmp");
    assert_eq!(first.meta.attack, vec![Arc::<str>::from("T1059.004")]);
    assert_eq!(first.meta.exceptions.lineage.len(), 1);
    assert_eq!(first.origin.line, 3);
    let Body::Indicator(m) = &first.body else { panic!("L1") };
    assert!(m.kinds.contains(EventKind::ProcessExec) && !m.kinds.contains(EventKind::NetConnect));
    let Body::Count(count) = &loaded.rules[1].body else { panic!("count") };
    assert_eq!((count.more_than, count.within_ns), (50, 10_000_000_000));
    assert_eq!(count.distinct, Some(Target::Field(Field::DstPort)));
    let Body::Sequence(seq) = &loaded.rules[2].body else { panic!("sequence") };
    assert_eq!(seq.steps[1].relation, Relation::Descendant);
    assert_eq!(seq.group_by, vec![GroupKey::Lineage]);
}

#[test]
fn every_problem_is_reported_at_once_with_line_and_rule() {
    let text = r#"
rules:
  - id: bad-one
    title: t
    severity: severe
    confidence: sure
    attack: [X1]
    colour: red
    match:
      kind: process_bogus
      nosuchfield: 1
      exe: { regex: "(unclosed" }
      uid: { prefix: x }
      dst_addr: { cidr: 10.0.0.1/8 }
  - id: bad-two
    title: t
    severity: low
    confidence: low
    sequence:
      within: 0s
      steps:
        - match: { kind: process_exec }
  - id: good
    title: fine
    severity: low
    confidence: low
    match: { kind: process_exec, exe: /bin/true }
"#;
    let (loaded, problems) = load(text);
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let has = |line: usize, needle: &str| {
        assert!(
            problems.iter().any(|p| p.line == line && p.to_string().contains(needle)),
            "no problem at line {line} containing {needle:?}: {shown:#?}"
        )
    };
    has(5, "severity");
    has(6, "confidence");
    has(7, "ATT&CK");
    has(8, "unknown key `colour`");
    has(10, "unknown event kind `process_bogus`");
    has(11, "unknown field `nosuchfield`");
    has(12, "regex does not compile");
    has(13, "does not apply");
    has(14, "host bits");
    has(20, "longer than 0");
    assert!(problems.iter().any(|p| p.rule_id.as_deref() == Some("bad-two") && p.message.contains("at least two")));
    assert!(problems.iter().all(|p| p.file == Path::new("rules/test.yml")));
    assert!(shown[0].starts_with("rules/test.yml:"), "{}", shown[0]);
    // The good rule still loads; the bad ones do not, not even in part.
    assert_eq!(loaded.rules.iter().map(|r| &*r.meta.id).collect::<Vec<_>>(), vec!["good"]);
}

#[test]
fn ioc_sets_load_inline_and_from_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hashes.txt"), format!("# comment\n{}\n\n", "ab".repeat(32))).expect("write");
    let path = dir.path().join("iocs.yml");
    let text = "ioc_sets:\n  - name: bad-hashes\n    kind: sha256\n    file: hashes.txt\n  - name: bad-ips\n    kind: ip\n    values: [203.0.113.0/24, 198.51.100.7]\n  - name: broken\n    kind: ip\n    values: [300.1.1.1]\n";
    let file: Arc<Path> = Arc::from(path.as_path());
    let docs = parse(text).expect("yaml");
    let mut problems = Problems::new(&path);
    let loaded = load_document(&file, Node::new(&docs[0]), &mut problems);
    assert_eq!(loaded.ioc_sets.len(), 2, "{:?}", problems.list);
    assert_eq!(loaded.ioc_sets[0].values.len(), 1);
    assert_eq!(problems.list.len(), 1);
    assert_eq!(problems.list[0].line, 8);
}

#[test]
fn technique_ids() {
    assert!(valid_technique("T1059"));
    assert!(valid_technique("T1059.004"));
    assert!(!valid_technique("T105"));
    assert!(!valid_technique("TA0001"));
}
