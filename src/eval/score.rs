//! Scoring: each detection attributed to the scenarios of the events it
//! rests on, then counted per confidence class, per scenario and per rule,
//! into the JSON report.
//!
//! Everything is kept in ordered maps and the report is built from them,
//! so one corpus and one rule set give the same bytes on every run; a
//! detection's own id and time (assigned by `detect`, and different under
//! reordering) are never used.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use detect::RuleSet;
use pipeline::event::Detection;
use serde_json::{json, Value};

use super::corpus::{Corpus, Fnv};
use super::labels::Labels;

/// The confidence classes, most sure first (the report's order).
pub const CLASSES: [&str; 5] = ["definite", "very_high", "high", "medium", "low"];

/// The class of an expected rule the set does not have.
const UNKNOWN_CLASS: &str = "unknown";

/// Report layout version.
pub const REPORT_FORMAT: u64 = 1;

/// Counts of one class (or of everything).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    pub detections: u64,
    pub true_positives: u64,
    pub false_alerts: u64,
    /// (scenario, rule) pairs expected.
    pub expected: u64,
    pub hits: u64,
    /// Benign events (the false-alert rate's denominator).
    pub benign_events: u64,
}

impl Figures {
    /// tp / detections; 1.0 when there are no detections.
    pub fn precision(&self) -> f64 {
        ratio(self.true_positives, self.detections)
    }

    /// hits / expected; 1.0 when nothing is expected.
    pub fn recall(&self) -> f64 {
        ratio(self.hits, self.expected)
    }

    /// False alerts per 1 000 benign events; 0 without benign events.
    pub fn false_alert_rate(&self) -> f64 {
        if self.benign_events == 0 {
            0.0
        } else {
            round(self.false_alerts as f64 * 1000.0 / self.benign_events as f64)
        }
    }

    fn json(&self) -> Value {
        json!({
            "detections": self.detections,
            "true_positives": self.true_positives,
            "false_alerts": self.false_alerts,
            "precision": self.precision(),
            "precision_vacuous": self.detections == 0,
            "expected": self.expected,
            "hits": self.hits,
            "misses": self.expected - self.hits,
            "recall": self.recall(),
            "recall_vacuous": self.expected == 0,
            "false_alert_rate_per_1000": self.false_alert_rate(),
        })
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        1.0
    } else {
        round(part as f64 / whole as f64)
    }
}

/// Six decimals: enough to compare with any threshold a person writes,
/// and a report a person can read.
fn round(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// The scored evaluation.
#[derive(Debug)]
pub struct Score {
    /// Per class, in [`CLASSES`] order (plus `unknown` when an expected
    /// rule is not in the set).
    pub classes: BTreeMap<&'static str, Figures>,
    pub overall: Figures,
    /// The set's digest (what detections carry as `ruleset`).
    pub ruleset: String,
    /// The full JSON report.
    pub report: Value,
}

#[derive(Default)]
struct RuleRow {
    detections: u64,
    true_positives: u64,
    false_alerts: u64,
    hit_in: BTreeSet<String>,
    missed_in: BTreeSet<String>,
}

#[derive(Default)]
struct ScenarioRow {
    detections: u64,
    true_positives: u64,
    hits: BTreeSet<String>,
    false_alerts: BTreeMap<String, u64>,
}

/// Scores `detections` against the labels.
pub fn score(labels: &Labels, corpus: &Corpus, set: &RuleSet, detections: &[Detection]) -> Score {
    let class_of: HashMap<&str, &'static str> =
        set.rules.iter().map(|r| (&*r.meta.id, r.meta.confidence.as_str())).collect();
    let mut classes: BTreeMap<&'static str, Figures> = CLASSES.iter().map(|c| (*c, Figures::default())).collect();
    let mut overall = Figures::default();
    let mut rules: BTreeMap<String, RuleRow> = BTreeMap::new();
    let mut scenarios: Vec<ScenarioRow> = labels.scenarios.iter().map(|_| ScenarioRow::default()).collect();
    let mut background: BTreeMap<String, u64> = BTreeMap::new();
    let mut digest_lines: Vec<(&str, &[u64])> = Vec::with_capacity(detections.len());

    for detection in detections {
        let rule = &*detection.rule_id;
        digest_lines.push((rule, &detection.event_ids));
        let mut on: Vec<usize> =
            detection.event_ids.iter().filter_map(|id| corpus.member.get(id)).flatten().copied().collect();
        on.sort_unstable();
        on.dedup();
        let true_positive = on.iter().any(|s| {
            let scenario = &labels.scenarios[*s];
            scenario.malicious && (scenario.expect.contains(rule) || scenario.allow.contains(rule))
        });
        let class = classes.entry(detection.confidence.as_str()).or_default();
        let row = rules.entry(rule.to_owned()).or_default();
        for figures in [class, &mut overall] {
            figures.detections += 1;
            figures.true_positives += u64::from(true_positive);
            figures.false_alerts += u64::from(!true_positive);
        }
        row.detections += 1;
        row.true_positives += u64::from(true_positive);
        row.false_alerts += u64::from(!true_positive);
        for s in &on {
            let scenario = &labels.scenarios[*s];
            let here = &mut scenarios[*s];
            here.detections += 1;
            here.true_positives += u64::from(true_positive);
            if scenario.malicious && scenario.expect.contains(rule) {
                here.hits.insert(rule.to_owned());
            }
            if !true_positive {
                *here.false_alerts.entry(rule.to_owned()).or_default() += 1;
            }
        }
        if on.is_empty() {
            *background.entry(rule.to_owned()).or_default() += 1;
        }
    }

    let mut scenario_rows = Vec::with_capacity(labels.scenarios.len());
    for (index, scenario) in labels.scenarios.iter().enumerate() {
        let row = &scenarios[index];
        let mut misses = Vec::new();
        if scenario.malicious {
            for rule in &scenario.expect {
                let hit = row.hits.contains(rule);
                let class = class_of.get(rule.as_str()).copied().unwrap_or(UNKNOWN_CLASS);
                for figures in [classes.entry(class).or_default(), &mut overall] {
                    figures.expected += 1;
                    figures.hits += u64::from(hit);
                }
                let entry = rules.entry(rule.clone()).or_default();
                if hit {
                    entry.hit_in.insert(scenario.name.clone());
                } else {
                    entry.missed_in.insert(scenario.name.clone());
                    misses.push(rule.clone());
                }
            }
        }
        scenario_rows.push(json!({
            "name": scenario.name,
            "malicious": scenario.malicious,
            "synthetic": scenario.synthetic,
            "events": corpus.scenario_events[index],
            "detections": row.detections,
            "true_positives": row.true_positives,
            "expect": scenario.expect,
            "allow": scenario.allow,
            "hits": row.hits,
            "misses": misses,
            "false_alerts": row.false_alerts,
        }));
    }
    scenario_rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));

    for figures in classes.values_mut().chain([&mut overall]) {
        figures.benign_events = corpus.benign_events;
    }
    let mut class_json = serde_json::Map::new();
    for (name, figures) in &classes {
        // The five classes always appear; `unknown` only when it counts.
        if CLASSES.contains(name) || figures.detections > 0 || figures.expected > 0 {
            class_json.insert((*name).to_owned(), figures.json());
        }
    }
    let rule_json: serde_json::Map<String, Value> = rules
        .iter()
        .map(|(id, row)| {
            let class = class_of.get(id.as_str()).copied().unwrap_or(UNKNOWN_CLASS);
            let value = json!({
                "class": class,
                "in_set": class_of.contains_key(id.as_str()),
                "detections": row.detections,
                "true_positives": row.true_positives,
                "false_alerts": row.false_alerts,
                "hits": row.hit_in.len(),
                "misses": row.missed_in.len(),
                "hit_in": row.hit_in,
                "missed_in": row.missed_in,
            });
            (id.clone(), value)
        })
        .collect();
    let untested: Vec<&str> = set
        .rules
        .iter()
        .map(|r| &*r.meta.id)
        .filter(|id| !rules.contains_key(*id) && !labels.scenarios.iter().any(|s| s.allow.contains(*id)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    digest_lines.sort_unstable();
    let mut digest = Fnv::default();
    for (rule, ids) in &digest_lines {
        digest.write(rule.as_bytes());
        digest.write(&[0]);
        for id in *ids {
            digest.write(&id.to_le_bytes());
        }
        digest.write(&[0xff]);
    }

    let ruleset = set.digest.to_string();
    let report = json!({
        "format": REPORT_FORMAT,
        "corpus": {
            "recorded": labels.recorded,
            "digest": corpus.digest,
            "events": corpus.events,
            "benign_events": corpus.benign_events,
            "background_events": corpus.background_events,
            "scenarios": labels.scenarios.len(),
            "malicious_scenarios": labels.scenarios.iter().filter(|s| s.malicious).count(),
        },
        "rules": { "ruleset": ruleset, "rules": set.rules.len() },
        "detections_digest": digest.hex(),
        "totals": overall.json(),
        "classes": class_json,
        "scenarios": scenario_rows,
        "background": { "events": corpus.background_events, "false_alerts": background },
        "per_rule": rule_json,
        "untested_rules": untested,
    });
    Score { classes, overall, ruleset, report }
}
