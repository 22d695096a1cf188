//! Round trips of every event kind through the protobuf wire contracts.

use std::net::IpAddr;
use std::sync::Arc;

use pipeline::event::{
    AgentDiag, Argv, EventMeta, FileOpen, NetConnect, ProcessAggregateSample, ProcessEphemeralSummary, ProcessExec,
    ProcessExit, ProcessFork, ProcessSample, Protocol, ScanInfo, SketchEvent,
};
use pipeline::sketch::LogSketch;
use pipeline::{Event, ProcessKey};
use schemas::prost::Message as _;
use schemas::v1;

use super::*;
use crate::protobuf_sketch::{sketch_envelope, sketch_from_envelope, SketchDecodeError};

fn cx() -> EnvelopeContext {
    EnvelopeContext { entity_guid: "host-guid-1".to_owned(), host: "web-1".to_owned() }
}

fn sample(scan_id: u64, pid: u32, rank: u32, ticks: u64) -> Event {
    Event::ProcessSample(ProcessSample {
        meta: EventMeta { ts_ns: 1_000 + scan_id, event_id: u64::from(pid) },
        process: ProcessKey { pid, start_time_ns: 77 },
        scan: ScanInfo { scan_id, scan_size: 5 },
        ppid: 1,
        uid: 1000,
        name: Arc::from("nginx"),
        cmdline: Arc::from("nginx -g daemon off;"),
        state: b'R',
        threads: 4,
        cpu_ticks: ticks,
        cpu_percent: ticks as f64,
        rss_bytes: 1 << 20,
        top_n_rank: rank,
    })
}

fn aggregate(scan_id: u64, name: &str, count: u32, ticks: u64) -> Event {
    Event::ProcessAggregate(ProcessAggregateSample {
        meta: EventMeta { ts_ns: 1_000 + scan_id, event_id: 900 + u64::from(count) },
        scan: ScanInfo { scan_id, scan_size: 5 },
        name: Arc::from(name),
        count,
        cpu_ticks_sum: ticks,
        cpu_percent_sum: ticks as f64,
        rss_bytes_sum: 3 << 20,
        rss_bytes_max: 2 << 20,
    })
}

/// Encodes to bytes and decodes them again, as a consumer would.
fn round_trip(message: &WireMessage) -> WireMessage {
    let bytes = message.encode_to_vec();
    match message {
        WireMessage::Process(_) => WireMessage::Process(v1::ProcessEnvelope::decode(&*bytes).expect("decodes")),
        WireMessage::Sketch(_) => WireMessage::Sketch(v1::SketchEnvelope::decode(&*bytes).expect("decodes")),
        WireMessage::Diag(_) => WireMessage::Diag(v1::AgentDiagEvent::decode(&*bytes).expect("decodes")),
        WireMessage::Security(_) | WireMessage::DeclaredSecurity(_) => {
            WireMessage::Security(v1::SecurityEvent::decode(&*bytes).expect("decodes"))
        }
    }
}

#[test]
fn one_envelope_per_scan_with_ranked_rows_first() {
    let events = vec![
        sample(1, 11, 2, 30),
        sample(1, 10, 1, 50),
        aggregate(1, "bash", 2, 15),
        aggregate(1, "sshd", 1, 5),
        sample(2, 10, 0, 4),
    ];
    let messages = encode_batch(&events, &cx());
    assert_eq!(messages.len(), 2);
    for message in &messages {
        assert_eq!(&round_trip(message), message, "lossless through bytes");
    }
    let WireMessage::Process(first) = &messages[0] else { panic!("{:?}", messages[0]) };
    assert_eq!(first.schema_version, "2.2");
    assert_eq!((first.entity_guid.as_str(), first.host.as_str(), first.ts_ns), ("host-guid-1", "web-1", 1_001));
    let Some(v1::process_envelope::Payload::TopNBatch(batch)) = &first.payload else { panic!("payload") };
    assert_eq!((batch.scan_id, batch.scan_size, batch.n), (1, 5, 2));
    assert_eq!(batch.top_n.iter().map(|r| (r.top_n_rank, r.pid)).collect::<Vec<_>>(), vec![(1, 10), (2, 11)]);
    assert_eq!(batch.capture_ratio, 80.0 / 100.0);
    let row = &batch.top_n[0];
    assert_eq!((row.name.as_str(), row.cmdline.as_str(), row.state.as_str()), ("nginx", "nginx -g daemon off;", "R"));
    assert_eq!((row.start_time_ns, row.threads, row.rss_bytes, row.cpu_ticks), (77, 4, 1 << 20, 50));
    assert_eq!(
        batch.tail.iter().map(|t| (t.name.as_str(), t.count)).collect::<Vec<_>>(),
        vec![("bash", 2), ("sshd", 1)]
    );
    assert_eq!((batch.tail[0].rss_bytes_sum, batch.tail[0].rss_bytes_max), (3 << 20, 2 << 20));
    assert_eq!((batch.tail[0].scan_id, batch.tail[0].ts_ns), (0, 0), "the batch's, not repeated per row");
    let WireMessage::Process(second) = &messages[1] else { panic!("{:?}", messages[1]) };
    let Some(v1::process_envelope::Payload::TopNBatch(raw)) = &second.payload else { panic!("payload") };
    assert_eq!((raw.n, raw.top_n.len(), raw.top_n[0].top_n_rank), (0, 1, 0), "raw rows travel unranked");
}

#[test]
fn security_and_diag_events_round_trip() {
    let meta = EventMeta { ts_ns: 5, event_id: 6 };
    let process = ProcessKey { pid: 42, start_time_ns: 9 };
    let events = vec![
        Event::ProcessExec(ProcessExec {
            context: None,
            meta,
            process,
            ppid: 1,
            uid: 0,
            gid: 27,
            cgroup_id: 4242,
            comm: Arc::from("curl"),
            exe: Arc::from("/usr/bin/curl"),
            argv: Argv::from_args(["curl", "-H", "X-A: b", "example.org"]),
            argv_truncated: true,
            attributes: None,
        }),
        Event::ProcessExit(ProcessExit { context: None, meta, process, exit_code: -9, cpu_ns: 3_000_000 }),
        Event::ProcessFork(ProcessFork {
            context: None,
            meta,
            parent: process,
            child: ProcessKey { pid: 43, start_time_ns: 10 },
        }),
        Event::NetConnect(NetConnect {
            context: None,
            meta,
            process,
            protocol: Protocol::Udp,
            dst_addr: IpAddr::from([192, 0, 2, 1]),
            dst_port: 53,
            result: Some(-111),
        }),
        Event::FileOpen(FileOpen { context: None, meta, process, path: Arc::from("/etc/shadow"), flags: 2 }),
        Event::AgentDiag(AgentDiag {
            meta,
            module: Arc::from("ebpf"),
            event_type: Arc::from("fallback"),
            reason: Arc::from("no BTF"),
        }),
    ];
    let messages = encode_batch(&events, &cx());
    assert_eq!(messages.len(), 6);
    for message in &messages {
        assert_eq!(&round_trip(message), message);
    }
    let WireMessage::Security(exec) = &messages[0] else { panic!() };
    assert_eq!((exec.pid, exec.ppid, exec.comm.as_str(), exec.exe.as_str()), (42, 1, "curl", "/usr/bin/curl"));
    assert_eq!((exec.gid, exec.cgroup_id, exec.schema_version.as_str()), (27, 4242, "1.5"));
    let Some(v1::security_event::Detail::Exec(detail)) = &exec.detail else { panic!() };
    assert_eq!(detail.argv, ["curl", "-H", "X-A: b", "example.org"], "each argument exactly");
    assert_eq!((detail.cmdline.as_str(), detail.argv_truncated), ("curl -H X-A: b example.org", true));
    let WireMessage::Security(exit) = &messages[1] else { panic!() };
    let Some(v1::security_event::Detail::Exit(detail)) = &exit.detail else { panic!() };
    assert_eq!((detail.exit_code, detail.cpu_ns), (-9, 3_000_000));
    let WireMessage::Security(connect) = &messages[3] else { panic!() };
    let Some(v1::security_event::Detail::NetConnect(detail)) = &connect.detail else { panic!() };
    assert_eq!(
        (detail.protocol, detail.dst_addr.as_str(), detail.dst_port, detail.result),
        (v1::Protocol::Udp as i32, "192.0.2.1", 53, Some(-111))
    );
    let WireMessage::Diag(diag) = &messages[5] else { panic!() };
    assert_eq!((diag.module.as_str(), diag.reason.as_str(), diag.event_id), ("ebpf", "no BTF", 6));
}

fn ephemeral(window: (u64, u64), name: &str, event_id: u64) -> Event {
    Event::ProcessEphemeral(ProcessEphemeralSummary {
        meta: EventMeta { ts_ns: window.1, event_id },
        window_start_ns: window.0,
        window_end_ns: window.1,
        name: Arc::from(name),
        count: event_id * 10,
        cpu_ns: event_id * 1_000,
    })
}

#[test]
fn ephemeral_rows_of_one_interval_share_an_envelope() {
    let events = vec![
        ephemeral((0, 10), "curl", 1),
        ephemeral((0, 10), "true", 2),
        sample(1, 10, 1, 50),
        ephemeral((10, 20), "true", 3),
        ephemeral((20, 30), "true", 4),
    ];
    let messages = encode_batch(&events, &cx());
    assert_eq!(messages.len(), 4, "two rows of (0, 10), a scan, (10, 20), (20, 30)");
    for message in &messages {
        assert_eq!(&round_trip(message), message, "lossless through bytes");
    }
    let WireMessage::Process(first) = &messages[0] else { panic!("{:?}", messages[0]) };
    assert_eq!((first.schema_version.as_str(), first.ts_ns, first.host.as_str()), ("2.2", 10, "web-1"));
    let Some(v1::process_envelope::Payload::EphemeralBatch(batch)) = &first.payload else { panic!("payload") };
    assert_eq!((batch.window_start_ns, batch.window_end_ns), (0, 10));
    let rows: Vec<_> = batch.rows.iter().map(|r| (r.name.as_str(), r.count, r.cpu_ns, r.event_id)).collect();
    assert_eq!(rows, [("curl", 10, 1_000, 1), ("true", 20, 2_000, 2)]);
    assert!(
        matches!(&messages[1], WireMessage::Process(m) if matches!(m.payload, Some(v1::process_envelope::Payload::TopNBatch(_))))
    );
}

fn sketch_of(values: impl IntoIterator<Item = f64>) -> LogSketch {
    let mut sketch = LogSketch::default();
    for value in values {
        sketch.add(value);
    }
    sketch
}

fn sketch_event(sketch: LogSketch) -> SketchEvent {
    SketchEvent {
        meta: EventMeta { ts_ns: 60, event_id: 1 },
        metric_name: Arc::from("process.rss_bytes"),
        key: Arc::from("nginx"),
        window_start_ns: 1,
        window_end_ns: 60,
        sketch,
    }
}

#[test]
fn sketches_round_trip_with_identical_quantiles() {
    // Lognormal-ish values, zeros and negatives: every store is exercised.
    let mut x = 0x1234_5678u64;
    let values: Vec<f64> = (0..5000)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = ((x % 10_000) as f64 / 1000.0).exp();
            match i % 50 {
                0 => 0.0,
                1 => -v,
                _ => v,
            }
        })
        .collect();
    let original = sketch_of(values);
    let messages = encode_batch(&[Event::Sketch(sketch_event(original.clone()))], &cx());
    let WireMessage::Sketch(envelope) = round_trip(&messages[0]) else { panic!() };
    assert_eq!(envelope.sketch_version, 1);
    assert_eq!(
        (envelope.metric_name.as_str(), envelope.key.as_str(), envelope.count),
        ("process.rss_bytes", "nginx", 5000)
    );
    let decoded = sketch_from_envelope(&envelope).expect("rebuilds");
    assert_eq!(decoded, original, "bins, counts, sum, min and max survive");
    for q in [0.0, 0.5, 0.95, 0.99, 1.0] {
        assert_eq!(decoded.quantile(q), original.quantile(q), "q{q}");
    }
}

#[test]
fn sparse_bins_from_other_writers_decode_to_the_same_sketch() {
    let original = sketch_of([1.0, 2.0, 2.0, 3.5, 1000.0]);
    let mut envelope = sketch_envelope(&sketch_event(original.clone()), &cx());
    let histogram = envelope.histogram.as_mut().expect("histogram");
    let store = histogram.positive_values.as_mut().expect("store");
    // Rewrite the contiguous run as DataDog's sparse map, split across both layouts.
    let offset = store.contiguous_bin_index_offset;
    let counts = std::mem::take(&mut store.contiguous_bin_counts);
    let (dense_part, sparse_part) = counts.split_at(counts.len() / 2);
    store.contiguous_bin_counts = dense_part.to_vec();
    for (i, count) in sparse_part.iter().enumerate() {
        if *count > 0.0 {
            store.bin_counts.insert(offset + (dense_part.len() + i) as i32, *count);
        }
    }
    assert_eq!(sketch_from_envelope(&envelope).expect("decodes"), original);

    store_mut(&mut envelope).contiguous_bin_counts[0] = 1.5;
    assert!(matches!(sketch_from_envelope(&envelope), Err(SketchDecodeError::BadCount(_))));
    store_mut(&mut envelope).contiguous_bin_counts[0] = 2f64.powi(64);
    assert!(matches!(sketch_from_envelope(&envelope), Err(SketchDecodeError::BadCount(_))), "2^64 is not a u64");
    store_mut(&mut envelope).contiguous_bin_counts = vec![2f64.powi(63), 2f64.powi(63)];
    assert!(matches!(sketch_from_envelope(&envelope), Err(SketchDecodeError::CountOverflow)));
    let far_apart = store_mut(&mut envelope);
    far_apart.contiguous_bin_counts.clear();
    far_apart.bin_counts = [(i32::MIN, 1.0), (i32::MAX, 1.0)].into_iter().collect();
    assert!(matches!(sketch_from_envelope(&envelope), Err(SketchDecodeError::TooWide)), "no 4-billion-bin allocation");
    envelope.histogram = None;
    assert!(matches!(sketch_from_envelope(&envelope), Err(SketchDecodeError::MissingHistogram)));
}

fn store_mut(envelope: &mut v1::SketchEnvelope) -> &mut v1::Store {
    envelope.histogram.as_mut().and_then(|h| h.positive_values.as_mut()).expect("store")
}
