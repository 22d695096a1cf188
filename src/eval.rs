//! `hostflow eval`: replays a labelled corpus through the real detection
//! topology, scores what fired against the labels, and holds the figures
//! to a quality gate (issue #16).
//!
//! A corpus directory holds `spool/` (an Arrow spool whose events carry
//! their process context), `labels.json` (scenarios as time spans of
//! process subtrees, each malicious or benign with the rules it expects or
//! allows; `labels.rs`) and optionally `baseline.json` (an L3 baseline,
//! imported frozen). The pass itself is `run.rs`; attribution and the
//! report `score.rs`; the gate `gate.rs`. The report is a pure function of
//! the corpus and the rule set, so a change in it is a change in the rules
//! or the engine, never noise; the trend file is where dates go.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::commands::Outcome;

pub mod corpus;
pub mod gate;
pub mod labels;
pub mod run;
pub mod score;

use gate::{Gate, Verdict};
use run::{DetectOptions, Input, Rules, Scratch};
use score::{Score, CLASSES};

/// Options of `hostflow eval`.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// The corpus directory (`spool/`, `labels.json`, maybe `baseline.json`).
    pub corpus: PathBuf,
    /// A rule directory or file, or `builtin`.
    pub rules: PathBuf,
    /// The gate file; `None`: the compiled-in `testbed/quality-gate.toml`.
    pub gate: Option<PathBuf>,
    /// Where the JSON report goes; `-` is stdout (the summary then goes
    /// to stderr); `None`: no JSON, the summary only.
    pub report: Option<PathBuf>,
    /// A file to append one NDJSON line per run to.
    pub trend: Option<PathBuf>,
    /// Shuffle events within windows of this many ms of event time.
    pub shuffle_within_ms: Option<u64>,
    pub seed: u64,
}

/// `hostflow eval`. Exit 0 when the gate is met, 3 when it is not, 65 for
/// bad labels, 66 for an unreadable corpus, 78 for a bad gate file or rule
/// set, 1 when the detection pass fails.
pub fn eval(options: &EvalOptions) -> Outcome {
    match evaluate(options) {
        Ok(outcome) | Err(outcome) => outcome,
    }
}

fn evaluate(options: &EvalOptions) -> Result<Outcome, Outcome> {
    let (gate_name, gate) = read_gate(options.gate.as_deref())?;
    let labels_path = options.corpus.join("labels.json");
    let spool = options.corpus.join("spool");
    if !options.corpus.is_dir() {
        eprintln!("{}: error: no such corpus directory", options.corpus.display());
        eprintln!("hint: a corpus directory holds `spool/` and `labels.json` (see README, `hostflow eval`)");
        return Err(Outcome::Unreadable);
    }
    let text = std::fs::read_to_string(&labels_path).map_err(|error| {
        eprintln!("{}: error: cannot read the labels: {error}", labels_path.display());
        eprintln!("hint: a corpus directory holds `spool/` and `labels.json` (see README, `hostflow eval`)");
        Outcome::Unreadable
    })?;
    let labels = labels::parse(&labels_path, &text).map_err(|problems| {
        for problem in &problems {
            eprintln!("{problem}");
        }
        let noun = if problems.len() == 1 { "problem" } else { "problems" };
        eprintln!("{}: {} {noun}; nothing was evaluated", labels_path.display(), problems.len());
        Outcome::BadInput
    })?;
    if !spool.is_dir() {
        eprintln!("{}: error: the corpus has no spool directory", spool.display());
        eprintln!("hint: record one with an arrow_spool sink whose `path` is this directory");
        return Err(Outcome::Unreadable);
    }
    let rules = Rules::from_arg(&options.rules);
    let set = rules.load()?;
    let corpus = corpus::index(&spool, &labels)?;

    // L3 baselines are per corpus: imported frozen, so the evaluation does
    // not learn from the very events it scores.
    let baseline = options.corpus.join("baseline.json");
    let baseline = baseline.is_file().then(|| std::path::absolute(&baseline).unwrap_or(baseline));
    let scratch = Scratch::new("eval")?;
    let shuffled = scratch.path().join("shuffled.ndjson");
    let (input, shuffle) = match options.shuffle_within_ms {
        Some(window_ms) => {
            let moved = corpus::write_shuffled(&spool, window_ms, options.seed, &shuffled)?;
            (Input::Ndjson(&shuffled), Some(Shuffle { window_ms, seed: options.seed, moved }))
        }
        None => (Input::Spool(&spool), None),
    };
    let detect_options = DetectOptions { baseline: baseline.as_deref() };
    let pass = run::detect_pass(input, &rules, &detect_options, &scratch, "eval")?;
    if let Some(other) = pass.detections.iter().find(|d| *d.ruleset != *set.digest) {
        eprintln!(
            "error: detections came from rule set {} but {} was loaded to score them; did the rules change \
             during the evaluation?",
            other.ruleset, set.digest
        );
        return Err(Outcome::RunFailed);
    }
    let score = score::score(&labels, &corpus, &set, &pass.detections);
    let verdicts = gate.check(&score);
    let passed = verdicts.iter().all(|v| v.met);

    let mut summary = String::new();
    write_summary(&mut summary, &score, &gate_name, &verdicts, shuffle);
    match options.report.as_deref() {
        Some(path) if path == Path::new("-") => {
            println!("{:#}", score.report);
            eprint!("{summary}");
        }
        Some(path) => {
            let text = format!("{:#}\n", score.report);
            if let Err(error) = std::fs::write(path, text) {
                eprintln!("{}: error: cannot write the report: {error}", path.display());
                return Err(Outcome::RunFailed);
            }
            print!("{summary}");
        }
        None => print!("{summary}"),
    }
    if let Some(path) = &options.trend {
        append_trend(path, &score, &corpus, passed)?;
    }
    Ok(if passed { Outcome::Success } else { Outcome::GateFailed })
}

/// The gate file (or the compiled-in one), parsed; problems exit 78.
fn read_gate(path: Option<&Path>) -> Result<(String, Gate), Outcome> {
    let (name, text) = match path {
        None => (gate::DEFAULT_GATE_NAME.to_owned(), gate::DEFAULT_GATE.to_owned()),
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => (path.display().to_string(), text),
            Err(error) => {
                eprintln!("{}: error: cannot read the gate: {error}", path.display());
                return Err(Outcome::Unreadable);
            }
        },
    };
    match gate::parse(&text) {
        Ok(gate) => Ok((name, gate)),
        Err(problems) => {
            for problem in &problems {
                eprintln!("{name}: error: {problem}");
            }
            eprintln!("hint: README, `hostflow eval`, shows the gate's keys");
            Err(Outcome::InvalidConfig)
        }
    }
}

/// What `--shuffle-within` did, for the summary.
#[derive(Clone, Copy, Debug)]
struct Shuffle {
    window_ms: u64,
    seed: u64,
    /// Events that left their place.
    moved: u64,
}

fn write_summary(out: &mut String, score: &Score, gate_name: &str, verdicts: &[Verdict], shuffle: Option<Shuffle>) {
    use std::fmt::Write as _;
    let report = &score.report;
    let corpus = &report["corpus"];
    let _ = writeln!(
        out,
        "eval: {} events ({} scenarios, {} malicious; {} background events), rule set {} ({} rules)",
        corpus["events"],
        corpus["scenarios"],
        corpus["malicious_scenarios"],
        corpus["background_events"],
        score.ruleset,
        report["rules"]["rules"],
    );
    if let Some(Shuffle { window_ms, seed, moved }) = shuffle {
        let _ = writeln!(out, "events shuffled within {window_ms} ms windows (seed {seed}): {moved} moved");
    }
    let _ = writeln!(
        out,
        "{:<10} {:>10} {:>8} {:>8} {:>10} {:>9} {:>10} {:>10}",
        "class", "detections", "true", "false", "precision", "expected", "recall", "fa/1000"
    );
    // Most sure class first; `unknown` (expected rules the set lacks) only
    // when it counts something.
    let extra = score.classes.iter().filter(|(name, _)| !CLASSES.contains(*name)).map(|(name, f)| (*name, *f));
    let rows = CLASSES
        .iter()
        .map(|name| (*name, score.classes.get(name).copied().unwrap_or_default()))
        .chain(extra.filter(|(_, f)| f.detections > 0 || f.expected > 0))
        .chain([("overall", score.overall)]);
    for (name, f) in rows {
        let _ = writeln!(
            out,
            "{name:<10} {:>10} {:>8} {:>8} {:>10.4} {:>9} {:>10.4} {:>10.4}",
            f.detections,
            f.true_positives,
            f.false_alerts,
            f.precision(),
            f.expected,
            f.recall(),
            f.false_alert_rate()
        );
    }
    for scenario in report["scenarios"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = scenario["name"].as_str().unwrap_or_default();
        if let Some(misses) = scenario["misses"].as_array().filter(|m| !m.is_empty()) {
            let ids: Vec<&str> = misses.iter().filter_map(|m| m.as_str()).collect();
            let _ = writeln!(out, "miss: scenario `{name}`: {}", ids.join(", "));
        }
        write_false_alerts(out, &format!("scenario `{name}`"), &scenario["false_alerts"]);
    }
    write_false_alerts(out, "background", &report["background"]["false_alerts"]);
    let passed = verdicts.iter().all(|v| v.met);
    let _ = writeln!(out, "gate {gate_name}: {}", if passed { "passed" } else { "FAILED" });
    for verdict in verdicts {
        let _ = writeln!(out, "  {} {verdict}", if verdict.met { "ok  " } else { "FAIL" });
    }
}

fn write_false_alerts(out: &mut String, scope: &str, counts: &serde_json::Value) {
    use std::fmt::Write as _;
    let Some(counts) = counts.as_object().filter(|c| !c.is_empty()) else { return };
    let shown: Vec<String> = counts.iter().map(|(rule, n)| format!("{rule} x{n}")).collect();
    let _ = writeln!(out, "false alert: {scope}: {}", shown.join(", "));
}

/// Appends one NDJSON line: when, which rules on which corpus, the
/// figures, pass or fail — the history a report deliberately leaves out.
fn append_trend(path: &Path, score: &Score, corpus: &corpus::Corpus, passed: bool) -> Result<(), Outcome> {
    let classes: serde_json::Map<String, serde_json::Value> = score
        .classes
        .iter()
        .map(|(name, f)| ((*name).to_owned(), json!({ "precision": f.precision(), "recall": f.recall() })))
        .collect();
    let line = json!({
        "date": utc_now(),
        "ruleset": score.ruleset,
        "corpus": corpus.digest,
        "events": corpus.events,
        "classes": classes,
        "precision": score.overall.precision(),
        "recall": score.overall.recall(),
        "detections": score.overall.detections,
        "false_alerts": score.overall.false_alerts,
        "passed": passed,
    });
    let result = (|| -> std::io::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        file.write_all(format!("{line}\n").as_bytes())
    })();
    result.map_err(|error| {
        eprintln!("{}: error: cannot append to the trend file: {error}", path.display());
        Outcome::RunFailed
    })
}

/// Now as RFC 3339 UTC, to the second (days to a civil date by Howard
/// Hinnant's algorithm: no date crate for one timestamp).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
