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

use pipeline::event::{
    AgentDiag, FileOpen, NetConnect, ProcessAggregateSample, ProcessEphemeralSummary, ProcessExec, ProcessExit,
    ProcessFork, ProcessSample, Protocol,
};
use pipeline::{Event, ProcessKey};
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
}

impl WireMessage {
    /// The protobuf bytes.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        use schemas::prost::Message as _;
        match self {
            WireMessage::Process(m) => m.encode_to_vec(),
            WireMessage::Sketch(m) => m.encode_to_vec(),
            WireMessage::Diag(m) => m.encode_to_vec(),
            WireMessage::Security(m) => m.encode_to_vec(),
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
                    messages.push(WireMessage::Security(security));
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

fn security_event(event: &Event, cx: &EnvelopeContext) -> Option<v1::SecurityEvent> {
    use v1::security_event::Detail;
    let message = |process: &ProcessKey, detail: Detail| v1::SecurityEvent {
        event_id: event.meta().event_id,
        ts_ns: event.meta().ts_ns,
        entity_guid: cx.entity_guid.clone(),
        pid: process.pid,
        start_time_ns: process.start_time_ns,
        detail: Some(detail),
        schema_version: schemas::SECURITY_EVENT_SCHEMA_VERSION.to_owned(),
        ..v1::SecurityEvent::default()
    };
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
        }) => {
            let exec = v1::ProcessExec {
                exe: exe.to_string(),
                cmdline: argv.joined(),
                argv: argv.iter().map(str::to_owned).collect(),
                argv_truncated: *argv_truncated,
            };
            let mut m = message(process, Detail::Exec(exec));
            m.ppid = *ppid;
            m.uid = *uid;
            m.gid = *gid;
            m.cgroup_id = *cgroup_id;
            m.comm = comm.to_string();
            m.exe = exe.to_string();
            m
        }
        Event::ProcessExit(ProcessExit { meta: _, process, exit_code, cpu_ns }) => {
            message(process, Detail::Exit(v1::ProcessExit { exit_code: *exit_code, cpu_ns: *cpu_ns }))
        }
        Event::ProcessFork(ProcessFork { meta: _, parent, child }) => message(
            parent,
            Detail::Fork(v1::ProcessFork { child_pid: child.pid, child_start_time_ns: child.start_time_ns }),
        ),
        Event::NetConnect(NetConnect { meta: _, process, protocol, dst_addr, dst_port, result }) => message(
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
        ),
        Event::FileOpen(FileOpen { meta: _, process, path, flags }) => {
            message(process, Detail::FileOpen(v1::FileOpen { path: path.to_string(), flags: *flags }))
        }
        _ => return None,
    })
}

#[cfg(test)]
#[path = "protobuf_tests.rs"]
mod tests;
