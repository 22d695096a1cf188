//! The disk buffer's batch codec: a batch as the spool's Arrow record
//! batches, so a disk edge's payload is the format `hostflow query` and
//! `replay` already read and verify.
//!
//! A batch mixes kinds; each kind present becomes one record batch of its
//! spool schema (`schemas::schema_for`, encoded by
//! `sinks::arrow_spool::encode`, decoded by `sources::replay::decode_batch`)
//! written as an Arrow IPC stream, and a compact order section puts the
//! events back in their original order. Layout (integers little-endian):
//!
//! ```text
//! "HFAB" version:u8 n_events:u32      header (9 bytes)
//! tag:u8 × n_events                   each event's kind, in batch order
//! per kind present, ascending tag:
//!   tag:u8 len:u32 <len bytes>        one Arrow IPC record-batch message
//!                                     of that kind's rows
//! ```
//!
//! A group is the middle of an IPC stream: the schema message before it
//! and the end marker after it are the same for every batch of a kind, so
//! they are not stored (they cost ~3 kB for `process_sample` and ~8 kB for
//! a security kind per group, which made a record of a few events 100×
//! larger than its data). The codec builds each kind's schema message once
//! from `schemas::schema_for` and puts it back in front when decoding;
//! encoding checks that the writer's stream starts with exactly those bytes.
//!
//! A tag is the kind's position in [`TAGS`], which is frozen: buffers on
//! disk outlive an upgrade, so a new kind is appended, never inserted.
//! Every length is checked against the input, and every IPC stream passes
//! `schemas::spool::safe_stream_prefix` (arrow's reader allocates whatever
//! a length declares, and an impossible allocation aborts) before arrow
//! reads it under `catch_unwind`; corrupt input is a [`CodecError`] naming
//! what is wrong, never a panic. The payload
//! carries no checksum: a flipped byte inside a column's values decodes to
//! another value, so the framing around it (the disk buffer's records) has
//! to catch that.

use std::panic::{catch_unwind, AssertUnwindSafe};

use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use pipeline::batch_codec::{BatchCodec, CodecError};
use pipeline::event::{Batch, Event, EventKind};

/// The first bytes of every encoded batch.
const MAGIC: &[u8; 4] = b"HFAB";

/// The layout above; a decoder refuses any other (1 stored whole streams).
const VERSION: u8 = 2;

/// Magic, version, event count.
const HEADER_LEN: usize = 4 + 1 + 4;

/// The end-of-stream marker `StreamWriter::finish` writes.
const END_OF_STREAM: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

/// Each kind's tag is its position here. Frozen: append new kinds only.
pub const TAGS: [&str; 23] = [
    "process_exec",
    "process_exit",
    "process_fork",
    "net_connect",
    "file_open",
    "process_sample",
    "process_aggregate",
    "sketch",
    "agent_diag",
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

/// Encodes batches as the spool's Arrow record batches (see the module
/// docs for the layout). Decoding reads compressed and uncompressed
/// streams alike; only encoding depends on how the codec was built.
#[derive(Clone, Debug)]
pub struct ArrowBatchCodec {
    /// Tag of each kind, by `EventKind::index`.
    tags: [u8; EventKind::ALL.len()],
    /// Kind of each tag (`None`: a name this build has no kind for).
    kinds: [Option<EventKind>; TAGS.len()],
    options: IpcWriteOptions,
    /// Each tag's IPC schema message (the stream's first bytes), built once.
    schema_messages: Vec<Vec<u8>>,
}

impl ArrowBatchCodec {
    /// Uncompressed buffers: the codec for disk edges. For 1 024
    /// `process_sample` events the bench `buffer_codec` measured 105 µs to
    /// encode and 194 µs to decode at 119 bytes/event, against zstd's
    /// 560 µs and 358 µs at 29 bytes/event: a buffer is written on the hot
    /// path and deleted once delivered, so time counts for more than bytes.
    pub fn new() -> ArrowBatchCodec {
        ArrowBatchCodec::with_options(IpcWriteOptions::default())
    }

    /// zstd-compressed buffers, as the spool writes its files: smaller,
    /// slower.
    pub fn zstd() -> Result<ArrowBatchCodec, CodecError> {
        let options = sinks::arrow_spool::ipc_options().map_err(|e| CodecError(format!("zstd: {e}")))?;
        Ok(ArrowBatchCodec::with_options(options))
    }

    fn with_options(options: IpcWriteOptions) -> ArrowBatchCodec {
        let kinds = TAGS.map(EventKind::from_name);
        let mut tags = [u8::MAX; EventKind::ALL.len()];
        for (tag, kind) in kinds.iter().enumerate() {
            if let Some(kind) = kind {
                tags[kind.index()] = tag as u8;
            }
        }
        let schema_messages =
            kinds.iter().map(|kind| kind.map(|k| schema_message(k, &options)).unwrap_or_default()).collect();
        ArrowBatchCodec { tags, kinds, options, schema_messages }
    }

    fn tag(&self, kind: EventKind) -> Result<u8, CodecError> {
        match self.tags[kind.index()] {
            u8::MAX => Err(CodecError(format!("{kind}: no tag in the disk buffer format"))),
            tag => Ok(tag),
        }
    }

    /// Appends `kind`'s events of `batch` as one IPC record-batch message
    /// (the stream without its schema message and end marker).
    fn encode_group(&self, kind: EventKind, tag: u8, batch: &[Event], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let records = sinks::arrow_spool::encode(kind, batch).map_err(|e| CodecError(format!("{kind}: {e}")))?;
        let mut stream = Vec::new();
        let mut writer = StreamWriter::try_new_with_options(&mut stream, &records.schema(), self.options.clone())
            .map_err(|e| CodecError(format!("{kind}: {e}")))?;
        writer.write(&records).map_err(|e| CodecError(format!("{kind}: {e}")))?;
        writer.finish().map_err(|e| CodecError(format!("{kind}: {e}")))?;
        drop(writer);
        let prefix = &self.schema_messages[usize::from(tag)];
        match stream.strip_prefix(prefix.as_slice()).and_then(|rest| rest.strip_suffix(&END_OF_STREAM[..])) {
            Some(message) if !prefix.is_empty() => {
                out.extend_from_slice(message);
                Ok(())
            }
            _ => Err(CodecError(format!("{kind}: the IPC stream does not start with the kind's schema message"))),
        }
    }
}

impl Default for ArrowBatchCodec {
    fn default() -> ArrowBatchCodec {
        ArrowBatchCodec::new()
    }
}

impl BatchCodec for ArrowBatchCodec {
    fn encode(&self, batch: &Batch, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let start = out.len();
        let encoded = self.encode_into(batch, out);
        if encoded.is_err() {
            out.truncate(start); // appends all or nothing
        }
        encoded
    }

    fn decode(&self, bytes: &[u8]) -> Result<Batch, CodecError> {
        self.decode_checked(bytes).map_err(|e| CodecError(format!("disk buffer batch: {e}")))
    }
}

impl ArrowBatchCodec {
    fn encode_into(&self, batch: &Batch, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let n_events =
            u32::try_from(batch.len()).map_err(|_| CodecError(format!("{} events in one batch", batch.len())))?;
        out.reserve(HEADER_LEN + batch.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&n_events.to_le_bytes());
        let mut present = [false; TAGS.len()];
        for event in batch {
            let tag = self.tag(event.kind())?;
            present[usize::from(tag)] = true;
            out.push(tag);
        }
        for (tag, kind) in self.kinds.iter().enumerate().filter(|(tag, _)| present[*tag]) {
            let kind = kind.ok_or_else(|| CodecError(format!("tag {tag} names no kind")))?;
            out.push(tag as u8);
            let len_at = out.len();
            out.extend_from_slice(&[0; 4]);
            self.encode_group(kind, tag as u8, batch, out)?;
            let len = u32::try_from(out.len() - len_at - 4)
                .map_err(|_| CodecError(format!("{kind}: over 4 GiB of Arrow IPC in one batch")))?;
            out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        }
        Ok(())
    }

    fn kind(&self, tag: u8) -> Option<EventKind> {
        self.kinds.get(usize::from(tag)).copied().flatten()
    }

    fn decode_checked(&self, bytes: &[u8]) -> Result<Batch, String> {
        let header =
            bytes.get(..HEADER_LEN).ok_or_else(|| format!("{} bytes, shorter than the header", bytes.len()))?;
        if &header[..4] != MAGIC {
            return Err("no HFAB magic".to_owned());
        }
        if header[4] != VERSION {
            return Err(format!("format version {}, expected {VERSION}", header[4]));
        }
        let n_events = u32::from_le_bytes([header[5], header[6], header[7], header[8]]) as usize;
        let order = bytes
            .get(HEADER_LEN..)
            .and_then(|rest| rest.get(..n_events))
            .ok_or_else(|| format!("the header declares {n_events} events; the order section is cut short"))?;
        let mut counts = [0usize; TAGS.len()];
        for (at, &tag) in order.iter().enumerate() {
            if self.kind(tag).is_none() {
                return Err(format!("event {at} has kind tag {tag}, which names no kind"));
            }
            counts[usize::from(tag)] += 1;
        }
        // The framing first, so a cut or a wrong length is found before
        // any group is decoded.
        let mut framed: Vec<(EventKind, usize, &[u8])> = Vec::new();
        let mut rest = &bytes[HEADER_LEN + n_events..];
        let mut expected = counts.iter().enumerate().filter(|(_, count)| **count > 0).map(|(tag, _)| tag);
        while let Some(&[tag, a, b, c, d]) = rest.get(..5) {
            let kind = self.kind(tag).ok_or_else(|| format!("a group has kind tag {tag}, which names no kind"))?;
            match expected.next() {
                Some(next) if next == usize::from(tag) => {}
                Some(next) if next < usize::from(tag) => {
                    return Err(format!("no group of {}, which the order section names", TAGS[next]));
                }
                _ if counts[usize::from(tag)] == 0 => {
                    return Err(format!("a group of {kind}, which the order section does not name"));
                }
                _ => return Err(format!("the group of {kind} is out of order")),
            }
            let len = u32::from_le_bytes([a, b, c, d]) as usize;
            let stream = rest.get(5..).and_then(|r| r.get(..len)).ok_or_else(|| {
                format!("the {kind} group declares {len} bytes; {} remain", rest.len().saturating_sub(5))
            })?;
            framed.push((kind, usize::from(tag), stream));
            rest = &rest[5 + len..];
        }
        if !rest.is_empty() {
            return Err(format!("{} stray bytes after the last group", rest.len()));
        }
        if let Some(tag) = expected.next() {
            return Err(format!("no group of {}, which the order section names", TAGS[tag]));
        }
        let mut groups: Vec<std::vec::IntoIter<Event>> = (0..TAGS.len()).map(|_| Vec::new().into_iter()).collect();
        for (kind, tag, message) in framed {
            let prefix = &self.schema_messages[tag];
            let mut stream = Vec::with_capacity(prefix.len() + message.len() + END_OF_STREAM.len());
            stream.extend_from_slice(prefix);
            stream.extend_from_slice(message);
            stream.extend_from_slice(&END_OF_STREAM);
            let events = decode_group(kind, &stream)?;
            if events.len() != counts[tag] {
                return Err(format!("{kind}: {} rows, the order section has {}", events.len(), counts[tag]));
            }
            groups[tag] = events.into_iter();
        }
        // Every count matched its group, so each `next` has an event.
        Ok(order.iter().filter_map(|&tag| groups[usize::from(tag)].next()).collect())
    }
}

/// `kind`'s IPC schema message: a stream of no batches, less its end marker.
fn schema_message(kind: EventKind, options: &IpcWriteOptions) -> Vec<u8> {
    let Some(schema) = schemas::schema_for(kind.as_str()) else { return Vec::new() };
    let mut stream = Vec::new();
    let written = StreamWriter::try_new_with_options(&mut stream, &schema, options.clone())
        .and_then(|mut writer| writer.finish());
    match written {
        Ok(()) => stream.strip_suffix(&END_OF_STREAM[..]).map(<[u8]>::to_vec).unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// One group's IPC stream → its events, in their original order.
fn decode_group(kind: EventKind, stream: &[u8]) -> Result<Vec<Event>, String> {
    let schema = schemas::schema_for(kind.as_str()).ok_or_else(|| format!("{kind}: no Arrow schema"))?;
    // Only a stream whose every declared length was checked reaches
    // arrow's reader: a corrupt length would make it allocate what the
    // length says, and an impossible allocation aborts the process.
    let (safe, batches) =
        schemas::spool::safe_stream_prefix(stream, &schema, false).map_err(|e| format!("{kind}: {e}"))?;
    if batches != 1 || stream.get(safe..) != Some(&END_OF_STREAM[..]) {
        return Err(format!("{kind}: the IPC stream is not one sound record batch and its end marker"));
    }
    // Arrow's decoder asserts on some malformed buffers rather than
    // returning an error (see sinks' arrow_spool recovery).
    let read = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<Event>, String> {
        let mut reader = StreamReader::try_new(&stream[..safe], None).map_err(|e| e.to_string())?;
        if reader.schema().fields() != schema.fields() {
            return Err("schema differs from this kind's schema".to_owned());
        }
        let records = reader.next().ok_or("no record batch")?.map_err(|e| e.to_string())?;
        sources::replay::decode_batch(kind, &records).map_err(|e| e.to_string())
    }));
    read.unwrap_or_else(|_| Err("arrow's reader panicked on the IPC stream".to_owned()))
        .map_err(|e| format!("{kind}: {e}"))
}

#[cfg(test)]
mod tests {
    use pipeline::event::columns::{sample_exec_attributes, security_samples};
    use pipeline::event::context::sample_context;
    use pipeline::event::*;
    use pipeline::sketch::LogSketch;

    use super::*;

    fn meta(id: u64) -> EventMeta {
        EventMeta { ts_ns: 1_000 + id, event_id: id }
    }

    fn key(pid: u32) -> ProcessKey {
        ProcessKey { pid, start_time_ns: u64::from(pid) * 10 }
    }

    /// One event of each kind that is not a security kind, ids from
    /// `first`, values off their defaults; with `context`, every
    /// process-bearing one carries the sample context.
    fn process_kinds(first: u64, context: bool) -> Vec<Event> {
        let ctx = context.then(sample_context);
        let mut sketch = LogSketch::default();
        for v in [0.0, 1.5, -2.0, 300.0] {
            sketch.add(v);
        }
        let scan = ScanInfo { scan_id: 4, scan_size: 2 };
        vec![
            Event::ProcessExec(ProcessExec {
                context: ctx.clone(),
                meta: meta(first),
                process: key(100),
                ppid: 1,
                uid: 1000,
                gid: 100,
                cgroup_id: 0x1_0000_0000,
                comm: "bash".into(),
                exe: "/bin/bash".into(),
                argv: Argv::from_args(if context { &["bash", "-l", "a b", ""][..] } else { &[][..] }),
                argv_truncated: !context,
                attributes: context.then(sample_exec_attributes),
            }),
            Event::ProcessExit(ProcessExit {
                context: ctx.clone(),
                meta: meta(first + 1),
                process: key(101),
                exit_code: -3,
                cpu_ns: 7,
            }),
            Event::ProcessFork(ProcessFork {
                context: ctx.clone(),
                meta: meta(first + 2),
                parent: key(1),
                child: key(200),
            }),
            Event::NetConnect(NetConnect {
                context: ctx.clone(),
                meta: meta(first + 3),
                process: key(7),
                protocol: Protocol::Udp,
                dst_addr: "::1".parse().expect("addr"),
                dst_port: 53,
                result: context.then_some(-115),
            }),
            Event::FileOpen(FileOpen {
                context: ctx,
                meta: meta(first + 4),
                process: key(8),
                path: "/etc/hosts".into(),
                flags: 2,
            }),
            Event::ProcessSample(ProcessSample {
                meta: meta(first + 5),
                process: key(9),
                scan,
                ppid: 1,
                uid: 0,
                name: "bash".into(),
                cmdline: "x \"y\"".into(),
                state: b'S',
                threads: 3,
                cpu_ticks: 17,
                cpu_percent: 1.25,
                rss_bytes: 4096,
                top_n_rank: 1,
            }),
            Event::ProcessAggregate(ProcessAggregateSample {
                meta: meta(first + 6),
                scan,
                name: "bash".into(),
                count: 2,
                cpu_ticks_sum: 5,
                cpu_percent_sum: 0.5,
                rss_bytes_sum: 10,
                rss_bytes_max: 7,
            }),
            Event::Sketch(SketchEvent {
                meta: meta(first + 7),
                metric_name: "process.cpu_percent".into(),
                key: "*".into(),
                window_start_ns: 1,
                window_end_ns: 2,
                sketch,
            }),
            Event::AgentDiag(AgentDiag {
                meta: meta(first + 8),
                module: "spool".into(),
                event_type: "t".into(),
                reason: "r".into(),
            }),
            Event::ProcessEphemeral(ProcessEphemeralSummary {
                meta: meta(first + 9),
                window_start_ns: 0,
                window_end_ns: 1_000 + first + 9,
                name: "(other)".into(),
                count: 3,
                cpu_ns: u64::MAX,
            }),
        ]
    }

    /// Two events of every kind (with and without context), interleaved.
    fn every_kind() -> Batch {
        let mut events = process_kinds(0, true);
        events.extend(security_samples(100));
        events.extend(process_kinds(20, false));
        events.extend(security_samples(200));
        events
    }

    fn codecs() -> [ArrowBatchCodec; 2] {
        [ArrowBatchCodec::new(), ArrowBatchCodec::zstd().expect("zstd")]
    }

    fn encoded(codec: &ArrowBatchCodec, batch: &Batch) -> Vec<u8> {
        let mut out = Vec::new();
        codec.encode(batch, &mut out).expect("encode");
        out
    }

    #[test]
    fn a_small_batch_costs_its_data_not_a_schema() {
        let codec = ArrowBatchCodec::new();
        let batch: Batch = process_kinds(0, false).into_iter().take(1).collect();
        let bytes = encoded(&codec, &batch);
        let schema = &codec.schema_messages[usize::from(codec.tag(batch[0].kind()).expect("tag"))];
        assert!(schema.len() > 1000, "a schema message of {} bytes", schema.len());
        assert!(!bytes.windows(schema.len()).any(|w| w == schema.as_slice()), "the schema message is not stored");
        assert_eq!(codec.decode(&bytes).expect("decodes"), batch);
    }

    #[test]
    fn every_kind_has_one_tag() {
        let codec = ArrowBatchCodec::new();
        let mut tags: Vec<u8> = EventKind::ALL.iter().map(|&kind| codec.tag(kind).expect("tagged")).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), EventKind::ALL.len(), "one distinct tag per kind");
        assert!(TAGS.iter().all(|name| schemas::KINDS.contains(name)), "every tag names a spool kind");
    }

    #[test]
    fn a_mixed_batch_of_every_kind_round_trips_exactly() {
        let batch = every_kind();
        let mut kinds: Vec<EventKind> = batch.iter().map(Event::kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds, EventKind::ALL.to_vec(), "the fixture holds every kind");
        for codec in codecs() {
            let bytes = encoded(&codec, &batch);
            assert_eq!(codec.decode(&bytes).expect("decode"), batch);
        }
    }

    #[test]
    fn an_interleaved_batch_keeps_its_order() {
        // 300 events in a fixed shuffle of kinds; ids grow with position.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let batch: Batch = (0..300u64)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let mut pool = process_kinds(i * 100, i % 2 == 0);
                pool.extend(security_samples(i * 100 + 50));
                pool.swap_remove((state % pool.len() as u64) as usize)
            })
            .collect();
        let decoded = ArrowBatchCodec::new().decode(&encoded(&ArrowBatchCodec::new(), &batch)).expect("decode");
        let ids: Vec<u64> = decoded.iter().map(|e| e.meta().event_id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in batch order");
        assert!(batch.windows(2).filter(|w| w[0].kind() != w[1].kind()).count() > 250, "interleaved");
        assert_eq!(decoded, batch);
    }

    #[test]
    fn an_empty_batch_is_its_header_and_encode_appends() {
        let codec = ArrowBatchCodec::new();
        let mut out = b"before".to_vec();
        codec.encode(&Vec::new(), &mut out).expect("encode");
        assert_eq!(&out[..6], b"before");
        assert_eq!(&out[6..], b"HFAB\x02\0\0\0\0");
        assert_eq!(codec.decode(&out[6..]).expect("decode"), Vec::new());
        let batch = process_kinds(0, false);
        codec.encode(&batch, &mut out).expect("encode");
        assert_eq!(codec.decode(&out[6 + HEADER_LEN..]).expect("decode"), batch);
    }

    /// Decodes `bytes`, failing the test if decode itself unwinds.
    fn decode_must_not_panic(codec: &ArrowBatchCodec, bytes: &[u8], what: &str) -> Result<Batch, CodecError> {
        catch_unwind(AssertUnwindSafe(|| codec.decode(bytes))).unwrap_or_else(|_| panic!("decode panicked: {what}"))
    }

    /// Offsets of each group's `len` field in an encoded batch.
    fn length_fields(bytes: &[u8]) -> Vec<usize> {
        let n = u32::from_le_bytes(bytes[5..9].try_into().expect("4 bytes")) as usize;
        let mut at = HEADER_LEN + n;
        let mut fields = Vec::new();
        while at < bytes.len() {
            fields.push(at + 1);
            at += 5 + u32::from_le_bytes(bytes[at + 1..at + 5].try_into().expect("4 bytes")) as usize;
        }
        fields
    }

    #[test]
    fn truncated_flipped_or_mislengthed_input_is_an_error() {
        for codec in codecs() {
            let batch = every_kind();
            let bytes = encoded(&codec, &batch);
            for cut in (0..bytes.len()).step_by(7) {
                let decoded = decode_must_not_panic(&codec, &bytes[..cut], &format!("cut at {cut}"));
                assert!(decoded.is_err(), "cut at {cut} of {}", bytes.len());
            }
            // The header and the order section: every byte, three ways.
            for at in 0..HEADER_LEN + batch.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut corrupt = bytes.clone();
                    corrupt[at] ^= flip;
                    let decoded = decode_must_not_panic(&codec, &corrupt, &format!("byte {at} ^ {flip:#x}"));
                    assert!(decoded.is_err(), "byte {at} ^ {flip:#x}");
                }
            }
            let fields = length_fields(&bytes);
            assert_eq!(fields.len(), EventKind::ALL.len(), "one group per kind");
            for at in fields {
                let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
                for wrong in [len - 1, len + 1, len - 8, len + 8, 0, u32::MAX] {
                    let mut corrupt = bytes.clone();
                    corrupt[at..at + 4].copy_from_slice(&wrong.to_le_bytes());
                    let decoded = decode_must_not_panic(&codec, &corrupt, &format!("length {wrong} at {at}"));
                    assert!(decoded.is_err(), "length {wrong} instead of {len} at {at}");
                }
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(codec.decode(&longer).is_err(), "a stray byte after the last group");
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let codec = ArrowBatchCodec::new();
        let bytes = encoded(&codec, &process_kinds(0, true));
        let message = |bytes: &[u8]| codec.decode(bytes).expect_err("corrupt").0;
        assert_eq!(message(&bytes[..4]), "disk buffer batch: 4 bytes, shorter than the header");
        assert_eq!(message(b"HFAB\x01\0\0\0\0"), "disk buffer batch: format version 1, expected 2");
        let mut two_execs = bytes.clone();
        two_execs[HEADER_LEN + 1] = two_execs[HEADER_LEN];
        assert_eq!(
            message(&two_execs),
            "disk buffer batch: a group of process_exit, which the order section does not name"
        );
        // An order section spliced before the groups of another batch.
        let [exec, exit, fork] = [0, 1, 2].map(|at| process_kinds(0, true).swap_remove(at));
        let splice = |order_of: Batch, groups_of: Batch| {
            let mut spliced = encoded(&codec, &order_of);
            spliced.truncate(HEADER_LEN + order_of.len());
            spliced.extend_from_slice(&encoded(&codec, &groups_of)[HEADER_LEN + groups_of.len()..]);
            message(&spliced)
        };
        let no_exit = splice(vec![exec.clone(), exit, fork.clone()], vec![exec.clone(), fork]);
        assert_eq!(no_exit, "disk buffer batch: no group of process_exit, which the order section names");
        let one_exec = splice(vec![exec.clone(), exec.clone()], vec![exec]);
        assert_eq!(one_exec, "disk buffer batch: process_exec: 1 rows, the order section has 2");
        let mut unknown = bytes.clone();
        unknown[HEADER_LEN + 3] = 200;
        assert_eq!(message(&unknown), "disk buffer batch: event 3 has kind tag 200, which names no kind");
        assert!(
            message(&bytes[..bytes.len() - 3]).starts_with("disk buffer batch: the process_ephemeral group declares")
        );
    }

    /// A single-byte change anywhere (every third byte: each decode of
    /// these 30 kB takes ~0.15 ms) decodes or is refused;
    /// none escapes as a panic (values inside a column may decode
    /// changed: the format has no checksum).
    #[test]
    fn no_single_byte_corruption_panics() {
        for codec in codecs() {
            // An exec with attributes, context and argv (list columns), a
            // sketch (lists, floats) and a security kind.
            let mut batch = process_kinds(0, true);
            batch.retain(|e| matches!(e.kind(), EventKind::ProcessExec | EventKind::Sketch));
            batch.push(security_samples(100).swap_remove(1));
            let bytes = encoded(&codec, &batch);
            let mut refused = 0;
            for at in (0..bytes.len()).step_by(3) {
                let mut corrupt = bytes.clone();
                corrupt[at] ^= 0xff;
                refused += usize::from(decode_must_not_panic(&codec, &corrupt, &format!("byte {at}")).is_err());
            }
            assert!(refused > bytes.len() / 6, "refused {refused} of {}", bytes.len() / 3);
        }
    }
}
