//! Protobuf encoding of events into the wire contracts of `schemas`: the
//! conversion every protobuf-speaking sink (Kafka, later) shares.
//!
//! Engine events are not wire types; this file is the one place that maps
//! them, field by field, so a wire change never ripples into transforms.
//! Process rows of one scan (Top-N rows and tail aggregates, or raw rows
//! when no `topn` ran) become one `ProcessEnvelope`, and so do consecutive
//! ephemeral summaries of one interval (an `EphemeralBatch`); each sketch becomes a
//! `SketchEnvelope`; diagnostics an `AgentDiagEvent`; kernel-style events a
//! `SecurityEvent`.
//!
//! The declared kinds (`file_change` … `net_send`, `process_snapshot`,
//! `exe_hash`, `detection`, `net_policy`) and an exec's kernel attributes have no
//! mapping here: their records write their values through
//! `pipeline::event::columns`, and [`ProtoFields`] encodes them
//! with `prost::encoding` at the names' tags of the declaration
//! (`schemas::columns`), which a schemas test holds equal to
//! `security.proto`. Such an event is a [`DeclaredSecurityEvent`]: the
//! envelope encoded by prost with no detail, followed by the detail field's
//! bytes (protobuf fields may come in any order, so any reader — prost's
//! generated `v1::SecurityEvent` included — sees one message). The process
//! context enrichment attaches is appended the same way, as
//! `SecurityEvent.context`, whatever the kind.

use pipeline::event::columns::{write_security, ColumnWriter};
use pipeline::event::{
    AgentDiag, FileOpen, NetConnect, ProcessAggregateSample, ProcessEphemeralSummary, ProcessExec, ProcessExit,
    ProcessFork, ProcessSample, Protocol,
};
use pipeline::{Event, ProcessKey};
use schemas::columns::{
    security_kind, Column, ColumnType, EXEC_ATTRIBUTES, EXEC_ATTRIBUTES_TAG, PROCESS_CONTEXT, PROCESS_CONTEXT_TAG,
};
use schemas::prost::encoding::{self as pb, WireType};
use schemas::prost::Message as _;
use schemas::v1;

/// Identity stamped on every message.
#[derive(Clone, Debug, Default)]
pub struct EnvelopeContext {
    /// The host's entity guid (also the partitioning key downstream).
    pub entity_guid: String,
    /// Host name.
    pub host: String,
}

/// One encoded message, by contract.
#[derive(Clone, Debug, PartialEq)]
pub enum WireMessage {
    Process(v1::ProcessEnvelope),
    Sketch(v1::SketchEnvelope),
    Diag(v1::AgentDiagEvent),
    Security(v1::SecurityEvent),
    /// A `SecurityEvent` whose detail was encoded from the declaration: a
    /// security kind, or an exec with attributes.
    DeclaredSecurity(DeclaredSecurityEvent),
}

/// A `SecurityEvent` as its envelope, encoded by prost, and fields
/// encoded from the declaration appended to it on the wire: the `detail`
/// oneof's field when the envelope has none, and `context` (34) when the
/// event carries a process context.
#[derive(Clone, Debug, PartialEq)]
pub struct DeclaredSecurityEvent {
    /// Every field not in `detail`.
    pub envelope: v1::SecurityEvent,
    /// The appended fields (key, length and message each).
    pub detail: Vec<u8>,
}

impl WireMessage {
    /// The protobuf bytes.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        match self {
            WireMessage::Process(m) => m.encode_to_vec(),
            WireMessage::Sketch(m) => m.encode_to_vec(),
            WireMessage::Diag(m) => m.encode_to_vec(),
            WireMessage::Security(m) => m.encode_to_vec(),
            WireMessage::DeclaredSecurity(m) => {
                let mut bytes = Vec::with_capacity(m.envelope.encoded_len() + m.detail.len());
                // Writing into a Vec cannot run out of room.
                let _ = m.envelope.encode(&mut bytes);
                bytes.extend_from_slice(&m.detail);
                bytes
            }
        }
    }

    /// The protobuf message name (`hostflow.v1.…`) of the bytes.
    pub fn message_type(&self) -> &'static str {
        match self {
            WireMessage::Process(_) => "hostflow.v1.ProcessEnvelope",
            WireMessage::Sketch(_) => "hostflow.v1.SketchEnvelope",
            WireMessage::Diag(_) => "hostflow.v1.AgentDiagEvent",
            WireMessage::Security(_) | WireMessage::DeclaredSecurity(_) => "hostflow.v1.SecurityEvent",
        }
    }
}

/// Encodes a batch in order. Consecutive process rows of the same scan
/// share one envelope, and so do consecutive ephemeral summaries of the
/// same interval.
pub fn encode_batch(events: &[Event], cx: &EnvelopeContext) -> Vec<WireMessage> {
    let mut messages = Vec::new();
    let mut scan: Option<ScanRows<'_>> = None;
    let mut ephemeral: Option<EphemeralRows<'_>> = None;
    for event in events {
        let scan_id = match event {
            Event::ProcessSample(row) => Some(row.scan.scan_id),
            Event::ProcessAggregate(row) => Some(row.scan.scan_id),
            _ => None,
        };
        if let Some(open) = scan.take() {
            if Some(open.scan_id) == scan_id {
                scan = Some(open);
            } else {
                messages.push(WireMessage::Process(open.into_envelope(cx)));
            }
        }
        let window = match event {
            Event::ProcessEphemeral(row) => Some((row.window_start_ns, row.window_end_ns)),
            _ => None,
        };
        if let Some(open) = ephemeral.take() {
            if Some(open.window) == window {
                ephemeral = Some(open);
            } else {
                messages.push(WireMessage::Process(open.into_envelope(cx)));
            }
        }
        match event {
            Event::ProcessEphemeral(row) => ephemeral
                .get_or_insert_with(|| EphemeralRows {
                    window: (row.window_start_ns, row.window_end_ns),
                    rows: Vec::new(),
                })
                .rows
                .push(row),
            Event::ProcessSample(row) => {
                scan.get_or_insert_with(|| ScanRows::new(row.scan.scan_id, row.scan.scan_size)).samples.push(row)
            }
            Event::ProcessAggregate(row) => {
                scan.get_or_insert_with(|| ScanRows::new(row.scan.scan_id, row.scan.scan_size)).tail.push(row)
            }
            Event::AgentDiag(diag) => messages.push(WireMessage::Diag(agent_diag(diag, cx))),
            Event::Sketch(sketch) => {
                messages.push(WireMessage::Sketch(crate::protobuf_sketch::sketch_envelope(sketch, cx)))
            }
            other => {
                if let Some(security) = security_event(other, cx) {
                    messages.push(security);
                }
            }
        }
    }
    if let Some(open) = scan {
        messages.push(WireMessage::Process(open.into_envelope(cx)));
    }
    if let Some(open) = ephemeral {
        messages.push(WireMessage::Process(open.into_envelope(cx)));
    }
    messages
}

/// Consecutive ephemeral summaries of one interval.
struct EphemeralRows<'a> {
    window: (u64, u64),
    rows: Vec<&'a ProcessEphemeralSummary>,
}

impl EphemeralRows<'_> {
    fn into_envelope(self, cx: &EnvelopeContext) -> v1::ProcessEnvelope {
        let (window_start_ns, window_end_ns) = self.window;
        let row = |row: &ProcessEphemeralSummary| {
            let ProcessEphemeralSummary { meta, window_start_ns: _, window_end_ns: _, name, count, cpu_ns } = row;
            v1::ProcessEphemeralSummary {
                name: name.to_string(),
                count: *count,
                cpu_ns: *cpu_ns,
                event_id: meta.event_id,
            }
        };
        v1::ProcessEnvelope {
            entity_guid: cx.entity_guid.clone(),
            schema_version: schemas::PROCESS_ENVELOPE_SCHEMA_VERSION.to_owned(),
            ts_ns: self.rows.iter().map(|r| r.meta.ts_ns).max().unwrap_or(window_end_ns),
            host: cx.host.clone(),
            payload: Some(v1::process_envelope::Payload::EphemeralBatch(v1::EphemeralBatch {
                window_start_ns,
                window_end_ns,
                rows: self.rows.into_iter().map(row).collect(),
            })),
        }
    }
}

struct ScanRows<'a> {
    scan_id: u64,
    scan_size: u32,
    samples: Vec<&'a ProcessSample>,
    tail: Vec<&'a ProcessAggregateSample>,
}

impl<'a> ScanRows<'a> {
    fn new(scan_id: u64, scan_size: u32) -> ScanRows<'a> {
        ScanRows { scan_id, scan_size, samples: Vec::new(), tail: Vec::new() }
    }

    fn into_envelope(mut self, cx: &EnvelopeContext) -> v1::ProcessEnvelope {
        // Ranked rows first, in rank order; raw (unranked) rows after, as they came.
        self.samples.sort_by_key(|row| if row.top_n_rank == 0 { u32::MAX } else { row.top_n_rank });
        let n = self.samples.iter().filter(|row| row.top_n_rank > 0).count() as u32;
        let ranked_ticks: u64 = self.samples.iter().filter(|r| r.top_n_rank > 0).map(|r| r.cpu_ticks).sum();
        let total_ticks: u64 = self.samples.iter().map(|r| r.cpu_ticks).sum::<u64>()
            + self.tail.iter().map(|r| r.cpu_ticks_sum).sum::<u64>();
        let capture_ratio = if total_ticks == 0 { 1.0 } else { ranked_ticks as f64 / total_ticks as f64 };
        let ts_ns =
            self.samples.iter().map(|r| r.meta.ts_ns).chain(self.tail.iter().map(|r| r.meta.ts_ns)).max().unwrap_or(0);
        v1::ProcessEnvelope {
            entity_guid: cx.entity_guid.clone(),
            schema_version: schemas::PROCESS_ENVELOPE_SCHEMA_VERSION.to_owned(),
            ts_ns,
            host: cx.host.clone(),
            payload: Some(v1::process_envelope::Payload::TopNBatch(v1::TopNBatch {
                scan_id: self.scan_id,
                scan_size: self.scan_size,
                n,
                capture_ratio,
                top_n: self.samples.into_iter().map(process_sample).collect(),
                tail: self.tail.into_iter().map(process_aggregate).collect(),
            })),
        }
    }
}

fn process_sample(row: &ProcessSample) -> v1::ProcessSample {
    let ProcessSample {
        meta,
        process,
        scan: _,
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
    } = row;
    v1::ProcessSample {
        event_id: meta.event_id,
        ts_ns: meta.ts_ns,
        pid: process.pid,
        start_time_ns: process.start_time_ns,
        ppid: *ppid,
        uid: *uid,
        name: name.to_string(),
        cmdline: cmdline.to_string(),
        state: char::from(*state).to_string(),
        threads: *threads,
        cpu_ticks: *cpu_ticks,
        cpu_percent: *cpu_percent,
        rss_bytes: *rss_bytes,
        top_n_rank: *top_n_rank,
    }
}

/// A tail row inside a `TopNBatch`: its scan and time are the batch's and
/// the envelope's, so they are left unset rather than repeated per row
/// (documented in process.proto).
fn process_aggregate(row: &ProcessAggregateSample) -> v1::ProcessAggregateSample {
    let ProcessAggregateSample {
        meta,
        scan: _,
        name,
        count,
        cpu_ticks_sum,
        cpu_percent_sum,
        rss_bytes_sum,
        rss_bytes_max,
    } = row;
    v1::ProcessAggregateSample {
        name: name.to_string(),
        count: *count,
        cpu_ticks_sum: *cpu_ticks_sum,
        cpu_percent_sum: *cpu_percent_sum,
        rss_bytes_sum: *rss_bytes_sum,
        rss_bytes_max: *rss_bytes_max,
        scan_id: 0,
        ts_ns: 0,
        event_id: meta.event_id,
    }
}

fn agent_diag(diag: &AgentDiag, cx: &EnvelopeContext) -> v1::AgentDiagEvent {
    v1::AgentDiagEvent {
        module: diag.module.to_string(),
        event_type: diag.event_type.to_string(),
        reason: diag.reason.to_string(),
        ts_ns: diag.meta.ts_ns,
        entity_guid: cx.entity_guid.clone(),
        event_id: diag.meta.event_id,
    }
}

fn security_event(event: &Event, cx: &EnvelopeContext) -> Option<WireMessage> {
    let message = security_event_without_context(event, cx)?;
    let Some(context) = event.context() else { return Some(message) };
    // The context (field 34) from the declaration, appended like a
    // declared detail: one place for every kind.
    let mut fields = ProtoFields::new(PROCESS_CONTEXT.columns);
    context.write_columns(&mut fields);
    let encoded = checked(fields, "process context")?;
    let mut declared = match message {
        WireMessage::Security(envelope) => DeclaredSecurityEvent { envelope, detail: Vec::new() },
        WireMessage::DeclaredSecurity(declared) => declared,
        other => return Some(other),
    };
    length_delimited(PROCESS_CONTEXT_TAG, &encoded.body, &mut declared.detail);
    Some(WireMessage::DeclaredSecurity(declared))
}

fn security_event_without_context(event: &Event, cx: &EnvelopeContext) -> Option<WireMessage> {
    use v1::security_event::Detail;
    let envelope = |process: &ProcessKey, detail: Option<Detail>| v1::SecurityEvent {
        event_id: event.meta().event_id,
        ts_ns: event.meta().ts_ns,
        entity_guid: cx.entity_guid.clone(),
        pid: process.pid,
        start_time_ns: process.start_time_ns,
        detail,
        schema_version: schemas::SECURITY_EVENT_SCHEMA_VERSION.to_owned(),
        ..v1::SecurityEvent::default()
    };
    let message = |process: &ProcessKey, detail: Detail| WireMessage::Security(envelope(process, Some(detail)));
    Some(match event {
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
            let exec = v1::ProcessExec {
                exe: exe.to_string(),
                cmdline: argv.joined(),
                argv: argv.iter().map(str::to_owned).collect(),
                argv_truncated: *argv_truncated,
                attributes: None,
            };
            let mut m = envelope(process, None);
            m.ppid = *ppid;
            m.uid = *uid;
            m.gid = *gid;
            m.cgroup_id = *cgroup_id;
            m.comm = comm.to_string();
            m.exe = exe.to_string();
            match attributes {
                None => {
                    m.detail = Some(Detail::Exec(exec));
                    WireMessage::Security(m)
                }
                Some(attributes) => {
                    // ProcessExec's own fields by prost, then `attributes`
                    // (22) from the declaration; the whole as detail `exec`.
                    let mut fields = ProtoFields::new(EXEC_ATTRIBUTES.columns);
                    attributes.write_columns(&mut fields);
                    let attributes = checked(fields, "process_exec attributes")?;
                    let mut body = exec.encode_to_vec();
                    length_delimited(EXEC_ATTRIBUTES_TAG, &attributes.body, &mut body);
                    let mut detail = Vec::new();
                    length_delimited(EXEC_ATTRIBUTES.detail_tag, &body, &mut detail);
                    WireMessage::DeclaredSecurity(DeclaredSecurityEvent { envelope: m, detail })
                }
            }
        }
        Event::ProcessExit(ProcessExit { meta: _, process, exit_code, cpu_ns, context: _ }) => {
            message(process, Detail::Exit(v1::ProcessExit { exit_code: *exit_code, cpu_ns: *cpu_ns }))
        }
        Event::ProcessFork(ProcessFork { meta: _, parent, child, context: _ }) => message(
            parent,
            Detail::Fork(v1::ProcessFork { child_pid: child.pid, child_start_time_ns: child.start_time_ns }),
        ),
        Event::NetConnect(NetConnect { meta: _, process, protocol, dst_addr, dst_port, result, context: _ }) => {
            message(
                process,
                Detail::NetConnect(v1::NetConnect {
                    protocol: match protocol {
                        Protocol::Tcp => v1::Protocol::Tcp,
                        Protocol::Udp => v1::Protocol::Udp,
                    } as i32,
                    dst_addr: dst_addr.to_string(),
                    dst_port: u32::from(*dst_port),
                    result: *result,
                }),
            )
        }
        Event::FileOpen(FileOpen { meta: _, process, path, flags, context: _ }) => {
            message(process, Detail::FileOpen(v1::FileOpen { path: path.to_string(), flags: *flags }))
        }
        other => {
            let declared = security_kind(other.kind().as_str())?;
            let mut fields = ProtoFields::new(declared.columns);
            if !write_security(other, &mut fields) {
                return None;
            }
            let encoded = checked(fields, declared.kind)?;
            let process = ProcessKey { pid: encoded.pid, start_time_ns: encoded.start_time_ns };
            let mut detail = Vec::new();
            length_delimited(declared.detail_tag, &encoded.body, &mut detail);
            WireMessage::DeclaredSecurity(DeclaredSecurityEvent { envelope: envelope(&process, None), detail })
        }
    })
}

/// Appends field `tag` holding `body` (a message) to `out`.
fn length_delimited(tag: u32, body: &[u8], out: &mut Vec<u8>) {
    pb::encode_key(tag, WireType::LengthDelimited, out);
    pb::encode_varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// The encoded fields of one record, or `None` (logged) when its
/// `write_columns` disagrees with the declaration: a message with a field
/// of the wrong wire type would mislead every reader, so it is not sent.
fn checked(fields: ProtoFields, what: &str) -> Option<Encoded> {
    match fields.finish() {
        Ok(encoded) => Some(encoded),
        Err(reason) => {
            tracing::error!(kind = what, %reason, "cannot encode a security event as protobuf; skipping it");
            None
        }
    }
}

/// What [`ProtoFields`] produced.
struct Encoded {
    /// The message's fields (the detail message's body).
    body: Vec<u8>,
    /// The tag-0 columns `pid` and `start_time_ns`: the envelope's.
    pid: u32,
    start_time_ns: u64,
}

/// A [`ColumnWriter`] encoding each value as the protobuf field its
/// declared column names (tag and type). proto3 implicit presence: a zero,
/// `false` or empty value is not written (readers see the default), as
/// prost's own encoder does. Columns with tag 0 are the acting process's
/// key, carried by the envelope.
struct ProtoFields {
    columns: &'static [Column],
    next: usize,
    body: Vec<u8>,
    pid: u32,
    start_time_ns: u64,
    mismatch: Option<String>,
}

impl ProtoFields {
    fn new(columns: &'static [Column]) -> ProtoFields {
        ProtoFields { columns, next: 0, body: Vec::new(), pid: 0, start_time_ns: 0, mismatch: None }
    }

    /// The next column's tag, if it is declared with type `ty`.
    fn column(&mut self, ty: ColumnType) -> Option<&'static Column> {
        let index = self.next;
        self.next += 1;
        match self.columns.get(index) {
            Some(column) if column.ty == ty => Some(column),
            found => {
                self.mismatch.get_or_insert_with(|| match found {
                    Some(column) => format!("column {index} `{}` is {:?}, written as {ty:?}", column.name, column.ty),
                    None => format!("column {index} written as {ty:?}, past the declaration"),
                });
                None
            }
        }
    }

    fn varint(&mut self, ty: ColumnType, value: u64) {
        if let Some(column) = self.column(ty) {
            match (column.tag, column.name) {
                (0, "pid") => self.pid = value as u32,
                (0, "start_time_ns") => self.start_time_ns = value,
                (0, _) => {}
                (_, _) if value == 0 => {}
                (tag, _) => {
                    pb::encode_key(tag, WireType::Varint, &mut self.body);
                    pb::encode_varint(value, &mut self.body);
                }
            }
        }
    }

    fn text(&mut self, tag: u32, value: &str) {
        pb::encode_key(tag, WireType::LengthDelimited, &mut self.body);
        pb::encode_varint(value.len() as u64, &mut self.body);
        self.body.extend_from_slice(value.as_bytes());
    }

    fn finish(self) -> Result<Encoded, String> {
        if let Some(mismatch) = self.mismatch {
            return Err(mismatch);
        }
        if self.next != self.columns.len() {
            return Err(format!("{} columns written, {} declared", self.next, self.columns.len()));
        }
        Ok(Encoded { body: self.body, pid: self.pid, start_time_ns: self.start_time_ns })
    }
}

impl ColumnWriter for ProtoFields {
    fn u16(&mut self, value: u16) {
        self.varint(ColumnType::U16, u64::from(value));
    }
    fn u32(&mut self, value: u32) {
        self.varint(ColumnType::U32, u64::from(value));
    }
    fn u64(&mut self, value: u64) {
        self.varint(ColumnType::U64, value);
    }
    fn i32(&mut self, value: i32) {
        // int32 is sign-extended to 64 bits on the wire.
        self.varint(ColumnType::I32, i64::from(value) as u64);
    }
    fn i64(&mut self, value: i64) {
        self.varint(ColumnType::I64, value as u64);
    }
    fn bool(&mut self, value: bool) {
        self.varint(ColumnType::Bool, u64::from(value));
    }
    fn str(&mut self, value: &str) {
        if let Some(column) = self.column(ColumnType::Str) {
            if column.tag != 0 && !value.is_empty() {
                self.text(column.tag, value);
            }
        }
    }
    fn str_list(&mut self, values: &mut dyn Iterator<Item = &str>) {
        if let Some(column) = self.column(ColumnType::StrList) {
            if column.tag != 0 {
                for value in values {
                    self.text(column.tag, value);
                }
            }
        }
    }
    fn u64_list(&mut self, values: &[u64]) {
        // Packed (one length-delimited field), as proto3 and prost write a
        // `repeated uint64`; nothing for an empty list.
        if let Some(column) = self.column(ColumnType::U64List) {
            if column.tag != 0 {
                pb::uint64::encode_packed(column.tag, values, &mut self.body);
            }
        }
    }
}

#[cfg(test)]
#[path = "protobuf_tests.rs"]
mod tests;
