//! L3: anomaly detection against learned per-entity baselines (issue #16;
//! DESIGN §6).
//!
//! An *entity* is an executable (`exe`, from the event's process context)
//! or an executable under a parent executable (`exe_parent`, the parent
//! being `context.ancestry[0]`). A *model* is what rules that agree on
//! `(entity, feature, kinds, window)` share: per entity, a baseline and the
//! current window. Events carrying no context (or an empty exe) are not
//! read.
//!
//! Choices, in one place:
//! - **Order.** Every event L3 reads goes through a reorder buffer
//!   ([`reorder`]) and is processed in `(ts_ns, event_id)` order once the
//!   watermark passes it, so a shuffle within the reorder window gives the
//!   same firings. Windows are aligned to multiples of the rule's window in
//!   event time; wall time is never read.
//! - **Features.** `kinds`, `port_class`, `path_prefix`: a distribution
//!   over a fixed domain ([`domain`]), counted in fixed arrays, scored by
//!   smoothed KL divergence of the window against the baseline
//!   ([`score::kl`]). `rate`: the window's event count against the
//!   median and MAD of the baseline's per-window counts (the newest
//!   [`RATE_BUCKETS`] windows that held an event: an idle window is not
//!   a data point — the question is "how busy is it when it runs"), scored
//!   by robust z ([`score::robust_z`]); only spikes fire.
//! - **Scoring.** A window is scored on each event once it holds the rule's
//!   `min_events`, and only when the baseline is warm: at least
//!   `warmup_events` events over at least `warmup_windows` distinct
//!   windows (so at least `warmup_windows − 1` windows of event time).
//!   A rule fires at most once per window and entity (suppression: a
//!   drifting entity fires once a window, not once an event).
//! - **Learning.** When a window closes (the entity's next event falls in a
//!   later window) it is folded into the baseline, unless some rule fired
//!   on it (an anomaly is not learned) or learning is frozen
//!   (`learn = false`: baselines never change and no new entity is taken
//!   on). Baselines stay bounded: past [`MAX_BASELINE_EVENTS`] the counts
//!   are halved, so old behaviour fades slowly and numbers stay exact.
//! - **Caps.** At most `max_entities` entities (over both entity types)
//!   are held. Taking one more evicts the oldest sixteenth (at least one)
//!   by last event time, ties by `(key, entity type)`: counted, and
//!   deterministic. A baseline loaded from a file counts as last seen at
//!   time 0 until its entity shows up again (event time restarts on
//!   boot).
//! - **Firings** carry the newest [`MAX_FIRING_IDS`] event ids of the
//!   window, the event that tipped it, and a summary with the score and
//!   the bins that drove it.
//! - **Persistence** ([`persist`]): baselines (not windows) are saved and
//!   loaded as a versioned JSON file that names its domains.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

use pipeline::event::ProcessContext;
use pipeline::{Event, EventKind, ProcessKey};

use crate::firing::Firing;
use crate::rule::{Anomaly, Entity, Feature, KindSet};

pub mod domain;
mod host;
pub mod persist;
mod reorder;
pub mod score;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_persist;

use domain::{MAX_BINS, NONE};
pub use host::L3Host;
use reorder::Reorder;

/// Per-window counts a `rate` baseline keeps (the newest active windows).
pub const RATE_BUCKETS: usize = 64;
/// Event ids a firing carries (the window's newest).
pub const MAX_FIRING_IDS: usize = 8;
/// Baseline events beyond which counts are halved.
pub const MAX_BASELINE_EVENTS: u64 = 1 << 24;
/// Summary bins named per distribution firing.
const DRIVERS: usize = 3;
/// "No window yet".
const NO_BUCKET: u64 = u64::MAX;

/// Bounds and learning of the L3 engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L3Config {
    /// How far out of order events may arrive (the transform passes L2's).
    pub reorder_ns: u64,
    /// Fold windows into baselines and take on new entities.
    pub learn: bool,
    pub warmup_events: u64,
    pub warmup_windows: u32,
    pub max_entities: usize,
}

impl Default for L3Config {
    fn default() -> L3Config {
        L3Config { reorder_ns: 2_000_000_000, learn: true, warmup_events: 200, warmup_windows: 5, max_entities: 4096 }
    }
}

/// What [`L3Engine::stats`] reports (counters are totals since `new`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L3Stats {
    /// Entities held now (both entity types).
    pub entities: usize,
    /// Entities evicted to stay within `max_entities`.
    pub evicted: u64,
    /// Baselines held now (an entity has one per model of its type)…
    pub baselines: usize,
    /// …of which warm (scoring).
    pub ready: usize,
    /// Events held in the reorder buffer now.
    pub held: usize,
    pub late: u64,
    pub forced: u64,
    /// Windows folded into baselines (a change to save).
    pub folds: u64,
}

/// Who a baseline belongs to: the executable, and the parent's for
/// `exe_parent` (`""` for `exe`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityKey {
    pub exe: Arc<str>,
    pub parent: Arc<str>,
}

/// What identifies a model (and its baselines in a file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelKey {
    pub entity: Entity,
    pub feature: Feature,
    /// Bits of defined kinds only.
    pub kinds: u64,
    pub window_ns: u64,
}

/// A learned baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    /// Events folded in (after halvings).
    pub events: u64,
    /// Windows folded in.
    pub windows: u32,
    /// Per bin (distribution features).
    pub counts: [u64; MAX_BINS],
    /// Per-window counts, oldest first (`rate`).
    pub rates: VecDeque<u32>,
    median: f64,
    mad: f64,
}

impl Default for Baseline {
    fn default() -> Baseline {
        Baseline { events: 0, windows: 0, counts: [0; MAX_BINS], rates: VecDeque::new(), median: 0.0, mad: 0.0 }
    }
}

impl Baseline {
    /// Recomputes what is derived from the rates.
    fn refresh(&mut self) {
        let rates: Vec<u32> = self.rates.iter().copied().collect();
        (self.median, self.mad) = score::median_mad(&rates);
    }

    /// `(median, MAD)` of the per-window counts (`rate`).
    pub fn median_mad(&self) -> (f64, f64) {
        (self.median, self.mad)
    }
}

struct RuleRef {
    index: usize,
    threshold: f64,
    min_events: u64,
}

struct Model {
    key: ModelKey,
    /// Bins of the feature's domain.
    bins: usize,
    rules: Vec<RuleRef>,
    /// Index of the table of its entity type, and of its state in a slot.
    table: usize,
    pos: usize,
}

/// One entity's state in one model.
#[derive(Clone, Debug)]
struct State {
    bucket: u64,
    win: [u32; MAX_BINS],
    win_n: u32,
    ids: [u64; MAX_FIRING_IDS],
    ids_n: usize,
    /// Bit `i`: the model's rule `i` fired in this window.
    fired: u64,
    base: Baseline,
}

impl State {
    fn new() -> State {
        State {
            bucket: NO_BUCKET,
            win: [0; MAX_BINS],
            win_n: 0,
            ids: [0; MAX_FIRING_IDS],
            ids_n: 0,
            fired: 0,
            base: Baseline::default(),
        }
    }

    /// The window's newest event ids, oldest first.
    fn event_ids(&self) -> Vec<u64> {
        let n = self.ids_n.min(MAX_FIRING_IDS);
        let start = self.ids_n - n;
        (start..self.ids_n).map(|i| self.ids[i % MAX_FIRING_IDS]).collect()
    }
}

struct Slot {
    key: EntityKey,
    last_seen: u64,
    states: Vec<State>,
}

struct Table {
    entity: Entity,
    /// Models of this entity type, in model order.
    models: Vec<usize>,
    kinds: KindSet,
    /// Lookups only: no order is taken from it.
    map: HashMap<EntityKey, u32>,
    slots: Vec<Slot>,
}

/// An event as L3 keeps it in the reorder buffer.
struct Rec {
    ts: u64,
    event_id: u64,
    kind: EventKind,
    process: ProcessKey,
    context: Arc<ProcessContext>,
    port: u8,
    path: u8,
}

/// The L3 engine: reorder buffer, models, entity tables, counters.
pub struct L3Engine {
    config: L3Config,
    models: Vec<Model>,
    tables: Vec<Table>,
    /// Kinds some model reads.
    kinds: KindSet,
    needs_port: bool,
    needs_path: bool,
    reorder: Reorder<Rec>,
    empty: Arc<str>,
    entities: usize,
    evicted: u64,
    ready: usize,
    folds: u64,
}

impl std::fmt::Debug for L3Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L3Engine")
            .field("config", &self.config)
            .field("models", &self.models.len())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Every defined kind's bit.
fn defined_kinds() -> u64 {
    KindSet::of(&EventKind::ALL).0
}

/// Bins of a feature's domain.
fn bins_of(feature: Feature) -> usize {
    match feature {
        Feature::Kinds => MAX_BINS,
        Feature::PortClass => domain::PORT_CLASSES.len(),
        Feature::PathPrefix => domain::PATH_PREFIXES.len(),
        Feature::Rate => 0,
    }
}

impl L3Engine {
    /// `rules[i].0` is the rule's index in the loaded set (goes into
    /// [`Firing::rule`]).
    pub fn new(rules: Vec<(usize, Anomaly)>, config: L3Config) -> L3Engine {
        let mut rules = rules;
        rules.sort_by_key(|(index, _)| *index);
        let mut models: Vec<Model> = Vec::new();
        let mut tables: Vec<Table> = Vec::new();
        for (index, rule) in rules {
            let key = ModelKey {
                entity: rule.entity,
                feature: rule.feature,
                kinds: rule.kinds.0 & defined_kinds(),
                window_ns: rule.window_ns.max(1),
            };
            let at = match models.iter().position(|m| m.key == key) {
                Some(at) => at,
                None => {
                    let table = match tables.iter().position(|t| t.entity == key.entity) {
                        Some(t) => t,
                        None => {
                            tables.push(Table {
                                entity: key.entity,
                                models: Vec::new(),
                                kinds: KindSet::default(),
                                map: HashMap::new(),
                                slots: Vec::new(),
                            });
                            tables.len() - 1
                        }
                    };
                    let pos = tables[table].models.len();
                    tables[table].models.push(models.len());
                    tables[table].kinds = KindSet(tables[table].kinds.0 | key.kinds);
                    models.push(Model { key, bins: bins_of(key.feature), rules: Vec::new(), table, pos });
                    models.len() - 1
                }
            };
            // A model's fired bits are one u64: further rules never fire.
            if models[at].rules.len() < 64 {
                models[at].rules.push(RuleRef { index, threshold: rule.threshold, min_events: rule.min_events });
            }
        }
        let kinds = KindSet(tables.iter().fold(0, |bits, t| bits | t.kinds.0));
        L3Engine {
            needs_port: models.iter().any(|m| m.key.feature == Feature::PortClass),
            needs_path: models.iter().any(|m| m.key.feature == Feature::PathPrefix),
            config,
            models,
            tables,
            kinds,
            reorder: Reorder::new(config.reorder_ns),
            empty: Arc::from(""),
            entities: 0,
            evicted: 0,
            ready: 0,
            folds: 0,
        }
    }

    pub fn config(&self) -> &L3Config {
        &self.config
    }

    /// Whether any rule reads events.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    pub fn stats(&self) -> L3Stats {
        L3Stats {
            entities: self.entities,
            evicted: self.evicted,
            baselines: self.tables.iter().map(|t| t.slots.len() * t.models.len()).sum(),
            ready: self.ready,
            held: self.reorder.len(),
            late: self.reorder.late,
            forced: self.reorder.forced,
            folds: self.folds,
        }
    }

    /// Every event in arrival order; firings of the events the watermark
    /// passes are appended to `out`.
    pub fn push(&mut self, event: &Event, out: &mut Vec<Firing>) {
        if self.models.is_empty() {
            return;
        }
        let meta = *event.meta();
        let kind = event.kind();
        if self.kinds.contains(kind) {
            if let (Some(process), Some(context)) = (event.process(), event.context()) {
                if !context.exe.is_empty() {
                    let rec = Rec {
                        ts: meta.ts_ns,
                        event_id: meta.event_id,
                        kind,
                        process: *process,
                        context: context.clone(),
                        port: if self.needs_port { domain::event_port(event) } else { NONE },
                        path: if self.needs_path { domain::event_path(event) } else { NONE },
                    };
                    self.reorder.push(meta.ts_ns, meta.event_id, rec);
                }
            }
        }
        self.reorder.observe(meta.ts_ns);
        self.drain(out);
    }

    /// Processes every held event with `ts ≤ upto_ts` (`u64::MAX` at
    /// shutdown or the end of the input).
    pub fn flush(&mut self, upto_ts: u64, out: &mut Vec<Firing>) {
        self.reorder.flush(upto_ts);
        self.drain(out);
    }

    fn drain(&mut self, out: &mut Vec<Firing>) {
        while let Some(rec) = self.reorder.pop() {
            self.process(&rec, out);
        }
    }

    fn process(&mut self, rec: &Rec, out: &mut Vec<Firing>) {
        for t in 0..self.tables.len() {
            if !self.tables[t].kinds.contains(rec.kind) {
                continue;
            }
            let key = match self.tables[t].entity {
                Entity::Exe => EntityKey { exe: rec.context.exe.clone(), parent: self.empty.clone() },
                Entity::ExeParent => match rec.context.ancestry.first() {
                    Some(parent) => EntityKey { exe: rec.context.exe.clone(), parent: parent.exe.clone() },
                    None => continue,
                },
            };
            let at = match self.tables[t].map.get(&key) {
                Some(&at) => at as usize,
                None if self.config.learn => {
                    self.make_room();
                    self.insert(t, key, rec.ts)
                }
                None => continue,
            };
            let config = self.config;
            let table = &mut self.tables[t];
            let slot = &mut table.slots[at];
            slot.last_seen = slot.last_seen.max(rec.ts);
            for &m in &table.models {
                let model = &self.models[m];
                let state = &mut slot.states[model.pos];
                let (folded, warmed) = feed(model, state, rec, &slot.key, &config, out);
                self.folds += u64::from(folded);
                self.ready += usize::from(warmed);
            }
        }
    }

    /// Adds an entity (room already made); its slot index.
    fn insert(&mut self, t: usize, key: EntityKey, now: u64) -> usize {
        let table = &mut self.tables[t];
        let at = table.slots.len();
        table.map.insert(key.clone(), at as u32);
        table.slots.push(Slot { key, last_seen: now, states: vec![State::new(); table.models.len()] });
        self.entities += 1;
        at
    }

    /// Evicts the oldest sixteenth of the entities when they are at the cap.
    fn make_room(&mut self) {
        let max = self.config.max_entities.max(1);
        if self.entities < max {
            return;
        }
        let batch = (max / 16).clamp(1, self.entities);
        let mut all: Vec<(u64, &EntityKey, usize, usize)> = Vec::with_capacity(self.entities);
        for (t, table) in self.tables.iter().enumerate() {
            all.extend(table.slots.iter().enumerate().map(|(i, s)| (s.last_seen, &s.key, t, i)));
        }
        if batch < all.len() {
            all.select_nth_unstable(batch);
            all.truncate(batch);
        }
        let mut doomed: Vec<(usize, usize)> = all.into_iter().map(|(_, _, t, i)| (t, i)).collect();
        doomed.sort_unstable_by(|a, b| b.cmp(a));
        for (t, i) in doomed {
            self.remove(t, i);
        }
    }

    fn remove(&mut self, t: usize, i: usize) {
        let table = &mut self.tables[t];
        let slot = table.slots.swap_remove(i);
        table.map.remove(&slot.key);
        if let Some(moved) = table.slots.get(i) {
            table.map.insert(moved.key.clone(), i as u32);
        }
        let warm = slot.states.iter().filter(|s| warm(&self.config, &s.base)).count();
        self.ready -= warm.min(self.ready);
        self.entities -= 1;
        self.evicted += 1;
    }

    /// Every baseline, per model (in model-key order), entities in key
    /// order: what [`persist`] saves.
    pub fn baselines(&self) -> BTreeMap<ModelKey, Vec<(EntityKey, Baseline)>> {
        let mut out: BTreeMap<ModelKey, Vec<(EntityKey, Baseline)>> = BTreeMap::new();
        for model in &self.models {
            let table = &self.tables[model.table];
            let mut list: Vec<(EntityKey, Baseline)> = table
                .slots
                .iter()
                .filter(|s| s.states[model.pos].base.windows > 0)
                .map(|s| (s.key.clone(), s.states[model.pos].base.clone()))
                .collect();
            list.sort_by(|a, b| a.0.cmp(&b.0));
            out.insert(model.key, list);
        }
        out
    }

    /// Takes baselines (from a file, or from the engine of the rule set
    /// this one replaces) for the models this engine has, up to
    /// `max_entities`; returns how many were taken. Windows start empty.
    pub fn restore(&mut self, baselines: &BTreeMap<ModelKey, Vec<(EntityKey, Baseline)>>) -> usize {
        let mut taken = 0;
        for m in 0..self.models.len() {
            let (key, t, pos) = (self.models[m].key, self.models[m].table, self.models[m].pos);
            let Some(list) = baselines.get(&key) else { continue };
            for (entity, base) in list {
                let at = match self.tables[t].map.get(entity) {
                    Some(&at) => at as usize,
                    None if self.entities < self.config.max_entities.max(1) => self.insert(t, entity.clone(), 0),
                    None => continue,
                };
                let config = self.config;
                let state = &mut self.tables[t].slots[at].states[pos];
                let was = warm(&config, &state.base);
                let mut base = base.clone();
                base.refresh();
                let now = warm(&config, &base);
                *state = State { base, ..State::new() };
                self.ready = self.ready + usize::from(now) - usize::from(was);
                taken += 1;
            }
        }
        taken
    }
}

/// Whether a baseline has learned enough to score.
fn warm(config: &L3Config, base: &Baseline) -> bool {
    base.events >= config.warmup_events && base.windows >= config.warmup_windows.max(1)
}

/// Feeds one event to one entity's state of one model: `(folded a window,
/// became warm)`.
fn feed(
    model: &Model,
    state: &mut State,
    rec: &Rec,
    entity: &EntityKey,
    config: &L3Config,
    out: &mut Vec<Firing>,
) -> (bool, bool) {
    let key = &model.key;
    if key.kinds & (1 << rec.kind.index()) == 0 {
        return (false, false);
    }
    let bin = match key.feature {
        Feature::Kinds => rec.kind.index() as u8,
        Feature::PortClass => rec.port,
        Feature::PathPrefix => rec.path,
        Feature::Rate => 0,
    };
    if bin == NONE || (key.feature != Feature::Rate && usize::from(bin) >= model.bins) {
        return (false, false);
    }
    let warm = |b: &Baseline| warm(config, b);
    let (mut folded, mut warmed) = (false, false);
    let bucket = rec.ts / key.window_ns;
    if state.bucket != bucket {
        if state.bucket != NO_BUCKET && state.win_n > 0 && config.learn && state.fired == 0 {
            let was = warm(&state.base);
            fold(key.feature, state);
            folded = true;
            warmed = !was && warm(&state.base);
        }
        state.bucket = bucket;
        state.win = [0; MAX_BINS];
        state.win_n = 0;
        state.ids_n = 0;
        state.fired = 0;
    }
    if key.feature != Feature::Rate {
        state.win[usize::from(bin)] = state.win[usize::from(bin)].saturating_add(1);
    }
    state.win_n = state.win_n.saturating_add(1);
    state.ids[state.ids_n % MAX_FIRING_IDS] = rec.event_id;
    state.ids_n += 1;
    if !warm(&state.base) {
        return (folded, warmed);
    }
    let n = u64::from(state.win_n);
    let due = model.rules.iter().enumerate().any(|(i, r)| state.fired & (1 << i) == 0 && n >= r.min_events);
    if !due {
        return (folded, warmed);
    }
    let score = match key.feature {
        Feature::Rate => score::robust_z(f64::from(state.win_n), state.base.median, state.base.mad),
        _ => score::kl(&state.win, &state.base.counts, model.bins),
    };
    for (i, rule) in model.rules.iter().enumerate() {
        if state.fired & (1 << i) != 0 || n < rule.min_events || score <= rule.threshold {
            continue;
        }
        state.fired |= 1 << i;
        out.push(Firing {
            rule: rule.index,
            process: rec.process,
            context: Some(rec.context.clone()),
            event_ids: state.event_ids(),
            ts_ns: rec.ts,
            event_kind: rec.kind,
            summary: summary(model, state, entity, score, rule.threshold),
        });
    }
    (folded, warmed)
}

/// Folds the closed window into the baseline.
fn fold(feature: Feature, state: &mut State) {
    let base = &mut state.base;
    base.events += u64::from(state.win_n);
    base.windows = base.windows.saturating_add(1);
    if feature == Feature::Rate {
        if base.rates.len() == RATE_BUCKETS {
            base.rates.pop_front();
        }
        base.rates.push_back(state.win_n);
        base.refresh();
    } else {
        for (count, &w) in base.counts.iter_mut().zip(&state.win) {
            *count += u64::from(w);
        }
    }
    if base.events > MAX_BASELINE_EVENTS {
        for count in &mut base.counts {
            *count -= *count / 2;
        }
        base.events -= base.events / 2;
    }
}

/// `anomaly kinds of exe /usr/bin/x: score 3.42 > 2.00 over 57 events in
/// this 60s window; net_connect 0.61 vs baseline 0.02, …`.
fn summary(model: &Model, state: &State, entity: &EntityKey, score: f64, threshold: f64) -> String {
    let key = &model.key;
    let mut s = format!("anomaly {} of {} {}", key.feature.as_str(), key.entity.as_str(), entity.exe);
    if key.entity == Entity::ExeParent {
        let _ = write!(s, " under {}", entity.parent);
    }
    let secs = key.window_ns as f64 / 1e9;
    match key.feature {
        Feature::Rate => {
            let _ = write!(
                s,
                ": z {score:.2} > {threshold:.2}: {} events in this {secs}s window vs median {:.1} (MAD {:.1}) over {} windows",
                state.win_n,
                state.base.median,
                state.base.mad,
                state.base.rates.len()
            );
        }
        feature => {
            let _ =
                write!(s, ": score {score:.2} > {threshold:.2} over {} events in this {secs}s window;", state.win_n);
            for (i, (bin, p, q)) in
                score::drivers(&state.win, &state.base.counts, model.bins, DRIVERS).into_iter().enumerate()
            {
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(s, "{sep} {} {p:.2} vs baseline {q:.2}", domain::bin_name(feature, bin));
            }
        }
    }
    s
}
