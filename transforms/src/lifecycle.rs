//! `lifecycle`: folds processes that exec and exit within a short window
//! into one `ProcessEphemeralSummary` row per display name and flush
//! interval, so the short-lived processes a periodic scan of `/proc` never
//! sees are still counted (with their CPU time).
//!
//! Matching is by process key (pid + start time, so a reused pid never
//! matches an older process): an exec is remembered; an exit of the same
//! key with `exit.ts - exec.ts <= window` adds one to the row of the exec's
//! display name (`comm`, or the executable's basename when `comm` is empty)
//! and its `cpu_ns` to the row's CPU. An exit without a remembered exec is
//! ignored. A process that execs again is tracked from its latest exec.
//! Remembered execs are forgotten once the newest exec/exit timestamp seen
//! is more than `window` past them (the process is long-lived: procfs sees
//! it), checked at the end of each batch, so order within a batch does not
//! matter. Time is the events' own `ts_ns`, never the clock.
//!
//! Bounds: at most `max_tracked` execs are remembered; beyond that the one
//! with the oldest exec timestamp (then the earliest seen) is evicted and
//! counted. At most `max_names` names get their own row per interval; the
//! processes of further names go into one row named `(other)` (emitted
//! last; a process actually called `(other)` joins it).
//!
//! Rows are emitted on every tick (`interval_secs`) and at shutdown, names
//! in byte order, with ids from the transform's own id space; an interval's
//! `window_start_ns`/`window_end_ns` are the earliest exec and the latest
//! exit folded into it, and `ts_ns` is the latter: the same input, batch by
//! batch and tick by tick, gives the same rows.
//!
//! With `pass_through = true` (the default) every input event is also
//! forwarded unchanged, and rows are extra. With `false`, the exec and exit
//! of every folded pair are consumed: an exec is held back until its process
//! exits (then both are dropped if they fold, else both are forwarded, exec
//! first), it falls out of the window or out of `max_tracked`, or shutdown,
//! and is then forwarded after the events of the batch that released it.
//! Either way this is an aggregating transform: its `sent` counts what it
//! forwards and the rows it makes, not the processes folded into them.
//!
//! ```toml
//! [transforms.ephemeral]
//! type = "lifecycle"
//! inputs = ["ebpf"]
//! window_secs = 5
//! interval_secs = 10
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use pipeline::event::{EventMeta, ProcessEphemeralSummary, ProcessExec, ProcessExit};
use pipeline::{Batch, ComponentOptions, ConfigError, Event, Output, ProcessKey, Transform};
use serde::Deserialize;
use toml::Spanned;

/// `[transforms.NAME] type = "lifecycle"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Longest exec-to-exit time, in seconds, of a process that is folded.
    /// Default 5.
    #[serde(default = "default_window_secs")]
    pub window_secs: Spanned<f64>,
    /// Seconds between emissions of the folded rows. Default 10.
    #[serde(default = "default_interval_secs")]
    pub interval_secs: Spanned<f64>,
    /// Execs remembered at once, waiting for their exit. Default 65536.
    #[serde(default = "default_max_tracked")]
    pub max_tracked: Spanned<i64>,
    /// Names with a row of their own per interval. Default 200.
    #[serde(default = "default_max_names")]
    pub max_names: Spanned<i64>,
    /// Forward every input event unchanged (`true`, default), or consume the
    /// exec and exit of each folded pair (`false`).
    #[serde(default = "default_pass_through")]
    pub pass_through: bool,
}

fn default_window_secs() -> Spanned<f64> {
    Spanned::new(0..0, 5.0)
}

fn default_interval_secs() -> Spanned<f64> {
    Spanned::new(0..0, 10.0)
}

fn default_max_tracked() -> Spanned<i64> {
    Spanned::new(0..0, 65_536)
}

fn default_max_names() -> Spanned<i64> {
    Spanned::new(0..0, 200)
}

fn default_pass_through() -> bool {
    true
}

/// Shortest window and interval accepted (the engine's ticker needs a
/// non-zero period).
pub const MIN_SECS: f64 = 0.001;
/// Longest window and interval accepted.
pub const MAX_SECS: f64 = 86_400.0;
/// Most execs `max_tracked` may remember.
pub const MAX_TRACKED: i64 = 10_000_000;
/// Most names `max_names` may allow per interval.
pub const MAX_NAMES: i64 = 1_000_000;
/// Name of the row of the names beyond `max_names`.
pub const OTHER_NAME: &str = "(other)";

/// Builds a lifecycle transform from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Transform>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: LifecycleConfig, options| {
        Ok(Box::new(Lifecycle::new(config, options)?) as Box<dyn Transform>)
    })
}

/// A configured lifecycle transform: the execs it remembers and the
/// interval it is filling.
#[derive(Debug)]
pub struct Lifecycle {
    window_ns: u64,
    interval: Duration,
    max_tracked: usize,
    max_names: usize,
    pass_through: bool,
    /// Remembered execs by process key.
    live: HashMap<ProcessKey, Tracked>,
    /// The same, oldest first: (exec ts, arrival sequence) → key.
    by_age: BTreeMap<(u64, u64), ProcessKey>,
    next_seq: u64,
    /// Newest exec/exit timestamp seen.
    now_ns: u64,
    /// The interval being filled: one (count, cpu_ns) per name.
    rows: BTreeMap<Arc<str>, (u64, u64)>,
    other: Option<(u64, u64)>,
    /// Earliest exec and latest exit folded this interval.
    bounds: Option<(u64, u64)>,
    other_name: Arc<str>,
    evicted: u64,
    folded: u64,
    folded_into_other: u64,
}

/// A remembered exec.
#[derive(Debug)]
struct Tracked {
    exec_ts: u64,
    seq: u64,
    name: Arc<str>,
    /// The exec event itself, held back when `pass_through` is off.
    held: Option<ProcessExec>,
}

impl Lifecycle {
    /// Checks the configuration; reports every bad key at its location.
    pub fn new(config: LifecycleConfig, options: &ComponentOptions) -> Result<Lifecycle, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut seconds = |value: &Spanned<f64>, key: &str| -> f64 {
            let secs = *value.get_ref();
            if !(MIN_SECS..=MAX_SECS).contains(&secs) {
                errors.push(options.error_at(
                    value.span(),
                    format!("{key} must be a number of seconds from {MIN_SECS} to {MAX_SECS}, got {secs}"),
                ));
            }
            secs.clamp(MIN_SECS, MAX_SECS)
        };
        let window_secs = seconds(&config.window_secs, "window_secs");
        let interval_secs = seconds(&config.interval_secs, "interval_secs");
        let mut count = |value: &Spanned<i64>, key: &str, max: i64| -> usize {
            let n = *value.get_ref();
            if !(1..=max).contains(&n) {
                errors.push(options.error_at(value.span(), format!("{key} must be between 1 and {max}, got {n}")));
            }
            n.clamp(1, max) as usize
        };
        let max_tracked = count(&config.max_tracked, "max_tracked", MAX_TRACKED);
        let max_names = count(&config.max_names, "max_names", MAX_NAMES);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Lifecycle {
            // Rounded, so that 0.013 s is 13 ms exactly.
            window_ns: (window_secs * 1e9).round() as u64,
            interval: Duration::from_secs_f64(interval_secs),
            max_tracked,
            max_names,
            pass_through: config.pass_through,
            live: HashMap::new(),
            by_age: BTreeMap::new(),
            next_seq: 0,
            now_ns: 0,
            rows: BTreeMap::new(),
            other: None,
            bounds: None,
            other_name: Arc::from(OTHER_NAME),
            evicted: 0,
            folded: 0,
            folded_into_other: 0,
        })
    }

    /// Execs forgotten so far because `max_tracked` were remembered.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Exec/exit pairs folded into rows so far.
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// Pairs so far folded into `(other)` because of `max_names`.
    pub fn folded_into_other(&self) -> u64 {
        self.folded_into_other
    }

    /// Execs remembered right now.
    pub fn tracked(&self) -> usize {
        self.live.len()
    }

    /// Remembers the exec of `key` at `exec_ts` (with the event itself in
    /// `held` when `pass_through` is off). Exec events this pushes out (an
    /// earlier exec of the same key, an evicted one) go to `released`.
    fn track(
        &mut self,
        key: ProcessKey,
        exec_ts: u64,
        name: Arc<str>,
        held: Option<ProcessExec>,
        released: &mut Vec<Event>,
    ) {
        self.now_ns = self.now_ns.max(exec_ts);
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(previous) = self.live.insert(key, Tracked { exec_ts, seq, name, held }) {
            self.by_age.remove(&(previous.exec_ts, previous.seq));
            released.extend(previous.held.map(Event::ProcessExec));
        }
        self.by_age.insert((exec_ts, seq), key);
        while self.live.len() > self.max_tracked {
            let Some((_, key)) = self.by_age.pop_first() else { break };
            if let Some(oldest) = self.live.remove(&key) {
                self.evicted += 1;
                released.extend(oldest.held.map(Event::ProcessExec));
            }
        }
    }

    /// Matches an exit against the remembered execs: `Some(true)` when the
    /// pair was folded, `Some(false)` when the exec was remembered but the
    /// process lived longer than the window (its held exec, if any, goes to
    /// `released`), `None` without a remembered exec.
    fn match_exit(&mut self, exit: &ProcessExit, released: &mut Vec<Event>) -> Option<bool> {
        self.now_ns = self.now_ns.max(exit.meta.ts_ns);
        let tracked = self.live.remove(&exit.process)?;
        self.by_age.remove(&(tracked.exec_ts, tracked.seq));
        if exit.meta.ts_ns.saturating_sub(tracked.exec_ts) > self.window_ns {
            released.extend(tracked.held.map(Event::ProcessExec));
            return Some(false);
        }
        self.fold(&tracked, exit);
        Some(true)
    }

    fn fold(&mut self, tracked: &Tracked, exit: &ProcessExit) {
        self.folded += 1;
        self.bounds = Some(match self.bounds {
            None => (tracked.exec_ts, exit.meta.ts_ns),
            Some((start, end)) => (start.min(tracked.exec_ts), end.max(exit.meta.ts_ns)),
        });
        let has_room = self.rows.len() < self.max_names && *tracked.name != *OTHER_NAME;
        let row = match self.rows.get_mut(&tracked.name) {
            Some(row) => row,
            None if has_room => self.rows.entry(Arc::clone(&tracked.name)).or_insert((0, 0)),
            None => {
                self.folded_into_other += 1;
                self.other.get_or_insert((0, 0))
            }
        };
        row.0 += 1;
        row.1 = row.1.saturating_add(exit.cpu_ns);
    }

    /// Forgets the execs more than `window` older than the newest
    /// timestamp seen, releasing their held events.
    fn expire(&mut self, released: &mut Vec<Event>) {
        while let Some((&(exec_ts, _), _)) = self.by_age.first_key_value() {
            if self.now_ns.saturating_sub(exec_ts) <= self.window_ns {
                break;
            }
            let Some((_, key)) = self.by_age.pop_first() else { break };
            if let Some(tracked) = self.live.remove(&key) {
                released.extend(tracked.held.map(Event::ProcessExec));
            }
        }
    }

    /// Emits the interval's rows and starts a new interval.
    fn emit_interval(&mut self, out: &mut Output) {
        let Some((window_start_ns, window_end_ns)) = self.bounds.take() else { return };
        let rows = std::mem::take(&mut self.rows);
        let other = self.other.take().map(|row| (Arc::clone(&self.other_name), row));
        for (name, (count, cpu_ns)) in rows.into_iter().chain(other) {
            let event_id = out.next_event_id();
            out.push(Event::ProcessEphemeral(ProcessEphemeralSummary {
                meta: EventMeta { ts_ns: window_end_ns, event_id },
                window_start_ns,
                window_end_ns,
                name,
                count,
                cpu_ns,
            }));
        }
    }
}

/// `comm`, or the executable's basename when `comm` is empty.
fn display_name(exec: &ProcessExec) -> Arc<str> {
    if exec.comm.is_empty() {
        Arc::from(exec.exe.rsplit('/').next().unwrap_or_default())
    } else {
        Arc::clone(&exec.comm)
    }
}

impl Transform for Lifecycle {
    fn process(&mut self, batch: Batch, out: &mut Output) {
        let mut released = Vec::new();
        if self.pass_through {
            for event in &batch {
                match event {
                    Event::ProcessExec(exec) => {
                        self.track(exec.process, exec.meta.ts_ns, display_name(exec), None, &mut released)
                    }
                    Event::ProcessExit(exit) => {
                        self.match_exit(exit, &mut released);
                    }
                    _ => {}
                }
            }
            self.expire(&mut released);
            out.extend(batch);
            return;
        }
        let mut kept = Vec::with_capacity(batch.len());
        for event in batch {
            match event {
                Event::ProcessExec(exec) => {
                    let (key, exec_ts, name) = (exec.process, exec.meta.ts_ns, display_name(&exec));
                    self.track(key, exec_ts, name, Some(exec), &mut kept);
                }
                Event::ProcessExit(exit) => match self.match_exit(&exit, &mut kept) {
                    Some(true) => {}
                    Some(false) | None => kept.push(Event::ProcessExit(exit)),
                },
                other => kept.push(other),
            }
        }
        self.expire(&mut released);
        out.extend(kept);
        out.extend(released);
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.interval)
    }

    fn on_tick(&mut self, out: &mut Output) {
        self.emit_interval(out);
    }

    fn flush(&mut self, out: &mut Output) {
        // Held execs first (they happened before the rows' window ends),
        // oldest first.
        let by_age = std::mem::take(&mut self.by_age);
        for key in by_age.into_values() {
            if let Some(held) = self.live.remove(&key).and_then(|tracked| tracked.held) {
                out.push(Event::ProcessExec(held));
            }
        }
        self.live.clear();
        self.emit_interval(out);
    }
}

#[cfg(test)]
mod tests;
