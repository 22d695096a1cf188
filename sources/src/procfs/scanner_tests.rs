//! Tests of the scanner: real children on the real `/proc`, fake trees for
//! what a live system cannot show on demand (PID reuse, a process that
//! vanishes mid-read, an unreadable entry).

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::procfs::test_support::{real_proc_lock, Children, FakeProc, FakeStat};

fn scanner(proc_root: &Path, cmdline_max_bytes: usize) -> Scanner {
    Scanner::new(ScannerSettings {
        proc_root: proc_root.to_owned(),
        cmdline_max_bytes,
        max_open_fds: None,
        scrub: Default::default(),
    })
    .expect("scanner")
}

fn find(outcome: &ScanOutcome, pid: u32) -> Option<&ProcessSample> {
    outcome.samples().find(|sample| sample.process.pid == pid)
}

fn row(outcome: &ScanOutcome, pid: u32) -> &ProcessSample {
    find(outcome, pid).unwrap_or_else(|| panic!("pid {pid} not in scan {}", outcome.scan_id))
}

/// The open descriptors of this test process that point at `/proc/PID/stat`.
fn open_stat_fds(pid: u32) -> usize {
    let target = format!("/proc/{pid}/stat");
    std::fs::read_dir("/proc/self/fd")
        .expect("fd list")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|link| link.as_os_str() == target.as_str())
        .count()
}

/// `/proc/PID/statm` resident pages × page size, read independently.
fn statm_rss_bytes(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).expect("statm");
    let pages: u64 = text.split(' ').nth(1).and_then(|f| f.parse().ok()).expect("resident field");
    pages * rustix::param::page_size() as u64
}

#[test]
fn busy_and_sleeping_children_on_the_real_proc() {
    let _lock = real_proc_lock();
    let mut children = Children::default();
    let busy = children.spawn("sh", &["-c", "while :; do :; done"]);
    let sleeper = children.spawn("sleep", &["60"]);
    let mut scanner = scanner(Path::new("/proc"), 4096);
    let euid = rustix::process::geteuid().as_raw();

    let first = scanner.scan(0).expect("first scan");
    for pid in [busy, sleeper] {
        let sample = row(&first, pid);
        assert_eq!(sample.ppid, std::process::id(), "pid {pid}");
        assert_eq!(sample.uid, euid);
        assert_eq!((sample.cpu_ticks, sample.cpu_percent), (0, 0.0), "first sighting");
        assert_eq!(sample.threads, 1);
        assert!(sample.process.start_time_ns <= first.ts_ns, "started before the scan");
        assert!(first.ts_ns - sample.process.start_time_ns < 60_000_000_000, "started less than a minute ago");
        assert!(open_stat_fds(pid) == 1, "one kept-open stat descriptor for {pid}");
    }
    assert!(first.scanned() >= 3 && first.events.len() == first.scanned());
    assert!(find(&first, 1).is_some(), "PID 1 is visible to the test");

    std::thread::sleep(Duration::from_millis(1000));
    let second = scanner.scan(0).expect("second scan");
    let (busy_row, sleeper_row) = (row(&second, busy), row(&second, sleeper));
    // By now (and at the first scan unless it caught a child inside execve).
    assert_eq!((&*busy_row.name, &*busy_row.cmdline), ("sh", "sh -c while :; do :; done"));
    assert_eq!((&*sleeper_row.name, &*sleeper_row.cmdline), ("sleep", "sleep 60"));
    let elapsed = (second.ts_ns - first.ts_ns) as f64 / 1e9;
    assert!(busy_row.cpu_percent > 20.0, "busy loop at {} %", busy_row.cpu_percent);
    assert!(busy_row.cpu_percent <= 100.0 * 1.05, "one thread cannot use more than one core");
    assert!(sleeper_row.cpu_percent < busy_row.cpu_percent);
    assert!(sleeper_row.cpu_percent <= 2.0, "sleeper at {} %", sleeper_row.cpu_percent);
    let expected = busy_row.cpu_ticks as f64 / scanner.clock_ticks_per_second() as f64 / elapsed * 100.0;
    assert!((busy_row.cpu_percent - expected).abs() < 1e-9, "percent = ticks / CLK_TCK / elapsed");
    assert!(busy_row.process == row(&first, busy).process, "same key across scans");
    assert_eq!(busy_row.state, b'R', "a busy loop is running (or runnable)");
    assert_eq!(sleeper_row.state, b'S');
    // `stat` reads the kernel's per-CPU RSS counters approximately, `statm`
    // (since 6.x) exactly: they may differ by up to a counter batch (at
    // least 32 pages) per CPU.
    let n_cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let tolerance = (64 * n_cpus * rustix::param::page_size() as u64).max(1 << 20);
    for sample in [busy_row, sleeper_row] {
        let statm = statm_rss_bytes(sample.process.pid);
        assert!(sample.rss_bytes > 0 && sample.rss_bytes < 100 << 20, "rss {}", sample.rss_bytes);
        assert!(sample.rss_bytes.abs_diff(statm) <= tolerance, "rss {} vs statm {statm}", sample.rss_bytes);
    }
    for pid in [busy, sleeper] {
        assert_eq!(open_stat_fds(pid), 1, "the descriptor of {pid} was reused, not reopened");
    }

    // A process that exits between scans disappears, and so does its descriptor.
    children.kill(sleeper);
    let third = scanner.scan(0).expect("third scan");
    assert!(find(&third, sleeper).is_none());
    assert!(find(&third, busy).is_some());
    assert!(!scanner.is_tracking(sleeper) && scanner.is_tracking(busy));
    assert!(third.closed >= 1);
    assert_eq!(open_stat_fds(sleeper), 0, "descriptor of the exited process closed");
    drop(scanner);
    assert_eq!(open_stat_fds(busy), 0, "dropping the scanner closes every descriptor");
}

#[test]
fn scan_ids_sizes_and_event_ids() {
    let _lock = real_proc_lock();
    let mut scanner = scanner(Path::new("/proc"), 64);
    let prefix = 7 << 48;
    let mut next_sequence = 0;
    for scan_id in 1..=3 {
        let outcome = scanner.scan(prefix).expect("scan");
        assert_eq!(outcome.scan_id, scan_id);
        for sample in outcome.samples() {
            assert_eq!(sample.scan, ScanInfo { scan_id, scan_size: outcome.scanned() as u32 });
            assert_eq!(sample.meta.event_id, prefix | next_sequence);
            assert_eq!(sample.meta.ts_ns, outcome.ts_ns);
            assert_eq!(sample.top_n_rank, 0);
            assert!(sample.cmdline.len() <= 64);
            next_sequence += 1;
        }
        assert_eq!(scanner.tracked_processes(), outcome.scanned());
    }
}

#[test]
fn cpu_is_a_delta_of_the_same_process_only() {
    let check = |previous: Option<TickSample>, current: TickSample, expected: (u64, f64)| {
        assert_eq!(cpu_since(previous.as_ref(), &current, 100), expected, "{previous:?} → {current:?}");
    };
    let at =
        |start_ticks, cpu_ticks, seconds: u64| TickSample { start_ticks, cpu_ticks, ts_ns: seconds * 1_000_000_000 };
    check(None, at(10, 500, 20), (0, 0.0));
    check(Some(at(10, 500, 10)), at(10, 750, 20), (250, 25.0));
    // Two busy threads on two cores.
    check(Some(at(10, 500, 10)), at(10, 2500, 20), (2000, 200.0));
    // PID reuse: same pid, another start time: a first sighting.
    check(Some(at(10, 500, 10)), at(11, 900, 20), (0, 0.0));
    // A counter that went backwards, or no time between readings: never negative, never infinite.
    check(Some(at(10, 500, 10)), at(10, 400, 20), (0, 0.0));
    check(Some(at(10, 500, 10)), at(10, 600, 10), (100, 0.0));
    assert_eq!(ticks_to_ns(250, 100), 2_500_000_000);
    assert_eq!(ticks_to_ns(7, 1000), 7_000_000);
}

#[test]
fn pid_reuse_closes_the_old_descriptor_and_starts_over() {
    let fake = FakeProc::new();
    fake.set(100, &FakeStat { comm: "old", utime: 40, stime: 10, start_ticks: 500, ..FakeStat::default() }, b"old\0");
    let mut scanner = scanner(fake.root(), 4096);
    let first = scanner.scan(0).expect("scan");
    assert_eq!((first.scanned(), first.opened, first.closed), (1, 1, 0));
    assert_eq!(row(&first, 100).process.start_time_ns, ticks_to_ns(500, scanner.clock_ticks_per_second()));

    // Same start time: the kept descriptor is read again, nothing opened.
    fake.set(100, &FakeStat { comm: "old", utime: 60, stime: 20, start_ticks: 500, ..FakeStat::default() }, b"old\0");
    let second = scanner.scan(0).expect("scan");
    assert_eq!((second.opened, second.closed, row(&second, 100).cpu_ticks), (0, 0, 30));
    assert!(row(&second, 100).cpu_percent > 0.0);

    // The PID now belongs to a process that started later, with fewer ticks.
    fake.set(100, &FakeStat { comm: "new", utime: 5, stime: 0, start_ticks: 900, ..FakeStat::default() }, b"new\0-x");
    let third = scanner.scan(0).expect("scan");
    let reused = row(&third, 100);
    assert_eq!((third.opened, third.closed), (1, 1), "old descriptor closed, a new one opened");
    assert_eq!((reused.cpu_ticks, reused.cpu_percent), (0, 0.0), "first sighting of the new process");
    assert_eq!(reused.process.start_time_ns, ticks_to_ns(900, scanner.clock_ticks_per_second()));
    assert_eq!((&*reused.name, &*reused.cmdline), ("new", "new -x"));
}

#[test]
fn an_exec_rereads_name_and_command_line() {
    let fake = FakeProc::new();
    fake.set(7, &FakeStat { comm: "bash", ..FakeStat::default() }, b"-bash\0");
    let mut scanner = scanner(fake.root(), 4096);
    assert_eq!(&*row(&scanner.scan(0).expect("scan"), 7).cmdline, "-bash");
    fake.set(7, &FakeStat { comm: "python3", ..FakeStat::default() }, b"python3\0app.py\0");
    let after = scanner.scan(0).expect("scan");
    assert_eq!((&*row(&after, 7).name, &*row(&after, 7).cmdline), ("python3", "python3 app.py"));
    assert_eq!(after.opened, 0, "same process, same descriptor");
}

#[test]
fn odd_names_and_bounded_command_lines() {
    let fake = FakeProc::new();
    fake.set(11, &FakeStat { comm: "a) (b c", state: 'D', threads: 9, ..FakeStat::default() }, b"x\0y");
    fake.set(12, &FakeStat { comm: "", ..FakeStat::default() }, &[b'z'; 5000]);
    std::os::unix::fs::symlink("/opt/tool/bin/worker (deleted)", fake.root().join("12/exe")).expect("exe link");
    fake.set(13, &FakeStat { comm: "", rss_pages: 3, ..FakeStat::default() }, b"");
    let mut scanner = scanner(fake.root(), 100);
    let outcome = scanner.scan(0).expect("scan");
    assert_eq!(outcome.scanned(), 3, "non-numeric entries are not processes");
    let odd = row(&outcome, 11);
    assert_eq!((&*odd.name, odd.state, odd.threads, &*odd.cmdline), ("a) (b c", b'D', 9, "x y"));
    assert_eq!(&*row(&outcome, 12).name, "worker", "empty comm falls back to the exe's basename");
    assert_eq!(row(&outcome, 12).cmdline.len(), 100);
    assert_eq!((&*row(&outcome, 13).name, &*row(&outcome, 13).cmdline), ("", ""));
    assert_eq!(row(&outcome, 13).rss_bytes, 3 * rustix::param::page_size() as u64);
}

#[test]
fn vanished_and_unreadable_processes_are_counted_not_returned() {
    let fake = FakeProc::new();
    fake.set(20, &FakeStat::default(), b"ok");
    // Listed, but its stat is gone by the time it is read.
    std::fs::create_dir(fake.root().join("21")).expect("empty pid dir");
    fake.set(22, &FakeStat::default(), b"doomed");
    std::fs::remove_file(fake.root().join("22/stat")).expect("remove stat");
    // Listed and present, but not readable as a file.
    std::fs::create_dir_all(fake.root().join("23/stat")).expect("stat as a directory");
    // Present, but not a stat line.
    std::fs::create_dir(fake.root().join("24")).expect("pid dir");
    std::fs::write(fake.root().join("24/stat"), "garbage").expect("garbage stat");
    let mut scanner = scanner(fake.root(), 4096);
    let outcome = scanner.scan(0).expect("scan");
    assert_eq!(outcome.samples().map(|s| s.process.pid).collect::<Vec<_>>(), vec![20]);
    assert_eq!((outcome.vanished, outcome.unreadable), (2, 2));
    let reason = outcome.first_unreadable.as_deref().expect("a reason");
    assert!(reason.contains("/23/stat") || reason.contains("/24/stat"), "{reason}");
    assert_eq!(outcome.events[0].meta().event_id, 0, "sequence counts rows only");

    // A tracked process whose entry disappears is dropped and its descriptor closed.
    std::fs::remove_dir_all(fake.root().join("20")).expect("remove process");
    let after = scanner.scan(0).expect("scan");
    assert_eq!((after.scanned(), after.closed), (0, 1));
    assert_eq!(scanner.tracked_processes(), 0);
}

#[test]
fn beyond_the_descriptor_budget_processes_are_read_the_slow_way() {
    let fake = FakeProc::new();
    for pid in [30, 31, 32] {
        fake.set(pid, &FakeStat { utime: 10, start_ticks: 100 + u64::from(pid), ..FakeStat::default() }, b"x");
    }
    let settings = ScannerSettings {
        proc_root: fake.root().to_owned(),
        cmdline_max_bytes: 16,
        max_open_fds: Some(2),
        scrub: Default::default(),
    };
    let mut scanner = Scanner::new(settings).expect("scanner");
    let first = scanner.scan(0).expect("scan");
    assert_eq!((first.scanned(), first.opened, scanner.open_descriptors()), (3, 2, 2));
    for pid in [30, 31, 32] {
        fake.set(pid, &FakeStat { utime: 25, start_ticks: 100 + u64::from(pid), ..FakeStat::default() }, b"x");
    }
    let second = scanner.scan(0).expect("scan");
    assert_eq!(second.samples().map(|s| s.cpu_ticks).collect::<Vec<_>>(), vec![15, 15, 15], "deltas for all");
    assert_eq!((second.opened, second.closed, scanner.open_descriptors()), (0, 0, 2));
    // The slow way notices an exit and a PID reuse too.
    std::fs::remove_dir_all(fake.root().join("32")).expect("exit");
    fake.set(31, &FakeStat { utime: 1, start_ticks: 999, ..FakeStat::default() }, b"y");
    let third = scanner.scan(0).expect("scan");
    assert_eq!(third.samples().map(|s| (s.process.pid, s.cpu_ticks)).collect::<Vec<_>>(), vec![(30, 0), (31, 0)]);
    assert_eq!(scanner.tracked_processes(), 2);
    assert!(scanner.open_descriptors() <= 2);
    assert!(raise_open_file_limit().is_none_or(|soft| soft >= 64));
}

#[test]
fn an_unlistable_proc_root_is_a_clear_error() {
    let missing = Path::new("/nonexistent/hostflow-proc");
    let error = Scanner::new(ScannerSettings {
        proc_root: missing.to_owned(),
        cmdline_max_bytes: 0,
        max_open_fds: None,
        scrub: Default::default(),
    })
    .err()
    .expect("missing root fails");
    assert!(matches!(error, ProcfsError::List { ref path, .. } if path == missing));
    assert_eq!(
        error.to_string(),
        "cannot list processes in /nonexistent/hostflow-proc: No such file or directory (os error 2)"
    );
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let error = Scanner::new(ScannerSettings {
        proc_root: file.path().to_owned(),
        cmdline_max_bytes: 0,
        max_open_fds: None,
        scrub: Default::default(),
    })
    .err()
    .expect("a file is not a proc root");
    assert!(error.to_string().contains("Not a directory"), "{error}");

    // A root that disappears after start-up fails the scan, not the process.
    let fake = FakeProc::new();
    let mut scanner = scanner(fake.root(), 0);
    let root = fake.root().to_owned();
    drop(fake);
    let error = scanner.scan(0).expect_err("listing fails");
    assert!(error.to_string().contains(&root.display().to_string()), "{error}");
}
