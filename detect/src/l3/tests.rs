//! Tests of L3: each pack rule fires on its scenario and stays silent on
//! its benign twin; suppression, frozen learning, warm-up, bounded state
//! under churn, and shuffles within the reorder window.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use pipeline::event::{Ancestor, FileOpen, Lineage, NetConnect, ProcessContext, ProcessExec, ProcessFork, Protocol};
use pipeline::{Event, EventMeta, ProcessKey};

use super::*;
use crate::rule::{Anomaly, Body};

pub(super) const SEC: u64 = 1_000_000_000;
/// Start of every stream: minute-aligned, far from 0.
pub(super) const T0: u64 = 600_000 * SEC;

/// The pack's L3 rules, as `(index, rule)` with their ids.
pub(super) fn pack() -> (Vec<(usize, Anomaly)>, Vec<String>) {
    let text = include_str!("../../../rules/linux/anomaly.yml");
    let loaded = crate::ruleset::load_texts(vec![(PathBuf::from("anomaly.yml"), Ok(text.as_bytes().to_vec()))]);
    let problems: Vec<String> = loaded.problems().map(ToString::to_string).collect();
    assert!(problems.is_empty(), "{problems:#?}");
    let set = loaded.set.expect("loads");
    let ids = set.rules.iter().map(|r| r.meta.id.to_string()).collect();
    let rules = set
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| if let Body::Anomaly(a) = &r.body { Some((i, a.clone())) } else { None })
        .collect();
    (rules, ids)
}

pub(super) fn ctx(exe: &str, parent: &str) -> Arc<ProcessContext> {
    Arc::new(ProcessContext {
        exe: exe.into(),
        ancestry: vec![Ancestor {
            process: ProcessKey { pid: 1, start_time_ns: 0 },
            exe: parent.into(),
            args: "".into(),
        }],
        lineage: Lineage::Complete,
        ..ProcessContext::unknown()
    })
}

/// Builds a stream of events, ids from 1, for one process at a time.
pub(super) struct Stream {
    pub events: Vec<Event>,
    pub context: Arc<ProcessContext>,
    pub pid: u32,
    seed: u64,
}

impl Stream {
    pub fn new(exe: &str, parent: &str) -> Stream {
        Stream { events: Vec::new(), context: ctx(exe, parent), pid: 4242, seed: 0x9e37_79b9_7f4a_7c15 }
    }

    /// A deterministic pseudo-random number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.seed = self.seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.seed >> 33) % n.max(1)
    }

    fn meta(&self, ts: u64) -> (EventMeta, ProcessKey) {
        let id = self.events.len() as u64 + 1;
        (EventMeta { ts_ns: ts, event_id: id }, ProcessKey { pid: self.pid, start_time_ns: 1 })
    }

    pub fn open(&mut self, ts: u64, path: &str) {
        let (meta, process) = self.meta(ts);
        let context = Some(self.context.clone());
        self.events.push(Event::FileOpen(FileOpen { meta, process, path: path.into(), flags: 0, context }));
    }

    pub fn connect(&mut self, ts: u64, port: u16) {
        let (meta, process) = self.meta(ts);
        self.events.push(Event::NetConnect(NetConnect {
            meta,
            process,
            protocol: Protocol::Tcp,
            dst_addr: IpAddr::from([198, 51, 100, 7]),
            dst_port: port,
            result: Some(0),
            context: Some(self.context.clone()),
        }));
    }

    pub fn exec(&mut self, ts: u64) {
        let (meta, process) = self.meta(ts);
        let exe = self.context.exe.clone();
        self.events.push(Event::ProcessExec(ProcessExec {
            meta,
            process,
            ppid: 1,
            uid: 0,
            gid: 0,
            cgroup_id: 0,
            comm: "x".into(),
            exe,
            argv: Default::default(),
            argv_truncated: false,
            attributes: None,
            context: Some(self.context.clone()),
        }));
    }

    pub fn fork(&mut self, ts: u64) {
        let (meta, parent) = self.meta(ts);
        let child = ProcessKey { pid: self.pid + 1 + self.events.len() as u32, start_time_ns: ts };
        self.events.push(Event::ProcessFork(ProcessFork { meta, parent, child, context: Some(self.context.clone()) }));
    }

    /// `n` events of `what` spread evenly over `[from, from + span)`.
    pub fn spread(&mut self, from: u64, span: u64, n: u64, mut what: impl FnMut(&mut Stream, u64)) {
        for i in 0..n {
            what(self, from + span * i / n.max(1));
        }
    }

    /// A benign report job: per minute 40–49 reads under /etc, /usr and
    /// /var/lib, a few execs of itself, a connect to a database now and
    /// then; `minutes` minutes from `from`.
    pub fn benign_job(&mut self, from: u64, minutes: u64) {
        for m in 0..minutes {
            let n = 40 + self.below(10);
            let start = from + m * 60 * SEC;
            self.spread(start, 60 * SEC, n, |s, ts| match s.below(20) {
                0 => s.exec(ts),
                1 => s.connect(ts, 5432),
                2..=6 => s.open(ts, "/etc/acme/report.conf"),
                7..=11 => s.open(ts, "/usr/share/acme/template.html"),
                _ => s.open(ts, "/var/lib/acme/data.db"),
            });
        }
    }
}

pub(super) fn run(engine: &mut L3Engine, events: &[Event]) -> Vec<Firing> {
    let mut out = Vec::new();
    for event in events {
        engine.push(event, &mut out);
    }
    engine.flush(u64::MAX, &mut out);
    out
}

fn fired(ids: &[String], firings: &[Firing]) -> Vec<String> {
    firings.iter().map(|f| ids[f.rule].clone()).collect()
}

fn engine() -> (L3Engine, Vec<String>) {
    let (rules, ids) = pack();
    (L3Engine::new(rules, L3Config::default()), ids)
}

/// Ten minutes of the benign job: every baseline warm.
fn learned(exe: &str) -> Stream {
    let mut s = Stream::new(exe, "/usr/sbin/cron");
    s.benign_job(T0, 10);
    s
}

#[test]
fn the_benign_job_warms_up_and_its_twin_continuing_stays_silent() {
    let (mut engine, ids) = engine();
    let mut s = learned("/opt/acme/bin/report");
    s.benign_job(T0 + 600 * SEC, 30);
    let firings = run(&mut engine, &s.events);
    assert!(firings.is_empty(), "{:?}", fired(&ids, &firings));
    let stats = engine.stats();
    assert_eq!(stats.entities, 2, "exe and exe_parent");
    assert_eq!(stats.baselines, 4, "kinds and rate per exe_parent, port_class and path_prefix per exe");
    // All but port_class: a connect now and then is not 200 in ten minutes.
    assert_eq!(stats.ready, 3, "{stats:?}");
}

#[test]
fn kinds_fires_when_a_learned_job_starts_forking_and_connecting_out() {
    let (mut engine, ids) = engine();
    let mut s = learned("/opt/acme/bin/report");
    let mut twin = Stream { events: s.events.clone(), context: s.context.clone(), pid: s.pid, seed: 5 };
    // Minute 11: forks and connects, a few reads.
    let at = T0 + 660 * SEC;
    s.spread(at, 30 * SEC, 40, |s, ts| match s.below(8) {
        0 => s.open(ts, "/etc/acme/report.conf"),
        1..=4 => s.fork(ts),
        _ => s.connect(ts, 443),
    });
    twin.benign_job(at, 3);
    let (mut quiet, _) = self::engine();
    let firings = run(&mut quiet, &twin.events);
    assert!(firings.is_empty(), "{:?}", fired(&ids, &firings));
    let firings = run(&mut engine, &s.events);
    let names = fired(&ids, &firings);
    assert!(names.contains(&"hf-linux-anomaly-exe-kinds".to_owned()), "{names:?}");
    let kinds = firings.iter().find(|f| ids[f.rule] == "hf-linux-anomaly-exe-kinds").expect("kinds");
    assert!(kinds.summary.starts_with("anomaly kinds of exe_parent /opt/acme/bin/report under /usr/sbin/cron: score "));
    assert!(kinds.summary.contains("process_fork"), "{}", kinds.summary);
    assert!(kinds.summary.contains("vs baseline 0.00"), "{}", kinds.summary);
    assert!(kinds.event_ids.len() == MAX_FIRING_IDS && kinds.event_ids.windows(2).all(|w| w[0] < w[1]));
    let last = kinds.event_ids.last().copied().unwrap_or(0);
    assert_eq!(s.events[last as usize - 1].meta().ts_ns, kinds.ts_ns, "the tipping event is the newest id");
}

#[test]
fn port_class_fires_on_a_new_port_class_and_not_on_the_usual_one() {
    let (mut engine, ids) = engine();
    let mut s = Stream::new("/opt/acme/bin/sync", "/usr/lib/systemd/systemd");
    // Ten minutes of HTTPS and DNS, 25 connects a minute.
    s.spread(T0, 600 * SEC, 250, |s, ts| {
        let port = if s.below(5) == 0 { 53 } else { 443 };
        s.connect(ts, port)
    });
    let mut twin = Stream { events: s.events.clone(), context: s.context.clone(), pid: s.pid, seed: 7 };
    s.spread(T0 + 600 * SEC, 20 * SEC, 15, |s, ts| s.connect(ts, 4444));
    twin.spread(T0 + 600 * SEC, 60 * SEC, 25, |s, ts| {
        let port = if s.below(5) == 0 { 53 } else { 8443 };
        s.connect(ts, port)
    });
    let firings = run(&mut engine, &s.events);
    assert_eq!(fired(&ids, &firings), ["hf-linux-anomaly-port-class"]);
    assert!(firings[0].summary.contains("registered 1.00 vs baseline 0.00"), "{}", firings[0].summary);
    let (mut engine, _) = self::engine();
    let firings = run(&mut engine, &twin.events);
    assert!(firings.is_empty(), "{:?}", fired(&ids, &firings));
}

#[test]
fn path_prefix_fires_on_files_under_tmp_and_not_on_the_usual_dirs() {
    let (mut engine, ids) = engine();
    let mut s = learned("/opt/acme/bin/report");
    let mut twin = Stream { events: s.events.clone(), context: s.context.clone(), pid: s.pid, seed: 11 };
    s.spread(T0 + 600 * SEC, 30 * SEC, 30, |s, ts| {
        let path = if s.below(2) == 0 { "/tmp/.x/stage" } else { "/dev/shm/.k" };
        s.open(ts, path)
    });
    twin.benign_job(T0 + 600 * SEC, 5);
    let names = fired(&ids, &run(&mut engine, &s.events));
    assert!(names.contains(&"hf-linux-anomaly-path-prefix".to_owned()), "{names:?}");
    let (mut engine, _) = self::engine();
    let firings = run(&mut engine, &twin.events);
    assert!(firings.is_empty(), "{:?}", fired(&ids, &firings));
}

#[test]
fn rate_fires_on_a_spike_and_not_on_a_busier_than_usual_minute() {
    let (mut engine, ids) = engine();
    let mut s = Stream::new("/usr/bin/rsync", "/usr/sbin/cron");
    // 150–179 reads a minute for ten minutes.
    for m in 0..10 {
        let n = 150 + s.below(30);
        s.spread(T0 + m * 60 * SEC, 60 * SEC, n, |s, ts| s.open(ts, "/var/lib/acme/data.db"));
    }
    let mut twin = Stream { events: s.events.clone(), context: s.context.clone(), pid: s.pid, seed: 3 };
    s.spread(T0 + 600 * SEC, 60 * SEC, 1_500, |s, ts| s.open(ts, "/var/lib/acme/data.db"));
    twin.spread(T0 + 600 * SEC, 60 * SEC, 200, |s, ts| s.open(ts, "/var/lib/acme/data.db"));
    let firings = run(&mut engine, &s.events);
    assert_eq!(fired(&ids, &firings), ["hf-linux-anomaly-rate"]);
    assert!(firings[0].summary.contains("anomaly rate of exe_parent /usr/bin/rsync under /usr/sbin/cron: z "));
    let (mut engine, _) = self::engine();
    let firings = run(&mut engine, &twin.events);
    assert!(firings.is_empty(), "{:?}", fired(&ids, &firings));
}

#[test]
fn a_rule_fires_once_per_window_and_an_anomalous_window_is_not_learned() {
    let rule = Anomaly {
        entity: Entity::Exe,
        feature: Feature::PortClass,
        kinds: KindSet::of(&[EventKind::NetConnect]),
        threshold: 2.0,
        min_events: 5,
        window_ns: 60 * SEC,
    };
    let config = L3Config { warmup_events: 50, warmup_windows: 3, ..L3Config::default() };
    let mut engine = L3Engine::new(vec![(0, rule)], config);
    let mut s = Stream::new("/opt/a", "/sbin/init");
    s.spread(T0, 300 * SEC, 100, |s, ts| s.connect(ts, 443));
    let learning = s.events.len();
    // Then three minutes of connects to 22: one firing per minute.
    s.spread(T0 + 300 * SEC, 180 * SEC, 60, |s, ts| s.connect(ts, 22));
    let mut firings = Vec::new();
    for event in &s.events[..learning] {
        engine.push(event, &mut firings);
    }
    assert!(firings.is_empty());
    let before = engine.baselines();
    for event in &s.events[learning..] {
        engine.push(event, &mut firings);
    }
    engine.flush(u64::MAX, &mut firings);
    assert_eq!(firings.len(), 3, "{firings:#?}");
    assert_eq!(firings.iter().map(|f| f.ts_ns / (60 * SEC)).collect::<std::collections::BTreeSet<_>>().len(), 3);
    // The anomalous windows were not folded: only the last benign window
    // (closed by the first connect to 22) was.
    let after = engine.baselines();
    let (b0, b1) = (&before.values().next().expect("model")[0].1, &after.values().next().expect("model")[0].1);
    assert_eq!(b1.counts[domain::port_class(22) as usize], 0);
    assert_eq!((b0.windows, b1.windows), (4, 5));
    assert_eq!(b1.events, b0.events + 20);
}

#[test]
fn frozen_learning_changes_no_baseline_and_takes_on_no_entity() {
    let (rules, _) = pack();
    let mut learning = L3Engine::new(rules.clone(), L3Config::default());
    let s = learned("/opt/acme/bin/report");
    run(&mut learning, &s.events);
    let baselines = learning.baselines();
    let mut frozen = L3Engine::new(rules, L3Config { learn: false, ..L3Config::default() });
    assert!(frozen.restore(&baselines) > 0);
    let mut more = learned("/opt/acme/bin/report");
    more.benign_job(T0 + 600 * SEC, 5);
    // A program never seen: not taken on.
    more.context = ctx("/opt/other", "/usr/sbin/cron");
    more.benign_job(T0 + 900 * SEC, 5);
    run(&mut frozen, &more.events);
    assert_eq!(frozen.baselines(), baselines);
    assert_eq!(frozen.stats().entities, 2);
    assert_eq!(frozen.stats().folds, 0);
}

#[test]
fn warm_up_needs_both_events_and_windows() {
    let rule = Anomaly {
        entity: Entity::Exe,
        feature: Feature::PortClass,
        kinds: KindSet::of(&[EventKind::NetConnect]),
        threshold: 1.0,
        min_events: 5,
        window_ns: 60 * SEC,
    };
    let mut engine = L3Engine::new(vec![(0, rule)], L3Config::default());
    // 1 000 connects in two minutes: enough events, two windows.
    let mut s = Stream::new("/opt/a", "/sbin/init");
    s.spread(T0, 120 * SEC, 1_000, |s, ts| s.connect(ts, 443));
    s.spread(T0 + 120 * SEC, 30 * SEC, 20, |s, ts| s.connect(ts, 22));
    assert!(run(&mut engine, &s.events).is_empty());
    assert_eq!(engine.stats().ready, 0);
}

#[test]
fn state_stays_bounded_under_churn_and_evictions_are_counted_exactly() {
    let rule = Anomaly {
        entity: Entity::ExeParent,
        feature: Feature::Kinds,
        kinds: KindSet::ALL,
        threshold: 3.0,
        min_events: 20,
        window_ns: 60 * SEC,
    };
    let config = L3Config { max_entities: 4096, ..L3Config::default() };
    let mut engine = L3Engine::new(vec![(0, rule)], config);
    // 1 M events over 100 k entities, each seen ten times, in time order.
    let contexts: Vec<Arc<ProcessContext>> =
        (0..100_000).map(|i| ctx(&format!("/tmp/build/cc{i}"), "/usr/bin/make")).collect();
    let mut out = Vec::new();
    let mut max_held = 0;
    for i in 0..1_000_000u64 {
        let entity = ((i * 7_919) % 100_000) as usize;
        let event = Event::FileOpen(FileOpen {
            meta: EventMeta { ts_ns: T0 + i * 1_000, event_id: i + 1 },
            process: ProcessKey { pid: entity as u32, start_time_ns: 1 },
            path: "/usr/include/stdio.h".into(),
            flags: 0,
            context: Some(contexts[entity].clone()),
        });
        engine.push(&event, &mut out);
        max_held = max_held.max(engine.stats().entities);
    }
    engine.flush(u64::MAX, &mut out);
    let stats = engine.stats();
    assert!(max_held <= 4096, "{max_held}");
    assert!(stats.entities <= 4096);
    // Each entity comes back after 99 999 others (7 919 is prime to
    // 100 000), long after it was evicted: every event creates one.
    assert_eq!(stats.evicted, 1_000_000 - stats.entities as u64, "{stats:?}");
    assert_eq!(stats.baselines, stats.entities);
    assert!(out.is_empty());
}

#[test]
fn eviction_takes_the_oldest_by_last_event_then_by_key() {
    let rule = Anomaly {
        entity: Entity::Exe,
        feature: Feature::Rate,
        kinds: KindSet::ALL,
        threshold: 3.0,
        min_events: 20,
        window_ns: 60 * SEC,
    };
    let mut engine = L3Engine::new(vec![(0, rule)], L3Config { max_entities: 3, ..L3Config::default() });
    let mut s = Stream::new("/b", "/init");
    for (exe, at) in [("/b", 0), ("/a", 0), ("/c", 1), ("/d", 2), ("/e", 3)] {
        s.context = ctx(exe, "/init");
        s.open(T0 + at * SEC, "/x");
    }
    run(&mut engine, &s.events);
    // /a and /b tied at T0: /a went first (key order), then /b.
    let mut held: Vec<String> = engine.tables[0].slots.iter().map(|s| s.key.exe.to_string()).collect();
    held.sort();
    assert_eq!(held, ["/c", "/d", "/e"]);
    assert_eq!(engine.stats().evicted, 2);
}

#[test]
fn a_shuffle_within_the_reorder_window_gives_the_same_firings() {
    let mut s = learned("/opt/acme/bin/report");
    let at = T0 + 660 * SEC;
    s.spread(at, 120 * SEC, 200, |s, ts| match s.below(3) {
        0 => s.open(ts, "/tmp/.x"),
        1 => s.exec(ts),
        _ => s.connect(ts, 4444),
    });
    let (mut a, ids) = engine();
    let ordered = run(&mut a, &s.events);
    assert!(ordered.len() >= 3, "{:?}", fired(&ids, &ordered));
    for seed in 1..4u64 {
        // Arrival = ts + jitter below half the reorder window.
        let mut rng = Stream { seed, ..Stream::new("/x", "/y") };
        let mut shuffled: Vec<(u64, Event)> =
            s.events.iter().map(|e| (e.meta().ts_ns + rng.below(SEC), e.clone())).collect();
        shuffled.sort_by_key(|(arrival, _)| *arrival);
        let events: Vec<Event> = shuffled.into_iter().map(|(_, e)| e).collect();
        assert_ne!(
            events.iter().map(|e| e.meta().event_id).collect::<Vec<_>>(),
            (1..=events.len() as u64).collect::<Vec<_>>()
        );
        let (mut b, _) = engine();
        assert_eq!(run(&mut b, &events), ordered, "seed {seed}");
        assert_eq!(b.stats().late, 0);
    }
}
