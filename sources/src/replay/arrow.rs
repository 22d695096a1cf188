//! One Arrow `RecordBatch` of the spool → the engine's `Event`s: the exact
//! inverse of the spool sink's encoder (sinks/src/arrow_spool/encode.rs).
//!
//! Columns are looked up by name and type in the kind's schema
//! (`schemas::schema_for`, schemas/src/arrow.rs), so a file written by a
//! later layout that only appends columns still reads. Every value comes
//! back exactly: integers as stored, floats bit for bit, the state letter as
//! its byte, the protocol and address parsed from their text, an `argv`
//! list item by item, a connect's `result` from its value and `has_result`,
//! a sketch rebuilt with `LogSketch::from_parts` from the parts the encoder
//! took with `to_parts`. Recorded `event_id`s and `ts_ns` are kept, never reassigned.
//!
//! The security kinds and an exec's attributes are read by one generic
//! [`ColumnReader`] over a batch row ([`DeclaredBatch`]): their columns,
//! named and typed by the declaration in `schemas::columns`, are looked up
//! and downcast once per batch, and each record's `read_columns` takes
//! them in order. A file of layout 2 has no `has_attributes` column: its
//! execs come back with `attributes: None`, as they were written.
//!
//! Input is never trusted: a missing or mistyped column, a null, an address
//! that does not parse or sketch parts no sketch could have are a
//! [`DecodeError`] naming the kind, column and row, never a panic.

use std::net::IpAddr;
use std::sync::Arc;

use arrow_array::{
    Array, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray, UInt16Array,
    UInt32Array, UInt64Array,
};
use arrow_schema::DataType;
use pipeline::event::columns::{read_security, ColumnError, ColumnReader, ColumnType as Written};
use pipeline::event::{
    AgentDiag, Argv, FileOpen, NetConnect, ProcessAggregateSample, ProcessEphemeralSummary, ProcessExec, ProcessExit,
    ProcessFork, ProcessSample, Protocol, ScanInfo, SketchEvent,
};
use pipeline::event::{ExecAttributes, ProcessContext};
use pipeline::sketch::{LogSketch, SketchParts};
use pipeline::{Event, EventKind, EventMeta, ProcessKey};
use schemas::arrow::HAS_CONTEXT;
use schemas::columns::{carries_context, security_kind, Column, ColumnType, EXEC_ATTRIBUTES, PROCESS_CONTEXT};

use super::reader::Selection;

/// Why a record batch could not be turned into events.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The kind's schema has this column; the batch does not.
    #[error("{kind}: no column `{column}`")]
    MissingColumn { kind: EventKind, column: &'static str },
    /// The column is there with another type than the schema's.
    #[error("{kind}: column `{column}` is {found}, expected {expected}")]
    WrongType { kind: EventKind, column: &'static str, expected: &'static str, found: DataType },
    /// Every spool column is non-null; this one has nulls.
    #[error("{kind}: column `{column}` has {count} null values")]
    Nulls { kind: EventKind, column: &'static str, count: usize },
    /// A value no encoder writes (an address that does not parse, …).
    #[error("{kind}: row {row}, column `{column}`: {reason}")]
    Value { kind: EventKind, column: &'static str, row: usize, reason: String },
    /// A kind with neither a mapping here nor a column declaration (a bug:
    /// the round-trip tests cover every kind).
    #[error("{kind}: no column declaration")]
    Undeclared { kind: EventKind },
}

/// Decodes every row of `batch`, a record batch of `kind`'s schema.
pub fn decode_batch(kind: EventKind, batch: &RecordBatch) -> Result<Vec<Event>, DecodeError> {
    decode_selected(kind, batch, &Selection::all())
}

/// Decodes the rows of `batch` whose `ts_ns` the selection keeps (the
/// selection's kinds are not looked at: the caller knows `kind`).
pub(crate) fn decode_selected(
    kind: EventKind,
    batch: &RecordBatch,
    selection: &Selection,
) -> Result<Vec<Event>, DecodeError> {
    let c = Columns { kind, batch };
    let event_id = c.u64("event_id")?;
    let ts_ns = c.u64("ts_ns")?;
    let rows: Vec<usize> = (0..batch.num_rows()).filter(|&row| selection.keeps_ts(ts_ns.value(row))).collect();
    let meta = |row: usize| EventMeta { ts_ns: ts_ns.value(row), event_id: event_id.value(row) };
    let mut events = Vec::with_capacity(rows.len());
    if rows.is_empty() {
        return Ok(events);
    }
    let selected = rows.clone();
    match kind {
        EventKind::ProcessExec => {
            let (pid, start) = (c.u32("pid")?, c.u64("start_time_ns")?);
            let (ppid, uid, gid, cgroup_id) = (c.u32("ppid")?, c.u32("uid")?, c.u32("gid")?, c.u64("cgroup_id")?);
            let (mut comm, mut exe) = (c.str("comm")?, c.str("exe")?);
            let (argv, argv_truncated) = (c.argvs("argv")?, c.bool("argv_truncated")?);
            // Absent in layout-2 files: no exec there has attributes.
            let mut attributes = match c.batch.column_by_name("has_attributes") {
                None => None,
                Some(_) => Some((c.bool("has_attributes")?, c.declared(EXEC_ATTRIBUTES.columns)?)),
            };
            for row in rows {
                let exec_attributes = match &mut attributes {
                    Some((has, columns)) if has.value(row) => {
                        let mut reader = columns.row(row);
                        let read = ExecAttributes::read_columns(&mut reader);
                        Some(Arc::new(read.map_err(|e| c.column_error(row, EXEC_ATTRIBUTES.columns, e))?))
                    }
                    _ => None,
                };
                events.push(Event::ProcessExec(ProcessExec {
                    context: None,
                    meta: meta(row),
                    process: ProcessKey { pid: pid.value(row), start_time_ns: start.value(row) },
                    ppid: ppid.value(row),
                    uid: uid.value(row),
                    gid: gid.value(row),
                    cgroup_id: cgroup_id.value(row),
                    comm: comm.get(row),
                    exe: exe.get(row),
                    argv: argv.get(row).map_err(|reason| c.value(row, "argv", reason))?,
                    argv_truncated: argv_truncated.value(row),
                    attributes: exec_attributes,
                }));
            }
        }
        EventKind::ProcessExit => {
            let (pid, start) = (c.u32("pid")?, c.u64("start_time_ns")?);
            let (exit_code, cpu_ns) = (c.i32("exit_code")?, c.u64("cpu_ns")?);
            for row in rows {
                events.push(Event::ProcessExit(ProcessExit {
                    context: None,
                    meta: meta(row),
                    process: ProcessKey { pid: pid.value(row), start_time_ns: start.value(row) },
                    exit_code: exit_code.value(row),
                    cpu_ns: cpu_ns.value(row),
                }));
            }
        }
        EventKind::ProcessFork => {
            let (pid, start) = (c.u32("pid")?, c.u64("start_time_ns")?);
            let (child_pid, child_start) = (c.u32("child_pid")?, c.u64("child_start_time_ns")?);
            for row in rows {
                events.push(Event::ProcessFork(ProcessFork {
                    context: None,
                    meta: meta(row),
                    parent: ProcessKey { pid: pid.value(row), start_time_ns: start.value(row) },
                    child: ProcessKey { pid: child_pid.value(row), start_time_ns: child_start.value(row) },
                }));
            }
        }
        EventKind::NetConnect => {
            let (pid, start) = (c.u32("pid")?, c.u64("start_time_ns")?);
            let (protocol, dst_addr) = (c.utf8("protocol")?, c.utf8("dst_addr")?);
            let dst_port = c.column::<UInt16Array>("dst_port", "UInt16")?;
            let (result, has_result) = (c.i32("result")?, c.bool("has_result")?);
            for row in rows {
                events.push(Event::NetConnect(NetConnect {
                    context: None,
                    meta: meta(row),
                    process: ProcessKey { pid: pid.value(row), start_time_ns: start.value(row) },
                    protocol: parse_protocol(protocol.value(row)).map_err(|reason| c.value(row, "protocol", reason))?,
                    dst_addr: parse_addr(dst_addr.value(row)).map_err(|reason| c.value(row, "dst_addr", reason))?,
                    dst_port: dst_port.value(row),
                    result: match (has_result.value(row), result.value(row)) {
                        (true, result) => Some(result),
                        (false, 0) => None,
                        (false, other) => {
                            return Err(c.value(row, "result", format!("{other} without has_result")));
                        }
                    },
                }));
            }
        }
        EventKind::FileOpen => {
            let (pid, start) = (c.u32("pid")?, c.u64("start_time_ns")?);
            let (mut path, flags) = (c.str("path")?, c.u32("flags")?);
            for row in rows {
                events.push(Event::FileOpen(FileOpen {
                    context: None,
                    meta: meta(row),
                    process: ProcessKey { pid: pid.value(row), start_time_ns: start.value(row) },
                    path: path.get(row),
                    flags: flags.value(row),
                }));
            }
        }
        EventKind::ProcessSample => {
            let (pid, start) = (c.u32("pid")?, c.u64("start_time_ns")?);
            let (scan_id, scan_size) = (c.u64("scan_id")?, c.u32("scan_size")?);
            let (ppid, uid) = (c.u32("ppid")?, c.u32("uid")?);
            let (mut name, mut cmdline, state) = (c.str("name")?, c.str("cmdline")?, c.utf8("state")?);
            let (threads, cpu_ticks, cpu_percent) = (c.u32("threads")?, c.u64("cpu_ticks")?, c.f64("cpu_percent")?);
            let (rss_bytes, top_n_rank) = (c.u64("rss_bytes")?, c.u32("top_n_rank")?);
            for row in rows {
                events.push(Event::ProcessSample(ProcessSample {
                    meta: meta(row),
                    process: ProcessKey { pid: pid.value(row), start_time_ns: start.value(row) },
                    scan: ScanInfo { scan_id: scan_id.value(row), scan_size: scan_size.value(row) },
                    ppid: ppid.value(row),
                    uid: uid.value(row),
                    name: name.get(row),
                    cmdline: cmdline.get(row),
                    state: parse_state(state.value(row)).map_err(|reason| c.value(row, "state", reason))?,
                    threads: threads.value(row),
                    cpu_ticks: cpu_ticks.value(row),
                    cpu_percent: cpu_percent.value(row),
                    rss_bytes: rss_bytes.value(row),
                    top_n_rank: top_n_rank.value(row),
                }));
            }
        }
        EventKind::ProcessAggregate => {
            let (scan_id, scan_size) = (c.u64("scan_id")?, c.u32("scan_size")?);
            let (mut name, count) = (c.str("name")?, c.u32("count")?);
            let (cpu_ticks_sum, cpu_percent_sum) = (c.u64("cpu_ticks_sum")?, c.f64("cpu_percent_sum")?);
            let (rss_bytes_sum, rss_bytes_max) = (c.u64("rss_bytes_sum")?, c.u64("rss_bytes_max")?);
            for row in rows {
                events.push(Event::ProcessAggregate(ProcessAggregateSample {
                    meta: meta(row),
                    scan: ScanInfo { scan_id: scan_id.value(row), scan_size: scan_size.value(row) },
                    name: name.get(row),
                    count: count.value(row),
                    cpu_ticks_sum: cpu_ticks_sum.value(row),
                    cpu_percent_sum: cpu_percent_sum.value(row),
                    rss_bytes_sum: rss_bytes_sum.value(row),
                    rss_bytes_max: rss_bytes_max.value(row),
                }));
            }
        }
        EventKind::AgentDiag => {
            let (mut module, mut event_type, mut reason) = (c.str("module")?, c.str("event_type")?, c.str("reason")?);
            for row in rows {
                events.push(Event::AgentDiag(AgentDiag {
                    meta: meta(row),
                    module: module.get(row),
                    event_type: event_type.get(row),
                    reason: reason.get(row),
                }));
            }
        }
        EventKind::ProcessEphemeral => {
            let (window_start, window_end) = (c.u64("window_start_ns")?, c.u64("window_end_ns")?);
            let (mut name, count, cpu_ns) = (c.str("name")?, c.u64("count")?, c.u64("cpu_ns")?);
            for row in rows {
                events.push(Event::ProcessEphemeral(ProcessEphemeralSummary {
                    meta: meta(row),
                    window_start_ns: window_start.value(row),
                    window_end_ns: window_end.value(row),
                    name: name.get(row),
                    count: count.value(row),
                    cpu_ns: cpu_ns.value(row),
                }));
            }
        }
        EventKind::Sketch => {
            let (mut metric_name, mut key) = (c.str("metric_name")?, c.str("key")?);
            let (window_start, window_end) = (c.u64("window_start_ns")?, c.u64("window_end_ns")?);
            let (gamma, count, sum) = (c.f64("gamma")?, c.u64("count")?, c.f64("sum")?);
            let (min, max, zero_count) = (c.f64("min")?, c.f64("max")?, c.u64("zero_count")?);
            let (positive_offset, positive_bins) = (c.i32("bins_offset")?, c.bins("bins")?);
            let (negative_offset, negative_bins) = (c.i32("neg_bins_offset")?, c.bins("neg_bins")?);
            for row in rows {
                let parts = SketchParts {
                    gamma: gamma.value(row),
                    count: count.value(row),
                    sum: sum.value(row),
                    min: min.value(row),
                    max: max.value(row),
                    zero_count: zero_count.value(row),
                    positive_offset: positive_offset.value(row),
                    positive_bins: positive_bins.row(row).to_vec(),
                    negative_offset: negative_offset.value(row),
                    negative_bins: negative_bins.row(row).to_vec(),
                };
                let sketch = LogSketch::from_parts(parts).map_err(|e| c.value(row, "sketch", e.to_string()))?;
                events.push(Event::Sketch(SketchEvent {
                    meta: meta(row),
                    metric_name: metric_name.get(row),
                    key: key.get(row),
                    window_start_ns: window_start.value(row),
                    window_end_ns: window_end.value(row),
                    sketch,
                }));
            }
        }
        _ => {
            let declared = security_kind(kind.as_str()).ok_or(DecodeError::Undeclared { kind })?;
            let mut columns = c.declared(declared.columns)?;
            for row in rows {
                let mut reader = columns.row(row);
                match read_security(kind, meta(row), &mut reader) {
                    Some(Ok(event)) => events.push(event),
                    Some(Err(error)) => return Err(c.column_error(row, declared.columns, error)),
                    None => return Err(DecodeError::Undeclared { kind }),
                }
            }
        }
    }
    // The process context, after the kind's own columns; absent in files
    // of layout 3 and older (their events come back without one).
    if carries_context(kind.as_str()) && c.batch.column_by_name(HAS_CONTEXT).is_some() {
        let has_context = c.bool("has_context")?;
        let mut columns = c.declared(PROCESS_CONTEXT.columns)?;
        for (event, &row) in events.iter_mut().zip(&selected) {
            if !has_context.value(row) {
                continue;
            }
            let context = ProcessContext::read_columns(&mut columns.row(row))
                .map_err(|e| c.column_error(row, PROCESS_CONTEXT.columns, e))?;
            if let Some(slot) = event.context_mut() {
                *slot = Some(Arc::new(context));
            }
        }
    }
    Ok(events)
}

/// `Protocol::as_str`, inverted.
pub(crate) fn parse_protocol(text: &str) -> Result<Protocol, String> {
    match text {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!("unknown protocol {other:?} (expected \"tcp\" or \"udp\")")),
    }
}

/// An address in the text form `IpAddr`'s `Display` writes.
pub(crate) fn parse_addr(text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|_| format!("{text:?} is not an IP address"))
}

/// The state letter: one character, written from its byte with
/// `char::from(u8)`, so any of the 256 bytes comes back.
pub(crate) fn parse_state(text: &str) -> Result<u8, String> {
    let mut chars = text.chars();
    match (chars.next().map(u8::try_from), chars.next()) {
        (Some(Ok(byte)), None) => Ok(byte),
        _ => Err(format!("{text:?} is not a one-character state")),
    }
}

/// Typed access to the columns of one batch.
struct Columns<'a> {
    kind: EventKind,
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    fn column<A: Array + 'static>(&self, name: &'static str, expected: &'static str) -> Result<&'a A, DecodeError> {
        let kind = self.kind;
        let array = self.batch.column_by_name(name).ok_or(DecodeError::MissingColumn { kind, column: name })?;
        let typed = array.as_any().downcast_ref::<A>().ok_or_else(|| DecodeError::WrongType {
            kind,
            column: name,
            expected,
            found: array.data_type().clone(),
        })?;
        match typed.null_count() {
            0 => Ok(typed),
            count => Err(DecodeError::Nulls { kind, column: name, count }),
        }
    }

    fn u64(&self, name: &'static str) -> Result<&'a UInt64Array, DecodeError> {
        self.column(name, "UInt64")
    }

    fn u32(&self, name: &'static str) -> Result<&'a UInt32Array, DecodeError> {
        self.column(name, "UInt32")
    }

    fn i32(&self, name: &'static str) -> Result<&'a Int32Array, DecodeError> {
        self.column(name, "Int32")
    }

    fn bool(&self, name: &'static str) -> Result<&'a BooleanArray, DecodeError> {
        self.column(name, "Boolean")
    }

    fn f64(&self, name: &'static str) -> Result<&'a Float64Array, DecodeError> {
        self.column(name, "Float64")
    }

    fn utf8(&self, name: &'static str) -> Result<&'a StringArray, DecodeError> {
        self.column(name, "Utf8")
    }

    fn str(&self, name: &'static str) -> Result<Strings<'a>, DecodeError> {
        Ok(Strings { array: self.utf8(name)?, last: None })
    }

    fn bins(&self, name: &'static str) -> Result<Bins<'a>, DecodeError> {
        let list = self.column::<ListArray>(name, "List(UInt64)")?;
        let found = || list.data_type().clone();
        let values = list.values().as_any().downcast_ref::<UInt64Array>().ok_or_else(|| DecodeError::WrongType {
            kind: self.kind,
            column: name,
            expected: "List(UInt64)",
            found: found(),
        })?;
        if values.null_count() > 0 {
            return Err(DecodeError::Nulls { kind: self.kind, column: name, count: values.null_count() });
        }
        Ok(Bins { offsets: list.value_offsets(), values: values.values() })
    }

    fn argvs(&self, name: &'static str) -> Result<Argvs<'a>, DecodeError> {
        let list = self.column::<ListArray>(name, "List(Utf8)")?;
        let values = list.values().as_any().downcast_ref::<StringArray>().ok_or_else(|| DecodeError::WrongType {
            kind: self.kind,
            column: name,
            expected: "List(Utf8)",
            found: list.data_type().clone(),
        })?;
        if values.null_count() > 0 {
            return Err(DecodeError::Nulls { kind: self.kind, column: name, count: values.null_count() });
        }
        Ok(Argvs { offsets: list.value_offsets(), values })
    }

    fn value(&self, row: usize, column: &'static str, reason: String) -> DecodeError {
        DecodeError::Value { kind: self.kind, column, row, reason }
    }

    /// A record's read error, naming the declared column it stopped at.
    fn column_error(&self, row: usize, columns: &'static [Column], error: ColumnError) -> DecodeError {
        let index = match &error {
            ColumnError::Type { index, .. } | ColumnError::Value { index, .. } => *index,
        };
        let column = columns.get(index).map_or("(past the declaration)", |c| c.name);
        self.value(row, column, error.to_string())
    }

    /// The declared `columns`, each looked up by name and downcast to its
    /// declared type once for the whole batch.
    fn declared(&self, columns: &'static [Column]) -> Result<DeclaredBatch<'a>, DecodeError> {
        let mut typed = Vec::with_capacity(columns.len());
        for column in columns {
            let name = column.name;
            typed.push(match column.ty {
                ColumnType::U16 => Typed::U16(self.column(name, "UInt16")?),
                ColumnType::U32 => Typed::U32(self.u32(name)?),
                ColumnType::U64 => Typed::U64(self.u64(name)?),
                ColumnType::I32 => Typed::I32(self.i32(name)?),
                ColumnType::I64 => Typed::I64(self.column(name, "Int64")?),
                ColumnType::Bool => Typed::Bool(self.bool(name)?),
                ColumnType::Str => Typed::Str(self.utf8(name)?),
                ColumnType::StrList => Typed::StrList(self.argvs(name)?),
                ColumnType::U64List => Typed::U64List(self.bins(name)?),
            });
        }
        let last = vec![None; typed.len()];
        Ok(DeclaredBatch { columns: typed, last })
    }
}

/// One declared column of a batch, downcast.
enum Typed<'a> {
    U16(&'a UInt16Array),
    U32(&'a UInt32Array),
    U64(&'a UInt64Array),
    I32(&'a Int32Array),
    I64(&'a Int64Array),
    Bool(&'a BooleanArray),
    Str(&'a StringArray),
    StrList(Argvs<'a>),
    U64List(Bins<'a>),
}

/// The declared columns of one batch, and the last string each text column
/// handed out (a value equal to the previous row's shares its allocation).
struct DeclaredBatch<'a> {
    columns: Vec<Typed<'a>>,
    last: Vec<Option<Arc<str>>>,
}

impl<'a> DeclaredBatch<'a> {
    /// A reader of row `row`'s values, in declaration order.
    fn row(&mut self, row: usize) -> RowReader<'_, 'a> {
        RowReader { batch: self, row, next: 0 }
    }
}

/// A [`ColumnReader`] over one row of a [`DeclaredBatch`].
struct RowReader<'b, 'a> {
    batch: &'b mut DeclaredBatch<'a>,
    row: usize,
    next: usize,
}

macro_rules! take {
    ($self:ident, $variant:ident, $expected:ident) => {{
        let index = $self.next;
        match $self.batch.columns.get(index) {
            Some(Typed::$variant(array)) => {
                $self.next += 1;
                Ok(array.value($self.row))
            }
            _ => Err(ColumnError::Type { index, expected: Written::$expected }),
        }
    }};
}

impl ColumnReader for RowReader<'_, '_> {
    fn index(&self) -> usize {
        self.next
    }
    fn u16(&mut self) -> Result<u16, ColumnError> {
        take!(self, U16, U16)
    }
    fn u32(&mut self) -> Result<u32, ColumnError> {
        take!(self, U32, U32)
    }
    fn u64(&mut self) -> Result<u64, ColumnError> {
        take!(self, U64, U64)
    }
    fn i32(&mut self) -> Result<i32, ColumnError> {
        take!(self, I32, I32)
    }
    fn i64(&mut self) -> Result<i64, ColumnError> {
        take!(self, I64, I64)
    }
    fn bool(&mut self) -> Result<bool, ColumnError> {
        take!(self, Bool, Bool)
    }
    fn str(&mut self) -> Result<Arc<str>, ColumnError> {
        let index = self.next;
        let Some(Typed::Str(array)) = self.batch.columns.get(index) else {
            return Err(ColumnError::Type { index, expected: Written::Str });
        };
        self.next += 1;
        let value = array.value(self.row);
        let last = &mut self.batch.last[index];
        match last {
            Some(shared) if **shared == *value => Ok(Arc::clone(shared)),
            _ => {
                let value: Arc<str> = Arc::from(value);
                *last = Some(Arc::clone(&value));
                Ok(value)
            }
        }
    }
    fn str_list(&mut self) -> Result<Vec<Arc<str>>, ColumnError> {
        let index = self.next;
        let Some(Typed::StrList(lists)) = self.batch.columns.get(index) else {
            return Err(ColumnError::Type { index, expected: Written::StrList });
        };
        self.next += 1;
        let items = lists.items(self.row).map_err(|reason| ColumnError::Value {
            index,
            what: "list of strings",
            value: reason,
        })?;
        Ok(items.map(Arc::from).collect())
    }
    fn u64_list(&mut self) -> Result<Vec<u64>, ColumnError> {
        let index = self.next;
        let Some(Typed::U64List(lists)) = self.batch.columns.get(index) else {
            return Err(ColumnError::Type { index, expected: Written::U64List });
        };
        self.next += 1;
        let items = lists.items(self.row).map_err(|reason| ColumnError::Value {
            index,
            what: "list of numbers",
            value: reason.to_owned(),
        })?;
        Ok(items.to_vec())
    }
}

/// A string column handing out `Arc<str>`s; a value equal to the previous
/// row's shares its allocation (names and paths repeat in runs).
struct Strings<'a> {
    array: &'a StringArray,
    last: Option<Arc<str>>,
}

impl Strings<'_> {
    fn get(&mut self, row: usize) -> Arc<str> {
        let value = self.array.value(row);
        match &self.last {
            Some(last) if **last == *value => Arc::clone(last),
            _ => {
                let value: Arc<str> = Arc::from(value);
                self.last = Some(Arc::clone(&value));
                value
            }
        }
    }
}

/// A `List(Utf8)` column of argument lists.
struct Argvs<'a> {
    offsets: &'a [i32],
    values: &'a StringArray,
}

impl<'a> Argvs<'a> {
    /// Row `row`'s items; an error for offsets out of range (a valid array
    /// never has them).
    fn items(&self, row: usize) -> Result<impl Iterator<Item = &'a str> + Clone + 'a, String> {
        let bounds = (self.offsets.get(row), self.offsets.get(row + 1));
        let (Some(&start), Some(&end)) = bounds else { return Err("offsets out of range".to_owned()) };
        let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
            return Err("negative offsets".to_owned());
        };
        if start > end || end > self.values.len() {
            return Err("offsets out of range".to_owned());
        }
        let values = self.values;
        Ok((start..end).map(move |index| values.value(index)))
    }

    /// Row `row`'s arguments; an error for offsets out of range or an
    /// argument with a NUL (no encoder writes one: the kernel cannot pass
    /// one).
    fn get(&self, row: usize) -> Result<Argv, String> {
        let args = self.items(row)?;
        if let Some(position) = args.clone().position(|arg| arg.contains('\0')) {
            return Err(format!("argument {position} contains a NUL"));
        }
        Ok(Argv::from_args(args))
    }
}

/// A `List(UInt64)` column (sketch bins, a declared list of numbers), read
/// straight from its buffers.
struct Bins<'a> {
    offsets: &'a [i32],
    values: &'a [u64],
}

impl Bins<'_> {
    /// Row `row`'s numbers; an error for offsets out of range (a valid
    /// array never has them).
    fn items(&self, row: usize) -> Result<&[u64], &'static str> {
        let bounds = (self.offsets.get(row), self.offsets.get(row + 1));
        let (Some(&start), Some(&end)) = bounds else { return Err("offsets out of range") };
        let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
            return Err("negative offsets");
        };
        self.values.get(start..end).ok_or("offsets out of range")
    }

    /// Row `row`'s bins; empty if the offsets are out of range (a valid
    /// array never has such offsets, and then the sketch check fails).
    fn row(&self, row: usize) -> &[u64] {
        self.items(row).unwrap_or(&[])
    }
}
