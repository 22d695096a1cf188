//! `detect`: evaluates every event against the loaded rule set and emits a
//! [`Detection`] for every rule that fires (all of them).
//!
//! ```toml
//! [transforms.detect]
//! type = "detect"
//! inputs = ["enrich"]
//! rules = "rules"          # a directory of .yml files (native and Sigma), or one file
//! ```
//!
//! Reload: a reloader thread, started with the topology, fingerprints the
//! rules directory every `watch_interval_ms` (names, sizes, mtimes) and
//! also wakes on SIGHUP; on a change it loads and compiles the whole set
//! off the hot path and hands it to the engine's update channel, which
//! swaps it in between two batches. A set with any problem is refused, its
//! problems logged with file, line and rule id, and the old set keeps
//! running. Before the swap the old set's L2 reorder window is drained, so
//! sequences already in flight finish under the rules they started with.
//!
//! L3 (anomaly) options, all optional ([`AnomalyConfig`]):
//!
//! ```toml
//! anomaly = { state_dir = "/var/lib/hostflow/detect", import = "golden.json", learn = true,
//!             warmup_events = 200, warmup_windows = 5, max_entities = 4096, save_interval_secs = 60 }
//! ```
//!
//! Without `state_dir` nothing is persisted. With it, baselines are loaded
//! from `state_dir/l3-baselines.json` at start (else from `import`), saved
//! there every `save_interval_secs` when something was learned and at
//! shutdown, and carried over when the rule set is swapped (format and
//! failure handling: [`crate::l3::persist`]).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pipeline::health::HealthHandle;
use pipeline::metrics::DropReason;
use pipeline::{
    update_channel, Batch, ComponentOptions, ConfigError, Detection, Event, EventMeta, Output, Transform, Update,
    UpdateReceiver, UpdateSender,
};
use serde::Deserialize;

use crate::engine::Engine;
use crate::firing::Firing;
use crate::l2::{EvictReason, L2Config};
use crate::l3::persist::AnomalyConfig;
use crate::l3::L3Host;
use crate::l4::ChainDrop;
use crate::ruleset::{self, RuleSet};

/// Detections emitted, by `layer` and `confidence`.
pub const DETECTIONS_TOTAL: &str = "hostflow_detect_detections_total";
/// Rule-set reloads by `result` (`applied`, `rejected`, `unchanged`).
pub const RELOADS_TOTAL: &str = "hostflow_detect_reloads_total";
/// Enabled rules in the active set, by `layer`.
pub const RULES: &str = "hostflow_detect_rules";
/// Sigma rules of the active set's directory skipped as unsupported.
pub const REJECTED_RULES: &str = "hostflow_detect_rejected_rules";
/// Firings silenced by a rule's exceptions.
pub const EXCEPTED_TOTAL: &str = "hostflow_detect_excepted_total";
/// L2 state entries held now.
pub const L2_STATES: &str = "hostflow_detect_l2_states";
/// L2 state evicted, by `reason` (cap_rule, cap_total, exec, exit, expired).
pub const L2_EVICTIONS_TOTAL: &str = "hostflow_detect_l2_evictions_total";
/// Events that reached L2 after its reorder window had passed them.
pub const L2_LATE_EVENTS_TOTAL: &str = "hostflow_detect_l2_late_events_total";
/// Events L2 processed before their reorder window closed because its
/// reorder buffer was full (bounded memory under a flood).
pub const L2_FORCED_EVENTS_TOTAL: &str = "hostflow_detect_l2_forced_events_total";
/// Partial sequences dropped because a group held its maximum.
pub const L2_PARTIALS_DROPPED_TOTAL: &str = "hostflow_detect_l2_partials_dropped_total";
/// L4 kill chains in progress now.
pub const L4_CHAINS: &str = "hostflow_detect_l4_chains";
/// L4 chains dropped before they completed, by `reason` (cap, exec, exit,
/// expired).
pub const L4_DROPPED_TOTAL: &str = "hostflow_detect_l4_dropped_total";
/// Events that reached L4 after its reorder window had passed them.
pub const L4_LATE_EVENTS_TOTAL: &str = "hostflow_detect_l4_late_events_total";

/// `[transforms.NAME] type = "detect"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// Directory of rule files (or one file), relative to the working
    /// directory; `"builtin"`: the default pack compiled into the binary
    /// (not reloaded).
    pub rules: toml::Spanned<PathBuf>,
    /// Reload when files under `rules` change (SIGHUP reloads either way).
    #[serde(default = "default_true")]
    pub watch: bool,
    #[serde(default = "default_watch_interval_ms")]
    pub watch_interval_ms: u64,
    /// How late (in event time) an event may arrive and still be put in
    /// order for L2.
    #[serde(default = "default_reorder_ms")]
    pub reorder_ms: u64,
    #[serde(default = "default_max_states_per_rule")]
    pub max_states_per_rule: usize,
    #[serde(default = "default_max_states_total")]
    pub max_states_total: usize,
    /// Pass input events on after the detections (`false`: emit only
    /// detections; the inputs are counted as `filtered`).
    #[serde(default = "default_true")]
    pub pass_through: bool,
    /// L3 (anomaly): baseline files, learning and bounds
    /// ([`AnomalyConfig`]; all optional).
    #[serde(default)]
    pub anomaly: AnomalyConfig,
}

fn default_true() -> bool {
    true
}
fn default_watch_interval_ms() -> u64 {
    1000
}
fn default_reorder_ms() -> u64 {
    300
}
fn default_max_states_per_rule() -> usize {
    10_000
}
fn default_max_states_total() -> usize {
    100_000
}

/// Builds the transform (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Transform>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: DetectConfig, options| {
        let path = config.rules.get_ref().clone();
        let loaded =
            if path.as_os_str() == crate::builtin::BUILTIN { crate::builtin::load() } else { ruleset::load(&path) };
        for rejected in loaded.rejected() {
            tracing::warn!(component = %options.component, "detect: Sigma rule skipped: {rejected}");
        }
        let Some(set) = loaded.set else {
            let mut errors: Vec<ConfigError> = loaded
                .problems()
                .map(|p| options.error_at(config.rules.span(), format!("rule problem: {p}")))
                .collect();
            if errors.is_empty() {
                errors.push(options.error_at(config.rules.span(), "the rules did not load"));
            }
            return Err(errors);
        };
        Ok(Box::new(Detect::new(config, Arc::new(set), &options.component)) as Box<dyn Transform>)
    })
}

/// The running transform.
#[derive(Debug)]
pub struct Detect {
    engine: Engine,
    /// L3's options, baseline files and metrics.
    l3: L3Host,
    l2_config: L2Config,
    path: PathBuf,
    /// `None`: the built-in pack, never reloaded. `Some(None)`: reload on
    /// SIGHUP only; `Some(Some(interval))`: also poll the directory.
    reload: Option<Option<Duration>>,
    pass_through: bool,
    component: Arc<str>,
    firings: Vec<Firing>,
    health: Option<HealthHandle>,
    last_batch: Instant,
    /// The latest event time seen, to move L2's watermark on with wall
    /// time while no events arrive.
    max_ts: u64,
    metrics: DetectMetrics,
    /// The engine's counters as last added to the metrics (the engine
    /// counts totals; the metrics take the increase).
    reported: Reported,
}

/// Every metric handle, registered once (the hot path only increments).
#[derive(Debug)]
struct DetectMetrics {
    /// By layer, then confidence.
    detections: Vec<Vec<metrics::Counter>>,
    rules: Vec<metrics::Gauge>,
    rejected: metrics::Gauge,
    excepted: metrics::Counter,
    l2_states: metrics::Gauge,
    l2_evictions: Vec<metrics::Counter>,
    l2_late: metrics::Counter,
    l2_forced: metrics::Counter,
    l2_partials: metrics::Counter,
    l4_chains: metrics::Gauge,
    l4_dropped: Vec<metrics::Counter>,
    l4_late: metrics::Counter,
}

impl DetectMetrics {
    fn new(component: &str) -> DetectMetrics {
        let c = || component.to_owned();
        DetectMetrics {
            detections: pipeline::DetectionLayer::ALL
                .iter()
                .map(|layer| {
                    pipeline::Confidence::ALL
                        .iter()
                        .map(|confidence| {
                            metrics::counter!(DETECTIONS_TOTAL, "component" => c(), "layer" => layer.as_str(), "confidence" => confidence.as_str())
                        })
                        .collect()
                })
                .collect(),
            rules: pipeline::DetectionLayer::ALL
                .iter()
                .map(|layer| metrics::gauge!(RULES, "component" => c(), "layer" => layer.as_str()))
                .collect(),
            rejected: metrics::gauge!(REJECTED_RULES, "component" => c()),
            excepted: metrics::counter!(EXCEPTED_TOTAL, "component" => c()),
            l2_states: metrics::gauge!(L2_STATES, "component" => c()),
            l2_evictions: EvictReason::ALL
                .iter()
                .map(|reason| metrics::counter!(L2_EVICTIONS_TOTAL, "component" => c(), "reason" => reason.as_str()))
                .collect(),
            l2_late: metrics::counter!(L2_LATE_EVENTS_TOTAL, "component" => c()),
            l2_forced: metrics::counter!(L2_FORCED_EVENTS_TOTAL, "component" => c()),
            l2_partials: metrics::counter!(L2_PARTIALS_DROPPED_TOTAL, "component" => c()),
            l4_chains: metrics::gauge!(L4_CHAINS, "component" => c()),
            l4_dropped: ChainDrop::ALL
                .iter()
                .map(|reason| metrics::counter!(L4_DROPPED_TOTAL, "component" => c(), "reason" => reason.as_str()))
                .collect(),
            l4_late: metrics::counter!(L4_LATE_EVENTS_TOTAL, "component" => c()),
        }
    }
}

/// Engine totals already added to the metrics; reset with the engine.
#[derive(Clone, Copy, Debug, Default)]
struct Reported {
    evictions: [u64; EvictReason::ALL.len()],
    late: u64,
    forced: u64,
    partials: u64,
    excepted: u64,
    l4_dropped: [u64; ChainDrop::ALL.len()],
    l4_late: u64,
}

/// Adds to `counter` what `now` grew by since `*reported`.
fn add_increase(counter: &metrics::Counter, now: u64, reported: &mut u64) {
    if now > *reported {
        counter.increment(now - *reported);
        *reported = now;
    }
}

impl Detect {
    pub fn new(config: DetectConfig, set: Arc<RuleSet>, component: &str) -> Detect {
        let l2_config = L2Config {
            reorder_ns: config.reorder_ms.saturating_mul(1_000_000),
            max_states_per_rule: config.max_states_per_rule,
            max_states_total: config.max_states_total,
        };
        let builtin = config.rules.get_ref().as_os_str() == crate::builtin::BUILTIN;
        let mut l3 = L3Host::new(config.anomaly.clone(), component);
        let mut engine = Engine::new(set, l2_config).with_l3(l3.engine_config(l2_config.reorder_ns));
        l3.start(engine.l3_mut());
        let detect = Detect {
            engine,
            l3,
            l2_config,
            path: config.rules.into_inner(),
            // The built-in pack is fixed per build: nothing to reload.
            reload: (!builtin).then(|| config.watch.then(|| Duration::from_millis(config.watch_interval_ms.max(50)))),
            pass_through: config.pass_through,
            component: Arc::from(component),
            firings: Vec::new(),
            health: None,
            last_batch: Instant::now(),
            max_ts: 0,
            metrics: DetectMetrics::new(component),
            reported: Reported::default(),
        };
        detect.publish_set();
        detect
    }

    /// Metrics and `/health` for the active set.
    fn publish_set(&self) {
        let set = self.engine.set();
        let counts = set.counts();
        self.metrics.rejected.set(set.rejected as f64);
        for (i, layer) in pipeline::DetectionLayer::ALL.iter().enumerate() {
            self.metrics.rules[i].set(counts.get(layer).copied().unwrap_or(0) as f64);
        }
        if let Some(health) = &self.health {
            let per_layer: serde_json::Map<String, serde_json::Value> =
                counts.iter().map(|(l, n)| (l.as_str().to_owned(), serde_json::Value::from(*n))).collect();
            health.set_details(serde_json::json!({
                "ruleset": &*set.digest,
                "rules": per_layer,
                "files": set.files.len(),
                "rejected": set.rejected,
                "path": self.path.display().to_string(),
                "anomaly": self.l3.health(self.engine.l3()),
            }));
        }
    }

    fn emit(&mut self, out: &mut Output) {
        let set = self.engine.set().clone();
        for firing in self.firings.drain(..) {
            let rule = &set.rules[firing.rule];
            let layer = rule.body.layer();
            self.metrics.detections[layer as usize][rule.meta.confidence as usize].increment(1);
            let event_id = out.next_event_id();
            out.push(Event::Detection(Detection {
                meta: EventMeta { ts_ns: firing.ts_ns, event_id },
                process: firing.process,
                rule_id: rule.meta.id.clone(),
                title: rule.meta.title.clone(),
                layer,
                severity: rule.meta.severity,
                confidence: rule.meta.confidence,
                attack: rule.meta.attack.clone(),
                event_ids: firing.event_ids,
                event_kind: firing.event_kind.as_str().into(),
                summary: firing.summary.into(),
                ruleset: set.digest.clone(),
                context: firing.context,
            }));
        }
        self.report_l2();
        self.l3.report(self.engine.l3());
    }

    fn report_l2(&mut self) {
        let stats = self.engine.l2_stats();
        let (m, r) = (&self.metrics, &mut self.reported);
        m.l2_states.set(stats.states as f64);
        for (i, counter) in m.l2_evictions.iter().enumerate() {
            add_increase(counter, stats.by_reason[i], &mut r.evictions[i]);
        }
        add_increase(&m.l2_late, stats.late, &mut r.late);
        add_increase(&m.l2_forced, stats.forced, &mut r.forced);
        add_increase(&m.l2_partials, stats.partials_dropped, &mut r.partials);
        add_increase(&m.excepted, self.engine.excepted, &mut r.excepted);
        let l4 = self.engine.l4_stats();
        m.l4_chains.set(l4.chains as f64);
        for (i, counter) in m.l4_dropped.iter().enumerate() {
            add_increase(counter, l4.by_reason[i], &mut r.l4_dropped[i]);
        }
        add_increase(&m.l4_late, l4.late, &mut r.l4_late);
    }
}

impl Transform for Detect {
    fn process(&mut self, batch: Batch, out: &mut Output) {
        self.last_batch = Instant::now();
        for event in &batch {
            self.max_ts = self.max_ts.max(event.meta().ts_ns);
            self.engine.process(event, &mut self.firings);
        }
        self.emit(out);
        if self.pass_through {
            out.extend(batch);
        } else {
            out.discard(DropReason::Filtered, batch.len());
        }
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(100))
    }

    /// While no events arrive, event time is taken to move on with wall
    /// time (kernel timestamps are the monotonic clock), so what L2 holds
    /// is released one reorder window after it happened rather than when
    /// the next event comes. Only events that could still be put in order
    /// are held back; on a replay at full speed ticks barely matter.
    fn on_tick(&mut self, out: &mut Output) {
        self.l3.tick(self.engine.l3());
        let reorder_ns = self.l2_config.reorder_ns;
        let idle = self.last_batch.elapsed().as_nanos() as u64;
        let upto = self.max_ts.saturating_add(idle).saturating_sub(reorder_ns);
        if idle >= reorder_ns.min(100_000_000) && upto > 0 {
            self.engine.flush(upto, &mut self.firings);
            if !self.firings.is_empty() {
                self.emit(out);
            }
        }
    }

    fn flush(&mut self, out: &mut Output) {
        self.engine.flush(u64::MAX, &mut self.firings);
        self.emit(out);
        self.l3.flush(self.engine.l3());
    }

    fn take_updates(&mut self) -> Option<UpdateReceiver> {
        let interval = self.reload?;
        let (sender, receiver) = update_channel();
        let fingerprint = fingerprint(&self.path);
        spawn_reloader(
            self.path.clone(),
            interval,
            fingerprint,
            self.engine.set().digest.clone(),
            sender,
            self.component.clone(),
        );
        Some(receiver)
    }

    fn apply(&mut self, update: Update, out: &mut Output) {
        let Ok(set) = update.downcast::<Arc<RuleSet>>() else {
            tracing::error!(component = %self.component, "detect: an update of an unexpected type; keeping the rule set");
            return;
        };
        self.engine.flush(u64::MAX, &mut self.firings);
        self.emit(out);
        tracing::info!(component = %self.component, ruleset = %set.digest, rules = set.rules.len(), "detect: rule set swapped in");
        // Baselines belong to models, not to a rule set: the new set's
        // models that the old one had keep theirs.
        let baselines = self.engine.l3().baselines();
        self.engine = Engine::new(*set, self.l2_config).with_l3(self.l3.engine_config(self.l2_config.reorder_ns));
        self.engine.l3_mut().restore(&baselines);
        self.l3.engine_replaced(self.engine.l3());
        // The new engine counts from zero.
        self.reported = Reported::default();
        self.publish_set();
    }

    fn attach_health(&mut self, health: HealthHandle) {
        self.health = Some(health);
        self.publish_set();
    }
}

/// Names, sizes and mtimes of the rule files: cheap to take every second.
fn fingerprint(path: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let Ok(files) = ruleset::rule_files(path) else { return Vec::new() };
    files
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let mtime = meta.and_then(|m| m.modified().ok());
            (f, len, mtime)
        })
        .collect()
}

/// The reloader: a plain thread (loading reads files and compiles
/// automata: never on the runtime), woken by its interval or SIGHUP.
fn spawn_reloader(
    path: PathBuf,
    interval: Option<Duration>,
    mut last: Vec<(PathBuf, u64, Option<SystemTime>)>,
    mut digest: Arc<str>,
    sender: UpdateSender,
    component: Arc<str>,
) {
    let (poke, woken) = mpsc::channel::<()>();
    hangup_pokes(poke);
    let thread_name = format!("detect-reload-{component}");
    let logged = component.clone();
    // Without polling, the thread still wakes now and then to notice that
    // the topology stopped.
    let wait = interval.unwrap_or(Duration::from_secs(5));
    let spawned = std::thread::Builder::new().name(thread_name).spawn(move || loop {
        let hangup = match woken.recv_timeout(wait) {
            Ok(()) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => false,
        };
        if sender.is_closed() {
            return;
        }
        if !hangup && interval.is_none() {
            continue;
        }
        let now = fingerprint(&path);
        if !hangup && now == last {
            continue;
        }
        last = now;
        let loaded = ruleset::load(&path);
        for rejected in loaded.rejected() {
            tracing::warn!(component = %component, "detect: Sigma rule skipped: {rejected}");
        }
        match loaded.set {
            Some(set) if set.digest == digest => {
                metrics::counter!(RELOADS_TOTAL, "component" => component.to_string(), "result" => "unchanged").increment(1);
            }
            Some(set) => {
                digest = set.digest.clone();
                if sender.blocking_send(Box::new(Arc::new(set))).is_err() {
                    return;
                }
                metrics::counter!(RELOADS_TOTAL, "component" => component.to_string(), "result" => "applied").increment(1);
            }
            None => {
                metrics::counter!(RELOADS_TOTAL, "component" => component.to_string(), "result" => "rejected").increment(1);
                for problem in loaded.problems() {
                    tracing::warn!(component = %component, "detect: rule set refused, the old one keeps running: {problem}");
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(component = %logged, error = %e, "detect: cannot start the rules reloader; rules will not reload");
    }
}

/// Forwards SIGHUP to the reloader (when running inside the runtime).
fn hangup_pokes(poke: mpsc::Sender<()>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            if poke.send(()).is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
#[path = "transform/tests.rs"]
mod tests;
