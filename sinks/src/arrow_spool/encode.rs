//! Events of one kind → one Arrow `RecordBatch` in `schemas::schema_for(kind)`.
//!
//! Column order and types are the schema's (schemas/src/arrow.rs); this file
//! is the one mapping from the engine's records to those columns. A sketch is
//! stored as its `to_parts` so it round-trips exactly; an exec's `argv` as a
//! list with one item per argument; a connect's optional `result` as the
//! value (0 when absent) and `has_result`.
//!
//! The security kinds, an exec's attributes and the process context of
//! every process-bearing kind (`has_context` + `ctx_` columns, after the
//! kind's own) have no mapping here: their
//! records write their values through `pipeline::event::columns`, and
//! [`BuilderWriter`] appends them to builders typed by the declaration in
//! `schemas::columns`, so a field or kind added there needs no change in
//! this file.

use std::sync::Arc;

use std::sync::LazyLock;

use arrow_array::builder::{
    BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, RecordBatch, StringArray, UInt16Array, UInt32Array, UInt64Array,
};
use arrow_schema::ArrowError;
use pipeline::event::columns::{write_security, ColumnWriter};
use pipeline::event::{Event, EventKind, ExecAttributes, ProcessContext};
use schemas::columns::{carries_context, security_kind, Column, ColumnType, EXEC_ATTRIBUTES, PROCESS_CONTEXT};

/// What an exec without attributes stores in the attribute columns (with
/// `has_attributes` false): built once, not per row.
static NO_ATTRIBUTES: LazyLock<ExecAttributes> = LazyLock::new(ExecAttributes::default);

/// What an event without a context stores in the `ctx_` columns (with
/// `has_context` false).
static NO_CONTEXT: LazyLock<ProcessContext> = LazyLock::new(ProcessContext::unknown);

/// Encodes `events` (all of kind `kind`; others are skipped) as one batch.
pub fn encode(kind: EventKind, events: &[Event]) -> Result<RecordBatch, ArrowError> {
    let schema = schemas::schema_for(kind.as_str())
        .ok_or_else(|| ArrowError::SchemaError(format!("no Arrow schema for {kind}")))?;
    let meta = |pick: &dyn Fn(&pipeline::event::EventMeta) -> u64| -> ArrayRef {
        u64s(events.iter().filter(|e| e.kind() == kind).map(|e| pick(e.meta())))
    };
    let mut columns = vec![meta(&|m| m.event_id), meta(&|m| m.ts_ns)];
    macro_rules! rows {
        ($variant:ident) => {
            events
                .iter()
                .filter_map(|e| match e {
                    Event::$variant(row) => Some(row),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
    }
    match kind {
        EventKind::ProcessExec => {
            let rows = rows!(ProcessExec);
            columns.extend([
                u32s(rows.iter().map(|r| r.process.pid)),
                u64s(rows.iter().map(|r| r.process.start_time_ns)),
                u32s(rows.iter().map(|r| r.ppid)),
                u32s(rows.iter().map(|r| r.uid)),
                u32s(rows.iter().map(|r| r.gid)),
                u64s(rows.iter().map(|r| r.cgroup_id)),
                strs(rows.iter().map(|r| &*r.comm)),
                strs(rows.iter().map(|r| &*r.exe)),
                argvs(rows.iter().map(|r| &r.argv)),
                bools(rows.iter().map(|r| r.argv_truncated)),
                bools(rows.iter().map(|r| r.attributes.is_some())),
            ]);
            let mut writer = BuilderWriter::new(kind, EXEC_ATTRIBUTES.columns, rows.len());
            for row in &rows {
                row.attributes.as_deref().unwrap_or(&NO_ATTRIBUTES).write_columns(&mut writer);
                writer.end_row()?;
            }
            columns.extend(writer.finish());
        }
        EventKind::ProcessExit => {
            let rows = rows!(ProcessExit);
            columns.extend([
                u32s(rows.iter().map(|r| r.process.pid)),
                u64s(rows.iter().map(|r| r.process.start_time_ns)),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.exit_code))) as ArrayRef,
                u64s(rows.iter().map(|r| r.cpu_ns)),
            ]);
        }
        EventKind::ProcessFork => {
            let rows = rows!(ProcessFork);
            columns.extend([
                u32s(rows.iter().map(|r| r.parent.pid)),
                u64s(rows.iter().map(|r| r.parent.start_time_ns)),
                u32s(rows.iter().map(|r| r.child.pid)),
                u64s(rows.iter().map(|r| r.child.start_time_ns)),
            ]);
        }
        EventKind::NetConnect => {
            let rows = rows!(NetConnect);
            let addrs: Vec<String> = rows.iter().map(|r| r.dst_addr.to_string()).collect();
            columns.extend([
                u32s(rows.iter().map(|r| r.process.pid)),
                u64s(rows.iter().map(|r| r.process.start_time_ns)),
                strs(rows.iter().map(|r| r.protocol.as_str())),
                strs(addrs.iter().map(String::as_str)),
                Arc::new(UInt16Array::from_iter_values(rows.iter().map(|r| r.dst_port))) as ArrayRef,
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.result.unwrap_or(0)))) as ArrayRef,
                bools(rows.iter().map(|r| r.result.is_some())),
            ]);
        }
        EventKind::FileOpen => {
            let rows = rows!(FileOpen);
            columns.extend([
                u32s(rows.iter().map(|r| r.process.pid)),
                u64s(rows.iter().map(|r| r.process.start_time_ns)),
                strs(rows.iter().map(|r| &*r.path)),
                u32s(rows.iter().map(|r| r.flags)),
            ]);
        }
        EventKind::ProcessSample => {
            let rows = rows!(ProcessSample);
            let states: Vec<String> = rows.iter().map(|r| char::from(r.state).to_string()).collect();
            columns.extend([
                u32s(rows.iter().map(|r| r.process.pid)),
                u64s(rows.iter().map(|r| r.process.start_time_ns)),
                u64s(rows.iter().map(|r| r.scan.scan_id)),
                u32s(rows.iter().map(|r| r.scan.scan_size)),
                u32s(rows.iter().map(|r| r.ppid)),
                u32s(rows.iter().map(|r| r.uid)),
                strs(rows.iter().map(|r| &*r.name)),
                strs(rows.iter().map(|r| &*r.cmdline)),
                strs(states.iter().map(String::as_str)),
                u32s(rows.iter().map(|r| r.threads)),
                u64s(rows.iter().map(|r| r.cpu_ticks)),
                f64s(rows.iter().map(|r| r.cpu_percent)),
                u64s(rows.iter().map(|r| r.rss_bytes)),
                u32s(rows.iter().map(|r| r.top_n_rank)),
            ]);
        }
        EventKind::ProcessAggregate => {
            let rows = rows!(ProcessAggregate);
            columns.extend([
                u64s(rows.iter().map(|r| r.scan.scan_id)),
                u32s(rows.iter().map(|r| r.scan.scan_size)),
                strs(rows.iter().map(|r| &*r.name)),
                u32s(rows.iter().map(|r| r.count)),
                u64s(rows.iter().map(|r| r.cpu_ticks_sum)),
                f64s(rows.iter().map(|r| r.cpu_percent_sum)),
                u64s(rows.iter().map(|r| r.rss_bytes_sum)),
                u64s(rows.iter().map(|r| r.rss_bytes_max)),
            ]);
        }
        EventKind::AgentDiag => {
            let rows = rows!(AgentDiag);
            columns.extend([
                strs(rows.iter().map(|r| &*r.module)),
                strs(rows.iter().map(|r| &*r.event_type)),
                strs(rows.iter().map(|r| &*r.reason)),
            ]);
        }
        EventKind::ProcessEphemeral => {
            let rows = rows!(ProcessEphemeral);
            columns.extend([
                u64s(rows.iter().map(|r| r.window_start_ns)),
                u64s(rows.iter().map(|r| r.window_end_ns)),
                strs(rows.iter().map(|r| &*r.name)),
                u64s(rows.iter().map(|r| r.count)),
                u64s(rows.iter().map(|r| r.cpu_ns)),
            ]);
        }
        EventKind::Sketch => {
            let rows = rows!(Sketch);
            let parts: Vec<_> = rows.iter().map(|r| r.sketch.to_parts()).collect();
            columns.extend([
                strs(rows.iter().map(|r| &*r.metric_name)),
                strs(rows.iter().map(|r| &*r.key)),
                u64s(rows.iter().map(|r| r.window_start_ns)),
                u64s(rows.iter().map(|r| r.window_end_ns)),
                f64s(parts.iter().map(|p| p.gamma)),
                u64s(parts.iter().map(|p| p.count)),
                f64s(parts.iter().map(|p| p.sum)),
                f64s(parts.iter().map(|p| p.min)),
                f64s(parts.iter().map(|p| p.max)),
                u64s(parts.iter().map(|p| p.zero_count)),
                Arc::new(Int32Array::from_iter_values(parts.iter().map(|p| p.positive_offset))) as ArrayRef,
                lists(parts.iter().map(|p| &p.positive_bins[..])),
                Arc::new(Int32Array::from_iter_values(parts.iter().map(|p| p.negative_offset))) as ArrayRef,
                lists(parts.iter().map(|p| &p.negative_bins[..])),
            ]);
        }
        _ => {
            let declared = security_kind(kind.as_str())
                .ok_or_else(|| ArrowError::SchemaError(format!("{kind} has no column declaration")))?;
            let mut writer = BuilderWriter::new(kind, declared.columns, events.len());
            for event in events.iter().filter(|e| e.kind() == kind) {
                if !write_security(event, &mut writer) {
                    return Err(ArrowError::SchemaError(format!("{kind} is not written through its columns")));
                }
                writer.end_row()?;
            }
            columns.extend(writer.finish());
        }
    }
    if carries_context(kind.as_str()) {
        let contexts: Vec<Option<&Arc<ProcessContext>>> =
            events.iter().filter(|e| e.kind() == kind).map(Event::context).collect();
        columns.push(bools(contexts.iter().map(Option::is_some)));
        let mut writer = BuilderWriter::new(kind, PROCESS_CONTEXT.columns, contexts.len());
        for context in &contexts {
            context.map_or(&*NO_CONTEXT, |c| &**c).write_columns(&mut writer);
            writer.end_row()?;
        }
        columns.extend(writer.finish());
    }
    RecordBatch::try_new(schema, columns)
}

/// One typed builder per declared column.
enum Builder {
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
    StrList(ListBuilder<StringBuilder>),
    U64List(ListBuilder<UInt64Builder>),
}

/// A [`ColumnWriter`] appending one record per row to builders typed by a
/// column declaration. A record that writes another type or count of
/// columns than declared (its `write_columns` and the declaration
/// disagree) makes [`BuilderWriter::end_row`] fail, naming the column,
/// instead of writing a misaligned file.
pub struct BuilderWriter {
    kind: EventKind,
    columns: &'static [Column],
    builders: Vec<Builder>,
    next: usize,
    mismatch: Option<(usize, ColumnType)>,
}

impl BuilderWriter {
    /// Builders for `columns` with room for `rows` rows.
    pub fn new(kind: EventKind, columns: &'static [Column], rows: usize) -> BuilderWriter {
        let builders = columns
            .iter()
            .map(|column| match column.ty {
                ColumnType::U16 => Builder::U16(UInt16Builder::with_capacity(rows)),
                ColumnType::U32 => Builder::U32(UInt32Builder::with_capacity(rows)),
                ColumnType::U64 => Builder::U64(UInt64Builder::with_capacity(rows)),
                ColumnType::I32 => Builder::I32(Int32Builder::with_capacity(rows)),
                ColumnType::I64 => Builder::I64(Int64Builder::with_capacity(rows)),
                ColumnType::Bool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
                ColumnType::Str => Builder::Str(StringBuilder::new()),
                ColumnType::StrList => Builder::StrList(
                    ListBuilder::new(StringBuilder::new()).with_field(Arc::new(schemas::arrow::argv_item())),
                ),
                ColumnType::U64List => Builder::U64List(
                    ListBuilder::new(UInt64Builder::new()).with_field(Arc::new(schemas::arrow::u64_list_item())),
                ),
            })
            .collect();
        BuilderWriter { kind, columns, builders, next: 0, mismatch: None }
    }

    /// Closes one record: every declared column must have been written once.
    pub fn end_row(&mut self) -> Result<(), ArrowError> {
        let written = std::mem::take(&mut self.next);
        let error = |index: usize, detail: String| {
            let name = self.columns.get(index).map_or("(past the end)", |c| c.name);
            ArrowError::InvalidArgumentError(format!(
                "{}: column {index} `{name}`: {detail} (the record's write_columns and schemas/src/columns.rs disagree)",
                self.kind
            ))
        };
        if let Some((index, ty)) = self.mismatch.take() {
            return Err(error(index, format!("written as {ty:?}")));
        }
        if written != self.columns.len() {
            return Err(error(written, format!("{written} columns written, {} declared", self.columns.len())));
        }
        Ok(())
    }

    /// The finished columns, in declaration order.
    pub fn finish(self) -> Vec<ArrayRef> {
        self.builders
            .into_iter()
            .map(|builder| match builder {
                Builder::U16(mut b) => Arc::new(b.finish()) as ArrayRef,
                Builder::U32(mut b) => Arc::new(b.finish()),
                Builder::U64(mut b) => Arc::new(b.finish()),
                Builder::I32(mut b) => Arc::new(b.finish()),
                Builder::I64(mut b) => Arc::new(b.finish()),
                Builder::Bool(mut b) => Arc::new(b.finish()),
                Builder::Str(mut b) => Arc::new(b.finish()),
                Builder::StrList(mut b) => Arc::new(b.finish()),
                Builder::U64List(mut b) => Arc::new(b.finish()),
            })
            .collect()
    }
}

macro_rules! append {
    ($self:ident, $variant:ident, $ty:ident, |$b:ident| $append:expr) => {{
        match $self.builders.get_mut($self.next) {
            Some(Builder::$variant($b)) => $append,
            _ => {
                $self.mismatch.get_or_insert(($self.next, ColumnType::$ty));
            }
        }
        $self.next += 1;
    }};
}

impl ColumnWriter for BuilderWriter {
    fn u16(&mut self, value: u16) {
        append!(self, U16, U16, |b| b.append_value(value))
    }
    fn u32(&mut self, value: u32) {
        append!(self, U32, U32, |b| b.append_value(value))
    }
    fn u64(&mut self, value: u64) {
        append!(self, U64, U64, |b| b.append_value(value))
    }
    fn i32(&mut self, value: i32) {
        append!(self, I32, I32, |b| b.append_value(value))
    }
    fn i64(&mut self, value: i64) {
        append!(self, I64, I64, |b| b.append_value(value))
    }
    fn bool(&mut self, value: bool) {
        append!(self, Bool, Bool, |b| b.append_value(value))
    }
    fn str(&mut self, value: &str) {
        append!(self, Str, Str, |b| b.append_value(value))
    }
    fn str_list(&mut self, values: &mut dyn Iterator<Item = &str>) {
        append!(self, StrList, StrList, |b| {
            for value in values {
                b.values().append_value(value);
            }
            b.append(true);
        })
    }
    fn u64_list(&mut self, values: &[u64]) {
        append!(self, U64List, U64List, |b| {
            b.values().append_slice(values);
            b.append(true);
        })
    }
}

fn u64s(values: impl Iterator<Item = u64>) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values(values))
}

fn u32s(values: impl Iterator<Item = u32>) -> ArrayRef {
    Arc::new(UInt32Array::from_iter_values(values))
}

fn f64s(values: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(values))
}

fn strs<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn bools(values: impl Iterator<Item = bool>) -> ArrayRef {
    Arc::new(values.map(Some).collect::<BooleanArray>())
}

/// One list item per argument, in the schema's non-null item field.
fn argvs<'a>(values: impl Iterator<Item = &'a pipeline::event::Argv>) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(schemas::arrow::argv_item()));
    for argv in values {
        for arg in argv {
            builder.values().append_value(arg);
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

fn lists<'a>(values: impl Iterator<Item = &'a [u64]>) -> ArrayRef {
    let mut builder = ListBuilder::new(UInt64Builder::new());
    for bins in values {
        builder.values().append_slice(bins);
        builder.append(true);
    }
    Arc::new(builder.finish())
}
