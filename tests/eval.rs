//! `hostflow eval` through the real binary (issue #16): a small labelled
//! corpus is built here from the default pack's own cases
//! (`tests/data/eval/cases.yml`, written as NDJSON, turned into an Arrow
//! spool by `hostflow run` with an `arrow_spool` sink, labelled with spans
//! derived from the events), then evaluated: labelled as the pack fires it
//! passes the gate with exact figures; one benign label on a scenario the
//! pack fires on fails it, naming the threshold; the report is the same
//! bytes twice and under shuffling within 200 ms; the trend file gains a
//! line per run; a bad labels file, corpus or gate gets a clear error and
//! its exit code. The repository's recorded corpus is held to
//! `testbed/quality-gate.toml` when it exists.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use detect::cases::{events_of, load_cases, Case};
use pipeline::Event;
use serde_json::{json, Value};
use support::{hostflow, Agent, Workspace};

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// How the test labels a case of the fixture: `None` leaves it
/// unlabelled (background).
struct Label {
    malicious: bool,
    expect: Vec<String>,
    allow: Vec<String>,
}

impl Label {
    fn benign() -> Label {
        Label { malicious: false, expect: Vec::new(), allow: Vec::new() }
    }
}

/// The labels of the fixture, as the default pack is expected to fire.
fn as_the_pack_fires(case: &Case) -> Option<Label> {
    if case.name.starts_with("background") {
        return None;
    }
    Some(match case.rule.as_deref() {
        // One rule each, except the scan: a burst of refused connects is
        // also the failed-connect burst, a lesser rule the label allows.
        Some("hf-linux-port-scan") => Label {
            malicious: true,
            expect: vec!["hf-linux-port-scan".into()],
            allow: vec!["hf-linux-failed-connect-burst".into()],
        },
        Some(rule) => Label { malicious: true, expect: vec![rule.to_owned()], allow: Vec::new() },
        None => Label::benign(),
    })
}

/// A corpus directory: `spool/` made by the real binary, `labels.json`.
struct Corpus {
    dir: PathBuf,
    cases: Vec<Case>,
    events: Vec<Event>,
}

impl Corpus {
    /// Writes the fixture's events as NDJSON, has `hostflow run` spool
    /// them (replay → arrow_spool), and labels them with `label`.
    fn build(ws: &Workspace, label: fn(&Case) -> Option<Label>) -> Corpus {
        let (cases, problems) = load_cases(&repo("tests/data/eval"));
        assert!(problems.is_empty(), "{problems:#?}");
        let events = events_of(&cases);
        let ndjson = ws.path("events.ndjson");
        let mut bytes = Vec::new();
        sinks::ndjson::encode_batch(&events, &mut bytes);
        std::fs::write(&ndjson, bytes).expect("write the events");
        let dir = ws.path("corpus");
        let spool = dir.join("spool");
        std::fs::create_dir_all(&dir).expect("corpus dir");
        let config = ws.write(
            "record.toml",
            &format!(
                "[api]\nenabled = false\n\n[sources.replay]\ntype = \"replay\"\nformat = \"ndjson\"\npath = {}\n\n\
                 [sinks.spool]\ntype = \"arrow_spool\"\ninputs = [\"replay\"]\npath = {}\n",
                toml_string(&ndjson),
                toml_string(&spool)
            ),
        );
        let finished = Agent::start(ws, &config).wait(Duration::from_secs(120));
        assert_eq!(finished.code, Some(0), "spooling the corpus failed:\n{}", finished.stderr);
        let corpus = Corpus { dir, cases, events };
        corpus.write_labels(label);
        corpus
    }

    /// The events of case `index`.
    fn events_of_case(&self, index: usize) -> &[Event] {
        let start: usize = self.cases[..index].iter().map(Case::event_count).sum();
        &self.events[start..start + self.cases[index].event_count()]
    }

    /// `labels.json`: a scenario per labelled case, one span per process
    /// of its events over the case's time range.
    fn write_labels(&self, label: fn(&Case) -> Option<Label>) {
        let mut scenarios = Vec::new();
        for (index, case) in self.cases.iter().enumerate() {
            let Some(label) = label(case) else { continue };
            let events = self.events_of_case(index);
            let start = events.iter().map(|e| e.meta().ts_ns).min().expect("a case has events");
            let end = events.iter().map(|e| e.meta().ts_ns).max().expect("a case has events");
            let roots: BTreeSet<(u32, u64)> =
                events.iter().filter_map(Event::process).map(|k| (k.pid, k.start_time_ns)).collect();
            let spans: Vec<Value> = roots
                .iter()
                .map(|(pid, started)| json!({"start_ns": start, "end_ns": end, "root_pid": pid, "root_start": started}))
                .collect();
            scenarios.push(json!({
                "name": case.name,
                "description": format!("tests/data/eval/cases.yml:{}", case.line),
                "malicious": label.malicious,
                "synthetic": true,
                "expect": label.expect,
                "allow": label.allow,
                "spans": spans,
            }));
        }
        let labels = json!({
            "format": 1,
            "recorded": {"kernel": "synthetic", "date": "2026-12-03", "agent_commit": "test", "events": self.events.len()},
            "scenarios": scenarios,
        });
        let text = serde_json::to_string_pretty(&labels).expect("labels as JSON");
        std::fs::write(self.dir.join("labels.json"), text).expect("write labels.json");
    }
}

fn toml_string(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// `hostflow eval --corpus DIR ARGS…`.
fn eval(corpus: &Path, args: &[&str]) -> Output {
    let output = hostflow().arg("eval").arg("--corpus").arg(corpus).args(args).output().expect("run hostflow eval");
    println!(
        "$ hostflow eval {} {}\n{}{}",
        corpus.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read the report")).expect("the report is JSON")
}

/// Issue #16: the gate is met on a corpus labelled as the pack fires, with
/// exact figures; the report is byte-identical on a second run and with
/// the events shuffled within 200 ms; each run adds one trend line.
#[test]
fn a_corpus_labelled_as_the_pack_fires_passes_with_exact_figures_the_same_bytes_every_time() {
    let ws = Workspace::new();
    let corpus = Corpus::build(&ws, as_the_pack_fires);
    let trend = ws.path("trend/eval-trend.ndjson");
    let trend_arg = trend.to_str().expect("utf-8 path");
    let report = |name: &str| ws.path(name).to_str().expect("utf-8 path").to_owned();

    let first = eval(&corpus.dir, &["--report", &report("first.json"), "--trend", trend_arg]);
    assert_eq!(first.status.code(), Some(0), "the gate is met");
    let stdout = text(&first.stdout);
    assert!(stdout.contains("gate <embedded testbed/quality-gate.toml>: passed"), "{stdout}");
    let r = read_json(&ws.path("first.json"));

    // 1 + 5 + 2 + 61 + 2 + 1 malicious, 8 + 2 benign, 41 background.
    assert_eq!(r["corpus"]["events"], 123, "{r:#}");
    assert_eq!(r["corpus"]["benign_events"], 51);
    assert_eq!(r["corpus"]["background_events"], 41);
    assert_eq!(r["corpus"]["scenarios"], 8);
    assert_eq!(r["corpus"]["malicious_scenarios"], 6);
    let totals = &r["totals"];
    assert_eq!(totals["expected"], 6, "{totals:#}");
    assert_eq!(totals["hits"], 6);
    assert_eq!(totals["recall"], 1.0);
    assert_eq!(totals["false_alerts"], 0);
    assert_eq!(totals["precision"], 1.0);
    assert_eq!(totals["detections"], totals["true_positives"]);
    let class = |name: &str| &r["classes"][name];
    assert_eq!(class("definite")["detections"], 0);
    assert_eq!(class("definite")["precision"], 1.0);
    assert_eq!(class("definite")["precision_vacuous"], true);
    assert_eq!(class("definite")["recall_vacuous"], true);
    assert_eq!(class("very_high")["detections"], 1, "{:#}", r["classes"]);
    assert_eq!(class("very_high")["expected"], 1);
    assert_eq!(class("high")["expected"], 3);
    assert_eq!(class("high")["hits"], 3);
    assert_eq!(class("high")["precision_vacuous"], false);
    assert_eq!(class("medium")["expected"], 1);
    assert_eq!(class("low")["expected"], 1);
    assert_eq!(class("low")["detections"], 1);
    for name in ["definite", "very_high", "high", "medium", "low"] {
        assert_eq!(class(name)["false_alerts"], 0, "{name}");
        assert_eq!(class(name)["false_alert_rate_per_1000"], 0.0, "{name}");
    }
    let scenario = |name: &str| {
        r["scenarios"].as_array().expect("scenarios").iter().find(|s| s["name"] == name).cloned().expect(name)
    };
    let scan = scenario("port scan");
    assert_eq!(scan["events"], 61, "{scan:#}");
    assert_eq!(scan["hits"], json!(["hf-linux-port-scan"]));
    assert_eq!(scan["misses"], json!([]));
    assert_eq!(scan["false_alerts"], json!({}));
    let install = scenario("package install");
    assert_eq!(install["events"], 8);
    assert_eq!(install["malicious"], false);
    assert_eq!(install["detections"], 0);
    assert_eq!(r["per_rule"]["hf-linux-shadow-read"]["hits"], 1);
    assert_eq!(r["per_rule"]["hf-linux-shadow-read"]["class"], "high");
    assert_eq!(r["per_rule"]["hf-linux-download-then-exec"]["hit_in"], json!(["download then exec from /tmp"]));
    assert_eq!(r["background"], json!({"events": 41, "false_alerts": {}}));
    let names: Vec<&str> = r["scenarios"].as_array().expect("list").iter().filter_map(|s| s["name"].as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "scenarios are sorted by name");

    // The same corpus again: the same bytes, and one more trend line.
    let second = eval(&corpus.dir, &["--report", &report("second.json"), "--trend", trend_arg]);
    assert_eq!(second.status.code(), Some(0));
    let (a, b) = (std::fs::read(ws.path("first.json")), std::fs::read(ws.path("second.json")));
    assert!(a.expect("first") == b.expect("second"), "two runs gave different reports");
    assert_eq!(first.stdout, second.stdout, "and the same summary");

    // Shuffled within 200 ms (inside detect's 300 ms reorder window): the
    // same detections, so the same report, byte for byte.
    let shuffled = eval(
        &corpus.dir,
        &["--report", &report("shuffled.json"), "--trend", trend_arg, "--shuffle-within", "200", "--seed", "7"],
    );
    assert_eq!(shuffled.status.code(), Some(0));
    let stdout = text(&shuffled.stdout);
    let moved = stdout
        .lines()
        .find_map(|l| l.strip_prefix("events shuffled within 200 ms windows (seed 7): "))
        .and_then(|rest| rest.strip_suffix(" moved"))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(moved >= 50, "the 20 ms bursts are really reordered ({moved} moved)");
    let s = read_json(&ws.path("shuffled.json"));
    assert_eq!(s["detections_digest"], r["detections_digest"]);
    let (a, c) = (std::fs::read(ws.path("first.json")), std::fs::read(ws.path("shuffled.json")));
    assert!(a.expect("first") == c.expect("shuffled"), "shuffling within the reorder window changed the report");

    let lines: Vec<Value> = std::fs::read_to_string(&trend)
        .expect("the trend file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a trend line is JSON"))
        .collect();
    assert_eq!(lines.len(), 3, "one line per run");
    for line in &lines {
        assert_eq!(line["passed"], true);
        assert_eq!(line["events"], 123);
        assert_eq!(line["ruleset"], r["rules"]["ruleset"]);
        assert_eq!(line["recall"], 1.0);
        assert_eq!(line["classes"]["high"]["precision"], 1.0);
        let date = line["date"].as_str().expect("date");
        assert!(date.len() == 20 && date.ends_with('Z') && date.starts_with("20"), "{date}");
    }
}

/// A scenario the pack fires on, labelled benign: the `high` detection
/// becomes a false alert, precision of `high` drops below 0.95 and the
/// gate fails (exit 3), naming the threshold and its counts.
#[test]
fn a_benign_label_on_a_scenario_the_pack_fires_on_fails_the_gate_and_says_why() {
    fn shadow_read_is_benign(case: &Case) -> Option<Label> {
        if case.rule.as_deref() == Some("hf-linux-shadow-read") {
            return Some(Label::benign());
        }
        as_the_pack_fires(case)
    }
    let ws = Workspace::new();
    let corpus = Corpus::build(&ws, shadow_read_is_benign);
    let report = ws.path("report.json");
    let output = eval(&corpus.dir, &["--report", report.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(3), "a gate not met exits 3");
    let stdout = text(&output.stdout);
    assert!(stdout.contains("FAILED"), "{stdout}");
    let r = read_json(&report);
    let high = &r["classes"]["high"];
    assert_eq!(high["false_alerts"], 1, "{high:#}");
    let (tp, detections) = (high["true_positives"].as_u64().expect("tp"), high["detections"].as_u64().expect("n"));
    assert_eq!(detections, tp + 1);
    let line = stdout.lines().find(|l| l.contains("FAIL precision class high")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("< min 0.95"), "{line}");
    assert!(line.contains(&format!("{tp} of {detections} detections true positives, 1 false alerts")), "{line}");
    assert!(line.contains("[class.high.min_precision]"), "{line}");
    assert!(stdout.contains("false alert: scenario `shadow read by cat`: hf-linux-shadow-read x1"), "{stdout}");
    // The other thresholds still hold and say so.
    assert!(stdout.contains("ok   precision class very_high"), "{stdout}");
    assert_eq!(
        r["scenarios"].as_array().expect("list").iter().find(|s| s["name"] == "shadow read by cat").expect("it")
            ["false_alerts"],
        json!({"hf-linux-shadow-read": 1})
    );
}

/// Bad input gets a clear message and its own exit code: labels that are
/// not JSON (65, with the line), labels with wrong fields (65, each
/// field named, all at once), no corpus (66), a bad gate (78).
#[test]
fn bad_labels_a_missing_corpus_and_a_bad_gate_are_reported_with_their_exit_codes() {
    let ws = Workspace::new();
    let dir = ws.path("corpus");
    std::fs::create_dir_all(dir.join("spool")).expect("dirs");
    let labels = dir.join("labels.json");

    std::fs::write(&labels, "{\n  \"format\": 1,\n  \"scenarios\": [\n    {\"name\": \"x\",}\n  ]\n}\n")
        .expect("write");
    let output = eval(&dir, &[]);
    assert_eq!(output.status.code(), Some(65));
    let stderr = text(&output.stderr);
    assert!(stderr.contains(&format!("{}:4: not valid JSON", labels.display())), "{stderr}");

    let wrong = json!({
        "format": 1,
        "scenarios": [
            {"name": "fine", "malicious": true, "expect": ["r"], "spans": [{"start_ns": 1, "end_ns": 2, "root_pid": 3, "root_start": 4}]},
            {"name": "backwards", "malicious": "yes", "spans": [{"start_ns": 9, "end_ns": 2, "root_pid": 3, "root_start": 4}]},
            {"name": "benign expecting", "malicious": false, "expect": ["r"], "spans": [{"start_ns": 1, "end_ns": 2, "root_pid": 3}], "colour": 1},
            {"name": "fine", "malicious": false, "spans": [{"start_ns": 1, "end_ns": 2, "root_pid": 3, "root_start": 4}]},
        ]
    });
    std::fs::write(&labels, serde_json::to_string_pretty(&wrong).expect("json")).expect("write");
    let output = eval(&dir, &[]);
    assert_eq!(output.status.code(), Some(65));
    let stderr = text(&output.stderr);
    for expected in [
        "`scenarios[1].malicious`: must be true or false, not \"yes\"",
        "`scenarios[1].spans[0].end_ns`: 2 is before start_ns 9",
        "`scenarios[2].expect`: a benign scenario expects no rule",
        "`scenarios[2].spans[0].root_start`: missing",
        "`scenarios[2].colour`: unknown key",
        "`scenarios[3].name`: `fine` is also the name of scenarios[0]",
        "6 problems; nothing was evaluated",
    ] {
        assert!(stderr.contains(expected), "`{expected}` in:\n{stderr}");
    }
    // Each problem names the line of its scenario.
    let text_of = std::fs::read_to_string(&labels).expect("read");
    let line = 1 + text_of.lines().position(|l| l.contains("\"backwards\"")).expect("the scenario");
    assert!(stderr.contains(&format!("{}:{line}: `scenarios[1].malicious`", labels.display())), "{stderr}");

    std::fs::write(&labels, "{\"format\": 2, \"scenarios\": []}").expect("write");
    let stderr = text(&eval(&dir, &[]).stderr);
    assert!(stderr.contains("`format`: unsupported format 2"), "{stderr}");
    assert!(stderr.contains("`scenarios`: is empty"), "{stderr}");

    let output = eval(&ws.path("nowhere"), &[]);
    assert_eq!(output.status.code(), Some(66));
    assert!(text(&output.stderr).contains("no such corpus directory"));
    std::fs::remove_file(&labels).expect("remove");
    let output = eval(&dir, &[]);
    assert_eq!(output.status.code(), Some(66));
    assert!(text(&output.stderr).contains("cannot read the labels"), "{}", text(&output.stderr));

    let gate = ws.write("gate.toml", "[class.hihg]\nmin_precision = 1.0\n");
    let output = eval(&dir, &["--gate", gate.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(78));
    assert!(text(&output.stderr).contains("`class.hihg`: unknown confidence class"), "{}", text(&output.stderr));
}

/// Issue #16: "It runs in the test suite": the recorded corpus
/// (`testbed/corpus`, recorded on a real kernel by `record.py`), held to
/// the project's gate, with a trend line under the build's target dir;
/// replayed twice it gives byte-identical reports, and shuffled within the
/// reorder window it gives the same detections.
#[test]
fn the_recorded_corpus_meets_the_projects_quality_gate_the_same_way_every_time() {
    let corpus = repo("testbed/corpus");
    assert!(corpus.join("labels.json").is_file(), "testbed/corpus/labels.json is part of the repository");
    let trend = Path::new(env!("CARGO_TARGET_TMPDIR")).join("eval-trend.ndjson");
    let gate = repo("testbed/quality-gate.toml");
    let ws = Workspace::new();
    let run = |name: &str, extra: &[&str]| -> Value {
        let report = ws.path(name);
        let mut args = vec![
            "--gate",
            gate.to_str().expect("utf-8"),
            "--trend",
            trend.to_str().expect("utf-8"),
            "--report",
            report.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        let output = eval(&corpus, &args);
        assert_eq!(output.status.code(), Some(0), "the recorded corpus fails the gate:\n{}", text(&output.stderr));
        read_json(&report)
    };
    let first = run("first.json", &[]);
    let second = run("second.json", &[]);
    assert_eq!(
        std::fs::read(ws.path("first.json")).expect("first"),
        std::fs::read(ws.path("second.json")).expect("second"),
        "two replays of the corpus give byte-identical reports"
    );
    assert_eq!(first, second);
    assert!(first["corpus"]["events"].as_u64().is_some_and(|n| n >= 5_000), "{:#}", first["corpus"]);
    assert!(first["corpus"]["scenarios"].as_u64().is_some_and(|n| n >= 15), "{:#}", first["corpus"]);
    let shuffled = run("shuffled.json", &["--shuffle-within", "250", "--seed", "11"]);
    assert_eq!(shuffled["detections_digest"], first["detections_digest"], "shuffled within the window");
    assert_eq!(shuffled["per_rule"], first["per_rule"]);
}
