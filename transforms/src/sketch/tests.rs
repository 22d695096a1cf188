//! Tests of the `sketch` transform: folding by metric and key, pass-through,
//! window flushes, the key limit, determinism and located config errors.

use std::net::IpAddr;

use pipeline::event::{NetConnect, Protocol, ScanInfo};
use pipeline::{ProcessKey, SourceFile, TopologyConfig};

use super::*;

fn options(table: &str) -> ComponentOptions {
    let text =
        format!("[sources.g]\ntype = \"generator\"\n[transforms.s]\ntype = \"sketch\"\ninputs = [\"g\"]\n{table}\n");
    let config = TopologyConfig::parse(SourceFile::new("t.toml", text)).expect("valid TOML");
    config.components.into_iter().find(|c| c.name == "s").expect("sketch declared").options
}

fn build_sketch(table: &str) -> Result<Sketch, Vec<ConfigError>> {
    let options = options(table);
    let config: SketchConfig = options.deserialize().map_err(|e| vec![e])?;
    Sketch::new(config, &options)
}

fn sample(ts_ns: u64, name: &str, cpu_percent: f64, rss_bytes: u64) -> Event {
    Event::ProcessSample(ProcessSample {
        meta: EventMeta { ts_ns, event_id: ts_ns },
        process: ProcessKey { pid: ts_ns as u32, start_time_ns: 1 },
        scan: ScanInfo { scan_id: 1, scan_size: 1 },
        ppid: 1,
        uid: 0,
        name: Arc::from(name),
        cmdline: Arc::from(name),
        state: b'S',
        threads: 1,
        cpu_ticks: 0,
        cpu_percent,
        rss_bytes,
        top_n_rank: 0,
    })
}

fn connect(id: u64) -> Event {
    Event::NetConnect(NetConnect {
        context: None,
        meta: EventMeta { ts_ns: id, event_id: id },
        process: ProcessKey { pid: 10, start_time_ns: 1 },
        protocol: Protocol::Tcp,
        dst_addr: IpAddr::from([127, 0, 0, 1]),
        dst_port: 443,
        result: Some(0),
    })
}

/// What came out of one window: (metric, key, count) per sketch, in order.
fn summary(events: &[Event]) -> Vec<(String, String, u64)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Sketch(s) => Some((s.metric_name.to_string(), s.key.to_string(), s.sketch.count())),
            _ => None,
        })
        .collect()
}

fn sketches(events: &[Event]) -> Vec<&SketchEvent> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Sketch(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn owned(rows: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
    rows.iter().map(|(m, k, n)| (m.to_string(), k.to_string(), *n)).collect()
}

/// Feeds `batches`, then ticks once; returns what each step emitted.
fn check(table: &str, batches: Vec<Batch>) -> (Vec<Event>, Vec<Event>) {
    let mut sketch = build_sketch(table).expect("valid config");
    let mut out = Output::with_event_id_prefix(5 << 48);
    for batch in batches {
        sketch.process(batch, &mut out);
    }
    let passed = out.take_events();
    sketch.on_tick(&mut out);
    (passed, out.take_events())
}

fn two_names() -> Batch {
    vec![
        sample(100, "bash", 1.0, 4096),
        connect(101),
        sample(102, "curl", 50.0, 8192),
        sample(90, "bash", 3.0, 4096),
        sample(130, "bash", 0.0, 1 << 20),
        sample(120, "curl", 75.0, 8192),
    ]
}

#[test]
fn two_names_give_three_keys_per_metric() {
    let (passed, emitted) = check("", vec![two_names()]);
    assert_eq!(passed, vec![connect(101)], "samples are folded, everything else passes");
    assert_eq!(
        summary(&emitted),
        owned(&[
            ("process.cpu_percent", "*", 5),
            ("process.cpu_percent", "bash", 3),
            ("process.cpu_percent", "curl", 2),
            ("process.rss_bytes", "*", 5),
            ("process.rss_bytes", "bash", 3),
            ("process.rss_bytes", "curl", 2),
        ])
    );
    let events = sketches(&emitted);
    for (position, event) in events.iter().enumerate() {
        assert_eq!(event.meta.event_id, (5 << 48) | position as u64, "ids in emission order");
        assert_eq!((event.window_start_ns, event.window_end_ns, event.meta.ts_ns), (90, 130, 130));
        assert_eq!(event.sketch.otel_scale(), Some(6), "default mapping");
    }
    let bash_cpu = &events[1].sketch;
    assert_eq!((bash_cpu.min(), bash_cpu.max(), bash_cpu.sum()), (Some(0.0), Some(3.0), 4.0));
    assert_eq!(bash_cpu.zero_count(), 1);
    let median = bash_cpu.quantile(0.5).expect("value");
    assert!((median - 1.0).abs() <= bash_cpu.relative_accuracy(), "{median}");
    let host_rss = &events[3].sketch;
    assert_eq!((host_rss.min(), host_rss.max()), (Some(4096.0), Some(1048576.0)));
    let p50 = host_rss.quantile(0.5).expect("value");
    assert!((p50 - 8192.0).abs() <= 8192.0 * host_rss.relative_accuracy(), "{p50}");
}

#[test]
fn windows_flush_on_tick_and_at_the_end() {
    let mut sketch = build_sketch("window_secs = 10").expect("valid config");
    assert_eq!(sketch.tick_interval(), Some(Duration::from_secs(10)));
    let mut out = Output::default();
    sketch.on_tick(&mut out);
    assert!(out.is_empty(), "an empty window emits nothing");

    sketch.process(vec![sample(1, "a", 1.0, 1), sample(2, "a", 2.0, 2)], &mut out);
    assert!(out.is_empty(), "nothing before the tick");
    sketch.on_tick(&mut out);
    let first = out.take_events();
    assert_eq!(
        summary(&first),
        owned(&[
            ("process.cpu_percent", "*", 2),
            ("process.cpu_percent", "a", 2),
            ("process.rss_bytes", "*", 2),
            ("process.rss_bytes", "a", 2)
        ])
    );

    // The next window starts empty: only the new name, new bounds.
    sketch.process(vec![sample(7, "b", 3.0, 3)], &mut out);
    sketch.flush(&mut out);
    let last = out.take_events();
    assert_eq!(
        summary(&last),
        owned(&[
            ("process.cpu_percent", "*", 1),
            ("process.cpu_percent", "b", 1),
            ("process.rss_bytes", "*", 1),
            ("process.rss_bytes", "b", 1)
        ])
    );
    assert!(sketches(&last).iter().all(|s| (s.window_start_ns, s.window_end_ns) == (7, 7)));
    let ids: Vec<u64> = sketches(&first).iter().chain(&sketches(&last)).map(|s| s.meta.event_id).collect();
    assert_eq!(ids, (0..8).collect::<Vec<u64>>(), "ids keep counting across windows");

    sketch.flush(&mut out);
    assert!(out.is_empty(), "flushing twice emits nothing more");
}

#[test]
fn options_choose_metrics_keys_and_accuracy() {
    let (_, emitted) = check("metrics = [\"rss_bytes\"]\nper_name = false", vec![two_names()]);
    assert_eq!(summary(&emitted), owned(&[("process.rss_bytes", "*", 5)]));

    // The order in the file does not change the emission order.
    let (_, emitted) = check("metrics = [\"rss_bytes\", \"cpu_percent\"]\nper_name = false", vec![two_names()]);
    assert_eq!(summary(&emitted), owned(&[("process.cpu_percent", "*", 5), ("process.rss_bytes", "*", 5)]));

    let (_, emitted) = check("relative_accuracy = 0.0075\nmetrics = [\"cpu_percent\"]", vec![two_names()]);
    for event in sketches(&emitted) {
        assert!((event.sketch.relative_accuracy() - 0.0075).abs() < 1e-15);
        assert_eq!(event.sketch.otel_scale(), None);
    }
}

#[test]
fn names_beyond_max_keys_fold_into_other() {
    let mut sketch = build_sketch("max_keys = 2\nmetrics = [\"cpu_percent\"]").expect("valid config");
    let mut out = Output::default();
    let batch = vec![
        sample(1, "zsh", 1.0, 0),
        sample(2, "bash", 1.0, 0),
        sample(3, "curl", 1.0, 0),
        sample(4, "zsh", 2.0, 0),
        sample(5, "*", 1.0, 0),
        sample(6, "dash", 1.0, 0),
        sample(7, "cpu", f64::NAN, 0),
    ];
    sketch.process(batch, &mut out);
    sketch.on_tick(&mut out);
    assert_eq!(
        summary(&out.take_events()),
        owned(&[
            ("process.cpu_percent", "*", 6),
            ("process.cpu_percent", "bash", 1),
            ("process.cpu_percent", "zsh", 2),
            ("process.cpu_percent", "~other", 3),
        ])
    );
    assert_eq!(sketch.folded_into_other(), 4, "curl, the process named `*`, dash and cpu");
    assert_eq!(sketch.rejected_values(), 1, "the NaN");
}

#[test]
fn same_input_same_sketches() {
    let batches = || vec![two_names(), vec![sample(200, "node", 12.5, 1 << 30), connect(201)]];
    let (passed_a, emitted_a) = check("", batches());
    let (passed_b, emitted_b) = check("", batches());
    assert_eq!(passed_a, passed_b);
    assert_eq!(emitted_a, emitted_b);
    assert_eq!(emitted_a.len(), 8);
}

#[test]
fn bad_options_are_located_and_explained() {
    let errors = build_sketch(
        "window_secs = 0\nrelative_accuracy = 1.5\nmetrics = [\"cpu_percnt\", \"rss_bytes\", \"rss_bytes\"]\nmax_keys = 0",
    )
    .expect_err("four problems");
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 5, "{messages:#?}");
    assert!(messages[0].starts_with("t.toml:6:15: error: transform `s`: window_secs must be"), "{}", messages[0]);
    assert!(
        messages[1].starts_with(
            "t.toml:7:21: error: transform `s`: relative accuracy must be greater than 0 and less than 1, got 1.5"
        ),
        "{}",
        messages[1]
    );
    assert!(
        messages[2].starts_with(
            "t.toml:8:12: error: transform `s`: unknown metric `cpu_percnt`; known metrics: cpu_percent, rss_bytes"
        ),
        "{}",
        messages[2]
    );
    assert!(messages[2].contains("did you mean `cpu_percent`?"), "{}", messages[2]);
    assert!(messages[3].contains("metric `rss_bytes` is listed twice"), "{}", messages[3]);
    assert!(
        messages[4].starts_with("t.toml:9:12: error: transform `s`: max_keys must be between 1"),
        "{}",
        messages[4]
    );

    for (table, expected) in [
        ("window_secs = -1.5", "t.toml:6:15: error: transform `s`: window_secs must be"),
        ("window_secs = 1e9", "t.toml:6:15: error: transform `s`: window_secs must be"),
        ("window_secs = 1e-9", "t.toml:6:15: error: transform `s`: window_secs must be a number of seconds from 0.001 to 86400, got 0.000000001"),
        ("window_secs = nan", "t.toml:6:15: error: transform `s`: window_secs must be"),
        ("relative_accuracy = 0", "t.toml:6:21: error: transform `s`: relative accuracy must be greater than 0"),
        ("metrics = []", "t.toml:6:11: error: transform `s`: metrics lists no metric"),
        ("window = 60", "t.toml:6:1: error: transform `s`: unknown field `window`"),
    ] {
        let errors = build_sketch(table).expect_err(table);
        let message = errors[0].to_string();
        assert!(message.starts_with(expected), "{table}: {message}");
    }
    let message = build_sketch("window_sec = 60").expect_err("typo")[0].to_string();
    assert!(message.contains("did you mean `window_secs`?"), "{message}");
    // Integers are accepted where seconds are expected.
    assert_eq!(build_sketch("window_secs = 5").expect("valid").tick_interval(), Some(Duration::from_secs(5)));
}

#[test]
fn top_names_keeps_the_heaviest_and_merges_the_rest_into_other() {
    // Four names; the two heaviest by cpu% keep their own sketches.
    let batch: Batch = vec![
        sample(1, "idle", 0.0, 100),
        sample(2, "busy", 90.0, 100),
        sample(3, "warm", 10.0, 100),
        sample(4, "cool", 1.0, 5_000),
        sample(5, "busy", 80.0, 100),
    ];
    let mut sketch = build_sketch("top_names = 2").expect("valid");
    let mut out = Output::default();
    sketch.process(batch, &mut out);
    sketch.flush(&mut out);
    let events = out.take_events();
    assert_eq!(
        summary(&events),
        owned(&[
            ("process.cpu_percent", "*", 5),
            ("process.cpu_percent", "busy", 2),
            ("process.cpu_percent", "warm", 1),
            ("process.cpu_percent", "~other", 2),
            ("process.rss_bytes", "*", 5),
            ("process.rss_bytes", "busy", 2),
            ("process.rss_bytes", "warm", 1),
            ("process.rss_bytes", "~other", 2),
        ])
    );
    let other_rss =
        sketches(&events).into_iter().find(|s| &*s.key == "~other" && &*s.metric_name == "process.rss_bytes");
    assert_eq!(other_rss.and_then(|s| s.sketch.max()), Some(5_000.0), "merged, not dropped");
    assert_eq!(sketch.folded_into_other(), 2);

    let errors = build_sketch("top_names = 0").expect_err("0 is not a top");
    assert!(errors[0].to_string().contains("top_names must be between 1 and 1000000, got 0"), "{}", errors[0]);
}
