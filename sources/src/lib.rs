//! Sources: where events come from. Each file is one source type,
//! registered by the binary.

#![forbid(unsafe_code)]

pub mod agent_diag;
pub mod generator;
pub mod procfs;
pub mod replay;
