//! One NDJSON line → one `Event`: the inverse of the `file`/`console`
//! sinks' encoder (sinks/src/ndjson.rs).
//!
//! A line is deserialized in one pass into [`Line`], a flat struct holding
//! the union of every kind's keys (each an `Option`, strings borrowed from
//! the line unless they carry escapes), then mapped by `kind` into the
//! typed record, checking that the kind's keys are all there. This avoids
//! both a `serde_json::Value` per event and serde's internally tagged
//! enums, which buffer every field into a generic tree before choosing the
//! variant. Unknown keys are ignored: the encoder's derived sketch keys
//! (`p50`, `p95`, `p99`) and anything a later encoder appends. Two keys
//! added later may be absent, as in older corpora, and mean what their
//! absence means in the record: an exit's `cpu_ns` (0, unknown) and a
//! connect's `result` (not observed). An exec line must have `argv` (an
//! older line's `cmdline` cannot be split back into arguments exactly).
//!
//! What comes back exactly: every integer and string, an exec's `argv` (a
//! JSON array, one string per argument; `[]` is no argument), a connect's
//! `result` (`null`: not observed), addresses, protocols, the state byte, and every finite float (the encoder writes the shortest
//! text that round-trips and this crate turns on serde_json's
//! `float_roundtrip`, so parsing is exact too), including the sketch (its
//! bins, counts, γ, sum, min and max, rebuilt with `LogSketch::from_parts`).
//! What cannot: the encoder writes a non-finite float (NaN, ±∞) as `null`,
//! so a `null` `cpu_percent` / `cpu_percent_sum` comes back as NaN (an
//! infinite one is lost), and a sketch whose `sum` overflowed to ±∞ cannot
//! be rebuilt at all (the line is skipped as bad). The Arrow spool has no
//! such loss.
//!
//! The security kinds, and an exec's attributes (present when the line has
//! `"has_attributes":true`), are read generically: the line's object is
//! parsed into a map and a [`ColumnReader`] hands out the values of the
//! declaration's keys (`schemas::columns`) in order to the record's
//! `read_columns`; a missing key is [`NdjsonError::Missing`]. Their kind is
//! seen from the line's start (`{"kind":"…"`, as the encoder writes it), or
//! from a first parse when a line is laid out otherwise. A process context
//! (`"has_context":true`, any kind) is read the same way after the kind.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use pipeline::event::columns::{is_security, read_security, ColumnError, ColumnReader, ColumnType as Written};
use pipeline::event::{
    AgentDiag, Argv, FileOpen, NetConnect, ProcessAggregateSample, ProcessEphemeralSummary, ProcessExec, ProcessExit,
    ProcessFork, ProcessSample, ScanInfo, SketchEvent,
};
use pipeline::event::{ExecAttributes, ProcessContext};
use pipeline::sketch::{LogSketch, SketchParts};
use pipeline::{Event, EventKind, EventMeta, ProcessKey};
use schemas::columns::{security_kind, Column, EXEC_ATTRIBUTES, PROCESS_CONTEXT};
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::arrow::{parse_addr, parse_protocol, parse_state};

/// Why a line is not an event.
#[derive(Debug, thiserror::Error)]
pub enum NdjsonError {
    /// Not JSON, or a key with a value of the wrong type or range.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// `kind` names no event kind.
    #[error("unknown kind {0:?}")]
    UnknownKind(String),
    /// A key the kind needs is absent (or `null` where null means nothing).
    #[error("{kind}: missing `{field}`")]
    Missing { kind: EventKind, field: &'static str },
    /// A value no encoder writes.
    #[error("{kind}: `{field}`: {reason}")]
    Value { kind: EventKind, field: &'static str, reason: String },
}

/// Decodes one line (without its newline) written by sinks/src/ndjson.rs.
pub fn decode_line(line: &[u8]) -> Result<Event, NdjsonError> {
    if let Some(kind) = declared_kind(line)? {
        return decode_declared(kind, line);
    }
    let raw = line;
    let line: Line<'_> = serde_json::from_slice(line)?;
    let kind = EventKind::from_name(&line.kind.0).ok_or_else(|| NdjsonError::UnknownKind(line.kind.0.to_string()))?;
    let need = |field: &'static str| NdjsonError::Missing { kind, field };
    let invalid = |field: &'static str| move |reason: String| NdjsonError::Value { kind, field, reason };
    let meta = EventMeta { ts_ns: line.ts_ns, event_id: line.event_id };
    let text = |value: Option<Text<'_>>, field: &'static str| -> Result<Arc<str>, NdjsonError> {
        value.map(|text| Arc::from(&*text.0)).ok_or(need(field))
    };
    let process = || -> Result<ProcessKey, NdjsonError> {
        Ok(ProcessKey {
            pid: line.pid.ok_or(need("pid"))?,
            start_time_ns: line.start_time_ns.ok_or(need("start_time_ns"))?,
        })
    };
    let scan = || -> Result<ScanInfo, NdjsonError> {
        Ok(ScanInfo {
            scan_id: line.scan_id.ok_or(need("scan_id"))?,
            scan_size: line.scan_size.ok_or(need("scan_size"))?,
        })
    };
    // A `null` float was a non-finite one; NaN is the closest we can give.
    let float = |value: Option<Option<f64>>, field: &'static str| -> Result<f64, NdjsonError> {
        value.map(|value| value.unwrap_or(f64::NAN)).ok_or(need(field))
    };
    let event = match kind {
        EventKind::ProcessExec => Event::ProcessExec(ProcessExec {
            context: None,
            meta,
            process: process()?,
            ppid: line.ppid.ok_or(need("ppid"))?,
            uid: line.uid.ok_or(need("uid"))?,
            gid: line.gid.ok_or(need("gid"))?,
            cgroup_id: line.cgroup_id.ok_or(need("cgroup_id"))?,
            comm: text(line.comm, "comm")?,
            exe: text(line.exe, "exe")?,
            argv: line.argv.ok_or(need("argv"))?.0,
            argv_truncated: line.argv_truncated.ok_or(need("argv_truncated"))?,
            attributes: match line.has_attributes {
                Some(true) => {
                    let object: Map<String, Value> = serde_json::from_slice(raw)?;
                    let mut reader = JsonReader::new(&object, EXEC_ATTRIBUTES.columns);
                    let read = ExecAttributes::read_columns(&mut reader);
                    Some(Arc::new(read.map_err(|error| reader.error(kind, error))?))
                }
                _ => None,
            },
        }),
        EventKind::ProcessExit => Event::ProcessExit(ProcessExit {
            context: None,
            meta,
            process: process()?,
            exit_code: line.exit_code.ok_or(need("exit_code"))?,
            // Absent in lines written before exits carried it: unknown.
            cpu_ns: line.cpu_ns.unwrap_or(0),
        }),
        EventKind::ProcessFork => Event::ProcessFork(ProcessFork {
            context: None,
            meta,
            parent: process()?,
            child: ProcessKey {
                pid: line.child_pid.ok_or(need("child_pid"))?,
                start_time_ns: line.child_start_time_ns.ok_or(need("child_start_time_ns"))?,
            },
        }),
        EventKind::NetConnect => Event::NetConnect(NetConnect {
            context: None,
            meta,
            process: process()?,
            protocol: parse_protocol(&line.protocol.ok_or(need("protocol"))?.0).map_err(invalid("protocol"))?,
            dst_addr: parse_addr(&line.dst_addr.ok_or(need("dst_addr"))?.0).map_err(invalid("dst_addr"))?,
            dst_port: line.dst_port.ok_or(need("dst_port"))?,
            // Absent in lines written before connects carried it: not observed.
            result: line.result.flatten(),
        }),
        EventKind::FileOpen => Event::FileOpen(FileOpen {
            context: None,
            meta,
            process: process()?,
            path: text(line.path, "path")?,
            flags: line.flags.ok_or(need("flags"))?,
        }),
        EventKind::ProcessSample => Event::ProcessSample(ProcessSample {
            meta,
            process: process()?,
            scan: scan()?,
            ppid: line.ppid.ok_or(need("ppid"))?,
            uid: line.uid.ok_or(need("uid"))?,
            name: text(line.name, "name")?,
            cmdline: text(line.cmdline, "cmdline")?,
            state: parse_state(&line.state.ok_or(need("state"))?.0).map_err(invalid("state"))?,
            threads: line.threads.ok_or(need("threads"))?,
            cpu_ticks: line.cpu_ticks.ok_or(need("cpu_ticks"))?,
            cpu_percent: float(line.cpu_percent, "cpu_percent")?,
            rss_bytes: line.rss_bytes.ok_or(need("rss_bytes"))?,
            top_n_rank: line.top_n_rank.ok_or(need("top_n_rank"))?,
        }),
        EventKind::ProcessAggregate => Event::ProcessAggregate(ProcessAggregateSample {
            meta,
            scan: scan()?,
            name: text(line.name, "name")?,
            count: u32::try_from(line.count.ok_or(need("count"))?)
                .map_err(|_| invalid("count")("larger than a u32".to_owned()))?,
            cpu_ticks_sum: line.cpu_ticks_sum.ok_or(need("cpu_ticks_sum"))?,
            cpu_percent_sum: float(line.cpu_percent_sum, "cpu_percent_sum")?,
            rss_bytes_sum: line.rss_bytes_sum.ok_or(need("rss_bytes_sum"))?,
            rss_bytes_max: line.rss_bytes_max.ok_or(need("rss_bytes_max"))?,
        }),
        EventKind::Sketch => {
            let parts = SketchParts {
                gamma: line.gamma.ok_or(need("gamma"))?,
                count: line.count.ok_or(need("count"))?,
                sum: float(line.sum, "sum")?,
                // `null` only for an empty sketch, whose min and max
                // `from_parts` ignores.
                min: line.min.ok_or(need("min"))?.unwrap_or(0.0),
                max: line.max.ok_or(need("max"))?.unwrap_or(0.0),
                zero_count: line.zero_count.ok_or(need("zero_count"))?,
                positive_offset: line.positive_offset.ok_or(need("positive_offset"))?,
                positive_bins: line.positive_bins.ok_or(need("positive_bins"))?,
                negative_offset: line.negative_offset.ok_or(need("negative_offset"))?,
                negative_bins: line.negative_bins.ok_or(need("negative_bins"))?,
            };
            let sketch = LogSketch::from_parts(parts).map_err(|e| invalid("sketch")(e.to_string()))?;
            Event::Sketch(SketchEvent {
                meta,
                metric_name: text(line.metric_name, "metric_name")?,
                key: text(line.key, "key")?,
                window_start_ns: line.window_start_ns.ok_or(need("window_start_ns"))?,
                window_end_ns: line.window_end_ns.ok_or(need("window_end_ns"))?,
                sketch,
            })
        }
        EventKind::ProcessEphemeral => Event::ProcessEphemeral(ProcessEphemeralSummary {
            meta,
            window_start_ns: line.window_start_ns.ok_or(need("window_start_ns"))?,
            window_end_ns: line.window_end_ns.ok_or(need("window_end_ns"))?,
            name: text(line.name, "name")?,
            count: line.count.ok_or(need("count"))?,
            cpu_ns: line.cpu_ns.ok_or(need("cpu_ns"))?,
        }),
        EventKind::AgentDiag => Event::AgentDiag(AgentDiag {
            meta,
            module: text(line.module, "module")?,
            event_type: text(line.event_type, "event_type")?,
            reason: text(line.reason, "reason")?,
        }),
        // A declared kind whose line did not start with its kind (so
        // `declared_kind` parsed it) never gets here; one that would is
        // decoded the same way.
        declared => return decode_declared(declared, raw),
    };
    let mut event = event;
    if line.has_context == Some(true) {
        let object: Map<String, Value> = serde_json::from_slice(raw)?;
        attach_context(&mut event, &object)?;
    }
    Ok(event)
}

/// The kind of a line if it is one read through its column declaration.
/// Cheap for the encoder's lines, which start with `{"kind":"NAME"`; any
/// other layout costs one parse of the line for its `kind` alone.
fn declared_kind(line: &[u8]) -> Result<Option<EventKind>, NdjsonError> {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        kind: Text<'a>,
    }
    let prefix = line.strip_prefix(b"{\"kind\":\"").and_then(|rest| {
        let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
        (rest[end] == b'"').then(|| std::str::from_utf8(&rest[..end]).ok()).flatten()
    });
    let kind = match prefix {
        Some(name) => EventKind::from_name(name),
        None => {
            let head: Head<'_> = serde_json::from_slice(line)?;
            EventKind::from_name(&head.kind.0)
        }
    };
    Ok(kind.filter(|&kind| is_security(kind)))
}

/// A line of a kind read through its column declaration.
fn decode_declared(kind: EventKind, line: &[u8]) -> Result<Event, NdjsonError> {
    let declared = security_kind(kind.as_str()).ok_or_else(|| NdjsonError::Value {
        kind,
        field: "kind",
        reason: "no column declaration".to_owned(),
    })?;
    let object: Map<String, Value> = serde_json::from_slice(line)?;
    let number = |field: &'static str| -> Result<u64, NdjsonError> {
        let value = object.get(field).ok_or(NdjsonError::Missing { kind, field })?;
        value.as_u64().ok_or_else(|| NdjsonError::Value { kind, field, reason: format!("{value} is not a u64") })
    };
    let meta = EventMeta { ts_ns: number("ts_ns")?, event_id: number("event_id")? };
    let mut reader = JsonReader::new(&object, declared.columns);
    let mut event = match read_security(kind, meta, &mut reader) {
        Some(Ok(event)) => event,
        Some(Err(error)) => return Err(reader.error(kind, error)),
        None => return Err(NdjsonError::UnknownKind(kind.to_string())),
    };
    attach_context(&mut event, &object)?;
    Ok(event)
}

/// Reads the process context into `event` when the line has
/// `"has_context":true` (see `sinks/src/ndjson.rs`).
fn attach_context(event: &mut Event, object: &Map<String, Value>) -> Result<(), NdjsonError> {
    if object.get("has_context").and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    let kind = event.kind();
    let mut reader = JsonReader::new(object, PROCESS_CONTEXT.columns);
    let context = ProcessContext::read_columns(&mut reader).map_err(|error| reader.error(kind, error))?;
    if let Some(slot) = event.context_mut() {
        *slot = Some(Arc::new(context));
    }
    Ok(())
}

/// A [`ColumnReader`] over one line's object: column *i*'s value is the
/// key the declaration names for it.
struct JsonReader<'m> {
    object: &'m Map<String, Value>,
    columns: &'static [Column],
    next: usize,
    /// The key that was absent, when reading stopped at one.
    missing: Option<&'static str>,
}

impl<'m> JsonReader<'m> {
    fn new(object: &'m Map<String, Value>, columns: &'static [Column]) -> JsonReader<'m> {
        JsonReader { object, columns, next: 0, missing: None }
    }

    /// The next column's value, converted by `convert`.
    fn take<T>(&mut self, expected: Written, convert: impl Fn(&'m Value) -> Option<T>) -> Result<T, ColumnError> {
        let index = self.next;
        let column = self.columns.get(index).ok_or(ColumnError::Type { index, expected })?;
        let Some(value) = self.object.get(column.name) else {
            self.missing = Some(column.name);
            return Err(ColumnError::Type { index, expected });
        };
        let converted = convert(value).ok_or(ColumnError::Type { index, expected })?;
        self.next += 1;
        Ok(converted)
    }

    /// The decoding error for a record's read error.
    fn error(&self, kind: EventKind, error: ColumnError) -> NdjsonError {
        if let Some(field) = self.missing {
            return NdjsonError::Missing { kind, field };
        }
        let index = match &error {
            ColumnError::Type { index, .. } | ColumnError::Value { index, .. } => *index,
        };
        let field = self.columns.get(index).map_or("(past the declaration)", |c| c.name);
        NdjsonError::Value { kind, field, reason: error.to_string() }
    }
}

impl ColumnReader for JsonReader<'_> {
    fn index(&self) -> usize {
        self.next
    }
    fn u16(&mut self) -> Result<u16, ColumnError> {
        self.take(Written::U16, |v| v.as_u64().and_then(|v| u16::try_from(v).ok()))
    }
    fn u32(&mut self) -> Result<u32, ColumnError> {
        self.take(Written::U32, |v| v.as_u64().and_then(|v| u32::try_from(v).ok()))
    }
    fn u64(&mut self) -> Result<u64, ColumnError> {
        self.take(Written::U64, Value::as_u64)
    }
    fn i32(&mut self) -> Result<i32, ColumnError> {
        self.take(Written::I32, |v| v.as_i64().and_then(|v| i32::try_from(v).ok()))
    }
    fn i64(&mut self) -> Result<i64, ColumnError> {
        self.take(Written::I64, Value::as_i64)
    }
    fn bool(&mut self) -> Result<bool, ColumnError> {
        self.take(Written::Bool, Value::as_bool)
    }
    fn str(&mut self) -> Result<Arc<str>, ColumnError> {
        self.take(Written::Str, |v| v.as_str().map(Arc::from))
    }
    fn str_list(&mut self) -> Result<Vec<Arc<str>>, ColumnError> {
        self.take(Written::StrList, |v| v.as_array()?.iter().map(|item| item.as_str().map(Arc::from)).collect())
    }
    fn u64_list(&mut self) -> Result<Vec<u64>, ColumnError> {
        self.take(Written::U64List, |v| v.as_array()?.iter().map(Value::as_u64).collect())
    }
}

/// Every key any kind writes; which ones a line must have depends on its
/// `kind`. Integer widths are the records' own, so an out-of-range number
/// is a parse error, not a silent truncation. A float is `Option<Option>`:
/// absent vs. `null` (a non-finite value).
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    kind: Text<'a>,
    event_id: u64,
    ts_ns: u64,
    pid: Option<u32>,
    start_time_ns: Option<u64>,
    ppid: Option<u32>,
    uid: Option<u32>,
    #[serde(borrow)]
    comm: Option<Text<'a>>,
    #[serde(borrow)]
    exe: Option<Text<'a>>,
    #[serde(borrow)]
    cmdline: Option<Text<'a>>,
    gid: Option<u32>,
    cgroup_id: Option<u64>,
    argv: Option<Args>,
    argv_truncated: Option<bool>,
    /// An exec's attributes follow (read generically, see the module docs).
    has_attributes: Option<bool>,
    /// A process context follows (read generically).
    has_context: Option<bool>,
    exit_code: Option<i32>,
    /// An exit's CPU time, or an ephemeral row's sum of them.
    cpu_ns: Option<u64>,
    child_pid: Option<u32>,
    child_start_time_ns: Option<u64>,
    #[serde(borrow)]
    protocol: Option<Text<'a>>,
    #[serde(borrow)]
    dst_addr: Option<Text<'a>>,
    dst_port: Option<u16>,
    /// Absent vs. `null` (not observed).
    #[serde(default, deserialize_with = "nullable_int")]
    result: Option<Option<i32>>,
    #[serde(borrow)]
    path: Option<Text<'a>>,
    flags: Option<u32>,
    scan_id: Option<u64>,
    scan_size: Option<u32>,
    #[serde(borrow)]
    name: Option<Text<'a>>,
    #[serde(borrow)]
    state: Option<Text<'a>>,
    threads: Option<u32>,
    cpu_ticks: Option<u64>,
    #[serde(default, deserialize_with = "nullable_float")]
    cpu_percent: Option<Option<f64>>,
    rss_bytes: Option<u64>,
    top_n_rank: Option<u32>,
    /// A u32 for an aggregate, a u64 for a sketch or an ephemeral row.
    count: Option<u64>,
    cpu_ticks_sum: Option<u64>,
    #[serde(default, deserialize_with = "nullable_float")]
    cpu_percent_sum: Option<Option<f64>>,
    rss_bytes_sum: Option<u64>,
    rss_bytes_max: Option<u64>,
    #[serde(borrow)]
    metric_name: Option<Text<'a>>,
    #[serde(borrow)]
    key: Option<Text<'a>>,
    window_start_ns: Option<u64>,
    window_end_ns: Option<u64>,
    gamma: Option<f64>,
    #[serde(default, deserialize_with = "nullable_float")]
    sum: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable_float")]
    min: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable_float")]
    max: Option<Option<f64>>,
    zero_count: Option<u64>,
    positive_offset: Option<i32>,
    positive_bins: Option<Vec<u64>>,
    negative_offset: Option<i32>,
    negative_bins: Option<Vec<u64>>,
    #[serde(borrow)]
    module: Option<Text<'a>>,
    #[serde(borrow)]
    event_type: Option<Text<'a>>,
    #[serde(borrow)]
    reason: Option<Text<'a>>,
}

/// A present key: `Some(None)` for `null`, `Some(Some(v))` for a number.
fn nullable_float<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<f64>>, D::Error> {
    Option::<f64>::deserialize(deserializer).map(Some)
}

/// A present key: `Some(None)` for `null`, `Some(Some(v))` for a number.
fn nullable_int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<i32>>, D::Error> {
    Option::<i32>::deserialize(deserializer).map(Some)
}

/// A JSON array of strings read straight into an [`Argv`], without a
/// `String` per argument. An argument with a NUL is an error (no encoder
/// writes one: the kernel cannot pass one).
struct Args(Argv);

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Args, D::Error> {
        struct ArgsVisitor;
        impl<'de> Visitor<'de> for ArgsVisitor {
            type Value = Args;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of strings")
            }

            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Args, S::Error> {
                let mut nul_terminated = String::new();
                while let Some(arg) = seq.next_element::<Text<'de>>()? {
                    if arg.0.contains('\0') {
                        return Err(serde::de::Error::custom("an argument contains a NUL"));
                    }
                    nul_terminated.push_str(&arg.0);
                    nul_terminated.push('\0');
                }
                Ok(Args(Argv::from_nul_separated(nul_terminated.as_bytes())))
            }
        }
        deserializer.deserialize_seq(ArgsVisitor)
    }
}

/// A JSON string, borrowed from the line when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text<'a>, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, value: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(value)))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(value.to_owned())))
            }

            fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(value)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}
