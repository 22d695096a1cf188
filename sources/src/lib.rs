//! Sources: where events come from. Each file is one source type,
//! registered by the binary.

// One exception, reasoned where it stands: registering the eBPF ring
// buffer's fd with tokio (`ebpf/ring.rs`).
#![deny(unsafe_code)]

pub mod agent_diag;
pub mod ebpf;
pub mod exe_hash;
pub mod generator;
pub mod identity;
pub mod procfs;
pub mod replay;
pub mod scrub;
