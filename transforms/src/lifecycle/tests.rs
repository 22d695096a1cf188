//! Tests of the `lifecycle` transform: exact folding, the window boundary,
//! PID reuse, the name and tracking limits, pass-through both ways, flushes,
//! determinism, located config errors, and a brute-force property check.

use pipeline::event::Argv;
use pipeline::{SourceFile, TopologyConfig};

use super::*;

const SEC: u64 = 1_000_000_000;

fn options(table: &str) -> ComponentOptions {
    let text =
        format!("[sources.g]\ntype = \"generator\"\n[transforms.l]\ntype = \"lifecycle\"\ninputs = [\"g\"]\n{table}\n");
    let config = TopologyConfig::parse(SourceFile::new("t.toml", text)).expect("valid TOML");
    config.components.into_iter().find(|c| c.name == "l").expect("lifecycle declared").options
}

fn build_lifecycle(table: &str) -> Result<Lifecycle, Vec<ConfigError>> {
    let options = options(table);
    let config: LifecycleConfig = options.deserialize().map_err(|e| vec![e])?;
    Lifecycle::new(config, &options)
}

fn lifecycle(table: &str) -> Lifecycle {
    build_lifecycle(table).expect("builds")
}

fn key(pid: u32, start_time_ns: u64) -> ProcessKey {
    ProcessKey { pid, start_time_ns }
}

fn exec(ts_ns: u64, process: ProcessKey, comm: &str) -> Event {
    Event::ProcessExec(ProcessExec {
        context: None,
        meta: EventMeta { ts_ns, event_id: ts_ns },
        process,
        ppid: 1,
        uid: 0,
        gid: 0,
        cgroup_id: 0,
        comm: Arc::from(comm),
        exe: Arc::from(format!("/usr/bin/{}", if comm.is_empty() { "unnamed" } else { comm })),
        argv: Argv::from_args([comm]),
        argv_truncated: false,
        attributes: None,
    })
}

fn exit(ts_ns: u64, process: ProcessKey, cpu_ns: u64) -> Event {
    Event::ProcessExit(ProcessExit {
        context: None,
        meta: EventMeta { ts_ns, event_id: ts_ns + 1 },
        process,
        exit_code: 0,
        cpu_ns,
    })
}

/// Feeds each batch (then a tick after every batch when `tick`), then
/// flushes; returns everything that came out.
fn run(transform: &mut Lifecycle, batches: Vec<Batch>, tick: bool) -> Vec<Event> {
    let mut out = Output::with_event_id_prefix(5 << 48);
    let mut events = Vec::new();
    for batch in batches {
        transform.process(batch, &mut out);
        if tick {
            transform.on_tick(&mut out);
        }
        events.extend(out.take_events());
    }
    transform.flush(&mut out);
    events.extend(out.take_events());
    events
}

/// The rows among `events` as (name, count, cpu_ns, window start, window end).
fn rows(events: &[Event]) -> Vec<(String, u64, u64, u64, u64)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::ProcessEphemeral(row) => {
                assert_eq!(row.meta.ts_ns, row.window_end_ns, "ts_ns is the window's end");
                Some((row.name.to_string(), row.count, row.cpu_ns, row.window_start_ns, row.window_end_ns))
            }
            _ => None,
        })
        .collect()
}

fn row(name: &str, count: u64, cpu_ns: u64, start: u64, end: u64) -> (String, u64, u64, u64, u64) {
    (name.to_owned(), count, cpu_ns, start, end)
}

/// Every event that is not a row, as (kind, ts).
fn forwarded(events: &[Event]) -> Vec<(EventKindName, u64)> {
    events
        .iter()
        .filter(|e| !matches!(e, Event::ProcessEphemeral(_)))
        .map(|e| (e.kind().as_str(), e.meta().ts_ns))
        .collect()
}

type EventKindName = &'static str;

#[test]
fn folds_pairs_by_name_with_exact_counts_and_cpu() {
    let mut t = lifecycle("");
    let batch = vec![
        exec(10, key(1, 1), "true"),
        exec(11, key(2, 2), "curl"),
        exec(12, key(3, 3), "true"),
        exit(20, key(1, 1), 1_000),
        exit(21, key(3, 3), 2_500),
        exit(22, key(2, 2), 7),
        // comm is empty: the executable's basename names it.
        exec(30, key(4, 4), ""),
        exit(31, key(4, 4), 0),
    ];
    let events = run(&mut t, vec![batch], false);
    assert_eq!(rows(&events), [row("curl", 1, 7, 10, 31), row("true", 2, 3_500, 10, 31), row("unnamed", 1, 0, 10, 31)]);
    let ids: Vec<u64> = events
        .iter()
        .filter(|e| e.kind() == pipeline::EventKind::ProcessEphemeral)
        .map(|e| e.meta().event_id)
        .collect();
    assert_eq!(ids, [5 << 48, (5 << 48) | 1, (5 << 48) | 2], "fresh ids in name order");
    assert_eq!((t.folded(), t.tracked(), t.evicted()), (4, 0, 0));
}

#[test]
fn the_window_boundary_folds_and_one_more_nanosecond_does_not() {
    let mut t = lifecycle("window_secs = 5");
    let batch = vec![
        exec(0, key(1, 0), "a"),
        exec(0, key(2, 0), "b"),
        exit(5 * SEC, key(1, 0), 1),
        exit(5 * SEC + 1, key(2, 0), 1),
    ];
    let events = run(&mut t, vec![batch], false);
    assert_eq!(rows(&events), [row("a", 1, 1, 0, 5 * SEC)]);
    assert_eq!(t.folded(), 1);
}

#[test]
fn exits_without_exec_and_reused_pids_are_not_matched() {
    let mut t = lifecycle("");
    let batch = vec![
        exit(1, key(9, 9), 5),
        // pid 7 started at 100 execs; a later pid 7 (started at 200) exits.
        exec(150, key(7, 100), "old"),
        exit(250, key(7, 200), 5),
    ];
    let events = run(&mut t, vec![batch], false);
    assert_eq!(rows(&events), []);
    assert_eq!(forwarded(&events).len(), 3, "all passed through");
    assert_eq!(t.tracked(), 0, "flush forgets what is left");
}

#[test]
fn old_execs_are_forgotten_once_the_stream_moves_past_the_window() {
    let mut t = lifecycle("window_secs = 1");
    let mut out = Output::default();
    t.process(vec![exec(0, key(1, 0), "long")], &mut out);
    t.process(vec![exec(SEC / 2, key(2, 0), "x")], &mut out);
    assert_eq!(t.tracked(), 2);
    // Another process's event, 2 s later: the first exec is long-lived.
    t.process(vec![exit(2 * SEC, key(3, 0), 0)], &mut out);
    assert_eq!(t.tracked(), 0);
    // Its exit then matches nothing.
    t.process(vec![exit(2 * SEC + 1, key(1, 0), 0)], &mut out);
    t.flush(&mut out);
    assert_eq!(rows(&out.take_events()), []);
}

#[test]
fn a_process_that_execs_again_is_tracked_from_its_latest_exec() {
    let mut t = lifecycle("window_secs = 5");
    let batch = vec![exec(0, key(1, 0), "sh"), exec(4 * SEC, key(1, 0), "sleep"), exit(8 * SEC, key(1, 0), 3)];
    assert_eq!(rows(&run(&mut t, vec![batch], false)), [row("sleep", 1, 3, 4 * SEC, 8 * SEC)]);
}

#[test]
fn names_beyond_max_names_share_the_other_row() {
    let mut t = lifecycle("max_names = 2");
    let mut batch = Vec::new();
    for (pid, name) in [(1, "d"), (2, "c"), (3, "d"), (4, "b"), (5, "a"), (6, "(other)")] {
        batch.push(exec(u64::from(pid), key(pid, 0), name));
        batch.push(exit(10 + u64::from(pid), key(pid, 0), u64::from(pid)));
    }
    let events = run(&mut t, vec![batch], false);
    assert_eq!(rows(&events), [row("c", 1, 2, 1, 16), row("d", 2, 4, 1, 16), row("(other)", 3, 15, 1, 16)]);
    assert_eq!(t.folded_into_other(), 3);
}

#[test]
fn beyond_max_tracked_the_oldest_exec_is_evicted_and_counted() {
    let mut t = lifecycle("max_tracked = 2");
    let batch = vec![
        exec(3, key(1, 0), "a"),
        exec(1, key(2, 0), "b"),
        exec(2, key(3, 0), "c"),
        exec(4, key(4, 0), "d"),
        exit(5, key(1, 0), 0),
        exit(5, key(2, 0), 0),
        exit(5, key(3, 0), 0),
        exit(5, key(4, 0), 0),
    ];
    let events = run(&mut t, vec![batch], false);
    // b (ts 1) went first, then c (ts 2): a and d remain to be matched.
    assert_eq!(rows(&events).iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["a", "d"]);
    assert_eq!(t.evicted(), 2);
}

#[test]
fn pass_through_forwards_everything_and_adds_rows() {
    let mut t = lifecycle("");
    let other = Event::ProcessFork(pipeline::event::ProcessFork {
        context: None,
        meta: EventMeta { ts_ns: 2, event_id: 99 },
        parent: key(1, 0),
        child: key(2, 2),
    });
    let input = vec![exec(1, key(2, 2), "true"), other, exit(3, key(2, 2), 1)];
    let events = run(&mut t, vec![input.clone()], false);
    assert_eq!(events[..3], input[..], "input unchanged, in order");
    assert_eq!(rows(&events[3..]), [row("true", 1, 1, 1, 3)]);
}

#[test]
fn without_pass_through_folded_pairs_are_consumed_and_the_rest_forwarded() {
    let mut t = lifecycle("pass_through = false\nwindow_secs = 1");
    let batches = vec![
        vec![
            exec(0, key(1, 0), "short"),
            exec(0, key(2, 0), "slow"),
            exec(0, key(3, 0), "long"),
            exit(SEC / 2, key(4, 4), 0),
            exit(SEC / 2, key(1, 0), 10),
        ],
        // slow exits after the window: its exec comes out, then its exit.
        vec![exit(SEC + 1, key(2, 0), 10)],
        // (That moved the stream past long's window: its exec came out
        // after that batch.)
        vec![exec(3 * SEC, key(5, 0), "late")],
    ];
    let events = run(&mut t, batches, false);
    assert_eq!(
        forwarded(&events),
        [
            ("process_exit", SEC / 2),
            ("process_exec", 0),
            ("process_exit", SEC + 1),
            ("process_exec", 0),
            // Still held at shutdown: forwarded by the flush, before the rows.
            ("process_exec", 3 * SEC),
        ]
    );
    let Some(Event::ProcessExec(long)) = events.get(3) else { panic!("{events:?}") };
    assert_eq!(&*long.comm, "long");
    assert_eq!(rows(&events), [row("short", 1, 10, 0, SEC / 2)]);
    assert!(matches!(events.last(), Some(Event::ProcessEphemeral(_))), "rows last");
}

#[test]
fn each_tick_emits_its_interval_and_flush_emits_the_pending_one() {
    let mut t = lifecycle("");
    let batches = vec![
        vec![exec(1, key(1, 0), "a"), exit(2, key(1, 0), 1)],
        vec![],
        vec![exec(3, key(2, 0), "a"), exit(4, key(2, 0), 1), exec(5, key(3, 0), "b")],
    ];
    let events = run(&mut t, batches, true);
    assert_eq!(rows(&events), [row("a", 1, 1, 1, 2), row("a", 1, 1, 3, 4)], "an empty interval emits nothing");
    let mut t = lifecycle("");
    let mut out = Output::default();
    t.process(vec![exec(1, key(1, 0), "a"), exit(2, key(1, 0), 1)], &mut out);
    assert_eq!(rows(&out.take_events()), [], "nothing before a tick");
    t.flush(&mut out);
    assert_eq!(rows(&out.take_events()), [row("a", 1, 1, 1, 2)], "shutdown emits the pending interval");
    assert_eq!(t.tick_interval(), Some(Duration::from_secs(10)));
}

#[test]
fn the_same_input_gives_the_same_output() {
    let input: Vec<Batch> = (0..20u32)
        .map(|i| {
            let name = ["x", "y", "z"][(i % 3) as usize];
            vec![exec(u64::from(i), key(i, 0), name), exit(u64::from(i) + 2, key(i.saturating_sub(1), 0), 5)]
        })
        .collect();
    let first = run(&mut lifecycle("max_names = 2"), input.clone(), true);
    let second = run(&mut lifecycle("max_names = 2"), input, true);
    assert_eq!(first, second);
    assert!(!rows(&first).is_empty());
}

/// Random exec/exit streams in time order (milliseconds): the counts add up
/// to exactly the pairs a brute force finds within the window, and the CPU
/// to their sum, whatever the batch sizes and ticks.
#[test]
fn counts_equal_the_brute_force_pairs_within_the_window() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut total_pairs, mut total_exits) = (0, 0);
    for round in 0..200 {
        let window = 1 + next() % 50;
        // (ts, is_exec, key, cpu): each process execs at most once, may exit
        // once (sometimes without an exec), pids are reused.
        let mut stream = Vec::new();
        for process in 0..(next() % 60) {
            let process_key = key((next() % 8) as u32, process);
            let exec_ts = next() % 200;
            let has_exec = next() % 5 != 0;
            if has_exec {
                stream.push((exec_ts, true, process_key, 0));
            }
            if next() % 4 != 0 {
                stream.push((exec_ts + next() % (2 * window + 2), false, process_key, next() % 1000));
            }
        }
        stream.sort_by_key(|&(ts, is_exec, _, _)| (ts, !is_exec));
        let (mut pairs, mut cpu) = (0u64, 0u64);
        for &(exit_ts, _, process_key, exit_cpu) in stream.iter().filter(|s| !s.1) {
            let matched =
                stream.iter().any(|&(ts, is_exec, k, _)| is_exec && k == process_key && exit_ts - ts <= window);
            if matched {
                pairs += 1;
                cpu += exit_cpu;
            }
        }
        let events: Vec<Event> = stream
            .iter()
            .map(|&(ts, is_exec, process_key, cpu)| {
                if is_exec {
                    exec(ts * 1_000_000, process_key, ["a", "b", "c"][(ts % 3) as usize])
                } else {
                    exit(ts * 1_000_000, process_key, cpu)
                }
            })
            .collect();
        let batch_size = 1 + (next() % 10) as usize;
        let batches: Vec<Batch> = events.chunks(batch_size).map(<[Event]>::to_vec).collect();
        let mut t = lifecycle(&format!("window_secs = {}", window as f64 / 1e3));
        let found = rows(&run(&mut t, batches, next() % 2 == 0));
        let counted: u64 = found.iter().map(|r| r.1).sum();
        let cpu_found: u64 = found.iter().map(|r| r.2).sum();
        assert_eq!((counted, cpu_found), (pairs, cpu), "round {round}, window {window}");
        total_pairs += pairs;
        total_exits += stream.iter().filter(|s| !s.1).count() as u64;
    }
    // Both outcomes are exercised: many pairs fold, many exits do not.
    assert!(total_pairs > 1_000 && total_exits > total_pairs + 1_000, "{total_pairs} of {total_exits}");
}

#[test]
fn bad_options_are_located_errors() {
    for (table, expected) in [
        ("window_secs = 0", "window_secs must be a number of seconds from 0.001 to 86400, got 0"),
        ("window_secs = -5", "window_secs must be a number of seconds"),
        ("window_secs = nan", "window_secs must be a number of seconds"),
        ("interval_secs = 0.0", "interval_secs must be a number of seconds from 0.001 to 86400, got 0"),
        ("interval_secs = 1e9", "interval_secs must be a number of seconds"),
        ("max_tracked = 0", "max_tracked must be between 1 and 10000000, got 0"),
        ("max_names = -1", "max_names must be between 1 and 1000000, got -1"),
        ("max_names = 1_000_001", "max_names must be between 1 and 1000000"),
    ] {
        let errors = build_lifecycle(table).expect_err(table);
        let message = errors[0].to_string();
        assert_eq!(errors.len(), 1, "{table}: {errors:?}");
        assert!(message.starts_with("t.toml:6:"), "{table}: located on its line: {message}");
        assert!(message.contains(expected), "{table}: {message}");
    }
    let errors = build_lifecycle("window_secs = 0\ninterval_secs = 0\nmax_tracked = 0\nmax_names = 0").expect_err("4");
    assert_eq!(errors.len(), 4, "every problem at once: {errors:?}");
    let typo = build_lifecycle("window = 5").expect_err("typo")[0].to_string();
    assert!(typo.starts_with("t.toml:6:1: error: transform `l`: unknown field `window`"), "{typo}");
    let wrong_type = build_lifecycle("pass_through = \"no\"").expect_err("type")[0].to_string();
    assert!(wrong_type.contains("invalid type"), "{wrong_type}");
    // The window_secs boundary values are accepted.
    assert!(build_lifecycle("window_secs = 0.001\ninterval_secs = 86400").is_ok());
}
