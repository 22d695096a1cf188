//! L2: the bounded state of sequences ("A then B within T") and counts
//! ("more than N events, or distinct values, within T"), per group (issue
//! #15; DESIGN §6).
//!
//! The single-event matcher reports, per event, the [`MatchId`]s that hold;
//! [`L2Engine::push`] takes every event with those ids. Events that matter
//! to L2 (a hit on an L2 condition, or the exec and exit of a process when
//! some rule keeps per-process state) are held as compact records in a
//! reorder buffer and processed in `(ts_ns, event_id)` order once the
//! watermark (highest timestamp seen − `reorder_ns`) passes them. So any
//! permutation of the input within the reorder window yields the same
//! firings, in an order that depends only on `(ts_ns, event_id, rule
//! index)`. An event older than the watermark when it arrives is rejected
//! and counted (`late`); one with no L2 hit that is late loses nothing and
//! is not counted.
//!
//! Choices, in one place:
//! - **Groups.** A group key is the values of the rule's `group_by`, in
//!   order, with [`GroupKey::Process`] moved first (so a process's states
//!   are one range of the map). An event without one of the values (no
//!   process, a field this kind lacks) does not take part in that rule. A
//!   sequence with a `child` or `descendant` step relates different
//!   processes, which a per-process group could never join: its `process`
//!   group becomes `lineage` ([`lineage_key`]).
//! - **Exec and exit.** An exec starts a new image: the states of rules
//!   grouped by process are dropped for that process *before* the exec's own
//!   hits are applied (the exec belongs to the new image; it can start a
//!   per-process sequence, not continue one — to follow a process across an
//!   exec, group by lineage). An exit drops them *after* the exit's hits.
//!   States grouped by lineage or by a field are not touched.
//!   `same_process` compares [`ProcessKey`]s, so across an exec it only
//!   separates images when the rule is grouped by process.
//! - **Sequences.** Each step must lie within `within_ns` of the sequence's
//!   first event. A group holds at most [`MAX_PARTIALS`] partial matches
//!   (oldest dropped first, counted as `partials_dropped`). An event first
//!   completes the earliest partial it can complete (it then fires once,
//!   with its event ids oldest first, and the partial is gone); otherwise it
//!   extends every partial it can, and it starts a new partial when it
//!   matches a first step (any step, for an unordered sequence). A relation
//!   is checked between a step and the step written before it, whichever
//!   arrived first.
//! - **Counts.** A group keeps the `more_than + 1` newest events (newest
//!   occurrence per value when counting distinct values): exactly what
//!   decides "more than `more_than` within the window", and a bound on
//!   memory. After a firing the group stays silent until the window has
//!   slid past the firing event (the next firing rests on none of the same
//!   events). A firing carries the newest [`MAX_FIRING_IDS`] event ids.
//!   Thresholds above [`MAX_MORE_THAN`] are clamped (front ends reject
//!   them); an event lacking the distinct value is not counted.
//! - **Caps and expiry.** A state (one group of one rule) whose last update
//!   is more than its window old is dead; dead states are swept every
//!   second of event time and before any cap eviction (`expired`). Creating
//!   a state beyond `max_states_per_rule` evicts that rule's oldest state
//!   (`cap_rule`), beyond `max_states_total` the oldest of all (`cap_total`):
//!   oldest by last update, ties by `(rule, key)` order. Caps below 1 count
//!   as 1.
//! - **Determinism.** States are found through hash maps (SipHash with a
//!   random key: group values can be chosen by whoever runs processes),
//!   but no order is ever taken from them: the reorder buffer, the age
//!   index and the rule list decide every order that reaches the output.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use pipeline::event::ProcessContext;
use pipeline::{Event, EventKind, ProcessKey};

use crate::firing::{Firing, MatchId};
use crate::rule::{GroupKey, Relation, Target};

mod keys;
mod steps;
#[cfg(test)]
mod tests;

pub use keys::lineage_key;
use keys::{group_of, value_of, Group, Value};

/// The most steps a sequence may have (a step set is one `u64`); a longer
/// sequence never fires (front ends reject it).
pub const MAX_STEPS: usize = 64;
/// The highest count threshold: a group keeps `more_than + 1` events.
pub const MAX_MORE_THAN: u64 = 1_000;
/// Partial matches kept per group of a sequence rule.
pub const MAX_PARTIALS: usize = 8;
/// Event ids a count firing carries (the newest ones).
pub const MAX_FIRING_IDS: usize = 64;
/// Events the reorder buffer holds at most: beyond, the oldest is
/// processed before the watermark passes it (counted as `forced`), so a
/// flood cannot grow the buffer without bound.
pub const MAX_HELD: usize = 1 << 18;
/// How often (in event time) dead states are swept.
const SWEEP_NS: u64 = 1_000_000_000;
/// The process of a firing whose event has none.
const NO_PROCESS: ProcessKey = ProcessKey { pid: 0, start_time_ns: 0 };

/// Bounds of the L2 engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Config {
    /// How far out of order events may arrive (default 2 s).
    pub reorder_ns: u64,
    /// States (groups) kept per rule (default 10 000).
    pub max_states_per_rule: usize,
    /// States kept over all rules (default 100 000).
    pub max_states_total: usize,
}

impl Default for L2Config {
    fn default() -> L2Config {
        L2Config { reorder_ns: 2_000_000_000, max_states_per_rule: 10_000, max_states_total: 100_000 }
    }
}

/// One L2 rule, with the ids of its compiled conditions.
#[derive(Clone, Debug, PartialEq)]
pub enum L2Spec {
    Sequence { group_by: Vec<GroupKey>, within_ns: u64, ordered: bool, steps: Vec<(MatchId, Relation)> },
    Count { matcher: MatchId, group_by: Vec<GroupKey>, distinct: Option<Target>, more_than: u64, within_ns: u64 },
}

/// Why a state was dropped before it completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvictReason {
    /// The rule's cap was reached.
    CapRule,
    /// The total cap was reached.
    CapTotal,
    /// The process exec'd into a new image.
    Exec,
    /// The process exited.
    Exit,
    /// Older than the rule's window.
    Expired,
}

impl EvictReason {
    pub const ALL: [EvictReason; 5] =
        [EvictReason::CapRule, EvictReason::CapTotal, EvictReason::Exec, EvictReason::Exit, EvictReason::Expired];

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictReason::CapRule => "cap_rule",
            EvictReason::CapTotal => "cap_total",
            EvictReason::Exec => "exec",
            EvictReason::Exit => "exit",
            EvictReason::Expired => "expired",
        }
    }
}

/// What [`L2Engine::stats`] reports (counters are totals since `new`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L2Stats {
    /// States (groups of rules) held now.
    pub states: usize,
    /// Events held in the reorder buffer now.
    pub held: usize,
    /// Events rejected for arriving behind the watermark.
    pub late: u64,
    /// States evicted, indexed like [`EvictReason::ALL`].
    pub by_reason: [u64; 5],
    /// Partial sequences dropped because their group held `MAX_PARTIALS`.
    pub partials_dropped: u64,
    /// Events processed before the watermark passed them because the
    /// reorder buffer held `MAX_HELD`.
    pub forced: u64,
}

impl L2Stats {
    pub fn evicted(&self, reason: EvictReason) -> u64 {
        self.by_reason[reason as usize]
    }

    /// `(reason label, states evicted)` for every reason.
    pub fn evictions(&self) -> [(&'static str, u64); 5] {
        EvictReason::ALL.map(|reason| (reason.as_str(), self.evicted(reason)))
    }
}

/// A condition feeding a rule: `slot` in the engine's rule list, and the
/// step (0 for a count).
#[derive(Clone, Copy, Debug)]
struct Feed {
    slot: u32,
    step: u8,
}

/// What one held event brings to one rule.
#[derive(Debug)]
struct Input {
    slot: u32,
    /// The steps it matches (bit `i`: step `i`; bit 0 for a count).
    steps: u64,
    group: Group,
    distinct: Option<Value>,
}

/// An event as L2 keeps it: enough to relate, group and report it.
#[derive(Clone, Debug)]
struct StepRec {
    ts: u64,
    event_id: u64,
    kind: EventKind,
    process: Option<ProcessKey>,
    context: Option<Arc<ProcessContext>>,
    lineage: Option<ProcessKey>,
}

/// An event in the reorder buffer (in a slab; the heap orders small
/// keys).
#[derive(Debug)]
struct Held {
    rec: StepRec,
    inputs: Vec<Input>,
}

/// `(ts, event_id, arrival, slab index)`: arrival breaks ties between
/// equal `(ts, event_id)`.
type HeldKey = (u64, u64, u64, u32);

enum Kind {
    Sequence { ordered: bool, relations: Vec<Relation> },
    Count { distinct: Option<Target>, more_than: u64 },
}

/// One rule and its states.
struct Rule {
    /// Index in the loaded set.
    index: usize,
    kind: Kind,
    group_by: Vec<GroupKey>,
    within_ns: u64,
    /// `group_by[0]` is `Process`: exec and exit drop states.
    by_process: bool,
    /// Lookups only: no order is taken from it.
    states: HashMap<Group, State>,
    /// `(last update, key)` of every state: eviction and expiry order.
    by_age: BTreeSet<(u64, Group)>,
    /// Every key, when grouped by process and more: the range of a process.
    keys: Option<BTreeSet<Group>>,
}

impl Rule {
    fn insert(&mut self, group: Group, now: u64, body: Body) {
        self.by_age.insert((now, group.clone()));
        if let Some(keys) = &mut self.keys {
            keys.insert(group.clone());
        }
        self.states.insert(group, State { last_ts: now, body });
    }

    fn remove(&mut self, group: Group) -> bool {
        let Some(state) = self.states.remove(&group) else { return false };
        if let Some(keys) = &mut self.keys {
            keys.remove(&group);
        }
        self.by_age.remove(&(state.last_ts, group));
        true
    }

    fn remove_oldest(&mut self) -> bool {
        let Some((_, group)) = self.by_age.pop_first() else { return false };
        if let Some(keys) = &mut self.keys {
            keys.remove(&group);
        }
        self.states.remove(&group).is_some()
    }
}

struct State {
    last_ts: u64,
    body: Body,
}

enum Body {
    /// Partial matches, oldest first.
    Sequence(Vec<Partial>),
    Count(CountState),
}

struct Partial {
    /// Steps filled (bit per step).
    filled: u64,
    /// `(step, event)` in arrival order (oldest first).
    events: Vec<(u8, StepRec)>,
}

impl Partial {
    fn start_ts(&self) -> u64 {
        self.events.first().map_or(0, |(_, rec)| rec.ts)
    }

    fn step(&self, step: usize) -> Option<&StepRec> {
        self.events.iter().find(|(s, _)| usize::from(*s) == step).map(|(_, rec)| rec)
    }
}

struct CountState {
    /// `(ts, event_id, distinct value)`, oldest first.
    entries: VecDeque<(u64, u64, Option<Value>)>,
    fired_at: Option<u64>,
}

/// The L2 engine: reorder buffer, per-rule states, counters.
pub struct L2Engine {
    config: L2Config,
    rules: Vec<Rule>,
    /// By `MatchId.0`: the rules and steps the condition feeds.
    feeds: Vec<Vec<Feed>>,
    /// Some rule is grouped by process: exec and exit events matter.
    by_process: bool,
    /// Some rule needs lineage keys.
    needs_lineage: bool,
    /// Held keys that arrived in order (the usual case: O(1))…
    in_order: VecDeque<HeldKey>,
    /// …and those that did not.
    reordered: BinaryHeap<Reverse<HeldKey>>,
    slab: Vec<Option<Held>>,
    free: Vec<u32>,
    max_ts: u64,
    /// Every event with `ts < floor` has been processed; later arrivals
    /// below it are late.
    floor: u64,
    arrivals: u64,
    next_sweep: u64,
    states: usize,
    late: u64,
    evictions: [u64; 5],
    partials_dropped: u64,
    forced: u64,
    /// `(slot, steps)` of the event being pushed (reused).
    scratch: Vec<(u32, u64)>,
}

impl std::fmt::Debug for L2Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2Engine")
            .field("config", &self.config)
            .field("rules", &self.rules.len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl L2Engine {
    /// `rules[i].0` is the rule's index in the loaded set (goes into
    /// [`Firing::rule`]).
    pub fn new(rules: Vec<(usize, L2Spec)>, config: L2Config) -> L2Engine {
        let mut rules = rules;
        rules.sort_by_key(|(index, _)| *index);
        let mut feeds: Vec<Vec<Feed>> = Vec::new();
        let mut add_feed = |id: MatchId, feed: Feed| {
            let at = id.0 as usize;
            if feeds.len() <= at {
                feeds.resize_with(at + 1, Vec::new);
            }
            feeds[at].push(feed);
        };
        let mut built = Vec::with_capacity(rules.len());
        for (slot, (index, spec)) in rules.into_iter().enumerate() {
            let slot = slot as u32;
            let (kind, group_by, within_ns) = match spec {
                L2Spec::Sequence { group_by, within_ns, ordered, steps } => {
                    let across = steps.iter().any(|(_, r)| matches!(r, Relation::Child | Relation::Descendant));
                    let group_by = if across {
                        group_by
                            .into_iter()
                            .map(|k| if k == GroupKey::Process { GroupKey::Lineage } else { k })
                            .collect()
                    } else {
                        group_by
                    };
                    if !steps.is_empty() && steps.len() <= MAX_STEPS {
                        for (step, (id, _)) in steps.iter().enumerate() {
                            add_feed(*id, Feed { slot, step: step as u8 });
                        }
                    }
                    let relations = steps.into_iter().map(|(_, r)| r).collect();
                    (Kind::Sequence { ordered, relations }, group_by, within_ns)
                }
                L2Spec::Count { matcher, group_by, distinct, more_than, within_ns } => {
                    add_feed(matcher, Feed { slot, step: 0 });
                    (Kind::Count { distinct, more_than: more_than.min(MAX_MORE_THAN) }, group_by, within_ns)
                }
            };
            let mut keys: Vec<GroupKey> = Vec::with_capacity(group_by.len());
            for key in group_by {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            keys.sort_by_key(|k| *k != GroupKey::Process);
            let by_process = keys.first() == Some(&GroupKey::Process);
            built.push(Rule {
                index,
                kind,
                within_ns,
                by_process,
                states: HashMap::new(),
                by_age: BTreeSet::new(),
                keys: (by_process && keys.len() > 1).then(BTreeSet::new),
                group_by: keys,
            });
        }
        let needs_lineage = built.iter().any(|r| {
            r.group_by.contains(&GroupKey::Lineage)
                || matches!(&r.kind, Kind::Sequence { relations, .. } if relations.contains(&Relation::SameLineage))
        });
        L2Engine {
            config,
            by_process: built.iter().any(|r| r.by_process),
            needs_lineage,
            rules: built,
            feeds,
            in_order: VecDeque::new(),
            reordered: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            max_ts: 0,
            floor: 0,
            arrivals: 0,
            next_sweep: 0,
            states: 0,
            late: 0,
            evictions: [0; 5],
            partials_dropped: 0,
            forced: 0,
            scratch: Vec::new(),
        }
    }

    /// Every event in arrival order, with the ids of the matches that hold
    /// for it (possibly none). Firings of events the watermark passes are
    /// appended to `out`.
    pub fn push(&mut self, event: &Event, hits: &[MatchId], out: &mut Vec<Firing>) {
        let meta = *event.meta();
        let kind = event.kind();
        self.scratch.clear();
        for hit in hits {
            for feed in self.feeds.get(hit.0 as usize).map_or(&[][..], Vec::as_slice) {
                match self.scratch.iter_mut().find(|(slot, _)| *slot == feed.slot) {
                    Some((_, steps)) => *steps |= 1 << feed.step,
                    None => self.scratch.push((feed.slot, 1 << feed.step)),
                }
            }
        }
        let lifecycle = self.by_process && matches!(kind, EventKind::ProcessExec | EventKind::ProcessExit);
        if !self.scratch.is_empty() || lifecycle {
            if meta.ts_ns < self.floor {
                self.late += 1;
                return;
            }
            if let Some(held) = self.record(event, kind) {
                self.arrivals += 1;
                let key = (held.rec.ts, held.rec.event_id, self.arrivals);
                let at = match self.free.pop() {
                    Some(at) => {
                        self.slab[at as usize] = Some(held);
                        at
                    }
                    None => {
                        self.slab.push(Some(held));
                        (self.slab.len() - 1) as u32
                    }
                };
                let key = (key.0, key.1, key.2, at);
                if self.in_order.back().is_none_or(|last| *last <= key) {
                    self.in_order.push_back(key);
                } else {
                    self.reordered.push(Reverse(key));
                }
                while self.held_len() > MAX_HELD {
                    let Some(oldest) = self.pop_held() else { break };
                    self.floor = self.floor.max(oldest.rec.ts);
                    self.forced += 1;
                    self.process(oldest, out);
                }
            }
        }
        self.max_ts = self.max_ts.max(meta.ts_ns);
        let watermark = self.max_ts.saturating_sub(self.config.reorder_ns);
        if watermark > self.floor {
            self.floor = watermark;
            self.drain(watermark - 1, out);
        }
    }

    /// Processes every held event with `ts ≤ upto_ts` (`u64::MAX` at
    /// shutdown or the end of the input); events arriving later with such
    /// a timestamp are late.
    pub fn flush(&mut self, upto_ts: u64, out: &mut Vec<Firing>) {
        self.floor = self.floor.max(upto_ts.saturating_add(1));
        self.drain(upto_ts, out);
    }

    /// Sizes now and counters since [`L2Engine::new`] (read by the
    /// transform for its metrics).
    pub fn stats(&self) -> L2Stats {
        L2Stats {
            states: self.states,
            held: self.held_len(),
            late: self.late,
            by_reason: self.evictions,
            partials_dropped: self.partials_dropped,
            forced: self.forced,
        }
    }

    /// The compact record of an event, with the values each fed rule needs;
    /// `None` when nothing is left to hold.
    fn record(&mut self, event: &Event, kind: EventKind) -> Option<Held> {
        let meta = event.meta();
        let process = event.process().copied();
        let lineage = if self.needs_lineage && !self.scratch.is_empty() { lineage_key(event) } else { None };
        self.scratch.sort_unstable_by_key(|(slot, _)| *slot);
        let mut inputs = Vec::new();
        for &(slot, steps) in &self.scratch {
            let Some(rule) = self.rules.get(slot as usize) else { continue };
            let Some(group) = group_of(event, process, lineage, &rule.group_by) else { continue };
            let distinct = match rule.kind {
                Kind::Count { distinct: Some(target), .. } => match value_of(event, target) {
                    Some(value) => Some(value),
                    None => continue,
                },
                _ => None,
            };
            inputs.push(Input { slot, steps, group, distinct });
        }
        let lifecycle = self.by_process && matches!(kind, EventKind::ProcessExec | EventKind::ProcessExit);
        if inputs.is_empty() && !(lifecycle && process.is_some()) {
            return None;
        }
        let rec = StepRec {
            ts: meta.ts_ns,
            event_id: meta.event_id,
            kind,
            process,
            context: event.context().cloned(),
            lineage,
        };
        Some(Held { rec, inputs })
    }

    fn held_len(&self) -> usize {
        self.in_order.len() + self.reordered.len()
    }

    /// The smallest held key.
    fn next_held(&self) -> Option<HeldKey> {
        match (self.in_order.front(), self.reordered.peek()) {
            (Some(a), Some(Reverse(b))) => Some(*a.min(b)),
            (a, b) => a.or(b.map(|Reverse(b)| b)).copied(),
        }
    }

    fn pop_held(&mut self) -> Option<Held> {
        let next = self.next_held()?;
        if self.in_order.front() == Some(&next) {
            self.in_order.pop_front();
        } else {
            self.reordered.pop();
        }
        let at = next.3;
        self.free.push(at);
        self.slab.get_mut(at as usize)?.take()
    }

    fn drain(&mut self, upto: u64, out: &mut Vec<Firing>) {
        while self.next_held().is_some_and(|(ts, ..)| ts <= upto) {
            if let Some(held) = self.pop_held() {
                self.process(held, out);
            }
        }
    }

    fn process(&mut self, held: Held, out: &mut Vec<Firing>) {
        let Held { rec, inputs } = held;
        let now = rec.ts;
        if now >= self.next_sweep {
            self.next_sweep = now.saturating_add(SWEEP_NS);
            for slot in 0..self.rules.len() {
                self.sweep(slot, now);
            }
        }
        if rec.kind == EventKind::ProcessExec {
            if let Some(process) = rec.process {
                self.invalidate(process, EvictReason::Exec);
            }
        }
        for input in inputs {
            let slot = input.slot as usize;
            match self.rules.get(slot).map(|r| &r.kind) {
                Some(Kind::Sequence { .. }) => self.sequence(slot, input, &rec, out),
                Some(Kind::Count { .. }) => self.count(slot, input, &rec, out),
                None => {}
            }
        }
        if rec.kind == EventKind::ProcessExit {
            if let Some(process) = rec.process {
                self.invalidate(process, EvictReason::Exit);
            }
        }
    }

    fn evicted(&mut self, reason: EvictReason, n: usize) {
        self.evictions[reason as usize] += n as u64;
        self.states -= n;
    }

    /// Drops the rule's states whose last update is more than a window old.
    fn sweep(&mut self, slot: usize, now: u64) {
        let rule = &mut self.rules[slot];
        let mut dropped = 0;
        while let Some((ts, _)) = rule.by_age.first() {
            if now - (*ts).min(now) <= rule.within_ns {
                break;
            }
            if rule.remove_oldest() {
                dropped += 1;
            }
        }
        self.evicted(EvictReason::Expired, dropped);
    }

    /// Drops the states of `process` in every rule grouped by process.
    fn invalidate(&mut self, process: ProcessKey, reason: EvictReason) {
        let key = Value::Proc(process);
        let mut dropped = 0;
        for rule in self.rules.iter_mut().filter(|r| r.by_process) {
            match &rule.keys {
                None => dropped += usize::from(rule.remove(Group::One(key.clone()))),
                Some(keys) => {
                    let start = Group::Many(Box::new([key.clone()]));
                    let doomed: Vec<Group> =
                        keys.range(start..).take_while(|g| g.first() == Some(&key)).cloned().collect();
                    for group in doomed {
                        dropped += usize::from(rule.remove(group));
                    }
                }
            }
        }
        self.evicted(reason, dropped);
    }

    /// Makes room for one more state of rule `slot`.
    fn make_room(&mut self, slot: usize, now: u64) {
        let per_rule = self.config.max_states_per_rule.max(1);
        if self.rules[slot].states.len() >= per_rule {
            self.sweep(slot, now);
            if self.rules[slot].states.len() >= per_rule {
                self.evict_oldest(slot, EvictReason::CapRule);
            }
        }
        if self.states >= self.config.max_states_total.max(1) {
            for s in 0..self.rules.len() {
                self.sweep(s, now);
            }
            if self.states >= self.config.max_states_total.max(1) {
                let oldest = (0..self.rules.len())
                    .filter_map(|s| self.rules[s].by_age.first().map(|(ts, g)| (*ts, s, g)))
                    .min()
                    .map(|(_, s, _)| s);
                if let Some(s) = oldest {
                    self.evict_oldest(s, EvictReason::CapTotal);
                }
            }
        }
    }

    fn evict_oldest(&mut self, slot: usize, reason: EvictReason) {
        if self.rules[slot].remove_oldest() {
            self.evicted(reason, 1);
        }
    }

    /// Creates the state of `group` in rule `slot` (making room) unless it
    /// exists.
    fn ensure(&mut self, slot: usize, group: &Group, now: u64, create: impl FnOnce() -> Body) {
        if !self.rules[slot].states.contains_key(group) {
            self.make_room(slot, now);
            self.rules[slot].insert(group.clone(), now, create());
            self.states += 1;
        }
    }

    /// Records that `group`'s state was updated at `now`, or removes it
    /// when it is `empty` (completed, or every partial died: `expired`).
    /// The state itself already says `now` (unless removed).
    fn touch(&mut self, slot: usize, group: Group, old_ts: u64, now: u64, empty: Option<Option<EvictReason>>) {
        let rule = &mut self.rules[slot];
        match empty {
            Some(reason) => {
                rule.remove(group);
                self.states -= 1;
                if let Some(reason) = reason {
                    self.evictions[reason as usize] += 1;
                }
            }
            None if old_ts != now => {
                let mut key = (old_ts, group);
                rule.by_age.remove(&key);
                key.0 = now;
                rule.by_age.insert(key);
            }
            None => {}
        }
    }
}
