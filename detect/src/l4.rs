//! L4: kill chains over process lineage (issue #16; DESIGN §6).
//!
//! A chain rule ([`crate::rule::Chain`]) is ordered stages, each a
//! single-event condition compiled with every other condition of the set:
//! the evaluator's kind index and literal gates decide which stages an
//! event matches, so stage 0 costs nothing for events it cannot match
//! (that is its candidate index — no sweep over processes).
//!
//! The process tree is a graph whose nodes are [`ProcessKey`]s: an event's
//! own lineage is its process and the ancestors its context carries
//! (enrichment's bounded ancestry, parent first), or, without a context,
//! the parent edges learned from fork events. Evidence — the connects,
//! file events and execs that reached a stage — hangs off the node where
//! the chain started (its **anchor**: the process that matched stage 0),
//! as the ids of the events it rests on.
//!
//! Choices, in one place:
//! - **Matching is restricted to the event's lineage.** An event that
//!   matches stage k ≥ 1 walks its own process and its ancestors, nearest
//!   first, and advances the first chain it finds anchored there whose
//!   last reached stage is k − 1 and whose first event is within the
//!   rule's window. So every stage is reached by the anchor or one of its
//!   descendants (siblings included: the shell's `curl` downloads, the
//!   shell's next child executes), and no event looks at another lineage.
//! - **One stage per event and chain.** Stages are tried highest first, so
//!   an event matching two stages of one chain advances it once.
//! - **Derived flags reset on exec.** An exec drops the chains anchored on
//!   the process before the exec's own stages are applied: the new image is
//!   not the service that reached stage 0 (and a reused PID is a new
//!   [`ProcessKey`] anyway).
//! - **Firing.** Reaching the last stage fires once, with every stage's
//!   event id in order, and ends that chain; a new stage-0 event re-arms it.
//! - **Order.** Events that matter (a stage hit, an exec, an exit, a fork)
//!   are held in a reorder buffer and applied in `(ts_ns, event_id)` order
//!   once the watermark (highest timestamp − `reorder_ns`) passes them, as
//!   L2 does: events shuffled within the window give the same firings.
//! - **Bounds.** At most `max_anchors` anchored processes (the oldest chain
//!   start is evicted first, ties by key, counted `cap`) and `max_parents`
//!   fork edges (oldest first); an exited anchor and its fork edge are
//!   pruned `exit_grace_ns` after the exit (`exit`); chains older than their
//!   window are dropped when next seen and by a sweep every second of event
//!   time (`expired`); the reorder buffer holds at most [`MAX_HELD`]
//!   (`forced`).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use pipeline::event::ProcessContext;
use pipeline::{Event, EventKind, ProcessKey};

use crate::engine::describe;
use crate::firing::{Firing, MatchId};

#[cfg(test)]
mod tests;

/// Events the reorder buffer holds at most (see the module doc).
pub const MAX_HELD: usize = 1 << 16;
/// How far a lineage walk follows fork edges when the event has no
/// context (a context's ancestry is already bounded by enrichment).
const MAX_DEPTH: usize = 64;
/// How often (in event time) old chains and exited anchors are swept.
const SWEEP_NS: u64 = 1_000_000_000;

/// One L4 rule: its stages' condition ids, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct L4Spec {
    pub stages: Vec<MatchId>,
    pub within_ns: u64,
}

/// Bounds of the L4 engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4Config {
    /// How far out of order events may arrive (the detect transform's
    /// `reorder_ms`).
    pub reorder_ns: u64,
    /// Processes that anchor a chain (default 16 384).
    pub max_anchors: usize,
    /// Fork edges kept for events without a context (default 65 536).
    pub max_parents: usize,
    /// How long an exited anchor keeps its chains: its descendants may
    /// outlive it (default 30 s).
    pub exit_grace_ns: u64,
}

impl Default for L4Config {
    fn default() -> L4Config {
        L4Config { reorder_ns: 2_000_000_000, max_anchors: 16_384, max_parents: 65_536, exit_grace_ns: 30_000_000_000 }
    }
}

/// What [`L4Engine::stats`] reports (counters are totals since `new`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L4Stats {
    /// Processes anchoring at least one chain now.
    pub anchors: usize,
    /// Chains in progress now.
    pub chains: usize,
    /// Fork edges held now.
    pub parents: usize,
    /// Events held in the reorder buffer now.
    pub held: usize,
    /// Events rejected for arriving behind the watermark.
    pub late: u64,
    /// Chains dropped, indexed like [`ChainDrop::ALL`].
    pub by_reason: [u64; 4],
    /// Events applied before the watermark passed them (buffer full).
    pub forced: u64,
}

/// Why a chain in progress was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainDrop {
    /// `max_anchors` was reached.
    Cap,
    /// Its anchor exec'd into a new image.
    Exec,
    /// Its anchor exited more than the grace period ago.
    Exit,
    /// Older than its rule's window.
    Expired,
}

impl ChainDrop {
    pub const ALL: [ChainDrop; 4] = [ChainDrop::Cap, ChainDrop::Exec, ChainDrop::Exit, ChainDrop::Expired];

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainDrop::Cap => "cap",
            ChainDrop::Exec => "exec",
            ChainDrop::Exit => "exit",
            ChainDrop::Expired => "expired",
        }
    }
}

impl L4Stats {
    /// `(reason label, chains dropped)` for every reason.
    pub fn drops(&self) -> [(&'static str, u64); 4] {
        ChainDrop::ALL.map(|reason| (reason.as_str(), self.by_reason[reason as usize]))
    }
}

/// One chain rule as the engine keeps it.
#[derive(Debug)]
struct ChainRule {
    /// Index in the loaded set.
    index: usize,
    stages: u8,
    within_ns: u64,
    names: Vec<Arc<str>>,
}

/// An event as L4 holds it until the watermark passes.
#[derive(Debug)]
struct Rec {
    ts: u64,
    event_id: u64,
    kind: EventKind,
    process: ProcessKey,
    /// Fork: the child.
    child: Option<ProcessKey>,
    /// `(slot, stage)` the event matches, highest stage first.
    hits: Vec<(u16, u8)>,
    /// The event's ancestors, parent first (only when it has hits).
    ancestors: Vec<ProcessKey>,
    context: Option<Arc<ProcessContext>>,
    /// What it was, for a firing's summary (only when it has hits).
    summary: String,
}

/// A chain in progress, anchored on the process that matched stage 0.
#[derive(Debug)]
struct Progress {
    slot: u16,
    /// The last stage reached.
    reached: u8,
    start_ts: u64,
    event_ids: Vec<u64>,
}

#[derive(Debug, Default)]
struct Anchor {
    chains: Vec<Progress>,
    /// The oldest chain start: the eviction order key.
    age_key: u64,
    exited: bool,
}

/// `(ts, event_id, arrival, slab index)`.
type HeldKey = (u64, u64, u64, u32);

/// The L4 engine: reorder buffer, lineage graph, chains in progress.
#[derive(Debug)]
pub struct L4Engine {
    config: L4Config,
    rules: Vec<ChainRule>,
    /// By `MatchId.0`: `(slot, stage)` the condition is.
    feeds: Vec<Vec<(u16, u8)>>,
    held: BinaryHeap<Reverse<HeldKey>>,
    slab: Vec<Option<Rec>>,
    free: Vec<u32>,
    max_ts: u64,
    floor: u64,
    arrivals: u64,
    next_sweep: u64,
    /// Lookups only: no order is taken from it.
    anchors: HashMap<ProcessKey, Anchor>,
    /// `(oldest chain start, key)` of every anchor: eviction order.
    anchor_age: BTreeSet<(u64, ProcessKey)>,
    /// child → parent, from fork events (lookups only)…
    parents: HashMap<ProcessKey, ProcessKey>,
    /// …in insertion order, for the cap.
    parent_order: VecDeque<ProcessKey>,
    /// `(exit ts, process)` in applied order: pruned after the grace.
    exited: VecDeque<(u64, ProcessKey)>,
    chains: usize,
    late: u64,
    drops: [u64; 4],
    forced: u64,
    /// Scratch: `(slot, stage)` of the event being pushed.
    scratch: Vec<(u16, u8)>,
}

impl L4Engine {
    /// `rules[i].0` is the rule's index in the loaded set; `names[i]` its
    /// stages' names.
    pub fn new(rules: Vec<(usize, L4Spec, Vec<Arc<str>>)>, config: L4Config) -> L4Engine {
        let mut rules = rules;
        rules.sort_by_key(|(index, _, _)| *index);
        let mut feeds: Vec<Vec<(u16, u8)>> = Vec::new();
        let mut built = Vec::new();
        for (slot, (index, spec, names)) in rules.into_iter().enumerate() {
            let (Ok(slot), Ok(stages)) = (u16::try_from(slot), u8::try_from(spec.stages.len())) else { continue };
            if stages < 2 {
                continue;
            }
            for (stage, id) in (0u8..).zip(&spec.stages) {
                let at = id.0 as usize;
                if feeds.len() <= at {
                    feeds.resize_with(at + 1, Vec::new);
                }
                feeds[at].push((slot, stage));
            }
            built.push(ChainRule { index, stages, within_ns: spec.within_ns, names });
        }
        L4Engine {
            config,
            rules: built,
            feeds,
            held: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            max_ts: 0,
            floor: 0,
            arrivals: 0,
            next_sweep: 0,
            anchors: HashMap::new(),
            anchor_age: BTreeSet::new(),
            parents: HashMap::new(),
            parent_order: VecDeque::new(),
            exited: VecDeque::new(),
            chains: 0,
            late: 0,
            drops: [0; 4],
            forced: 0,
            scratch: Vec::new(),
        }
    }

    pub fn stats(&self) -> L4Stats {
        L4Stats {
            anchors: self.anchors.len(),
            chains: self.chains,
            parents: self.parents.len(),
            held: self.held.len(),
            late: self.late,
            by_reason: self.drops,
            forced: self.forced,
        }
    }

    /// Every event in arrival order, with the matches that hold for it.
    /// Firings of events the watermark passes are appended to `out`.
    pub fn push(&mut self, event: &Event, hits: &[MatchId], out: &mut Vec<Firing>) {
        if self.rules.is_empty() {
            return;
        }
        self.scratch.clear();
        for hit in hits {
            if let Some(feeds) = self.feeds.get(hit.0 as usize) {
                self.scratch.extend_from_slice(feeds);
            }
        }
        let kind = event.kind();
        let lifecycle = matches!(kind, EventKind::ProcessExec | EventKind::ProcessExit | EventKind::ProcessFork);
        let Some(process) = event.process().copied() else { return };
        if self.scratch.is_empty() && !lifecycle {
            return;
        }
        let meta = event.meta();
        if meta.ts_ns < self.floor {
            self.late += 1;
            return;
        }
        let mut rec = Rec {
            ts: meta.ts_ns,
            event_id: meta.event_id,
            kind,
            process,
            child: match event {
                Event::ProcessFork(fork) => Some(fork.child),
                _ => None,
            },
            hits: Vec::new(),
            ancestors: Vec::new(),
            context: None,
            summary: String::new(),
        };
        if !self.scratch.is_empty() {
            self.scratch.sort_by_key(|&(slot, stage)| (slot, Reverse(stage)));
            self.scratch.dedup();
            rec.hits = self.scratch.clone();
            rec.context = event.context().cloned();
            rec.ancestors =
                rec.context.as_deref().map(|c| c.ancestry.iter().map(|a| a.process).collect()).unwrap_or_default();
            rec.summary = describe(event);
        }
        self.arrivals += 1;
        let at = match self.free.pop() {
            Some(at) => {
                self.slab[at as usize] = Some(rec);
                at
            }
            None => {
                self.slab.push(Some(rec));
                (self.slab.len() - 1) as u32
            }
        };
        self.held.push(Reverse((meta.ts_ns, meta.event_id, self.arrivals, at)));
        self.max_ts = self.max_ts.max(meta.ts_ns);
        while self.held.len() > MAX_HELD {
            self.forced += 1;
            self.release_one(out);
        }
        self.flush(self.max_ts.saturating_sub(self.config.reorder_ns), out);
    }

    /// Applies every held event with `ts < upto_ts` (`u64::MAX`: all, at
    /// shutdown).
    pub fn flush(&mut self, upto_ts: u64, out: &mut Vec<Firing>) {
        while self.held.peek().is_some_and(|Reverse(key)| key.0 < upto_ts) {
            self.release_one(out);
        }
        if upto_ts != u64::MAX {
            self.floor = self.floor.max(upto_ts);
        }
    }

    fn release_one(&mut self, out: &mut Vec<Firing>) {
        let Some(Reverse((ts, _, _, at))) = self.held.pop() else { return };
        let Some(rec) = self.slab.get_mut(at as usize).and_then(Option::take) else { return };
        self.free.push(at);
        self.floor = self.floor.max(ts);
        if ts >= self.next_sweep {
            self.sweep(ts);
            self.next_sweep = ts.saturating_add(SWEEP_NS);
        }
        self.apply(rec, out);
    }

    fn apply(&mut self, rec: Rec, out: &mut Vec<Firing>) {
        match rec.kind {
            EventKind::ProcessExec => self.drop_anchor(rec.process, ChainDrop::Exec),
            EventKind::ProcessFork => {
                if let Some(child) = rec.child {
                    self.add_parent(child, rec.process);
                }
            }
            _ => {}
        }
        for &(slot, stage) in &rec.hits {
            if stage == 0 {
                self.start(slot, &rec);
            } else {
                self.advance(slot, stage, &rec, out);
            }
        }
        if rec.kind == EventKind::ProcessExit {
            if let Some(anchor) = self.anchors.get_mut(&rec.process) {
                anchor.exited = true;
            }
            if self.anchors.contains_key(&rec.process) || self.parents.contains_key(&rec.process) {
                self.exited.push_back((rec.ts, rec.process));
            }
        }
    }

    /// Stage 0 on the event's process: a chain starts there unless one of
    /// that rule is already in progress on it.
    fn start(&mut self, slot: u16, rec: &Rec) {
        let within = self.rules[usize::from(slot)].within_ns;
        if let Some(anchor) = self.anchors.get_mut(&rec.process) {
            if let Some(i) = anchor.chains.iter().position(|p| p.slot == slot) {
                if rec.ts.saturating_sub(anchor.chains[i].start_ts) <= within {
                    return;
                }
                anchor.chains.remove(i);
                self.chains -= 1;
                self.drops[ChainDrop::Expired as usize] += 1;
            }
        } else {
            while self.anchors.len() >= self.config.max_anchors.max(1) {
                let Some((_, oldest)) = self.anchor_age.first().copied() else { break };
                self.drop_anchor(oldest, ChainDrop::Cap);
            }
            self.anchors.insert(rec.process, Anchor { age_key: rec.ts, ..Anchor::default() });
            self.anchor_age.insert((rec.ts, rec.process));
        }
        if let Some(anchor) = self.anchors.get_mut(&rec.process) {
            anchor.chains.push(Progress { slot, reached: 0, start_ts: rec.ts, event_ids: vec![rec.event_id] });
            self.chains += 1;
        }
    }

    /// Stage `stage` ≥ 1: the nearest chain in the event's lineage that
    /// reached `stage − 1` advances; the last stage fires.
    fn advance(&mut self, slot: u16, stage: u8, rec: &Rec, out: &mut Vec<Firing>) {
        let rule = &self.rules[usize::from(slot)];
        let (within, last) = (rule.within_ns, rule.stages - 1);
        let lineage = self.lineage(rec);
        for node in lineage {
            let Some(anchor) = self.anchors.get_mut(&node) else { continue };
            let Some(i) = anchor.chains.iter().position(|p| p.slot == slot && p.reached + 1 == stage) else { continue };
            if rec.ts.saturating_sub(anchor.chains[i].start_ts) > within {
                continue;
            }
            if stage < last {
                let progress = &mut anchor.chains[i];
                progress.reached = stage;
                progress.event_ids.push(rec.event_id);
                return;
            }
            let mut done = anchor.chains.remove(i);
            self.chains -= 1;
            done.event_ids.push(rec.event_id);
            if anchor.chains.is_empty() {
                let key = anchor.age_key;
                self.anchors.remove(&node);
                self.anchor_age.remove(&(key, node));
            }
            let rule = &self.rules[usize::from(slot)];
            let path: Vec<&str> = rule.names.iter().map(|n| &**n).collect();
            out.push(Firing {
                rule: rule.index,
                process: rec.process,
                context: rec.context.clone(),
                event_ids: done.event_ids,
                ts_ns: rec.ts,
                event_kind: rec.kind,
                summary: format!("chain {}: {}", path.join(" → "), rec.summary),
            });
            return;
        }
    }

    /// The event's process, then its ancestors, nearest first: the
    /// context's when it has one, else the fork edges.
    fn lineage(&self, rec: &Rec) -> Vec<ProcessKey> {
        let mut nodes = vec![rec.process];
        if !rec.ancestors.is_empty() {
            nodes.extend_from_slice(&rec.ancestors);
            return nodes;
        }
        let mut at = rec.process;
        while let Some(parent) = self.parents.get(&at) {
            if nodes.len() > MAX_DEPTH || nodes.contains(parent) {
                break;
            }
            nodes.push(*parent);
            at = *parent;
        }
        nodes
    }

    fn add_parent(&mut self, child: ProcessKey, parent: ProcessKey) {
        if self.parents.insert(child, parent).is_none() {
            self.parent_order.push_back(child);
        }
        while self.parents.len() > self.config.max_parents.max(1) {
            let Some(oldest) = self.parent_order.pop_front() else { break };
            self.parents.remove(&oldest);
        }
    }

    fn drop_anchor(&mut self, process: ProcessKey, reason: ChainDrop) {
        let Some(anchor) = self.anchors.remove(&process) else { return };
        self.anchor_age.remove(&(anchor.age_key, process));
        self.chains -= anchor.chains.len();
        self.drops[reason as usize] += anchor.chains.len() as u64;
    }

    /// Drops chains older than their window and anchors exited more than
    /// the grace period before `now`.
    fn sweep(&mut self, now: u64) {
        while let Some(&(ts, process)) = self.exited.front() {
            if now.saturating_sub(ts) < self.config.exit_grace_ns {
                break;
            }
            self.exited.pop_front();
            if self.anchors.get(&process).is_some_and(|a| a.exited) {
                self.drop_anchor(process, ChainDrop::Exit);
            }
            self.parents.remove(&process);
        }
        let mut emptied = Vec::new();
        for (key, anchor) in &mut self.anchors {
            let before = anchor.chains.len();
            let rules = &self.rules;
            anchor.chains.retain(|p| now.saturating_sub(p.start_ts) <= rules[usize::from(p.slot)].within_ns);
            let gone = before - anchor.chains.len();
            self.chains -= gone;
            self.drops[ChainDrop::Expired as usize] += gone as u64;
            if anchor.chains.is_empty() {
                emptied.push((anchor.age_key, *key));
            }
        }
        for (age, key) in emptied {
            self.anchors.remove(&key);
            self.anchor_age.remove(&(age, key));
        }
        // Exited processes leave their keys in `parent_order`; compacting
        // on every sweep walked all of it (65 536 hash lookups per second
        // of event time, most of the cost under churn). Compacting only
        // when stale keys outnumber live ones keeps it amortised O(1) per
        // fork and the queue within twice the cap.
        if self.parent_order.len() > 2 * self.parents.len() + 1_024 {
            self.parent_order.retain(|k| self.parents.contains_key(k));
        }
    }
}
