//! `hostflow validate --buffer DIR`: what a buffer directory holds, read
//! only — nothing is opened for writing, locked, cut or deleted.
//!
//! Why read-only: an operator looks at a directory to decide what to do
//! with it (after a crash, before moving it); looking must not change it.
//! A buffer in use may be mid-append, so its newest segment can show a
//! torn tail that is not there once the append completes.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::format::{check_header, parse_segment_name, read_ack, scan, HeaderCheck, ACK_NAME, LOCK_NAME};
use super::{DiskBufferError, RecordId};

/// What [`verify_dir`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirReport {
    /// Segment files, oldest first.
    pub segments: Vec<SegmentReport>,
    /// Files that are not buffer files (open would refuse the directory).
    pub unknown_files: Vec<PathBuf>,
    /// The acknowledged position, if the ack file holds a valid one.
    pub acked_through: Option<RecordId>,
    /// Why the ack file cannot be trusted, if it cannot (open then
    /// delivers every remaining record again).
    pub ack_file_problem: Option<String>,
}

/// One segment file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentReport {
    pub path: PathBuf,
    /// Valid records not yet acknowledged, their events and bytes on disk.
    pub records: u64,
    pub events: u64,
    pub bytes: u64,
    /// 1 and the bytes from the first bad record to the end of the file if
    /// the segment has a torn or corrupt stretch (see the module docs).
    pub torn_records: u64,
    pub torn_bytes: u64,
    /// Where the torn stretch starts and why it is not a record.
    pub torn_reason: Option<String>,
    /// What is wrong with the file itself (not a torn stretch, which the
    /// fields above describe), if anything.
    pub problem: Option<String>,
}

impl DirReport {
    /// No foreign files, a usable ack file, no torn records.
    pub fn is_clean(&self) -> bool {
        self.unknown_files.is_empty()
            && self.ack_file_problem.is_none()
            && self.segments.iter().all(|s| s.problem.is_none() && s.torn_records == 0)
    }
}

/// Reports on the buffer directory `dir` without changing anything.
pub fn verify_dir(dir: &Path) -> Result<DirReport, DiskBufferError> {
    let mut report = DirReport::default();
    match read_ack(&dir.join(ACK_NAME)) {
        Ok(Ok(acked)) => report.acked_through = acked,
        Ok(Err(problem)) => report.ack_file_problem = Some(problem),
        Err(error) => report.ack_file_problem = Some(format!("unreadable: {error}")),
    }
    let mut segments = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| DiskBufferError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DiskBufferError::io("list", dir, e))?;
        let path = entry.path();
        let is_file = entry.file_type().map_err(|e| DiskBufferError::io("read", &path, e))?.is_file();
        let name = entry.file_name();
        let name = name.to_str().unwrap_or("");
        match (is_file, name, parse_segment_name(name)) {
            (true, LOCK_NAME | ACK_NAME, _) => {}
            (true, _, Some(seq)) => match segment_report(&path, seq, report.acked_through)? {
                Some(segment) => segments.push((seq, segment)),
                None => report.unknown_files.push(path),
            },
            _ => report.unknown_files.push(path),
        }
    }
    segments.sort_by_key(|(seq, _)| *seq);
    report.segments = segments.into_iter().map(|(_, s)| s).collect();
    report.unknown_files.sort();
    Ok(report)
}

/// One segment's report; `None` if it is not one of ours.
fn segment_report(path: &Path, seq: u64, acked: Option<RecordId>) -> Result<Option<SegmentReport>, DiskBufferError> {
    let file = File::open(path).map_err(|e| DiskBufferError::io("open", path, e))?;
    let len = file.metadata().map_err(|e| DiskBufferError::io("read the size of", path, e))?.len();
    let mut report = SegmentReport { path: path.to_owned(), ..SegmentReport::default() };
    match check_header(&file, len).map_err(|e| DiskBufferError::io("read", path, e))? {
        HeaderCheck::Foreign(_) => return Ok(None),
        HeaderCheck::Incomplete(len) => {
            report.problem = Some(format!("incomplete header ({len} bytes): creation was cut short; holds no records"));
            return Ok(Some(report));
        }
        HeaderCheck::Valid => {}
    }
    let count_after = match acked {
        Some(a) if a.segment > seq => u64::MAX,
        Some(a) if a.segment == seq => a.offset,
        _ => 0,
    };
    let found = scan(file, path, len, count_after).map_err(|e| DiskBufferError::io("read", path, e))?;
    report.records = found.records;
    report.events = found.events;
    report.bytes = found.bytes;
    if let Some(reason) = found.torn_reason {
        report.torn_records = 1;
        report.torn_bytes = found.torn_bytes;
        report.torn_reason = Some(format!("from offset {}: {reason}", found.valid_end));
    }
    Ok(Some(report))
}
