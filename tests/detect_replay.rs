//! Detection rules through the real binary on replayed events (issue #15,
//! Tests): the cases of the default Linux pack (`rules/cases`) and of the
//! project's own Sigma test rules (`tests/data/sigma-cases`) are written as
//! one NDJSON corpus with the `file` sink's encoder, replayed by `hostflow
//! run` (replay → detect → detections only → file), and each detection is
//! mapped back to its case by the ids of the events it rests on: every
//! `fire` case has a detection of its rule, no `silent` case has one (a
//! `rule: any` silent case has none at all), and no detection rests on
//! events of two cases. The same replay twice gives byte-identical
//! detections, and the run report accounts for every event. `hostflow rules
//! check` loads the Sigma rules and refuses an unsupported construct with
//! its file, line and reason.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use detect::cases::{case_event_ids, case_events, events_of, load_cases, Case, Expect};
use pipeline::Event;
use support::{hostflow, Agent, Workspace};

/// A path in the repository.
fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A directory of cases, their events as one stream, and each case's ids.
struct Corpus {
    cases: Vec<Case>,
    events: Vec<Event>,
    ids: Vec<Range<u64>>,
}

impl Corpus {
    fn load(dir: &Path) -> Corpus {
        let (cases, problems) = load_cases(dir);
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(shown.is_empty(), "the cases have problems:\n{}", shown.join("\n"));
        let events = case_events(dir).unwrap_or_else(|p| panic!("{p:#?}"));
        assert_eq!(events, events_of(&cases), "case_events is events_of the loaded cases");
        let ids = case_event_ids(&cases);
        let laid_out: Vec<u64> = ids.iter().flat_map(Clone::clone).collect();
        let carried: Vec<u64> = events.iter().map(|e| e.meta().event_id).collect();
        assert_eq!(carried, laid_out, "each case's events carry the ids of its range, in order");
        Corpus { cases, events, ids }
    }

    /// Writes the corpus as the `file` sink writes events, after checking
    /// that every line reads back as its event (contexts, attributes).
    fn write(&self, path: &Path) {
        let mut out = Vec::new();
        sinks::ndjson::encode_batch(&self.events, &mut out);
        let lines: Vec<&[u8]> = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), self.events.len(), "one line per event");
        for (line, event) in lines.iter().zip(&self.events) {
            let text = String::from_utf8_lossy(line);
            let decoded = sources::replay::decode_line(line).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(&decoded, event, "NDJSON round trip: {text}");
        }
        let with_context = self.events.iter().filter(|e| e.context().is_some()).count();
        assert!(with_context * 10 >= self.events.len() * 9, "the cases carry contexts ({with_context})");
        std::fs::write(path, out).expect("write the corpus");
    }

    /// The case whose events include `id`.
    fn case_of(&self, id: u64) -> Option<usize> {
        let i = self.ids.partition_point(|range| range.end <= id);
        self.ids.get(i).filter(|range| range.contains(&id)).map(|_| i)
    }
}

/// One detection line of the output.
#[derive(Debug)]
struct Found {
    rule_id: String,
    layer: String,
    event_ids: Vec<u64>,
}

fn parse_detections(bytes: &[u8]) -> Vec<Found> {
    let text = std::str::from_utf8(bytes).expect("the output is UTF-8");
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
            assert_eq!(value["kind"], "detection", "only detections pass the filter: {line}");
            let ids = value["event_ids"].as_array().unwrap_or_else(|| panic!("event_ids: {line}"));
            Found {
                rule_id: value["rule_id"].as_str().expect("rule_id").to_owned(),
                layer: value["layer"].as_str().expect("layer").to_owned(),
                event_ids: ids.iter().map(|id| id.as_u64().expect("an event id")).collect(),
            }
        })
        .collect()
}

/// One `hostflow run` of a replay.
struct Run {
    /// The detection output, as written.
    bytes: Vec<u8>,
    found: Vec<Found>,
    report: serde_json::Value,
    elapsed: Duration,
}

impl Run {
    fn count(&self, component: &str, key: &str) -> u64 {
        self.report["components"][component][key].as_u64().unwrap_or(0)
    }
}

/// `hostflow run`: the NDJSON `corpus` replayed at full speed into `detect`
/// on `rules` (no enrich: the case events carry their contexts), its
/// detections alone written to `WS/out`. Small batches, so detections are
/// emitted across many batches (and maybe ticks), not from one.
fn replay(ws: &Workspace, corpus: &Path, rules: &Path, out: &str) -> Run {
    let output = ws.path(out);
    let config = ws.write(
        &format!("{out}.toml"),
        &format!(
            r#"
[api]
enabled = false

[sources.replay]
type = "replay"
format = "ndjson"
path = "{corpus}"
batch_size = 64

[transforms.detect]
type = "detect"
inputs = ["replay"]
rules = "{rules}"
watch = false
reorder_ms = 2000

[transforms.found]
type = "filter"
inputs = ["detect"]
kinds = ["detection"]

[sinks.out]
type = "file"
inputs = ["found"]
path = "{output}"
append = false
"#,
            corpus = corpus.display(),
            rules = rules.display(),
            output = output.display(),
        ),
    );
    let started = Instant::now();
    let finished = Agent::start(ws, &config).wait(Duration::from_secs(300));
    let elapsed = started.elapsed();
    assert_eq!(finished.code, Some(0), "hostflow run failed; stderr:\n{}", finished.stderr);
    let bytes = std::fs::read(&output).expect("the detections file");
    let found = parse_detections(&bytes);
    Run { bytes, found, report: finished.report(), elapsed }
}

/// Every event the replay read reached detect and went on, every detection
/// reached the file, nothing was discarded.
fn assert_accounted(run: &Run, events: usize) {
    let replayed = run.count("replay", "sent");
    assert_eq!(replayed, events as u64, "the replay sent the whole corpus:\n{:#}", run.report);
    assert_eq!(run.count("detect", "received"), replayed, "detect received what the replay sent");
    assert_eq!(run.report["components"]["detect"]["discarded"], serde_json::json!({}), "{:#}", run.report);
    let detections = run.found.len() as u64;
    assert_eq!(run.count("detect", "sent"), replayed + detections, "inputs pass on, plus the detections");
    assert_eq!(run.count("found", "received"), run.count("detect", "sent"));
    assert_eq!(run.count("found", "sent"), detections);
    assert_eq!(run.count("out", "received"), detections);
    assert_eq!(run.count("out", "sent"), detections);
}

/// Maps every detection to its case and checks each case's expectation;
/// prints a summary per case file. Returns the failures.
fn check(corpus: &Corpus, found: &[Found]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut fired: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); corpus.cases.len()];
    let mut per_case = vec![0usize; corpus.cases.len()];
    for detection in found {
        let owner = detection.event_ids.first().and_then(|id| corpus.case_of(*id));
        let Some(case) = owner else {
            failures.push(format!("{detection:?} rests on no event of a case"));
            continue;
        };
        if let Some(stray) = detection.event_ids.iter().find(|id| !corpus.ids[case].contains(id)) {
            let other = corpus.case_of(*stray).map_or("no case".to_owned(), |c| corpus.cases[c].name.clone());
            failures.push(format!(
                "{detection:?} rests on events of two cases: `{}` and `{other}`",
                corpus.cases[case].name
            ));
        }
        fired[case].insert(&detection.rule_id);
        per_case[case] += 1;
    }
    // file → [cases, fire passed, fire, silent passed, silent, detections]
    let mut summary: BTreeMap<&Path, [usize; 6]> = BTreeMap::new();
    for (i, case) in corpus.cases.iter().enumerate() {
        let hit = match &case.rule {
            Some(rule) => fired[i].contains(rule.as_str()),
            None => !fired[i].is_empty(),
        };
        let passed = hit == (case.expect == Expect::Fire);
        let row = summary.entry(&case.file).or_default();
        row[0] += 1;
        row[5] += per_case[i];
        let at = if case.expect == Expect::Fire { 1 } else { 3 };
        row[at] += usize::from(passed);
        row[at + 1] += 1;
        if !passed {
            let rule = case.rule.as_deref().unwrap_or("any");
            let want = if case.expect == Expect::Fire { "to fire" } else { "to stay silent" };
            failures.push(format!(
                "{}:{}: case `{}`: expected {rule} {want}; fired: {:?}",
                case.file.display(),
                case.line,
                case.name,
                fired[i]
            ));
        }
    }
    for (file, [cases, fire_ok, fire, silent_ok, silent, detections]) in &summary {
        let name = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
        println!(
            "{name:<28} {cases:>3} cases: fire {fire_ok}/{fire}, silent {silent_ok}/{silent}, {detections} detections"
        );
    }
    failures
}

/// Issue #15: "Each rule in the pack fires on its positive case and stays
/// silent on its negative, driven through the real binary (replayed
/// events)" and "the same replayed input twice gives byte-identical
/// detection output".
#[test]
fn every_pack_case_holds_through_the_binary_and_twice_gives_the_same_bytes() {
    let ws = Workspace::new();
    let corpus = Corpus::load(&repo("rules/cases"));
    assert!(corpus.cases.len() >= 100, "{} cases", corpus.cases.len());
    let file = ws.path("cases.ndjson");
    corpus.write(&file);
    let rules = repo("rules/linux");

    let first = replay(&ws, &file, &rules, "first.ndjson");
    println!("replay of {} events: {} detections in {:?}", corpus.events.len(), first.found.len(), first.elapsed);
    assert_accounted(&first, corpus.events.len());
    let failures = check(&corpus, &first.found);
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));

    // Every enabled rule of the pack was seen firing.
    let loaded = detect::load(&rules);
    let set = loaded.set.expect("the pack loads");
    let seen: BTreeSet<&str> = first.found.iter().map(|d| d.rule_id.as_str()).collect();
    let silent: Vec<&str> =
        set.rules.iter().filter(|r| r.meta.enabled && !seen.contains(&*r.meta.id)).map(|r| &*r.meta.id).collect();
    assert!(silent.is_empty(), "rules that never fired through the binary: {silent:?}");

    let second = replay(&ws, &file, &rules, "second.ndjson");
    println!("second replay: {:?}", second.elapsed);
    assert_accounted(&second, corpus.events.len());
    assert!(first.bytes == second.bytes, "the two replays' detections differ");
}

/// `hostflow rules check DIR`: `(exit code, stdout)`.
fn rules_check(dir: &Path) -> (Option<i32>, String) {
    let output = hostflow().args(["rules", "check"]).arg(dir).output().expect("run hostflow rules check");
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The `*.yml` files of `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the directory")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    files
}

/// Issue #15: "A set of Sigma rules written for the tests
/// (process_creation, file_event, network_connection, and one
/// correlation) loads and fires on matching replayed events".
#[test]
fn the_projects_sigma_rules_load_and_fire_on_replayed_events() {
    let dir = repo("tests/data/sigma");
    let (code, stdout) = rules_check(&dir);
    println!("{stdout}");
    assert_eq!(code, Some(0), "{stdout}");
    let files = yaml_files(&dir);
    assert_eq!(files.len(), 4, "{files:?}");
    for file in &files {
        let loaded = format!("{}: loaded (1 rules, 0 IOC sets)", file.display());
        assert!(stdout.contains(&loaded), "`{loaded}` in:\n{stdout}");
    }
    assert!(stdout.contains("ok: 4 rules in 4 files (l1 3, l2 1)"), "{stdout}");

    // One rule per category and a correlation, each with a case that
    // fires and one that stays silent.
    let set = detect::load(&dir).set.expect("the Sigma rules load");
    let corpus = Corpus::load(&repo("tests/data/sigma-cases"));
    for rule in &set.rules {
        let id = &*rule.meta.id;
        assert!(rule.meta.enabled, "{id}: `generate: true` keeps the correlated rules firing alone");
        for expect in [Expect::Fire, Expect::Silent] {
            let has = corpus.cases.iter().any(|c| c.rule.as_deref() == Some(id) && c.expect == expect);
            assert!(has, "{id}: no `expect: {expect:?}` case");
        }
    }

    let ws = Workspace::new();
    let file = ws.path("sigma-cases.ndjson");
    corpus.write(&file);
    let first = replay(&ws, &file, &dir, "first.ndjson");
    println!("replay of {} events: {} detections in {:?}", corpus.events.len(), first.found.len(), first.elapsed);
    assert_accounted(&first, corpus.events.len());
    let failures = check(&corpus, &first.found);
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));

    // The correlation is an L2 sequence resting on the drop and the
    // connection; the three single-event rules are L1.
    let correlation = "c62a6130-f9b0-4029-9492-be01f05955db";
    for found in &first.found {
        let want = if found.rule_id == correlation { "l2" } else { "l1" };
        assert_eq!(found.layer, want, "{found:?}");
        let rests_on = if found.rule_id == correlation { 2 } else { 1 };
        assert_eq!(found.event_ids.len(), rests_on, "{found:?}");
    }
    let second = replay(&ws, &file, &dir, "second.ndjson");
    assert!(first.bytes == second.bytes, "the two replays' detections differ");
}

/// Issue #15: "an unsupported construct is rejected with its location"
/// (and counted; the rest of the directory still loads: exit 65, not 78).
#[test]
fn an_unsupported_sigma_construct_is_rejected_with_file_line_and_reason() {
    let dir = repo("tests/data/sigma-unsupported");
    let files = yaml_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    let text = std::fs::read_to_string(file).expect("read the rule");
    let line = 1 + text.lines().position(|l| l.trim_start().starts_with("DestinationHostname")).expect("the field");
    let (code, stdout) = rules_check(&dir);
    println!("{stdout}");
    assert_eq!(code, Some(65), "{stdout}");
    let shown = file.display();
    assert!(stdout.contains(&format!("{shown}: loaded (0 rules, 0 IOC sets)")), "{stdout}");
    assert!(stdout.contains("1 Sigma rule(s) rejected (skipped; the rest loads)"), "{stdout}");
    let problem = format!(
        "{shown}:{line}: rule `a7ac440e-692f-4c63-b0b8-8caacc37bb5c`: `DestinationHostname`: no DNS names are collected"
    );
    assert!(stdout.contains(&problem), "`{problem}` in:\n{stdout}");
    assert!(stdout.contains("; 1 Sigma rule(s) rejected"), "{stdout}");
}
