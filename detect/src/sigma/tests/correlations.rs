//! Sigma correlations: each type, group-by mapping, and the problems.

use std::path::Path;
use std::sync::Arc;

use pipeline::{Confidence, Field, Severity};

use super::{arc, kind_check, load, load_files, matcher};
use crate::problem::Problem;
use crate::rule::{Body, Count, Expr, GroupKey, KindSet, Match, Relation, Rule, Sequence, Target};

/// Base rules for the correlation tests, in their own file.
const BASE: &str = "title: recon command
id: base-recon
name: recon
logsource: {product: linux, category: process_creation}
detection:
  selection:
    Image|endswith: [/id, /whoami, /uname]
  condition: selection
---
title: outbound
id: base-connect
name: connect
logsource: {product: linux, category: network_connection}
detection:
  selection:
    Initiated: 'true'
  condition: selection
---
title: file write
id: base-file
logsource: {product: linux, category: file_event}
detection:
  selection:
    TargetFilename|startswith: /tmp/
  condition: selection
";

fn correlate(correlation: &str) -> (Vec<Rule>, Vec<Problem>) {
    load_files(&[("rules/base.yml", BASE), ("rules/correlation.yml", correlation)])
}

fn base_matcher(id: &str) -> Match {
    let (rules, _) = load_files(&[("rules/base.yml", BASE)]);
    matcher(rules.iter().find(|r| &*r.meta.id == id).expect("base")).clone()
}

#[test]
fn event_count_correlation() {
    let (rules, problems) = correlate(
        "title: recon burst
id: corr-count
level: high
tags: [attack.t1033]
correlation:
  type: event_count
  rules: [recon]
  group-by: [User, ComputerName]
  timespan: 30s
  condition: {gte: 10}
",
    );
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(rules.len(), 4);
    let corr = rules.iter().find(|r| &*r.meta.id == "corr-count").expect("loaded");
    assert_eq!(corr.body.layer(), pipeline::DetectionLayer::L2);
    assert_eq!((corr.meta.severity, corr.meta.confidence), (Severity::High, Confidence::High));
    assert_eq!(corr.meta.attack, arc(&["T1033"]));
    assert_eq!(corr.origin.file, Arc::<Path>::from(Path::new("rules/correlation.yml")));
    assert_eq!(
        corr.body,
        Body::Count(Count {
            matcher: base_matcher("base-recon"),
            group_by: vec![GroupKey::Field(Target::Field(Field::CtxUser))],
            distinct: None,
            more_than: 9,
            within_ns: 30_000_000_000,
        })
    );
    // The referenced rule is a part: it does not fire alone; others do.
    let enabled = |id: &str| rules.iter().find(|r| &*r.meta.id == id).expect("rule").meta.enabled;
    assert!(!enabled("base-recon") && enabled("base-connect") && enabled("base-file"));
}

#[test]
fn value_count_correlation_and_merged_rules() {
    let (rules, problems) = correlate(
        "title: port scan
id: corr-ports
correlation:
  type: value_count
  rules: [base-connect]
  group-by: [Image]
  timespan: 10s
  condition:
    field: DestinationPort
    gt: 50
",
    );
    assert!(problems.is_empty(), "{problems:#?}");
    let corr = rules.iter().find(|r| &*r.meta.id == "corr-ports").expect("loaded");
    assert_eq!(
        corr.body,
        Body::Count(Count {
            matcher: base_matcher("base-connect"),
            group_by: vec![GroupKey::Field(Target::Field(Field::CtxExe))],
            distinct: Some(Target::Field(Field::DstPort)),
            more_than: 50,
            within_ns: 10_000_000_000,
        })
    );
    // Two rules of different kinds are counted together, each under its
    // kind check.
    let (rules, problems) = correlate(
        "title: busy
id: corr-two
correlation:
  type: event_count
  rules: [base-connect, base-file]
  group-by: [User]
  timespan: 1m
  condition: {gt: 3}
",
    );
    assert!(problems.is_empty(), "{problems:#?}");
    let corr = rules.iter().find(|r| &*r.meta.id == "corr-two").expect("loaded");
    let (connect, file) = (base_matcher("base-connect"), base_matcher("base-file"));
    let Body::Count(count) = &corr.body else { panic!("{:?}", corr.body) };
    assert_eq!(count.matcher.kinds, KindSet(connect.kinds.0 | file.kinds.0));
    assert_eq!(
        count.matcher.expr,
        Expr::Any(vec![
            Expr::All(vec![kind_check(&["net_connect"]), connect.expr]),
            Expr::All(vec![kind_check(&["file_open", "file_change"]), file.expr]),
        ])
    );
    assert_eq!(count.more_than, 3);
}

#[test]
fn temporal_correlations() {
    let (rules, problems) = correlate(
        "title: recon then connect
id: corr-temporal
correlation:
  type: temporal
  rules: [recon, connect]
  timespan: 5m
  generate: true
",
    );
    assert!(problems.is_empty(), "{problems:#?}");
    let corr = rules.iter().find(|r| &*r.meta.id == "corr-temporal").expect("loaded");
    let step = |id| crate::rule::Step { matcher: base_matcher(id), relation: Relation::Any };
    assert_eq!(
        corr.body,
        Body::Sequence(Sequence {
            group_by: vec![GroupKey::Lineage],
            within_ns: 300_000_000_000,
            ordered: false,
            steps: vec![step("base-recon"), step("base-connect")],
        })
    );
    // generate: true lets the parts fire alone too.
    assert!(rules.iter().all(|r| r.meta.enabled));

    let (rules, problems) = correlate(
        "title: write then recon
name: corr-ordered
correlation:
  type: temporal_ordered
  rules: [base-file, recon]
  group-by: [Lineage, ProcessGuid, User]
  timespan: 1h
  condition: {gte: 2}
",
    );
    assert!(problems.is_empty(), "{problems:#?}");
    let corr = rules.iter().find(|r| &*r.meta.id == "corr-ordered").expect("loaded");
    assert_eq!(
        corr.body,
        Body::Sequence(Sequence {
            group_by: vec![GroupKey::Lineage, GroupKey::Process, GroupKey::Field(Target::Field(Field::CtxUser))],
            within_ns: 3_600_000_000_000,
            ordered: true,
            steps: vec![step("base-file"), step("base-recon")],
        })
    );
    let enabled = |id: &str| rules.iter().find(|r| &*r.meta.id == id).expect("rule").meta.enabled;
    assert!(!enabled("base-file") && !enabled("base-recon") && enabled("base-connect"));
}

#[test]
fn correlation_problems() {
    let corr = |body: &str| format!("title: c\nid: corr-bad\ncorrelation:\n{body}");
    let cases: &[(&str, usize, &str)] = &[
        ("  type: event_count\n  rules: [recon]\n  timespan: 1m\n  condition: {lt: 5}\n", 7, "`lt`"),
        ("  type: event_count\n  rules: [recon]\n  timespan: 1m\n  condition: {gte: 1}\n", 7, "single event"),
        ("  type: event_count\n  rules: [recon]\n  timespan: 1m\n", 4, "needs a `condition`"),
        ("  type: value_count\n  rules: [recon]\n  timespan: 1m\n  condition: {gt: 5}\n", 7, "needs `field`"),
        ("  type: value_sum\n  rules: [recon]\n  timespan: 1m\n  condition: {gt: 5}\n", 4, "`value_sum` is not supported"),
        ("  type: event_count\n  rules: [nope]\n  timespan: 1m\n  condition: {gt: 5}\n", 5, "no Sigma rule has the id or name `nope`"),
        ("  type: event_count\n  rules: [recon]\n  timespan: 2d\n  condition: {gt: 5}\n", 6, "longer than a day"),
        ("  type: event_count\n  rules: [recon]\n  timespan: 5x\n  condition: {gt: 5}\n", 6, "duration unit"),
        ("  type: temporal\n  rules: [recon]\n  timespan: 5m\n", 4, "at least two rules"),
        ("  type: temporal\n  rules: [recon, connect]\n  timespan: 5m\n  condition: {gte: 1}\n", 7, "every named rule"),
        (
            "  type: temporal\n  rules: [recon, connect]\n  timespan: 5m\n  aliases: {ip: {recon: a, connect: b}}\n",
            7,
            "`aliases`",
        ),
        ("  type: event_count\n  rules: [recon]\n  group_by: [User]\n  timespan: 1m\n  condition: {gt: 5}\n", 6, "unknown key `group_by`"),
        (
            "  type: event_count\n  rules: [connect]\n  group-by: [DestinationHostname]\n  timespan: 1m\n  condition: {gt: 5}\n",
            6,
            "no DNS names",
        ),
        (
            "  type: temporal\n  rules: [recon, connect]\n  group-by: [Image]\n  timespan: 1m\n",
            6,
            "different fields",
        ),
        (
            "  type: event_count\n  rules: [connect]\n  group-by: [Initiated]\n  timespan: 1m\n  condition: {gt: 5}\n",
            6,
            "selects event kinds",
        ),
    ];
    for (body, line, reason) in cases {
        let (rules, problems) = correlate(&corr(body));
        assert_eq!(rules.len(), 3, "{body}: {rules:#?}");
        assert!(
            problems.iter().any(|p| p.line == *line
                && p.message.contains(reason)
                && p.rule_id.as_deref() == Some("corr-bad")
                && p.file == Path::new("rules/correlation.yml")),
            "{body}: no problem at {line} with {reason:?}: {problems:#?}"
        );
    }
    // A correlation naming a correlation, or a rule that did not load.
    let chain = "title: c1\nid: c1\ncorrelation:\n  type: event_count\n  rules: [recon]\n  timespan: 1m\n  \
                 condition: {gt: 5}\n---\ntitle: c2\nid: c2\ncorrelation:\n  type: event_count\n  rules: [c1]\n  \
                 timespan: 1m\n  condition: {gt: 5}\n";
    let (rules, problems) = correlate(chain);
    assert_eq!(rules.len(), 4);
    assert!(
        problems.iter().any(|p| p.line == 13 && p.message.contains("correlations of correlations")),
        "{problems:#?}"
    );
    let broken = "title: b\nid: broken\nlogsource: {product: linux, category: process_creation}\ndetection:\n  \
                  sel:\n    OriginalFileName: x\n  condition: sel\n---\ntitle: c\nid: c\ncorrelation:\n  type: \
                  event_count\n  rules: [broken]\n  timespan: 1m\n  condition: {gt: 5}\n";
    let (rules, problems) = load(broken);
    assert!(rules.is_empty());
    assert!(problems.iter().any(|p| p.line == 13 && p.message.contains("did not load")), "{problems:#?}");
    // A rejected correlation still keeps its parts quiet.
    let (rules, _) = correlate(&corr(cases[0].0));
    assert!(!rules.iter().find(|r| &*r.meta.id == "base-recon").expect("base").meta.enabled);
}

#[test]
fn grouping_by_a_destination_needs_a_direction() {
    let base = "title: any net\nid: net-any\nlogsource: {product: linux, category: network_connection}\ndetection:\n  \
                sel:\n    User: root\n  condition: sel\n";
    let corr =
        "title: c\nid: c\ncorrelation:\n  type: event_count\n  rules: [net-any]\n  group-by: [DestinationIp]\n  \
                timespan: 1m\n  condition: {gt: 5}\n";
    let (rules, problems) = load_files(&[("a.yml", base), ("b.yml", corr)]);
    assert_eq!(rules.len(), 1);
    assert!(problems.iter().any(|p| p.line == 6 && p.message.contains("local end of an accept")), "{problems:#?}");
    let outbound = base.replace("User: root", "User: root\n    Initiated: 'true'");
    let (rules, problems) = load_files(&[("a.yml", &outbound), ("b.yml", corr)]);
    assert!(problems.is_empty(), "{problems:#?}");
    let Body::Count(count) = &rules[1].body else { panic!("{:?}", rules[1].body) };
    assert_eq!(count.group_by, vec![GroupKey::Field(Target::Field(Field::DstAddr))]);
}
