//! The hostflow binary's library half: the component registry and the
//! commands, kept here (not in `main.rs`) so benches and tests can build
//! topologies exactly as the binary does. This is the only crate that
//! knows every concrete component.

#![forbid(unsafe_code)]

pub mod buffer_check;
pub mod buffer_codec;
pub mod commands;
pub mod eval;
pub mod ledger_cli;
pub mod policy_cli;
pub mod registry;
pub mod rules;
pub mod spool_check;
pub mod whatif;

/// The topology `hostflow run` uses without `--config`: the repository's
/// `topology.toml`, compiled in so the quick start needs no file.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../topology.toml");

/// Name shown in messages about the embedded topology.
pub const DEFAULT_TOPOLOGY_NAME: &str = "<embedded topology.toml>";
