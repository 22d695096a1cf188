//! The `enrich` transform with a 10 000-process table: the per-event cost
//! of attaching a context (batches of 1 000 connects and file opens over
//! the 10 k processes), the cost of a process's fork + exec + exit and of
//! an exec whose fork was missed (context builds), and the time to seed
//! the table from 10 k snapshot events. Prints the table's bytes per entry.
//!
//! `cargo bench --bench enrich` — results are recorded in BENCHMARKS.md.

use std::mem::size_of;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pipeline::event::{
    Ancestor, Argv, EventMeta, ExecAttributes, FileOpen, HashState, NetConnect, ProcessContext, ProcessExec,
    ProcessExit, ProcessFork, ProcessSnapshot, Protocol,
};
use pipeline::{Event, Output, ProcessKey, Transform};
use transforms::enrich::{Enrich, EnrichSettings};

const PROCESSES: u32 = 10_000;
const BATCH: usize = 1_000;
const MS: u64 = 1_000_000;

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

fn key(i: u32) -> ProcessKey {
    ProcessKey { pid: i + 1, start_time_ns: u64::from(i) * 10 * MS }
}

/// pid 1 is the root; process `i`'s parent is `(i - 1) / 4`: a 4-ary tree,
/// about seven deep, oldest first as the source emits it.
fn snapshots() -> Vec<Event> {
    let exes: Vec<Arc<str>> =
        ["/usr/bin/bash", "/usr/sbin/sshd", "/usr/bin/python3", "/usr/lib/systemd/systemd"].map(Arc::from).to_vec();
    let cgroups: Vec<Arc<str>> = [
        "/user.slice/user-1000.slice/session-3.scope".to_owned(),
        "/system.slice/ssh.service".to_owned(),
        format!("/system.slice/docker-{}.scope", "ab".repeat(32)),
    ]
    .map(Arc::from)
    .to_vec();
    (0..PROCESSES)
        .map(|i| {
            let parent = if i == 0 { ProcessKey { pid: 0, start_time_ns: 0 } } else { key((i - 1) / 4) };
            let exe = Arc::clone(&exes[i as usize % exes.len()]);
            Event::ProcessSnapshot(ProcessSnapshot {
                meta: EventMeta { ts_ns: u64::from(i), event_id: u64::from(i) },
                process: key(i),
                parent,
                uid: 1000,
                euid: 1000,
                gid: 1000,
                user: "alice".into(),
                comm: "bash".into(),
                argv: Argv::from_args([&*exe, "-c", "while true; do sleep 1; done"]),
                exe,
                argv_truncated: false,
                cwd: "/home/alice".into(),
                tty: "pts/1".into(),
                loginuid: 1000,
                session_id: 3,
                cgroup_path: Arc::clone(&cgroups[i as usize % cgroups.len()]),
                exe_sha256: "".into(),
                exe_hash: HashState::NotRequested,
                context: None,
            })
        })
        .collect()
}

fn seeded() -> Enrich {
    let mut enrich = Enrich::new(EnrichSettings::default(), "bench");
    enrich.process(snapshots(), &mut Output::default());
    enrich
}

/// `BATCH` connects and file opens of random processes of the table.
fn mixed_batch(rng: &mut Rng, ts_ns: u64) -> Vec<Event> {
    let path: Arc<str> = Arc::from("/etc/ld.so.cache");
    (0..BATCH)
        .map(|n| {
            let process = key(rng.below(u64::from(PROCESSES)) as u32);
            let meta = EventMeta { ts_ns: ts_ns + n as u64, event_id: n as u64 };
            if n % 2 == 0 {
                Event::NetConnect(NetConnect {
                    meta,
                    process,
                    protocol: Protocol::Tcp,
                    dst_addr: IpAddr::from([10, 0, 0, 1]),
                    dst_port: 443,
                    result: Some(0),
                    context: None,
                })
            } else {
                Event::FileOpen(FileOpen { meta, process, path: Arc::clone(&path), flags: 0, context: None })
            }
        })
        .collect()
}

/// `n` short-lived processes of random parents, each a fork (unless
/// `missed_fork`), an exec and an exit, 1 ms apart: the steady state of a
/// busy host (exited children expire after the 30 s grace).
fn lifecycles(rng: &mut Rng, next: &mut u32, n: usize, missed_fork: bool) -> Vec<Event> {
    let attributes = Arc::new(ExecAttributes {
        user: "alice".into(),
        cwd: "/tmp".into(),
        cgroup_path: "/user.slice/user-1000.slice/session-3.scope".into(),
        ..ExecAttributes::default()
    });
    let exe: Arc<str> = Arc::from("/usr/bin/curl");
    let mut events = Vec::with_capacity(n * 3);
    for _ in 0..n {
        let ts = u64::from(*next) * MS;
        let parent = key(rng.below(u64::from(PROCESSES)) as u32);
        let child = ProcessKey { pid: 100_000 + *next % 1_000_000, start_time_ns: ts };
        *next += 1;
        let meta = |d: u64| EventMeta { ts_ns: ts + d, event_id: ts + d };
        if !missed_fork {
            events.push(Event::ProcessFork(ProcessFork { meta: meta(0), parent, child, context: None }));
        }
        events.push(Event::ProcessExec(ProcessExec {
            meta: meta(1),
            process: child,
            ppid: parent.pid,
            uid: 1000,
            gid: 1000,
            cgroup_id: 0,
            comm: "curl".into(),
            exe: Arc::clone(&exe),
            argv: Argv::from_args(["curl", "-s", "https://example.com"]),
            argv_truncated: false,
            attributes: Some(Arc::clone(&attributes)),
            context: None,
        }));
        events.push(Event::ProcessExit(ProcessExit {
            meta: meta(2),
            process: child,
            exit_code: 0,
            cpu_ns: 0,
            context: None,
        }));
    }
    events
}

fn enrich(c: &mut Criterion) {
    let seeded_table = seeded();
    let depth: usize = snapshots()
        .iter()
        .map(|event| seeded_table.context_of(event.process().expect("snapshot")).map_or(0, |c| c.ancestry.len()))
        .sum();
    let mean_depth = depth as f64 / f64::from(PROCESSES);
    eprintln!(
        "enrich: table {} B per entry (slot and indexes); context {} B + ancestry {:.0} B on average ({mean_depth:.1} ancestors of {} B)",
        Enrich::table_bytes_per_entry(),
        size_of::<ProcessContext>() + 16,
        mean_depth * size_of::<Ancestor>() as f64,
        size_of::<Ancestor>(),
    );

    per_event_latency();

    let mut group = c.benchmark_group("enrich_10k");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("connect_file_per_batch_1000", |b| {
        let mut transform = seeded();
        let mut out = Output::default();
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        b.iter_batched(
            || mixed_batch(&mut rng, 1_000),
            |batch| {
                transform.process(batch, &mut out);
                out.take_events()
            },
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements(300));
    for (name, missed_fork) in [("fork_exec_exit_per_300", false), ("exec_exit_missed_fork_per_300", true)] {
        group.bench_function(name, |b| {
            let mut transform = seeded();
            let mut out = Output::default();
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            let mut next = PROCESSES;
            b.iter_batched(
                || lifecycles(&mut rng, &mut next, 300, missed_fork),
                |batch| {
                    transform.process(batch, &mut out);
                    out.take_events()
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.throughput(Throughput::Elements(u64::from(PROCESSES)));
    group.bench_function("seed_snapshots_10k", |b| {
        b.iter_batched(
            || (Enrich::new(EnrichSettings::default(), "bench"), snapshots()),
            |(mut transform, batch)| {
                let mut out = Output::default();
                transform.process(batch, &mut out);
                (transform, out)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// The distribution criterion does not give: each of 200 000 connects and
/// opens of random processes of the 10 k table timed on its own (a batch
/// of one, so the figure includes the per-batch work; `Instant` costs
/// ~20-30 ns here, included too). Printed as p50 / p99 / p99.9 in ns.
fn per_event_latency() {
    let mut transform = seeded();
    let mut out = Output::default();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut times = Vec::with_capacity(200_000);
    for round in 0..200 {
        for event in mixed_batch(&mut rng, 10_000 + round * BATCH as u64) {
            let started = std::time::Instant::now();
            transform.process(vec![event], &mut out);
            times.push(started.elapsed().as_nanos() as u64);
            out.take_events();
        }
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    eprintln!(
        "enrich: per event (batch of one, 10 k table): p50 {} ns, p99 {} ns, p99.9 {} ns",
        at(0.5),
        at(0.99),
        at(0.999)
    );
}

criterion_group!(benches, enrich);
criterion_main!(benches);
