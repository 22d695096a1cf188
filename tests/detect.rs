//! End-to-end tests of the `detect` transform through the real binary
//! (issue #15): live reload while events flow, refusal of a bad edit, and
//! `hostflow rules check`.

mod support;

use std::time::{Duration, Instant};

use support::{free_port, http_get, Agent, Workspace};

fn rule(id: &str, exe: &str) -> String {
    format!(
        "rules:\n  - id: {id}\n    title: exec of {exe}\n    severity: low\n    confidence: low\n    match: {{ kind: process_exec, exe: {exe} }}\n"
    )
}

/// (rule_id, ruleset) of every detection written so far, in file order.
fn detections(ws: &Workspace) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(ws.path("out.ndjson")) else { return Vec::new() };
    text.lines()
        .filter(|line| line.ends_with('}'))
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
            (
                value["rule_id"].as_str().expect("rule_id").to_owned(),
                value["ruleset"].as_str().expect("ruleset").to_owned(),
            )
        })
        .collect()
}

fn ruleset_in_health(port: u16) -> Option<String> {
    let health = http_get(port, "/health")?;
    let health: serde_json::Value = serde_json::from_str(&health.body).ok()?;
    health["components"]["detect"]["details"]["ruleset"].as_str().map(str::to_owned)
}

/// Issue #15: "change a rule file while 100 k events/s flow: no event is
/// evaluated by half a rule set, no event is lost, the new rule fires from
/// the swap on; an invalid edit keeps the old set."
#[test]
fn a_rule_edit_swaps_the_set_live_and_a_bad_edit_keeps_the_old_one() {
    let ws = Workspace::new();
    let port = free_port();
    std::fs::create_dir(ws.path("rules")).expect("rules dir");
    ws.write("rules/r.yml", &rule("hf-test-curl", "/usr/bin/curl"));
    let config = ws.write(
        "topology.toml",
        &format!(
            r#"
[api]
address = "127.0.0.1:{port}"
[sources.gen]
type = "generator"
rate = 100000
mix = {{ process_exec = 1 }}
[transforms.detect]
type = "detect"
inputs = ["gen"]
rules = "rules"
watch_interval_ms = 100
[transforms.found]
type = "filter"
inputs = ["detect"]
kinds = ["detection"]
[sinks.out]
type = "file"
inputs = ["found"]
path = "{out}"
[sinks.rest]
type = "blackhole"
inputs = ["detect"]
"#,
            out = ws.path("out.ndjson").display()
        ),
    );
    let agent = Agent::start(&ws, &config);
    let first_set = support::wait_for(Duration::from_secs(30), || ruleset_in_health(port));
    support::wait_for(Duration::from_secs(30), || (detections(&ws).len() >= 100).then_some(()));

    // The edit: a new rule on another executable.
    ws.write("rules/r.yml", &rule("hf-test-nginx-instead", "/usr/bin/nginx"));
    let started = Instant::now();
    let second_set =
        support::wait_for(Duration::from_secs(30), || ruleset_in_health(port).filter(|digest| *digest != first_set));
    support::wait_for(Duration::from_secs(30), || {
        detections(&ws).iter().any(|(id, _)| id == "hf-test-nginx-instead").then_some(())
    });
    eprintln!("swap seen after {:?}", started.elapsed());

    // A bad edit: refused, counted, and the second set keeps running.
    ws.write("rules/r.yml", "rules:\n  - id: broken\n    title: t\n    severity: nope\n    confidence: low\n    match: { kind: process_exec }\n");
    let rejected = support::wait_for(Duration::from_secs(30), || {
        let scrape = support::parse_prometheus(&http_get(port, "/metrics")?.body);
        scrape
            .get("hostflow_detect_reloads_total", &[("component", "detect"), ("result", "rejected")])
            .filter(|n| *n >= 1.0)
    });
    assert!(rejected >= 1.0);
    let before = detections(&ws).len();
    support::wait_for(Duration::from_secs(30), || (detections(&ws).len() > before + 100).then_some(()));
    assert_eq!(ruleset_in_health(port).as_deref(), Some(second_set.as_str()), "the old set keeps running");

    agent.signal("TERM");
    let finished = agent.wait(Duration::from_secs(60));
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.stderr);
    assert!(finished.stderr.contains("rule set refused"), "the refusal is logged:\n{}", finished.stderr);
    assert!(finished.stderr.contains("severity"), "with the problem:\n{}", finished.stderr);

    // Every detection names one whole set, the one that produced it; once
    // the new rule fired, the old one never fires again.
    let found = detections(&ws);
    let swap = found.iter().position(|(id, _)| id == "hf-test-nginx-instead").expect("the new rule fired");
    assert!(swap >= 100);
    for (i, (id, set)) in found.iter().enumerate() {
        match id.as_str() {
            "hf-test-curl" => {
                assert!(i < swap, "old rule fired after the swap (line {i})");
                assert_eq!(set, &first_set);
            }
            "hf-test-nginx-instead" => assert_eq!(set, &second_set),
            other => panic!("unexpected rule {other}"),
        }
    }

    // Nothing lost: every generated event reached detect and went on, and
    // every detection reached the file.
    let report = finished.report();
    let c = |name: &str, key: &str| report["components"][name][key].as_u64().unwrap_or(0);
    let generated = c("gen", "sent");
    assert!(generated > 10_000, "the generator ran ({generated})");
    assert_eq!(c("detect", "received"), generated);
    assert_eq!(c("detect", "sent"), generated + found.len() as u64, "inputs pass on, plus one line per detection");
    assert_eq!(c("rest", "received"), c("detect", "sent"));
    assert_eq!(c("out", "sent"), found.len() as u64);
    assert_eq!(report["components"]["detect"]["discarded"], serde_json::json!({}));
}

#[test]
fn rules_check_reports_per_file_and_exits_78_on_a_problem() {
    let ws = Workspace::new();
    std::fs::create_dir(ws.path("rules")).expect("rules dir");
    ws.write("rules/good.yml", &rule("hf-test-good", "/bin/true"));
    let output = support::hostflow().args(["rules", "check"]).arg(ws.path("rules")).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("good.yml: loaded (1 rules, 0 IOC sets)"), "{stdout}");
    assert!(stdout.contains("ok: 1 rules in 1 files (l1 1)"), "{stdout}");

    ws.write("rules/bad.yml", "rules:\n  - id: hf-test-bad\n    title: t\n    severity: low\n    confidence: low\n    match: { kind: process_exec, nosuch: 1 }\n");
    let output = support::hostflow().args(["rules", "check"]).arg(ws.path("rules")).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(78), "{stdout}");
    assert!(stdout.contains("bad.yml: 1 problem(s)"), "{stdout}");
    assert!(stdout.contains("bad.yml:6: rule `hf-test-bad`: unknown field `nosuch`"), "{stdout}");
    assert!(stdout.contains("refused: 1 problem(s)"), "{stdout}");

    let output = support::hostflow().args(["rules", "check", "--json"]).arg(ws.path("rules")).output().expect("runs");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["ok"], false);
    assert_eq!(report["files"][0]["problems"][0]["line"], 6);
}

/// SIGHUP reloads the rules even when the directory is not polled, and a
/// rule set that did not change is not swapped.
#[test]
fn sighup_reloads_an_unwatched_directory() {
    let ws = Workspace::new();
    let port = free_port();
    std::fs::create_dir(ws.path("rules")).expect("rules dir");
    ws.write("rules/r.yml", &rule("hf-test-curl", "/usr/bin/curl"));
    let config = ws.write(
        "topology.toml",
        &format!(
            r#"
[api]
address = "127.0.0.1:{port}"
[sources.gen]
type = "generator"
rate = 2000
mix = {{ process_exec = 1 }}
[transforms.detect]
type = "detect"
inputs = ["gen"]
rules = "rules"
watch = false
[sinks.rest]
type = "blackhole"
inputs = ["detect"]
"#
        ),
    );
    let agent = Agent::start(&ws, &config);
    let first = support::wait_for(Duration::from_secs(30), || ruleset_in_health(port));
    ws.write("rules/r.yml", &rule("hf-test-bash", "/usr/bin/bash"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ruleset_in_health(port).as_deref(), Some(first.as_str()), "not polled: no reload yet");
    agent.signal("HUP");
    let second = support::wait_for(Duration::from_secs(30), || ruleset_in_health(port).filter(|d| *d != first));
    assert_ne!(second, first);
    agent.signal("HUP");
    let unchanged = support::wait_for(Duration::from_secs(30), || {
        let scrape = support::parse_prometheus(&http_get(port, "/metrics")?.body);
        scrape.get("hostflow_detect_reloads_total", &[("component", "detect"), ("result", "unchanged")])
    });
    assert!(unchanged >= 1.0);
    assert_eq!(ruleset_in_health(port).as_deref(), Some(second.as_str()));
    agent.signal("TERM");
    let finished = agent.wait(Duration::from_secs(60));
    assert_eq!(finished.code, Some(0), "SIGHUP did not stop the agent; stderr:\n{}", finished.stderr);
}
