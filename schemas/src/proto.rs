//! The generated prost types of `proto/*.proto` and the versions they carry.
//!
//! `build.rs` compiles the `.proto` files with `protox` (no system `protoc`)
//! and `prost-build`; this module `include!`s the result under the package's
//! path, `v1`.

/// Prost types of the `hostflow.v1` protobuf package, generated from
/// `schemas/proto/*.proto`; their docs are the `.proto` comments.
///
/// The envelopes — [`ProcessEnvelope`](v1::ProcessEnvelope),
/// [`SketchEnvelope`](v1::SketchEnvelope), [`AgentDiagEvent`](v1::AgentDiagEvent),
/// [`SecurityEvent`](v1::SecurityEvent), [`Detection`](v1::Detection) — are
/// re-exported at the crate root. Oneofs live in the message's snake_case
/// module, e.g. [`v1::process_envelope::Payload`] and
/// [`v1::security_event::Detail`].
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/hostflow.v1.rs"));
}

/// `ProcessEnvelope.schema_version` of the contract this crate builds.
/// Bumped by every additive change to `process.proto`.
pub const PROCESS_ENVELOPE_SCHEMA_VERSION: &str = "2.2";

/// `SecurityEvent.schema_version` of the contract this crate builds.
/// Bumped by every additive change to `security.proto`; a message without
/// one is version 1.0.
pub const SECURITY_EVENT_SCHEMA_VERSION: &str = "1.5";

/// `SketchEnvelope.sketch_version` of the contract this crate builds.
/// Bumped by every additive change to `sketch.proto` or `ddsketch.proto`.
pub const SKETCH_VERSION: u32 = 1;

/// The encoded `google.protobuf.FileDescriptorSet` of every `.proto` file
/// here (without source info): for schema registries, reflection, and the
/// frozen-tag test.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostflow_descriptor.bin"));

#[cfg(test)]
mod tests;
