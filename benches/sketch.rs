//! `LogSketch` hot paths: add per value (lognormal values), merge of two
//! 10k-value sketches, quantile, taking a sketch apart for a wire encoder,
//! and building + protobuf-encoding its `SketchEnvelope`.
//!
//! `cargo bench --bench sketch` — criterion's figures, then one summary
//! line per operation in ns, for BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use std::sync::Arc;

use pipeline::event::{EventMeta, SketchEvent};
use pipeline::sketch::LogSketch;
use schemas::prost::Message as _;
use sinks::protobuf::EnvelopeContext;
use sinks::protobuf_sketch::sketch_envelope;

const N_VALUES: usize = 10_000;

/// Lognormal values (median 50, σ = 1.5) from a fixed SplitMix64 stream.
fn lognormal(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed;
    let mut unit = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (((z ^ (z >> 31)) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let normal = (-2.0 * unit().ln()).sqrt() * (std::f64::consts::TAU * unit()).cos();
            50.0 * (1.5 * normal).exp()
        })
        .collect()
}

fn sketch_of(values: &[f64]) -> LogSketch {
    let mut sketch = LogSketch::default();
    for &value in values {
        sketch.add(value);
    }
    sketch
}

fn bench(c: &mut Criterion) {
    let values = lognormal(1, N_VALUES);
    let a = sketch_of(&values);
    let b = sketch_of(&lognormal(2, N_VALUES));
    let mut group = c.benchmark_group("sketch");
    group.measurement_time(Duration::from_secs(3));

    group.throughput(Throughput::Elements(N_VALUES as u64));
    group.bench_function("add_10k_lognormal", |bencher| {
        bencher.iter(|| {
            let mut sketch = LogSketch::default();
            for &value in &values {
                sketch.add(black_box(value));
            }
            sketch
        })
    });

    group.throughput(Throughput::Elements(1));
    group.bench_function("merge_two_10k_sketches", |bencher| {
        bencher.iter_batched_ref(
            || a.clone(),
            |merged| merged.merge(black_box(&b)).expect("same gamma"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("quantile_p99_of_10k", |bencher| bencher.iter(|| black_box(&a).quantile(black_box(0.99))));
    group.bench_function("to_parts_of_10k", |bencher| bencher.iter(|| black_box(&a).to_parts()));
    // The whole wire path of one sketch: envelope built and protobuf-encoded.
    let event = SketchEvent {
        meta: EventMeta { ts_ns: 60, event_id: 1 },
        metric_name: Arc::from("process.rss_bytes"),
        key: Arc::from("nginx"),
        window_start_ns: 0,
        window_end_ns: 60,
        sketch: a.clone(),
    };
    let cx = EnvelopeContext { entity_guid: "5f0c2d7e-9b1a-4c3e-8f6d-2a7b9c1e4d30".to_owned(), host: "h".to_owned() };
    let encoded_len = sketch_envelope(&event, &cx).encode_to_vec().len();
    println!("encoded SketchEnvelope of the 10k-value sketch: {encoded_len} bytes");
    group.bench_function("encode_envelope_of_10k", |bencher| {
        bencher.iter(|| sketch_envelope(black_box(&event), &cx).encode_to_vec())
    });
    group.finish();
}

/// Plain timing loops, printed as one line per operation.
fn summary() {
    let values = lognormal(1, N_VALUES);
    let a = sketch_of(&values);
    let b = sketch_of(&lognormal(2, N_VALUES));
    let best_of = |runs: usize, f: &mut dyn FnMut() -> Duration| (0..runs).map(|_| f()).min().unwrap_or_default();

    let add = best_of(50, &mut || {
        let started = Instant::now();
        black_box(sketch_of(black_box(&values)));
        started.elapsed()
    });
    let merge = best_of(50, &mut || {
        let mut merged = a.clone();
        let started = Instant::now();
        merged.merge(black_box(&b)).expect("same gamma");
        let elapsed = started.elapsed();
        black_box(merged);
        elapsed
    });
    let quantile = best_of(50, &mut || {
        let started = Instant::now();
        for q in 0..1000 {
            black_box(black_box(&a).quantile(f64::from(q) / 1000.0));
        }
        started.elapsed() / 1000
    });
    let (offset, bins) = a.positive_bins();
    println!(
        "sketch summary (best of 50): add {:.1} ns/value, merge of two 10k-value sketches {:.0} ns ({} bins from index {offset}), quantile {:.0} ns",
        add.as_nanos() as f64 / N_VALUES as f64,
        merge.as_nanos() as f64,
        bins.len(),
        quantile.as_nanos() as f64,
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
    summary();
}
