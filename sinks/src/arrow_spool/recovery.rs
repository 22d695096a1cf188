//! Start-up recovery of `.arrow.tmp` files a crash left behind.
//!
//! An IPC file without its footer does not open as a file, but everything
//! after its header (`ARROW1` + zero padding to the writer's alignment, 64
//! bytes by default) is an IPC stream:
//! the schema message, then one message per record batch. So the readable
//! prefix — as far as `schemas::spool::safe_stream_prefix` found every
//! declared length sound — is read with a `StreamReader` until the first
//! incomplete message;
//! those batches are rewritten as a finished file under the same sequence
//! number. A tmp with nothing readable (or another schema, or whose finished
//! twin already exists) is moved to `quarantine/`, never deleted.
//!
//! The rewritten file keeps the tmp file's own schema, metadata included, so
//! its wall-clock anchor (`schemas::spool::WALL_CLOCK_ANCHOR_KEY`) survives.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_schema::SchemaRef;

use super::access::Access;
use super::writer::{self, SpoolFileError};

/// The magic every IPC file starts with (then zero padding to the alignment).
const FILE_MAGIC: &[u8] = b"ARROW1";

/// What became of one leftover tmp file.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Rewritten as a finished file with this many batches and rows.
    Recovered { path: PathBuf, batches: usize, rows: u64, bytes: u64 },
    /// Moved aside, with the reason.
    Quarantined { path: PathBuf, reason: String },
}

/// What an unfinished file holds, for `hostflow validate --spool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TmpSummary {
    /// Whole record batches recovery would keep…
    pub batches: usize,
    pub rows: u64,
    /// …the bytes after the last whole, sound message it would drop (a
    /// torn tail)…
    pub torn_bytes: u64,
    /// …and whole batches whose lengths were sound but which arrow could
    /// not decode (they and what follows are dropped too).
    pub undecodable: usize,
}

/// The IPC stream inside an unfinished file's bytes: what follows the
/// `ARROW1` magic and its zero padding.
fn stream_of(bytes: &[u8]) -> Result<&[u8], String> {
    let Some(after_magic) = bytes.strip_prefix(FILE_MAGIC) else {
        return Err("no Arrow IPC file header".to_owned());
    };
    // The padding after the magic runs to the writer's alignment (64 bytes
    // by default, 8 at least); the stream starts at the first non-zero byte.
    let padding = after_magic.iter().position(|&b| b != 0).unwrap_or(after_magic.len());
    if (FILE_MAGIC.len() + padding) & 7 != 0 {
        return Err("no Arrow IPC stream after the file header".to_owned());
    }
    Ok(&after_magic[padding..])
}

/// What recovery would make of an unfinished file's bytes, without
/// writing anything: its whole batches and the torn bytes after them.
pub fn tmp_summary(bytes: &[u8], schema: &SchemaRef) -> Result<TmpSummary, String> {
    let batches = readable_batches(bytes, schema)?;
    let stream = stream_of(bytes)?;
    let (safe, checked) = schemas::spool::safe_stream_prefix(stream, schema, false)?;
    Ok(TmpSummary {
        batches: batches.len(),
        rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
        torn_bytes: (stream.len() - safe) as u64,
        undecodable: checked - batches.len().min(checked),
    })
}

/// The readable record batches of an unfinished IPC file's bytes, or why
/// none are. Every batch carries the file's own schema (metadata included).
pub fn readable_batches(bytes: &[u8], schema: &SchemaRef) -> Result<Vec<RecordBatch>, String> {
    let stream = stream_of(bytes)?;
    // Only the prefix whose every declared length was checked reaches
    // arrow's reader: a torn or corrupt length would make it allocate what
    // the length says, and an impossible allocation aborts the process.
    let (safe, _) = schemas::spool::safe_stream_prefix(stream, schema, false)?;
    let reader = StreamReader::try_new(&stream[..safe], None).map_err(|e| format!("no readable schema: {e}"))?;
    if reader.schema().fields() != schema.fields() {
        return Err("schema differs from this kind's schema".to_owned());
    }
    // Stop at the first message that does not decode: a crash cut it short.
    // Arrow's decoder asserts on some malformed buffers (misaligned
    // offsets) rather than returning an error, so each batch is decoded
    // under `catch_unwind` and a panic ends the readable prefix too.
    let mut reader = reader;
    let mut batches: Vec<RecordBatch> = Vec::new();
    while let Ok(Some(Ok(batch))) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.next())) {
        batches.push(batch);
    }
    if batches.is_empty() {
        return Err("no complete record batch".to_owned());
    }
    Ok(batches)
}

/// Recovers or quarantines the tmp file `tmp_path` of `kind` with sequence
/// number `seq` in `dir`; what it writes or creates gets `access`'s modes.
pub fn recover(
    dir: &Path,
    kind: &str,
    seq: u64,
    tmp_path: &Path,
    schema: &SchemaRef,
    access: Access,
) -> Result<Outcome, SpoolFileError> {
    let final_path = dir.join(writer::finished_name(kind, seq));
    let verdict = if final_path.exists() {
        Err("its finished file already exists".to_owned())
    } else {
        let bytes = std::fs::read(tmp_path).map_err(|e| SpoolFileError::io(tmp_path, e))?;
        readable_batches(&bytes, schema)
    };
    match verdict {
        Ok(batches) => {
            let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
            let scratch = dir.join(format!(".{}.recovering", writer::finished_name(kind, seq)));
            let file_schema = batches.first().map_or_else(|| SchemaRef::clone(schema), RecordBatch::schema);
            let bytes = writer::write_whole(&scratch, &final_path, &file_schema, &batches, access)?;
            std::fs::remove_file(tmp_path).map_err(|e| SpoolFileError::io(tmp_path, e))?;
            writer::sync_dir(dir);
            Ok(Outcome::Recovered { path: final_path, batches: batches.len(), rows, bytes })
        }
        Err(reason) => {
            let quarantine = dir.join("quarantine");
            access.create_dir_all(&quarantine).map_err(|e| SpoolFileError::io(&quarantine, e))?;
            let name = tmp_path.file_name().map(|n| n.to_owned()).unwrap_or_default();
            let target = quarantine.join(name);
            std::fs::rename(tmp_path, &target).map_err(|e| SpoolFileError::io(tmp_path, e))?;
            writer::sync_dir(dir);
            Ok(Outcome::Quarantined { path: target, reason })
        }
    }
}
