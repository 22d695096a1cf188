//! The writer half: appends records to the live segment, rolls segments,
//! and cuts back a failed write so the file stays a valid chain of records.
//!
//! Why one record is one positioned write of frame and payload together:
//! the published end only moves after the whole record is in the page
//! cache, so the reader (which never reads past it) cannot see half a
//! record, and a failed write is undone by truncating to the old end.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::format::{frame, segment_header, FRAME_LEN, HEADER_LEN, MAX_PAYLOAD};
use super::open::create_options;
use super::state::{sync_dir, Segment, Shared};
use super::{AppendError, DiskBufferError, RecordId};

/// The segment being appended to.
struct Live {
    seq: u64,
    file: File,
    path: PathBuf,
    /// Where its last complete record ends (the file's length).
    end: u64,
}

/// Appends records; lives on one dedicated thread. Dropping it means "no
/// more records": the reader returns [`super::Next::Closed`] once it read
/// everything appended.
pub struct BufferWriter {
    shared: Arc<Shared>,
    segment_bytes: u64,
    live: Option<Live>,
    /// A failed write could not be cut back: bytes past `live.end` must be
    /// removed before the next append.
    dirty: bool,
    /// Files were created or deleted since the last sync of the directory.
    dir_dirty: bool,
    scratch: Vec<u8>,
    /// Test hook: the next record write stops after this many bytes and
    /// fails with this error kind (a full disk, simulated).
    #[cfg(test)]
    pub(super) fail_next: Option<(usize, io::ErrorKind)>,
}

impl BufferWriter {
    pub(super) fn new(shared: Arc<Shared>, segment_bytes: u64) -> BufferWriter {
        BufferWriter {
            shared,
            segment_bytes,
            live: None,
            dirty: false,
            dir_dirty: false,
            scratch: Vec::new(),
            #[cfg(test)]
            fail_next: None,
        }
    }

    /// Appends one record of `n_events` events.
    ///
    /// Fails with [`AppendError::Full`] when the unacknowledged bytes plus
    /// this record would pass `max_bytes` (the caller waits or drops),
    /// [`AppendError::NoSpace`] when the file system is full (the partial
    /// write is cut back; retry later), [`AppendError::TooLarge`] for a
    /// record that can never fit, and [`AppendError::Io`] otherwise. On any
    /// error nothing of the record is stored.
    pub fn append(&mut self, n_events: u32, payload: &[u8]) -> Result<RecordId, AppendError> {
        let len = FRAME_LEN + payload.len() as u64;
        let max = self.shared.max_bytes.min(FRAME_LEN + MAX_PAYLOAD);
        if len > max {
            return Err(AppendError::TooLarge { len, max });
        }
        {
            let state = self.shared.lock();
            if state.bytes_used + len > self.shared.max_bytes {
                return Err(AppendError::Full { needed: len, used: state.bytes_used, max: self.shared.max_bytes });
            }
        }
        let roll = match &self.live {
            None => true,
            Some(live) => live.end > HEADER_LEN && live.end + len > self.segment_bytes,
        };
        if roll {
            self.roll()?;
        }
        let Some(live) = self.live.as_mut() else {
            // roll() either set a live segment or returned an error.
            return Err(AppendError::Io(DiskBufferError::io(
                "find the live segment in",
                &self.shared.dir,
                io::Error::other("no live segment after starting one"),
            )));
        };
        if self.dirty {
            live.file.set_len(live.end).map_err(|e| classify(e, &live.path))?;
            self.dirty = false;
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&frame(n_events, payload));
        self.scratch.extend_from_slice(payload);
        #[cfg(test)]
        let hook = self.fail_next.take();
        #[cfg(not(test))]
        let hook = None;
        if let Err(error) = write_record(live, &self.scratch, hook) {
            // Cut the partial record off so the next append follows a
            // valid one; if even that fails, try again before the next.
            if live.file.set_len(live.end).is_err() {
                self.dirty = true;
            }
            return Err(classify(error, &live.path));
        }
        live.end += len;
        let id = RecordId { segment: live.seq, offset: live.end };
        {
            let mut state = self.shared.lock();
            if let Some(segment) = state.segments.back_mut().filter(|s| s.seq == id.segment) {
                segment.end = id.offset;
            }
            state.bytes_used += len;
        }
        self.shared.appended.notify_all();
        Ok(id)
    }

    /// Closes the live segment (synced: a finished segment is durable) and
    /// starts the next; deletes the old one if it is already acknowledged.
    fn roll(&mut self) -> Result<(), AppendError> {
        if let Some(old) = &self.live {
            if let Err(error) = old.file.sync_data() {
                tracing::warn!(path = %old.path.display(), %error, "disk buffer segment sync failed");
            }
        }
        let seq = self.shared.lock().next_seq;
        let path = self.shared.segment_path(seq);
        let file = create_options().write(true).create_new(true).open(&path).map_err(|e| classify(e, &path))?;
        self.dir_dirty = true;
        if let Err(error) = file.write_all_at(&segment_header(), 0) {
            // An empty segment holds nothing; open() would delete it too.
            let _ = std::fs::remove_file(&path);
            return Err(classify(error, &path));
        }
        let deleted = {
            let mut state = self.shared.lock();
            state.segments.push_back(Segment { seq, end: HEADER_LEN });
            state.live = Some(seq);
            state.next_seq = seq + 1;
            state.take_fully_acked()
        };
        // A reader waiting at the end of the old segment moves on.
        self.shared.appended.notify_all();
        self.shared.delete_segments(&deleted);
        self.live = Some(Live { seq, file, path, end: HEADER_LEN });
        self.dirty = false;
        Ok(())
    }

    /// Blocks until acknowledgements leave room for `needed` more bytes or
    /// `timeout` passes; true if there is room now.
    pub fn wait_for_room(&self, needed: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.bytes_used + needed <= self.shared.max_bytes {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.shared.room.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Makes everything appended and acknowledged so far survive a power
    /// loss: the live segment, the directory's entries and the ack file.
    pub fn sync(&mut self) -> Result<(), DiskBufferError> {
        if let Some(live) = &self.live {
            live.file.sync_data().map_err(|e| DiskBufferError::io("sync", &live.path, e))?;
        }
        if self.dir_dirty {
            sync_dir(&self.shared.dir).map_err(|e| DiskBufferError::io("sync", &self.shared.dir, e))?;
            self.dir_dirty = false;
        }
        let ack_file = self.shared.ack_file.lock().unwrap_or_else(PoisonError::into_inner);
        ack_file.sync_data().map_err(|e| DiskBufferError::io("sync", &self.shared.dir.join(super::format::ACK_NAME), e))
    }

    /// Unacknowledged record bytes on disk (frames and payloads).
    pub fn bytes_used(&self) -> u64 {
        self.shared.lock().bytes_used
    }
}

impl Drop for BufferWriter {
    fn drop(&mut self) {
        if let Err(error) = self.sync() {
            tracing::warn!(error = %crate::error_chain(&error), "disk buffer sync at close failed");
        }
        let deleted = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.live = None;
            // The last segment, if acknowledged, can go now: nothing more
            // will be written to it.
            state.take_fully_acked()
        };
        self.shared.appended.notify_all();
        self.shared.delete_segments(&deleted);
    }
}

/// Writes one record at the live segment's end; `fail` is the test hook.
fn write_record(live: &Live, bytes: &[u8], fail: Option<(usize, io::ErrorKind)>) -> io::Result<()> {
    if let Some((written, kind)) = fail {
        live.file.write_all_at(&bytes[..written.min(bytes.len())], live.end)?;
        return Err(io::Error::from(kind));
    }
    live.file.write_all_at(bytes, live.end)
}

fn classify(error: io::Error, path: &std::path::Path) -> AppendError {
    match error.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => AppendError::NoSpace(error),
        _ => AppendError::Io(DiskBufferError::io("append to", path, error)),
    }
}
