//! L4's rule model: a kill chain as ordered stages over one process
//! lineage. Each stage is a single-event condition (compiled with every
//! other condition of the set, so the evaluator's kind index and literal
//! gates are stage 0's candidate index); [`crate::l4`] keeps the lineage
//! graph that tells whether an earlier stage was reached by the event's
//! process or one of its ancestors.

use std::sync::Arc;

use super::Match;

/// L4: every stage reached in order, each by the previous stage's process
/// or one of its descendants, within `within_ns` of the first.
#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    pub stages: Vec<Stage>,
    /// From the first stage's event to the last's.
    pub within_ns: u64,
}

/// One stage of a chain.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// A short name for reports (`service`, `shell`, `download`, …).
    pub name: Arc<str>,
    pub matcher: Match,
}
