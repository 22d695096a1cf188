//! Tests of replay's NDJSON decoder and directory reader: lines as literal
//! strings in the `file` sink's format (never this crate's own encoder).

use std::net::IpAddr;
use std::sync::Arc;

use pipeline::event::{
    AgentDiag, Argv, FileOpen, NetConnect, ProcessAggregateSample, ProcessEphemeralSummary, ProcessExec, ProcessExit,
    ProcessSample, Protocol, ScanInfo, SketchEvent,
};
use pipeline::sketch::LogSketch;
use pipeline::{Event, EventKind, ProcessKey};

use super::tests::*;
use super::*;

/// The `file` sink's lines for one event of each kind (copied from the
/// format sinks/src/ndjson.rs writes and tests).
const LINES: [&str; 10] = [
    r#"{"kind":"net_connect","event_id":7,"ts_ns":5,"pid":42,"start_time_ns":99,"protocol":"udp","dst_addr":"10.0.0.1","dst_port":53,"result":null}"#,
    r#"{"kind":"process_exec","event_id":7,"ts_ns":5,"pid":42,"start_time_ns":99,"ppid":1,"uid":0,"gid":5,"cgroup_id":8589934592,"comm":"sh","exe":"/bin/sh","argv":["sh","-c","\"echo\ttab\"",""],"argv_truncated":false}"#,
    r#"{"kind":"process_exit","event_id":7,"ts_ns":5,"pid":42,"start_time_ns":99,"exit_code":-1,"cpu_ns":1500000}"#,
    r#"{"kind":"process_sample","event_id":7,"ts_ns":5,"pid":42,"start_time_ns":99,"scan_id":3,"scan_size":200,"ppid":1,"uid":2,"name":"x","cmdline":"x --y","state":"R","threads":3,"cpu_ticks":12,"cpu_percent":12.0,"rss_bytes":4096,"top_n_rank":1}"#,
    r#"{"kind":"process_aggregate","event_id":7,"ts_ns":5,"scan_id":3,"scan_size":200,"name":"kworker","count":40,"cpu_ticks_sum":7,"cpu_percent_sum":0.7,"rss_bytes_sum":0,"rss_bytes_max":0}"#,
    r#"{"kind":"sketch","event_id":7,"ts_ns":5,"metric_name":"process.cpu_percent","key":"*","window_start_ns":1,"window_end_ns":5,"gamma":1.0108892860517005,"count":5,"sum":0.0,"min":-4.0,"max":2.0,"zero_count":1,"positive_offset":-1,"positive_bins":[2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1],"negative_offset":127,"negative_bins":[1],"p50":0.9945848405840975,"p95":0.9945848405840975,"p99":0.9945848405840975}"#,
    r#"{"kind":"sketch","event_id":8,"ts_ns":6,"metric_name":"m","key":"k","window_start_ns":0,"window_end_ns":0,"gamma":1.0108892860517005,"count":0,"sum":0.0,"min":null,"max":null,"zero_count":0,"positive_offset":0,"positive_bins":[],"negative_offset":0,"negative_bins":[],"p50":null,"p95":null,"p99":null}"#,
    r#"{"kind":"file_open","event_id":9,"ts_ns":7,"pid":42,"start_time_ns":99,"path":"/etc/\u00e9\n","flags":2}"#,
    r#"{"kind":"agent_diag","event_id":10,"ts_ns":8,"module":"spool","event_type":"quarantine","reason":"no footer"}"#,
    r#"{"kind":"process_ephemeral","event_id":11,"ts_ns":9,"window_start_ns":1,"window_end_ns":9,"name":"(other)","count":12,"cpu_ns":34}"#,
];

fn expected_ndjson_events() -> Vec<Event> {
    let m = meta(7, 5);
    let process = ProcessKey { pid: 42, start_time_ns: 99 };
    vec![
        Event::NetConnect(NetConnect {
            context: None,
            meta: m,
            process,
            protocol: Protocol::Udp,
            dst_addr: IpAddr::from([10, 0, 0, 1]),
            dst_port: 53,
            result: None,
        }),
        Event::ProcessExec(ProcessExec {
            context: None,
            meta: m,
            process,
            ppid: 1,
            uid: 0,
            gid: 5,
            cgroup_id: 1 << 33,
            comm: Arc::from("sh"),
            exe: Arc::from("/bin/sh"),
            argv: Argv::from_args(["sh", "-c", "\"echo\ttab\"", ""]),
            argv_truncated: false,
            attributes: None,
        }),
        Event::ProcessExit(ProcessExit { context: None, meta: m, process, exit_code: -1, cpu_ns: 1_500_000 }),
        Event::ProcessSample(ProcessSample {
            meta: m,
            process,
            scan: ScanInfo { scan_id: 3, scan_size: 200 },
            ppid: 1,
            uid: 2,
            name: Arc::from("x"),
            cmdline: Arc::from("x --y"),
            state: b'R',
            threads: 3,
            cpu_ticks: 12,
            cpu_percent: 12.0,
            rss_bytes: 4096,
            top_n_rank: 1,
        }),
        Event::ProcessAggregate(ProcessAggregateSample {
            meta: m,
            scan: ScanInfo { scan_id: 3, scan_size: 200 },
            name: Arc::from("kworker"),
            count: 40,
            cpu_ticks_sum: 7,
            cpu_percent_sum: 0.7,
            rss_bytes_sum: 0,
            rss_bytes_max: 0,
        }),
        Event::Sketch(SketchEvent {
            meta: m,
            metric_name: Arc::from("process.cpu_percent"),
            key: Arc::from("*"),
            window_start_ns: 1,
            window_end_ns: 5,
            sketch: sketch_of(&[0.0, 1.0, 1.0, 2.0, -4.0]),
        }),
        Event::Sketch(SketchEvent {
            meta: meta(8, 6),
            metric_name: Arc::from("m"),
            key: Arc::from("k"),
            window_start_ns: 0,
            window_end_ns: 0,
            sketch: LogSketch::default(),
        }),
        Event::FileOpen(FileOpen {
            context: None,
            meta: meta(9, 7),
            process,
            path: Arc::from("/etc/\u{e9}\n"),
            flags: 2,
        }),
        Event::AgentDiag(AgentDiag {
            meta: meta(10, 8),
            module: Arc::from("spool"),
            event_type: Arc::from("quarantine"),
            reason: Arc::from("no footer"),
        }),
        Event::ProcessEphemeral(ProcessEphemeralSummary {
            meta: meta(11, 9),
            window_start_ns: 1,
            window_end_ns: 9,
            name: Arc::from("(other)"),
            count: 12,
            cpu_ns: 34,
        }),
    ]
}

#[test]
fn ndjson_lines_decode_to_the_events_the_file_sink_wrote() {
    let events: Vec<Event> = LINES.iter().map(|line| decode_line(line.as_bytes()).expect(line)).collect();
    assert_eq!(events, expected_ndjson_events());
}

#[test]
fn ndjson_floats_are_exact_and_null_is_nan() {
    let sample = |cpu: &str| {
        let line = LINES[3].replace("\"cpu_percent\":12.0", &format!("\"cpu_percent\":{cpu}"));
        match decode_line(line.as_bytes()).expect(cpu) {
            Event::ProcessSample(sample) => sample.cpu_percent,
            other => panic!("{other:?}"),
        }
    };
    // Shortest round-trip texts `{}` writes, including ones a fast,
    // inexact parser gets wrong by an ulp.
    for value in
        [0.1 + 0.2, -0.0, 5e-324, f64::MAX, 1.7976931348623155e308, 2.2250738585072014e-308, 9007199254740993.0]
    {
        let text = format!("{value:?}");
        assert_eq!(sample(&text).to_bits(), value.to_bits(), "{text}");
    }
    assert!(sample("null").is_nan(), "a non-finite float was written as null");
}

#[test]
fn bad_ndjson_lines_are_errors() {
    let check = |line: &str, expected: &str| {
        let error = decode_line(line.as_bytes()).expect_err(line);
        assert!(error.to_string().contains(expected), "{error}");
    };
    check("{not json", "key must be a string");
    check(r#"{"kind":"process_exce","event_id":1,"ts_ns":2}"#, "unknown kind \"process_exce\"");
    check(r#"{"kind":"process_exit","event_id":1,"ts_ns":2,"pid":3,"start_time_ns":4}"#, "missing `exit_code`");
    check(
        r#"{"kind":"process_exit","event_id":1,"ts_ns":2,"pid":-3,"start_time_ns":4,"exit_code":0}"#,
        "invalid value",
    );
    check(&LINES[0].replace("10.0.0.1", "10.0.0.1.1"), "net_connect: `dst_addr`");
    check(&LINES[5].replace("\"count\":5", "\"count\":6"), "inconsistent sketch parts");
    check(&LINES[4].replace("\"count\":40", "\"count\":4294967296"), "larger than a u32");
    check(r#"{"event_id":1,"ts_ns":2}"#, "missing field `kind`");
    check(&LINES[1].replace("\"argv\":", "\"args\":"), "process_exec: missing `argv`");
    check(&LINES[1].replace("[\"sh\",", "[\"s\\u0000h\","), "an argument contains a NUL");
    check(&LINES[1].replace("[\"sh\",", "[1,"), "expected a string");
    let connect = |line: String| match decode_line(line.as_bytes()) {
        Ok(Event::NetConnect(connect)) => connect.result,
        other => panic!("{other:?}"),
    };
    assert_eq!(connect(LINES[0].replace("null", "-115")), Some(-115));
    // Lines written before connects and exits carried these keys.
    assert_eq!(connect(LINES[0].replace(",\"result\":null", "")), None, "absent: not observed");
    let exit = LINES[2].replace(",\"cpu_ns\":1500000", "");
    assert!(matches!(decode_line(exit.as_bytes()), Ok(Event::ProcessExit(ProcessExit { cpu_ns: 0, .. }))));
}

#[test]
fn ndjson_directories_are_read_in_name_order_skipping_bad_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = format!("{}\n\n{}\nnot an event\n", LINES[0], LINES[1]);
    // A last line without its newline still counts.
    let second = format!("{}\r\n{}", LINES[2], LINES[3]);
    std::fs::write(dir.path().join("b.ndjson"), second).expect("write");
    std::fs::write(dir.path().join("a.ndjson"), first).expect("write");
    std::fs::write(dir.path().join("c.json"), LINES[4]).expect("not *.ndjson: ignored");
    std::fs::create_dir(dir.path().join("d.ndjson")).expect("a directory: ignored");
    let mut reader = read_ndjson(dir.path(), &Selection::all(), 3).expect("readable");
    let batches: Vec<Batch> = reader.by_ref().collect();
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 1]);
    assert_eq!(batches.concat(), expected_ndjson_events()[..4].to_vec());
    assert_eq!(reader.stats(), ReadStats { events: 4, files_read: 2, files_skipped: 0, lines_skipped: 1 });

    let one_file = dir.path().join("all.txt");
    std::fs::write(&one_file, LINES.join("\n")).expect("write");
    let selection =
        Selection { kinds: vec![EventKind::Sketch, EventKind::FileOpen], from_ts_ns: Some(6), to_ts_ns: None };
    let events: Vec<Event> = read_ndjson(&one_file, &selection, 10).expect("readable").flatten().collect();
    assert_eq!(events, expected_ndjson_events()[6..8].to_vec());
    assert!(read_ndjson(&dir.path().join("missing"), &Selection::all(), 10).is_err());
}
