//! What a layer reports when a rule fires, before the transform turns it
//! into a [`pipeline::Detection`] with the rule's metadata.

use std::sync::Arc;

use pipeline::event::ProcessContext;
use pipeline::{EventKind, ProcessKey};

/// Index of a compiled single-event condition (an L1 rule's body, or one
/// step of an L2 rule). Every condition of the loaded set has one; the
/// evaluator reports, per event, the ids of all that hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MatchId(pub u32);

/// One firing of one rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Firing {
    /// Index of the rule in the loaded set (`RuleSet::rules`).
    pub rule: usize,
    /// The process the detection is about (the last step's).
    pub process: ProcessKey,
    pub context: Option<Arc<ProcessContext>>,
    /// The events it rests on, oldest first.
    pub event_ids: Vec<u64>,
    /// Time of the last event it rests on.
    pub ts_ns: u64,
    /// Kind of the last event it rests on.
    pub event_kind: EventKind,
    /// One line for a human: what was seen (the rule's title is added by
    /// the transform).
    pub summary: String,
}
