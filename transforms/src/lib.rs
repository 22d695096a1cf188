//! Transforms: synchronous, batch-shaped steps between sources and sinks.
//! Each file is one transform type, registered by the binary.

#![forbid(unsafe_code)]

pub mod enrich;
pub mod filter;
pub mod lifecycle;
pub mod scan;
pub mod sketch;
pub mod tail;
pub mod topn;
