//! The default rule pack (`rules/linux`) against its cases (`rules/cases`):
//! it loads without a problem, every enabled rule has a case that must fire
//! and one that must stay silent, every case passes, and the benign admin
//! corpus fires no rule at all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use detect::cases::{events_of, load_cases, run_cases, Expect, CASE_GAP_NS};
use detect::engine::Engine;
use detect::l2::L2Config;
use detect::RuleSet;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pack() -> Arc<RuleSet> {
    let loaded = detect::ruleset::load(&repo().join("rules/linux"));
    let problems: Vec<String> = loaded.problems().map(ToString::to_string).collect();
    assert!(problems.is_empty(), "the pack has problems:\n{}", problems.join("\n"));
    Arc::new(loaded.set.expect("the pack compiles"))
}

#[test]
fn the_pack_loads_without_a_problem() {
    let set = pack();
    assert!(set.rules.len() >= 40, "{} rules", set.rules.len());
    for rule in &set.rules {
        assert!(rule.meta.id.starts_with("hf-linux-"), "{}", rule.meta.id);
        assert!(!rule.meta.attack.is_empty(), "{} has no ATT&CK id", rule.meta.id);
        assert!(!rule.meta.description.is_empty(), "{} has no description", rule.meta.id);
    }
}

#[test]
fn every_enabled_rule_has_a_firing_and_a_silent_case() {
    let set = pack();
    let (cases, problems) = load_cases(&repo().join("rules/cases"));
    assert!(problems.is_empty(), "{problems:#?}");
    let with = |expect: Expect| -> BTreeSet<&str> {
        cases.iter().filter(|c| c.expect == expect).filter_map(|c| c.rule.as_deref()).collect()
    };
    let (fire, silent) = (with(Expect::Fire), with(Expect::Silent));
    let mut missing = Vec::new();
    for rule in set.rules.iter().filter(|r| r.meta.enabled) {
        if !fire.contains(&*rule.meta.id) {
            missing.push(format!("{}: no `expect: fire` case", rule.meta.id));
        }
        if !silent.contains(&*rule.meta.id) {
            missing.push(format!("{}: no `expect: silent` case", rule.meta.id));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn every_case_passes() {
    let report = run_cases(pack(), &repo().join("rules/cases"));
    assert!(report.results.len() >= 100, "{} cases", report.results.len());
    assert!(report.passed(), "{report}");
}

#[test]
fn the_benign_admin_corpus_fires_nothing() {
    let file = repo().join("rules/cases/benign_admin.yml");
    let (cases, problems) = load_cases(&file);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(cases.len() >= 7, "{} benign cases", cases.len());
    for case in &cases {
        assert_eq!(
            (case.rule.as_deref(), case.expect),
            (None, Expect::Silent),
            "{}: rule any, expect silent",
            case.name
        );
    }
    let report = run_cases(pack(), &file);
    assert!(report.passed(), "{report}");
    assert!(report.results.iter().all(|r| r.fired.is_empty()));
}

#[test]
fn the_corpus_replays_as_one_stream_with_the_same_outcome() {
    // What the end-to-end replay through the binary sees: every case's
    // events in one stream through one engine. Cases are far enough apart
    // that no L2 window joins two of them, so each firing belongs to the
    // case whose events it rests on.
    let set = pack();
    let (cases, _) = load_cases(&repo().join("rules/cases"));
    let events = events_of(&cases);
    let ids: BTreeSet<u64> = events.iter().map(|e| e.meta().event_id).collect();
    assert_eq!(ids.len(), events.len(), "event ids are unique");
    let mut engine = Engine::new(set.clone(), L2Config::default());
    let mut firings = Vec::new();
    for event in &events {
        engine.process(event, &mut firings);
    }
    engine.flush(u64::MAX, &mut firings);
    let mut owner = Vec::new();
    let mut first = 1;
    for case in &cases {
        owner.push((first, first + case.event_count() as u64));
        first += case.event_count() as u64;
    }
    let mut fired: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); cases.len()];
    for firing in &firings {
        let id = firing.event_ids[0];
        let case = owner.iter().position(|(a, b)| (*a..*b).contains(&id)).expect("a case's event");
        assert!(firing.event_ids.iter().all(|e| (owner[case].0..owner[case].1).contains(e)), "one case per firing");
        fired[case].insert(&set.rules[firing.rule].meta.id);
    }
    for (case, fired) in cases.iter().zip(&fired) {
        let hit = match &case.rule {
            Some(rule) => fired.contains(rule.as_str()),
            None => !fired.is_empty(),
        };
        assert_eq!(
            hit,
            case.expect == Expect::Fire,
            "{}:{} {}: fired {fired:?}",
            case.file.display(),
            case.line,
            case.name
        );
    }
    // Each case starts at least CASE_GAP_NS after the last event of the one before.
    for pair in owner.windows(2) {
        let ts =
            |range: (u64, u64)| events[(range.0 - 1) as usize..(range.1 - 1) as usize].iter().map(|e| e.meta().ts_ns);
        let (last, next) = (ts(pair[0]).max().unwrap_or(0), ts(pair[1]).min().unwrap_or(u64::MAX));
        assert!(next >= last + CASE_GAP_NS, "cases {pair:?} are {} ns apart", next.saturating_sub(last));
    }
}

#[test]
fn two_rules_matching_one_event_both_fire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    let cases = dir.path().join("cases");
    std::fs::create_dir_all(&rules).expect("mkdir");
    std::fs::create_dir_all(&cases).expect("mkdir");
    std::fs::write(
        rules.join("two.yml"),
        r#"
rules:
  - id: broad
    title: any shell
    severity: low
    confidence: low
    attack: [T1059.004]
    match: { kind: process_exec, exe: { suffix: [/bash, /sh] } }
  - id: narrow
    title: shell with a socket stdin
    severity: critical
    confidence: very_high
    attack: [T1059.004]
    match: { kind: process_exec, exe: { suffix: /bash }, stdin_type: tcp }
  - id: later-l2
    title: two shells in a lineage
    severity: low
    confidence: low
    count: { match: { kind: process_exec, exe: { suffix: /bash } }, group_by: [lineage], more_than: 1, within: 10s }
"#,
    )
    .expect("write");
    std::fs::write(
        cases.join("c.yml"),
        r#"
cases:
  - name: both L1 rules fire on one exec
    rule: narrow
    expect: fire
    events:
      - { kind: process_exec, pid: 10, exe: /usr/bin/bash, stdin_type: tcp }
      - { kind: process_exec, pid: 11, exe: /usr/bin/bash, stdin_type: tcp }
"#,
    )
    .expect("write");
    let loaded = detect::ruleset::load(&rules);
    let set = Arc::new(loaded.set.expect("loads"));
    let report = run_cases(set.clone(), &cases);
    assert!(report.passed(), "{report}");
    assert_eq!(report.results[0].fired, ["broad", "later-l2", "narrow"]);
    // On the one event: both L1 rules, in rule order, each resting on it.
    let (found, _) = load_cases(&cases);
    let events = events_of(&found);
    let mut engine = Engine::new(set.clone(), L2Config::default());
    let mut firings = Vec::new();
    engine.process(&events[0], &mut firings);
    let ids: Vec<(&str, &[u64])> =
        firings.iter().map(|f| (&*set.rules[f.rule].meta.id, f.event_ids.as_slice())).collect();
    assert_eq!(ids, [("broad", &[1][..]), ("narrow", &[1][..])]);
}

/// Whether the expression tests an exact indicator: an IOC set lookup or
/// an exact SHA-256.
fn has_exact_indicator(expr: &detect::rule::Expr) -> bool {
    use detect::rule::{Expr, Target, Test, TextOp};
    match expr {
        Expr::All(list) | Expr::Any(list) => list.iter().any(has_exact_indicator),
        Expr::Not(_) => false,
        Expr::Pred(pred) => match &pred.test {
            Test::InSet(_) => true,
            Test::Text { op: TextOp::Equals, .. } => {
                matches!(pred.target, Target::Field(f) if f.as_str().contains("sha256"))
            }
            _ => false,
        },
    }
}

/// README "Confidence classes": what each class promises, held for every
/// rule of the pack. `definite`: an exact indicator (IOC set or SHA-256) in
/// a single-event rule. `very_high`: evidence to act on automatically —
/// never an anomaly score, severity high or critical, a kill chain of at
/// least four stages when it is one, and at least two benign twins (silent
/// cases). `high`: not an anomaly score. L3 anomaly rules are `medium` or
/// `low`.
#[test]
fn confidence_classes_follow_the_documented_rule() {
    use detect::rule::Body;
    use pipeline::{Confidence, Severity};
    let set = pack();
    let (cases, _) = load_cases(&repo().join("rules/cases"));
    let mut broken = Vec::new();
    for rule in &set.rules {
        let (id, confidence) = (&*rule.meta.id, rule.meta.confidence);
        let silent = cases.iter().filter(|c| c.expect == Expect::Silent && c.rule.as_deref() == Some(id)).count();
        match (&rule.body, confidence) {
            (Body::Anomaly(_), c) if c > Confidence::Medium => broken.push(format!("{id}: L3 anomaly above medium")),
            (Body::Indicator(m), Confidence::Definite) if !has_exact_indicator(&m.expr) => {
                broken.push(format!("{id}: definite without an exact indicator"))
            }
            (Body::Indicator(_), Confidence::Definite) => {}
            (_, Confidence::Definite) => broken.push(format!("{id}: definite is for single-event indicators")),
            (body, Confidence::VeryHigh) => {
                if rule.meta.severity < Severity::High {
                    broken.push(format!("{id}: very_high below severity high"));
                }
                if silent < 2 {
                    broken.push(format!("{id}: very_high with {silent} benign twin(s); needs two"));
                }
                if let Body::Chain(chain) = body {
                    if chain.stages.len() < 4 {
                        broken.push(format!("{id}: very_high chain of {} stages", chain.stages.len()));
                    }
                }
            }
            _ => {}
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
