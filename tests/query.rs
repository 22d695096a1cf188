//! `hostflow query` end to end (issue #5): a spool with a known data set is
//! written with the spool's own encoder, the real binary answers SQL over it,
//! and each answer is checked against the same figures computed here by hand.
//! Also: every output format, the `--tables` listing, and each error (bad
//! SQL, missing or empty directory, a corrupt file named and skipped).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_ipc::writer::FileWriter;
use pipeline::event::{Event, EventKind, EventMeta, ProcessSample, ScanInfo};
use pipeline::ProcessKey;
use support::{hostflow, Workspace};

const NAMES: [&str; 4] = ["nginx", "postgres", "sshd", "bash"];

/// `n` samples over `scans` scans, names cycling with a skew so counts
/// differ per name; every value a function of the index.
fn samples(n: u64, scans: u64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let name = NAMES[((i * i) % 7 % 4) as usize];
            Event::ProcessSample(ProcessSample {
                meta: EventMeta { ts_ns: 1_000_000 + i * 10, event_id: i },
                process: ProcessKey { pid: 100 + (i % 50) as u32, start_time_ns: 7 },
                scan: ScanInfo { scan_id: i % scans, scan_size: (n / scans) as u32 },
                ppid: 1,
                uid: (i % 3) as u32,
                name: Arc::from(name),
                cmdline: Arc::from(format!("/usr/bin/{name} --worker {i}")),
                state: b'S',
                threads: 1 + (i % 5) as u32,
                cpu_ticks: i % 13,
                cpu_percent: (i % 13) as f64 * 0.5,
                rss_bytes: 4096 * (1 + i % 1000),
                top_n_rank: 0,
            })
        })
        .collect()
}

/// Writes `events` (one kind) as finished spool file `seq`, exactly as the
/// sink does: the kind's schema, zstd buffers, the layout's file name.
fn write_spool_file(root: &Path, kind: EventKind, seq: u64, events: &[Event]) -> PathBuf {
    let dir = root.join(kind.as_str());
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(schemas::spool::finished_name(kind.as_str(), seq));
    let schema = schemas::schema_for(kind.as_str()).expect("schema");
    let file = std::fs::File::create(&path).expect("create");
    let options = sinks::arrow_spool::ipc_options().expect("zstd");
    let mut writer = FileWriter::try_new_with_options(file, &schema, options).expect("writer");
    for chunk in events.chunks(1000) {
        writer.write(&sinks::arrow_spool::encode(kind, chunk).expect("encode")).expect("write");
    }
    writer.finish().expect("finish");
    path
}

/// A spool of 10 000 process samples in two files, plus a tmp file being
/// written and a corrupt finished file, both of which must not count.
fn known_spool(ws: &Workspace) -> (PathBuf, Vec<Event>) {
    let root = ws.path("spool");
    let events = samples(10_000, 20);
    write_spool_file(&root, EventKind::ProcessSample, 0, &events[..6_000]);
    write_spool_file(&root, EventKind::ProcessSample, 1, &events[6_000..]);
    let dir = root.join("process_sample");
    std::fs::write(dir.join(schemas::spool::tmp_name("process_sample", 2)), b"half a file").expect("tmp");
    std::fs::write(dir.join(schemas::spool::finished_name("process_sample", 3)), b"ARROW1 but not really")
        .expect("corrupt");
    (root, events)
}

fn query(spool: &Path, args: &[&str]) -> std::process::Output {
    hostflow().arg("query").arg("--spool").arg(spool).args(args).output().expect("run hostflow query")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn group_by_over_process_samples_matches_the_data_set() {
    let ws = Workspace::new();
    let (spool, events) = known_spool(&ws);
    // The expected answer, computed here from the events themselves.
    let mut expected: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for event in &events {
        let Event::ProcessSample(sample) = event else { unreachable!() };
        let row = expected.entry(NAMES.iter().find(|n| **n == &*sample.name).expect("name")).or_default();
        row.0 += 1;
        row.1 += sample.rss_bytes;
        row.2 += u64::from(sample.threads);
    }
    let sql = "SELECT name, count(*) AS samples, sum(rss_bytes) AS rss, sum(threads) AS threads \
               FROM process_sample GROUP BY name ORDER BY name";
    let output = query(&spool, &["--format", "csv", sql]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    let mut want = String::from("name,samples,rss,threads\n");
    for (name, (count, rss, threads)) in &expected {
        want += &format!("{name},{count},{rss},{threads}\n");
    }
    assert_eq!(text(&output.stdout), want);
    assert!(expected.values().map(|row| row.0).collect::<std::collections::BTreeSet<_>>().len() > 1, "skewed counts");
    // The corrupt file is named and skipped; the tmp file is not read at all.
    assert!(stderr.contains("process_sample-0000000003.arrow"), "stderr: {stderr}");
    assert!(!stderr.contains("0000000002"), "stderr: {stderr}");
}

#[test]
fn every_format_prints_the_same_answer() {
    let ws = Workspace::new();
    let (spool, _) = known_spool(&ws);
    let sql = "SELECT scan_id, count(*) AS n FROM process_sample WHERE scan_id < 3 GROUP BY scan_id ORDER BY scan_id";
    let table = query(&spool, &[sql]);
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    let lines: Vec<&str> = table.lines().collect();
    // +---------+-----+ / | scan_id | n | / +---…+ / 3 rows / +---…+ / "3 rows"
    assert_eq!(lines.len(), 8, "{table}");
    assert!(lines[1].contains("scan_id") && lines[1].contains(" n "), "{table}");
    assert_eq!(lines[3].split('|').map(str::trim).collect::<Vec<_>>(), ["", "0", "500", ""], "{table}");
    assert!(lines.iter().all(|l| l.len() == lines[0].len() || l.ends_with("rows")), "aligned:\n{table}");
    assert_eq!(lines[7], "3 rows");

    let ndjson = query(&spool, &["--format", "ndjson", sql]);
    assert_eq!(ndjson.status.code(), Some(0), "{}", text(&ndjson.stderr));
    let rows: Vec<serde_json::Value> =
        text(&ndjson.stdout).lines().map(|line| serde_json::from_str(line).expect("a JSON object per line")).collect();
    assert_eq!(rows, (0..3).map(|id| serde_json::json!({"scan_id": id, "n": 500})).collect::<Vec<_>>());
}

#[test]
fn tables_lists_rows_and_time_range_of_every_kind() {
    let ws = Workspace::new();
    let (spool, _) = known_spool(&ws);
    let output = query(&spool, &["--tables"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let listing = text(&output.stdout);
    let row = |kind: &str| -> Vec<String> {
        let line = listing.lines().find(|l| l.starts_with(&format!("{kind} "))).unwrap_or_else(|| panic!("{listing}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    // table files rows first last (+1 being written)
    assert_eq!(row("process_sample")[..5], ["process_sample", "2", "10000", "1000000", "1099990"]);
    assert!(listing.contains("(+1 being written)"), "{listing}");
    for kind in schemas::KINDS.iter().filter(|k| **k != "process_sample") {
        assert_eq!(row(kind)[1..], ["0", "0", "-", "-"], "{kind}");
    }
    // An empty kind is a table with no rows, not an unknown table.
    let empty = query(&spool, &["--format", "csv", "SELECT count(*) AS n FROM net_connect"]);
    assert_eq!((empty.status.code(), text(&empty.stdout)), (Some(0), "n\n0\n".to_owned()));
}

#[test]
fn bad_sql_names_the_problem_and_the_tables() {
    let ws = Workspace::new();
    let (spool, _) = known_spool(&ws);
    let output = query(&spool, &["SELECT nme FROM process_sample"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("nme"), "DataFusion's message: {stderr}");
    assert!(stderr.contains("tables: process_exec, process_exit"), "{stderr}");
    let output = query(&spool, &["SELEKT 1"]);
    assert_eq!(output.status.code(), Some(65), "{}", text(&output.stderr));
    let output = query(&spool, &["SELECT * FROM procs"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("procs") && stderr.contains("process_sample"), "{stderr}");
}

#[test]
fn a_missing_or_empty_spool_is_no_input() {
    let ws = Workspace::new();
    let output = query(&ws.path("nowhere"), &["SELECT 1"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(66), "{stderr}");
    assert!(stderr.contains("nowhere") && stderr.contains("hint:"), "{stderr}");

    let empty = ws.path("empty");
    std::fs::create_dir_all(empty.join("process_sample")).expect("mkdir");
    std::fs::write(empty.join("process_sample").join(schemas::spool::tmp_name("process_sample", 0)), b"x")
        .expect("tmp");
    let output = query(&empty, &["--tables"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(66), "{stderr}");
    assert!(stderr.contains("no finished Arrow files") && stderr.contains("1 file(s) are still being written"));
}

#[test]
fn a_file_corrupt_inside_its_body_is_skipped_and_the_query_answers() {
    let ws = Workspace::new();
    let root = ws.path("spool");
    let events = samples(3_000, 3);
    write_spool_file(&root, EventKind::ProcessSample, 0, &events[..1_000]);
    let bad = write_spool_file(&root, EventKind::ProcessSample, 1, &events[1_000..2_000]);
    write_spool_file(&root, EventKind::ProcessSample, 2, &events[2_000..]);
    // Scramble most of the compressed body; the schema message at the start
    // and the footer at the end stay, so the file still opens.
    let mut bytes = std::fs::read(&bad).expect("read");
    let (from, to) = (bytes.len() / 4, bytes.len() * 9 / 10);
    for byte in &mut bytes[from..to] {
        *byte ^= 0x5a;
    }
    std::fs::write(&bad, bytes).expect("write");
    // Touch every column, so the scrambled buffers are decoded.
    let sql = "SELECT count(*) AS n, min(event_id) AS lo, count(DISTINCT cmdline) AS c, sum(rss_bytes) AS r, \
               sum(cpu_percent) AS p, max(name) AS m, max(state) AS s FROM process_sample";
    let output = query(&root, &["--format", "csv", sql]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let answer = text(&output.stdout);
    let row = answer.lines().nth(1).expect("one row");
    assert_eq!(row.split(',').take(2).collect::<Vec<_>>(), ["2000", "0"], "{answer}");
    assert!(stderr.contains("process_sample-0000000001.arrow"), "{stderr}");
}
