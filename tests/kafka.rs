//! The `kafka` sink through the real binary, where no broker is needed:
//! bad configuration is refused with located messages, and a broker that
//! cannot be reached shows in /health, in `AgentDiag` events and in the
//! shutdown accounting — never as silent loss.
//!
//! Delivery against a real broker (tansu) is checked by
//! `testbed/checks/kafka_*.py`, consumed by an independent client.

mod support;

use std::time::Duration;

use support::{http_get, Agent, Workspace};

#[test]
fn bad_kafka_config_is_refused_with_the_line_and_a_hint() {
    let ws = Workspace::new();
    ws.write(
        "topology.toml",
        r#"[sources.gen]
type = "generator"

[sinks.empty]
type = "kafka"
inputs = ["gen"]
brokers = []
topic = "t"

[sinks.squeezed]
type = "kafka"
inputs = ["gen"]
brokers = "127.0.0.1:9092"
topic = "t"
compression = "brotli"

[sinks.unsafe]
type = "kafka"
inputs = ["gen"]
brokers = ["127.0.0.1:9092"]
topic = "t"
librdkafka_options = { "enable.idempotence" = "false", "no.such.option" = "1", "socket.keepalive.enable" = "true" }
"#,
    );
    let expected = "\
topology.toml:7:11: error: sink `empty`: `brokers` must name at least one broker
    help: e.g. brokers = [\"localhost:9092\"]
topology.toml:15:15: error: sink `squeezed`: unknown compression `brotli`; expected one of: zstd, lz4, snappy, none
topology.toml:22:24: error: sink `unsafe`: librdkafka option `enable.idempotence` may not be set here
    help: always true: broker-side retries must not duplicate or reorder messages
topology.toml:22:56: error: sink `unsafe`: librdkafka rejects option `no.such.option`: No such configuration property: \"no.such.option\"
topology.toml: 4 problems found; nothing was started
";
    for args in [&["validate", "topology.toml"][..], &["run", "--config", "topology.toml"][..]] {
        let output = support::hostflow().args(args).current_dir(ws.path("")).output().expect("run hostflow");
        assert_eq!(output.status.code(), Some(78), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&output.stderr), expected, "{args:?}");
    }
}

/// Nothing listens on the broker port: the sink must say so in /health
/// (degraded, with the reason) and as an `AgentDiag` event, keep every event
/// it was given, and account for them at shutdown instead of dropping them.
#[test]
fn an_unreachable_broker_degrades_health_emits_a_diag_event_and_loses_nothing_silently() {
    let ws = Workspace::new();
    let api_port = support::free_port();
    let broker_port = support::free_port(); // free a moment ago: nothing listens there
    let n = 500;
    let config = ws.write(
        "topology.toml",
        &format!(
            r#"
[api]
address = "127.0.0.1:{api_port}"

[sources.gen]
type = "generator"
count = {n}
mix = {{ process_exec = 1 }}

[sources.diag]
type = "agent_diag"

[sinks.to_kafka]
type = "kafka"
inputs = ["gen"]
brokers = ["127.0.0.1:{broker_port}"]
topic = "proc.raw.v1"
encoding = "json"
flush_timeout_secs = 1

[sinks.diag_file]
type = "file"
inputs = ["diag"]
path = "{diag}"
"#,
            diag = ws.path("diag.ndjson").display()
        ),
    );
    let agent = Agent::start(&ws, &config);

    let health = support::wait_for(Duration::from_secs(30), || {
        let body = http_get(api_port, "/health")?.body;
        let health: serde_json::Value = serde_json::from_str(&body).ok()?;
        (health["components"]["to_kafka"]["state"] == "degraded").then_some(health)
    });
    let reason = health["components"]["to_kafka"]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("cannot reach the Kafka brokers"), "reason: {reason}");
    assert!(reason.contains(&broker_port.to_string()), "the reason names the broker: {reason}");
    assert_eq!(health["status"], "degraded", "{health}");

    agent.signal("TERM");
    let finished = agent.wait(Duration::from_secs(60));
    // Undelivered events are a failure of the run, reported as such.
    assert_eq!(finished.code, Some(1), "stderr:\n{}", finished.stderr);
    let report = finished.report();
    let sink = &report["components"]["to_kafka"];
    assert_eq!(sink["sent"], 0, "nothing was acknowledged: {report}");
    assert_eq!(sink["received"], n, "{report}");
    assert_eq!(sink["discarded"]["write_failed"], n, "every undelivered event is counted: {report}");

    // The diag sink drained after the kafka sink gave up: its file holds the report.
    let text = std::fs::read_to_string(ws.path("diag.ndjson")).expect("diag file written");
    let diag: Vec<serde_json::Value> =
        text.lines().map(|line| serde_json::from_str(line).expect("NDJSON line")).collect();
    assert!(
        diag.iter().any(|event| event["kind"] == "agent_diag"
            && event["module"] == "to_kafka"
            && event["event_type"] == "kafka_degraded"
            && event["reason"].as_str().is_some_and(|r| r.contains("cannot reach the Kafka brokers"))),
        "diag events: {text}"
    );
}
