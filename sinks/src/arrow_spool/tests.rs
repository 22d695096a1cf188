//! Unit tests of the spool: encoding, rotation, retention, recovery.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt32Type, UInt64Type};
use arrow_array::RecordBatch;
use arrow_ipc::reader::FileReader;
use pipeline::event::*;
use pipeline::sketch::{LogSketch, SketchParts};

use super::*;

fn meta(id: u64) -> EventMeta {
    EventMeta { ts_ns: 1_000 + id, event_id: id }
}

fn key(pid: u32) -> ProcessKey {
    ProcessKey { pid, start_time_ns: u64::from(pid) * 10 }
}

/// Two events of every kind, ids 0..20, then the security kinds (ids 100.., 120..); the first exec has
/// attributes.
fn every_kind() -> Vec<Event> {
    let s: Arc<str> = Arc::from("bash");
    let mut sketch = LogSketch::default();
    for v in [0.0, 1.5, -2.0, 300.0] {
        sketch.add(v);
    }
    let mut events = Vec::new();
    for i in 0..2u32 {
        let id = u64::from(i) * 10;
        events.extend([
            Event::ProcessExec(ProcessExec {
                context: None,
                meta: meta(id),
                process: key(100 + i),
                ppid: 1,
                uid: 1000,
                gid: 100 + i,
                cgroup_id: 0x1_0000_0000 + u64::from(i),
                comm: s.clone(),
                exe: "/bin/bash".into(),
                // The second exec has no argument at all.
                argv: Argv::from_args(if i == 0 { &["bash", "-l", "a b", ""][..] } else { &[][..] }),
                argv_truncated: i == 1,
                attributes: (i == 0).then(pipeline::event::columns::sample_exec_attributes),
            }),
            Event::ProcessExit(ProcessExit {
                context: None,
                meta: meta(id + 1),
                process: key(101),
                exit_code: -3,
                cpu_ns: 7,
            }),
            Event::ProcessFork(ProcessFork { context: None, meta: meta(id + 2), parent: key(1), child: key(200 + i) }),
            Event::NetConnect(NetConnect {
                context: None,
                meta: meta(id + 3),
                process: key(7),
                protocol: Protocol::Udp,
                dst_addr: "::1".parse().expect("addr"),
                dst_port: 53,
                result: [Some(-115), None][i as usize],
            }),
            Event::FileOpen(FileOpen {
                context: None,
                meta: meta(id + 4),
                process: key(8),
                path: "/etc/hosts".into(),
                flags: 2,
            }),
            Event::ProcessSample(ProcessSample {
                meta: meta(id + 5),
                process: key(9),
                scan: ScanInfo { scan_id: 4, scan_size: 2 },
                ppid: 1,
                uid: 0,
                name: s.clone(),
                cmdline: "x".into(),
                state: b'S',
                threads: 3,
                cpu_ticks: 17,
                cpu_percent: 1.25,
                rss_bytes: 4096,
                top_n_rank: 1,
            }),
            Event::ProcessAggregate(ProcessAggregateSample {
                meta: meta(id + 6),
                scan: ScanInfo { scan_id: 4, scan_size: 2 },
                name: s.clone(),
                count: 2,
                cpu_ticks_sum: 5,
                cpu_percent_sum: 0.5,
                rss_bytes_sum: 10,
                rss_bytes_max: 7,
            }),
            Event::Sketch(SketchEvent {
                meta: meta(id + 7),
                metric_name: "process.cpu_percent".into(),
                key: "*".into(),
                window_start_ns: 1,
                window_end_ns: 2,
                sketch: sketch.clone(),
            }),
            Event::AgentDiag(AgentDiag {
                meta: meta(id + 8),
                module: "spool".into(),
                event_type: "t".into(),
                reason: "r".into(),
            }),
            Event::ProcessEphemeral(ProcessEphemeralSummary {
                meta: meta(id + 9),
                window_start_ns: 0,
                window_end_ns: 1_000 + id + 9,
                name: "(other)".into(),
                count: 3,
                cpu_ns: u64::MAX,
            }),
        ]);
        // The security kinds (the first exec above carries attributes).
        let samples = pipeline::event::columns::security_samples(100 + 20 * u64::from(i));
        events.extend(samples.into_iter().filter(|e| e.kind() != EventKind::ProcessExec));
    }
    events
}

fn settings(root: &Path) -> Settings {
    Settings {
        root: root.to_owned(),
        max_file_bytes: 64 << 20,
        max_file_age: Duration::from_secs(300),
        retention_max_bytes: 1 << 30,
        retention_max_age: Duration::from_secs(86_400),
        flush_interval: Duration::from_secs(5),
        batch_rows: 8192,
        fsync: Fsync::OnRotate,
    }
}

fn open(settings: Settings) -> Spool {
    Spool::open(settings, Access::default(), SpoolMetrics::new("test")).expect("spool opens")
}

/// Every finished file of `kind`, sorted, and its batches.
fn finished(root: &Path, kind: &str) -> Vec<(String, Vec<RecordBatch>)> {
    let mut names: Vec<String> = std::fs::read_dir(root.join(kind))
        .expect("kind dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".arrow"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let file = std::fs::File::open(root.join(kind).join(&name)).expect("open");
            let reader = FileReader::try_new(file, None).expect("a finished file opens");
            let schema = schemas::schema_for(kind).expect("schema");
            assert_eq!(reader.schema().fields(), schema.fields(), "{name}");
            let anchor = schemas::spool::wall_clock_anchor(reader.schema().metadata());
            assert!(anchor.is_some_and(plausible_anchor), "{name}: anchor {anchor:?}");
            let batches = reader.collect::<Result<Vec<_>, _>>().expect("batches read");
            (name, batches)
        })
        .collect()
}

/// An anchor sampled on this machine in the last minute: realtime − boottime.
fn plausible_anchor(anchor: i64) -> bool {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    let boottime = pipeline::diag::boottime_ns() as i64;
    (since.as_nanos() as i64 - boottime - anchor).abs() < 60_000_000_000
}

fn rows(files: &[(String, Vec<RecordBatch>)]) -> usize {
    files.iter().flat_map(|(_, b)| b).map(RecordBatch::num_rows).sum()
}

#[test]
fn every_kind_round_trips_through_a_finished_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut spool = open(settings(dir.path()));
    let events = every_kind();
    spool.write(events.clone()).expect("write");
    spool.finish_all().expect("finish");
    for kind in EventKind::ALL {
        let name = kind.as_str();
        let files = finished(dir.path(), name);
        assert_eq!(files.len(), 1, "{name}");
        assert_eq!(files[0].0, format!("{name}-0000000000.arrow"));
        let of_kind: Vec<Event> = events.iter().filter(|e| e.kind() == kind).cloned().collect();
        let expected = encode(kind, &of_kind).expect("encode");
        assert_eq!(files[0].1.len(), 1, "{name}");
        // Equal columns; the file's schema adds the wall-clock anchor to the metadata.
        assert_eq!(files[0].1[0].columns(), expected.columns(), "{name}: read back equals what was encoded");
        let ids: Vec<u64> = expected.column(0).as_primitive::<UInt64Type>().values().to_vec();
        assert_eq!(ids, of_kind.iter().map(|e| e.meta().event_id).collect::<Vec<_>>(), "{name}");
    }
    let sample = &finished(dir.path(), "process_sample")[0].1[0];
    assert_eq!(sample.column_by_name("pid").expect("pid").as_primitive::<UInt32Type>().values(), &[9, 9]);
    assert_eq!(sample.column_by_name("state").expect("state").as_string::<i32>().value(0), "S");
    let net = &finished(dir.path(), "net_connect")[0].1[0];
    assert_eq!(net.column_by_name("dst_addr").expect("addr").as_string::<i32>().value(1), "::1");
    let result = net.column_by_name("result").expect("result").as_primitive::<arrow_array::types::Int32Type>();
    let has_result = net.column_by_name("has_result").expect("has_result").as_boolean();
    assert_eq!(
        (result.values().to_vec(), has_result.iter().collect::<Vec<_>>()),
        (vec![-115, 0], vec![Some(true), Some(false)])
    );
    let exec = &finished(dir.path(), "process_exec")[0].1[0];
    let argv = exec.column_by_name("argv").expect("argv").as_list::<i32>();
    let args = |row: usize| -> Vec<String> {
        argv.value(row).as_string::<i32>().iter().map(|a| a.expect("non-null").to_owned()).collect()
    };
    assert_eq!((args(0), args(1)), (vec!["bash".to_owned(), "-l".into(), "a b".into(), String::new()], vec![]));
    // A sketch comes back exactly, negative bins included.
    let sk = &finished(dir.path(), "sketch")[0].1[0];
    let u64_at = |name: &str| sk.column_by_name(name).expect(name).as_primitive::<UInt64Type>().value(0);
    let f64_at =
        |name: &str| sk.column_by_name(name).expect(name).as_primitive::<arrow_array::types::Float64Type>().value(0);
    let i32_at =
        |name: &str| sk.column_by_name(name).expect(name).as_primitive::<arrow_array::types::Int32Type>().value(0);
    let list_at = |name: &str| -> Vec<u64> {
        sk.column_by_name(name).expect(name).as_list::<i32>().value(0).as_primitive::<UInt64Type>().values().to_vec()
    };
    let parts = SketchParts {
        gamma: f64_at("gamma"),
        count: u64_at("count"),
        sum: f64_at("sum"),
        min: f64_at("min"),
        max: f64_at("max"),
        zero_count: u64_at("zero_count"),
        positive_offset: i32_at("bins_offset"),
        positive_bins: list_at("bins"),
        negative_offset: i32_at("neg_bins_offset"),
        negative_bins: list_at("neg_bins"),
    };
    let Event::Sketch(original) = &events[7] else { panic!("event 7 is a sketch") };
    assert_eq!(LogSketch::from_parts(parts).expect("valid parts"), original.sketch);
}

#[test]
fn files_rotate_by_size_and_by_age_and_sequence_continues_after_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut small = settings(dir.path());
    small.max_file_bytes = 1;
    let mut spool = open(small);
    for _ in 0..3 {
        spool.write(every_kind()).expect("write");
    }
    let files = finished(dir.path(), "process_exec");
    assert_eq!(
        files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        ["process_exec-0000000000.arrow", "process_exec-0000000001.arrow", "process_exec-0000000002.arrow"]
    );
    assert_eq!(rows(&files), 6);
    drop(spool);

    let mut aged = settings(dir.path());
    aged.max_file_age = Duration::from_millis(50);
    let mut spool = open(aged);
    spool.write(every_kind()).expect("write");
    assert!(dir.path().join("process_exec/process_exec-0000000003.arrow.tmp").exists(), "open while young");
    std::thread::sleep(Duration::from_millis(80));
    spool.write(Vec::new()).expect("an empty write still checks ages");
    assert!(dir.path().join("process_exec/process_exec-0000000003.arrow").exists(), "rotated by age");
    assert_eq!(rows(&finished(dir.path(), "process_exec")), 8);
}

#[test]
fn retention_removes_oldest_first_and_never_the_open_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = settings(dir.path());
    config.max_file_bytes = 1;
    let mut spool = open(config.clone());
    for _ in 0..4 {
        spool.write(every_kind()[..1].to_vec()).expect("write");
        std::thread::sleep(Duration::from_millis(20));
    }
    let size = std::fs::metadata(dir.path().join("process_exec/process_exec-0000000000.arrow")).expect("file").len();
    drop(spool);
    // Room for two finished files plus the open one.
    config.max_file_bytes = 64 << 20;
    config.retention_max_bytes = size * 3;
    let mut spool = open(config);
    spool.write(every_kind()[..1].to_vec()).expect("write");
    let names: Vec<String> = finished(dir.path(), "process_exec").into_iter().map(|f| f.0).collect();
    // Opening already applied retention: four files did not fit in three.
    assert_eq!(
        names,
        ["process_exec-0000000001.arrow", "process_exec-0000000002.arrow", "process_exec-0000000003.arrow"]
    );
    spool.enforce_retention();
    let names: Vec<String> = finished(dir.path(), "process_exec").into_iter().map(|f| f.0).collect();
    assert_eq!(names, ["process_exec-0000000002.arrow", "process_exec-0000000003.arrow"], "oldest two deleted");
    assert!(dir.path().join("process_exec/process_exec-0000000004.arrow.tmp").exists(), "open file kept");
}

#[test]
fn a_crashed_tmp_file_is_recovered_and_garbage_is_quarantined() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut spool = open(settings(dir.path()));
    for _ in 0..3 {
        spool.write(every_kind()[..1].to_vec()).expect("write");
    }
    // The "crash": copy the footerless tmp aside before anything finishes it.
    let tmp = dir.path().join("process_exec/process_exec-0000000000.arrow.tmp");
    let bytes = std::fs::read(&tmp).expect("tmp written");
    assert!(FileReader::try_new(std::fs::File::open(&tmp).expect("tmp"), None).is_err(), "no footer yet");
    drop(spool);
    let schema = schemas::schema_for("process_exec").expect("schema");
    assert_eq!(readable_batches(&bytes, &schema).map(|b| b.len()), Ok(3));
    let crashed = tempfile::tempdir().expect("tmp");
    let exec_dir = crashed.path().join("process_exec");
    std::fs::create_dir_all(&exec_dir).expect("dir");
    std::fs::write(exec_dir.join("process_exec-0000000000.arrow.tmp"), &bytes).expect("copy");
    // A cut-short copy: the last batch is incomplete, the first two are kept.
    std::fs::write(exec_dir.join("process_exec-0000000001.arrow.tmp"), &bytes[..bytes.len() - 10]).expect("copy");
    std::fs::write(exec_dir.join("process_exec-0000000002.arrow.tmp"), b"not arrow at all").expect("garbage");
    let metrics = SpoolMetrics::new("test");
    let mut spool =
        Spool::open(settings(crashed.path()), Access::default(), metrics).expect("recovery never fails the start");
    let files = finished(crashed.path(), "process_exec");
    assert_eq!(
        files.iter().map(|f| (f.0.as_str(), f.1.len())).collect::<Vec<_>>(),
        [("process_exec-0000000000.arrow", 3), ("process_exec-0000000001.arrow", 2)]
    );
    assert!(exec_dir.join("quarantine/process_exec-0000000002.arrow.tmp").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&exec_dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no tmp remains");
    spool.write(every_kind()[..1].to_vec()).expect("write");
    assert!(exec_dir.join("process_exec-0000000003.arrow.tmp").exists(), "numbering continues after 2");
}

/// Issue #18: recovery reads what a crash left, and arrow's stream reader
/// trusts the lengths it finds (an impossible one aborts the process). Every
/// byte of a tmp file overwritten in turn with 0xff and with 0x7f — every
/// length field among them becomes huge or negative — recovers at most
/// the batches the file holds, and never aborts.
#[test]
fn recovery_survives_any_corrupt_byte_of_a_tmp_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut spool = open(settings(dir.path()));
    for _ in 0..3 {
        spool.write(every_kind()[..1].to_vec()).expect("write");
    }
    let tmp = dir.path().join("process_exec/process_exec-0000000000.arrow.tmp");
    let bytes = std::fs::read(&tmp).expect("tmp written");
    drop(spool);
    let schema = schemas::schema_for("process_exec").expect("schema");
    let (mut recovered, mut refused) = (0, 0);
    for at in 0..bytes.len() {
        for value in [0xff, 0x7f] {
            let mut corrupt = bytes.clone();
            corrupt[at] = value;
            match readable_batches(&corrupt, &schema) {
                Ok(batches) => {
                    assert!(batches.len() <= 3, "byte {at}: {} batches", batches.len());
                    recovered += 1;
                }
                Err(_) => refused += 1,
            }
        }
    }
    assert!(recovered > 0 && refused > 0, "recovered {recovered}, refused {refused}");
}

#[test]
fn bad_values_are_errors_at_their_location() {
    let check = |toml_text: &str, expected: &str| {
        let text = format!("[sinks.s]\ntype = \"arrow_spool\"\ninputs = [\"g\"]\n{toml_text}\n");
        let file = pipeline::config::SourceFile::new("t.toml", text);
        let config = pipeline::config::TopologyConfig::parse(file).expect("parses");
        let decl = config.components.into_iter().next().expect("one component");
        let errors = match build(&decl.options) {
            Ok(_) => panic!("{toml_text}: accepted"),
            Err(errors) => errors,
        };
        let shown = errors.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>().join("\n");
        assert!(shown.contains(expected), "{toml_text}: {shown}");
        // The bad key or value is on the last line (line 5).
        let location = errors[0].location().expect("located");
        assert_eq!(location.line, 5, "{toml_text}: {shown}");
    };
    check("path = \"d\"\nmax_file_bytes = 0", "`max_file_bytes` must be at least 1");
    check("path = \"d\"\nflush_interval_secs = -1.0", "`flush_interval_secs` must be a positive number");
    check("path = \"d\"\nfsync = \"sometimes\"", "unknown variant");
    check("path = \"d\"\nmax_file_byte = 3", "unknown field");
    check("path = \"d\"\ngroup = \"no-such-group-hostflow\"", "group `no-such-group-hostflow` is not in /etc/group");
}

#[test]
fn an_unwritable_directory_is_a_clear_open_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").expect("file");
    let error = match Spool::open(settings(&file.join("spool")), Access::default(), SpoolMetrics::new("t")) {
        Ok(_) => panic!("opened under a file"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("cannot create spool directory"), "{error}");
}

/// The open file of `kind`'s stream, if any.
fn open_file<'a>(spool: &'a Spool, kind: &str) -> Option<&'a writer::OpenFile> {
    spool.streams.iter().find(|s| s.kind.as_str() == kind)?.open.as_ref()
}

#[test]
fn the_tick_syncs_then_rotates_an_idle_file_with_no_input() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = settings(dir.path());
    config.flush_interval = Duration::from_millis(100);
    config.max_file_age = Duration::from_millis(400);
    assert_eq!(tick_period(&config), Duration::from_millis(25), "a quarter of the shorter bound");
    let mut spool = open(config);
    spool.write(every_kind()).expect("write");
    let written = Instant::now();
    let tmp = dir.path().join("process_exec/process_exec-0000000000.arrow.tmp");
    assert_eq!(open_file(&spool, "process_exec").map(|f| f.unsynced_rows), Some(2));
    assert!(!spool.tick_due(Instant::now()), "nothing due right after a write");
    // No more writes from here on: only ticks.
    std::thread::sleep(Duration::from_millis(120));
    assert!(spool.tick_due(Instant::now()), "rows older than the flush bound");
    spool.tick().expect("tick");
    assert_eq!(open_file(&spool, "process_exec").map(|f| f.unsynced_rows), Some(0), "synced by the tick");
    assert!(spool.streams.iter().filter_map(|s| s.open.as_ref()).all(|f| f.unsynced_since.is_none()));
    assert!(tmp.exists() && !spool.tick_due(Instant::now()), "still open: younger than the age bound");
    while written.elapsed() < Duration::from_millis(400) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(spool.tick_due(Instant::now()), "older than the age bound");
    spool.tick().expect("tick");
    assert!(!tmp.exists(), "the tick rotated it");
    assert!(spool.streams.iter().all(|s| s.open.is_none()), "every kind rotated");
    for kind in EventKind::ALL {
        assert_eq!(rows(&finished(dir.path(), kind.as_str())), 2, "{}", kind.as_str());
    }
}

#[test]
fn fsync_always_leaves_nothing_unsynced_and_never_syncs_nothing() {
    for (fsync, unsynced) in [(Fsync::Always, 0), (Fsync::Never, 2)] {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = settings(dir.path());
        config.flush_interval = Duration::from_millis(10);
        config.fsync = fsync;
        let mut spool = open(config);
        spool.write(every_kind()).expect("write");
        std::thread::sleep(Duration::from_millis(20));
        spool.tick().expect("tick");
        assert_eq!(open_file(&spool, "file_open").map(|f| f.unsynced_rows), Some(unsynced), "{fsync:?}");
    }
}

#[tokio::test]
async fn the_sink_rotates_by_age_through_on_tick_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = settings(dir.path());
    config.max_file_age = Duration::from_millis(200);
    let mut sink = ArrowSpool::new(config, "tick-test");
    let period = sink.tick_interval().expect("the spool ticks");
    sink.open().await.expect("open");
    sink.write(every_kind()).await.expect("write");
    let written = Instant::now();
    let finished_path = dir.path().join("sketch/sketch-0000000000.arrow");
    // What the engine's loop does with no input: tick every period.
    while !finished_path.exists() {
        assert!(written.elapsed() < Duration::from_secs(5), "not rotated by ticks alone");
        tokio::time::sleep(period).await;
        sink.on_tick().await.expect("tick");
    }
    let age = written.elapsed();
    assert!(age >= Duration::from_millis(200), "not before the age bound: {age:?}");
    sink.flush().await.expect("flush");
}

#[tokio::test]
async fn durable_batches_follow_the_syncs() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = settings(dir.path());
    config.flush_interval = Duration::from_millis(100);
    let mut sink = ArrowSpool::new(config, "durable-test");
    let period = sink.tick_interval().expect("the spool ticks");
    sink.open().await.expect("open");
    assert_eq!(sink.durable_batches(), Some(0));
    let written = Instant::now();
    for n in 1..=3u64 {
        sink.write(every_kind()).await.expect("write");
        assert_eq!(sink.durable_batches(), Some(0), "batch {n}: written, not yet synced");
    }
    // An empty batch behind unsynced ones is not durable before them.
    sink.write(Vec::new()).await.expect("write");
    assert_eq!(sink.durable_batches(), Some(0));
    // What the engine's loop does with no input: tick every period.
    while sink.durable_batches() != Some(4) {
        assert!(written.elapsed() < Duration::from_secs(5), "never synced by ticks: {:?}", sink.durable_batches());
        tokio::time::sleep(period).await;
        sink.on_tick().await.expect("tick");
        assert!(sink.durable_batches().is_some_and(|n| n == 0 || n == 4), "all three share one sync per file");
    }
    assert!(written.elapsed() >= Duration::from_millis(100), "not before the flush bound");
    let mut open_files = sink.spool.as_ref().expect("open").streams.iter().filter_map(|s| s.open.as_ref());
    assert!(open_files.all(|f| f.unsynced_rows == 0 && f.unsynced_from_batch.is_none()));

    // Only sketches this time: the other kinds' files stay synced.
    let sketches: Vec<Event> = every_kind().into_iter().filter(|e| e.kind() == EventKind::Sketch).collect();
    sink.write(sketches).await.expect("write");
    sink.write(every_kind()).await.expect("write");
    assert_eq!(sink.durable_batches(), Some(4), "batch 5 waits for its sketch file's sync");
    sink.flush().await.expect("flush");
    assert_eq!(sink.durable_batches(), Some(6), "flush finishes (and syncs) every file");
}

#[tokio::test]
async fn with_fsync_always_or_never_every_written_batch_is_durable() {
    for fsync in [Fsync::Always, Fsync::Never] {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = settings(dir.path());
        config.fsync = fsync;
        let mut sink = ArrowSpool::new(config, "durable-test");
        sink.open().await.expect("open");
        for n in 1..=3 {
            sink.write(every_kind()).await.expect("write");
            assert_eq!(sink.durable_batches(), Some(n), "{fsync:?}");
        }
        sink.flush().await.expect("flush");
        assert_eq!(sink.durable_batches(), Some(3), "{fsync:?}");
    }
}

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::symlink_metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Every directory and file under `root` with its mode, root included.
fn modes(root: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let is_dir = path.is_dir();
        out.push((path.clone(), is_dir, mode(&path)));
        if is_dir {
            stack.extend(std::fs::read_dir(&path).expect("list").flatten().map(|e| e.path()));
        }
    }
    out
}

#[test]
fn everything_the_spool_creates_is_owner_only() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("data/spool");
    let mut spool = open(settings(&root));
    spool.write(every_kind()).expect("write");
    let mut config = settings(&root);
    config.max_file_bytes = 1;
    drop(spool);
    // Another start: a garbage tmp is quarantined, a real one recovered.
    let exec_dir = root.join("process_exec");
    std::fs::write(exec_dir.join("process_exec-0000000005.arrow.tmp"), b"garbage").expect("garbage");
    let mut spool = open(config);
    spool.write(every_kind()).expect("write");
    spool.finish_all().expect("finish");
    assert_eq!(mode(&dir.path().join("data")), 0o700, "a missing parent is created private too");
    let all = modes(&root);
    assert!(all.iter().any(|(p, _, _)| p.ends_with("quarantine")), "{all:?}");
    assert!(all.iter().any(|(p, _, _)| p.to_string_lossy().ends_with(".arrow")), "{all:?}");
    for (path, is_dir, mode) in all {
        assert_eq!(mode, if is_dir { 0o700 } else { 0o600 }, "{}", path.display());
    }
}

#[test]
fn with_a_group_the_spool_is_group_readable_and_owned_by_it() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().expect("tmp");
    // A group this process may give files to: any as root (one that is not
    // root's own, so the chown shows), else its own.
    let meta = std::fs::metadata(dir.path()).expect("stat");
    let gid = if meta.uid() == 0 { 65_534 } else { meta.gid() };
    let root = dir.path().join("spool");
    let access = Access { gid: Some(gid) };
    let mut spool = Spool::open(settings(&root), access, SpoolMetrics::new("t")).expect("open");
    spool.write(every_kind()).expect("write");
    spool.finish_all().expect("finish");
    for (path, is_dir, mode) in modes(&root) {
        assert_eq!(mode, if is_dir { 0o750 } else { 0o640 }, "{}", path.display());
        assert_eq!(std::fs::metadata(&path).expect("stat").gid(), gid, "{}", path.display());
    }
}

#[test]
fn existing_open_entries_are_narrowed_at_start_and_counted() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("spool");
    let mut spool = open(settings(&root));
    spool.write(every_kind()).expect("write");
    spool.finish_all().expect("finish");
    drop(spool);
    let chmod = |path: &Path, mode: u32| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    let file = root.join("sketch/sketch-0000000000.arrow");
    chmod(&root, 0o755).expect("chmod");
    chmod(&root.join("sketch"), 0o2775).expect("chmod");
    chmod(&file, 0o666).expect("chmod");
    assert_eq!(
        access::tighten(&root, Access::default()).expect("tighten").len(),
        3,
        "the root, one kind dir and one file"
    );
    assert_eq!((mode(&root), mode(&root.join("sketch")), mode(&file)), (0o700, 0o2700, 0o600), "setgid kept");
    assert!(access::tighten(&root, Access::default()).expect("again").is_empty(), "nothing left to narrow");
    // Opening the spool narrows too (one warning, counted).
    chmod(&file, 0o644).expect("chmod");
    drop(open(settings(&root)));
    assert_eq!(mode(&file), 0o600);
}

#[test]
fn a_directory_others_can_write_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt as _;
    let chmod = |path: &Path, mode: u32| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    let refused = |root: &Path| match Spool::open(settings(root), Access::default(), SpoolMetrics::new("t")) {
        Ok(_) => None,
        Err(error) => Some(error.to_string()),
    };
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let root = data.join("spool");

    chmod(&data, 0o777).expect("chmod");
    let error = refused(&root).expect("a world-writable parent is refused");
    assert!(error.contains(&format!("{} is writable by other users (mode 0777)", data.display())), "{error}");
    assert!(error.contains(&format!("chmod o-w {}", data.display())), "{error}");
    assert!(!root.exists(), "refused before creating anything");

    chmod(&data, 0o1777).expect("chmod");
    assert_eq!(refused(&root), None, "a sticky parent (like /tmp) is fine");
    assert_eq!(mode(&root), 0o700);

    chmod(&data, 0o755).expect("chmod");
    chmod(&root, 0o1777).expect("chmod");
    let error = refused(&root).expect("an others-writable spool directory is refused, sticky or not");
    assert!(error.contains(&format!("spool directory {} is writable by other users", root.display())), "{error}");
    chmod(&root, 0o770).expect("chmod");
    assert_eq!(refused(&root), None, "group-writable is the operator's choice");
    assert_eq!(mode(&root), 0o700, "but narrowed to the spool's mode");
}

#[test]
fn groups_are_read_from_etc_group_text() {
    let text = "root:x:0:\nadm:x:4:syslog,alice\nhostflow:x:998:\nbroken:x:notanumber:\n";
    assert_eq!(access::gid_in(text, "hostflow"), Some(998));
    assert_eq!(access::gid_in(text, "adm"), Some(4));
    assert_eq!(access::gid_in(text, "host"), None, "whole names only");
    assert_eq!(access::gid_in(text, "broken"), None);
    assert_eq!(access::resolve_group("4242").expect("a number is a gid"), 4242);
    assert_eq!(access::resolve_group("root").expect("root is in /etc/group"), 0);
    let error = access::resolve_group("no-such-group-hostflow").expect_err("unknown").to_string();
    assert!(error.contains("`no-such-group-hostflow` is not in /etc/group"), "{error}");
}

#[test]
fn a_recovered_file_keeps_its_wall_clock_anchor() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut spool = open(settings(dir.path()));
    spool.write(every_kind()[..1].to_vec()).expect("write");
    let tmp = dir.path().join("process_exec/process_exec-0000000000.arrow.tmp");
    let bytes = std::fs::read(&tmp).expect("tmp");
    drop(spool);
    // Rewrite the anchor in the copy's schema message: a known value.
    let crashed = tempfile::tempdir().expect("tmp");
    let exec_dir = crashed.path().join("process_exec");
    std::fs::create_dir_all(&exec_dir).expect("dir");
    let schema = schemas::schema_for("process_exec").expect("schema");
    let batches = readable_batches(&bytes, &schema).expect("readable");
    let anchored = schemas::spool::with_wall_clock_anchor(&schema, 1_234_567_890_123_456_789);
    let mut writer = arrow_ipc::writer::FileWriter::try_new(Vec::new(), &anchored).expect("writer");
    for batch in &batches {
        writer.write(batch).expect("write");
    }
    // No footer: cut right after the batches, as a crash would.
    let unfinished = writer.get_ref().clone();
    std::fs::write(exec_dir.join("process_exec-0000000000.arrow.tmp"), unfinished).expect("copy");
    drop(open(settings(crashed.path())));
    let file = std::fs::File::open(exec_dir.join("process_exec-0000000000.arrow")).expect("recovered");
    let reader = FileReader::try_new(file, None).expect("opens");
    assert_eq!(schemas::spool::wall_clock_anchor(reader.schema().metadata()), Some(1_234_567_890_123_456_789));
}
