//! Tests against the running kernel: the real programs attached, real
//! processes, sockets and files. Each needs root (or CAP_BPF and
//! CAP_PERFMON) and a build with the eBPF object; without them it prints
//! `SKIPPED <test>: <reason>` (and is counted by the test driver), except
//! under `CI=true`, where it fails. One test re-runs the exec, fork,
//! connect, open and probe tests as an unprivileged user holding exactly
//! the systemd unit's capabilities.
//!
//! Robust when run in parallel with other tests: every test loads its own
//! copy of the programs (its own ring buffer and counters) and looks only
//! at records about its own processes, sockets and temporary directories.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::OpenOptionsExt as _;
use std::process::Command;
use std::time::{Duration, Instant};

use aya::maps::{MapData, PerCpuArray};
use pipeline::Event;

use super::counters::read_counts;
use super::loader::{self, Loaded, ProgramState};
use super::records::{decode, ExecRecord, RawCounter, Record, ARGV_LEN};
use super::ring_map::RingMap;
use super::*;
use crate::ebpf::tests::{harness, wait_for_events, Harness};
use pipeline::edge::EdgeReceiver;
use pipeline::health::{ComponentState, Health};

/// True when this test can touch the kernel; otherwise reports the skip
/// (or fails under `CI=true`).
pub(super) fn kernel_or_skip(test: &str) -> bool {
    let privileged = rustix::process::geteuid().as_raw() == 0
        || super::host::capabilities().is_some_and(|caps| caps.can_trace() && caps.dac_read_search());
    let reason = if !privileged {
        Some("needs root (or CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH) to load eBPF programs".to_owned())
    } else {
        loader::embedded_object().err().map(|reason| format!("built without eBPF: {reason}"))
    };
    let Some(reason) = reason else { return true };
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: {reason} (CI=true: eBPF tests must run)");
    pipeline::testing::skip(test, &reason);
    false
}

pub(super) fn settings(programs: &[Program], ring_buffer_bytes: u32, file_prefixes: &[&str]) -> LoadSettings {
    LoadSettings {
        programs: programs.to_vec(),
        connect_hook: super::ConnectHook::Tracepoint,
        cgroup_path: None,
        ring_buffer_bytes,
        wakeup_threshold_bytes: 0,
        file_prefixes: file_prefixes.iter().map(|p| (*p).to_owned()).collect(),
        file_paths: Vec::new(),
        file_basenames: Vec::new(),
        agent_tgid: None,
        exec_env: DEFAULT_EXEC_ENV.iter().map(|name| (*name).to_owned()).collect(),
    }
}

/// Programs loaded straight from the loader, the ring read synchronously.
pub(super) struct Session {
    pub(super) loaded: Loaded,
    ring: RingMap,
    pub(super) counters: PerCpuArray<MapData, RawCounter>,
    pub(super) records: Vec<Record>,
}

impl Session {
    pub(super) fn start(settings: &LoadSettings) -> Session {
        let mut loaded = loader::load(settings).expect("the eBPF object loads");
        for program in &loaded.report.programs {
            assert!(!matches!(program.state, ProgramState::Failed(_)), "{:?}", loaded.report);
        }
        let ring = loaded.take_ring().expect("ring buffer");
        let counters = loaded.take_counters().expect("counters");
        Session { loaded, ring, counters, records: Vec::new() }
    }

    pub(super) fn ring_wrapped(&self) -> u64 {
        self.ring.wrapped()
    }

    fn poll(&mut self) -> usize {
        let mut n = 0;
        while let Some(record) = self.ring.next(|item| decode(item).expect("every record decodes")) {
            self.records.push(record);
            n += 1;
        }
        n
    }

    /// Polls until `done` holds for the records so far, or `timeout`.
    pub(super) fn wait_for(&mut self, timeout: Duration, mut done: impl FnMut(&[Record]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            if done(&self.records) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn exec_of(records: &[Record], pid: u32) -> Option<&ExecRecord> {
    records.iter().find_map(|r| match r {
        Record::Exec(exec) if exec.proc.tgid == pid => Some(exec),
        _ => None,
    })
}

pub(super) const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_true_processes_each_exec_and_exit_with_code_zero() {
    if !kernel_or_skip("ebpf::a_thousand_true_processes_each_exec_and_exit_with_code_zero") {
        return;
    }
    let spawn_true = || {
        (0..1000)
            .map(|_| {
                let mut child = Command::new("/bin/true").spawn().expect("spawn /bin/true");
                let pid = child.id();
                assert!(child.wait().expect("wait").success());
                pid
            })
            .collect::<Vec<u32>>()
    };
    let started = Instant::now();
    spawn_true();
    let detached_secs = started.elapsed().as_secs_f64();
    let Harness { cx, mut receiver, trigger, health } = harness(7 << 48);
    let mut source_settings = settings(&[Program::Exec, Program::Exit, Program::Fork], 4 << 20, &[]);
    source_settings.wakeup_threshold_bytes = 64 << 10;
    let source = EbpfSource::with_settings(source_settings, Duration::from_millis(50), Duration::from_secs(1));
    let task = tokio::spawn(Box::new(source).run(cx));
    wait_until_running(&mut receiver, &health, || {
        let mut child = Command::new("/bin/true").spawn().expect("spawn /bin/true");
        let _ = child.wait();
    })
    .await;

    let started = Instant::now();
    let pids = tokio::task::spawn_blocking(spawn_true).await.expect("spawner");
    let spawn_secs = started.elapsed().as_secs_f64();
    let wanted: HashSet<u32> = pids.iter().copied().collect();
    let mut execs: HashMap<u32, pipeline::ProcessKey> = HashMap::new();
    let mut exits: HashMap<u32, (pipeline::ProcessKey, i32)> = HashMap::new();
    let mut forks: HashSet<u32> = HashSet::new();
    let mut ids = HashSet::new();
    let complete = wait_for_events(&mut receiver, WAIT, |event| {
        assert!(ids.insert(event.meta().event_id), "event ids are unique");
        assert_eq!(event.meta().event_id >> 48, 7, "ids carry the source's prefix");
        match event {
            Event::ProcessExec(exec) if wanted.contains(&exec.process.pid) => {
                assert_eq!(&*exec.exe, "/bin/true");
                assert_eq!(exec.argv.iter().collect::<Vec<_>>(), ["/bin/true"]);
                assert_eq!(exec.ppid, std::process::id());
                assert!(execs.insert(exec.process.pid, exec.process).is_none(), "one exec per process");
            }
            Event::ProcessExit(exit) if wanted.contains(&exit.process.pid) => {
                let first = exits.insert(exit.process.pid, (exit.process, exit.exit_code));
                assert!(first.is_none(), "one exit per process");
            }
            Event::ProcessFork(fork) if wanted.contains(&fork.child.pid) => {
                assert_eq!(fork.parent.pid, std::process::id());
                assert!(forks.insert(fork.child.pid), "one fork per process");
            }
            _ => {}
        }
        execs.len() == wanted.len() && exits.len() == wanted.len() && forks.len() == wanted.len()
    })
    .await;
    assert!(complete, "execs {} exits {} forks {} of {}", execs.len(), exits.len(), forks.len(), wanted.len());
    for pid in &pids {
        let (exit_key, code) = exits[pid];
        assert_eq!(code, 0, "/bin/true exits 0 (pid {pid})");
        assert_eq!(execs[pid], exit_key, "exec and exit agree on the process key (pid {pid})");
    }
    eprintln!(
        "1000 × /bin/true: {spawn_secs:.2} s attached, {detached_secs:.2} s detached ({:.2}x); \
         every exec, fork and exit seen",
        spawn_secs / detached_secs
    );
    trigger.trigger();
    task.await.expect("no panic").expect("clean stop");
}

/// Repeats `poke` (something the source reports) until the source sends
/// anything, so a test starts once the programs are attached; fails if the
/// source went degraded instead.
async fn wait_until_running(receiver: &mut EdgeReceiver, health: &Health, poke: impl Fn() + Send + Sync + 'static) {
    let poke = std::sync::Arc::new(poke);
    for _ in 0..100 {
        let component = health.report().components["p"].clone();
        assert_ne!(component.state, ComponentState::Degraded, "{:?}", component.reason);
        let poke = poke.clone();
        tokio::task::spawn_blocking(move || poke()).await.expect("poke");
        if wait_for_events(receiver, Duration::from_millis(200), |_| true).await {
            return;
        }
    }
    panic!("the source never reported anything");
}

#[test]
fn argv_is_captured_exactly_and_a_long_one_is_cut_and_flagged() {
    if !kernel_or_skip("ebpf::argv_is_captured_exactly_and_a_long_one_is_cut_and_flagged") {
        return;
    }
    let mut session = Session::start(&settings(&[Program::Exec], 1 << 20, &[]));
    let args = ["hello world", "ünïcödé ✓ 日本", "", "--flag=a b\tc", "last"];
    let mut child = Command::new("/bin/echo").args(args).stdout(std::process::Stdio::null()).spawn().expect("echo");
    let pid = child.id();
    child.wait().expect("wait");
    let long_args: Vec<String> = (0..100).map(|i| format!("{i:04}").repeat(256)).collect();
    let mut long_child = Command::new("/bin/true").args(&long_args).spawn().expect("true with a long argv");
    let long_pid = long_child.id();
    long_child.wait().expect("wait");
    assert!(session.wait_for(WAIT, |records| exec_of(records, pid).is_some() && exec_of(records, long_pid).is_some()));

    let exec = exec_of(&session.records, pid).expect("echo's exec");
    let mut expected = vec!["/bin/echo"];
    expected.extend(args);
    assert_eq!(exec.argv.iter().collect::<Vec<_>>(), expected);
    assert!(!exec.argv_truncated && !exec.argv_unreadable);
    assert_eq!(&*exec.filename, "/bin/echo");
    assert_eq!(&*exec.comm, "echo");
    assert_eq!(exec.ppid, std::process::id());
    assert_eq!((exec.uid, exec.gid), (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw()));
    assert_ne!(exec.cgroup_id, 0);

    let long = exec_of(&session.records, long_pid).expect("the long exec");
    let mut area: Vec<u8> = b"/bin/true\0".to_vec();
    for arg in &long_args {
        area.extend_from_slice(arg.as_bytes());
        area.push(0);
    }
    assert!(long.argv_truncated, "{} bytes of arguments are more than {ARGV_LEN}", area.len());
    assert_eq!(long.argv_full_len as usize, area.len());
    assert_eq!(long.argv, pipeline::event::Argv::from_nul_separated(&area[..ARGV_LEN]), "exactly the first 4 KiB");
}

#[test]
fn a_fork_names_its_parent_and_the_child_start_time_matches_its_exec() {
    if !kernel_or_skip("ebpf::a_fork_names_its_parent_and_the_child_start_time_matches_its_exec") {
        return;
    }
    let mut session = Session::start(&settings(&[Program::Exec, Program::Fork], 1 << 20, &[]));
    let mut child = Command::new("/bin/true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    let fork_of = |records: &[Record]| {
        records.iter().find_map(|r| match r {
            Record::Fork(fork) if fork.child.tgid == pid => Some(*fork),
            _ => None,
        })
    };
    assert!(session.wait_for(WAIT, |records| fork_of(records).is_some() && exec_of(records, pid).is_some()));
    let fork = fork_of(&session.records).expect("fork");
    assert_eq!(fork.parent.tgid, std::process::id());
    assert_eq!(fork.child.pid, pid, "a process, not a thread");
    let exec = exec_of(&session.records, pid).expect("exec");
    assert_eq!(fork.child.start_boottime_ns, exec.proc.start_boottime_ns);
    assert!(fork.ts_ns <= exec.ts_ns);
}

fn connect_records(records: &[Record], port: u16) -> Vec<super::records::ConnectRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Connect(c) if c.proc.tgid == std::process::id() && c.port == port => Some(*c),
            _ => None,
        })
        .collect()
}

const ECONNREFUSED: i32 = 111;

#[test]
fn connects_report_address_port_protocol_and_result() {
    if !kernel_or_skip("ebpf::connects_report_address_port_protocol_and_result") {
        return;
    }
    check_connects(super::ConnectHook::Tracepoint);
}

/// The cgroup hook sees the same connects (TCP and UDP, v4 and v6), before
/// the attempt: every result is unknown.
#[test]
fn connects_through_the_cgroup_hook() {
    if !kernel_or_skip("ebpf::connects_through_the_cgroup_hook") {
        return;
    }
    check_connects(super::ConnectHook::Cgroup);
}

fn check_connects(hook: super::ConnectHook) {
    let with_result = hook == super::ConnectHook::Tracepoint;
    let mut session =
        Session::start(&LoadSettings { connect_hook: hook, ..settings(&[Program::Connect], 1 << 20, &[]) });
    let mut cases: Vec<(IpAddr, u16, i32, i16)> = Vec::new();
    let loopbacks: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    for ip in loopbacks {
        let Ok(listener) = TcpListener::bind(SocketAddr::new(ip, 0)) else {
            pipeline::testing::skip("ebpf::connects (IPv6 part)", &format!("cannot bind {ip}"));
            continue;
        };
        let open_port = listener.local_addr().expect("addr").port();
        let _stream = TcpStream::connect(SocketAddr::new(ip, open_port)).expect("connect to the listener");
        cases.push((ip, open_port, 0, 1));
        // A port nobody listens on: bound, then released. Tests run in
        // parallel (this one also as an unprivileged child), so another
        // socket may take it in between; then try another.
        let (closed_port, error) = (0..5)
            .find_map(|_| {
                let closed = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind");
                let port = closed.local_addr().expect("addr").port();
                drop(closed);
                TcpStream::connect(SocketAddr::new(ip, port)).err().map(|error| (port, error))
            })
            .expect("a released port refuses a connect");
        assert_eq!(error.raw_os_error(), Some(ECONNREFUSED));
        cases.push((ip, closed_port, -ECONNREFUSED, 1));
        let udp = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("udp bind");
        let udp_port = closed_port.wrapping_add(1).max(1024);
        udp.connect(SocketAddr::new(ip, udp_port)).expect("udp connect");
        cases.push((ip, udp_port, 0, 2));
    }
    let done = session
        .wait_for(WAIT, |records| cases.iter().all(|(_, port, _, _)| !connect_records(records, *port).is_empty()));
    assert!(done, "a record for every connect: {:?}", session.records);
    for (ip, port, result, sock_type) in cases {
        let records = connect_records(&session.records, port);
        assert_eq!(records.len(), 1, "{ip} port {port}: {records:?}");
        let record = records[0];
        let result = with_result.then_some(result);
        assert_eq!((record.addr, record.port, record.result, record.sock_type), (ip, port, result, sock_type));
        let event = events::to_event(Record::Connect(record), 1, events::tick_ns());
        let Event::NetConnect(connect) = event else { panic!("{event:?}") };
        let protocol = if sock_type == 2 { pipeline::event::Protocol::Udp } else { pipeline::event::Protocol::Tcp };
        assert_eq!(
            (connect.dst_addr, connect.dst_port, connect.result, connect.protocol),
            (ip, port, result, protocol)
        );
    }
}

fn open_records(records: &[Record]) -> Vec<super::records::OpenRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Open(open) if open.proc.tgid == std::process::id() => Some(open.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn only_files_under_a_configured_prefix_are_reported() {
    if !kernel_or_skip("ebpf::only_files_under_a_configured_prefix_are_reported") {
        return;
    }
    let watched = tempfile::tempdir().expect("tempdir");
    let unwatched = tempfile::tempdir().expect("tempdir");
    let prefix = format!("{}/", watched.path().display());
    let mut session = Session::start(&settings(&[Program::FileOpen], 1 << 20, &[&prefix]));
    let inside = watched.path().join("inside.txt");
    let outside = unwatched.path().join("outside.txt");
    let marker = watched.path().join("marker");
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&inside).expect("create inside");
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&outside).expect("create outside");
    std::fs::File::open(&inside).expect("read inside");
    std::fs::File::open(&outside).expect("read outside");
    std::fs::OpenOptions::new().read(true).custom_flags(0o400_000 /* O_NOFOLLOW */).open(&inside).expect("nofollow");
    std::fs::write(&marker, b"").expect("marker");
    let marker_text = marker.display().to_string();
    assert!(session.wait_for(WAIT, |records| open_records(records).iter().any(|r| *r.path == *marker_text)));
    let inside_text = inside.display().to_string();
    const O_WRONLY: u32 = 0o1;
    const O_CREAT: u32 = 0o100;
    const O_TRUNC: u32 = 0o1000;
    const O_CLOEXEC: u32 = 0o2_000_000;
    const O_NOFOLLOW: u32 = 0o400_000;
    let seen: Vec<(String, u32)> =
        open_records(&session.records).iter().map(|r| (r.path.to_string(), r.flags)).collect();
    assert_eq!(
        seen,
        vec![
            (inside_text.clone(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC),
            (inside_text.clone(), O_CLOEXEC),
            (inside_text, O_NOFOLLOW | O_CLOEXEC),
            (marker_text, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC),
        ],
        "only paths under {prefix}, with their flags"
    );
}

#[test]
fn with_a_one_page_ring_received_plus_lost_equals_attempted_exactly() {
    if !kernel_or_skip("ebpf::with_a_one_page_ring_received_plus_lost_equals_attempted_exactly") {
        return;
    }
    let watched = tempfile::tempdir().expect("tempdir");
    let prefix = format!("{}/", watched.path().display());
    let page = rustix::param::page_size() as u32;
    let file = watched.path().join("storm");
    std::fs::write(&file, b"").expect("file");
    let mut session = Session::start(&settings(&[Program::FileOpen], page, &[&prefix]));
    assert_eq!(session.loaded.report.ring_buffer_bytes, page);
    let n_opens = 20_000u64;
    let started = Instant::now();
    for _ in 0..n_opens {
        std::fs::File::open(&file).expect("open");
    }
    let storm = started.elapsed();
    // Nothing runs after this, so the counters and the ring are final.
    session.loaded.detach_all();
    session.poll();
    let received = session.records.iter().filter(|r| matches!(r, Record::Open(_))).count() as u64;
    let counts = read_counts(&session.counters).expect("counters")[Program::FileOpen.id()];
    eprintln!(
        "storm of {n_opens} opens in {:.1} ms: received {received}, lost {} (kernel counters)",
        storm.as_secs_f64() * 1e3,
        counts.lost
    );
    assert_eq!(received, counts.submitted, "every record the ring accepted was read");
    assert_eq!(received + counts.lost, n_opens, "received + lost = attempted, exactly");
    assert!(counts.lost > 0, "a one-page ring must overflow");
}

#[test]
fn the_ebpf_process_key_equals_the_procfs_one() {
    if !kernel_or_skip("ebpf::the_ebpf_process_key_equals_the_procfs_one") {
        return;
    }
    let mut session = Session::start(&settings(&[Program::Exec], 1 << 20, &[]));
    let mut child = Command::new("/bin/sleep").arg("5").spawn().expect("sleep");
    let pid = child.id();
    assert!(session.wait_for(WAIT, |records| exec_of(records, pid).is_some()));
    let exec = exec_of(&session.records, pid).expect("exec").clone();
    // The procfs source's own parsing, over a copy of this process's files
    // (a scanner on the real /proc would hold descriptors other tests mind).
    let fake = tempfile::tempdir().expect("tempdir");
    let dir = fake.path().join(pid.to_string());
    std::fs::create_dir(&dir).expect("dir");
    for file in ["stat", "cmdline"] {
        let bytes = std::fs::read(format!("/proc/{pid}/{file}")).expect("read /proc");
        std::fs::write(dir.join(file), bytes).expect("copy");
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut scanner = crate::procfs::Scanner::new(crate::procfs::ScannerSettings {
        proc_root: fake.path().to_owned(),
        cmdline_max_bytes: 64,
        max_open_fds: None,
        scrub: Default::default(),
    })
    .expect("scanner");
    let outcome = scanner.scan(0).expect("scan");
    let sample = outcome.samples().find(|s| s.process.pid == pid).expect("the child in the scan");
    let key = events::process_key(&exec.proc, events::tick_ns());
    assert_eq!(key, sample.process, "raw start {} ns", exec.proc.start_boottime_ns);
    assert_eq!(key.start_time_ns % 10_000_000, 0, "whole 10 ms ticks (USER_HZ 100)");
}

/// Set in the environment of the multi-threaded child below.
const THREADED_CHILD_ENV: &str = "HOSTFLOW_EBPF_THREADED_CHILD";

/// Not a test on its own: the body of the multi-threaded child process
/// (three threads burn 40 ms of CPU each and finish, three more sleep; the
/// process then exits with 5 while those are alive).
#[test]
fn threaded_child_helper() {
    if std::env::var_os(THREADED_CHILD_ENV).is_none() {
        return;
    }
    let burners: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(|| {
                // 40 ms of this thread's own CPU time, however loaded the host.
                let cpu = || {
                    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
                    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
                };
                let mut x = 0u64;
                while cpu() < Duration::from_millis(40) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                x
            })
        })
        .collect();
    for burner in burners {
        let _ = burner.join();
    }
    for _ in 0..3 {
        std::thread::spawn(|| std::thread::sleep(Duration::from_secs(60)));
    }
    std::thread::sleep(Duration::from_millis(20));
    std::process::exit(5);
}

#[test]
fn one_exit_per_process_with_its_status_signal_and_group_cpu_time() {
    if !kernel_or_skip("ebpf::one_exit_per_process_with_its_status_signal_and_group_cpu_time") {
        return;
    }
    let mut session = Session::start(&settings(&[Program::Exec, Program::Exit], 1 << 20, &[]));
    let mut status_child = Command::new("/bin/sh").args(["-c", "exit 3"]).spawn().expect("sh");
    let status_pid = status_child.id();
    status_child.wait().expect("wait");
    let mut killed_child = Command::new("/bin/sleep").arg("30").spawn().expect("sleep");
    let killed_pid = killed_child.id();
    killed_child.kill().expect("SIGKILL");
    killed_child.wait().expect("wait");
    let exe = std::env::current_exe().expect("test binary");
    let mut threaded = Command::new(exe)
        .args(["--exact", "ebpf::tests_kernel::threaded_child_helper", "--test-threads=1", "-q"])
        .env(THREADED_CHILD_ENV, "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("threaded child");
    let threaded_pid = threaded.id();
    assert_eq!(threaded.wait().expect("wait").code(), Some(5));

    let exits_of = |records: &[Record], pid: u32| -> Vec<super::records::ExitRecord> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Exit(exit) if exit.proc.tgid == pid => Some(exit.clone()),
                _ => None,
            })
            .collect()
    };
    let pids = [status_pid, killed_pid, threaded_pid];
    assert!(session.wait_for(WAIT, |records| pids.iter().all(|&pid| !exits_of(records, pid).is_empty())));
    // Anything late would have arrived by now.
    std::thread::sleep(Duration::from_millis(200));
    session.poll();
    let status = exits_of(&session.records, status_pid);
    assert_eq!(status.len(), 1);
    assert_eq!((status[0].exit_code_raw, status[0].exit_status()), (3 << 8, 3));
    let killed = exits_of(&session.records, killed_pid);
    assert_eq!(killed.len(), 1);
    assert_eq!((killed[0].exit_code_raw, killed[0].exit_status()), (9, 137), "SIGKILL");
    let threaded = exits_of(&session.records, threaded_pid);
    assert_eq!(threaded.len(), 1, "seven threads, one exit: {threaded:?}");
    assert_eq!(threaded[0].exit_status(), 5);
    assert!(threaded[0].cpu_ns >= 120_000_000, "the finished threads' CPU counts: {} ns", threaded[0].cpu_ns);
    let exec = exec_of(&session.records, threaded_pid).expect("exec of the threaded child");
    assert_eq!(exec.proc.start_boottime_ns, threaded[0].proc.start_boottime_ns, "same identity");
    eprintln!("threaded child: cpu {} ms", threaded[0].cpu_ns / 1_000_000);
}

#[test]
fn the_probe_reports_this_host_and_every_program_attached() {
    if !kernel_or_skip("ebpf::the_probe_reports_this_host_and_every_program_attached") {
        return;
    }
    let report = probe(&settings(&Program::ALL, 1 << 20, &["/etc/"]));
    eprintln!("{report}");
    use super::probe::Fact;
    for (name, fact) in [
        ("object", &report.ebpf_object),
        ("btf", &report.btf),
        ("ring buffer", &report.ring_buffer),
        ("tracefs", &report.tracefs),
        ("tracepoints", &report.tracepoints),
        ("privileges", &report.privileges),
    ] {
        assert!(matches!(fact, Fact::Ok(_)), "{name}: {fact}");
    }
    assert_eq!(report.programs.len(), Program::ALL.len());
    for program in &report.programs {
        // A kernel built without module support has no module tracepoints:
        // module_load is `missing` there (tests_security.rs checks why).
        let unsupported = program.program == "module_load" && matches!(program.fact, Fact::Missing(_));
        assert!(matches!(program.fact, Fact::Ok(_)) || unsupported, "{}: {}", program.program, program.fact);
    }
    assert!(report.load_error.is_none());
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["load"]["programs"][0]["state"]["state"], "attached", "{json}");
}

/// Counts every counter increment in memory, for the one test that checks
/// the exported metrics.
#[derive(Default)]
pub(super) struct CountingRecorder {
    counters: std::sync::Mutex<HashMap<String, std::sync::Arc<std::sync::atomic::AtomicU64>>>,
}

impl CountingRecorder {
    fn key(name: &str, labels: &[(&str, &str)]) -> String {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{name}{{{}}}", labels.join(","))
    }

    pub(super) fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let counters = self.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        counters.get(&Self::key(name, labels)).map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl metrics::Recorder for CountingRecorder {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        let mut counters = self.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let counter = counters.entry(Self::key(key.name(), &labels)).or_default().clone();
        metrics::Counter::from_arc(counter)
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// The process-wide recorder (installed once; other tests' metrics land in
/// it too, which is harmless: keys carry the component name).
pub(super) fn recorder() -> &'static CountingRecorder {
    static RECORDER: std::sync::OnceLock<&'static CountingRecorder> = std::sync::OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder: &'static CountingRecorder = Box::leak(Box::default());
        metrics::set_global_recorder(recorder).expect("no other recorder in this test binary");
        recorder
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_through_the_source_is_counted_exactly_in_the_metrics() {
    if !kernel_or_skip("ebpf::a_storm_through_the_source_is_counted_exactly_in_the_metrics") {
        return;
    }
    let recorder = recorder();
    let watched = tempfile::tempdir().expect("tempdir");
    let prefix = format!("{}/", watched.path().display());
    let file = watched.path().join("storm");
    std::fs::write(&file, b"").expect("file");
    let n_storm = 200_000u64;
    let open_storm = |file: std::path::PathBuf| {
        move || {
            let started = Instant::now();
            for _ in 0..n_storm {
                std::fs::File::open(&file).expect("open");
            }
            started.elapsed()
        }
    };
    let detached_time = open_storm(file.clone())();
    let Harness { cx, mut receiver, trigger, health } = harness(9 << 48);
    // Default ring (4 MiB), wake-up threshold (256 KiB) and drain (100 ms).
    // Exec is attached only to see the source running (a warm-up open
    // before the attach would be an open the kernel never counted).
    let config = settings(&[Program::Exec, Program::FileOpen], 4 << 20, &[&prefix]);
    let config = LoadSettings { wakeup_threshold_bytes: DEFAULT_WAKEUP_THRESHOLD_BYTES, ..config };
    let source = EbpfSource::with_settings(config, Duration::from_millis(100), Duration::from_secs(1));
    let task = tokio::spawn(Box::new(source).run(cx));
    wait_until_running(&mut receiver, &health, || {
        let _ = Command::new("/bin/true").status();
    })
    .await;
    let mut received = 0u64;
    let started = Instant::now();
    let storm = tokio::task::spawn_blocking(open_storm(file));
    let mut last_event = started;
    // Reads until the storm is over and nothing more arrives for a while.
    loop {
        let got = wait_for_events(&mut receiver, Duration::from_millis(500), |event| {
            if matches!(event, Event::FileOpen(_)) {
                received += 1;
                last_event = Instant::now();
            }
            false
        })
        .await;
        assert!(!got);
        if storm.is_finished() {
            break;
        }
    }
    let storm_time = storm.await.expect("storm");
    trigger.trigger();
    task.await.expect("no panic").expect("clean stop");
    while let Some(batch) = receiver.recv().await {
        received += batch.iter().filter(|event| matches!(event, Event::FileOpen(_))).count() as u64;
    }
    let labels = [("component", "p"), ("program", "file_open")];
    let submitted = recorder.get(pipeline::metrics::names::EBPF_EVENTS_TOTAL, &labels);
    let lost = recorder.get(pipeline::metrics::names::EBPF_RINGBUF_LOST_EVENTS_TOTAL, &labels);
    let attempted = n_storm;
    eprintln!(
        "storm: {n_storm} opens in {:.0} ms attached, {:.0} ms detached ({:.2}x); delivered {received} \
         ({:.0} k events/s until the last one), lost {lost} ({:.3} %)",
        storm_time.as_secs_f64() * 1e3,
        detached_time.as_secs_f64() * 1e3,
        storm_time.as_secs_f64() / detached_time.as_secs_f64(),
        received as f64 / last_event.duration_since(started).as_secs_f64().max(1e-3) / 1e3,
        lost as f64 * 100.0 / attempted as f64
    );
    assert_eq!(received, submitted, "events delivered = hostflow_ebpf_events_total");
    assert_eq!(submitted + lost, attempted, "+ hostflow_ebpf_ringbuf_lost_events_total = opens, exactly");
}

/// The unit's `AmbientCapabilities=` (lines add up, an empty one resets),
/// or the documented set when the unit is not in this checkout.
fn service_capabilities() -> Vec<String> {
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd/hostflow.service");
    let Ok(text) = std::fs::read_to_string(unit) else {
        return ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"]
            .map(str::to_owned)
            .to_vec();
    };
    let mut caps = Vec::new();
    for value in text.lines().filter_map(|line| line.trim().strip_prefix("AmbientCapabilities=")) {
        if value.trim().is_empty() {
            caps.clear();
        }
        caps.extend(value.split_whitespace().map(str::to_owned));
    }
    caps
}

#[test]
fn as_an_unprivileged_user_with_the_service_capabilities_the_kernel_tests_pass() {
    let test = "ebpf::as_an_unprivileged_user_with_the_service_capabilities_the_kernel_tests_pass";
    if rustix::process::geteuid().as_raw() != 0 {
        // Needs root to change user; also what the re-run children see.
        pipeline::testing::skip(test, "needs root to drop to an unprivileged user");
        return;
    }
    if !kernel_or_skip(test) {
        return;
    }
    // What the unit's privileged ExecStartPre does: the agent cannot mount it.
    host::ensure_tracefs();
    let caps: Vec<String> = service_capabilities().iter().map(|c| c.to_lowercase().replace("cap_", "+")).collect();
    let caps = format!("-all,{}", caps.join(","));
    let tests = [
        "ebpf::tests_kernel::argv_is_captured_exactly_and_a_long_one_is_cut_and_flagged",
        "ebpf::tests_kernel::a_fork_names_its_parent_and_the_child_start_time_matches_its_exec",
        "ebpf::tests_kernel::connects_report_address_port_protocol_and_result",
        "ebpf::tests_kernel::only_files_under_a_configured_prefix_are_reported",
        "ebpf::tests_kernel::the_probe_reports_this_host_and_every_program_attached",
    ];
    let exe = std::env::current_exe().expect("test binary");
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args([format!("--inh-caps={caps}"), format!("--ambient-caps={caps}"), format!("--bounding-set={caps}")])
        .arg("--")
        .arg(&exe)
        .args(tests)
        .args(["--exact", "--nocapture", "--test-threads=1"])
        .env_remove("CI")
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: cannot run setpriv: {error}");
            pipeline::testing::skip(test, &format!("cannot run setpriv to drop privileges: {error}"));
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "as nobody with {caps}:\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("{} passed", tests.len())), "every test ran:\n{stdout}");
    assert!(!stdout.contains("SKIPPED") && !stderr.contains("SKIPPED"), "none skipped:\n{stdout}\n{stderr}");
}
