//! Tests of L3 persistence: exact round trips, bad files reported and
//! relearned, a restart that scores at once, owner-only atomic files, the
//! import, and baselines carried across a rule-set swap.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::persist::{self, AnomalyConfig, LoadError};
use super::tests::{pack, run, Stream, SEC, T0};
use super::*;

fn learned_engine() -> (L3Engine, Stream) {
    let (rules, _) = pack();
    let mut engine = L3Engine::new(rules, L3Config::default());
    let mut s = Stream::new("/opt/acme/bin/report", "/usr/sbin/cron");
    s.benign_job(T0, 10);
    let mut p = Stream::new("/opt/acme/bin/sync", "/usr/lib/systemd/systemd");
    p.pid = 99;
    p.spread(T0, 600 * SEC, 250, |s, ts| s.connect(ts, 443));
    let mut all: Vec<Event> = s.events.iter().chain(&p.events).cloned().collect();
    all.sort_by_key(|e| e.meta().ts_ns);
    run(&mut engine, &all);
    (engine, s)
}

fn config(dir: &Path) -> AnomalyConfig {
    AnomalyConfig { state_dir: Some(dir.to_path_buf()), ..AnomalyConfig::default() }
}

#[test]
fn save_then_load_round_trips_exactly() {
    let (engine, _) = learned_engine();
    let baselines = engine.baselines();
    assert!(baselines.values().map(Vec::len).sum::<usize>() >= 5);
    let bytes = persist::encode(&baselines);
    let decoded = persist::decode(Path::new("x"), &bytes).expect("decodes");
    assert_eq!(persist::encode(&decoded), bytes, "canonical bytes");
    let (rules, _) = pack();
    let mut restored = L3Engine::new(rules, L3Config::default());
    assert_eq!(restored.restore(&decoded), baselines.values().map(Vec::len).sum::<usize>());
    assert_eq!(restored.baselines(), baselines);
    assert_eq!(restored.stats().ready, engine.stats().ready);
    let text = String::from_utf8(bytes).expect("utf-8");
    assert!(text.starts_with(r#"{"format":"hostflow-l3-baselines","version":1,"domains":{"#), "{}", &text[..80]);
}

#[test]
fn a_restart_loading_the_saved_file_scores_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, _) = learned_engine();
    let mut host = L3Host::new(config(dir.path()), "detect");
    host.flush(&engine);
    let file = dir.path().join(persist::FILE_NAME);
    let mode = std::fs::metadata(&file).expect("saved").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!dir.path().join("l3-baselines.json.tmp").exists());

    // A new engine, as after a restart: the first anomalous window fires.
    let (rules, ids) = pack();
    let mut host = L3Host::new(config(dir.path()), "detect");
    let mut fresh = L3Engine::new(rules.clone(), L3Config::default());
    host.start(&mut fresh);
    assert_eq!(fresh.stats().ready, engine.stats().ready);
    let mut s = Stream::new("/opt/acme/bin/sync", "/usr/lib/systemd/systemd");
    s.spread(T0 + 7_200 * SEC, 20 * SEC, 15, |s, ts| s.connect(ts, 4444));
    let firings = run(&mut fresh, &s.events);
    let names: Vec<&str> = firings.iter().map(|f| ids[f.rule].as_str()).collect();
    assert_eq!(names, ["hf-linux-anomaly-port-class"]);
    // Without the file: nothing to score against.
    let mut cold = L3Engine::new(rules, L3Config::default());
    assert!(run(&mut cold, &s.events).is_empty());
}

#[test]
fn a_bad_file_is_reported_and_relearned_never_a_panic() {
    let (engine, s) = learned_engine();
    let good = persist::encode(&engine.baselines());
    let text = String::from_utf8(good.clone()).expect("utf-8");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("corrupt", b"\x00\xffnot json at all".to_vec()),
        ("corrupt", good[..good.len() / 2].to_vec()),
        ("corrupt", b"{}".to_vec()),
        ("version", text.replacen(r#""version":1"#, r#""version":0"#, 1).into_bytes()),
        ("domains", text.replacen(r#""web""#, r#""www""#, 1).into_bytes()),
        ("corrupt", text.replacen(r#""feature":"kinds""#, r#""feature":"colour""#, 1).into_bytes()),
        ("corrupt", text.replacen(r#""counts":["#, r#""counts":[1,"#, 1).into_bytes()),
    ];
    for (reason, bytes) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(persist::FILE_NAME);
        std::fs::write(&file, &bytes).expect("write");
        let err = persist::read(&file).expect_err(reason);
        assert_eq!(err.reason(), reason, "{err}");
        let (rules, _) = pack();
        let mut host = L3Host::new(config(dir.path()), "detect");
        let mut fresh = L3Engine::new(rules, L3Config::default());
        host.start(&mut fresh);
        assert_eq!(fresh.stats().baselines, 0);
        let health = host.health(&fresh);
        assert_eq!(health["load"]["files"][0]["reason"], reason, "{health}");
        // Relearned, and the next save replaces the bad file.
        run(&mut fresh, &s.events);
        assert!(fresh.stats().ready > 0);
        host.flush(&fresh);
        assert!(persist::read(&file).is_ok());
    }
    let missing = persist::read(Path::new("/nonexistent/l3.json")).expect_err("missing");
    assert!(matches!(missing, LoadError::Unreadable { .. }));
}

#[test]
fn the_import_is_read_when_the_state_dir_holds_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, _) = learned_engine();
    let golden = dir.path().join("golden.json");
    persist::write_atomic(&golden, &persist::encode(&engine.baselines())).expect("export");
    let state = dir.path().join("state");
    let config = AnomalyConfig { import: Some(golden.clone()), ..config(&state) };
    let (rules, _) = pack();
    let mut host = L3Host::new(config.clone(), "detect");
    let mut fresh = L3Engine::new(rules.clone(), L3Config::default());
    host.start(&mut fresh);
    assert_eq!(fresh.baselines(), engine.baselines());
    // Once the host has its own file, that one wins over the import.
    host.flush(&fresh);
    assert_eq!(std::fs::metadata(&state).expect("dir").permissions().mode() & 0o777, 0o700);
    std::fs::write(&golden, b"garbage").expect("write");
    let mut host = L3Host::new(config, "detect");
    let mut again = L3Engine::new(rules, L3Config::default());
    host.start(&mut again);
    assert_eq!(again.baselines(), engine.baselines());
}

#[test]
fn a_swapped_rule_set_keeps_the_baselines_of_the_models_it_still_has() {
    let (engine, _) = learned_engine();
    let (mut rules, _) = pack();
    // Drop the rate rule and raise a threshold: the others' models are unchanged.
    rules.retain(|(_, r)| r.feature != Feature::Rate);
    rules[0].1.threshold = 9.0;
    let mut next = L3Engine::new(rules, L3Config::default());
    let taken = next.restore(&engine.baselines());
    let kept: Baselines = engine.baselines().into_iter().filter(|(k, _)| k.feature != Feature::Rate).collect();
    assert_eq!(taken, kept.values().map(Vec::len).sum::<usize>());
    assert_eq!(next.baselines(), kept);
}

type Baselines = persist::Baselines;

/// The transform end to end: options parsed, baselines saved at shutdown,
/// and the next run (a restart) detects at once.
#[test]
fn the_detect_transform_saves_at_shutdown_and_detects_after_a_restart() {
    use pipeline::{Output, Transform};

    use crate::transform::{Detect, DetectConfig};

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("mkdir");
    std::fs::write(rules.join("anomaly.yml"), include_str!("../../../rules/linux/anomaly.yml")).expect("write");
    let state = dir.path().join("state");
    let toml = format!(
        "rules = {:?}\nwatch = false\nanomaly = {{ state_dir = {:?}, warmup_events = 200, save_interval_secs = 5 }}\n",
        rules.display().to_string(),
        state.display().to_string()
    );
    let start = || {
        let config: DetectConfig = toml::from_str(&toml).expect("config");
        assert_eq!(config.anomaly.save_interval_secs, 5);
        let set = crate::ruleset::load(&rules).set.expect("rules load");
        Detect::new(config, Arc::new(set), "detect")
    };
    let detections = |out: &mut Output| {
        out.take_events()
            .into_iter()
            .filter_map(|e| if let Event::Detection(d) = e { Some(d.rule_id.to_string()) } else { None })
            .collect::<Vec<_>>()
    };

    let (_, learned) = learned_engine();
    let mut first = start();
    let mut out = Output::default();
    first.process(learned.events.clone(), &mut out);
    first.flush(&mut out);
    assert!(detections(&mut out).is_empty());
    assert!(state.join(persist::FILE_NAME).exists());

    let mut s = Stream::new("/opt/acme/bin/report", "/usr/sbin/cron");
    s.spread(T0 + 7_200 * SEC, 20 * SEC, 40, |s, ts| s.fork(ts));
    let mut second = start();
    let mut out = Output::default();
    second.process(s.events, &mut out);
    second.flush(&mut out);
    assert_eq!(detections(&mut out), ["hf-linux-anomaly-exe-kinds"]);
    assert!(toml::from_str::<DetectConfig>("rules = \"r\"\nanomaly = { colour = 1 }\n").is_err());
}
