//! `sketch`: folds process samples into one quantile sketch per metric ×
//! key and emits them every window, so a remote merger gets p50/p95/p99 of
//! cpu% and RSS per display name (and host-wide) in a few hundred bytes.
//!
//! This is an aggregating transform: `ProcessSample` events are folded in
//! and **not** passed on, so its `sent` counts the sketches it emits (plus
//! every other kind of event, which passes through unchanged). Each window
//! emits one `SketchEvent` per (metric, key) that saw a value, metric by
//! metric (`process.cpu_percent`, then `process.rss_bytes`), keys in a
//! fixed order: `*` (host-wide), display names in byte order, then
//! `~other` (names beyond `max_keys`). A window's bounds are the first
//! and last timestamps of the samples folded into it, never the clock, and
//! the event ids come from the transform's own id space in emission order:
//! the same input gives identical sketches.
//!
//! The sketch is a [`LogSketch`]; its default γ = 2^(1/64) (α ≈ 0.54 %)
//! makes the bins OpenTelemetry scale-6 buckets. A `relative_accuracy`
//! of 0.0075 is the accuracy spec's "0.75 %".
//!
//! ```toml
//! [transforms.dist]
//! type = "sketch"
//! inputs = ["procfs"]
//! window_secs = 60
//! metrics = ["cpu_percent", "rss_bytes"]
//! per_name = true
//! top_names = 20   # optional: per-name sketches for the 20 heaviest names only
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use metrics::Counter;
use pipeline::event::{EventMeta, ProcessSample, SketchEvent};
use pipeline::metrics::names;
use pipeline::sketch::LogSketch;
use pipeline::{Batch, ComponentOptions, ConfigError, Event, Output, Transform};
use serde::Deserialize;
use toml::Spanned;

/// `[transforms.NAME] type = "sketch"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SketchConfig {
    /// Seconds per window (from 1 ms to a day). Default 60.
    #[serde(default = "default_window_secs")]
    pub window_secs: Spanned<f64>,
    /// Relative accuracy α of the quantiles, in (0, 1). Absent: γ = 2^(1/64)
    /// (α ≈ 0.54 %), whose bins map onto an OpenTelemetry exponential
    /// histogram at scale 6 without re-bucketing.
    #[serde(default)]
    pub relative_accuracy: Option<Spanned<f64>>,
    /// What to sketch: `cpu_percent`, `rss_bytes`. Default: both.
    #[serde(default)]
    pub metrics: Option<Spanned<Vec<Spanned<String>>>>,
    /// One sketch per display name as well as the host-wide `*` one.
    /// `false`: host-wide only.
    #[serde(default = "default_per_name")]
    pub per_name: bool,
    /// Display names sketched separately per window; the samples of further
    /// names are folded into key `~other`. Default 10000.
    #[serde(default = "default_max_keys")]
    pub max_keys: Spanned<i64>,
    /// Emit per-name sketches only for the heaviest `top_names` names of
    /// each window (by summed cpu%, then summed RSS, then name) and merge
    /// the rest into `~other`. Absent: every name. Each per-name sketch
    /// costs ~170 bytes on the wire per metric and window, so on hosts with
    /// hundreds of process names this is the knob that bounds sketch bytes.
    #[serde(default)]
    pub top_names: Option<Spanned<i64>>,
}

fn default_window_secs() -> Spanned<f64> {
    Spanned::new(0..0, 60.0)
}

fn default_per_name() -> bool {
    true
}

fn default_max_keys() -> Spanned<i64> {
    Spanned::new(0..0, 10_000)
}

/// Shortest window accepted: the engine's ticker needs a non-zero period,
/// and a validated topology must start without panicking.
pub const MIN_WINDOW_SECS: f64 = 0.001;
/// Longest window accepted.
pub const MAX_WINDOW_SECS: f64 = 86_400.0;
/// Most display names accepted for `max_keys`.
pub const MAX_KEYS: i64 = 1_000_000;
/// Key of the host-wide sketches.
pub const HOST_KEY: &str = "*";
/// Key of the sketches of names beyond `max_keys` (and of processes whose
/// display name is itself a reserved key).
pub const OTHER_KEY: &str = "~other";

/// A metric a sketch can be kept of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metric {
    CpuPercent,
    RssBytes,
}

impl Metric {
    /// Every metric, in emission order.
    const ALL: [Metric; 2] = [Metric::CpuPercent, Metric::RssBytes];

    /// Name in the configuration.
    fn config_name(self) -> &'static str {
        match self {
            Metric::CpuPercent => "cpu_percent",
            Metric::RssBytes => "rss_bytes",
        }
    }

    /// `metric_name` on the wire.
    fn wire_name(self) -> &'static str {
        match self {
            Metric::CpuPercent => "process.cpu_percent",
            Metric::RssBytes => "process.rss_bytes",
        }
    }

    fn value(self, sample: &ProcessSample) -> f64 {
        match self {
            Metric::CpuPercent => sample.cpu_percent,
            Metric::RssBytes => sample.rss_bytes as f64,
        }
    }
}

/// Builds a sketch transform from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Transform>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: SketchConfig, options| {
        Ok(Box::new(Sketch::new(config, options)?) as Box<dyn Transform>)
    })
}

/// A configured sketch transform and the window it is filling.
#[derive(Debug)]
pub struct Sketch {
    window: Duration,
    per_name: bool,
    max_keys: usize,
    top_names: Option<usize>,
    /// The configured metrics, in [`Metric::ALL`] order, with their wire names.
    metrics: Vec<(Metric, Arc<str>)>,
    /// An empty sketch with the configured γ.
    empty: LogSketch,
    host_key: Arc<str>,
    other_key: Arc<str>,
    /// One sketch per configured metric, for each key.
    host: Vec<LogSketch>,
    by_name: BTreeMap<Arc<str>, Vec<LogSketch>>,
    other: Option<Vec<LogSketch>>,
    /// First and last sample timestamps of the window; `None` while empty.
    window_bounds: Option<(u64, u64)>,
    rejected_values: u64,
    folded_into_other: u64,
    flushed: Counter,
}

impl Sketch {
    /// Checks the configuration; reports every bad key at its location.
    pub fn new(config: SketchConfig, options: &ComponentOptions) -> Result<Sketch, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let window_secs = *config.window_secs.get_ref();
        if !(MIN_WINDOW_SECS..=MAX_WINDOW_SECS).contains(&window_secs) {
            errors.push(options.error_at(
                config.window_secs.span(),
                format!(
                    "window_secs must be a number of seconds from {MIN_WINDOW_SECS} to {MAX_WINDOW_SECS}, got {window_secs}"
                ),
            ));
        }
        let empty = match &config.relative_accuracy {
            None => LogSketch::default(),
            Some(alpha) => LogSketch::with_relative_accuracy(*alpha.get_ref()).unwrap_or_else(|error| {
                errors.push(options.error_at(alpha.span(), error.to_string()));
                LogSketch::default()
            }),
        };
        let metrics = match &config.metrics {
            None => Metric::ALL.to_vec(),
            Some(names) => metrics_from(names, options, &mut errors),
        };
        let max_keys = *config.max_keys.get_ref();
        if !(1..=MAX_KEYS).contains(&max_keys) {
            errors.push(options.error_at(
                config.max_keys.span(),
                format!("max_keys must be between 1 and {MAX_KEYS}, got {max_keys}"),
            ));
        }
        let top_names = config.top_names.as_ref().map(|top| {
            let value = *top.get_ref();
            if !(1..=MAX_KEYS).contains(&value) {
                errors.push(
                    options.error_at(top.span(), format!("top_names must be between 1 and {MAX_KEYS}, got {value}")),
                );
            }
            value.clamp(1, MAX_KEYS) as usize
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Sketch {
            window: Duration::from_secs_f64(window_secs),
            per_name: config.per_name,
            max_keys: max_keys as usize,
            top_names,
            host: vec![empty.clone(); metrics.len()],
            metrics: metrics.into_iter().map(|metric| (metric, Arc::from(metric.wire_name()))).collect(),
            empty,
            host_key: Arc::from(HOST_KEY),
            other_key: Arc::from(OTHER_KEY),
            by_name: BTreeMap::new(),
            other: None,
            window_bounds: None,
            rejected_values: 0,
            folded_into_other: 0,
            flushed: metrics::counter!(names::SKETCH_FLUSHED_SKETCHES_TOTAL, "component" => options.component.clone()),
        })
    }

    /// Values refused so far because they were NaN or infinite.
    pub fn rejected_values(&self) -> u64 {
        self.rejected_values
    }

    /// Samples so far recorded under `~other` (names beyond `max_keys`).
    pub fn folded_into_other(&self) -> u64 {
        self.folded_into_other
    }

    fn fold(&mut self, sample: &ProcessSample) {
        let ts_ns = sample.meta.ts_ns;
        self.window_bounds = Some(match self.window_bounds {
            None => (ts_ns, ts_ns),
            Some((start, end)) => (start.min(ts_ns), end.max(ts_ns)),
        });
        let mut values = [0.0; Metric::ALL.len()];
        for (value, (metric, _)) in values.iter_mut().zip(&self.metrics) {
            *value = metric.value(sample);
        }
        for (sketch, &value) in self.host.iter_mut().zip(&values) {
            if !sketch.add(value) {
                self.rejected_values += 1;
            }
        }
        if !self.per_name {
            return;
        }
        let name = &sample.name;
        let n_metrics = self.metrics.len();
        let has_room = self.by_name.len() < self.max_keys && &**name != HOST_KEY && &**name != OTHER_KEY;
        let sketches = if has_room || self.by_name.contains_key(&**name) {
            self.by_name.entry(Arc::clone(name)).or_insert_with(|| vec![self.empty.clone(); n_metrics])
        } else {
            self.folded_into_other += 1;
            self.other.get_or_insert_with(|| vec![self.empty.clone(); n_metrics])
        };
        for (sketch, &value) in sketches.iter_mut().zip(&values) {
            sketch.add(value);
        }
    }

    /// Emits the window's sketches and starts a new window.
    fn emit_window(&mut self, out: &mut Output) {
        let Some((window_start_ns, window_end_ns)) = self.window_bounds.take() else { return };
        let mut host = std::mem::replace(&mut self.host, vec![self.empty.clone(); self.metrics.len()]);
        let mut by_name = std::mem::take(&mut self.by_name);
        let mut other = self.other.take();
        if let Some(top_names) = self.top_names {
            self.keep_heaviest(top_names, &mut by_name, &mut other);
        }
        let mut n_emitted = 0u64;
        for (position, (_, metric_name)) in self.metrics.iter().enumerate() {
            let keyed = iter_keys(&self.host_key, &mut host, &mut by_name, &self.other_key, other.as_mut());
            for (key, sketches) in keyed {
                let sketch = std::mem::take(&mut sketches[position]);
                if sketch.is_empty() {
                    continue;
                }
                let event_id = out.next_event_id();
                out.push(Event::Sketch(SketchEvent {
                    meta: EventMeta { ts_ns: window_end_ns, event_id },
                    metric_name: Arc::clone(metric_name),
                    key: Arc::clone(key),
                    window_start_ns,
                    window_end_ns,
                    sketch,
                }));
                n_emitted += 1;
            }
        }
        self.flushed.increment(n_emitted);
    }
}

impl Sketch {
    /// Keeps the `top_names` heaviest names and merges every other name's
    /// sketches into `~other` (merging is exact: same γ, bins add up).
    fn keep_heaviest(
        &mut self,
        top_names: usize,
        by_name: &mut BTreeMap<Arc<str>, Vec<LogSketch>>,
        other: &mut Option<Vec<LogSketch>>,
    ) {
        if by_name.len() <= top_names {
            return;
        }
        // Weight: the sums of each metric, in emission order (cpu% first).
        let mut ranked: Vec<(Vec<f64>, Arc<str>)> = by_name
            .iter()
            .map(|(name, sketches)| (sketches.iter().map(LogSketch::sum).collect(), Arc::clone(name)))
            .collect();
        ranked.sort_by(|(a_weight, a_name), (b_weight, b_name)| {
            let by_weight = a_weight.iter().zip(b_weight).map(|(a, b)| b.total_cmp(a)).find(|o| o.is_ne());
            by_weight.unwrap_or(std::cmp::Ordering::Equal).then_with(|| a_name.cmp(b_name))
        });
        let n_metrics = self.metrics.len();
        for (_, name) in ranked.into_iter().skip(top_names) {
            let Some(sketches) = by_name.remove(&name) else { continue };
            let merged = other.get_or_insert_with(|| vec![self.empty.clone(); n_metrics]);
            self.folded_into_other += sketches.first().map_or(0, LogSketch::count);
            for (into, sketch) in merged.iter_mut().zip(&sketches) {
                // Same γ by construction (every sketch starts as `self.empty`).
                let _ = into.merge(sketch);
            }
        }
    }
}

/// The keys of a window in emission order: `*`, names in byte order, `~other`.
fn iter_keys<'a>(
    host_key: &'a Arc<str>,
    host: &'a mut Vec<LogSketch>,
    by_name: &'a mut BTreeMap<Arc<str>, Vec<LogSketch>>,
    other_key: &'a Arc<str>,
    other: Option<&'a mut Vec<LogSketch>>,
) -> impl Iterator<Item = (&'a Arc<str>, &'a mut Vec<LogSketch>)> {
    std::iter::once((host_key, host)).chain(by_name.iter_mut()).chain(other.map(|other| (other_key, other)))
}

/// Resolves the configured metric names; unknown, repeated or no names are
/// errors at their location.
fn metrics_from(
    names: &Spanned<Vec<Spanned<String>>>,
    options: &ComponentOptions,
    errors: &mut Vec<ConfigError>,
) -> Vec<Metric> {
    let known: Vec<&str> = Metric::ALL.iter().map(|metric| metric.config_name()).collect();
    let mut chosen = Vec::new();
    for name in names.get_ref() {
        match Metric::ALL.into_iter().find(|metric| metric.config_name() == name.get_ref()) {
            Some(metric) if chosen.contains(&metric) => {
                errors.push(options.error_at(name.span(), format!("metric `{}` is listed twice", name.get_ref())));
            }
            Some(metric) => chosen.push(metric),
            None => {
                let mut error = options.error_at(
                    name.span(),
                    format!("unknown metric `{}`; known metrics: {}", name.get_ref(), known.join(", ")),
                );
                if let Some(near) = pipeline::config::closest(name.get_ref(), known.iter().copied()) {
                    error = error.with_hint(format!("did you mean `{near}`?"));
                }
                errors.push(error);
            }
        }
    }
    if names.get_ref().is_empty() {
        errors.push(options.error_at(names.span(), "metrics lists no metric; nothing would be sketched"));
    }
    // Emission order is fixed, whatever the order in the file.
    chosen.sort_by_key(|metric| Metric::ALL.iter().position(|m| m == metric));
    chosen
}

impl Transform for Sketch {
    fn process(&mut self, mut batch: Batch, out: &mut Output) {
        batch.retain(|event| match event {
            Event::ProcessSample(sample) => {
                self.fold(sample);
                false
            }
            _ => true,
        });
        out.extend(batch);
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.window)
    }

    fn on_tick(&mut self, out: &mut Output) {
        self.emit_window(out);
    }

    fn flush(&mut self, out: &mut Output) {
        self.emit_window(out);
    }
}

#[cfg(test)]
mod tests;
