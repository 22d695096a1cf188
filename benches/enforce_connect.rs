//! Network enforcement (issue #17): what the connect program's policy
//! decision costs a connect, all in one run so the rows compare.
//!
//! Rows: loopback TCP connect + close to a listener (median and p99 of N)
//! with no program attached; the connect program attached observing only
//! (no `enforce`: the verifier drops the decision); attached with
//! enforcement on the root cgroup and 0, 1 000 and 100 000 rules (every
//! connect here matches an `allow` rule on 127.0.0.1, so the whole path
//! runs: slot lookup, LPM lookup, rule walk, counter); a connect storm (M
//! back-to-back connects) with 1 000 rules against detached, before and
//! after; the time to validate and compile a 100 000-rule policy file
//! (`policy::compile_str`), to encode it and to write it into the maps.
//!
//! Root only (it loads eBPF and attaches to the cgroup2 root); the rules
//! are all `allow`, so nothing on the host is refused while it runs.
//! `cargo bench --bench enforce_connect`; `HOSTFLOW_BENCH_CONNECTS=N`
//! (default 20 000) and `HOSTFLOW_BENCH_STORM=M` (default 50 000).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sources::ebpf::enforce::layout::{self, Resolved};
use sources::ebpf::enforce::policy::{self, Action, CompiledPolicy, KernelRule, Mode, PrefixEntry, Protocol};
use sources::ebpf::enforce::{self, PolicyMaps};
use sources::ebpf::loader::{self, EnforceTarget, Loaded};
use sources::ebpf::{ConnectHook, LoadSettings, Program};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Listeners to rotate over: every connect leaves a TIME_WAIT entry for
/// its 4-tuple, and spreading them over several destination ports keeps
/// connect's local-port search short over a long run.
struct Targets(Vec<SocketAddr>);

impl Targets {
    fn start(count: usize) -> Targets {
        let mut targets = Vec::new();
        for _ in 0..count {
            let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
            targets.push(listener.local_addr().expect("addr"));
            std::thread::spawn(move || while listener.accept().is_ok() {});
        }
        Targets(targets)
    }
}

/// Connect + close `n` times; the latencies in ns.
fn connects(targets: &Targets, n: usize, into: &mut Vec<u64>) {
    for i in 0..n {
        let target = targets.0[i % targets.0.len()];
        let started = Instant::now();
        let stream = TcpStream::connect(target).expect("connect to the listener");
        drop(stream);
        into.push(started.elapsed().as_nanos() as u64);
    }
}

fn row(label: &str, times: &mut [u64]) -> String {
    times.sort_unstable();
    let median = times[times.len() / 2];
    let p99 = times[times.len() * 99 / 100];
    format!("{label:<44} median {:>6.1} µs   p99 {:>7.1} µs", median as f64 / 1e3, p99 as f64 / 1e3)
}

fn storm(targets: &Targets, m: usize) -> Duration {
    let started = Instant::now();
    for i in 0..m {
        drop(TcpStream::connect(targets.0[i % targets.0.len()]).expect("connect"));
    }
    started.elapsed()
}

/// The connect program, its ring drained on a thread (as the source would).
struct Attached {
    _loaded: Loaded,
    maps: Option<PolicyMaps>,
    stop: Arc<AtomicBool>,
    drain: Option<std::thread::JoinHandle<u64>>,
}

impl Attached {
    fn load(enforce: Option<&EnforceTarget>) -> Attached {
        let settings = LoadSettings {
            programs: vec![Program::Connect],
            connect_hook: ConnectHook::Cgroup,
            ..LoadSettings::default()
        };
        let mut loaded = loader::load_with(&settings, enforce).expect("the object loads");
        assert!(loaded.report.problems().is_none(), "{:?}", loaded.report);
        let mut ring = loaded.take_ring().expect("ring");
        let maps = enforce.map(|_| loaded.take_policy_maps().expect("policy maps"));
        let stop = Arc::new(AtomicBool::new(false));
        let drain = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut records = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    while ring.next(|_| ()).is_some() {
                        records += 1;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                records
            }
        });
        Attached { _loaded: loaded, maps, stop, drain: Some(drain) }
    }

    fn install(&mut self, policy: &CompiledPolicy, generation: u32) -> (Duration, Duration) {
        let started = Instant::now();
        let encoded = layout::encode(policy, generation, &Resolved::default()).expect("encodes");
        let encoding = started.elapsed();
        let stats = self.maps.as_mut().expect("enforcing").install(&encoded).expect("installs");
        (encoding, stats.elapsed)
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
    }
}

/// `n` allow rules: one on 127.0.0.1/32 for the listeners' ports (what every benchmark
/// connect matches) and `n - 1` on distinct /32s in 10.0.0.0/8.
fn allow_policy(n: usize, port_lo: u16, port_hi: u16) -> CompiledPolicy {
    let rule = |id: String, port_lo: u16, port_hi: u16| KernelRule {
        rule_key: policy::rule_key(&id),
        action: Action::Allow,
        priority: 100,
        port_lo,
        port_hi,
        protocol: Protocol::Tcp,
        exe: None,
        cgroup: None,
    };
    let mut v4 = vec![PrefixEntry {
        addr: Ipv4Addr::LOCALHOST,
        prefix_len: 32,
        rules: vec![rule("loopback".into(), port_lo, port_hi)],
    }];
    for i in 1..n {
        let i = i as u32;
        v4.push(PrefixEntry {
            addr: Ipv4Addr::from(0x0a00_0000 | i),
            prefix_len: 32,
            rules: vec![rule(format!("r{i}"), 443, 443)],
        });
    }
    CompiledPolicy { mode: Mode::Enforce, digest: format!("bench-{n}"), v4, ..CompiledPolicy::empty() }
}

/// A policy file of `n` rules, for the validate + compile timing.
fn policy_file(n: usize) -> String {
    let mut text = String::from("[policy]\nmode = \"enforce\"\n");
    for i in 0..n as u32 {
        let addr = Ipv4Addr::from(0x0a00_0000 | i);
        let _ = write!(text, "\n[[rule]]\nid = \"r{i}\"\naction = \"allow\"\ncidrs = [\"{addr}/32\"]\nports = [443]\nprotocol = \"tcp\"\n");
    }
    text
}

fn main() {
    if rustix_euid() != 0 {
        eprintln!("SKIPPED enforce_connect: needs root (loads eBPF, attaches to the cgroup2 root)");
        return;
    }
    if let Err(reason) = loader::embedded_object() {
        eprintln!("SKIPPED enforce_connect: built without eBPF: {reason}");
        return;
    }
    let n = env("HOSTFLOW_BENCH_CONNECTS", 10_000);
    let m = env("HOSTFLOW_BENCH_STORM", 20_000);
    let rounds = env("HOSTFLOW_BENCH_ROUNDS", 3);
    let targets = Targets::start(16);
    let port_lo = targets.0.iter().map(|t| t.port()).min().unwrap_or(0);
    let port_hi = targets.0.iter().map(|t| t.port()).max().unwrap_or(0);
    let mount = enforce::resolve::cgroup2_mount().expect("cgroup v2");
    let root = enforce::resolve::cgroup(&mount, "/").expect("the root cgroup");
    let everyone = EnforceTarget { cgroup_id: root.id, level: 0 };
    println!("enforce_connect: {rounds} rounds of {n} connects per row and a storm of {m}, 16 listeners");
    let (p1k, p100k) = (allow_policy(1_000, port_lo, port_hi), allow_policy(100_000, port_lo, port_hi));
    let empty = CompiledPolicy { mode: Mode::Enforce, ..CompiledPolicy::empty() };

    let mut warm = Vec::new();
    connects(&targets, 2_000, &mut warm);
    let labels = [
        "no program attached",
        "attached, observing only (no enforce)",
        "attached, enforcing, 0 rules",
        "attached, enforcing, 1 000 rules",
        "attached, enforcing, 100 000 rules",
    ];
    let mut samples: Vec<Vec<u64>> = vec![Vec::new(); labels.len()];
    let (mut storm_detached, mut storm_1k) = (Vec::new(), Vec::new());
    let (mut writes_1k, mut writes_100k, mut encodes_100k) = (Vec::new(), Vec::new(), Vec::new());
    let mut decisions = enforce::Decisions::default();
    let mut generation = 0;
    for _ in 0..rounds {
        connects(&targets, n, &mut samples[0]);
        storm_detached.push(storm(&targets, m));
        {
            let _observe = Attached::load(None);
            connects(&targets, n, &mut samples[1]);
        }
        let mut attached = Attached::load(Some(&everyone));
        connects(&targets, n, &mut samples[2]);
        generation += 1;
        writes_1k.push(attached.install(&p1k, generation).1);
        connects(&targets, n, &mut samples[3]);
        storm_1k.push(storm(&targets, m));
        generation += 1;
        let (encode, write) = attached.install(&p100k, generation);
        encodes_100k.push(encode);
        writes_100k.push(write);
        connects(&targets, n, &mut samples[4]);
        generation += 1;
        attached.install(&empty, generation);
        let counted = attached.maps.as_ref().expect("maps").decisions().expect("counters");
        decisions.allowed += counted.allowed;
    }
    for (label, times) in labels.iter().zip(samples.iter_mut()) {
        println!("{}", row(label, times));
    }
    let secs = |d: &[Duration]| d.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
    let (detached, enforcing) = (secs(&storm_detached), secs(&storm_1k));
    let total = |v: &[f64]| v.iter().sum::<f64>();
    println!(
        "storm of {m} connects, per round: detached {detached:.2?} s, enforcing 1 000 rules {enforcing:.2?} s; \
         total {:.3}x ({:.1} vs {:.1} µs/connect)",
        total(&enforcing) / total(&detached),
        total(&enforcing) * 1e6 / (m * rounds) as f64,
        total(&detached) * 1e6 / (m * rounds) as f64
    );
    let ms = |d: &[Duration]| d.iter().map(|d| format!("{:.0}", d.as_secs_f64() * 1e3)).collect::<Vec<_>>().join(", ");
    println!("write 1 000 rules into the maps (ms): {}", ms(&writes_1k));
    let text = policy_file(100_000);
    let started = Instant::now();
    let compiled =
        policy::compile_str(&text, std::path::Path::new("bench.toml"), &policy::ValidationContext::default());
    let compile_100k = started.elapsed();
    if let Err(problems) = &compiled {
        eprintln!("policy::compile_str refused the generated policy: {problems}");
    }
    println!(
        "100 000 rules: validate + compile {:.0} ms ({}); encode (ms) {}; write into the maps (ms) {}",
        compile_100k.as_secs_f64() * 1e3,
        if compiled.is_ok() { "accepted" } else { "refused" },
        ms(&encodes_100k),
        ms(&writes_100k)
    );
    println!(
        "allow decisions counted by the kernel: {} (every connect of the 1 000 and 100 000 rows and storms)",
        decisions.allowed
    );
}

fn rustix_euid() -> u32 {
    // /proc/self/status `Uid:` real, effective, ...: no extra dependency.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)?.parse().ok()))
        .unwrap_or(u32::MAX)
}
