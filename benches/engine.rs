//! Engine throughput: whole topologies built from TOML exactly as the
//! binary builds them, run on a single-threaded runtime (one core), timed
//! from first event to drained sink.
//!
//! `cargo bench --bench engine` — results are recorded in BENCHMARKS.md.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hostflow::registry::COMPONENTS;
use pipeline::health::Health;
use pipeline::{EventKind, SourceFile};
use sources::generator::EventStream;

/// The generator's default mix.
const DEFAULT_KINDS: [EventKind; 5] = [
    EventKind::ProcessExec,
    EventKind::ProcessExit,
    EventKind::ProcessFork,
    EventKind::NetConnect,
    EventKind::FileOpen,
];

const EVENTS_PER_RUN: u64 = 1_000_000;

/// generator → blackhole: the engine with no transform (baseline).
fn no_transform() -> String {
    format!(
        r#"
[api]
enabled = false
[sources.gen]
type = "generator"
count = {EVENTS_PER_RUN}
[sinks.out]
type = "blackhole"
inputs = ["gen"]
"#
    )
}

/// generator → filter → blackhole.
fn one_filter() -> String {
    format!(
        r#"
[api]
enabled = false
[sources.gen]
type = "generator"
count = {EVENTS_PER_RUN}
[transforms.f1]
type = "filter"
inputs = ["gen"]
kinds = ["process_exec", "process_exit", "process_fork", "net_connect", "file_open"]
[sinks.out]
type = "blackhole"
inputs = ["f1"]
"#
    )
}

/// generator → three transforms (each passes every event, each reads
/// fields) → blackhole.
fn three_transforms() -> String {
    format!(
        r#"
[api]
enabled = false
[sources.gen]
type = "generator"
count = {EVENTS_PER_RUN}
[transforms.f1]
type = "filter"
inputs = ["gen"]
kinds = ["process_exec", "process_exit", "process_fork", "net_connect", "file_open"]
[transforms.f2]
type = "filter"
inputs = ["f1"]
conditions = [{{ field = "event_id", op = ">=", value = 0 }}]
[transforms.f3]
type = "filter"
inputs = ["f2"]
conditions = [{{ field = "ts_ns", op = ">=", value = 0 }}]
[sinks.out]
type = "blackhole"
inputs = ["f3"]
"#
    )
}

fn run_once(topology_text: &str) -> Duration {
    let topology =
        pipeline::load(SourceFile::new("bench.toml", topology_text), COMPONENTS).expect("bench topology is valid");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (trigger, _) = pipeline::shutdown_channel();
    let started = Instant::now();
    let report = runtime.block_on(pipeline::runtime::run(topology, trigger, Health::default())).expect("run succeeds");
    let elapsed = started.elapsed();
    assert_eq!(report.components["out"].received, EVENTS_PER_RUN, "every event reaches the sink");
    elapsed
}

fn engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.sample_size(10).measurement_time(Duration::from_secs(10)).throughput(Throughput::Elements(EVENTS_PER_RUN));
    // Baseline: making and dropping the same events in batches, no engine.
    group.bench_function("baseline_generate_and_drop", |b| {
        b.iter_custom(|iterations| {
            let started = Instant::now();
            for _ in 0..iterations {
                let mut stream = EventStream::new(0, DEFAULT_KINDS.iter().map(|k| (*k, 1)).collect(), None);
                let mut remaining = EVENTS_PER_RUN;
                while remaining > 0 {
                    let n = remaining.min(1024);
                    let batch: Vec<_> = (0..n).map(|_| stream.next_event(0)).collect();
                    std::hint::black_box(batch);
                    remaining -= n;
                }
            }
            started.elapsed()
        })
    });
    for (name, text) in [
        ("generator_blackhole", no_transform()),
        ("generator_filter_blackhole", one_filter()),
        ("generator_3_transforms_blackhole", three_transforms()),
    ] {
        group.bench_function(name, |b| b.iter_custom(|iterations| (0..iterations).map(|_| run_once(&text)).sum()));
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
