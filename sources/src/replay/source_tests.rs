//! Tests of the replay source as a component: configuration problems at
//! their location, and runs the way the engine runs a source (fan-out,
//! pacing, shutdown, errors), over spool files written in a temp dir.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pipeline::edge::{buffer, EdgeReceiver};
use pipeline::health::{ComponentState, Health};
use pipeline::metrics::{BufferGauges, EdgeMetrics};
use pipeline::{shutdown_channel, BufferConfig, Event, Role, ShutdownTrigger, SourceFile, TopologyConfig};

use super::tests::{diags, exits, keys, write_spool_file};
use super::*;

fn options(text: &str) -> ComponentOptions {
    let text = format!("{text}\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"r\"]\n");
    let config = TopologyConfig::parse(SourceFile::new("t.toml", text)).expect("valid TOML");
    config.components.into_iter().find(|c| c.name == "r").expect("replay declared").options
}

/// `[sources.r]`, `type` on line 2, `path = dir` on line 3, `table` from line 4.
fn source_text(dir: &Path, table: &str) -> String {
    format!("[sources.r]\ntype = \"replay\"\npath = \"{}\"\n{table}", dir.display())
}

fn build_from(text: &str) -> Result<Replay, Vec<ConfigError>> {
    let options = options(text);
    let config: ReplayConfig = options.deserialize().map_err(|e| vec![e])?;
    Replay::new(config, &options)
}

/// Expects exactly one error at `line:column` containing `message` (and
/// the hint, when given).
fn check_error(text: &str, line: usize, column: usize, message: &str, hint: Option<&str>) {
    let errors = build_from(text).expect_err(text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = &errors[0];
    assert_eq!(error.position, Some((line, column)), "{error}");
    assert!(error.to_string().contains(message), "{error}");
    assert_eq!(error.hint.as_deref(), hint, "{error}");
}

#[test]
fn defaults_and_every_option() {
    let dir = tempfile::tempdir().expect("tempdir");
    let replay = build_from(&source_text(dir.path(), "")).expect("defaults are valid");
    assert_eq!(replay.format, ReplayFormat::Arrow);
    assert_eq!(replay.speed, Speed::Max);
    assert_eq!(replay.selection, Selection::all());
    assert_eq!(replay.batch_size, 1024);
    let table = "format = \"ndjson\"\nspeed = 2\nfrom_ts_ns = 10\nto_ts_ns = 20\nkinds = [\"sketch\", \
                 \"process_sample\", \"sketch\"]\nbatch_size = 65536";
    let replay = build_from(&source_text(dir.path(), table)).expect("valid");
    assert_eq!(replay.format, ReplayFormat::Ndjson);
    assert_eq!(replay.speed, Speed::Factor(2.0));
    assert_eq!(
        replay.selection,
        Selection {
            kinds: vec![EventKind::Sketch, EventKind::ProcessSample],
            from_ts_ns: Some(10),
            to_ts_ns: Some(20)
        }
    );
    assert_eq!(replay.batch_size, 65_536);
    let speed = |value: &str| build_from(&source_text(dir.path(), &format!("speed = {value}"))).expect(value).speed;
    assert_eq!(speed("\"realtime\""), Speed::Factor(1.0));
    assert_eq!(speed("\"max\""), Speed::Max);
    assert_eq!(speed("0.5"), Speed::Factor(0.5));
}

#[test]
fn bad_values_are_reported_at_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let at = |table: &str| source_text(dir.path(), table);
    let speed = "speed must be \"max\", \"realtime\" or a positive number";
    check_error(&at("speed = 0"), 4, 9, &format!("{speed} (a factor of the recorded pace), got 0"), None);
    check_error(&at("speed = -1"), 4, 9, speed, None);
    check_error(&at("speed = nan"), 4, 9, speed, None);
    check_error(&at("speed = inf"), 4, 9, speed, None);
    check_error(&at("speed = \"fast\""), 4, 9, "got \"fast\"", None);
    check_error(&at("speed = \"realtme\""), 4, 9, speed, Some("did you mean \"realtime\"?"));
    check_error(&at("speed = true"), 4, 9, "expected \"max\", \"realtime\" or a positive number", None);
    check_error(
        &at("kinds = [\"sketch\", \"process_sampel\"]"),
        4,
        20,
        "unknown event kind `process_sampel` in kinds; known kinds: process_exec,",
        Some("did you mean `process_sample`?"),
    );
    check_error(&at("kinds = []"), 4, 9, "kinds is empty", None);
    check_error(&at("from_ts_ns = 5\nto_ts_ns = 5"), 5, 12, "to_ts_ns (5) must be greater than from_ts_ns (5)", None);
    check_error(&at("from_ts_ns = -5"), 4, 14, "invalid value", None);
    check_error(&at("batch_size = 0"), 4, 14, "nonzero", None);
    check_error(&at("batch_size = 65537"), 4, 14, "larger than the maximum", None);
    check_error(&at("format = \"parquet\""), 4, 10, "unknown variant `parquet`", None);
    check_error(&at("sped = 2"), 4, 1, "unknown field `sped`", Some("did you mean `speed`?"));
    let errors = build_from(&at("speed = 0\nkinds = [\"x\"]")).expect_err("two problems");
    assert_eq!(errors.iter().map(|e| e.position).collect::<Vec<_>>(), vec![Some((4, 9)), Some((5, 10))]);
}

#[test]
fn path_problems_are_reported_at_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    check_error("[sources.r]\ntype = \"replay\"", 1, 1, "missing field `path`", None);
    let missing = dir.path().join("nope");
    check_error(
        &source_text(&missing, ""),
        3,
        8,
        &format!("path `{}` does not exist", missing.display()),
        Some("point `path` at the directory an `arrow_spool` sink writes (its `path`)"),
    );
    check_error(
        &source_text(&missing, "format = \"ndjson\""),
        3,
        8,
        "does not exist",
        Some("point `path` at an NDJSON file or a directory of `*.ndjson` files"),
    );
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, "").expect("write");
    check_error(
        &source_text(&file, ""),
        3,
        8,
        "is not a directory, so it is not an Arrow spool",
        Some("for a file of NDJSON lines, set `format = \"ndjson\"`"),
    );
    assert!(build_from(&source_text(&file, "format = \"ndjson\"")).is_ok());
    check_error("[sources.r]\ntype = \"replay\"\npath = \"\"", 3, 8, "path must not be empty", None);
}

struct Harness {
    cx: SourceContext,
    receiver: EdgeReceiver,
    trigger: ShutdownTrigger,
    health: Health,
}

fn harness() -> Harness {
    let (handle, receiver) = buffer(&BufferConfig::default(), BufferGauges::new("out", 4096));
    let sender = handle.sender("r", "out", EdgeMetrics::new("r", "out", Role::Sink, "blackhole"));
    let (trigger, shutdown) = shutdown_channel();
    let health = Health::default();
    let cx = SourceContext {
        name: Arc::from("r"),
        out: Fanout::new(vec![sender], metrics::Counter::noop()),
        shutdown,
        health: health.register("r", Role::Source, "replay"),
        event_id_prefix: 5 << 48,
    };
    Harness { cx, receiver, trigger, health }
}

fn replay(path: &Path, format: ReplayFormat, speed: Speed, batch_size: usize) -> Box<Replay> {
    Box::new(Replay { path: path.to_owned(), format, speed, selection: Selection::all(), batch_size })
}

/// Everything the receiver gets until the source is gone.
async fn drain(receiver: &mut EdgeReceiver) -> Vec<Batch> {
    let mut batches = Vec::new();
    while let Some(batch) = receiver.recv().await {
        batches.push(batch);
    }
    batches
}

#[tokio::test]
async fn replays_everything_then_returns_keeping_recorded_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_spool_file(dir.path(), EventKind::ProcessExit, 0, &[exits(&[(1, 10), (3, 30)])]);
    write_spool_file(dir.path(), EventKind::AgentDiag, 0, &[diags(&[(2, 20)])]);
    std::fs::write(dir.path().join("agent_diag").join(schemas::spool::finished_name("agent_diag", 1)), b"junk")
        .expect("write");
    let Harness { cx, mut receiver, health, .. } = harness();
    let task = tokio::spawn(replay(dir.path(), ReplayFormat::Arrow, Speed::Max, 2).run(cx));
    let batches = drain(&mut receiver).await;
    task.await.expect("no panic").expect("replayed");
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
    use EventKind::{AgentDiag as D, ProcessExit as X};
    assert_eq!(keys(&batches.concat()), vec![(X, 1, 10), (D, 2, 20), (X, 3, 30)], "recorded ids, not 5 << 48");
    let component = health.report().components["r"].clone();
    assert_eq!(component.state, ComponentState::Degraded);
    let reason = component.reason.expect("a reason");
    assert!(reason.starts_with("skipped 1 unreadable files and 0 bad lines under "), "{reason}");
}

#[tokio::test]
async fn ndjson_corpora_run_through_the_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let line = |id: u64, ts: u64| {
        format!(r#"{{"kind":"process_exit","event_id":{id},"ts_ns":{ts},"pid":1,"start_time_ns":2,"exit_code":0}}"#)
    };
    std::fs::write(dir.path().join("1.ndjson"), format!("{}\n{}\n", line(1, 30), line(2, 10))).expect("write");
    let Harness { cx, mut receiver, .. } = harness();
    let task = tokio::spawn(replay(dir.path(), ReplayFormat::Ndjson, Speed::Max, 10).run(cx));
    let batches = drain(&mut receiver).await;
    task.await.expect("no panic").expect("replayed");
    let ids: Vec<u64> = batches.concat().iter().map(|e: &Event| e.meta().event_id).collect();
    assert_eq!(ids, vec![1, 2], "file order");
}

#[tokio::test]
async fn a_path_gone_at_run_time_fails_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gone = dir.path().join("gone.ndjson");
    let Harness { cx, mut receiver, .. } = harness();
    let error = replay(&gone, ReplayFormat::Ndjson, Speed::Max, 10).run(cx).await.expect_err("fails");
    assert!(error.to_string().starts_with(&format!("cannot read {}: ", gone.display())), "{error}");
    assert!(receiver.recv().await.is_none(), "nothing sent");
}

/// Events `gap` apart, replayed at `speed`, take at least (n − 1) · gap / speed.
async fn paced_run(gap_ms: u64, speed: f64, n: u64) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows: Vec<(u64, u64)> = (0..n).map(|i| (i, 1_000_000_000 + i * gap_ms * 1_000_000)).collect();
    write_spool_file(dir.path(), EventKind::ProcessExit, 0, &[exits(&rows)]);
    let Harness { cx, mut receiver, .. } = harness();
    let started = std::time::Instant::now();
    let task = tokio::spawn(replay(dir.path(), ReplayFormat::Arrow, Speed::Factor(speed), 1024).run(cx));
    let batches = drain(&mut receiver).await;
    let elapsed = started.elapsed();
    task.await.expect("no panic").expect("replayed");
    assert_eq!(batches.concat().len() as u64, n);
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_and_factor_speeds_follow_recorded_time() {
    // 200 ms apart at twice the speed: ~100 ms per gap (loose lower
    // bounds only: the machine is shared).
    let elapsed = paced_run(200, 2.0, 3).await;
    assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
    let elapsed = paced_run(100, 1.0, 3).await;
    assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
    // And "max" does not sleep at all: 10 gaps of an hour.
    let dir = tempfile::tempdir().expect("tempdir");
    let hour = 3_600_000_000_000;
    write_spool_file(dir.path(), EventKind::ProcessExit, 0, &[exits(&[(1, 0), (2, hour), (3, 10 * hour)])]);
    let Harness { cx, mut receiver, .. } = harness();
    let task = tokio::spawn(replay(dir.path(), ReplayFormat::Arrow, Speed::Max, 1024).run(cx));
    let all = tokio::time::timeout(Duration::from_secs(10), drain(&mut receiver)).await.expect("no pacing");
    assert_eq!(all.concat().len(), 3);
    task.await.expect("no panic").expect("ok");
}

#[tokio::test]
async fn stops_promptly_on_shutdown_while_pacing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hour = 3_600_000_000_000;
    write_spool_file(dir.path(), EventKind::ProcessExit, 0, &[exits(&[(1, 0), (2, hour)])]);
    let Harness { cx, mut receiver, trigger, .. } = harness();
    let task = tokio::spawn(replay(dir.path(), ReplayFormat::Arrow, Speed::Factor(1.0), 1024).run(cx));
    let first = receiver.recv().await.expect("the first event leaves at once");
    assert_eq!(first.len(), 1);
    let asked = std::time::Instant::now();
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops in time").expect("no panic").expect("ok");
    assert!(asked.elapsed() < Duration::from_secs(2), "{:?}", asked.elapsed());
    assert!(receiver.recv().await.is_none(), "the event an hour later is not sent");
}

#[tokio::test]
async fn stops_promptly_on_shutdown_under_backpressure() {
    // Many events, a tiny downstream buffer nobody reads until shutdown:
    // the reader thread blocks on the channel, then ends with the task.
    let dir = tempfile::tempdir().expect("tempdir");
    let rows: Vec<(u64, u64)> = (0..50_000).map(|i| (i, i)).collect();
    write_spool_file(dir.path(), EventKind::ProcessExit, 0, &[exits(&rows)]);
    let (handle, mut receiver) = buffer(
        &BufferConfig { capacity: NonZeroUsize::new(10).expect("10"), ..BufferConfig::default() },
        BufferGauges::new("o", 10),
    );
    let sender = handle.sender("r", "o", EdgeMetrics::new("r", "o", Role::Sink, "blackhole"));
    drop(handle); // Only the source's sender keeps the edge open.
    let Harness { mut cx, trigger, .. } = harness();
    cx.out = Fanout::new(vec![sender], metrics::Counter::noop());
    let task = tokio::spawn(replay(dir.path(), ReplayFormat::Arrow, Speed::Max, 10).run(cx));
    let first = receiver.recv().await.expect("a batch");
    assert_eq!(first.len(), 10);
    trigger.trigger();
    let mut n_events = first.len();
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(batch) = receiver.recv().await {
            n_events += batch.len();
        }
    });
    drained.await.expect("the source stops and the edge closes");
    task.await.expect("no panic").expect("ok");
    assert!(n_events < 50_000, "stopped before the end: {n_events}");
}
