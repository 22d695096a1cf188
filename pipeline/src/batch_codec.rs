//! How a disk edge turns a batch into bytes and back.
//!
//! The engine cannot know every kind's wire format (that lives with the
//! sinks and the replay source), so the binary hands it one codec at start:
//! the spool's Arrow encoding, so a disk buffer's payload is the same
//! format `hostflow query` and `replay` already read and verify.

use crate::event::Batch;

/// Why a batch could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

/// Encodes batches for a disk edge and decodes them back, losslessly and in
/// order: `decode(encode(b)) == b`, event for event.
pub trait BatchCodec: Send + Sync + 'static {
    /// Appends the encoding of `batch` to `out`.
    fn encode(&self, batch: &Batch, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes one encoded batch.
    fn decode(&self, bytes: &[u8]) -> Result<Batch, CodecError>;
}
