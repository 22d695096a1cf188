//! Tests of replay's decoders and readers on real files in temp dirs:
//! hand-built record batches with explicit values (never this crate's own
//! encoder, which would only mirror the decoder), IPC files written with
//! zstd exactly as the spool writes them, NDJSON lines as literal strings
//! in the `file` sink's format. The encoder → decoder round trip of every
//! kind lives in the root package, which can see both crates.

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, UInt64Builder};
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, RecordBatch, StringArray, UInt16Array, UInt32Array, UInt64Array,
};
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_ipc::CompressionType;
use pipeline::event::{
    AgentDiag, Argv, FileOpen, NetConnect, ProcessAggregateSample, ProcessEphemeralSummary, ProcessExec, ProcessExit,
    ProcessFork, Protocol, ScanInfo, SketchEvent,
};
use pipeline::sketch::LogSketch;
use pipeline::{Event, EventKind, EventMeta, ProcessKey};

use super::*;

pub(super) fn u64s(values: &[u64]) -> ArrayRef {
    Arc::new(UInt64Array::from(values.to_vec()))
}

pub(super) fn u32s(values: &[u32]) -> ArrayRef {
    Arc::new(UInt32Array::from(values.to_vec()))
}

pub(super) fn i32s(values: &[i32]) -> ArrayRef {
    Arc::new(Int32Array::from(values.to_vec()))
}

pub(super) fn f64s(values: &[f64]) -> ArrayRef {
    Arc::new(Float64Array::from(values.to_vec()))
}

pub(super) fn strs(values: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

pub(super) fn bools(values: &[bool]) -> ArrayRef {
    Arc::new(BooleanArray::from(values.to_vec()))
}

/// An `argv` column: one list of strings per row.
pub(super) fn argvs(rows: &[&[&str]]) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(schemas::arrow::argv_item()));
    for args in rows {
        for arg in *args {
            builder.values().append_value(arg);
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

fn lists(values: &[&[u64]]) -> ArrayRef {
    let mut builder = ListBuilder::new(UInt64Builder::new());
    for bins in values {
        builder.values().append_slice(bins);
        builder.append(true);
    }
    Arc::new(builder.finish())
}

/// A record batch in `kind`'s spool schema, or in an older layout of it
/// when given fewer columns (the first ones: columns are only appended).
pub(super) fn batch(kind: EventKind, columns: Vec<ArrayRef>) -> RecordBatch {
    let schema = schemas::schema_for(kind.as_str()).expect("a schema per kind");
    let fields: Vec<_> = schema.fields().iter().take(columns.len()).cloned().collect();
    let schema = Arc::new(arrow_schema::Schema::new_with_metadata(fields, schema.metadata().clone()));
    RecordBatch::try_new(schema, columns).expect("columns match the schema")
}

/// Writes a finished spool file exactly as the spool sink does (IPC file,
/// zstd buffers, the layout's name).
pub(super) fn write_spool_file(dir: &Path, kind: EventKind, seq: u64, batches: &[RecordBatch]) -> PathBuf {
    let kind_dir = dir.join(kind.as_str());
    std::fs::create_dir_all(&kind_dir).expect("mkdir");
    let path = kind_dir.join(schemas::spool::finished_name(kind.as_str(), seq));
    // The batches' own schema: the kind's, or an older layout's prefix.
    let schema = batches.first().map_or_else(|| schemas::schema_for(kind.as_str()).expect("schema"), |b| b.schema());
    let options = IpcWriteOptions::default().try_with_compression(Some(CompressionType::ZSTD)).expect("zstd");
    let file = File::create(&path).expect("create");
    let mut writer = FileWriter::try_new_with_options(file, &schema, options).expect("writer");
    for batch in batches {
        writer.write(batch).expect("write");
    }
    writer.finish().expect("footer");
    path
}

pub(super) fn meta(event_id: u64, ts_ns: u64) -> EventMeta {
    EventMeta { ts_ns, event_id }
}

/// `process_exit` rows (id, ts); pid = id, exit code = 0.
pub(super) fn exits(rows: &[(u64, u64)]) -> RecordBatch {
    let ids: Vec<u64> = rows.iter().map(|r| r.0).collect();
    let ts: Vec<u64> = rows.iter().map(|r| r.1).collect();
    let pids: Vec<u32> = rows.iter().map(|r| r.0 as u32).collect();
    let zeros = vec![0; rows.len()];
    batch(EventKind::ProcessExit, vec![u64s(&ids), u64s(&ts), u32s(&pids), u64s(&ts), i32s(&zeros), u64s(&ids)])
}

/// `agent_diag` rows (id, ts).
pub(super) fn diags(rows: &[(u64, u64)]) -> RecordBatch {
    let ids: Vec<u64> = rows.iter().map(|r| r.0).collect();
    let ts: Vec<u64> = rows.iter().map(|r| r.1).collect();
    let text = vec!["x"; rows.len()];
    batch(EventKind::AgentDiag, vec![u64s(&ids), u64s(&ts), strs(&text), strs(&text), strs(&text)])
}

/// (kind, event_id, ts_ns) of each event, for order checks.
pub(super) fn keys(events: &[Event]) -> Vec<(EventKind, u64, u64)> {
    events.iter().map(|e| (e.kind(), e.meta().event_id, e.meta().ts_ns)).collect()
}

pub(super) fn read_all_spool(dir: &Path, selection: &Selection, batch_size: usize) -> (Vec<Batch>, ReadStats) {
    let mut reader = read_spool(dir, selection, batch_size);
    let batches: Vec<Batch> = reader.by_ref().collect();
    (batches, reader.stats())
}

#[test]
fn decodes_process_kinds_field_for_field() {
    let exec = batch(
        EventKind::ProcessExec,
        vec![
            u64s(&[7, 8]),
            u64s(&[100, 200]),
            u32s(&[42, 43]),
            u64s(&[99, u64::MAX]),
            u32s(&[1, 42]),
            u32s(&[0, u32::MAX]),
            u32s(&[5, u32::MAX]),
            u64s(&[0, u64::MAX]),
            strs(&["sh", "sh"]),
            strs(&["/bin/sh", "/usr/bin/é"]),
            argvs(&[&["sh", "-c", "\"echo\ttab\"", ""], &[]]),
            bools(&[false, true]),
        ],
    );
    let events = decode_batch(EventKind::ProcessExec, &exec).expect("decodes");
    assert_eq!(
        events,
        vec![
            Event::ProcessExec(ProcessExec {
                context: None,
                meta: meta(7, 100),
                process: ProcessKey { pid: 42, start_time_ns: 99 },
                ppid: 1,
                uid: 0,
                gid: 5,
                cgroup_id: 0,
                comm: Arc::from("sh"),
                exe: Arc::from("/bin/sh"),
                argv: Argv::from_args(["sh", "-c", "\"echo\ttab\"", ""]),
                argv_truncated: false,
                attributes: None,
            }),
            Event::ProcessExec(ProcessExec {
                context: None,
                meta: meta(8, 200),
                process: ProcessKey { pid: 43, start_time_ns: u64::MAX },
                ppid: 42,
                uid: u32::MAX,
                gid: u32::MAX,
                cgroup_id: u64::MAX,
                comm: Arc::from("sh"),
                exe: Arc::from("/usr/bin/é"),
                argv: Argv::default(),
                argv_truncated: true,
                attributes: None,
            }),
        ]
    );
    let exit = batch(
        EventKind::ProcessExit,
        vec![u64s(&[1]), u64s(&[2]), u32s(&[3]), u64s(&[4]), i32s(&[-9]), u64s(&[u64::MAX])],
    );
    assert_eq!(
        decode_batch(EventKind::ProcessExit, &exit).expect("decodes"),
        vec![Event::ProcessExit(ProcessExit {
            context: None,
            meta: meta(1, 2),
            process: ProcessKey { pid: 3, start_time_ns: 4 },
            exit_code: -9,
            cpu_ns: u64::MAX,
        })]
    );
    let ephemeral = batch(
        EventKind::ProcessEphemeral,
        vec![u64s(&[1]), u64s(&[20]), u64s(&[10]), u64s(&[20]), strs(&["(other)"]), u64s(&[7]), u64s(&[u64::MAX])],
    );
    assert_eq!(
        decode_batch(EventKind::ProcessEphemeral, &ephemeral).expect("decodes"),
        vec![Event::ProcessEphemeral(ProcessEphemeralSummary {
            meta: meta(1, 20),
            window_start_ns: 10,
            window_end_ns: 20,
            name: Arc::from("(other)"),
            count: 7,
            cpu_ns: u64::MAX,
        })]
    );
    let fork =
        batch(EventKind::ProcessFork, vec![u64s(&[1]), u64s(&[2]), u32s(&[3]), u64s(&[4]), u32s(&[5]), u64s(&[6])]);
    assert_eq!(
        decode_batch(EventKind::ProcessFork, &fork).expect("decodes"),
        vec![Event::ProcessFork(ProcessFork {
            context: None,
            meta: meta(1, 2),
            parent: ProcessKey { pid: 3, start_time_ns: 4 },
            child: ProcessKey { pid: 5, start_time_ns: 6 },
        })]
    );
    let connect = batch(
        EventKind::NetConnect,
        vec![
            u64s(&[1, 2]),
            u64s(&[10, 20]),
            u32s(&[3, 3]),
            u64s(&[4, 4]),
            strs(&["tcp", "udp"]),
            strs(&["10.0.0.1", "2001:db8::1"]),
            Arc::new(UInt16Array::from(vec![443, 53])),
            i32s(&[-111, 0]),
            bools(&[true, false]),
        ],
    );
    let process = ProcessKey { pid: 3, start_time_ns: 4 };
    assert_eq!(
        decode_batch(EventKind::NetConnect, &connect).expect("decodes"),
        vec![
            Event::NetConnect(NetConnect {
                context: None,
                meta: meta(1, 10),
                process,
                protocol: Protocol::Tcp,
                dst_addr: IpAddr::from([10, 0, 0, 1]),
                dst_port: 443,
                result: Some(-111),
            }),
            Event::NetConnect(NetConnect {
                context: None,
                meta: meta(2, 20),
                process,
                protocol: Protocol::Udp,
                dst_addr: "2001:db8::1".parse().expect("v6"),
                dst_port: 53,
                result: None,
            }),
        ]
    );
    let open = batch(
        EventKind::FileOpen,
        vec![u64s(&[1]), u64s(&[2]), u32s(&[3]), u64s(&[4]), strs(&["/etc/passwd"]), u32s(&[0o2_000_001])],
    );
    assert_eq!(
        decode_batch(EventKind::FileOpen, &open).expect("decodes"),
        vec![Event::FileOpen(FileOpen {
            context: None,
            meta: meta(1, 2),
            process,
            path: Arc::from("/etc/passwd"),
            flags: 0o2_000_001
        })]
    );
}

#[test]
fn decodes_samples_and_aggregates_with_floats_bit_exact() {
    let floats = [0.1 + 0.2, -0.0, f64::NAN, f64::INFINITY, f64::MIN_POSITIVE, 5e-324];
    let n = floats.len();
    let ids: Vec<u64> = (0..n as u64).collect();
    let sample = batch(
        EventKind::ProcessSample,
        vec![
            u64s(&ids),
            u64s(&ids),
            u32s(&vec![42; n]),
            u64s(&vec![99; n]),
            u64s(&vec![3; n]),
            u32s(&vec![200; n]),
            u32s(&vec![1; n]),
            u32s(&vec![2; n]),
            strs(&vec!["x"; n]),
            strs(&vec!["x --y"; n]),
            // A state byte above 0x7f is written as its Latin-1 character.
            strs(&["R", "S", "D", "Z", "\u{e9}", "\u{ff}"]),
            u32s(&vec![3; n]),
            u64s(&vec![12; n]),
            f64s(&floats),
            u64s(&vec![4096; n]),
            u32s(&vec![1; n]),
        ],
    );
    let events = decode_batch(EventKind::ProcessSample, &sample).expect("decodes");
    let states: Vec<u8> = events
        .iter()
        .map(|e| match e {
            Event::ProcessSample(s) => s.state,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(states, [b'R', b'S', b'D', b'Z', 0xe9, 0xff]);
    for (event, float) in events.iter().zip(floats) {
        let Event::ProcessSample(s) = event else { panic!("{event:?}") };
        assert_eq!(s.cpu_percent.to_bits(), float.to_bits(), "{float}");
        assert_eq!(
            (
                s.process,
                s.scan,
                s.ppid,
                s.uid,
                &*s.name,
                &*s.cmdline,
                s.threads,
                s.cpu_ticks,
                s.rss_bytes,
                s.top_n_rank
            ),
            (
                ProcessKey { pid: 42, start_time_ns: 99 },
                ScanInfo { scan_id: 3, scan_size: 200 },
                1,
                2,
                "x",
                "x --y",
                3,
                12,
                4096,
                1
            )
        );
    }
    let aggregate = batch(
        EventKind::ProcessAggregate,
        vec![
            u64s(&[5]),
            u64s(&[6]),
            u64s(&[3]),
            u32s(&[200]),
            strs(&["kworker"]),
            u32s(&[40]),
            u64s(&[7]),
            f64s(&[0.7]),
            u64s(&[0]),
            u64s(&[u64::MAX]),
        ],
    );
    assert_eq!(
        decode_batch(EventKind::ProcessAggregate, &aggregate).expect("decodes"),
        vec![Event::ProcessAggregate(ProcessAggregateSample {
            meta: meta(5, 6),
            scan: ScanInfo { scan_id: 3, scan_size: 200 },
            name: Arc::from("kworker"),
            count: 40,
            cpu_ticks_sum: 7,
            cpu_percent_sum: 0.7,
            rss_bytes_sum: 0,
            rss_bytes_max: u64::MAX,
        })]
    );
    let diag = batch(
        EventKind::AgentDiag,
        vec![u64s(&[1]), u64s(&[2]), strs(&["spool"]), strs(&["quarantine"]), strs(&["no footer"])],
    );
    assert_eq!(
        decode_batch(EventKind::AgentDiag, &diag).expect("decodes"),
        vec![Event::AgentDiag(AgentDiag {
            meta: meta(1, 2),
            module: Arc::from("spool"),
            event_type: Arc::from("quarantine"),
            reason: Arc::from("no footer"),
        })]
    );
}

pub(super) fn sketch_of(values: &[f64]) -> LogSketch {
    let mut sketch = LogSketch::default();
    for value in values {
        sketch.add(*value);
    }
    sketch
}

/// A sketch batch whose columns are the sketches' parts.
fn sketch_batch(sketches: &[LogSketch]) -> RecordBatch {
    let parts: Vec<_> = sketches.iter().map(LogSketch::to_parts).collect();
    let n = parts.len();
    let ids: Vec<u64> = (1..=n as u64).collect();
    let pick_f = |f: fn(&pipeline::sketch::SketchParts) -> f64| f64s(&parts.iter().map(f).collect::<Vec<_>>());
    let pick_u = |f: fn(&pipeline::sketch::SketchParts) -> u64| u64s(&parts.iter().map(f).collect::<Vec<_>>());
    let pick_i = |f: fn(&pipeline::sketch::SketchParts) -> i32| i32s(&parts.iter().map(f).collect::<Vec<_>>());
    let positive: Vec<&[u64]> = parts.iter().map(|p| &p.positive_bins[..]).collect();
    let negative: Vec<&[u64]> = parts.iter().map(|p| &p.negative_bins[..]).collect();
    batch(
        EventKind::Sketch,
        vec![
            u64s(&ids),
            u64s(&ids),
            strs(&vec!["process.cpu_percent"; n]),
            strs(&vec!["*"; n]),
            u64s(&vec![1; n]),
            u64s(&vec![5; n]),
            pick_f(|p| p.gamma),
            pick_u(|p| p.count),
            pick_f(|p| p.sum),
            pick_f(|p| p.min),
            pick_f(|p| p.max),
            pick_u(|p| p.zero_count),
            pick_i(|p| p.positive_offset),
            lists(&positive),
            pick_i(|p| p.negative_offset),
            lists(&negative),
        ],
    )
}

#[test]
fn decodes_sketches_exactly_from_their_parts() {
    let sketches =
        [sketch_of(&[0.0, 1.0, 1.0, 2.0, -4.0]), LogSketch::default(), sketch_of(&[1e-300, 3.5, 1e300, -0.25])];
    let events = decode_batch(EventKind::Sketch, &sketch_batch(&sketches)).expect("decodes");
    assert_eq!(events.len(), 3);
    for (index, (event, sketch)) in events.iter().zip(&sketches).enumerate() {
        let expected = Event::Sketch(SketchEvent {
            meta: meta(index as u64 + 1, index as u64 + 1),
            metric_name: Arc::from("process.cpu_percent"),
            key: Arc::from("*"),
            window_start_ns: 1,
            window_end_ns: 5,
            sketch: sketch.clone(),
        });
        assert_eq!(event, &expected);
        let Event::Sketch(decoded) = event else { panic!() };
        assert_eq!(decoded.sketch.sum().to_bits(), sketch.sum().to_bits());
        assert_eq!(decoded.sketch.quantile(0.99), sketch.quantile(0.99));
    }
}

#[test]
fn bad_batches_are_errors_naming_the_column_never_panics() {
    let check = |kind: EventKind, batch: &RecordBatch, expected: &str| {
        let error = decode_batch(kind, batch).expect_err(expected);
        assert!(error.to_string().contains(expected), "{error}");
    };
    // A batch of another kind's schema: columns missing.
    check(EventKind::ProcessExec, &exits(&[(1, 2)]), "process_exec: no column `ppid`");
    // Same names, other types (a hand-made schema).
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("event_id", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("ts_ns", arrow_schema::DataType::UInt64, false),
    ]));
    let wrong = RecordBatch::try_new(schema, vec![strs(&["1"]), u64s(&[2])]).expect("batch");
    check(EventKind::ProcessExit, &wrong, "column `event_id` is Utf8, expected UInt64");
    let nullable = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("event_id", arrow_schema::DataType::UInt64, true),
        arrow_schema::Field::new("ts_ns", arrow_schema::DataType::UInt64, false),
    ]));
    let nulls = RecordBatch::try_new(nullable, vec![Arc::new(UInt64Array::from(vec![None, Some(1)])), u64s(&[2, 3])])
        .expect("batch");
    check(EventKind::AgentDiag, &nulls, "column `event_id` has 1 null values");
    let connect = |protocol: &str, addr: &str, result: i32| {
        batch(
            EventKind::NetConnect,
            vec![
                u64s(&[1]),
                u64s(&[2]),
                u32s(&[3]),
                u64s(&[4]),
                strs(&[protocol]),
                strs(&[addr]),
                Arc::new(UInt16Array::from(vec![1])),
                i32s(&[result]),
                bools(&[false]),
            ],
        )
    };
    check(
        EventKind::NetConnect,
        &connect("sctp", "10.0.0.1", 0),
        "row 0, column `protocol`: unknown protocol \"sctp\"",
    );
    check(EventKind::NetConnect, &connect("tcp", "10.0.0.256", 0), "column `dst_addr`: \"10.0.0.256\" is not an IP");
    check(EventKind::NetConnect, &connect("tcp", "10.0.0.1", -111), "column `result`: -111 without has_result");
    let exec = |argv: ArrayRef| {
        let ids = || u64s(&[1]);
        let (small, text) = (|| u32s(&[1]), || strs(&["x"]));
        let columns = vec![ids(), ids(), small(), ids(), small(), small(), small(), ids(), text(), text(), argv];
        batch(EventKind::ProcessExec, [columns, vec![bools(&[false])]].concat())
    };
    check(EventKind::ProcessExec, &exec(argvs(&[&["a", "b\0c"]])), "row 0, column `argv`: argument 1 contains a NUL");
    let mut columns = sketch_batch(&[sketch_of(&[1.0])]).columns().to_vec();
    columns[7] = u64s(&[5]); // count: not the bins' total
    check(EventKind::Sketch, &batch(EventKind::Sketch, columns), "column `sketch`: inconsistent sketch parts");
    let mut columns = sample_columns();
    columns[10] = strs(&["RS"]); // state
    check(EventKind::ProcessSample, &batch(EventKind::ProcessSample, columns), "\"RS\" is not a one-character");
}

/// One valid `process_sample` row.
fn sample_columns() -> Vec<ArrayRef> {
    vec![
        u64s(&[1]),
        u64s(&[2]),
        u32s(&[3]),
        u64s(&[4]),
        u64s(&[5]),
        u32s(&[6]),
        u32s(&[7]),
        u32s(&[8]),
        strs(&["n"]),
        strs(&["c"]),
        strs(&["R"]),
        u32s(&[9]),
        u64s(&[10]),
        f64s(&[1.5]),
        u64s(&[11]),
        u32s(&[12]),
    ]
}

#[test]
fn spool_kinds_are_merged_by_ts_then_id_in_fixed_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two files of exits, the first with two record batches.
    write_spool_file(dir.path(), EventKind::ProcessExit, 0, &[exits(&[(1, 10)]), exits(&[(3, 30)])]);
    write_spool_file(dir.path(), EventKind::ProcessExit, 1, &[exits(&[(5, 50), (9, 60)])]);
    // Diagnostics interleaved: one tying an exit's ts (the id decides),
    // one tying an exit's ts and id (kind order decides: exits first).
    write_spool_file(dir.path(), EventKind::AgentDiag, 7, &[diags(&[(2, 20), (4, 30), (3, 30), (6, 60), (9, 60)])]);
    let (batches, stats) = read_all_spool(dir.path(), &Selection::all(), 4);
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 1]);
    use EventKind::{AgentDiag as D, ProcessExit as X};
    // The diag rows are not sorted ((4, 30) before (3, 30)): the merge
    // takes heads only, so (4, 30) waits for the exit (3, 30), and (3, 30)
    // follows it: deterministic, not sorted.
    assert_eq!(
        keys(&batches.concat()),
        vec![
            (X, 1, 10),
            (D, 2, 20),
            (X, 3, 30),
            (D, 4, 30),
            (D, 3, 30),
            (X, 5, 50),
            (D, 6, 60),
            (X, 9, 60),
            (D, 9, 60)
        ]
    );
    assert_eq!(stats, ReadStats { events: 9, files_read: 3, files_skipped: 0, lines_skipped: 0 });
    // Deterministic: a second read gives the same batches.
    assert_eq!(read_all_spool(dir.path(), &Selection::all(), 4).0, batches);
}

#[test]
fn time_range_and_kinds_select_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_spool_file(dir.path(), EventKind::ProcessExit, 0, &[exits(&[(1, 10), (2, 20), (3, 30), (4, 40)])]);
    write_spool_file(dir.path(), EventKind::AgentDiag, 0, &[diags(&[(5, 15), (6, 25), (7, 35)])]);
    let read = |selection: Selection| {
        let (batches, _) = read_all_spool(dir.path(), &selection, 100);
        batches.concat().iter().map(|e| e.meta().event_id).collect::<Vec<_>>()
    };
    assert_eq!(read(Selection::all()), vec![1, 5, 2, 6, 3, 7, 4]);
    let range = Selection { from_ts_ns: Some(20), to_ts_ns: Some(35), ..Selection::all() };
    assert_eq!(read(range.clone()), vec![2, 6, 3], "from is inclusive, to exclusive");
    assert_eq!(read(Selection { kinds: vec![EventKind::AgentDiag], ..range }), vec![6]);
    assert_eq!(read(Selection { kinds: vec![EventKind::Sketch], ..Selection::all() }), Vec::<u64>::new());
    assert_eq!(read(Selection { from_ts_ns: Some(41), ..Selection::all() }), Vec::<u64>::new());
}

#[test]
fn corrupt_files_are_skipped_and_tmp_and_quarantine_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_spool_file(dir.path(), EventKind::ProcessExit, 0, &[exits(&[(1, 10)])]);
    let kind_dir = dir.path().join("process_exit");
    std::fs::write(kind_dir.join(schemas::spool::finished_name("process_exit", 1)), b"garbage, not arrow")
        .expect("write");
    write_spool_file(dir.path(), EventKind::ProcessExit, 2, &[exits(&[(3, 30)])]);
    // A finished file renamed to .tmp, and a file in quarantine: both unread.
    let tmp = write_spool_file(dir.path(), EventKind::ProcessExit, 3, &[exits(&[(4, 40)])]);
    std::fs::rename(&tmp, kind_dir.join(schemas::spool::tmp_name("process_exit", 3))).expect("rename");
    std::fs::create_dir_all(kind_dir.join("quarantine")).expect("mkdir");
    let quarantined = write_spool_file(dir.path(), EventKind::ProcessExit, 4, &[exits(&[(5, 50)])]);
    std::fs::rename(&quarantined, kind_dir.join("quarantine").join(quarantined.file_name().expect("name")))
        .expect("rename");
    // A file whose footer is fine but whose second batch has another
    // kind's columns: its first batch stays replayed.
    write_spool_file(dir.path(), EventKind::AgentDiag, 0, &[diags(&[(2, 20)])]);
    let mixed = dir.path().join("agent_diag").join(schemas::spool::finished_name("agent_diag", 1));
    let exit_schema = schemas::schema_for("process_exit").expect("schema");
    let mut writer = FileWriter::try_new(File::create(&mixed).expect("create"), &exit_schema).expect("writer");
    writer.write(&exits(&[(6, 60)])).expect("write");
    writer.finish().expect("footer");
    let (batches, stats) = read_all_spool(dir.path(), &Selection::all(), 10);
    assert_eq!(batches.concat().iter().map(|e| e.meta().event_id).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(stats, ReadStats { events: 3, files_read: 3, files_skipped: 2, lines_skipped: 0 });
}

#[test]
fn an_empty_or_foreign_directory_replays_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), b"hello").expect("write");
    let (batches, stats) = read_all_spool(dir.path(), &Selection::all(), 10);
    assert!(batches.is_empty());
    assert_eq!(stats, ReadStats::default());
}
