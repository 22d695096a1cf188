//! The `detect` engine with the default pack (`rules/linux`), 100 000
//! IOCs (50 000 sha256, 50 000 IPs/CIDRs) and 200 generated Sigma-style
//! rules loaded: the rule set's compile time and memory, the per-event
//! decision latency (p50/p99 over single events, every layer together, as
//! the transform runs them; then L1 and L3 alone) and the throughput of one
//! core over batches.
//!
//! `cargo bench --bench detect` — results are recorded in BENCHMARKS.md.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use detect::engine::Engine;
use detect::l2::L2Config;
use pipeline::event::{Ancestor, Argv, FileOpen, Lineage, NetConnect, ProcessContext, ProcessExec, Protocol};
use pipeline::{Event, EventMeta, ProcessKey};

const SIGMA_RULES: usize = 200;
const IOCS: usize = 100_000;

/// Deterministic xorshift.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// 200 Sigma rules shaped like SigmaHQ's Linux ones: process_creation with
/// endswith/contains/startswith selections and a filter, some regexes, and
/// network_connection rules on ports and CIDRs.
fn sigma_rules(dir: &Path) {
    for i in 0..SIGMA_RULES {
        let mut y = String::new();
        let _ = writeln!(y, "title: Generated rule {i}\nid: 6f1c0000-0000-4000-8000-{i:012}\nstatus: test\nlevel: medium\ntags: [attack.t1059]");
        if i % 5 == 4 {
            let _ = writeln!(
                y,
                "logsource: {{ product: linux, category: network_connection }}\ndetection:\n  selection:\n    DestinationPort: [{}, {}]\n    DestinationIp|cidr: ['10.{}.0.0/16']\n  condition: selection",
                20000 + i,
                30000 + i,
                i % 250
            );
        } else if i % 10 == 3 {
            let _ = writeln!(
                y,
                "logsource: {{ product: linux, category: process_creation }}\ndetection:\n  selection:\n    CommandLine|re: '--opt{i}=[0-9]+'\n  condition: selection"
            );
        } else {
            let _ = writeln!(
                y,
                "logsource: {{ product: linux, category: process_creation }}\ndetection:\n  selection_img:\n    Image|endswith: ['/tool{i}', '/util{i}']\n  selection_cli:\n    CommandLine|contains:\n      - '--flag{i}'\n      - 'payload{i}'\n  filter:\n    ParentImage|startswith: '/usr/lib/ok{i}/'\n  condition: all of selection_* and not filter"
            );
        }
        std::fs::write(dir.join(format!("sigma_{i:03}.yml")), y).expect("write sigma rule");
    }
}

fn iocs(dir: &Path) {
    let mut hashes = String::new();
    let mut ips = String::new();
    for i in 0..IOCS / 2 {
        let _ = writeln!(hashes, "{:064x}", (i as u128) * 0x9e37_79b9_7f4a_7c15);
        if i % 10 == 0 {
            let _ = writeln!(ips, "{}.{}.{}.0/24", 100 + i % 100, (i / 100) % 256, i % 256);
        } else {
            let _ = writeln!(ips, "{}.{}.{}.{}", 1 + i % 200, (i / 200) % 256, i % 256, 7);
        }
    }
    std::fs::write(dir.join("hashes.txt"), hashes).expect("write");
    std::fs::write(dir.join("ips.txt"), ips).expect("write");
    std::fs::write(
        dir.join("iocs.yml"),
        "ioc_sets:\n  - { name: bench-hashes, kind: sha256, file: hashes.txt }\n  - { name: bench-ips, kind: ip, file: ips.txt }\nrules:\n  - id: hf-bench-bad-hash\n    title: known bad executable\n    severity: critical\n    confidence: definite\n    match: { ctx_exe_sha256: { in_set: bench-hashes } }\n  - id: hf-bench-bad-ip\n    title: known bad address\n    severity: high\n    confidence: very_high\n    match: { kind: net_connect, dst_addr: { in_set: bench-ips } }\n",
    )
    .expect("write");
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A mix like a busy host's kernel stream: execs of common tools, opens,
/// connects, spread over 500 processes with contexts.
fn events(n: usize, attacks: bool) -> Vec<Event> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let exes = [
        "/usr/bin/bash",
        "/usr/bin/curl",
        "/usr/bin/python3",
        "/usr/bin/git",
        "/usr/sbin/nginx",
        "/usr/bin/ls",
        "/tmp/tool17",
    ];
    let args = [
        "bash -c make -j2 all",
        "curl -fsSL https://example.org/install.sh -o /tmp/i.sh",
        "python3 -m http.server 8080",
        "git pull --rebase origin main",
        "nginx: worker process",
        "ls -la /home/alice",
        "tool17 --flag17 --opt3=42",
    ];
    (0..n)
        .map(|i| {
            let p = rng.below(500) as u32;
            let kinds = if attacks { exes.len() } else { exes.len() - 1 };
            let which = rng.below(kinds as u64) as usize;
            let process = ProcessKey { pid: 1000 + p, start_time_ns: u64::from(p) * 1_000 };
            let context = Arc::new(ProcessContext {
                exe: exes[which].into(),
                argv: Argv::from_args(args[which].split(' ')),
                uid: 1000,
                user: "alice".into(),
                cwd: "/home/alice".into(),
                session_id: 3,
                exe_sha256: format!("{:064x}", u128::from(p) * 31).into(),
                ancestry: vec![
                    Ancestor {
                        process: ProcessKey { pid: 900, start_time_ns: 1 },
                        exe: "/usr/bin/bash".into(),
                        args: "-bash".into(),
                    },
                    Ancestor {
                        process: ProcessKey { pid: 1, start_time_ns: 0 },
                        exe: "/usr/lib/systemd/systemd".into(),
                        args: "".into(),
                    },
                ],
                lineage: Lineage::Complete,
                ..ProcessContext::unknown()
            });
            let meta = EventMeta { ts_ns: i as u64 * 10_000, event_id: i as u64 };
            match rng.below(10) {
                0..=3 => Event::ProcessExec(ProcessExec {
                    meta,
                    process,
                    ppid: 900,
                    uid: 1000,
                    gid: 1000,
                    cgroup_id: 0,
                    comm: "x".into(),
                    exe: exes[which].into(),
                    argv: Argv::from_args(args[which].split(' ')),
                    argv_truncated: false,
                    attributes: None,
                    context: Some(context),
                }),
                4..=6 => Event::FileOpen(FileOpen {
                    meta,
                    process,
                    path: if i % 2 == 0 { "/etc/ld.so.cache".into() } else { "/home/alice/.cache/x".into() },
                    flags: 0,
                    context: Some(context),
                }),
                _ => Event::NetConnect(NetConnect {
                    meta,
                    process,
                    protocol: Protocol::Tcp,
                    dst_addr: IpAddr::from([10, (i % 250) as u8, 1, (i % 200) as u8]),
                    dst_port: if attacks { [443, 80, 22, 20_004][i % 4] } else { [443, 80, 22, 53][i % 4] },
                    result: Some(0),
                    context: Some(context),
                }),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pack = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/linux");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(rules_dir.join("pack")).expect("mkdir");
    for file in detect::ruleset::rule_files(&pack).expect("the default pack") {
        let name = file.file_name().expect("name").to_owned();
        std::fs::copy(&file, rules_dir.join("pack").join(name)).expect("copy");
    }
    sigma_rules(&rules_dir);
    iocs(&rules_dir);

    let rss_before = rss_kib();
    let started = Instant::now();
    let loaded = detect::load(&rules_dir);
    let compile = started.elapsed();
    let problems: Vec<String> = loaded.problems().map(ToString::to_string).collect();
    let set = Arc::new(loaded.set.unwrap_or_else(|| panic!("the bench set loads: {problems:#?}")));
    let rss_after = rss_kib();
    let counts = set.counts();
    println!(
        "rule set: {} rules ({:?}), {} IOCs; load + compile {:.0} ms; RSS +{:.1} MiB",
        set.rules.len(),
        counts,
        IOCS,
        compile.as_secs_f64() * 1e3,
        (rss_after.saturating_sub(rss_before)) as f64 / 1024.0
    );

    for (kind, always, gated) in set.evaluator.gating() {
        if matches!(kind.as_str(), "process_exec" | "net_connect" | "file_open") {
            println!("{}: {always} conditions always evaluated, {gated} behind gates", kind.as_str());
        }
    }
    let config = L2Config { reorder_ns: 2_000_000_000, max_states_per_rule: 10_000, max_states_total: 100_000 };
    let input = events(60_000, true);

    // Per-event decision latency: each event timed alone, in time order
    // (so L2 sees a live stream, not late repeats), after a warm-up.
    let mut engine = Engine::new(Arc::clone(&set), config);
    let mut firings = Vec::new();
    let mut samples: Vec<u64> = Vec::with_capacity(input.len());
    for (i, event) in input.iter().enumerate() {
        let t = Instant::now();
        engine.process(event, &mut firings);
        let ns = t.elapsed().as_nanos() as u64;
        if i >= 10_000 {
            samples.push(ns);
        }
        firings.clear();
    }
    samples.sort_unstable();
    let q = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    println!("per-event decision: p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns", q(0.5), q(0.99), q(0.999), q(1.0));

    // The same events through the L1 decision alone.
    let mut scratch = set.evaluator.scratch();
    let mut hits = Vec::new();
    let mut l1: Vec<u64> = Vec::with_capacity(input.len());
    for (i, event) in input.iter().enumerate() {
        hits.clear();
        let t = Instant::now();
        set.evaluator.evaluate(event, &mut scratch, &mut hits);
        let ns = t.elapsed().as_nanos() as u64;
        if i >= 10_000 {
            l1.push(ns);
        }
    }
    l1.sort_unstable();
    let q1 = |p: f64| l1[((l1.len() - 1) as f64 * p) as usize];
    println!("per-event L1 decision alone: p50 {} ns, p99 {} ns, p99.9 {} ns", q1(0.5), q1(0.99), q1(0.999));

    // L3 alone (issue #16): the pack's anomaly rules on the same events,
    // windows scaled to the generated stream (it spans 0.6 s: 10 ms
    // windows, a 1 ms reorder window) and a short warm-up, so windows
    // close, fold and score as they would over hours.
    let l3_rules =
        set.l3.iter().map(|(i, a)| (*i, detect::rule::Anomaly { window_ns: 10_000_000, ..a.clone() })).collect();
    let l3_config =
        detect::l3::L3Config { reorder_ns: 1_000_000, warmup_events: 50, warmup_windows: 3, ..Default::default() };
    let mut l3 = detect::l3::L3Engine::new(l3_rules, l3_config);
    let mut l3_ns: Vec<u64> = Vec::with_capacity(input.len());
    let mut l3_firings = 0;
    for (i, event) in input.iter().enumerate() {
        let t = Instant::now();
        l3.push(event, &mut firings);
        let ns = t.elapsed().as_nanos() as u64;
        if i >= 10_000 {
            l3_ns.push(ns);
        }
        l3_firings += firings.len();
        firings.clear();
    }
    l3_ns.sort_unstable();
    let q3 = |p: f64| l3_ns[((l3_ns.len() - 1) as f64 * p) as usize];
    let stats = l3.stats();
    println!(
        "per-event L3 alone: p50 {} ns, p99 {} ns, p99.9 {} ns ({} entities, {} of {} baselines scoring, {} firings)",
        q3(0.5),
        q3(0.99),
        q3(0.999),
        stats.entities,
        stats.ready,
        stats.baselines,
        l3_firings
    );

    let quiet = events(1_000, false);
    let mut group = c.benchmark_group("detect");
    group.throughput(Throughput::Elements(1_000));
    let batch = &input[..1_000];
    for (name, batch) in [("1000 events, 1 in 7 execs an attack", batch), ("1000 events, no attack", &quiet[..])] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || (Engine::new(Arc::clone(&set), config), Vec::new()),
                |(mut engine, mut firings)| {
                    for event in batch {
                        engine.process(event, &mut firings);
                    }
                    engine.flush(u64::MAX, &mut firings);
                    firings.len()
                },
                BatchSize::SmallInput,
            )
        });
    }
    // The L1 decision alone (issue #15's "≥ 1 M events/s on one core for
    // L1"): which compiled conditions hold, without L2 or building firings.
    for (name, batch) in [("L1 decision, 1 in 7 execs an attack", batch), ("L1 decision, no attack", &quiet[..])] {
        group.bench_function(name, |b| {
            let mut scratch = set.evaluator.scratch();
            let mut hits = Vec::new();
            b.iter(|| {
                for event in batch {
                    hits.clear();
                    set.evaluator.evaluate(event, &mut scratch, &mut hits);
                }
                hits.len()
            })
        });
    }
    group.finish();
    corpus(c);
}

/// The recorded corpus (`testbed/corpus/spool`, issue #16) replayed at
/// full speed through the default pack's four layers on one core: what a
/// host's real mix costs, as opposed to the generated mixes above.
fn corpus(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let selection = sources::replay::Selection::all();
    let events: Vec<Event> =
        sources::replay::read_spool(&root.join("testbed/corpus/spool"), &selection, 4_096).flatten().collect();
    assert!(events.len() > 5_000, "the corpus spool has {} events", events.len());
    let loaded = detect::ruleset::load(&root.join("rules/linux"));
    let set = Arc::new(loaded.set.expect("the pack loads"));
    let config = L2Config { reorder_ns: 300_000_000, max_states_per_rule: 10_000, max_states_total: 100_000 };
    let mut group = c.benchmark_group("detect-corpus");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(30);
    group.bench_function(format!("recorded corpus, {} events, default pack, four layers", events.len()), |b| {
        b.iter(|| {
            let mut engine = Engine::new(Arc::clone(&set), config);
            let mut firings = Vec::new();
            for event in &events {
                engine.process(event, &mut firings);
            }
            engine.flush(u64::MAX, &mut firings);
            firings.len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
