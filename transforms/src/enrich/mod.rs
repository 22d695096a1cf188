//! Process enrichment (issue #14): the `enrich` transform
//! ([`transform`]), which attaches one shared process context to every
//! process-bearing event, and its building blocks: the bounded process
//! table it keeps ([`table`]) and the container identity parsed from a
//! process's cgroup path ([`container`]). The table and the parser are
//! plain data with no I/O and no metrics of their own; the transform feeds
//! them from events, turns their counters into metrics and attaches what
//! they know to each event.

pub mod container;
pub mod table;
pub mod transform;

pub use transform::{build, Enrich, EnrichConfig, EnrichSettings, MissingReason};
