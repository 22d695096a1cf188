//! The reader half and its ackers: records come back in append order,
//! never past what the writer published; acknowledgements persist the
//! position, free room and delete finished segments.
//!
//! Why acknowledgement is separate from reading: a record is read when the
//! sink is handed it, but may leave the disk only once the sink reports it
//! delivered (a Kafka delivery report), which happens on another task.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::format::{encode_ack, Cursor, ReadError, ACK_NAME, FRAME_LEN, HEADER_LEN};
use super::state::Shared;
use super::{DiskBufferError, Record, RecordId};

/// What [`BufferReader::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The next record in append order.
    Record(Record),
    /// Nothing new within the timeout; the writer is still there.
    Timeout,
    /// The writer was dropped and every record was read.
    Closed,
}

/// Reads records in append order; lives on one dedicated thread.
pub struct BufferReader {
    shared: Arc<Shared>,
    /// Where the next record starts.
    pos: RecordId,
    /// The open segment `pos.segment`, if opened yet.
    cursor: Option<(u64, Cursor)>,
    torn: (u64, u64),
}

impl BufferReader {
    pub(super) fn new(shared: Arc<Shared>, start: RecordId, torn_at_open: (u64, u64)) -> BufferReader {
        BufferReader { shared, pos: start, cursor: None, torn: torn_at_open }
    }

    /// The next unread record, waiting up to `timeout` for one.
    ///
    /// Records already acknowledged are skipped. A torn or corrupt record
    /// (see the module docs) is counted in [`BufferReader::torn`], logged
    /// with its file and offset, and the rest of its segment skipped;
    /// reading goes on with the next segment. `Err` only for I/O errors.
    pub fn next(&mut self, timeout: Duration) -> Result<Next, DiskBufferError> {
        let deadline = Instant::now() + timeout;
        loop {
            let limit = match self.wait_for_data(deadline) {
                Ok(limit) => limit,
                Err(next) => return Ok(next),
            };
            let seq = self.pos.segment;
            if self.cursor.as_ref().is_none_or(|(open, _)| *open != seq) {
                let path = self.shared.segment_path(seq);
                match File::open(&path) {
                    Ok(file) => self.cursor = Some((seq, Cursor::new(file, path))),
                    // Acknowledged (and deleted) since: skip ahead.
                    Err(error)
                        if error.kind() == std::io::ErrorKind::NotFound && self.shared.lock().acked > self.pos =>
                    {
                        continue
                    }
                    Err(error) => return Err(DiskBufferError::io("open for reading", &path, error)),
                }
            }
            let Some((_, cursor)) = self.cursor.as_mut() else { continue };
            match cursor.read(self.pos.offset, limit, true) {
                Ok(record) => {
                    self.pos.offset = record.end;
                    return Ok(Next::Record(Record {
                        id: self.pos,
                        n_events: record.n_events,
                        payload: record.payload,
                    }));
                }
                Err(ReadError::Corrupt(reason)) => {
                    let bytes = limit - self.pos.offset;
                    tracing::warn!(path = %cursor.path.display(), offset = self.pos.offset, bytes, reason,
                                   "disk buffer record is torn or corrupt; skipping the rest of the segment");
                    self.torn.0 += 1;
                    self.torn.1 += bytes;
                    self.pos.offset = limit;
                }
                Err(ReadError::Io(error)) => return Err(DiskBufferError::io("read", &cursor.path, error)),
            }
        }
    }

    /// Moves `pos` to readable data and returns where that data ends, or
    /// says why there is none (timeout, closed).
    fn wait_for_data(&mut self, deadline: Instant) -> Result<u64, Next> {
        let mut state = self.shared.lock();
        loop {
            if self.pos < state.acked {
                self.pos = state.acked;
            }
            match state.segment(self.pos.segment).copied() {
                Some(segment) if self.pos.offset < segment.end => return Ok(segment.end),
                // Caught up with the writer: wait for more.
                Some(segment) if state.live == Some(segment.seq) => {}
                // Finished (or deleted): on to the next segment, if any.
                _ => {
                    if let Some(next) = state.segments.iter().find(|s| s.seq > self.pos.segment) {
                        self.pos = RecordId { segment: next.seq, offset: HEADER_LEN };
                        continue;
                    }
                }
            }
            if state.closed {
                return Err(Next::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Next::Timeout);
            }
            state = self.shared.appended.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Torn records and their bytes since open, those found by open
    /// included (see the module docs for what one torn record is).
    pub fn torn(&self) -> (u64, u64) {
        self.torn
    }

    /// A handle that acknowledges records, for whichever thread learns
    /// they were delivered.
    pub fn acker(&self) -> Acker {
        Acker { shared: Arc::clone(&self.shared) }
    }
}

/// Acknowledges records: `Clone + Send + Sync`.
#[derive(Clone)]
pub struct Acker {
    shared: Arc<Shared>,
}

impl Acker {
    /// Acknowledges every record up to and including `through` (acks come
    /// in order; an older id is a no-op). Frees their room for the writer,
    /// persists the position in the ack file, and deletes segments that
    /// are now fully acknowledged (never the one being written).
    ///
    /// `through` is an id this buffer returned. One past the published
    /// data is an error (nothing changes); one inside it that is not a
    /// record's end is taken as is, and the next open rounds it down to a
    /// record boundary. A failed ack write (the error returned) means
    /// records are delivered again after a restart, never lost.
    pub fn ack(&self, through: RecordId) -> Result<(), DiskBufferError> {
        let ack_file = self.shared.ack_file.lock().unwrap_or_else(PoisonError::into_inner);
        let deleted = {
            let mut state = self.shared.lock();
            if through <= state.acked {
                return Ok(());
            }
            let known = state
                .segment(through.segment)
                .is_some_and(|s| through.offset >= HEADER_LEN + FRAME_LEN && through.offset <= s.end);
            if !known {
                return Err(DiskBufferError::InvalidAck {
                    dir: self.shared.dir.clone(),
                    through,
                    appended: state.appended(),
                });
            }
            let mut freed = 0;
            for segment in &state.segments {
                if segment.seq > through.segment {
                    break;
                }
                if segment.seq < state.acked.segment {
                    continue;
                }
                let from = if segment.seq == state.acked.segment { state.acked.offset } else { HEADER_LEN };
                let to = if segment.seq == through.segment { through.offset } else { segment.end };
                freed += to.saturating_sub(from.max(HEADER_LEN));
            }
            state.bytes_used = state.bytes_used.saturating_sub(freed);
            state.acked = through;
            state.take_fully_acked()
        };
        self.shared.room.notify_all();
        let path = self.shared.dir.join(ACK_NAME);
        let written = ack_file.write_all_at(&encode_ack(through), 0);
        drop(ack_file);
        // Deleting is safe even if the position was not written: only
        // acknowledged records go, the ack file just stays behind.
        self.shared.delete_segments(&deleted);
        written.map_err(|e| DiskBufferError::io("write", &path, e))
    }
}
