//! The `detect` transform's side of L3: its `anomaly` options, the
//! baseline file loaded at start and saved on ticks and at shutdown, the
//! L3 metrics (handles registered once) and the `/health` detail. Kept
//! here so the transform only calls it at its four moments: build, batch,
//! tick and flush.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::persist::{self, AnomalyConfig, LoadError, Saver};
use super::{L3Config, L3Engine};

/// L3 entities held now.
pub const L3_ENTITIES: &str = "hostflow_detect_l3_entities";
/// L3 entities evicted to stay within `max_entities`.
pub const L3_EVICTIONS_TOTAL: &str = "hostflow_detect_l3_evictions_total";
/// L3 baselines held now, by `state`: `learning` (warming up), `ready`
/// (scoring, still learning), `frozen` (`learn = false`).
pub const L3_BASELINES: &str = "hostflow_detect_l3_baselines";
/// Events that reached L3 after its reorder window had passed them.
pub const L3_LATE_EVENTS_TOTAL: &str = "hostflow_detect_l3_late_events_total";
/// Events L3 processed before their reorder window closed (its buffer
/// was full).
pub const L3_FORCED_EVENTS_TOTAL: &str = "hostflow_detect_l3_forced_events_total";
/// Baseline files that could not be used, by `reason` (unreadable,
/// corrupt, version, domains).
pub const L3_LOAD_FAILURES_TOTAL: &str = "hostflow_detect_l3_baseline_load_failures_total";
/// Baseline saves, by `result` (`ok`, `failed`).
pub const L3_SAVES_TOTAL: &str = "hostflow_detect_l3_baseline_saves_total";

#[derive(Debug)]
struct Metrics {
    entities: metrics::Gauge,
    evictions: metrics::Counter,
    /// learning, ready, frozen.
    baselines: [metrics::Gauge; 3],
    late: metrics::Counter,
    forced: metrics::Counter,
    saves_ok: metrics::Counter,
    saves_failed: metrics::Counter,
}

/// Engine and saver totals already added to the metrics.
#[derive(Clone, Copy, Debug, Default)]
struct Reported {
    evicted: u64,
    late: u64,
    forced: u64,
    saves_ok: u64,
    saves_failed: u64,
}

/// L3's options, files and metrics for one `detect` transform.
#[derive(Debug)]
pub struct L3Host {
    config: AnomalyConfig,
    component: Arc<str>,
    state_file: Option<PathBuf>,
    saver: Option<Saver>,
    interval: Duration,
    last_save: Instant,
    /// The engine's `folds` at the last save (nothing new: no save).
    saved_folds: u64,
    /// What loading at start found, for `/health`.
    load: serde_json::Value,
    metrics: Metrics,
    reported: Reported,
}

impl L3Host {
    pub fn new(config: AnomalyConfig, component: &str) -> L3Host {
        let c = || component.to_owned();
        let metrics = Metrics {
            entities: metrics::gauge!(L3_ENTITIES, "component" => c()),
            evictions: metrics::counter!(L3_EVICTIONS_TOTAL, "component" => c()),
            baselines: ["learning", "ready", "frozen"]
                .map(|state| metrics::gauge!(L3_BASELINES, "component" => c(), "state" => state)),
            late: metrics::counter!(L3_LATE_EVENTS_TOTAL, "component" => c()),
            forced: metrics::counter!(L3_FORCED_EVENTS_TOTAL, "component" => c()),
            saves_ok: metrics::counter!(L3_SAVES_TOTAL, "component" => c(), "result" => "ok"),
            saves_failed: metrics::counter!(L3_SAVES_TOTAL, "component" => c(), "result" => "failed"),
        };
        L3Host {
            state_file: config.state_dir.as_ref().map(|d| d.join(persist::FILE_NAME)),
            interval: Duration::from_secs(config.save_interval_secs.max(1)),
            config,
            component: Arc::from(component),
            saver: None,
            last_save: Instant::now(),
            saved_folds: 0,
            load: serde_json::Value::Null,
            metrics,
            reported: Reported::default(),
        }
    }

    /// The engine's L3 bounds for a reorder window.
    pub fn engine_config(&self, reorder_ns: u64) -> L3Config {
        L3Config {
            reorder_ns,
            learn: self.config.learn,
            warmup_events: self.config.warmup_events,
            warmup_windows: self.config.warmup_windows,
            max_entities: self.config.max_entities,
        }
    }

    /// Loads the state file (else the import) into `engine`; reports what
    /// could not be used (log, counter, `/health`) and carries on.
    pub fn start(&mut self, engine: &mut L3Engine) {
        let loaded = persist::load_at_start(&self.config);
        let mut tried = Vec::new();
        for (path, result) in &loaded.report {
            match result {
                Ok(n) => tried.push(serde_json::json!({"file": path.display().to_string(), "baselines": n})),
                Err(e) => {
                    tracing::warn!(component = %self.component, error = %e, "detect: L3 baselines not loaded; relearning");
                    self.count_failure(e);
                    tried.push(serde_json::json!({"file": path.display().to_string(), "error": e.to_string(), "reason": e.reason()}));
                }
            }
        }
        let restored = loaded.baselines.as_ref().map_or(0, |b| engine.restore(b));
        if restored > 0 {
            tracing::info!(component = %self.component, baselines = restored, "detect: L3 baselines loaded");
        }
        // Baselines from the import are not in the state dir yet: due at
        // the first save.
        let from_state = loaded.report.last().is_some_and(|(p, r)| r.is_ok() && Some(p) == self.state_file.as_ref());
        self.saved_folds = if restored > 0 && !from_state { u64::MAX } else { engine.stats().folds };
        self.load = serde_json::json!({"restored": restored, "files": tried});
    }

    fn count_failure(&self, error: &LoadError) {
        metrics::counter!(L3_LOAD_FAILURES_TOTAL, "component" => self.component.to_string(), "reason" => error.reason())
            .increment(1);
    }

    /// The `/health` detail.
    pub fn health(&self, engine: &L3Engine) -> serde_json::Value {
        let stats = engine.stats();
        serde_json::json!({
            "learn": self.config.learn,
            "state_file": self.state_file.as_ref().map(|p| p.display().to_string()),
            "entities": stats.entities,
            "baselines": stats.baselines,
            "ready": stats.ready,
            "load": self.load,
        })
    }

    /// Metrics from the engine's totals (after each batch).
    pub fn report(&mut self, engine: &L3Engine) {
        let stats = engine.stats();
        let (m, r) = (&self.metrics, &mut self.reported);
        m.entities.set(stats.entities as f64);
        let learning = stats.baselines - stats.ready.min(stats.baselines);
        let by_state = if self.config.learn { [learning, stats.ready, 0] } else { [0, 0, stats.baselines] };
        for (gauge, n) in m.baselines.iter().zip(by_state) {
            gauge.set(n as f64);
        }
        add_increase(&m.evictions, stats.evicted, &mut r.evicted);
        add_increase(&m.late, stats.late, &mut r.late);
        add_increase(&m.forced, stats.forced, &mut r.forced);
        if let Some(saver) = &self.saver {
            add_increase(&m.saves_ok, saver.counters.ok.load(Ordering::Relaxed), &mut r.saves_ok);
            add_increase(&m.saves_failed, saver.counters.failed.load(Ordering::Relaxed), &mut r.saves_failed);
        }
    }

    /// A new engine (a swapped rule set) counts from zero.
    pub fn engine_replaced(&mut self, engine: &L3Engine) {
        let saves = (self.reported.saves_ok, self.reported.saves_failed);
        self.reported = Reported { saves_ok: saves.0, saves_failed: saves.1, ..Reported::default() };
        // What the old engine learned since the last save is in the new
        // one (carried over): due at the next tick.
        self.saved_folds = u64::MAX;
        self.report(engine);
    }

    /// Saves every `save_interval_secs` when something was learned since
    /// the last save (off the task: the writer thread writes).
    pub fn tick(&mut self, engine: &L3Engine) {
        if self.state_file.is_none() || self.last_save.elapsed() < self.interval {
            return;
        }
        let folds = engine.stats().folds;
        if folds == self.saved_folds {
            return;
        }
        let Some(saver) = self.saver() else { return };
        if saver.offer(engine.baselines()) {
            self.saved_folds = folds;
            self.last_save = Instant::now();
        }
    }

    /// Saves once more and waits for the write (shutdown).
    pub fn flush(&mut self, engine: &L3Engine) {
        if self.state_file.is_none() || (engine.stats().folds == self.saved_folds && self.saver.is_none()) {
            return;
        }
        let Some(saver) = self.saver() else { return };
        if saver.save_and_wait(engine.baselines()).is_ok() {
            self.saved_folds = engine.stats().folds;
        }
        self.report(engine);
    }

    /// The writer thread, started on the first save.
    fn saver(&mut self) -> Option<&Saver> {
        if self.saver.is_none() {
            let path = self.state_file.clone()?;
            match Saver::spawn(path, self.component.clone()) {
                Ok(saver) => self.saver = Some(saver),
                Err(e) => {
                    tracing::error!(component = %self.component, error = %e, "detect: cannot start the L3 baseline writer");
                    return None;
                }
            }
        }
        self.saver.as_ref()
    }
}

/// Adds to `counter` what `now` grew by since `*reported`.
fn add_increase(counter: &metrics::Counter, now: u64, reported: &mut u64) {
    if now > *reported {
        counter.increment(now - *reported);
        *reported = now;
    }
}
