//! Tests of replay's generic decoding (issue #13): the security kinds and
//! an exec's attributes read through their column declaration, from
//! hand-built batches and literal NDJSON lines, a detection's list of
//! numbers (issue #15) among them; and a spool file of the previous
//! layout (2), which must still replay.

use std::sync::Arc;

use arrow_array::UInt16Array;
use pipeline::event::Protocol;
use pipeline::{Event, EventKind, ProcessKey};

use super::tests::{argvs, batch, bools, exits, meta, read_all_spool, strs, u32s, u64s, write_spool_file};
use super::*;

/// A `process_exec` file of layout 2 (no `has_attributes`, no attribute
/// columns) still replays: its execs have no attributes.
#[test]
fn a_layout_2_exec_file_replays_without_attributes() {
    let dir = tempfile::tempdir().expect("tmp");
    let v2 = batch(
        EventKind::ProcessExec,
        vec![
            u64s(&[1]),
            u64s(&[2]),
            u32s(&[3]),
            u64s(&[4]),
            u32s(&[1]),
            u32s(&[1000]),
            u32s(&[100]),
            u64s(&[7]),
            strs(&["sh"]),
            strs(&["/bin/sh"]),
            argvs(&[&["sh", "-c", "true"]]),
            bools(&[false]),
        ],
    );
    assert!(v2.schema().column_with_name("has_attributes").is_none(), "the layout-2 prefix");
    write_spool_file(dir.path(), EventKind::ProcessExec, 0, &[v2]);
    let (batches, stats) = read_all_spool(dir.path(), &Selection::all(), 16);
    assert_eq!(stats.files_skipped, 0);
    let events: Vec<Event> = batches.into_iter().flatten().collect();
    let [Event::ProcessExec(exec)] = &events[..] else { panic!("{events:?}") };
    assert_eq!((exec.process.pid, exec.attributes.as_ref()), (3, None));
}

/// A security kind's batch, built column by column by hand (not by the
/// spool's encoder), decodes through the declaration; a bad value names
/// its column.
#[test]
fn security_kinds_decode_through_their_declaration() {
    let send = |protocol: &str, addr: &str| {
        batch(
            EventKind::NetSend,
            vec![
                u64s(&[9]),
                u64s(&[10]),
                u32s(&[42]),
                u64s(&[43]),
                strs(&[protocol]),
                strs(&[addr]),
                Arc::new(UInt16Array::from(vec![53])),
                u32s(&[512]),
            ],
        )
    };
    let events = decode_batch(EventKind::NetSend, &send("udp", "fd00::53")).expect("decodes");
    assert_eq!(
        events,
        [Event::NetSend(pipeline::event::NetSend {
            context: None,
            meta: meta(9, 10),
            process: ProcessKey { pid: 42, start_time_ns: 43 },
            protocol: Protocol::Udp,
            dst_addr: "fd00::53".parse().expect("addr"),
            dst_port: 53,
            bytes: 512,
        })]
    );
    let error = decode_batch(EventKind::NetSend, &send("sctp", "10.0.0.1")).expect_err("bad protocol");
    assert!(error.to_string().contains("row 0, column `protocol`"), "{error}");
    let error = decode_batch(EventKind::NetSend, &send("udp", "10.0.0.300")).expect_err("bad address");
    assert!(error.to_string().contains("column `dst_addr`"), "{error}");
    let error = decode_batch(EventKind::FileChange, &exits(&[(1, 2)])).expect_err("another kind's batch");
    assert!(error.to_string().contains("file_change: no column `op`"), "{error}");
}

#[test]
fn security_ndjson_lines_decode_by_the_declared_keys() {
    let line = r#"{"kind":"ptrace_attach","event_id":3,"ts_ns":4,"pid":5,"start_time_ns":6,"request":16,"target_pid":7,"target_start_time_ns":8,"result":-1}"#;
    let expected = Event::PtraceAttach(pipeline::event::PtraceAttach {
        context: None,
        meta: meta(3, 4),
        process: ProcessKey { pid: 5, start_time_ns: 6 },
        request: 16,
        target: ProcessKey { pid: 7, start_time_ns: 8 },
        result: -1,
    });
    assert_eq!(decode_line(line.as_bytes()).expect("decodes"), expected);
    // Keys in another order, `kind` last: the same event.
    let reordered = r#"{"result":-1,"target_start_time_ns":8,"target_pid":7,"request":16,"start_time_ns":6,"pid":5,"ts_ns":4,"event_id":3,"kind":"ptrace_attach"}"#;
    assert_eq!(decode_line(reordered.as_bytes()).expect("decodes"), expected);
    let missing = line.replace(r#","target_pid":7"#, "");
    let error = decode_line(missing.as_bytes()).expect_err("missing key");
    assert!(matches!(error, NdjsonError::Missing { field: "target_pid", .. }), "{error}");
    let wide = line.replace(r#""target_pid":7"#, r#""target_pid":4294967296"#);
    let error = decode_line(wide.as_bytes()).expect_err("out of range");
    assert!(error.to_string().contains("`target_pid`"), "{error}");
    let module = r#"{"kind":"module_load","event_id":1,"ts_ns":2,"pid":3,"start_time_ns":4,"syscall":"load_it","path":"","params":"","result":0}"#;
    let error = decode_line(module.as_bytes()).expect_err("unknown syscall");
    assert!(error.to_string().contains("`syscall`") && error.to_string().contains("load_it"), "{error}");
    // An exec that says it has attributes must carry them.
    let exec = r#"{"kind":"process_exec","event_id":7,"ts_ns":5,"pid":42,"start_time_ns":99,"ppid":1,"uid":0,"gid":5,"cgroup_id":1,"comm":"sh","exe":"/bin/sh","argv":[],"argv_truncated":false,"has_attributes":true,"euid":0}"#;
    let error = decode_line(exec.as_bytes()).expect_err("attributes missing");
    assert!(matches!(error, NdjsonError::Missing { field: "suid", .. }), "{error}");
}

/// A detection (issue #15) built by hand: its `event_ids` list of numbers
/// and its text enums come back from Arrow and NDJSON; a list of another
/// type, a number out of range or an unknown severity is an error naming
/// the column, never a panic or a silently empty list.
#[test]
fn a_detection_decodes_its_list_of_numbers_and_its_names() {
    use arrow_array::builder::{ListBuilder, UInt64Builder};
    use pipeline::event::{Confidence, Detection, DetectionLayer, Severity};

    let mut ids = ListBuilder::new(UInt64Builder::new()).with_field(Arc::new(schemas::arrow::u64_list_item()));
    ids.values().append_slice(&[7, u64::MAX]);
    ids.append(true);
    let columns = |event_ids: arrow_array::ArrayRef, severity: &str| {
        vec![
            u64s(&[9]),
            u64s(&[10]),
            u32s(&[42]),
            u64s(&[43]),
            strs(&["hf-r"]),
            strs(&["T"]),
            strs(&["l4"]),
            strs(&[severity]),
            strs(&["definite"]),
            argvs(&[&["T1059.004", "T1105"]]),
            event_ids,
            strs(&["process_exec"]),
            strs(&["s"]),
            strs(&["0123456789abcdef"]),
        ]
    };
    let event_ids: arrow_array::ArrayRef = Arc::new(ids.finish());
    let expected = Event::Detection(Detection {
        meta: meta(9, 10),
        process: ProcessKey { pid: 42, start_time_ns: 43 },
        rule_id: "hf-r".into(),
        title: "T".into(),
        layer: DetectionLayer::L4,
        severity: Severity::Medium,
        confidence: Confidence::Definite,
        attack: vec!["T1059.004".into(), "T1105".into()],
        event_ids: vec![7, u64::MAX],
        event_kind: "process_exec".into(),
        summary: "s".into(),
        ruleset: "0123456789abcdef".into(),
        context: None,
    });
    let good = batch(EventKind::Detection, columns(Arc::clone(&event_ids), "medium"));
    assert_eq!(decode_batch(EventKind::Detection, &good).expect("decodes"), std::slice::from_ref(&expected));
    let bad = batch(EventKind::Detection, columns(event_ids, "severe"));
    let error = decode_batch(EventKind::Detection, &bad).expect_err("unknown severity");
    assert!(error.to_string().contains("row 0, column `severity`"), "{error}");
    // `event_ids` as a list of strings: a wrong type, named.
    let wrong = columns(argvs(&[&["7"]]), "medium");
    let schema = good.schema();
    let mut fields: Vec<arrow_schema::Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[10] = arrow_schema::Field::new("event_ids", schemas::arrow::argv_type(), false);
    let wrong_schema = Arc::new(arrow_schema::Schema::new(fields));
    let wrong = arrow_array::RecordBatch::try_new(wrong_schema, wrong).expect("a batch");
    let error = decode_batch(EventKind::Detection, &wrong).expect_err("strings are not numbers");
    assert!(error.to_string().contains("column `event_ids`"), "{error}");

    let line = r#"{"kind":"detection","event_id":9,"ts_ns":10,"pid":42,"start_time_ns":43,"rule_id":"hf-r","title":"T","layer":"l4","severity":"medium","confidence":"definite","attack":["T1059.004","T1105"],"event_ids":[7,18446744073709551615],"event_kind":"process_exec","summary":"s","ruleset":"0123456789abcdef"}"#;
    assert_eq!(decode_line(line.as_bytes()).expect("decodes"), expected);
    for bad in [r#""event_ids":[7,-1]"#, r#""event_ids":[7,1.5]"#, r#""event_ids":["7"]"#, r#""event_ids":7"#] {
        let line = line.replace(r#""event_ids":[7,18446744073709551615]"#, bad);
        let error = decode_line(line.as_bytes()).expect_err(bad);
        assert!(error.to_string().contains("`event_ids`"), "{bad}: {error}");
    }
    let error = decode_line(line.replace("\"definite\"", "\"sure\"").as_bytes()).expect_err("unknown confidence");
    assert!(error.to_string().contains("`confidence`") && error.to_string().contains("sure"), "{error}");
}
