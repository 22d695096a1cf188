//! `hostflow query` end to end (issue #5): a spool with a known data set is
//! written with the spool's own encoder, the real binary answers SQL over it,
//! and each answer is checked against the same figures computed here by hand.
//! Also: every output format, the `--tables` listing, and each error (bad
//! SQL, missing or empty directory, a corrupt file named and skipped), and
//! wall-clock time (issue #12): `time` = `ts_ns` + each file's anchor, and
//! `--since` / `--until` (or SQL on `time`) keep exactly the rows in range.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_ipc::writer::FileWriter;
use pipeline::event::{Event, EventKind, EventMeta, ProcessSample, ScanInfo};
use pipeline::ProcessKey;

const NAMES: [&str; 4] = ["nginx", "postgres", "sshd", "bash"];

/// 2026-12-03T14:00:00Z in seconds since the epoch (`date -u -d … +%s`).
const T14_00: i64 = 1_796_306_400;

/// The anchor of the test files: `ts_ns` 1000 s after boot is 14:00:00Z.
const ANCHOR_NS: i64 = (T14_00 - 1_000) * 1_000_000_000;

/// `n` samples over `scans` scans, names cycling with a skew so counts
/// differ per name; every value a function of the index.
fn samples(n: u64, scans: u64) -> Vec<Event> {
    (0..n).map(|i| sample(i, 1_000_000 + i * 10, scans, n)).collect()
}

/// Sample `i` of a data set of `n` over `scans` scans, at `ts_ns`.
fn sample(i: u64, ts_ns: u64, scans: u64, n: u64) -> Event {
    let name = NAMES[((i * i) % 7 % 4) as usize];
    Event::ProcessSample(ProcessSample {
        meta: EventMeta { ts_ns, event_id: i },
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
}

/// Writes `events` (one kind) as finished spool file `seq`, exactly as the
/// sink does: the kind's schema, zstd buffers, the layout's file name.
fn write_spool_file(root: &Path, kind: EventKind, seq: u64, events: &[Event]) -> PathBuf {
    write_anchored_file(root, kind, seq, events, Some(ANCHOR_NS))
}

/// The same with a given wall-clock anchor in the schema metadata (or none,
/// as files written before the spool recorded one).
fn write_anchored_file(root: &Path, kind: EventKind, seq: u64, events: &[Event], anchor: Option<i64>) -> PathBuf {
    let dir = root.join(kind.as_str());
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(schemas::spool::finished_name(kind.as_str(), seq));
    let kind_schema = schemas::schema_for(kind.as_str()).expect("schema");
    let schema = match anchor {
        Some(anchor) => schemas::spool::with_wall_clock_anchor(&kind_schema, anchor),
        None => (*kind_schema).clone(),
    };
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

/// A temporary directory for one test's files.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        Workspace { dir: tempfile::tempdir().expect("create a temp dir") }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn query(spool: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hostflow-query"))
        .arg("--spool")
        .arg(spool)
        .args(args)
        .output()
        .expect("run hostflow query")
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
    // ts 1 000 000 ns is 1000 s − 1 ms before 14:00:00Z at the files' anchor.
    assert_eq!(
        row("process_sample")[..7],
        [
            "process_sample",
            "2",
            "10000",
            "1000000",
            "1099990",
            "2026-12-03T13:43:20.001000000Z",
            "2026-12-03T13:43:20.001099990Z"
        ]
    );
    assert!(listing.contains("(+1 being written)"), "{listing}");
    for kind in schemas::KINDS.iter().filter(|k| **k != "process_sample") {
        assert_eq!(row(kind)[1..], ["0", "0", "-", "-", "-", "-"], "{kind}");
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

/// A spool over 14:00–14:15 UTC: process samples one second apart in two
/// files whose anchors differ by 5 s (a clock step between them), each
/// `ts_ns` off the whole second by `i % 3` ns; a file with no anchor; and
/// agent_diag rows one minute apart. Returns each sample's (event_id, UTC ns).
fn timed_spool(ws: &Workspace) -> (PathBuf, Vec<(u64, i64)>) {
    let root = ws.path("timed");
    let ts = |i: u64| 1_000_000_000_000 + i * 1_000_000_000 + i % 3;
    let events: Vec<Event> = (0..610).map(|i| sample(i, ts(i), 10, 610)).collect();
    let step = 5_000_000_000;
    write_anchored_file(&root, EventKind::ProcessSample, 0, &events[..300], Some(ANCHOR_NS));
    write_anchored_file(&root, EventKind::ProcessSample, 1, &events[300..600], Some(ANCHOR_NS + step));
    write_anchored_file(&root, EventKind::ProcessSample, 2, &events[600..], None);
    let diag: Vec<Event> = (0..10)
        .map(|i| {
            Event::AgentDiag(pipeline::event::AgentDiag {
                meta: EventMeta { ts_ns: 1_000_000_000_000 + i * 60_000_000_000, event_id: 1_000 + i },
                module: Arc::from("test"),
                event_type: Arc::from("tick"),
                reason: Arc::from(format!("minute {i}")),
            })
        })
        .collect();
    write_anchored_file(&root, EventKind::AgentDiag, 0, &diag, Some(ANCHOR_NS));
    let times = (0..600u64).map(|i| (i, ts(i) as i64 + ANCHOR_NS + if i < 300 { 0 } else { step })).collect();
    (root, times)
}

/// The first CSV column of every data line.
fn first_column(csv: &str) -> Vec<u64> {
    csv.lines().skip(1).map(|line| line.split(',').next().expect("a column").parse().expect("an id")).collect()
}

#[test]
fn since_and_until_keep_exactly_the_rows_in_range_across_anchors() {
    let ws = Workspace::new();
    let (spool, times) = timed_spool(&ws);
    // since = sample 121's time exactly (14:02:01 + 1 ns): included, 120 not;
    // until = sample 305's time exactly (14:05:05 + 5 + 2 ns, second file):
    // excluded, 304 included. Sample 300 is 14:05:05 by its file's anchor
    // (14:05:00 by the first file's): in range either way.
    let (since, until) = ("2026-12-03T14:02:01.000000001Z", "2026-12-03T14:05:10.000000002Z");
    let since_ns = (T14_00 + 121) * 1_000_000_000 + 1;
    let until_ns = (T14_00 + 310) * 1_000_000_000 + 2;
    assert_eq!((times[121].1, times[305].1), (since_ns, until_ns), "the boundaries are rows' times");
    let expected: Vec<u64> =
        times.iter().filter(|(_, t)| (since_ns..until_ns).contains(t)).map(|(id, _)| *id).collect();
    assert_eq!(expected, (121..=304).collect::<Vec<_>>(), "by hand: 121..=299 in file 0, 300..=304 in file 1");

    let sql = "SELECT event_id, time FROM process_sample ORDER BY event_id";
    let output = query(&spool, &["--format", "csv", "--since", since, "--until", until, sql]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let csv = text(&output.stdout);
    assert_eq!(first_column(&csv), expected, "{csv}");
    assert_eq!(csv.lines().next(), Some("event_id,time"));
    // `time` is UTC with the row's nanoseconds.
    let line_121 = csv.lines().nth(1).expect("row");
    assert!(line_121.starts_with("121,2026-12-03T14:02:01.000000001"), "{line_121}");
    assert!(line_121.ends_with('Z') || line_121.ends_with("+00:00"), "shown in UTC: {line_121}");

    // Every table is filtered: agent_diag rows at 14:03, 14:04 and 14:05.
    let diag =
        query(&spool, &["--format", "csv", "--since", since, "--until", until, "SELECT event_id FROM agent_diag"]);
    assert_eq!(first_column(&text(&diag.stdout)), [1_003, 1_004, 1_005], "{}", text(&diag.stderr));

    // Plain SQL on `time` gives the same rows.
    let sql =
        format!("SELECT event_id FROM process_sample WHERE time >= '{since}' AND time < '{until}' ORDER BY event_id");
    let output = query(&spool, &["--format", "csv", &sql]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(first_column(&text(&output.stdout)), expected);

    // One bound alone: [since, ∞) holds the anchored rows from 121 on.
    let output = query(&spool, &["--format", "csv", "--since", since, "SELECT count(*) AS n FROM process_sample"]);
    assert_eq!(text(&output.stdout), format!("n\n{}\n", 600 - 121));
}

#[test]
fn files_without_an_anchor_have_a_null_time_and_one_warning() {
    let ws = Workspace::new();
    let (spool, _) = timed_spool(&ws);
    let sql = "SELECT count(*) AS n, min(event_id) AS lo FROM process_sample WHERE time IS NULL";
    let output = query(&spool, &["--format", "csv", sql]);
    let stderr = text(&output.stderr);
    assert_eq!((output.status.code(), text(&output.stdout)), (Some(0), "n,lo\n10,600\n".to_owned()), "{stderr}");
    assert_eq!(stderr.matches("have no wall-clock anchor").count(), 1, "{stderr}");
    assert!(stderr.contains("1 spool file(s)"), "{stderr}");
}

#[test]
fn tables_shows_the_utc_range_within_since_and_until() {
    let ws = Workspace::new();
    let (spool, _) = timed_spool(&ws);
    let output = query(&spool, &["--tables", "--since", "2026-12-03T14:02:00Z", "--until", "2026-12-03T14:03:00Z"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let listing = text(&output.stdout);
    let line = listing.lines().find(|l| l.starts_with("process_sample ")).unwrap_or_else(|| panic!("{listing}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    // Samples 120..=179 (179 is 2 ns past its second): 60 rows; the table has 3 files.
    assert_eq!(
        fields,
        [
            "process_sample",
            "3",
            "60",
            "1120000000000",
            "1179000000002",
            "2026-12-03T14:02:00.000000000Z",
            "2026-12-03T14:02:59.000000002Z"
        ],
        "{listing}"
    );
    assert!(listing.lines().next().is_some_and(|h| h.contains("first_time_utc")), "{listing}");
}

#[test]
fn bad_or_empty_time_ranges_are_refused() {
    let ws = Workspace::new();
    let (spool, _) = timed_spool(&ws);
    let output = query(&spool, &["--since", "2026-12-03 14:00", "SELECT 1"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--since") && stderr.contains("2026-12-03T14:00:00Z"), "{stderr}");
    let output = query(&spool, &["--since", "2026-12-03T14:00:00Z", "--until", "2026-12-03T14:00:00Z", "SELECT 1"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("is not before --until"), "{stderr}");
}

/// A security kind (issue #13) is a table like any other, with the columns
/// of its declaration; an exec's kernel attributes are columns of
/// `process_exec`.
#[test]
fn security_kinds_and_exec_attributes_are_queryable() {
    let ws = Workspace::new();
    let root = ws.path("spool");
    let samples = pipeline::event::columns::security_samples(1);
    let of = |kind: EventKind| -> Vec<Event> { samples.iter().filter(|e| e.kind() == kind).cloned().collect() };
    write_spool_file(&root, EventKind::NetListen, 0, &of(EventKind::NetListen));
    write_spool_file(&root, EventKind::FileChange, 0, &of(EventKind::FileChange));
    write_spool_file(&root, EventKind::ProcessExec, 0, &of(EventKind::ProcessExec));
    let output = query(&root, &["--format", "csv", "SELECT pid, protocol, addr, port, backlog FROM net_listen"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "pid,protocol,addr,port,backlog\n4242,udp,::ffff:10.0.0.1,65535,-1\n");
    let sql = "SELECT op, mode FROM file_change WHERE path LIKE '%authorized_keys'";
    let output = query(&root, &["--format", "csv", sql]);
    assert_eq!((output.status.code(), text(&output.stdout)), (Some(0), "op,mode\nsymlink,2541\n".to_owned()));
    let sql = "SELECT has_attributes, euid, file_memfd, stdin_type, stdin_peer_port, env_truncated FROM process_exec";
    let output = query(&root, &["--format", "csv", sql]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "has_attributes,euid,file_memfd,stdin_type,stdin_peer_port,env_truncated\ntrue,0,true,tcp,4444,true\n"
    );
}

/// A `process_exec` file of layout 2 (before the exec attributes) is not
/// read by the query command, whose tables have the current columns: it is
/// named and skipped, and the rest answers. (The replay source still
/// reads such files: `schemas::spool::verify_file_or_older`.)
#[test]
fn a_layout_2_exec_file_is_named_and_skipped() {
    let ws = Workspace::new();
    let root = ws.path("spool");
    let samples = pipeline::event::columns::security_samples(1);
    let execs: Vec<Event> = samples.iter().filter(|e| e.kind() == EventKind::ProcessExec).cloned().collect();
    let batch = sinks::arrow_spool::encode(EventKind::ProcessExec, &execs).expect("encode");
    let n = batch.schema().index_of("has_attributes").expect("layout 3");
    let old = batch.project(&(0..n).collect::<Vec<_>>()).expect("the layout-2 prefix");
    let dir = root.join("process_exec");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let schema = Arc::new(schemas::spool::with_wall_clock_anchor(&old.schema(), ANCHOR_NS));
    let file = std::fs::File::create(dir.join(schemas::spool::finished_name("process_exec", 0))).expect("create");
    let options = sinks::arrow_spool::ipc_options().expect("zstd");
    let mut writer = FileWriter::try_new_with_options(file, &schema, options).expect("writer");
    writer.write(&old.with_schema(Arc::clone(&schema)).expect("same columns")).expect("write");
    writer.finish().expect("finish");
    write_spool_file(&root, EventKind::ProcessExec, 1, &execs);
    let output = query(&root, &["--format", "csv", "SELECT pid, has_attributes FROM process_exec"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "pid,has_attributes\n4242,true\n");
    assert!(text(&output.stderr).contains("process_exec-0000000000.arrow"), "{}", text(&output.stderr));
}
