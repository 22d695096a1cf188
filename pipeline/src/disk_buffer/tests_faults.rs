//! Tests of the disk buffer against bad input: torn and corrupt segments,
//! a broken ack file, foreign files, a second opener, a full disk — each
//! counted or refused, never a crash and never a silent delete.

use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use super::tests::{
    append_n, assert_records, config, payload, read_available, segment_files, TempDir, PAYLOAD, PER_SEGMENT, RECORD,
};
use super::*;

fn flip_byte(path: &Path, offset: u64) {
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).expect("open segment");
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).expect("read byte");
    file.write_all_at(&[byte[0] ^ 0x40], offset).expect("write byte");
}

fn cut(path: &Path, bytes: u64) {
    let len = std::fs::metadata(path).expect("size").len();
    std::fs::OpenOptions::new().write(true).open(path).expect("open").set_len(len - bytes).expect("truncate");
}

#[test]
fn newest_segment_cut_by_37_bytes_counts_one_torn_record() {
    let tmp = TempDir::new("cut37");
    let dir = tmp.buffer();
    {
        let (mut writer, _, _) = open(&config(&dir, 1 << 20, 4096)).expect("open");
        append_n(&mut writer, 0..50);
    }
    let files = segment_files(&dir);
    assert_eq!(files.len(), 2, "36 + 14 records");
    cut(&files[1], 37);
    let (mut writer, mut reader, report) = open(&config(&dir, 1 << 20, 4096)).expect("reopen");
    assert_eq!(report.torn_records, 1);
    assert_eq!(report.torn_bytes, RECORD - 37, "what is left of the cut record");
    assert_eq!(report.records_pending, 49);
    assert_eq!(report.bytes_pending, 49 * RECORD);
    assert_eq!(std::fs::metadata(&files[1]).expect("size").len(), 16 + 13 * RECORD, "torn tail cut off");
    assert_eq!(reader.torn(), (1, RECORD - 37));
    assert_records(&read_available(&mut reader), 0..49);
    writer.append(100, &payload(99, PAYLOAD)).expect("append after reopen");
    assert_records(&read_available(&mut reader), [99]);
    drop((writer, reader));
    let (_, _, report) = open(&config(&dir, 1 << 20, 4096)).expect("third open");
    assert_eq!((report.torn_records, report.records_pending), (0, 50), "counted once: the tail was cut");
}

#[test]
fn a_cut_reaching_into_an_earlier_record_is_still_one_torn_record() {
    let tmp = TempDir::new("cut-small");
    let dir = tmp.buffer();
    {
        let (mut writer, _, _) = open(&config(&dir, 1 << 20, 4096)).expect("open");
        for i in 0..10u8 {
            writer.append(1, &[i; 10]).expect("append");
        }
    }
    // 22-byte records: 37 bytes take the last one and 15 of the one before.
    cut(&segment_files(&dir)[0], 37);
    let (_, mut reader, report) = open(&config(&dir, 1 << 20, 4096)).expect("reopen");
    assert_eq!((report.torn_records, report.torn_bytes, report.records_pending), (1, 22 - 15, 8));
    let records = read_available(&mut reader);
    assert_eq!(records.iter().map(|r| r.payload[0]).collect::<Vec<_>>(), (0..8).collect::<Vec<u8>>());
}

#[test]
fn corrupt_byte_in_an_older_segment_skips_its_rest_at_open() {
    let tmp = TempDir::new("flip-open");
    let dir = tmp.buffer();
    {
        let (mut writer, _, _) = open(&config(&dir, 1 << 20, 4096)).expect("open");
        append_n(&mut writer, 0..100);
    }
    let files = segment_files(&dir);
    flip_byte(&files[0], 16 + 10 * RECORD + 12 + 5);
    let (_, mut reader, report) = open(&config(&dir, 1 << 20, 4096)).expect("reopen");
    assert_eq!(report.torn_records, 1);
    assert_eq!(report.torn_bytes, (PER_SEGMENT - 10) * RECORD);
    assert_eq!(report.records_pending, 10 + 36 + 28);
    assert_records(&read_available(&mut reader), (0..10).chain(36..100));
    assert_eq!(reader.torn(), (1, (PER_SEGMENT - 10) * RECORD));
}

#[test]
fn corrupt_byte_found_while_reading_skips_the_rest_of_that_segment() {
    let tmp = TempDir::new("flip-read");
    let dir = tmp.buffer();
    let (mut writer, mut reader, _) = open(&config(&dir, 1 << 20, 4096)).expect("open");
    append_n(&mut writer, 0..100);
    // Record 40 is the fifth of segment 1; corrupt its length field.
    flip_byte(&segment_files(&dir)[1], 16 + 4 * RECORD + 3);
    assert_records(&read_available(&mut reader), (0..40).chain(72..100));
    assert_eq!(reader.torn(), (1, (PER_SEGMENT - 4) * RECORD));
    // Appends after the skip are read.
    writer.append(101, &payload(100, PAYLOAD)).expect("append");
    assert_records(&read_available(&mut reader), [100]);
}

#[test]
fn no_space_cuts_the_partial_record_back_and_the_next_append_succeeds() {
    let tmp = TempDir::new("enospc");
    let dir = tmp.buffer();
    let (mut writer, mut reader, _) = open(&config(&dir, 1 << 20, 4096)).expect("open");
    append_n(&mut writer, 0..5);
    writer.fail_next = Some((50, std::io::ErrorKind::StorageFull));
    match writer.append(6, &payload(5, PAYLOAD)) {
        Err(AppendError::NoSpace(error)) => assert_eq!(error.kind(), std::io::ErrorKind::StorageFull),
        other => panic!("expected NoSpace, got {other:?}"),
    }
    let segment = &segment_files(&dir)[0];
    assert_eq!(std::fs::metadata(segment).expect("size").len(), 16 + 5 * RECORD, "partial write cut back");
    assert_eq!(writer.bytes_used(), 5 * RECORD);
    writer.fail_next = Some((0, std::io::ErrorKind::PermissionDenied));
    assert!(matches!(writer.append(6, &payload(5, PAYLOAD)), Err(AppendError::Io(_))));
    append_n(&mut writer, 5..7);
    assert_records(&read_available(&mut reader), 0..7);
    drop((writer, reader));
    let report = verify_dir(&dir).expect("verify");
    assert!(report.is_clean(), "{report:?}");
    let (_, _, report) = open(&config(&dir, 1 << 20, 4096)).expect("reopen");
    assert_eq!((report.records_pending, report.torn_records), (7, 0));
}

#[test]
fn an_invalid_ack_file_means_everything_remaining_is_read_again() {
    let tmp = TempDir::new("bad-ack");
    let dir = tmp.buffer();
    {
        let (mut writer, mut reader, _) = open(&config(&dir, 1 << 20, 4096)).expect("open");
        append_n(&mut writer, 0..100);
        let records = read_available(&mut reader);
        reader.acker().ack(records[49].id).expect("ack");
    }
    assert_eq!(segment_files(&dir).len(), 2, "segment 0 deleted");
    flip_byte(&dir.join("ack"), 10);
    let report = verify_dir(&dir).expect("verify");
    assert!(report.ack_file_problem.is_some() && !report.is_clean());
    let (_, mut reader, report) = open(&config(&dir, 1 << 20, 4096)).expect("reopen");
    assert_eq!(report.records_pending, 64, "records 36..100: duplicates, never loss");
    assert_records(&read_available(&mut reader), 36..100);
}

#[test]
fn unknown_files_stop_open_and_verify_changes_nothing() {
    let tmp = TempDir::new("unknown");
    let dir = tmp.buffer();
    {
        let (mut writer, mut reader, _) = open(&config(&dir, 1 << 20, 4096)).expect("open");
        append_n(&mut writer, 0..50);
        reader.acker().ack(read_available(&mut reader)[9].id).expect("ack");
    }
    std::fs::write(dir.join("notes.txt"), b"mine").expect("write");
    std::fs::write(dir.join("segment-00000000000000000099.hfbuf"), b"NOT A SEGMENT AT ALL").expect("write");
    let listing = || {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| {
                let meta = e.expect("entry").metadata().expect("meta");
                (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino())
            })
            .collect();
        entries.sort();
        entries
    };
    let before = listing();
    let error = open(&config(&dir, 1 << 20, 4096)).err().expect("open refuses");
    let message = error.to_string();
    assert!(matches!(&error, DiskBufferError::UnknownFiles { files, .. } if files.len() == 2), "{message}");
    assert!(message.contains("notes.txt") && message.contains("move them away"), "{message}");
    assert!(dir.join("notes.txt").exists());

    let before_verify = listing();
    let report = verify_dir(&dir).expect("verify");
    assert_eq!(listing(), before_verify, "verify_dir changes nothing");
    assert_eq!(before.len(), before_verify.len());
    assert_eq!(report.unknown_files, vec![dir.join("notes.txt"), dir.join("segment-00000000000000000099.hfbuf")]);
    assert_eq!(report.acked_through, Some(RecordId { segment: 0, offset: 16 + 10 * RECORD }));
    assert_eq!(report.segments.len(), 2);
    assert_eq!((report.segments[0].records, report.segments[1].records), (26, 14));
    assert_eq!(report.segments[0].bytes, 26 * RECORD);
    assert!(!report.is_clean());
}

#[test]
fn verify_reports_a_torn_segment_without_cutting_it() {
    let tmp = TempDir::new("verify-torn");
    let dir = tmp.buffer();
    {
        let (mut writer, _, _) = open(&config(&dir, 1 << 20, 4096)).expect("open");
        append_n(&mut writer, 0..50);
    }
    let newest = segment_files(&dir)[1].clone();
    cut(&newest, 37);
    let len = std::fs::metadata(&newest).expect("size").len();
    let report = verify_dir(&dir).expect("verify");
    assert_eq!(std::fs::metadata(&newest).expect("size").len(), len, "not cut by verify");
    let segment = &report.segments[1];
    assert_eq!((segment.records, segment.torn_records, segment.torn_bytes), (13, 1, RECORD - 37));
    assert!(segment.problem.is_none(), "{segment:?}");
    let reason = segment.torn_reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with(&format!("from offset {}", 16 + 13 * RECORD)), "{reason}");
    assert!(!report.is_clean());
    assert!(verify_dir(&tmp.0.join("missing")).is_err());
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let tmp = TempDir::new("lock");
    let dir = tmp.buffer();
    let first = open(&config(&dir, 1 << 20, 4096)).expect("open");
    assert!(matches!(open(&config(&dir, 1 << 20, 4096)), Err(DiskBufferError::Locked { .. })));
    drop(first);
    open(&config(&dir, 1 << 20, 4096)).expect("open after the first closed");
}

#[test]
fn directory_and_files_are_private_and_bad_config_is_refused() {
    let tmp = TempDir::new("modes");
    let dir = tmp.buffer().join("nested");
    let (mut writer, _, _) = open(&config(&dir, 1 << 20, 4096)).expect("open creates parents");
    writer.append(1, b"x").expect("append");
    writer.sync().expect("sync");
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&segment_files(&dir)[0]), 0o600);
    assert_eq!(mode(&dir.join("ack")), 0o600);
    let file = tmp.0.join("file");
    std::fs::write(&file, b"").expect("write");
    assert!(matches!(open(&config(&file, 1 << 20, 0)), Err(DiskBufferError::NotADirectory { .. })));
    assert!(matches!(open(&config(&tmp.0.join("b"), 0, 0)), Err(DiskBufferError::InvalidConfig { .. })));
}

#[test]
fn an_ack_of_a_record_never_appended_is_refused() {
    let tmp = TempDir::new("bad-id");
    let dir = tmp.buffer();
    let (mut writer, reader, _) = open(&config(&dir, 1 << 20, 4096)).expect("open");
    let id = writer.append(1, b"abc").expect("append");
    let future = RecordId { segment: id.segment, offset: id.offset + 100 };
    assert!(matches!(reader.acker().ack(future), Err(DiskBufferError::InvalidAck { .. })));
    assert_eq!(writer.bytes_used(), 15);
    reader.acker().ack(id).expect("ack");
    assert_eq!(writer.bytes_used(), 0);
}

#[test]
fn a_segment_whose_creation_was_cut_short_is_removed_and_reading_goes_on() {
    let tmp = TempDir::new("incomplete");
    let dir = tmp.buffer();
    {
        let (mut writer, _, _) = open(&config(&dir, 1 << 20, 4096)).expect("open");
        append_n(&mut writer, 0..3);
    }
    let empty = dir.join("segment-00000000000000000001.hfbuf");
    std::fs::write(&empty, b"HFBUF").expect("write");
    let (mut writer, mut reader, report) = open(&config(&dir, 1 << 20, 4096)).expect("reopen");
    assert_eq!((report.records_pending, report.torn_records, report.segments), (3, 0, 1));
    assert!(!empty.exists());
    let id = writer.append(4, &payload(3, PAYLOAD)).expect("append");
    assert_eq!(id.segment, 2, "sequence numbers never reused");
    assert_records(&read_available(&mut reader), 0..4);
    assert_eq!(reader.next(Duration::ZERO).expect("read"), Next::Timeout);
}
