//! Wire contracts of hostflow: `.proto` files with their generated prost
//! types, and the Arrow schema of each event kind.
//!
//! Empty until the process-telemetry issue (#4) adds `ProcessEnvelope`,
//! `SketchEnvelope`, `AgentDiagEvent`, `SecurityEvent` and `Detection`, and
//! the spool issue (#5) adds the Arrow schemas. Nothing here pretends to
//! work yet; sinks that need a wire format do not exist yet either.

#![forbid(unsafe_code)]
