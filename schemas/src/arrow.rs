//! The Arrow schema of each event kind, for the spool sink, the replay source
//! and the query command.
//!
//! One schema per kind, named exactly like the engine's `EventKind`
//! (`process_exec`, …) plus `sketch`. Every schema starts with `event_id` and
//! `ts_ns`; the rest is the kind's record flattened: a process key becomes
//! `pid` + `start_time_ns` (for a fork, the parent's), a scan becomes
//! `scan_id` + `scan_size`. Every column is non-null, because every field of
//! every record is always present (an optional field is two columns: the
//! value, 0 when absent, and a `has_` flag). An exec's `argv` is a
//! `List<Utf8>` with non-null items, one item per argument, exactly as the
//! process received them. Strings are plain `Utf8`: dictionary
//! encoding would save little once IPC buffers are zstd-compressed and would
//! make every writer and reader handle two string layouts.
//!
//! Schemas are built once, on first use, and shared as [`SchemaRef`]s; a
//! caller never builds one on a hot path.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::columns::{carries_context, security_kind, Column, ColumnType, EXEC_ATTRIBUTES, PROCESS_CONTEXT};

/// Version of the Arrow layout of every kind, stored in each schema's
/// metadata under [`SCHEMA_VERSION_KEY`]. Columns are only ever appended;
/// removing, renaming or retyping a column bumps it. Version 2:
/// `process_exec.cmdline` became `argv` (a list), with `gid`, `cgroup_id`
/// and `argv_truncated`; `process_exit.cpu_ns`; `net_connect.result` and
/// `has_result`; the `process_ephemeral` kind. Version 3: the security
/// kinds of [`SECURITY_KINDS`](crate::columns::SECURITY_KINDS)
/// (`file_change` … `net_send`), and on `process_exec` `has_attributes`
/// followed by the [`EXEC_ATTRIBUTES`] columns, appended: a version-2 file
/// holds a prefix of every kind's version-3 columns, so it still replays
/// (`spool::verify_file_or_older`; its execs have no attributes). Version
/// 4: every kind that [`carries_context`] ends
/// with `has_context` and the [`PROCESS_CONTEXT`] columns (`ctx_…`), and
/// the kinds `process_snapshot` and `exe_hash`; a version-3 file is again
/// a prefix (its events come back without a context). Version 5: the kind
/// `detection` (issue #15), whose `event_ids` is the first declared
/// `List<UInt64>` column ([`u64_list_type`]); no column of an existing
/// kind changed, so a version-4 file of any kind is read as before.
/// Version 6: the kind `net_policy` (issue #17: a network-policy decision);
/// again no existing column changed.
pub const ARROW_SCHEMA_VERSION: &str = "6";

/// The column that starts the process-context group of a kind.
pub const HAS_CONTEXT: &str = "has_context";

/// Schema metadata key holding the event kind's name.
pub const KIND_KEY: &str = "hostflow.kind";

/// Schema metadata key holding [`ARROW_SCHEMA_VERSION`].
pub const SCHEMA_VERSION_KEY: &str = "hostflow.arrow_schema_version";

/// Every kind that has a schema: the engine's `EventKind` names.
pub const KINDS: &[&str] = &[
    "process_exec",
    "process_exit",
    "process_fork",
    "net_connect",
    "file_open",
    "process_sample",
    "process_aggregate",
    "agent_diag",
    "sketch",
    "process_ephemeral",
    "file_change",
    "credential_change",
    "namespace_change",
    "ptrace_attach",
    "module_load",
    "bpf_program_load",
    "net_listen",
    "net_accept",
    "net_send",
    "process_snapshot",
    "exe_hash",
    "detection",
    "net_policy",
];

/// The Arrow schema of one event kind; `None` for a name not in [`KINDS`].
///
/// Cheap: clones an `Arc` of a schema built once per process.
pub fn schema_for(kind: &str) -> Option<SchemaRef> {
    SCHEMAS.iter().find(|(name, _)| *name == kind).map(|(_, schema)| Arc::clone(schema))
}

/// Every schema, in [`KINDS`] order, built on first use.
static SCHEMAS: LazyLock<Vec<(&'static str, SchemaRef)>> =
    LazyLock::new(|| KINDS.iter().map(|&kind| (kind, Arc::new(build(kind)))).collect());

fn build(kind: &'static str) -> Schema {
    let mut fields = vec![u64_field("event_id"), u64_field("ts_ns")];
    fields.extend(columns(kind));
    if carries_context(kind) {
        // Whether an enrich transform attached a context; when false the
        // `ctx_` columns hold `ProcessContext::unknown()`'s values.
        fields.push(Field::new(HAS_CONTEXT, DataType::Boolean, false));
        fields.extend(declared(PROCESS_CONTEXT.columns));
    }
    let metadata = HashMap::from([
        (KIND_KEY.to_owned(), kind.to_owned()),
        (SCHEMA_VERSION_KEY.to_owned(), ARROW_SCHEMA_VERSION.to_owned()),
    ]);
    Schema::new_with_metadata(fields, metadata)
}

/// The columns after `event_id` and `ts_ns`.
fn columns(kind: &str) -> Vec<Field> {
    use DataType::{Boolean, Float64, Int32, UInt16, UInt32, UInt64, Utf8};
    let col = |name: &str, data_type: DataType| Field::new(name, data_type, false);
    let process_key = || [col("pid", UInt32), col("start_time_ns", UInt64)];
    let scan = || [col("scan_id", UInt64), col("scan_size", UInt32)];
    match kind {
        "process_exec" => chain([
            &process_key()[..],
            &[
                col("ppid", UInt32),
                col("uid", UInt32),
                col("gid", UInt32),
                col("cgroup_id", UInt64),
                col("comm", Utf8),
                col("exe", Utf8),
                // One item per argument, argv[0] first; no item is null.
                col("argv", argv_type()),
                col("argv_truncated", Boolean),
                // Whether the source saw the exec's kernel attributes; when
                // false the attribute columns hold `ExecAttributes`' defaults.
                col("has_attributes", Boolean),
            ],
            &declared(EXEC_ATTRIBUTES.columns),
        ]),
        "process_exit" => chain([&process_key()[..], &[col("exit_code", Int32), col("cpu_ns", UInt64)]]),
        "process_fork" => chain([&process_key()[..], &[col("child_pid", UInt32), col("child_start_time_ns", UInt64)]]),
        "net_connect" => chain([
            &process_key()[..],
            // "tcp" / "udp", as `Protocol::as_str`; the address in text form.
            &[col("protocol", Utf8), col("dst_addr", Utf8), col("dst_port", UInt16)],
            // connect(2)'s return value (0 or a negative errno), 0 when the
            // source did not observe it, which `has_result` false says.
            &[col("result", Int32), col("has_result", Boolean)],
        ]),
        "file_open" => chain([&process_key()[..], &[col("path", Utf8), col("flags", UInt32)]]),
        "process_sample" => chain([
            &process_key()[..],
            &scan()[..],
            &[
                col("ppid", UInt32),
                col("uid", UInt32),
                col("name", Utf8),
                col("cmdline", Utf8),
                // The scheduler state letter as a one-character string.
                col("state", Utf8),
                col("threads", UInt32),
                col("cpu_ticks", UInt64),
                col("cpu_percent", Float64),
                col("rss_bytes", UInt64),
                col("top_n_rank", UInt32),
            ],
        ]),
        "process_aggregate" => chain([
            &scan()[..],
            &[
                col("name", Utf8),
                col("count", UInt32),
                col("cpu_ticks_sum", UInt64),
                col("cpu_percent_sum", Float64),
                col("rss_bytes_sum", UInt64),
                col("rss_bytes_max", UInt64),
            ],
        ]),
        "agent_diag" => vec![col("module", Utf8), col("event_type", Utf8), col("reason", Utf8)],
        "process_ephemeral" => vec![
            col("window_start_ns", UInt64),
            col("window_end_ns", UInt64),
            col("name", Utf8),
            col("count", UInt64),
            col("cpu_ns", UInt64),
        ],
        "sketch" => vec![
            col("metric_name", Utf8),
            // A process display name, or "*" for host-wide.
            col("key", Utf8),
            col("window_start_ns", UInt64),
            col("window_end_ns", UInt64),
            col("gamma", Float64),
            col("count", UInt64),
            col("sum", Float64),
            col("min", Float64),
            col("max", Float64),
            // Exact count of values in the zero bucket (|v| below the
            // smallest indexable value).
            col("zero_count", UInt64),
            // Index of the first entry of `bins`; bins[i] counts bin
            // bins_offset + i of the positive store, in the mapping `gamma`
            // names (the same convention as the protobuf `SketchEnvelope`).
            col("bins_offset", Int32),
            // The list's item field is Arrow's default (`item`, nullable), so
            // a plain `ListBuilder<UInt64Builder>` matches; no item is null.
            col("bins", DataType::List(Arc::new(Field::new_list_field(UInt64, true)))),
            // The negative store, the same way (negative values are binned by
            // |v|), so a sketch round-trips exactly.
            col("neg_bins_offset", Int32),
            col("neg_bins", DataType::List(Arc::new(Field::new_list_field(UInt64, true)))),
        ],
        other => security_kind(other).map(|kind| declared(kind.columns)).unwrap_or_default(),
    }
}

/// Arrow fields of declared columns (schemas/src/columns.rs), in order.
pub fn declared(columns: &[Column]) -> Vec<Field> {
    columns.iter().map(|column| Field::new(column.name, arrow_type(column.ty), false)).collect()
}

/// The Arrow type of a declared column type.
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::U16 => DataType::UInt16,
        ColumnType::U32 => DataType::UInt32,
        ColumnType::U64 => DataType::UInt64,
        ColumnType::I32 => DataType::Int32,
        ColumnType::I64 => DataType::Int64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Str => DataType::Utf8,
        ColumnType::StrList => argv_type(),
        ColumnType::U64List => u64_list_type(),
    }
}

/// `argv`'s type: a list of non-null strings (the item field is named
/// `item`, as arrow's builders name it; a writer builds it with
/// `ListBuilder::with_field(argv_item())`).
pub fn argv_type() -> DataType {
    DataType::List(Arc::new(argv_item()))
}

/// The item field of [`argv_type`].
pub fn argv_item() -> Field {
    Field::new_list_field(DataType::Utf8, false)
}

/// A declared list of numbers (`ColumnType::U64List`): non-null items,
/// like [`argv_type`] (a sketch's `bins` predate the declaration and keep
/// arrow's default nullable item). A writer builds it with
/// `ListBuilder::with_field(u64_list_item())`.
pub fn u64_list_type() -> DataType {
    DataType::List(Arc::new(u64_list_item()))
}

/// The item field of [`u64_list_type`].
pub fn u64_list_item() -> Field {
    Field::new_list_field(DataType::UInt64, false)
}

fn u64_field(name: &str) -> Field {
    Field::new(name, DataType::UInt64, false)
}

fn chain<const N: usize>(parts: [&[Field]; N]) -> Vec<Field> {
    parts.concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::SECURITY_KINDS;

    /// Column names and types of one kind, as `name:Type` strings; a kind
    /// that carries a context ends with the context group.
    fn check(kind: &str, expected: &[&str]) {
        let schema = schema_for(kind).unwrap_or_else(|| panic!("no schema for {kind}"));
        let actual: Vec<String> = schema.fields().iter().map(|f| format!("{}:{}", f.name(), f.data_type())).collect();
        let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        if carries_context(kind) {
            expected.extend(context_group());
        }
        assert_eq!(actual, expected, "{kind}");
    }

    /// `has_context` and the declared context columns.
    fn context_group() -> Vec<String> {
        std::iter::once("has_context:Boolean".to_owned())
            .chain(PROCESS_CONTEXT.columns.iter().map(|c| format!("{}:{}", c.name, arrow_type(c.ty))))
            .collect()
    }

    #[test]
    fn every_kind_has_a_schema_starting_with_event_id_and_ts_ns() {
        for &kind in KINDS {
            let schema = schema_for(kind).unwrap_or_else(|| panic!("no schema for {kind}"));
            assert!(schema.fields().len() > 2, "{kind} has columns of its own");
            for (index, name) in ["event_id", "ts_ns"].into_iter().enumerate() {
                let field = schema.field(index);
                assert_eq!(
                    (field.name().as_str(), field.data_type(), field.is_nullable()),
                    (name, &DataType::UInt64, false)
                );
            }
            assert_eq!(schema.metadata().get(KIND_KEY).map(String::as_str), Some(kind));
            assert_eq!(schema.metadata().get(SCHEMA_VERSION_KEY).map(String::as_str), Some(ARROW_SCHEMA_VERSION));
            let mut names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), schema.fields().len(), "{kind}: column names are unique");
            assert!(schema.fields().iter().all(|f| !f.is_nullable()), "{kind}: every column is non-null");
        }
    }

    #[test]
    fn security_kinds_are_their_declaration() {
        for declared in SECURITY_KINDS {
            assert!(KINDS.contains(&declared.kind), "{} in KINDS", declared.kind);
            let schema = schema_for(declared.kind).expect("schema");
            let columns: Vec<(&str, &DataType)> = schema
                .fields()
                .iter()
                .skip(2)
                .take(declared.columns.len())
                .map(|f| (f.name().as_str(), f.data_type()))
                .collect();
            let rest: Vec<String> = schema
                .fields()
                .iter()
                .skip(2 + declared.columns.len())
                .map(|f| format!("{}:{}", f.name(), f.data_type()))
                .collect();
            assert_eq!(rest, context_group(), "{} ends with the context group", declared.kind);
            let expected: Vec<(&str, DataType)> = declared.columns.iter().map(|c| (c.name, arrow_type(c.ty))).collect();
            let expected: Vec<(&str, &DataType)> = expected.iter().map(|(n, t)| (*n, t)).collect();
            assert_eq!(columns, expected, "{}", declared.kind);
        }
        assert_eq!(arrow_type(ColumnType::StrList), argv_type(), "a list column is typed like argv");
        assert_eq!(ARROW_SCHEMA_VERSION, "6", "the net_policy kind is layout 6");
        let detection = schema_for("detection").expect("detection schema");
        let event_ids = detection.field_with_name("event_ids").expect("event_ids");
        let DataType::List(item) = event_ids.data_type() else { panic!("a list") };
        assert_eq!((item.data_type(), item.is_nullable()), (&DataType::UInt64, false), "event_ids items are non-null");
    }

    #[test]
    fn kinds_are_unique_and_unknown_kinds_have_no_schema() {
        let mut kinds = KINDS.to_vec();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), KINDS.len());
        assert!(schema_for("process_exce").is_none());
        assert!(schema_for("").is_none());
    }

    #[test]
    fn schemas_are_built_once() {
        let first = schema_for("process_sample").expect("schema");
        let second = schema_for("process_sample").expect("schema");
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn columns_flatten_the_engine_records() {
        let head = ["event_id:UInt64", "ts_ns:UInt64"];
        let with_head = |rest: &[&'static str]| -> Vec<&'static str> { head.iter().chain(rest).copied().collect() };
        let exec_attributes: Vec<String> = ["has_attributes:Boolean".to_owned()]
            .into_iter()
            .chain(EXEC_ATTRIBUTES.columns.iter().map(|c| format!("{}:{}", c.name, arrow_type(c.ty))))
            .collect();
        let exec_attributes: Vec<&str> = exec_attributes.iter().map(String::as_str).collect();
        check(
            "process_exec",
            &[
                &with_head(&[
                    "pid:UInt32",
                    "start_time_ns:UInt64",
                    "ppid:UInt32",
                    "uid:UInt32",
                    "gid:UInt32",
                    "cgroup_id:UInt64",
                    "comm:Utf8",
                    "exe:Utf8",
                    "argv:List(non-null Utf8)",
                    "argv_truncated:Boolean",
                ])[..],
                &exec_attributes,
            ]
            .concat(),
        );
        check("process_exit", &with_head(&["pid:UInt32", "start_time_ns:UInt64", "exit_code:Int32", "cpu_ns:UInt64"]));
        check(
            "process_fork",
            &with_head(&["pid:UInt32", "start_time_ns:UInt64", "child_pid:UInt32", "child_start_time_ns:UInt64"]),
        );
        check(
            "net_connect",
            &with_head(&[
                "pid:UInt32",
                "start_time_ns:UInt64",
                "protocol:Utf8",
                "dst_addr:Utf8",
                "dst_port:UInt16",
                "result:Int32",
                "has_result:Boolean",
            ]),
        );
        check("file_open", &with_head(&["pid:UInt32", "start_time_ns:UInt64", "path:Utf8", "flags:UInt32"]));
        check(
            "process_sample",
            &with_head(&[
                "pid:UInt32",
                "start_time_ns:UInt64",
                "scan_id:UInt64",
                "scan_size:UInt32",
                "ppid:UInt32",
                "uid:UInt32",
                "name:Utf8",
                "cmdline:Utf8",
                "state:Utf8",
                "threads:UInt32",
                "cpu_ticks:UInt64",
                "cpu_percent:Float64",
                "rss_bytes:UInt64",
                "top_n_rank:UInt32",
            ]),
        );
        check(
            "process_aggregate",
            &with_head(&[
                "scan_id:UInt64",
                "scan_size:UInt32",
                "name:Utf8",
                "count:UInt32",
                "cpu_ticks_sum:UInt64",
                "cpu_percent_sum:Float64",
                "rss_bytes_sum:UInt64",
                "rss_bytes_max:UInt64",
            ]),
        );
        check("agent_diag", &with_head(&["module:Utf8", "event_type:Utf8", "reason:Utf8"]));
        check(
            "process_ephemeral",
            &with_head(&[
                "window_start_ns:UInt64",
                "window_end_ns:UInt64",
                "name:Utf8",
                "count:UInt64",
                "cpu_ns:UInt64",
            ]),
        );
        let argv = schema_for("process_exec").expect("exec schema");
        let DataType::List(item) = argv.field_with_name("argv").expect("argv").data_type() else { panic!("a list") };
        assert_eq!((item.data_type(), item.is_nullable()), (&DataType::Utf8, false), "argv items are non-null");
        let sketch = schema_for("sketch").expect("sketch schema");
        let names: Vec<&str> = sketch.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "event_id",
                "ts_ns",
                "metric_name",
                "key",
                "window_start_ns",
                "window_end_ns",
                "gamma",
                "count",
                "sum",
                "min",
                "max",
                "zero_count",
                "bins_offset",
                "bins",
                "neg_bins_offset",
                "neg_bins"
            ]
        );
        assert_eq!(sketch.field_with_name("zero_count").expect("zero_count").data_type(), &DataType::UInt64);
        let neg_bins = sketch.field_with_name("neg_bins").expect("neg_bins column");
        let DataType::List(neg_item) = neg_bins.data_type() else { panic!("neg_bins is a list") };
        assert_eq!(neg_item.data_type(), &DataType::UInt64);
        assert_eq!(sketch.field_with_name("neg_bins_offset").expect("neg_bins_offset").data_type(), &DataType::Int32);
        let bins = sketch.field_with_name("bins").expect("bins column");
        let DataType::List(item) = bins.data_type() else { panic!("bins is a list: {:?}", bins.data_type()) };
        assert_eq!(item.data_type(), &DataType::UInt64);
        assert_eq!(sketch.field_with_name("bins_offset").expect("bins_offset").data_type(), &DataType::Int32);
    }
}
