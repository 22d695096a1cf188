//! Network enforcement against the running kernel (issue #17): the connect
//! program loaded with an enforced cgroup, policies written into its maps
//! by `enforce`, and connects made by a child process moved into a
//! dedicated child cgroup (`hostflow-test-<pid>-<n>` under the cgroup2
//! mount, removed afterwards even on failure). Root only; without it each
//! test prints `SKIPPED` (and fails under `CI=true`).
//!
//! The child is this test binary again, running
//! [`enforce_child_helper`] with `HF_ENFORCE_CHILD` set: it writes its
//! pid into the cgroup's `cgroup.procs`, connects to each address given and
//! prints one `RESULT` line per connect, so nothing but the binary itself
//! is needed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use enforce::layout::{self, Resolved};
use enforce::policy::{self, Action, CompiledPolicy, KernelRule, Mode, PrefixEntry, Protocol};
use enforce::PolicyMaps;

use super::loader::{self, EnforceTarget, Loaded};
use super::tests_kernel::{kernel_or_skip, settings};
use super::{ConnectHook, LoadSettings, Program};

const EPERM: i32 = 1;
const CHILD_ENV: &str = "HF_ENFORCE_CHILD";

/// A dedicated cgroup v2 directory; removed on drop (its processes are
/// moved back to the root first).
struct TestCgroup {
    mount: PathBuf,
    path: PathBuf,
    relative: String,
}

impl TestCgroup {
    fn create() -> Option<TestCgroup> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let mount = enforce::resolve::cgroup2_mount().ok()?;
        let relative = format!("/hostflow-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let path = mount.join(relative.trim_start_matches('/'));
        std::fs::create_dir(&path).ok()?;
        Some(TestCgroup { mount, path, relative })
    }

    fn target(&self) -> EnforceTarget {
        let target = enforce::resolve::cgroup(&self.mount, &self.relative).expect("the test cgroup resolves");
        EnforceTarget { cgroup_id: target.id, level: target.level }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.path.join("cgroup.procs")) {
            for pid in procs.split_whitespace() {
                let _ = std::fs::write(self.mount.join("cgroup.procs"), pid);
            }
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("could not remove the test cgroup {}", self.path.display());
    }
}

/// The child half: runs only with `HF_ENFORCE_CHILD` =
/// `<cgroup dir>|<repeat>|<stop file>|<addr>|<addr>...`: joins the cgroup,
/// connects to every address `repeat` times, or, with a stop file, in
/// rounds 1 ms apart until that file exists (at most two minutes).
#[test]
fn enforce_child_helper() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let mut parts = spec.split('|');
    let cgroup = parts.next().unwrap_or_default();
    let repeat: usize = parts.next().and_then(|r| r.parse().ok()).unwrap_or(1);
    let stop = parts.next().filter(|s| !s.is_empty()).map(PathBuf::from);
    if !cgroup.is_empty() {
        std::fs::write(PathBuf::from(cgroup).join("cgroup.procs"), std::process::id().to_string())
            .expect("join the test cgroup");
    }
    let addrs: Vec<SocketAddr> = parts.filter_map(|a| a.parse().ok()).collect();
    println!("PID {}", std::process::id());
    let started = Instant::now();
    let mut round = 0;
    loop {
        let more = match &stop {
            None => round < repeat,
            Some(stop) => !stop.exists() && started.elapsed() < Duration::from_secs(120),
        };
        if !more {
            return;
        }
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, Duration::from_secs(2)) {
                Ok(_) => println!("RESULT {addr} 0"),
                Err(error) => println!("RESULT {addr} {}", error.raw_os_error().unwrap_or(-1)),
            }
        }
        round += 1;
        if stop.is_some() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// What the child saw: its pid and `(address, errno)` per connect (0: connected).
struct ChildRun {
    pid: u32,
    results: Vec<(SocketAddr, i32)>,
}

fn run_child(cgroup: Option<&Path>, repeat: usize, addrs: &[SocketAddr]) -> ChildRun {
    run_child_until(cgroup, repeat, None, addrs)
}

fn run_child_until(cgroup: Option<&Path>, repeat: usize, stop: Option<&Path>, addrs: &[SocketAddr]) -> ChildRun {
    let mut spec = cgroup.map(|c| c.display().to_string()).unwrap_or_default();
    spec.push_str(&format!("|{repeat}|{}", stop.map(|s| s.display().to_string()).unwrap_or_default()));
    for addr in addrs {
        spec.push_str(&format!("|{addr}"));
    }
    let exe = std::env::current_exe().expect("the test binary");
    let output = Command::new(exe)
        .args(["--exact", "ebpf::tests_enforce::enforce_child_helper", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let mut run = ChildRun { pid: 0, results: Vec::new() };
    for line in stdout.lines() {
        // libtest prints `test NAME ... ` before the test's own first line.
        let words: Vec<&str> = line.split_whitespace().collect();
        let start = words.iter().position(|w| *w == "PID" || *w == "RESULT").unwrap_or(words.len());
        match &words[start..] {
            ["PID", pid] => run.pid = pid.parse().expect("pid"),
            ["RESULT", addr, errno] => run.results.push((addr.parse().expect("addr"), errno.parse().expect("errno"))),
            _ => {}
        }
    }
    run
}

/// One `hf_net_policy` record, read straight from its bytes
/// (`bpf/records.h`), so these tests need no decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Verdict {
    tgid: u32,
    family: u16,
    port: u16,
    action: u8,
    flags: u8,
    rule_key: u32,
    generation: u32,
    addr: [u8; 16],
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn verdict(bytes: &[u8]) -> Option<Verdict> {
    if bytes.len() < 72 || u16_at(bytes, 0) != layout::KIND_NET_POLICY || u32_at(bytes, 4) != 72 {
        return None;
    }
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&bytes[56..72]);
    Some(Verdict {
        tgid: u32_at(bytes, 16),
        family: u16_at(bytes, 32),
        port: u16_at(bytes, 34),
        action: bytes[38],
        flags: bytes[39],
        rule_key: u32_at(bytes, 40),
        generation: u32_at(bytes, 44),
        addr,
    })
}

/// The connect program with enforcement for `cgroup`, its ring and maps.
struct Enforcing {
    _loaded: Loaded,
    ring: super::ring_map::RingMap,
    maps: PolicyMaps,
    verdicts: Vec<Verdict>,
}

impl Enforcing {
    fn start(cgroup: &TestCgroup) -> Enforcing {
        let settings =
            LoadSettings { connect_hook: ConnectHook::Cgroup, ..settings(&[Program::Connect], 16 << 20, &[]) };
        let mut loaded = loader::load_with(&settings, Some(&cgroup.target())).expect("the object loads");
        assert!(loaded.report.problems().is_none(), "{:?}", loaded.report);
        let ring = loaded.take_ring().expect("ring");
        let maps = loaded.take_policy_maps().expect("policy maps");
        Enforcing { _loaded: loaded, ring, maps, verdicts: Vec::new() }
    }

    fn install(&mut self, policy: &CompiledPolicy, generation: u32) {
        let encoded = layout::encode(policy, generation, &Resolved::default()).expect("encodes");
        self.maps.install(&encoded).expect("installs");
    }

    /// Reads verdicts until `done` holds for those of `tgid`, or 10 s.
    fn wait(&mut self, tgid: u32, mut done: impl FnMut(&[Verdict]) -> bool) -> Vec<Verdict> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            while let Some(v) = self.ring.next(verdict) {
                if let Some(v) = v {
                    self.verdicts.push(v);
                }
            }
            let mine: Vec<Verdict> = self.verdicts.iter().copied().filter(|v| v.tgid == tgid).collect();
            if done(&mine) || Instant::now() > deadline {
                return mine;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn rule(id: &str, action: Action, port: u16) -> KernelRule {
    KernelRule {
        rule_key: policy::rule_key(id),
        action,
        priority: 100,
        port_lo: port,
        port_hi: port,
        protocol: Protocol::Tcp,
        exe: None,
        cgroup: None,
    }
}

fn policy_of(mode: Mode, v4: Vec<PrefixEntry<Ipv4Addr>>, v6: Vec<PrefixEntry<Ipv6Addr>>) -> CompiledPolicy {
    CompiledPolicy { mode, digest: format!("test-{mode:?}"), v4, v6, ..CompiledPolicy::empty() }
}

/// A listener on `a:P` and `b:P` for one port P, each accepting (and
/// dropping) connections on a thread so the backlog never fills.
fn listeners(a: IpAddr, b: IpAddr) -> Option<(TcpListener, TcpListener, u16)> {
    let (first, second, port) = (0..20).find_map(|_| {
        let first = TcpListener::bind(SocketAddr::new(a, 0)).ok()?;
        let port = first.local_addr().ok()?.port();
        let second = if a == b { first.try_clone().ok()? } else { TcpListener::bind(SocketAddr::new(b, port)).ok()? };
        Some((first, second, port))
    })?;
    for listener in [&first, &second] {
        if let Ok(accepting) = listener.try_clone() {
            std::thread::spawn(move || while accepting.accept().is_ok() {});
        }
    }
    Some((first, second, port))
}

fn setup(test: &str) -> Option<TestCgroup> {
    if !kernel_or_skip(test) {
        return None;
    }
    let cgroup = TestCgroup::create();
    if cgroup.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: cannot create a cgroup v2 directory");
        pipeline::testing::skip(test, "cannot create a child cgroup under the cgroup2 mount");
    }
    cgroup
}

#[test]
fn a_deny_refuses_connects_from_the_enforced_cgroup_only() {
    let Some(cgroup) = setup("ebpf::a_deny_refuses_connects_from_the_enforced_cgroup_only") else { return };
    let (denied_ip, allowed_ip) = (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (_l1, _l2, port) = listeners(denied_ip, allowed_ip).expect("listeners on 127.0.0.2 and 127.0.0.1");
    let v6_loopback = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let (_l3, _l4, port6) =
        listeners(v6_loopback, v6_loopback).map_or((None, None, 0), |(a, b, p)| (Some(a), Some(b), p));
    let allowed6 = listeners(v6_loopback, v6_loopback).map(|(listener, _, _)| listener);
    let mut enforcing = Enforcing::start(&cgroup);
    let mut v6 = Vec::new();
    if port6 != 0 {
        v6.push(PrefixEntry {
            addr: Ipv6Addr::LOCALHOST,
            prefix_len: 128,
            rules: vec![rule("deny-v6", Action::Deny, port6)],
        });
    }
    let v4 = vec![PrefixEntry {
        addr: Ipv4Addr::new(127, 0, 0, 2),
        prefix_len: 32,
        rules: vec![rule("deny-v4", Action::Deny, port)],
    }];
    enforcing.install(&policy_of(Mode::Enforce, v4, v6), 1);

    let denied = SocketAddr::new(denied_ip, port);
    let allowed = SocketAddr::new(allowed_ip, port);
    let mut addrs = vec![denied, allowed];
    if let (true, Some(open)) = (port6 != 0, allowed6.as_ref()) {
        addrs.push(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port6));
        addrs.push(open.local_addr().expect("addr"));
    }
    let inside = run_child(Some(&cgroup.path), 1, &addrs);
    assert_eq!(inside.results[0], (denied, EPERM), "{:?}", inside.results);
    assert_eq!(inside.results[1], (allowed, 0), "{:?}", inside.results);
    if addrs.len() == 4 {
        assert_eq!(inside.results[2].1, EPERM, "IPv6 deny: {:?}", inside.results);
        assert_eq!(inside.results[3].1, 0, "IPv6 allowed port: {:?}", inside.results);
    } else {
        pipeline::testing::skip("ebpf::a_deny_refuses_connects (IPv6 part)", "no ::1");
    }
    let expected = addrs.len() / 2;
    let verdicts = enforcing.wait(inside.pid, |v| v.len() >= expected);
    assert_eq!(verdicts.len(), expected, "{verdicts:?}");
    let v4 = verdicts.iter().find(|v| v.family == 2).expect("an IPv4 verdict");
    assert_eq!((v4.action, v4.flags, v4.rule_key, v4.generation), (2, 0, policy::rule_key("deny-v4"), 1));
    assert_eq!((v4.port, &v4.addr[..4]), (port, &[127, 0, 0, 2][..]));
    if expected == 2 {
        let v6 = verdicts.iter().find(|v| v.family == 10).expect("an IPv6 verdict");
        assert_eq!((v6.action, v6.rule_key, v6.port), (2, policy::rule_key("deny-v6"), port6));
    }
    // Outside the cgroup: the same destination connects.
    let outside = run_child(None, 1, &[denied]);
    assert_eq!(outside.results, vec![(denied, 0)]);
    assert!(TcpStream::connect(denied).is_ok(), "the test process is outside the cgroup");
    let counts = enforcing.maps.decisions().expect("counters");
    assert_eq!((counts.denied, counts.audited, counts.allowed), (expected as u64, 0, 0));
}

#[test]
fn dry_run_blocks_nothing_and_names_the_rule() {
    let Some(cgroup) = setup("ebpf::dry_run_blocks_nothing_and_names_the_rule") else { return };
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (_l1, _l2, port) = listeners(ip, Ipv4Addr::LOCALHOST.into()).expect("listeners");
    let mut enforcing = Enforcing::start(&cgroup);
    let v4 = vec![PrefixEntry {
        addr: Ipv4Addr::new(127, 0, 0, 0),
        prefix_len: 8,
        rules: vec![rule("allow-other", Action::Allow, port.wrapping_add(1)), rule("would-deny", Action::Deny, port)],
    }];
    enforcing.install(&policy_of(Mode::DryRun, v4, Vec::new()), 7);
    let target = SocketAddr::new(ip, port);
    let child = run_child(Some(&cgroup.path), 3, &[target]);
    assert!(child.results.iter().all(|(_, errno)| *errno == 0), "{:?}", child.results);
    let verdicts = enforcing.wait(child.pid, |v| v.len() >= 3);
    assert_eq!(verdicts.len(), 3, "{verdicts:?}");
    for v in &verdicts {
        assert_eq!(
            (v.action, v.flags, v.rule_key, v.generation),
            (2, layout::FLAG_DRY_RUN, policy::rule_key("would-deny"), 7)
        );
    }
    let counts = enforcing.maps.decisions().expect("counters");
    assert_eq!((counts.denied, counts.audited, counts.reserve_failures), (0, 3, 0));
}

/// Flips between two policies 1 000 times while a child connects in a
/// loop: every verdict is exactly A's (generation odd: rule `a`, deny) or
/// B's (even: rule `b`, audit), and the counters equal the records.
#[test]
fn applies_are_atomic_and_counters_add_up() {
    let Some(cgroup) = setup("ebpf::applies_are_atomic_and_counters_add_up") else { return };
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (_l1, _l2, port) = listeners(ip, Ipv4Addr::LOCALHOST.into()).expect("listeners");
    let mut enforcing = Enforcing::start(&cgroup);
    let a = policy_of(
        Mode::Enforce,
        vec![PrefixEntry {
            addr: Ipv4Addr::new(127, 0, 0, 2),
            prefix_len: 32,
            rules: vec![rule("a", Action::Deny, port)],
        }],
        Vec::new(),
    );
    let b = policy_of(
        Mode::Enforce,
        vec![PrefixEntry {
            addr: Ipv4Addr::new(127, 0, 0, 0),
            prefix_len: 8,
            rules: vec![rule("b", Action::Audit, port)],
        }],
        Vec::new(),
    );
    let target = SocketAddr::new(ip, port);
    // A is in place before the child's first connect: every connect has a verdict.
    let mut generation = 1u32;
    enforcing.install(&a, generation);
    let stop_dir = tempfile::tempdir().expect("tempdir");
    let stop = stop_dir.path().join("stop");
    let child = std::thread::spawn({
        let (path, stop) = (cgroup.path.clone(), stop.clone());
        move || run_child_until(Some(&path), 0, Some(&stop), &[target])
    });
    // Let the child start: it connects from before the flips to after them.
    std::thread::sleep(Duration::from_millis(300));
    let flips = Instant::now();
    for _ in 0..500 {
        generation += 1;
        enforcing.install(&b, generation);
        generation += 1;
        enforcing.install(&a, generation);
    }
    let flips = flips.elapsed();
    std::fs::write(&stop, b"").expect("stop file");
    let run = child.join().expect("child thread");
    let attempts = run.results.len();
    let refused = run.results.iter().filter(|(_, errno)| *errno == EPERM).count();
    assert!(run.results.iter().all(|(_, errno)| *errno == 0 || *errno == EPERM), "{:?}", &run.results[..10]);
    let verdicts = enforcing.wait(run.pid, |v| v.len() >= attempts);
    assert_eq!(verdicts.len(), attempts, "every connect was decided by A or B");
    for v in &verdicts {
        let expected = if v.generation % 2 == 1 { (2, policy::rule_key("a")) } else { (3, policy::rule_key("b")) };
        assert_eq!((v.action, v.rule_key), expected, "a verdict from neither policy: {v:?}");
        assert!(v.generation >= 1 && v.generation <= generation);
    }
    let denies = verdicts.iter().filter(|v| v.action == 2).count();
    assert_eq!(denies, refused, "every deny record is a refused connect");
    let counts = enforcing.maps.decisions().expect("counters");
    assert_eq!(counts.denied as usize, denies);
    assert_eq!(counts.audited as usize, attempts - denies);
    assert_eq!(counts.reserve_failures, 0);
    let generations: std::collections::BTreeSet<u32> = verdicts.iter().map(|v| v.generation).collect();
    assert!(generations.len() > 100, "the connects spanned the flips: {} generations", generations.len());
    eprintln!(
        "atomic: {attempts} connects, {denies} denied, {} audited, {} distinct generations, over {generation} installs in {flips:?}",
        attempts - denies,
        generations.len()
    );
}

// ---- configuration and the source end to end ------------------------------

#[test]
fn enforce_options_are_checked_where_they_are_written() {
    use super::tests::{build_ebpf, check_error};
    let source =
        build_ebpf("enforce = { policy = \"/etc/hostflow/policy.d\", cgroup = \"/app\", history = 5 }").expect("valid");
    let settings = source.enforce().expect("enforcement configured");
    assert_eq!((settings.cgroup.as_str(), settings.history, settings.applies_per_minute), ("/app", 5, 10));
    check_error(
        "connect_hook = \"tracepoint\"\nenforce = { policy = \"p\" }",
        4,
        11,
        "enforce needs connect_hook = \"cgroup\"",
    );
    check_error("enforce = { policy = \"p\", cgroup = \"app\" }", 3, 36, "enforce.cgroup must be a cgroup v2 path");
    check_error("enforce = { policy = \"p\", applies_per_minute = 0 }", 3, 48, "applies_per_minute must be 1 to 600");
    check_error("programs = [\"exec\"]\nenforce = { policy = \"p\" }", 4, 11, "needs the `connect` program");
}

fn policy_text(mode: &str, port: u16) -> String {
    format!(
        "[policy]\nmode = \"{mode}\"\n\n[[rule]]\nid = \"deny-loopback-2\"\naction = \"deny\"\n\
         cidrs = [\"127.0.0.2/32\"]\nports = [{port}]\nprotocol = \"tcp\"\nforce = true\n"
    )
}

/// The whole path: an `ebpf` source with `enforce` set watches a policy
/// file, the applier installs it, a connect from the cgroup is refused and
/// reported as a `net_policy` event naming the rule, `/health` shows the
/// digest, and clear and rollback through the handle take effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_enforces_its_policy_file_and_serves_clear_and_rollback() {
    use super::tests::{harness, Harness};
    use pipeline::{Event, Source as _};
    let Some(cgroup) = setup("ebpf::the_source_enforces_its_policy_file_and_serves_clear_and_rollback") else { return };
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (_l1, _l2, port) = listeners(ip, Ipv4Addr::LOCALHOST.into()).expect("listeners");
    let dir = tempfile::tempdir().expect("tempdir");
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(&policy_path, policy_text("enforce", port)).expect("policy file");
    let mut enforce_settings = enforce::EnforceSettings::new(&policy_path);
    enforce_settings.cgroup = cgroup.relative.clone();
    enforce_settings.state_dir = dir.path().join("state");
    enforce_settings.poll_interval_ms = 100;
    let Harness { cx, mut receiver, trigger, health } = harness(11 << 48);
    let load = LoadSettings { connect_hook: ConnectHook::Cgroup, ..settings(&[Program::Connect], 4 << 20, &[]) };
    let context = super::ContextSettings { snapshot: false, exe_hash: false, ..Default::default() };
    let source = super::EbpfSource::with_settings(load, Duration::from_millis(50), Duration::from_secs(1))
        .with_context(context)
        .with_enforce(Some(enforce_settings));
    let task = tokio::spawn(Box::new(source).run(cx));
    let enforce_details = |health: &pipeline::health::Health| {
        health.report().components.get("p").and_then(|c| c.details.as_ref()).and_then(|d| d.get("enforce").cloned())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let digest = loop {
        let digest = enforce_details(&health).and_then(|e| e.get("digest").and_then(|d| d.as_str()).map(str::to_owned));
        match digest {
            Some(digest) if !digest.is_empty() => break digest,
            _ if Instant::now() > deadline => panic!("no policy in /health: {:?}", health.report().components.get("p")),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let details = enforce_details(&health).expect("details.enforce");
    assert_eq!(details["mode"], "enforce", "{details}");
    assert_eq!(details["cgroup"], cgroup.relative.as_str(), "{details}");
    assert_eq!(details["rules"], 1, "{details}");

    let (denied, allowed) = (SocketAddr::new(ip, port), SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
    let path = cgroup.path.clone();
    let child =
        tokio::task::spawn_blocking(move || run_child(Some(&path), 1, &[denied, allowed])).await.expect("child");
    assert_eq!(child.results, vec![(denied, EPERM), (allowed, 0)]);
    let mut seen = None;
    super::tests::wait_for_events(&mut receiver, Duration::from_secs(10), |event| match event {
        Event::NetPolicy(verdict) if verdict.process.pid == child.pid => {
            seen = Some(verdict.clone());
            true
        }
        _ => false,
    })
    .await;
    let verdict = seen.expect("a net_policy event for the refused connect");
    assert_eq!((&*verdict.rule_id, verdict.dry_run, verdict.dst_port), ("deny-loopback-2", false, port));
    assert_eq!(&*verdict.policy_digest, digest.as_str());

    let handle = health.policy_control().get().expect("the source registered its applier for /policy/*");
    let cleared = tokio::task::spawn_blocking({
        let handle = handle.clone();
        move || handle.clear()
    })
    .await
    .expect("clear");
    assert!(cleared.as_ref().is_ok_and(|d| *d != digest), "{cleared:?}");
    let path = cgroup.path.clone();
    let child = tokio::task::spawn_blocking(move || run_child(Some(&path), 1, &[denied])).await.expect("child");
    assert_eq!(child.results, vec![(denied, 0)], "cleared: nothing is denied");
    let rolled = tokio::task::spawn_blocking(move || handle.rollback(1)).await.expect("rollback");
    assert_eq!(rolled, Ok(digest));
    let path = cgroup.path.clone();
    let child = tokio::task::spawn_blocking(move || run_child(Some(&path), 1, &[denied])).await.expect("child");
    assert_eq!(child.results, vec![(denied, EPERM)], "rolled back to the deny");
    trigger.trigger();
    task.await.expect("source task").expect("source ran");
}

/// Process matchers: a rule for another executable is skipped, a rule for
/// this executable in this cgroup decides (the kernel compares
/// `mm->exe_file`'s inode and device with what `stat` gave, and the task's
/// cgroup ancestry with the cgroup's id).
#[test]
fn exe_and_cgroup_matchers_select_the_rule() {
    let Some(cgroup) = setup("ebpf::exe_and_cgroup_matchers_select_the_rule") else { return };
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (_l1, _l2, port) = listeners(ip, Ipv4Addr::LOCALHOST.into()).expect("listeners");
    let mut enforcing = Enforcing::start(&cgroup);
    let me = std::env::current_exe().expect("the test binary").display().to_string();
    let other = ["/bin/sh", "/usr/bin/env", "/bin/true"].into_iter().find(|p| std::path::Path::new(p).exists());
    let other = other.expect("some other executable");
    let mut not_me = rule("other-exe", Action::Deny, port);
    not_me.exe = Some(1);
    let mut wrong_cgroup = rule("other-cgroup", Action::Deny, port);
    wrong_cgroup.cgroup = Some(1);
    let mut mine = rule("this-exe-here", Action::Deny, port);
    (mine.exe, mine.cgroup) = (Some(0), Some(0));
    let v4 = vec![PrefixEntry {
        addr: Ipv4Addr::new(127, 0, 0, 2),
        prefix_len: 32,
        rules: vec![not_me, wrong_cgroup, mine],
    }];
    let policy = CompiledPolicy {
        exes: vec![me.clone(), other.to_owned()],
        cgroups: vec![cgroup.relative.clone(), "/".into()],
        ..policy_of(Mode::Enforce, v4, Vec::new())
    };
    let mut resolved = enforce::resolve::policy(&policy, Some(&cgroup.mount)).expect("resolves");
    // "/" would match every task: make the second cgroup one nobody is in.
    resolved.cgroups[1] = (u64::MAX, 1);
    let encoded = layout::encode(&policy, 3, &resolved).expect("encodes");
    assert_eq!(encoded.v4[0].1.flags & layout::NEEDS_EXE, layout::NEEDS_EXE);
    enforcing.maps.install(&encoded).expect("installs");
    let target = SocketAddr::new(ip, port);
    let child = run_child(Some(&cgroup.path), 1, &[target]);
    assert_eq!(child.results, vec![(target, EPERM)]);
    let verdicts = enforcing.wait(child.pid, |v| !v.is_empty());
    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    assert_eq!((verdicts[0].rule_key, verdicts[0].generation), (policy::rule_key("this-exe-here"), 3), "me: {me}");
}
