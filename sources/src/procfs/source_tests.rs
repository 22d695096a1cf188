//! Tests of the procfs source: configuration problems at their location,
//! and the source run the way the engine runs it (fan-out, shutdown,
//! `/health`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pipeline::edge::{buffer, EdgeReceiver};
use pipeline::event::ScanInfo;
use pipeline::health::{ComponentState, Health};
use pipeline::metrics::{BufferGauges, EdgeMetrics};
use pipeline::{shutdown_channel, BufferConfig, Event, Fanout, Role, ShutdownTrigger, SourceFile, TopologyConfig};

use super::*;
use crate::procfs::test_support::{real_proc_lock, FakeProc, FakeStat};

fn options(table: &str) -> ComponentOptions {
    let text =
        format!("[sources.p]\ntype = \"procfs\"\n{table}\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"p\"]\n");
    let config = TopologyConfig::parse(SourceFile::new("t.toml", text)).expect("valid TOML");
    config.components.into_iter().find(|c| c.name == "p").expect("procfs declared").options
}

fn build_procfs(table: &str) -> Result<Procfs, Vec<ConfigError>> {
    let options = options(table);
    let config: ProcfsConfig = options.deserialize().map_err(|e| vec![e])?;
    Procfs::new(config, &options)
}

/// Builds from `table` and expects exactly one error at `line:column`
/// whose message contains `message`.
fn check_error(table: &str, line: usize, column: usize, message: &str) {
    let errors = build_procfs(table).expect_err(table);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = &errors[0];
    assert_eq!(error.position, Some((line, column)), "{error}");
    assert!(error.to_string().contains(message), "{error}");
}

#[test]
fn defaults() {
    let procfs = build_procfs("").expect("defaults are valid");
    assert_eq!(procfs.interval, Duration::from_secs(10));
    assert_eq!(
        procfs.settings,
        ScannerSettings {
            proc_root: "/proc".into(),
            cmdline_max_bytes: 4096,
            max_open_fds: None,
            scrub: Default::default()
        }
    );
    let procfs = build_procfs("interval_secs = 0.25\ncmdline_max_bytes = 0\nproc_root = \"/host/proc\"").expect("ok");
    assert_eq!(procfs.interval, Duration::from_millis(250));
    assert_eq!(
        procfs.settings,
        ScannerSettings {
            proc_root: "/host/proc".into(),
            cmdline_max_bytes: 0,
            max_open_fds: None,
            scrub: Default::default()
        }
    );
    assert_eq!(build_procfs("interval_secs = 2").expect("an integer is seconds too").interval, Duration::from_secs(2));
}

#[test]
fn bad_intervals_are_reported_at_the_value() {
    let message = "interval_secs must be a positive number of seconds";
    check_error("interval_secs = 0", 3, 17, message);
    check_error("interval_secs = 0.0", 3, 17, message);
    check_error("interval_secs = -1", 3, 17, message);
    check_error("interval_secs = -0.5", 3, 17, message);
    check_error("interval_secs = nan", 3, 17, "got NaN");
    check_error("interval_secs = inf", 3, 17, message);
    check_error("interval_secs = 0.0001", 3, 17, message);
    check_error("interval_secs = 1e9", 3, 17, message);
    check_error("interval_secs = \"10s\"", 3, 17, "expected f64");
}

#[test]
fn other_bad_options_are_reported_at_their_key_or_value() {
    check_error("cmdline_max_bytes = -1", 3, 21, "expected usize");
    check_error("cmdline_max_bytes = 2000000", 3, 21, "larger than the maximum");
    check_error("proc_root = \"\"", 3, 13, "proc_root must not be empty");
    check_error("intervall_secs = 5", 3, 1, "unknown field `intervall_secs`");
    let errors = build_procfs("interval_secs = 0\ncmdline_max_bytes = 9999999").expect_err("two problems");
    assert_eq!(errors.iter().map(|e| e.position).collect::<Vec<_>>(), vec![Some((3, 17)), Some((4, 21))]);
}

struct Harness {
    cx: SourceContext,
    receiver: EdgeReceiver,
    trigger: ShutdownTrigger,
    health: Health,
}

fn harness(event_id_prefix: u64) -> Harness {
    let (handle, receiver) = buffer(&BufferConfig::default(), BufferGauges::new("out", 4096));
    let sender = handle.sender("p", "out", EdgeMetrics::new("p", "out", Role::Sink, "blackhole"));
    let (trigger, shutdown) = shutdown_channel();
    let health = Health::default();
    let cx = SourceContext {
        name: Arc::from("p"),
        out: Fanout::new(vec![sender], metrics::Counter::noop()),
        shutdown,
        health: health.register("p", Role::Source, "procfs"),
        event_id_prefix,
    };
    Harness { cx, receiver, trigger, health }
}

fn samples(batch: &[Event]) -> Vec<&pipeline::event::ProcessSample> {
    batch
        .iter()
        .map(|event| match event {
            Event::ProcessSample(sample) => sample,
            other => panic!("not a sample: {other:?}"),
        })
        .collect()
}

fn state(health: &Health) -> (ComponentState, Option<String>) {
    let component = health.report().components["p"].clone();
    (component.state, component.reason)
}

fn procfs(proc_root: &Path, interval: Duration) -> Box<Procfs> {
    Box::new(Procfs::with_settings(
        interval,
        ScannerSettings {
            proc_root: proc_root.to_owned(),
            cmdline_max_bytes: 64,
            max_open_fds: None,
            scrub: Default::default(),
        },
    ))
}

#[tokio::test]
async fn one_batch_per_scan_with_engine_event_ids() {
    let fake = FakeProc::new();
    fake.set(10, &FakeStat { comm: "a", ..FakeStat::default() }, b"a");
    fake.set(11, &FakeStat { comm: "b", ..FakeStat::default() }, b"b");
    let Harness { cx, mut receiver, trigger, health } = harness(3 << 48);
    let reference = harness(3 << 48).cx;
    let task = tokio::spawn(procfs(fake.root(), Duration::from_millis(20)).run(cx));
    let mut sequence = 0;
    for scan_id in 1..=3 {
        let batch = receiver.recv().await.expect("a batch per scan");
        let rows = samples(&batch);
        assert_eq!(rows.iter().map(|s| s.process.pid).collect::<Vec<_>>(), vec![10, 11]);
        for row in rows {
            assert_eq!(row.scan, ScanInfo { scan_id, scan_size: 2 });
            assert_eq!(row.meta.event_id, reference.event_id(sequence));
            sequence += 1;
        }
        assert_eq!(state(&health).0, ComponentState::Starting, "the runtime, not the source, sets running");
    }
    trigger.trigger();
    task.await.expect("no panic").expect("clean stop");
    while receiver.recv().await.is_some() {}
}

#[tokio::test]
async fn unreadable_processes_degrade_health_until_they_are_gone() {
    let fake = FakeProc::new();
    fake.set(10, &FakeStat::default(), b"ok");
    std::fs::create_dir_all(fake.root().join("11/stat")).expect("stat as a directory");
    let Harness { cx, mut receiver, trigger, health } = harness(0);
    let task = tokio::spawn(procfs(fake.root(), Duration::from_millis(20)).run(cx));
    let batch = receiver.recv().await.expect("batch");
    assert_eq!(samples(&batch).len(), 1);
    let (current, reason) = state(&health);
    assert_eq!(current, ComponentState::Degraded);
    let reason = reason.expect("a reason");
    assert!(reason.starts_with("1 processes could not be read (first: ") && reason.contains("/11/stat"), "{reason}");

    std::fs::remove_dir_all(fake.root().join("11")).expect("remove the bad entry");
    receiver.recv().await.expect("batch");
    receiver.recv().await.expect("batch");
    assert_eq!(state(&health), (ComponentState::Running, None));
    trigger.trigger();
    task.await.expect("no panic").expect("clean stop");
}

#[tokio::test]
async fn a_missing_proc_root_fails_at_start_naming_the_path() {
    let Harness { cx, mut receiver, .. } = harness(0);
    let error = procfs(Path::new("/nonexistent/proc"), Duration::from_secs(1)).run(cx).await.expect_err("fails");
    assert_eq!(error.to_string(), "cannot list processes in /nonexistent/proc: No such file or directory (os error 2)");
    assert!(receiver.recv().await.is_none(), "nothing sent");
}

#[tokio::test]
async fn stops_promptly_on_shutdown_between_scans() {
    let fake = FakeProc::new();
    fake.set(10, &FakeStat::default(), b"");
    let Harness { cx, mut receiver, trigger, .. } = harness(0);
    let task = tokio::spawn(procfs(fake.root(), Duration::from_secs(3600)).run(cx));
    assert_eq!(receiver.recv().await.map(|b| b.len()), Some(1), "the first scan runs at start");
    let asked = std::time::Instant::now();
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(2), task).await.expect("stops in time").expect("no panic").expect("ok");
    assert!(asked.elapsed() < Duration::from_millis(500));
    assert!(receiver.recv().await.is_none(), "no second scan");
}

#[test]
fn scans_the_real_proc_through_the_engine_path() {
    let _lock = real_proc_lock();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let Harness { cx, mut receiver, trigger, health } = harness(0);
        let task = tokio::spawn(procfs(Path::new("/proc"), Duration::from_millis(50)).run(cx));
        let me = std::process::id();
        let first = receiver.recv().await.expect("batch");
        let second = receiver.recv().await.expect("batch");
        trigger.trigger();
        task.await.expect("no panic").expect("clean stop");
        for (scan_id, batch) in [(1, &first), (2, &second)] {
            let rows = samples(batch);
            assert!(rows.iter().all(|s| s.scan == ScanInfo { scan_id, scan_size: rows.len() as u32 }));
            let own = rows.iter().find(|s| s.process.pid == me).expect("this test process is listed");
            assert!(own.threads >= 2 && own.rss_bytes > 0 && own.uid == rustix::process::geteuid().as_raw());
            assert!(rows.iter().any(|s| s.process.pid == 1), "PID 1 visible");
        }
        assert_eq!(state(&health).0, ComponentState::Starting, "not degraded on an ordinary /proc as root");
    });
}

#[test]
fn scrub_options_map_onto_the_scrubber_and_bad_extras_are_located() {
    let procfs = build_procfs("[sources.p.scrub]\nextra_flags = [\"--db-pw\"]\nextra_key_patterns = [\"*_PW\"]")
        .expect("valid extras");
    let scrub = &procfs.settings.scrub;
    assert!(scrub.enabled);
    assert_eq!(
        (scrub.extra_flags.as_slice(), scrub.extra_key_patterns.as_slice()),
        (&["--db-pw".to_owned()][..], &["*_PW".to_owned()][..])
    );
    assert!(!build_procfs("[sources.p.scrub]\nenabled = false").expect("off").settings.scrub.enabled);
    check_error(
        "[sources.p.scrub]\nextra_key_patterns = [\"OK_*\", \"a b\"]",
        4,
        31,
        "invalid scrub key pattern `a b`",
    );
    check_error(
        "[sources.p.scrub]\nextra_flags = [\"db-pw\"]",
        4,
        16,
        "invalid scrub flag `db-pw`: a flag starts with `-`",
    );
    check_error("[sources.p.scrub]\nextra_key_patterns = [\"**\"]", 4, 23, "matches every key");
    check_error("[sources.p.scrub]\npatterns = []", 4, 1, "unknown field `patterns`");
}

/// The example: a real process with a password, a glued `-p` and
/// a secret-looking `KEY=VALUE` in its arguments. The flag names stay.
#[test]
fn secrets_in_a_real_command_line_are_scrubbed_at_capture() {
    let _lock = real_proc_lock();
    let mut children = crate::procfs::test_support::Children::default();
    // `/bin/sh` and not `python3`: a `python3` found on PATH may be a shim
    // (pyenv) that execs twice, and between the execs its cmdline reads
    // empty or different. `; :` keeps the shell from exec-ing `sleep`, so
    // these arguments stay this process's for the whole test.
    let args = ["-c", "sleep 30; :", "sh", "--password=Hunter2", "-pHunter2", "TOKEN=Hunter2"];
    let pid = children.spawn("/bin/sh", &args);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(7).any(|w| w == b"Hunter2")) {
        assert!(std::time::Instant::now() < deadline, "the shell never showed its arguments");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut scanner = Scanner::new(ScannerSettings::default()).expect("scanner");
    let outcome = scanner.scan(0).expect("scan");
    let row = outcome.samples().find(|s| s.process.pid == pid).expect("the child is listed");
    assert!(!row.cmdline.contains("Hunter2"), "{}", row.cmdline);
    assert!(row.cmdline.contains("--password=***") && row.cmdline.contains("TOKEN=***"), "{}", row.cmdline);
    assert!(outcome.scrubbed >= 3, "counted: {}", outcome.scrubbed);
    let off = ScannerSettings {
        scrub: crate::scrub::ScrubConfig { enabled: false, ..Default::default() },
        ..Default::default()
    };
    let outcome = Scanner::new(off).expect("scanner").scan(0).expect("scan");
    let row = outcome.samples().find(|s| s.process.pid == pid).expect("listed");
    assert!(
        row.cmdline.contains("--password=Hunter2") && outcome.scrubbed == 0,
        "scrub.enabled = false keeps it: cmdline {:?}, scrubbed {}",
        row.cmdline,
        outcome.scrubbed
    );
}
