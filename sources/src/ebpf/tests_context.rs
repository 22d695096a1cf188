//! Process context at the source (issue #14): the start-up snapshot, user
//! names, cgroup paths, exe hashes and secret scrubbing — configuration
//! checks that run anywhere, and tests against the running kernel that run
//! the whole source and look at what it sends.
//!
//! The kernel tests need root; without it they print `SKIPPED <test>:
//! <reason>` (a failure under `CI=true`, like the other kernel tests).

use std::os::unix::fs::MetadataExt as _;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipeline::event::{HashState, ProcessSnapshot};
use pipeline::{Event, ProcessKey};
use sha2::{Digest as _, Sha256};

use super::tests::{build_ebpf, check_error, harness, Harness};
use super::tests_kernel::{kernel_or_skip, recorder, settings, WAIT};
use super::*;
use crate::exe_hash::hex;
use crate::identity::{cgroup_v2_path, Cgroups, Users};
use crate::scrub::Scrubber;

// ---- configuration --------------------------------------------------------

#[test]
fn context_options_default_on_and_are_read() {
    assert_eq!(build_ebpf("").expect("defaults").context(), &ContextSettings::default());
    let table = "snapshot = false\nexe_hash = false\nexe_hash_max_bytes = 1000\nexe_hash_wait_ms = 0\n\
                 [sources.p.scrub]\nenabled = false\nextra_flags = [\"--db-pw\"]\nextra_key_patterns = [\"*_PW\"]";
    let context = build_ebpf(table).expect("valid").context().clone();
    assert_eq!(
        (context.snapshot, context.exe_hash, context.exe_hash_max_bytes, context.exe_hash_wait),
        (false, false, 1000, Duration::ZERO)
    );
    assert!(!context.scrub.enabled);
    assert_eq!(
        (context.scrub.extra_flags, context.scrub.extra_key_patterns),
        (vec!["--db-pw".into()], vec!["*_PW".into()])
    );
}

#[test]
fn bad_context_options_are_reported_at_their_value() {
    check_error("exe_hash_max_bytes = 0", 3, 22, "exe_hash_max_bytes must be 1 to 1099511627776, got 0");
    check_error("exe_hash_wait_ms = 5000", 3, 20, "exe_hash_wait_ms must be 0 to 1000, got 5000");
    check_error("snapshot = \"yes\"", 3, 12, "expected a boolean");
    check_error("[sources.p.scrub]\nextra_key_patterns = [\"a b\"]", 4, 23, "invalid scrub key pattern `a b`");
    check_error("[sources.p.scrub]\nextra_flags = [\"--ok\", \"-\"]", 4, 24, "invalid scrub flag `-`");
    check_error("[sources.p.scrub]\nenable = true", 4, 1, "unknown field `enable`");
}

// ---- the fallback scrubs too ------------------------------------------------

#[test]
fn the_fallback_detector_scrubs_exec_argv() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut detector = fallback::Detector::new(root.path().to_owned(), 0);
    assert!(detector.scan(1).expect("scan").is_empty());
    let dir = root.path().join("300");
    std::fs::create_dir(&dir).expect("dir");
    std::fs::write(dir.join("stat"), "300 (mysql) S 1 300 300 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 99 1000 100 0\n")
        .expect("stat");
    std::fs::write(dir.join("cmdline"), "mysql\0-uroot\0-pHunter2\0--password=Hunter2\0").expect("cmdline");
    let events = detector.scan(2).expect("scan");
    let [Event::ProcessExec(exec)] = &events[..] else { panic!("{events:?}") };
    assert_eq!(exec.argv.iter().collect::<Vec<_>>(), ["mysql", "-uroot", "-p***", "--password=***"]);
    assert_eq!(detector.take_scrubbed(), 2);
}

// ---- the snapshot on this host ---------------------------------------------

/// Bytes a snapshot event holds: the event, plus its own strings and argv
/// (user names are shared between processes and not counted).
fn retained_bytes(process: &ProcessSnapshot) -> usize {
    let text = |s: &str| if s.is_empty() { 0 } else { s.len() + 16 };
    std::mem::size_of::<Event>()
        + text(&process.comm)
        + text(&process.exe)
        + text(process.argv.as_nul_terminated())
        + text(&process.cwd)
        + text(&process.tty)
        + text(&process.cgroup_path)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

/// Reads the snapshot of this host and prints its cost:
/// `cargo test --release -p sources snapshot_cost -- --nocapture --test-threads=1`
/// (`HOSTFLOW_SNAPSHOT_SLEEPERS=10000` first starts that many `sleep`s).
#[test]
fn snapshot_cost() {
    let sleepers: usize = std::env::var("HOSTFLOW_SNAPSHOT_SLEEPERS").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
    let mut children = crate::procfs::test_support::Children::default();
    for _ in 0..sleepers {
        children.spawn("sleep", &["600"]);
    }
    let scrubber = Scrubber::new(&crate::scrub::ScrubConfig::default()).expect("scrubber");
    let mut users = Users::load("/etc/passwd");
    let _ = snapshot::read(std::path::Path::new("/proc"), &mut users, &scrubber, 0).expect("warm-up");
    let rss_before = rss_kib();
    let started = Instant::now();
    let snapshot = snapshot::read(std::path::Path::new("/proc"), &mut users, &scrubber, 0).expect("/proc lists");
    let elapsed = started.elapsed();
    let rss_after = rss_kib();
    let n = snapshot.processes.len();
    assert!(n >= sleepers && n > 1, "{n} processes");
    let me = std::process::id();
    assert!(snapshot.processes.iter().any(|p| p.process.pid == me), "this test process is in it");
    let bytes: usize = snapshot.processes.iter().map(retained_bytes).sum::<usize>()
        + snapshot.files.capacity() * std::mem::size_of::<snapshot::ExeFile>();
    eprintln!(
        "snapshot: {n} processes ({} vanished, {} partly unreadable) in {:.1} ms = {:.1} µs/process; \
         ~{} KiB held ({} B/process); RSS +{} KiB",
        snapshot.vanished,
        snapshot.unreadable,
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e6 / n as f64,
        bytes / 1024,
        bytes / n,
        rss_after.saturating_sub(rss_before)
    );
}

// ---- against the kernel ----------------------------------------------------

/// The whole source running, every event it sends collected.
struct Running {
    events: Arc<Mutex<Vec<Event>>>,
    trigger: pipeline::ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), pipeline::ComponentError>>,
    collector: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts the source (exec, exit, fork) and returns once its snapshot
    /// arrived (the programs are attached by then).
    async fn start(context: ContextSettings) -> Running {
        let Harness { cx, mut receiver, trigger, health } = harness(11 << 48);
        let settings = settings(&[Program::Exec, Program::Exit, Program::Fork], 4 << 20, &[]);
        let source = EbpfSource::with_settings(settings, Duration::from_millis(20), Duration::from_secs(1))
            .with_context(context);
        let task = tokio::spawn(Box::new(source).run(cx));
        let events = Arc::new(Mutex::new(Vec::new()));
        let collector = tokio::spawn({
            let events = events.clone();
            async move {
                while let Some(batch) = receiver.recv().await {
                    events.lock().expect("lock").extend(batch);
                }
            }
        });
        let running = Running { events, trigger, task, collector };
        let snapshot = running.wait_for(|e| matches!(e, Event::ProcessSnapshot(_)).then_some(())).await;
        assert!(snapshot.is_some(), "no snapshot arrived");
        let component = health.report().components["p"].clone();
        assert_ne!(component.state, pipeline::health::ComponentState::Degraded, "{:?}", component.reason);
        running
    }

    /// The first event `find` picks, waiting up to [`WAIT`].
    async fn wait_for<T>(&self, mut find: impl FnMut(&Event) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(found) = self.events.lock().expect("lock").iter().find_map(&mut find) {
                return Some(found);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The hash a process's event ended with: its own when the state is
    /// final, else the `ExeHash` event that followed.
    async fn hash_of(&self, process: ProcessKey, state: HashState, sha256: &Arc<str>) -> (HashState, Arc<str>) {
        if state != HashState::Pending {
            return (state, sha256.clone());
        }
        self.wait_for(|e| match e {
            Event::ExeHash(hash) if hash.process == process => Some((hash.state, hash.sha256.clone())),
            _ => None,
        })
        .await
        .expect("an ExeHash event follows a pending hash")
    }

    async fn stop(self) -> Vec<Event> {
        self.trigger.trigger();
        self.task.await.expect("no panic").expect("clean stop");
        self.collector.await.expect("collector");
        Arc::try_unwrap(self.events).map(|m| m.into_inner().expect("lock")).unwrap_or_default()
    }
}

fn sha256_of(path: &std::path::Path) -> String {
    hex(&Sha256::digest(std::fs::read(path).expect("read the executable")))
}

fn start_ns(pid: u32) -> u64 {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).expect("stat");
    let ticks = crate::procfs::parse_stat(&stat).expect("parses").start_ticks;
    ticks * (1_000_000_000 / rustix::param::clock_ticks_per_second())
}

/// A process started before the source is in its snapshot, with its
/// parent's key, exe, cwd, user, cgroup and argv (scrubbed); its hash is
/// the file's; the key equals the one on its later exit from the kernel;
/// and the parent comes before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_holds_a_process_started_before_the_source() {
    if !kernel_or_skip("ebpf::tests_context::the_snapshot_holds_a_process_started_before_the_source") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["-c", "import time; time.sleep(30)", "--password=Hunter2", "-pHunter2", "TOKEN=Hunter2"];
    let mut child = Command::new("python3").args(args).current_dir(dir.path()).spawn().expect("python3");
    let pid = child.id();
    let deadline = Instant::now() + WAIT;
    // `python3` may be a wrapper script (pyenv) that execs the interpreter.
    let exe = loop {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe link");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if exe.to_string_lossy().contains("python") && cmdline.windows(7).any(|w| w == b"Hunter2") {
            break exe;
        }
        assert!(Instant::now() < deadline, "python3 never ran with its arguments");
        std::thread::sleep(Duration::from_millis(10));
    };
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let running = Running::start(ContextSettings::default()).await;
    let me = std::process::id();
    let snapshot = |wanted: u32| {
        move |e: &Event| match e {
            Event::ProcessSnapshot(p) if p.process.pid == wanted => Some(p.clone()),
            _ => None,
        }
    };
    let process = running.wait_for(snapshot(pid)).await.expect("the child is in the snapshot");
    let parent = running.wait_for(snapshot(me)).await.expect("this test is in the snapshot");
    assert_eq!(process.process, ProcessKey { pid, start_time_ns: start_ns(pid) });
    assert_eq!(process.parent, ProcessKey { pid: me, start_time_ns: start_ns(me) });
    assert_eq!(parent.process, process.parent);
    assert!(parent.meta.event_id < process.meta.event_id, "parents first");
    assert_eq!(&*process.exe, exe.to_string_lossy());
    assert_eq!(&*process.cwd, dir.path().canonicalize().expect("canonical").to_string_lossy());
    assert_eq!(&*process.cgroup_path, cgroup_v2_path(&cgroup));
    assert_eq!((process.uid, &*process.user), (0, "root"));
    assert!(process.comm.starts_with("python"), "{}", process.comm);
    let argv = process.argv.joined();
    assert!(!argv.contains("Hunter2") && argv.contains("--password=***") && argv.contains("TOKEN=***"), "{argv}");
    let (state, sha256) = running.hash_of(process.process, process.exe_hash, &process.exe_sha256).await;
    assert_eq!((state, &*sha256), (HashState::Ok, sha256_of(&exe).as_str()), "the snapshot's exe hash");

    child.kill().expect("kill");
    child.wait().expect("reap");
    let exit = running.wait_for(|e| match e {
        Event::ProcessExit(exit) if exit.process.pid == pid => Some(exit.process),
        _ => None,
    });
    assert_eq!(exit.await, Some(process.process), "the kernel's key for its exit equals the snapshot's");
    let events = running.stop().await;
    let ids: std::collections::HashSet<u64> = events.iter().map(|e| e.meta().event_id).collect();
    assert_eq!(ids.len(), events.len(), "one id sequence for snapshot, ring and hash events");
}

/// A freshly copied binary is hashed (in the exec or by an `ExeHash` event
/// after it) to the file's SHA-256; its second exec is a cache hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_of_a_fresh_binary_gets_the_files_sha256() {
    if !kernel_or_skip("ebpf::tests_context::an_exec_of_a_fresh_binary_gets_the_files_sha256") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = dir.path().join("fresh-true");
    std::fs::copy("/bin/true", &binary).expect("copy /bin/true");
    let recorder = recorder();
    let running = Running::start(ContextSettings::default()).await;
    let expected = sha256_of(&binary);
    let mut seen = Vec::new();
    for round in 0..2 {
        let marker = format!("round-{round}");
        assert!(Command::new(&binary).arg(&marker).status().expect("run").success());
        let exec = running.wait_for(|e| match e {
            Event::ProcessExec(exec) if exec.argv.iter().any(|a| a == marker) => Some(exec.clone()),
            _ => None,
        });
        let exec = exec.await.expect("the exec");
        let attributes = exec.attributes.clone().expect("attributes");
        let metadata = std::fs::metadata(&binary).expect("stat");
        assert_eq!(attributes.file.inode, metadata.ino());
        assert_eq!(attributes.file.dev, crate::exe_hash::kernel_dev(metadata.dev()));
        seen.push(attributes.exe_hash);
        let (state, sha256) = running.hash_of(exec.process, attributes.exe_hash, &attributes.exe_sha256).await;
        assert_eq!((state, &*sha256), (HashState::Ok, expected.as_str()), "round {round}");
    }
    assert_eq!(seen[1], HashState::Ok, "the second exec is a cache hit ({seen:?})");
    eprintln!("fresh binary: the exec left with hash state {:?} (then {:?} from the cache)", seen[0], seen[1]);
    running.stop().await;
    let count = |result| recorder.get(crate::exe_hash::EXE_HASH_TOTAL, &[("component", "p"), ("result", result)]);
    assert!(count("hit") >= 1 && count("computed") >= 1, "hit {} computed {}", count("hit"), count("computed"));
}

/// With a wait long enough for the queue (here 1 s), a fresh binary's hash
/// is in its exec event itself: no `ExeHash` event follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_ready_within_the_wait_is_in_the_exec_itself() {
    if !kernel_or_skip("ebpf::tests_context::a_hash_ready_within_the_wait_is_in_the_exec_itself") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = dir.path().join("fresh-true-2");
    std::fs::copy("/bin/true", &binary).expect("copy /bin/true");
    let context = ContextSettings { exe_hash_wait: Duration::from_secs(1), ..ContextSettings::default() };
    let running = Running::start(context).await;
    assert!(Command::new(&binary).arg("waited").status().expect("run").success());
    let exec = running.wait_for(|e| match e {
        Event::ProcessExec(exec) if exec.argv.iter().any(|a| a == "waited") => Some(exec.clone()),
        _ => None,
    });
    let attributes = exec.await.expect("the exec").attributes.expect("attributes");
    assert_eq!((attributes.exe_hash, &*attributes.exe_sha256), (HashState::Ok, sha256_of(&binary).as_str()));
    let events = running.stop().await;
    assert!(
        !events.iter().any(|e| matches!(e, Event::ExeHash(h) if h.exe.ends_with("fresh-true-2"))),
        "no ExeHash event for a hash the exec already carries"
    );
}

/// An exec in a cgroup created after the source started (a miss, then a
/// walk) carries that cgroup's path; its user is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_in_a_new_cgroup_carries_its_path() {
    if !kernel_or_skip("ebpf::tests_context::an_exec_in_a_new_cgroup_carries_its_path") {
        return;
    }
    let cgroups = Cgroups::discover();
    let Some(root) = cgroups.root() else {
        pipeline::testing::skip("ebpf::tests_context::an_exec_in_a_new_cgroup_carries_its_path", "no cgroup2 mount");
        return;
    };
    let running = Running::start(ContextSettings::default()).await;
    let name = format!("hostflow-test-{}", std::process::id());
    let cgroup = root.join(&name);
    std::fs::create_dir(&cgroup).expect("mkdir the test cgroup");
    tokio::time::sleep(crate::identity::CGROUP_REWALK + Duration::from_millis(50)).await;
    let marker = format!("in-{name}");
    let script = format!("echo $$ > {}/cgroup.procs && exec /bin/true {marker}", cgroup.display());
    let status = Command::new("sh").args(["-c", &script]).status().expect("sh");
    let exec = running.wait_for(|e| match e {
        Event::ProcessExec(exec) if exec.argv.iter().any(|a| a == marker) => Some(exec.clone()),
        _ => None,
    });
    let exec = exec.await;
    let _ = std::fs::remove_dir(&cgroup);
    assert!(status.success());
    let exec = exec.expect("the exec in the cgroup");
    let attributes = exec.attributes.expect("attributes");
    assert_eq!(&*attributes.cgroup_path, format!("/{name}"), "cgroup id {}", exec.cgroup_id);
    assert_eq!(&*attributes.user, "root");
    running.stop().await;
}

/// Secrets in an exec's arguments and captured environment are scrubbed
/// before the event leaves the source; the flag names stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_argv_and_environment_are_scrubbed_at_the_source() {
    if !kernel_or_skip("ebpf::tests_context::exec_argv_and_environment_are_scrubbed_at_the_source") {
        return;
    }
    let recorder = recorder();
    let running = Running::start(ContextSettings::default()).await;
    let status = Command::new("python3")
        .args(["-c", "pass", "--password=Hunter2", "-pHunter2", "TOKEN=Hunter2", "scrub-test"])
        .env("HTTP_PROXY", "http://user:Hunter2@proxy:3128")
        .status()
        .expect("python3");
    assert!(status.success());
    let exec = running.wait_for(|e| match e {
        Event::ProcessExec(exec) if exec.argv.iter().any(|a| a == "scrub-test") => Some(exec.clone()),
        _ => None,
    });
    let exec = exec.await.expect("the exec");
    let argv = exec.argv.joined();
    assert!(!argv.contains("Hunter2"), "{argv}");
    assert!(argv.contains("--password=***") && argv.contains("-p***") && argv.contains("TOKEN=***"), "{argv}");
    let attributes = exec.attributes.expect("attributes");
    assert!(attributes.env.iter().any(|e| &**e == "HTTP_PROXY=http://user:***@proxy:3128"), "{:?}", attributes.env);
    assert!(!attributes.env.iter().any(|e| e.contains("Hunter2")), "{:?}", attributes.env);
    assert_eq!((&*attributes.user, exec.uid), ("root", 0));
    running.stop().await;
    let scrubbed = recorder.get(crate::procfs::scrub_options::SCRUBBED_VALUES_TOTAL, &[("component", "p")]);
    assert!(scrubbed >= 4, "hostflow_scrubbed_values_total counts argv and env values: {scrubbed}");
}

/// With `snapshot = false` nothing is sent before the first record, and
/// `exe_hash = false` leaves hashes `not_requested`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_hashes_can_be_turned_off() {
    if !kernel_or_skip("ebpf::tests_context::snapshot_and_hashes_can_be_turned_off") {
        return;
    }
    let Harness { cx, mut receiver, trigger, .. } = harness(12 << 48);
    let settings = settings(&[Program::Exec], 1 << 20, &[]);
    let context = ContextSettings { snapshot: false, exe_hash: false, ..ContextSettings::default() };
    let source =
        EbpfSource::with_settings(settings, Duration::from_millis(20), Duration::from_secs(1)).with_context(context);
    let task = tokio::spawn(Box::new(source).run(cx));
    let mut first = None;
    for _ in 0..100 {
        let _ = tokio::task::spawn_blocking(|| Command::new("/bin/true").arg("off-test").status()).await;
        if let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(200), receiver.recv()).await {
            first = Some(batch);
            break;
        }
    }
    let first = first.expect("the source reports execs");
    assert!(first.iter().all(|e| matches!(e, Event::ProcessExec(_))), "no snapshot: {first:?}");
    let Event::ProcessExec(exec) = &first[0] else { unreachable!() };
    assert_eq!(exec.attributes.as_ref().expect("attributes").exe_hash, HashState::NotRequested);
    trigger.trigger();
    task.await.expect("no panic").expect("clean stop");
}
