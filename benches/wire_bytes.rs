//! Wire bytes per hour of a 1 000-process host: raw `ProcessSample` rows
//! against Top-N + tail + sketches, both encoded with the real protobuf
//! encoder, and the sketches' p50/p95/p99 error against the raw values.
//!
//! `cargo bench --bench wire_bytes` (prints a table; results go to
//! BENCHMARKS.md). Real data: 1 000 extra processes under 100 names (ten
//! each, via symlinks to `sleep`) plus two busy loops are started, then the
//! real `/proc` is scanned `SCANS` times, `SCAN_GAP` apart. The hour is
//! extrapolated at the default cadence: a scan every 10 s (360 per hour)
//! and a sketch window per 6 scans (60 s, 60 per hour).
//! `HOSTFLOW_BENCH_NAMES=N` sets how many distinct names the extra processes
//! share; `HOSTFLOW_BENCH_PER_NAME=false` keeps host-wide sketches only;
//! `HOSTFLOW_BENCH_TOP_NAMES=K` sets the sketch transform's `top_names`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hostflow::registry::COMPONENTS;
use pipeline::sketch::LogSketch;

use pipeline::{Batch, Built, Event, Output, SourceFile, Transform};
use sinks::protobuf::{encode_batch, EnvelopeContext};
use sources::procfs::{Scanner, ScannerSettings};

const EXTRA_PROCESSES: usize = 1000;
/// Distinct names among the extra processes; `HOSTFLOW_BENCH_NAMES` overrides
/// (the reduction depends on it: one tail row and two sketches per name).
const DEFAULT_NAMES: usize = 100;
const SCANS: usize = 36;
const SCANS_PER_WINDOW: usize = 6;
const SCAN_GAP: Duration = Duration::from_millis(250);
const SCANS_PER_HOUR: f64 = 360.0;
const WINDOWS_PER_HOUR: f64 = 60.0;

struct Children(Vec<Child>, #[allow(dead_code, reason = "keeps the symlinks alive")] tempfile::TempDir);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn spawn_host(names: usize) -> Children {
    let dir = tempfile::tempdir().expect("temp dir");
    let sleep = which("sleep");
    let mut children = Vec::new();
    for i in 0..EXTRA_PROCESSES {
        let link = dir.path().join(format!("worker-{:03}", i % names));
        if !link.exists() {
            std::os::unix::fs::symlink(&sleep, &link).expect("symlink");
        }
        children.push(Command::new(&link).arg("600").stdout(Stdio::null()).spawn().expect("spawn sleeper"));
    }
    for _ in 0..2 {
        children.push(Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("spawn busy loop"));
    }
    Children(children, dir)
}

fn which(program: &str) -> std::path::PathBuf {
    let out = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().expect("sh");
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn transform(text: &str, name: &str) -> Box<dyn Transform> {
    let topology = pipeline::load(SourceFile::new("wire.toml", text), COMPONENTS).expect("valid topology");
    for node in topology.nodes {
        if node.name == name {
            if let Built::Transform(transform) = node.component {
                return transform;
            }
        }
    }
    panic!("no transform {name}")
}

fn encoded_bytes(events: &[Event], cx: &EnvelopeContext) -> usize {
    encode_batch(events, cx).iter().map(|m| m.encode_to_vec().len()).sum()
}

fn main() {
    let per_name = std::env::var("HOSTFLOW_BENCH_PER_NAME").map_or(true, |v| v != "false");
    let topology = r#"
[api]
enabled = false
[sources.gen]
type = "generator"
[transforms.top]
type = "topn"
inputs = ["gen"]
n = 20
[transforms.rest]
type = "tail"
inputs = ["top"]
[transforms.sketches]
type = "sketch"
inputs = ["gen"]
per_name = PER_NAME
TOP_NAMES
[sinks.out]
type = "blackhole"
inputs = ["rest", "sketches"]
"#;
    let top_names = std::env::var("HOSTFLOW_BENCH_TOP_NAMES").ok().and_then(|n| n.parse::<u32>().ok());
    let topology = &topology
        .replace("PER_NAME", &per_name.to_string())
        .replace("TOP_NAMES", &top_names.map_or(String::new(), |n| format!("top_names = {n}")));
    let names = std::env::var("HOSTFLOW_BENCH_NAMES").ok().and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_NAMES);
    let _host = spawn_host(names.max(1));
    println!(
        "extra processes: {EXTRA_PROCESSES} under {names} names, plus 2 busy loops; per-name sketches: {per_name}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut scanner = Scanner::new(ScannerSettings::default()).expect("/proc readable");
    let mut top = transform(topology, "top");
    let mut tail = transform(topology, "rest");
    let mut sketch = transform(topology, "sketches");
    let cx = EnvelopeContext {
        // A realistic entity guid (36 characters): every envelope carries it.
        entity_guid: "5f0c2d7e-9b1a-4c3e-8f6d-2a7b9c1e4d30".to_owned(),
        host: "bench-host-01".to_owned(),
    };

    let (mut raw_bytes, mut reduced_bytes, mut sketch_bytes) = (0usize, 0usize, 0usize);
    let mut processes = 0usize;
    let (mut top_only_bytes, mut tail_only_bytes, mut tail_row_count) = (0usize, 0usize, 0usize);
    let mut window_values: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    let mut worst: BTreeMap<&str, f64> = BTreeMap::new();
    let mut sketches_checked = 0usize;
    let mut out = Output::default();
    for scan_index in 0..SCANS {
        let outcome = scanner.scan(0).expect("scan");
        let batch: Batch = outcome.samples().cloned().map(Event::ProcessSample).collect();
        processes += batch.len();
        raw_bytes += encoded_bytes(&batch, &cx);
        for event in &batch {
            let Event::ProcessSample(row) = event else { continue };
            for (metric, value) in
                [("process.cpu_percent", row.cpu_percent), ("process.rss_bytes", row.rss_bytes as f64)]
            {
                for key in ["*", &*row.name] {
                    window_values.entry((metric.to_owned(), key.to_owned())).or_default().push(value);
                }
            }
        }
        sketch.process(batch.clone(), &mut out);
        let _ = out.take_events();
        top.process(batch, &mut out);
        let ranked = out.take_events();
        tail.process(ranked, &mut out);
        let reduced = out.take_events();
        let (ranked_rows, tail_rows): (Vec<Event>, Vec<Event>) =
            reduced.iter().cloned().partition(|e| matches!(e, Event::ProcessSample(_)));
        top_only_bytes += encoded_bytes(&ranked_rows, &cx);
        tail_only_bytes += encoded_bytes(&tail_rows, &cx);
        tail_row_count += tail_rows.len();
        reduced_bytes += encoded_bytes(&reduced, &cx);

        if (scan_index + 1) % SCANS_PER_WINDOW == 0 {
            sketch.on_tick(&mut out);
            let sketches = out.take_events();
            sketch_bytes += encoded_bytes(&sketches, &cx);
            // `~other` holds every name without its own sketch this window.
            let named: std::collections::BTreeSet<(String, String)> = sketches
                .iter()
                .filter_map(|e| {
                    if let Event::Sketch(s) = e {
                        Some((s.metric_name.to_string(), s.key.to_string()))
                    } else {
                        None
                    }
                })
                .collect();
            for event in &sketches {
                let Event::Sketch(s) = event else { continue };
                let mut exact: Vec<f64> = if &*s.key == "~other" {
                    window_values
                        .iter()
                        .filter(|((metric, key), _)| {
                            *metric == *s.metric_name && key != "*" && !named.contains(&(metric.clone(), key.clone()))
                        })
                        .flat_map(|(_, values)| values.iter().copied())
                        .collect()
                } else {
                    window_values.get(&(s.metric_name.to_string(), s.key.to_string())).cloned().unwrap_or_default()
                };
                exact.sort_by(f64::total_cmp);
                sketches_checked += 1;
                for (label, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
                    let truth = exact[(q * (exact.len() - 1) as f64).floor() as usize];
                    let estimate = s.sketch.quantile(q).unwrap_or(f64::NAN);
                    let error = if truth == 0.0 { estimate.abs() } else { ((estimate - truth) / truth).abs() };
                    let entry = worst.entry(label).or_default();
                    *entry = entry.max(error);
                }
            }
            window_values.clear();
        }
        std::thread::sleep(SCAN_GAP);
    }
    let windows = SCANS / SCANS_PER_WINDOW;
    let per_hour = |bytes: usize, per: usize, rate: f64| bytes as f64 / per as f64 * rate;
    let raw_hour = per_hour(raw_bytes, SCANS, SCANS_PER_HOUR);
    let rows_hour = per_hour(reduced_bytes, SCANS, SCANS_PER_HOUR);
    let sketch_hour = per_hour(sketch_bytes, windows, WINDOWS_PER_HOUR);
    let reduced_hour = rows_hour + sketch_hour;
    println!("processes per scan (mean): {:.0}", processes as f64 / SCANS as f64);
    println!("raw ProcessSample rows:        {:>12.0} bytes/hour", raw_hour);
    println!("Top-N(20) + tail rows:         {:>12.0} bytes/hour", rows_hour);
    println!("sketches (cpu%, RSS; per name + host, 60 s windows): {:>12.0} bytes/hour", sketch_hour);
    println!(
        "  of which Top-N rows {:.0} B/scan, tail {:.0} B/scan over {:.0} tail rows/scan",
        top_only_bytes as f64 / SCANS as f64,
        tail_only_bytes as f64 / SCANS as f64,
        tail_row_count as f64 / SCANS as f64
    );
    println!("  sketches per window: {:.0}", sketches_checked as f64 / windows as f64);
    println!("Top-N + tail + sketches:       {:>12.0} bytes/hour", reduced_hour);
    println!("reduction: {:.1} % fewer bytes", 100.0 * (1.0 - reduced_hour / raw_hour));
    println!(
        "sketch quantile error vs raw values over {sketches_checked} sketches (alpha = {:.4}): worst p50 {:.4} %, p95 {:.4} %, p99 {:.4} %",
        LogSketch::default().relative_accuracy(),
        100.0 * worst.get("p50").copied().unwrap_or(0.0),
        100.0 * worst.get("p95").copied().unwrap_or(0.0),
        100.0 * worst.get("p99").copied().unwrap_or(0.0),
    );
}
