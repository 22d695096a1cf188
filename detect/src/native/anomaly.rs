//! The `anomaly:` body of a native rule (L3): an entity's recent window
//! against its learned baseline ([`crate::l3`]).
//!
//! ```yaml
//! anomaly:
//!   entity: exe            # exe | exe_parent
//!   feature: kinds         # kinds | port_class | path_prefix | rate
//!   kind: [process_exec, net_connect, file_open]   # optional: the events that feed it
//!   threshold: 2.0         # KL divergence in nats; robust z for rate
//!   min_events: 20         # optional (default 20)
//!   window: 60s
//! ```

use pipeline::EventKind;

use crate::l3::domain::{PATH_KINDS, PORT_KINDS};
use crate::rule::{Anomaly, Entity, Feature, KindSet};
use crate::yaml::{Node, Problems, Scalar};

use super::{check_keys, strings, window};

/// `min_events` when a rule does not say.
pub const DEFAULT_MIN_EVENTS: u64 = 20;
/// The largest `min_events` (a window's counters are `u32`; more than a
/// million events per window is a rate, not a distribution).
pub const MAX_MIN_EVENTS: u64 = 1_000_000;

pub fn load(node: Node<'_>, problems: &mut Problems<'_>) -> Option<Anomaly> {
    let before = problems.list.len();
    if !node.is_mapping() {
        problems.hint(
            node.line(),
            format!("`anomaly` must be a mapping, not {}", node.describe()),
            "anomaly: { entity: exe, feature: kinds, threshold: 2.0, window: 60s }",
        );
        return None;
    }
    check_keys(node, &["entity", "feature", "kind", "threshold", "min_events", "window"], "anomaly", problems);
    let entity = named(node, "entity", Entity::from_name, &Entity::ALL.map(Entity::as_str), problems);
    let feature = named(node, "feature", Feature::from_name, &Feature::ALL.map(Feature::as_str), problems);
    let kinds = kinds(node, feature, problems);
    let threshold = match node.get("threshold") {
        Some(v) => match v.scalar() {
            Some(Scalar::Float(f)) if f.is_finite() && f > 0.0 => Some(f),
            Some(Scalar::Int(i)) if i > 0 => Some(i as f64),
            _ => {
                problems.hint(
                    v.line(),
                    format!("`threshold` must be a number above 0, not {}", v.text().unwrap_or_else(|| v.describe().into())),
                    "KL divergence in nats for kinds, port_class and path_prefix (e.g. 2.0); a robust z for rate (e.g. 6)",
                );
                None
            }
        },
        None => {
            problems.hint(node.line(), "an anomaly needs a `threshold`", "e.g. `threshold: 2.0`");
            None
        }
    };
    let min_events = match node.get("min_events") {
        None => Some(DEFAULT_MIN_EVENTS),
        Some(v) => match v.scalar() {
            Some(Scalar::Int(n)) if (1..=MAX_MIN_EVENTS as i64).contains(&n) => Some(n as u64),
            _ => {
                problems.at(v.line(), format!("`min_events` must be an integer from 1 to {MAX_MIN_EVENTS}"));
                None
            }
        },
    };
    // At most a day (a longer window would take weeks to warm up).
    let window_ns = match node.get("window") {
        Some(_) => window(node, "window", problems),
        None => {
            problems.hint(node.line(), "an anomaly needs a `window`", "e.g. `window: 60s`");
            None
        }
    };
    if problems.list.len() > before {
        return None;
    }
    Some(Anomaly {
        entity: entity?,
        feature: feature?,
        kinds: kinds?,
        threshold: threshold?,
        min_events: min_events?,
        window_ns: window_ns?,
    })
}

fn named<T: Copy>(
    node: Node<'_>,
    key: &str,
    parse: fn(&str) -> Option<T>,
    known: &[&str],
    problems: &mut Problems<'_>,
) -> Option<T> {
    let Some(value) = node.get(key) else {
        problems.hint(
            node.line(),
            format!("an anomaly needs an `{key}`"),
            format!("`{key}`: one of {}", known.join(", ")),
        );
        return None;
    };
    let parsed = value.str().and_then(|t| parse(t.trim()));
    if parsed.is_none() {
        problems.at(
            value.line(),
            format!("`{key}` must be one of {}, not {:?}", known.join(", "), value.text().unwrap_or_default()),
        );
    }
    parsed
}

/// The `kind` list, checked against what the feature can read; the
/// feature's kinds when absent.
fn kinds(node: Node<'_>, feature: Option<Feature>, problems: &mut Problems<'_>) -> Option<KindSet> {
    let readable: Option<&[EventKind]> = match feature {
        Some(Feature::PortClass) => Some(&PORT_KINDS),
        Some(Feature::PathPrefix) => Some(&PATH_KINDS),
        _ => None,
    };
    let Some(value) = node.get("kind") else {
        return Some(match readable {
            // Connects and sends: where it talks to, not where it listens.
            Some(_) if feature == Some(Feature::PortClass) => KindSet::of(&[EventKind::NetConnect, EventKind::NetSend]),
            Some(kinds) => KindSet::of(kinds),
            None => KindSet::ALL,
        });
    };
    let before = problems.list.len();
    let mut set = KindSet::default();
    let listed = strings(Some(value), "kind", problems);
    if listed.is_empty() && problems.list.len() == before {
        problems.at(value.line(), "`kind` lists no event kind");
    }
    for (line, name) in listed {
        match EventKind::from_name(&name) {
            Some(kind) if readable.is_some_and(|r| !r.contains(&kind)) => {
                let names: Vec<&str> = readable.unwrap_or_default().iter().map(|k| k.as_str()).collect();
                problems.hint(
                    line,
                    format!("`{name}` has no value for `{}`", feature.map_or("", Feature::as_str)),
                    format!("it reads {}", names.join(", ")),
                );
            }
            Some(EventKind::Detection) => problems.at(line, "detections are not read by L3"),
            Some(kind) => set = KindSet(set.0 | KindSet::of(&[kind]).0),
            None => {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                problems.hint(
                    line,
                    format!("unknown event kind `{name}`"),
                    format!("known kinds: {}", known.join(", ")),
                );
            }
        }
    }
    (problems.list.len() == before).then_some(set)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use crate::native::load_document;
    use crate::rule::{Anomaly, Body, Entity, Feature, KindSet};
    use crate::yaml::{parse, Node, Problems};
    use pipeline::EventKind;

    /// `(line, message, hint)` of a problem.
    type Found = (usize, String, Option<String>);

    fn load(body: &str) -> (Option<Anomaly>, Vec<Found>) {
        let text = format!(
            "rules:\n  - id: hf-test-anomaly\n    title: t\n    severity: medium\n    confidence: low\n    attack: [T1059]\n    anomaly:\n{body}"
        );
        let path = PathBuf::from("rules/test.yml");
        let file: Arc<Path> = Arc::from(path.as_path());
        let docs = parse(&text).expect("yaml");
        let mut problems = Problems::new(&path);
        let loaded = load_document(&file, Node::new(&docs[0]), &mut problems);
        let rule = loaded.rules.into_iter().next().and_then(|r| match r.body {
            Body::Anomaly(a) => Some(a),
            _ => None,
        });
        (rule, problems.list.into_iter().map(|p| (p.line, p.message, p.hint)).collect())
    }

    #[test]
    fn a_good_rule_loads_with_defaults_where_unsaid() {
        let (rule, problems) = load(
            "      entity: exe\n      feature: kinds\n      kind: [process_exec, net_connect, file_open]\n      threshold: 2.0\n      min_events: 20\n      window: 60s\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let kinds = KindSet::of(&[EventKind::ProcessExec, EventKind::NetConnect, EventKind::FileOpen]);
        let expected = Anomaly {
            entity: Entity::Exe,
            feature: Feature::Kinds,
            kinds,
            threshold: 2.0,
            min_events: 20,
            window_ns: 60_000_000_000,
        };
        assert_eq!(rule, Some(expected));
        let (rule, problems) =
            load("      entity: exe_parent\n      feature: port_class\n      threshold: 3\n      window: 5m\n");
        assert!(problems.is_empty(), "{problems:?}");
        let rule = rule.expect("loads");
        assert_eq!(rule.kinds, KindSet::of(&[EventKind::NetConnect, EventKind::NetSend]));
        assert_eq!((rule.threshold, rule.min_events), (3.0, super::DEFAULT_MIN_EVENTS));
        let (rule, _) = load("      entity: exe\n      feature: rate\n      threshold: 6\n      window: 1m\n");
        assert_eq!(rule.map(|r| r.kinds), Some(KindSet::ALL));
    }

    #[test]
    fn every_bad_field_is_a_problem_with_its_line() {
        // Lines: 8 entity, 9 feature, 10 kind, 11 threshold, 12 min_events, 13 window, 14 colour.
        let (rule, problems) = load(
            "      entity: pid\n      feature: smell\n      kind: [nope]\n      threshold: -1\n      min_events: 0\n      window: 10x\n      colour: red\n",
        );
        assert!(rule.is_none());
        let lines: Vec<usize> = problems.iter().map(|p| p.0).collect();
        for line in 8..=14 {
            assert!(lines.contains(&line), "line {line}: {problems:#?}");
        }
        assert!(problems.iter().any(|p| p.1.contains("`entity` must be one of exe, exe_parent")));
        assert!(problems.iter().any(|p| p.1.contains("`feature` must be one of kinds, port_class, path_prefix, rate")));
        assert!(problems.iter().any(|p| p.1.contains("unknown event kind `nope`")));
        assert!(problems.iter().any(|p| p.1.contains("`threshold` must be a number above 0") && p.2.is_some()));
        assert!(problems.iter().any(|p| p.1.contains("`min_events` must be an integer")));
        assert!(problems.iter().any(|p| p.1.contains("unknown key `colour` in `anomaly`") && p.2.is_some()));
    }

    #[test]
    fn missing_fields_kinds_a_feature_cannot_read_and_a_scalar_body_are_problems() {
        let (rule, problems) = load("      feature: kinds\n");
        assert!(rule.is_none());
        let messages: Vec<&str> = problems.iter().map(|p| p.1.as_str()).collect();
        assert!(messages.iter().any(|m| m.contains("needs an `entity`")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("needs a `threshold`")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("needs a `window`")), "{messages:?}");
        // A mapping's line is its first key's.
        assert!(problems.iter().all(|p| p.0 == 8), "{problems:?}");

        let (_, problems) = load(
            "      entity: exe\n      feature: port_class\n      kind: [file_open, net_connect]\n      threshold: 2\n      window: 1m\n",
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, 10);
        assert!(problems[0].1.contains("`file_open` has no value for `port_class`"), "{problems:?}");
        assert!(problems[0].2.as_deref().is_some_and(|h| h.contains("net_connect")));

        let (_, problems) = load("      entity: exe\n      feature: rate\n      threshold: 2\n      window: 2d\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, 11);

        let text = "rules:\n  - id: x\n    title: t\n    severity: low\n    confidence: low\n    anomaly: yes\n";
        let docs = parse(text).expect("yaml");
        let path = PathBuf::from("r.yml");
        let file: Arc<Path> = Arc::from(path.as_path());
        let mut problems = Problems::new(&path);
        let loaded = load_document(&file, Node::new(&docs[0]), &mut problems);
        assert!(loaded.rules.is_empty());
        assert_eq!(problems.list.len(), 1);
        assert_eq!(problems.list[0].line, 6);
    }
}
