//! Building blocks of process enrichment (issue #14): the bounded process
//! table that lineage is read from, and the container identity parsed from a
//! process's cgroup path. Plain data structures with no I/O and no metrics
//! of their own: the `enrich` transform (wired later) feeds them from
//! events, turns their counters into metrics and attaches what they know to
//! each event.

pub mod container;
pub mod table;
