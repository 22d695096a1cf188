//! Wire contracts of hostflow: `.proto` files with their generated prost
//! types, and the Arrow schema of each event kind.
//!
//! This crate has one job: to say what hostflow's bytes look like outside the
//! process. The engine's in-memory `Event` is deliberately not serializable;
//! a sink converts each event into one of the types here explicitly, so a
//! wire change never ripples into transforms. It depends on no other
//! workspace crate.
//!
//! - [`v1`]: the prost types of the `hostflow.v1` protobuf package
//!   (`proto/*.proto`, compiled at build time by `protox`, a pure-Rust
//!   protobuf compiler). The envelopes are re-exported at the crate root.
//! - [`arrow`]: one Arrow schema per event kind, for the spool, the replay
//!   source and the query command.
//! - [`spool`]: the spool's directory and file-name layout.
//!
//! Versioning: field tags 1–19 of every message are frozen (never change
//! meaning, type or name); new fields are additive with tags ≥ 20; a removed
//! tag is `reserved`, never reused; every additive change bumps the
//! envelope's version ([`PROCESS_ENVELOPE_SCHEMA_VERSION`],
//! [`SECURITY_EVENT_SCHEMA_VERSION`], [`SKETCH_VERSION`]). A test checks tags 1–19 against a hard-coded table.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod arrow;
pub mod columns;
mod proto;
pub mod spool;

#[cfg(test)]
mod frozen_tags;

pub use arrow::{schema_for, KINDS};
pub use proto::{
    v1, FILE_DESCRIPTOR_SET, PROCESS_ENVELOPE_SCHEMA_VERSION, SECURITY_EVENT_SCHEMA_VERSION, SKETCH_VERSION,
};
pub use v1::{AgentDiagEvent, DdSketch, Detection, ProcessEnvelope, SecurityEvent, SketchEnvelope};

/// The `arrow-schema` crate this crate builds its schemas with, so that a
/// consumer can name the exact same types.
pub use arrow_schema;
/// The `prost` crate the generated types implement `Message` of.
pub use prost;
