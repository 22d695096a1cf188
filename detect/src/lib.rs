//! Detection (issues #15, #16; DESIGN §6): rule files compiled once into
//! matchers, evaluated on enriched events, every matching rule firing.
//!
//! The flow, front to back:
//! - front ends read rule files into the syntax-free [`rule`] model:
//!   [`native`] (hostflow's YAML) and [`sigma`] (Sigma rules for Linux,
//!   and Sigma correlations as an import syntax for L2);
//! - [`ruleset`] loads a directory (every problem at once, with file, line
//!   and rule id), and [`compile`] turns the rules into one compiled set:
//!   literal automata per field, regex sets, IOC hash sets, CIDR sets;
//! - [`engine`] fires single-event indicators (L1) at once, [`l2`] keeps
//!   the bounded state of sequences and counts, [`l3`] the learned
//!   baselines of anomaly rules, [`l4`] the chains in progress over process
//!   lineage;
//! - [`transform`] is the `detect` component: it evaluates batches, emits
//!   [`pipeline::Detection`] events, and swaps in a recompiled set on
//!   SIGHUP or a change under the rules directory, between two batches.

pub mod builtin;
pub mod cases;
pub mod compile;
pub mod engine;
pub mod firing;
pub mod l2;
pub mod l3;
pub mod l4;
pub mod native;
pub mod problem;
pub mod rule;
pub mod ruleset;
pub mod sigma;
pub mod transform;
pub mod yaml;

pub use l2::lineage_key;
pub use problem::Problem;
pub use ruleset::{load, RuleSet};
pub use transform::build;
