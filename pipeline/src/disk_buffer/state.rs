//! The state the writer, the reader and the ackers share: which segments
//! exist and how far each is published, what is acknowledged, and the
//! bytes still unacknowledged. One mutex, two condvars.
//!
//! Why so little: the writer and the reader run on their own threads and
//! touch the files independently; they only need to agree on where the
//! published data ends (the reader never reads past it, so it never sees
//! half an append) and on what may be deleted.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::format::{segment_name, HEADER_LEN};
use super::RecordId;

/// One segment file that exists (or is about to be deleted).
#[derive(Clone, Copy, Debug)]
pub(super) struct Segment {
    pub seq: u64,
    /// Where its published records end; final unless it is the live one.
    pub end: u64,
}

pub(super) struct State {
    /// Oldest first; fully acknowledged ones leave (and their files go).
    pub segments: VecDeque<Segment>,
    /// The segment the writer appends to, if it started one.
    pub live: Option<u64>,
    /// The writer was dropped: no more records will come.
    pub closed: bool,
    /// Everything before `acked.offset` in segment `acked.segment`, and
    /// every earlier segment, is acknowledged.
    pub acked: RecordId,
    /// Unacknowledged record bytes (frames and payloads).
    pub bytes_used: u64,
    /// The sequence number the writer's next segment gets.
    pub next_seq: u64,
}

impl State {
    pub(super) fn segment(&self, seq: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.seq == seq)
    }

    /// The id of the last published record, if any.
    pub(super) fn appended(&self) -> Option<RecordId> {
        self.segments.iter().rev().find(|s| s.end > HEADER_LEN).map(|s| RecordId { segment: s.seq, offset: s.end })
    }

    /// Takes fully acknowledged segments other than the live one out of
    /// the list; returns their sequence numbers, for the caller to delete
    /// the files once the lock is released.
    pub(super) fn take_fully_acked(&mut self) -> Vec<u64> {
        let mut done = Vec::new();
        while let Some(front) = self.segments.front().copied() {
            let acked =
                front.seq < self.acked.segment || (front.seq == self.acked.segment && self.acked.offset >= front.end);
            if !acked || self.live == Some(front.seq) {
                break;
            }
            self.segments.pop_front();
            done.push(front.seq);
        }
        done
    }
}

/// Shared by the writer, the reader and every acker.
pub(super) struct Shared {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub state: Mutex<State>,
    /// Signalled when records are published or the writer closes.
    pub appended: Condvar,
    /// Signalled when acknowledgements free room.
    pub room: Condvar,
    /// The ack file, behind its own lock so acks are written in order.
    pub ack_file: Mutex<File>,
    /// Held (flock) for as long as any half is alive.
    pub _lock: File,
}

impl Shared {
    /// The state, even if a thread panicked while holding it: every update
    /// leaves it consistent, so a poisoned lock is still good data.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(segment_name(seq))
    }

    /// Deletes fully acknowledged segment files. A failure is logged, not
    /// returned: the file is acknowledged either way and the next open
    /// deletes it.
    pub(super) fn delete_segments(&self, seqs: &[u64]) {
        for &seq in seqs {
            let path = self.segment_path(seq);
            if let Err(error) = std::fs::remove_file(&path) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), %error, "could not delete an acknowledged buffer segment; \
                                   it will be deleted at the next start");
                }
            }
        }
    }
}

/// Syncs a directory, so file creations and deletions in it survive a
/// power loss.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
