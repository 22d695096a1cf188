//! Tests of the L4 engine: chains over a lineage, siblings, other
//! lineages, exec reset, exit pruning, windows, reorder, caps and churn.

use std::sync::Arc;

use pipeline::event::{Ancestor, Argv, ContextOrigin, Lineage, NetConnect, ProcessContext, ProcessExec, ProcessExit};
use pipeline::event::{ProcessFork, Protocol};
use pipeline::{Event, EventMeta, ProcessKey};

use super::*;

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// Stage conditions of the test chain: service, shell, download, run.
const SERVICE: MatchId = MatchId(0);
const SHELL: MatchId = MatchId(1);
const DOWNLOAD: MatchId = MatchId(2);
const RUN: MatchId = MatchId(3);
const INIT: ProcessKey = ProcessKey { pid: 1, start_time_ns: 0 };

fn key(pid: u32) -> ProcessKey {
    ProcessKey { pid, start_time_ns: u64::from(pid) * 10 }
}

/// A context whose ancestry is `ancestry` (parent first) then init.
fn ctx(exe: &str, ancestry: &[ProcessKey]) -> Arc<ProcessContext> {
    let mut chain: Vec<Ancestor> =
        ancestry.iter().map(|&process| Ancestor { process, exe: "".into(), args: "".into() }).collect();
    chain.push(Ancestor { process: INIT, exe: "/sbin/init".into(), args: "".into() });
    Arc::new(ProcessContext {
        exe: exe.into(),
        ancestry: chain,
        lineage: Lineage::Complete,
        origin: ContextOrigin::Exec,
        ..ProcessContext::unknown()
    })
}

fn exec(ts_ns: u64, event_id: u64, process: ProcessKey, context: Option<Arc<ProcessContext>>) -> Event {
    Event::ProcessExec(ProcessExec {
        meta: EventMeta { ts_ns, event_id },
        process,
        ppid: 0,
        uid: 0,
        gid: 0,
        cgroup_id: 0,
        comm: "x".into(),
        exe: context.as_deref().map_or_else(|| "/x".into(), |c| c.exe.clone()),
        argv: Argv::from_args(["x"]),
        argv_truncated: false,
        attributes: None,
        context,
    })
}

fn connect(ts_ns: u64, event_id: u64, process: ProcessKey, context: Option<Arc<ProcessContext>>) -> Event {
    Event::NetConnect(NetConnect {
        meta: EventMeta { ts_ns, event_id },
        process,
        protocol: Protocol::Tcp,
        dst_addr: [127, 0, 0, 1].into(),
        dst_port: 8000,
        result: Some(0),
        context,
    })
}

fn fork(ts_ns: u64, event_id: u64, parent: ProcessKey, child: ProcessKey) -> Event {
    Event::ProcessFork(ProcessFork { meta: EventMeta { ts_ns, event_id }, parent, child, context: None })
}

fn exit(ts_ns: u64, event_id: u64, process: ProcessKey) -> Event {
    Event::ProcessExit(ProcessExit {
        meta: EventMeta { ts_ns, event_id },
        process,
        exit_code: 0,
        cpu_ns: 0,
        context: None,
    })
}

fn chain(within_ns: u64) -> Vec<(usize, L4Spec, Vec<Arc<str>>)> {
    let names = ["service", "shell", "download", "run"].map(Arc::<str>::from).to_vec();
    vec![(3, L4Spec { stages: vec![SERVICE, SHELL, DOWNLOAD, RUN], within_ns }, names)]
}

type Input = Vec<(Event, Vec<MatchId>)>;

fn run_with(config: L4Config, rules: Vec<(usize, L4Spec, Vec<Arc<str>>)>, input: &Input) -> (Vec<Firing>, L4Stats) {
    let mut engine = L4Engine::new(rules, config);
    let mut out = Vec::new();
    for (event, hits) in input {
        engine.push(event, hits, &mut out);
    }
    engine.flush(u64::MAX, &mut out);
    (out, engine.stats())
}

fn fired(input: &Input) -> Vec<Vec<u64>> {
    run_with(L4Config::default(), chain(60 * S), input).0.into_iter().map(|f| f.event_ids).collect()
}

/// nginx (10) accepts; its child 11 execs a shell; the shell's child 12
/// downloads; the shell's next child 13 runs the download.
fn attack() -> Input {
    let (nginx, sh, curl, payload) = (key(10), key(11), key(12), key(13));
    vec![
        (connect(S, 1, nginx, Some(ctx("/usr/sbin/nginx", &[]))), vec![SERVICE]),
        (exec(2 * S, 2, sh, Some(ctx("/bin/sh", &[nginx]))), vec![SHELL]),
        (connect(3 * S, 3, curl, Some(ctx("/usr/bin/curl", &[sh, nginx]))), vec![DOWNLOAD]),
        (exec(4 * S, 4, payload, Some(ctx("/tmp/x", &[sh, nginx]))), vec![RUN]),
    ]
}

#[test]
fn a_chain_fires_once_over_one_lineage_with_every_stage_event() {
    let (firings, stats) = run_with(L4Config::default(), chain(60 * S), &attack());
    assert_eq!(firings.len(), 1, "{firings:?}");
    let f = &firings[0];
    assert_eq!((f.rule, f.process, f.ts_ns, f.event_kind), (3, key(13), 4 * S, EventKind::ProcessExec));
    assert_eq!(f.event_ids, vec![1, 2, 3, 4]);
    assert!(f.summary.starts_with("chain service → shell → download → run: exec /tmp/x"), "{}", f.summary);
    assert_eq!((stats.anchors, stats.chains, stats.held), (0, 0, 0), "the fired chain is gone");
}

#[test]
fn stages_in_another_lineage_or_out_of_order_do_not_advance() {
    let (nginx, other) = (key(10), key(50));
    // The shell and the download happen under another service.
    let input: Input = vec![
        (connect(S, 1, nginx, Some(ctx("/usr/sbin/nginx", &[]))), vec![SERVICE]),
        (exec(2 * S, 2, key(51), Some(ctx("/bin/sh", &[other]))), vec![SHELL]),
        (connect(3 * S, 3, key(52), Some(ctx("/usr/bin/curl", &[key(51), other]))), vec![DOWNLOAD]),
        (exec(4 * S, 4, key(53), Some(ctx("/tmp/x", &[key(51), other]))), vec![RUN]),
    ];
    assert!(fired(&input).is_empty());
    // Download before the shell: stage 2 cannot follow stage 0.
    let mut swapped = attack();
    swapped[2].0 = connect(1500 * MS, 3, key(12), Some(ctx("/usr/bin/curl", &[key(11), key(10)])));
    swapped[1].0 = exec(2 * S, 2, key(11), Some(ctx("/bin/sh", &[key(10)])));
    // The download now precedes the shell's exec in time; the run still
    // follows, but stage 2 was never reached.
    assert!(fired(&swapped).is_empty(), "{:?}", fired(&swapped));
}

#[test]
fn the_window_bounds_the_chain_from_its_first_stage() {
    let input = attack();
    // The run is exactly 3 s after the service stage.
    let (firings, _) = run_with(L4Config::default(), chain(3 * S - 1), &input);
    assert!(firings.is_empty(), "{firings:?}");
    let (firings, _) = run_with(L4Config::default(), chain(3 * S), &input);
    assert_eq!(firings.len(), 1);
}

#[test]
fn an_exec_of_the_anchor_resets_its_chains() {
    let mut input = attack();
    // nginx itself execs into something else before the shell appears.
    input.insert(1, (exec(1500 * MS, 9, key(10), Some(ctx("/usr/bin/other", &[]))), vec![]));
    let (firings, stats) = run_with(L4Config::default(), chain(60 * S), &input);
    assert!(firings.is_empty(), "{firings:?}");
    assert_eq!(stats.drops()[1], ("exec", 1));
}

#[test]
fn without_contexts_fork_edges_give_the_lineage() {
    let (nginx, sh, curl, payload) = (key(10), key(11), key(12), key(13));
    let input: Input = vec![
        (connect(S, 1, nginx, None), vec![SERVICE]),
        (fork(S + 1, 100, nginx, sh), vec![]),
        (exec(2 * S, 2, sh, None), vec![SHELL]),
        (fork(2 * S + 1, 101, sh, curl), vec![]),
        (connect(3 * S, 3, curl, None), vec![DOWNLOAD]),
        (fork(3 * S + 1, 102, sh, payload), vec![]),
        (exec(4 * S, 4, payload, None), vec![RUN]),
    ];
    assert_eq!(fired(&input), vec![vec![1, 2, 3, 4]]);
}

#[test]
fn an_exited_anchor_is_pruned_after_the_grace_period() {
    let config = L4Config { exit_grace_ns: 5 * S, ..L4Config::default() };
    let mut late = attack();
    late.insert(2, (exit(2 * S + 1, 20, key(10)), vec![]));
    // Within the grace: the chain still completes.
    let (firings, _) = run_with(config, chain(60 * S), &late);
    assert_eq!(firings.len(), 1);
    // After the grace: the anchor is gone before the download.
    let mut later = late;
    later[3].0 = connect(10 * S, 3, key(12), Some(ctx("/usr/bin/curl", &[key(11), key(10)])));
    later[4].0 = exec(11 * S, 4, key(13), Some(ctx("/tmp/x", &[key(11), key(10)])));
    let (firings, stats) = run_with(config, chain(60 * S), &later);
    assert!(firings.is_empty(), "{firings:?}");
    assert_eq!(stats.drops()[2], ("exit", 1));
    assert_eq!((stats.anchors, stats.chains), (0, 0));
}

#[test]
fn shuffled_within_the_reorder_window_gives_the_same_firings() {
    let config = L4Config { reorder_ns: 5 * S, ..L4Config::default() };
    let mut input = attack();
    let expected = run_with(config, chain(60 * S), &input).0;
    assert_eq!(expected.len(), 1);
    input.reverse();
    let (firings, stats) = run_with(config, chain(60 * S), &input);
    assert_eq!(firings, expected);
    assert_eq!(stats.late, 0);
    // With a window too short for that shuffle, the late events are counted.
    let short = L4Config { reorder_ns: 500 * MS, ..L4Config::default() };
    let (firings, stats) = run_with(short, chain(60 * S), &input);
    assert!(firings.is_empty());
    assert_eq!(stats.late, 3);
}

#[test]
fn anchors_are_capped_oldest_first_and_churn_stays_bounded() {
    let config = L4Config { max_anchors: 100, max_parents: 1_000, ..L4Config::default() };
    let mut engine = L4Engine::new(chain(3_600 * S), config);
    let mut out = Vec::new();
    let mut id = 0;
    for i in 0..100_000u32 {
        let p = ProcessKey { pid: 1_000 + i % 30_000, start_time_ns: u64::from(i) };
        let ts = u64::from(i) * MS;
        id += 1;
        engine.push(&fork(ts, id, INIT, p), &[], &mut out);
        id += 1;
        engine.push(&connect(ts, id, p, None), &[SERVICE], &mut out);
        if i % 7 == 0 {
            id += 1;
            engine.push(&exit(ts, id, p), &[], &mut out);
        }
        let stats = engine.stats();
        assert!(stats.anchors <= 100 && stats.parents <= 1_000, "{stats:?}");
    }
    engine.flush(u64::MAX, &mut out);
    let stats = engine.stats();
    assert!(out.is_empty());
    let dropped: u64 = stats.by_reason.iter().sum();
    assert_eq!(dropped + stats.chains as u64, 100_000, "every started chain is held or counted: {stats:?}");
    assert!(stats.by_reason[ChainDrop::Cap as usize] > 90_000, "{stats:?}");
}
