//! Tests of the detect transform: every match fires, exceptions, swaps between batches, determinism.

use std::sync::Arc;

use pipeline::event::{Ancestor, Argv, Lineage, ProcessContext, ProcessExec};
use pipeline::{Event, EventMeta, Output, ProcessKey, Transform};

use super::*;

const RULES: &str = r#"
rules:
  - id: hf-test-tmp-exec
    title: Exec from /tmp
    severity: high
    confidence: high
    attack: [T1059]
    match: { kind: process_exec, exe: { prefix: /tmp/ } }
  - id: hf-test-curl
    title: curl anywhere
    severity: low
    confidence: low
    match: { kind: process_exec, cmdline: { contains: curl } }
  - id: hf-test-excepted
    title: Silenced under apt
    severity: low
    confidence: low
    exceptions: { lineage: [/usr/bin/apt*] }
    match: { kind: process_exec, exe: { suffix: /x } }
"#;

fn exec(id: u64, exe: &str, args: &[&str], parent: &str) -> Event {
    let argv = Argv::from_args(args.iter().copied());
    Event::ProcessExec(ProcessExec {
        meta: EventMeta { ts_ns: id * 1_000, event_id: id },
        process: ProcessKey { pid: 100 + id as u32, start_time_ns: id },
        ppid: 1,
        uid: 1000,
        gid: 1000,
        cgroup_id: 0,
        comm: "x".into(),
        exe: exe.into(),
        argv: argv.clone(),
        argv_truncated: false,
        attributes: None,
        context: Some(Arc::new(ProcessContext {
            exe: exe.into(),
            argv,
            ancestry: vec![Ancestor {
                process: ProcessKey { pid: 1, start_time_ns: 0 },
                exe: parent.into(),
                args: "".into(),
            }],
            lineage: Lineage::Complete,
            ..ProcessContext::unknown()
        })),
    })
}

fn detect(dir: &std::path::Path, pass_through: bool) -> Detect {
    let config: DetectConfig = toml::from_str(&format!(
        "rules = {:?}\nwatch = false\npass_through = {pass_through}\n",
        dir.display().to_string()
    ))
    .expect("config");
    let set = crate::ruleset::load(dir).set.expect("rules load");
    Detect::new(config, Arc::new(set), "detect")
}

fn detections(events: &[Event]) -> Vec<&pipeline::Detection> {
    events.iter().filter_map(|e| if let Event::Detection(d) = e { Some(d) } else { None }).collect()
}

fn run(transform: &mut Detect, batch: Vec<Event>) -> (Vec<Event>, u64) {
    let mut out = Output::default();
    transform.process(batch, &mut out);
    transform.flush(&mut out);
    let discarded = out.take_discarded().iter().sum();
    (out.take_events(), discarded)
}

#[test]
fn every_matching_rule_fires_with_its_metadata_and_inputs_pass_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("r.yml"), RULES).expect("write");
    let mut transform = detect(dir.path(), true);
    let batch =
        vec![exec(1, "/tmp/a", &["a", "curl", "x"], "/bin/bash"), exec(2, "/usr/bin/true", &["true"], "/bin/bash")];
    let (events, discarded) = run(&mut transform, batch);
    assert_eq!(discarded, 0);
    assert_eq!(events.len(), 4, "two detections, then both inputs");
    let found = detections(&events);
    // No shadowing: one event, two rules, two detections, in rule order.
    let ids: Vec<&str> = found.iter().map(|d| &*d.rule_id).collect();
    assert_eq!(ids, vec!["hf-test-tmp-exec", "hf-test-curl"]);
    let first = found[0];
    assert_eq!(first.event_ids, vec![1]);
    assert_eq!(first.process, ProcessKey { pid: 101, start_time_ns: 1 });
    assert_eq!(&*first.title, "Exec from /tmp");
    assert_eq!(first.attack, vec![Arc::<str>::from("T1059")]);
    assert_eq!(first.layer, pipeline::DetectionLayer::L1);
    assert_eq!(first.severity, pipeline::Severity::High);
    assert_eq!(&*first.event_kind, "process_exec");
    assert!(first.summary.contains("/tmp/a"), "{}", first.summary);
    assert_eq!(first.ruleset.len(), 16);
    assert!(first.context.as_ref().is_some_and(|c| &*c.exe == "/tmp/a"));
}

#[test]
fn exceptions_silence_and_detections_only_mode_counts_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("r.yml"), RULES).expect("write");
    let mut transform = detect(dir.path(), false);
    let batch = vec![exec(1, "/opt/x", &["x"], "/usr/bin/apt-get"), exec(2, "/opt/x", &["x"], "/bin/bash")];
    let (events, discarded) = run(&mut transform, batch);
    assert_eq!(discarded, 2, "inputs not passed on are counted");
    let found = detections(&events);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].event_ids, vec![2]);
    assert_eq!(transform.engine.excepted, 1);
}

#[test]
fn an_applied_set_takes_over_between_batches_and_output_is_deterministic() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("r.yml"), RULES).expect("write");
    let mut transform = detect(dir.path(), false);
    let (before, _) = run(&mut transform, vec![exec(1, "/usr/bin/wget", &["wget"], "/bin/sh")]);
    assert!(detections(&before).is_empty());
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        other.path().join("r.yml"),
        "rules:\n  - id: hf-test-wget\n    title: wget\n    severity: low\n    confidence: low\n    match: { kind: process_exec, exe: { suffix: /wget } }\n",
    )
    .expect("write");
    let set = crate::ruleset::load(other.path()).set.expect("loads");
    let digest = set.digest.clone();
    let mut out = Output::default();
    transform.apply(Box::new(Arc::new(set)), &mut out);
    let (after, _) = run(&mut transform, vec![exec(2, "/usr/bin/wget", &["wget"], "/bin/sh")]);
    let found = detections(&after);
    assert_eq!(found.len(), 1);
    assert_eq!((&*found[0].rule_id, &found[0].ruleset), ("hf-test-wget", &digest));
    // An update of the wrong type is refused and the set kept.
    transform.apply(Box::new(42u32), &mut out);
    assert_eq!(transform.engine.set().digest, digest);

    // The same input through two fresh transforms: identical detections.
    let input = || {
        (1..50).map(|i| exec(i, if i % 3 == 0 { "/tmp/z" } else { "/bin/ls" }, &["ls", "curl"], "/bin/sh")).collect()
    };
    let mut a = detect(dir.path(), false);
    let mut b = detect(dir.path(), false);
    let (ra, _) = run(&mut a, input());
    let (rb, _) = run(&mut b, input());
    assert_eq!(format!("{ra:?}"), format!("{rb:?}"));
    assert_eq!(detections(&ra).len(), 16 + 49);
}

#[test]
fn a_bad_rule_directory_fails_the_build_with_its_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bad.yml"), "rules:\n  - id: x\n    title: t\n    severity: nope\n").expect("write");
    let loaded = crate::ruleset::load(dir.path());
    assert!(loaded.set.is_none());
    let text: Vec<String> = loaded.problems().map(ToString::to_string).collect();
    assert!(text.iter().any(|t| t.contains("bad.yml:4: rule `x`: `severity` must be one of")), "{text:#?}");
}
