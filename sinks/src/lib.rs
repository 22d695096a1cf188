//! Sinks: where events leave the agent. Each file is one sink type,
//! registered by the binary; `ndjson` is the shared line encoder.

#![forbid(unsafe_code)]

pub mod arrow_spool;
pub mod blackhole;
pub mod console;
pub mod file;
pub mod kafka;
pub mod ndjson;
pub mod protobuf;
pub mod protobuf_sketch;

#[cfg(test)]
mod declared_tests;
