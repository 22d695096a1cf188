//! Tests of the `enrich` transform on synthetic events: seeded ancestry,
//! fork/exec chains, unknown processes, PID reuse, the bound under churn,
//! late hashes, one shared context per process, exits and their grace,
//! honest contexts without kernel attributes, containers, depth limits and
//! cycles, metrics, and located config errors.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use pipeline::event::{Argv, EventMeta, ExecAttributes, FileOpen, NetConnect, ProcessExit, ProcessSample, Protocol};
use pipeline::{SourceFile, TopologyConfig};

use super::*;

const SEC: u64 = 1_000_000_000;
const DOCKER_ID: &str = "3f4e9a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7";
const HOST_CGROUP: &str = "/user.slice/user-1000.slice/session-3.scope";

fn key(pid: u32, start_time_ns: u64) -> ProcessKey {
    ProcessKey { pid, start_time_ns }
}

fn meta(ts_ns: u64) -> EventMeta {
    EventMeta { ts_ns, event_id: ts_ns }
}

fn snapshot(ts_ns: u64, process: ProcessKey, parent: ProcessKey, exe: &str, argv: &[&str], cgroup: &str) -> Event {
    Event::ProcessSnapshot(ProcessSnapshot {
        meta: meta(ts_ns),
        process,
        parent,
        uid: 1000,
        euid: 1000,
        gid: 1000,
        user: "alice".into(),
        comm: exe.rsplit('/').next().unwrap_or_default().into(),
        exe: exe.into(),
        argv: Argv::from_args(argv),
        argv_truncated: false,
        cwd: "/home/alice".into(),
        tty: "pts/1".into(),
        loginuid: 1000,
        session_id: 3,
        cgroup_path: cgroup.into(),
        exe_sha256: "".into(),
        exe_hash: HashState::NotRequested,
        context: None,
    })
}

fn fork(ts_ns: u64, parent: ProcessKey, child: ProcessKey) -> Event {
    Event::ProcessFork(ProcessFork { meta: meta(ts_ns), parent, child, context: None })
}

fn attributes(cgroup: &str, hash: HashState) -> Arc<ExecAttributes> {
    Arc::new(ExecAttributes {
        euid: 0,
        tty: "pts/2".into(),
        loginuid: 1000,
        session_id: 7,
        cwd: "/tmp".into(),
        user: "alice".into(),
        cgroup_path: cgroup.into(),
        exe_hash: hash,
        ..ExecAttributes::default()
    })
}

fn exec_with(
    ts_ns: u64,
    process: ProcessKey,
    ppid: u32,
    exe: &str,
    argv: &[&str],
    attributes: Option<Arc<ExecAttributes>>,
) -> Event {
    Event::ProcessExec(ProcessExec {
        meta: meta(ts_ns),
        process,
        ppid,
        uid: 1000,
        gid: 1000,
        cgroup_id: 0,
        comm: exe.rsplit('/').next().unwrap_or_default().into(),
        exe: exe.into(),
        argv: Argv::from_args(argv),
        argv_truncated: false,
        attributes,
        context: None,
    })
}

fn exec(ts_ns: u64, process: ProcessKey, ppid: u32, exe: &str) -> Event {
    exec_with(ts_ns, process, ppid, exe, &[exe, "-x"], Some(attributes(HOST_CGROUP, HashState::NotRequested)))
}

fn exit(ts_ns: u64, process: ProcessKey) -> Event {
    Event::ProcessExit(ProcessExit { meta: meta(ts_ns), process, exit_code: 0, cpu_ns: 0, context: None })
}

fn connect(ts_ns: u64, process: ProcessKey) -> Event {
    Event::NetConnect(NetConnect {
        meta: meta(ts_ns),
        process,
        protocol: Protocol::Tcp,
        dst_addr: IpAddr::from([127, 0, 0, 1]),
        dst_port: 8080,
        result: Some(0),
        context: None,
    })
}

fn file_open(ts_ns: u64, process: ProcessKey) -> Event {
    Event::FileOpen(FileOpen { meta: meta(ts_ns), process, path: "/etc/passwd".into(), flags: 0, context: None })
}

fn exe_hash(ts_ns: u64, process: ProcessKey, exe: &str, sha256: &str, state: HashState) -> Event {
    Event::ExeHash(ExeHash {
        meta: meta(ts_ns),
        process,
        exe: exe.into(),
        dev: 1,
        inode: 2,
        sha256: sha256.into(),
        state,
        context: None,
    })
}

fn settings(capacity: u32, grace_ns: u64, depth: usize) -> EnrichSettings {
    EnrichSettings {
        capacity: NonZeroU32::new(capacity).expect("non-zero"),
        exited_grace_ns: grace_ns,
        ancestry_depth: depth,
    }
}

fn enrich() -> Enrich {
    Enrich::new(EnrichSettings::default(), "enrich")
}

/// One batch through the transform.
fn run(transform: &mut Enrich, events: Vec<Event>) -> Vec<Event> {
    let mut out = Output::default();
    transform.process(events, &mut out);
    out.take_events()
}

fn ctx(event: &Event) -> &Arc<ProcessContext> {
    event.context().expect("every process-bearing event leaves with a context")
}

fn ancestor_pids(context: &ProcessContext) -> Vec<u32> {
    context.ancestry.iter().map(|a| a.process.pid).collect()
}

/// init (1) → sshd (500) → bash (600), seeded from a snapshot.
fn seeded() -> (Enrich, [ProcessKey; 3]) {
    seeded_with(EnrichSettings::default())
}

fn seeded_with(settings: EnrichSettings) -> (Enrich, [ProcessKey; 3]) {
    let (init, sshd, bash) = (key(1, 0), key(500, 10), key(600, 20));
    let mut e = Enrich::new(settings, "enrich");
    run(
        &mut e,
        vec![
            snapshot(1, init, key(0, 0), "/sbin/init", &["/sbin/init", "splash"], "/init.scope"),
            snapshot(2, sshd, init, "/usr/sbin/sshd", &["sshd: alice [priv]"], "/system.slice/ssh.service"),
            snapshot(3, bash, sshd, "/usr/bin/bash", &["-bash"], HOST_CGROUP),
        ],
    );
    (e, [init, sshd, bash])
}

#[test]
fn the_first_event_of_a_seeded_process_carries_its_full_ancestry() {
    let (mut e, [init, sshd, bash]) = seeded();
    let sleep = key(700, 30);
    let out = run(
        &mut e,
        vec![snapshot(4, sleep, bash, "/usr/bin/sleep", &["sleep", "600"], HOST_CGROUP), connect(SEC, sleep)],
    );
    let context = ctx(&out[1]);
    assert!(Arc::ptr_eq(context, ctx(&out[0])), "the snapshot and the connect share the context");
    assert_eq!(context.origin, ContextOrigin::Snapshot);
    assert_eq!(context.lineage, Lineage::Complete);
    assert_eq!((&*context.exe, context.argv.to_string().as_str()), ("/usr/bin/sleep", "sleep 600"));
    assert_eq!((context.uid, &*context.user, context.euid, &*context.cwd), (1000, "alice", 1000, "/home/alice"));
    assert_eq!((&*context.tty, context.loginuid, context.session_id), ("pts/1", 1000, 3));
    assert_eq!((&*context.container_runtime, &*context.container_id), ("host", ""));
    let ancestry: Vec<(ProcessKey, &str, &str)> =
        context.ancestry.iter().map(|a| (a.process, &*a.exe, &*a.args)).collect();
    assert_eq!(
        ancestry,
        [
            (bash, "/usr/bin/bash", "-bash"),
            (sshd, "/usr/sbin/sshd", "sshd: alice [priv]"),
            (init, "/sbin/init", "/sbin/init splash")
        ]
    );
    let init_context = e.context_of(&init).expect("seeded");
    assert_eq!((init_context.lineage, init_context.ancestry.len()), (Lineage::Complete, 0), "pid 1's parent is 0");
    for reason in MissingReason::ALL {
        assert_eq!(e.lineage_missing(reason), 0, "{reason:?}");
    }
}

#[test]
fn a_fork_exec_chain_six_deep_reaches_the_root() {
    let (mut e, [init, sshd, bash]) = seeded();
    let mut events = Vec::new();
    let mut parent = bash;
    let mut chain = Vec::new();
    for depth in 1..=6u32 {
        let child = key(1000 + depth, u64::from(depth) * SEC);
        let ts = u64::from(depth) * SEC;
        events.push(fork(ts, parent, child));
        events.push(exec(ts + 1, child, parent.pid, &format!("/usr/bin/step{depth}")));
        chain.push(child);
        parent = child;
    }
    events.push(connect(10 * SEC, parent));
    let out = run(&mut e, events);
    let context = ctx(out.last().expect("the connect"));
    assert_eq!(context.origin, ContextOrigin::Exec);
    assert_eq!(context.lineage, Lineage::Complete);
    assert_eq!(&*context.exe, "/usr/bin/step6");
    assert_eq!(ancestor_pids(context), [1005, 1004, 1003, 1002, 1001, bash.pid, sshd.pid, init.pid]);
    let exes: Vec<&str> = context.ancestry.iter().map(|a| &*a.exe).collect();
    assert_eq!(exes[..2], ["/usr/bin/step5", "/usr/bin/step4"]);
    assert_eq!(&*context.ancestry[0].args, "/usr/bin/step5 -x");
    // The exec's kernel attributes are in the context.
    assert_eq!((context.euid, &*context.cwd, &*context.tty, context.session_id), (0, "/tmp", "pts/2", 7));
    // A fork's own context is the parent's; the child's is a copy with origin fork.
    assert!(Arc::ptr_eq(ctx(&out[0]), e.context_of(&bash).expect("bash")));
    assert_eq!(ctx(&out[1]).origin, ContextOrigin::Exec);
    for reason in MissingReason::ALL {
        assert_eq!(e.lineage_missing(reason), 0, "{reason:?}");
    }
    // The table's own walk agrees with the inherited ancestry.
    let walk = e.table.ancestry(&parent, DEFAULT_ANCESTRY_DEPTH);
    assert_eq!(walk.end, crate::enrich::table::AncestryEnd::Root);
    assert_eq!(walk.ancestors, context.ancestry.iter().map(|a| a.process).collect::<Vec<_>>());
}

#[test]
fn lineage_survives_the_expiry_of_exited_ancestors() {
    let (mut e, [_, _, bash]) = seeded();
    let (daemon, worker) = (key(2000, SEC), key(2001, 2 * SEC));
    run(&mut e, vec![fork(SEC, bash, daemon), exec(SEC + 1, daemon, bash.pid, "/usr/bin/daemon")]);
    // bash exits and is expired long before the daemon forks a worker.
    run(&mut e, vec![exit(2 * SEC, bash), fork(100 * SEC, daemon, worker), connect(100 * SEC + 1, worker)]);
    assert!(e.context_of(&bash).is_none(), "expired");
    let context = e.context_of(&worker).expect("forked");
    assert_eq!(context.origin, ContextOrigin::Fork);
    assert_eq!((context.lineage, ancestor_pids(context)), (Lineage::Complete, vec![2000, 600, 500, 1]));
}

#[test]
fn an_unknown_process_gets_the_shared_unknown_marker_and_is_counted() {
    let mut e = enrich();
    let stranger = key(31337, 5);
    let sample = Event::ProcessSample(ProcessSample {
        meta: meta(1),
        process: stranger,
        scan: Default::default(),
        ppid: 1,
        uid: 0,
        name: "x".into(),
        cmdline: "".into(),
        state: b'S',
        threads: 1,
        cpu_ticks: 0,
        cpu_percent: 0.0,
        rss_bytes: 0,
        top_n_rank: 0,
    });
    let out = run(&mut e, vec![connect(1, stranger), file_open(2, stranger), sample.clone()]);
    let (first, second) = (ctx(&out[0]), ctx(&out[1]));
    assert!(Arc::ptr_eq(first, second), "one shared unknown context");
    assert_eq!(**first, ProcessContext::unknown());
    assert_eq!((first.lineage, first.origin), (Lineage::ProcessUnknown, ContextOrigin::Unknown));
    assert_eq!(out[2], sample, "kinds without a context pass untouched");
    assert_eq!(e.lineage_missing(MissingReason::ProcessUnknown), 2);
    assert!(e.is_empty(), "unknown processes are not invented into the table");

    // An event enriched upstream (a replayed spool) keeps its context.
    let mut replayed = connect(3, stranger);
    let recorded = pipeline::event::context::sample_context();
    *replayed.context_mut().expect("slot") = Some(Arc::clone(&recorded));
    let out = run(&mut e, vec![replayed]);
    assert!(Arc::ptr_eq(ctx(&out[0]), &recorded));
    assert_eq!(e.lineage_missing(MissingReason::ProcessUnknown), 2);
}

#[test]
fn a_reused_pid_never_inherits_the_old_process_context() {
    let (mut e, [_, _, bash]) = seeded();
    let grace = EnrichSettings::default().exited_grace_ns;
    let old = key(4242, SEC);
    let new = key(4242, 50 * SEC);
    let out = run(&mut e, vec![fork(SEC, bash, old), exec(SEC + 1, old, bash.pid, "/usr/bin/old"), exit(2 * SEC, old)]);
    let old_context = Arc::clone(ctx(&out[1]));
    // Within the grace period: both resolve, each to its own context.
    let out = run(
        &mut e,
        vec![
            fork(3 * SEC, bash, new),
            exec(3 * SEC + 1, new, bash.pid, "/usr/bin/new"),
            connect(3 * SEC + 2, new),
            connect(3 * SEC + 3, old),
        ],
    );
    assert_eq!(&*ctx(&out[2]).exe, "/usr/bin/new");
    assert!(!Arc::ptr_eq(ctx(&out[2]), &old_context));
    assert!(Arc::ptr_eq(ctx(&out[3]), &old_context), "a late event of the old process still resolves");
    // After it: the old process is unknown, the new one unaffected.
    let out = run(&mut e, vec![connect(2 * SEC + grace, old), connect(2 * SEC + grace + 1, new)]);
    assert_eq!(ctx(&out[0]).lineage, Lineage::ProcessUnknown);
    assert_eq!(&*ctx(&out[1]).exe, "/usr/bin/new");

    // A missed exit and a missed fork: the new holder of the pid retires the
    // old one, and an exec found by ppid attaches to the live holder only.
    let (a, b, child) = (key(77, SEC), key(77, 90 * SEC), key(78, 91 * SEC));
    run(&mut e, vec![fork(60 * SEC, bash, a), exec(60 * SEC + 1, a, bash.pid, "/usr/bin/a")]);
    run(&mut e, vec![fork(90 * SEC, bash, b), exec(90 * SEC + 1, b, bash.pid, "/usr/bin/b")]);
    assert_eq!(e.table.live_key(77), Some(b));
    assert!(e.table.entry(&a).and_then(|entry| entry.exited_at_ns).is_some(), "the old holder is marked exited");
    let out = run(&mut e, vec![exec(91 * SEC, child, 77, "/usr/bin/c")]);
    assert_eq!(ctx(&out[0]).ancestry[0].process, b);
    assert_eq!(&*ctx(&out[0]).ancestry[0].exe, "/usr/bin/b");
}

#[test]
fn the_bound_holds_under_churn_and_evictions_are_counted() {
    const CAPACITY: u32 = 1_000;
    const CHILDREN: u64 = 50_000; // four events each: 200 k events
    let mut e = Enrich::new(settings(CAPACITY, 10_000, 32), "churn");
    let (init, bash) = (key(1, 0), key(100, 1));
    run(
        &mut e,
        vec![
            snapshot(1, init, key(0, 0), "/sbin/init", &["init"], "/init.scope"),
            snapshot(2, bash, init, "/usr/bin/bash", &["bash"], HOST_CGROUP),
        ],
    );
    let mut batch = Vec::with_capacity(1_000);
    let mut max_len = 0;
    for i in 0..CHILDREN {
        let ts = 10 + i * 1_000;
        // Pids wrap as on a real host: reuse with a new start time.
        let child = key(200 + (i % 30_000) as u32, ts);
        batch.push(fork(ts, bash, child));
        batch.push(exec(ts + 1, child, bash.pid, "/usr/bin/true"));
        batch.push(connect(ts + 2, child));
        // Two in three exit; the rest stay live (long-running children).
        if i % 3 != 0 {
            batch.push(exit(ts + 3, child));
        }
        if batch.len() >= 1_000 {
            let out = run(&mut e, std::mem::take(&mut batch));
            for event in &out {
                if let Event::NetConnect(connect) = event {
                    assert_eq!(connect.context.as_ref().map(|c| c.lineage), Some(Lineage::Complete));
                }
            }
            assert!(e.len() <= CAPACITY as usize);
            max_len = max_len.max(e.len());
        }
    }
    run(&mut e, batch);
    let evictions = e.evictions();
    assert!(max_len > CAPACITY as usize * 9 / 10, "the table filled up: {max_len}");
    assert!(evictions.capacity > 0 && evictions.exited_grace > 0, "{evictions:?}");
    assert_eq!(evictions.total(), 2 + CHILDREN - e.len() as u64, "every insert is held or was evicted once");
    assert!(e.context_of(&init).is_some() && e.context_of(&bash).is_some(), "busy ancestors stay warm");
    assert_eq!(e.lineage_missing(MissingReason::ParentUnknown) + e.lineage_missing(MissingReason::ProcessUnknown), 0);
}

#[test]
fn a_late_hash_updates_the_context_of_later_events() {
    let (mut e, [_, _, bash]) = seeded();
    let p = key(3000, SEC);
    let pending = Some(attributes(HOST_CGROUP, HashState::Pending));
    let out = run(
        &mut e,
        vec![
            fork(SEC, bash, p),
            exec_with(SEC + 1, p, bash.pid, "/usr/bin/curl", &["curl"], pending),
            connect(SEC + 2, p),
            exe_hash(SEC + 3, p, "/usr/bin/other", "ff", HashState::Ok),
            exe_hash(SEC + 4, p, "/usr/bin/curl", "abc123", HashState::Ok),
            connect(SEC + 5, p),
        ],
    );
    let before = ctx(&out[2]);
    assert_eq!((before.exe_hash, &*before.exe_sha256), (HashState::Pending, ""));
    assert!(Arc::ptr_eq(ctx(&out[3]), before), "a hash of another file is not applied");
    let after = ctx(&out[5]);
    assert!(Arc::ptr_eq(after, ctx(&out[4])), "the hash event carries the new context");
    assert!(!Arc::ptr_eq(after, before), "a new Arc, the old one untouched");
    assert_eq!((after.exe_hash, &*after.exe_sha256), (HashState::Ok, "abc123"));
    assert_eq!((before.exe_hash, &*before.exe_sha256), (HashState::Pending, ""), "events already out keep theirs");
    assert_eq!(after.ancestry, before.ancestry);
    assert_eq!(ctx(&out[1]).exe_hash, HashState::Pending);
}

#[test]
fn one_arc_is_shared_by_every_event_of_a_process() {
    let (mut e, [_, _, bash]) = seeded();
    let p = key(3100, SEC);
    let child = key(3101, 2 * SEC);
    let out = run(
        &mut e,
        vec![
            fork(SEC, bash, p),
            exec(SEC + 1, p, bash.pid, "/usr/bin/python3"),
            connect(SEC + 2, p),
            file_open(SEC + 3, p),
            fork(SEC + 4, p, child),
            exit(SEC + 5, p),
        ],
    );
    let first = ctx(&out[1]);
    for event in &out[2..] {
        assert!(Arc::ptr_eq(ctx(event), first), "{:?}", event.kind());
    }
    assert!(Arc::ptr_eq(ctx(&out[0]), e.context_of(&bash).expect("bash")), "the fork is the parent's event");
    // After the exec the context was replaced, not mutated: the fork's copy differs.
    let forked = e.context_of(&child).expect("child");
    assert_eq!((forked.origin, &*forked.exe), (ContextOrigin::Fork, "/usr/bin/python3"));
}

#[test]
fn an_exec_never_changes_a_context_an_event_carries() {
    let (mut e, [_, _, bash]) = seeded();
    let (shared, unshared) = (key(3300, SEC), key(3301, SEC));
    let out = run(
        &mut e,
        vec![
            fork(SEC, bash, shared),
            connect(SEC + 1, shared),
            exec(SEC + 2, shared, bash.pid, "/usr/bin/nc"),
            fork(SEC + 3, bash, unshared),
            exec(SEC + 4, unshared, bash.pid, "/usr/bin/id"),
        ],
    );
    let before_exec = ctx(&out[1]);
    assert_eq!((before_exec.origin, ancestor_pids(before_exec)), (ContextOrigin::Fork, vec![600, 500, 1]));
    for exec in [&out[2], &out[4]] {
        assert_eq!((ctx(exec).lineage, ancestor_pids(ctx(exec))), (Lineage::Complete, vec![600, 500, 1]));
    }
}

#[test]
fn exits_resolve_for_the_grace_period_measured_in_event_time() {
    let grace = 5 * SEC;
    let (mut e, [_, _, bash]) = seeded_with(settings(100, grace, 32));
    let p = key(3200, SEC);
    run(&mut e, vec![fork(SEC, bash, p), exit(2 * SEC, p)]);
    let out = run(&mut e, vec![connect(2 * SEC + grace - 1, p)]);
    assert_eq!(ctx(&out[0]).lineage, Lineage::Complete, "just inside the grace period");
    // The tick has no time of its own: it expires against the latest event.
    e.on_tick(&mut Output::default());
    assert!(e.context_of(&p).is_some());
    run(&mut e, vec![connect(2 * SEC + grace, bash)]);
    assert!(e.context_of(&p).is_none(), "expired exactly at the grace period");
    assert_eq!(e.evictions().exited_grace, 1);
}

#[test]
fn an_exec_without_kernel_attributes_does_not_pretend() {
    let (mut e, [_, _, bash]) = seeded();
    let (known_parent, orphan, root) = (key(5000, SEC), key(5001, SEC), key(5002, SEC));
    let out = run(
        &mut e,
        vec![
            exec_with(SEC, known_parent, bash.pid, "/usr/bin/env", &["env"], None),
            exec_with(SEC + 1, orphan, 9999, "/usr/bin/lost", &["lost"], None),
            exec_with(SEC + 2, root, 0, "/sbin/init", &["init"], None),
        ],
    );
    let context = ctx(&out[0]);
    assert_eq!((context.origin, context.lineage), (ContextOrigin::Exec, Lineage::Complete));
    assert_eq!(ancestor_pids(context), [600, 500, 1], "the missed fork's parent is found by ppid");
    assert_eq!((context.uid, context.euid, context.loginuid, context.session_id), (1000, u32::MAX, u32::MAX, u32::MAX));
    for text in [&context.user, &context.cwd, &context.tty, &context.cgroup_path, &context.exe_sha256] {
        assert_eq!(&**text, "");
    }
    assert_eq!(&*context.container_runtime, "", "no cgroup path: not known to be on the host");
    assert_eq!(context.exe_hash, HashState::NotRequested);
    assert_eq!((ctx(&out[1]).lineage, ctx(&out[1]).ancestry.len()), (Lineage::ParentUnknown, 0));
    assert_eq!(e.lineage_missing(MissingReason::ParentUnknown), 1);
    assert_eq!(e.table.entry(&orphan).and_then(|entry| entry.parent).map(|p| p.pid), Some(9999));
    assert_eq!(e.table.ancestry(&orphan, 32).end.as_str(), "parent_unknown", "the table agrees");
    assert_eq!(ctx(&out[2]).lineage, Lineage::Complete, "ppid 0: a root");
}

#[test]
fn containers_come_from_the_cgroup_path_and_are_shared() {
    let (mut e, [_, _, bash]) = seeded();
    let docker = format!("/system.slice/docker-{DOCKER_ID}.scope");
    let pod = format!("/kubepods/besteffort/pod8a1b2c3d-4e5f-6789-abcd-ef0123456789/{DOCKER_ID}");
    let (a, b, c) = (key(6000, SEC), key(6001, SEC), key(6002, SEC));
    let out = run(
        &mut e,
        vec![
            exec_with(SEC, a, bash.pid, "/app", &["app"], Some(attributes(&docker, HashState::NotRequested))),
            exec_with(SEC, b, bash.pid, "/app", &["app"], Some(attributes(&docker, HashState::NotRequested))),
            exec_with(SEC, c, bash.pid, "/pause", &["pause"], Some(attributes(&pod, HashState::NotRequested))),
        ],
    );
    let (ca, cb, cc) = (ctx(&out[0]), ctx(&out[1]), ctx(&out[2]));
    assert_eq!((&*ca.container_runtime, &*ca.container_id, &*ca.pod_uid), ("docker", DOCKER_ID, ""));
    assert!(Arc::ptr_eq(&ca.container_id, &cb.container_id), "parsed once per cgroup");
    assert_eq!((&*cc.container_runtime, &*cc.pod_uid), ("cri", "8a1b2c3d-4e5f-6789-abcd-ef0123456789"));
    assert_eq!(&*e.context_of(&bash).expect("bash").container_runtime, "host");
}

#[test]
fn depth_limits_and_cycles_are_marked() {
    let mut e = Enrich::new(settings(100, SEC, 3), "depth");
    let mut events = vec![snapshot(1, key(1, 0), key(0, 0), "/sbin/init", &["init"], "/")];
    for pid in 2..=6 {
        events.push(snapshot(pid.into(), key(pid, 0), key(pid - 1, 0), "/bin/sh", &["sh"], "/"));
    }
    let out = run(&mut e, events);
    assert_eq!((ctx(&out[3]).lineage, ancestor_pids(ctx(&out[3]))), (Lineage::Complete, vec![3, 2, 1]));
    assert_eq!((ctx(&out[5]).lineage, ancestor_pids(ctx(&out[5]))), (Lineage::DepthLimit, vec![5, 4, 3]));
    assert_eq!(MissingReason::of(Lineage::DepthLimit), None, "a chosen bound is not a miss");

    // A pid reused within one start-time tick by a descendant: the new
    // process's key is in its parent's ancestry.
    let mut e = enrich();
    let (p, x) = (key(10, 5), key(11, 5));
    run(&mut e, vec![snapshot(1, p, key(0, 0), "/p", &["p"], "/"), snapshot(2, x, p, "/x", &["x"], "/")]);
    run(&mut e, vec![exit(3, p), connect(SEC * 100, x)]);
    let out = run(&mut e, vec![exec(SEC * 100 + 1, p, x.pid, "/again")]);
    assert_eq!((ctx(&out[0]).lineage, ancestor_pids(ctx(&out[0]))), (Lineage::Cycle, vec![11]));
    let out = run(&mut e, vec![snapshot(SEC * 101, key(12, 5), key(12, 5), "/self", &["s"], "/")]);
    assert_eq!(ctx(&out[0]).lineage, Lineage::Cycle, "its own parent");
    assert_eq!(e.lineage_missing(MissingReason::Cycle), 2);
}

/// Counters and gauges by `name{labels}`, for checking what is exported.
#[derive(Default)]
struct Recorder {
    values: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl Recorder {
    fn handle(&self, key: &metrics::Key) -> Arc<AtomicU64> {
        let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let mut values = self.values.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(values.entry(name).or_default())
    }

    fn get(&self, name: &str) -> u64 {
        let values = self.values.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        values.get(name).map_or(u64::MAX, |v| v.load(Ordering::Relaxed))
    }
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.handle(key))
    }

    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.handle(key))
    }

    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[test]
fn metrics_are_labelled_by_component_and_reason() {
    let recorder = Recorder::default();
    let mut e = metrics::with_local_recorder(&recorder, || Enrich::new(settings(2, SEC, 32), "enr"));
    let (a, b, c) = (key(1, 0), key(2, 0), key(3, 0));
    run(
        &mut e,
        vec![
            snapshot(1, a, key(0, 0), "/a", &["a"], "/"),
            snapshot(2, b, a, "/b", &["b"], "/"),
            exit(3, b),
            snapshot(4, c, key(9, 9), "/c", &["c"], "/"),
            connect(5, key(4, 0)),
        ],
    );
    e.on_tick(&mut Output::default());
    let missing = |reason: &str| recorder.get(&format!("{LINEAGE_MISSING_TOTAL}{{component=enr,reason={reason}}}"));
    assert_eq!((missing("process_unknown"), missing("parent_unknown"), missing("cycle")), (1, 1, 0));
    assert_eq!(recorder.get(&format!("{EVICTIONS_TOTAL}{{component=enr,reason=capacity}}")), 1);
    assert_eq!(recorder.get(&format!("{EVICTIONS_TOTAL}{{component=enr,reason=exited_grace}}")), 0);
    assert_eq!(f64::from_bits(recorder.get(&format!("{TABLE_ENTRIES}{{component=enr}}"))), 2.0);
    run(&mut e, vec![connect(10 * SEC, c)]);
    assert_eq!(recorder.get(&format!("{EVICTIONS_TOTAL}{{component=enr,reason=exited_grace}}")), 1);
    assert_eq!(f64::from_bits(recorder.get(&format!("{TABLE_ENTRIES}{{component=enr}}"))), 1.0);
}

fn options(table: &str) -> ComponentOptions {
    let text =
        format!("[sources.g]\ntype = \"generator\"\n[transforms.e]\ntype = \"enrich\"\ninputs = [\"g\"]\n{table}\n");
    let config = TopologyConfig::parse(SourceFile::new("t.toml", text)).expect("valid TOML");
    config.components.into_iter().find(|c| c.name == "e").expect("enrich declared").options
}

fn settings_of(table: &str) -> Result<EnrichSettings, Vec<String>> {
    let options = options(table);
    let config: EnrichConfig = options.deserialize().map_err(|e| vec![e.to_string()])?;
    EnrichSettings::from_config(&config, &options).map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

#[test]
fn config_defaults_and_located_errors() {
    assert_eq!(settings_of(""), Ok(EnrichSettings::default()));
    assert_eq!(
        settings_of("capacity = 10\nexited_grace_secs = 0.25\nancestry_depth = 8"),
        Ok(settings(10, 250_000_000, 8))
    );
    let errors = settings_of("capacity = 0").expect_err("zero capacity");
    assert!(errors[0].starts_with("t.toml:6:12: error: transform `e`: capacity = 0"), "{}", errors[0]);
    assert!(errors[0].contains("help: set it above"), "{}", errors[0]);
    let errors = settings_of("capacity = -1\nexited_grace_secs = -2\nancestry_depth = 0").expect_err("three problems");
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with("t.toml:6:12:") && errors[0].contains("between 1 and"), "{}", errors[0]);
    assert!(errors[1].starts_with("t.toml:7:21:") && errors[1].contains("exited_grace_secs"), "{}", errors[1]);
    assert!(errors[2].starts_with("t.toml:8:18:") && errors[2].contains("ancestry_depth"), "{}", errors[2]);
    let errors = settings_of("ancestry_depth = 257").expect_err("too deep");
    assert!(errors[0].contains("between 1 and 256 ancestors, got 257"), "{}", errors[0]);
    let errors = settings_of("capacty = 10").expect_err("typo");
    assert!(errors[0].starts_with("t.toml:6:1: error: transform `e`: unknown field `capacty`"), "{}", errors[0]);
    assert!(errors[0].contains("did you mean `capacity`?"), "{}", errors[0]);
    assert!(build(&options("capacity = 0")).is_err());
    assert!(build(&options("")).is_ok());
}
