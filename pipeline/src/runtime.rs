//! Runs a built [`Topology`]: one tokio task per component, joined by
//! bounded edges, with a lossless drain on shutdown.
//!
//! Shutdown is ordered by the edges themselves: sources stop when the
//! signal fires and drop their senders; a transform or sink ends only when
//! its input buffer reports that every upstream is gone and nothing is left
//! (`recv` → `None`). So everything produced before the signal reaches the
//! sinks, which then flush.
//!
//! Time-driven work runs from the same loop: a transform or sink with a
//! `tick_interval` gets `on_tick` between batches, with or without input,
//! until its input ends (a sink's last tick is before its `flush`). So do
//! updates: a transform that hands out an update receiver
//! (`Transform::take_updates`) gets each new compiled object through
//! `Transform::apply` between two batches — the one mechanism for swapping
//! a rule set live, and later a reloaded topology's objects. That loop is
//! the only `select!` over input, ticks and updates; no component has one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::component::{Built, ComponentError, Output, SinkContext, Source, SourceContext, Transform};
use crate::config::Role;
use crate::edge::{buffer, disk_buffer, BufferHandle, DiskThreads, EdgeReceiver, Fanout};
use crate::health::{ComponentState, Health, HealthHandle};
use crate::ledger::{ComponentEntry, Ledger};
use crate::metrics::{
    sent_counter, BufferGauges, ComponentMetrics, ComponentReport, DropReason, EdgeMetrics, EdgeReport, RunReport,
};
use crate::shutdown::ShutdownTrigger;

mod sink;
#[cfg(test)]
mod tests_disk;
use crate::topology::Topology;
use sink::run_sink;

/// Why a run did not end cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A sink could not open its destination; no source was started.
    #[error("sink `{component}` could not start: {source}")]
    SinkOpen {
        component: String,
        #[source]
        source: ComponentError,
    },
    /// A disk buffer could not be opened; no source was started.
    #[error("the disk buffer of `{component}` could not be opened: {message}")]
    DiskBuffer { component: String, message: String },
    /// One or more components stopped with an error; the rest were drained.
    #[error("{}", describe_failures(.failures))]
    ComponentsFailed { failures: Vec<(String, String)>, report: Box<RunReport> },
}

fn describe_failures(failures: &[(String, String)]) -> String {
    failures.iter().map(|(name, error)| format!("component `{name}` failed: {error}")).collect::<Vec<_>>().join("; ")
}

/// What one task hands back when it ends.
struct TaskOutcome {
    name: String,
    report: ComponentReport,
    edges: Vec<EdgeReport>,
    result: Result<(), ComponentError>,
}

/// Where a fan-out leaves its totals when it is dropped (a source's
/// fan-out moves into the source and drops with it).
#[derive(Clone, Default)]
struct FanoutTotals(Arc<Mutex<(u64, Vec<EdgeReport>)>>);

/// Runs the topology until every source has finished (or `trigger` fired
/// and the drain completed). Returns exact totals.
pub async fn run(topology: Topology, trigger: ShutdownTrigger, health: Health) -> Result<RunReport, RunError> {
    let Topology { nodes, batch_codec, .. } = topology;

    // The loss ledger: one row per component, one per edge.
    let ledger = Arc::new(Ledger::default());
    let entries: BTreeMap<String, ComponentEntry> = nodes
        .iter()
        .map(|n| {
            let buffer = (n.role != Role::Source).then_some(n.buffer.disk.is_some());
            (n.name.clone(), ledger.component(&n.name, n.role.noun(), &n.type_name, buffer))
        })
        .collect();
    health.set_ledger(Arc::clone(&ledger));

    // One input buffer per transform and sink.
    let mut disk_threads: Vec<DiskThreads> = Vec::new();
    let mut buffers: BTreeMap<String, BufferHandle> = BTreeMap::new();
    let mut receivers: BTreeMap<String, EdgeReceiver> = BTreeMap::new();
    for node in nodes.iter().filter(|n| n.role != Role::Source) {
        let gauges = BufferGauges::new(&node.name, node.buffer.capacity.get());
        let (handle, receiver) = if node.buffer.disk.is_some() {
            let Some(codec) = batch_codec.clone() else {
                return Err(RunError::DiskBuffer {
                    component: node.name.clone(),
                    message: "this build has no codec for disk buffers".to_owned(),
                });
            };
            let (handle, mut receiver, report, threads) = disk_buffer(&node.name, &node.buffer, codec, gauges)
                .map_err(|error| RunError::DiskBuffer {
                    component: node.name.clone(),
                    message: crate::error_chain(&error),
                })?;
            if let Some(entry) = entries.get(&node.name) {
                receiver.set_ledger(entry.clone(), report.events_pending, report.torn_records);
            }
            disk_threads.push(threads);
            (handle, receiver)
        } else {
            let (handle, mut receiver) = buffer(&node.buffer, gauges);
            if let Some(entry) = entries.get(&node.name) {
                receiver.set_ledger(entry.clone(), 0, 0);
            }
            (handle, receiver)
        };
        buffers.insert(node.name.clone(), handle);
        receivers.insert(node.name.clone(), receiver);
    }

    // One fan-out per source and transform, with an edge to each consumer.
    let mut fanouts: BTreeMap<String, Fanout> = BTreeMap::new();
    for node in nodes.iter().filter(|n| n.role != Role::Sink) {
        let edges = nodes
            .iter()
            .filter(|consumer| consumer.inputs.contains(&node.name))
            .filter_map(|consumer| {
                let handle = buffers.get(&consumer.name)?;
                let metrics = EdgeMetrics::new(&node.name, &consumer.name, consumer.role, &consumer.type_name);
                let mut sender = handle.sender(&node.name, &consumer.name, metrics);
                if let (Some(from), Some(to)) = (entries.get(&node.name), entries.get(&consumer.name)) {
                    sender.set_ledger(ledger.edge(from, to));
                }
                Some(sender)
            })
            .collect();
        let sent = sent_counter(&node.name, node.role, &node.type_name);
        let mut fanout = Fanout::new(edges, sent);
        if let Some(entry) = entries.get(&node.name) {
            fanout.set_ledger(entry.clone(), node.role == Role::Source);
        }
        fanouts.insert(node.name.clone(), fanout);
    }
    // Only the fan-outs hold senders now: when they drop, buffers close.
    drop(buffers);

    // Event ids: sources first, then transforms, each sorted by name, get
    // the top 16 bits — unique per run and stable across runs of one file.
    let mut id_owners: Vec<(Role, &str)> =
        nodes.iter().filter(|n| n.role != Role::Sink).map(|n| (n.role, n.name.as_str())).collect();
    id_owners.sort_unstable();
    let id_prefix = |name: &str| -> u64 {
        let index = id_owners.iter().position(|(_, n)| *n == name).unwrap_or(0) as u64;
        index << 48
    };
    let id_prefixes: BTreeMap<String, u64> = nodes.iter().map(|n| (n.name.clone(), id_prefix(&n.name))).collect();

    // Open every sink before anything produces.
    let mut prepared = Vec::new();
    for node in nodes {
        let health_handle = health.register(&node.name, node.role, &node.type_name);
        let mut metrics = ComponentMetrics::new(&node.name, node.role, &node.type_name);
        if let Some(entry) = entries.get(&node.name) {
            metrics.set_ledger(entry.clone());
        }
        prepared.push((node.name, node.role, node.type_name, node.component, health_handle, metrics));
    }
    for (name, _, _, component, health_handle, _) in &mut prepared {
        if let Built::Sink(sink) = component {
            sink.attach(SinkContext { health: health_handle.clone(), shutdown: trigger.signal() });
            if let Err(source) = sink.open().await {
                health_handle.set(ComponentState::Failed, Some(source.to_string()));
                return Err(RunError::SinkOpen { component: name.clone(), source });
            }
        }
    }

    let mut tasks = JoinSet::new();
    let mut task_names: BTreeMap<tokio::task::Id, String> = BTreeMap::new();
    let mut totals_by_name: BTreeMap<String, FanoutTotals> = BTreeMap::new();
    let mut roles: BTreeMap<String, (Role, String)> = BTreeMap::new();
    // Spawn downstream first so every buffer has a reader before data flows.
    prepared.sort_by_key(|(_, role, ..)| std::cmp::Reverse(*role));
    for (name, role, type_name, component, health_handle, metrics) in prepared {
        roles.insert(name.clone(), (role, type_name.clone()));
        match component {
            Built::Sink(sink) => {
                let Some(input) = receivers.remove(&name) else {
                    continue;
                };
                let sent = sent_counter(&name, role, &type_name);
                let task_name = name.clone();
                let stopping = trigger.signal();
                let handle = tasks.spawn(run_sink(name, sink, input, metrics, sent, health_handle, stopping));
                task_names.insert(handle.id(), task_name);
            }
            Built::Transform(transform) => {
                let (Some(input), Some(out)) = (receivers.remove(&name), fanouts.remove(&name)) else {
                    continue;
                };
                let output = Output::with_event_id_prefix(id_prefixes.get(&name).copied().unwrap_or(0));
                let task_name = name.clone();
                let handle = tasks.spawn(run_transform(name, transform, input, out, output, metrics, health_handle));
                task_names.insert(handle.id(), task_name);
            }
            Built::Source(source) => {
                let Some(out) = fanouts.remove(&name) else {
                    continue;
                };
                let totals = FanoutTotals::default();
                totals_by_name.insert(name.clone(), totals.clone());
                let cx = SourceContext {
                    name: Arc::from(name.as_str()),
                    out,
                    shutdown: trigger.signal(),
                    health: health_handle.clone(),
                    event_id_prefix: id_prefixes.get(&name).copied().unwrap_or(0),
                };
                let task_name = name.clone();
                let handle = tasks.spawn(run_source(name, source, cx, metrics, health_handle, totals));
                task_names.insert(handle.id(), task_name);
            }
        }
    }

    let mut report = RunReport::default();
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next_with_id().await {
        let outcome = match joined {
            Ok((_, outcome)) => outcome,
            Err(join_error) => {
                // A panic in a component: stop producing, drain the rest.
                trigger.trigger();
                let name = task_names.get(&join_error.id()).cloned().unwrap_or_else(|| "<unknown>".to_owned());
                tracing::error!(component = %name, error = %join_error, "component panicked; stopping sources and draining the rest");
                failures.push((name, format!("panicked: {join_error}")));
                continue;
            }
        };
        let TaskOutcome { name, report: mut component_report, mut edges, result } = outcome;
        if let Some(totals) = totals_by_name.get(&name) {
            let guard = totals.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            component_report.sent = guard.0;
            edges = guard.1.clone();
        }
        if let Err(error) = result {
            tracing::error!(component = %name, %error, "component failed; stopping sources and draining the rest");
            trigger.trigger();
            failures.push((name.clone(), error.to_string()));
        }
        report.components.insert(name, component_report);
        report.edges.extend(edges);
    }
    // A drop on a component's input buffer is a drop by that component.
    for edge in &report.edges {
        if let Some(target) = report.components.get_mut(&edge.to) {
            for (reason, n) in &edge.discarded {
                *target.discarded.entry(reason).or_default() += n;
            }
        }
    }
    for (name, (role, type_name)) in roles {
        report.components.entry(name).or_insert_with(|| ComponentReport {
            role,
            type_name,
            ..ComponentReport::default()
        });
    }
    report.edges.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
    // Every task ended, so every disk buffer's threads are finishing: wait
    // for their last sync before saying the run is over.
    if !disk_threads.is_empty() {
        let joined = tokio::task::spawn_blocking(move || disk_threads.into_iter().for_each(DiskThreads::join)).await;
        if joined.is_err() {
            tracing::error!("joining the disk buffer threads failed");
        }
    }
    report.ledger = Some(ledger.snapshot());
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(RunError::ComponentsFailed { failures, report: Box::new(report) })
    }
}

async fn run_source(
    name: String,
    source: Box<dyn Source>,
    mut cx: SourceContext,
    metrics: ComponentMetrics,
    health: HealthHandle,
    totals: FanoutTotals,
) -> TaskOutcome {
    health.set(ComponentState::Running, None);
    // The fan-out moves into the source and drops with it (which is what
    // closes the downstream buffers); it leaves its totals behind then.
    cx.out.set_on_drop(Box::new(move |n_sent, edges| {
        let mut guard = totals.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = (n_sent, edges);
    }));
    let result = source.run(cx).await;
    finish(&health, &result);
    TaskOutcome { name, report: metrics.into_report(), edges: Vec::new(), result }
}

async fn run_transform(
    name: String,
    mut transform: Box<dyn Transform>,
    mut input: EdgeReceiver,
    mut out: Fanout,
    mut output: Output,
    mut metrics: ComponentMetrics,
    health: HealthHandle,
) -> TaskOutcome {
    health.set(ComponentState::Running, None);
    transform.attach_health(health.clone());
    let mut ticker = transform.tick_interval().map(ticker);
    let mut updates = transform.take_updates();
    // Events taken in by the step whose output `emit` hands on.
    let mut n_in = 0u64;
    loop {
        // One select over input, ticks and updates: each handler runs
        // between two batches, so a tick or an update never interleaves
        // with `process`.
        let next = tokio::select! {
            batch = input.recv() => Next::Batch(batch),
            () = next_tick(&mut ticker) => Next::Tick,
            update = next_update(&mut updates) => Next::Update(update),
        };
        match next {
            Next::Batch(None) => break,
            Next::Batch(Some(batch)) => {
                n_in = batch.len() as u64;
                metrics.add_received(batch.len());
                let started = Instant::now();
                transform.process(batch, &mut output);
                metrics.record_latency(started.elapsed());
            }
            Next::Tick => {
                let started = Instant::now();
                transform.on_tick(&mut output);
                metrics.record_latency(started.elapsed());
            }
            Next::Update(Some(update)) => {
                transform.apply(update, &mut output);
                tracing::debug!(component = %name, "applied an update between batches");
            }
            // The reloader is gone: the transform keeps its last object.
            Next::Update(None) => updates = None,
        }
        emit(&mut output, &mut out, &mut metrics, std::mem::take(&mut n_in)).await;
    }
    health.set(ComponentState::Draining, None);
    transform.flush(&mut output);
    emit(&mut output, &mut out, &mut metrics, 0).await;
    let mut report = metrics.into_report();
    report.sent = out.n_sent();
    let edges = out.reports();
    drop(out);
    health.set(ComponentState::Stopped, None);
    TaskOutcome { name, report, edges, result: Ok(()) }
}

async fn emit(output: &mut Output, out: &mut Fanout, metrics: &mut ComponentMetrics, n_in: u64) {
    let discarded = output.take_discarded();
    metrics.processed(n_in, output.len() as u64, &discarded);
    for reason in DropReason::ALL {
        metrics.add_discarded(reason, discarded[reason.index()]);
    }
    let events = output.take_events();
    out.send(events).await;
}

/// What woke a transform's task.
enum Next {
    Batch(Option<crate::event::Batch>),
    Tick,
    Update(Option<crate::component::Update>),
}

/// The next tick, or never for a component without ticks.
async fn next_tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The next update, or never for a transform without updates.
async fn next_update(updates: &mut Option<crate::component::UpdateReceiver>) -> Option<crate::component::Update> {
    match updates {
        Some(updates) => updates.recv().await,
        None => std::future::pending().await,
    }
}

/// The timer of a component's `on_tick`: first tick one period after start;
/// a late tick delays the next ones instead of bursting to catch up.
fn ticker(period: Duration) -> tokio::time::Interval {
    let period = period.max(MIN_TICK);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

/// The shortest tick period (tokio panics on a zero period).
const MIN_TICK: Duration = Duration::from_millis(1);

fn finish(health: &HealthHandle, result: &Result<(), ComponentError>) {
    match result {
        Ok(()) => health.set(ComponentState::Stopped, None),
        Err(error) => health.set(ComponentState::Failed, Some(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::component::Sink;
    use crate::component::{BuildFn, BuildResult, ComponentSpec};
    use crate::config::{ComponentOptions, SourceFile, TopologyConfig};
    use crate::event::{AgentDiag, Batch, Event, EventMeta};
    use crate::shutdown::shutdown_channel;

    /// Sends one batch of one event, then waits for shutdown (also the
    /// sink loop's tests' source).
    pub(super) struct OneBatch;

    #[async_trait]
    impl Source for OneBatch {
        async fn run(self: Box<Self>, mut cx: SourceContext) -> Result<(), ComponentError> {
            let event = Event::AgentDiag(AgentDiag {
                meta: EventMeta { ts_ns: 1, event_id: cx.event_id(0) },
                module: "test".into(),
                event_type: "t".into(),
                reason: "r".into(),
            });
            cx.out.send(vec![event]).await;
            cx.shutdown.wait().await;
            Ok(())
        }
    }

    /// Counts writes and ticks; its tick fails once `FAIL_AFTER` ticks ran.
    struct TickingSink {
        counters: &'static Counters,
    }

    struct Counters {
        writes: AtomicU64,
        ticks: AtomicU64,
        ticks_after_flush: AtomicU64,
        flushed: AtomicU64,
        fail_after: u64,
    }

    impl Counters {
        const fn new(fail_after: u64) -> Counters {
            Counters {
                writes: AtomicU64::new(0),
                ticks: AtomicU64::new(0),
                ticks_after_flush: AtomicU64::new(0),
                flushed: AtomicU64::new(0),
                fail_after,
            }
        }
    }

    #[async_trait]
    impl Sink for TickingSink {
        async fn write(&mut self, _batch: Batch) -> Result<(), ComponentError> {
            self.counters.writes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        fn tick_interval(&self) -> Option<Duration> {
            Some(Duration::from_millis(10))
        }

        async fn on_tick(&mut self) -> Result<(), ComponentError> {
            if self.counters.flushed.load(Ordering::SeqCst) > 0 {
                self.counters.ticks_after_flush.fetch_add(1, Ordering::SeqCst);
            }
            let ticks = self.counters.ticks.fetch_add(1, Ordering::SeqCst) + 1;
            if ticks >= self.counters.fail_after {
                return Err(ComponentError::Failed(format!("tick {ticks} failed")));
            }
            Ok(())
        }

        async fn flush(&mut self) -> Result<(), ComponentError> {
            self.counters.flushed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    static TICKING: Counters = Counters::new(u64::MAX);
    static FAILING: Counters = Counters::new(3);

    fn one_batch(_: &ComponentOptions) -> BuildResult<dyn Source> {
        Ok(Box::new(OneBatch))
    }
    fn ticking(_: &ComponentOptions) -> BuildResult<dyn Sink> {
        Ok(Box::new(TickingSink { counters: &TICKING }))
    }
    fn failing(_: &ComponentOptions) -> BuildResult<dyn Sink> {
        Ok(Box::new(TickingSink { counters: &FAILING }))
    }

    /// 400 batches of 50 events, 1 ms apart, then stops by itself.
    struct ManyBatches;

    #[async_trait]
    impl Source for ManyBatches {
        async fn run(self: Box<Self>, mut cx: SourceContext) -> Result<(), ComponentError> {
            for b in 0..400u64 {
                let batch = (0..50)
                    .map(|i| {
                        Event::AgentDiag(AgentDiag {
                            meta: EventMeta { ts_ns: 0, event_id: cx.event_id(b * 50 + i) },
                            module: "test".into(),
                            event_type: "t".into(),
                            reason: "r".into(),
                        })
                    })
                    .collect();
                cx.out.send(batch).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Ok(())
        }
    }

    /// Stamps every event with its current generation (in `ts_ns`); an
    /// update is the next generation. A thread plays the reloader: it
    /// sends generations 1..=UPDATES, 7 ms apart, while batches flow.
    struct Generations {
        generation: u64,
        updates: Option<crate::component::UpdateReceiver>,
    }

    const UPDATES: u64 = 20;

    impl Transform for Generations {
        fn process(&mut self, mut batch: Batch, out: &mut Output) {
            for event in &mut batch {
                if let Event::AgentDiag(diag) = event {
                    diag.meta.ts_ns = self.generation;
                }
            }
            out.extend(batch);
        }

        fn take_updates(&mut self) -> Option<crate::component::UpdateReceiver> {
            self.updates.take()
        }

        fn apply(&mut self, update: crate::component::Update, _out: &mut Output) {
            let Ok(next) = update.downcast::<u64>() else { panic!("a generation is a u64") };
            assert_eq!(*next, self.generation + 1, "updates arrive in order, none lost");
            self.generation = *next;
        }
    }

    fn generations(_: &ComponentOptions) -> BuildResult<dyn Transform> {
        let (sender, receiver) = crate::component::update_channel();
        std::thread::spawn(move || {
            for generation in 1..=UPDATES {
                std::thread::sleep(Duration::from_millis(7));
                if sender.blocking_send(Box::new(generation)).is_err() {
                    return;
                }
            }
        });
        Ok(Box::new(Generations { generation: 0, updates: Some(receiver) }))
    }

    /// Keeps every batch it is written.
    struct Collecting;

    static COLLECTED: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());

    #[async_trait]
    impl Sink for Collecting {
        async fn write(&mut self, batch: Batch) -> Result<(), ComponentError> {
            let stamps = batch.iter().map(|e| e.meta().ts_ns).collect();
            COLLECTED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(stamps);
            Ok(())
        }

        async fn flush(&mut self) -> Result<(), ComponentError> {
            Ok(())
        }
    }

    fn many_batches(_: &ComponentOptions) -> BuildResult<dyn Source> {
        Ok(Box::new(ManyBatches))
    }
    fn collecting(_: &ComponentOptions) -> BuildResult<dyn Sink> {
        Ok(Box::new(Collecting))
    }

    const REGISTRY: &[ComponentSpec] = &[
        ComponentSpec { type_name: "one_batch", summary: "test", build: BuildFn::Source(one_batch) },
        ComponentSpec { type_name: "ticking", summary: "test", build: BuildFn::Sink(ticking) },
        ComponentSpec { type_name: "failing", summary: "test", build: BuildFn::Sink(failing) },
        ComponentSpec { type_name: "many_batches", summary: "test", build: BuildFn::Source(many_batches) },
        ComponentSpec { type_name: "generations", summary: "test", build: BuildFn::Transform(generations) },
        ComponentSpec { type_name: "collecting", summary: "test", build: BuildFn::Sink(collecting) },
    ];

    /// Updates reach a running transform between batches: every batch is
    /// stamped by one generation (never half of one), generations only
    /// grow, every update is applied in order, and no event is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn updates_are_applied_between_batches_in_order() {
        let text = "[api]\nenabled = false\n[sources.src]\ntype = \"many_batches\"\n[transforms.gen]\ntype = \"generations\"\ninputs = [\"src\"]\n[sinks.out]\ntype = \"collecting\"\ninputs = [\"gen\"]\nbuffer = { capacity = 50 }\n";
        let config = TopologyConfig::parse(SourceFile::new("test.toml", text.to_owned())).expect("parses");
        let topology = Topology::build(config, REGISTRY).expect("builds");
        let (trigger, _) = shutdown_channel();
        let report = run(topology, trigger, Health::default()).await.expect("clean run");
        assert_eq!(report.components["out"].received, 400 * 50, "no event lost");
        let batches = COLLECTED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut last = 0;
        for stamps in &batches {
            let first = stamps[0];
            assert!(stamps.iter().all(|&g| g == first), "one batch, one generation: {stamps:?}");
            assert!(first >= last, "generations only grow: {last} then {first}");
            last = first;
        }
        // 400 batches over ≥ 400 ms, updates every 7 ms: all 20 applied,
        // while events flowed (batches of several generations reached the
        // sink, not one swap before the first batch).
        assert_eq!(last, UPDATES, "the last update was applied");
        let mut seen: Vec<u64> = batches.iter().map(|stamps| stamps[0]).collect();
        seen.dedup();
        assert!(seen.len() >= 5, "generations seen by batches: {seen:?}");
    }

    fn topology(sink_type: &str) -> Topology {
        let text = format!(
            "[api]\nenabled = false\n[sources.src]\ntype = \"one_batch\"\n[sinks.out]\ntype = \"{sink_type}\"\ninputs = [\"src\"]\n"
        );
        let config = TopologyConfig::parse(SourceFile::new("test.toml", text)).expect("parses");
        Topology::build(config, REGISTRY).expect("builds")
    }

    #[tokio::test]
    async fn a_sink_ticks_without_input_and_not_after_its_flush() {
        let (trigger, _) = shutdown_channel();
        let stopper = trigger.clone();
        let run = tokio::spawn(run(topology("ticking"), trigger, Health::default()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(TICKING.writes.load(Ordering::SeqCst), 1, "the one batch");
        // A tick every 10 ms with no input: ~30, fewer on a loaded machine.
        let ticks = TICKING.ticks.load(Ordering::SeqCst);
        assert!((3..=31).contains(&ticks), "ticks in 300 ms: {ticks}");
        stopper.trigger();
        let report = run.await.expect("joins").expect("clean run");
        assert_eq!(report.components["out"].received, 1);
        assert_eq!(TICKING.flushed.load(Ordering::SeqCst), 1);
        assert_eq!(TICKING.ticks_after_flush.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_failed_tick_stops_the_sink_like_a_failed_write() {
        let (trigger, _) = shutdown_channel();
        let error = run(topology("failing"), trigger, Health::default()).await.expect_err("the tick fails");
        let RunError::ComponentsFailed { failures, .. } = error else { panic!("{error}") };
        assert_eq!(failures, vec![("out".to_owned(), "tick 3 failed".to_owned())]);
        assert_eq!(FAILING.ticks.load(Ordering::SeqCst), 3);
        assert_eq!(FAILING.flushed.load(Ordering::SeqCst), 0, "a failed sink is not flushed");
    }
}
