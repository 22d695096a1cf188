//! Round-trip, unknown-field and DataDog wire-compatibility tests of the
//! generated prost types.

use std::collections::BTreeMap;

use prost::Message;

use super::v1::{
    index_mapping::Interpolation, process_envelope::Payload, security_event::Detail, AgentDiagEvent, Confidence,
    DdSketch, Detection, EphemeralBatch, FileOpen, IndexMapping, Layer, NetConnect, ProcessAggregateSample,
    ProcessEnvelope, ProcessEphemeralSummary, ProcessExec, ProcessExit, ProcessFork, ProcessSample, Protocol,
    SecurityEvent, SketchEnvelope, Store, TopNBatch,
};
use super::{PROCESS_ENVELOPE_SCHEMA_VERSION, SECURITY_EVENT_SCHEMA_VERSION, SKETCH_VERSION};

const GUID: &str = "MTIzNDU2fElORlJBfE5BfDQ0MjE";

/// What a later version of a contract might add: fields this build does not
/// know, at tags above the frozen range.
#[derive(Clone, PartialEq, Message)]
struct LaterFields {
    #[prost(string, tag = "95")]
    note: String,
    #[prost(uint64, tag = "96")]
    counter: u64,
    #[prost(message, optional, tag = "97")]
    nested: Option<Store>,
}

fn later_fields() -> LaterFields {
    LaterFields { note: "added in a later version".to_owned(), counter: 1 << 40, nested: Some(contiguous_store()) }
}

/// Encodes, decodes, and checks that nothing changed; then appends fields of
/// a later version (tags 95–97) and checks that they are skipped.
fn check<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) {
    let bytes = message.encode_to_vec();
    assert_eq!(bytes.len(), message.encoded_len());
    let decoded = M::decode(bytes.as_slice()).expect("decodes what it encoded");
    assert_eq!(&decoded, message);

    // Protobuf messages concatenate: the extra tags land in the same message.
    let mut newer = bytes.clone();
    later_fields().encode(&mut newer).expect("a Vec grows as needed");
    assert!(newer.len() > bytes.len());
    let tolerant = M::decode(newer.as_slice()).expect("unknown fields are skipped, not an error");
    assert_eq!(&tolerant, message, "unknown fields leave known ones untouched");
    assert_eq!(tolerant.encode_to_vec(), bytes, "prost drops unknown fields on re-encode");
}

fn sample(rank: u32, pid: u32, name: &str, cpu_ticks: u64, rss_bytes: u64) -> ProcessSample {
    ProcessSample {
        event_id: (1 << 48) | u64::from(pid),
        ts_ns: 1_732_000_000_123_456_789,
        pid,
        start_time_ns: 8_812_340_000_000,
        ppid: 1,
        uid: 1000,
        name: name.to_owned(),
        cmdline: format!("/usr/bin/{name} --config /etc/{name}.conf"),
        state: "R".to_owned(),
        threads: 12,
        cpu_ticks,
        cpu_percent: cpu_ticks as f64 * 100.0 / 1000.0,
        rss_bytes,
        top_n_rank: rank,
    }
}

fn process_envelope() -> ProcessEnvelope {
    ProcessEnvelope {
        entity_guid: GUID.to_owned(),
        schema_version: PROCESS_ENVELOPE_SCHEMA_VERSION.to_owned(),
        ts_ns: 1_732_000_000_200_000_000,
        host: "web-01.example.internal".to_owned(),
        payload: Some(Payload::TopNBatch(TopNBatch {
            scan_id: 4242,
            scan_size: 317,
            n: 2,
            capture_ratio: 0.8125,
            top_n: vec![sample(1, 2231, "postgres", 410, 512 << 20), sample(2, 90_001, "nginx: worker", 77, 48 << 20)],
            tail: vec![ProcessAggregateSample {
                name: "kworker/u4:2".to_owned(),
                count: 41,
                cpu_ticks_sum: 9,
                cpu_percent_sum: 0.9,
                rss_bytes_sum: 0,
                rss_bytes_max: 0,
                scan_id: 4242,
                ts_ns: 1_732_000_000_123_456_789,
                event_id: (1 << 48) | 99_999,
            }],
        })),
    }
}

/// Bins o, o+1, … encoded contiguously.
fn contiguous_store() -> Store {
    Store {
        bin_counts: BTreeMap::new(),
        contiguous_bin_counts: vec![3.0, 0.0, 17.0, 1.0],
        contiguous_bin_index_offset: -5,
    }
}

fn sketch_envelope() -> SketchEnvelope {
    let gamma = 2f64.powf(1.0 / 64.0);
    SketchEnvelope {
        metric_name: "process_cpu_percent".to_owned(),
        gamma,
        sketch_version: SKETCH_VERSION,
        histogram: Some(DdSketch {
            mapping: Some(IndexMapping { gamma, index_offset: 0.0, interpolation: Interpolation::None as i32 }),
            // Both encodings at once: contiguous bins plus sparse outliers,
            // one of them (index -3) overlapping the contiguous range.
            positive_values: Some(Store {
                bin_counts: BTreeMap::from([(-3, 2.0), (300, 1.0), (i32::MIN, 1.0), (i32::MAX, 4.5)]),
                ..contiguous_store()
            }),
            negative_values: Some(Store {
                bin_counts: BTreeMap::from([(12, 1.0)]),
                contiguous_bin_counts: Vec::new(),
                contiguous_bin_index_offset: 0,
            }),
            zero_count: 6.0,
        }),
        key: "postgres".to_owned(),
        entity_guid: GUID.to_owned(),
        window_start_ns: 1_732_000_000_000_000_000,
        window_end_ns: 1_732_000_060_000_000_000,
        count: 35,
        sum: 123.25,
        min: -0.5,
        max: 97.0,
    }
}

fn security_event(detail: Detail) -> SecurityEvent {
    SecurityEvent {
        event_id: (2 << 48) | 7,
        ts_ns: 9_100_000_000_000,
        entity_guid: GUID.to_owned(),
        pid: 31_337,
        start_time_ns: 9_099_999_000_000,
        ppid: 2231,
        uid: 0,
        comm: "curl".to_owned(),
        exe: "/usr/bin/curl".to_owned(),
        detail: Some(detail),
        schema_version: SECURITY_EVENT_SCHEMA_VERSION.to_owned(),
        gid: 100,
        cgroup_id: 0x2_0000_1234,
        context: None,
    }
}

#[test]
fn process_envelope_round_trips() {
    check(&process_envelope());
    check(&ProcessEnvelope::default());
    // An envelope from a later version with a payload kind this build does
    // not know decodes with no payload, rather than failing.
    let mut newer = ProcessEnvelope { payload: None, ..process_envelope() }.encode_to_vec();
    LaterFields { note: "a payload kind of v2.3".to_owned(), ..LaterFields::default() }
        .encode(&mut newer)
        .expect("a Vec grows as needed");
    let decoded = ProcessEnvelope::decode(newer.as_slice()).expect("decodes");
    assert_eq!(decoded.payload, None);
    assert_eq!(decoded.schema_version, "2.2");

    let ephemeral = ProcessEnvelope {
        payload: Some(Payload::EphemeralBatch(EphemeralBatch {
            window_start_ns: 1_732_000_000_000_000_000,
            window_end_ns: 1_732_000_010_000_000_000,
            rows: vec![
                ProcessEphemeralSummary { name: "(other)".to_owned(), count: 3, cpu_ns: 0, event_id: 1 << 48 },
                ProcessEphemeralSummary {
                    name: "true".to_owned(),
                    count: 1_000,
                    cpu_ns: 912_000_000,
                    event_id: (1 << 48) | 1,
                },
            ],
        })),
        ..process_envelope()
    };
    check(&ephemeral);
}

#[test]
fn sketch_envelope_round_trips_with_contiguous_and_sparse_bins() {
    let envelope = sketch_envelope();
    check(&envelope);
    let histogram = envelope.histogram.clone().expect("histogram");
    check(&histogram);
    check(&contiguous_store());
    check(&histogram.positive_values.clone().expect("positive store"));
    // The map is ordered, so equal sketches encode to equal bytes.
    assert_eq!(envelope.encode_to_vec(), envelope.clone().encode_to_vec());
}

#[test]
fn diag_security_and_detection_round_trip() {
    check(&AgentDiagEvent {
        module: "ebpf".to_owned(),
        event_type: "fallback".to_owned(),
        reason: "kernel 4.19 has no BPF ring buffer (needs 5.8); running on procfs".to_owned(),
        ts_ns: 1_000_000,
        entity_guid: GUID.to_owned(),
        event_id: (3 << 48) | 1,
    });
    for detail in [
        Detail::Exec(ProcessExec {
            exe: "/usr/bin/curl".to_owned(),
            cmdline: "curl -sS http://203.0.113.9/x".to_owned(),
            argv: vec!["curl".to_owned(), "-sS".to_owned(), "http://203.0.113.9/x".to_owned()],
            argv_truncated: false,
            attributes: None,
        }),
        Detail::Exec(ProcessExec {
            exe: "/bin/sh".to_owned(),
            cmdline: "sh -c echo a b ".to_owned(),
            argv: vec!["sh".to_owned(), "-c".to_owned(), "echo a b".to_owned(), String::new()],
            argv_truncated: true,
            attributes: None,
        }),
        Detail::Exit(ProcessExit { exit_code: -9, cpu_ns: 1_234_567 }),
        Detail::Fork(ProcessFork { child_pid: 31_338, child_start_time_ns: 9_100_000_500_000 }),
        Detail::NetConnect(NetConnect {
            protocol: Protocol::Tcp as i32,
            dst_addr: "2001:db8::1".to_owned(),
            dst_port: 443,
            result: Some(-111),
        }),
        // Success (0) is present on the wire, unlike "not observed".
        Detail::NetConnect(NetConnect {
            protocol: Protocol::Tcp as i32,
            dst_addr: "127.0.0.1".to_owned(),
            dst_port: 80,
            result: Some(0),
        }),
        Detail::NetConnect(NetConnect {
            protocol: Protocol::Udp as i32,
            dst_addr: "10.0.0.53".to_owned(),
            dst_port: 53,
            result: None,
        }),
        Detail::FileOpen(FileOpen { path: "/etc/shadow".to_owned(), flags: 0o2_000_000 }),
    ] {
        check(&security_event(detail));
    }
    let detection = Detection {
        rule_id: "l2.download_then_exec".to_owned(),
        layer: Layer::L2Temporal as i32,
        confidence: Confidence::VeryHigh as i32,
        event_ids: vec![(2 << 48) | 7, (2 << 48) | 9, u64::MAX],
        ts_ns: 9_100_000_900_000,
        entity_guid: GUID.to_owned(),
        pid: 31_337,
        start_time_ns: 9_099_999_000_000,
        summary: "curl downloaded a file that was then executed".to_owned(),
    };
    check(&detection);
    assert_eq!(detection.layer(), Layer::L2Temporal);
    assert_eq!(detection.confidence(), Confidence::VeryHigh);
    assert_eq!(Layer::L1Ioc.as_str_name(), "LAYER_L1_IOC");
    assert_eq!(Confidence::from_str_name("CONFIDENCE_LOW"), Some(Confidence::Low));
}

#[test]
fn enum_values_from_a_later_version_decode_as_their_number() {
    // A confidence class this build does not know keeps its number and reads
    // back as the zero value, instead of failing the message.
    let detection = Detection { confidence: 42, ..Detection::default() };
    let decoded = Detection::decode(detection.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(decoded.confidence, 42);
    assert_eq!(decoded.confidence(), Confidence::Unspecified);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for bytes in [&[0xff_u8][..], &[0x0a, 0x05, b'a'], &[0x08], &[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]] {
        assert!(ProcessEnvelope::decode(bytes).is_err(), "{bytes:?}");
        assert!(SketchEnvelope::decode(bytes).is_err(), "{bytes:?}");
    }
}

/// Bytes written by hand from DataDog's ddsketch.proto (field numbers, sint32
/// zig-zag keys and offset, packed doubles), independent of prost, so that a
/// sketch from here decodes in sketches-go / sketches-java and back.
#[test]
fn store_bytes_match_datadog_ddsketch_proto() {
    let store = Store {
        bin_counts: BTreeMap::from([(-1, 2.0)]),
        contiguous_bin_counts: vec![1.0, 3.0],
        contiguous_bin_index_offset: -3,
    };
    let mut expected = vec![0x0a, 0x0b, 0x08, 0x01, 0x11]; // binCounts = 1: entry {key = zigzag(-1), value}
    expected.extend(2.0f64.to_le_bytes());
    expected.extend([0x12, 0x10]); // contiguousBinCounts = 2, packed, 16 bytes
    expected.extend(1.0f64.to_le_bytes());
    expected.extend(3.0f64.to_le_bytes());
    expected.extend([0x18, 0x05]); // contiguousBinIndexOffset = 3, zigzag(-3) = 5
    assert_eq!(store.encode_to_vec(), expected);
    assert_eq!(Store::decode(expected.as_slice()).expect("decodes"), store);

    // Older encoders may write the repeated doubles unpacked; both must read.
    let mut unpacked = vec![0x11];
    unpacked.extend(1.0f64.to_le_bytes());
    unpacked.push(0x11);
    unpacked.extend(3.0f64.to_le_bytes());
    assert_eq!(Store::decode(unpacked.as_slice()).expect("decodes").contiguous_bin_counts, [1.0, 3.0]);

    let sketch = DdSketch {
        mapping: Some(IndexMapping { gamma: 1.5, index_offset: 0.0, interpolation: Interpolation::Cubic as i32 }),
        positive_values: None,
        negative_values: None,
        zero_count: 1.0,
    };
    let mut expected = vec![0x0a, 0x0b, 0x09]; // mapping = 1 {gamma = 1 (double)
    expected.extend(1.5f64.to_le_bytes());
    expected.extend([0x18, 0x03, 0x21]); // interpolation = 3 (CUBIC)}, zeroCount = 4 (double)
    expected.extend(1.0f64.to_le_bytes());
    assert_eq!(sketch.encode_to_vec(), expected);
}

#[test]
fn versions_are_the_documented_ones() {
    assert_eq!(PROCESS_ENVELOPE_SCHEMA_VERSION, "2.2");
    assert_eq!(SECURITY_EVENT_SCHEMA_VERSION, "1.5");
    assert_eq!(SKETCH_VERSION, 1);
}
