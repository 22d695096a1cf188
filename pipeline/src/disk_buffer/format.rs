//! The bytes on disk: file names, the segment header, the record frame,
//! the ack file, and a cursor that reads records without ever reading past
//! a given end (so a reader never sees half an append).
//!
//! Kept apart from the buffer's logic so `open`, the reader and
//! `verify_dir` read segments with one piece of code and cannot disagree
//! about what a valid record is.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::RecordId;

/// The first bytes of every segment file.
pub(super) const SEGMENT_MAGIC: &[u8; 6] = b"HFBUF\0";
/// Bumped when the record frame changes; older files are then refused
/// (reported as unknown) rather than misread.
pub(super) const FORMAT_VERSION: u16 = 1;
/// Magic, version and reserved bytes before the first record.
pub(super) const HEADER_LEN: u64 = 16;
/// `[len u32][crc32 u32][n_events u32]` before each payload.
pub(super) const FRAME_LEN: u64 = 12;
/// A length field above this is corruption, not a record: no encoder
/// makes batches this large, and trusting it would allocate it.
pub const MAX_PAYLOAD: u64 = 256 << 20;

/// The ack file: magic, version, segment, offset, crc32, reserved.
pub(super) const ACK_NAME: &str = "ack";
const ACK_MAGIC: &[u8; 6] = b"HFACK\0";
pub(super) const ACK_LEN: usize = 32;
/// The lock file held (flock) while a buffer is open.
pub(super) const LOCK_NAME: &str = "lock";

/// How much a cursor reads at once; records larger than this are read
/// whole (their payload has to be in memory anyway).
const READ_CHUNK: usize = 256 << 10;

/// The segment file name for sequence number `seq`.
pub(super) fn segment_name(seq: u64) -> String {
    format!("segment-{seq:020}.hfbuf")
}

/// The sequence number of a segment file name, `None` for any other name.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".hfbuf")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment header as written.
pub(super) fn segment_header() -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..6].copy_from_slice(SEGMENT_MAGIC);
    header[6..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// What the start of a segment file says.
pub(super) enum HeaderCheck {
    Valid,
    /// Shorter than a header but what is there matches: the process died
    /// while creating the file. It holds no records.
    Incomplete(u64),
    /// Not one of our segments (or a format version we cannot read).
    Foreign(String),
}

/// Checks the header of an open segment file of length `len`.
pub(super) fn check_header(file: &File, len: u64) -> io::Result<HeaderCheck> {
    let expected = segment_header();
    let mut found = [0u8; HEADER_LEN as usize];
    let have = usize::try_from(len.min(HEADER_LEN)).unwrap_or(0);
    file.read_exact_at(&mut found[..have], 0)?;
    if have < HEADER_LEN as usize {
        let prefix_len = have.min(8);
        return Ok(if found[..prefix_len] == expected[..prefix_len] {
            HeaderCheck::Incomplete(len)
        } else {
            HeaderCheck::Foreign(format!("not a hostflow buffer segment ({len} bytes, bad magic)"))
        });
    }
    if &found[..6] != SEGMENT_MAGIC {
        return Ok(HeaderCheck::Foreign("not a hostflow buffer segment (bad magic)".to_owned()));
    }
    let version = u16::from_le_bytes([found[6], found[7]]);
    if version != FORMAT_VERSION {
        return Ok(HeaderCheck::Foreign(format!(
            "segment format version {version}, this build reads version {FORMAT_VERSION}"
        )));
    }
    Ok(HeaderCheck::Valid)
}

/// Encodes the frame of one record; the payload follows it.
pub(super) fn frame(n_events: u32, payload: &[u8]) -> [u8; FRAME_LEN as usize] {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&n_events.to_le_bytes());
    hasher.update(payload);
    let mut frame = [0u8; FRAME_LEN as usize];
    // The caller checked payload.len() <= MAX_PAYLOAD, which fits a u32.
    frame[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    frame[4..8].copy_from_slice(&hasher.finalize().to_le_bytes());
    frame[8..].copy_from_slice(&n_events.to_le_bytes());
    frame
}

/// The ack file's contents for position `acked`.
pub(super) fn encode_ack(acked: RecordId) -> [u8; ACK_LEN] {
    let mut bytes = [0u8; ACK_LEN];
    bytes[..6].copy_from_slice(ACK_MAGIC);
    bytes[6..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes[8..16].copy_from_slice(&acked.segment.to_le_bytes());
    bytes[16..24].copy_from_slice(&acked.offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Reads the ack file: `Ok(None)` when it is absent or empty (nothing
/// acknowledged yet), `Err(problem)` when it cannot be trusted.
pub(super) fn read_ack(path: &Path) -> io::Result<Result<Option<RecordId>, String>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Ok(None)),
        Err(error) => return Err(error),
    };
    if bytes.is_empty() {
        return Ok(Ok(None));
    }
    if bytes.len() != ACK_LEN {
        return Ok(Err(format!("ack file is {} bytes, expected {ACK_LEN}", bytes.len())));
    }
    let word = |range: std::ops::Range<usize>| -> u64 {
        bytes[range].iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    if &bytes[..6] != ACK_MAGIC || word(6..8) != u64::from(FORMAT_VERSION) {
        return Ok(Err("ack file has a bad magic or format version".to_owned()));
    }
    if word(24..28) != u64::from(crc32fast::hash(&bytes[..24])) {
        return Ok(Err("ack file checksum does not match (torn write)".to_owned()));
    }
    Ok(Ok(Some(RecordId { segment: word(8..16), offset: word(16..24) })))
}

/// One record as read.
pub(super) struct RawRecord {
    pub n_events: u32,
    /// Empty when the cursor was asked to check, not keep, payloads.
    pub payload: Vec<u8>,
    /// Where the record ends (the next one starts).
    pub end: u64,
}

/// Why a record could not be read.
pub(super) enum ReadError {
    /// The bytes are not a valid record (the reason names the offset).
    Corrupt(String),
    Io(io::Error),
}

/// Reads records of one segment file with positioned reads that never go
/// past the `limit` the caller passes (the published end of a segment
/// being written), through a bounded buffer.
pub(super) struct Cursor {
    file: File,
    pub path: PathBuf,
    buf: Vec<u8>,
    /// `buf[start..filled]` holds the file's bytes from offset `at`.
    start: usize,
    filled: usize,
    at: u64,
}

impl Cursor {
    pub(super) fn new(file: File, path: PathBuf) -> Cursor {
        Cursor { file, path, buf: vec![0; READ_CHUNK], start: 0, filled: 0, at: HEADER_LEN }
    }

    /// Reads the record starting at `offset`, which must end at or before
    /// `limit`. With `keep_payload` false the payload is checked only.
    pub(super) fn read(&mut self, offset: u64, limit: u64, keep_payload: bool) -> Result<RawRecord, ReadError> {
        if offset != self.at {
            self.start = 0;
            self.filled = 0;
            self.at = offset;
        }
        let room = limit.saturating_sub(offset);
        if room < FRAME_LEN {
            return Err(ReadError::Corrupt(format!("{room} bytes at offset {offset}, less than a record frame")));
        }
        self.fill(FRAME_LEN as usize, limit)?;
        let frame = &self.buf[self.start..self.start + FRAME_LEN as usize];
        let le = |i: usize| u32::from_le_bytes([frame[i], frame[i + 1], frame[i + 2], frame[i + 3]]);
        let (len, crc, n_events) = (u64::from(le(0)), le(4), le(8));
        if len > MAX_PAYLOAD {
            return Err(ReadError::Corrupt(format!("length {len} at offset {offset} exceeds the maximum")));
        }
        let total = FRAME_LEN + len;
        if total > room {
            return Err(ReadError::Corrupt(format!(
                "record of {total} bytes at offset {offset} runs past the end of the data ({limit})"
            )));
        }
        let total = total as usize;
        self.fill(total, limit)?;
        let body = &self.buf[self.start + 8..self.start + total];
        if crc32fast::hash(body) != crc {
            return Err(ReadError::Corrupt(format!("checksum mismatch in the record at offset {offset}")));
        }
        let payload = if keep_payload { body[4..].to_vec() } else { Vec::new() };
        self.start += total;
        self.at += total as u64;
        if self.buf.len() > READ_CHUNK && self.start == self.filled {
            // A large record made the buffer grow; give the memory back.
            self.buf = vec![0; READ_CHUNK];
            self.start = 0;
            self.filled = 0;
        }
        Ok(RawRecord { n_events, payload, end: self.at })
    }

    /// Makes `buf[start..]` hold at least `need` bytes, reading no byte at
    /// or past `limit` (the caller checked `at + need <= limit`).
    fn fill(&mut self, need: usize, limit: u64) -> Result<(), ReadError> {
        if self.filled - self.start >= need {
            return Ok(());
        }
        self.buf.copy_within(self.start..self.filled, 0);
        self.filled -= self.start;
        self.start = 0;
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        let readable = limit.saturating_sub(self.at + self.filled as u64);
        let stop = self.filled + usize::try_from(readable).unwrap_or(usize::MAX).min(self.buf.len() - self.filled);
        while self.filled < need {
            let offset = self.at + self.filled as u64;
            match self.file.read_at(&mut self.buf[self.filled..stop], offset) {
                Ok(0) => {
                    return Err(ReadError::Corrupt(format!(
                        "the file ends at offset {offset}, inside the record at offset {}",
                        self.at
                    )))
                }
                Ok(n) => self.filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(ReadError::Io(error)),
            }
        }
        Ok(())
    }
}

/// What scanning one segment file found.
#[derive(Default)]
pub(super) struct Scan {
    /// Valid records whose end is past `count_after` (the others are
    /// acknowledged), their events and bytes on disk.
    pub records: u64,
    pub events: u64,
    pub bytes: u64,
    /// Where the valid records end.
    pub valid_end: u64,
    /// The last record boundary at or before `count_after`.
    pub boundary_before: u64,
    /// Bytes from `valid_end` to the end of the file, and why they are
    /// not records (`None` if there are none).
    pub torn_bytes: u64,
    pub torn_reason: Option<String>,
}

/// Reads every record of a segment file of length `len` (header already
/// checked), counting those that end after `count_after`.
pub(super) fn scan(file: File, path: &Path, len: u64, count_after: u64) -> Result<Scan, io::Error> {
    let mut cursor = Cursor::new(file, path.to_owned());
    let mut scan = Scan { valid_end: HEADER_LEN, boundary_before: HEADER_LEN, ..Scan::default() };
    while scan.valid_end < len {
        match cursor.read(scan.valid_end, len, false) {
            Ok(record) => {
                if record.end <= count_after {
                    scan.boundary_before = record.end;
                } else {
                    scan.records += 1;
                    scan.events += u64::from(record.n_events);
                    scan.bytes += record.end - scan.valid_end;
                }
                scan.valid_end = record.end;
            }
            Err(ReadError::Corrupt(reason)) => {
                scan.torn_bytes = len - scan.valid_end;
                scan.torn_reason = Some(reason);
                break;
            }
            Err(ReadError::Io(error)) => return Err(error),
        }
    }
    Ok(scan)
}
