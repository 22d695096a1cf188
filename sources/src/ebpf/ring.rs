//! Reading the ring buffer: readiness from tokio's reactor (`AsyncFd` over
//! the map's fd), records decoded straight out of the shared memory.
//!
//! The programs submit with `BPF_RB_NO_WAKEUP` until the configured number
//! of bytes is pending, so most records arrive without a wake-up; the
//! source therefore drains both when the fd becomes readable and on its
//! drain timer. A drain takes every record available (bounded per batch,
//! so a storm still yields batches of a sane size) and decodes each in
//! place: nothing is copied out of the ring except the fields the events
//! keep, and no buffer is allocated per record.

use std::io;

use tokio::io::unix::AsyncFd;

use super::records::{decode, DecodeError, Record, PROGRAM_COUNT};
use super::ring_map::RingMap;

/// The reader half of the ring buffer.
pub struct RingReader {
    fd: AsyncFd<RingMap>,
    decode_errors: u64,
    /// Records taken from the ring per program (decoded or not): the
    /// `read` term of the loss ledger's kernel rows. A record whose kind
    /// names no program is not counted here; decoding counts it an error.
    read: [u64; PROGRAM_COUNT],
}

/// What one drain did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Records decoded and handed on.
    pub records: usize,
    /// Entries that did not decode (logged, skipped).
    pub decode_errors: usize,
    /// The drain stopped at its limit; records may still be waiting.
    pub more: bool,
}

impl RingReader {
    /// Registers the ring buffer with the current tokio reactor.
    #[expect(unsafe_code, reason = "tokio's fd registration is unsafe since 1.52 (I/O safety); upheld below")]
    pub fn new(ring: RingMap) -> io::Result<RingReader> {
        // SAFETY: the fd is the ring buffer map's own `OwnedFd`, held by the
        // `MapData` inside `ring`; the `AsyncFd` owns `ring`, so the fd stays
        // open and names the same map until the `AsyncFd` is dropped, and
        // `as_raw_fd` always returns that one fd.
        let fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }?;
        Ok(RingReader { fd, decode_errors: 0, read: [0; PROGRAM_COUNT] })
    }

    /// Waits until the kernel signals data (a wake-up), and re-arms. Call
    /// [`RingReader::drain`] afterwards: readiness is cleared first, so a
    /// wake-up that arrives while draining is not lost.
    pub async fn readable(&mut self) -> io::Result<()> {
        let mut guard = self.fd.readable_mut().await?;
        guard.clear_ready();
        Ok(())
    }

    /// Decodes waiting records, handing each to `on_record`, until the ring
    /// is empty or `limit` entries were taken (then `more` is set: call
    /// again).
    pub fn drain(&mut self, limit: usize, mut on_record: impl FnMut(Record)) -> Drained {
        let mut drained = Drained::default();
        let ring = self.fd.get_mut();
        let (read, decode_errors) = (&mut self.read, &mut self.decode_errors);
        while let Some(()) = ring.next(|item| {
            if let Some(program) =
                item.get(..2).and_then(|kind| program_of_kind(u16::from_ne_bytes([kind[0], kind[1]])))
            {
                read[program] += 1;
            }
            match decode(item) {
                Ok(record) => {
                    drained.records += 1;
                    on_record(record);
                }
                Err(error) => {
                    drained.decode_errors += 1;
                    *decode_errors += 1;
                    log_decode_error(&error, *decode_errors, item.len());
                }
            }
        }) {
            if drained.records + drained.decode_errors >= limit {
                drained.more = true;
                break;
            }
        }
        drained
    }

    /// Entries that failed to decode since start.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    /// Records taken from the ring so far, per program id.
    pub fn read_counts(&self) -> [u64; PROGRAM_COUNT] {
        self.read
    }
}

/// The program (counter index) that submits records of `kind`: kinds 1–14
/// are programs 0–13 in order; a network-policy decision comes from the
/// connect program.
fn program_of_kind(kind: u16) -> Option<usize> {
    match kind {
        super::records_security::kind::NET_POLICY => Some(usize::from(super::records::kind::CONNECT) - 1),
        1..=14 => Some(usize::from(kind) - 1).filter(|&p| p < PROGRAM_COUNT),
        _ => None,
    }
}

/// The first few, then one in every thousand: a build/kernel mismatch would
/// otherwise log once per record.
fn log_decode_error(error: &DecodeError, n_errors: u64, len: usize) {
    if n_errors <= 5 || n_errors.is_multiple_of(1000) {
        tracing::warn!(%error, len, n_errors, "skipping an eBPF record that does not decode");
    }
}
