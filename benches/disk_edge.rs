//! What a disk buffer costs, and what the ledger costs.
//!
//! - `disk_edge/*`: generator → blackhole, 1 M events, through a memory
//!   edge and through a disk edge, in the same run (wall time; the disk
//!   edge's writer and reader threads run beside the runtime's one core).
//!   The process CPU per event of each is printed once before the groups.
//! - `ledger/snapshot`: one consistent cut of a 10-component, 9-edge ledger
//!   (what each `/ledger` or `/metrics` answer takes).
//! - recovery: with `HOSTFLOW_BENCH_RECOVERY_MB=1024`, a buffer holding that
//!   much unacknowledged data is opened and read through (decode included);
//!   printed, median of 3.
//!
//! `cargo bench --bench disk_edge` — results are recorded in BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use hostflow::buffer_codec::ArrowBatchCodec;
use hostflow::registry::COMPONENTS;
use pipeline::batch_codec::BatchCodec;
use pipeline::health::Health;
use pipeline::ledger::Ledger;
use pipeline::{DropReason, EventKind, SourceFile};
use sources::generator::EventStream;

const EVENTS_PER_RUN: u64 = 1_000_000;

fn bench_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hf-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn topology(disk: Option<&std::path::Path>) -> String {
    let buffer = match disk {
        Some(dir) => format!("buffer = {{ type = \"disk\", path = \"{}\", max_bytes = 4294967296 }}", dir.display()),
        None => String::new(),
    };
    format!(
        "[api]\nenabled = false\n[sources.gen]\ntype = \"generator\"\ncount = {EVENTS_PER_RUN}\nbatch_size = 1024\n\
         [sinks.out]\ntype = \"blackhole\"\ninputs = [\"gen\"]\n{buffer}\n"
    )
}

fn run_once(text: &str) -> Duration {
    let mut topology =
        pipeline::load(SourceFile::new("bench.toml", text), COMPONENTS).expect("bench topology is valid");
    topology.batch_codec = Some(Arc::new(ArrowBatchCodec::new()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (trigger, _) = pipeline::shutdown_channel();
    let started = Instant::now();
    let report = runtime.block_on(pipeline::runtime::run(topology, trigger, Health::default())).expect("run succeeds");
    let elapsed = started.elapsed();
    assert_eq!(report.components["out"].sent, EVENTS_PER_RUN, "every event reaches the sink");
    elapsed
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn cpu_per_event() {
    let dir = bench_dir("cpu");
    for (name, text) in [("memory", topology(None)), ("disk", topology(Some(&dir)))] {
        let mut samples = Vec::new();
        for _ in 0..3 {
            let cpu = cpu_seconds();
            let wall = run_once(&text);
            samples.push(((cpu_seconds() - cpu) / EVENTS_PER_RUN as f64 * 1e9, wall));
        }
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ns, wall) = samples[1];
        println!(
            "{name} edge: median {ns:.0} ns CPU per event, {:.2} M events/s wall",
            EVENTS_PER_RUN as f64 / wall.as_secs_f64() / 1e6
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn disk_edge(c: &mut Criterion) {
    let dir = bench_dir("edge");
    let mut group = c.benchmark_group("disk_edge");
    group.sample_size(10).measurement_time(Duration::from_secs(15)).throughput(Throughput::Elements(EVENTS_PER_RUN));
    for (name, text) in [("memory_edge", topology(None)), ("disk_edge", topology(Some(&dir)))] {
        group.bench_function(name, |b| b.iter_custom(|iterations| (0..iterations).map(|_| run_once(&text)).sum()));
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn ledger(c: &mut Criterion) {
    let ledger = Arc::new(Ledger::default());
    let entries: Vec<_> =
        (0..10).map(|i| ledger.component(&format!("c{i}"), "transform", "filter", Some(false))).collect();
    let edges: Vec<_> = entries.windows(2).map(|pair| ledger.edge(&pair[0], &pair[1])).collect();
    for (entry, edge) in entries.iter().zip(&edges) {
        entry.received(1000);
        entry.processed(1000, 990, &[0; DropReason::COUNT]);
        entry.fan_out(990, [edge]);
        edge.accept(990);
    }
    let mut group = c.benchmark_group("ledger");
    group.bench_function("snapshot_10_components", |b| b.iter(|| std::hint::black_box(ledger.snapshot())));
    group.bench_function("snapshot_and_prometheus_text", |b| {
        b.iter(|| std::hint::black_box(ledger.snapshot().to_prometheus()))
    });
    group.bench_function("one_move", |b| b.iter(|| entries[3].received(std::hint::black_box(1))));
    group.finish();
}

/// Opens a buffer holding `mb` MiB of unacknowledged batches and reads it
/// through, decoding every record: what a restart after a long outage costs.
fn recovery(mb: u64) {
    let dir = bench_dir("recovery");
    let codec = ArrowBatchCodec::new();
    let config = pipeline::disk_buffer::DiskBufferConfig {
        dir: dir.clone(),
        max_bytes: (mb + 64) << 20,
        segment_bytes: pipeline::disk_buffer::DiskBufferConfig::default_segment_bytes((mb + 64) << 20),
    };
    let mut stream = EventStream::new(0, vec![(EventKind::ProcessExec, 1), (EventKind::NetConnect, 1)], None);
    {
        let (mut writer, _reader, _) = pipeline::disk_buffer::open(&config).expect("opens");
        let mut payload = Vec::new();
        while writer.bytes_used() < mb << 20 {
            let batch: Vec<_> = (0..1024).map(|_| stream.next_event(0)).collect();
            payload.clear();
            codec.encode(&batch, &mut payload).expect("encodes");
            writer.append(1024, &payload).expect("appends");
        }
        writer.sync().expect("syncs");
    }
    let mut samples = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let (writer, mut reader, report) = pipeline::disk_buffer::open(&config).expect("reopens");
        let opened = started.elapsed();
        drop(writer);
        let mut events = 0u64;
        while let pipeline::disk_buffer::Next::Record(record) = reader.next(Duration::from_secs(1)).expect("reads") {
            events += codec.decode(&record.payload).expect("decodes").len() as u64;
        }
        assert_eq!(events, report.events_pending);
        samples.push((opened, started.elapsed(), events));
    }
    samples.sort_by_key(|s| s.1);
    let (opened, total, events) = samples[1];
    println!(
        "recovery of {mb} MiB ({events} events): open {:.2} s, open + read + decode {:.2} s ({:.0} MB/s, {:.2} M events/s)",
        opened.as_secs_f64(),
        total.as_secs_f64(),
        mb as f64 * 1.048576 / total.as_secs_f64(),
        events as f64 / total.as_secs_f64() / 1e6
    );
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, disk_edge, ledger);

fn main() {
    cpu_per_event();
    if let Some(mb) = std::env::var("HOSTFLOW_BENCH_RECOVERY_MB").ok().and_then(|v| v.parse().ok()) {
        recovery(mb);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
