//! NDJSON encoding of events: one JSON object per line.
//!
//! Written by hand rather than through `serde::Serialize` on the event
//! types: events are engine types and deliberately not `Serialize` (wire
//! formats belong to the edges of the system), and a direct writer into a
//! reused buffer costs no allocation per event. Every object starts with
//! `kind`, `event_id` and `ts_ns`; the rest are the kind's fields, with
//! process keys flattened to `pid` and `start_time_ns`. An exec's `argv` is
//! an array of strings; a connect's `result` is `null` when not observed.
//!
//! The security kinds, and an exec's kernel attributes, are written by one
//! generic [`ColumnWriter`] keyed by the declaration's names
//! (`schemas::columns`): flat keys like every other kind's, in declaration
//! order, a list column as an array of strings (or of numbers: a
//! detection's `event_ids`). An exec with attributes gets
//! `"has_attributes":true` and the attribute keys after its own; an exec
//! without them is written exactly as before attributes existed. The
//! same way, an event with a process context (after an enrich transform)
//! ends with `"has_context":true` and the `ctx_` keys of
//! `schemas::columns::PROCESS_CONTEXT`, whatever its kind.

use pipeline::event::{
    AgentDiag, FileOpen, NetConnect, ProcessAggregateSample, ProcessEphemeralSummary, ProcessExec, ProcessExit,
    ProcessFork, ProcessSample, ScanInfo, SketchEvent,
};
use std::io::Write as _;

use pipeline::event::columns::{write_security, ColumnWriter};
use pipeline::{Event, EventMeta, ProcessKey};
use schemas::columns::{security_kind, Column, EXEC_ATTRIBUTES, PROCESS_CONTEXT};

/// Appends one line per event to `out`.
pub fn encode_batch(events: &[Event], out: &mut Vec<u8>) {
    for event in events {
        encode(event, out);
        out.push(b'\n');
    }
}

/// Appends one event as a JSON object (no newline).
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    let mut w = ObjectWriter::start(out, event.kind().as_str(), event.meta());
    match event {
        Event::ProcessExec(ProcessExec {
            meta: _,
            process,
            ppid,
            uid,
            gid,
            cgroup_id,
            comm,
            exe,
            argv,
            argv_truncated,
            attributes,
            context: _,
        }) => {
            w.process(process);
            w.uint("ppid", u64::from(*ppid));
            w.uint("uid", u64::from(*uid));
            w.uint("gid", u64::from(*gid));
            w.uint("cgroup_id", *cgroup_id);
            w.text("comm", comm);
            w.text("exe", exe);
            w.texts("argv", argv.iter());
            w.bool("argv_truncated", *argv_truncated);
            if let Some(attributes) = attributes {
                w.bool("has_attributes", true);
                attributes.write_columns(&mut DeclaredKeys::new(&mut w, EXEC_ATTRIBUTES.columns));
            }
        }
        Event::ProcessExit(ProcessExit { meta: _, process, exit_code, cpu_ns, context: _ }) => {
            w.process(process);
            w.int("exit_code", i64::from(*exit_code));
            w.uint("cpu_ns", *cpu_ns);
        }
        Event::ProcessFork(ProcessFork { meta: _, parent, child, context: _ }) => {
            w.process(parent);
            w.uint("child_pid", u64::from(child.pid));
            w.uint("child_start_time_ns", child.start_time_ns);
        }
        Event::NetConnect(NetConnect { meta: _, process, protocol, dst_addr, dst_port, result, context: _ }) => {
            w.process(process);
            w.text("protocol", protocol.as_str());
            w.address("dst_addr", dst_addr);
            w.uint("dst_port", u64::from(*dst_port));
            match result {
                Some(result) => w.int("result", i64::from(*result)),
                None => w.null("result"),
            }
        }
        Event::FileOpen(FileOpen { meta: _, process, path, flags, context: _ }) => {
            w.process(process);
            w.text("path", path);
            w.uint("flags", u64::from(*flags));
        }
        Event::ProcessSample(ProcessSample {
            meta: _,
            process,
            scan,
            ppid,
            uid,
            name,
            cmdline,
            state,
            threads,
            cpu_ticks,
            cpu_percent,
            rss_bytes,
            top_n_rank,
        }) => {
            w.process(process);
            w.scan(scan);
            w.uint("ppid", u64::from(*ppid));
            w.uint("uid", u64::from(*uid));
            w.text("name", name);
            w.text("cmdline", cmdline);
            w.text("state", char::from(*state).encode_utf8(&mut [0; 4]));
            w.uint("threads", u64::from(*threads));
            w.uint("cpu_ticks", *cpu_ticks);
            w.float("cpu_percent", *cpu_percent);
            w.uint("rss_bytes", *rss_bytes);
            w.uint("top_n_rank", u64::from(*top_n_rank));
        }
        Event::ProcessAggregate(ProcessAggregateSample {
            meta: _,
            scan,
            name,
            count,
            cpu_ticks_sum,
            cpu_percent_sum,
            rss_bytes_sum,
            rss_bytes_max,
        }) => {
            w.scan(scan);
            w.text("name", name);
            w.uint("count", u64::from(*count));
            w.uint("cpu_ticks_sum", *cpu_ticks_sum);
            w.float("cpu_percent_sum", *cpu_percent_sum);
            w.uint("rss_bytes_sum", *rss_bytes_sum);
            w.uint("rss_bytes_max", *rss_bytes_max);
        }
        Event::Sketch(SketchEvent { meta: _, metric_name, key, window_start_ns, window_end_ns, sketch }) => {
            w.text("metric_name", metric_name);
            w.text("key", key);
            w.uint("window_start_ns", *window_start_ns);
            w.uint("window_end_ns", *window_end_ns);
            w.float("gamma", sketch.gamma());
            w.uint("count", sketch.count());
            w.float("sum", sketch.sum());
            w.float_or_null("min", sketch.min());
            w.float_or_null("max", sketch.max());
            w.uint("zero_count", sketch.zero_count());
            let (positive_offset, positive_bins) = sketch.positive_bins();
            w.int("positive_offset", i64::from(positive_offset));
            w.uints("positive_bins", positive_bins);
            let (negative_offset, negative_bins) = sketch.negative_bins();
            w.int("negative_offset", i64::from(negative_offset));
            w.uints("negative_bins", negative_bins);
            w.float_or_null("p50", sketch.quantile(0.5));
            w.float_or_null("p95", sketch.quantile(0.95));
            w.float_or_null("p99", sketch.quantile(0.99));
        }
        Event::AgentDiag(AgentDiag { meta: _, module, event_type, reason }) => {
            w.text("module", module);
            w.text("event_type", event_type);
            w.text("reason", reason);
        }
        Event::ProcessEphemeral(ProcessEphemeralSummary {
            meta: _,
            window_start_ns,
            window_end_ns,
            name,
            count,
            cpu_ns,
        }) => {
            w.uint("window_start_ns", *window_start_ns);
            w.uint("window_end_ns", *window_end_ns);
            w.text("name", name);
            w.uint("count", *count);
            w.uint("cpu_ns", *cpu_ns);
        }
        security => {
            // Every other kind is written through its columns; a kind
            // without a declaration would be a bug caught by the round-trip
            // tests, and its line keeps only kind, id and time.
            if let Some(declared) = security_kind(security.kind().as_str()) {
                write_security(security, &mut DeclaredKeys::new(&mut w, declared.columns));
            }
        }
    }
    if let Some(context) = event.context() {
        w.bool("has_context", true);
        context.write_columns(&mut DeclaredKeys::new(&mut w, PROCESS_CONTEXT.columns));
    }
    w.finish();
}

/// A [`ColumnWriter`] writing each value under its declared column's name.
/// A value past the declaration (a record writing more columns than
/// declared) is written under `column_N`, so nothing is silently lost and
/// the round-trip tests see the difference.
struct DeclaredKeys<'w, 'a> {
    w: &'w mut ObjectWriter<'a>,
    columns: &'static [Column],
    next: usize,
}

impl<'w, 'a> DeclaredKeys<'w, 'a> {
    fn new(w: &'w mut ObjectWriter<'a>, columns: &'static [Column]) -> DeclaredKeys<'w, 'a> {
        DeclaredKeys { w, columns, next: 0 }
    }

    /// The key of the next column.
    fn key(&mut self) -> std::borrow::Cow<'static, str> {
        let index = self.next;
        self.next += 1;
        match self.columns.get(index) {
            Some(column) => column.name.into(),
            None => format!("column_{index}").into(),
        }
    }
}

impl ColumnWriter for DeclaredKeys<'_, '_> {
    fn u16(&mut self, value: u16) {
        let key = self.key();
        self.w.uint(&key, u64::from(value));
    }
    fn u32(&mut self, value: u32) {
        let key = self.key();
        self.w.uint(&key, u64::from(value));
    }
    fn u64(&mut self, value: u64) {
        let key = self.key();
        self.w.uint(&key, value);
    }
    fn i32(&mut self, value: i32) {
        let key = self.key();
        self.w.int(&key, i64::from(value));
    }
    fn i64(&mut self, value: i64) {
        let key = self.key();
        self.w.int(&key, value);
    }
    fn bool(&mut self, value: bool) {
        let key = self.key();
        self.w.bool(&key, value);
    }
    fn str(&mut self, value: &str) {
        let key = self.key();
        self.w.text(&key, value);
    }
    fn str_list(&mut self, values: &mut dyn Iterator<Item = &str>) {
        let key = self.key();
        self.w.texts(&key, values);
    }
    fn u64_list(&mut self, values: &[u64]) {
        let key = self.key();
        self.w.uints(&key, values);
    }
}

struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> ObjectWriter<'a> {
    fn start(out: &'a mut Vec<u8>, kind: &str, meta: &EventMeta) -> ObjectWriter<'a> {
        out.extend_from_slice(b"{\"kind\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.push(b'"');
        let mut writer = ObjectWriter { out };
        writer.uint("event_id", meta.event_id);
        writer.uint("ts_ns", meta.ts_ns);
        writer
    }

    fn key(&mut self, key: &str) {
        self.out.extend_from_slice(b",\"");
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn process(&mut self, process: &ProcessKey) {
        self.uint("pid", u64::from(process.pid));
        self.uint("start_time_ns", process.start_time_ns);
    }

    fn scan(&mut self, scan: &ScanInfo) {
        self.uint("scan_id", scan.scan_id);
        self.uint("scan_size", u64::from(scan.scan_size));
    }

    fn uint(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn int(&mut self, key: &str, value: i64) {
        self.key(key);
        self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn float(&mut self, key: &str, value: f64) {
        self.key(key);
        if value.is_finite() {
            // `{}` on f64 prints the shortest text that round-trips; written
            // straight into the buffer, no allocation per value.
            let start = self.out.len();
            let _ = write!(self.out, "{value}");
            if !self.out[start..].iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                self.out.extend_from_slice(b".0");
            }
        } else {
            self.out.extend_from_slice(b"null");
        }
    }

    /// `null` for `None` (and, like `float`, for NaN and infinities).
    fn float_or_null(&mut self, key: &str, value: Option<f64>) {
        self.float(key, value.unwrap_or(f64::NAN));
    }

    fn uints(&mut self, key: &str, values: &[u64]) {
        self.key(key);
        self.out.push(b'[');
        let mut buffer = itoa::Buffer::new();
        for (position, value) in values.iter().enumerate() {
            if position > 0 {
                self.out.push(b',');
            }
            self.out.extend_from_slice(buffer.format(*value).as_bytes());
        }
        self.out.push(b']');
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn null(&mut self, key: &str) {
        self.key(key);
        self.out.extend_from_slice(b"null");
    }

    /// An array of JSON strings.
    fn texts<'v>(&mut self, key: &str, values: impl Iterator<Item = &'v str>) {
        self.key(key);
        self.out.push(b'[');
        for (position, value) in values.enumerate() {
            if position > 0 {
                self.out.push(b',');
            }
            let _ = serde_json::to_writer(&mut *self.out, value);
        }
        self.out.push(b']');
    }

    /// An IP address as a JSON string (its text never needs escaping).
    fn address(&mut self, key: &str, value: &std::net::IpAddr) {
        self.key(key);
        let _ = write!(self.out, "\"{value}\"");
    }

    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        // serde_json's string escaping is correct for every control and
        // non-ASCII character; writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.out, value);
    }

    fn finish(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;

    use pipeline::event::{Argv, Protocol};
    use pipeline::sketch::LogSketch;

    use super::*;

    fn check(event: Event, expected: &str) {
        let mut out = Vec::new();
        encode_batch(&[event], &mut out);
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text, format!("{expected}\n"));
        // And it is JSON a standard parser accepts.
        let _: serde_json::Value = serde_json::from_str(text.trim_end()).expect("valid JSON");
    }

    #[test]
    fn encodes_each_kind() {
        let meta = EventMeta { ts_ns: 5, event_id: 7 };
        let process = ProcessKey { pid: 42, start_time_ns: 99 };
        check(
            Event::NetConnect(NetConnect {
                context: None,
                meta,
                process,
                protocol: Protocol::Udp,
                dst_addr: IpAddr::from([10, 0, 0, 1]),
                dst_port: 53,
                result: None,
            }),
            r#"{"kind":"net_connect","event_id":7,"ts_ns":5,"pid":42,"start_time_ns":99,"protocol":"udp","dst_addr":"10.0.0.1","dst_port":53,"result":null}"#,
        );
        check(
            Event::NetConnect(NetConnect {
                context: None,
                meta,
                process,
                protocol: Protocol::Tcp,
                dst_addr: IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
                dst_port: 1,
                result: Some(-111),
            }),
            r#"{"kind":"net_connect","event_id":7,"ts_ns":5,"pid":42,"start_time_ns":99,"protocol":"tcp","dst_addr":"::1","dst_port":1,"result":-111}"#,
        );
        check(
            Event::ProcessExec(ProcessExec {
                context: None,
                meta,
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
            r#"{"kind":"process_exec","event_id":7,"ts_ns":5,"pid":42,"start_time_ns":99,"ppid":1,"uid":0,"gid":5,"cgroup_id":8589934592,"comm":"sh","exe":"/bin/sh","argv":["sh","-c","\"echo\ttab\"",""],"argv_truncated":false}"#,
        );
        check(
            Event::ProcessExec(ProcessExec {
                context: None,
                meta,
                process,
                ppid: 1,
                uid: 0,
                gid: 0,
                cgroup_id: 0,
                comm: Arc::from(""),
                exe: Arc::from("/x"),
                argv: Argv::default(),
                argv_truncated: true,
                attributes: None,
            }),
            r#"{"kind":"process_exec","event_id":7,"ts_ns":5,"pid":42,"start_time_ns":99,"ppid":1,"uid":0,"gid":0,"cgroup_id":0,"comm":"","exe":"/x","argv":[],"argv_truncated":true}"#,
        );
        check(
            Event::ProcessExit(ProcessExit { context: None, meta, process, exit_code: -1, cpu_ns: 1_500_000 }),
            r#"{"kind":"process_exit","event_id":7,"ts_ns":5,"pid":42,"start_time_ns":99,"exit_code":-1,"cpu_ns":1500000}"#,
        );
        check(
            Event::ProcessEphemeral(ProcessEphemeralSummary {
                meta,
                window_start_ns: 1,
                window_end_ns: 5,
                name: Arc::from("(other)"),
                count: 12,
                cpu_ns: 34,
            }),
            r#"{"kind":"process_ephemeral","event_id":7,"ts_ns":5,"window_start_ns":1,"window_end_ns":5,"name":"(other)","count":12,"cpu_ns":34}"#,
        );
        check(
            Event::ProcessSample(ProcessSample {
                meta,
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
            r#"{"kind":"process_sample","event_id":7,"ts_ns":5,"pid":42,"start_time_ns":99,"scan_id":3,"scan_size":200,"ppid":1,"uid":2,"name":"x","cmdline":"x --y","state":"R","threads":3,"cpu_ticks":12,"cpu_percent":12.0,"rss_bytes":4096,"top_n_rank":1}"#,
        );
        check(
            Event::ProcessAggregate(ProcessAggregateSample {
                meta,
                scan: ScanInfo { scan_id: 3, scan_size: 200 },
                name: Arc::from("kworker"),
                count: 40,
                cpu_ticks_sum: 7,
                cpu_percent_sum: 0.7,
                rss_bytes_sum: 0,
                rss_bytes_max: 0,
            }),
            r#"{"kind":"process_aggregate","event_id":7,"ts_ns":5,"scan_id":3,"scan_size":200,"name":"kworker","count":40,"cpu_ticks_sum":7,"cpu_percent_sum":0.7,"rss_bytes_sum":0,"rss_bytes_max":0}"#,
        );
        let mut sketch = LogSketch::default();
        for value in [0.0, 1.0, 1.0, 2.0, -4.0] {
            sketch.add(value);
        }
        check(
            Event::Sketch(SketchEvent {
                meta,
                metric_name: Arc::from("process.cpu_percent"),
                key: Arc::from("*"),
                window_start_ns: 1,
                window_end_ns: 5,
                sketch,
            }),
            r#"{"kind":"sketch","event_id":7,"ts_ns":5,"metric_name":"process.cpu_percent","key":"*","window_start_ns":1,"window_end_ns":5,"gamma":1.0108892860517005,"count":5,"sum":0.0,"min":-4.0,"max":2.0,"zero_count":1,"positive_offset":-1,"positive_bins":[2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1],"negative_offset":127,"negative_bins":[1],"p50":0.9945848405840975,"p95":0.9945848405840975,"p99":0.9945848405840975}"#,
        );
        let empty = LogSketch::default();
        let mut out = Vec::new();
        encode(
            &Event::Sketch(SketchEvent {
                meta,
                metric_name: Arc::from("m"),
                key: Arc::from("k"),
                window_start_ns: 0,
                window_end_ns: 0,
                sketch: empty,
            }),
            &mut out,
        );
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains(r#""min":null,"max":null,"zero_count":0,"positive_offset":0,"positive_bins":[],"#),
            "{text}"
        );
        assert!(text.ends_with(r#""p50":null,"p95":null,"p99":null}"#), "{text}");
    }
}
