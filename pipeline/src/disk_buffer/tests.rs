//! Tests of the disk buffer's normal life: order, acknowledgement and
//! deletion, reopening, room, concurrency and throughput — on real files in
//! a temporary directory. Faults (torn, corrupt, foreign, full) are in
//! `tests_faults.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;

/// A fresh directory under the system temp dir, removed on drop.
pub(super) struct TempDir(pub PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("hf-disk-buffer-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }

    /// The buffer directory inside (not created: open creates it).
    pub(super) fn buffer(&self) -> PathBuf {
        self.0.join("buf")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn config(dir: &Path, max_bytes: u64, segment_bytes: u64) -> DiskBufferConfig {
    DiskBufferConfig { dir: dir.to_owned(), max_bytes, segment_bytes }
}

/// 100-byte payloads: 112 bytes a record on disk, 36 records to a 4 KiB
/// segment ((4096 - 16) / 112).
pub(super) const PAYLOAD: usize = 100;
pub(super) const RECORD: u64 = PAYLOAD as u64 + 12;
pub(super) const PER_SEGMENT: u64 = 36;

pub(super) fn payload(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i.wrapping_mul(31).wrapping_add(k as u64) % 251) as u8).collect()
}

pub(super) fn append_n(writer: &mut BufferWriter, range: std::ops::Range<u64>) -> Vec<RecordId> {
    range.map(|i| writer.append(i as u32 + 1, &payload(i, PAYLOAD)).expect("append")).collect()
}

/// Reads until nothing more comes within a short wait.
pub(super) fn read_available(reader: &mut BufferReader) -> Vec<Record> {
    let mut records = Vec::new();
    while let Next::Record(record) = reader.next(Duration::from_millis(20)).expect("read") {
        records.push(record);
    }
    records
}

/// Asserts `records` are exactly the records numbered `expected`, in order.
pub(super) fn assert_records(records: &[Record], expected: impl IntoIterator<Item = u64>) {
    let expected: Vec<u64> = expected.into_iter().collect();
    assert_eq!(records.len(), expected.len(), "record count");
    for (record, i) in records.iter().zip(expected) {
        assert_eq!(record.n_events, i as u32 + 1, "record {i} events");
        assert_eq!(record.payload, payload(i, PAYLOAD), "record {i} payload");
    }
}

pub(super) fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "hfbuf"))
        .collect();
    files.sort();
    files
}

#[test]
fn appends_read_back_in_order_and_acks_delete_segments() {
    let tmp = TempDir::new("order");
    let dir = tmp.buffer();
    let (mut writer, mut reader, report) = open(&config(&dir, 1 << 20, 4096)).expect("open");
    assert_eq!(report, OpenReport::default());
    let ids = append_n(&mut writer, 0..100);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids ordered");
    assert_eq!(ids[0], RecordId { segment: 0, offset: 16 + RECORD });
    assert_eq!(ids[PER_SEGMENT as usize], RecordId { segment: 1, offset: 16 + RECORD });
    assert_eq!(segment_files(&dir).len(), 3, "36 + 36 + 28 records");
    assert_eq!(writer.bytes_used(), 100 * RECORD);

    let records = read_available(&mut reader);
    assert_records(&records, 0..100);
    assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), ids);

    let acker = reader.acker();
    acker.ack(ids[10]).expect("ack");
    assert_eq!(writer.bytes_used(), 89 * RECORD);
    assert_eq!(segment_files(&dir).len(), 3, "segment 0 still holds unacknowledged records");
    acker.ack(ids[71]).expect("ack through the end of segment 1");
    assert_eq!(writer.bytes_used(), 28 * RECORD);
    assert_eq!(segment_files(&dir), vec![dir.join("segment-00000000000000000002.hfbuf")]);
    acker.ack(ids[5]).expect("an older id is a no-op");
    assert_eq!(writer.bytes_used(), 28 * RECORD);
    acker.ack(ids[99]).expect("ack all");
    assert_eq!(writer.bytes_used(), 0);
    assert_eq!(segment_files(&dir).len(), 1, "the live segment stays while the writer may append");

    drop(writer);
    assert_eq!(reader.next(Duration::from_secs(1)).expect("read"), Next::Closed);
    assert!(segment_files(&dir).is_empty(), "fully acknowledged and closed: deleted");
    assert_eq!(reader.torn(), (0, 0));
}

#[test]
fn reopen_without_ack_reads_everything_again() {
    let tmp = TempDir::new("reopen");
    let dir = tmp.buffer();
    {
        let (mut writer, mut reader, _) = open(&config(&dir, 1 << 20, 4096)).expect("open");
        append_n(&mut writer, 0..50);
        assert_eq!(read_available(&mut reader).len(), 50);
    }
    let (mut writer, mut reader, report) = open(&config(&dir, 1 << 20, 4096)).expect("reopen");
    let events: u64 = (1..=50).sum();
    assert_eq!(
        report,
        OpenReport {
            records_pending: 50,
            events_pending: events,
            bytes_pending: 50 * RECORD,
            torn_records: 0,
            torn_bytes: 0,
            segments: 2
        }
    );
    assert_eq!(writer.bytes_used(), 50 * RECORD);
    assert_records(&read_available(&mut reader), 0..50);
    // New appends go to a new segment after the old ones.
    let id = writer.append(51, &payload(50, PAYLOAD)).expect("append");
    assert_eq!(id, RecordId { segment: 2, offset: 16 + RECORD });
    assert_records(&read_available(&mut reader), [50]);
}

#[test]
fn reopen_after_acking_half_reads_exactly_the_other_half() {
    let tmp = TempDir::new("half");
    let dir = tmp.buffer();
    {
        let (mut writer, mut reader, _) = open(&config(&dir, 1 << 20, 4096)).expect("open");
        append_n(&mut writer, 0..60);
        let records = read_available(&mut reader);
        reader.acker().ack(records[29].id).expect("ack half");
    }
    let (_, mut reader, report) = open(&config(&dir, 1 << 20, 4096)).expect("reopen");
    assert_eq!(report.records_pending, 30);
    assert_eq!(report.events_pending, (31..=60).sum::<u64>());
    assert_eq!(report.bytes_pending, 30 * RECORD);
    assert_eq!(report.segments, 2, "segment 0 still holds records 30..36");
    let records = read_available(&mut reader);
    assert_records(&records, 30..60);
    reader.acker().ack(records[29].id).expect("ack the rest");
    drop(reader);
    let (_, _, report) = open(&config(&dir, 1 << 20, 4096)).expect("reopen again");
    assert_eq!(report, OpenReport::default());
    assert!(segment_files(&dir).is_empty());
}

#[test]
fn full_until_an_ack_from_another_thread_makes_room() {
    let tmp = TempDir::new("full");
    let dir = tmp.buffer();
    let (mut writer, mut reader, _) = open(&config(&dir, 10 * RECORD, 4096)).expect("open");
    let ids = append_n(&mut writer, 0..10);
    match writer.append(11, &payload(10, PAYLOAD)) {
        Err(AppendError::Full { needed, used, max }) => {
            assert_eq!((needed, used, max), (RECORD, 10 * RECORD, 10 * RECORD))
        }
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(!writer.wait_for_room(RECORD, Duration::from_millis(50)), "no ack, no room");
    let acker = reader.acker();
    let first = ids[0];
    let started = Instant::now();
    let thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        acker.ack(first).expect("ack");
    });
    assert!(writer.wait_for_room(RECORD, Duration::from_secs(10)), "room after the ack");
    assert!(started.elapsed() >= Duration::from_millis(90), "woken by the ack, not before");
    thread.join().expect("acker thread");
    writer.append(11, &payload(10, PAYLOAD)).expect("append after room");
    assert_eq!(writer.bytes_used(), 10 * RECORD);
    assert!(matches!(writer.append(1, &vec![0; 10 * RECORD as usize]), Err(AppendError::TooLarge { .. })));
    // The first record was acknowledged before it was read: skipped.
    assert_records(&read_available(&mut reader), 1..11);
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let tmp = TempDir::new("large");
    let dir = tmp.buffer();
    let (mut writer, mut reader, _) = open(&config(&dir, 1 << 20, 4096)).expect("open");
    let small = writer.append(1, b"small").expect("append");
    let big = writer.append(2, &vec![7; 10_000]).expect("append a large record");
    let after = writer.append(3, b"after").expect("append");
    assert_eq!((small.segment, big.segment, after.segment), (0, 1, 2));
    assert_eq!(big.offset, 16 + 12 + 10_000);
    let records = read_available(&mut reader);
    assert_eq!(records.iter().map(|r| r.payload.len()).collect::<Vec<_>>(), vec![5, 10_000, 5]);
    assert!(records[1].payload.iter().all(|b| *b == 7));
    reader.acker().ack(big).expect("ack");
    assert_eq!(segment_files(&dir), vec![dir.join("segment-00000000000000000002.hfbuf")]);
    assert_eq!(writer.bytes_used(), 17);
}

#[test]
fn concurrent_writer_and_reader_see_every_record_once_in_order() {
    const N: u64 = 100_000;
    let tmp = TempDir::new("concurrent");
    let dir = tmp.buffer();
    let (mut writer, mut reader, _) = open(&config(&dir, 256 << 10, 64 << 10)).expect("open");
    let producer = std::thread::spawn(move || {
        for i in 0..N {
            let bytes = i.to_le_bytes();
            loop {
                match writer.append(1, &bytes) {
                    Ok(_) => break,
                    Err(AppendError::Full { needed, .. }) => {
                        writer.wait_for_room(needed, Duration::from_millis(100));
                    }
                    Err(error) => panic!("append {i}: {error}"),
                }
            }
        }
    });
    let acker = reader.acker();
    let mut expected = 0u64;
    loop {
        match reader.next(Duration::from_secs(10)).expect("read") {
            Next::Record(record) => {
                let got = u64::from_le_bytes(record.payload.as_slice().try_into().expect("8 bytes"));
                assert_eq!(got, expected, "in order, each once");
                expected += 1;
                if expected.is_multiple_of(100) {
                    acker.ack(record.id).expect("ack");
                }
            }
            Next::Timeout => panic!("stalled at record {expected}"),
            Next::Closed => break,
        }
    }
    producer.join().expect("producer");
    assert_eq!(expected, N);
    assert_eq!(reader.torn(), (0, 0));
}

#[test]
fn throughput_of_1k_records() {
    const N: u64 = 65_536;
    let tmp = TempDir::new("throughput");
    let dir = tmp.buffer();
    let (mut writer, mut reader, _) = open(&config(&dir, 32 << 20, 8 << 20)).expect("open");
    let started = Instant::now();
    let producer = std::thread::spawn(move || {
        let record = vec![0x5a; 1024];
        for _ in 0..N {
            while let Err(error) = writer.append(16, &record) {
                match error {
                    AppendError::Full { needed, .. } => {
                        writer.wait_for_room(needed, Duration::from_millis(100));
                    }
                    other => panic!("append: {other}"),
                }
            }
        }
    });
    let acker = reader.acker();
    let mut read = 0u64;
    while let Next::Record(record) = reader.next(Duration::from_secs(10)).expect("read") {
        read += 1;
        if read.is_multiple_of(64) {
            acker.ack(record.id).expect("ack");
        }
    }
    producer.join().expect("producer");
    let elapsed = started.elapsed();
    assert_eq!(read, N);
    let mib = (N * 1024) as f64 / (1 << 20) as f64;
    println!(
        "disk buffer: {N} records of 1 KiB appended, read and acknowledged in {elapsed:?}: {:.0} MiB/s, {:.0} records/s",
        mib / elapsed.as_secs_f64(),
        N as f64 / elapsed.as_secs_f64()
    );
}
