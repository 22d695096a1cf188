//! Opening a buffer directory: create or check it, take its lock, refuse
//! foreign files, then recover what earlier runs left — delete segments
//! that are fully acknowledged, count and cut off torn tails, and work out
//! what is still to be read.
//!
//! Why recovery happens here and not lazily: the counts must be known
//! before the engine starts (they go in the loss ledger), and cutting torn
//! tails up front means every later reader sees valid files.

use std::collections::VecDeque;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use super::format::{check_header, parse_segment_name, read_ack, scan, HeaderCheck, ACK_NAME, HEADER_LEN, LOCK_NAME};
use super::reader::BufferReader;
use super::state::{sync_dir, Segment, Shared, State};
use super::writer::BufferWriter;
use super::{DiskBufferConfig, DiskBufferError, OpenReport, RecordId, MIN_SEGMENT_BYTES};

/// A probe file written and removed at open to learn whether the
/// directory is writable; ours, so a leftover one is removed too.
const PROBE_NAME: &str = "lock.probe";

/// A file in the directory that looks like a segment.
struct Found {
    seq: u64,
    path: PathBuf,
}

pub(super) fn open(config: &DiskBufferConfig) -> Result<(BufferWriter, BufferReader, OpenReport), DiskBufferError> {
    let dir = config.dir.clone();
    if config.max_bytes == 0 {
        return Err(DiskBufferError::InvalidConfig { dir, reason: "max_bytes is 0".to_owned() });
    }
    let segment_bytes = match config.segment_bytes {
        0 => DiskBufferConfig::default_segment_bytes(config.max_bytes),
        n => n.max(MIN_SEGMENT_BYTES),
    };
    ensure_dir(&dir)?;
    let lock = lock_dir(&dir)?;
    let found = list_dir(&dir)?;
    let ack_path = dir.join(ACK_NAME);
    let ack = match read_ack(&ack_path).map_err(|e| DiskBufferError::io("read", &ack_path, e))? {
        Ok(ack) => ack,
        Err(problem) => {
            tracing::warn!(path = %ack_path.display(), problem, "disk buffer ack file is invalid; records in the \
                           remaining segments will be delivered again");
            None
        }
    };
    let ack_file = create_options()
        .read(true)
        .write(true)
        .truncate(false)
        .open(&ack_path)
        .map_err(|e| DiskBufferError::io("open", &ack_path, e))?;

    let mut report = OpenReport::default();
    let mut segments = VecDeque::new();
    let mut acked: Option<RecordId> = None;
    let mut to_delete = Vec::new();
    let mut changed = false;
    let mut next_seq = ack.map_or(0, |a| a.segment + 1);
    for Found { seq, path } in found {
        next_seq = next_seq.max(seq + 1);
        let file = File::open(&path).map_err(|e| DiskBufferError::io("open", &path, e))?;
        let len = file.metadata().map_err(|e| DiskBufferError::io("read the size of", &path, e))?.len();
        let header = check_header(&file, len).map_err(|e| DiskBufferError::io("read", &path, e))?;
        if matches!(header, HeaderCheck::Incomplete(_)) || ack.is_some_and(|a| seq < a.segment) {
            // No records (creation was cut short), or all acknowledged.
            to_delete.push(path);
            continue;
        }
        let count_after = ack.filter(|a| a.segment == seq).map_or(0, |a| a.offset);
        let found = scan(file, &path, len, count_after).map_err(|e| DiskBufferError::io("read", &path, e))?;
        if let Some(reason) = &found.torn_reason {
            tracing::warn!(path = %path.display(), offset = found.valid_end, bytes = found.torn_bytes, reason,
                           "disk buffer segment has a torn or corrupt tail; counting it and cutting it off");
            report.torn_records += 1;
            report.torn_bytes += found.torn_bytes;
        }
        if found.records == 0 {
            to_delete.push(path);
            continue;
        }
        if found.torn_reason.is_some() {
            truncate(&path, found.valid_end)?;
            changed = true;
        }
        if acked.is_none() {
            let offset = if count_after > 0 { found.boundary_before } else { HEADER_LEN };
            acked = Some(RecordId { segment: seq, offset });
        }
        report.records_pending += found.records;
        report.events_pending += found.events;
        report.bytes_pending += found.bytes;
        report.segments += 1;
        segments.push_back(Segment { seq, end: found.valid_end });
    }
    for path in &to_delete {
        std::fs::remove_file(path).map_err(|e| DiskBufferError::io("delete the acknowledged segment", path, e))?;
        changed = true;
    }
    if changed {
        sync_dir(&dir).map_err(|e| DiskBufferError::io("sync", &dir, e))?;
    }

    let acked = acked.unwrap_or(RecordId { segment: next_seq, offset: HEADER_LEN });
    let state = State { segments, live: None, closed: false, acked, bytes_used: report.bytes_pending, next_seq };
    let shared = Arc::new(Shared {
        dir,
        max_bytes: config.max_bytes,
        state: Mutex::new(state),
        appended: Condvar::new(),
        room: Condvar::new(),
        ack_file: Mutex::new(ack_file),
        _lock: lock,
    });
    let reader = BufferReader::new(Arc::clone(&shared), acked, (report.torn_records, report.torn_bytes));
    Ok((BufferWriter::new(shared, segment_bytes), reader, report))
}

/// Options that create files readable by the owner only.
pub(super) fn create_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.create(true).mode(0o600);
    options
}

fn ensure_dir(dir: &Path) -> Result<(), DiskBufferError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(DiskBufferError::NotADirectory { path: dir.to_owned() }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| DiskBufferError::CreateDir { path: dir.to_owned(), source }),
        Err(error) => Err(DiskBufferError::io("read", dir, error)),
    }
}

fn not_writable(path: &Path, error: io::Error) -> DiskBufferError {
    match error.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            DiskBufferError::NotWritable { path: path.to_owned(), source: error }
        }
        _ => DiskBufferError::io("write in", path, error),
    }
}

/// Takes the directory's lock; the returned file holds it until dropped.
fn lock_dir(dir: &Path) -> Result<File, DiskBufferError> {
    let path = dir.join(LOCK_NAME);
    let lock = create_options().read(true).write(true).truncate(false).open(&path).map_err(|e| not_writable(dir, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(DiskBufferError::Locked { path: dir.to_owned() }),
        Err(std::fs::TryLockError::Error(error)) => return Err(DiskBufferError::io("lock", &path, error)),
    }
    // The lock file may have existed; whether new files can be made is
    // what matters for segments.
    let probe = dir.join(PROBE_NAME);
    create_options().write(true).truncate(true).open(&probe).map_err(|e| not_writable(dir, e))?;
    std::fs::remove_file(&probe).map_err(|e| not_writable(dir, e))?;
    Ok(lock)
}

/// The segment files in `dir`, oldest first; an error naming every
/// foreign file if there is one.
fn list_dir(dir: &Path) -> Result<Vec<Found>, DiskBufferError> {
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| DiskBufferError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DiskBufferError::io("list", dir, e))?;
        let path = entry.path();
        let is_file = entry.file_type().map_err(|e| DiskBufferError::io("read", &path, e))?.is_file();
        let name = entry.file_name();
        let name = name.to_str().unwrap_or("");
        match (is_file, name, parse_segment_name(name)) {
            (true, LOCK_NAME | ACK_NAME | PROBE_NAME, _) => {}
            (true, _, Some(seq)) => {
                if let Some(reason) = foreign_segment(&path)? {
                    tracing::warn!(path = %path.display(), reason, "file in a disk buffer directory is not a segment");
                    unknown.push(path);
                } else {
                    found.push(Found { seq, path });
                }
            }
            _ => unknown.push(path),
        }
    }
    if !unknown.is_empty() {
        unknown.sort();
        return Err(DiskBufferError::UnknownFiles { dir: dir.to_owned(), files: unknown });
    }
    found.sort_by_key(|f| f.seq);
    Ok(found)
}

/// Why a file named like a segment is not one of ours, if it is not.
fn foreign_segment(path: &Path) -> Result<Option<String>, DiskBufferError> {
    let file = File::open(path).map_err(|e| DiskBufferError::io("open", path, e))?;
    let len = file.metadata().map_err(|e| DiskBufferError::io("read the size of", path, e))?.len();
    match check_header(&file, len).map_err(|e| DiskBufferError::io("read", path, e))? {
        HeaderCheck::Foreign(reason) => Ok(Some(reason)),
        HeaderCheck::Valid | HeaderCheck::Incomplete(_) => Ok(None),
    }
}

/// Cuts a segment back to its last valid record, durably.
fn truncate(path: &Path, len: u64) -> Result<(), DiskBufferError> {
    let file = OpenOptions::new().write(true).open(path).map_err(|e| DiskBufferError::io("open", path, e))?;
    file.set_len(len).map_err(|e| DiskBufferError::io("cut the torn tail off", path, e))?;
    file.sync_all().map_err(|e| DiskBufferError::io("sync", path, e))
}
