//! The frozen-tag rule as a test: tags 1–19 of every message in the compiled
//! `FileDescriptorSet` must equal the table below, and every released enum
//! value must still be there unchanged, so changing the meaning, type or
//! name of a frozen tag fails the build's tests.
//!
//! The table is the contract as released. Never edit an existing row to make
//! the test pass: add new fields at tags ≥ 20 (they are not checked here),
//! mark removed ones `reserved`, and bump the envelope's version. A new
//! message or enum gets its own rows once, when it is added.

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

use crate::FILE_DESCRIPTOR_SET;

/// Highest frozen tag.
const FROZEN_MAX: i32 = 19;

/// One released field: (tag, name, type).
type FrozenField = (i32, &'static str, &'static str);

/// Message → its fields with tags ≤ 19 as (tag, name, type). The type is the
/// scalar's proto name, a message or enum's full name, `repeated T`,
/// `map<K, V>`, with ` in oneof NAME` appended for oneof members.
#[rustfmt::skip]
const FROZEN_FIELDS: &[(&str, &[FrozenField])] = &[
    ("hostflow.v1.DDSketch", &[
        (1, "mapping", "hostflow.v1.IndexMapping"),
        (2, "positiveValues", "hostflow.v1.Store"),
        (3, "negativeValues", "hostflow.v1.Store"),
        (4, "zeroCount", "double"),
    ]),
    ("hostflow.v1.IndexMapping", &[
        (1, "gamma", "double"),
        (2, "indexOffset", "double"),
        (3, "interpolation", "hostflow.v1.IndexMapping.Interpolation"),
    ]),
    ("hostflow.v1.Store", &[
        (1, "binCounts", "map<sint32, double>"),
        (2, "contiguousBinCounts", "repeated double"),
        (3, "contiguousBinIndexOffset", "sint32"),
    ]),
    ("hostflow.v1.ProcessEnvelope", &[
        (1, "entity_guid", "string"),
        (2, "schema_version", "string"),
        (3, "ts_ns", "uint64"),
        (4, "host", "string"),
        (5, "top_n_batch", "hostflow.v1.TopNBatch in oneof payload"),
    ]),
    ("hostflow.v1.TopNBatch", &[
        (1, "scan_id", "uint64"),
        (2, "scan_size", "uint32"),
        (3, "n", "uint32"),
        (4, "capture_ratio", "double"),
        (5, "top_n", "repeated hostflow.v1.ProcessSample"),
        (6, "tail", "repeated hostflow.v1.ProcessAggregateSample"),
    ]),
    ("hostflow.v1.ProcessSample", &[
        (1, "event_id", "uint64"),
        (2, "ts_ns", "uint64"),
        (3, "pid", "uint32"),
        (4, "start_time_ns", "uint64"),
        (5, "ppid", "uint32"),
        (6, "uid", "uint32"),
        (7, "name", "string"),
        (8, "cmdline", "string"),
        (9, "state", "string"),
        (10, "threads", "uint32"),
        (11, "cpu_ticks", "uint64"),
        (12, "cpu_percent", "double"),
        (13, "rss_bytes", "uint64"),
        (14, "top_n_rank", "uint32"),
    ]),
    ("hostflow.v1.ProcessAggregateSample", &[
        (1, "name", "string"),
        (2, "count", "uint32"),
        (3, "cpu_ticks_sum", "uint64"),
        (4, "cpu_percent_sum", "double"),
        (5, "rss_bytes_sum", "uint64"),
        (6, "rss_bytes_max", "uint64"),
        (7, "scan_id", "uint64"),
        (8, "ts_ns", "uint64"),
        (9, "event_id", "uint64"),
    ]),
    ("hostflow.v1.EphemeralBatch", &[
        (1, "window_start_ns", "uint64"),
        (2, "window_end_ns", "uint64"),
        (3, "rows", "repeated hostflow.v1.ProcessEphemeralSummary"),
    ]),
    ("hostflow.v1.ProcessEphemeralSummary", &[
        (1, "name", "string"),
        (2, "count", "uint64"),
        (3, "cpu_ns", "uint64"),
        (4, "event_id", "uint64"),
    ]),
    ("hostflow.v1.SketchEnvelope", &[
        (1, "metric_name", "string"),
        (2, "gamma", "double"),
        (3, "sketch_version", "uint32"),
        (4, "histogram", "hostflow.v1.DDSketch"),
        (5, "key", "string"),
        (6, "entity_guid", "string"),
        (7, "window_start_ns", "uint64"),
        (8, "window_end_ns", "uint64"),
        (9, "count", "uint64"),
        (10, "sum", "double"),
        (11, "min", "double"),
        (12, "max", "double"),
    ]),
    ("hostflow.v1.AgentDiagEvent", &[
        (1, "module", "string"),
        (2, "event_type", "string"),
        (3, "reason", "string"),
        (4, "ts_ns", "uint64"),
        (5, "entity_guid", "string"),
        (6, "event_id", "uint64"),
    ]),
    ("hostflow.v1.SecurityEvent", &[
        (1, "event_id", "uint64"),
        (2, "ts_ns", "uint64"),
        (3, "entity_guid", "string"),
        (4, "pid", "uint32"),
        (5, "start_time_ns", "uint64"),
        (6, "ppid", "uint32"),
        (7, "uid", "uint32"),
        (8, "comm", "string"),
        (9, "exe", "string"),
        (10, "exec", "hostflow.v1.ProcessExec in oneof detail"),
        (11, "exit", "hostflow.v1.ProcessExit in oneof detail"),
        (12, "fork", "hostflow.v1.ProcessFork in oneof detail"),
        (13, "net_connect", "hostflow.v1.NetConnect in oneof detail"),
        (14, "file_open", "hostflow.v1.FileOpen in oneof detail"),
    ]),
    ("hostflow.v1.ProcessExec", &[(1, "exe", "string"), (2, "cmdline", "string")]),
    ("hostflow.v1.ProcessExit", &[(1, "exit_code", "int32")]),
    ("hostflow.v1.ProcessFork", &[(1, "child_pid", "uint32"), (2, "child_start_time_ns", "uint64")]),
    ("hostflow.v1.NetConnect", &[
        (1, "protocol", "hostflow.v1.Protocol"),
        (2, "dst_addr", "string"),
        (3, "dst_port", "uint32"),
    ]),
    ("hostflow.v1.FileOpen", &[(1, "path", "string"), (2, "flags", "uint32")]),
    ("hostflow.v1.ExecAttributes", &[
        (1, "euid", "uint32"),
        (2, "suid", "uint32"),
        (3, "egid", "uint32"),
        (4, "sgid", "uint32"),
        (5, "cap_effective", "uint64"),
        (6, "cap_permitted", "uint64"),
        (7, "file_dev", "uint64"),
        (8, "file_inode", "uint64"),
        (9, "file_size", "uint64"),
        (10, "file_mtime_ns", "uint64"),
        (11, "file_mode", "uint32"),
        (12, "file_nlink", "uint32"),
        (13, "file_caps", "bool"),
        (14, "file_memfd", "bool"),
        (15, "file_overlay_upper", "bool"),
        (16, "stdin_type", "string"),
        (17, "stdin_peer_addr", "string"),
        (18, "stdin_peer_port", "uint32"),
        (19, "stdout_type", "string"),
    ]),
    ("hostflow.v1.FileChange", &[
        (1, "op", "string"),
        (2, "path", "string"),
        (3, "target", "string"),
        (4, "mode", "uint32"),
        (5, "result", "int32"),
    ]),
    ("hostflow.v1.CredentialChange", &[
        (1, "syscall", "string"),
        (2, "old_uid", "uint32"),
        (3, "old_euid", "uint32"),
        (4, "old_suid", "uint32"),
        (5, "old_gid", "uint32"),
        (6, "old_egid", "uint32"),
        (7, "old_sgid", "uint32"),
        (8, "old_cap_effective", "uint64"),
        (9, "old_cap_permitted", "uint64"),
        (10, "new_uid", "uint32"),
        (11, "new_euid", "uint32"),
        (12, "new_suid", "uint32"),
        (13, "new_gid", "uint32"),
        (14, "new_egid", "uint32"),
        (15, "new_sgid", "uint32"),
        (16, "new_cap_effective", "uint64"),
        (17, "new_cap_permitted", "uint64"),
        (18, "result", "int32"),
    ]),
    ("hostflow.v1.NamespaceChange", &[
        (1, "syscall", "string"),
        (2, "flags", "uint64"),
        (3, "result", "int32"),
    ]),
    ("hostflow.v1.PtraceAttach", &[
        (1, "request", "uint64"),
        (2, "target_pid", "uint32"),
        (3, "target_start_time_ns", "uint64"),
        (4, "result", "int32"),
    ]),
    ("hostflow.v1.ModuleLoad", &[
        (1, "syscall", "string"),
        (2, "path", "string"),
        (3, "params", "string"),
        (4, "result", "int32"),
    ]),
    ("hostflow.v1.BpfProgramLoad", &[
        (1, "prog_type", "uint32"),
        (2, "prog_name", "string"),
        (3, "insn_count", "uint32"),
        (4, "result", "int32"),
    ]),
    ("hostflow.v1.NetListen", &[
        (1, "protocol", "string"),
        (2, "addr", "string"),
        (3, "port", "uint32"),
        (4, "backlog", "int32"),
        (5, "result", "int32"),
    ]),
    ("hostflow.v1.NetAccept", &[
        (1, "protocol", "string"),
        (2, "local_addr", "string"),
        (3, "local_port", "uint32"),
        (4, "peer_addr", "string"),
        (5, "peer_port", "uint32"),
    ]),
    ("hostflow.v1.NetSend", &[
        (1, "protocol", "string"),
        (2, "dst_addr", "string"),
        (3, "dst_port", "uint32"),
        (4, "bytes", "uint32"),
    ]),
    ("hostflow.v1.ProcessContext", &[
        (1, "ctx_exe", "string"),
        (2, "ctx_argv", "repeated string"),
        (3, "ctx_uid", "uint32"),
        (4, "ctx_user", "string"),
        (5, "ctx_euid", "uint32"),
        (6, "ctx_cwd", "string"),
        (7, "ctx_tty", "string"),
        (8, "ctx_loginuid", "uint32"),
        (9, "ctx_session_id", "uint32"),
        (10, "ctx_cgroup_path", "string"),
        (11, "ctx_container_runtime", "string"),
        (12, "ctx_container_id", "string"),
        (13, "ctx_pod_uid", "string"),
        (14, "ctx_exe_sha256", "string"),
        (15, "ctx_exe_hash", "string"),
        (16, "ctx_lineage", "string"),
        (17, "ctx_origin", "string"),
        (18, "ctx_ancestor_keys", "repeated string"),
        (19, "ctx_ancestor_exes", "repeated string"),
    ]),
    ("hostflow.v1.ProcessSnapshot", &[
        (1, "parent_pid", "uint32"),
        (2, "parent_start_time_ns", "uint64"),
        (3, "uid", "uint32"),
        (4, "euid", "uint32"),
        (5, "gid", "uint32"),
        (6, "user", "string"),
        (7, "comm", "string"),
        (8, "exe", "string"),
        (9, "argv", "repeated string"),
        (10, "argv_truncated", "bool"),
        (11, "cwd", "string"),
        (12, "tty", "string"),
        (13, "loginuid", "uint32"),
        (14, "session_id", "uint32"),
        (15, "cgroup_path", "string"),
        (16, "exe_sha256", "string"),
        (17, "exe_hash", "string"),
    ]),
    ("hostflow.v1.ExeHash", &[
        (1, "exe", "string"),
        (2, "dev", "uint64"),
        (3, "inode", "uint64"),
        (4, "sha256", "string"),
        (5, "state", "string"),
    ]),
    ("hostflow.v1.DetectionEvent", &[
        (1, "rule_id", "string"),
        (2, "title", "string"),
        (3, "layer", "string"),
        (4, "severity", "string"),
        (5, "confidence", "string"),
        (6, "attack", "repeated string"),
        (7, "event_ids", "repeated uint64"),
        (8, "event_kind", "string"),
        (9, "summary", "string"),
        (10, "ruleset", "string"),
    ]),
    ("hostflow.v1.NetPolicyEvent", &[
        (1, "rule_id", "string"),
        (2, "rule_key", "uint32"),
        (3, "action", "string"),
        (4, "dry_run", "bool"),
        (5, "protocol", "string"),
        (6, "dst_addr", "string"),
        (7, "dst_port", "uint32"),
        (8, "cgroup_id", "uint64"),
        (9, "generation", "uint32"),
        (10, "policy_digest", "string"),
    ]),
    ("hostflow.v1.Detection", &[
        (1, "rule_id", "string"),
        (2, "layer", "hostflow.v1.Layer"),
        (3, "confidence", "hostflow.v1.Confidence"),
        (4, "event_ids", "repeated uint64"),
        (5, "ts_ns", "uint64"),
        (6, "entity_guid", "string"),
        (7, "pid", "uint32"),
        (8, "start_time_ns", "uint64"),
        (9, "summary", "string"),
    ]),
];

/// Enum → its released values as (number, name). New values may be added
/// at any unused number; these never change.
#[rustfmt::skip]
const FROZEN_ENUMS: &[(&str, &[(i32, &str)])] = &[
    ("hostflow.v1.IndexMapping.Interpolation", &[(0, "NONE"), (1, "LINEAR"), (2, "QUADRATIC"), (3, "CUBIC")]),
    ("hostflow.v1.Protocol", &[(0, "PROTOCOL_UNSPECIFIED"), (1, "PROTOCOL_TCP"), (2, "PROTOCOL_UDP")]),
    ("hostflow.v1.Layer", &[
        (0, "LAYER_UNSPECIFIED"),
        (1, "LAYER_L1_IOC"),
        (2, "LAYER_L2_TEMPORAL"),
        (3, "LAYER_L3_ANOMALY"),
        (4, "LAYER_L4_GRAPH"),
    ]),
    ("hostflow.v1.Confidence", &[
        (0, "CONFIDENCE_UNSPECIFIED"),
        (1, "CONFIDENCE_DEFINITE"),
        (2, "CONFIDENCE_VERY_HIGH"),
        (3, "CONFIDENCE_HIGH"),
        (4, "CONFIDENCE_MEDIUM"),
        (5, "CONFIDENCE_LOW"),
    ]),
];

/// A message's compiled fields ≤ 19 as (tag, name, type).
type Fields = Vec<(i32, String, String)>;
/// An enum's compiled values ≤ 19 as (number, name).
type Values = Vec<(i32, String)>;
/// Every compiled message and every compiled enum, by full name.
type Compiled = (Vec<(String, Fields)>, Vec<(String, Values)>);

/// What the compiled descriptors say: every message (map entries excluded)
/// with its fields ≤ 19, and every enum with its values ≤ 19.
fn compiled() -> Compiled {
    let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("build.rs wrote a valid FileDescriptorSet");
    let mut messages = Vec::new();
    let mut enums = Vec::new();
    for file in &set.file {
        let scope = file.package().to_owned();
        for message in &file.message_type {
            collect(&scope, message, &mut messages, &mut enums);
        }
        for enumeration in &file.enum_type {
            enums.push(enum_values(&scope, enumeration));
        }
    }
    (messages, enums)
}

fn collect(
    scope: &str,
    message: &DescriptorProto,
    messages: &mut Vec<(String, Fields)>,
    enums: &mut Vec<(String, Values)>,
) {
    let name = format!("{scope}.{}", message.name());
    if message.options.as_ref().is_some_and(|options| options.map_entry()) {
        return;
    }
    let fields = message
        .field
        .iter()
        .filter(|field| field.number() <= FROZEN_MAX)
        .map(|field| (field.number(), field.name().to_owned(), render(message, field)))
        .collect();
    for nested in &message.nested_type {
        collect(&name, nested, messages, enums);
    }
    for enumeration in &message.enum_type {
        enums.push(enum_values(&name, enumeration));
    }
    messages.push((name, fields));
}

fn enum_values(scope: &str, enumeration: &prost_types::EnumDescriptorProto) -> (String, Values) {
    let values = enumeration
        .value
        .iter()
        .filter(|value| value.number() <= FROZEN_MAX)
        .map(|value| (value.number(), value.name().to_owned()))
        .collect();
    (format!("{scope}.{}", enumeration.name()), values)
}

/// A field's type as the table writes it.
fn render(message: &DescriptorProto, field: &FieldDescriptorProto) -> String {
    let named = |type_name: &str| type_name.trim_start_matches('.').to_owned();
    let base = match field.r#type() {
        Type::Message | Type::Enum | Type::Group => named(field.type_name()),
        scalar => scalar.as_str_name().trim_start_matches("TYPE_").to_lowercase(),
    };
    let entry = message.nested_type.iter().find(|nested| {
        nested.options.as_ref().is_some_and(|options| options.map_entry())
            && field.type_name().ends_with(&format!(".{}", nested.name()))
    });
    let mut rendered = match (field.label(), entry) {
        (Label::Repeated, Some(entry)) => {
            let key = render(entry, &entry.field[0]);
            let value = render(entry, &entry.field[1]);
            format!("map<{key}, {value}>")
        }
        (Label::Repeated, None) => format!("repeated {base}"),
        _ => base,
    };
    if let Some(index) = field.oneof_index.filter(|_| !field.proto3_optional()) {
        let oneof = usize::try_from(index).ok().and_then(|index| message.oneof_decl.get(index));
        rendered.push_str(&format!(" in oneof {}", oneof.map_or("?", |oneof| oneof.name())));
    }
    rendered
}

/// Every difference between what was compiled and the released table.
fn problems(messages: &[(String, Fields)], enums: &[(String, Values)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, fields) in messages {
        let Some((_, frozen)) = FROZEN_FIELDS.iter().find(|(frozen_name, _)| frozen_name == name) else {
            problems.push(format!("message {name} is not in FROZEN_FIELDS: add its rows once, when it is added"));
            continue;
        };
        let mut released: Fields =
            frozen.iter().map(|&(tag, name, ty)| (tag, name.to_owned(), ty.to_owned())).collect();
        released.sort();
        let mut compiled = fields.clone();
        compiled.sort();
        if compiled != released {
            problems.push(format!(
                "message {name}: tags 1-{FROZEN_MAX} are frozen\n  released: {released:?}\n  compiled: {compiled:?}"
            ));
        }
    }
    for (name, _) in FROZEN_FIELDS {
        if !messages.iter().any(|(compiled_name, _)| compiled_name == name) {
            problems.push(format!("message {name} was removed or renamed; released messages stay"));
        }
    }
    for (name, values) in enums {
        let Some((_, frozen)) = FROZEN_ENUMS.iter().find(|(frozen_name, _)| frozen_name == name) else {
            problems.push(format!("enum {name} is not in FROZEN_ENUMS: add its rows once, when it is added"));
            continue;
        };
        // Released values stay exactly as released; a new value may take any
        // unused number (proto3 enums are open: an old reader keeps the number).
        let missing: Values = frozen
            .iter()
            .map(|&(number, name)| (number, name.to_owned()))
            .filter(|released| !values.contains(released))
            .collect();
        let reused: Values = values
            .iter()
            .filter(|(number, name)| frozen.iter().any(|&(n, released)| n == *number && released != name))
            .cloned()
            .collect();
        if !missing.is_empty() || !reused.is_empty() {
            problems.push(format!(
                "enum {name}: released values never change\n  changed or removed: {missing:?}\n  number reused by: {reused:?}"
            ));
        }
    }
    for (name, _) in FROZEN_ENUMS {
        if !enums.iter().any(|(compiled_name, _)| compiled_name == name) {
            problems.push(format!("enum {name} was removed or renamed; released enums stay"));
        }
    }
    problems
}

#[test]
fn frozen_tags_match_the_released_contract() {
    let (messages, enums) = compiled();
    assert_eq!(messages.len(), FROZEN_FIELDS.len(), "every message is seen");
    let problems = problems(&messages, &enums);
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_table_itself_is_well_formed() {
    for (name, fields) in FROZEN_FIELDS {
        let mut tags: Vec<i32> = fields.iter().map(|&(tag, _, _)| tag).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), fields.len(), "{name}: a tag appears twice");
        assert!(tags.iter().all(|tag| (1..=FROZEN_MAX).contains(tag)), "{name}: only tags 1-{FROZEN_MAX} are frozen");
    }
}

/// The check bites: each kind of forbidden change is reported, and the one
/// allowed kind (a new field at tag 20 or above) is not.
#[test]
fn forbidden_changes_are_detected() {
    let (messages, enums) = compiled();
    let edit = |message: &str, change: &dyn Fn(&mut Fields)| -> Vec<String> {
        let mut edited = messages.clone();
        let (_, fields) = edited.iter_mut().find(|(name, _)| name == message).expect("message exists");
        change(fields);
        // Fields ≥ 20 never reach the comparison, exactly as in `compiled()`.
        fields.retain(|(tag, _, _)| *tag <= FROZEN_MAX);
        problems(&edited, &enums)
    };
    let retype =
        |fields: &mut Fields| fields.iter_mut().filter(|f| f.1 == "cpu_ticks").for_each(|f| f.2 = "uint32".into());
    let renumber = |fields: &mut Fields| fields.iter_mut().filter(|f| f.1 == "cpu_ticks").for_each(|f| f.0 = 15);
    let rename = |fields: &mut Fields| fields.iter_mut().filter(|f| f.0 == 11).for_each(|f| f.1 = "cpu_time".into());
    let remove = |fields: &mut Fields| fields.retain(|f| f.0 != 11);
    let add_low = |fields: &mut Fields| fields.push((15, "io_bytes".into(), "uint64".into()));
    let add_high = |fields: &mut Fields| fields.push((20, "io_bytes".into(), "uint64".into()));
    for (what, change) in [
        ("retype", &retype as &dyn Fn(&mut Fields)),
        ("renumber", &renumber),
        ("rename", &rename),
        ("remove", &remove),
        ("add below 20", &add_low),
    ] {
        let found = edit("hostflow.v1.ProcessSample", change);
        assert!(found.iter().any(|p| p.contains("hostflow.v1.ProcessSample")), "{what} is not detected: {found:?}");
    }
    assert_eq!(edit("hostflow.v1.ProcessSample", &add_high), Vec::<String>::new(), "tag 20 is additive");

    let edit_enum = |change: &dyn Fn(&mut Values)| -> Vec<String> {
        let mut edited = enums.clone();
        let (_, layers) = edited.iter_mut().find(|(name, _)| name == "hostflow.v1.Layer").expect("Layer");
        change(layers);
        problems(&messages, &edited)
    };
    let renumber = |values: &mut Values| values.iter_mut().filter(|v| v.1 == "LAYER_L4_GRAPH").for_each(|v| v.0 = 5);
    let remove = |values: &mut Values| values.retain(|v| v.0 != 3);
    let reuse = |values: &mut Values| {
        values.retain(|v| v.0 != 3);
        values.push((3, "LAYER_L3_SOMETHING_ELSE".into()));
    };
    for (what, change) in [("renumber", &renumber as &dyn Fn(&mut Values)), ("remove", &remove), ("reuse", &reuse)] {
        assert!(edit_enum(change).iter().any(|p| p.contains("hostflow.v1.Layer")), "enum {what} is not detected");
    }
    let add = |values: &mut Values| values.push((5, "LAYER_L5_NEW".into()));
    assert_eq!(edit_enum(&add), Vec::<String>::new(), "a new enum value is additive");

    let mut unknown = messages.clone();
    unknown.push(("hostflow.v1.NewThing".to_owned(), Vec::new()));
    assert!(problems(&unknown, &enums).iter().any(|p| p.contains("NewThing")));
}
