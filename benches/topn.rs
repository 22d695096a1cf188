//! Top-N selection on 10 000 processes: the bounded heap against a full
//! sort of the same scan (the baseline), both in the same run.
//!
//! `cargo bench --bench topn` — results are recorded in BENCHMARKS.md.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pipeline::event::{EventMeta, ProcessSample, ScanInfo};
use pipeline::{Event, Output, ProcessKey, Transform};
use transforms::topn::TopN;

const PROCESSES: u32 = 10_000;

fn scan() -> Vec<ProcessSample> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let names: Vec<Arc<str>> =
        ["bash", "nginx", "kworker/0:1", "postgres", "sshd"].iter().map(|n| Arc::from(*n)).collect();
    (0..PROCESSES)
        .map(|i| {
            let cpu_ticks = next() % 100;
            ProcessSample {
                meta: EventMeta { ts_ns: 0, event_id: u64::from(i) },
                process: ProcessKey { pid: 100 + i, start_time_ns: u64::from(i) },
                scan: ScanInfo { scan_id: 1, scan_size: PROCESSES },
                ppid: 1,
                uid: 0,
                name: Arc::clone(&names[i as usize % names.len()]),
                cmdline: Arc::from(""),
                state: b'S',
                threads: 1,
                cpu_ticks,
                cpu_percent: cpu_ticks as f64,
                rss_bytes: (next() % 4096) * 1024 * 1024,
                top_n_rank: 0,
            }
        })
        .collect()
}

fn topn(c: &mut Criterion) {
    let rows = scan();
    let mut group = c.benchmark_group("topn_10k");
    group.throughput(Throughput::Elements(u64::from(PROCESSES)));
    group.bench_function("heap_n20", |b| {
        let mut top = TopN::new(20, 1.0, 0.01);
        let mut output = Output::default();
        b.iter_batched(
            || rows.iter().cloned().map(Event::ProcessSample).collect::<Vec<_>>(),
            |batch| {
                top.process(batch, &mut output);
                output.take_events()
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("baseline_full_sort", |b| {
        b.iter_batched(
            || rows.clone(),
            |mut batch| {
                batch.sort_by(|a, b| {
                    let score = |r: &ProcessSample| r.cpu_percent + 0.01 * (r.rss_bytes as f64 / 1048576.0);
                    score(b).total_cmp(&score(a)).then(a.process.pid.cmp(&b.process.pid))
                });
                batch.truncate(20);
                batch
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, topn);
criterion_main!(benches);
