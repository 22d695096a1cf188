//! One kind's open spool file: an Arrow IPC file under `<kind>-<seq>.arrow.tmp`,
//! finished (footer) and renamed to `<kind>-<seq>.arrow` on rotation.
//!
//! Files are created private ([`Access`]). Each open file tracks its
//! unsynced rows and when the oldest of them was written, so the spool can
//! sync exactly the files whose data is older than its flush bound.
//!
//! Blocking I/O: only called from the blocking pool.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, Schema};

use super::access::Access;
use super::ipc_file::{Encoder, IpcFile};

/// The most a spool file buffers before writing: it turns a batch's many
/// small IPC buffer writes into few syscalls. The buffer lives only while a
/// batch is written ([`Counting`] releases it on flush): the default
/// topology keeps eleven kinds' files open, and held for the files' lives
/// these buffers were 0.7 MiB of an idle agent's 12 MB budget (issue #12).
const SPOOL_WRITE_BUFFER: usize = 64 * 1024;

pub use schemas::spool::{finished_name, parse_seq, tmp_name};

/// A buffered `Write` to a spool file that counts the bytes passed to it
/// and frees its buffer on every flush (after each batch), so that an idle
/// kind's open file holds no buffer.
pub struct Counting {
    file: File,
    pending: Vec<u8>,
    bytes: u64,
}

impl Counting {
    fn new(file: File) -> Counting {
        Counting { file, pending: Vec::new(), bytes: 0 }
    }

    fn write_pending(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.file.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.pending.len() + buf.len() > SPOOL_WRITE_BUFFER {
            self.write_pending()?;
        }
        if buf.len() >= SPOOL_WRITE_BUFFER {
            self.file.write_all(buf)?;
        } else {
            if self.pending.capacity() == 0 {
                self.pending.reserve_exact(SPOOL_WRITE_BUFFER);
            }
            self.pending.extend_from_slice(buf);
        }
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_pending()?;
        self.pending = Vec::new();
        self.file.flush()
    }
}

/// Why a spool file operation failed, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum SpoolFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: ArrowError,
    },
}

impl SpoolFileError {
    pub fn io(path: &Path, source: std::io::Error) -> SpoolFileError {
        SpoolFileError::Io { path: path.to_owned(), source }
    }

    pub fn arrow(path: &Path, source: ArrowError) -> SpoolFileError {
        SpoolFileError::Arrow { path: path.to_owned(), source }
    }
}

/// An open `.arrow.tmp` file.
pub struct OpenFile {
    pub tmp_path: PathBuf,
    pub final_path: PathBuf,
    pub opened_at: Instant,
    pub rows: u64,
    /// Rows handed to the OS but not yet synced to disk.
    pub unsynced_rows: u64,
    /// When the oldest of `unsynced_rows` was written.
    pub unsynced_since: Option<Instant>,
    /// The sink's number (in write order) of the oldest batch with rows in
    /// `unsynced_rows`; set by the spool, cleared by a sync.
    pub unsynced_from_batch: Option<u64>,
    writer: IpcFile<Counting>,
}

impl OpenFile {
    /// Creates `dir/<kind>-<seq>.arrow.tmp` with `access`'s mode and writes
    /// the header (`schema`, metadata included).
    pub fn create(
        dir: &Path,
        kind: &str,
        seq: u64,
        schema: &Schema,
        access: Access,
        encoder: &Encoder,
    ) -> Result<OpenFile, SpoolFileError> {
        let tmp_path = dir.join(tmp_name(kind, seq));
        let final_path = dir.join(finished_name(kind, seq));
        let file = access.create_file(&tmp_path).map_err(|e| SpoolFileError::io(&tmp_path, e))?;
        let writer =
            IpcFile::create(Counting::new(file), schema, encoder).map_err(|e| SpoolFileError::arrow(&tmp_path, e))?;
        Ok(OpenFile {
            tmp_path,
            final_path,
            opened_at: Instant::now(),
            rows: 0,
            unsynced_rows: 0,
            unsynced_since: None,
            unsynced_from_batch: None,
            writer,
        })
    }

    /// Bytes handed to the file so far.
    pub fn bytes(&self) -> u64 {
        self.writer.get_ref().bytes
    }

    /// Appends one record batch and pushes it to the OS (so a crash of the
    /// process, not of the host, keeps it); `fsync` also syncs it to disk.
    pub fn write(&mut self, batch: &RecordBatch, encoder: &mut Encoder, fsync: bool) -> Result<(), SpoolFileError> {
        self.writer.write(batch, encoder).map_err(|e| SpoolFileError::arrow(&self.tmp_path, e))?;
        self.rows += batch.num_rows() as u64;
        self.writer.get_mut().flush().map_err(|e| SpoolFileError::io(&self.tmp_path, e))?;
        self.unsynced_rows += batch.num_rows() as u64;
        self.unsynced_since.get_or_insert_with(Instant::now);
        if fsync {
            self.sync()?;
        }
        Ok(())
    }

    /// Syncs written data to disk.
    pub fn sync(&mut self) -> Result<(), SpoolFileError> {
        self.writer.get_ref().file.sync_data().map_err(|e| SpoolFileError::io(&self.tmp_path, e))?;
        self.unsynced_rows = 0;
        self.unsynced_since = None;
        self.unsynced_from_batch = None;
        Ok(())
    }

    /// Writes the footer, syncs (unless `fsync` is false) and renames the
    /// file to its finished name. Returns the finished path and its size.
    pub fn finish(mut self, fsync: bool) -> Result<(PathBuf, u64), SpoolFileError> {
        self.writer.finish().map_err(|e| SpoolFileError::arrow(&self.tmp_path, e))?;
        self.writer.get_mut().flush().map_err(|e| SpoolFileError::io(&self.tmp_path, e))?;
        if fsync {
            self.sync()?;
        }
        let bytes = self.bytes();
        std::fs::rename(&self.tmp_path, &self.final_path).map_err(|e| SpoolFileError::io(&self.tmp_path, e))?;
        if fsync {
            sync_dir(self.final_path.parent().unwrap_or(Path::new(".")));
        }
        Ok((self.final_path, bytes))
    }
}

/// Syncs a directory so a rename in it is durable; best effort.
pub fn sync_dir(dir: &Path) {
    if let Ok(handle) = File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// Writes `batches` as one finished file at `final_path` through a temporary
/// name `tmp_path`; used by recovery. Returns the file's size.
pub fn write_whole(
    tmp_path: &Path,
    final_path: &Path,
    schema: &Schema,
    batches: &[RecordBatch],
    access: Access,
) -> Result<u64, SpoolFileError> {
    let file = access.create_file(tmp_path).map_err(|e| SpoolFileError::io(tmp_path, e))?;
    let mut encoder = Encoder::zstd().map_err(|e| SpoolFileError::arrow(tmp_path, e))?;
    let mut writer =
        IpcFile::create(Counting::new(file), schema, &encoder).map_err(|e| SpoolFileError::arrow(tmp_path, e))?;
    for batch in batches {
        writer.write(batch, &mut encoder).map_err(|e| SpoolFileError::arrow(tmp_path, e))?;
    }
    writer.finish().map_err(|e| SpoolFileError::arrow(tmp_path, e))?;
    let mut counting = writer.into_inner();
    counting.flush().map_err(|e| SpoolFileError::io(tmp_path, e))?;
    counting.file.sync_all().map_err(|e| SpoolFileError::io(tmp_path, e))?;
    std::fs::rename(tmp_path, final_path).map_err(|e| SpoolFileError::io(tmp_path, e))?;
    sync_dir(final_path.parent().unwrap_or(Path::new(".")));
    Ok(counting.bytes)
}
