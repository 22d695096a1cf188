//! End-to-end runs of the real binary into the `arrow_spool` sink (issue #5):
//! every kind lands in its own finished files with exact counts, and a
//! SIGKILL mid-write loses no acknowledged event and leaves no `.tmp` after
//! a restart.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_ipc::reader::FileReader;
use pipeline::event::EventKind;
use sources::generator::EventStream;
use support::{free_port, http_get, Agent, Workspace};

/// Every file name under `root`, recursively, relative to it.
fn all_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The event ids in every finished file of every kind, per kind; each file
/// must open as an IPC file with the kind's schema.
fn finished_ids(root: &Path) -> BTreeMap<String, Vec<u64>> {
    let mut ids: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for &kind in schemas::KINDS {
        let dir = root.join(kind);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".arrow"))
            .collect();
        names.sort();
        for name in names {
            assert!(name.starts_with(&format!("{kind}-")) && name.len() == kind.len() + 1 + 10 + 6, "{name}");
            let file = std::fs::File::open(dir.join(&name)).expect("open");
            let reader = FileReader::try_new(file, None).unwrap_or_else(|e| panic!("{name} does not open: {e}"));
            assert_eq!(reader.schema(), schemas::schema_for(kind).expect("schema"), "{name}");
            for batch in reader {
                let batch = batch.unwrap_or_else(|e| panic!("{name}: {e}"));
                let column = batch.column_by_name("event_id").expect("event_id").as_primitive::<UInt64Type>();
                ids.entry(kind.to_owned()).or_default().extend(column.values().iter().copied());
            }
        }
    }
    ids
}

#[test]
fn every_kind_lands_in_its_own_files_with_exact_counts() {
    let ws = Workspace::new();
    let n = 30_000u64;
    let seed = 5;
    let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    let mix = names.iter().map(|name| format!("{name} = 1")).collect::<Vec<_>>().join(", ");
    let spool = ws.path("spool");
    let config = ws.write(
        "topology.toml",
        &format!(
            r#"
[api]
enabled = false
[sources.gen]
type = "generator"
count = {n}
seed = {seed}
batch_size = 700
mix = {{ {mix} }}
[sinks.spool]
type = "arrow_spool"
inputs = ["gen"]
path = "{path}"
max_file_bytes = 200000
"#,
            path = spool.display()
        ),
    );
    let finished = Agent::start(&ws, &config).wait(Duration::from_secs(60));
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.stderr);
    assert_eq!(finished.report()["components"]["spool"]["sent"], n);

    // The same stream, made in-process: the generator's mix is a map sorted by name.
    let mut sorted = names.clone();
    sorted.sort_unstable();
    let weights = sorted.iter().map(|name| (EventKind::from_name(name).expect("kind"), 1)).collect();
    let mut stream = EventStream::new(seed, weights, None);
    let mut expected: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for _ in 0..n {
        let event = stream.next_event(0);
        expected.entry(event.kind().as_str().to_owned()).or_default().push(event.meta().event_id);
    }
    let actual = finished_ids(&spool);
    let counts = |m: &BTreeMap<String, Vec<u64>>| m.iter().map(|(k, v)| (k.clone(), v.len())).collect::<Vec<_>>();
    assert_eq!(counts(&actual), counts(&expected), "rows per kind");
    assert_eq!(actual, expected, "every id once, in order, in its kind's files");
    assert_eq!(actual.len(), EventKind::ALL.len(), "every kind");
    let files = all_files(&spool);
    assert!(files.iter().all(|p| p.extension().is_some_and(|e| e == "arrow")), "only finished files: {files:?}");
    assert!(files.len() > 9, "size rotation made several files per kind: {}", files.len());
}

#[test]
fn sigkill_loses_no_acknowledged_event_and_restart_recovers_tmp_files() {
    let ws = Workspace::new();
    let port = free_port();
    let rate = 4000.0;
    let flush_interval = 0.5;
    let batch_size = 200u64;
    let spool = ws.path("spool");
    // `source` is the generator's own keys: the crash run makes the five
    // kernel-style kinds at `rate`; the restart only a trickle of agent_diag
    // rows, so its ids (which start at 0 again) never mix with the crash run's.
    let topology = |source: &str, port: u16| {
        format!(
            r#"
[api]
address = "127.0.0.1:{port}"
[sources.gen]
type = "generator"
batch_size = {batch_size}
{source}
[sinks.spool]
type = "arrow_spool"
inputs = ["gen"]
path = "{path}"
flush_interval_secs = {flush_interval}
max_file_age_secs = 0.7
buffer = {{ capacity = 400 }}
"#,
            path = spool.display()
        )
    };
    let config = ws.write("crash.toml", &topology(&format!("rate = {rate}"), port));
    let agent = Agent::start(&ws, &config);
    support::wait_for(Duration::from_secs(20), || http_get(port, "/metrics").filter(|r| r.status == 200));
    std::thread::sleep(Duration::from_secs(2));
    let scrape = support::parse_prometheus(&http_get(port, "/metrics").expect("scrape").body);
    agent.signal("KILL");
    let killed = agent.wait(Duration::from_secs(10));
    assert_eq!(killed.code, None, "killed by a signal");
    let acked = scrape.get("hostflow_component_sent_events_total", &[("component", "spool")]).expect("sink sent");
    let produced = scrape.get("hostflow_component_sent_events_total", &[("component", "gen")]).expect("gen sent");
    assert!(acked > 1000.0, "the spool acknowledged events before the kill: {acked}");
    let spool_metric = |name: &str| scrape.get(name, &[("component", "spool")]).unwrap_or_else(|| panic!("{name}"));
    assert!(spool_metric("hostflow_spool_written_bytes_total") > 0.0);
    assert!(spool_metric("hostflow_spool_written_files_total") >= 1.0, "age rotation (0.7 s) finished files");
    assert!(spool_metric("hostflow_spool_unflushed_events") <= rate * flush_interval + batch_size as f64);
    for name in [
        "hostflow_spool_retention_deleted_files_total",
        "hostflow_spool_recovered_files_total",
        "hostflow_spool_quarantined_files_total",
    ] {
        assert_eq!(spool_metric(name), 0.0, "{name} on a fresh spool");
    }
    let tmps_before = all_files(&spool).iter().filter(|p| p.to_string_lossy().ends_with(".tmp")).count();
    assert!(tmps_before >= 1, "the kill left files being written");

    // Restart on the same directory; recovery runs before any source starts.
    let port = free_port();
    let restart = ws.write("restart.toml", &topology("rate = 5\nmix = { agent_diag = 1 }", port));
    let agent = Agent::start(&ws, &restart);
    // The counters exist (at 0) from build time; recovery runs in the sink's
    // `open`, so read them once /health says the sink is running.
    support::wait_for(Duration::from_secs(20), || {
        let health: serde_json::Value = serde_json::from_str(&http_get(port, "/health")?.body).ok()?;
        (health["components"]["spool"]["state"] == "running").then_some(())
    });
    let scrape = support::parse_prometheus(&http_get(port, "/metrics").expect("scrape").body);
    let counted = |name: &str| scrape.get(name, &[("component", "spool")]).unwrap_or_else(|| panic!("{name}"));
    let recovered = counted("hostflow_spool_recovered_files_total") as usize;
    let set_aside = counted("hostflow_spool_quarantined_files_total") as usize;
    agent.signal("TERM");
    let finished = agent.wait(Duration::from_secs(30));
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.stderr);
    let files = all_files(&spool);
    assert!(files.iter().all(|p| !p.to_string_lossy().ends_with(".tmp")), "no .tmp remains: {files:?}");
    let quarantined = files.iter().filter(|p| p.to_string_lossy().contains("/quarantine/")).count();
    assert_eq!(recovered + set_aside, tmps_before, "every tmp recovered or set aside:\n{}", finished.stderr);
    assert_eq!(finished.stderr.matches("spool recovered a file").count(), recovered, "each recovery logged");
    assert_eq!(quarantined, set_aside);

    let mut ids = finished_ids(&spool);
    ids.remove("agent_diag"); // the restart's own rows
    let mut survived: Vec<u64> = ids.into_values().flatten().collect();
    survived.sort_unstable();
    let before = survived.len();
    survived.dedup();
    assert_eq!(survived.len(), before, "no event twice");
    // Every acknowledged event is in a file: ids are 0..k for one source, and
    // a batch is acknowledged only after all its rows are written, so the
    // first `acked` ids are all present.
    let acked = acked as u64;
    assert!(survived.len() as u64 >= acked, "survived {} < acknowledged {acked}", survived.len());
    assert_eq!(&survived[..acked as usize], &(0..acked).collect::<Vec<_>>()[..], "the acknowledged prefix is whole");
    // What was lost at most: the unacknowledged tail, bounded by the flush
    // bound (rate × interval) plus one batch plus the sink's buffer.
    let lost = (produced as u64).saturating_sub(survived.len() as u64);
    let bound = (rate * flush_interval) as u64 + batch_size + 400;
    eprintln!(
        "crash: produced {produced}, acknowledged {acked}, survived {}, lost {lost} (bound {bound}); \
         tmp files {tmps_before}: {recovered} recovered, {set_aside} quarantined",
        survived.len()
    );
    assert!(lost <= bound, "lost {lost} of {produced} > bound {bound}");
}
