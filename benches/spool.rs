//! Arrow spool write throughput against NDJSON, in the same run (issue #5).
//!
//! `cargo bench --bench spool` (prints a table; results go to BENCHMARKS.md).
//! For `process_sample` and `process_exec` events from the generator's
//! deterministic stream: the real `arrow_spool` sink (open, write in engine
//! batches of 1 024, flush, so the files are finished and renamed; default
//! `fsync = "on_rotate"`) against the same events encoded with
//! `sinks::ndjson::encode_batch` and written to one file, then fsynced.
//! Reports events/s, MB/s on disk, bytes per event, and the spool's
//! compression ratio against the in-memory Arrow size of the same rows.
//! `HOSTFLOW_BENCH_EVENTS=N` sets the events per kind (default 1 000 000).

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use pipeline::event::{Event, EventKind};
use pipeline::Sink;
use sinks::arrow_spool::{ArrowSpool, Fsync, Settings};
use sources::generator::EventStream;

const BATCH: usize = 1024;

fn events(kind: EventKind, n: usize) -> Vec<Event> {
    let mut stream = EventStream::new(42, vec![(kind, 1)], None);
    (0..n).map(|_| stream.next_event(0)).collect()
}

fn dir_bytes(root: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(root).expect("read dir").flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() { dir_bytes(&entry.path()) } else { meta.len() };
    }
    total
}

struct Figures {
    elapsed: Duration,
    bytes: u64,
}

fn spool(runtime: &tokio::runtime::Runtime, root: &Path, events: &[Event]) -> Figures {
    let settings = Settings {
        root: root.to_owned(),
        max_file_bytes: 64 << 20,
        max_file_age: Duration::from_secs(300),
        retention_max_bytes: u64::MAX,
        retention_max_age: Duration::from_secs(86_400),
        flush_interval: Duration::from_secs(5),
        batch_rows: 8192,
        fsync: Fsync::OnRotate,
    };
    let batches: Vec<Vec<Event>> = events.chunks(BATCH).map(<[Event]>::to_vec).collect();
    let start = Instant::now();
    runtime.block_on(async {
        let mut sink = ArrowSpool::new(settings, "bench");
        sink.open().await.expect("open");
        for batch in batches {
            sink.write(batch).await.expect("write");
        }
        sink.flush().await.expect("flush");
    });
    Figures { elapsed: start.elapsed(), bytes: dir_bytes(root) }
}

fn ndjson(path: &Path, events: &[Event]) -> Figures {
    let start = Instant::now();
    let mut file = std::fs::File::create(path).expect("create");
    let mut buffer = Vec::new();
    for batch in events.chunks(BATCH) {
        buffer.clear();
        sinks::ndjson::encode_batch(batch, &mut buffer);
        file.write_all(&buffer).expect("write");
    }
    file.sync_all().expect("fsync");
    Figures { elapsed: start.elapsed(), bytes: std::fs::metadata(path).expect("file").len() }
}

fn in_memory_arrow_bytes(kind: EventKind, events: &[Event]) -> u64 {
    events
        .chunks(8192)
        .map(|chunk| sinks::arrow_spool::encode(kind, chunk).expect("encode").get_array_memory_size() as u64)
        .sum()
}

fn main() {
    let n: usize = std::env::var("HOSTFLOW_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    println!("{n} events per kind, engine batches of {BATCH}");
    println!(
        "{:<16} {:<8} {:>12} {:>10} {:>12} {:>10} {:>14}",
        "kind", "format", "events/s", "MB/s disk", "bytes", "B/event", "vs in-memory"
    );
    for kind in [EventKind::ProcessSample, EventKind::ProcessExec] {
        let events = events(kind, n);
        let memory = in_memory_arrow_bytes(kind, &events);
        let dir = tempfile::tempdir().expect("tmp");
        let arrow = spool(&runtime, &dir.path().join("spool"), &events);
        let json = ndjson(&dir.path().join("events.ndjson"), &events);
        for (format, figures) in [("arrow", &arrow), ("ndjson", &json)] {
            let secs = figures.elapsed.as_secs_f64();
            println!(
                "{:<16} {:<8} {:>12.0} {:>10.1} {:>12} {:>10.1} {:>13.2}x",
                kind.as_str(),
                format,
                n as f64 / secs,
                figures.bytes as f64 / 1e6 / secs,
                figures.bytes,
                figures.bytes as f64 / n as f64,
                memory as f64 / figures.bytes as f64,
            );
        }
        println!("{:<16} in-memory Arrow: {memory} bytes ({:.1} B/event)", kind.as_str(), memory as f64 / n as f64);
    }
}
