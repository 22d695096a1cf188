//! `hostflow query` latency: a GROUP BY over 10 M process samples (issue #5).
//!
//! `cargo bench --bench query` (prints a table; results go to BENCHMARKS.md).
//! Writes `HOSTFLOW_BENCH_ROWS` (default 10 000 000) process samples from the
//! generator's deterministic stream as spool files (1 M rows each, zstd, as
//! the sink writes them) and the same rows as one NDJSON file, then answers
//!
//! ```sql
//! SELECT name, count(*), sum(rss_bytes), max(cpu_percent) FROM process_sample GROUP BY name
//! ```
//!
//! three ways, in the same run: `hostflow_query::answer` (what the command
//! does: discover and verify the files, plan, execute on all cores), a
//! hand-written single-threaded scan of the same Arrow files with a hash map
//! (the floor without a query engine), and the NDJSON file parsed line by
//! line with serde_json into a typed struct (what an operator with NDJSON
//! would run). The three answers must agree, or the bench stops. Reports the
//! median of 5 runs for the two Arrow paths and one run for NDJSON.

use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt64Type};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use pipeline::event::{Event, EventKind};
use sources::generator::EventStream;

const FILE_ROWS: usize = 1_000_000;
const CHUNK: usize = 65_536;
const SQL: &str =
    "SELECT name, count(*) AS n, sum(rss_bytes) AS rss, max(cpu_percent) AS cpu FROM process_sample GROUP BY name";

/// Per name: (rows, rss sum, max cpu%).
type Answer = HashMap<String, (u64, u64, f64)>;

fn write_data(root: &Path, ndjson: &Path, rows: usize) -> (Duration, Duration) {
    let kind = EventKind::ProcessSample;
    let dir = root.join(kind.as_str());
    std::fs::create_dir_all(&dir).expect("mkdir");
    let schema = schemas::schema_for(kind.as_str()).expect("schema");
    let mut stream = EventStream::new(42, vec![(kind, 1)], Some(1e6));
    let mut json = std::io::BufWriter::new(std::fs::File::create(ndjson).expect("ndjson"));
    let (mut arrow_time, mut json_time) = (Duration::ZERO, Duration::ZERO);
    let mut buffer = Vec::new();
    let mut written = 0;
    for seq in 0.. {
        if written >= rows {
            break;
        }
        let path = dir.join(schemas::spool::finished_name(kind.as_str(), seq));
        let file = std::fs::File::create(path).expect("create");
        let options = sinks::arrow_spool::ipc_options().expect("zstd");
        let mut writer = FileWriter::try_new_with_options(std::io::BufWriter::new(file), &schema, options).expect("w");
        let in_file = FILE_ROWS.min(rows - written);
        let mut done = 0;
        while done < in_file {
            let n = CHUNK.min(in_file - done);
            let events: Vec<Event> = (0..n).map(|_| stream.next_event(0)).collect();
            let start = Instant::now();
            writer.write(&sinks::arrow_spool::encode(kind, &events).expect("encode")).expect("write");
            arrow_time += start.elapsed();
            let start = Instant::now();
            buffer.clear();
            sinks::ndjson::encode_batch(&events, &mut buffer);
            json.write_all(&buffer).expect("write ndjson");
            json_time += start.elapsed();
            done += n;
        }
        let start = Instant::now();
        writer.finish().expect("finish");
        arrow_time += start.elapsed();
        written += in_file;
    }
    json.flush().expect("flush");
    (arrow_time, json_time)
}

fn by_datafusion(root: &Path) -> Answer {
    let batches = hostflow_query::answer(root, SQL).expect("query");
    let mut answer = Answer::new();
    for batch in &batches {
        let names = batch.column(0).as_string::<i32>();
        let n = batch.column(1).as_primitive::<arrow_array::types::Int64Type>();
        let rss = batch.column(2).as_primitive::<UInt64Type>();
        let cpu = batch.column(3).as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            answer.insert(names.value(row).to_owned(), (n.value(row) as u64, rss.value(row), cpu.value(row)));
        }
    }
    answer
}

fn by_hand(root: &Path) -> Answer {
    let schema = schemas::schema_for("process_sample").expect("schema");
    let column = |name: &str| schema.index_of(name).expect("column");
    let projection = vec![column("name"), column("rss_bytes"), column("cpu_percent")];
    let mut answer = Answer::new();
    for (_, path) in schemas::spool::finished_files(root, "process_sample").expect("list") {
        let file = std::fs::File::open(path).expect("open");
        let reader = FileReader::try_new_buffered(file, Some(projection.clone())).expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let names = batch.column(0).as_string::<i32>();
            let rss = batch.column(1).as_primitive::<UInt64Type>();
            let cpu = batch.column(2).as_primitive::<Float64Type>();
            for row in 0..batch.num_rows() {
                let name = names.value(row);
                let entry = match answer.get_mut(name) {
                    Some(entry) => entry,
                    None => answer.entry(name.to_owned()).or_insert((0, 0, f64::MIN)),
                };
                entry.0 += 1;
                entry.1 += rss.value(row);
                entry.2 = entry.2.max(cpu.value(row));
            }
        }
    }
    answer
}

#[derive(serde::Deserialize)]
struct Row<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    rss_bytes: u64,
    cpu_percent: f64,
}

fn by_ndjson(path: &Path) -> Answer {
    let mut answer = Answer::new();
    let reader = std::io::BufReader::new(std::fs::File::open(path).expect("open"));
    for line in reader.split(b'\n') {
        let line = line.expect("read");
        let row: Row<'_> = serde_json::from_slice(&line).expect("a process_sample line");
        let entry = answer.entry(row.name.into_owned()).or_insert((0, 0, f64::MIN));
        entry.0 += 1;
        entry.1 += row.rss_bytes;
        entry.2 = entry.2.max(row.cpu_percent);
    }
    answer
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).expect("dir").flatten().map(|e| e.metadata().map_or(0, |m| m.len())).sum()
}

fn main() {
    let rows: usize = std::env::var("HOSTFLOW_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let tmp = tempfile::tempdir().expect("tmp");
    let (root, ndjson) = (tmp.path().join("spool"), tmp.path().join("samples.ndjson"));
    let (arrow_write, json_write) = write_data(&root, &ndjson, rows);
    let arrow_bytes = dir_bytes(&root.join("process_sample"));
    let json_bytes = std::fs::metadata(&ndjson).expect("ndjson").len();
    println!("{rows} process samples; SQL: {SQL}");
    println!("written: Arrow spool {arrow_bytes} bytes in {arrow_write:.2?} (encode + write, no fsync); NDJSON {json_bytes} bytes in {json_write:.2?}");

    let mut answers = Vec::new();
    let mut time = |f: &dyn Fn() -> Answer, runs: usize| {
        let mut times = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            answers.push(f());
            times.push(start.elapsed());
        }
        median(times)
    };
    let datafusion = time(&|| by_datafusion(&root), 5);
    let hand = time(&|| by_hand(&root), 5);
    let json = time(&|| by_ndjson(&ndjson), 1);
    for answer in &answers[1..] {
        assert_eq!(answer.len(), answers[0].len(), "the three ways must agree");
        for (name, row) in answer {
            assert_eq!(Some(row), answers[0].get(name), "{name}: the three ways must agree");
        }
    }
    let mrows = |d: Duration| rows as f64 / d.as_secs_f64() / 1e6;
    println!("{:<44} {:>10} {:>14}", "way", "median", "M rows/s");
    println!("{:<44} {:>10.3?} {:>14.1}", "hostflow query (DataFusion, 2 cores)", datafusion, mrows(datafusion));
    println!("{:<44} {:>10.3?} {:>14.1}", "hand-written Arrow scan (1 core)", hand, mrows(hand));
    println!("{:<44} {:>10.3?} {:>14.1}", "NDJSON + serde_json (1 core, 1 run)", json, mrows(json));
    println!(
        "{} names; query vs hand scan {:.2}x; NDJSON vs query {:.1}x slower",
        answers[0].len(),
        datafusion.as_secs_f64() / hand.as_secs_f64(),
        json.as_secs_f64() / datafusion.as_secs_f64()
    );
}
