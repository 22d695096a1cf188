//! Tests of the kafka sink against librdkafka's in-process mock cluster
//! (`rdkafka::mocking::MockCluster`, the real Kafka protocol on loopback):
//! round trips read back with a consumer, a broker down at start,
//! producer-queue backpressure, retried deliveries, and config errors.
//! Batches in flight and the durable mark: `inflight_tests.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline::config::{SourceFile, TopologyConfig};
use pipeline::event::{AgentDiag, EventMeta, ProcessExec, ProcessSample, ScanInfo, SketchEvent};
use pipeline::health::{ComponentState, Health};
use pipeline::sketch::LogSketch;
use pipeline::{ComponentOptions, Event, ProcessKey, Role, Sink};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use schemas::prost::Message as _;
use schemas::v1;

use super::*;
use crate::protobuf::{encode_batch, EnvelopeContext, WireMessage};

pub(super) const TOPIC: &str = "proc.raw.v1";

pub(super) fn options(extra: &str) -> ComponentOptions {
    let text = format!("[sinks.k]\ntype = \"kafka\"\ninputs = [\"g\"]\n{extra}\n");
    let config = TopologyConfig::parse(SourceFile::new("t.toml", text)).expect("parses");
    config.components.into_iter().next().expect("one component").options
}

pub(super) fn sink_for(cluster: &MockCluster<'static, DefaultProducerContext>, extra: &str) -> KafkaSink {
    let text = format!(
        "brokers = \"{}\"\ntopic = \"{TOPIC}\"\nentity_guid = \"guid-1\"\nhost = \"web-1\"\n\
         retry_backoff_initial_ms = 10\nretry_backoff_max_ms = 200\n{extra}",
        cluster.bootstrap_servers()
    );
    match build_sink(&options(&text)) {
        Ok(sink) => sink,
        Err(errors) => panic!("{errors:?}"),
    }
}

pub(super) fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 1, 1).expect("topic");
    cluster
}

fn meta(id: u64) -> EventMeta {
    EventMeta { ts_ns: 1_000 + id, event_id: id }
}

/// `n` rounds of: an exec, two process rows of one scan, a sketch, a diag.
pub(super) fn events(n: u64) -> Vec<Event> {
    let mut sketch = LogSketch::default();
    for v in [0.5, 2.0, 40.0] {
        sketch.add(v);
    }
    let mut events = Vec::new();
    for round in 0..n {
        let id = round * 10;
        events.push(Event::ProcessExec(ProcessExec {
            context: None,
            meta: meta(id),
            process: ProcessKey { pid: 100 + round as u32, start_time_ns: 7 },
            ppid: 1,
            uid: 0,
            gid: 0,
            cgroup_id: 0,
            comm: Arc::from("bash"),
            exe: Arc::from("/bin/bash"),
            argv: pipeline::event::Argv::from_args(["bash", "-l"]),
            argv_truncated: false,
            attributes: None,
        }));
        for (offset, pid) in [(1, 10), (2, 11)] {
            events.push(Event::ProcessSample(ProcessSample {
                meta: meta(id + offset),
                process: ProcessKey { pid, start_time_ns: 7 },
                scan: ScanInfo { scan_id: round, scan_size: 2 },
                ppid: 1,
                uid: 0,
                name: Arc::from("nginx"),
                cmdline: Arc::from("nginx"),
                state: b'R',
                threads: 2,
                cpu_ticks: 5,
                cpu_percent: 1.0,
                rss_bytes: 4096,
                top_n_rank: offset as u32,
            }));
        }
        events.push(Event::Sketch(SketchEvent {
            meta: meta(id + 3),
            metric_name: "process.cpu_percent".into(),
            key: "*".into(),
            window_start_ns: 1,
            window_end_ns: 2,
            sketch: sketch.clone(),
        }));
        events.push(Event::AgentDiag(AgentDiag {
            meta: meta(id + 4),
            module: "kafka-test".into(),
            event_type: "t".into(),
            reason: "r".into(),
        }));
    }
    events
}

/// A read-back message: key, `hostflow-type` header, payload.
struct ReadBack {
    key: Option<Vec<u8>>,
    message_type: String,
    payload: Vec<u8>,
}

/// Reads `n` messages from partition 0 of `TOPIC`, from the start; fails
/// after 20 s, and checks nothing more arrives shortly after.
fn consume(bootstrap: &str, n: usize) -> Vec<ReadBack> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kafka-sink-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(TOPIC, 0, Offset::Beginning).expect("partition");
    consumer.assign(&assignment).expect("assign");
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut extra_until = None;
    loop {
        let now = Instant::now();
        if now > deadline {
            panic!("read {} of {n} messages", read.len());
        }
        if read.len() >= n {
            let until = *extra_until.get_or_insert(now + Duration::from_millis(300));
            if now > until {
                break;
            }
        }
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = result.expect("consumed");
        let message_type = message
            .headers()
            .and_then(|headers| {
                headers.iter().find(|h| h.key == "hostflow-type").and_then(|h| h.value.map(<[u8]>::to_vec))
            })
            .map(|v| String::from_utf8(v).expect("utf8"))
            .unwrap_or_default();
        read.push(ReadBack {
            key: message.key().map(<[u8]>::to_vec),
            message_type,
            payload: message.payload().unwrap_or_default().to_vec(),
        });
    }
    assert_eq!(read.len(), n, "no more and no fewer messages than produced");
    read
}

fn decode(message: &ReadBack) -> WireMessage {
    let bytes = &*message.payload;
    match message.message_type.as_str() {
        "hostflow.v1.ProcessEnvelope" => WireMessage::Process(v1::ProcessEnvelope::decode(bytes).expect("decodes")),
        "hostflow.v1.SketchEnvelope" => WireMessage::Sketch(v1::SketchEnvelope::decode(bytes).expect("decodes")),
        "hostflow.v1.AgentDiagEvent" => WireMessage::Diag(v1::AgentDiagEvent::decode(bytes).expect("decodes")),
        "hostflow.v1.SecurityEvent" => WireMessage::Security(v1::SecurityEvent::decode(bytes).expect("decodes")),
        other => panic!("unexpected hostflow-type {other:?}"),
    }
}

fn envelope_cx() -> EnvelopeContext {
    EnvelopeContext { entity_guid: "guid-1".to_owned(), host: "web-1".to_owned() }
}

#[tokio::test]
async fn protobuf_envelopes_round_trip_through_the_broker() {
    let cluster = cluster();
    let mut sink = sink_for(&cluster, "");
    sink.open().await.expect("open");
    let batch = events(20);
    let expected = encode_batch(&batch, &envelope_cx());
    // Per round: a security event (exec), one process envelope, a sketch, a diag.
    assert_eq!(expected.len(), 20 * 4);
    sink.write(batch[..50].to_vec()).await.expect("first write acknowledged");
    sink.write(batch[50..].to_vec()).await.expect("second write acknowledged");
    sink.flush().await.expect("flush");

    let read = tokio::task::spawn_blocking({
        let bootstrap = cluster.bootstrap_servers();
        move || consume(&bootstrap, 80)
    })
    .await
    .expect("consumer task");
    let decoded: Vec<WireMessage> = read.iter().map(decode).collect();
    assert_eq!(decoded, expected, "every envelope once, in order, decoding to what was encoded");
    assert!(read.iter().all(|m| m.key.as_deref() == Some(b"guid-1".as_slice())), "keyed by entity guid");
}

#[tokio::test]
async fn json_messages_are_keyed_by_a_field() {
    let cluster = cluster();
    let mut sink =
        sink_for(&cluster, "encoding = \"json\"\nkey = \"field\"\nkey_field = \"pid\"\ncompression = \"lz4\"");
    sink.open().await.expect("open");
    let batch = events(3);
    sink.write(batch.clone()).await.expect("write acknowledged");
    let read = tokio::task::spawn_blocking({
        let bootstrap = cluster.bootstrap_servers();
        move || consume(&bootstrap, 15)
    })
    .await
    .expect("consumer task");
    for (message, event) in read.iter().zip(&batch) {
        let object: serde_json::Value = serde_json::from_slice(&message.payload).expect("json");
        assert_eq!(object["event_id"], event.meta().event_id, "same event, in order");
        assert_eq!(message.message_type, event.kind().as_str());
        let expected_key = object.get("pid").map(|pid| pid.to_string().into_bytes());
        assert_eq!(message.key, expected_key, "{object}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_at_start_degrades_then_delivers_everything() {
    let cluster = cluster();
    cluster.broker_down(1).expect("broker down");
    let health = Health::default();
    // Lock-step: `write` itself waits for the acknowledgement.
    let mut sink = sink_for(&cluster, "max_in_flight_batches = 1");
    sink.set_health(health.register("k", Role::Sink, "kafka"));
    sink.open().await.expect("open does not need a reachable broker");
    let batch = events(10);
    let writer = tokio::spawn(async move {
        let result = sink.write(batch).await;
        (sink, result)
    });

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entry = health.report().components["k"].clone();
        if entry.state == ComponentState::Degraded {
            let reason = entry.reason.unwrap_or_default();
            assert!(reason.contains("cannot reach the Kafka brokers"), "{reason}");
            break;
        }
        assert!(Instant::now() < deadline, "never degraded: {entry:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!writer.is_finished(), "write must not be acknowledged while the broker is down");

    cluster.broker_up(1).expect("broker up");
    let (_sink, result) = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("write finishes once the broker is back")
        .expect("task");
    result.expect("write acknowledged");
    assert_eq!(_sink.durable_batches(), Some(1), "lock-step: durable when write returns");
    let entry = health.report().components["k"].clone();
    assert_eq!(entry.state, ComponentState::Running, "recovered: {entry:?}");
    let bootstrap = cluster.bootstrap_servers();
    let read = tokio::task::spawn_blocking(move || consume(&bootstrap, 40)).await.expect("consumer task");
    assert_eq!(read.len(), 40);
}

#[tokio::test]
async fn a_full_producer_queue_is_backpressure_not_loss() {
    let cluster = cluster();
    let mut sink =
        sink_for(&cluster, "encoding = \"json\"\n[sinks.k.librdkafka_options]\n\"queue.buffering.max.messages\" = 5");
    sink.open().await.expect("open");
    let batch = events(100);
    assert_eq!(batch.len(), 500);
    sink.write(batch.clone()).await.expect("write enqueued");
    sink.flush().await.expect("flush");
    let (n_failed_attempts, n_queue_full) = sink.attempt_counts();
    assert!(n_queue_full > 0, "the queue of 5 filled up");
    assert_eq!(n_failed_attempts, 0, "a full queue is not a failure");
    assert_each_event_once(&cluster, &batch, 500).await;
}

/// Consumes `n` JSON messages from the mock cluster and checks they are
/// `batch`'s events, each exactly once.
pub(super) async fn assert_each_event_once(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    batch: &[Event],
    n: usize,
) {
    let bootstrap = cluster.bootstrap_servers();
    let read = tokio::task::spawn_blocking(move || consume(&bootstrap, n)).await.expect("consumer task");
    let mut ids: Vec<u64> = read
        .iter()
        .map(|m| {
            serde_json::from_slice::<serde_json::Value>(&m.payload).expect("json")["event_id"].as_u64().expect("id")
        })
        .collect();
    ids.sort_unstable();
    let mut expected: Vec<u64> = batch.iter().map(|e| e.meta().event_id).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected, "every event exactly once");
}

/// A metrics recorder that keeps every value, keyed `name{label=value,…}`.
#[derive(Default)]
struct TestRecorder {
    values: std::sync::Mutex<std::collections::BTreeMap<String, Arc<AtomicU64>>>,
    histograms: std::sync::Mutex<std::collections::BTreeMap<String, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(std::sync::Mutex<Vec<f64>>);

impl metrics::HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().expect("lock").push(value);
    }
}

fn key_text(key: &metrics::Key) -> String {
    let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl TestRecorder {
    fn value(&self, key: &str) -> u64 {
        self.values.lock().expect("lock").get(key).map_or(0, |v| v.load(Ordering::Relaxed))
    }
    fn n_samples(&self, key: &str) -> usize {
        self.histograms.lock().expect("lock").get(key).map_or(0, |h| h.0.lock().expect("lock").len())
    }
    fn slot(&self, key: &metrics::Key) -> Arc<AtomicU64> {
        Arc::clone(self.values.lock().expect("lock").entry(key_text(key)).or_default())
    }
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.slot(key))
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.slot(key))
    }
    fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        let samples = Arc::clone(self.histograms.lock().expect("lock").entry(key_text(key)).or_default());
        metrics::Histogram::from_arc(samples)
    }
}

// current_thread: the thread-local recorder sees every metric the sink touches.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_delivery_is_retried_and_health_recovers() {
    let recorder = TestRecorder::default();
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let cluster = cluster();
    let health = Health::default();
    let mut sink = sink_for(&cluster, "encoding = \"json\"");
    sink.set_health(health.register("k", Role::Sink, "kafka"));
    sink.open().await.expect("open");
    // The first produce request is refused with a non-retriable error:
    // librdkafka fails those messages, the sink must send them again.
    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED]);
    let batch = events(4);
    sink.write(batch.clone()).await.expect("write enqueued");
    sink.flush().await.expect("flushed after a retry");
    let n_failed_attempts = sink.attempt_counts().0;
    assert!(n_failed_attempts > 0, "the injected error failed a delivery");
    assert_eq!(health.report().components["k"].state, ComponentState::Running);
    assert_each_event_once(&cluster, &batch, 20).await;

    let labels = format!("component=k,topic={TOPIC}");
    assert_eq!(recorder.value(&format!("hostflow_kafka_produced_messages_total{{{labels}}}")), 20);
    assert_eq!(recorder.value(&format!("hostflow_kafka_delivered_messages_total{{{labels}}}")), 20);
    assert_eq!(recorder.value(&format!("hostflow_kafka_in_flight_messages{{{labels}}}")), 0f64.to_bits());
    assert_eq!(recorder.n_samples(&format!("hostflow_kafka_delivery_latency_seconds{{{labels}}}")), 20);
    let n_failed = recorder.value(&format!("hostflow_kafka_failed_deliveries_total{{{labels},reason=not_authorized}}"));
    assert_eq!(n_failed, n_failed_attempts, "every failed attempt counted with its reason");
}

#[test]
fn failure_reasons_are_low_cardinality_labels() {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;
    let reason = |code| producer::failure_reason(&KafkaError::MessageProduction(code));
    assert_eq!(reason(RDKafkaErrorCode::MessageTimedOut), "timed_out");
    assert_eq!(reason(RDKafkaErrorCode::TopicAuthorizationFailed), "not_authorized");
    assert_eq!(reason(RDKafkaErrorCode::MessageSizeTooLarge), "message_too_large");
    assert_eq!(reason(RDKafkaErrorCode::Unknown), "other");
}

#[test]
fn defaults_are_idempotent_acks_all_zstd() {
    let config: KafkaConfig =
        options("brokers = [\"b1:9092\", \"b2:9092\"]\ntopic = \"t\"").deserialize().expect("parses");
    let settings = check(&config, &options("")).expect("valid");
    let client = &settings.client_config;
    assert_eq!(client.get("bootstrap.servers"), Some("b1:9092,b2:9092"));
    assert_eq!(client.get("enable.idempotence"), Some("true"));
    assert_eq!(client.get("acks"), Some("all"));
    assert_eq!(client.get("compression.type"), Some("zstd"));
    assert_eq!(client.get("linger.ms"), Some("5"));
    assert_eq!(client.get("message.timeout.ms"), Some("0"));
    assert_eq!(settings.key, KeyBy::EntityGuid);
    assert_eq!(settings.encoding, Encoding::Protobuf);
    assert_eq!(settings.max_in_flight_batches, 4);
}

#[test]
fn bad_config_is_an_error_at_its_location() {
    // Each case: the text after the header (3 lines), the expected message,
    // and the line it is reported at.
    let check = |toml_text: &str, expected: &str, line: usize| {
        let errors = match build(&options(toml_text)) {
            Ok(_) => panic!("{toml_text}: accepted"),
            Err(errors) => errors,
        };
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].contains(expected), "{toml_text}:\n{}\nwanted: {expected}", shown[0]);
        assert_eq!(errors[0].location().expect("located").line, line, "{}", shown[0]);
    };
    check(
        "brokers = []\ntopic = \"t\"",
        "t.toml:4:11: error: sink `k`: `brokers` must name at least one broker\n    help: e.g. brokers = [\"localhost:9092\"]",
        4,
    );
    check("brokers = \" , \"\ntopic = \"t\"", "`brokers` must name at least one broker", 4);
    check(
        "brokers = \"b:9092\"\ntopic = \"t\"\ncompression = \"brotli\"",
        "t.toml:6:15: error: sink `k`: unknown compression `brotli`; expected one of: zstd, lz4, snappy, none",
        6,
    );
    check(
        "brokers = \"b:9092\"\ntopic = \"t\"\ncompression = \"gzip\"",
        "compression `gzip` is not built into this agent (librdkafka without zlib)",
        6,
    );
    check(
        "brokers = \"b:9092\"\ntopic = \"t\"\n[sinks.k.librdkafka_options]\n\"acks\" = \"1\"",
        "t.toml:7:1: error: sink `k`: librdkafka option `acks` may not be set here\n    help: always `all`",
        7,
    );
    check(
        "brokers = \"b:9092\"\ntopic = \"t\"\nlibrdkafka_options = { \"enable.idempotence\" = false }",
        "librdkafka option `enable.idempotence` may not be set here",
        6,
    );
    check(
        "brokers = \"b:9092\"\ntopic = \"t\"\n[sinks.k.librdkafka_options]\n\"max.in.flight\" = 10",
        "`max.in.flight` must be at most 5, got `10`",
        7,
    );
    check(
        "brokers = \"b:9092\"\ntopic = \"t\"\n[sinks.k.librdkafka_options]\n\"no.such.option\" = \"1\"",
        "t.toml:7:1: error: sink `k`: librdkafka rejects option `no.such.option`: No such configuration property: \"no.such.option\"",
        7,
    );
    check(
        "brokers = \"b:9092\"\ntopic = \"t\"\n[sinks.k.librdkafka_options]\n\"security.protocol\" = \"ssl\"",
        "librdkafka rejects option `security.protocol`",
        7,
    );
    check("brokers = \"b:9092\"\ntopic = \"bad topic\"", "`topic` may only contain", 5);
    check(
        "brokers = \"b:9092\"\ntopic = \"t\"\nkey = \"pid\"",
        "unknown key `pid`; expected one of: entity_guid, host, field, none",
        6,
    );
    check(
        "brokers = \"b:9092\"\ntopic = \"t\"\nkey = \"field\"\nkey_field = \"pid\"",
        "`key = \"field\"` needs `encoding = \"json\"`",
        6,
    );
    check("brokers = \"b:9092\"\ntopic = \"t\"\nlinger = 5", "unknown field `linger`", 6);
    check(
        "brokers = \"b:9092\"\ntopic = \"t\"\nmax_in_flight_batches = 0",
        "t.toml:6:25: error: sink `k`: `max_in_flight_batches` must be 1 to 1024, got 0",
        6,
    );
}
