//! The column declaration of the security kinds and of an exec's kernel
//! attributes: names, types and protobuf tags, in the order the engine's
//! records write them (`pipeline/src/event/security.rs`, positional).
//!
//! Every format is derived from this table: the Arrow schema
//! ([`crate::schema_for`]), NDJSON keys, and the fields of each kind's
//! protobuf message (`proto/security.proto`; a test checks that the
//! compiled messages have exactly these names, tags and types). Columns are
//! only ever appended; a column's tag is never reused.
//!
//! Conventions: every kind starts with the acting process's `pid` and
//! `start_time_ns` (carried by `SecurityEvent`'s own fields 4 and 5 on the
//! protobuf wire, so their tag here is 0 = not in the detail message); an
//! address is text (`10.0.0.1`, `::1`); a small closed set is text
//! (`chmod`, `setuid`, `tcp`).

/// A column's value type. Arrow: `UInt16`…`Utf8`, `List<Utf8>`,
/// `List<UInt64>`; protobuf: `uint32` (u16 too), `uint64`, `int32`,
/// `int64`, `bool`, `string`, `repeated string`, `repeated uint64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// `UInt16`; protobuf `uint32`.
    U16,
    /// `UInt32`; `uint32`.
    U32,
    /// `UInt64`; `uint64`.
    U64,
    /// `Int32`; `int32`.
    I32,
    /// `Int64`; `int64`.
    I64,
    /// `Boolean`; `bool`.
    Bool,
    /// `Utf8`; `string`.
    Str,
    /// `List<Utf8>` with non-null items; `repeated string`.
    StrList,
    /// `List<UInt64>` with non-null items; `repeated uint64` (packed, as
    /// proto3 packs repeated scalars); NDJSON an array of numbers.
    U64List,
}

/// One column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// Arrow column, NDJSON key and protobuf field name.
    pub name: &'static str,
    /// Value type.
    pub ty: ColumnType,
    /// Field number in the kind's protobuf message; 0 = carried elsewhere.
    pub tag: u32,
}

/// One declared kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindColumns {
    /// The engine's `EventKind` name (and the Arrow table's).
    pub kind: &'static str,
    /// The protobuf message holding the columns (in `hostflow.v1`).
    pub message: &'static str,
    /// Its field number in `SecurityEvent`'s `detail` oneof.
    pub detail_tag: u32,
    /// In the order the engine's record writes them.
    pub columns: &'static [Column],
}

const fn c(name: &'static str, ty: ColumnType, tag: u32) -> Column {
    Column { name, ty, tag }
}

use ColumnType::{Bool, Str, StrList, U64List, I32, U16, U32, U64};

/// The acting process (on the protobuf wire: `SecurityEvent.pid` and
/// `start_time_ns`).
const PID: Column = c("pid", U32, 0);
const START: Column = c("start_time_ns", U64, 0);

/// The kernel attributes of an exec: appended to `process_exec`'s Arrow
/// columns after `has_attributes`, and `ProcessExec.attributes` (tag 22)
/// on the protobuf wire.
pub const EXEC_ATTRIBUTES: KindColumns = KindColumns {
    kind: "process_exec",
    message: "ExecAttributes",
    detail_tag: 10,
    columns: &[
        c("euid", U32, 1),
        c("suid", U32, 2),
        c("egid", U32, 3),
        c("sgid", U32, 4),
        c("cap_effective", U64, 5),
        c("cap_permitted", U64, 6),
        c("file_dev", U64, 7),
        c("file_inode", U64, 8),
        c("file_size", U64, 9),
        c("file_mtime_ns", U64, 10),
        c("file_mode", U32, 11),
        c("file_nlink", U32, 12),
        c("file_caps", Bool, 13),
        c("file_memfd", Bool, 14),
        c("file_overlay_upper", Bool, 15),
        c("stdin_type", Str, 16),
        c("stdin_peer_addr", Str, 17),
        c("stdin_peer_port", U16, 18),
        c("stdout_type", Str, 19),
        c("stdout_peer_addr", Str, 20),
        c("stdout_peer_port", U16, 21),
        c("stderr_type", Str, 22),
        c("stderr_peer_addr", Str, 23),
        c("stderr_peer_port", U16, 24),
        c("tty", Str, 25),
        c("loginuid", U32, 26),
        c("session_id", U32, 27),
        c("cwd", Str, 28),
        c("cwd_truncated", Bool, 29),
        c("env", StrList, 30),
        c("env_truncated", Bool, 31),
        c("user", Str, 32),
        c("cgroup_path", Str, 33),
        c("exe_sha256", Str, 34),
        c("exe_hash", Str, 35),
    ],
};

/// The process context enrichment attaches to every process-bearing kind
/// ([`carries_context`]): appended to each such kind's Arrow columns after
/// `has_context`, NDJSON keys after `"has_context":true`, and
/// `SecurityEvent.context` ([`PROCESS_CONTEXT_TAG`]) on the protobuf wire.
/// Prefixed `ctx_` so no name collides with a kind's own column. Ancestors
/// are three parallel lists, nearest first; a key is `pid:start_time_ns`.
pub const PROCESS_CONTEXT: KindColumns = KindColumns {
    kind: "process_context",
    message: "ProcessContext",
    detail_tag: 0,
    columns: &[
        c("ctx_exe", Str, 1),
        c("ctx_argv", StrList, 2),
        c("ctx_uid", U32, 3),
        c("ctx_user", Str, 4),
        c("ctx_euid", U32, 5),
        c("ctx_cwd", Str, 6),
        c("ctx_tty", Str, 7),
        c("ctx_loginuid", U32, 8),
        c("ctx_session_id", U32, 9),
        c("ctx_cgroup_path", Str, 10),
        c("ctx_container_runtime", Str, 11),
        c("ctx_container_id", Str, 12),
        c("ctx_pod_uid", Str, 13),
        c("ctx_exe_sha256", Str, 14),
        c("ctx_exe_hash", Str, 15),
        c("ctx_lineage", Str, 16),
        c("ctx_origin", Str, 17),
        c("ctx_ancestor_keys", StrList, 18),
        c("ctx_ancestor_exes", StrList, 19),
        c("ctx_ancestor_args", StrList, 20),
    ],
};

/// The field of `SecurityEvent` that holds [`PROCESS_CONTEXT`].
pub const PROCESS_CONTEXT_TAG: u32 = 34;

/// The process kinds whose columns are not declared here (they predate the
/// declaration) and that carry a process context.
const UNDECLARED_PROCESS_KINDS: [&str; 5] =
    ["process_exec", "process_exit", "process_fork", "net_connect", "file_open"];

/// Whether `kind` carries a process context: those five and every declared
/// kind (each starts with the acting process), as the engine's
/// `Event::context_slot` is `Some` for exactly these.
pub fn carries_context(kind: &str) -> bool {
    UNDECLARED_PROCESS_KINDS.contains(&kind) || security_kind(kind).is_some()
}

/// The protobuf field of `ProcessExec` that holds [`EXEC_ATTRIBUTES`].
pub const EXEC_ATTRIBUTES_TAG: u32 = 22;

const CREDENTIALS_OLD: [Column; 8] = [
    c("old_uid", U32, 2),
    c("old_euid", U32, 3),
    c("old_suid", U32, 4),
    c("old_gid", U32, 5),
    c("old_egid", U32, 6),
    c("old_sgid", U32, 7),
    c("old_cap_effective", U64, 8),
    c("old_cap_permitted", U64, 9),
];

const CREDENTIALS_NEW: [Column; 8] = [
    c("new_uid", U32, 10),
    c("new_euid", U32, 11),
    c("new_suid", U32, 12),
    c("new_gid", U32, 13),
    c("new_egid", U32, 14),
    c("new_sgid", U32, 15),
    c("new_cap_effective", U64, 16),
    c("new_cap_permitted", U64, 17),
];

const fn credential_columns() -> [Column; 20] {
    let mut out = [PID; 20];
    out[1] = START;
    out[2] = c("syscall", Str, 1);
    let mut i = 0;
    while i < 8 {
        out[3 + i] = CREDENTIALS_OLD[i];
        out[11 + i] = CREDENTIALS_NEW[i];
        i += 1;
    }
    out[19] = c("result", I32, 18);
    out
}

const CREDENTIAL_COLUMNS: [Column; 20] = credential_columns();

/// Every security kind, in the engine's `EventKind` order.
pub const SECURITY_KINDS: &[KindColumns] = &[
    KindColumns {
        kind: "file_change",
        message: "FileChange",
        detail_tag: 23,
        columns: &[
            PID,
            START,
            c("op", Str, 1),
            c("path", Str, 2),
            c("target", Str, 3),
            c("mode", U32, 4),
            c("result", I32, 5),
        ],
    },
    KindColumns {
        kind: "credential_change",
        message: "CredentialChange",
        detail_tag: 24,
        columns: &CREDENTIAL_COLUMNS,
    },
    KindColumns {
        kind: "namespace_change",
        message: "NamespaceChange",
        detail_tag: 25,
        columns: &[PID, START, c("syscall", Str, 1), c("flags", U64, 2), c("result", I32, 3)],
    },
    KindColumns {
        kind: "ptrace_attach",
        message: "PtraceAttach",
        detail_tag: 26,
        columns: &[
            PID,
            START,
            c("request", U64, 1),
            c("target_pid", U32, 2),
            c("target_start_time_ns", U64, 3),
            c("result", I32, 4),
        ],
    },
    KindColumns {
        kind: "module_load",
        message: "ModuleLoad",
        detail_tag: 27,
        columns: &[PID, START, c("syscall", Str, 1), c("path", Str, 2), c("params", Str, 3), c("result", I32, 4)],
    },
    KindColumns {
        kind: "bpf_program_load",
        message: "BpfProgramLoad",
        detail_tag: 28,
        columns: &[
            PID,
            START,
            c("prog_type", U32, 1),
            c("prog_name", Str, 2),
            c("insn_count", U32, 3),
            c("result", I32, 4),
        ],
    },
    KindColumns {
        kind: "net_listen",
        message: "NetListen",
        detail_tag: 29,
        columns: &[
            PID,
            START,
            c("protocol", Str, 1),
            c("addr", Str, 2),
            c("port", U16, 3),
            c("backlog", I32, 4),
            c("result", I32, 5),
        ],
    },
    KindColumns {
        kind: "net_accept",
        message: "NetAccept",
        detail_tag: 30,
        columns: &[
            PID,
            START,
            c("protocol", Str, 1),
            c("local_addr", Str, 2),
            c("local_port", U16, 3),
            c("peer_addr", Str, 4),
            c("peer_port", U16, 5),
        ],
    },
    KindColumns {
        kind: "net_send",
        message: "NetSend",
        detail_tag: 31,
        columns: &[PID, START, c("protocol", Str, 1), c("dst_addr", Str, 2), c("dst_port", U16, 3), c("bytes", U32, 4)],
    },
    KindColumns {
        kind: "process_snapshot",
        message: "ProcessSnapshot",
        detail_tag: 32,
        columns: &[
            PID,
            START,
            c("parent_pid", U32, 1),
            c("parent_start_time_ns", U64, 2),
            c("uid", U32, 3),
            c("euid", U32, 4),
            c("gid", U32, 5),
            c("user", Str, 6),
            c("comm", Str, 7),
            c("exe", Str, 8),
            c("argv", StrList, 9),
            c("argv_truncated", Bool, 10),
            c("cwd", Str, 11),
            c("tty", Str, 12),
            c("loginuid", U32, 13),
            c("session_id", U32, 14),
            c("cgroup_path", Str, 15),
            c("exe_sha256", Str, 16),
            c("exe_hash", Str, 17),
        ],
    },
    KindColumns {
        kind: "exe_hash",
        message: "ExeHash",
        detail_tag: 33,
        columns: &[
            PID,
            START,
            c("exe", Str, 1),
            c("dev", U64, 2),
            c("inode", U64, 3),
            c("sha256", Str, 4),
            c("state", Str, 5),
        ],
    },
    KindColumns {
        kind: "detection",
        message: "DetectionEvent",
        detail_tag: 35,
        columns: &[
            PID,
            START,
            c("rule_id", Str, 1),
            c("title", Str, 2),
            c("layer", Str, 3),
            c("severity", Str, 4),
            c("confidence", Str, 5),
            c("attack", StrList, 6),
            c("event_ids", U64List, 7),
            c("event_kind", Str, 8),
            c("summary", Str, 9),
            c("ruleset", Str, 10),
        ],
    },
    KindColumns {
        kind: "net_policy",
        message: "NetPolicyEvent",
        detail_tag: 36,
        columns: &[
            PID,
            START,
            c("rule_id", Str, 1),
            c("rule_key", U32, 2),
            c("action", Str, 3),
            c("dry_run", Bool, 4),
            c("protocol", Str, 5),
            c("dst_addr", Str, 6),
            c("dst_port", U16, 7),
            c("cgroup_id", U64, 8),
            c("generation", U32, 9),
            c("policy_digest", Str, 10),
        ],
    },
];

/// The declaration of a security kind, by its name.
pub fn security_kind(kind: &str) -> Option<&'static KindColumns> {
    SECURITY_KINDS.iter().find(|declared| declared.kind == kind)
}

/// The protobuf type of a declared column type, as `.proto` spells it
/// (`uint32`, `repeated string`, …).
pub fn proto_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::U16 | ColumnType::U32 => "uint32",
        ColumnType::U64 => "uint64",
        ColumnType::I32 => "int32",
        ColumnType::I64 => "int64",
        ColumnType::Bool => "bool",
        ColumnType::Str => "string",
        ColumnType::StrList => "repeated string",
        ColumnType::U64List => "repeated uint64",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

    /// Every message of `hostflow.v1`, from the compiled descriptor set.
    fn messages() -> Vec<DescriptorProto> {
        let set = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).expect("build.rs wrote a descriptor set");
        set.file.into_iter().filter(|f| f.package() == "hostflow.v1").flat_map(|f| f.message_type).collect()
    }

    /// A field as (number, name, type), the type spelled like [`proto_type`]
    /// or as a message's full name.
    fn render(field: &FieldDescriptorProto) -> (i32, String, String) {
        let base = match field.r#type() {
            Type::Message | Type::Enum => field.type_name().trim_start_matches('.').to_owned(),
            scalar => scalar.as_str_name().trim_start_matches("TYPE_").to_lowercase(),
        };
        let ty = match field.label() {
            Label::Repeated => format!("repeated {base}"),
            _ => base,
        };
        (field.number(), field.name().to_owned(), ty)
    }

    /// The .proto and the declaration cannot drift: every declared message
    /// has exactly the declared fields (name, number, type) and nothing
    /// else, and sits at its declared tag in `SecurityEvent.detail`
    /// (`ExecAttributes` at `ProcessExec.attributes`).
    #[test]
    fn the_compiled_messages_are_the_declaration() {
        let messages = messages();
        let message = |name: &str| {
            messages.iter().find(|m| m.name() == name).unwrap_or_else(|| panic!("no message {name} in security.proto"))
        };
        for declared in SECURITY_KINDS.iter().chain([&EXEC_ATTRIBUTES, &PROCESS_CONTEXT]) {
            let mut compiled: Vec<_> = message(declared.message).field.iter().map(render).collect();
            compiled.sort();
            let mut expected: Vec<_> = declared
                .columns
                .iter()
                .filter(|c| c.tag != 0)
                .map(|c| (c.tag as i32, c.name.to_owned(), proto_type(c.ty).to_owned()))
                .collect();
            expected.sort();
            assert_eq!(compiled, expected, "message {} vs its declaration", declared.message);
        }
        let envelope = message("SecurityEvent");
        let detail = envelope.oneof_decl.iter().position(|o| o.name() == "detail").expect("oneof detail");
        for declared in SECURITY_KINDS {
            let field = envelope
                .field
                .iter()
                .find(|f| f.number() == declared.detail_tag as i32)
                .unwrap_or_else(|| panic!("SecurityEvent has no field {}", declared.detail_tag));
            assert_eq!(render(field).2, format!("hostflow.v1.{}", declared.message), "detail {}", declared.kind);
            assert_eq!(field.oneof_index, Some(detail as i32), "{} is in oneof detail", declared.kind);
        }
        let exec = message("ProcessExec");
        let attributes = exec.field.iter().find(|f| f.number() == EXEC_ATTRIBUTES_TAG as i32).expect("attributes");
        assert_eq!(render(attributes), (22, "attributes".to_owned(), "hostflow.v1.ExecAttributes".to_owned()));
        let exec_detail = envelope.field.iter().find(|f| f.number() == EXEC_ATTRIBUTES.detail_tag as i32);
        assert_eq!(exec_detail.map(|f| render(f).2).as_deref(), Some("hostflow.v1.ProcessExec"));
        let context = envelope.field.iter().find(|f| f.number() == PROCESS_CONTEXT_TAG as i32).expect("context");
        assert_eq!(render(context), (34, "context".to_owned(), "hostflow.v1.ProcessContext".to_owned()));
        assert_eq!(context.oneof_index, None, "context is beside the detail, not in it");
    }

    #[test]
    fn names_and_tags_are_unique_per_kind_and_keys_come_first() {
        for declared in SECURITY_KINDS.iter().chain([&EXEC_ATTRIBUTES, &PROCESS_CONTEXT]) {
            let mut names: Vec<_> = declared.columns.iter().map(|c| c.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), declared.columns.len(), "{}: duplicate name", declared.kind);
            let mut tags: Vec<_> = declared.columns.iter().map(|c| c.tag).filter(|&t| t != 0).collect();
            tags.sort_unstable();
            tags.dedup();
            let carried = declared.columns.iter().filter(|c| c.tag == 0).count();
            assert_eq!(tags.len() + carried, declared.columns.len(), "{}: duplicate tag", declared.kind);
        }
        for declared in SECURITY_KINDS {
            assert_eq!(&declared.columns[..2], &[PID, START], "{}", declared.kind);
        }
        let mut detail_tags: Vec<_> = SECURITY_KINDS.iter().map(|d| d.detail_tag).collect();
        detail_tags.dedup();
        assert_eq!(detail_tags.len(), SECURITY_KINDS.len());
    }
}
