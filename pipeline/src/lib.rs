//! The hostflow engine: turns a topology.toml into tasks joined by bounded
//! edges, and reports on them.
//!
//! This crate knows no concrete component. Components implement
//! [`Source`], [`Transform`] or [`Sink`]; the binary registers them in one
//! list of [`ComponentSpec`]s; [`Topology::build`] checks a configuration
//! against that list and [`runtime::run`] runs the result.

#![forbid(unsafe_code)]

pub mod api;
pub mod batch_codec;
pub mod component;
pub mod config;
pub mod diag;
pub mod disk_buffer;
pub mod edge;
pub mod event;
pub mod health;
pub mod ledger;
pub mod metrics;
pub mod runtime;
pub mod shutdown;
pub mod sketch;
pub mod testing;
pub mod topology;

pub use component::{
    build_with, update_channel, BuildFn, Built, ComponentError, ComponentSpec, Output, Sink, SinkContext, Source,
    SourceContext, Transform, Update, UpdateReceiver, UpdateSender,
};
pub use config::{ComponentOptions, ConfigError, ConfigErrors, Role, SourceFile, TopologyConfig, TopologySource};
pub use edge::{BufferConfig, EdgeReceiver, EdgeSender, Fanout, WhenFull};
pub use event::{
    Batch, Confidence, Detection, DetectionLayer, Event, EventKind, EventMeta, Field, FieldType, FieldValue,
    ProcessKey, Severity,
};
pub use metrics::DropReason;
pub use shutdown::{shutdown_channel, ShutdownSignal, ShutdownTrigger};
pub use topology::Topology;

/// Parses and checks a topology (one file, or a config directory's files)
/// in one call: the path `validate`, `graph` and `run` share.
pub fn load(source: impl Into<TopologySource>, registry: &[ComponentSpec]) -> Result<Topology, ConfigErrors> {
    let config = TopologyConfig::parse(source)?;
    Topology::build(config, registry)
}

/// An error with its sources, `a: b: c`, skipping a cause whose text the
/// message already contains (aya and std errors often repeat theirs). For
/// logs, /health reasons and diag events, where only text travels.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
