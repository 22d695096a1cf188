//! End-to-end runs of the real binary: delivery under `block`, the drain on
//! SIGTERM, exact accounting under `drop_newest`, fan-out, and `/metrics`
//! scraped over HTTP and parsed as Prometheus text.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{free_port, http_get, Agent, Workspace};

/// `block` end to end: every generated event reaches the file sink once,
/// in order, even through a small buffer that forces backpressure.
#[test]
fn block_delivers_every_event_once_in_order() {
    let ws = Workspace::new();
    let n = 20_000;
    let config = ws.write(
        "topology.toml",
        &format!(
            r#"
[api]
enabled = false
[sources.gen]
type = "generator"
count = {n}
batch_size = 333
seed = 11
[transforms.pass]
type = "filter"
inputs = ["gen"]
buffer = {{ capacity = 100, when_full = "block" }}
[sinks.out]
type = "file"
inputs = ["pass"]
path = "{out}"
buffer = {{ capacity = 50 }}
"#,
            out = ws.path("out.ndjson").display()
        ),
    );
    let agent = Agent::start(&ws, &config);
    let finished = agent.wait(Duration::from_secs(60));
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.stderr);

    let ids = ws.event_ids("out.ndjson");
    assert_eq!(ids, (0..n).collect::<Vec<u64>>(), "each event exactly once, in order");
    let report = finished.report();
    assert_eq!(report["components"]["gen"]["sent"], n);
    assert_eq!(report["components"]["pass"]["received"], n);
    assert_eq!(report["components"]["out"]["sent"], n);
    assert_eq!(report["components"]["out"]["discarded"], serde_json::json!({}));
}

/// SIGTERM while events are in flight behind a slow sink: sources stop,
/// every edge drains, exit 0, and what was produced is what was written.
#[test]
fn sigterm_mid_run_drains_every_edge() {
    let ws = Workspace::new();
    let config = ws.write(
        "topology.toml",
        &format!(
            r#"
[api]
enabled = false
[sources.gen]
type = "generator"
rate = 20000
batch_size = 100
[transforms.pass]
type = "filter"
inputs = ["gen"]
buffer = {{ capacity = 2000 }}
[sinks.out]
type = "file"
inputs = ["pass"]
path = "{out}"
[sinks.slow]
type = "blackhole"
inputs = ["pass"]
rate = 4000
buffer = {{ capacity = 2000, when_full = "block" }}
"#,
            out = ws.path("out.ndjson").display()
        ),
    );
    let agent = Agent::start(&ws, &config);
    std::thread::sleep(Duration::from_millis(1500));
    agent.signal("TERM");
    let finished = agent.wait(Duration::from_secs(30));
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.stderr);

    let report = finished.report();
    let produced = report["components"]["gen"]["sent"].as_u64().expect("gen sent");
    assert!(produced > 1000, "the run produced events before the signal: {produced}");
    let ids = ws.event_ids("out.ndjson");
    assert_eq!(ids, (0..produced).collect::<Vec<u64>>(), "everything produced was written, once, in order");
    assert_eq!(report["components"]["slow"]["received"], produced, "the slow sink drained too");
    assert_eq!(report["components"]["slow"]["sent"], produced);
    let blocked = report["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["from"] == "pass" && e["to"] == "slow")
        .and_then(|e| e["blocked_seconds"].as_f64())
        .expect("edge pass -> slow");
    assert!(blocked > 0.1, "the slow sink pushed back ({blocked} s blocked)");
}

/// `drop_newest` in front of a slow sink: nothing waits, and every event is
/// either delivered or counted as dropped — exactly.
#[test]
fn drop_newest_counts_every_dropped_event() {
    let ws = Workspace::new();
    let n = 50_000u64;
    let config = ws.write(
        "topology.toml",
        &format!(
            r#"
[api]
enabled = false
[sources.gen]
type = "generator"
count = {n}
batch_size = 500
[sinks.out]
type = "file"
inputs = ["gen"]
path = "{out}"
[sinks.slow]
type = "blackhole"
inputs = ["gen"]
rate = 50000
buffer = {{ capacity = 256, when_full = "drop_newest" }}
"#,
            out = ws.path("out.ndjson").display()
        ),
    );
    let agent = Agent::start(&ws, &config);
    let finished = agent.wait(Duration::from_secs(60));
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.stderr);

    let report = finished.report();
    assert_eq!(report["components"]["gen"]["sent"], n);
    assert_eq!(ws.event_ids("out.ndjson").len() as u64, n, "the blocking sibling got everything");
    let slow = &report["components"]["slow"];
    let delivered = slow["sent"].as_u64().expect("sent");
    let dropped = slow["discarded"]["buffer_full"].as_u64().unwrap_or(0);
    assert_eq!(slow["received"].as_u64(), Some(delivered), "a blackhole acks all it receives");
    assert!(dropped > 0, "the slow sink was too slow and the policy dropped");
    assert!(delivered > 0, "some events fit");
    assert_eq!(delivered + dropped, n, "produced = delivered + counted drops");
    let edge = report["edges"].as_array().expect("edges").iter().find(|e| e["to"] == "slow").expect("edge to slow");
    assert_eq!(edge["discarded"]["buffer_full"].as_u64(), Some(dropped), "edge and component agree");
}

/// Fan-out: two sinks on one transform each receive all N, identically.
#[test]
fn fan_out_delivers_everything_to_each_sink() {
    let ws = Workspace::new();
    let n = 10_000u64;
    let config = ws.write(
        "topology.toml",
        &format!(
            r#"
[api]
enabled = false
[sources.gen]
type = "generator"
count = {n}
[transforms.pass]
type = "filter"
inputs = ["gen"]
[sinks.a]
type = "file"
inputs = ["pass"]
path = "{a}"
[sinks.b]
type = "file"
inputs = ["pass"]
path = "{b}"
"#,
            a = ws.path("a.ndjson").display(),
            b = ws.path("b.ndjson").display()
        ),
    );
    let finished = Agent::start(&ws, &config).wait(Duration::from_secs(60));
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.stderr);
    let a = std::fs::read_to_string(ws.path("a.ndjson")).expect("a written");
    let b = std::fs::read_to_string(ws.path("b.ndjson")).expect("b written");
    assert_eq!(a.lines().count() as u64, n);
    assert_eq!(a, b, "both sinks got the same events in the same order");
    let report = finished.report();
    assert_eq!(report["components"]["pass"]["sent"], n, "counted once per event, not per downstream");
}

/// Same seed, same events: two runs write byte-identical files.
#[test]
fn same_seed_gives_identical_output() {
    let ws = Workspace::new();
    let topology = |out: &str| {
        format!(
            r#"
[api]
enabled = false
[sources.gen]
type = "generator"
count = 5000
seed = 99
mix = {{ process_exec = 2, net_connect = 1, file_open = 1, process_sample = 1 }}
[sinks.out]
type = "file"
inputs = ["gen"]
path = "{}"
"#,
            ws.path(out).display()
        )
    };
    for name in ["one", "two"] {
        let config = ws.write(&format!("{name}.toml"), &topology(&format!("{name}.ndjson")));
        assert_eq!(Agent::start(&ws, &config).wait(Duration::from_secs(60)).code, Some(0));
    }
    let one = std::fs::read(ws.path("one.ndjson")).expect("first run");
    let two = std::fs::read(ws.path("two.ndjson")).expect("second run");
    assert_eq!(one.iter().filter(|b| **b == b'\n').count(), 5000);
    assert!(one == two, "byte-identical output");
}

/// `/metrics` over HTTP while the pipeline runs, parsed by a Prometheus
/// text-format parser, agrees with what the sink received; `/health` and
/// 404s behave.
#[test]
fn metrics_scrape_agrees_with_the_sinks() {
    let ws = Workspace::new();
    let port = free_port();
    let n = 3000u64;
    // `steady` finishes after N events; `ticker` keeps the agent alive with
    // events the filter drops, so the scrape happens at a quiet moment for
    // everything downstream of the filter.
    let config = ws.write(
        "topology.toml",
        &format!(
            r#"
[api]
address = "127.0.0.1:{port}"
[sources.steady]
type = "generator"
count = {n}
rate = 6000
mix = {{ process_exec = 1 }}
[sources.ticker]
type = "generator"
rate = 20
mix = {{ agent_diag = 1 }}
[transforms.execs]
type = "filter"
inputs = ["steady", "ticker"]
kinds = ["process_exec"]
buffer = {{ capacity = 777 }}
[sinks.out]
type = "file"
inputs = ["execs"]
path = "{out}"
"#,
            out = ws.path("out.ndjson").display()
        ),
    );
    let agent = Agent::start(&ws, &config);

    // While running: the endpoint answers and parses.
    let first = support::wait_for(Duration::from_secs(20), || http_get(port, "/metrics").filter(|r| r.status == 200));
    let early = support::parse_prometheus(&first.body);
    assert!(early.get("hostflow_component_sent_events_total", &[("component", "steady")]).is_some());

    // Once the sink has written all N, the counters must say exactly that.
    support::wait_for(Duration::from_secs(30), || (ws.event_ids("out.ndjson").len() as u64 == n).then_some(()));
    let metrics = support::wait_for(Duration::from_secs(10), || {
        let scrape = support::parse_prometheus(&http_get(port, "/metrics")?.body);
        (scrape.get("hostflow_component_sent_events_total", &[("component", "out")]) == Some(n as f64))
            .then_some(scrape)
    });
    let value = |name: &str, labels: &[(&str, &str)]| {
        metrics.get(name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing"))
    };
    assert_eq!(value("hostflow_component_sent_events_total", &[("component", "steady")]), n as f64);
    assert_eq!(value("hostflow_component_received_events_total", &[("component", "out")]), n as f64);
    assert_eq!(value("hostflow_component_sent_events_total", &[("component", "execs")]), n as f64);
    assert_eq!(value("hostflow_edge_sent_events_total", &[("from", "steady"), ("to", "execs")]), n as f64);
    assert_eq!(value("hostflow_edge_sent_events_total", &[("from", "execs"), ("to", "out")]), n as f64);
    assert_eq!(value("hostflow_edge_buffer_capacity_events", &[("component", "execs")]), 777.0);
    assert!(value("hostflow_edge_buffer_events", &[("component", "out")]) >= 0.0);
    assert_eq!(
        value("hostflow_component_discarded_events_total", &[("component", "out"), ("reason", "buffer_full")]),
        0.0
    );
    let ticks = value("hostflow_component_sent_events_total", &[("component", "ticker")]);
    assert!(ticks >= 1.0, "the ticker ran");
    assert!(
        value("hostflow_component_discarded_events_total", &[("component", "execs"), ("reason", "filtered")]) >= 1.0
    );
    for quantile in ["0.5", "0.95", "0.99"] {
        let latency = value("hostflow_component_latency_seconds", &[("component", "execs"), ("quantile", quantile)]);
        assert!((0.0..1.0).contains(&latency), "p{quantile} latency {latency}");
    }
    assert!(value("hostflow_process_resident_memory_bytes", &[]) > 1e6);

    let health = http_get(port, "/health").expect("health answers");
    assert_eq!(health.status, 200);
    let health: serde_json::Value = serde_json::from_str(&health.body).expect("health is JSON");
    assert_eq!(health["status"], "ok");
    for name in ["steady", "ticker", "execs", "out"] {
        let expected = if name == "steady" { "stopped" } else { "running" };
        assert_eq!(health["components"][name]["state"], expected, "{name}: {health}");
    }
    assert_eq!(http_get(port, "/nope").expect("answers").status, 404);

    agent.signal("TERM");
    let finished = agent.wait(Duration::from_secs(30));
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.stderr);
    let report = finished.report();
    assert_eq!(report["components"]["out"]["sent"], n);
    let discarded: BTreeMap<String, u64> =
        serde_json::from_value(report["components"]["execs"]["discarded"].clone()).expect("map");
    assert_eq!(
        report["components"]["execs"]["received"].as_u64(),
        Some(n + discarded.get("filtered").copied().unwrap_or(0)),
        "filter: received = sent + discarded"
    );
}

/// A sink whose writes fail (`/dev/full`: every write is ENOSPC) stops the
/// agent with exit 1, and every event is still accounted for: written,
/// failed, or stranded in the buffer — each counted with its reason.
#[test]
fn a_failing_sink_stops_the_run_and_accounts_for_every_event() {
    let ws = Workspace::new();
    let config = ws.write(
        "topology.toml",
        r#"
[api]
enabled = false
[sources.gen]
type = "generator"
rate = 5000
batch_size = 50
[sinks.full]
type = "file"
inputs = ["gen"]
path = "/dev/full"
buffer = { capacity = 500 }
"#,
    );
    let finished = Agent::start(&ws, &config).wait(Duration::from_secs(30));
    assert_eq!(finished.code, Some(1), "stderr:\n{}", finished.stderr);
    assert!(finished.stderr.contains("component `full` failed: cannot write to /dev/full"), "{}", finished.stderr);
    assert!(finished.stderr.contains("No space left on device"), "{}", finished.stderr);
    let report = finished.report();
    let sink = &report["components"]["full"];
    let produced = report["components"]["gen"]["sent"].as_u64().expect("gen sent");
    let received = sink["received"].as_u64().expect("received");
    let write_failed = sink["discarded"]["write_failed"].as_u64().expect("write_failed counted");
    let closed = sink["discarded"]["downstream_closed"].as_u64().unwrap_or(0);
    assert_eq!(sink["sent"], 0, "nothing was written");
    assert!(write_failed > 0);
    assert_eq!(received, write_failed, "received = sent + failed");
    assert_eq!(produced, received + closed, "produced = received + stranded/closed");
    assert_eq!(sink["errors"], 1);
}

/// A sink that cannot open stops the agent before any source starts.
#[test]
fn a_sink_that_cannot_open_stops_the_start() {
    let ws = Workspace::new();
    let config = ws.write(
        "topology.toml",
        r#"
[api]
enabled = false
[sources.gen]
type = "generator"
[sinks.out]
type = "file"
inputs = ["gen"]
path = "/proc/hostflow-cannot-exist/out.ndjson"
"#,
    );
    let finished = Agent::start(&ws, &config).wait(Duration::from_secs(30));
    assert_eq!(finished.code, Some(1), "stderr:\n{}", finished.stderr);
    assert!(
        finished.stderr.contains("sink `out` could not start: cannot create directory /proc/hostflow-cannot-exist"),
        "{}",
        finished.stderr
    );
}

/// The API port is taken: a clear start-up error, exit 1, nothing runs.
#[test]
fn a_taken_api_port_is_a_start_up_error() {
    let ws = Workspace::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let config = ws.write(
        "topology.toml",
        &format!(
            r#"
[api]
address = "127.0.0.1:{port}"
[sources.gen]
type = "generator"
[sinks.out]
type = "file"
inputs = ["gen"]
path = "{out}"
"#,
            out = ws.path("out.ndjson").display()
        ),
    );
    let finished = Agent::start(&ws, &config).wait(Duration::from_secs(30));
    assert_eq!(finished.code, Some(1), "stderr:\n{}", finished.stderr);
    assert!(
        finished.stderr.contains(&format!("cannot listen on 127.0.0.1:{port} for /metrics and /health")),
        "{}",
        finished.stderr
    );
    assert!(!ws.path("out.ndjson").exists(), "no sink opened, no event produced");
}

/// SIGINT drains like SIGTERM; a second signal during a slow drain exits at
/// once with 130, for an operator who prefers that to waiting.
#[test]
fn sigint_drains_and_a_second_signal_exits_130() {
    let ws = Workspace::new();
    let topology = |rate: u32| {
        format!(
            r#"
[api]
enabled = false
[sources.gen]
type = "generator"
rate = 20000
[sinks.out]
type = "file"
inputs = ["gen"]
path = "{out}"
[sinks.slow]
type = "blackhole"
inputs = ["gen"]
rate = {rate}
buffer = {{ capacity = 100000 }}
"#,
            out = ws.path("out.ndjson").display()
        )
    };
    // Fast enough to drain: SIGINT → exit 0 with everything written.
    let config = ws.write("drain.toml", &topology(1_000_000));
    let agent = Agent::start(&ws, &config);
    std::thread::sleep(Duration::from_millis(800));
    agent.signal("INT");
    let finished = agent.wait(Duration::from_secs(30));
    assert_eq!(finished.code, Some(0), "stderr:\n{}", finished.stderr);
    let produced = finished.report()["components"]["gen"]["sent"].as_u64().expect("sent");
    assert_eq!(ws.event_ids("out.ndjson"), (0..produced).collect::<Vec<u64>>());

    // Far too slow to drain (100 events/s behind a deep buffer): the second
    // signal ends it at once.
    let config = ws.write("stuck.toml", &topology(100));
    let agent = Agent::start(&ws, &config);
    std::thread::sleep(Duration::from_millis(800));
    agent.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    agent.signal("INT");
    let finished = agent.wait(Duration::from_secs(10));
    assert_eq!(finished.code, Some(130), "stderr:\n{}", finished.stderr);
    assert!(finished.stderr.contains("second signal: exiting without draining"), "{}", finished.stderr);
}
