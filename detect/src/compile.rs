//! Compiles every single-event condition of a rule set (each L1 rule's
//! body and each L2 step) into one evaluator, built once at load time.
//!
//! Why one evaluator and not one matcher per rule: with 200 rules on exec
//! events, per-rule substring searches would scan the same command line
//! 200 times. Instead every literal of every rule on one field goes into
//! one ASCII-case-insensitive Aho-Corasick automaton per field ("slot"),
//! scanned at most once per event and only when a candidate condition
//! needs it; a literal's hit records whether it touched the start, the end
//! or the whole value, which answers `prefix`, `suffix`, `equals` and
//! `contains` with a bit test. Regexes of one slot form one `RegexSet`,
//! also run at most once per event. Conditions are indexed by event kind,
//! so an event only meets the conditions that can match its kind: that is
//! the cheap prefilter in front of the exact checks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

mod dialect;
pub use dialect::check_regex;
use dialect::{regex_set, RegexSet};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use pipeline::{Event, EventKind};

use crate::firing::MatchId;
use crate::rule::{Cidr, CmpOp, Expr, IocKind, IocSet, Match, Pred, Target, Test, TextOp};

mod values;
use values::{compare, text_holds, IpSet};
pub use values::{parse_sha256, value, with_texts, Value};

/// Everything compiled; immutable and shared by reference.
#[derive(Debug)]
pub struct Evaluator {
    /// Per condition id: its compiled expression.
    conditions: Vec<Node>,
    /// Per `EventKind::index()`: the conditions that can hold for it.
    by_kind: Vec<KindIndex>,
    /// Per global literal id: the conditions that cannot hold unless it is
    /// found (see [`KindIndex`]).
    needed_by: Vec<Vec<MatchId>>,
    /// Numeric gates: (numeric target, value) → the conditions that cannot
    /// hold unless the target has that value (`dst_port: [3333, 4444]`).
    needed_by_number: HashMap<(u16, i128), Vec<MatchId>>,
    numeric_targets: Vec<Target>,
    slots: Vec<Slot>,
    sets: Vec<CompiledSet>,
    literal_count: usize,
    regex_count: usize,
}

/// The prefilter of one event kind. Most rules cannot hold unless some
/// literal of theirs occurs in the event (a Sigma rule's `Image|endswith`
/// list, a native rule's `exe: { prefix: … }`): those rules are only
/// evaluated when one of their literals was found by the slot scans, which
/// run once per event anyway. With 200 rules on exec events, an event meets
/// the handful whose literals it contains instead of all 200.
#[derive(Clone, Debug, Default)]
struct KindIndex {
    /// Conditions with no necessary literal: always evaluated.
    always: Vec<MatchId>,
    /// Conditions gated by their literals.
    gated: Vec<MatchId>,
    /// The slots whose scans decide the gated conditions.
    slots: Vec<u16>,
    /// The numeric targets whose values decide gated conditions.
    numbers: Vec<u16>,
}

/// One key of a gate: a literal found by a slot scan, or a numeric
/// target's exact value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Gate {
    Literal { slot: u16, id: u32 },
    Number { target: u16, value: i128 },
}

#[derive(Debug)]
enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    /// Literals of one slot, by global literal id.
    Literals {
        slot: u16,
        op: TextOp,
        ids: Vec<u32>,
        all: bool,
    },
    /// Text compared directly (cased literals, empty literals).
    Direct {
        target: Target,
        op: TextOp,
        values: Vec<Arc<str>>,
        all: bool,
        cased: bool,
    },
    /// Regexes of one slot, by global regex id.
    Regexes {
        slot: u16,
        ids: Vec<u32>,
        all: bool,
        /// Literals (global ids, in the slot's automaton) of which every
        /// match must contain one: the regexes' prefilter.
        gate: Option<Vec<u32>>,
    },
    Cidr {
        target: Target,
        nets: Vec<Cidr>,
    },
    Num {
        target: Target,
        op: CmpOp,
        value: i128,
    },
    NumIn {
        target: Target,
        values: Vec<i128>,
    },
    BitsAny {
        target: Target,
        mask: u64,
    },
    Set {
        target: Target,
        set: u32,
    },
    Exists {
        target: Target,
        present: bool,
    },
}

/// One text target with its literals and regexes.
#[derive(Debug)]
struct Slot {
    target: Target,
    /// Pattern i of `automaton` is global literal `literal_ids[i]`.
    automaton: Option<AhoCorasick>,
    literal_ids: Vec<u32>,
    regexes: Option<RegexSet>,
    regex_ids: Vec<u32>,
}

#[derive(Debug)]
enum CompiledSet {
    Sha256(HashSet<[u8; 32]>),
    Ip(IpSet),
    Path(HashSet<Box<str>>),
    Substring(AhoCorasick),
}

/// A compile failure (the front ends check most things; this catches what
/// only compiling can, e.g. an unknown IOC set name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub condition: MatchId,
    pub message: String,
}

/// Collects conditions, then builds the evaluator.
#[derive(Debug, Default)]
pub struct Builder {
    matches: Vec<Match>,
}

impl Builder {
    /// Adds a condition; its id is its position.
    pub fn add(&mut self, matcher: &Match) -> MatchId {
        self.matches.push(matcher.clone());
        MatchId((self.matches.len() - 1) as u32)
    }

    /// Compiles every condition and IOC set.
    pub fn build(self, sets: &[IocSet]) -> Result<Evaluator, Vec<CompileError>> {
        let mut errors = Vec::new();
        let set_index: HashMap<&str, u32> = sets.iter().enumerate().map(|(i, s)| (&*s.name, i as u32)).collect();
        let mut state = BuildState::default();
        let mut conditions = Vec::with_capacity(self.matches.len());
        let mut by_kind = vec![KindIndex::default(); EventKind::ALL.len()];
        let mut gates: Vec<Option<Vec<Gate>>> = Vec::with_capacity(self.matches.len());
        let mut numeric_targets: Vec<Target> = Vec::new();
        for (i, m) in self.matches.iter().enumerate() {
            let id = MatchId(i as u32);
            match state.node(&m.expr, &set_index) {
                Ok(node) => {
                    gates.push(necessary(&node, &mut numeric_targets));
                    conditions.push(node);
                }
                Err(message) => {
                    errors.push(CompileError { condition: id, message });
                    gates.push(None);
                    conditions.push(Node::Any(Vec::new()));
                }
            }
            for kind in EventKind::ALL {
                if m.kinds.contains(kind) {
                    let index = &mut by_kind[kind.index()];
                    match &gates[i] {
                        Some(keys) => {
                            index.gated.push(id);
                            for key in keys {
                                match key {
                                    Gate::Literal { slot, .. } if !index.slots.contains(slot) => {
                                        index.slots.push(*slot)
                                    }
                                    Gate::Number { target, .. } if !index.numbers.contains(target) => {
                                        index.numbers.push(*target)
                                    }
                                    _ => {}
                                }
                            }
                        }
                        None => index.always.push(id),
                    }
                }
            }
        }
        let mut needed_by = vec![Vec::new(); state.literal_count as usize];
        let mut needed_by_number: HashMap<(u16, i128), Vec<MatchId>> = HashMap::new();
        for (i, gate) in gates.iter().enumerate() {
            let id = MatchId(i as u32);
            for key in gate.iter().flatten() {
                let list = match key {
                    Gate::Literal { id: literal, .. } => &mut needed_by[*literal as usize],
                    Gate::Number { target, value } => needed_by_number.entry((*target, *value)).or_default(),
                };
                if list.last() != Some(&id) {
                    list.push(id);
                }
            }
        }
        let mut slots = Vec::with_capacity(state.slots.len());
        for pending in state.slots {
            let automaton = if pending.literals.is_empty() {
                None
            } else {
                // A contiguous NFA, not the DFA the builder would pick for
                // a few hundred literals: a tenth of the memory (the
                // built-in pack's 13 automata: 0.88 MiB as DFAs), and the
                // scan is a small part of an event's cost (BENCHMARKS.md).
                let built = AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .match_kind(MatchKind::Standard)
                    .build(pending.literals.iter().map(|l| l.as_bytes()));
                match built {
                    Ok(ac) => Some(ac),
                    Err(e) => {
                        errors.push(CompileError { condition: MatchId(0), message: format!("literal automaton: {e}") });
                        None
                    }
                }
            };
            let regexes = if pending.regexes.is_empty() {
                None
            } else {
                match regex_set(&pending.regexes) {
                    Ok(set) => Some(set),
                    Err(e) => {
                        errors.push(CompileError { condition: MatchId(0), message: format!("regex: {e}") });
                        None
                    }
                }
            };
            slots.push(Slot {
                target: pending.target,
                automaton,
                literal_ids: pending.literal_ids,
                regexes,
                regex_ids: pending.regex_ids,
            });
        }
        let mut compiled_sets = Vec::with_capacity(sets.len());
        for set in sets {
            match compile_set(set) {
                Ok(c) => compiled_sets.push(c),
                Err(message) => {
                    errors.push(CompileError { condition: MatchId(u32::MAX), message });
                    compiled_sets.push(CompiledSet::Path(HashSet::new()));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Evaluator {
            conditions,
            by_kind,
            needed_by,
            needed_by_number,
            numeric_targets,
            slots,
            sets: compiled_sets,
            literal_count: state.literal_count as usize,
            regex_count: state.regex_count as usize,
        })
    }
}

#[derive(Default, Debug)]
struct BuildState {
    slots: Vec<PendingSlotT>,
    slot_of: HashMap<Target, u16>,
    literal_count: u32,
    regex_count: u32,
}

#[derive(Debug)]
struct PendingSlotT {
    target: Target,
    literals: Vec<Arc<str>>,
    literal_ids: Vec<u32>,
    regexes: Vec<Arc<str>>,
    regex_ids: Vec<u32>,
    seen: HashMap<String, u32>,
}

impl BuildState {
    fn slot(&mut self, target: Target) -> u16 {
        if let Some(slot) = self.slot_of.get(&target) {
            return *slot;
        }
        let slot = self.slots.len() as u16;
        self.slots.push(PendingSlotT {
            target,
            literals: Vec::new(),
            literal_ids: Vec::new(),
            regexes: Vec::new(),
            regex_ids: Vec::new(),
            seen: HashMap::new(),
        });
        self.slot_of.insert(target, slot);
        slot
    }

    /// The global id of a literal of a slot (one pattern per distinct
    /// text, compared ASCII-case-insensitively).
    fn literal(&mut self, slot: u16, value: &str) -> u32 {
        let lower = value.to_ascii_lowercase();
        let pending = &mut self.slots[slot as usize];
        match pending.seen.get(&lower) {
            Some(id) => *id,
            None => {
                let id = self.literal_count;
                self.literal_count += 1;
                pending.seen.insert(lower, id);
                pending.literals.push(Arc::from(value));
                pending.literal_ids.push(id);
                id
            }
        }
    }

    fn node(&mut self, expr: &Expr, sets: &HashMap<&str, u32>) -> Result<Node, String> {
        Ok(match expr {
            Expr::All(parts) => Node::All(parts.iter().map(|p| self.node(p, sets)).collect::<Result<_, _>>()?),
            Expr::Any(parts) => Node::Any(parts.iter().map(|p| self.node(p, sets)).collect::<Result<_, _>>()?),
            Expr::Not(inner) => Node::Not(Box::new(self.node(inner, sets)?)),
            Expr::Pred(Pred { target, test }) => self.leaf(*target, test, sets)?,
        })
    }

    fn leaf(&mut self, target: Target, test: &Test, sets: &HashMap<&str, u32>) -> Result<Node, String> {
        Ok(match test {
            Test::Text { op, values, all, cased } => {
                if *cased || values.iter().any(|v| v.is_empty()) {
                    Node::Direct { target, op: *op, values: values.clone(), all: *all, cased: *cased }
                } else {
                    let slot = self.slot(target);
                    let ids = values.iter().map(|value| self.literal(slot, value)).collect();
                    Node::Literals { slot, op: *op, ids, all: *all }
                }
            }
            Test::Regex { patterns, all } => {
                for pattern in patterns {
                    check_regex(pattern).map_err(|e| format!("regex `{pattern}`: {e}"))?;
                }
                let slot = self.slot(target);
                // Any of the patterns may match (or, with `all`, the first
                // must): the union of their required literals (the first's)
                // is necessary.
                let gating: &[Arc<str>] = if *all { &patterns[..patterns.len().min(1)] } else { patterns };
                let mut gate_literals = Some(Vec::new());
                for pattern in gating {
                    match (required_literals(pattern), gate_literals.as_mut()) {
                        (Some(found), Some(all_found)) => all_found.extend(found),
                        _ => gate_literals = None,
                    }
                }
                let gate = gate_literals
                    .filter(|l| !l.is_empty() && l.len() <= 64)
                    .map(|literals| literals.into_iter().map(|l| self.literal(slot, &l)).collect());
                let mut ids = Vec::with_capacity(patterns.len());
                for pattern in patterns {
                    let id = self.regex_count;
                    self.regex_count += 1;
                    let pending = &mut self.slots[slot as usize];
                    pending.regexes.push(pattern.clone());
                    pending.regex_ids.push(id);
                    ids.push(id);
                }
                Node::Regexes { slot, ids, all: *all, gate }
            }
            Test::Cidr(nets) => Node::Cidr { target, nets: nets.clone() },
            Test::Num { op, value } => Node::Num { target, op: *op, value: *value },
            Test::NumIn(values) => Node::NumIn { target, values: values.clone() },
            Test::BitsAny(mask) => Node::BitsAny { target, mask: *mask },
            Test::InSet(name) => match sets.get(&**name) {
                Some(set) => Node::Set { target, set: *set },
                None => return Err(format!("unknown IOC set `{name}`")),
            },
            Test::Exists(present) => Node::Exists { target, present: *present },
        })
    }
}

/// Keys of which at least one must be present for the node to hold
/// (`None`: no such set). `Not` and other leaves have none; `All` takes its
/// smallest part's set, `Any` the union of its parts' when every part has
/// one.
fn necessary(node: &Node, numeric_targets: &mut Vec<Target>) -> Option<Vec<Gate>> {
    let mut number = |target: Target| -> u16 {
        match numeric_targets.iter().position(|t| *t == target) {
            Some(i) => i as u16,
            None => {
                numeric_targets.push(target);
                (numeric_targets.len() - 1) as u16
            }
        }
    };
    match node {
        Node::Literals { slot, ids, .. } | Node::Regexes { slot, gate: Some(ids), .. } => {
            Some(ids.iter().map(|id| Gate::Literal { slot: *slot, id: *id }).collect())
        }
        Node::NumIn { target, values } if !values.is_empty() => {
            let target = number(*target);
            Some(values.iter().map(|value| Gate::Number { target, value: *value }).collect())
        }
        Node::Num { target, op: CmpOp::Eq, value } => {
            Some(vec![Gate::Number { target: number(*target), value: *value }])
        }
        Node::All(parts) => parts.iter().filter_map(|p| necessary(p, numeric_targets)).min_by_key(Vec::len),
        Node::Any(parts) if !parts.is_empty() => {
            let mut union = Vec::new();
            for part in parts {
                union.extend(necessary(part, numeric_targets)?);
            }
            Some(union)
        }
        _ => None,
    }
}

/// Literals one of which every match of `pattern` starts with (so
/// contains), lower-cased and deduplicated; `None` when there is no such
/// finite set (the empty string among them, too many case variants, a
/// pattern that does not parse) — the regex is then not gated.
fn required_literals(pattern: &str) -> Option<Vec<String>> {
    let hir = regex_syntax::ParserBuilder::new().unicode(false).utf8(false).build().parse(pattern).ok()?;
    let mut extractor = regex_syntax::hir::literal::Extractor::new();
    extractor.limit_total(256);
    let seq = extractor.extract(&hir);
    let mut found: Vec<String> = Vec::new();
    for literal in seq.literals()? {
        let text = std::str::from_utf8(literal.as_bytes()).ok()?.to_ascii_lowercase();
        if text.is_empty() {
            return None;
        }
        if !found.contains(&text) {
            found.push(text);
        }
    }
    (!found.is_empty()).then_some(found)
}

fn compile_set(set: &IocSet) -> Result<CompiledSet, String> {
    Ok(match set.kind {
        IocKind::Sha256 => {
            let mut hashes = HashSet::with_capacity(set.values.len());
            for value in &set.values {
                hashes.insert(parse_sha256(value).ok_or_else(|| format!("set `{}`: bad sha256 `{value}`", set.name))?);
            }
            CompiledSet::Sha256(hashes)
        }
        IocKind::Ip => {
            let mut ips = IpSet::default();
            for value in &set.values {
                ips.insert(Cidr::parse(value).map_err(|e| format!("set `{}`: {e}", set.name))?);
            }
            CompiledSet::Ip(ips)
        }
        IocKind::Path => CompiledSet::Path(set.values.iter().map(|v| Box::from(&**v)).collect()),
        IocKind::Substring => CompiledSet::Substring(
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .kind(Some(AhoCorasickKind::ContiguousNFA))
                .match_kind(MatchKind::LeftmostFirst)
                .build(set.values.iter().map(|v| v.as_bytes()))
                .map_err(|e| format!("set `{}`: {e}", set.name))?,
        ),
    })
}

const HIT_ANY: u8 = 1;
const HIT_START: u8 = 2;
const HIT_END: u8 = 4;
const HIT_WHOLE: u8 = 8;

/// Per-evaluator scratch, reused across events: generation stamps make
/// "computed for this event" an integer compare, so nothing is cleared per
/// event.
#[derive(Debug, Default)]
pub struct Scratch {
    generation: u32,
    slot_scanned: Vec<u32>,
    slot_regexed: Vec<u32>,
    literal_stamp: Vec<u32>,
    literal_hits: Vec<u8>,
    regex_stamp: Vec<u32>,
    text: String,
    /// Conditions to evaluate for the current event, and whether a
    /// condition is already among them.
    candidates: Vec<MatchId>,
    candidate_stamp: Vec<u32>,
    /// Literals found in this event, in the order the scans found them.
    found: Vec<u32>,
    regex: dialect::RegexScratch,
}

impl Evaluator {
    /// A scratch sized for this evaluator.
    pub fn scratch(&self) -> Scratch {
        Scratch {
            generation: 0,
            slot_scanned: vec![0; self.slots.len()],
            slot_regexed: vec![0; self.slots.len()],
            literal_stamp: vec![0; self.literal_count],
            literal_hits: vec![0; self.literal_count],
            regex_stamp: vec![0; self.regex_count],
            text: String::new(),
            candidates: Vec::new(),
            candidate_stamp: vec![0; self.conditions.len()],
            found: Vec::new(),
            regex: dialect::RegexScratch::default(),
        }
    }

    /// Per event kind with any condition: (kind, conditions evaluated on
    /// every event of it, conditions behind the literal/number gates).
    pub fn gating(&self) -> Vec<(EventKind, usize, usize)> {
        EventKind::ALL
            .iter()
            .map(|k| (*k, self.by_kind[k.index()].always.len(), self.by_kind[k.index()].gated.len()))
            .filter(|(_, always, gated)| always + gated > 0)
            .collect()
    }

    /// Number of conditions.
    pub fn len(&self) -> usize {
        self.conditions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Appends to `hits` the ids of every condition that holds for `event`,
    /// in id order.
    pub fn evaluate(&self, event: &Event, scratch: &mut Scratch, hits: &mut Vec<MatchId>) {
        let index = &self.by_kind[event.kind().index()];
        if index.always.is_empty() && index.gated.is_empty() {
            return;
        }
        scratch.generation = scratch.generation.wrapping_add(1);
        scratch.found.clear();
        if scratch.generation == 0 {
            // Wrapped: old stamps could collide with new generations.
            scratch.slot_scanned.fill(0);
            scratch.slot_regexed.fill(0);
            scratch.literal_stamp.fill(0);
            scratch.regex_stamp.fill(0);
            scratch.candidate_stamp.fill(0);
            scratch.generation = 1;
        }
        let mut candidates = std::mem::take(&mut scratch.candidates);
        candidates.clear();
        candidates.extend_from_slice(&index.always);
        if !index.gated.is_empty() {
            // Scan the gating slots, then wake the conditions whose
            // literals were found (only those of this kind).
            for slot in &index.slots {
                self.scan(*slot, event, scratch);
            }
            let generation = scratch.generation;
            for target in &index.numbers {
                if let Some(Value::Int(v)) = value(self.numeric_targets[*target as usize], event) {
                    for id in self.needed_by_number.get(&(*target, v)).into_iter().flatten() {
                        let c = id.0 as usize;
                        if scratch.candidate_stamp[c] != generation && index.gated.binary_search(id).is_ok() {
                            scratch.candidate_stamp[c] = generation;
                            candidates.push(*id);
                        }
                    }
                }
            }
            for literal in &scratch.found {
                for id in &self.needed_by[*literal as usize] {
                    let c = id.0 as usize;
                    if scratch.candidate_stamp[c] != generation && index.gated.binary_search(id).is_ok() {
                        scratch.candidate_stamp[c] = generation;
                        candidates.push(*id);
                    }
                }
            }
            candidates.sort_unstable();
        }
        for id in &candidates {
            if self.holds(&self.conditions[id.0 as usize], event, scratch) {
                hits.push(*id);
            }
        }
        scratch.candidates = candidates;
    }

    fn holds(&self, node: &Node, event: &Event, s: &mut Scratch) -> bool {
        match node {
            Node::All(parts) => parts.iter().all(|p| self.holds(p, event, s)),
            Node::Any(parts) => parts.iter().any(|p| self.holds(p, event, s)),
            Node::Not(inner) => !self.holds(inner, event, s),
            Node::Literals { slot, op, ids, all } => {
                if !self.scan(*slot, event, s) {
                    return false;
                }
                let need = match op {
                    TextOp::Contains => HIT_ANY,
                    TextOp::Prefix => HIT_START,
                    TextOp::Suffix => HIT_END,
                    TextOp::Equals => HIT_WHOLE,
                };
                let hit = |id: &u32| {
                    let i = *id as usize;
                    s.literal_stamp[i] == s.generation && s.literal_hits[i] & need != 0
                };
                if *all {
                    ids.iter().all(hit)
                } else {
                    ids.iter().any(hit)
                }
            }
            Node::Direct { target, op, values, all, cased } => {
                let mut found = false;
                let mut every = true;
                with_texts(*target, event, &mut s.text, |text| {
                    for v in values {
                        let h = text_holds(*op, text, v, *cased);
                        found |= h;
                        every &= h;
                    }
                });
                if *all {
                    found && every
                } else {
                    found
                }
            }
            Node::Regexes { slot, ids, all, .. } => {
                if !self.run_regexes(*slot, event, s) {
                    return false;
                }
                let hit = |id: &u32| s.regex_stamp[*id as usize] == s.generation;
                if *all {
                    ids.iter().all(hit)
                } else {
                    ids.iter().any(hit)
                }
            }
            Node::Cidr { target, nets } => match value(*target, event) {
                Some(Value::Addr(addr)) => nets.iter().any(|n| n.contains(addr)),
                _ => false,
            },
            Node::Num { target, op, value: want } => match value(*target, event) {
                Some(Value::Int(v)) => compare(*op, v, *want),
                _ => false,
            },
            Node::NumIn { target, values } => match value(*target, event) {
                Some(Value::Int(v)) => values.contains(&v),
                _ => false,
            },
            Node::BitsAny { target, mask } => match value(*target, event) {
                Some(Value::Int(v)) => (v as u64) & mask != 0,
                _ => false,
            },
            Node::Set { target, set } => self.in_set(*target, *set, event, s),
            Node::Exists { target, present } => value(*target, event).is_some() == *present,
        }
    }

    /// Runs the slot's automaton over the event's value once per event.
    /// `false` when the event has no such value.
    fn scan(&self, slot: u16, event: &Event, s: &mut Scratch) -> bool {
        let i = slot as usize;
        let info = &self.slots[i];
        if s.slot_scanned[i] == s.generation {
            return true;
        }
        let Some(automaton) = &info.automaton else { return false };
        let generation = s.generation;
        let (stamps, hits, found) = (&mut s.literal_stamp, &mut s.literal_hits, &mut s.found);
        let present = with_texts(info.target, event, &mut s.text, |text| {
            let len = text.len();
            for m in automaton.find_overlapping_iter(text) {
                let id = info.literal_ids[m.pattern().as_usize()] as usize;
                let mut bits = HIT_ANY;
                if m.start() == 0 {
                    bits |= HIT_START;
                }
                if m.end() == len {
                    bits |= HIT_END;
                }
                if m.start() == 0 && m.end() == len {
                    bits |= HIT_WHOLE;
                }
                if stamps[id] != generation {
                    stamps[id] = generation;
                    hits[id] = 0;
                    found.push(id as u32);
                }
                hits[id] |= bits;
            }
        });
        if present {
            s.slot_scanned[i] = s.generation;
        }
        present
    }

    fn run_regexes(&self, slot: u16, event: &Event, s: &mut Scratch) -> bool {
        let i = slot as usize;
        let info = &self.slots[i];
        if s.slot_regexed[i] == s.generation {
            return true;
        }
        let Some(set) = &info.regexes else { return false };
        let generation = s.generation;
        let stamps = &mut s.regex_stamp;
        let regex = &mut s.regex;
        let present = with_texts(info.target, event, &mut s.text, |text| {
            dialect::for_each_match(set, i, regex, text.as_bytes(), |index| {
                stamps[info.regex_ids[index] as usize] = generation;
            });
        });
        if present {
            s.slot_regexed[i] = s.generation;
        }
        present
    }

    fn in_set(&self, target: Target, set: u32, event: &Event, s: &mut Scratch) -> bool {
        match &self.sets[set as usize] {
            CompiledSet::Ip(ips) => matches!(value(target, event), Some(Value::Addr(a)) if ips.contains(a)),
            CompiledSet::Sha256(hashes) => {
                let mut found = false;
                with_texts(target, event, &mut s.text, |text| {
                    found |= parse_sha256(text).is_some_and(|h| hashes.contains(&h));
                });
                found
            }
            CompiledSet::Path(paths) => {
                let mut found = false;
                with_texts(target, event, &mut s.text, |text| found |= paths.contains(text));
                found
            }
            CompiledSet::Substring(ac) => {
                let mut found = false;
                with_texts(target, event, &mut s.text, |text| found |= ac.is_match(text));
                found
            }
        }
    }
}

#[cfg(test)]
#[path = "compile/tests.rs"]
mod tests;
