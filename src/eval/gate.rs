//! The quality gate: thresholds on an evaluation's figures, read from a
//! small TOML file (`testbed/quality-gate.toml` is the project's, and is
//! compiled in as the default), checked one by one so a failure says
//! which threshold, by how much and on what counts.
//!
//! ```toml
//! [class.high]                  # definite, very_high, high, medium, low
//! min_precision = 0.95          # true positives / detections
//! min_recall = 0.9              # expected rules hit / expected
//! max_false_alert_rate = 1.0    # false alerts per 1 000 benign events
//! [overall]                     # the same three keys over every class
//! min_recall = 0.9
//! ```

use std::fmt;

use super::score::{Figures, Score, CLASSES};

/// The project's gate, compiled in: what `hostflow eval` holds a corpus
/// to without `--gate`.
pub const DEFAULT_GATE: &str = include_str!("../../testbed/quality-gate.toml");

/// Name shown for the compiled-in gate.
pub const DEFAULT_GATE_NAME: &str = "<embedded testbed/quality-gate.toml>";

/// Which figure a threshold bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Precision,
    Recall,
    FalseAlertRate,
}

impl Metric {
    const ALL: [(&'static str, Metric); 3] = [
        ("min_precision", Metric::Precision),
        ("min_recall", Metric::Recall),
        ("max_false_alert_rate", Metric::FalseAlertRate),
    ];

    fn key(self) -> &'static str {
        Metric::ALL.iter().find(|(_, m)| *m == self).map_or("", |(k, _)| k)
    }

    fn noun(self) -> &'static str {
        match self {
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::FalseAlertRate => "false-alert rate (per 1000 benign events)",
        }
    }
}

/// One threshold: `scope` is a class name or `overall`.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub scope: &'static str,
    pub metric: Metric,
    pub limit: f64,
}

/// Every threshold of a gate file.
#[derive(Clone, Debug, PartialEq)]
pub struct Gate {
    pub thresholds: Vec<Threshold>,
}

/// One threshold checked.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub threshold: Threshold,
    pub value: f64,
    pub met: bool,
    /// The counts behind the value, for a person.
    pub detail: String,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.threshold;
        let (relation, word) = match (t.metric, self.met) {
            (Metric::FalseAlertRate, true) => ("<=", "max"),
            (Metric::FalseAlertRate, false) => (">", "max"),
            (_, true) => (">=", "min"),
            (_, false) => ("<", "min"),
        };
        let scope = if t.scope == "overall" { "overall".to_owned() } else { format!("class {}", t.scope) };
        write!(
            f,
            "{} {scope}: {} {relation} {word} {} ({}) [{}.{}]",
            t.metric.noun(),
            self.value,
            t.limit,
            self.detail,
            if t.scope == "overall" { "overall".to_owned() } else { format!("class.{}", t.scope) },
            t.metric.key()
        )
    }
}

/// Parses a gate file's `text`; every problem, each naming its key.
pub fn parse(text: &str) -> Result<Gate, Vec<String>> {
    let table: toml::Table = toml::from_str(text).map_err(|error| vec![format!("not valid TOML: {error}")])?;
    let mut problems = Vec::new();
    let mut thresholds = Vec::new();
    for (key, value) in &table {
        match (key.as_str(), value) {
            ("overall", toml::Value::Table(keys)) => {
                read_keys("overall", "overall", keys, &mut thresholds, &mut problems)
            }
            ("class", toml::Value::Table(classes)) => {
                for (class, value) in classes {
                    let Some(scope) = CLASSES.iter().find(|c| **c == class.as_str()) else {
                        problems.push(format!(
                            "`class.{class}`: unknown confidence class; the classes are {}",
                            CLASSES.join(", ")
                        ));
                        continue;
                    };
                    match value {
                        toml::Value::Table(keys) => {
                            read_keys(scope, &format!("class.{class}"), keys, &mut thresholds, &mut problems)
                        }
                        _ => problems.push(format!("`class.{class}` must be a table: [class.{class}]")),
                    }
                }
            }
            ("overall" | "class", _) => problems.push(format!("`{key}` must be a table")),
            _ => problems.push(format!("`{key}`: unknown key; a gate has [class.NAME] tables and [overall]")),
        }
    }
    if thresholds.is_empty() && problems.is_empty() {
        problems.push("the gate sets no threshold; it would pass anything".to_owned());
    }
    if problems.is_empty() {
        Ok(Gate { thresholds })
    } else {
        Err(problems)
    }
}

fn read_keys(
    scope: &'static str,
    at: &str,
    keys: &toml::Table,
    thresholds: &mut Vec<Threshold>,
    problems: &mut Vec<String>,
) {
    for (key, value) in keys {
        let Some((_, metric)) = Metric::ALL.iter().find(|(k, _)| *k == key.as_str()) else {
            let known: Vec<&str> = Metric::ALL.iter().map(|(k, _)| *k).collect();
            problems.push(format!("`{at}.{key}`: unknown key; known keys: {}", known.join(", ")));
            continue;
        };
        let limit = match value {
            toml::Value::Float(v) => *v,
            toml::Value::Integer(v) => *v as f64,
            other => {
                problems.push(format!("`{at}.{key}` must be a number, not {other}"));
                continue;
            }
        };
        let in_range = match metric {
            Metric::FalseAlertRate => limit >= 0.0 && limit.is_finite(),
            _ => (0.0..=1.0).contains(&limit),
        };
        if !in_range {
            let range = if *metric == Metric::FalseAlertRate { "0 or more" } else { "between 0 and 1" };
            problems.push(format!("`{at}.{key}` = {limit} is out of range: {range}"));
            continue;
        }
        thresholds.push(Threshold { scope, metric: *metric, limit });
    }
}

impl Gate {
    /// Checks every threshold against `score`, in the file's order.
    pub fn check(&self, score: &Score) -> Vec<Verdict> {
        self.thresholds
            .iter()
            .map(|t| {
                let figures = if t.scope == "overall" {
                    score.overall
                } else {
                    score.classes.get(t.scope).copied().unwrap_or_default()
                };
                let (value, met, detail) = judge(t, &figures);
                Verdict { threshold: t.clone(), value, met, detail }
            })
            .collect()
    }
}

/// A tolerance for figures rounded to six decimals.
const EPSILON: f64 = 1e-9;

fn judge(t: &Threshold, f: &Figures) -> (f64, bool, String) {
    match t.metric {
        Metric::Precision => {
            let detail = if f.detections == 0 {
                "no detections: precision 1.0 by definition".to_owned()
            } else {
                format!(
                    "{} of {} detections true positives, {} false alerts",
                    f.true_positives, f.detections, f.false_alerts
                )
            };
            (f.precision(), f.precision() + EPSILON >= t.limit, detail)
        }
        Metric::Recall => {
            let detail = if f.expected == 0 {
                "no expected rule: recall 1.0 by definition".to_owned()
            } else {
                format!("{} of {} expected rules hit, {} missed", f.hits, f.expected, f.expected - f.hits)
            };
            (f.recall(), f.recall() + EPSILON >= t.limit, detail)
        }
        Metric::FalseAlertRate => {
            let detail = format!("{} false alerts over {} benign events", f.false_alerts, f.benign_events);
            (f.false_alert_rate(), f.false_alert_rate() <= t.limit + EPSILON, detail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projects_gate_parses_and_holds_the_issues_thresholds() {
        let gate = parse(DEFAULT_GATE).expect("testbed/quality-gate.toml parses");
        let find =
            |scope, metric| gate.thresholds.iter().find(|t| t.scope == scope && t.metric == metric).map(|t| t.limit);
        assert_eq!(find("definite", Metric::Precision), Some(1.0));
        assert_eq!(find("very_high", Metric::Precision), Some(1.0));
        assert_eq!(find("high", Metric::Precision), Some(0.95));
        assert_eq!(find("overall", Metric::Recall), Some(0.9));
    }

    #[test]
    fn every_problem_names_its_key() {
        let problems =
            parse("[class.hihg]\nmin_precision = 1\n[overall]\nmin_recal = 0.9\nmin_precision = 2\n[other]\n")
                .expect_err("refused");
        let text = problems.join("\n");
        assert!(text.contains("`class.hihg`: unknown confidence class"), "{text}");
        assert!(text.contains("`overall.min_recal`: unknown key"), "{text}");
        assert!(text.contains("`overall.min_precision` = 2 is out of range"), "{text}");
        assert!(text.contains("`other`: unknown key"), "{text}");
        assert!(parse("").is_err(), "an empty gate passes anything");
        assert!(parse("[overall\n").expect_err("syntax")[0].contains("line 1"));
    }
}
