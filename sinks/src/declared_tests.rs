//! The security kinds and exec attributes through every sink format, from
//! the one declaration (`schemas::columns`) and the records' `Columns`:
//! the declaration's types are what each record writes; the Arrow encoder
//! builds the declared schema; the protobuf bytes decode with prost's
//! generated types to every value (an independent reader); a record that
//! disagrees with the declaration is an error, never a misaligned output.
//! (Spool → replay and NDJSON → replay round trips are in tests/replay.rs:
//! the readers live in `sources`.)

use std::sync::Arc;

use pipeline::event::columns::{
    is_security, security_samples, write_security, ColumnType as Written, ColumnWriter, TypeRecorder,
};
use pipeline::event::{Event, EventKind, ExecAttributes};
use schemas::columns::{security_kind, ColumnType, EXEC_ATTRIBUTES, PROCESS_CONTEXT_TAG, SECURITY_KINDS};
use schemas::prost::Message as _;
use schemas::v1;
use schemas::v1::security_event::Detail;

use crate::arrow_spool::encode;
use crate::protobuf::{encode_batch, EnvelopeContext, WireMessage};

fn declared_type(ty: ColumnType) -> Written {
    match ty {
        ColumnType::U16 => Written::U16,
        ColumnType::U32 => Written::U32,
        ColumnType::U64 => Written::U64,
        ColumnType::I32 => Written::I32,
        ColumnType::I64 => Written::I64,
        ColumnType::Bool => Written::Bool,
        ColumnType::Str => Written::Str,
        ColumnType::StrList => Written::StrList,
        ColumnType::U64List => Written::U64List,
    }
}

fn attributes_of(events: &[Event]) -> Arc<ExecAttributes> {
    events
        .iter()
        .find_map(|e| match e {
            Event::ProcessExec(exec) => exec.attributes.clone(),
            _ => None,
        })
        .expect("the samples hold an exec with attributes")
}

/// Catches a field added to a struct (and its `write_columns`) but not to
/// the declaration, or declared with another type, or in another order.
#[test]
fn every_record_writes_exactly_its_declared_types() {
    let samples = security_samples(1);
    for declared in SECURITY_KINDS {
        let kind = EventKind::from_name(declared.kind).expect("a declared kind is an EventKind");
        assert!(is_security(kind), "{kind}: read through its columns");
        let event = samples.iter().find(|e| e.kind() == kind).unwrap_or_else(|| panic!("{kind}: no sample"));
        let mut types = TypeRecorder::default();
        assert!(write_security(event, &mut types), "{kind}");
        let expected: Vec<Written> = declared.columns.iter().map(|c| declared_type(c.ty)).collect();
        assert_eq!(types.0, expected, "{kind}: write_columns vs schemas/src/columns.rs");
    }
    let mut types = TypeRecorder::default();
    attributes_of(&samples).write_columns(&mut types);
    let expected: Vec<Written> = EXEC_ATTRIBUTES.columns.iter().map(|c| declared_type(c.ty)).collect();
    assert_eq!(types.0, expected, "ExecAttributes::write_columns vs EXEC_ATTRIBUTES");
    // Every kind written through columns is declared, in EventKind order.
    let security: Vec<&str> = EventKind::ALL.iter().filter(|k| is_security(**k)).map(|k| k.as_str()).collect();
    let declared: Vec<&str> = SECURITY_KINDS.iter().map(|d| d.kind).collect();
    assert_eq!(security, declared);
}

#[test]
fn arrow_batches_have_the_declared_schema_and_values() {
    let samples = security_samples(1);
    for kind in EventKind::ALL.into_iter().filter(|k| is_security(*k)).chain([EventKind::ProcessExec]) {
        let batch = encode(kind, &samples).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(batch.num_rows(), 1, "{kind}");
        assert_eq!(batch.schema(), schemas::schema_for(kind.as_str()).expect("schema"), "{kind}");
    }
    let exec = encode(EventKind::ProcessExec, &samples).expect("exec");
    let env = exec.column_by_name("env").expect("env");
    assert_eq!(env.data_type(), &schemas::arrow::argv_type());
}

#[test]
fn a_record_that_disagrees_with_the_declaration_fails_to_encode() {
    use crate::arrow_spool::encode::BuilderWriter;
    let samples = security_samples(1);
    let declared = security_kind("net_send").expect("declared");
    let event = samples.iter().find(|e| e.kind() == EventKind::NetSend).expect("sample");
    let mut writer = BuilderWriter::new(EventKind::NetSend, declared.columns, 1);
    write_security(event, &mut writer);
    writer.u32(1);
    let error = writer.end_row().expect_err("one column too many").to_string();
    assert!(error.contains("column 6 `(past the end)`"), "{error}");
    let mut writer = BuilderWriter::new(EventKind::NetSend, declared.columns, 1);
    writer.u32(1);
    writer.str("wrong: start_time_ns is a u64");
    let error = writer.end_row().expect_err("wrong type").to_string();
    assert!(error.contains("column 1 `start_time_ns`") && error.contains("Str"), "{error}");
}

fn cx() -> EnvelopeContext {
    EnvelopeContext { entity_guid: "guid-7".to_owned(), host: "web-7".to_owned() }
}

/// The generic protobuf bytes, read by prost's generated `SecurityEvent`:
/// every declared field is found with its value. Re-encoding the decoded
/// detail with prost gives the same bytes, so no field was skipped as
/// unknown (prost drops unknown fields); the values are then checked one
/// by one against the records.
#[test]
fn protobuf_bytes_decode_with_prost_to_every_value() {
    let samples = security_samples(100);
    let messages = encode_batch(&samples, &cx());
    assert_eq!(messages.len(), samples.len());
    for (event, message) in samples.iter().zip(&messages) {
        let WireMessage::DeclaredSecurity(declared) = message else { panic!("{}: {message:?}", event.kind()) };
        assert_eq!(message.message_type(), "hostflow.v1.SecurityEvent");
        let decoded = v1::SecurityEvent::decode(&*message.encode_to_vec()).expect("prost decodes the bytes");
        let process = event.process().expect("a process");
        assert_eq!(
            (decoded.event_id, decoded.ts_ns, decoded.pid, decoded.start_time_ns),
            (event.meta().event_id, event.meta().ts_ns, process.pid, process.start_time_ns),
            "{}",
            event.kind()
        );
        assert_eq!((decoded.entity_guid.as_str(), decoded.schema_version.as_str()), ("guid-7", "1.5"));
        let detail = decoded.detail.clone().expect("a detail");
        let mut reencoded = Vec::new();
        detail.encode(&mut reencoded);
        match (event.context(), &decoded.context) {
            (Some(context), Some(decoded)) => {
                schemas::prost::encoding::message::encode(PROCESS_CONTEXT_TAG, decoded, &mut reencoded);
                check_context(context, decoded);
            }
            (None, None) => {}
            (expected, decoded) => panic!("{}: context {expected:?} decoded as {decoded:?}", event.kind()),
        }
        assert_eq!(reencoded, declared.detail, "{}: prost read every field of the detail and context", event.kind());
        check_detail(event, &detail);
        let mut envelope = decoded.clone();
        envelope.detail = None;
        envelope.context = None;
        assert_eq!(envelope, declared.envelope, "{}", event.kind());
    }
}

fn check_detail(event: &Event, detail: &Detail) {
    match (event, detail) {
        (Event::FileChange(e), Detail::FileChange(d)) => assert_eq!(
            (d.op.as_str(), d.path.as_str(), d.target.as_str(), d.mode, d.result),
            (e.op.as_str(), &*e.path, &*e.target, e.mode, e.result)
        ),
        (Event::CredentialChange(e), Detail::CredentialChange(d)) => {
            assert_eq!((d.syscall.as_str(), d.result), (e.syscall.as_str(), e.result));
            let (o, n) = (&e.old, &e.new);
            assert_eq!(
                [d.old_uid, d.old_euid, d.old_suid, d.old_gid, d.old_egid, d.old_sgid],
                [o.uid, o.euid, o.suid, o.gid, o.egid, o.sgid]
            );
            assert_eq!(
                [d.new_uid, d.new_euid, d.new_suid, d.new_gid, d.new_egid, d.new_sgid],
                [n.uid, n.euid, n.suid, n.gid, n.egid, n.sgid]
            );
            assert_eq!(
                [d.old_cap_effective, d.old_cap_permitted, d.new_cap_effective, d.new_cap_permitted],
                [o.cap_effective, o.cap_permitted, n.cap_effective, n.cap_permitted]
            );
        }
        (Event::NamespaceChange(e), Detail::NamespaceChange(d)) => {
            assert_eq!((d.syscall.as_str(), d.flags, d.result), (e.syscall.as_str(), e.flags, e.result))
        }
        (Event::PtraceAttach(e), Detail::PtraceAttach(d)) => assert_eq!(
            (d.request, d.target_pid, d.target_start_time_ns, d.result),
            (e.request, e.target.pid, e.target.start_time_ns, e.result)
        ),
        (Event::ModuleLoad(e), Detail::ModuleLoad(d)) => assert_eq!(
            (d.syscall.as_str(), d.path.as_str(), d.params.as_str(), d.result),
            (e.syscall.as_str(), &*e.path, &*e.params, e.result)
        ),
        (Event::BpfProgramLoad(e), Detail::BpfProgramLoad(d)) => assert_eq!(
            (d.prog_type, d.prog_name.as_str(), d.insn_count, d.result),
            (e.prog_type, &*e.prog_name, e.insn_count, e.result)
        ),
        (Event::NetListen(e), Detail::NetListen(d)) => assert_eq!(
            (d.protocol.as_str(), d.addr.clone(), d.port, d.backlog, d.result),
            (e.protocol.as_str(), e.addr.to_string(), u32::from(e.port), e.backlog, e.result)
        ),
        (Event::NetAccept(e), Detail::NetAccept(d)) => assert_eq!(
            (d.protocol.as_str(), d.local_addr.clone(), d.local_port, d.peer_addr.clone(), d.peer_port),
            (
                e.protocol.as_str(),
                e.local_addr.to_string(),
                u32::from(e.local_port),
                e.peer_addr.to_string(),
                u32::from(e.peer_port)
            )
        ),
        (Event::NetSend(e), Detail::NetSend(d)) => assert_eq!(
            (d.protocol.as_str(), d.dst_addr.clone(), d.dst_port, d.bytes),
            (e.protocol.as_str(), e.dst_addr.to_string(), u32::from(e.dst_port), e.bytes)
        ),
        (Event::ProcessSnapshot(e), Detail::ProcessSnapshot(d)) => {
            assert_eq!((d.parent_pid, d.parent_start_time_ns), (e.parent.pid, e.parent.start_time_ns));
            assert_eq!(
                [d.uid, d.euid, d.gid, d.loginuid, d.session_id],
                [e.uid, e.euid, e.gid, e.loginuid, e.session_id]
            );
            assert_eq!(
                [
                    d.user.as_str(),
                    d.comm.as_str(),
                    d.exe.as_str(),
                    d.cwd.as_str(),
                    d.tty.as_str(),
                    d.cgroup_path.as_str()
                ],
                [&*e.user, &*e.comm, &*e.exe, &*e.cwd, &*e.tty, &*e.cgroup_path]
            );
            assert_eq!(
                (d.argv.clone(), d.argv_truncated),
                (e.argv.iter().map(str::to_owned).collect(), e.argv_truncated)
            );
            assert_eq!((d.exe_sha256.as_str(), d.exe_hash.as_str()), (&*e.exe_sha256, e.exe_hash.as_str()));
        }
        (Event::ExeHash(e), Detail::ExeHash(d)) => assert_eq!(
            (d.exe.as_str(), d.dev, d.inode, d.sha256.as_str(), d.state.as_str()),
            (&*e.exe, e.dev, e.inode, &*e.sha256, e.state.as_str())
        ),
        (Event::Detection(e), Detail::Detection(d)) => {
            assert_eq!(
                [d.rule_id.as_str(), d.title.as_str(), d.event_kind.as_str(), d.summary.as_str(), d.ruleset.as_str()],
                [&*e.rule_id, &*e.title, &*e.event_kind, &*e.summary, &*e.ruleset]
            );
            assert_eq!(
                [d.layer.as_str(), d.severity.as_str(), d.confidence.as_str()],
                [e.layer.as_str(), e.severity.as_str(), e.confidence.as_str()]
            );
            assert_eq!(d.attack, e.attack.iter().map(|id| id.to_string()).collect::<Vec<_>>());
            assert_eq!(d.event_ids, e.event_ids);
        }
        (Event::NetPolicy(e), Detail::NetPolicy(d)) => {
            assert_eq!(
                [d.rule_id.as_str(), d.action.as_str(), d.protocol.as_str(), d.policy_digest.as_str()],
                [&*e.rule_id, e.action.as_str(), e.protocol.as_str(), &*e.policy_digest]
            );
            assert_eq!(
                (d.dst_addr.clone(), d.dst_port, d.dry_run),
                (e.dst_addr.to_string(), u32::from(e.dst_port), e.dry_run)
            );
            assert_eq!((d.rule_key, d.cgroup_id, d.generation), (e.rule_key, e.cgroup_id, e.generation));
        }
        (Event::ProcessExec(e), Detail::Exec(d)) => {
            assert_eq!((d.exe.as_str(), d.argv_truncated), (&*e.exe, e.argv_truncated));
            assert_eq!(d.argv, e.argv.iter().collect::<Vec<_>>());
            let (Some(a), Some(wire)) = (e.attributes.as_deref(), d.attributes.as_ref()) else {
                panic!("attributes on both sides")
            };
            assert_eq!(
                [wire.euid, wire.suid, wire.egid, wire.sgid, wire.file_mode, wire.file_nlink, wire.loginuid],
                [a.euid, a.suid, a.egid, a.sgid, a.file.mode, a.file.nlink, a.loginuid]
            );
            assert_eq!(wire.session_id, a.session_id);
            assert_eq!(
                [wire.cap_effective, wire.cap_permitted, wire.file_dev, wire.file_inode, wire.file_size],
                [a.cap_effective, a.cap_permitted, a.file.dev, a.file.inode, a.file.size]
            );
            assert_eq!(wire.file_mtime_ns, a.file.mtime_ns);
            assert_eq!(
                [wire.file_caps, wire.file_memfd, wire.file_overlay_upper, wire.cwd_truncated, wire.env_truncated],
                [a.file.file_caps, a.file.memfd, a.file.overlay_upper, a.cwd_truncated, a.env_truncated]
            );
            let fd = |n: usize| {
                let fd = &a.stdio[n];
                let (addr, port) = fd.peer.map_or((String::new(), 0), |(addr, port)| (addr.to_string(), port));
                (fd.kind.as_str().to_owned(), addr, u32::from(port))
            };
            assert_eq!((wire.stdin_type.clone(), wire.stdin_peer_addr.clone(), wire.stdin_peer_port), fd(0));
            assert_eq!((wire.stdout_type.clone(), wire.stdout_peer_addr.clone(), wire.stdout_peer_port), fd(1));
            assert_eq!((wire.stderr_type.clone(), wire.stderr_peer_addr.clone(), wire.stderr_peer_port), fd(2));
            assert_eq!((wire.tty.as_str(), wire.cwd.as_str()), (&*a.tty, &*a.cwd));
            assert_eq!(wire.env, a.env.iter().map(|v| v.to_string()).collect::<Vec<_>>());
            assert_eq!(
                (wire.user.as_str(), wire.cgroup_path.as_str(), wire.exe_sha256.as_str(), wire.exe_hash.as_str()),
                (&*a.user, &*a.cgroup_path, &*a.exe_sha256, a.exe_hash.as_str())
            );
        }
        (event, detail) => panic!("{}: unexpected detail {detail:?}", event.kind()),
    }
}

/// An exec without attributes is encoded as before (prost, no field 22).
#[test]
fn an_exec_without_attributes_is_a_plain_security_event() {
    let samples = security_samples(1);
    let Some(exec) = samples.into_iter().find_map(|e| match e {
        Event::ProcessExec(exec) => Some(exec),
        _ => None,
    }) else {
        panic!("the samples hold an exec")
    };
    assert!(exec.context.is_none(), "this sample has no context");
    let plain = pipeline::event::ProcessExec { attributes: None, ..exec };
    let messages = encode_batch(&[Event::ProcessExec(plain)], &cx());
    let [WireMessage::Security(message)] = &messages[..] else { panic!("{messages:?}") };
    let Some(Detail::Exec(detail)) = &message.detail else { panic!("exec") };
    assert_eq!(detail.attributes, None);
}

/// Every value of a context, as prost decoded it.
fn check_context(context: &pipeline::event::ProcessContext, decoded: &v1::ProcessContext) {
    let strs = |values: Vec<&str>| values.into_iter().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(decoded.ctx_exe, &*context.exe);
    assert_eq!(decoded.ctx_argv, strs(context.argv.iter().collect()));
    assert_eq!(
        (decoded.ctx_uid, decoded.ctx_user.as_str(), decoded.ctx_euid),
        (context.uid, &*context.user, context.euid)
    );
    assert_eq!((decoded.ctx_cwd.as_str(), decoded.ctx_tty.as_str()), (&*context.cwd, &*context.tty));
    assert_eq!((decoded.ctx_loginuid, decoded.ctx_session_id), (context.loginuid, context.session_id));
    assert_eq!(decoded.ctx_cgroup_path, &*context.cgroup_path);
    assert_eq!(
        (decoded.ctx_container_runtime.as_str(), decoded.ctx_container_id.as_str(), decoded.ctx_pod_uid.as_str()),
        (&*context.container_runtime, &*context.container_id, &*context.pod_uid)
    );
    assert_eq!(
        (decoded.ctx_exe_sha256.as_str(), decoded.ctx_exe_hash.as_str()),
        (&*context.exe_sha256, context.exe_hash.as_str())
    );
    assert_eq!(
        (decoded.ctx_lineage.as_str(), decoded.ctx_origin.as_str()),
        (context.lineage.as_str(), context.origin.as_str())
    );
    let keys: Vec<String> =
        context.ancestry.iter().map(|a| format!("{}:{}", a.process.pid, a.process.start_time_ns)).collect();
    assert_eq!(decoded.ctx_ancestor_keys, keys);
    assert_eq!(decoded.ctx_ancestor_exes, strs(context.ancestry.iter().map(|a| &*a.exe).collect()));
    assert_eq!(decoded.ctx_ancestor_args, strs(context.ancestry.iter().map(|a| &*a.args).collect()));
    assert!(!context.ancestry.is_empty(), "the sample has ancestors");
}
