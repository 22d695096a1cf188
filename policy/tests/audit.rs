//! The hash-chained audit log: appended lines verify; an edited, removed,
//! moved or cut-off line is named; reopening a log chains on from its end.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use policy::audit::{verify, AuditError, AuditLog, Entry};

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_380_000 + seconds)
}

fn write_log(path: &Path, n: usize) {
    let mut log = AuditLog::open(path).expect("open");
    for index in 0..n {
        let entry = Entry {
            event: "apply".to_owned(),
            digest: Some(format!("{index:064x}")),
            reason: (index % 2 == 0).then(|| format!("reason \"{index}\"")),
            ..Entry::default()
        };
        log.append(&entry, at(index as u64)).expect("append");
    }
}

fn broken_line(path: &Path) -> (usize, String) {
    match verify(path) {
        Err(AuditError::Broken(broken)) => (broken.line, broken.what),
        other => panic!("expected a break, got {other:?}"),
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).expect("read").lines().map(str::to_owned).collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.iter().map(|line| format!("{line}\n")).collect::<String>()).expect("write");
}

#[test]
fn appended_lines_verify_and_are_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state/audit.ndjson");
    write_log(&path, 5);
    assert_eq!(verify(&path).expect("intact"), 5);
    let first: serde_json::Value = serde_json::from_str(&lines(&path)[0]).expect("json");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["time"], "2026-12-04T10:26:40.000Z");
    assert_eq!(first["event"], "apply");
    assert_eq!(first["prev"], "0".repeat(64));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(path.parent().expect("dir")).expect("meta").permissions().mode() & 0o777, 0o700);
}

#[test]
fn edited_line_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.ndjson");
    write_log(&path, 5);
    let mut all = lines(&path);
    all[2] = all[2].replace("\"apply\"", "\"clear\"");
    rewrite(&path, &all);
    let (line, what) = broken_line(&path);
    assert_eq!(line, 3);
    assert!(what.contains("edited"), "{what}");
}

#[test]
fn removed_moved_and_cut_lines_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.ndjson");
    write_log(&path, 5);
    let original = lines(&path);

    let mut removed = original.clone();
    removed.remove(1);
    rewrite(&path, &removed);
    assert_eq!(broken_line(&path).0, 2);

    let mut moved = original.clone();
    moved.swap(2, 3);
    rewrite(&path, &moved);
    assert_eq!(broken_line(&path).0, 3);

    rewrite(&path, &original[..4]);
    let (line, what) = broken_line(&path);
    assert_eq!(line, 5);
    assert!(what.contains("removed from the end"), "{what}");

    rewrite(&path, &original[1..]);
    assert_eq!(broken_line(&path).0, 1);

    rewrite(&path, &original);
    assert_eq!(verify(&path).expect("restored"), 5);
}

#[test]
fn reopening_chains_on_even_after_a_break() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.ndjson");
    write_log(&path, 2);
    write_log(&path, 2);
    assert_eq!(verify(&path).expect("intact across reopen"), 4);
    let seqs: Vec<u64> = lines(&path)
        .iter()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("json")["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);

    let mut all = lines(&path);
    all[1] = all[1].replace("apply", "APPLY");
    rewrite(&path, &all);
    let log = AuditLog::open(&path).expect("a broken log still opens");
    assert_eq!(log.broken().map(|b| b.line), Some(2));
    drop(log);
    write_log(&path, 1);
    let all = lines(&path);
    assert_eq!(all.len(), 5);
    let last: serde_json::Value = serde_json::from_str(&all[4]).expect("json");
    let before: serde_json::Value = serde_json::from_str(&all[3]).expect("json");
    assert_eq!(last["prev"], before["hash"]);
    assert_eq!(last["seq"], 5);
    assert_eq!(broken_line(&path).0, 2, "the old break is still reported");
}
