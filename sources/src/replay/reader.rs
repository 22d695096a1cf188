//! The blocking half of `replay`: reads a spool (or NDJSON corpus) and cuts
//! it into batches, on a thread of its own, never on an async worker.
//!
//! [`SpoolReader`] merges the kinds of an Arrow spool: one cursor per kind
//! (its finished files in sequence order, each file's record batches in
//! order), and each event taken is the smallest head by (`ts_ns`,
//! `event_id`, kind in `EventKind::ALL` order). When every kind's rows are
//! in that order (the spool sink writes them as they arrive, and sources
//! stamp in order) the output is sorted; when a kind's own rows are not,
//! the merge still takes heads only, so the output is the same on every
//! run, just not sorted. Batches are exactly `batch_size` events (the last
//! one shorter), so a replay is deterministic down to its batching.
//!
//! [`NdjsonReader`] reads one file, or every `*.ndjson` file of a directory
//! in name order, line by line, in file order: an NDJSON corpus is already
//! one stream, the order a sink saw it.
//!
//! Only files finished when reading starts are read: `.arrow.tmp` files,
//! `quarantine/` and other strangers are ignored by the spool layout
//! (`schemas::spool::finished_files`). A file that cannot be opened, read
//! or decoded is logged with its path, counted in [`ReadStats`] and
//! skipped (what it yielded before the failure stays replayed); a bad
//! NDJSON line is counted and skipped. Nothing in the input can panic.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};

use arrow_ipc::reader::FileReader;
use pipeline::{Batch, Event, EventKind};

use super::arrow::decode_selected;
use super::ndjson::decode_line;

/// Which events a replay keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// Kinds to read; the rest are not even opened.
    pub kinds: Vec<EventKind>,
    /// Keep events with `ts_ns >= from_ts_ns`.
    pub from_ts_ns: Option<u64>,
    /// Keep events with `ts_ns < to_ts_ns`.
    pub to_ts_ns: Option<u64>,
}

impl Selection {
    /// Every kind, every timestamp.
    pub fn all() -> Selection {
        Selection { kinds: EventKind::ALL.to_vec(), from_ts_ns: None, to_ts_ns: None }
    }

    /// Whether an event at `ts_ns` is in the time range.
    pub fn keeps_ts(&self, ts_ns: u64) -> bool {
        self.from_ts_ns.is_none_or(|from| ts_ns >= from) && self.to_ts_ns.is_none_or(|to| ts_ns < to)
    }

    /// Whether `event` is selected (kind and time).
    pub fn keeps(&self, event: &Event) -> bool {
        self.kinds.contains(&event.kind()) && self.keeps_ts(event.meta().ts_ns)
    }
}

/// What a reader has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Events handed out (after the selection).
    pub events: u64,
    /// Files read to their end.
    pub files_read: u64,
    /// Files (or kind directories) skipped, wholly or from the point where
    /// they stopped reading or decoding.
    pub files_skipped: u64,
    /// NDJSON lines that were not an event.
    pub lines_skipped: u64,
}

/// Reads the Arrow spool at `spool_dir`: batches of at most `batch_size`
/// (at least 1) selected events in merge order. Lists the files and opens
/// the first of each kind now.
pub fn read_spool(spool_dir: &Path, selection: &Selection, batch_size: usize) -> SpoolReader {
    let mut stats = ReadStats::default();
    let mut kinds = selection.kinds.clone();
    kinds.sort_unstable();
    kinds.dedup();
    let mut cursors = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let files = match schemas::spool::finished_files(spool_dir, kind.as_str()) {
            Ok(files) => files.into_iter().map(|(_, path)| path).collect(),
            Err(error) => {
                let dir = spool_dir.join(kind.as_str());
                tracing::warn!(dir = %dir.display(), %error, "replay: cannot list spool directory; skipping it");
                stats.files_skipped += 1;
                VecDeque::new()
            }
        };
        cursors.push(KindCursor { kind, files, file: None, events: Vec::new().into_iter(), head: None });
    }
    let selection = selection.clone();
    for cursor in &mut cursors {
        cursor.advance(&selection, &mut stats);
    }
    SpoolReader { cursors, selection, batch_size: batch_size.max(1), stats }
}

/// A k-way merge over one cursor per kind; see the module docs.
pub struct SpoolReader {
    cursors: Vec<KindCursor>,
    selection: Selection,
    batch_size: usize,
    stats: ReadStats,
}

impl SpoolReader {
    /// Counts so far.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// The cursor whose head comes next.
    fn next_cursor(&self) -> Option<usize> {
        let mut best: Option<(usize, (u64, u64))> = None;
        for (index, cursor) in self.cursors.iter().enumerate() {
            let Some(head) = &cursor.head else { continue };
            let key = (head.meta().ts_ns, head.meta().event_id);
            // Strictly smaller wins, so ties go to the earlier kind.
            if best.is_none_or(|(_, best_key)| key < best_key) {
                best = Some((index, key));
            }
        }
        best.map(|(index, _)| index)
    }
}

impl Iterator for SpoolReader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let mut batch = Vec::with_capacity(self.batch_size.min(4096));
        while batch.len() < self.batch_size {
            let Some(index) = self.next_cursor() else { break };
            let cursor = &mut self.cursors[index];
            if let Some(event) = cursor.head.take() {
                batch.push(event);
            }
            cursor.advance(&self.selection, &mut self.stats);
        }
        self.stats.events += batch.len() as u64;
        (!batch.is_empty()).then_some(batch)
    }
}

/// One kind's files, read one record batch at a time.
struct KindCursor {
    kind: EventKind,
    files: VecDeque<PathBuf>,
    file: Option<(PathBuf, FileReader<BufReader<File>>)>,
    events: std::vec::IntoIter<Event>,
    head: Option<Event>,
}

impl KindCursor {
    /// Moves the next selected event into `head` (`None` at the end).
    fn advance(&mut self, selection: &Selection, stats: &mut ReadStats) {
        loop {
            if let Some(event) = self.events.next() {
                self.head = Some(event);
                return;
            }
            if let Some((path, reader)) = &mut self.file {
                match reader.next() {
                    Some(Ok(batch)) => match decode_selected(self.kind, &batch, selection) {
                        Ok(events) => self.events = events.into_iter(),
                        Err(error) => {
                            tracing::warn!(file = %path.display(), %error, "replay: cannot decode a record batch; skipping the rest of the file");
                            stats.files_skipped += 1;
                            self.file = None;
                        }
                    },
                    Some(Err(error)) => {
                        tracing::warn!(file = %path.display(), %error, "replay: cannot read a record batch; skipping the rest of the file");
                        stats.files_skipped += 1;
                        self.file = None;
                    }
                    None => {
                        stats.files_read += 1;
                        self.file = None;
                    }
                }
                continue;
            }
            let Some(path) = self.files.pop_front() else {
                self.head = None;
                return;
            };
            match open_ipc_file(&path, self.kind) {
                Ok(reader) => self.file = Some((path, reader)),
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "replay: cannot open spool file; skipping it");
                    stats.files_skipped += 1;
                }
            }
        }
    }
}

/// Opens a spool file once `schemas::spool::verify_file` has found its
/// lengths sane: arrow's reader allocates whatever a corrupt length says,
/// and an absurd allocation aborts the whole agent.
fn open_ipc_file(path: &Path, kind: EventKind) -> Result<FileReader<BufReader<File>>, String> {
    let schema = schemas::schema_for(kind.as_str()).ok_or_else(|| format!("no Arrow schema for {}", kind.as_str()))?;
    schemas::spool::verify_file_or_older(path, &schema)?;
    let file = File::open(path).map_err(|e| e.to_string())?;
    FileReader::try_new_buffered(file, None).map_err(|e| e.to_string())
}

/// Reads the NDJSON file at `path`, or every `*.ndjson` file in it when it
/// is a directory (in name order). Fails only if `path` cannot be looked
/// at or listed.
pub fn read_ndjson(path: &Path, selection: &Selection, batch_size: usize) -> std::io::Result<NdjsonReader> {
    let files = if std::fs::metadata(path)?.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let file_path = entry.path();
            if file_path.extension().is_some_and(|ext| ext == "ndjson") && !entry.file_type()?.is_dir() {
                files.push(file_path);
            }
        }
        files.sort_unstable();
        files
    } else {
        vec![path.to_owned()]
    };
    Ok(NdjsonReader {
        files: files.into(),
        current: None,
        selection: selection.clone(),
        batch_size: batch_size.max(1),
        stats: ReadStats::default(),
        line: Vec::new(),
    })
}

/// Lines of NDJSON files turned back into events; see the module docs.
pub struct NdjsonReader {
    files: VecDeque<PathBuf>,
    current: Option<NdjsonFile>,
    selection: Selection,
    batch_size: usize,
    stats: ReadStats,
    line: Vec<u8>,
}

struct NdjsonFile {
    path: PathBuf,
    reader: BufReader<File>,
    line_number: u64,
    bad_lines: u64,
}

/// Bad lines logged one by one per file; the rest only in the file's total.
const LOGGED_BAD_LINES: u64 = 3;

impl NdjsonReader {
    /// Counts so far.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// The next selected event, or `None` when every file is read.
    fn next_event(&mut self) -> Option<Event> {
        loop {
            let Some(file) = &mut self.current else {
                let path = self.files.pop_front()?;
                match File::open(&path) {
                    Ok(handle) => {
                        let reader = BufReader::with_capacity(256 * 1024, handle);
                        self.current = Some(NdjsonFile { path, reader, line_number: 0, bad_lines: 0 });
                    }
                    Err(error) => {
                        tracing::warn!(file = %path.display(), %error, "replay: cannot open NDJSON file; skipping it");
                        self.stats.files_skipped += 1;
                    }
                }
                continue;
            };
            self.line.clear();
            match file.reader.read_until(b'\n', &mut self.line) {
                Ok(0) => {
                    if file.bad_lines > LOGGED_BAD_LINES {
                        tracing::warn!(file = %file.path.display(), bad_lines = file.bad_lines, "replay: skipped lines that are not events");
                    }
                    self.stats.files_read += 1;
                    self.current = None;
                }
                Ok(_) => {
                    file.line_number += 1;
                    let text = self.line.trim_ascii();
                    if text.is_empty() {
                        continue;
                    }
                    match decode_line(text) {
                        Ok(event) if self.selection.keeps(&event) => return Some(event),
                        Ok(_) => {}
                        Err(error) => {
                            file.bad_lines += 1;
                            self.stats.lines_skipped += 1;
                            if file.bad_lines <= LOGGED_BAD_LINES {
                                tracing::warn!(file = %file.path.display(), line = file.line_number, %error, "replay: skipping a line that is not an event");
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(file = %file.path.display(), line = file.line_number + 1, %error, "replay: cannot read NDJSON file; skipping the rest of it");
                    self.stats.files_skipped += 1;
                    self.current = None;
                }
            }
        }
    }
}

impl Iterator for NdjsonReader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let mut batch = Vec::with_capacity(self.batch_size.min(4096));
        while batch.len() < self.batch_size {
            let Some(event) = self.next_event() else { break };
            batch.push(event);
        }
        self.stats.events += batch.len() as u64;
        (!batch.is_empty()).then_some(batch)
    }
}
