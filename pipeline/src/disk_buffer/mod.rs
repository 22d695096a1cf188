//! A durable, crash-safe on-disk FIFO of opaque records: the storage under
//! a `type = "disk"` buffer. Plain synchronous file I/O; the engine runs
//! the writer and the reader on threads of their own (`edge/disk.rs`).
//!
//! Why it exists: a sink that cannot deliver (a broker outage) must not
//! lose what it was handed, nor stall its sources for longer than the
//! disk can absorb, and a `kill -9` must not lose what was accepted.
//!
//! # Layout
//!
//! One directory per buffer, holding only:
//! - `segment-{seq:020}.hfbuf`: a 16-byte header (magic `HFBUF\0`, format
//!   version u16 LE, 8 reserved bytes), then records
//!   `[len u32 LE][crc32 u32 LE of (n_events ‖ payload)][n_events u32 LE][payload]`.
//!   A length above [`MAX_PAYLOAD`] is corruption. Records are appended
//!   to the newest segment; a new one is started when the next record
//!   would take it past `segment_bytes` (a larger record gets a segment
//!   of its own) and, lazily, by the first append after [`open`] — a
//!   writer never appends to a file an earlier process wrote.
//! - `ack`: 32 bytes rewritten in place (magic, version, the last
//!   acknowledged [`RecordId`], crc32). Missing, empty or invalid means
//!   nothing is acknowledged beyond the segments already deleted, so
//!   records are delivered again, never lost.
//! - `lock`: held with an exclusive `flock` while the buffer is open, so
//!   two processes (or two buffers in one) never share a directory.
//!
//! Anything else in the directory (another name, a segment with a bad
//! magic or version) stops [`open`]: nothing is ever deleted that this
//! code did not write.
//!
//! # Durability
//!
//! Appends go to the page cache: a process crash loses nothing, the
//! kernel keeps the pages. [`BufferWriter::sync`] (called by the engine
//! every second, and here on segment roll and on close) makes them
//! survive a power loss. Records leave the disk only when acknowledged
//! ([`Acker::ack`]), in whole segments; the segment being written is never
//! deleted.
//!
//! # Torn records
//!
//! A *torn record* is one stretch of bytes in a segment that does not
//! parse as records: a checksum mismatch, an impossible length, or the
//! file ending inside a record (a crash mid-append, a truncated file).
//! Everything from the end of the last good record to the end of that
//! segment's data counts as **one** torn record, and `torn_bytes` adds the
//! length of that stretch: the records before it are read, the rest of
//! that segment is skipped, and reading goes on with the next segment. So
//! a segment cut 37 bytes short, whose last record was L > 37 bytes on
//! disk (12-byte frame + payload), counts 1 torn record of L − 37 bytes;
//! if L ≤ 37 the cut breaks the record before too, the stretch starts at
//! that record, and it still counts as 1.
//!
//! [`open`] scans every segment it keeps (fully acknowledged ones are
//! deleted unread), logs each torn stretch (`tracing::warn!` with file and
//! offset), counts it in [`OpenReport`] and cuts it off the file, so it is
//! counted once and new appends follow valid records. The reader checks
//! every record again and counts what it finds later (damage after open)
//! the same way in [`BufferReader::torn`], which starts from the open
//! counts; it does not cut files, so such a stretch is counted again by
//! the next open unless its segment was acknowledged and deleted. Torn
//! records are never a reason to fail.
//!
//! # Threads
//!
//! The writer and the reader share one mutex: the published end of each
//! segment, the acknowledged position and the unacknowledged bytes. The
//! reader never reads past the published end (positioned reads, its own
//! buffer), so it never sees part of an append, and it follows segment
//! rolls. [`Acker`]s may be on any thread.
//!
//! # Space
//!
//! `max_bytes` bounds the *unacknowledged* record bytes (frames and
//! payloads, [`BufferWriter::bytes_used`]). Space is given back to the
//! file system a segment at a time, so the directory can hold up to one
//! more segment of acknowledged records (plus headers) on top.

use std::path::{Path, PathBuf};

mod format;
mod open;
mod reader;
mod state;
mod verify;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_faults;

pub use format::MAX_PAYLOAD;
pub use reader::{Acker, BufferReader, Next};
pub use verify::{verify_dir, DirReport, SegmentReport};
pub use writer::BufferWriter;

/// Smallest segment size used: a smaller `segment_bytes` is raised to
/// this (small values are for tests; the engine uses ≥ 1 MiB).
pub const MIN_SEGMENT_BYTES: u64 = 4096;

/// Where a disk buffer lives and how large it may grow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskBufferConfig {
    /// The buffer's own directory, created (0700, parents too) if missing.
    pub dir: PathBuf,
    /// Unacknowledged record bytes before appends fail with
    /// [`AppendError::Full`].
    pub max_bytes: u64,
    /// Size at which a segment is closed and the next one started; 0 means
    /// [`DiskBufferConfig::default_segment_bytes`].
    pub segment_bytes: u64,
}

impl DiskBufferConfig {
    /// A quarter of `max_bytes` (so space comes back in steps of a
    /// quarter), at least 1 MiB and at most 64 MiB.
    pub fn default_segment_bytes(max_bytes: u64) -> u64 {
        (max_bytes / 4).clamp(1 << 20, 64 << 20)
    }
}

/// What [`open`] found in the directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Unacknowledged valid records from earlier runs, to be read again.
    pub records_pending: u64,
    pub events_pending: u64,
    /// Their bytes on disk (frames and payloads), the initial `bytes_used`.
    pub bytes_pending: u64,
    /// Torn stretches found (and cut off) at open; see the module docs.
    pub torn_records: u64,
    pub torn_bytes: u64,
    /// Segment files kept from earlier runs (those holding unacknowledged
    /// records); the writer's first append starts a new one.
    pub segments: usize,
}

/// Where a record is: its segment's sequence number and the byte offset
/// just past the record's end in that file (where the next one starts), so
/// an acknowledgement needs no lookup. Ordered as appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    pub segment: u64,
    pub offset: u64,
}

/// One record as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: RecordId,
    pub n_events: u32,
    pub payload: Vec<u8>,
}

/// Why a buffer cannot be opened, read or acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum DiskBufferError {
    #[error("disk buffer directory {} could not be created: {source}; create it or point `buffer.path` elsewhere", .path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("disk buffer path {} is not a directory; point `buffer.path` at a directory", .path.display())]
    NotADirectory { path: PathBuf },
    #[error("disk buffer directory {} is not writable ({source}); fix its owner/permissions or point `buffer.path` elsewhere", .path.display())]
    NotWritable { path: PathBuf, source: std::io::Error },
    #[error("disk buffer directory {} is in use by another hostflow process (or another buffer of this one); stop it or give each buffer its own `buffer.path`", .path.display())]
    Locked { path: PathBuf },
    #[error("disk buffer directory {} holds files that are not buffer files: {}; move them away or point `buffer.path` elsewhere (nothing was deleted)", .dir.display(), list(.files))]
    UnknownFiles { dir: PathBuf, files: Vec<PathBuf> },
    #[error("disk buffer: could not {action} {}: {source}; check the disk and its permissions", .path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("disk buffer {}: {reason}; fix the buffer configuration", .dir.display())]
    InvalidConfig { dir: PathBuf, reason: String },
    #[error("disk buffer {}: acknowledgement of {through:?}, which was never appended or is past the data read (appended up to {appended:?}); this is a bug in the caller", .dir.display())]
    InvalidAck { dir: PathBuf, through: RecordId, appended: Option<RecordId> },
    #[error("disk buffer thread could not be started: {source}; the system is out of threads or memory")]
    Thread { source: std::io::Error },
}

fn list(files: &[PathBuf]) -> String {
    files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
}

impl DiskBufferError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> DiskBufferError {
        DiskBufferError::Io { action, path: path.to_owned(), source }
    }
}

/// Why an append did not store the record. Nothing of it is left on disk.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// No room under `max_bytes` until acknowledgements free some; wait
    /// ([`BufferWriter::wait_for_room`]) or drop, as `when_full` says.
    #[error("disk buffer is full: {used} of {max} bytes unacknowledged, {needed} more needed")]
    Full { needed: u64, used: u64, max: u64 },
    /// The file system is full (ENOSPC or EDQUOT); the partial write was cut
    /// back, so a later append may succeed once space returns.
    #[error("disk buffer's file system is full: {0}; free space on it or lower `max_bytes`")]
    NoSpace(std::io::Error),
    /// A record that can never fit: larger than `max_bytes` or
    /// [`MAX_PAYLOAD`].
    #[error("a record of {len} bytes can never fit the disk buffer (limit {max} bytes); raise `max_bytes` or send smaller batches")]
    TooLarge { len: u64, max: u64 },
    /// Any other I/O error, naming the file.
    #[error(transparent)]
    Io(#[from] DiskBufferError),
}

/// Opens (creating if needed) the buffer in `config.dir`: recovers what
/// earlier runs left (see the module docs) and returns its two halves.
pub fn open(config: &DiskBufferConfig) -> Result<(BufferWriter, BufferReader, OpenReport), DiskBufferError> {
    open::open(config)
}
